public import CTABroker
public import CTACore
public import Logging

// The wire contract (CTACore) applied to the AMQP client (CTABroker): declaring CTA's topology, building messages
// with the properties docs/protocol.md asks for, and moving a refused delivery to the dead-letter exchange with
// its reason. Agents, coordinators and gateways all use these, so they declare and publish identically.

extension AMQPConnection {
    /// Declares CTA's exchanges, then `queues`, then `bindings`.
    public func declareTopology(queues: [Topology.Queue], bindings: [Topology.Binding]) async throws(AMQPError) {
        for exchange in Topology.exchanges {
            try await declareExchange(exchange.name, kind: ExchangeKind(exchange.kind.rawValue), durable: exchange.durable)
        }
        for queue in queues {
            try await declareQueue(queue.name, durable: queue.durable, arguments: queue.arguments.mapValues(\.amqp))
        }
        for binding in bindings {
            try await bindQueue(binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
        }
    }

    /// Republishes a refused delivery to the dead-letter exchange with its reason (the `cta-error-*` headers),
    /// waits for the confirm, then acks the original. If the republish fails, the delivery is released so it is
    /// not lost (the broker's delivery limit dead-letters it eventually). Returns whether it was dead-lettered.
    @discardableResult
    public func deadLetter(
        _ delivery: AMQPDelivery, queue: String, error: WireError, rejecter: String, logger: Logger
    ) async -> Bool {
        var properties = delivery.properties
        let headers = Topology.DeadLetterHeader.headers(
            for: error, exchange: delivery.exchange, routingKey: delivery.routingKey, queue: queue, at: .now(),
            by: rejecter)
        for (name, value) in headers { properties.headers[name] = .string(value) }
        let message = OutgoingMessage(
            exchange: Topology.deadLetterExchange, routingKey: delivery.routingKey, body: delivery.body,
            properties: properties, mandatory: false)
        do throws(AMQPError) {
            try await publish(message)
            delivery.ack()
            logger.warning(
                "refused a message",
                metadata: [
                    "cta.queue": "\(queue)", "cta.error.code": "\(error.code.name)", "cta.error.path": "\(error.path)",
                    "cta.error.reason": "\(error.description)",
                ])
            return true
        } catch let publishError {
            logger.error(
                "could not dead-letter a refused message; it goes back to its queue",
                metadata: ["cta.queue": "\(queue)", "cta.error": "\(publishError)"])
            delivery.nack(requeue: true)
            return false
        }
    }
}

extension OutgoingMessage {
    /// A CTA event: JSON body, `message_id` = event id, `type`, `timestamp` in seconds, persistent unless
    /// it is a heartbeat, published with `mandatory` so an unroutable event comes back as an error.
    public static func event(
        _ body: [UInt8], id: EventID?, type: EventType, time: Timestamp?, exchange: String, routingKey: String
    ) -> OutgoingMessage {
        OutgoingMessage(
            exchange: exchange,
            routingKey: routingKey,
            body: body,
            properties: AMQPProperties(
                contentType: Topology.contentType, persistent: type != .agentHeartbeat, messageID: id?.description,
                timestamp: time.map { UInt64(max(0, $0.microsecondsSinceEpoch / 1_000_000)) }, type: type.rawValue),
            mandatory: true)
    }

    /// An envelope, encoded and checked, addressed as its type requires.
    public static func envelope(_ envelope: Envelope, exchange: String, routingKey: String) throws(WireError)
        -> OutgoingMessage
    {
        let body = try envelope.encoded()
        return .event(
            Array(body), id: envelope.id, type: envelope.type, time: envelope.time, exchange: exchange,
            routingKey: routingKey)
    }
}

extension Topology.ArgumentValue {
    /// The AMQP table value of a queue argument.
    public var amqp: AMQPValue {
        switch self {
        case .string(let value): .string(value)
        case .integer(let value): .int(value)
        }
    }
}
