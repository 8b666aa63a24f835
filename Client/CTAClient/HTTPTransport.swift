import Foundation
public import NIOCore
public import NIOHTTP1
public import NIOPosix
public import NIOSSL

/// Where the API is: scheme, host, port and a base path, from a URL such as `https://cta.example:8420`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var secure: Bool
    public var host: String
    public var port: Int
    /// The path prefix every request path is appended to, without a trailing `/` (usually empty).
    public var basePath: String

    /// Parses an `http` or `https` URL; nil when it is not one.
    public init?(_ text: String) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty,
            components.query == nil, components.user == nil
        else { return nil }
        secure = scheme == "https"
        self.host = host
        port = components.port ?? (secure ? 443 : 80)
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        basePath = path
    }

    public var description: String {
        let defaultPort = secure ? 443 : 80
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(secure ? "https" : "http")://\(hostText)\(port == defaultPort ? "" : ":\(port)")\(basePath)"
    }

    /// The WebSocket URL of `path` on this endpoint.
    public func webSocketURL(_ path: String) -> String {
        let hostText = host.contains(":") ? "[\(host)]" : host
        return "\(secure ? "wss" : "ws")://\(hostText):\(port)\(basePath)\(path)"
    }

    /// Whether the host is an IP address (no server name is sent in TLS then).
    var hostIsAddress: Bool { (try? SocketAddress(ipAddress: host, port: 0)) != nil }
}

/// How to reach the API: TLS trust and time limits.
public struct TransportConfiguration: Sendable {
    /// A PEM file of certificates to trust instead of the system's (a private CA); nil for the system's.
    public var caCertificateFile: String?
    /// A PEM client certificate (chain) and its PEM private key, for a server that asks for one; nil for none.
    public var clientCertificate: (certificate: String, key: String)?
    /// The longest wait for a connection.
    public var connectTimeout: Duration
    /// The longest wait for a whole response, from connecting to its last byte.
    public var requestTimeout: Duration

    /// Creates a configuration; 10 s to connect and 60 s per request by default.
    public init(
        caCertificateFile: String? = nil, clientCertificate: (certificate: String, key: String)? = nil,
        connectTimeout: Duration = .seconds(10), requestTimeout: Duration = .seconds(60)
    ) {
        self.caCertificateFile = caCertificateFile
        self.clientCertificate = clientCertificate
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
    }

    /// The TLS client configuration: certificates verified with the system's roots, or only those of the CA file;
    /// the client certificate presented when there is one.
    public func tlsConfiguration() throws(ClientError) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caCertificateFile {
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(caCertificateFile)
                guard !certificates.isEmpty else { throw ClientError.usage("\(caCertificateFile): no PEM certificate") }
                tls.trustRoots = .certificates(certificates)
            } catch let error as ClientError {
                throw error
            } catch {
                throw ClientError.usage("cannot read the CA certificate \(caCertificateFile): \(error)")
            }
        }
        if let clientCertificate {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(clientCertificate.certificate)
                guard !chain.isEmpty else { throw ClientError.usage("\(clientCertificate.certificate): no PEM certificate") }
                tls.certificateChain = chain.map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: clientCertificate.key, format: .pem))
            } catch let error as ClientError {
                throw error
            } catch {
                throw ClientError.usage("cannot read the client certificate \(clientCertificate.certificate) or its key: \(error)")
            }
        }
        return tls
    }
}

/// One HTTP request.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The path and query, starting with `/`, already percent-encoded.
    public var target: String
    public var headers: [(String, String)]
    public var body: [UInt8]?

    public init(method: HTTPMethod, target: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
    }
}

/// One HTTP response, read whole.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Sends HTTP requests to the API and reads each response whole.
public protocol HTTPSending: Sendable {
    func send(_ request: HTTPRequest) async throws(ClientError) -> HTTPResponse
}

/// HTTP/1.1 over SwiftNIO, with TLS from NIOSSL: one connection per request, closed after its response.
///
/// The CLI makes few requests, mostly one after the other, so a connection pool would add more than it saves.
public struct HTTPTransport: HTTPSending {
    public let endpoint: Endpoint
    public let configuration: TransportConfiguration
    private let sslContext: NIOSSLContext?
    private let group: any EventLoopGroup

