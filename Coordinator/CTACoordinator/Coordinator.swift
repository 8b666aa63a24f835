public import CTABroker
import CTACore
import CTAMessaging
import Foundation
public import Logging
import Synchronization
import CTADefinitions

/// One coordinator instance: the consumer of agent events, the composer that dispatches pending executions, and
/// the timekeeper. Several instances may run against the same broker and database; every write is idempotent
/// and every decision that must happen once (dispatching an execution, ending it) is claimed in the store.
public final class Coordinator: Sendable {
    public struct Settings: Sendable {
        /// The instance name (machine-name alphabet): the source of its events, `coordinator/<instance>`.
        public var instance: String
        /// Largest batch of results written at once (the results queue's prefetch).
        public var resultBatch: Int
        /// How often the composer looks for due pending executions when nothing woke it (new machines, and new
        /// executions requested in this process, wake it at once).
        public var composerInterval: Duration
        /// How long a composer's claim on an execution lasts.
        public var claimDuration: Duration
        /// How long a pending execution that matched no machine waits before the next look.
        public var retryInterval: Duration
        /// How often the timekeeper checks deadlines and unfinished completions.
        public var sweepInterval: Duration
        /// After a running timeout's cancel, how long agents get to report before the execution is ended anyway.
        public var timeoutGrace: Duration
        /// How long the scheduler lease lasts: a coordinator that dies is replaced by another within it.
        public var schedulerLease: Duration
        /// How often the leading scheduler looks for due firings.
        public var schedulerTick: Duration
        /// How far back a new leader looks for firings nobody made (the latest missed one is made).
        public var schedulerCatchUp: Duration
        /// How webhooks are attempted and retried.
        public var webhooks: WebhookPolicy

        public init(
            instance: String, resultBatch: Int = 500, composerInterval: Duration = .milliseconds(20),
            claimDuration: Duration = .seconds(30), retryInterval: Duration = .seconds(1),
            sweepInterval: Duration = .seconds(1), timeoutGrace: Duration = .seconds(60),
            schedulerLease: Duration = .seconds(15), schedulerTick: Duration = .milliseconds(500),
            schedulerCatchUp: Duration = .seconds(600),
            webhooks: WebhookPolicy = WebhookPolicy()
        ) {
            self.instance = instance
            self.resultBatch = resultBatch
            self.composerInterval = composerInterval
            self.claimDuration = claimDuration
            self.retryInterval = retryInterval
            self.sweepInterval = sweepInterval
            self.timeoutGrace = timeoutGrace
            self.schedulerLease = schedulerLease
            self.schedulerTick = schedulerTick
            self.schedulerCatchUp = schedulerCatchUp
            self.webhooks = webhooks
        }
    }

    let store: any Store
    let connection: AMQPConnection
    let settings: Settings
    let logger: Logger
    let wake = Wakeup()
    /// Executions requested in this process, handed to the composer with their records (``compose(handed:)``).
    let handed = Mutex<[ExecutionRecord]>([])
    /// Queues this coordinator's connection declared (machine and group queues), so a dispatch declares each once.
    let declared = Mutex<Set<String>>([])
    /// The composer's last read of the machines.
    let machineCache = Mutex<(at: Date, machines: [MachineRecord])?>(nil)
    let webhookQueue = WebhookQueue()
    /// Counts for `/metrics`.
    public let metrics = CoordinatorMetrics()

    public init(store: any Store, broker: AMQPConfiguration, settings: Settings, logger: Logger) {
        var broker = broker
        broker.connectionName = "cta-coordinator/\(settings.instance)"
        self.store = store
        self.connection = AMQPConnection(configuration: broker, logger: logger)
        self.settings = settings
        self.logger = logger
    }

    /// `coordinator/<instance>`.
    var source: Source { .coordinator(settings.instance) }

    /// Connects (retrying until the broker answers), declares the coordinator's queues, prepares the store, then
    /// consumes, composes and keeps time until cancelled. On cancellation the batches being written are finished
    /// and acknowledged first.
    public func run() async throws {
        try await connect()
        try await retryingStore("prepare the store") { try await self.store.prepare() }
        logger.info("coordinator started", metadata: ["cta.instance": "\(settings.instance)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.consumeResults() }
            group.addTask { await self.consumeStates() }
            group.addTask { await self.consumeAgents(queue: Topology.agentsQueue) }
            group.addTask { await self.consumeAgents(queue: Topology.heartbeatsQueue) }
            group.addTask { await self.composeLoop() }
            group.addTask { await self.sweepLoop() }
            if let mongo = self.store as? MongoStore {
                group.addTask { await self.scheduleLoop(database: mongo.database) }
            }
            group.addTask { await self.deliveryLoop() }
            await group.waitForAll()
        }
        await connection.close()
        logger.info("coordinator stopped", metadata: ["cta.instance": "\(settings.instance)"])
    }

    /// Connects to the broker (retrying until it answers) and declares the coordinator's queues. `run()` does
    /// this itself; a command that only publishes (a cancel) calls it, then ``close()``.
    public func connect() async throws {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
        while true {
            do throws(AMQPError) {
                try await connection.connect()
                break
            } catch {
                try Task.checkCancellation()
                let delay = backoff.next()
                logger.warning("broker not reachable, retrying", metadata: ["cta.error": "\(error)", "cta.retry.delay": "\(delay)"])
                try await Task.sleep(for: delay)
            }
        }
        try await connection.declareTopology(queues: Topology.coordinatorQueues, bindings: Topology.coordinatorBindings)
    }

    /// Closes the broker connection of a coordinator used only for commands.
    public func close() async {
        await connection.close()
    }

    /// Runs a store operation until it succeeds: a database outage pauses the caller (and so, for consumers, the
    /// consumption: deliveries stay unacknowledged in the broker) instead of losing anything. Throws only on
    /// cancellation.
    func retryingStore<T: Sendable>(_ what: String, _ body: @Sendable () async throws -> T) async throws -> T {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        while true {
            do {
                return try await body()
            } catch {
                try Task.checkCancellation()
                let delay = backoff.next()
                logger.warning(
                    "store unavailable, retrying", metadata: ["cta.action": "\(what)", "cta.error": "\(error)", "cta.retry.delay": "\(delay)"])
                try await Task.sleep(for: delay)
            }
        }
    }

    /// Ends an execution once across every coordinator; the one that ended it runs what follows an end
    /// (callbacks, chained scenarios). Returns whether this call ended it.
    func end(_ record: ExecutionRecord, phase: ExecutionPhase, reason: String?, counts: ResultCounts) async throws -> Bool {
        guard try await store.endExecution(record.executionID, phase: phase, reason: reason, counts: counts, at: Date())
        else { return false }
        await executionEnded(record, phase: phase, reason: reason, counts: counts)
        return true
    }

    /// Publishes a coordinator event; throws when the broker did not confirm it.
    func publish(_ payload: some EventPayload, id: EventID = EventID(), exchange: String = Topology.dispatchExchange, routingKey: String)
        async throws
    {
        let envelope = Envelope(id: id, source: source, payload: payload)
        let message = try OutgoingMessage.envelope(envelope, exchange: exchange, routingKey: routingKey)
        try await connection.publish(message)
    }
}
