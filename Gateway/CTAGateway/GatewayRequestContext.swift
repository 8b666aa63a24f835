public import Hummingbird
public import HummingbirdWebSocket
import NIOCore

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
