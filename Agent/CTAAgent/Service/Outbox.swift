public import CTACore
import Foundation
public import Logging

/// Every outgoing sequenced event of the agent: appended durably to the ``Spool`` first, then published in `seq`
/// order by ``run(transport:)`` and removed from the spool only once the transport confirmed it.
///
/// A spool record is a small header (type, id, time) followed by the envelope bytes, so publishing never decodes
/// JSON. After an outage, a crash or a reboot the records come back from the spool with their original `id`,
/// `epoch` and `seq`.
public final class Outbox: Sendable {
    /// The spool behind the outbox.
    public let spool: Spool
    /// The machine the events are from.
    public let machine: MachineName
    private let logger: Logger
    private let wakeStream: AsyncStream<Void>
    private let wakeContinuation: AsyncStream<Void>.Continuation

    /// An outbox over an open spool.
    public init(spool: Spool, machine: MachineName, logger: Logger) {
        self.spool = spool
        self.machine = machine
        self.logger = logger
        (wakeStream, wakeContinuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Appends `events` durably, as one unit with consecutive `seq`s, and wakes the publisher.
    ///
    /// - Parameter committed: Called on the spool's thread with the `seq`s assigned, after the records are built
    ///   and before they are synced; used to note them in the work journal in the same step.
    /// - Returns: The `seq`s assigned, in the order of `events`.
    @discardableResult
    public func append(
        _ events: [Event],
        time: Timestamp = .now(),
        committed: (@Sendable (ClosedRange<UInt64>) -> Void)? = nil
    ) async throws -> ClosedRange<UInt64> {
        precondition(!events.isEmpty, "append needs at least one event")
        let source = Source.agent(machine)
        let count = events.count
        let range = try await spool.append(count: count) { epoch, seq, index in
            let envelope = Envelope(id: EventID(), source: source, time: time, epoch: epoch, seq: seq, event: events[index])
            let bytes = try OutboxRecord.encode(envelope)
            if index == count - 1 { committed?((seq - UInt64(count - 1))...seq) }
            return bytes
        }
        wakeContinuation.yield()
        return range
    }

    /// Wakes the publisher (after a reconnect, for example).
    public func wake() { wakeContinuation.yield() }

    /// Publishes pending records in `seq` order until the task is cancelled. A record leaves the spool only once
    /// the transport confirmed it; unroutable records (the coordinator's queues do not exist yet) and failures
    /// are retried with jittered backoff, starting again from the oldest pending record.
    public func run(transport: any AgentTransport, batchSize: Int = 1000, batchesInFlight: Int = 2) async {
        var backoff = RetryDelay()
        var wakeIterator = wakeStream.makeAsyncIterator()
        // Batches are pipelined: the next one is read and sent while the broker confirms the previous ones. The
        // transport keeps their order on the wire. After any failure every batch in flight is settled, and
        // sending starts again from the oldest pending record.
        var cursor: UInt64 = 0
        var inFlight: [Task<TransportError?, Never>] = []
        while !Task.isCancelled {
            /// Waits for the oldest batch; after a failure, settles the rest and restarts from the oldest record.
            func settleOldest() async {
                if let failure = await inFlight.removeFirst().value {
                    for task in inFlight { _ = await task.value }
                    inFlight = []
                    cursor = 0
                    await pause(after: failure, backoff: &backoff)
                } else {
                    backoff.reset()
                }
            }
            if inFlight.count >= max(1, batchesInFlight) {
                await settleOldest()
                continue
            }
            let batch: [SpoolRecord]
            do {
                batch = try await spool.pending(after: cursor, limit: batchSize)
            } catch {
                logger.error("cannot read the spool", metadata: ["cta.error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
                continue
            }
            if batch.isEmpty {
                if !inFlight.isEmpty {
                    await settleOldest()  // then look again
                    continue
                }
                cursor = 0
                guard await wakeIterator.next() != nil else { return }
                continue
            }
            cursor = batch[batch.count - 1].seq
            var events: [OutboundEvent] = []
            events.reserveCapacity(batch.count)
            var undecodable: [UInt64] = []
            for record in batch {
                if let event = OutboxRecord.decode(record) { events.append(event) } else { undecodable.append(record.seq) }
            }
            if !undecodable.isEmpty {
                // A record the spool's checksum accepted but this version cannot read: it can never be sent.
                logger.error("dropping unreadable spool records", metadata: ["cta.spool.seqs": "\(undecodable)"])
                _ = try? await spool.acknowledge(seqs: undecodable)
            }
            inFlight.append(Task { await self.send(events, transport: transport) })
        }
        for task in inFlight { _ = await task.value }
    }

    /// Sends one batch and acknowledges what the broker confirmed; returns the first failure, if any.
    private func send(_ events: [OutboundEvent], transport: any AgentTransport) async -> TransportError? {
        let results = await transport.publish(events)
        var confirmed: [UInt64] = []
        var failure: TransportError?
        for (event, result) in zip(events, results) {
            switch result {
            case .success: confirmed.append(event.seq)
            case .failure(let error): if failure == nil { failure = error }
            }
        }
        if !confirmed.isEmpty {
            do {
                try await spool.acknowledge(seqs: confirmed)
            } catch {
                logger.error("cannot acknowledge spool records", metadata: ["cta.error": "\(error)"])
            }
        }
        return failure
    }

    private func pause(after failure: TransportError, backoff: inout RetryDelay) async {
        let delay = backoff.next(for: failure)
        logger.info("events wait in the spool", metadata: ["cta.error": "\(failure)", "cta.retry.delay": "\(delay)"])
        try? await Task.sleep(for: delay)
    }

    /// Waits until the spool holds no pending record, or `timeout` passed.
    ///
    /// - Returns: Whether the spool is empty.
    public func drain(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let pending = try? await spool.state().pending, pending == 0 { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return (try? await spool.state().pending) == 0
    }
}

/// The delay before the publisher tries again: short for a broker that is away (it reconnects on its own), longer
/// for unroutable events (the coordinator has not declared its queues yet).
struct RetryDelay {
    private var attempt = 0

    mutating func next(for error: TransportError) -> Duration {
        attempt += 1
        let ceilingMs: Int64 = error.code == .unroutable ? 30_000 : 5_000
        let base = min(ceilingMs, Int64(100) << Int64(min(attempt, 10)))
        return .milliseconds(Int64.random(in: (base / 2)...base))
    }

    mutating func reset() { attempt = 0 }
}

/// The bytes of one spool record: `CTA1`, the event type, the id and the time, then the envelope.
enum OutboxRecord {
    private static let magic: [UInt8] = Array("CTA1".utf8)

    static func encode(_ envelope: Envelope) throws -> [UInt8] {
        let body = try envelope.encoded()
        let type = Array(envelope.type.rawValue.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + 1 + type.count + 16 + 8 + body.count)
        bytes += magic
        bytes.append(UInt8(type.count))
        bytes += type
        withUnsafeBytes(of: envelope.id.uuid.uuid) { bytes += $0 }
        withUnsafeBytes(of: envelope.time.microsecondsSinceEpoch.littleEndian) { bytes += $0 }
        bytes += body
        return bytes
    }

    static func decode(_ record: SpoolRecord) -> OutboundEvent? {
        let bytes = record.payload
        guard bytes.count > 5, Array(bytes[0..<4]) == magic else { return nil }
        let typeLength = Int(bytes[4])
        let idStart = 5 + typeLength
        let timeStart = idStart + 16
        let bodyStart = timeStart + 8
        guard bytes.count > bodyStart,
            let typeText = String(bytes: bytes[5..<idStart], encoding: .utf8),
            let type = EventType(rawValue: typeText)
        else { return nil }
        let uuid = bytes[idStart..<timeStart].withUnsafeBytes { raw -> UUID in
            var value: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: raw) }
            return UUID(uuid: value)
        }
        var micros: Int64 = 0
        withUnsafeMutableBytes(of: &micros) { $0.copyBytes(from: bytes[timeStart..<bodyStart]) }
        return OutboundEvent(
            seq: record.seq, type: type, id: EventID(uuid),
            time: Timestamp(microsecondsSinceEpoch: Int64(littleEndian: micros)),
            body: Array(bytes[bodyStart...]))
    }
}
