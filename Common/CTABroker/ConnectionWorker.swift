internal import CRabbitMQ
import Foundation
import Glibc
import Logging
import Synchronization

/// A publish waiting to be sent or confirmed.
///
/// - Important: Created by the publishing task, then touched only on the connection's thread once submitted
///   (its mutable fields are the thread's bookkeeping), which is why it may be `@unchecked Sendable`.
final class PendingPublish: @unchecked Sendable {
    let message: OutgoingMessage
    let deadline: ContinuousClock.Instant
    let completion: @Sendable (Result<Void, AMQPError>) -> Void
    /// Set when the broker returned this (mandatory) message; reported when its confirm arrives.
    var returned: AMQPError?

    init(message: OutgoingMessage, deadline: ContinuousClock.Instant, completion: @escaping @Sendable (Result<Void, AMQPError>) -> Void) {
        self.message = message
        self.deadline = deadline
        self.completion = completion
    }
}

/// A synchronous broker operation, run on the control channel.
enum BrokerOperation: Sendable {
    case declareExchange(name: String, kind: ExchangeKind, durable: Bool, autoDelete: Bool, internal: Bool, arguments: AMQPTable)
    case declareQueue(name: String, durable: Bool, exclusive: Bool, autoDelete: Bool, arguments: AMQPTable)
    case inspectQueue(name: String)
    case bindQueue(queue: String, exchange: String, routingKey: String, arguments: AMQPTable)
    case unbindQueue(queue: String, exchange: String, routingKey: String, arguments: AMQPTable)
    case deleteQueue(name: String, ifUnused: Bool, ifEmpty: Bool)
    case purgeQueue(name: String)
    case deleteExchange(name: String)

    var context: String {
        switch self {
        case .declareExchange(let name, let kind, _, _, _, _): "exchange.declare '\(name)' (\(kind))"
        case .declareQueue(let name, _, _, _, _): "queue.declare '\(name)'"
        case .inspectQueue(let name): "queue.declare passive '\(name)'"
        case .bindQueue(let q, let e, let k, _): "queue.bind '\(q)' to '\(e)' with '\(k)'"
        case .unbindQueue(let q, let e, let k, _): "queue.unbind '\(q)' from '\(e)' with '\(k)'"
        case .deleteQueue(let name, _, _): "queue.delete '\(name)'"
        case .purgeQueue(let name): "queue.purge '\(name)'"
        case .deleteExchange(let name): "exchange.delete '\(name)'"
        }
    }
}

enum BrokerResult: Sendable {
    case done
    case queue(QueueState)
    case count(UInt32)
}

struct PendingOperation: Sendable {
    let operation: BrokerOperation
    let deadline: ContinuousClock.Instant
    let completion: @Sendable (Result<BrokerResult, AMQPError>) -> Void
}

/// A consumer's registration and current channel.
///
/// - Important: Touched only on the connection's thread after submission (the stream continuation itself is
///   thread-safe), hence `@unchecked Sendable`.
final class ConsumerState: @unchecked Sendable {
    let id: UInt64
    let queue: String
    let prefetch: UInt16
    let exclusive: Bool
    let arguments: AMQPTable
    let continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation
    var tag: String { "cta-consumer-\(id)" }
    /// The channel it consumes on, 0 while not consuming (between a connection loss and the reconnect).
    var channel: UInt16 = 0
    var generation: UInt64 = 0
    var cancelled = false

    init(id: UInt64, queue: String, prefetch: UInt16, exclusive: Bool, arguments: AMQPTable,
         continuation: AsyncThrowingStream<AMQPDelivery, any Error>.Continuation) {
        self.id = id
        self.queue = queue
        self.prefetch = prefetch
        self.exclusive = exclusive
        self.arguments = arguments
        self.continuation = continuation
    }
}

enum Settlement: Sendable {
    case ack(multiple: Bool)
    case nack(multiple: Bool, requeue: Bool)
    case reject(requeue: Bool)
}

enum Command: Sendable {
    case publish(PendingPublish)
    case operation(PendingOperation)
    case consume(ConsumerState, deadline: ContinuousClock.Instant, completion: @Sendable (Result<Void, AMQPError>) -> Void)
    case cancelConsumer(id: UInt64, completion: (@Sendable () -> Void)?)
    case settle(channel: UInt16, generation: UInt64, deliveryTag: UInt64, Settlement)
    case close(deadline: ContinuousClock.Instant, completion: @Sendable () -> Void)
}

/// Owns one librabbitmq connection and everything on it, on one dedicated thread.
///
/// librabbitmq connections are not thread-safe, so every C call happens on the worker's thread. Async callers
/// submit ``Command``s into a locked inbox and wake the thread through an eventfd; the thread completes them
/// through their continuations. The thread multiplexes the socket and the eventfd with `poll`, sends
/// heartbeats, reads frames, matches publisher confirms, hands deliveries to consumers, and reconnects with
/// jittered backoff, re-declaring the topology and resuming consumers.
///
/// - Important: All stored properties below `// Thread-confined` are touched only on the worker thread. The
///   inbox is behind a `Mutex` and the eventfd is safe to write from any thread; that is why the class may be
///   `@unchecked Sendable`.
final class ConnectionWorker: @unchecked Sendable {
    private struct Inbox {
        var commands: [Command] = []
        var accepting = true
        var started = false
    }

