import CTABroker
import CTACore
import Foundation
import Testing

/// Restarts the broker under a running agent with results in flight. Runs its own private RabbitMQ node (other
/// ports and directory than the shared one and than the broker-restart suite's), so the restart disturbs no one.
@Suite("Agent: broker restart mid-run", .serialized, .enabled(if: ServiceEnvironment.brokerEnabled, "needs the services script (scripts/services.sh)"))
struct AgentBrokerRestartTests {
    static let node = PrivateBrokerNode(name: "agent-restart-node", base: 23000)

    @Test(.timeLimit(.minutes(5)))
    func everyResultArrivesExactlyOnceInSeqOrder() async throws {
        try await Self.node.stop()
        try await Self.node.start()
        let url = Self.node.url
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("restart"))!
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: try AgentProcess.makeDirectory(machine))
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        let execution = ExecutionID()
        let tests = Work.thousandResults()
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(execution), tests: tests), routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("the first results") { $0.results(execution).count >= 150 }

        try await Self.node.stop()
        try await Task.sleep(for: .seconds(2))  // the agent keeps running tests and spooling meanwhile
        try await Self.node.start()

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
        try await Self.node.stop()
    }
}
