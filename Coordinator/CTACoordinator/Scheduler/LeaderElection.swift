import Foundation
public import Logging
import Synchronization

/// Keeps trying to hold one lease, renewing it while held, and tells who asks whether this coordinator leads.
///
/// ``run()`` works until its task is cancelled: it calls ``LeaseManager/acquire(name:holder:duration:)`` every
/// ``Configuration/renewInterval`` (a third of the lease by default, so two renewals may fail before the lease
/// lapses), and on the way out releases the lease, so another coordinator can take over at once rather than
/// after the lease expires. It never blocks a thread: it waits with `Task.sleep`, and the database calls run on the
/// MongoDB client's own threads.
///
/// Leadership ends ``Configuration/clockMargin`` before the grant's expiry by the local clock, whether or not a
/// renewal is still under way, because from the expiry on another coordinator may take the lease over (see the
/// clock assumption on ``LeaseManager``). ``isLeader`` is computed from the clock each time it is read, so it is
/// right even when the loop is delayed; ``changes()`` reports each change as soon as it is seen.
public final class LeaderElection: Sendable {
    /// How long the lease lasts and how often it is renewed.
    public struct Configuration: Sendable {
        /// How long each grant lasts. Default: 15 seconds.
        public var leaseDuration: Duration
        /// How often the lease is renewed while held, and tried while not. Default: a third of the lease.
        public var renewInterval: Duration
        /// How long before the expiry of its grant a leader stops counting itself leader, to allow for clocks that
        /// disagree. Default: 1 second. Must be less than `leaseDuration - renewInterval`, or a leader would stop
        /// leading between two renewals.
        public var clockMargin: Duration

        public init(
            leaseDuration: Duration = .seconds(15), renewInterval: Duration? = nil, clockMargin: Duration = .seconds(1)
        ) {
            self.leaseDuration = leaseDuration
            self.renewInterval = renewInterval ?? leaseDuration / 3
            self.clockMargin = clockMargin
        }
    }

    /// Whether this coordinator leads, and in which term.
    public enum Leadership: Hashable, Sendable {
        /// It holds the lease; `term` is the grant's fencing term.
        case leader(term: Int)
        /// Another coordinator holds it, or nobody does, or this one could not renew it in time.
        case follower

        public var isLeader: Bool { self != .follower }
    }

    private struct State {
        /// The last grant, kept until it lapses even when renewals fail.
        var grant: LeaseGrant?
        /// What the subscribers were last told.
        var announced: Leadership = .follower
        var subscribers: [UInt64: AsyncStream<Leadership>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0
        /// `run()` has been called.
        var started = false
        /// `run()` has returned: new subscribers get a finished stream.
        var finished = false
    }

    /// The lease's name.
    public let name: String
    /// This coordinator's name as a lease holder.
    public let holder: String
    public let configuration: Configuration
    private let leases: LeaseManager
    private let logger: Logger
    private let state = Mutex(State())

    /// An election for the lease `name`, as `holder`.
    public init(
        leases: LeaseManager, name: String, holder: String, configuration: Configuration = Configuration(),
        logger: Logger
    ) {
        precondition(configuration.renewInterval > .zero, "the renew interval must be positive")
        precondition(
            configuration.clockMargin >= .zero
                && configuration.clockMargin < configuration.leaseDuration - configuration.renewInterval,
            "the clock margin must be less than the lease duration minus the renew interval")
        self.leases = leases
        self.name = name
        self.holder = holder
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "cta.lease.name"] = "\(name)"
        logger[metadataKey: "cta.lease.holder"] = "\(holder)"
        self.logger = logger
    }

    /// True while this coordinator holds the lease and is more than the clock margin away from its expiry.
    public var isLeader: Bool { leadership.isLeader }

    /// The current leadership, computed from the last grant and the clock.
    public var leadership: Leadership {
        let grant = state.withLock { $0.grant }
        return leadership(of: grant)
    }

