public import CTACore
public import Foundation
public import CTADefinitions

/// Why an execution is still pending: what the composer looked for and what the closest machines lack.
public struct PendingExplanation: Codable, Hashable, Sendable {
    /// One sentence: "no online machine matches configuration linux-firefox".
    public var summary: String
    /// The machines that came closest, fewest missing requirements first.
    public var candidates: [Candidate]
    /// When the composer last looked.
    public var checkedAt: Date

    public struct Candidate: Codable, Hashable, Sendable {
        public var machine: MachineName
        /// What it lacks, one phrase each: "offline since 2026-11-22T10:00:00Z", "tag browser=chrome (has firefox)".
        public var missing: [String]

        public init(machine: MachineName, missing: [String]) {
            self.machine = machine
            self.missing = missing
        }
    }

    public init(summary: String, candidates: [Candidate], checkedAt: Date) {
        self.summary = summary
        self.candidates = candidates
        self.checkedAt = checkedAt
    }
}

/// What the composer sent for an execution (or is about to send: it is saved before publishing, so a composer
/// that dies half-way is replaced by one that republishes the same event ids, which agents ignore as repeats).
public struct DispatchPlan: Codable, Hashable, Sendable {
    /// Machine queues the execution went to (mono, stress, parallel announcements).
    public var machines: [MachineName]
    /// The group queue (group mode).
    public var group: GroupName?
    /// The parallel queue (parallel mode).
    public var parallelQueue: String?
    /// Event ids, one per message, in publishing order, so that a republication reuses them.
    public var eventIDs: [EventID]
    public var attempt: Int

    public init(
        machines: [MachineName], group: GroupName? = nil, parallelQueue: String? = nil, eventIDs: [EventID],
        attempt: Int = 1
    ) {
        self.machines = machines
        self.group = group
        self.parallelQueue = parallelQueue
        self.eventIDs = eventIDs
        self.attempt = attempt
    }
}

/// An execution as stored: the snapshot of what runs, where it is, and its counters.
public struct ExecutionRecord: Codable, Hashable, Sendable {
    /// The execution id (lower-case UUID).
    public var _id: String
    public var scenario: ScenarioReference
    public var suite: SuiteReference
    public var configuration: ConfigurationID
    public var selector: MachineSelector
    public var runMode: RunMode
    public var env: [String: String]
    public var requestedBy: String
    /// The tests, in suite order, as they were when the execution was created.
    public var tests: [TestDefinition]
    public var phase: ExecutionPhase
    public var createdAt: Date
    public var pendingDeadline: Date
    public var runningTimeoutMs: Int64
    /// Set once the composer published the work.
    public var dispatch: DispatchPlan?
    public var dispatchedAt: Date?
    /// The first `acked` or `running` state.
    public var startedAt: Date?
    public var endedAt: Date?
    /// Why it ended (for `timeout` and `cancelled`).
    public var endReason: String?
    public var pending: PendingExplanation?
    /// Results stored so far, by status (exact once the execution ended).
    public var counts: ResultCounts
    /// A composer's claim: which coordinator works on the execution until when.
    public var claimedBy: String?
    public var claimedUntil: Date?
    /// When the composer should look at a still pending execution again.
    public var nextAttemptAt: Date?
    /// Set when a cancel was requested, with its reason.
    public var cancelRequested: String?
    /// The scenario execution that chained this one.
    public var chainedFrom: String?
    /// Parallel mode: set once the execution's queue was deleted (every test had a result, or it was cancelled).
    public var parallelQueueDeleted: Bool?
    /// Labels given by whoever requested it (the API's `tags`), for finding it again.
    public var tags: [String]?

    public init(
        id: ExecutionID, scenario: ScenarioReference, suite: SuiteReference, configuration: ConfigurationID,
        selector: MachineSelector, runMode: RunMode, env: [String: String], requestedBy: String,
        tests: [TestDefinition], createdAt: Date, pendingDeadline: Date, runningTimeoutMs: Int64,
        chainedFrom: String? = nil
    ) {
        self._id = id.description
        self.scenario = scenario
        self.suite = suite
        self.configuration = configuration
        self.selector = selector
        self.runMode = runMode
        self.env = env
        self.requestedBy = requestedBy
        self.tests = tests
        self.phase = .pending
        self.createdAt = createdAt
        self.pendingDeadline = pendingDeadline
        self.runningTimeoutMs = runningTimeoutMs
        self.counts = ResultCounts()
        self.nextAttemptAt = createdAt
        self.chainedFrom = chainedFrom
    }

    public var executionID: ExecutionID { ExecutionID(_id)! }
}

/// One machine's part of an execution, from its `acked` to its final state.
public struct PartRecord: Codable, Hashable, Sendable {
    /// `<execution id>/<machine>`.
    public var _id: String
    public var executionID: String
    public var machine: MachineName
    public var epoch: String
    public var attempt: Int
    public var state: ExecutionState
    public var ackedSeq: UInt64?
    /// From the final state.
    public var firstSeq: UInt64?
    public var lastSeq: UInt64?
    public var reportedCounts: ResultCounts?
    public var finalState: ExecutionState?
    public var reason: String?
    /// Set when every event in `[firstSeq, lastSeq]` is stored and the stored results match `reportedCounts`.
    public var complete: Bool
    public var updatedAt: Date
    /// Set when the machine was lost (no heartbeat for three intervals) before its final state.
    public var lost: Bool?

    public static func id(execution: String, machine: MachineName) -> String { "\(execution)/\(machine)" }
}

/// A machine as the coordinator knows it, from its registrations and heartbeats.
public struct MachineRecord: Codable, Hashable, Sendable {
    /// The machine name.
    public var _id: String
    public var hostname: String
    public var addresses: [String]
    public var os: OperatingSystem
    public var arch: String
    public var cpuCount: Int
    public var memoryBytes: UInt64
    public var agentVersion: String
    public var tags: [String: String]
    public var groups: [GroupName]
    public var maxConcurrentExecutions: Int
    public var transport: String
    public var epoch: String
    public var registeredAt: Date
    public var lastSeenAt: Date
    /// The machine counts as online until this time (three heartbeat intervals after the last sign of life;
    /// the time of an `agent.shutdown`).
    public var onlineUntil: Date
    public var freeSlots: Int
    public var running: [String]
    public var draining: Bool
    public var lastSeq: UInt64
    public var shutdownReason: String?
    /// The heartbeat interval the agent last announced; nil until its first heartbeat.
    public var heartbeatIntervalMs: Int64?

    public var name: MachineName { MachineName(unchecked: _id) }
    public func isOnline(at now: Date) -> Bool { onlineUntil > now }
}
