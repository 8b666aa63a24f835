public import CTACoordinator
import CTADefinitions
import Foundation
public import Hummingbird
public import HummingbirdWebSocket
import Logging
import NIOCore
import Synchronization

/// What the live feed asks its `authorize` closure: may the bearer of `token` open the feed (`target` nil), or
/// subscribe to `target`?
public struct LiveAccessRequest: Sendable {
    /// The bearer token from the `Authorization` header or the `token` query parameter; nil when neither is set.
    public var token: String?
    /// The subscription target; nil when the connection itself is being opened.
    public var target: FeedTarget?

    public init(token: String?, target: FeedTarget?) {
        self.token = token
        self.target = target
    }
}

/// The answer of the `authorize` closure.
public enum LiveAccessDecision: Sendable, Equatable {
    case allow
    /// Refused with an API error code (`unauthenticated`, `forbidden`, `notFound`…) and a message for the client.
    case deny(code: String, message: String)
}

/// Limits of one live-feed connection.
public struct LiveRoutesConfiguration: Sendable {
    /// Largest client message accepted; a larger one closes the connection (close code 1009). Default 8 KiB.
    public var maximumMessageSize: Int
    /// Most subscriptions a connection may hold at once. Default 32.
    public var maximumSubscriptions: Int
    /// Longest a single frame may take to be written to a client that does not read; the connection is closed
    /// then. Default 10 s.
    public var writeTimeout: Duration

    public init(maximumMessageSize: Int = 8192, maximumSubscriptions: Int = 32, writeTimeout: Duration = .seconds(10)) {
        self.maximumMessageSize = maximumMessageSize
        self.maximumSubscriptions = maximumSubscriptions
        self.writeTimeout = writeTimeout
    }
}

/// Mounts `GET /v1/live`, the live feed over WebSocket.
public enum LiveRoutes {
    public typealias Authorize = @Sendable (LiveAccessRequest) async -> LiveAccessDecision

    /// Adds the route. The app must serve WebSocket upgrades through this router
    /// (`.http1WebSocketUpgrade(webSocketRouter: router)`).
    public static func add<Context: WebSocketRequestContext>(
        to router: Router<Context>, feed: LiveFeed, configuration: LiveRoutesConfiguration = .init(),
        authorize: @escaping Authorize
    ) {
        let cache = LiveEventCache()
        router.ws(
            "/v1/live",
            // The token is checked once the connection is a WebSocket: a refusal thrown before the upgrade
            // reaches the client as a bare 400 (the WebSocket router answers so), while an error frame says why.
            shouldUpgrade: { _, _ in .upgrade([:]) },
            onUpgrade: { inbound, outbound, context in
                let decision = await authorize(LiveAccessRequest(token: bearerToken(context.request), target: nil))
                if case .deny(let code, let message) = decision {
                    context.logger.notice("live feed connection refused", metadata: ["cta.error": "\(code): \(message)"])
                    try await outbound.write(.text(LiveProtocol.errorFrame(LiveProtocolError(code: code, message: message))))
                    // Closing at once can lose the frame on the client's side: keep the connection until the client
                    // closes it (having read why), two seconds at most; what it sends meanwhile is dropped.
                    await withTaskGroup(of: Void.self) { group in
                        group.addTask {
                            do {
                                for try await _ in inbound.messages(maxSize: configuration.maximumMessageSize) {}
                            } catch {}
                        }
                        group.addTask { try? await Task.sleep(for: .seconds(2)) }
                        await group.next()
                        group.cancelAll()
                    }
                    return  // the handler's end closes the connection
                }
                let connection = LiveConnection(
                    feed: feed, token: bearerToken(context.request), authorize: authorize, cache: cache,
                    configuration: configuration, outbound: outbound, logger: context.logger)
                await connection.run(inbound)
            })
    }

    /// The token of `Authorization: Bearer …`, else of `?token=`.
    static func bearerToken(_ request: Request) -> String? {
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                return String(parts[1]).trimmingCharacters(in: .whitespaces)
            }
        }
        return request.uri.queryParameters.get("token")
    }
}

/// One WebSocket connection: reads client frames, runs its subscriptions, writes their frames one at a time.
final class LiveConnection: Sendable {
    let feed: LiveFeed
    let token: String?
    let authorize: LiveRoutes.Authorize
    let cache: LiveEventCache
    let configuration: LiveRoutesConfiguration
    let outbound: WebSocketOutboundWriter
    let logger: Logger
    private let session: Mutex<LiveSession>
    private let subscriptions = Mutex<[String: LiveSubscription]>([:])
    /// Subscriptions stopped before they had started.
    private let stopped = Mutex<Set<String>>([])
    private let writeLock = WriteLock()
    private let fatal = AsyncStream<Void>.makeStream()
    /// When the write in progress started (`DispatchTime` nanoseconds), 0 when none is: the watchdog closes the
    /// connection when one takes longer than the write timeout. Cheaper than a timer per frame.
    private let writeStarted = Atomic<UInt64>(0)

    init(
        feed: LiveFeed, token: String?, authorize: @escaping LiveRoutes.Authorize, cache: LiveEventCache,
        configuration: LiveRoutesConfiguration, outbound: WebSocketOutboundWriter, logger: Logger
    ) {
        self.feed = feed
        self.token = token
        self.authorize = authorize
        self.cache = cache
        self.configuration = configuration
        self.outbound = outbound
        self.logger = logger
        self.session = Mutex(LiveSession(maximumSubscriptions: configuration.maximumSubscriptions))
    }

