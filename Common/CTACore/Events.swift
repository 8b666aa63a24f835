// The event types of protocol 1 and their payloads.

/// Who may send an event type.
public enum Sender: String, Hashable, Sendable, CaseIterable {
    /// Agents send it (directly or through a gateway) to the coordinator.
    case agent
    /// Coordinators send it to agents.
    case coordinator
}

/// Every event type of protocol version 1; the envelope's `type`.
public enum EventType: String, CaseIterable, Hashable, Sendable, Codable {
    case agentRegistration = "agent.registration"
    case agentHeartbeat = "agent.heartbeat"
    case agentShutdown = "agent.shutdown"
    case agentDrain = "agent.drain"
    case executionDispatch = "execution.dispatch"
    case executionTest = "execution.test"
    case executionCancel = "execution.cancel"
    case executionState = "execution.state"
    case executionLog = "execution.log"
    case testResult = "test.result"

    /// Who sends events of this type.
    public var sender: Sender {
        switch self {
        case .agentRegistration, .agentHeartbeat, .agentShutdown, .executionState, .executionLog, .testResult:
            .agent
        case .agentDrain, .executionDispatch, .executionTest, .executionCancel:
            .coordinator
        }
    }

    /// Whether the envelope must carry `seq` (and `epoch`): every agent event except the heartbeat, which is
    /// disposable (it may expire unread) and so must not open gaps in the sequence.
    public var isSequenced: Bool { sender == .agent && self != .agentHeartbeat }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let type = EventType(rawValue: raw) else {
            throw WireError(
                code: .unknownType,
                path: decoder.wirePath.rendered,
                reason: "\"\(excerpt(raw))\" is not an event type of protocol version 1"
            )
        }
        self = type
    }
}

/// An event's payload type, tied to its `type` string.
public protocol EventPayload: Codable, Hashable, Sendable {
    /// The envelope `type` this payload travels under.
    static var eventType: EventType { get }
    /// The payload wrapped as an ``Event``.
    var event: Event { get }
}

/// The payload of an envelope, one case per event type.
public enum Event: Hashable, Sendable {
    case agentRegistration(AgentRegistration)
    case agentHeartbeat(AgentHeartbeat)
    case agentShutdown(AgentShutdown)
    case agentDrain(AgentDrain)
    case executionDispatch(ExecutionDispatch)
    case executionTest(TestDispatch)
    case executionCancel(ExecutionCancel)
    case executionState(ExecutionStateChange)
    case executionLog(ExecutionLog)
    case testResult(TestResult)

    /// The envelope `type` of this payload.
    public var type: EventType {
        switch self {
        case .agentRegistration: .agentRegistration
        case .agentHeartbeat: .agentHeartbeat
        case .agentShutdown: .agentShutdown
        case .agentDrain: .agentDrain
        case .executionDispatch: .executionDispatch
        case .executionTest: .executionTest
        case .executionCancel: .executionCancel
        case .executionState: .executionState
        case .executionLog: .executionLog
        case .testResult: .testResult
        }
    }

    /// The payload as its concrete type, for code that handles several types alike.
    public var payload: any EventPayload {
        switch self {
        case .agentRegistration(let p): p
        case .agentHeartbeat(let p): p
        case .agentShutdown(let p): p
        case .agentDrain(let p): p
        case .executionDispatch(let p): p
        case .executionTest(let p): p
        case .executionCancel(let p): p
        case .executionState(let p): p
        case .executionLog(let p): p
        case .testResult(let p): p
        }
    }

    /// The machine a payload speaks for, when it names one.
    var machine: MachineName? {
        switch self {
        case .agentRegistration(let p): p.machine
        case .agentHeartbeat(let p): p.machine
        case .agentShutdown(let p): p.machine
        case .agentDrain(let p): p.machine
        case .executionState(let p): p.machine
        case .executionLog(let p): p.machine
        case .testResult(let p): p.machine
        case .executionDispatch, .executionTest, .executionCancel: nil
        }
    }

    static func decode(_ type: EventType, from decoder: any Decoder) throws -> Event {
        switch type {
        case .agentRegistration: .agentRegistration(try AgentRegistration(from: decoder))
        case .agentHeartbeat: .agentHeartbeat(try AgentHeartbeat(from: decoder))
        case .agentShutdown: .agentShutdown(try AgentShutdown(from: decoder))
        case .agentDrain: .agentDrain(try AgentDrain(from: decoder))
        case .executionDispatch: .executionDispatch(try ExecutionDispatch(from: decoder))
        case .executionTest: .executionTest(try TestDispatch(from: decoder))
        case .executionCancel: .executionCancel(try ExecutionCancel(from: decoder))
        case .executionState: .executionState(try ExecutionStateChange(from: decoder))
        case .executionLog: .executionLog(try ExecutionLog(from: decoder))
        case .testResult: .testResult(try TestResult(from: decoder))
        }
    }

