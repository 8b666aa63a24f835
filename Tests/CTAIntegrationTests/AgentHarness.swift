import CTABroker
import CTACore
import Foundation
import Synchronization
import Testing
import CTADefinitions

/// A real `cta-agent` process, started from the binary the package builds, with a configuration file, state and
/// work directories of its own.
struct AgentProcess: Sendable {
    let machine: MachineName
    let directory: String
    let pid: pid_t

    var logPath: String { directory + "/agent.log" }
    var stateDirectory: String { directory + "/state" }
    var workDirectory: String { directory + "/work" }

    /// The `cta-agent` binary: `CTA_AGENT_BINARY`, or next to the test bundle.
    static func binary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["CTA_AGENT_BINARY"] { return path }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidates = [bundle.appendingPathComponent("cta-agent").path]
        // swift-testing's runner may live elsewhere; fall back to the package's build folders.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates += [".build/debug/cta-agent", ".build/release/cta-agent"].map { root.appendingPathComponent($0).path }
        let found = candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
        return try #require(found, "cta-agent not built; looked in \(candidates)")
    }

    /// A fresh directory for one agent.
    static func makeDirectory(_ machine: MachineName) throws -> String {
        let path = NSTemporaryDirectory() + "cta-agent-test-\(machine)-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Starts an agent (again, when `directory` held one before: same spool, same journal).
    static func start(
        machine: MachineName, brokerURL: String, directory: String, groups: [String] = [], maxConcurrent: Int = 1,
        tags: [String: String] = ["suite": "agent-tests"], extraEnvironment: [String: String] = [:],
        gateway: (url: String, token: String)? = nil
    ) throws -> AgentProcess {
        // Through a gateway, the agent is given no broker at all.
        let reach = gateway.map { "gateway:\n  url: \($0.url)\n  token: \($0.token)" } ?? "broker:\n  url: \(brokerURL)"
        let config = """
            # written by the agent integration tests
            \(reach)
            machine: \(machine)
            groups: [\(groups.joined(separator: ", "))]
            tags: {\(tags.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))}
            directories:
              work: \(directory)/work
              state: \(directory)/state
            executions:
              maxConcurrent: \(maxConcurrent)
              gracePeriod: 2s
              stopCommandTimeout: 5s
            heartbeat:
              interval: 1s
            shutdown:
              budget: 20s
            logs:
              level: info
            """
        try config.write(toFile: directory + "/agent.yaml", atomically: true, encoding: .utf8)
        let binary = try binary()
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CTA_AGENT_") }
        environment.merge(extraEnvironment) { $1 }
        let env = environment.map { "\($0.key)=\($0.value)" }
        let pid = try spawn(
            [binary, "--config", directory + "/agent.yaml"], environment: env, output: directory + "/agent.log")
        return AgentProcess(machine: machine, directory: directory, pid: pid)
    }

    /// Starts one agent per name prefix, each with a new unique machine name and a fresh directory.
    static func startNew(
        _ prefixes: [String], brokerURL: String, groups: [String] = [], tags: [String: String] = ["suite": "agent-tests"]
    ) throws -> (machines: [MachineName], agents: [AgentProcess]) {
        var machines: [MachineName] = []
        var agents: [AgentProcess] = []
        for prefix in prefixes {
            let machine = try #require(MachineName(ServiceEnvironment.uniqueName(prefix)))
            machines.append(machine)
            agents.append(
                try start(
                    machine: machine, brokerURL: brokerURL, directory: try makeDirectory(machine), groups: groups, tags: tags))
        }
        return (machines, agents)
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    /// Waits for the process to exit and returns its status (128 + signal when killed), or nil on timeout.
    func waitForExit(timeout: Duration = .seconds(60)) async -> Int32? {
        await CTAIntegrationTests.waitForExit(pid: pid, timeout: timeout)
    }

    /// Stops the agent for good at the end of a test (SIGKILL if it does not stop on SIGTERM).
    func terminate() async {
        await CTAIntegrationTests.terminate(pid: pid)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// Waits for a child process to exit and returns its status (128 + signal when killed), or nil on timeout.
func waitForExit(pid: pid_t, timeout: Duration = .seconds(60)) async -> Int32? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid {
            let exited = status & 0x7f == 0
            return exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        }
        if result == -1 { return -1 }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return nil
}

/// Stops a child process for good: SIGTERM, then SIGKILL if it has not exited after 30 s.
func terminate(pid: pid_t) async {
    kill(pid, SIGTERM)
    if await waitForExit(pid: pid, timeout: .seconds(30)) == nil {
        kill(pid, SIGKILL)
        _ = await waitForExit(pid: pid, timeout: .seconds(10))
    }
}

/// posix_spawn with stdout and stderr appended to `output`.
func spawn(_ arguments: [String], environment: [String], output: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var pid: pid_t = 0
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
    try #require(rc == 0, "posix_spawn \(arguments[0]) failed: \(rc)")
    return pid
}

/// Stands in for the coordinator: declares its queues, consumes every agent event, and publishes what the
/// coordinator would publish.
actor CoordinatorStandIn {
    let broker: AMQPConnection
    private(set) var events: [Envelope] = []
    private(set) var deliveries = 0
    private(set) var undecodable: [String] = []
    private var tasks: [Task<Void, Never>] = []

    init(url: String) async throws {
        var configuration = try AMQPConfiguration(url: url)
        configuration.heartbeat = .seconds(10)
        configuration.publishTimeout = .seconds(60)
        configuration.reconnect = .init(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500))
        configuration.connectionName = "cta-coordinator-stand-in"
        broker = AMQPConnection(configuration: configuration)
        try await broker.connect()
        for exchange in Topology.exchanges {
            try await broker.declareExchange(exchange.name, kind: ExchangeKind(exchange.kind.rawValue), durable: exchange.durable)
        }
        for queue in Topology.coordinatorQueues { try await broker.declare(queue) }
        for binding in Topology.coordinatorBindings { try await broker.declare(binding) }
        for queue in Topology.coordinatorQueues { _ = try await broker.purgeQueue(queue.name) }
    }

    /// Starts consuming the coordinator's queues (after the agents under test are set up).
    func startConsuming() async throws {
        for queue in [Topology.agentsQueue, Topology.heartbeatsQueue, Topology.statesQueue, Topology.resultsQueue] {
            let consumer = try await broker.consume(queue: queue, prefetch: 500)
            tasks.append(Task {
                do {
                    for try await delivery in consumer {
                        self.received(delivery.body)
                        delivery.ack()
                    }
                } catch {}
            })
        }
    }

    private func received(_ body: [UInt8]) {
        deliveries += 1
        do {
            events.append(try Envelope.decode(Data(body)))
        } catch {
            undecodable.append("\(error): \(String(decoding: body, as: UTF8.self))")
        }
    }

    /// Every event from `machine`, in arrival order (duplicates included).
    func events(from machine: MachineName) -> [Envelope] {
        events.filter { $0.source == .agent(machine) }
    }

    /// Waits until `condition` holds for the events received so far.
    func waitUntil(
        timeout: Duration = .seconds(60), _ what: String, _ condition: @Sendable ([Envelope]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition(events) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what); \(events.count) events received")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until every machine in `machines` has registered.
    func waitForRegistration(of machines: [MachineName]) async throws {
        try await waitUntil("registration of \(machines)") { events in
            machines.allSatisfy { machine in
                events.contains { $0.source == .agent(machine) && $0.type == .agentRegistration }
            }
        }
    }

    func publish(_ payload: some EventPayload, routingKey: String, id: EventID = EventID()) async throws {
        let envelope = Envelope(id: id, source: .coordinator("test-coordinator"), payload: payload)
        let body = Array(try envelope.encoded())
        try await broker.publish(
            OutgoingMessage(
                exchange: Topology.dispatchExchange, routingKey: routingKey, body: body,
                properties: AMQPProperties(contentType: Topology.contentType, messageID: envelope.id.description),
                mandatory: true))
    }

    func publishRaw(_ body: String, routingKey: String) async throws {
        try await broker.publish(
            OutgoingMessage(exchange: Topology.dispatchExchange, routingKey: routingKey, body: Array(body.utf8), mandatory: true))
    }

    func close() async {
        for task in tasks { task.cancel() }
        await broker.close()
    }
}

/// Builders for what the coordinator sends.
enum Work {
    static func context(
        _ execution: ExecutionID = ExecutionID(), mode: RunMode = .mono, runningTimeoutMs: UInt64 = 600_000,
        pendingDeadline: Timestamp = Timestamp.now().adding(Milliseconds(3_600_000))
    ) -> ExecutionContext {
        ExecutionContext(
            executionID: execution, scenario: ScenarioReference(id: ScenarioID("agent-tests")!, name: "Agent tests"),
            suite: SuiteReference(id: SuiteID("agent-suite")!, name: "Agent suite"), runMode: mode,
            env: ["SUITE_LEVEL": "from-execution"],
            timeouts: ExecutionTimeouts(pendingDeadline: pendingDeadline, runningTimeoutMs: Milliseconds(runningTimeoutMs)),
            requestedBy: "test/agent-integration")
    }

    static func test(_ id: String, _ stages: [Stage], timeoutMs: UInt64? = nil) -> TestDefinition {
        TestDefinition(id: TestID(id)!, name: "Test \(id)", stages: stages, timeoutMs: timeoutMs.map(Milliseconds.init))
    }

    static func stage(
        _ name: String, _ run: String, stop: String? = nil, mandatory: Bool = true, report: ReportSpec? = nil,
        timeoutMs: UInt64? = nil
    ) -> Stage {
        Stage(name: name, run: run, stop: stop, timeoutMs: timeoutMs.map(Milliseconds.init), mandatory: mandatory, report: report)
    }

    /// 1,000 results: 10 tests of 100 JUnit cases (case 7 of each fails), spread over a few seconds, so a restart
    /// can land mid-run.
    static func thousandResults() -> [TestDefinition] {
        (0..<10).map { n in
            test("suite-\(n)", [
                stage("run", "sleep 0.5; " + junit(count: 100, failing: [7]), report: ReportSpec(format: .junit, path: "results.xml"))
            ])
        }
    }

    /// A shell command writing a JUnit report of `count` cases named `case-N`; cases in `failing` fail.
    static func junit(count: Int, failing: Set<Int> = [], file: String = "results.xml") -> String {
        var xml = "<testsuite name=\"generated\" tests=\"\(count)\">"
        for n in 0..<count {
            xml += "<testcase classname=\"gen\" name=\"case-\(n)\" time=\"0.001\">"
            if failing.contains(n) { xml += "<failure message=\"case \(n) failed\">boom</failure>" }
            xml += "</testcase>"
        }
        xml += "</testsuite>"
        return "printf '%s' '\(xml)' > \(file)"
    }
}

extension Envelope {
    var state: ExecutionStateChange? {
        if case .executionState(let state) = event { return state }
        return nil
    }

    var result: TestResult? {
        if case .testResult(let result) = event { return result }
        return nil
    }
}

extension Array where Element == Envelope {
    func states(_ execution: ExecutionID) -> [ExecutionStateChange] {
        compactMap(\.state).filter { $0.executionID == execution }
    }

    func results(_ execution: ExecutionID) -> [TestResult] {
        compactMap(\.result).filter { $0.executionID == execution }
    }

    /// A part's final state, once every event of the part (its seqs `firstSeq...lastSeq` from its machine) has
    /// arrived too, as the coordinator proves a part complete: results and states come through different queues, so
    /// the final state alone can arrive before the last results.
    func finalState(_ execution: ExecutionID, machine: MachineName? = nil) -> ExecutionStateChange? {
        states(execution).first { final in
            guard final.state.isFinal, machine == nil || final.machine == machine else { return false }
            guard let first = final.firstSeq, let last = final.lastSeq, first <= last else { return true }
            let received = Set(filter { $0.source == .agent(final.machine) && $0.type.isSequenced }.compactMap(\.seq))
            return (first...last).allSatisfy(received.contains)
        }
    }

    /// The events with distinct ids, first arrival kept.
    var distinct: [Envelope] {
        var seen = Set<EventID>()
        return filter { seen.insert($0.id).inserted }
    }
}

/// The agents' broker (a virtual host of the shared node, see scripts/services.sh).
enum AgentBroker {
    static var url: String? { ServiceEnvironment.environment["CTA_AMQP_AGENTS_URL"] }
    static var enabled: Bool { url != nil || ServiceEnvironment.servicesRequired }

    static func requireURL() throws -> String {
        try #require(url, "CTA_AMQP_AGENTS_URL is not set: start the services with scripts/services.sh start")
    }
}
