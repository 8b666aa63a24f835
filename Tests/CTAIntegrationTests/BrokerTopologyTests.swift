import CTABroker
import CTACore
import Foundation
import Testing
import CTADefinitions

extension Topology.ArgumentValue {
    var amqp: AMQPValue {
        switch self {
        case .string(let s): .string(s)
        case .integer(let i): .int(i)
        }
    }
}

extension AMQPConnection {
    func declare(_ queue: Topology.Queue) async throws {
        try await declareQueue(queue.name, durable: queue.durable, arguments: queue.arguments.mapValues(\.amqp))
    }

    func declare(_ binding: Topology.Binding) async throws {
        try await bindQueue(binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
    }
}

/// The topology `docs/protocol.md` specifies, declared on the real broker: proves RabbitMQ accepts every
/// queue argument it names, and that routing keys reach the queues the document says.
@Suite("Broker: the wire-contract topology on RabbitMQ", .serialized, .enabled(if: ServiceEnvironment.brokerEnabled, "needs CTA_AMQP_URL"))
struct BrokerTopologyTests {
    @Test func everyDocumentedQueueAndBindingIsAcceptedAndRoutes() async throws {
        try await withBroker { broker in
            for exchange in Topology.exchanges {
                try await broker.declareExchange(exchange.name, kind: ExchangeKind(exchange.kind.rawValue), durable: exchange.durable)
            }
            let machine = try #require(MachineName("topology-test-machine"))
            let group = try #require(GroupName("topology-test-group"))
            let execution = ExecutionID()
            let queues = Topology.coordinatorQueues + [
                Topology.machineQueueDeclaration(machine), Topology.groupQueueDeclaration(group),
                Topology.parallelQueueDeclaration(execution: execution),
            ]
            for queue in queues { try await broker.declare(queue) }
            let bindings = Topology.coordinatorBindings + Topology.machineBindings(machine)
                + [Topology.groupBinding(group), Topology.parallelBinding(execution: execution)]
            for binding in bindings { try await broker.declare(binding) }
            for queue in queues { _ = try await broker.purgeQueue(queue.name) }

            // Agent events reach the coordinator queue for their type.
            for type in EventType.allCases {
                guard let queue = Topology.coordinatorQueue(for: type) else { continue }
                let before = try await broker.queueState(queue).messageCount
                try await broker.publish(OutgoingMessage(exchange: Topology.eventsExchange, routingKey: Topology.routingKey(for: type), body: Array("{}".utf8), mandatory: true))
                try await waitUntil { try await broker.queueState(queue).messageCount == before + 1 }
            }
            // Dispatch reaches the machine, the group, the parallel queue; broadcast reaches the machine.
            let targets: [(String, String)] = [
                (Topology.machineRoutingKey(machine), Topology.machineQueue(machine)),
                (Topology.broadcastRoutingKey, Topology.machineQueue(machine)),
                (Topology.groupRoutingKey(group), Topology.groupQueue(group)),
                (Topology.parallelRoutingKey(execution: execution), Topology.parallelQueue(execution: execution)),
            ]
            for (key, queue) in targets {
                let before = try await broker.queueState(queue).messageCount
                try await broker.publish(OutgoingMessage(exchange: Topology.dispatchExchange, routingKey: key, body: Array("{}".utf8), mandatory: true))
                try await waitUntil { try await broker.queueState(queue).messageCount == before + 1 }
            }
            // A rejected work message is dead-lettered by the broker to the dead-letter queue.
            let deadBefore = try await broker.queueState(Topology.deadLetterQueue).messageCount
            let consumer = try await broker.consume(queue: Topology.groupQueue(group))
            for try await delivery in consumer {
                delivery.reject(requeue: false)
                break
            }
            await consumer.cancel()
            try await waitUntil { try await broker.queueState(Topology.deadLetterQueue).messageCount == deadBefore + 1 }

            for queue in queues where queue.name != Topology.deadLetterQueue { try await broker.deleteQueue(queue.name) }
            try await broker.deleteQueue(Topology.deadLetterQueue)
        }
    }
}
