import CTABroker
import CTACore
import CTAMessaging
import Foundation
import Logging
import CTADefinitions

// Machines lost mid-run: an agent whose heartbeats stopped (three intervals) while it held part of a running
// execution. Its part is closed by one coordinator; the tests it never reported are re-queued once where the run
// mode shares work (group, parallel), and otherwise recorded `inconclusive` with the reason. Never for an
// assertion failure: only tests without any result are affected.

extension Coordinator {
    func handleLostMachines(_ running: [ExecutionRecord], now: Date) async throws {
        guard !running.isEmpty else { return }
        let machines = try await store.machines()
        let offline = Dictionary(
            machines.filter { !$0.isOnline(at: now) }.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        guard !offline.isEmpty else { return }
        let executions = Dictionary(running.map { ($0._id, $0) }, uniquingKeysWith: { first, _ in first })
        for part in try await store.openParts(on: Array(offline.keys)) {
            guard let record = executions[part.executionID], record.cancelRequested == nil,
                let machine = offline[part.machine]
            else { continue }
            try await handleLost(part, machine: machine, record: record, now: now)
        }
    }

    private func handleLost(_ part: PartRecord, machine: MachineRecord, record: ExecutionRecord, now: Date) async throws {
        let execution = record.executionID
        let results = try await store.results(execution)
        let reported = Set(results.filter { $0.machine == part.machine }.map(\.result.testID))
        var requeue: [(index: Int, test: TestDefinition)] = []
        if record.runMode == .parallel {
            guard record.parallelQueueDeleted != true else { return }
            // Wait until the queue is drained, so only tests that were taken (by the lost machine or by another
            // machine still running them) are missing.
            do throws(AMQPError) {
                let state = try await connection.queueState(Topology.parallelQueue(execution: execution))
                guard state.messageCount == 0 else { return }
            } catch {
                // The queue is gone (expired, or deleted by a cancel): nothing can be re-queued into it.
                guard error.code == .notFound else { throw error }
                return
            }
            let done = Set(results.compactMap(\.result.index))
            requeue = record.tests.enumerated().filter { !done.contains($0.offset) && part.attempt < 2 }.map { ($0.offset, $0.element) }
        } else if record.runMode == .group, part.attempt < 2 {
            let done = Set(results.map(\.result.testID))
            requeue = record.tests.enumerated().filter { !done.contains($0.element.id) }.map { ($0.offset, $0.element) }
        }
        let since = Timestamp(machine.lastSeenAt).rfc3339
        let why = "machine \(part.machine) was lost (no heartbeat since \(since))"
        guard try await store.closeLostPart(part._id, reason: why, at: now) else { return }
        logger.warning("machine lost mid-run", metadata: ["cta.execution": "\(execution)", "cta.machine": "\(part.machine)"])
        if !requeue.isEmpty {
            try await requeueOnce(requeue, record: record)
            logger.info("re-queued the lost machine's tests", metadata: ["cta.execution": "\(execution)", "cta.tests": "\(requeue.count)"])
            return
        }
        // Tests the machine never reported become inconclusive results, keyed so that another coordinator
        // doing the same writes nothing new.
        let missing = record.tests.enumerated().filter { !reported.contains($0.element.id) }
        let synthetic = missing.enumerated().map { position, item in
            ResultRecord(
                id: "lost/\(execution)/\(part.machine)/\(item.offset)", executionID: execution.description,
                machine: part.machine, epoch: "lost/\(execution)/\(part.machine)", seq: UInt64(position + 1), time: now,
                receivedAt: now,
                result: TestResult(
                    executionID: execution, machine: part.machine, attempt: part.attempt, testID: item.element.id,
                    index: record.runMode == .parallel ? item.offset : nil, name: item.element.name, status: .inconclusive,
                    message: "\(why): the test did not report a result", durationMs: Milliseconds(0),
                    origin: .exitCode(stage: "agent", exitCode: nil, signal: nil)))
        }
        let writes = try await store.storeCoordinatorResults(synthetic)
        var counts = ResultCounts()
        for write in writes where write == .stored { counts.inconclusive += 1 }
        try await store.addToCounters([execution: counts])
        if let refreshed = try await store.execution(execution) { try await checkCompletion(refreshed) }
    }

    /// Publishes the tests again with attempt 2: into the parallel queue, or as one dispatch to the group.
    private func requeueOnce(_ tests: [(index: Int, test: TestDefinition)], record: ExecutionRecord) async throws {
        let context = dispatchContext(record)
        var messages: [OutgoingMessage] = []
        switch record.runMode {
        case .parallel:
            for (index, test) in tests {
                let payload = TestDispatch(execution: context, index: index, count: record.tests.count, attempt: 2, test: test)
                messages.append(
                    try OutgoingMessage.envelope(
                        Envelope(source: source, payload: payload), exchange: Topology.dispatchExchange,
                        routingKey: Topology.parallelRoutingKey(execution: record.executionID)))
            }
        case .group:
            guard let group = record.dispatch?.group else { return }
            let payload = ExecutionDispatch(execution: context, attempt: 2, tests: tests.map(\.test))
            messages.append(
                try OutgoingMessage.envelope(
                    Envelope(source: source, payload: payload), exchange: Topology.dispatchExchange,
                    routingKey: Topology.groupRoutingKey(group)))
        case .mono, .stress:
            return
        }
        for result in await connection.publish(contentsOf: messages) { try result.get() }
    }
}
