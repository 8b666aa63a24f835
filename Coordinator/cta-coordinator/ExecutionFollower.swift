import CTACoordinator
import CTACore
import Foundation
import CTADefinitions

/// Follows one execution in the store and prints it for a person: where it went, each result as it is stored,
/// and a summary when it ends.
struct ExecutionFollower {
    let store: MongoStore
    var pollInterval: Duration = .milliseconds(200)

    /// Prints until the execution ends; returns the exit code: 0 finished and all ok, 1 a test did not pass,
    /// 2 the execution did not finish.
    func follow(_ created: ExecutionRecord) async throws -> Int32 {
        let execution = created.executionID
        let started = Date()
        print("execution \(execution) of scenario \(created.scenario.id) (\(created.runMode.rawValue), \(created.tests.count) tests)")
        var seen = Set<String>()
        var lastPending: String?
        var dispatched = false
        var printedRunning = false
        while true {
            guard let record = try await store.execution(execution) else {
                print("the execution disappeared from the store")
                return 2
            }
            if !dispatched, let plan = record.dispatch, record.dispatchedAt != nil {
                dispatched = true
                let target = plan.group.map { "group \($0)" } ?? "machines \(plan.machines.map(\.rawValue).joined(separator: ", "))"
                print("dispatched to \(target)")
            }
            if let pending = record.pending, record.dispatchedAt == nil, pending.summary != lastPending {
                lastPending = pending.summary
                print("pending: \(pending.summary)")
                for candidate in pending.candidates {
                    print("  \(candidate.machine): \(candidate.missing.joined(separator: "; "))")
                }
            }
            if !printedRunning, record.phase == .running {
                printedRunning = true
                print("running")
            }
            for stored in try await store.results(execution) where seen.insert(stored._id).inserted {
                print(Self.line(for: stored))
            }
            if record.phase.isEnd {
                let counts = record.counts
                let seconds = String(format: "%.1f", Date().timeIntervalSince(started))
                print(
                    "\(record.phase.rawValue): \(counts.ok) ok, \(counts.failed) failed, \(counts.partial) partial, "
                        + "\(counts.inconclusive) inconclusive — \(counts.total) results in \(seconds) s"
                        + (record.endReason.map { " (\($0))" } ?? ""))
                guard record.phase == .finished else { return 2 }
                return counts.failed + counts.partial + counts.inconclusive == 0 ? 0 : 1
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    static func line(for stored: ResultRecord) -> String {
        let result = stored.result
        let status = result.status.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
        let seconds = String(format: "%.2f", Double(result.durationMs.value) / 1000)
        var name = result.testID.rawValue
        if result.name != result.testID.rawValue { name += " › \(result.name)" }
        var line = "  \(status) \(stored.machine)  \(name) (\(seconds) s)"
        if result.status != .ok, let message = result.message { line += ": \(message)" }
        return line
    }
}
