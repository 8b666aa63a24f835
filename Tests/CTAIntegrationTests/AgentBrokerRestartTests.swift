import CTABroker
import CTACore
import Foundation
import Testing

/// Restarts the broker under a running agent with results in flight. Runs its own private RabbitMQ node (other
/// ports and directory than the shared one and than the broker-restart suite's), so the restart disturbs no one.
@Suite("Agent: broker restart mid-run", .serialized, .enabled(if: ServiceEnvironment.brokerEnabled, "needs the services script (scripts/services.sh)"))
struct AgentBrokerRestartTests {
    static let port = 23_672
    static let overrides: [String: String] = [
        "CTA_SERVICES_DIR": (ServiceEnvironment.environment["CTA_SERVICES_DIR"] ?? NSTemporaryDirectory()) + "/agent-restart-node",
        "CTA_AMQP_PORT": String(port), "CTA_AMQPS_PORT": "23671", "CTA_RABBIT_DIST_PORT": "23673",
        "CTA_EPMD_PORT": "23369", "CTA_RABBIT_STOP_GRACE": "3",
    ]

    @Test(.timeLimit(.minutes(5)))
    func everyResultArrivesExactlyOnceInSeqOrder() async throws {
        try await ServiceEnvironment.services("stop-rabbitmq", overrides: Self.overrides)
        try await ServiceEnvironment.services("start-rabbitmq", overrides: Self.overrides)
        let url = "amqp://guest:guest@127.0.0.1:\(Self.port)/"
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("restart"))!
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: try AgentProcess.makeDirectory(machine))
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        // 1,000 results: 10 tests of 100 JUnit cases, spread over a few seconds so the restart lands mid-run.
        let execution = ExecutionID()
        let tests = (0..<10).map { n in
            Work.test("suite-\(n)", [
                Work.stage("run", "sleep 0.5; " + Work.junit(count: 100, failing: [7]), report: ReportSpec(format: .junit, path: "results.xml"))
            ])
        }
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(execution), tests: tests), routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("the first results") { $0.results(execution).count >= 150 }

        try await ServiceEnvironment.services("stop-rabbitmq", overrides: Self.overrides)
        try await Task.sleep(for: .seconds(2))  // the agent keeps running tests and spooling meanwhile
        try await ServiceEnvironment.services("start-rabbitmq", overrides: Self.overrides)

        try await coordinator.waitUntil(timeout: .seconds(180), "the final state after the restart") { $0.finalState(execution) != nil }
        try await Task.sleep(for: .seconds(1))
        let events = await coordinator.events(from: machine)
        let distinct = events.distinct
        let results = distinct.results(execution)
        #expect(results.count == 1000, "1,000 distinct results, got \(results.count)")
        let keys = results.map { "\($0.testID)/\($0.name)" }
        #expect(Set(keys).count == 1000, "each test case exactly once")
        #expect(results.filter { $0.status == .failed }.count == 10)
        // Per agent and coordinator queue, first arrivals come in seq order (a broker may deliver a re-sent message
        // twice; the second copy has the same id and is recognised as a duplicate). Across queues there is no
        // order: the coordinator proves completeness from the seqs instead.
        for queue in [Topology.resultsQueue, Topology.statesQueue, Topology.agentsQueue] {
            let seqs = distinct.filter { Topology.coordinatorQueue(for: $0.type) == queue }.compactMap(\.seq)
            #expect(seqs == seqs.sorted(), "first arrivals in \(queue) out of seq order")
        }
        AgentProcessTests.expectContiguousSequence(events)
        let final = try #require(distinct.finalState(execution))
        #expect(final.state == .finished)
        #expect(final.counts.total == 1000)
        AgentProcessTests.expectConsistentFinal(final, events: events)
        #expect(agent.log.contains("AMQP connection lost"), "the restart happened while the agent was connected")
        #expect(results.filter { $0.testID.rawValue == "suite-9" }.count == 100, "the last test ran after the restart")
        let duplicates = events.count - distinct.count
        print("agent broker restart: \(events.count) deliveries, \(duplicates) duplicates by id, \(distinct.count) distinct events")

        await agent.terminate()
        await coordinator.close()
        try await ServiceEnvironment.services("stop-rabbitmq", overrides: Self.overrides)
    }
}
