import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Testing
import CTADefinitions

extension CoordinatorProcessSuites {
    /// Coordinators killed, doubled, and their database restarted, while real agents run real tests.
    @Suite(
        "Coordinator resilience: kill -9, two coordinators, database restart", .serialized,
        .enabled(if: EndToEndBroker.enabled, "needs CTA_AMQP_E2E_URL and CTA_MONGO_URI"))
    struct CoordinatorResilienceTests {
        /// Ten tests of 30 JUnit cases each, spread over a few seconds so that an interruption lands mid-run.
        static let spreadSuite: [TestDefinition] = (0..<10).map { index in
            var test = E2ETests.junit("spread-\(index)", cases: 30, failing: index == 3 ? [7] : [])
            test.stages.insert(Stage(name: "wait", run: "sleep 0.4"), at: 0)
            return test
        }

        /// The same with longer tests (about 15 s a machine), so a database restart that takes seconds to begin still
        /// lands mid-run on a loaded machine.
        static let slowSpreadSuite: [TestDefinition] = spreadSuite.map { test in
            var test = test
            test.stages[0] = Stage(name: "wait", run: "sleep 1.5")
            return test
        }

        /// Every result of the execution is stored exactly once and matches the execution's counts.
        func checkExactlyOnce(_ scene: Scene, _ execution: ExecutionRecord, expected: Int) async throws {
            let results = try await scene.store.results(execution.executionID)
            let keys = results.map { "\($0.machine)|\($0.result.testID)|\($0.result.name)" }
            #expect(Set(keys).count == keys.count, "a result was stored twice")
            #expect(results.count == expected)
            let counts = try await scene.store.resultCounts(execution.executionID, machine: nil)
            #expect(execution.counts == counts)
            #expect(counts.failed == UInt64(expected / 300))
        }

