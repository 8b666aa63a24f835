public import CTABroker
public import CTACore
import CTAMessaging
import Foundation
public import HummingbirdWebSocket
public import Logging
import Synchronization

/// One agent's connection through the gateway: its own broker connection, its machine queue consumed on its
/// behalf, shared queues consumed while it gives credit, and its events published with confirms
/// (docs/protocol.md, "The gateway").
///
/// Deliveries are acked to the broker only after the agent's `ack`; an event is answered `confirmed` only after
/// the broker's confirm. When the connection ends, the broker connection closes and every unacked delivery goes
/// back to its queue; the agent resends what was not confirmed from its spool.
public final class AgentBridge: Sendable {
    public let machine: MachineName
    let broker: AMQPConnection
    let outbound: WebSocketOutboundWriter
    let logger: Logger
    private let writes = AsyncStream<[UInt8]>.makeStream()
    private let unsettled = Mutex<[UInt64: (delivery: AMQPDelivery, queue: String)]>([:])
    private let nextTag = Atomic<UInt64>(1)
    private let shared = Mutex<[String: Task<Void, Never>]>([:])
    private let publishes = PublishQueue(limit: AgentBridge.unansweredLimit)
    /// Batches handed to the broker whose confirms are not answered yet, in order.
    private let submitted = AsyncStream<([String], PublishBatch)>.makeStream()

    /// Most events of one agent received and not answered yet; past it the gateway stops reading the agent's frames
    /// until answers catch up (an agent has at most two batches of 1,000 out).
    static let unansweredLimit = 10_000
    /// Most events published in one batch of confirms.
    static let publishBatch = 500
    /// The machine queue's prefetch, as for a direct agent.
    static let machinePrefetch: UInt16 = 16

    public init(machine: MachineName, broker: AMQPConfiguration, outbound: WebSocketOutboundWriter, logger: Logger) {
        var configuration = broker
        configuration.connectionName = "cta-gateway/agent/\(machine)"
        // A lost broker connection ends the agent's connection: the agent reconnects, and its unacked work is
        // redelivered, rather than the gateway resuming consumers whose deliveries the agent still holds.
        configuration.reconnect = .init(enabled: false)
        self.machine = machine
        self.broker = AMQPConnection(configuration: configuration, logger: logger)
        self.outbound = outbound
        var logger = logger
        logger[metadataKey: "cta.machine"] = "\(machine)"
        self.logger = logger
    }

    var source: String { "agent/\(machine)" }

