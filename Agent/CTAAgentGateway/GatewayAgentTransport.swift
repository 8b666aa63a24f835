public import CTAAgent
public import CTACore
import CTABroker
import CTAClient
import CTAMessaging
import Foundation
import HTTPTypes
import HummingbirdWSClient
public import Logging
import NIOSSL
import Synchronization

/// The agent's path through a gateway: one WebSocket to `<gateway>/v1/agent`, with the frames of docs/protocol.md
/// ("The gateway"). The agent's run logic sees the same ``AgentTransport`` as over AMQP.
///
/// The connection is kept up with jittered backoff. When it drops, what was delivered and not settled returns to
/// the broker (settling it later does nothing), events not yet confirmed fail as `unavailable` (the agent resends
/// them from its spool), and consumers stay open: the machine queue's again at once, shared queues as their credit
/// is sent again.
public final class GatewayAgentTransport: AgentTransport {
    private let url: String
    private let token: String
    private let machine: MachineName
    private let tls: TLSConfiguration?
    private let logger: Logger
    private let state = Mutex(State())
    private let machineStream: AsyncThrowingStream<IncomingMessage, any Error>
    private let runner = Mutex<Task<Void, Never>?>(nil)

    /// How long an event may wait for its `confirmed` before it counts as not delivered.
    public static let confirmTimeout = Duration.seconds(30)

    /// An event's answer: awaited (with the waiting task, once it waits), or already known.
    enum Slot {
        case waiting(CheckedContinuation<Result<Void, TransportError>, Never>?)
        case answered(Result<Void, TransportError>)
    }

    struct State {
        /// Frames to write on the current connection; nil while there is none.
        var writer: AsyncStream<String>.Continuation?
        var generation = 0
        /// Events sent and not answered yet, by lower-cased id.
        var pending: [String: Slot] = [:]
        var streams: [String: AsyncThrowingStream<IncomingMessage, any Error>.Continuation] = [:]
        /// The credit of each shared queue being consumed, sent again after a reconnect.
        var credits: [String: Int] = [:]
        var connectedWaiters: [CheckedContinuation<Void, Never>] = []
        var closed = false
    }

    /// - Parameters:
    ///   - gateway: `https://host[:port]` (or `http://`), as `gateway.url` gives it.
    ///   - token: the machine's enrollment token.
    ///   - caFile: PEM CA certificates to trust instead of the system's.
    ///   - clientCertificate: PEM files of a client certificate and its key, for a gateway that asks for one.
    public init(
        gateway: String, token: String, machine: MachineName, caFile: String? = nil,
        clientCertificate: (certificate: String, key: String)? = nil, logger: Logger
    ) throws {
        guard var components = URLComponents(string: gateway), let scheme = components.scheme?.lowercased() else {
            throw TransportError(.refused, "gateway.url is not a URL")
        }
        components.scheme = scheme == "https" || scheme == "wss" ? "wss" : "ws"
        components.path = (components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path) + "/v1/agent"
        components.queryItems = [URLQueryItem(name: "machine", value: machine.rawValue)]
        guard let url = components.string else { throw TransportError(.refused, "gateway.url is not a URL") }
        self.url = url
        self.token = token
        self.machine = machine
        if components.scheme == "wss" {
            // The same trust and client certificate as the agent's uploads (`HTTPAttachmentUploader`).
            do {
                self.tls = try TransportConfiguration(caCertificateFile: caFile, clientCertificate: clientCertificate)
                    .tlsConfiguration()
            } catch {
                throw TransportError(.refused, "cannot load the gateway's TLS files: \(error.message)")
            }
        } else {
            self.tls = nil
        }
        self.logger = logger
        let (stream, continuation) = AsyncThrowingStream<IncomingMessage, any Error>.makeStream()
        self.machineStream = stream
        state.withLock { $0.streams[Topology.machineQueue(machine)] = continuation }
    }

    // MARK: AgentTransport

    /// Connects (retrying until the gateway admits the agent); the gateway declares the machine queue. Group
    /// queues are declared by the gateway when the agent first gives them credit.
    public func declare(machine: MachineName, groups: [GroupName]) async throws(TransportError) {
        startIfNeeded()
        await waitConnected()
        if Task.isCancelled || state.withLock({ $0.closed }) { throw TransportError(.closed, "the transport was closed") }
    }

    /// Sends every event in order, then waits for each answer (at most ``confirmTimeout``).
    public func publish(_ events: [OutboundEvent]) async -> [Result<Void, TransportError>] {
        // Ids are written lower-case (EventID's form), so the answers' ids are the keys as they come.
        let keys = events.map { $0.id.description }
        let frames = zip(keys, events).map { key, event in
            String(decoding: GatewayFrame.publish(id: key, body: event.body).encoded, as: UTF8.self)
        }
        let sent = state.withLock { state -> Bool in
            guard let writer = state.writer, !state.closed else { return false }
            for (key, frame) in zip(keys, frames) {
                state.pending[key] = .waiting(nil)
                writer.yield(frame)
            }
            return true
        }
        guard sent else {
            return events.map { _ in .failure(TransportError(.unavailable, "not connected to the gateway")) }
        }
        let timeout = Task {
            try? await Task.sleep(for: Self.confirmTimeout)
            guard !Task.isCancelled else { return }
            for key in keys { self.resolve(key, .failure(TransportError(.unavailable, "no confirm from the gateway in time"))) }
        }
        defer { timeout.cancel() }
        var results: [Result<Void, TransportError>] = []
        for key in keys { results.append(await answer(key)) }
        return results
    }