    func run(_ inbound: WebSocketInboundStream) async {
        // Either the client's frames end, or a write times out (`fatal`): then everything of this connection is
        // cancelled and the handler returns, which closes the connection.
        await withTaskGroup(of: Void.self) { outer in
            outer.addTask { await self.serve(inbound) }
            outer.addTask { for await _ in self.fatal.stream { break } }
            outer.addTask { await self.watchWrites() }
            await outer.next()
            outer.cancelAll()
        }
    }

    private func serve(_ inbound: WebSocketInboundStream) async {
        await withTaskGroup(of: Void.self) { group in
            do {
                for try await message in inbound.messages(maxSize: configuration.maximumMessageSize) {
                    let actions: [LiveSession.Action]
                    switch message {
                    case .text(let text): actions = session.withLock { $0.receive(text) }
                    case .binary: actions = session.withLock { $0.receiveBinary() }
                    }
                    for action in actions {
                        switch action {
                        case .send(let frame):
                            guard await send(frame) else { throw CancellationError() }
                        case .start(let id, let target, let after):
                            stopped.withLock { _ = $0.remove(id) }
                            group.addTask { await self.runSubscription(id: id, target: target, after: after) }
                        case .stop(let id):
                            stopped.withLock { _ = $0.insert(id) }
                            if let subscription = subscriptions.withLock({ $0.removeValue(forKey: id) }) {
                                await subscription.close()
                                feed.wakeSubscribers()
                            }
                        }
                    }
                }
            } catch {
                logger.debug("live connection ended", metadata: ["cta.error": "\(error)"])
            }
            // The client left (or misbehaved): end every subscription of this connection.
            for subscription in subscriptions.withLock({ Array($0.values) }) { await subscription.close() }
            group.cancelAll()
        }
    }

    private func runSubscription(id: String, target: FeedTarget, after: LiveCursor?) async {
        defer { session.withLock { $0.ended(id) } }
        let decision = await authorize(LiveAccessRequest(token: token, target: target))
        if case .deny(let code, let message) = decision {
            _ = await send(LiveProtocol.errorFrame(.init(code: code, message: message, sub: id)))
            return
        }
        let subscription: LiveSubscription
        do {
            subscription = try await feed.subscribe(target, after: after)
        } catch {
            _ = await send(LiveProtocol.errorFrame(Self.protocolError(error, sub: id)))
            return
        }
        let alreadyStopped = subscriptions.withLock { subscriptions in
            if stopped.withLock({ $0.contains(id) }) { return true }
            subscriptions[id] = subscription
            return false
        }
        if alreadyStopped {
            await subscription.close()
            return
        }
        defer { subscriptions.withLock { _ = $0.removeValue(forKey: id) } }
        guard await send(LiveProtocol.subscribedFrame(sub: id)) else { return }
        do {
            while let item = try await subscription.next() {
                let frame: String
                switch item {
                case .change(let change):
                    frame = LiveProtocol.eventFrame(
                        sub: id, cursor: change.cursor.description, type: LiveEvents.type(of: change),
                        event: cache.json(change))
                case .end(let phase):
                    frame = LiveProtocol.endFrame(sub: id, phase: phase.rawValue)
                }
                guard await send(frame) else {
                    await subscription.close()
                    return
                }
            }
        } catch {
            await subscription.close()
            _ = await send(LiveProtocol.errorFrame(Self.protocolError(error, sub: id)))
        }
    }

    static func protocolError(_ error: LiveFeedError, sub: String) -> LiveProtocolError {
        switch error.code {
        case .notFound: LiveProtocolError(code: "notFound", message: error.message, sub: sub)
        case .cursorExpired: LiveProtocolError(code: "rangeNotSatisfiable", message: error.message, sub: sub)
        case .invalidCursor: LiveProtocolError(code: "invalidField", message: error.message, sub: sub, field: "after")
        default: LiveProtocolError(code: "unavailable", message: error.message, sub: sub)
        }
    }

    /// Writes one frame, one writer at a time; false when the connection is gone (also when the watchdog closed it
    /// because the client did not take a frame within the write timeout).
    private func send(_ frame: String) async -> Bool {
        await writeLock.acquire()
        defer { writeLock.release() }
        writeStarted.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
        defer { writeStarted.store(0, ordering: .relaxed) }
        do {
            try await outbound.write(.text(frame))
            return true
        } catch {
            return false
        }
    }

    /// Closes the connection (through `fatal`) once a write has waited longer than the write timeout: a client that
    /// stops reading must not hold the server's frames, nor its subscriptions, forever.
    private func watchWrites() async {
        let timeout = configuration.writeTimeout
        let (seconds, attoseconds) = timeout.components
        let limit = UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        let period = min(timeout / 4, .seconds(1))
        while !Task.isCancelled {
            try? await Task.sleep(for: period)
            let started = writeStarted.load(ordering: .relaxed)
            if started != 0, DispatchTime.now().uptimeNanoseconds &- started > limit {
                logger.info("live client does not take its frames; closing the connection")
                fatal.continuation.yield()
                return
            }
        }
    }
}

/// An async mutual exclusion for writes (a frame larger than the frame size is several frames on the wire:
/// two must never interleave).
final class WriteLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func acquire() async {
        // The usual case, one writer: no suspension.
        let free = state.withLock { state -> Bool in
            guard !state.locked else { return false }
            state.locked = true
            return true
        }
        if free { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if !state.locked {
                    state.locked = true
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
