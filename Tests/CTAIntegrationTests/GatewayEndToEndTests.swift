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
                    try await exercise(scene, machine: machine, agent: agent)
                } catch {
                    await agent.terminate()
                    await gateway.stop()
                    throw error
                }
                await agent.terminate()
                await gateway.stop()
            }
        }

        private func exercise(_ scene: Scene, machine: MachineName, agent: AgentProcess) async throws {
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
                E2ETests.junit("junit", cases: 3, failing: [1]),
            ]
            for mode in [RunMode.mono, .group, .parallel] {
                let scenario = try await scene.define(tests, runMode: mode)
                let execution = try await scene.run(scenario, timeout: .seconds(90))
                #expect(execution.phase == .finished, "\(mode): \(execution.phase) \(execution.endReason ?? "")\n\(agent.log)")
                let results = try await scene.store.results(execution.executionID)
                let keys = results.map { "\($0.result.testID)|\($0.result.name)" }
                #expect(Set(keys).count == keys.count, "\(mode): a result was stored twice")
                #expect(results.count == 5, "\(mode): \(keys.sorted())")
                #expect(results.allSatisfy { $0.machine == machine })
                #expect(execution.counts.failed == 2 && execution.counts.ok == 3, "\(mode): \(execution.counts)")
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
                let secret = Secrets.newEnrollmentToken()
                try await tokens.createEnrollmentToken(
                    EnrollmentTokenRecord(
                        id: UUID().uuidString, hash: Secrets.tokenHash(secret), name: "kill test", machine: machine.rawValue,
                        createdBy: "test", createdAt: Date(), expiresAt: nil))
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
                    let tests = (0..<1000).map { E2ETests.shell(String(format: "t%04d", $0), "true") }
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
                    let names = results.map(\.result.name)
                    #expect(results.count == 1000, "\(results.count) results stored")
                    #expect(Set(names).count == names.count, "a result was stored twice")
                    #expect(ended.counts.ok == 1000)
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
