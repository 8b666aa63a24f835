public import CTABroker
import CTAMessaging
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
        var queues = [Topology.machineQueueDeclaration(machine)]
        var bindings = Topology.machineBindings(machine)
        for group in groups {
            queues.append(Topology.groupQueueDeclaration(group))
            bindings.append(Topology.groupBinding(group))
        }
        do throws(AMQPError) {
            try await connection.declareTopology(queues: queues, bindings: bindings)
        } catch {
            throw TransportError(error)
        }
    }

    public func publish(_ events: [OutboundEvent]) async -> [Result<Void, TransportError>] {
        let messages = events.map { event in
            OutgoingMessage.event(
                event.body, id: event.id, type: event.type, time: event.time, exchange: Topology.eventsExchange,
                routingKey: Topology.routingKey(for: event.type))
        }
        return await connection.publish(contentsOf: messages).map { result in
            result.mapError { TransportError($0) }
        }
    }

    public func publishHeartbeat(_ body: [UInt8]) async throws(TransportError) {
        let message = OutgoingMessage.event(
            body, id: nil, type: .agentHeartbeat, time: nil, exchange: Topology.eventsExchange,
            routingKey: Topology.routingKey(for: .agentHeartbeat))
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
                                await connection.deadLetter(
                                    delivery, queue: queue, error: error, rejecter: rejecter, logger: logger)
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
