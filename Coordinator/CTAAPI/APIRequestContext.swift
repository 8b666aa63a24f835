public import Hummingbird
public import HummingbirdWebSocket
import NIOCore

/// The request context of every API route, the WebSocket upgrade included (the live feed's `GET /v1/live` is
/// routed on the same router).
public struct APIRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<APIRequestContext>
    /// The client's address (IP), for the login rate limit.
    public let remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = CoreRequestContextStorage(source: source)
        self.webSocket = WebSocketHandlerReference()
        self.remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Bodies are read explicitly with their own limits (``API/body(_:limit:)``); this covers anything decoded
    /// through Hummingbird's decoder.
    public var maxUploadSize: Int { APIConfiguration.defaultBodyLimit }
}
