public import Logging
import Synchronization

/// A connection to a RabbitMQ broker over librabbitmq, with publisher confirms, consumers as async sequences,
/// and automatic reconnection.
///
/// Every call is safe from any task. The connection owns one dedicated thread that makes all librabbitmq calls
/// (the library is not thread-safe, and its calls block); nothing here blocks the cooperative pool.
///
/// After the first ``connect()`` succeeds, a lost connection is re-established with jittered exponential
/// backoff; declared exchanges, queues and bindings are declared again and consumers resume. A publish made
/// during an outage waits for the reconnect, bounded by ``AMQPConfiguration/publishTimeout``, then fails with
/// ``AMQPError/Code/timeout``; it is never dropped silently. Messages that were sent but not yet confirmed when
/// the connection dropped are sent again after the reconnect, so a message may reach the broker twice: give each
/// one an id and make consumers idempotent.
public final class AMQPConnection: Sendable {
    public let configuration: AMQPConfiguration
    let worker: ConnectionWorker
    private let nextConsumerID = Mutex<UInt64>(1)

    public init(configuration: AMQPConfiguration, logger: Logger = Logger(label: "cta.amqp")) {
        self.configuration = configuration
        self.worker = ConnectionWorker(configuration: configuration, logger: logger)
    }

    /// Connects from a URL; see ``AMQPConfiguration/init(url:)``.
    public convenience init(url: String, logger: Logger = Logger(label: "cta.amqp")) throws(AMQPError) {
        self.init(configuration: try AMQPConfiguration(url: url), logger: logger)
    }

    deinit {
        worker.submit(.close(deadline: .now, completion: {}))
    }

