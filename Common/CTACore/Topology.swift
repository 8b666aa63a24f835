// The broker topology of the whole system: exchanges, queues, arguments, bindings, routing keys and dead-letter
// headers. `docs/protocol.md` describes the same names; a test checks that the two agree.

/// The names and shapes of everything CTA declares on RabbitMQ.
public enum Topology {
    // MARK: Exchanges

    /// Agents publish every event here (topic exchange); the routing key is the event type.
    public static let eventsExchange = "cta.events"
    /// The coordinator publishes work and control here (direct exchange), keyed by target.
    public static let dispatchExchange = "cta.dispatch"
    /// Rejected messages go here (topic exchange), with their original routing key.
    public static let deadLetterExchange = "cta.dead-letter"

    // MARK: Coordinator queues

    /// Registrations and shutdown notices.
    public static let agentsQueue = "cta.coordinator.agents"
    /// Heartbeats: a classic queue whose messages expire (see ``heartbeatTTL``).
    public static let heartbeatsQueue = "cta.coordinator.heartbeats"
    /// Execution states.
    public static let statesQueue = "cta.coordinator.states"
    /// Test results and log chunks.
    public static let resultsQueue = "cta.coordinator.results"
    /// Every rejected message, kept for people to inspect.
    public static let deadLetterQueue = "cta.dead-letters"

    // MARK: Agent-side queues

    /// A machine's own queue: mono and stress dispatches, parallel announcements, cancels, drains.
    public static func machineQueue(_ machine: MachineName) -> String { "cta.machine.\(machine)" }
    /// A group's queue: group-mode dispatches, taken by any one member.
    public static func groupQueue(_ group: GroupName) -> String { "cta.group.\(group)" }
    /// A parallel execution's shared queue: one `execution.test` per test.
    public static func parallelQueue(execution: ExecutionID) -> String { "cta.parallel.\(execution)" }

    // MARK: Routing keys

    /// The routing key of an event published to ``eventsExchange``: its type.
    public static func routingKey(for type: EventType) -> String { type.rawValue }
    /// Routes to one machine's queue on ``dispatchExchange``.
    public static func machineRoutingKey(_ machine: MachineName) -> String { "machine.\(machine)" }
    /// Routes to one group's queue on ``dispatchExchange``.
    public static func groupRoutingKey(_ group: GroupName) -> String { "group.\(group)" }
    /// Routes to one parallel execution's queue on ``dispatchExchange``.
    public static func parallelRoutingKey(execution: ExecutionID) -> String { "parallel.\(execution)" }
    /// Routes to every machine queue on ``dispatchExchange`` (every machine queue is bound with it).
    public static let broadcastRoutingKey = "broadcast"

    /// The coordinator queue an agent event lands in; nil for coordinator events.
    public static func coordinatorQueue(for type: EventType) -> String? {
        switch type {
        case .agentRegistration, .agentShutdown: agentsQueue
        case .agentHeartbeat: heartbeatsQueue
        case .executionState: statesQueue
        case .testResult, .executionLog: resultsQueue
        case .agentDrain, .executionDispatch, .executionTest, .executionCancel: nil
        }
    }

    /// The event types each coordinator queue carries, for ``Envelope/decode(_:accepting:)``.
    public static func acceptedTypes(forCoordinatorQueue queue: String) -> Set<EventType> {
        Set(EventType.allCases.filter { coordinatorQueue(for: $0) == queue })
    }

    /// The event types an agent accepts from its machine queue.
    public static let machineQueueTypes: Set<EventType> = [.executionDispatch, .executionCancel, .agentDrain]
    /// The event types an agent accepts from a group queue.
    public static let groupQueueTypes: Set<EventType> = [.executionDispatch]
    /// The event types an agent accepts from a parallel queue.
    public static let parallelQueueTypes: Set<EventType> = [.executionTest]

    // MARK: Timing

    /// Heartbeats older than this are useless and expire unread (milliseconds).
    public static let heartbeatTTL: Int64 = 60_000
    /// A parallel queue nobody used for this long is deleted by the broker, in case no coordinator did (milliseconds).
    public static let parallelQueueExpiry: Int64 = 7 * 24 * 3_600_000
    /// Deliveries of one message before the broker dead-letters it as a poison message.
    public static let deliveryLimit: Int64 = 5

    // MARK: Declarations

    /// An argument value in a queue declaration.
    public enum ArgumentValue: Hashable, Sendable {
        case string(String)
        case integer(Int64)
    }

    /// A queue declaration. Every declarer uses exactly these arguments: RabbitMQ refuses a redeclaration whose
    /// arguments differ (`PRECONDITION_FAILED`).
    public struct Queue: Hashable, Sendable {
        public var name: String
        /// Always true: every CTA queue survives a broker restart.
        public var durable: Bool
        public var arguments: [String: ArgumentValue]
    }

    /// The kind of an exchange.
    public enum ExchangeKind: String, Hashable, Sendable {
        case direct, topic, fanout
    }

    /// An exchange declaration; every exchange is durable.
    public struct Exchange: Hashable, Sendable {
        public var name: String
        public var kind: ExchangeKind
        public var durable: Bool
    }

    /// A binding of a queue to an exchange.
    public struct Binding: Hashable, Sendable {
        public var exchange: String
        public var queue: String
        public var routingKey: String
    }