    /// Bridges until the agent or the broker goes away; returns the reason to close the WebSocket with, if any.
    public func run(_ inbound: WebSocketInboundStream) async -> String? {
        do throws(AMQPError) {
            try await broker.connect()
            try await broker.declareTopology(
                queues: [Topology.machineQueueDeclaration(machine)], bindings: Topology.machineBindings(machine))
        } catch {
            logger.warning("broker not available for an agent", metadata: ["cta.error": "\(error)"])
            await broker.close(drainTimeout: .zero)
            return "unavailable: the broker cannot be reached now"
        }
        let reason = await withTaskGroup(of: String?.self) { group in
            group.addTask { await self.writeLoop() }
            group.addTask { await self.publishLoop() }
            group.addTask { await self.answerLoop() }
            group.addTask { await self.consume(Topology.machineQueue(self.machine), prefetch: Self.machinePrefetch, shared: false) }
            group.addTask { await self.readLoop(inbound) }
            // The first to end decides: the agent left or misbehaved, or the broker connection ended.
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        for task in shared.withLock({ Array($0.values) }) { task.cancel() }
        writes.continuation.finish()
        publishes.finish()
        submitted.continuation.finish()
        await broker.close(drainTimeout: .seconds(2))
        return reason
    }

    // MARK: Agent to gateway

    private func readLoop(_ inbound: WebSocketInboundStream) async -> String? {
        do {
            for try await message in inbound.messages(maxSize: GatewayLimits.maximumFrameBytes) {
                guard case .text(let text) = message else { return "badFrame: frames are text messages" }
                let frame: GatewayFrame
                do {
                    frame = try GatewayFrame.decode(Array(text.utf8))
                } catch {
                    logger.notice("agent sent a bad frame; closing its connection", metadata: ["cta.error": "\(error)"])
                    return "badFrame: \(error.reason)"
                }
                if let problem = await handle(frame) { return problem }
            }
            return nil
        } catch {
            logger.info("agent connection ended", metadata: ["cta.error": "\(error)"])
            return nil
        }
    }

    /// Acts on one frame; returns a reason to close the connection for a frame the agent may not send.
    private func handle(_ frame: GatewayFrame) async -> String? {
        switch frame {
        case .ack(let tag):
            guard let held = takeDelivery(tag) else { return "badFrame: no delivery with tag \(tag)" }
            held.delivery.ack()
        case .release(let tag):
            guard let held = takeDelivery(tag) else { return "badFrame: no delivery with tag \(tag)" }
            held.delivery.nack(requeue: true)
        case .reject(let tag, let error):
            guard let held = takeDelivery(tag) else { return "badFrame: no delivery with tag \(tag)" }
            await broker.deadLetter(held.delivery, queue: held.queue, error: error, rejecter: source, logger: logger)
        case .credit(let queue, let credit):
            guard Self.isSharedQueue(queue) else { return "forbidden: \(queue) is not a group or parallel queue" }
            setCredit(queue, credit)
        case .publish(let id, let body):
            // Waits while too many of this agent's events are unanswered: the agent's writes then wait on TCP.
            await publishes.append((id, body))
        case .deliver, .consumerCancelled, .confirmed, .refused, .unroutable:
            return "badFrame: \(frame.name) is sent by the gateway, not the agent"
        }
        return nil
    }

    private func takeDelivery(_ tag: UInt64) -> (delivery: AMQPDelivery, queue: String)? {
        unsettled.withLock { $0.removeValue(forKey: tag) }
    }

    static func isSharedQueue(_ queue: String) -> Bool {
        if queue.hasPrefix("cta.group."), let group = GroupName(String(queue.dropFirst("cta.group.".count))) {
            return Topology.groupQueue(group) == queue
        }
        if queue.hasPrefix("cta.parallel."), let execution = ExecutionID(String(queue.dropFirst("cta.parallel.".count))) {
            return Topology.parallelQueue(execution: execution) == queue
        }
        return false
    }

    /// Consumes a shared queue while the agent gives credit (as prefetch); credit 0 stops, and what the agent
    /// holds stays for it to settle. A group queue is declared first (the agent may be its first member).
    private func setCredit(_ queue: String, _ credit: Int) {
        let old = shared.withLock { $0.removeValue(forKey: queue) }
        old?.cancel()
        guard credit > 0 else { return }
        let task = Task {
            if queue.hasPrefix("cta.group."), let group = GroupName(String(queue.dropFirst("cta.group.".count))) {
                do throws(AMQPError) {
                    try await broker.declareTopology(
                        queues: [Topology.groupQueueDeclaration(group)], bindings: [Topology.groupBinding(group)])
                } catch {
                    logger.warning("cannot declare a group queue", metadata: ["cta.queue": "\(queue)", "cta.error": "\(error)"])
                }
            }
            _ = await consume(queue, prefetch: UInt16(clamping: credit), shared: true)
        }
        shared.withLock { $0[queue] = task }
    }

    // MARK: Gateway to agent

    /// Forwards the deliveries of `queue` until it is cancelled; a shared queue that ends (deleted, or not
    /// there) is reported with `consumerCancelled`. Returns a reason when the machine queue's consumer ends.
    private func consume(_ queue: String, prefetch: UInt16, shared: Bool) async -> String? {
        let consumer: AMQPConsumer
        do throws(AMQPError) {
            consumer = try await broker.consume(queue: queue, prefetch: prefetch)
        } catch {
            if shared {
                send(.consumerCancelled(queue: queue))
                return nil
            }
            return "unavailable: cannot consume \(queue): \(error)"
        }
        do {
            for try await delivery in consumer {
                guard GatewayFrame.bodyIsText(delivery.body) else {
                    // A text message cannot carry it: refused here, as the agent would refuse it.
                    await broker.deadLetter(
                        delivery, queue: queue,
                        error: WireError(code: .malformedJSON, path: "", reason: "the message is not UTF-8 text"),
                        rejecter: "gateway/\(machine)", logger: logger)
                    continue
                }
                let tag = nextTag.add(1, ordering: .relaxed).oldValue
                unsettled.withLock { $0[tag] = (delivery, queue) }
                send(.deliver(tag: tag, queue: queue, redelivered: delivery.redelivered, body: delivery.body))
            }
        } catch let error as AMQPError where error.code == .consumerCancelled || error.code == .notFound {
            if shared { send(.consumerCancelled(queue: queue)) }
        } catch {
            if !shared { return "unavailable: the broker connection ended" }
        }
        // Cancelled (credit 0, or the agent left): the broker stops delivering; what the agent did not settle goes
        // back to the queue, as for a direct agent.
        await consumer.cancel()
        if shared { return nil }
        return Task.isCancelled ? nil : "unavailable: the broker ended the machine queue's consumer"
    }

    /// Hands the agent's events to the broker in order, in batches of what has arrived, without waiting for the
    /// previous batch's confirms (``answerLoop()`` waits for them); an event that is not a valid event of this agent
    /// is refused and dead-lettered instead.
    private func publishLoop() async -> String? {
        defer { submitted.continuation.finish() }
        while let batch = await publishes.next(atMost: Self.publishBatch) {
            var messages: [OutgoingMessage] = []
            var ids: [String] = []
            for event in batch {
                switch check(event) {
                case .success(let message):
                    messages.append(message)
                    ids.append(event.id)
                case .failure(let error):
                    if let problem = await refuse(event, error) { return problem }
                    publishes.answered(1)
                }
            }
            guard !messages.isEmpty else { continue }
            submitted.continuation.yield((ids, broker.submit(contentsOf: messages)))
        }
        return nil
    }

    /// Answers each published event with `confirmed` once the broker confirmed it, or `unroutable` when no queue
    /// took it, batch after batch in the order they were handed over. An event the broker did not take otherwise
    /// ends the bridge: the agent resends it from its spool.
    private func answerLoop() async -> String? {
        for await (ids, batch) in submitted.stream {
            var confirmed: [String] = []
            var unroutable: [String] = []
            for (id, result) in zip(ids, await batch.outcomes()) {
                switch result {
                case .success: confirmed.append(id)
                case .failure(let error) where error.code == .unroutable:
                    unroutable.append(id)
                case .failure(let error):
                    // Not confirmed: the agent keeps it and sends it again. A broker that is gone ends the bridge.
                    logger.info("an event was not confirmed", metadata: ["cta.error": "\(error)"])
                    answer(confirmed, unroutable: unroutable)
                    return "unavailable: the broker did not confirm an event"
                }
            }
            if !unroutable.isEmpty {
                logger.info("events no queue took", metadata: ["cta.events": "\(unroutable.count)"])
            }
            answer(confirmed, unroutable: unroutable)
            publishes.answered(ids.count)
        }
        return nil
    }

    /// The message for an event of this agent whose id is the frame's. Only the envelope fields are checked (the
    /// sender, what routing needs): the payload is the coordinator's to check, as for an event from a direct agent.
    private func check(_ event: (id: String, body: [UInt8])) -> Result<OutgoingMessage, WireError> {
        let header: EnvelopeHeader
        do throws(WireError) {
            header = try EnvelopeHeader.decode(event.body)
        } catch {
            return .failure(error)
        }
        guard header.source == .agent(machine) else {
            return .failure(
                WireError(
                    code: .unauthorisedSource, path: "source",
                    reason: "this connection may only send events of agent/\(machine), got \(header.source)"))
        }
        guard header.id.description == event.id.lowercased() else {
            return .failure(WireError(code: .invalidValue, path: "id", reason: "the frame's id is \(event.id), the event's \(header.id)"))
        }
        return .success(
            .event(
                event.body, id: header.id, type: header.type, time: header.time,
                exchange: Topology.eventsExchange, routingKey: Topology.routingKey(for: header.type)))
    }

    /// Dead-letters a refused event (no queue it came from) and answers `refused`. When the dead letter cannot be
    /// published, returns a reason to end the connection: the agent reconnects and sends the event again, instead
    /// of waiting for an answer that never comes.
    private func refuse(_ event: (id: String, body: [UInt8]), _ error: WireError) async -> String? {
        var properties = AMQPProperties(contentType: Topology.contentType)
        for (name, value) in Topology.DeadLetterHeader.headers(
            for: error, exchange: Topology.eventsExchange, routingKey: "", queue: "", at: .now(), by: "gateway/\(machine)")
        {
            properties.headers[name] = .string(value)
        }
        do throws(AMQPError) {
            try await broker.publish(
                OutgoingMessage(
                    exchange: Topology.deadLetterExchange, routingKey: "refused", body: event.body, properties: properties,
                    mandatory: false))
            logger.warning("refused an agent's event", metadata: ["cta.error": "\(error)"])
            send(.refused(id: event.id, error: error))
            return nil
        } catch {
            logger.error("could not dead-letter a refused event", metadata: ["cta.error": "\(error)"])
            return "unavailable: the broker did not take a refused event's dead letter"
        }
    }

    // MARK: Writing

    /// Sends `confirmed` for these ids, as many to a frame as one carries.
    private func answer(_ ids: [String], unroutable: [String]) {
        for start in stride(from: 0, to: ids.count, by: GatewayFrame.confirmedPerFrame) {
            send(.confirmed(ids: Array(ids[start..<min(start + GatewayFrame.confirmedPerFrame, ids.count)])))
        }
        for start in stride(from: 0, to: unroutable.count, by: GatewayFrame.confirmedPerFrame) {
            send(.unroutable(ids: Array(unroutable[start..<min(start + GatewayFrame.confirmedPerFrame, unroutable.count)])))
        }
    }

    private func send(_ frame: GatewayFrame) {
        writes.continuation.yield(frame.encoded)
    }

    /// Writes frames in order, one at a time.
    private func writeLoop() async -> String? {
        for await bytes in writes.stream {
            do {
                try await outbound.write(.text(String(decoding: bytes, as: UTF8.self)))
            } catch {
                return nil
            }
        }
        return nil
    }
}

/// The agent's events waiting to be published, handed out in batches of what has arrived, with a limit on how many
/// may be received and not answered yet.
final class PublishQueue: Sendable {
    private struct State {
        var events: [(id: String, body: [UInt8])] = []
        var finished = false
        /// Events appended and not yet ``PublishQueue/answered(_:)``.
        var unanswered = 0
        var consumer: CheckedContinuation<Void, Never>?
        var producer: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Adds an event; first waits while `limit` events are unanswered (until answers come, or the queue finishes).
    func append(_ event: (id: String, body: [UInt8])) async {
        while true {
            let (added, consumer) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                guard state.unanswered < limit || state.finished else { return (false, nil) }
                state.events.append(event)
                state.unanswered += 1
                defer { state.consumer = nil }
                return (true, state.consumer)
            }
            if added {
                consumer?.resume()
                return
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Bool in
                        if state.unanswered < limit || state.finished { return true }
                        state.producer = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                self.finish()
            }
        }
    }

    /// `count` events were answered (confirmed or refused): room for as many more.
    func answered(_ count: Int) {
        let producer = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.unanswered -= count
            guard state.unanswered < limit else { return nil }
            defer { state.producer = nil }
            return state.producer
        }
        producer?.resume()
    }

    func finish() {
        let (consumer, producer) = state.withLock { state in
            state.finished = true
            defer {
                state.consumer = nil
                state.producer = nil
            }
            return (state.consumer, state.producer)
        }
        consumer?.resume()
        producer?.resume()
    }

    /// Up to `limit` events, in order, waiting for one when none is there; nil once finished (or cancelled).
    func next(atMost limit: Int) async -> [(id: String, body: [UInt8])]? {
        while true {
            let taken = state.withLock { state -> [(id: String, body: [UInt8])]? in
                guard !state.events.isEmpty else { return nil }
                let count = min(limit, state.events.count)
                defer { state.events.removeFirst(count) }
                return Array(state.events.prefix(count))
            }
            if let taken { return taken }
            if state.withLock({ $0.finished }) || Task.isCancelled { return nil }
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Bool in
                        if !state.events.isEmpty || state.finished { return true }
                        state.consumer = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                self.finish()
            }
        }
    }
}