    func encode(to encoder: any Encoder) throws { try payload.encode(to: encoder) }

    func validate(at path: WirePath) throws(WireError) {
        switch self {
        case .agentRegistration(let p): try p.validate(at: path)
        case .agentHeartbeat: break
        case .agentShutdown(let p): try checkText(p.reason, at: path.appending("reason"))
        case .agentDrain(let p): try p.validate(at: path)
        case .executionDispatch(let p): try p.validate(at: path)
        case .executionTest(let p): try p.validate(at: path)
        case .executionCancel(let p): try p.validate(at: path)
        case .executionState(let p): try p.validate(at: path)
        case .executionLog(let p): try p.validate(at: path)
        case .testResult(let p): try p.validate(at: path)
        }
    }
}

// MARK: - Agent lifecycle

/// The operating system of a machine.
public struct OperatingSystem: Hashable, Sendable, Codable {
    /// The system's identifier, e.g. `debian`, `ubuntu`, `macos`, `windows`.
    public var name: String
    /// Its version, e.g. `12`.
    public var version: String
    /// Creates an operating system description.
    public init(name: String, version: String) {
        self.name = name
        self.version = version
    }
}

/// `agent.registration`: an agent announces its machine, facts and capabilities when it starts.
public struct AgentRegistration: EventPayload {
    public static let eventType = EventType.agentRegistration
    public var event: Event { .agentRegistration(self) }

    /// The machine name the agent serves; also in the envelope `source`.
    public var machine: MachineName
    /// The host name as the system reports it.
    public var hostname: String
    /// IP addresses of the machine (v4 and v6, textual).
    public var addresses: [String]
    /// The operating system.
    public var os: OperatingSystem
    /// The CPU architecture, e.g. `x86_64`, `aarch64`.
    public var arch: String
    /// Logical CPUs.
    public var cpuCount: Int
    /// Physical memory in bytes.
    public var memoryBytes: UInt64
    /// The agent's version.
    public var agentVersion: String
    /// Capabilities the configuration selects on, key → value (`browser: firefox`).
    public var tags: [String: String]
    /// The groups (pools) this machine belongs to; the agent consumes each group's queue.
    public var groups: [GroupName]
    /// How many executions the agent runs at once.
    public var maxConcurrentExecutions: Int
    /// How the agent reaches the broker.
    public var transport: Transport
    /// When the agent process started.
    public var startedAt: Timestamp

    /// Creates a registration.
    public init(
        machine: MachineName,
        hostname: String,
        addresses: [String],
        os: OperatingSystem,
        arch: String,
        cpuCount: Int,
        memoryBytes: UInt64,
        agentVersion: String,
        tags: [String: String] = [:],
        groups: [GroupName] = [],
        maxConcurrentExecutions: Int = 1,
        transport: Transport = .amqp,
        startedAt: Timestamp
    ) {
        self.machine = machine
        self.hostname = hostname
        self.addresses = addresses
        self.os = os
        self.arch = arch
        self.cpuCount = cpuCount
        self.memoryBytes = memoryBytes
        self.agentVersion = agentVersion
        self.tags = tags
        self.groups = groups
        self.maxConcurrentExecutions = maxConcurrentExecutions
        self.transport = transport
        self.startedAt = startedAt
    }

    private enum CodingKeys: String, CodingKey {
        case machine, hostname, addresses, os, arch, cpuCount, memoryBytes, agentVersion, tags, groups
        case maxConcurrentExecutions, transport, startedAt
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        machine = try c.required(.machine)
        hostname = try c.required(.hostname)
        addresses = try c.optional(.addresses) ?? []
        os = try c.required(.os)
        arch = try c.required(.arch)
        cpuCount = try c.integer(.cpuCount, minimum: 1)
        memoryBytes = try c.integer(.memoryBytes, minimum: 0)
        agentVersion = try c.required(.agentVersion)
        tags = try c.optional(.tags) ?? [:]
        groups = try c.optional(.groups) ?? []
        maxConcurrentExecutions = try c.integer(.maxConcurrentExecutions, minimum: 1)
        transport = try c.required(.transport)
        startedAt = try c.required(.startedAt)
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(hostname, at: path.appending("hostname"), limit: 255)
        try checkText(os.name, at: path.appending("os").appending("name"), limit: 128)
        try checkText(os.version, at: path.appending("os").appending("version"), limit: 128)
        try checkText(arch, at: path.appending("arch"), limit: 64)
        try checkText(agentVersion, at: path.appending("agentVersion"), limit: 64)
        for key in tags.keys.sorted() { try checkText(key, at: path.appending("tags").appending(key), limit: 128) }
    }
}