    /// The three exchanges.
    public static let exchanges: [Exchange] = [
        Exchange(name: eventsExchange, kind: .topic, durable: true),
        Exchange(name: dispatchExchange, kind: .direct, durable: true),
        Exchange(name: deadLetterExchange, kind: .topic, durable: true),
    ]

    /// Arguments of a quorum queue whose rejected and poison messages go to the dead-letter exchange.
    static let workQueueArguments: [String: ArgumentValue] = [
        "x-queue-type": .string("quorum"),
        "x-dead-letter-exchange": .string(deadLetterExchange),
        "x-dead-letter-strategy": .string("at-least-once"),
        "x-overflow": .string("reject-publish"),
        "x-delivery-limit": .integer(deliveryLimit),
    ]

    /// The coordinator's queues and the dead-letter queue, which a coordinator declares on start.
    public static let coordinatorQueues: [Queue] = [
        Queue(name: agentsQueue, durable: true, arguments: workQueueArguments),
        Queue(
            name: heartbeatsQueue,
            durable: true,
            arguments: ["x-queue-type": .string("classic"), "x-message-ttl": .integer(heartbeatTTL)]
        ),
        Queue(name: statesQueue, durable: true, arguments: workQueueArguments),
        Queue(name: resultsQueue, durable: true, arguments: workQueueArguments),
        Queue(name: deadLetterQueue, durable: true, arguments: ["x-queue-type": .string("quorum")]),
    ]

    /// The bindings of the coordinator's queues and of the dead-letter queue.
    public static var coordinatorBindings: [Binding] {
        EventType.allCases.compactMap { type in
            coordinatorQueue(for: type).map {
                Binding(exchange: eventsExchange, queue: $0, routingKey: routingKey(for: type))
            }
        } + [Binding(exchange: deadLetterExchange, queue: deadLetterQueue, routingKey: "#")]
    }

    /// A machine's queue.
    public static func machineQueueDeclaration(_ machine: MachineName) -> Queue {
        Queue(name: machineQueue(machine), durable: true, arguments: workQueueArguments)
    }

    /// A machine queue's two bindings: its own key and the broadcast key.
    public static func machineBindings(_ machine: MachineName) -> [Binding] {
        [
            Binding(exchange: dispatchExchange, queue: machineQueue(machine), routingKey: machineRoutingKey(machine)),
            Binding(exchange: dispatchExchange, queue: machineQueue(machine), routingKey: broadcastRoutingKey),
        ]
    }

    /// A group's queue.
    public static func groupQueueDeclaration(_ group: GroupName) -> Queue {
        Queue(name: groupQueue(group), durable: true, arguments: workQueueArguments)
    }

    /// A group queue's binding.
    public static func groupBinding(_ group: GroupName) -> Binding {
        Binding(exchange: dispatchExchange, queue: groupQueue(group), routingKey: groupRoutingKey(group))
    }

    /// A parallel execution's queue; the coordinator declares it before publishing the tests and deletes it when
    /// the execution ends.
    public static func parallelQueueDeclaration(execution: ExecutionID) -> Queue {
        var arguments = workQueueArguments
        arguments["x-expires"] = .integer(parallelQueueExpiry)
        return Queue(name: parallelQueue(execution: execution), durable: true, arguments: arguments)
    }

    /// A parallel queue's binding.
    public static func parallelBinding(execution: ExecutionID) -> Binding {
        Binding(
            exchange: dispatchExchange,
            queue: parallelQueue(execution: execution),
            routingKey: parallelRoutingKey(execution: execution)
        )
    }

    // MARK: Message properties

    /// The AMQP content type of every CTA message.
    public static let contentType = "application/json"

    /// Headers a component adds when it moves a message to ``deadLetterExchange``. The body and the original
    /// properties are kept unchanged.
    public enum DeadLetterHeader {
        /// The ``WireError/Code`` name, e.g. `missingField`.
        public static let code = "cta-error-code"
        /// The JSON path of the offending field, e.g. `payload.tests[0].stages[1].run` (empty for the root).
        public static let path = "cta-error-path"
        /// The error's description, safe to show.
        public static let reason = "cta-error-reason"
        /// The exchange the message was published to.
        public static let originalExchange = "cta-original-exchange"
        /// The routing key it was published with.
        public static let originalRoutingKey = "cta-original-routing-key"
        /// The queue it was consumed from (empty when a gateway refused it before publishing).
        public static let originalQueue = "cta-original-queue"
        /// When it was dead-lettered, RFC 3339 UTC.
        public static let deadLetteredAt = "cta-dead-lettered-at"
        /// Who dead-lettered it: `coordinator/<instance>`, `agent/<machine>` or `gateway/<instance>`.
        public static let deadLetteredBy = "cta-dead-lettered-by"

        /// Every header name, for checks and tools.
        public static let all = [
            code, path, reason, originalExchange, originalRoutingKey, originalQueue, deadLetteredAt, deadLetteredBy,
        ]

        /// The headers for a message refused with `error`.
        public static func headers(
            for error: WireError,
            exchange: String,
            routingKey: String,
            queue: String,
            at time: Timestamp,
            by rejecter: String
        ) -> [String: String] {
            [
                code: error.code.name,
                path: error.path,
                reason: error.description,
                originalExchange: exchange,
                originalRoutingKey: routingKey,
                originalQueue: queue,
                deadLetteredAt: time.rfc3339,
                deadLetteredBy: rejecter,
            ]
        }
    }
}
