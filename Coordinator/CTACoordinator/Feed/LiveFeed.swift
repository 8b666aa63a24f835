import CTACore
public import CTADefinitions
import CTAMongo
import Foundation
public import Logging
import Synchronization

/// The live feed of one coordinator: stored changes (states, results, execution phases, machines) delivered to
/// any number of subscribers, in the order they were stored, each exactly once per subscription, each with a
/// cursor to resume after.
///
/// One watcher per coordinator reads every change once from the database (``run()``) into a ring of bounded
/// size; subscribers read the ring at their own pace, filtered by their ``FeedTarget``. A subscription that
/// starts in the past (after a cursor older than the ring, or from the start of an execution) reads its own
/// stream from the database until it reaches a change the ring holds, then continues from the ring. The order
/// is the database's change order, the same for every coordinator, so a cursor from one resumes on another.
public final class LiveFeed: Sendable {
    public struct Configuration: Sendable {
        /// How many recent changes the shared ring keeps (memory bound); a subscriber further behind is closed
        /// with ``LiveFeedError/Code/tooSlow``. Default 10,000.
        public var ringCapacity: Int
        /// How many subscriptions may read their own catch-up stream from the database at once; others wait.
        /// Default 16.
        public var catchUpLimit: Int
        /// Most changes handed to a subscription per read of the ring. Default 256.
        public var readBatch: Int
        /// How long the watcher waits before reopening its stream after a database error. Default 1 s.
        public var retryDelay: Duration

        public init(
            ringCapacity: Int = 10_000, catchUpLimit: Int = 16, readBatch: Int = 256, retryDelay: Duration = .seconds(1)
        ) {
            self.ringCapacity = ringCapacity
            self.catchUpLimit = catchUpLimit
            self.readBatch = readBatch
            self.retryDelay = retryDelay
        }
    }

    let source: any FeedSource
    let configuration: Configuration
    let logger: Logger
    let ring: FeedRing
    let scenarios = ScenarioCache()
    let catchUps: AsyncLimiter

    public init(source: any FeedSource, configuration: Configuration = Configuration(), logger: Logger) {
        self.source = source
        self.configuration = configuration
        self.logger = logger
        self.ring = FeedRing(capacity: configuration.ringCapacity)
        self.catchUps = AsyncLimiter(limit: configuration.catchUpLimit)
    }

    /// Reads every change into the ring until the task is cancelled; reopens the stream after the last change
    /// read when the database fails.
    public func run() async {
        var last: LiveCursor?
        while !Task.isCancelled {
            do throws(LiveFeedError) {
                let changes = try await source.changes(from: last.map { .after($0) } ?? .now)
                ring.markOpen()
                while let change = try await changes.next() {
                    ring.append(await enrich(change))
                    last = change.cursor
                }
                await changes.close()
                if Task.isCancelled { break }
            } catch {
                if error.code == .cursorExpired || error.code == .invalidCursor {
                    // The database no longer holds our place: start again from now; subscribers reading the
                    // ring are told to resume from their cursors.
                    logger.warning("live feed lost its place in the change history", metadata: ["cta.error": "\(error)"])
                    last = nil
                    ring.breakContinuity()
                } else {
                    logger.info("live feed watcher failed; retrying", metadata: ["cta.error": "\(error)"])
                }
                try? await Task.sleep(for: configuration.retryDelay)
            }
        }
    }

    /// Starts a subscription: from after `cursor` when given, else from the creation of the execution for an
    /// execution target, and from now for the others.
    public func subscribe(_ target: FeedTarget, after cursor: LiveCursor? = nil) async throws(LiveFeedError)
        -> LiveSubscription
    {
        await ring.waitOpen()
        if Task.isCancelled { throw LiveFeedError(.closed, "the live feed is shutting down") }
        if let cursor {
            if let position = ring.position(of: cursor) {
                return LiveSubscription(feed: self, target: target, state: .live(after: position))
            }
            return LiveSubscription(feed: self, target: target, state: .catchUp(from: .after(cursor)))
        }
        switch target {
        case .execution(let id):
            guard let execution = try await source.execution(id) else {
                throw LiveFeedError(.notFound, "no execution \(id)")
            }
            scenarios.remember(execution: id, scenario: execution.scenario)
            let seconds = UInt32(clamping: Int64(execution.createdAt.timeIntervalSince1970.rounded(.down)))
            if let position = ring.position(before: seconds) {
                return LiveSubscription(feed: self, target: target, state: .live(after: position))
            }
            return LiveSubscription(feed: self, target: target, state: .catchUp(from: .at(execution.createdAt)))
        case .scenario, .machines:
            return LiveSubscription(feed: self, target: target, state: .live(after: ring.head))
        }
    }

    /// Wakes subscriptions waiting for changes, so that one closed from another task notices at once.
    public func wakeSubscribers() {
        ring.wakeAll()
    }

    /// Fills in the scenario of a state or result change (cached per execution).
    func enrich(_ change: FeedChange) async -> FeedChange {
        var change = change
        guard let execution = change.executionID else { return change }
        if case .execution(let record)? = change.record {
            scenarios.remember(execution: execution, scenario: record.scenario.id.rawValue)
        }
        if change.scenario == nil {
            if let known = scenarios.scenario(of: execution) {
                change.scenario = known
            } else if let found = try? await source.execution(execution) {
                scenarios.remember(execution: execution, scenario: found.scenario)
                change.scenario = found.scenario
            }
        }
        return change
    }
}

