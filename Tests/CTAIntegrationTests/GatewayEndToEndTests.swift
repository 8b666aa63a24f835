import CTAAPI
import CTACoordinator
import CTACore
import CTADefinitions
import CTAMongo
import Foundation
import Testing

/// `cta-gateway` as a process of its own, on a fixed port (so it can be killed and started again there).
struct GatewayProcess {
    let pid: pid_t
    let logPath: String

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    static func binary() throws -> String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [bundle.appendingPathComponent("cta-gateway").path]
            + [".build/debug/cta-gateway", ".build/release/cta-gateway"].map { root.appendingPathComponent($0).path }
        return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) }, "cta-gateway not built")
    }

    /// Starts it and waits until it answers `/health`'s port.
    static func start(port: Int, scene: Scene) async throws -> GatewayProcess {
        let logPath = NSTemporaryDirectory() + "cta-gateway-\(port)-\(UUID().uuidString.prefix(6)).log"
        let pid = try spawn(
            [
                try binary(), "--host", "127.0.0.1", "--port", "\(port)", "--amqp-url", scene.brokerURL, "--uri",
                scene.mongoURI, "--database", scene.databaseName,
            ],
            environment: ["PATH=/usr/bin:/bin"], output: logPath)
        let process = GatewayProcess(pid: pid, logPath: logPath)
        let deadline = ContinuousClock.now + .seconds(30)
        while !portAnswers(port) {
            guard ContinuousClock.now < deadline else {
                Issue.record("cta-gateway did not listen on \(port)\n\(process.log)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return process
    }

    /// SIGKILL, and reaped.
    func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid, &status, 0)
    }

    static func portAnswers(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

extension CoordinatorProcessSuites {
    /// A real agent process that is given only the gateway's address (no broker), a real coordinator process, the
    /// gateway, RabbitMQ and the MongoDB-wire server.
    @Suite(
        "Gateway end to end: an agent that reaches only the gateway", .serialized,
        .enabled(if: EndToEndBroker.enabled, "needs CTA_AMQP_E2E_URL and CTA_MONGO_URI"))
    struct GatewayEndToEndTests {
        @Test(
            "mono, group and parallel executions from a real coordinator run on an agent behind the gateway; every result stored once",
            .timeLimit(.minutes(3)))
        func throughTheGateway() async throws {
            try await withScene(agents: 0, coordinators: 1) { scene in
                let tokens = APIStore(store: scene.store)
                try await tokens.prepare()
                let gateway = try await GatewayUnderTest(tokens: tokens, brokerURL: scene.brokerURL)
                let machine = try #require(MachineName(ServiceEnvironment.uniqueName("gwagent")))
                let token = try await gateway.token(machine: machine.rawValue)
                let agent = try AgentProcess.start(
                    machine: machine, brokerURL: "", directory: try AgentProcess.makeDirectory(machine),
                    groups: [scene.group.rawValue], maxConcurrent: 2,
                    gateway: (url: "http://127.0.0.1:\(gateway.port)", token: token))
                do {
                    let execution = try await exercise(scene, machine: machine, agent: agent, tokens: tokens)
                    // The gateway's upload endpoint keeps the API's contract.
                    try await AttachmentUploadContract.check(
                        APIClient(port: gateway.port, tls: false), execution: execution.description,
                        machine: machine.rawValue, agentToken: token, userToken: nil, limit: nil
                    ) { id in
                        guard let record = try await tokens.attachment(id: id), record.complete else { return nil }
                        return try await tokens.attachmentBytes(record)
                    }
                } catch {
                    await agent.terminate()
                    await gateway.stop()
                    throw error
                }
                await agent.terminate()
                await gateway.stop()
            }
        }

        /// Runs the executions; returns the last one's id.
        private func exercise(
            _ scene: Scene, machine: MachineName, agent: AgentProcess, tokens: APIStore
        ) async throws -> ExecutionID {
            let deadline = ContinuousClock.now + .seconds(60)
            while try await scene.store.machine(machine)?.isOnline(at: Date()) != true {
                guard ContinuousClock.now < deadline else {
                    Issue.record("the agent behind the gateway did not register\n\(agent.log)")
                    throw CancellationError()
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            let registered = try #require(try await scene.store.machine(machine))
            #expect(registered.transport == "gateway")
            let tests = [
                E2ETests.shell("passes", "true"), E2ETests.shell("fails", "echo broken >&2; exit 3"),
                E2ETests.junit("junit", cases: 3, failing: [1]), E2ETests.artifact("artifact", file: "report.txt"),
            ]
            var last: ExecutionID?
            for mode in [RunMode.mono, .group, .parallel] {
                let scenario = try await scene.define(tests, runMode: mode)
                let execution = try await scene.run(scenario, timeout: .seconds(90))
                #expect(execution.phase == .finished, "\(mode): \(execution.phase) \(execution.endReason ?? "")\n\(agent.log)")
                let results = try await scene.store.results(execution.executionID)
                let keys = results.map { "\($0.result.testID)|\($0.result.name)" }
                #expect(Set(keys).count == keys.count, "\(mode): a result was stored twice")
                #expect(results.count == 6, "\(mode): \(keys.sorted())")
                #expect(results.allSatisfy { $0.machine == machine })
                #expect(execution.counts.failed == 2 && execution.counts.ok == 4, "\(mode): \(execution.counts)")
                try await expectUploaded(results, tokens: tokens, agent: agent, artifact: ("artifact", "report.txt"))
                last = execution.executionID
            }
            return try #require(last)
        }

        @Test(
            "an agent connected to the broker uploads its tests' logs and files to the coordinator's API (api.url)",
            .timeLimit(.minutes(3)))
        func directAgentUploadsToTheAPI() async throws {
            try await withScene(agents: 0, coordinators: 0) { scene in
                let tokens = APIStore(store: scene.store)
                try await tokens.prepare()
                let port = try freeFixedPort()
                try scene.startCoordinator(instance: "api", arguments: ["--api-port", "\(port)"])
                let machine = try #require(MachineName(ServiceEnvironment.uniqueName("apiagent")))
                let secret = try await tokens.newEnrollmentToken(machine: machine.rawValue)
                let agent = try AgentProcess.start(
                    machine: machine, brokerURL: scene.brokerURL, directory: try AgentProcess.makeDirectory(machine),
                    groups: [scene.group.rawValue],
                    extraEnvironment: ["CTA_AGENT_API_URL": "http://127.0.0.1:\(port)", "CTA_AGENT_API_TOKEN": secret])
                do {
                    try await scene.waitFor("the agent online", timeout: .seconds(60)) {
                        try await scene.store.machine(machine)?.isOnline(at: Date()) == true
                    }
                    let scenario = try await scene.define(
                        [E2ETests.shell("says", "echo said"), E2ETests.artifact("artifact", file: "out.bin")], runMode: .mono)
                    let execution = try await scene.run(scenario, timeout: .seconds(90))
                    #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(agent.log)")
                    let results = try await scene.store.results(execution.executionID)
                    #expect(results.count == 2)
                    try await expectUploaded(results, tokens: tokens, agent: agent, artifact: ("artifact", "out.bin"))
                    let log = try #require(results.first { $0.result.testID.rawValue == "says" }?.result.log)
                    let stored = try #require(try await tokens.attachment(id: log.id.description))
                    let text = String(decoding: try await tokens.attachmentBytes(stored), as: UTF8.self)
                    #expect(text.contains("said"), "the stored log: \(text)")
                } catch {
                    await agent.terminate()
                    throw error
                }
                await agent.terminate()
            }
        }

        /// Every result's log and files are stored complete in the database with the size and SHA-256 its reference
        /// names; the artifact test's file holds what the test wrote; none of them is left in the agent's store.
        private func expectUploaded(
            _ results: [ResultRecord], tokens: APIStore, agent: AgentProcess, artifact: (test: String, file: String)
        ) async throws {
            for record in results {
                let result = record.result
                let log = try #require(result.log, "\(result.testID): no log reference")
                for reference in [log] + result.attachments {
                    let stored = try #require(
                        try await tokens.attachment(id: reference.id.description),
                        "\(result.testID): \(reference.name) (\(reference.id)) is not stored\n\(agent.log.suffix(3000))")
                    #expect(stored.complete && stored.sha256 == reference.sha256 && stored.size == Int64(reference.size))
                    #expect(stored.executionID == result.executionID.description && stored.test == result.testID.rawValue)
                    #expect(
                        !FileManager.default.fileExists(atPath: agent.directory + "/state/attachments/\(reference.id)"),
                        "\(reference.name) is still in the agent's store after its upload")
                }
                if result.testID.rawValue == artifact.test {
                    let file = try #require(result.attachments.first { $0.name == artifact.file }, "\(result.attachments)")
                    let stored = try #require(try await tokens.attachment(id: file.id.description))
                    #expect(try await tokens.attachmentBytes(stored) == E2ETests.artifactContent)
                }
            }
        }

        @Test(
            "gateway killed with SIGKILL mid-run and started again on the same port: the execution completes, each of 1,000 results stored once",
            .timeLimit(.minutes(4)))
        func gatewayKilledMidRun() async throws {
            try await withScene(agents: 0, coordinators: 1) { scene in
                let tokens = APIStore(store: scene.store)
                try await tokens.prepare()
                let port = try freeFixedPort()
                var gateway = try await GatewayProcess.start(port: port, scene: scene)
                let machine = try #require(MachineName(ServiceEnvironment.uniqueName("gwkill")))
                let secret = try await tokens.newEnrollmentToken(machine: machine.rawValue)
                let agent = try AgentProcess.start(
                    machine: machine, brokerURL: "", directory: try AgentProcess.makeDirectory(machine),
                    groups: [scene.group.rawValue], gateway: (url: "http://127.0.0.1:\(port)", token: secret))
                do {
                    let deadline = ContinuousClock.now + .seconds(60)
                    while try await scene.store.machine(machine)?.isOnline(at: Date()) != true {
                        guard ContinuousClock.now < deadline else {
                            Issue.record("the agent did not register\n\(agent.log)\n\(gateway.log)")
                            throw CancellationError()
                        }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    // 20 tests of 50 JUnit cases each: 1,000 results, and each test's log uploaded before its results.
                    let tests = (0..<20).map { E2ETests.junit(String(format: "t%02d", $0), cases: 50) }
                    let scenario = try await scene.define(tests, runMode: .mono, running: Milliseconds(600_000))
                    let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/gateway-kill")
                    // Kill the gateway while results flow: after the first 100 are stored, before the last.
                    try await scene.waitFor("100 results stored", timeout: .seconds(120)) {
                        try await scene.store.results(execution.executionID).count >= 100
                    }
                    gateway.kill()
                    let storedAtKill = try await scene.store.results(execution.executionID).count
                    #expect(storedAtKill < 1000, "the run ended before the gateway was killed; the test proves nothing")
                    try await Task.sleep(for: .milliseconds(500))
                    gateway = try await GatewayProcess.start(port: port, scene: scene)
                    let ended = try await scene.waitForEnd(execution.executionID, timeout: .seconds(180))
                    #expect(ended.phase == .finished, "\(ended.phase) \(ended.endReason ?? "")\n\(agent.log.suffix(3000))")
                    let results = try await scene.store.results(execution.executionID)
                    let keys = results.map { "\($0.result.testID)|\($0.result.name)" }
                    #expect(results.count == 1000, "\(results.count) results stored")
                    #expect(Set(keys).count == keys.count, "a result was stored twice")
                    #expect(ended.counts.ok == 1000)
                    // Each test's log was uploaded through the gateway before its results, across the restart.
                    let stored = Set(try await tokens.attachments(execution: execution.executionID.description).map(\._id))
                    let logs = results.compactMap { $0.result.log?.id.description }
                    #expect(logs.count == 1000 && Set(logs).count == 20, "\(logs.count) references to \(Set(logs).count) logs")
                    #expect(Set(logs).isSubset(of: stored), "\(Set(logs).subtracting(stored).count) logs not stored")
                } catch {
                    await agent.terminate()
                    gateway.kill()
                    throw error
                }
                await agent.terminate()
                gateway.kill()
            }
        }
    }
}
