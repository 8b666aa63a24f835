import CTABroker
import CTACore
import Foundation
import Logging
import CTADefinitions

// Proving executions complete: a machine's part is complete when every event of its agent's sequence between its
// `acked` and its final state is stored and its stored results match the counts it reported; an execution ends
// when every part it needs is complete.

extension Coordinator {
    /// After results of `execution` were stored: a part waiting for them may now be complete, and a parallel
    /// execution whose every test has a result gets its queue deleted (which makes the agents report their finals).
    func resultsArrived(for execution: ExecutionID) async {
        do {
            guard let record = try await store.execution(execution), !record.phase.isEnd else { return }
            if record.runMode == .parallel, record.parallelQueueDeleted != true,
                record.counts.total >= UInt64(record.tests.count)
            {
                try await checkCompletion(record)
                return
            }
            let parts = try await store.parts(execution)
            if parts.contains(where: { $0.finalState != nil && !$0.complete }) { try await checkCompletion(record) }
        } catch {
            logger.warning("completion check failed; the sweep retries", metadata: ["cta.execution": "\(execution)", "cta.error": "\(error)"])
        }
    }

    /// After a state was stored.
    func stateArrived(_ change: ExecutionStateChange) async {
        do {
            // The first `acked` moves the execution to running and returns it in the same call.
            let started = change.state == .acked || change.state == .running
            var found = started ? try await store.markRunning(change.executionID, at: Date()) : nil
            // A `running` that follows its `acked` needs nothing more: the late-machine check was made on `acked`.
            if found == nil, change.state == .running { return }
            if found == nil { found = try await store.execution(change.executionID) }
            guard let record = found else {
                logger.notice("state for an unknown execution", metadata: ["cta.execution": "\(change.executionID)", "cta.machine": "\(change.machine)"])
                return
            }
            switch change.state {
            case .acked, .running:
                if let reason = record.cancelRequested {
                    // A machine that took the work after the cancel was broadcast (it never saw the tombstone).
                    try await sendCancel(record, cause: .requested, reason: reason, to: change.machine)
                }
            case .finished, .cancelled, .timeout:
                try await checkCompletion(record)
            }
        } catch {
            logger.warning("state handling failed; the sweep retries", metadata: ["cta.execution": "\(change.executionID)", "cta.error": "\(error)"])
        }
    }

    /// Marks complete parts, deletes a parallel queue once every test has a result, and ends the execution when
    /// every part it needs is complete. Safe to run concurrently on several coordinators: each step is idempotent
    /// and ending is claimed in the store.
    func checkCompletion(_ record: ExecutionRecord) async throws {
        guard !record.phase.isEnd else { return }
        let execution = record.executionID
        var parts = try await store.parts(execution)
        for index in parts.indices where parts[index].finalState != nil && !parts[index].complete {
            if try await isComplete(parts[index], execution: execution) {
                try await store.markPartComplete(parts[index]._id)
                parts[index].complete = true
            }
        }
        var queueDeleted = record.parallelQueueDeleted == true
        if record.runMode == .parallel, !queueDeleted {
            guard try await store.resultIndexCount(execution) >= record.tests.count else { return }
            try await deleteParallelQueue(execution)
            queueDeleted = true
        }
        guard !parts.isEmpty, parts.allSatisfy(\.complete) else { return }
        switch record.runMode {
        case .mono, .group:
            break
        case .stress:
            let expected = Set(record.dispatch?.machines ?? [])
            guard expected.isSubset(of: Set(parts.map(\.machine))) else { return }
        case .parallel:
            guard queueDeleted else { return }
        }
        let finals = parts.compactMap(\.finalState)
        let phase: ExecutionPhase =
            finals.contains(.cancelled) ? .cancelled : finals.contains(.timeout) ? .timeout : .finished
        let reason = parts.compactMap(\.reason).first
        let counts = try await store.resultCounts(execution, machine: nil)
        guard try await end(record, phase: phase, reason: reason, counts: counts) else { return }
        logger.info(
            "execution ended",
            metadata: [
                "cta.execution": "\(execution)", "cta.phase": "\(phase.rawValue)", "cta.ok": "\(counts.ok)",
                "cta.failed": "\(counts.failed)", "cta.partial": "\(counts.partial)", "cta.inconclusive": "\(counts.inconclusive)",
            ])
        try await store.recordDurations(execution)
    }

    /// Whether every event of the part's range is stored and the stored results match the reported counts.
    private func isComplete(_ part: PartRecord, execution: ExecutionID) async throws -> Bool {
        guard let first = part.firstSeq, let last = part.lastSeq, first <= last else { return false }
        let stored = try await store.storedSequenceCount(epoch: part.epoch, range: first...last)
        guard stored >= Int(last - first + 1) else { return false }
        let counts = try await store.resultCounts(execution, machine: part.machine)
        if counts != part.reportedCounts {
            logger.warning(
                "a machine's stored results differ from what it reported",
                metadata: ["cta.execution": "\(execution)", "cta.machine": "\(part.machine)", "cta.stored": "\(counts)", "cta.reported": "\(part.reportedCounts.map { "\($0)" } ?? "-")"])
            return false
        }
        return true
    }

    func deleteParallelQueue(_ execution: ExecutionID) async throws {
        do throws(AMQPError) {
            _ = try await connection.deleteQueue(Topology.parallelQueue(execution: execution))
        } catch {
            guard error.code == .notFound else { throw error }
        }
        try await store.markParallelQueueDeleted(execution)
    }

    /// Publishes a cancel for `record`: to every machine queue, or to one machine's.
    func sendCancel(_ record: ExecutionRecord, cause: CancelCause, reason: String, to machine: MachineName? = nil) async throws {
        let cancel = ExecutionCancel(
            executionID: record.executionID, cause: cause, reason: reason, requestedBy: source.description,
            tombstoneUntil: Timestamp(record.pendingDeadline))
        let key = machine.map(Topology.machineRoutingKey) ?? Topology.broadcastRoutingKey
        try await publish(cancel, routingKey: key)
    }
}