    /// The grant this coordinator leads with, while it does.
    public var grant: LeaseGrant? {
        let grant = state.withLock { $0.grant }
        return leadership(of: grant).isLeader ? grant : nil
    }

    /// Every change of leadership, starting with the current one. The stream ends when ``run()`` returns.
    public func changes() -> AsyncStream<Leadership> {
        let (stream, continuation) = AsyncStream<Leadership>.makeStream()
        let id: UInt64? = state.withLock { state in
            continuation.yield(state.announced)
            guard !state.finished else { return nil }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Acquires and renews the lease until the task is cancelled, then releases it.
    ///
    /// - Important: Call it once; an election that has stopped does not start again.
    public func run() async {
        let first = state.withLock { state in
            defer { state.started = true }
            return !state.started
        }
        precondition(first, "LeaderElection.run() is called once")
        logger.info("Leader election started")
        await withDiscardingTaskGroup { group in
            group.addTask { await self.renewLoop() }
            group.addTask { await self.expiryWatch() }
        }
        let held = state.withLock { state in
            defer { state.grant = nil }
            return state.grant
        }
        announce()
        if let held {
            // The task is cancelled, and a cancelled task's database calls are refused before they run: release
            // from a task of its own, and wait for it.
            let leases = self.leases
            let released = await Task { try await leases.release(name: held.name, holder: held.holder) }.result
            if case .failure(let error) = released {
                logger.info("Lease not released; it will expire", metadata: ["cta.error": "\(error)"])
            }
        }
        let subscribers = state.withLock { state in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
        logger.info("Leader election stopped")
    }

    /// Tries to acquire or renew the lease every renew interval.
    private func renewLoop() async {
        while !Task.isCancelled {
            do {
                let grant = try await leases.acquire(
                    name: name, holder: holder, duration: configuration.leaseDuration)
                state.withLock { $0.grant = grant }
            } catch is CancellationError {
                return
            } catch {
                // The grant, if any, stays until it lapses: the lease may well still be ours.
                logger.info("Lease not renewed", metadata: ["cta.error": "\(error)"])
            }
            announce()
            do {
                try await Task.sleep(for: configuration.renewInterval)
            } catch {
                return
            }
        }
    }

    /// Announces the end of leadership when a grant lapses without a renewal, even while a renewal is stuck.
    private func expiryWatch() async {
        while !Task.isCancelled {
            let grant = state.withLock { $0.grant }
            var delay = configuration.renewInterval
            if let grant, leadership(of: grant).isLeader {
                let remaining = stepDown(grant).timeIntervalSince(leases.now())
                // Not less than 10 ms, so that a clock read just before the step-down does not spin.
                delay = .milliseconds(max(10, Int64((remaining * 1000).rounded(.up))))
            }
            do {
                try await Task.sleep(for: delay)
            } catch {
                return
            }
            announce()
        }
    }

    /// Tells the subscribers when the leadership differs from what they were last told. The yields happen under
    /// the lock, so that two concurrent calls cannot deliver their news in the wrong order.
    private func announce() {
        let changed = state.withLock { state -> Leadership? in
            let current = leadership(of: state.grant)
            guard current != state.announced else { return nil }
            state.announced = current
            for subscriber in state.subscribers.values { subscriber.yield(current) }
            return current
        }
        switch changed {
        case .leader(let term)?: logger.info("Leading", metadata: ["cta.lease.term": "\(term)"])
        case .follower?: logger.info("Not leading")
        case nil: break
        }
    }

    private func leadership(of grant: LeaseGrant?) -> Leadership {
        guard let grant, leases.now() < stepDown(grant) else { return .follower }
        return .leader(term: grant.term)
    }

    /// When a leader with `grant` stops counting itself leader.
    private func stepDown(_ grant: LeaseGrant) -> Date {
        let (seconds, attoseconds) = configuration.clockMargin.components
        return grant.expiresAt.addingTimeInterval(-(Double(seconds) + Double(attoseconds) / 1e18))
    }
}
