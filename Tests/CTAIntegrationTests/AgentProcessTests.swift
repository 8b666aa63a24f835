import CTABroker
import CTACore
import Foundation
import Testing
import CTADefinitions

/// Drives real `cta-agent` processes over the real broker. The test plays the coordinator: it declares the
/// coordinator's queues, publishes dispatches, cancels and drains, and reads everything the agents emit.
///
/// Serialized: the tests share the coordinator queues of the agents' virtual host.
@Suite("Agent: a real cta-agent process", .serialized, .enabled(if: AgentBroker.enabled, "needs CTA_AMQP_AGENTS_URL"))
struct AgentProcessTests {
    /// Every sequenced event of one agent, distinct by id: seqs 1...n with no gap and no seq reused by another id.
    static func expectContiguousSequence(_ events: [Envelope], sourceLocation: SourceLocation = #_sourceLocation) {
        var idsBySeq: [UInt64: Set<EventID>] = [:]
        for event in events where event.type.isSequenced {
            guard let seq = event.seq else {
                Issue.record("sequenced event without seq: \(event.type)", sourceLocation: sourceLocation)
                continue
            }
            idsBySeq[seq, default: []].insert(event.id)
        }
        let seqs = idsBySeq.keys.sorted()
        #expect(seqs == Array(1...UInt64(max(1, seqs.count))).prefix(seqs.count).map { $0 }, "seqs have gaps", sourceLocation: sourceLocation)
        #expect(idsBySeq.values.allSatisfy { $0.count == 1 }, "a seq was used by two events", sourceLocation: sourceLocation)
    }

    /// The final state of a machine's part agrees with what the machine sent: counts and [firstSeq, lastSeq].
    static func expectConsistentFinal(
        _ final: ExecutionStateChange, events: [Envelope], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let distinct = events.distinct
        let results = distinct.results(final.executionID)
        var counts = ResultCounts()
        for result in results { counts.add(result.status) }
        #expect(final.counts == counts, "final counts \(final.counts) vs results \(counts)", sourceLocation: sourceLocation)
        let acked = distinct.first { $0.state?.executionID == final.executionID && $0.state?.state == .acked }
        #expect(final.firstSeq == acked?.seq, sourceLocation: sourceLocation)
        let partSeqs = distinct.filter {
            ($0.state?.executionID == final.executionID && $0.state?.state.isFinal == false)
                || $0.result?.executionID == final.executionID
        }.compactMap(\.seq)
        #expect(final.lastSeq == partSeqs.max(), sourceLocation: sourceLocation)
    }

    @Test(.timeLimit(.minutes(2)))
    func registersHeartbeatsAndAnnouncesItsShutdown() async throws {
        let coordinator = try await CoordinatorStandIn(url: try AgentBroker.requireURL())
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("reg"))!
        let agent = try AgentProcess.start(
            machine: machine, brokerURL: try AgentBroker.requireURL(), directory: try AgentProcess.makeDirectory(machine),
            groups: ["pool-\(machine)"])
        defer { Task { await agent.terminate() } }

        try await coordinator.waitUntil("registration and two heartbeats") { events in
            let mine = events.filter { $0.source == .agent(machine) }
            return mine.contains { $0.type == .agentRegistration } && mine.filter { $0.type == .agentHeartbeat }.count >= 2
        }
        let events = await coordinator.events(from: machine)
        guard case .agentRegistration(let registration)? = events.first(where: { $0.type == .agentRegistration })?.event
        else { Issue.record("no registration"); return }
        #expect(registration.machine == machine)
        #expect(registration.groups.map(\.rawValue) == ["pool-\(machine)"])
        #expect(registration.tags == ["suite": "agent-tests"])
        #expect(registration.cpuCount >= 1 && registration.memoryBytes > 0 && !registration.arch.isEmpty)
        #expect(registration.transport == .amqp)
        guard case .agentHeartbeat(let heartbeat)? = events.last(where: { $0.type == .agentHeartbeat })?.event
        else { Issue.record("no heartbeat"); return }
        #expect(heartbeat.freeSlots == 1 && heartbeat.intervalMs == Milliseconds(1000) && !heartbeat.draining)
        #expect(heartbeat.lastSeq >= 1)
        // Its machine queue and its group's queue exist and are consumed.
        #expect(try await coordinator.broker.queueState(Topology.machineQueue(machine)).consumerCount == 1)
        #expect(try await coordinator.broker.queueState("cta.group.pool-\(machine)").consumerCount == 1)

