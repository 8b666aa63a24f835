import CTABroker
import CTACore
import CTAMessaging
import Foundation
import Logging

// The consumer: agents' events in, idempotent writes to the store, acknowledgements only after the write.

extension Coordinator {
    /// `test.result` and `execution.log`, written in batches.
    func consumeResults() async {
        let queue = Topology.resultsQueue
        // Twice the batch in flight: the next full batch is already here while one is written.
        await consume(queue: queue, prefetch: UInt16(clamping: 2 * settings.resultBatch), batch: settings.resultBatch) { batch in
            await self.writeResults(batch, queue: queue)
        }
    }

    /// `execution.state`, each handled as soon as it arrives, concurrently with the states before it (at most the
    /// prefetch in flight): a machine's `running` follows its `acked` by a fraction of a millisecond and is not
    /// held behind the writes `acked` makes. Handling is order-independent, as it must be anyway with several
    /// coordinators consuming the same queue: each part field is set by the state that owns it and a part's state
    /// only moves forward.
    func consumeStates() async {
        let queue = Topology.statesQueue
        await consume(queue: queue, prefetch: 100, batch: 100, concurrently: true) { batch in
            for delivery in batch { await self.writeState(delivery, queue: queue) }
        }
    }

    /// `agent.registration`, `agent.shutdown` and `agent.heartbeat`.
    func consumeAgents(queue: String) async {
        await consume(queue: queue, prefetch: 100, batch: 100) { batch in
            for delivery in batch { await self.writeAgentEvent(delivery, queue: queue) }
        }
    }