    /// The largest response body read.
    public static let maximumBodySize = 256 << 20

    public init(
        endpoint: Endpoint, configuration: TransportConfiguration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) throws(ClientError) {
        self.endpoint = endpoint
        self.configuration = configuration
        self.group = group
        if endpoint.secure {
            do {
                sslContext = try NIOSSLContext(configuration: try configuration.tlsConfiguration())
            } catch let error as ClientError {
                throw error
            } catch {
                throw ClientError.usage("cannot set up TLS: \(error)")
            }
        } else {
            sslContext = nil
        }
    }

    public func send(_ request: HTTPRequest) async throws(ClientError) -> HTTPResponse {
        do {
            return try await exchange(request)
        } catch let error as ClientError {
            throw error
        } catch {
            throw Self.describe(error, endpoint: endpoint)
        }
    }

    private func exchange(_ request: HTTPRequest) async throws -> HTTPResponse {
        let promise = group.next().makePromise(of: HTTPResponse.self)
        let sslContext = self.sslContext
        let serverName = endpoint.hostIsAddress ? nil : endpoint.host
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                }
            }
        let deadline = NIODeadline.now() + TimeAmount(configuration.requestTimeout)
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            promise.fail(error)
            throw error
        }
        let timeout = channel.eventLoop.scheduleTask(deadline: deadline) {
            promise.fail(ClientError.timeout("no complete response from \(endpoint) within \(configuration.requestTimeout)"))
            channel.close(promise: nil)
        }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: endpoint.basePath + request.target)
        let hostHeader = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        head.headers.add(name: "Host", value: "\(hostHeader):\(endpoint.port)")
        head.headers.add(name: "User-Agent", value: "cta/\(ClientVersion.current)")
        head.headers.add(name: "Connection", value: "close")
        for (name, value) in request.headers { head.headers.add(name: name, value: value) }
        if let body = request.body { head.headers.add(name: "Content-Length", value: "\(body.count)") }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body = request.body {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        }
        do {
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
        } catch {
            // The reason is what closed the channel (a TLS failure, a reset): the collector has it.
            promise.fail(error)
            channel.close(promise: nil)
        }
        return try await promise.futureResult.get()
    }

    /// A connection or TLS failure in words.
    static func describe(_ error: any Error, endpoint: Endpoint) -> ClientError {
        if let error = error as? NIOSSLError {
            return .connection("TLS with \(endpoint) failed: \(error) (is --ca-cert needed?)")
        }
        if let error = error as? BoringSSLError {
            return .connection("TLS with \(endpoint) failed: \(error) (is --ca-cert needed?)")
        }
        if case ChannelError.connectTimeout = error {
            return .timeout("cannot connect to \(endpoint): timed out")
        }
        if let error = error as? NIOConnectionError {
            let reasons = error.connectionErrors.map { reason(of: $0.error) }
            if let dnsError = error.dnsAAAAError ?? error.dnsAError, reasons.isEmpty {
                return .connection("cannot connect to \(endpoint): cannot resolve \(endpoint.host): \(dnsError)")
            }
            return .connection("cannot connect to \(endpoint): \(reasons.first ?? "\(error)")")
        }
        if error is IOError {
            return .connection("cannot connect to \(endpoint): \(reason(of: error))")
        }
        return .connection("request to \(endpoint) failed: \(error)")
    }

    /// The system's words for an I/O error: `Connection refused`.
    static func reason(of error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }
}

/// Collects one response and completes the promise with it.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<HTTPResponse>
    private var response: HTTPResponse?
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<HTTPResponse>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response = HTTPResponse(status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) })
        case .body(var part):
            if body.readableBytes + part.readableBytes > HTTPTransport.maximumBodySize {
                promise.fail(ClientError.protocolViolation("the response is larger than 256 MiB"))
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard var response else { return }
            response.body = Array(buffer: body)
            promise.succeed(response)
            self.response = nil
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ClientError.connection("the server closed the connection before its response was complete"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}

/// The version the client reports in its User-Agent.
public enum ClientVersion {
    public static let current = "0.1.0"
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
