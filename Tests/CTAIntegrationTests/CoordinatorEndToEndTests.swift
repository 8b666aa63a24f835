import CTABroker
import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Testing
import CTADefinitions

extension CoordinatorProcessSuites {
    /// Real coordinator processes, real agents, RabbitMQ and the MongoDB-wire server: the test only defines
    /// scenarios, asks for runs through the store, and reads what was stored.
    @Suite(
        "Coordinator end to end: coordinator, agents, broker and database", .serialized,
        .enabled(if: EndToEndBroker.enabled, "needs CTA_AMQP_E2E_URL and CTA_MONGO_URI"))
    struct CoordinatorEndToEndTests {
        /// A mixed suite: exit codes and a JUnit report with one failing case.
        static let suite: [TestDefinition] = [
            E2ETests.shell("passes", "true"),
            E2ETests.shell("fails", "echo broken >&2; exit 3"),
            E2ETests.junit("junit", cases: 4, failing: [2]),
            E2ETests.shell("tap", "printf 'TAP version 13\\n1..2\\nok 1 - one\\nok 2 - two\\n'"),
        ]

        /// Results per machine: 1 passes + 1 fails + 4 JUnit cases (1 failing) + 1 exit-code result of the TAP test.
        static let resultsPerRun = 7

        func checkStoredOnce(_ scene: Scene, _ execution: ExecutionRecord) async throws -> [ResultRecord] {
            let results = try await scene.store.results(execution.executionID)
            let keys = results.map { "\($0.machine)|\($0.result.testID)|\($0.result.name)" }
            #expect(Set(keys).count == keys.count, "a result was stored twice: \(keys.sorted())")
            #expect(Set(results.map(\._id)).count == results.count)
            let recount = try await scene.store.resultCounts(execution.executionID, machine: nil)
            #expect(execution.counts == recount, "the execution's counts do not match its stored results")
            return results
        }

