import Foundation
import Synchronization

/// Runs `body` on a thread of its own and resumes the caller with its value, so one-off blocking work (big copies,
/// hashing, directory walks, reading /proc) never occupies a thread of Swift's cooperative pool. For a stream of
/// small jobs in order, use ``BlockingWorker``.
func onDedicatedThread<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.name = name
        thread.start()
    }
}

/// One dedicated thread that runs blocking jobs (file writes, `fsync`, directory scans) in submission order, so
/// they never occupy a thread of Swift's cooperative pool. Callers await the result through a continuation.
final class BlockingWorker: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var stopped = false
    }

    /// The queue and the condition the thread sleeps on; shared with the thread.
    private final class Shared: Sendable {
        let state = Mutex(State())
        /// Used only to sleep and wake; the data is guarded by `state`.
        let condition = NSCondition()
    }

    private let shared = Shared()

    /// Starts the worker's thread.
    init(name: String) {
        let shared = self.shared
        let thread = Thread {
            let condition = shared.condition
            while true {
                condition.lock()
                var next: (@Sendable () -> Void)?
                var stop = false
                while true {
                    (next, stop) = shared.state.withLock { state -> ((@Sendable () -> Void)?, Bool) in
                        if !state.jobs.isEmpty { return (state.jobs.removeFirst(), false) }
                        return (nil, state.stopped)
                    }
                    if next != nil || stop { break }
                    condition.wait()
                }
                condition.unlock()
                if let next { next() } else if stop { return }
            }
        }
        thread.name = name
        thread.start()
    }

    /// Runs `body` on the worker's thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Stops the thread once the queued jobs are done.
    func stop() {
        shared.condition.lock()
        shared.state.withLock { $0.stopped = true }
        shared.condition.signal()
        shared.condition.unlock()
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        shared.condition.lock()
        shared.state.withLock { $0.jobs.append(job) }
        shared.condition.signal()
        shared.condition.unlock()
    }
}
