import CTAMongo
import Synchronization

/// The changes the shared watcher read last, in store order, numbered by position; subscribers read them at
/// their own pace. Its capacity bounds the feed's memory whatever the number of subscribers: a subscriber that
/// falls behind the oldest kept change is told so (``Read/fellBehind``) instead of being buffered for.
final class FeedRing: Sendable {
    enum Read {
        /// Changes after the asked position, and the position of the last one.
        case changes([FeedChange], last: Int64)
        /// Nothing after the asked position yet.
        case none
        /// The asked position was dropped from the ring.
        case fellBehind
        /// The ring lost its continuity after the asked position (the watcher could not resume): read again
        /// from a cursor.
        case broken
    }

    fileprivate struct State {
        var buffer: [FeedChange?]
        /// The position the next change gets.
        var next: Int64 = 0
        /// Positions before this one come before a break in continuity.
        var continuousFrom: Int64 = 0
        var positions: [ResumeToken: Int64] = [:]
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
        var open = false
    }

    let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        self.state = Mutex(State(buffer: Array(repeating: nil, count: capacity)))
    }

    /// The position of the newest change, or -1 before the first.
    var head: Int64 { state.withLock { $0.next - 1 } }

    /// Whether the watcher has opened its stream (so "now" is well defined).
    var isOpen: Bool { state.withLock { $0.open } }

    func markOpen() {
        let waiters = state.withLock { state in
            state.open = true
            return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    func append(_ change: FeedChange) {
        let waiters = state.withLock { state in
            let position = state.next
            let slot = Int(position % Int64(capacity))
            if let evicted = state.buffer[slot] { state.positions[evicted.cursor.token] = nil }
            state.buffer[slot] = change
            state.positions[change.cursor.token] = position
            state.next += 1
            return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Marks everything from now on as not following what came before (the watcher restarted from "now").
    func breakContinuity() {
        let waiters = state.withLock { state in
            state.continuousFrom = state.next
            for index in state.buffer.indices { state.buffer[index] = nil }
            state.positions = [:]
            return state.takeWaiters()
        }
        for waiter in waiters { waiter.resume() }
    }

    /// The position of the change with this cursor, if the ring still holds it.
    func position(of cursor: LiveCursor) -> Int64? {
        state.withLock { $0.positions[cursor.token] }
    }

    /// The position of the last change before the first one at or after `time` (cluster time seconds), when
    /// the ring holds an older change so that nothing since `time` can be missing from it.
    func position(before seconds: UInt32) -> Int64? {
        state.withLock { state in
            let oldest = max(state.continuousFrom, state.next - Int64(capacity))
            guard oldest < state.next, let first = state.buffer[Int(oldest % Int64(capacity))],
                let firstTime = first.clusterTime, firstTime.seconds < seconds
            else { return nil }
            var position = oldest
            while position < state.next {
                guard let change = state.buffer[Int(position % Int64(capacity))] else { return nil }
                if let time = change.clusterTime, time.seconds >= seconds { break }
                position += 1
            }
            return position - 1
        }
    }

    /// Up to `limit` changes after `position`.
    func read(after position: Int64, limit: Int) -> Read {
        state.withLock { state in
            if position + 1 < state.continuousFrom { return .broken }
            if position + 1 >= state.next { return .none }
            if position + 1 < state.next - Int64(capacity) { return .fellBehind }
            let end = min(state.next, position + 1 + Int64(limit))
            var changes: [FeedChange] = []
            changes.reserveCapacity(Int(end - position - 1))
            for p in (position + 1)..<end {
                guard let change = state.buffer[Int(p % Int64(capacity))] else { return .broken }
                changes.append(change)
            }
            return .changes(changes, last: end - 1)
        }
    }

    /// Waits until a change after `position` is appended, the ring opens, or it breaks (returns at once when
    /// one already is). Returns early when the task is cancelled.
    func wait(after position: Int64) async {
        let id = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if Task.isCancelled || position + 1 < state.next || position + 1 < state.continuousFrom {
                        return true
                    }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Wakes every waiting reader (one of them was closed and must notice).
    func wakeAll() {
        let waiters = state.withLock { $0.takeWaiters() }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until the watcher has opened its stream.
    func waitOpen() async {
        while !isOpen && !Task.isCancelled {
            await wait(after: Int64.max - 1)
        }
    }
}

extension FeedRing.State {
    fileprivate mutating func takeWaiters() -> [CheckedContinuation<Void, Never>] {
        guard !waiters.isEmpty else { return [] }
        let taken = Array(waiters.values)
        waiters = [:]
        return taken
    }
}