    let configuration: AMQPConfiguration
    let logger: Logger
    private let inbox = Mutex(Inbox())
    private let wakeFD: Int32

    // Thread-confined state.
    private var connection: amqp_connection_state_t?
    private var socketFD: Int32 = -1
    private var connected = false
    private var closing: (deadline: ContinuousClock.Instant, completion: @Sendable () -> Void)?
    private var tracker = ConfirmTracker<PendingPublish>()
    private var waiting = FIFO<PendingPublish>()
    private var pendingOperations: [PendingOperation] = []
    private var pendingConsumes: [(ConsumerState, ContinuousClock.Instant, @Sendable (Result<Void, AMQPError>) -> Void)] = []
    private var consumers: [UInt64: ConsumerState] = [:]
    private var consumersByChannel: [UInt16: ConsumerState] = [:]
    private var channelGenerations: [UInt16: UInt64] = [:]
    private var nextGeneration: UInt64 = 1
    private var freeChannels: [UInt16] = []
    private var nextChannel: UInt16 = firstConsumerChannel
    private var topology = TopologyLog()
    private var backoff: Backoff
    private var nextAttempt: ContinuousClock.Instant = .now
    private var lastReceived: ContinuousClock.Instant = .now
    private var lastSent: ContinuousClock.Instant = .now
    private var heartbeatInterval: Duration = .zero
    private var socketReadable = false
    private var lastError: AMQPError?

    static let controlChannel: UInt16 = 1
    static let publishChannel: UInt16 = 2
    static let firstConsumerChannel: UInt16 = 3
    static let maxChannel: UInt16 = 2047