    /// Opens the connection. Throws at once if the broker cannot be reached or refuses the login: the first
    /// connection is not retried, so a wrong URL fails fast.
    public func connect() async throws(AMQPError) {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, AMQPError>, Never>) in
            worker.start { continuation.resume(returning: $0) }
        }
        try result.get()
    }

    /// Closes the connection: stops consumers (their unacknowledged messages go back to their queues), waits up
    /// to `drainTimeout` for outstanding publishes to be confirmed, then closes. Publishes still unconfirmed fail
    /// with ``AMQPError/Code/closed``.
    public func close(drainTimeout: Duration = .seconds(5)) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            worker.submit(.close(deadline: .now + drainTimeout, completion: { continuation.resume() }))
        }
    }

    // MARK: Topology

    /// Declares an exchange (idempotent when the attributes match; ``AMQPError/Code/preconditionFailed`` if not).
    public func declareExchange(
        _ name: String, kind: ExchangeKind = .direct, durable: Bool = true, autoDelete: Bool = false,
        internal: Bool = false, arguments: AMQPTable = [:]
    ) async throws(AMQPError) {
        guard !name.isEmpty, !name.hasPrefix("amq.") else {
            throw AMQPError(.invalidArgument, "exchange name '\(name)' is empty or reserved (amq.*)")
        }
        _ = try await perform(.declareExchange(name: name, kind: kind, durable: durable, autoDelete: autoDelete,
                                               internal: `internal`, arguments: arguments))
    }

    /// Declares a queue and reports its state. Arguments carry dead-lettering (`x-dead-letter-exchange`), TTL
    /// (`x-message-ttl`), the queue type (`x-queue-type`: `classic` or `quorum`) and the like.
    @discardableResult
    public func declareQueue(
        _ name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
        arguments: AMQPTable = [:]
    ) async throws(AMQPError) -> QueueState {
        guard !name.isEmpty else {
            throw AMQPError(.invalidArgument, "queue name is empty: server-named queues cannot be re-declared after a reconnect")
        }
        let result = try await perform(.declareQueue(name: name, durable: durable, exclusive: exclusive,
                                                     autoDelete: autoDelete, arguments: arguments))
        guard case .queue(let state) = result else { throw AMQPError(.protocolError, "no queue.declare-ok") }
        return state
    }

    /// The state of an existing queue (a passive declare): ``AMQPError/Code/notFound`` if there is none.
    public func queueState(_ name: String) async throws(AMQPError) -> QueueState {
        let result = try await perform(.inspectQueue(name: name))
        guard case .queue(let state) = result else { throw AMQPError(.protocolError, "no queue.declare-ok") }
        return state
    }

    public func bindQueue(_ queue: String, exchange: String, routingKey: String, arguments: AMQPTable = [:]) async throws(AMQPError) {
        _ = try await perform(.bindQueue(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments))
    }

    public func unbindQueue(_ queue: String, exchange: String, routingKey: String, arguments: AMQPTable = [:]) async throws(AMQPError) {
        _ = try await perform(.unbindQueue(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments))
    }

    /// Deletes a queue and returns how many messages it held.
    @discardableResult
    public func deleteQueue(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws(AMQPError) -> UInt32 {
        let result = try await perform(.deleteQueue(name: name, ifUnused: ifUnused, ifEmpty: ifEmpty))
        if case .count(let count) = result { return count }
        return 0
    }

    /// Removes every ready message from a queue and returns how many.
    @discardableResult
    public func purgeQueue(_ name: String) async throws(AMQPError) -> UInt32 {
        let result = try await perform(.purgeQueue(name: name))
        if case .count(let count) = result { return count }
        return 0
    }

    public func deleteExchange(_ name: String) async throws(AMQPError) {
        _ = try await perform(.deleteExchange(name: name))
    }

    private func perform(_ operation: BrokerOperation) async throws(AMQPError) -> BrokerResult {
        let deadline = ContinuousClock.now + configuration.rpcTimeout
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<BrokerResult, AMQPError>, Never>) in
            worker.submit(.operation(PendingOperation(operation: operation, deadline: deadline) { continuation.resume(returning: $0) }))
        }
        return try result.get()
    }

    // MARK: Publishing

    /// Publishes one message and returns when the broker confirmed it (it is then on disk for persistent
    /// messages on durable queues). Throws ``AMQPError/Code/nacked``, ``AMQPError/Code/unroutable`` (mandatory
    /// messages no queue receives), ``AMQPError/Code/notFound`` (no such exchange), or
    /// ``AMQPError/Code/timeout``.
    ///
    /// Cancelling the calling task does not withdraw the message.
    public func publish(_ message: OutgoingMessage) async throws(AMQPError) {
        let deadline = ContinuousClock.now + configuration.publishTimeout
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, AMQPError>, Never>) in
            worker.submit(.publish(PendingPublish(message: message, deadline: deadline) { continuation.resume(returning: $0) }))
        }
        try result.get()
    }

    /// Publishes many messages pipelined (up to ``AMQPConfiguration/maxUnconfirmed`` awaiting confirms at once)
    /// and returns each one's outcome, in order, once every one is settled.
    public func publish(contentsOf messages: [OutgoingMessage]) async -> [Result<Void, AMQPError>] {
        await submit(contentsOf: messages).outcomes()
    }

    /// Hands many messages to the connection now, in order after everything handed over before, without waiting for
    /// their confirms: the caller may hand over the next batch while the broker confirms this one.
    public func submit(contentsOf messages: [OutgoingMessage]) -> PublishBatch {
        let deadline = ContinuousClock.now + configuration.publishTimeout
        let batch = PublishBatch(count: messages.count)
        for (index, message) in messages.enumerated() {
            worker.submit(.publish(PendingPublish(message: message, deadline: deadline) { batch.set(index, $0) }))
        }
        return batch
    }

    // MARK: Consuming

    /// Starts a consumer on `queue` with at most `prefetch` unacknowledged deliveries at once.
    public func consume(queue: String, prefetch: UInt16 = 100, exclusive: Bool = false, arguments: AMQPTable = [:]) async throws(AMQPError) -> AMQPConsumer {
        guard prefetch > 0 else { throw AMQPError(.invalidArgument, "prefetch must be at least 1") }
        let id = nextConsumerID.withLock { id -> UInt64 in
            defer { id += 1 }
            return id
        }
        let (stream, continuation) = AsyncThrowingStream<AMQPDelivery, any Error>.makeStream()
        let state = ConsumerState(id: id, queue: queue, prefetch: prefetch, exclusive: exclusive, arguments: arguments,
                                  continuation: continuation)
        let worker = self.worker
        continuation.onTermination = { termination in
            if case .cancelled = termination { worker.submit(.cancelConsumer(id: id, completion: nil)) }
        }
        let deadline = ContinuousClock.now + configuration.rpcTimeout
        let result = await withCheckedContinuation { (c: CheckedContinuation<Result<Void, AMQPError>, Never>) in
            worker.submit(.consume(state, deadline: deadline, completion: { c.resume(returning: $0) }))
        }
        if case .failure(let error) = result {
            worker.submit(.cancelConsumer(id: id, completion: nil))
            throw error
        }
        return AMQPConsumer(stream: stream, id: id, worker: worker, queue: queue)
    }
}

/// Messages handed to the broker together (``AMQPConnection/submit(contentsOf:)``): each one's outcome, once
/// every one is settled.
public final class PublishBatch: Sendable {
    private struct State {
        var results: [Result<Void, AMQPError>?]
        var remaining: Int
        var waiter: CheckedContinuation<[Result<Void, AMQPError>], Never>?
    }
    private let state: Mutex<State>

    init(count: Int) { state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, waiter: nil)) }

    /// Each message's outcome, in the order handed over; waits until the last is settled. Call it once.
    public func outcomes() async -> [Result<Void, AMQPError>] {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> [Result<Void, AMQPError>]? in
                guard state.remaining == 0 else {
                    state.waiter = continuation
                    return nil
                }
                return state.results.map { $0! }
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    func set(_ index: Int, _ result: Result<Void, AMQPError>) {
        let finished = state.withLock { state -> (CheckedContinuation<[Result<Void, AMQPError>], Never>, [Result<Void, AMQPError>])? in
            guard state.results[index] == nil else { return nil }
            state.results[index] = result
            state.remaining -= 1
            guard state.remaining == 0, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return (waiter, state.results.map { $0! })
        }
        if let (waiter, results) = finished { waiter.resume(returning: results) }
    }
}