/// What a subscription delivers.
public enum FeedItem: Sendable {
    case change(FeedChange)
    /// The execution of an execution subscription ended (after its ending change); nothing follows.
    case end(ExecutionPhase)
}

/// One subscription: call ``next()`` from one task until it returns nil (the execution ended, or ``close()``).
public final class LiveSubscription: Sendable {
    enum State {
        case catchUp(from: FeedStart)
        case catchingUp(any FeedChangeSequence)
        case live(after: Int64)
        case ending(ExecutionPhase)
        case finished
    }

    public let target: FeedTarget
    private let feed: LiveFeed
    private let state: Mutex<State>
    /// Changes read but not yet handed out.
    private let pending = Mutex<[FeedChange]>([])
    /// The last change read from the catch-up stream.
    private let lastCaughtUp = Mutex<LiveCursor?>(nil)

    init(feed: LiveFeed, target: FeedTarget, state: State) {
        self.feed = feed
        self.target = target
        self.state = Mutex(state)
    }

    /// The next change of this subscription, `.end` after an execution's ending change, then nil. Throws when
    /// the subscription cannot go on (``LiveFeedError/Code/tooSlow``, ``LiveFeedError/Code/cursorExpired``…).
    public func next() async throws(LiveFeedError) -> FeedItem? {
        while true {
            if let change = pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                if case .execution = target, change.endsExecution, let phase = change.phase {
                    pending.withLock { $0 = [] }
                    await setState(.ending(phase))
                }
                return .change(change)
            }
            let current = state.withLock { state -> State in
                if case .ending(let phase) = state {
                    state = .finished
                    return .ending(phase)
                }
                return state
            }
            switch current {
            case .finished:
                return nil
            case .ending(let phase):
                return .end(phase)
            case .live(let position):
                try await readRing(after: position)
            case .catchUp(let start):
                await feed.catchUps.acquire()
                let sequence: any FeedChangeSequence
                do throws(LiveFeedError) {
                    sequence = try await feed.source.changes(from: start)
                } catch {
                    await feed.catchUps.release()
                    state.withLock { $0 = .finished }
                    throw error
                }
                if !(await setState(.catchingUp(sequence))) {
                    await sequence.close()
                    await feed.catchUps.release()
                }
            case .catchingUp(let sequence):
                try await readCatchUp(sequence)
            }
        }
    }

    /// Ends the subscription; a `next()` waiting returns nil.
    public func close() async {
        let previous = state.withLock { state -> State in
            let previous = state
            state = .finished
            return previous
        }
        if case .catchingUp(let sequence) = previous {
            await sequence.close()
            await feed.catchUps.release()
        }
    }

    /// Replaces the state unless the subscription was closed meanwhile; false when it was.
    @discardableResult
    private func setState(_ new: State) async -> Bool {
        state.withLock { state in
            if case .finished = state { return false }
            state = new
            return true
        }
    }

    private func readRing(after position: Int64) async throws(LiveFeedError) {
        switch feed.ring.read(after: position, limit: feed.configuration.readBatch) {
        case .changes(let changes, let last):
            let matching = changes.filter(target.matches)
            pending.withLock { $0.append(contentsOf: matching) }
            await setState(.live(after: last))
        case .none:
            await feed.ring.wait(after: position)
            if Task.isCancelled {
                state.withLock { $0 = .finished }
            }
        case .fellBehind:
            state.withLock { $0 = .finished }
            throw LiveFeedError(
                .tooSlow,
                "the subscriber fell more than \(feed.ring.capacity) changes behind; resume with the last cursor")
        case .broken:
            state.withLock { $0 = .finished }
            throw LiveFeedError(.unavailable, "the feed lost its place in the change history; resume with the last cursor")
        }
    }

    private func readCatchUp(_ sequence: any FeedChangeSequence) async throws(LiveFeedError) {
        // The shared watcher may have been behind the last change read here; once it has it, switch.
        if let last = lastCaughtUp.withLock({ $0 }), let position = feed.ring.position(of: last) {
            if await setState(.live(after: position)) {
                await sequence.close()
                await feed.catchUps.release()
            }
            return
        }
        let change: FeedChange?
        do throws(LiveFeedError) {
            change = try await sequence.next()
        } catch {
            await sequence.close()
            await feed.catchUps.release()
            state.withLock { $0 = .finished }
            throw error
        }
        guard let change else {
            // Closed (by close() or cancellation).
            state.withLock { $0 = .finished }
            return
        }
        let enriched = await feed.enrich(change)
        if target.matches(enriched) { pending.withLock { $0.append(enriched) } }
        lastCaughtUp.withLock { $0 = change.cursor }
        if let position = feed.ring.position(of: change.cursor) {
            // The ring holds this change: everything after it is in the ring too.
            if await setState(.live(after: position)) {
                await sequence.close()
                await feed.catchUps.release()
            }
        }
    }
}

/// Execution id → scenario, for the changes that name only their execution. Bounded: forgets everything when
/// full (executions are looked up again).
final class ScenarioCache: Sendable {
    private let entries = Mutex<[String: String]>([:])
    private let limit = 50_000

    func scenario(of execution: String) -> String? { entries.withLock { $0[execution] } }

    func remember(execution: String, scenario: String) {
        entries.withLock { entries in
            if entries.count >= limit { entries = [:] }
            entries[execution] = scenario
        }
    }
}

/// At most `limit` holders at once; others wait in order.
final class AsyncLimiter: Sendable {
    private struct State {
        var available: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(limit: Int) {
        state = Mutex(State(available: max(1, limit)))
    }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() async {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
