import CTABroker
import Synchronization

/// Collects deliveries as a consumer yields them and hands them out in batches: whatever arrived while the
/// previous batch was being written, up to a maximum. A batch is never held back waiting for more, so at low
/// rates each event is written at once and at high rates the batches grow by themselves.
final class DeliveryBatcher: Sendable {
    private struct State {
        var buffer: [AMQPDelivery] = []
        var waiter: CheckedContinuation<Void, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    func append(_ delivery: AMQPDelivery) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.buffer.append(delivery)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Marks the end of the deliveries: `next` returns what is left, then nil.
    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Up to `limit` deliveries, waiting only while none has arrived; nil once finished and empty.
    func next(limit: Int) async -> [AMQPDelivery]? {
        while true {
            let taken = state.withLock { state -> [AMQPDelivery]?? in
                if !state.buffer.isEmpty {
                    let count = min(limit, state.buffer.count)
                    let batch = Array(state.buffer.prefix(count))
                    state.buffer.removeFirst(count)
                    return .some(batch)
                }
                return state.finished ? .some(nil) : nil
            }
            if let taken { return taken }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let resumeNow = state.withLock { state -> Bool in
                        if !state.buffer.isEmpty || state.finished { return true }
                        state.waiter = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                self.finish()
            }
        }
    }
}