    /// The answer to the event sent with `key`, once it comes.
    private func answer(_ key: String) async -> Result<Void, TransportError> {
        await withCheckedContinuation { continuation in
            let known = state.withLock { state -> Result<Void, TransportError>? in
                switch state.pending[key] {
                case .answered(let result)?:
                    state.pending[key] = nil
                    return result
                case .waiting?:
                    state.pending[key] = .waiting(continuation)
                    return nil
                case nil:
                    return .failure(TransportError(.unavailable, "the gateway connection was lost"))
                }
            }
            if let known { continuation.resume(returning: known) }
        }
    }

    public func publishHeartbeat(_ body: [UInt8]) async throws(TransportError) {
        // The gateway answers every event; a heartbeat's answer is not waited for.
        guard let id = Self.eventID(body) else { throw TransportError(.refused, "the heartbeat is not an envelope") }
        let frame = String(decoding: GatewayFrame.publish(id: id, body: body).encoded, as: UTF8.self)
        guard write(frame) else { throw TransportError(.unavailable, "not connected to the gateway") }
    }

    public func consume(queue: String, prefetch: UInt16) async throws(TransportError) -> IncomingStream {
        if queue == Topology.machineQueue(machine) {
            return IncomingStream(queue: queue, base: machineStream) {}
        }
        let (stream, continuation) = AsyncThrowingStream<IncomingMessage, any Error>.makeStream()
        let credit = Int(max(1, prefetch))
        state.withLock { state in
            state.streams[queue]?.finish()
            state.streams[queue] = continuation
            state.credits[queue] = credit
        }
        _ = write(String(decoding: GatewayFrame.credit(queue: queue, credit: credit).encoded, as: UTF8.self))
        return IncomingStream(queue: queue, base: stream) {
            let current = self.state.withLock { state -> Bool in
                state.credits[queue] = nil
                return state.streams.removeValue(forKey: queue) != nil
            }
            if current { _ = self.write(String(decoding: GatewayFrame.credit(queue: queue, credit: 0).encoded, as: UTF8.self)) }
            continuation.finish()
        }
    }

    /// The gateway has no frame for it: a missing queue is reported as a cancelled consumer once the agent gives
    /// it credit, which the agent treats as the queue being gone.
    public func queueExists(_ queue: String) async throws(TransportError) -> Bool { true }

