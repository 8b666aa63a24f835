import CTAAPI
import CTACoordinator
import CTACore
import CTADefinitions
import CTAMongo
import Foundation
import Testing

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
    }
}
