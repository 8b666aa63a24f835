public import CTACore

/// How the agent reaches the rest of the system: the broker directly, or (later) a gateway.
///
/// The agent's run logic only sees this protocol. A transport publishes sequenced events with confirms, publishes
/// heartbeats, consumes queues, and dead-letters refused deliveries with their reason. It reconnects on its own;
/// calls made while it is away wait or fail, and the agent retries from its spool.
public protocol AgentTransport: Sendable {
    /// Declares what the agent consumes (its machine queue and bindings, its groups' queues) and the exchanges.
    func declare(machine: MachineName, groups: [GroupName]) async throws(TransportError)

    /// Publishes events in order, each with publisher confirms and `mandatory`; returns each one's outcome.
    func publish(_ events: [OutboundEvent]) async -> [Result<Void, TransportError>]

    /// Publishes a heartbeat: transient, not spooled, a lost one is not retried.
    func publishHeartbeat(_ body: [UInt8]) async throws(TransportError)

    /// Starts consuming `queue` with at most `prefetch` unsettled deliveries.
    func consume(queue: String, prefetch: UInt16) async throws(TransportError) -> IncomingStream

    /// Whether `queue` exists (a passive declare).
    func queueExists(_ queue: String) async throws(TransportError) -> Bool

    /// Closes the transport; unsettled deliveries return to their queues.
    func close() async
}

/// One spooled event on its way out.
public struct OutboundEvent: Sendable, Hashable {
    /// The event's `seq` in the spool.
    public var seq: UInt64
    /// The event type (the routing key on `cta.events`).
    public var type: EventType
    /// The envelope `id`.
    public var id: EventID
    /// When the event happened (for the message timestamp).
    public var time: Timestamp
    /// The envelope bytes, exactly as spooled.
    public var body: [UInt8]

    public init(seq: UInt64, type: EventType, id: EventID, time: Timestamp, body: [UInt8]) {
        self.seq = seq
        self.type = type
        self.id = id
        self.time = time
        self.body = body
    }
}

/// Why a transport call failed.
public struct TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kinds of failure the agent reacts to differently.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unavailable, unroutable, refused, notFound, consumerCancelled, closed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The broker (or gateway) cannot be reached now, or did not confirm in time: retry later.
        public static let unavailable = Code(.unavailable)
        /// No queue took the message (the coordinator's queues do not exist yet): keep it and retry later.
        public static let unroutable = Code(.unroutable)
        /// The broker refused the message or the operation (nack, access refused): retrying the same will fail.
        public static let refused = Code(.refused)
        /// The queue does not exist.
        public static let notFound = Code(.notFound)
        /// The broker cancelled the consumer (its queue was deleted).
        public static let consumerCancelled = Code(.consumerCancelled)
        /// The transport was closed.
        public static let closed = Code(.closed)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// The deliveries of one consumer.
public struct IncomingStream: AsyncSequence, Sendable {
    public typealias Element = IncomingMessage

    private let base: AsyncThrowingStream<IncomingMessage, any Error>
    private let cancelAction: @Sendable () async -> Void
    /// The queue consumed.
    public let queue: String

    public init(
        queue: String,
        base: AsyncThrowingStream<IncomingMessage, any Error>,
        cancel: @escaping @Sendable () async -> Void
    ) {
        self.queue = queue
        self.base = base
        self.cancelAction = cancel
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<IncomingMessage, any Error>.AsyncIterator
        public mutating func next() async throws -> IncomingMessage? { try await base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator()) }

    /// Stops consuming; unsettled deliveries go back to the queue.
    public func cancel() async { await cancelAction() }
}

/// One delivery. Settle it exactly once: ``ack()``, ``release()`` or ``reject(_:)``.
public struct IncomingMessage: Sendable {
    /// The message body (an envelope, if well formed).
    public var body: [UInt8]
    /// The queue it came from.
    public var queue: String
    /// The exchange it was published to.
    public var exchange: String
    /// Its routing key.
    public var routingKey: String
    /// Whether it was delivered before.
    public var redelivered: Bool

    private let settle: @Sendable (Settlement) async -> Void

    /// How a delivery is settled.
    public enum Settlement: Sendable {
        /// Done with: remove it from the queue.
        case ack
        /// Not taken now: back to the queue for another consumer.
        case release
        /// Refused: dead-lettered with the reason, then removed.
        case reject(WireError)
    }

    public init(
        body: [UInt8], queue: String, exchange: String, routingKey: String, redelivered: Bool,
        settle: @escaping @Sendable (Settlement) async -> Void
    ) {
        self.body = body
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.settle = settle
    }

    /// Acknowledges the delivery (call only once its effect is durable).
    public func ack() async { await settle(.ack) }

    /// Returns the delivery to its queue.
    public func release() async { await settle(.release) }

    /// Dead-letters the delivery with `error` as its reason, then removes it from the queue.
    public func reject(_ error: WireError) async { await settle(.reject(error)) }
}