    init(configuration: AMQPConfiguration, logger: Logger) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "cta.amqp.connection"] = "\(configuration.connectionName)"
        logger[metadataKey: "cta.amqp.host"] = "\(configuration.host):\(configuration.port)"
        self.logger = logger
        self.wakeFD = cta_wakeup_fd()
        self.backoff = Backoff(initial: configuration.reconnect.initialDelay, maximum: configuration.reconnect.maximumDelay)
    }

    deinit {
        if wakeFD >= 0 { Glibc.close(wakeFD) }
    }

    // MARK: Any thread

    /// Starts the thread, which makes the first connection attempt and reports it through `onConnect`.
    func start(onConnect: @escaping @Sendable (Result<Void, AMQPError>) -> Void) {
        let alreadyStarted = inbox.withLock { inbox -> Bool in
            defer { inbox.started = true }
            return inbox.started
        }
        if alreadyStarted {
            onConnect(.failure(AMQPError(.invalidArgument, "connect() was already called on this connection")))
            return
        }
        let thread = Thread { [self] in self.run(onConnect: onConnect) }
        thread.name = "cta-amqp-\(configuration.connectionName)"
        thread.start()
    }

    /// Queues a command for the thread. Returns false (and the command is not run) once the connection closed.
    @discardableResult
    func submit(_ command: Command) -> Bool {
        let wake = inbox.withLock { inbox -> Bool? in
            guard inbox.accepting, inbox.started else { return nil }
            let wasEmpty = inbox.commands.isEmpty
            inbox.commands.append(command)
            return wasEmpty
        }
        guard let wake else {
            Self.reject(command, AMQPError(.closed, "the connection is closed"))
            return false
        }
        if wake { wakeUp() }
        return true
    }

    private func wakeUp() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(wakeFD, $0.baseAddress, 8) }
    }

    private static func reject(_ command: Command, _ error: AMQPError) {
        switch command {
        case .publish(let p): p.completion(.failure(error))
        case .operation(let op): op.completion(.failure(error))
        case .consume(let consumer, _, let completion):
            consumer.continuation.finish(throwing: error)
            completion(.failure(error))
        case .cancelConsumer(_, let completion): completion?()
        case .settle: break
        case .close(_, let completion): completion()
        }
    }

    // MARK: The thread

    private func run(onConnect: @Sendable (Result<Void, AMQPError>) -> Void) {
        do {
            try establish()
        } catch {
            inbox.withLock { $0.accepting = false }
            let leftovers = inbox.withLock { inbox -> [Command] in
                defer { inbox.commands.removeAll() }
                return inbox.commands
            }
            for command in leftovers { Self.reject(command, error) }
            onConnect(.failure(error))
            return
        }
        logger.info("AMQP connection open")
        onConnect(.success(()))
        mainLoop()
        logger.info("AMQP connection closed")
    }

    private func mainLoop() {
        while true {
            let commands = inbox.withLock { inbox -> [Command] in
                guard !inbox.commands.isEmpty else { return [] }
                defer { inbox.commands.removeAll(keepingCapacity: true) }
                return inbox.commands
            }
            for command in commands { handle(command) }

            if let closing {
                if finishedDraining() || ContinuousClock.now >= closing.deadline {
                    shutDown()
                    closing.completion()
                    return
                }
            }

            if connected {
                flushPublishes()
                if connected { readFrames() }
                if connected { heartbeatDuties() }
            } else if configuration.reconnect.enabled, closing == nil, ContinuousClock.now >= nextAttempt {
                reconnect()
            } else if !configuration.reconnect.enabled, closing == nil {
                // Lost, and not to be reconnected: everything pending has failed and no command is taken any
                // more, so the worker ends (it would otherwise wait for a reconnect that never comes).
                shutDown()
                return
            }
            expireDeadlines()
            waitForActivity()
        }
    }

    private func handle(_ command: Command) {
        switch command {
        case .publish(let publish):
            if closing != nil && !connected {
                publish.completion(.failure(AMQPError(.closed, "the connection is closing")))
            } else {
                waiting.append(publish)
            }
        case .operation(let operation):
            if connected {
                perform(operation)
            } else {
                pendingOperations.append(operation)
            }
        case .consume(let consumer, let deadline, let completion):
            consumers[consumer.id] = consumer
            if connected {
                completion(startConsuming(consumer))
            } else {
                pendingConsumes.append((consumer, deadline, completion))
            }
        case .cancelConsumer(let id, let completion):
            if let consumer = consumers.removeValue(forKey: id) {
                consumer.cancelled = true
                stopConsuming(consumer)
                consumer.continuation.finish()
            }
            pendingConsumes.removeAll { $0.0.id == id }
            completion?()
        case .settle(let channel, let generation, let tag, let settlement):
            settle(channel: channel, generation: generation, tag: tag, settlement)
        case .close(let deadline, let completion):
            inbox.withLock { $0.accepting = false }
            closing = (deadline, completion)
            // Consumers stop first so no new work arrives while publishes drain.
            for consumer in consumers.values {
                consumer.cancelled = true
                stopConsuming(consumer)
                consumer.continuation.finish()
            }
            consumers.removeAll()
            for (consumer, _, completion) in pendingConsumes {
                consumer.continuation.finish()
                completion(.failure(AMQPError(.closed, "the connection closed")))
            }
            pendingConsumes.removeAll()
            if !connected { failAllPending(AMQPError(.closed, "the connection closed before the broker could be reached")) }
        }
    }

    private func finishedDraining() -> Bool {
        waiting.isEmpty && tracker.isEmpty && pendingOperations.isEmpty
    }

    // MARK: Connecting

    private func establish() throws(AMQPError) {
        let target = "\(configuration.host):\(configuration.port)"
        guard let conn = amqp_new_connection() else { throw AMQPError(.connectionFailed, "out of memory", context: target) }
        var ok = false
        defer { if !ok { amqp_destroy_connection(conn) } }

        let socket: OpaquePointer?
        if let tls = configuration.tls {
            socket = amqp_ssl_socket_new(conn)
            guard let socket else { throw AMQPError(.tls, "could not create a TLS socket", context: target) }
            let caFile = tls.caFile ?? (FileManager.default.fileExists(atPath: Self.systemCAFile) ? Self.systemCAFile : nil)
            if let caFile {
                let rc = amqp_ssl_socket_set_cacert(socket, caFile)
                if rc != AMQP_STATUS_OK.rawValue {
                    throw AMQPError(.tls, "cannot use CA file '\(caFile)'", context: target, detail: "status \(rc)")
                }
            }
            if let cert = tls.certificateFile, let key = tls.keyFile {
                let rc = amqp_ssl_socket_set_key(socket, cert, key)
                if rc != AMQP_STATUS_OK.rawValue {
                    throw AMQPError(.tls, "cannot use client certificate '\(cert)' with key '\(key)'", context: target)
                }
            }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyHostname ? 1 : 0)
        } else {
            socket = amqp_tcp_socket_new(conn)
            guard socket != nil else { throw AMQPError(.connectionFailed, "could not create a socket", context: target) }
        }

        cta_amqp_set_timeouts(conn, Int(configuration.connectTimeout.milliseconds), Int(configuration.rpcTimeout.milliseconds))
        errno = 0
        let rc = cta_amqp_socket_open(socket, configuration.host, Int32(configuration.port), Int(configuration.connectTimeout.milliseconds))
        if rc != AMQP_STATUS_OK.rawValue {
            var error = AMQPError(status: rc, context: "connect to \(target)")
            if error.code != .tls { error.code = .connectionFailed }
            throw error
        }
        if cta_socket_is_self_connected(amqp_get_sockfd(conn)) != 0 {
            throw AMQPError(.connectionFailed, "the socket connected to itself: nothing listens on that port",
                            context: "connect to \(target)")
        }

        let heartbeatSeconds = Int32(clamping: configuration.heartbeat.components.seconds)
        let arguments = CArguments()
        defer { arguments.release() }
        var properties = arguments.table([
            "connection_name": .string(configuration.connectionName),
            "product": "CTA",
            "capabilities": .table([
                "publisher_confirms": true, "consumer_cancel_notify": true, "basic.nack": true,
                "connection.blocked": true, "authentication_failure_close": true,
            ]),
        ])
        let reply = cta_amqp_login_plain_properties(
            conn, configuration.virtualHost, Int32(Self.maxChannel), 131_072, heartbeatSeconds, &properties,
            configuration.username, configuration.password)
        if var error = AMQPError(reply: reply, context: "log in to \(target) vhost '\(configuration.virtualHost)' as '\(configuration.username)'") {
            if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION {
                _ = cta_amqp_send_connection_close_ok(conn)
            } else if error.code == .connectionClosed {
                // Brokers close the socket on a wrong password or a vhost the user may not open.
                error.code = .authenticationFailed
                error.message = "the broker closed the connection during login (wrong credentials or virtual host?)"
            }
            throw error
        }

        connection = conn
        socketFD = amqp_get_sockfd(conn)
        heartbeatInterval = .seconds(Int(amqp_get_heartbeat(conn)))
        channelGenerations.removeAll()
        freeChannels.removeAll()
        nextChannel = Self.firstConsumerChannel
        do {
            try openChannel(Self.controlChannel)
            try openChannel(Self.publishChannel)
            try confirmSelect()
        } catch {
            connection = nil
            throw error
        }
        ok = true
        connected = true
        lastReceived = .now
        lastSent = .now
    }

    static let systemCAFile = "/etc/ssl/certs/ca-certificates.crt"

    private func openChannel(_ channel: UInt16) throws(AMQPError) {
        guard let conn = connection else { throw AMQPError(.connectionClosed, "not connected") }
        _ = amqp_channel_open(conn, channel)
        if let error = AMQPError(reply: amqp_get_rpc_reply(conn), context: "channel.open \(channel)") {
            throw error
        }
        channelGenerations[channel] = nextGeneration
        nextGeneration += 1
    }

    private func confirmSelect() throws(AMQPError) {
        guard let conn = connection else { throw AMQPError(.connectionClosed, "not connected") }
        _ = amqp_confirm_select(conn, Self.publishChannel)
        if let error = AMQPError(reply: amqp_get_rpc_reply(conn), context: "confirm.select") { throw error }
    }

    private func reconnect() {
        do {
            try establish()
        } catch {
            let delay = backoff.next()
            nextAttempt = .now + delay
            if lastError?.message != error.message {
                logger.info("AMQP reconnect failed", metadata: ["cta.amqp.error": "\(error)", "cta.amqp.retry_in": "\(delay)"])
            }
            lastError = error
            return
        }
        logger.info("AMQP connection re-established", metadata: ["cta.amqp.attempts": "\(backoff.attempt + 1)"])
        backoff.reset()
        lastError = nil
        // Topology first, then consumers, then whatever waited for the connection.
        for operation in topology.replay() {
            if case .failure(let error) = run(operation) {
                logger.info("AMQP topology re-declaration failed", metadata: ["cta.amqp.error": "\(error)"])
            }
            guard connected else { return }
        }
        for consumer in consumers.values.sorted(by: { $0.id < $1.id }) where consumer.channel == 0 && !consumer.cancelled {
            if case .failure(let error) = startConsuming(consumer) {
                logger.info("AMQP consumer could not resume", metadata: ["cta.amqp.queue": "\(consumer.queue)", "cta.amqp.error": "\(error)"])
                if error.code != .connectionClosed {
                    consumers[consumer.id] = nil
                    consumer.continuation.finish(throwing: error)
                }
            }
            guard connected else { return }
        }
        let operations = pendingOperations
        pendingOperations.removeAll()
        for operation in operations { perform(operation) }
        let consumes = pendingConsumes
        pendingConsumes.removeAll()
        for (consumer, _, completion) in consumes where !consumer.cancelled {
            completion(startConsuming(consumer))
        }
    }

    /// The connection is gone: forget it, keep everything that can be redone after a reconnect.
    private func connectionLost(_ error: AMQPError) {
        guard connected || connection != nil else { return }
        logger.info("AMQP connection lost", metadata: ["cta.amqp.error": "\(error)"])
        if let conn = connection { amqp_destroy_connection(conn) }
        connection = nil
        socketFD = -1
        connected = false
        socketReadable = false
        channelGenerations.removeAll()
        consumersByChannel.removeAll()
        for consumer in consumers.values { consumer.channel = 0 }
        // Messages sent but not confirmed have an unknown fate: send them again. Consumers deduplicate by
        // message id, so at-least-once here is exactly-once where it is stored.
        let unconfirmed = tracker.reset()
        for publish in unconfirmed { publish.returned = nil }
        waiting.prepend(contentsOf: unconfirmed)
        if !configuration.reconnect.enabled || closing != nil {
            failAllPending(error)
            for consumer in consumers.values { consumer.continuation.finish(throwing: error) }
            consumers.removeAll()
            inbox.withLock { $0.accepting = false }
        } else {
            nextAttempt = .now + backoff.next()
        }
        lastError = error
    }

    private func failAllPending(_ error: AMQPError) {
        for publish in tracker.reset() { publish.completion(.failure(error)) }
        while let publish = waiting.popFirst() { publish.completion(.failure(error)) }
        for operation in pendingOperations { operation.completion(.failure(error)) }
        pendingOperations.removeAll()
        for (consumer, _, completion) in pendingConsumes {
            consumer.continuation.finish(throwing: error)
            completion(.failure(error))
        }
        pendingConsumes.removeAll()
    }

    private func shutDown() {
        failAllPending(AMQPError(.closed, "the connection closed before the broker confirmed"))
        if let conn = connection {
            if connected { _ = amqp_connection_close(conn, AMQP_REPLY_SUCCESS) }
            amqp_destroy_connection(conn)
        }
        connection = nil
        connected = false
    }

    // MARK: Publishing

    private func flushPublishes() {
        guard let conn = connection else { return }
        let now = ContinuousClock.now
        let arguments = CArguments()
        defer { arguments.release() }
        var sent = 0
        while tracker.count < configuration.maxUnconfirmed, let publish = waiting.popFirst() {
            if now >= publish.deadline {
                publish.completion(.failure(AMQPError(.timeout, "no broker confirm within \(configuration.publishTimeout)", context: "publish to '\(publish.message.exchange)' '\(publish.message.routingKey)'")))
                continue
            }
            let message = publish.message
            let tag = tracker.sent(publish)
            var properties = arguments.properties(message.properties, publishTag: message.mandatory ? tag : nil)
            let rc = message.body.withUnsafeBytes { body -> Int32 in
                let bodyBytes = amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress))
                return amqp_basic_publish(
                    conn, Self.publishChannel, arguments.bytes(message.exchange), arguments.bytes(message.routingKey),
                    message.mandatory ? 1 : 0, 0, &properties, bodyBytes)
            }
            sent += 1
            if sent % 64 == 0 { arguments.release() }
            if rc != AMQP_STATUS_OK.rawValue {
                connectionLost(AMQPError(status: rc, context: "basic.publish"))
                return
            }
        }
        if sent > 0 { lastSent = .now }
    }

    private func settleConfirm(tag: UInt64, multiple: Bool, nack: Bool) {
        for (_, publish) in tracker.settle(tag: tag, multiple: multiple) {
            if nack {
                publish.completion(.failure(AMQPError(.nacked, "the broker refused the message (basic.nack)", context: "publish to '\(publish.message.exchange)' '\(publish.message.routingKey)'")))
            } else if let returned = publish.returned {
                publish.completion(.failure(returned))
            } else {
                publish.completion(.success(()))
            }
        }
    }

    // MARK: Operations

    private func perform(_ operation: PendingOperation) {
        if ContinuousClock.now >= operation.deadline {
            operation.completion(.failure(AMQPError(.timeout, "broker not reachable in time", context: operation.operation.context)))
            return
        }
        let result = run(operation.operation)
        if case .failure(let error) = result, error.code == .connectionClosed, configuration.reconnect.enabled, closing == nil {
            // Lost the connection under it: do it again after the reconnect, within its deadline.
            pendingOperations.append(operation)
            return
        }
        if case .success = result { topology.record(operation.operation) }
        operation.completion(result)
    }

    /// Runs one synchronous operation on the control channel; on a channel error reopens the channel.
    private func run(_ operation: BrokerOperation) -> Result<BrokerResult, AMQPError> {
        guard let conn = connection else { return .failure(AMQPError(.connectionClosed, "not connected")) }
        let channel = Self.controlChannel
        let arguments = CArguments()
        defer { arguments.release() }
        var result = BrokerResult.done
        switch operation {
        case .declareExchange(let name, let kind, let durable, let autoDelete, let isInternal, let args):
            _ = amqp_exchange_declare(conn, channel, arguments.bytes(name), arguments.bytes(kind.name), 0,
                                      durable ? 1 : 0, autoDelete ? 1 : 0, isInternal ? 1 : 0, arguments.table(args))
        case .declareQueue(let name, let durable, let exclusive, let autoDelete, let args):
            if let ok = amqp_queue_declare(conn, channel, arguments.bytes(name), 0, durable ? 1 : 0, exclusive ? 1 : 0,
                                           autoDelete ? 1 : 0, arguments.table(args)) {
                result = .queue(QueueState(name: String(amqp: ok.pointee.queue), messageCount: ok.pointee.message_count,
                                           consumerCount: ok.pointee.consumer_count))
            }
        case .inspectQueue(let name):
            if let ok = amqp_queue_declare(conn, channel, arguments.bytes(name), 1, 0, 0, 0, amqp_empty_table) {
                result = .queue(QueueState(name: String(amqp: ok.pointee.queue), messageCount: ok.pointee.message_count,
                                           consumerCount: ok.pointee.consumer_count))
            }
        case .bindQueue(let queue, let exchange, let key, let args):
            _ = amqp_queue_bind(conn, channel, arguments.bytes(queue), arguments.bytes(exchange), arguments.bytes(key), arguments.table(args))
        case .unbindQueue(let queue, let exchange, let key, let args):
            _ = amqp_queue_unbind(conn, channel, arguments.bytes(queue), arguments.bytes(exchange), arguments.bytes(key), arguments.table(args))
        case .deleteQueue(let name, let ifUnused, let ifEmpty):
            if let ok = amqp_queue_delete(conn, channel, arguments.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0) {
                result = .count(ok.pointee.message_count)
            }
        case .purgeQueue(let name):
            if let ok = amqp_queue_purge(conn, channel, arguments.bytes(name)) {
                result = .count(ok.pointee.message_count)
            }
        case .deleteExchange(let name):
            _ = amqp_exchange_delete(conn, channel, arguments.bytes(name), 0)
        }
        let reply = amqp_get_rpc_reply(conn)
        if let error = AMQPError(reply: reply, context: operation.context) {
            handleFailedCall(reply: reply, channel: channel, error: error)
            return .failure(error)
        }
        lastReceived = .now
        lastSent = .now
        return .success(result)
    }

    /// After a failed synchronous call: acknowledge a channel close and reopen the channel, or treat the
    /// connection as lost.
    private func handleFailedCall(reply: amqp_rpc_reply_t, channel: UInt16, error: AMQPError) {
        guard let conn = connection else { return }
        if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, reply.reply.id == cta_method_channel_close {
            _ = cta_amqp_send_channel_close_ok(conn, channel)
            channelClosed(channel, error: error)
        } else if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, reply.reply.id == cta_method_connection_close {
            _ = cta_amqp_send_connection_close_ok(conn)
            connectionLost(error)
        } else {
            connectionLost(error)
        }
    }

    /// The broker closed `channel` (close-ok already sent). Reopen what the connection needs.
    private func channelClosed(_ channel: UInt16, error: AMQPError) {
        channelGenerations[channel] = nil
        switch channel {
        case Self.controlChannel:
            do { try openChannel(channel) } catch { connectionLost(error) }
        case Self.publishChannel:
            logger.info("AMQP publish channel closed by the broker", metadata: ["cta.amqp.error": "\(error)"])
            let outstanding = tracker.reset()
            // A publish to a missing exchange closes the channel: fail those, send the others again.
            let culprit = Self.missingExchange(in: error)
            for publish in outstanding.reversed() {
                if culprit == nil || culprit == publish.message.exchange {
                    publish.completion(.failure(error.with(context: "publish to '\(publish.message.exchange)' '\(publish.message.routingKey)'")))
                } else {
                    publish.returned = nil
                    waiting.prepend(contentsOf: [publish])
                }
            }
            do {
                try openChannel(channel)
                try confirmSelect()
            } catch {
                connectionLost(error)
            }
        default:
            guard let consumer = consumersByChannel.removeValue(forKey: channel) else {
                freeChannels.append(channel)
                return
            }
            consumer.channel = 0
            freeChannels.append(channel)
            logger.info("AMQP consumer channel closed by the broker; resuming", metadata: ["cta.amqp.queue": "\(consumer.queue)", "cta.amqp.error": "\(error)"])
            if case .failure(let resumeError) = startConsuming(consumer), resumeError.code != .connectionClosed {
                consumers[consumer.id] = nil
                consumer.continuation.finish(throwing: resumeError)
            }
        }
    }

    static func missingExchange(in error: AMQPError) -> String? {
        guard error.replyCode == 404, let start = error.message.range(of: "no exchange '") else { return nil }
        let rest = error.message[start.upperBound...]
        guard let end = rest.range(of: "' in vhost") else { return nil }
        return String(rest[..<end.lowerBound])
    }

    // MARK: Consuming

    private func allocateChannel() -> UInt16? {
        if let channel = freeChannels.popLast() { return channel }
        guard nextChannel <= Self.maxChannel else { return nil }
        defer { nextChannel += 1 }
        return nextChannel
    }

    private func startConsuming(_ consumer: ConsumerState) -> Result<Void, AMQPError> {
        guard let conn = connection else { return .failure(AMQPError(.connectionClosed, "not connected")) }
        guard let channel = allocateChannel() else {
            return .failure(AMQPError(.invalidArgument, "too many consumers on one connection (\(Self.maxChannel - Self.firstConsumerChannel))"))
        }
        let context = "basic.consume '\(consumer.queue)'"
        do {
            try openChannel(channel)
        } catch {
            freeChannels.append(channel)
            if error.code == .connectionClosed { connectionLost(error) }
            return .failure(error)
        }
        _ = amqp_basic_qos(conn, channel, 0, consumer.prefetch, 0)
        var reply = amqp_get_rpc_reply(conn)
        if let error = AMQPError(reply: reply, context: "basic.qos \(consumer.prefetch) for '\(consumer.queue)'") {
            return failConsume(reply: reply, channel: channel, error: error)
        }
        let arguments = CArguments()
        defer { arguments.release() }
        _ = amqp_basic_consume(conn, channel, arguments.bytes(consumer.queue), arguments.bytes(consumer.tag), 0, 0,
                               consumer.exclusive ? 1 : 0, arguments.table(consumer.arguments))
        reply = amqp_get_rpc_reply(conn)
        if let error = AMQPError(reply: reply, context: context) {
            return failConsume(reply: reply, channel: channel, error: error)
        }
        consumer.channel = channel
        consumer.generation = channelGenerations[channel] ?? 0
        consumersByChannel[channel] = consumer
        lastReceived = .now
        return .success(())
    }

    private func failConsume(reply: amqp_rpc_reply_t, channel: UInt16, error: AMQPError) -> Result<Void, AMQPError> {
        if let conn = connection, reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, reply.reply.id == cta_method_channel_close {
            _ = cta_amqp_send_channel_close_ok(conn, channel)
            channelGenerations[channel] = nil
            freeChannels.append(channel)
        } else {
            handleFailedCall(reply: reply, channel: channel, error: error)
        }
        return .failure(error)
    }

    private func stopConsuming(_ consumer: ConsumerState) {
        let channel = consumer.channel
        consumer.channel = 0
        guard channel != 0, let conn = connection, connected else { return }
        consumersByChannel[channel] = nil
        // Closing the channel cancels the consumer and returns its unacknowledged messages to the queue.
        let reply = amqp_channel_close(conn, channel, AMQP_REPLY_SUCCESS)
        channelGenerations[channel] = nil
        if let error = AMQPError(reply: reply, context: "channel.close \(channel)") {
            if reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION { connectionLost(error) }
        } else {
            freeChannels.append(channel)
        }
    }

    private func settle(channel: UInt16, generation: UInt64, tag: UInt64, _ settlement: Settlement) {
        guard let conn = connection, connected, channelGenerations[channel] == generation else {
            // The channel the message came on is gone: the broker has already put the message back.
            logger.debug("AMQP settlement for a closed channel dropped; the message will be redelivered",
                         metadata: ["cta.amqp.delivery_tag": "\(tag)"])
            return
        }
        let rc: Int32
        switch settlement {
        case .ack(let multiple): rc = amqp_basic_ack(conn, channel, tag, multiple ? 1 : 0)
        case .nack(let multiple, let requeue): rc = amqp_basic_nack(conn, channel, tag, multiple ? 1 : 0, requeue ? 1 : 0)
        case .reject(let requeue): rc = amqp_basic_reject(conn, channel, tag, requeue ? 1 : 0)
        }
        if rc != AMQP_STATUS_OK.rawValue {
            connectionLost(AMQPError(status: rc, context: "basic.ack"))
        } else {
            lastSent = .now
        }
    }

    // MARK: Reading

    private func readFrames() {
        guard let conn = connection else { return }
        // Bytes arrived. librabbitmq consumes heartbeat frames itself and reports "no frame", so an idle
        // connection whose only traffic is the broker's heartbeats must count as alive here.
        if socketReadable { lastReceived = .now }
        var budget = 4096
        while budget > 0, connected {
            let buffered = amqp_frames_enqueued(conn) != 0 || amqp_data_in_buffer(conn) != 0
            guard buffered || socketReadable else { break }
            var frame = amqp_frame_t()
            let rc = cta_amqp_wait_frame_now(conn, &frame)
            if rc == AMQP_STATUS_TIMEOUT.rawValue {
                socketReadable = false
                break
            }
            guard rc == AMQP_STATUS_OK.rawValue else {
                connectionLost(AMQPError(status: rc, context: "reading from the broker"))
                return
            }
            budget -= 1
            handleFrame(frame, conn: conn)
        }
        if budget < 4096 { lastReceived = .now }
        if connected, let conn = connection, amqp_frames_enqueued(conn) == 0 {
            amqp_maybe_release_buffers(conn)
        }
    }

    private func handleFrame(_ frame: amqp_frame_t, conn: amqp_connection_state_t) {
        guard Int32(frame.frame_type) == AMQP_FRAME_METHOD else { return }  // heartbeats only refresh lastReceived
        let method = frame.payload.method
        let channel = frame.channel
        switch method.id {
        case cta_method_basic_ack:
            let ack = method.decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            settleConfirm(tag: ack.delivery_tag, multiple: ack.multiple != 0, nack: false)
        case cta_method_basic_nack:
            let nack = method.decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            settleConfirm(tag: nack.delivery_tag, multiple: nack.multiple != 0, nack: true)
        case cta_method_basic_deliver:
            let deliver = method.decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            let exchange = String(amqp: deliver.exchange)
            let routingKey = String(amqp: deliver.routing_key)
            var message = amqp_message_t()
            let reply = amqp_read_message(conn, channel, &message, 0)
            if let error = AMQPError(reply: reply, context: "reading a delivery") {
                handleFailedCall(reply: reply, channel: channel, error: error)
                return
            }
            defer { amqp_destroy_message(&message) }
            guard let consumer = consumersByChannel[channel] else {
                _ = amqp_basic_reject(conn, channel, deliver.delivery_tag, 1)
                return
            }
            let delivery = AMQPDelivery(
                body: [UInt8](amqp: message.body), exchange: exchange, routingKey: routingKey,
                redelivered: deliver.redelivered != 0, properties: swiftProperties(message.properties),
                deliveryTag: deliver.delivery_tag, channel: channel, generation: consumer.generation, worker: self)
            consumer.continuation.yield(delivery)
        case cta_method_basic_return:
            let ret = method.decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let text = String(amqp: ret.reply_text)
            let exchange = String(amqp: ret.exchange)
            let routingKey = String(amqp: ret.routing_key)
            var message = amqp_message_t()
            let reply = amqp_read_message(conn, channel, &message, 0)
            if let error = AMQPError(reply: reply, context: "reading a returned message") {
                handleFailedCall(reply: reply, channel: channel, error: error)
                return
            }
            defer { amqp_destroy_message(&message) }
            let headers = swiftProperties(message.properties).headers
            if case .int(let tag)? = headers[publishTagHeader], let (_, publish) = tracker.find(tag: UInt64(tag)) {
                publish.returned = AMQPError(.unroutable, "no queue is bound for routing key '\(routingKey)' (\(text))",
                                             context: "publish to '\(exchange)'", replyCode: ret.reply_code)
            }
        case cta_method_basic_cancel:
            let cancel = method.decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            let tag = String(amqp: cancel.consumer_tag)
            if let consumer = consumersByChannel[channel], consumer.tag == tag {
                consumersByChannel[channel] = nil
                consumers[consumer.id] = nil
                consumer.channel = 0
                _ = amqp_channel_close(conn, channel, AMQP_REPLY_SUCCESS)
                channelGenerations[channel] = nil
                freeChannels.append(channel)
                consumer.continuation.finish(throwing: AMQPError(.consumerCancelled, "the broker cancelled the consumer (was queue '\(consumer.queue)' deleted?)"))
            }
        case cta_method_channel_close:
            let close = method.decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            _ = cta_amqp_send_channel_close_ok(conn, channel)
            channelClosed(channel, error: AMQPError(channelClose: close, context: "channel \(channel)"))
        case cta_method_connection_close:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            _ = cta_amqp_send_connection_close_ok(conn)
            connectionLost(AMQPError(.connectionClosed, "broker closed the connection: \(String(amqp: close.reply_text))", replyCode: close.reply_code))
        case cta_method_connection_blocked:
            logger.info("AMQP broker blocked publishing (resource alarm)")
        case cta_method_connection_unblocked:
            logger.info("AMQP broker unblocked publishing")
        default:
            logger.debug("AMQP frame ignored", metadata: ["cta.amqp.method": "\(method.id)"])
        }
    }

    // MARK: Time

    private func heartbeatDuties() {
        guard heartbeatInterval > .zero, let conn = connection else { return }
        let now = ContinuousClock.now
        if now - lastReceived > heartbeatInterval * 2 {
            connectionLost(AMQPError(.connectionClosed, "missed two heartbeats from the broker"))
            return
        }
        if now - lastSent >= heartbeatInterval / 2 {
            let rc = cta_amqp_send_heartbeat(conn)
            if rc != AMQP_STATUS_OK.rawValue {
                connectionLost(AMQPError(status: rc, context: "sending a heartbeat"))
                return
            }
            lastSent = now
        }
    }

    private func expireDeadlines() {
        let now = ContinuousClock.now
        while let first = waiting.first, now >= first.deadline {
            _ = waiting.popFirst()
            first.completion(.failure(AMQPError(.timeout, connected ? "no broker confirm within \(configuration.publishTimeout)" : "no connection to the broker within \(configuration.publishTimeout)", context: "publish to '\(first.message.exchange)' '\(first.message.routingKey)'")))
        }
        while let (tag, oldest) = tracker.oldest, now >= oldest.deadline {
            _ = tracker.settle(tag: tag, multiple: false)
            oldest.completion(.failure(AMQPError(.timeout, "no broker confirm within \(configuration.publishTimeout)", context: "publish to '\(oldest.message.exchange)' '\(oldest.message.routingKey)'")))
        }
        if !connected {
            pendingOperations.removeAll { operation in
                guard now >= operation.deadline else { return false }
                operation.completion(.failure(AMQPError(.timeout, "no connection to the broker in time", context: operation.operation.context)))
                return true
            }
            pendingConsumes.removeAll { entry in
                guard now >= entry.1 else { return false }
                consumers[entry.0.id] = nil
                let error = AMQPError(.timeout, "no connection to the broker in time", context: "basic.consume '\(entry.0.queue)'")
                entry.0.continuation.finish(throwing: error)
                entry.2(.failure(error))
                return true
            }
        }
    }

    private func waitForActivity() {
        if connected, let conn = connection {
            if amqp_frames_enqueued(conn) != 0 || amqp_data_in_buffer(conn) != 0 { return }
        }
        var timeout: Int64
        if connected {
            let canSend = !waiting.isEmpty && tracker.count < configuration.maxUnconfirmed
            timeout = canSend ? 0 : 1000
            if heartbeatInterval > .zero { timeout = min(timeout, max(1, (heartbeatInterval / 4).milliseconds)) }
        } else if closing != nil {
            timeout = 0
        } else {
            timeout = max(0, (nextAttempt - .now).milliseconds)
            timeout = min(timeout, 1000)
        }
        if let first = waiting.first { timeout = min(timeout, max(0, (first.deadline - .now).milliseconds + 1)) }

        var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        if connected, socketFD >= 0 { fds.append(pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0)) }
        let n = poll(&fds, nfds_t(fds.count), Int32(clamping: timeout))
        guard n > 0 else { return }
        if fds[0].revents != 0 {
            var value: UInt64 = 0
            _ = withUnsafeMutableBytes(of: &value) { Glibc.read(wakeFD, $0.baseAddress, 8) }
        }
        if fds.count > 1, fds[1].revents != 0 { socketReadable = true }
    }
}

extension ConfirmTracker {
    func find(tag: UInt64) -> (UInt64, Token)? {
        guard let token = self[tag] else { return nil }
        return (tag, token)
    }
}
