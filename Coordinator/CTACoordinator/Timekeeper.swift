import CTABroker
public import CTACore
import Foundation
import Logging
import CTADefinitions

// The timekeeper: deadlines of pending and running executions, cancellation, and a sweep that finishes
// completions whose last event was handled by another coordinator (or whose check failed).

extension Coordinator {
    func sweepLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: settings.sweepInterval)
            guard !Task.isCancelled else { return }
            do {
                try await sweep(now: Date())
            } catch {
                logger.warning("sweep failed", metadata: ["cta.error": "\(error)"])
            }
        }
    }

    func sweep(now: Date) async throws {
        for execution in try await store.executionsAwaitingCompletion() {
            if let record = try await store.execution(execution) { try await checkCompletion(record) }
        }
        let running = try await store.executions(in: .running, limit: 500)
        for record in running {
            if record.runMode == .parallel, record.parallelQueueDeleted != true { try await checkCompletion(record) }
            try await enforceRunningTimeout(record, now: now)
        }
        try await handleLostMachines(running, now: now)
        for record in try await store.executions(in: .pending, limit: 500) where record.dispatchedAt != nil {
            // Dispatched, but no machine took it before its deadline (undispatched ones are the composer's).
            guard now >= record.pendingDeadline else { continue }
            if record.runMode == .parallel { try await deleteParallelQueue(record.executionID) }
            let phase: ExecutionPhase = record.cancelRequested == nil ? .timeout : .cancelled
            let reason = record.cancelRequested ?? "no machine started it before its pending deadline"
            if try await end(record, phase: phase, reason: reason, counts: ResultCounts()) {
                logger.info("execution ended before it started", metadata: ["cta.execution": "\(record.executionID)", "cta.phase": "\(phase.rawValue)"])
            }
        }
        try await sweepVMs(now: now)
        try await resumeWebhookDeliveries(now: now)
    }

    /// Past its running timeout an execution is cancelled with cause `timeout` (agents run the stop stages, keep
    /// evidence and report `timeout`); if it has still not ended after the grace period, it is ended `timeout`
    /// with the reason of what is missing.
    private func enforceRunningTimeout(_ record: ExecutionRecord, now: Date) async throws {
        guard let started = record.startedAt else { return }
        let deadline = started.addingTimeInterval(Double(record.runningTimeoutMs) / 1000)
        guard now >= deadline else { return }
        if record.cancelRequested == nil {
            let reason = "running timeout of \(record.runningTimeoutMs) ms passed"
            guard try await store.requestCancel(record.executionID, reason: reason) else { return }
            try await sendCancel(record, cause: .timeout, reason: reason)
            if record.runMode == .parallel { try await deleteParallelQueue(record.executionID) }
            logger.info("execution ran out of time; cancelling", metadata: ["cta.execution": "\(record.executionID)"])
            return
        }
        guard now >= deadline.addingTimeInterval(settings.timeoutGrace.timeInterval) else { return }
        let parts = try await store.parts(record.executionID)
        var missing: [String] = []
        for part in parts where !part.complete {
            if let first = part.firstSeq, let last = part.lastSeq {
                missing.append("\(part.machine): events \(first)...\(last) of epoch \(part.epoch) not all stored")
            } else {
                missing.append("\(part.machine): no final state")
            }
        }
        let reason = "running timeout; " + (missing.isEmpty ? "no machine reported" : missing.joined(separator: "; "))
        let counts = try await store.resultCounts(record.executionID, machine: nil)
        if try await end(record, phase: .timeout, reason: reason, counts: counts) {
            logger.warning("execution ended by its running timeout", metadata: ["cta.execution": "\(record.executionID)", "cta.reason": "\(reason)"])
        }
    }

    /// Cancels an execution: recorded first (so a machine that takes it later is told), then a tombstone and
    /// cancel broadcast to every machine; a parallel execution's queue is deleted so no further test is taken.
    /// An execution no machine took yet ends `cancelled` at once.
    public func cancel(_ execution: ExecutionID, reason: String) async throws -> Bool {
        guard try await store.requestCancel(execution, reason: reason), let record = try await store.execution(execution)
        else { return false }
        if record.dispatchedAt == nil {
            // The composer ends it when it next claims it; end it now if no composer holds it.
            if record.claimedBy == nil {
                _ = try await end(record, phase: .cancelled, reason: reason, counts: ResultCounts())
            }
            return true
        }
        try await sendCancel(record, cause: .requested, reason: reason)
        if record.runMode == .parallel { try await deleteParallelQueue(execution) }
        return true
    }
}
