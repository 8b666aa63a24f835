import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Logging
import Synchronization
import Testing
import CTADefinitions

/// The broker virtual host the end-to-end tests run in: real coordinators consume its coordinator queues.
enum EndToEndBroker {
    static var url: String? { ServiceEnvironment.environment["CTA_AMQP_E2E_URL"] }
    static var enabled: Bool { (url != nil && ServiceEnvironment.mongoURI != nil) || ServiceEnvironment.servicesRequired }
    static func requireURL() throws -> String {
        try #require(url, "CTA_AMQP_E2E_URL is not set: start the services with scripts/services.sh start")
    }
}

/// Every suite that runs real coordinators, one at a time: they share the end-to-end virtual host, and two
/// coordinators of different tests would consume each other's events.
@Suite("Coordinator processes", .serialized)
enum CoordinatorProcessSuites {}

/// A real `cta-coordinator serve` process on a database of its own.
struct CoordinatorProcess: Sendable {
    let instance: String
    let pid: pid_t
    let logPath: String

    static func binary() throws -> String {
        let agent = try AgentProcess.binary()
        let path = URL(fileURLWithPath: agent).deletingLastPathComponent().appendingPathComponent("cta-coordinator").path
        return try #require(
            FileManager.default.isExecutableFile(atPath: path) ? path : nil, "cta-coordinator not built next to \(agent)")
    }

    /// Starts `serve`; its HTTP API listens on a free port unless `arguments` give `--api-port`.
    static func start(
        instance: String, brokerURL: String, mongoURI: String, database: String, directory: String,
        arguments: [String] = []
    ) throws -> CoordinatorProcess {
        let log = directory + "/coordinator-\(instance).log"
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let port = arguments.contains("--api-port") ? [] : ["--api-port", String(try freePort())]
        let pid = try spawn(
            [
                try binary(), "serve", "--amqp-url", brokerURL, "--mongo-uri", mongoURI, "--database", database,
                "--instance", instance, "--scheduler-lease", "3",
            ] + port + arguments, environment: environment, output: log)
        return CoordinatorProcess(instance: instance, pid: pid, logPath: log)
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    func terminate() async {
        await CTAIntegrationTests.terminate(pid: pid)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// One end-to-end scene: a database, a coordinator, agents in a group of their own, and the store to look at.
final class Scene: Sendable {
    let directory: String
    let client: MongoClient
    let store: MongoStore
    let databaseName: String
    let mongoURI: String
    let group: GroupName
    let brokerURL: String
    private let processes: Mutex<[CoordinatorProcess]>
    let agents: [AgentProcess]
    let machines: [MachineName]

    /// Every coordinator started in this scene, in start order (including those killed since).
    var coordinators: [CoordinatorProcess] { processes.withLock { $0 } }

    init(
        agents count: Int, coordinators coordinatorCount: Int = 1, mongoURI: String? = nil, group: String? = nil,
        tags: [String: String] = ["suite": "agent-tests"]
    ) async throws {
        let brokerURL = try EndToEndBroker.requireURL()
        self.brokerURL = brokerURL
        let uri = try mongoURI ?? ServiceEnvironment.requireMongoURI()
        self.mongoURI = uri
        let directory = NSTemporaryDirectory() + "cta-e2e-\(UUID().uuidString.prefix(8))"
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let databaseName = ServiceEnvironment.uniqueName("cta-e2e")
        self.databaseName = databaseName
        client = try MongoClient(uri: uri, logger: Logger(label: "cta.e2e"))
        store = MongoStore(database: client.database(databaseName))
        let group = try #require(GroupName(group ?? ServiceEnvironment.uniqueName("pool")))
        self.group = group
        processes = Mutex(
            try (0..<coordinatorCount).map { index in
                try CoordinatorProcess.start(
                    instance: "e2e-\(index)", brokerURL: brokerURL, mongoURI: uri, database: databaseName,
                    directory: directory)
            })
        let (machines, agents) = try AgentProcess.startNew(
            (0..<count).map { "e2e\($0)" }, brokerURL: brokerURL, groups: [group.rawValue], tags: tags)
        self.machines = machines
        self.agents = agents
    }

    /// Starts another coordinator on the scene's broker and database.
    @discardableResult
    func startCoordinator(instance: String, arguments: [String] = []) throws -> CoordinatorProcess {
        let process = try CoordinatorProcess.start(
            instance: instance, brokerURL: brokerURL, mongoURI: mongoURI, database: databaseName, directory: directory,
            arguments: arguments)
        processes.withLock { $0.append(process) }
        return process
    }

    /// Waits until every agent is registered, online in the store, and has sent a heartbeat.
    func waitForMachines(timeout: Duration = .seconds(60)) async throws {
        try await waitFor("machines online", timeout: timeout) {
            let online = try await self.store.machines()
                .filter { $0.isOnline(at: Date()) && $0.heartbeatIntervalMs != nil }.map(\.name)
            return Set(self.machines).isSubset(of: Set(online))
        }
    }

    /// Stores a suite of `tests` and a scenario running it on this scene's group, and returns the scenario id.
    func define(
        _ tests: [TestDefinition], runMode: RunMode, tags: [String: String] = [:], pending: Milliseconds = Milliseconds(60_000),
        running: Milliseconds = Milliseconds(120_000), schedule: ScenarioSchedule? = nil,
        provision: ProvisionDefinition? = nil
    ) async throws -> ScenarioID {
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let suite = SuiteDefinition(id: SuiteID(unchecked: "suite-\(suffix)"), name: "Suite \(suffix)", tests: tests.map(\.id))
        let configuration = ConfigurationDefinition(
            id: ConfigurationID(unchecked: "config-\(suffix)"), name: "Pool \(suffix)",
            selector: MachineSelector(groups: [group], tags: tags), provision: provision)
        let scenario = ScenarioDefinition(
            id: ScenarioID(unchecked: "scenario-\(suffix)"), name: "Scenario \(suffix)", suite: suite.id,
            configuration: configuration.id, runMode: runMode, pendingTimeoutMs: pending, runningTimeoutMs: running,
            schedule: schedule)
        try await store.prepare()
        try await store.save(
            DefinitionSet(
                tests: Dictionary(uniqueKeysWithValues: tests.map { ($0.id, $0) }), suites: [suite.id: suite],
                configurations: [configuration.id: configuration], scenarios: [scenario.id: scenario]))
        return scenario.id
    }

    /// Requests a run and waits until it ends.
    func run(_ scenario: ScenarioID, timeout: Duration = .seconds(120)) async throws -> ExecutionRecord {
        let created = try await store.requestExecution(of: scenario, requestedBy: "test/e2e")
        return try await waitForEnd(created.executionID, timeout: timeout)
    }

    func waitForEnd(_ execution: ExecutionID, timeout: Duration = .seconds(120)) async throws -> ExecutionRecord {
        try await waitFor("execution \(execution) to end", timeout: timeout) {
            try await self.store.execution(execution)?.phase.isEnd == true
        }
        return try #require(try await store.execution(execution))
    }

    func waitFor(_ what: String, timeout: Duration, _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for \(what)\n\(diagnostics())")
        throw CancellationError()
    }

    func diagnostics() -> String {
        coordinators.map { "--- coordinator \($0.instance) log (tail)\n\($0.log.suffix(3000))" }.joined(separator: "\n")
            + agents.map { "\n--- agent \($0.machine) log (tail)\n\($0.log.suffix(2000))" }.joined()
    }

    func close() async {
        for agent in agents { await agent.terminate() }
        for coordinator in coordinators { await coordinator.terminate() }
        try? await client.database(databaseName).drop()
        try? await client.shutdown()
    }
}

/// Test definitions for the end-to-end runs.
enum E2ETests {
    static func shell(_ id: String, _ command: String, expectedMs: UInt64? = nil) -> TestDefinition {
        TestDefinition(
            id: TestID(unchecked: id), name: "Test \(id)", stages: [Stage(name: "run", run: command)],
            expectedDurationMs: expectedMs.map(Milliseconds.init))
    }

    /// The bytes ``artifact(_:file:)`` writes: every byte value, then a line of text.
    static let artifactContent: [UInt8] = Array(0...255) + Array("the artifact's end\n".utf8)

    /// A test that leaves `file` in `$CTA_ARTIFACTS_DIR` with ``artifactContent``.
    static func artifact(_ id: String, file: String) -> TestDefinition {
        let octal = artifactContent.map { String(format: "\\%03o", $0) }.joined()
        return shell(id, "printf '\(octal)' > \"$CTA_ARTIFACTS_DIR/\(file)\"")
    }

    static func junit(_ id: String, cases: Int, failing: Set<Int> = []) -> TestDefinition {
        TestDefinition(
            id: TestID(unchecked: id), name: "JUnit \(id)",
            stages: [
                Stage(
                    name: "suite", run: Work.junit(count: cases, failing: failing),
                    report: ReportSpec(format: .junit, path: "results.xml"))
            ])
    }
}

/// Runs `body` with a new scene and closes it (processes stopped, database dropped) whatever happens.
func withScene(
    agents: Int, coordinators: Int = 1, mongoURI: String? = nil, group: String? = nil,
    tags: [String: String] = ["suite": "agent-tests"], _ body: (Scene) async throws -> Void
) async throws {
    let scene = try await Scene(agents: agents, coordinators: coordinators, mongoURI: mongoURI, group: group, tags: tags)
    do {
        try await body(scene)
    } catch {
        await scene.close()
        throw error
    }
    await scene.close()
}
