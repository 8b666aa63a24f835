import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

// A minimal HTTP/1.1 client for webhooks on SwiftNIO: one POST per connection (`Connection: close`), and only the
// response status is read. Plain http:// only: TLS would need NIOSSL, which is not a dependency.

/// Why a webhook request got no HTTP answer.
struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unsupportedURL = "unsupported URL"
            case connect = "cannot connect"
            case timeout = "timed out"
            case closed = "connection closed"
            case failed = "request failed"
            case cancelled = "cancelled"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The URL is not an http:// URL with a host; retrying cannot help.
        static let unsupportedURL = Code(.unsupportedURL)
        /// The receiver could not be reached (name resolution, refused, unreachable, connect timeout).
        static let connect = Code(.connect)
        /// No response status within the attempt's time limit.
        static let timeout = Code(.timeout)
        /// The receiver closed the connection before answering.
        static let closed = Code(.closed)
        /// The connection failed while the request was sent or the answer read.
        static let failed = Code(.failed)
        /// The coordinator is shutting down.
        static let cancelled = Code(.cancelled)

        var description: String { base.rawValue }
    }

    var code: Code
    /// What happened, in words safe to record and show.
    var detail: String

    init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    var description: String { "\(code): \(detail)" }
}

/// Where an http:// URL points: what to connect to and what to put in the request line and `Host` header.
struct HTTPTarget: Hashable, Sendable {
    var host: String
    var port: Int
    /// The path and query, `/` at least.
    var requestTarget: String
    var hostHeader: String

    /// Parses a webhook URL; anything but `http://host[:port][/path][?query]` is refused with a reason.
    init(_ url: String) throws(HTTPClientError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw HTTPClientError(.unsupportedURL, "\"\(url)\" is not a URL")
        }
        guard scheme == "http" else {
            if scheme == "https" {
                throw HTTPClientError(
                    .unsupportedURL,
                    "https is not supported: this coordinator has no TLS client; use an http:// URL "
                        + "(for example a TLS-terminating proxy on the coordinator's host)")
            }
            throw HTTPClientError(.unsupportedURL, "scheme \"\(scheme)\" is not supported; use an http:// URL")
        }
        var host = components.host ?? ""
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw HTTPClientError(.unsupportedURL, "\"\(url)\" has no host") }
        let port = components.port ?? 80
        guard (1...65535).contains(port) else { throw HTTPClientError(.unsupportedURL, "port \(port) is out of range") }
        self.host = host
        self.port = port
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        self.requestTarget = path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
        let hostName = host.contains(":") ? "[\(host)]" : host
        self.hostHeader = port == 80 ? hostName : "\(hostName):\(port)"
    }
}

/// Sends one POST and returns the response status.
struct HTTPClient: Sendable {
    let group: any EventLoopGroup

    init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.group = group
    }

    /// POSTs `body` to `target` and returns the status code of the answer. `timeout` bounds the whole exchange,
    /// connecting included; cancelling the calling task closes the connection.
    func post(
        _ target: HTTPTarget, headers: [(name: String, value: String)], body: String, timeout: Duration
    ) async throws(HTTPClientError) -> Int {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: target.requestTarget)
        head.headers.add(name: "Host", value: target.hostHeader)
        for header in headers { head.headers.add(name: header.name, value: header.value) }
        head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        head.headers.add(name: "Connection", value: "close")
        let request = head
        let time = TimeAmount(timeout)
        let deadline = NIODeadline.now() + time

        let loop = group.next()
        let answer = loop.makePromise(of: Int.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(time)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        ResponseStatusHandler(request: request, body: body, answer: answer))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: target.host, port: target.port).get()
        } catch {
            let failure = HTTPClientError(.connect, "\(target.hostHeader): \(Self.describe(error))")
            answer.fail(failure)
            throw failure
        }
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) {
            answer.fail(HTTPClientError(.timeout, "no answer within \(timeout)"))
        }
        answer.futureResult.whenComplete { _ in
            timer.cancel()
            channel.close(promise: nil)
        }
        do {
            return try await withTaskCancellationHandler {
                try await answer.futureResult.get()
            } onCancel: {
                answer.fail(HTTPClientError(.cancelled, "the coordinator is stopping"))
            }
        } catch let error as HTTPClientError {
            throw error
        } catch {
            throw HTTPClientError(.failed, Self.describe(error))
        }
    }

    /// An error's description, shortened: NIO's connection errors list every address tried.
    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        return text.count <= 300 ? text : String(text.prefix(300)) + "…"
    }
}

/// Sends the request once the connection is up and completes `answer` with the first final response status;
/// fails it when the connection fails or closes first.
private final class ResponseStatusHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let request: HTTPRequestHead
    private let body: String
    private let answer: EventLoopPromise<Int>

    init(request: HTTPRequestHead, body: String, answer: EventLoopPromise<Int>) {
        self.request = request
        self.body = body
        self.answer = answer
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(request)), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let response) = unwrapInboundIn(data) else { return }
        let code = Int(response.status.code)
        // 1xx answers are interim; the final one follows.
        guard code >= 200 else { return }
        answer.succeed(code)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        answer.fail(HTTPClientError(.failed, HTTPClient.describe(error)))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        answer.fail(HTTPClientError(.closed, "the receiver closed the connection before answering"))
        context.fireChannelInactive()
    }
}
