public import CTABroker
public import CTACore
public import Logging

/// The agent's direct path to RabbitMQ.
///
/// The first connection is retried with jittered backoff until it succeeds (an agent that starts before the broker
/// waits for it); after that, ``CTABroker/AMQPConnection`` reconnects on its own, declares the topology again and
/// resumes consumers.
public final class AMQPAgentTransport: AgentTransport {
    private let connection: AMQPConnection
    private let machine: MachineName
    private let logger: Logger

    /// A transport for `machine` over `configuration`.
    public init(configuration: AMQPConfiguration, machine: MachineName, logger: Logger) {
        var configuration = configuration
        configuration.connectionName = "cta-agent/\(machine)"
        self.connection = AMQPConnection(configuration: configuration, logger: logger)
        self.machine = machine
        self.logger = logger
    }

    private var source: String { Source.agent(machine).description }

    public func declare(machine: MachineName, groups: [GroupName]) async throws(TransportError) {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(30))
        while true {
            do throws(AMQPError) {
                try await connection.connect()
                break
            } catch {
                if Task.isCancelled { throw TransportError(.closed, "cancelled while connecting") }
                let delay = backoff.next()
                logger.warning(
                    "broker not reachable, retrying",
                    metadata: ["cta.error": "\(error)", "cta.retry.delay": "\(delay)"])
                try? await Task.sleep(for: delay)
                if Task.isCancelled { throw TransportError(.closed, "cancelled while connecting") }
            }
        }
        do throws(AMQPError) {
            for exchange in Topology.exchanges {
                try await connection.declareExchange(
                    exchange.name, kind: ExchangeKind(exchange.kind.rawValue), durable: exchange.durable)
            }
            var queues = [Topology.machineQueueDeclaration(machine)]
            var bindings = Topology.machineBindings(machine)
            for group in groups {
                queues.append(Topology.groupQueueDeclaration(group))
                bindings.append(Topology.groupBinding(group))
            }
            for queue in queues {
                try await connection.declareQueue(
                    queue.name, durable: queue.durable, arguments: queue.arguments.mapValues(\.amqp))
            }
            for binding in bindings {
                try await connection.bindQueue(binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
            }
        } catch {
            throw TransportError(error)
        }
    }

    public func publish(_ events: [OutboundEvent]) async -> [Result<Void, TransportError>] {
        let messages = events.map { event in
            OutgoingMessage(
                exchange: Topology.eventsExchange,
                routingKey: Topology.routingKey(for: event.type),
                body: event.body,
                properties: AMQPProperties(
                    contentType: Topology.contentType, persistent: true, messageID: event.id.description,
                    timestamp: UInt64(max(0, event.time.microsecondsSinceEpoch / 1_000_000)), type: event.type.rawValue),
                mandatory: true)
        }
        return await connection.publish(contentsOf: messages).map { result in
            result.mapError { TransportError($0) }
        }
    }

    public func publishHeartbeat(_ body: [UInt8]) async throws(TransportError) {
        let message = OutgoingMessage(
            exchange: Topology.eventsExchange,
            routingKey: Topology.routingKey(for: .agentHeartbeat),
            body: body,
            properties: AMQPProperties(
                contentType: Topology.contentType, persistent: false, type: EventType.agentHeartbeat.rawValue),
            mandatory: true)
        do throws(AMQPError) {
            try await connection.publish(message)
        } catch {
            throw TransportError(error)
        }
    }

    public func consume(queue: String, prefetch: UInt16) async throws(TransportError) -> IncomingStream {
        let consumer: AMQPConsumer
        do throws(AMQPError) {
            consumer = try await connection.consume(queue: queue, prefetch: prefetch)
        } catch {
            throw TransportError(error)
        }
        let (stream, continuation) = AsyncThrowingStream<IncomingMessage, any Error>.makeStream()
        let connection = self.connection
        let rejecter = self.source
        let logger = self.logger
        let pump = Task {
            do {
                for try await delivery in consumer {
                    continuation.yield(
                        IncomingMessage(
                            body: delivery.body, queue: queue, exchange: delivery.exchange,
                            routingKey: delivery.routingKey, redelivered: delivery.redelivered
                        ) { settlement in
                            switch settlement {
                            case .ack: delivery.ack()
                            case .release: delivery.nack(requeue: true)
                            case .reject(let error):
                                await Self.deadLetter(
                                    delivery, queue: queue, error: error, rejecter: rejecter, connection: connection,
                                    logger: logger)
                            }
                        })
                }
                continuation.finish()
            } catch let error as AMQPError {
                continuation.finish(throwing: TransportError(error))
            } catch {
                continuation.finish(throwing: error)
            }
        }
        return IncomingStream(queue: queue, base: stream) {
            await consumer.cancel()
            await pump.value
        }
    }

    public func queueExists(_ queue: String) async throws(TransportError) -> Bool {
        do throws(AMQPError) {
            _ = try await connection.queueState(queue)
            return true
        } catch {
            if error.code == .notFound { return false }
            throw TransportError(error)
        }
    }

    public func close() async {
        await connection.close(drainTimeout: .seconds(5))
    }

    /// Republishes a refused delivery to the dead-letter exchange with its reason, waits for the confirm, then acks
    /// the original. If the republish fails, the delivery is released so it is not lost; the broker's delivery
    /// limit dead-letters it eventually.
    private static func deadLetter(
        _ delivery: AMQPDelivery, queue: String, error: WireError, rejecter: String, connection: AMQPConnection,
        logger: Logger
    ) async {
        var properties = delivery.properties
        let headers = Topology.DeadLetterHeader.headers(
            for: error, exchange: delivery.exchange, routingKey: delivery.routingKey, queue: queue, at: .now(),
            by: rejecter)
        for (name, value) in headers { properties.headers[name] = .string(value) }
        let message = OutgoingMessage(
            exchange: Topology.deadLetterExchange, routingKey: delivery.routingKey, body: delivery.body,
            properties: properties, mandatory: false)
        do throws(AMQPError) {
            try await connection.publish(message)
            delivery.ack()
            logger.warning(
                "refused a message",
                metadata: [
                    "cta.queue": "\(queue)", "cta.error.code": "\(error.code.name)", "cta.error.path": "\(error.path)",
                    "cta.error.reason": "\(error.description)",
                ])
        } catch let publishError {
            logger.error(
                "could not dead-letter a refused message; it goes back to its queue",
                metadata: ["cta.queue": "\(queue)", "cta.error": "\(publishError)"])
            delivery.nack(requeue: true)
        }
    }
}

extension TransportError {
    init(_ error: AMQPError) {
        switch error.code {
        case .unroutable: self.init(.unroutable, error.description)
        case .accessRefused, .preconditionFailed, .invalidArgument: self.init(.refused, error.description)
        case .notFound: self.init(.notFound, error.description)
        case .consumerCancelled: self.init(.consumerCancelled, error.description)
        case .closed: self.init(.closed, error.description)
        default: self.init(.unavailable, error.description)
        }
    }
}

extension Topology.ArgumentValue {
    var amqp: AMQPValue {
        switch self {
        case .string(let value): .string(value)
        case .integer(let value): .int(value)
        }
    }
}
