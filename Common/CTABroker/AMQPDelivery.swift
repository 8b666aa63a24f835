/// A message the broker delivered to a consumer. Settle it exactly once: ``ack(multiple:)``,
/// ``nack(multiple:requeue:)`` or ``reject(requeue:)``.
///
/// Settling never blocks: it is queued for the connection's thread. If the channel the message came on has
/// closed since (a reconnect, for example), the broker has already put the message back in its queue and will
/// deliver it again with ``redelivered`` set, so the settlement is dropped.
public struct AMQPDelivery: Sendable {
    public let body: [UInt8]
    public let exchange: String
    public let routingKey: String
    /// True when the broker delivered this message before and it was not acknowledged.
    public let redelivered: Bool
    public let properties: AMQPProperties
    public let deliveryTag: UInt64
    let channel: UInt16
    let generation: UInt64
    let worker: ConnectionWorker

    init(body: [UInt8], exchange: String, routingKey: String, redelivered: Bool, properties: AMQPProperties,
         deliveryTag: UInt64, channel: UInt16, generation: UInt64, worker: ConnectionWorker) {
        self.body = body
        self.exchange = exchange
        self.routingKey = routingKey
        self.redelivered = redelivered
        self.properties = properties
        self.deliveryTag = deliveryTag
        self.channel = channel
        self.generation = generation
        self.worker = worker
    }

    /// Tells the broker the message is handled; with `multiple`, every earlier unsettled delivery of the same
    /// consumer too.
    public func ack(multiple: Bool = false) {
        worker.submit(.settle(channel: channel, generation: generation, deliveryTag: deliveryTag, .ack(multiple: multiple)))
    }

    /// Refuses the message: back to the queue with `requeue`, else to the queue's dead-letter exchange (or dropped
    /// by the broker if it has none).
    public func nack(multiple: Bool = false, requeue: Bool = true) {
        worker.submit(.settle(channel: channel, generation: generation, deliveryTag: deliveryTag, .nack(multiple: multiple, requeue: requeue)))
    }

    /// Refuses this one message; see ``nack(multiple:requeue:)``.
    public func reject(requeue: Bool = false) {
        worker.submit(.settle(channel: channel, generation: generation, deliveryTag: deliveryTag, .reject(requeue: requeue)))
    }
}

/// The deliveries of one consumer, as an `AsyncSequence`.
///
/// It survives reconnects: after the connection comes back the consumer is registered again and deliveries
/// continue. It ends when ``cancel()`` is called, when the iterating task is cancelled, when the connection
/// closes, or with an error when the broker cancels the consumer (its queue was deleted) or the connection is
/// lost for good.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    let stream: AsyncThrowingStream<AMQPDelivery, any Error>
    let id: UInt64
    let worker: ConnectionWorker
    /// The queue it consumes from.
    public let queue: String

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<AMQPDelivery, any Error>.AsyncIterator
        public mutating func next() async throws -> AMQPDelivery? { try await base.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator()) }

    /// Stops consuming. Unacknowledged deliveries go back to the queue.
    public func cancel() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let accepted = worker.submit(.cancelConsumer(id: id, completion: { continuation.resume() }))
            _ = accepted  // a closed connection resumes through the rejection path
        }
    }
}