    /// Consumes `queue` until cancelled, handing out whatever arrived while the previous batch was handled (or,
    /// `concurrently`, each delivery as it arrives, without waiting for those before it). The consumer is
    /// re-opened if the broker cancels it. Whatever was handed out is finished before this returns.
    private func consume(
        queue: String, prefetch: UInt16, batch limit: Int, concurrently: Bool = false,
        handle: @escaping @Sendable ([AMQPDelivery]) async -> Void
    ) async {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        while !Task.isCancelled {
            let consumer: AMQPConsumer
            do throws(AMQPError) {
                consumer = try await connection.consume(queue: queue, prefetch: prefetch)
            } catch {
                logger.warning("cannot consume, retrying", metadata: ["cta.queue": "\(queue)", "cta.error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
                continue
            }
            let batcher = DeliveryBatcher()
            let pump = Task {
                do {
                    for try await delivery in consumer { batcher.append(delivery) }
                } catch {
                    self.logger.warning("consumer ended", metadata: ["cta.queue": "\(queue)", "cta.error": "\(error)"])
                }
                batcher.finish()
            }
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { group in
                    while let batch = await batcher.next(limit: limit) {
                        // Once started, a batch is finished even if the coordinator is stopping: it is acked or
                        // released. The unstructured task keeps the stop from cancelling it half-way.
                        if concurrently {
                            for delivery in batch { group.addTask { await Task { await handle([delivery]) }.value } }
                        } else {
                            await Task { await handle(batch) }.value
                        }
                        if Task.isCancelled { break }
                    }
                    await group.waitForAll()
                }
            } onCancel: {
                batcher.finish()
            }
            await consumer.cancel()
            pump.cancel()
            await pump.value
        }
    }

    // MARK: Decoding and refusing

    /// Decodes a delivery of `queue`, or refuses it: dead-lettered with its reason, and its `seq` recorded as
    /// received when its envelope was read far enough to know it.
    private func decode(_ delivery: AMQPDelivery, queue: String) async -> Envelope? {
        do throws(WireError) {
            return try Envelope.decode(Data(delivery.body), accepting: Topology.acceptedTypes(forCoordinatorQueue: queue))
        } catch {
            await refuse(delivery, queue: queue, error: error, known: SequenceHint(delivery.body))
            return nil
        }
    }

    func refuse(_ delivery: AMQPDelivery, queue: String, error: WireError, known: SequenceHint?) async {
        let rejection = RejectionRecord(
            id: known?.id ?? UUID().uuidString.lowercased(), source: known?.source, epoch: known?.epoch,
            seq: known?.seq, code: error.code.name, path: error.path, reason: error.description, queue: queue,
            routingKey: delivery.routingKey, rejectedAt: Date())
        do {
            try await retryingStore("record a rejection") { try await self.store.storeRejection(rejection) }
        } catch {
            delivery.nack(requeue: true)
            return
        }
        await connection.deadLetter(delivery, queue: queue, error: error, rejecter: source.description, logger: logger)
    }

    // MARK: Results

    private func writeResults(_ batch: [AMQPDelivery], queue: String) async {
        var envelopes: [Envelope] = []
        var deliveries: [AMQPDelivery] = []
        for delivery in batch {
            guard let envelope = await decode(delivery, queue: queue) else { continue }
            envelopes.append(envelope)
            deliveries.append(delivery)
        }
        guard !envelopes.isEmpty else { return }
        let received = Date()
        let toWrite = envelopes
        let writes: [StoreWrite]
        do {
            writes = try await retryingStore("store results") { try await self.store.storeResultsAndLogs(toWrite, receivedAt: received) }
        } catch {
            for delivery in deliveries { delivery.nack(requeue: true) }
            return
        }
        var counters: [ExecutionID: ResultCounts] = [:]
        var touched = Set<ExecutionID>()
        for (index, write) in writes.enumerated() {
            let envelope = envelopes[index]
            switch write {
            case .stored, .duplicate:
                if write == .stored, case .testResult(let result) = envelope.event {
                    counters[result.executionID, default: ResultCounts()].add(result.status)
                    touched.insert(result.executionID)
                }
                if case .executionLog(let log) = envelope.event { touched.insert(log.executionID) }
            case .sequenceConflict:
                let error = WireError(
                    code: .invalidValue, path: "seq",
                    reason: "another event of \(envelope.source) already has epoch \(envelope.epoch?.description ?? "-") seq \(envelope.seq ?? 0)")
                logger.error("sequence conflict", metadata: ["cta.source": "\(envelope.source)", "cta.event": "\(envelope.id)"])
                await connection.deadLetter(deliveries[index], queue: queue, error: error, rejecter: source.description, logger: logger)
            }
        }
        metrics.stored(results: counters.values.reduce(0) { $0 + Int($1.total) })
        let newCounts = counters
        _ = try? await retryingStore("count results") { try await self.store.addToCounters(newCounts) }
        for (index, write) in writes.enumerated() where write != .sequenceConflict { deliveries[index].ack() }
        for execution in touched { await resultsArrived(for: execution) }
    }

    // MARK: States

    private func writeState(_ delivery: AMQPDelivery, queue: String) async {
        guard let envelope = await decode(delivery, queue: queue), case .executionState(let change) = envelope.event else {
            return
        }
        let received = Date()
        let write: StoreWrite
        do {
            write = try await retryingStore("store a state") { try await self.store.storeState(change, envelope: envelope, receivedAt: received) }
        } catch {
            delivery.nack(requeue: true)
            return
        }
        if write == .sequenceConflict {
            let error = WireError(code: .invalidValue, path: "seq", reason: "another event of \(envelope.source) already has this epoch and seq")
            await connection.deadLetter(delivery, queue: queue, error: error, rejecter: source.description, logger: logger)
            return
        }
        delivery.ack()
        await stateArrived(change)
    }

    // MARK: Machines

    private func writeAgentEvent(_ delivery: AMQPDelivery, queue: String) async {
        guard let envelope = await decode(delivery, queue: queue) else { return }
        let received = Date()
        do {
            switch envelope.event {
            case .agentRegistration(let registration):
                let write = try await retryingStore("store a registration") {
                    try await self.store.register(registration, envelope: envelope, receivedAt: received)
                }
                if write == .stored {
                    logger.info("machine registered", metadata: ["cta.machine": "\(registration.machine)"])
                    wakeComposer()
                }
            case .agentShutdown(let shutdown):
                _ = try await retryingStore("store a shutdown") {
                    try await self.store.shutdown(shutdown, envelope: envelope, receivedAt: received)
                }
                logger.info("machine shut down", metadata: ["cta.machine": "\(shutdown.machine)", "cta.reason": "\(shutdown.reason)"])
            case .agentHeartbeat(let heartbeat):
                let known = try await retryingStore("store a heartbeat") {
                    try await self.store.heartbeat(heartbeat, envelope: envelope, receivedAt: received)
                }
                if !known {
                    logger.notice("heartbeat from a machine that never registered", metadata: ["cta.machine": "\(heartbeat.machine)"])
                }
            default:
                break
            }
            delivery.ack()
        } catch {
            delivery.nack(requeue: true)
        }
    }
}

/// What could be read of a refused message's envelope: enough to count its `seq` as received.
struct SequenceHint {
    var id: String?
    var source: String?
    var epoch: String?
    var seq: UInt64?

    init?(_ body: [UInt8]) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
        id = (object["id"] as? String).flatMap { UUID(uuidString: $0) }.map { $0.uuidString.lowercased() }
        source = object["source"] as? String
        epoch = (object["epoch"] as? String).flatMap { UUID(uuidString: $0) }.map { $0.uuidString.lowercased() }
        if let number = object["seq"] as? NSNumber, number.int64Value > 0 { seq = UInt64(number.int64Value) }
        // Without a valid epoch the number cannot be placed in any sequence.
        if epoch == nil { seq = nil }
    }
}
