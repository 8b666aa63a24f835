import Synchronization

/// A wake-up call for a loop that otherwise polls: `wait(upTo:)` returns when `signal()` was called since the
/// last wait, or when the time is up, whichever comes first.
final class Wakeup: Sendable {
    private struct State {
        var signalled = false
        var waiter: CheckedContinuation<Void, Never>?
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.signalled = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(upTo duration: Duration) async {
        var timer: Task<Void, Never>?
        await withCheckedContinuation { continuation in
            let generation = state.withLock { state -> UInt64? in
                if state.signalled {
                    state.signalled = false
                    return nil
                }
                state.generation &+= 1
                state.waiter = continuation
                return state.generation
            }
            guard let generation else {
                continuation.resume()
                return
            }
            timer = Task {
                try? await Task.sleep(for: duration)
                let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    guard state.generation == generation, let waiter = state.waiter else { return nil }
                    state.waiter = nil
                    return waiter
                }
                waiter?.resume()
            }
        }
        timer?.cancel()
    }
}
