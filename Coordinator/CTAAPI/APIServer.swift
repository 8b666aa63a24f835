import CTACoordinator
import CTACore
import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
public import NIOSSL
public import ServiceLifecycle

/// Adds routes to the API's router; how other modules (the live feed) mount their endpoints on the same server.
public typealias RouteExtension = @Sendable (Router<APIRequestContext>, API) -> Void

/// The HTTP API as a service: prepares its collections, creates the first admin (once across coordinators), then
/// serves until graceful shutdown.
public struct APIServer: Service {
    public let api: API
    let extensions: [RouteExtension]
    /// Called with the bound port once the server listens (tests and `--api-port 0`).
    let onListening: @Sendable (Int) -> Void

    /// - Parameter extensions: more routes for the same router (e.g. the live feed's `GET /v1/live`, which needs the
    ///   WebSocket upgrade this server is set up with).
    public init(
        api: API, extensions: [RouteExtension] = [], onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.api = api
        self.extensions = extensions
        self.onListening = onListening
    }

    /// Every route of the API.
    public func router() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.add(middleware: ErrorMiddleware(api: api))
        api.addHealthRoutes(to: router)
        api.addIdentityRoutes(to: router)
        api.addDefinitionRoutes(to: router)
        api.addExecutionRoutes(to: router)
        api.addMachineRoutes(to: router)
        api.addWebhookRoutes(to: router)
        api.addAttachmentRoutes(to: router)
        // Live feed and any other module's routes: mounted here, behind the same error middleware.
        for add in extensions { add(router, api) }
        return router
    }

    public func run() async throws {
        try await prepare()
        let router = router()
        let configuration = api.configuration
        var server = HTTPServerBuilder.http1WebSocketUpgrade(webSocketRouter: router)
        if let tls = configuration.tls {
            server = try .tls(server, tlsConfiguration: try ServerTLS.configuration(certificate: tls.certificate, key: tls.key))
        }
        let logger = api.logger
        let onListening = self.onListening
        let scheme = configuration.tls == nil ? "http" : "https"
        let app = Application(
            router: router, server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: "cta-coordinator"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("api listening", metadata: ["cta.api.url": "\(scheme)://\(configuration.host):\(port)"])
                onListening(port)
            },
            logger: logger)
        try await app.run()
    }

    /// Creates the API's indexes (retrying while the database is away) and the first admin.
    func prepare() async throws {
        var delay = Duration.milliseconds(200)
        while true {
            do {
                try await api.store.store.prepare()
                try await api.store.prepare()
                break
            } catch {
                try Task.checkCancellation()
                api.logger.warning("store not ready for the API, retrying", metadata: ["cta.error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
        if let token = try await api.store.bootstrapAdmin(holder: api.coordinator.instanceName, at: Date()) {
            FirstAdminToken.announce(token, file: api.configuration.adminTokenFile, logger: api.logger)
        }
    }
}

/// How the first admin token is handed over: once, on standard output, and in a file only its owner can read.
enum FirstAdminToken {
    static func announce(_ token: String, file: String?, logger: Logger) {
        FileHandle.standardOutput.write(Data("first admin token: \(token)\n".utf8))
        guard let file else { return }
        let descriptor = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else {
            logger.error("cannot write the admin token file", metadata: ["cta.path": "\(file)"])
            return
        }
        defer { close(descriptor) }
        fchmod(descriptor, 0o600)
        let line = Array((token + "\n").utf8)
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}

/// The server side of TLS from PEM files, for the API and the gateway.
public enum ServerTLS {
    /// A server configuration with the certificate (chain) in `certificate` and its private key in `key`.
    public static func configuration(certificate: String, key: String) throws -> TLSConfiguration {
        let chain = try NIOSSLCertificate.fromPEMFile(certificate).map { NIOSSLCertificateSource.certificate($0) }
        return .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
    }
}
