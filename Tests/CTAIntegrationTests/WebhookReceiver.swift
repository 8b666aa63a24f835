import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A small HTTP server on 127.0.0.1 that records every request and answers each path with the statuses it was
/// scripted with, in order (200 once the script is used up). A path scripted with `nil` never answers.
final class WebhookReceiver: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String

        func header(_ name: String) -> String? {
            headers.first { $0.key.lowercased() == name.lowercased() }?.value
        }
    }

    private struct State {
        var requests: [Request] = []
        var scripts: [String: [Int?]] = [:]
    }

    /// The state the connections share, apart from `self` so that the server can be set up before `init` ends.
    private final class Shared: Sendable {
        let state: Mutex<State>
        init(_ state: State) { self.state = Mutex(state) }
    }

    private let shared: Shared
    private let channel: any Channel
    let port: Int

    /// Starts listening on a free port.
    init(scripts: [String: [Int?]] = [:]) async throws {
        let shared = Shared(State(scripts: scripts))
        self.shared = shared
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        RecordingHandler { request in
                            shared.state.withLock { state -> Int? in
                                state.requests.append(request)
                                guard var script = state.scripts[request.path], !script.isEmpty else { return 200 }
                                let status = script.removeFirst()
                                state.scripts[request.path] = script
                                return status
                            }
                        })
                }
            }
        channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    /// `http://127.0.0.1:<port><path>`.
    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    var requests: [Request] { shared.state.withLock { $0.requests } }

    func requests(to path: String) -> [Request] { requests.filter { $0.path == path } }

    func close() async {
        try? await channel.close()
    }
}

/// Collects one request per connection and answers it with the status `respond` returns (none for nil).
private final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let respond: @Sendable (WebhookReceiver.Request) -> Int?
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(respond: @escaping @Sendable (WebhookReceiver.Request) -> Int?) {
        self.respond = respond
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            let request = WebhookReceiver.Request(
                method: head.method.rawValue, path: head.uri,
                headers: Dictionary(head.headers.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first }),
                body: body.readString(length: body.readableBytes) ?? "")
            guard let status = respond(request) else { return }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Length", value: "0")
            headers.add(name: "Connection", value: "close")
            let response = HTTPResponseHead(
                version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
            context.write(wrapOutboundOut(.head(response)), promise: nil)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