        @Test("a coordinator killed with SIGKILL mid-execution and started again: the execution completes, each result stored once")
        func killAndRestart() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(Self.spreadSuite, runMode: .stress)
                let created = try await scene.store.requestExecution(of: scenario, requestedBy: "test")
                try await scene.waitFor("some results stored", timeout: .seconds(60)) {
                    try await scene.store.resultCounts(created.executionID, machine: nil).total >= 60
                }
                let first = scene.coordinators[0]
                first.signal(SIGKILL)
                _ = await waitForExit(pid: first.pid)
                // The agents carry on; their events wait in the broker.
                try await Task.sleep(for: .seconds(2))
                try scene.startCoordinator(instance: "e2e-restarted")
                let execution = try await scene.waitForEnd(created.executionID)
                #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                try await checkExactlyOnce(scene, execution, expected: 2 * 300)
            }
        }

        @Test("two coordinators consume and compose together: every execution ends once with every result stored once")
        func twoCoordinators() async throws {
            try await withScene(agents: 2, coordinators: 2) { scene in
                try await scene.waitForMachines()
                let stress = try await scene.define(Self.spreadSuite, runMode: .stress)
                let parallel = try await scene.define(Self.spreadSuite, runMode: .parallel)
                let a = try await scene.store.requestExecution(of: stress, requestedBy: "test")
                let b = try await scene.store.requestExecution(of: parallel, requestedBy: "test")
                let first = try await scene.waitForEnd(a.executionID)
                let second = try await scene.waitForEnd(b.executionID)
                #expect(first.phase == .finished && second.phase == .finished, "\(scene.diagnostics())")
                try await checkExactlyOnce(scene, first, expected: 2 * 300)
                try await checkExactlyOnce(scene, second, expected: 300)
                // Both coordinators worked: each logged consuming, and the dispatches were claimed once each.
                #expect(first.dispatch?.machines.count == 2)
                #expect(Set(try await scene.store.results(b.executionID).compactMap(\.result.index)) == Set(0..<10))
            }
        }

        static let mongoOverrides: [String: String] = [
            "CTA_SERVICES_DIR": (ServiceEnvironment.environment["CTA_SERVICES_DIR"] ?? NSTemporaryDirectory()) + "/mongo-restart-node",
            "CTA_MONGO_PORT": "23017",
        ]

        @Test("the database restarts mid-run: consumption pauses, nothing acknowledged is lost, the execution completes")
        func databaseRestart() async throws {
            try await ServiceEnvironment.services("stop-mongo", overrides: Self.mongoOverrides)
            try await ServiceEnvironment.services("start-mongo", overrides: Self.mongoOverrides)
            let uri = "mongodb://127.0.0.1:23017/?retryWrites=false&serverSelectionTimeoutMS=2000"
            do {
                try await withScene(agents: 2, mongoURI: uri) { scene in
                    try await scene.waitForMachines()
                    let scenario = try await scene.define(Self.slowSpreadSuite, runMode: .stress)
                    let created = try await scene.store.requestExecution(of: scenario, requestedBy: "test")
                    try await scene.waitFor("some results stored", timeout: .seconds(60)) {
                        try await scene.store.resultCounts(created.executionID, machine: nil).total >= 60
                    }
                    try await ServiceEnvironment.services("stop-mongo", overrides: Self.mongoOverrides)
                    // Well past the client's 2 s server selection, so writes during the outage fail instead of waiting
                    // it out; the tests (about 15 s a machine) are still running.
                    try await Task.sleep(for: .seconds(6))
                    try await ServiceEnvironment.services("start-mongo", overrides: Self.mongoOverrides)
                    let execution = try await scene.waitForEnd(created.executionID, timeout: .seconds(180))
                    #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                    try await checkExactlyOnce(scene, execution, expected: 2 * 300)
                    #expect(scene.coordinators[0].log.contains("store unavailable, retrying"), "the outage was not noticed")
                }
            } catch {
                try? await ServiceEnvironment.services("stop-mongo", overrides: Self.mongoOverrides)
                throw error
            }
            try await ServiceEnvironment.services("stop-mongo", overrides: Self.mongoOverrides)
        }

        @Test("an agent lost mid-run (mono): the tests it never reported are inconclusive with the reason; the execution ends")
        func lostAgentMono() async throws {
            try await withScene(agents: 1) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(
                    [E2ETests.shell("quick", "true"), E2ETests.shell("long", "sleep 20"), E2ETests.shell("after", "true")],
                    runMode: .mono)
                let created = try await scene.store.requestExecution(of: scenario, requestedBy: "test")
                try await scene.waitFor("the first result", timeout: .seconds(60)) {
                    try await scene.store.resultCounts(created.executionID, machine: nil).ok >= 1
                }
                scene.agents[0].signal(SIGKILL)
                _ = await scene.agents[0].waitForExit()
                let execution = try await scene.waitForEnd(created.executionID, timeout: .seconds(60))
                #expect(execution.phase == .finished, "\(execution.phase)\n\(scene.diagnostics())")
                let results = try await scene.store.results(created.executionID)
                let byTest = Dictionary(grouping: results, by: \.result.testID.rawValue)
                #expect(byTest["quick"]?.map(\.result.status) == [.ok])
                for test in ["long", "after"] {
                    let result = try #require(byTest[test]?.first, "no result for \(test)")
                    #expect(byTest[test]?.count == 1)
                    #expect(result.result.status == .inconclusive)
                    #expect(result.result.message?.contains("was lost") == true)
                }
                #expect(execution.counts == ResultCounts(ok: 1, inconclusive: 2))
                #expect(execution.endReason?.contains("was lost") == true)
            }
        }

        @Test("an agent lost mid-run (parallel): the test it held is re-queued once and run by another machine")
        func lostAgentParallel() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let tests = (0..<8).map { E2ETests.shell("slow-\($0)", "sleep 1") }
                let scenario = try await scene.define(tests, runMode: .parallel)
                let created = try await scene.store.requestExecution(of: scenario, requestedBy: "test")
                try await scene.waitFor("both machines working", timeout: .seconds(60)) {
                    try await scene.store.parts(created.executionID).count == 2
                }
                try await Task.sleep(for: .milliseconds(500))
                let victim = scene.agents[0]
                victim.signal(SIGKILL)
                _ = await victim.waitForExit()
                let execution = try await scene.waitForEnd(created.executionID, timeout: .seconds(90))
                #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                let results = try await scene.store.results(created.executionID)
                #expect(Set(results.compactMap(\.result.index)) == Set(0..<8))
                #expect(results.allSatisfy { $0.result.status == .ok })
                let requeued = results.filter { $0.result.attempt == 2 }
                #expect(!requeued.isEmpty, "the lost machine's test was not re-queued")
                #expect(requeued.allSatisfy { $0.machine == scene.machines[1] })
                let parts = try await scene.store.parts(created.executionID)
                #expect(parts.first { $0.machine == victim.machine }?.lost == true)
            }
        }

        @Test("cron with two coordinators: a firing happens once; when the leader dies the other takes over and does not fire it again")
        func cronFiresOnceAcrossCoordinators() async throws {
            try await withScene(agents: 1, coordinators: 2) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(
                    [E2ETests.shell("tick", "true")], runMode: .mono, schedule: ScenarioSchedule(cron: "* * * * *"))
                let executions = scene.store.executionsCollection
                let leases = scene.client.database(scene.databaseName).collection("leases")
                /// Scheduler executions of the scenario, by the minute they were planned for.
                @Sendable func firings() async throws -> [Int: Int] {
                    let fired = try await executions.find(["scenario.id": .string(scenario.rawValue), "requestedBy": "scheduler"])
                    return Dictionary(grouping: fired, by: { Int($0.createdAt.timeIntervalSince1970 / 60) }).mapValues(\.count)
                }
                try await scene.waitFor("the first firing", timeout: .seconds(90)) { try await !firings().isEmpty }
                let firstMinute = try #require(try await firings().keys.min())
                let leader = try #require(try await leases.findOne(["_id": "scheduler"])?["holder"]?.stringValue)

                // The leader dies at once. The other coordinator takes the lease within its 3 s, looks back over the
                // catch-up window, finds this minute's firing already claimed, and does not fire it again.
                let victim = try #require(scene.coordinators.first { $0.instance == leader })
                victim.signal(SIGKILL)
                _ = await waitForExit(pid: victim.pid)
                let survivor = try #require(scene.coordinators.first { $0.instance != leader })
                try await scene.waitFor("the survivor to take the lease", timeout: .seconds(30)) {
                    try await leases.findOne(["_id": "scheduler"])?["holder"]?.stringValue == survivor.instance
                }
                // A new leader checks at once and then every 500 ms: a second firing would show within seconds.
                try await Task.sleep(for: .seconds(4))
                let fired = try await firings()
                #expect(fired[firstMinute] == 1, "the first minute fired \(fired[firstMinute] ?? 0) times")
                #expect(fired.values.allSatisfy { $0 == 1 }, "a minute fired more than once: \(fired)")
                #expect(survivor.log.contains("leading the scheduler"))
            }
        }
    }
}