    public func close() async {
        let (writer, pending, streams, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.writer = nil
                state.pending = [:]
                state.streams = [:]
                state.connectedWaiters = []
            }
            return (state.writer, state.pending, state.streams, state.connectedWaiters)
        }
        writer?.finish()
        for case .waiting(let continuation?) in pending.values {
            continuation.resume(returning: .failure(TransportError(.closed, "the transport was closed")))
        }
        for (_, stream) in streams { stream.finish() }
        for waiter in waiters { waiter.resume() }
        let task = runner.withLock { $0 }
        task?.cancel()
        await task?.value
    }

    // MARK: Connection

    private func startIfNeeded() {
        runner.withLock { runner in
            guard runner == nil else { return }
            runner = Task { await self.connectionLoop() }
        }
    }

    private func waitConnected() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.writer != nil || state.closed { return true }
                state.connectedWaiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    private func connectionLoop() async {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(30))
        var headers = HTTPFields()
        headers[.authorization] = "Bearer \(token)"
        let configuration = WebSocketClientConfiguration(
            maxFrameSize: GatewayLimits.maximumFrameBytes, additionalHeaders: headers,
            autoPing: .enabled(timePeriod: .seconds(30)))
        while !Task.isCancelled, !state.withLock({ $0.closed }) {
            let before = state.withLock { $0.generation }
            do {
                let close = try await WebSocketClient.connect(
                    url: url, configuration: configuration, tlsConfiguration: tls, logger: logger
                ) { inbound, outbound, _ in
                    let (frames, writer) = AsyncStream<String>.makeStream()
                    let generation = self.connected(writer)
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await text in frames { try await outbound.write(.text(text)) }
                        }
                        group.addTask {
                            for try await message in inbound.messages(maxSize: GatewayLimits.maximumFrameBytes) {
                                guard case .text(let text) = message else { continue }
                                if let problem = self.handle(text, generation: generation) {
                                    self.logger.error("the gateway sent a bad frame; reconnecting", metadata: ["cta.error": "\(problem)"])
                                    return
                                }
                            }
                        }
                        _ = try await group.next()
                        group.cancelAll()
                    }
                    writer.finish()
                }
                if let reason = close?.reason, !reason.isEmpty {
                    logger.warning("the gateway closed the connection", metadata: ["cta.reason": "\(reason)"])
                }
            } catch {
                // Closing the transport cancels the connection: nothing to report then.
                if !Task.isCancelled, !state.withLock({ $0.closed }) {
                    logger.warning("gateway not reachable", metadata: ["cta.error": "\(error)", "cta.gateway": "\(url)"])
                }
            }
            disconnected()
            // Admitted and then lost: start the backoff again from its shortest delay.
            if state.withLock({ $0.generation }) != before { backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(30)) }
            let delay = backoff.next()
            try? await Task.sleep(for: delay)
        }
    }

    /// A new connection: frames go to `writer`; shared queues get their credit again.
    private func connected(_ writer: AsyncStream<String>.Continuation) -> Int {
        let (generation, credits, waiters) = state.withLock { state in
            state.generation += 1
            state.writer = writer
            defer { state.connectedWaiters = [] }
            return (state.generation, state.credits, state.connectedWaiters)
        }
        for (queue, credit) in credits {
            writer.yield(String(decoding: GatewayFrame.credit(queue: queue, credit: credit).encoded, as: UTF8.self))
        }
        logger.info("connected to the gateway", metadata: ["cta.gateway": "\(url)"])
        for waiter in waiters { waiter.resume() }
        return generation
    }

    /// The connection is gone: unconfirmed events fail (the spool resends them).
    private func disconnected() {
        let lost = TransportError(.unavailable, "the gateway connection was lost")
        let waiting = state.withLock { state in
            state.writer = nil
            var waiting: [CheckedContinuation<Result<Void, TransportError>, Never>] = []
            for (key, slot) in state.pending {
                switch slot {
                case .waiting(let continuation?):
                    waiting.append(continuation)
                    state.pending[key] = nil
                case .waiting(nil): state.pending[key] = .answered(.failure(lost))
                case .answered: break
                }
            }
            return waiting
        }
        for continuation in waiting { continuation.resume(returning: .failure(lost)) }
    }

    /// Acts on one frame from the gateway; returns a problem for a frame it may not send.
    private func handle(_ text: String, generation: Int) -> String? {
        let frame: GatewayFrame
        do {
            frame = try GatewayFrame.decode(Array(text.utf8))
        } catch {
            return error.reason
        }
        switch frame {
        case .deliver(let tag, let queue, let redelivered, let body):
            let stream = state.withLock { $0.streams[queue] }
            guard let stream else {
                // Nobody consumes it now (credit just went to 0): back to the queue.
                _ = write(String(decoding: GatewayFrame.release(tag: tag).encoded, as: UTF8.self))
                return nil
            }
            stream.yield(
                IncomingMessage(body: body, queue: queue, exchange: "", routingKey: "", redelivered: redelivered) { settlement in
                    self.settle(tag, generation: generation, settlement)
                })
        case .confirmed(let ids):
            for id in ids { resolve(id, .success(())) }
        case .refused(let id, let error):
            resolve(id, .failure(TransportError(.refused, error.description)))
        case .unroutable(let ids):
            let error = TransportError(.unroutable, "no queue took the event (the coordinators' queues do not exist yet)")
            for id in ids { resolve(id, .failure(error)) }
        case .consumerCancelled(let queue):
            let stream = state.withLock { state in
                state.credits[queue] = nil
                return state.streams.removeValue(forKey: queue)
            }
            stream?.finish(throwing: TransportError(.consumerCancelled, "the gateway's consumer of \(queue) ended"))
        case .ack, .release, .reject, .credit, .publish:
            return "\(frame.name) is sent by agents, not the gateway"
        }
        return nil
    }

    private func settle(_ tag: UInt64, generation: Int, _ settlement: IncomingMessage.Settlement) {
        // A delivery of an earlier connection went back to the broker when that connection ended.
        guard state.withLock({ $0.generation == generation && $0.writer != nil }) else { return }
        let frame: GatewayFrame
        switch settlement {
        case .ack: frame = .ack(tag: tag)
        case .release: frame = .release(tag: tag)
        case .reject(let error): frame = .reject(tag: tag, error: error)
        }
        _ = write(String(decoding: frame.encoded, as: UTF8.self))
    }

    /// Records the answer to an event; an answer to nothing awaited (a heartbeat's) is dropped.
    private func resolve(_ id: String, _ result: Result<Void, TransportError>) {
        let key = id.lowercased()
        let continuation = state.withLock { state -> CheckedContinuation<Result<Void, TransportError>, Never>? in
            guard case .waiting(let continuation)? = state.pending[key] else { return nil }
            if let continuation {
                state.pending[key] = nil
                return continuation
            }
            state.pending[key] = .answered(result)
            return nil
        }
        continuation?.resume(returning: result)
    }

    /// Writes on the current connection; false when there is none.
    @discardableResult
    private func write(_ frame: String) -> Bool {
        guard let writer = state.withLock({ $0.writer }) else { return false }
        if case .terminated = writer.yield(frame) { return false }
        return true
    }

    static func eventID(_ body: [UInt8]) -> String? {
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: Data(body)),
            case .string(let id)? = object["id"]
        else { return nil }
        return id
    }
}