/// The 1, 5 and 15 minute load averages of a machine.
public struct LoadAverage: Hashable, Sendable, Codable {
    public var one: Double
    public var five: Double
    public var fifteen: Double
    /// Creates load averages.
    public init(one: Double, five: Double, fifteen: Double) {
        self.one = one
        self.five = five
        self.fifteen = fifteen
    }
}

/// `agent.heartbeat`: an agent says it is alive, what it runs and how far its sequence has gone.
public struct AgentHeartbeat: EventPayload {
    public static let eventType = EventType.agentHeartbeat
    public var event: Event { .agentHeartbeat(self) }

    /// The machine.
    public var machine: MachineName
    /// Executions the agent holds (taken and not yet final).
    public var running: [ExecutionID]
    /// Load averages.
    public var load: LoadAverage
    /// How many more executions (or parallel tests) it could take now; 0 while draining.
    public var freeSlots: Int
    /// Events in the agent's spool not yet confirmed by the broker.
    public var spoolDepth: UInt64
    /// The highest `seq` the agent has assigned in its current epoch (0 if none), so the coordinator sees a gap at
    /// the tail without waiting for the next sequenced event.
    public var lastSeq: UInt64
    /// Whether the agent stopped taking new work.
    public var draining: Bool
    /// The interval between heartbeats; the coordinator declares the machine offline after three missed ones.
    public var intervalMs: Milliseconds

    /// Creates a heartbeat.
    public init(
        machine: MachineName,
        running: [ExecutionID] = [],
        load: LoadAverage,
        freeSlots: Int,
        spoolDepth: UInt64 = 0,
        lastSeq: UInt64,
        draining: Bool = false,
        intervalMs: Milliseconds
    ) {
        self.machine = machine
        self.running = running
        self.load = load
        self.freeSlots = freeSlots
        self.spoolDepth = spoolDepth
        self.lastSeq = lastSeq
        self.draining = draining
        self.intervalMs = intervalMs
    }

    private enum CodingKeys: String, CodingKey {
        case machine, running, load, freeSlots, spoolDepth, lastSeq, draining, intervalMs
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        machine = try c.required(.machine)
        running = try c.optional(.running) ?? []
        load = try c.required(.load)
        freeSlots = try c.integer(.freeSlots, minimum: 0)
        spoolDepth = try c.optionalInteger(.spoolDepth, minimum: 0) ?? 0
        lastSeq = try c.integer(.lastSeq, minimum: 0)
        draining = try c.optional(.draining) ?? false
        intervalMs = try c.required(.intervalMs)
    }
}

/// `agent.shutdown`: an agent leaves on purpose (service stop, reboot), so it is offline at once.
public struct AgentShutdown: EventPayload {
    public static let eventType = EventType.agentShutdown
    public var event: Event { .agentShutdown(self) }

    /// The machine.
    public var machine: MachineName
    /// Why, e.g. `SIGTERM`.
    public var reason: String
    /// Executions still held when the agent stopped; their final states follow after restart (from the spool) or
    /// the coordinator's lost-agent handling settles them.
    public var running: [ExecutionID]

    /// Creates a shutdown notice.
    public init(machine: MachineName, reason: String, running: [ExecutionID] = []) {
        self.machine = machine
        self.reason = reason
        self.running = running
    }

    private enum CodingKeys: String, CodingKey { case machine, reason, running }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        machine = try c.required(.machine)
        reason = try c.required(.reason)
        running = try c.optional(.running) ?? []
    }
}

/// `agent.drain`: the coordinator tells one agent to stop (or resume) taking shared work.
///
/// A drained agent cancels its consumers on group and parallel queues and finishes what it holds; its machine queue
/// stays consumed so cancels still reach it.
public struct AgentDrain: EventPayload {
    public static let eventType = EventType.agentDrain
    public var event: Event { .agentDrain(self) }

    /// The machine addressed; an agent ignores a drain for another machine.
    public var machine: MachineName
    /// `true` to drain, `false` to resume.
    public var drain: Bool
    /// Why.
    public var reason: String?
    /// Who asked, e.g. `user/alice` or `coordinator/health`.
    public var requestedBy: String

    /// Creates a drain order.
    public init(machine: MachineName, drain: Bool, reason: String? = nil, requestedBy: String) {
        self.machine = machine
        self.drain = drain
        self.reason = reason
        self.requestedBy = requestedBy
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(requestedBy, at: path.appending("requestedBy"), limit: 256)
    }
}
