import Foundation
public import Hummingbird
public import HummingbirdWebSocket
import NIOCore
import Synchronization

/// The gateway's request context: the WebSocket upgrade and the client's address (for the refusal limit).
public struct GatewayRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<GatewayRequestContext>
    public let remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = CoreRequestContextStorage(source: source)
        self.webSocket = WebSocketHandlerReference()
        self.remoteAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// Limits refused connections per client address: after `limit` refusals within `window`, that address is refused
/// at once (without a token lookup) until its oldest refusal leaves the window.
final class RefusalLimiter: Sendable {
    let limit: Int
    let window: TimeInterval
    private let refusals = Mutex<[String: [Date]]>([:])

    init(limit: Int = 10, window: TimeInterval = 60) {
        self.limit = limit
        self.window = window
    }

    /// Seconds until `address` may try again, or nil when it may now.
    func retryAfter(_ address: String, now: Date) -> TimeInterval? {
        refusals.withLock { all in
            let recent = (all[address] ?? []).filter { now.timeIntervalSince($0) < window }
            all[address] = recent.isEmpty ? nil : recent
            guard recent.count >= limit, let oldest = recent.first else { return nil }
            return window - now.timeIntervalSince(oldest)
        }
    }

    func refused(_ address: String, at now: Date) {
        refusals.withLock { all in
            var recent = (all[address] ?? []).filter { now.timeIntervalSince($0) < window }
            recent.append(now)
            // Old addresses are forgotten as they are seen again; bound the table against address floods.
            if all.count > 100_000 { all.removeAll() }
            all[address] = recent
        }
    }
}