        @Test("mono: one machine runs the suite; every result stored once; the execution ends finished")
        func mono() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(Self.suite, runMode: .mono)
                let execution = try await scene.run(scenario)
                #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                let results = try await checkStoredOnce(scene, execution)
                #expect(results.count == Self.resultsPerRun)
                #expect(Set(results.map(\.machine)).count == 1)
                #expect(execution.counts.failed == 2)
                #expect(execution.counts.ok == UInt64(Self.resultsPerRun - 2))
                let parts = try await scene.store.parts(execution.executionID)
                #expect(parts.count == 1 && parts.allSatisfy(\.complete))
                #expect(execution.dispatch?.machines.count == 1)
            }
        }

        @Test("stress: every matching machine runs the suite; the execution ends when every machine is complete")
        func stress() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(Self.suite, runMode: .stress)
                let execution = try await scene.run(scenario)
                #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                let results = try await checkStoredOnce(scene, execution)
                #expect(results.count == 2 * Self.resultsPerRun)
                #expect(Set(results.map(\.machine)) == Set(scene.machines))
                #expect(Set(execution.dispatch?.machines ?? []) == Set(scene.machines))
            }
        }

        @Test("group: several executions through the group queue, each taken by exactly one machine")
        func group() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(
                    [E2ETests.shell("slow", "sleep 0.5"), E2ETests.shell("quick", "true")], runMode: .group)
                var executions: [ExecutionID] = []
                for _ in 0..<4 { executions.append(try await scene.store.requestExecution(of: scenario, requestedBy: "test").executionID) }
                var machines = Set<MachineName>()
                for id in executions {
                    let execution = try await scene.waitForEnd(id)
                    #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")")
                    #expect(execution.dispatch?.group == scene.group)
                    let results = try await checkStoredOnce(scene, execution)
                    #expect(results.count == 2)
                    let ran = Set(results.map(\.machine))
                    #expect(ran.count == 1, "one execution ran on \(ran)")
                    machines.formUnion(ran)
                }
                #expect(machines.isSubset(of: Set(scene.machines)))
            }
        }

        @Test("parallel: each test taken once from the shared queue, longest first; the queue is deleted at the end")
        func parallel() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let tests = (0..<10).map { E2ETests.shell("p\($0)", "sleep 0.2; test \($0) -ne 7", expectedMs: UInt64($0) * 100) }
                let scenario = try await scene.define(tests, runMode: .parallel)
                let execution = try await scene.run(scenario)
                #expect(execution.phase == .finished, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                let results = try await checkStoredOnce(scene, execution)
                #expect(results.count == 10)
                #expect(Set(results.compactMap(\.result.index)) == Set(0..<10))
                #expect(execution.counts.failed == 1 && execution.counts.ok == 9)
                #expect(execution.parallelQueueDeleted == true)
                // Longest first: the longest expected test was dispatched first, so it started before the shortest.
                let started = Dictionary(uniqueKeysWithValues: results.map { ($0.result.testID.rawValue, $0.result.startedAt) })
                if let longest = started["p9"] ?? nil, let shortest = started["p0"] ?? nil { #expect(longest < shortest) }
                let parts = try await scene.store.parts(execution.executionID)
                #expect(!parts.isEmpty && parts.allSatisfy(\.complete))
                let broker = try AMQPConnection(configuration: AMQPConfiguration(url: scene.brokerURL))
                try await broker.connect()
                await #expect(throws: AMQPError.self) { _ = try await broker.queueState(Topology.parallelQueue(execution: execution.executionID)) }
                await broker.close()
            }
        }

        @Test("nothing matches: the execution stays pending with the closest machines and what they lack, then times out")
        func pendingExplanation() async throws {
            try await withScene(agents: 2) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(
                    [E2ETests.shell("never", "true")], runMode: .mono, tags: ["browser": "chrome", "suite": "agent-tests"],
                    pending: Milliseconds(4_000))
                let created = try await scene.store.requestExecution(of: scenario, requestedBy: "test")
                try await scene.waitFor("a pending explanation", timeout: .seconds(30)) {
                    try await scene.store.execution(created.executionID)?.pending != nil
                }
                let pending = try #require(try await scene.store.execution(created.executionID)?.pending)
                #expect(pending.summary.contains("no online machine matches"))
                #expect(Set(pending.candidates.map(\.machine)) == Set(scene.machines))
                for candidate in pending.candidates { #expect(candidate.missing == ["no tag browser=chrome"]) }
                let ended = try await scene.waitForEnd(created.executionID, timeout: .seconds(30))
                #expect(ended.phase == .timeout)
                #expect(ended.endReason?.contains("pending deadline passed") == true)
                #expect(ended.endReason?.contains("no online machine matches") == true)
                #expect(ended.dispatchedAt == nil)
            }
        }

        @Test("a malformed result is dead-lettered with its reason and the coordinator carries on")
        func malformedEvent() async throws {
            try await withScene(agents: 1) { scene in
                try await scene.waitForMachines()
                let broker = try AMQPConnection(configuration: AMQPConfiguration(url: scene.brokerURL))
                try await broker.connect()
                let watch = "dead-letter-watch-\(UUID().uuidString.prefix(6))"
                try await broker.declareQueue(watch, durable: false, autoDelete: true)
                try await broker.bindQueue(watch, exchange: Topology.deadLetterExchange, routingKey: "#")
                let epoch = SequenceEpoch()
                let body = """
                    {"id":"\(EventID())","type":"test.result","version":"1.0","source":"agent/\(scene.machines[0])","time":"2026-01-01T00:00:00Z","epoch":"\(epoch)","seq":1,"payload":{"executionID":"\(ExecutionID())","machine":"\(scene.machines[0])","attempt":1,"testID":"t","name":"t","status":"passed","durationMs":1,"origin":{"kind":"exitCode","stage":"run","exitCode":0}}}
                    """
                try await broker.publish(
                    OutgoingMessage(exchange: Topology.eventsExchange, routingKey: "test.result", body: Array(body.utf8), mandatory: true))
                let consumer = try await broker.consume(queue: watch, prefetch: 10)
                var headers: AMQPTable = [:]
                for try await delivery in consumer where delivery.properties.headers["cta-dead-lettered-by"] != nil {
                    headers = delivery.properties.headers
                    delivery.ack()
                    break
                }
                #expect(headers["cta-error-code"] == .string("invalidValue"))
                #expect(headers["cta-error-path"] == .string("payload.status"))
                #expect(headers["cta-original-queue"] == .string(Topology.resultsQueue))
                #expect(headers["cta-dead-lettered-by"] == .string("coordinator/e2e-0"))
                // Its seq counts as received, so it cannot block a completeness proof.
                let received = try await scene.store.storedSequenceCount(epoch: epoch.description, range: 1...1)
                #expect(received == 1)
                await broker.close()
                // The coordinator still works.
                let scenario = try await scene.define([E2ETests.shell("after", "true")], runMode: .mono)
                let execution = try await scene.run(scenario)
                #expect(execution.phase == .finished)
            }
        }

        @Test("the examples through the command line: cta-coordinator run prints every result and a summary, exit 0")
        func examplesThroughTheCommandLine() async throws {
            try await withScene(agents: 2, group: "demo-pool", tags: ["os": "linux"]) { scene in
                try await scene.waitForMachines()
                let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .deletingLastPathComponent()
                let output = scene.directory + "/run.out"
                var arguments = [
                    try CoordinatorProcess.binary(), "run", "example-parallel", "--definitions", root.appendingPathComponent("examples").path,
                    "--mongo-uri", scene.mongoURI, "--database", scene.databaseName, "--log-level", "warning",
                ]
                for machine in scene.machines { arguments += ["--wait-for", machine.rawValue] }
                let pid = try spawn(arguments, environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }, output: output)
                let status = await waitForExit(pid: pid, timeout: .seconds(180))
                let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
                #expect(status == 0, "cta-coordinator run exited \(status.map(String.init) ?? "-")\n\(printed)\n\(scene.diagnostics())")
                let execution = try #require(try await scene.store.executions(in: .finished, limit: 10).first)
                let stored = try await scene.store.results(execution.executionID)
                let lines = printed.split(separator: "\n").filter { $0.hasPrefix("  ok ") }
                #expect(!stored.isEmpty && lines.count == stored.count, "printed \(lines.count) results, stored \(stored.count)")
                #expect(printed.contains("finished: \(stored.count) ok, 0 failed, 0 partial, 0 inconclusive"))
                #expect(Set(stored.map(\.machine)).isSubset(of: Set(scene.machines)))
            }
        }

        @Test("bad definition files: every problem named with file, line and key; exit 65; nothing stored")
        func badDefinitions() async throws {
            try await withScene(agents: 0) { scene in
                let file = scene.directory + "/bad.yaml"
                try """
                    kind: test
                    id: broken
                    stages:
                      - name: run
                        rn: echo typo
                    ---
                    kind: scenario
                    id: s
                    suite: missing-suite
                    configuration: c
                    runMode: swarm
                    """.write(toFile: file, atomically: true, encoding: .utf8)
                let output = scene.directory + "/apply.out"
                let pid = try spawn(
                    [try CoordinatorProcess.binary(), "apply", file, "--mongo-uri", scene.mongoURI, "--database", scene.databaseName],
                    environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }, output: output)
                let status = await waitForExit(pid: pid)
                let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
                #expect(status == 65, "\(printed)")
                #expect(printed.contains("bad.yaml:5:"), "\(printed)")
                #expect(printed.contains("rn"), "\(printed)")
                #expect(printed.contains("bad.yaml:11:"), "\(printed)")
                #expect(printed.contains("swarm"), "\(printed)")
                #expect(try await scene.store.scenario(ScenarioID(unchecked: "s")) == nil)
            }
        }

        @Test("cancel mid-run from the command line: the test's stop stage runs and the execution ends cancelled")
        func cancelMidRun() async throws {
            try await withScene(agents: 1) { scene in
                try await scene.waitForMachines()
                var long = E2ETests.shell("long", "sleep 60")
                long.stages[0].stop = "echo stopping"
                let scenario = try await scene.define([long, E2ETests.shell("never", "true")], runMode: .mono)
                let created = try await scene.store.requestExecution(of: scenario, requestedBy: "test")
                try await scene.waitFor("the execution running", timeout: .seconds(60)) {
                    try await scene.store.execution(created.executionID)?.phase == .running
                }
                let output = scene.directory + "/cancel.out"
                let pid = try spawn(
                    [
                        try CoordinatorProcess.binary(), "cancel", created.executionID.description, "--reason", "not needed",
                        "--amqp-url", scene.brokerURL, "--mongo-uri", scene.mongoURI, "--database", scene.databaseName,
                    ], environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }, output: output)
                let status = await waitForExit(pid: pid)
                #expect(status == 0, "\((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
                let execution = try await scene.waitForEnd(created.executionID, timeout: .seconds(60))
                #expect(execution.phase == .cancelled, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                #expect(execution.cancelRequested == "not needed")
                let parts = try await scene.store.parts(created.executionID)
                #expect(parts.map(\.finalState) == [.cancelled])
                // The second test never ran.
                #expect(try await scene.store.results(created.executionID).allSatisfy { $0.result.testID.rawValue != "never" || $0.result.status != .ok })
            }
        }

        @Test("running timeout: the agent stops the test at the execution's running timeout; the execution ends timeout")
        func runningTimeout() async throws {
            try await withScene(agents: 1) { scene in
                try await scene.waitForMachines()
                let scenario = try await scene.define(
                    [E2ETests.shell("stuck", "sleep 60")], runMode: .mono, running: Milliseconds(2_000))
                let execution = try await scene.run(scenario, timeout: .seconds(60))
                #expect(execution.phase == .timeout, "\(execution.phase) \(execution.endReason ?? "")\n\(scene.diagnostics())")
                let results = try await scene.store.results(execution.executionID)
                #expect(results.count == 1 && results.allSatisfy { $0.result.status != .ok })
                #expect(try await scene.store.parts(execution.executionID).map(\.finalState) == [.timeout])
            }
        }
    }
}