        agent.signal(SIGTERM)
        #expect(await agent.waitForExit(timeout: .seconds(30)) == 0, "agent log:\n\(agent.log)")
        try await coordinator.waitUntil("the shutdown event") { events in
            events.contains { $0.source == .agent(machine) && $0.type == .agentShutdown }
        }
        Self.expectContiguousSequence(await coordinator.events(from: machine))
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(3)))
    func monoRunWithJUnitTAPAndExitCodes() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("mono"))!
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: try AgentProcess.makeDirectory(machine))
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        let execution = ExecutionID()
        let tap = "printf 'TAP version 13\\n1..4\\nok 1 - first\\nnot ok 2 - second\\nok 3 - third # SKIP later\\nok 4 - fourth\\n'"
        let tests = [
            Work.test("junit", [Work.stage("prepare", "mkdir -p out"), Work.stage("run", Work.junit(count: 3, failing: [1], file: "out/r.xml") + "; exit 1", report: ReportSpec(format: .junit, path: "out/r.xml"))]),
            Work.test("tap", [Work.stage("prove", tap, report: ReportSpec(format: .tap))]),
            Work.test("passes", [Work.stage("run", "test \"$SUITE_LEVEL\" = from-execution && test -n \"$CTA_EXECUTION_ID\" && echo fine")]),
            Work.test("fails", [Work.stage("run", "echo about to fail; exit 3")]),
            Work.test("missing-command", [Work.stage("run", "definitely-not-a-command-cta")]),
            Work.test("optional-fails", [Work.stage("ok", "true"), Work.stage("extra", "exit 1", mandatory: false)]),
        ]
        let dispatch = ExecutionDispatch(execution: Work.context(execution), attempt: 1, tests: tests)
        try await coordinator.publish(dispatch, routingKey: Topology.machineRoutingKey(machine))

        try await coordinator.waitUntil("the final state") { $0.finalState(execution) != nil }
        let events = await coordinator.events(from: machine)
        let distinct = events.distinct
        let states = distinct.states(execution).map(\.state)
        #expect(states == [.acked, .running, .finished])
        let results = distinct.results(execution)
        let byName = Dictionary(grouping: results, by: { "\($0.testID)/\($0.name)" })
        #expect(byName["junit/case-0"]?.first?.status == .ok)
        #expect(byName["junit/case-1"]?.first?.status == .failed)
        #expect(byName["junit/case-2"]?.first?.status == .ok)
        #expect(results.filter { $0.testID.rawValue == "junit" }.count == 3, "JUnit cases are the results; the exit code is not a fourth")
        #expect(results.filter { $0.testID.rawValue == "tap" }.count == 4)
        #expect(results.first { $0.testID.rawValue == "tap" && $0.name.contains("second") }?.status == .failed)
        #expect(results.first { $0.testID.rawValue == "passes" }?.status == .ok)
        let fails = try #require(results.first { $0.testID.rawValue == "fails" })
        #expect(fails.status == .failed)
        #expect(fails.message?.contains("exit 3") == true)
        #expect(fails.log != nil, "the log is attached")
        let missing = try #require(results.first { $0.testID.rawValue == "missing-command" })
        #expect(missing.status == .inconclusive || missing.status == .failed)
        #expect(missing.message?.contains("not found") == true, "\(missing.message ?? "nil")")
        #expect(results.first { $0.testID.rawValue == "optional-fails" }?.status == .partial)
        let final = try #require(distinct.finalState(execution))
        Self.expectConsistentFinal(final, events: events)
        Self.expectContiguousSequence(events)
        #expect(await coordinator.undecodable.isEmpty)
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(2)))
    func malformedWorkIsDeadLetteredAndTheAgentCarriesOn() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("bad"))!
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: try AgentProcess.makeDirectory(machine))
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        try await coordinator.publishRaw("{not json", routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.publishRaw(
            #"{"id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"execution.dispatch","version":"1.0","source":"coordinator/x","time":"2025-03-14T18:00:00Z","payload":{"execution":{"executionID":"0f8e2a4c-6b1d-4e7f-8a93-2c5d7e9f1b30","scenario":{"id":"s","name":"S"},"suite":{"id":"t","name":"T"},"runMode":"mono","timeouts":{"pendingDeadline":"2099-03-14T19:00:00Z","runningTimeoutMs":60000},"requestedBy":"x"},"attempt":1,"tests":[{"id":"a","name":"A","stages":[{"name":"run","run":42}]}]}}"#,
            routingKey: Topology.machineRoutingKey(machine))
        let execution = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(execution), tests: [Work.test("after", [Work.stage("run", "true")])]),
            routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("the good work after the bad") { $0.finalState(execution) != nil }

        let deadLetters = try await coordinator.broker.consume(queue: Topology.deadLetterQueue, prefetch: 10)
        var reasons: [String: String] = [:]
        for try await delivery in deadLetters {
            if delivery.properties.headers[Topology.DeadLetterHeader.deadLetteredBy]?.stringValue == "agent/\(machine)" {
                reasons[delivery.properties.headers[Topology.DeadLetterHeader.code]?.stringValue ?? "?"] =
                    delivery.properties.headers[Topology.DeadLetterHeader.path]?.stringValue
                #expect(delivery.properties.headers[Topology.DeadLetterHeader.originalQueue]?.stringValue == Topology.machineQueue(machine))
            }
            delivery.ack()
            if reasons.count == 2 { break }
        }
        #expect(reasons == ["malformedJSON": "", "wrongType": "payload.tests[0].stages[0].run"])
        #expect((await coordinator.events(from: machine)).distinct.results(execution).first?.status == .ok)
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(3)))
    func groupWorkGoesToExactlyOneMemberEach() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let group = ServiceEnvironment.uniqueName("pool")
        let (machines, agents) = try AgentProcess.startNew(["g1", "g2"], brokerURL: url, groups: [group])
        defer { for agent in agents { Task { await agent.terminate() } } }
        try await coordinator.waitForRegistration(of: machines)
        let executions = (0..<6).map { _ in ExecutionID() }
        for execution in executions {
            let dispatch = ExecutionDispatch(
                execution: Work.context(execution, mode: .group), tests: [Work.test("slow", [Work.stage("run", "sleep 0.7; echo done")])])
            try await coordinator.publish(dispatch, routingKey: Topology.groupRoutingKey(GroupName(group)!))
        }
        try await coordinator.waitUntil("six finished executions") { events in
            executions.allSatisfy { events.finalState($0) != nil }
        }
        let events = await coordinator.events
        var takenBy: [MachineName: Int] = [:]
        for execution in executions {
            let acks = events.distinct.states(execution).filter { $0.state == .acked }
            #expect(acks.count == 1, "exactly one member took \(execution)")
            if let machine = acks.first?.machine { takenBy[machine, default: 0] += 1 }
            #expect(events.distinct.results(execution).map(\.status) == [.ok])
        }
        #expect(takenBy.count == 2, "both members worked (one slot each, 0.7 s tests): \(takenBy)")
        for machine in machines { Self.expectContiguousSequence(await coordinator.events(from: machine)) }
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(3)))
    func parallelTestsAreStolenOneAtATimeAndEachAgentReportsItsPart() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let (machines, agents) = try AgentProcess.startNew(["p1", "p2"], brokerURL: url)
        defer { for agent in agents { Task { await agent.terminate() } } }
        try await coordinator.waitForRegistration(of: machines)
        let execution = ExecutionID()
        let context = Work.context(execution, mode: .parallel)
        try await coordinator.broker.declare(Topology.parallelQueueDeclaration(execution: execution))
        try await coordinator.broker.declare(Topology.parallelBinding(execution: execution))
        let count = 12
        for index in 0..<count {
            let test = TestDispatch(
                execution: context, index: index, count: count,
                test: Work.test("t\(index)", [Work.stage("run", index == 5 ? "sleep 0.3; exit 1" : "sleep 0.3")]))
            try await coordinator.publish(test, routingKey: Topology.parallelRoutingKey(execution: execution))
        }
        for machine in machines {
            let announcement = ExecutionDispatch(
                execution: context, tests: [], parallel: ParallelWork(execution: execution, testCount: count))
            try await coordinator.publish(announcement, routingKey: Topology.machineRoutingKey(machine))
        }
        try await coordinator.waitUntil("a result for every test") { events in
            Set(events.compactMap(\.result).filter { $0.executionID == execution }.compactMap(\.index)).count == count
        }
        // As the coordinator does when every test has a result: delete the queue; each agent then ends its part.
        _ = try await coordinator.broker.deleteQueue(Topology.parallelQueue(execution: execution))
        try await coordinator.waitUntil("both parts final") { events in
            machines.allSatisfy { events.finalState(execution, machine: $0) != nil }
        }
        let events = await coordinator.events
        let results = events.distinct.results(execution)
        #expect(results.count == count, "every test exactly once")
        #expect(Set(results.compactMap(\.index)) == Set(0..<count))
        #expect(results.first { $0.index == 5 }?.status == .failed)
        var total: UInt64 = 0
        for machine in machines {
            let mine = await coordinator.events(from: machine)
            let final = try #require(mine.distinct.finalState(execution))
            #expect(final.state == .finished)
            total += final.counts.total
            #expect(final.counts.total > 0, "\(machine) stole some of the work")
            Self.expectConsistentFinal(final, events: mine)
            Self.expectContiguousSequence(mine)
        }
        #expect(total == UInt64(count))
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(2)))
    func cancelMidTestStopsTheProcessTreeAndKeepsTheEvidence() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("cancel"))!
        let directory = try AgentProcess.makeDirectory(machine)
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: directory)
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        let execution = ExecutionID()
        let pidFile = directory + "/grandchild.pid"
        let stopMarker = directory + "/stop-ran"
        let test = Work.test("long", [
            Work.stage(
                "run", "echo started; (sleep 300; echo never) & echo $! > \(pidFile); sleep 300",
                stop: "echo stopping; touch \(stopMarker)")
        ])
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(execution), tests: [test, Work.test("never-runs", [Work.stage("run", "true")])]),
            routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("running") { $0.states(execution).contains { $0.state == .running } }
        while !FileManager.default.fileExists(atPath: pidFile) { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .milliseconds(300))
        let grandchild = try #require(Int32((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))

        let cancel = ExecutionCancel(
            executionID: execution, cause: .requested, reason: "superseded", requestedBy: "user/test",
            tombstoneUntil: Timestamp.now().adding(Milliseconds(3_600_000)))
        try await coordinator.publish(cancel, routingKey: Topology.broadcastRoutingKey)
        try await coordinator.waitUntil("the cancelled state") { $0.finalState(execution) != nil }

        let events = await coordinator.events(from: machine).distinct
        let final = try #require(events.finalState(execution))
        #expect(final.state == .cancelled)
        #expect(final.reason == "superseded")
        let results = events.results(execution)
        #expect(results.count == 1, "the stopped test has a result; the test after it never ran")
        #expect(results.first?.status == .inconclusive)
        #expect(results.first?.log != nil, "the log up to the cancel is kept")
        #expect(FileManager.default.fileExists(atPath: stopMarker), "the stop command ran")
        #expect(kill(grandchild, 0) == -1 || Self.isZombie(grandchild), "the background grandchild is gone")
        if let log = results.first?.log {
            let stored = try String(contentsOfFile: directory + "/state/attachments/\(log.id)", encoding: .utf8)
            #expect(stored.contains("started") && stored.contains("stopping"))
        }
        Self.expectConsistentFinal(final, events: events)
        await coordinator.close()
    }

    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        return stat[stat.index(close, offsetBy: 2)] == "Z"
    }

    @Test(.timeLimit(.minutes(2)))
    func runningAndPendingTimeouts() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("timeout"))!
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: try AgentProcess.makeDirectory(machine))
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        let expired = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(
                execution: Work.context(expired, pendingDeadline: Timestamp.now().adding(Milliseconds(0))),
                tests: [Work.test("too-late", [Work.stage("run", "true")])]),
            routingKey: Topology.machineRoutingKey(machine))
        let slow = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(
                execution: Work.context(slow, runningTimeoutMs: 1500),
                tests: [Work.test("hangs", [Work.stage("run", "sleep 120")])]),
            routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("both final") { $0.finalState(expired) != nil && $0.finalState(slow) != nil }

        let events = await coordinator.events(from: machine).distinct
        let pending = try #require(events.finalState(expired))
        #expect(pending.state == .timeout)
        #expect(pending.reason?.contains("pending deadline") == true)
        #expect(events.states(expired).map(\.state) == [.acked, .timeout], "never ran")
        #expect(events.results(expired).isEmpty)
        let running = try #require(events.finalState(slow))
        #expect(running.state == .timeout)
        #expect(running.reason?.contains("running timeout") == true)
        #expect(events.results(slow).map(\.status) == [.inconclusive])
        Self.expectConsistentFinal(running, events: events)
        Self.expectContiguousSequence(events)
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(3)))
    func killNineMidRunThenRestartLosesAndDuplicatesNothing() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("kill"))!
        let directory = try AgentProcess.makeDirectory(machine)
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: directory)
        try await coordinator.waitForRegistration(of: [machine])

        let execution = ExecutionID()
        let count = 16
        let tests = (0..<count).map { Work.test("t\($0)", [Work.stage("run", "sleep 0.25; echo test \($0)")]) }
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(execution), tests: tests), routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("a few results") { $0.results(execution).count >= 4 }
        // Results stop reaching the coordinator: the next ones stay in the agent's spool when it is killed.
        try await coordinator.broker.unbindQueue(Topology.resultsQueue, exchange: Topology.eventsExchange, routingKey: "test.result")
        try await Task.sleep(for: .milliseconds(900))
        agent.signal(SIGKILL)
        #expect(await agent.waitForExit(timeout: .seconds(10)) == 128 + SIGKILL)
        try await coordinator.broker.bindQueue(Topology.resultsQueue, exchange: Topology.eventsExchange, routingKey: "test.result")

        let restarted = try AgentProcess.start(machine: machine, brokerURL: url, directory: directory)
        defer { Task { await restarted.terminate() } }
        try await coordinator.waitUntil(timeout: .seconds(90), "the final state after the restart") { $0.finalState(execution) != nil }
        try await Task.sleep(for: .milliseconds(500))

        let events = await coordinator.events(from: machine)
        let results = events.distinct.results(execution)
        let perTest = Dictionary(grouping: results, by: \.testID.rawValue)
        #expect(perTest.count == count, "every test has a result")
        #expect(perTest.values.allSatisfy { $0.count == 1 }, "no test has two results: \(perTest.filter { $0.value.count > 1 }.keys.sorted())")
        let interrupted = results.filter { $0.message?.hasPrefix("interrupted") == true }
        #expect(interrupted.count <= 1, "at most the test running at the kill is interrupted")
        #expect(results.filter { $0.status == .ok }.count >= count - 1)
        let final = try #require(events.distinct.finalState(execution))
        #expect(final.state == .finished)
        Self.expectConsistentFinal(final, events: events)
        Self.expectContiguousSequence(events)
        #expect(events.filter { $0.type == .agentRegistration }.count == 2)
        await coordinator.close()
    }

    @Test(.timeLimit(.minutes(2)))
    func drainStopsSharedWorkAndResumeTakesItAgain() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let machine = MachineName(ServiceEnvironment.uniqueName("drain"))!
        let group = ServiceEnvironment.uniqueName("dpool")
        let agent = try AgentProcess.start(machine: machine, brokerURL: url, directory: try AgentProcess.makeDirectory(machine), groups: [group])
        defer { Task { await agent.terminate() } }
        try await coordinator.waitForRegistration(of: [machine])

        try await coordinator.publish(
            AgentDrain(machine: machine, drain: true, reason: "maintenance", requestedBy: "user/test"),
            routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("a draining heartbeat") { events in
            events.contains { envelope in
                guard envelope.source == .agent(machine), case .agentHeartbeat(let beat) = envelope.event else { return false }
                return beat.draining
            }
        }
        #expect(try await coordinator.broker.queueState("cta.group.\(group)").consumerCount == 0)
        let execution = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(execution, mode: .group), tests: [Work.test("t", [Work.stage("run", "true")])]),
            routingKey: "group.\(group)")
        try await Task.sleep(for: .seconds(1.5))
        #expect((await coordinator.events).states(execution).isEmpty, "a drained agent takes no group work")

        try await coordinator.publish(
            AgentDrain(machine: machine, drain: false, requestedBy: "user/test"), routingKey: Topology.machineRoutingKey(machine))
        try await coordinator.waitUntil("the group work after resume") { $0.finalState(execution) != nil }
        #expect((await coordinator.events).distinct.results(execution).map(\.status) == [.ok])
        await coordinator.close()
    }
    @Test(.timeLimit(.minutes(2)))
    func gracefulShutdownLetsRunningTestsFinishAndASecondSignalCancels() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()

        // First SIGTERM: the running test finishes, queued work ends cancelled, agent.shutdown, exit 0.
        let calm = MachineName(ServiceEnvironment.uniqueName("drainstop"))!
        let first = try AgentProcess.start(machine: calm, brokerURL: url, directory: try AgentProcess.makeDirectory(calm))
        try await coordinator.waitForRegistration(of: [calm])
        let running = ExecutionID()
        let queued = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(running), tests: [Work.test("finishes", [Work.stage("run", "sleep 2; echo finished")])]),
            routingKey: Topology.machineRoutingKey(calm))
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(queued), tests: [Work.test("waits", [Work.stage("run", "true")])]),
            routingKey: Topology.machineRoutingKey(calm))
        try await coordinator.waitUntil("one running, one taken") { events in
            events.states(running).contains { $0.state == .running } && events.states(queued).contains { $0.state == .acked }
        }
        first.signal(SIGTERM)
        // Work that arrives during the shutdown is not taken, and not handed back and forth: it waits in the queue.
        try await coordinator.waitUntil("the draining heartbeat") { events in
            events.contains { envelope in
                guard envelope.source == .agent(calm), case .agentHeartbeat(let beat) = envelope.event else { return false }
                return beat.draining
            }
        }
        let late = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(late), tests: [Work.test("late", [Work.stage("run", "true")])]),
            routingKey: Topology.machineRoutingKey(calm))
        #expect(await first.waitForExit(timeout: .seconds(30)) == 0, "agent log:\n\(first.log)")
        #expect(first.log.components(separatedBy: "not taking work while shutting down").count - 1 == 1, "agent log:\n\(first.log)")
        #expect(try await coordinator.broker.queueState(Topology.machineQueue(calm)).messageCount == 1)
        try await coordinator.waitUntil("the shutdown event") { $0.contains { $0.source == .agent(calm) && $0.type == .agentShutdown } }
        var events = await coordinator.events(from: calm).distinct
        #expect(events.finalState(running)?.state == .finished)
        #expect(events.results(running).map(\.status) == [.ok], "the running test was allowed to finish")
        #expect(events.finalState(queued)?.state == .cancelled, "work taken but not started ends at shutdown")
        #expect(events.results(queued).isEmpty)
        #expect(events.states(late).isEmpty, "work sent during the shutdown is left for the next start")
        Self.expectContiguousSequence(events)

        // A second SIGTERM cancels the running test at once.
        let hurried = MachineName(ServiceEnvironment.uniqueName("hardstop"))!
        let second = try AgentProcess.start(machine: hurried, brokerURL: url, directory: try AgentProcess.makeDirectory(hurried))
        try await coordinator.waitForRegistration(of: [hurried])
        let long = ExecutionID()
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(long), tests: [Work.test("long", [Work.stage("run", "sleep 300")])]),
            routingKey: Topology.machineRoutingKey(hurried))
        try await coordinator.waitUntil("running") { $0.states(long).contains { $0.state == .running } }
        second.signal(SIGTERM)
        try await Task.sleep(for: .milliseconds(500))
        second.signal(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(15)) == 0, "agent log:\n\(second.log)")
        try await coordinator.waitUntil("the shutdown event") { $0.contains { $0.source == .agent(hurried) && $0.type == .agentShutdown } }
        events = await coordinator.events(from: hurried).distinct
        #expect(events.finalState(long)?.state == .cancelled)
        #expect(events.results(long).first?.status == .inconclusive)
        #expect(events.results(long).first?.message?.contains("shutting down") == true, "\(events.results(long).first?.message ?? "nil")")
        await coordinator.close()
    }
    @Test(.timeLimit(.minutes(2)))
    func stressRunsOnEveryMachineAndATombstoneStopsLateWork() async throws {
        let url = try AgentBroker.requireURL()
        let coordinator = try await CoordinatorStandIn(url: url)
        try await coordinator.startConsuming()
        let (machines, agents) = try AgentProcess.startNew(["s1", "s2"], brokerURL: url)
        defer { for agent in agents { Task { await agent.terminate() } } }
        try await coordinator.waitForRegistration(of: machines)
        // Stress: the same execution on every machine, each reporting its own part.
        let stress = ExecutionID()
        for machine in machines {
            try await coordinator.publish(
                ExecutionDispatch(
                    execution: Work.context(stress, mode: .stress),
                    tests: [Work.test("load", [Work.stage("run", "echo \"$CTA_TEST_ID on $(hostname)\"")])]),
                routingKey: Topology.machineRoutingKey(machine))
        }
        try await coordinator.waitUntil("both parts final") { events in
            machines.allSatisfy { events.finalState(stress, machine: $0) != nil }
        }
        for machine in machines {
            let mine = await coordinator.events(from: machine)
            #expect(mine.distinct.finalState(stress)?.state == .finished)
            #expect(mine.distinct.results(stress).map(\.status) == [.ok])
            Self.expectConsistentFinal(try #require(mine.distinct.finalState(stress)), events: mine)
        }

        // A cancel broadcast before the work arrives: the later dispatch is acked, reported, and never run.
        let cancelled = ExecutionID()
        try await coordinator.publish(
            ExecutionCancel(
                executionID: cancelled, cause: .requested, reason: "cancelled before dispatch", requestedBy: "user/test",
                tombstoneUntil: Timestamp.now().adding(Milliseconds(600_000))),
            routingKey: Topology.broadcastRoutingKey)
        try await Task.sleep(for: .milliseconds(500))
        let marker = NSTemporaryDirectory() + "cta-must-not-run-\(cancelled)"
        try await coordinator.publish(
            ExecutionDispatch(execution: Work.context(cancelled), tests: [Work.test("never", [Work.stage("run", "touch \(marker)")])]),
            routingKey: Topology.machineRoutingKey(machines[0]))
        try await coordinator.waitUntil("the cancelled final state") { $0.finalState(cancelled) != nil }
        let events = await coordinator.events(from: machines[0]).distinct
        #expect(events.states(cancelled).map(\.state) == [.acked, .cancelled])
        #expect(events.finalState(cancelled)?.reason == "cancelled before dispatch")
        #expect(events.results(cancelled).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: marker))
        await coordinator.close()
    }
}
