public import CTABroker
public import CTAAPI
import CTACore
import CTAMessaging
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
public import Logging
import NIOCore
import NIOSSL
import NIOConcurrencyHelpers
import NIOWebSocket
public import ServiceLifecycle

/// How `cta-gateway` serves agents.
public struct GatewayConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// PEM files of the server certificate (chain) and its key; both or neither.
    public var tls: (certificate: String, key: String)?
    /// PEM CA certificate(s): when set (with ``tls``), an agent must also present a client certificate signed by one
    /// of them, checked in the TLS handshake before its token is.
    public var clientCA: String?
    /// The broker the gateway reaches on the agents' behalf.
    public var broker: AMQPConfiguration
    /// Refused connections allowed per client address within ``refusalWindow``; more are refused at once.
    public var refusalLimit: Int
    public var refusalWindow: Duration
    /// The largest attachment an agent may upload (`PUT /v1/attachments/{id}`); the API's default.
    public var uploadLimit: Int

    public init(
        host: String = "127.0.0.1", port: Int = 8443, tls: (certificate: String, key: String)? = nil, clientCA: String? = nil,
        broker: AMQPConfiguration, refusalLimit: Int = 10, refusalWindow: Duration = .seconds(60),
        uploadLimit: Int = APIConfiguration.defaultUploadLimit
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.clientCA = clientCA
        self.broker = broker
        self.refusalLimit = refusalLimit
        self.refusalWindow = refusalWindow
        self.uploadLimit = uploadLimit
    }
}

/// The gateway as a service: `GET /v1/agent` upgrades an agent with a valid enrollment token to a WebSocket and
/// bridges it to the broker (``AgentBridge``); `PUT /v1/attachments/{id}` stores an agent's upload in the
/// coordinators' database (``AttachmentUpload``, as the API does); `GET /health` answers while it runs.
public struct GatewayServer: Service {
    let configuration: GatewayConfiguration
    let tokens: APIStore
    let logger: Logger
    let onListening: @Sendable (Int) -> Void
    /// Refused connections per client address (the API's login limiter, keyed by address).
    let limiter: NIOLockedValueBox<LoginLimiter>

    /// - Parameter tokens: where enrollment tokens are stored (the coordinators' database).
    public init(
        configuration: GatewayConfiguration, tokens: APIStore, logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.tokens = tokens
        self.logger = logger
        self.onListening = onListening
        let (seconds, attoseconds) = configuration.refusalWindow.components
        self.limiter = NIOLockedValueBox(
            LoginLimiter(limit: configuration.refusalLimit, window: Double(seconds) + Double(attoseconds) / 1e18))
    }

    /// Who may connect: a valid enrollment token, for its machine (a token bound to a machine) or the one the agent
    /// names with `?machine=` (a token for any machine).
    enum Admission {
        case agent(MachineName, EnrollmentTokenRecord)
        case refused(Refusal)
    }

    /// Why an agent or an upload is refused: the close reason of a WebSocket (`code: words`), or the API's error.
    struct Refusal: CustomStringConvertible {
        var code: APIError.Code
        var message: String
        /// Seconds to wait, for `tooManyRequests`.
        var retryAfter: Int?

        init(_ code: APIError.Code, _ message: String, retryAfter: Int? = nil) {
            self.code = code
            self.message = message
            self.retryAfter = retryAfter
        }

        var description: String { "\(code): \(message)" }

        /// Whether it counts toward the address's refusal limit: not when the token store could not be read (the
        /// agent did nothing wrong, and would be shut out once the store is back), nor a refusal by the limit itself.
        var counts: Bool { code != .unavailable && code != .tooManyRequests }

        /// The refusal as an HTTP answer.
        var apiError: APIError {
            switch code {
            case .unauthenticated: return .unauthenticated(message)
            case .badRequest: return APIError(.invalidField, message, field: "machine")
            case .forbidden: return APIError(.forbidden, message, field: "machine")
            case .tooManyRequests:
                var headers = HTTPFields()
                headers[.retryAfter] = retryAfter.map(String.init)
                return APIError(.tooManyRequests, message, headers: headers)
            default: return APIError(code, message)
            }
        }
    }

    /// Admits a request from `address` under the refusal limit: an address over it is refused at once, without a
    /// token lookup; other refusals count toward it.
    func admit(_ request: Request, from address: String, now: Date) async -> Admission {
        if let wait = limiter.withLockedValue({ $0.retryAfter([address], now: now) }) {
            let seconds = Int(wait.rounded(.up))
            return .refused(
                Refusal(.tooManyRequests, "too many refused connections from \(address); retry in \(seconds) s", retryAfter: seconds))
        }
        let admission = await admit(
            token: API.bearerToken(request), machine: request.uri.queryParameters.get("machine"), now: now)
        if case .refused(let refusal) = admission, refusal.counts { limiter.withLockedValue { $0.fail([address], now: now) } }
        return admission
    }

    func admit(token: String?, machine named: String?, now: Date) async -> Admission {
        guard let token else {
            return .refused(Refusal(.unauthenticated, "give the enrollment token: Authorization: Bearer <token>"))
        }
        guard Secrets.kind(of: token) == .enrollment else {
            return .refused(Refusal(.unauthenticated, "not an agent enrollment token"))
        }
        let record: EnrollmentTokenRecord
        do {
            guard let found = try await tokens.enrollmentToken(hash: Secrets.tokenHash(token)) else {
                return .refused(Refusal(.unauthenticated, "unknown enrollment token"))
            }
            record = found
        } catch {
            return .refused(Refusal(.unavailable, "the token store cannot be read now"))
        }
        if record.revokedAt != nil { return .refused(Refusal(.unauthenticated, "the enrollment token was revoked")) }
        if let expiresAt = record.expiresAt, expiresAt <= now {
            return .refused(Refusal(.unauthenticated, "the enrollment token expired"))
        }
        let name = record.machine ?? named
        guard let name, let machine = MachineName(name) else {
            return .refused(Refusal(.badRequest, "name the machine with ?machine= (this token is not bound to one)"))
        }
        if let bound = record.machine, let named, named != bound {
            return .refused(Refusal(.forbidden, "this enrollment token is for machine \(bound)"))
        }
        try? await tokens.touchEnrollmentToken(record, at: now)
        return .agent(machine, record)
    }

    func router() -> Router<GatewayRequestContext> {
        let router = Router(context: GatewayRequestContext.self)
        router.get("/health") { _, _ in "ok\n" }
        let logger = self.logger
        let upload = AttachmentUpload(store: tokens, limit: configuration.uploadLimit)
        router.put("/v1/attachments/:id") { request, context in
            let address = context.remoteAddress ?? "unknown"
            switch await admit(request, from: address, now: Date()) {
            case .refused(let refusal):
                logger.notice("upload refused", metadata: ["cta.reason": "\(refusal)", "cta.address": "\(address)"])
                throw refusal.apiError
            case .agent(_, let record):
                return try await upload.handle(request, id: context.parameters.get("id") ?? "", agent: record)
            }
        }
        let broker = configuration.broker
        router.ws(
            "/v1/agent",
            // Admission is decided once the connection is a WebSocket, so a refusal reaches the agent as a close
            // reason it can log, not as a bare 400.
            shouldUpgrade: { _, _ in .upgrade([:]) },
            onUpgrade: { inbound, outbound, context in
                let address = context.requestContext.remoteAddress ?? "unknown"
                switch await admit(context.request, from: address, now: Date()) {
                case .refused(let refusal):
                    logger.notice("agent refused", metadata: ["cta.reason": "\(refusal)", "cta.address": "\(address)"])
                    // Give the client's side of the upgrade a moment: a close frame right behind the upgrade
                    // response was seen lost on a loaded machine, leaving the client waiting.
                    try? await Task.sleep(for: .milliseconds(200))
                    try await outbound.close(.policyViolation, reason: String(refusal.description.prefix(120)))
                case .agent(let machine, _):
                    logger.info("agent connected", metadata: ["cta.machine": "\(machine)"])
                    let bridge = AgentBridge(machine: machine, broker: broker, outbound: outbound, logger: logger)
                    let reason = await bridge.run(inbound)
                    logger.info("agent disconnected", metadata: ["cta.machine": "\(machine)", "cta.reason": "\(reason ?? "closed")"])
                    if let reason { try? await outbound.close(.policyViolation, reason: String(reason.prefix(120))) }
                }
            })
        return router
    }

    public func run() async throws {
        let router = router()
        var server = HTTPServerBuilder.http1WebSocketUpgrade(
            webSocketRouter: router,
            configuration: HTTP1WebSocketUpgradeChannel.Configuration(ws: WebSocketServerConfiguration(maxFrameSize: GatewayLimits.maximumFrameBytes)))
        if let tls = configuration.tls {
            var tlsConfiguration = try ServerTLS.configuration(certificate: tls.certificate, key: tls.key)
            if let clientCA = configuration.clientCA {
                // The certificate proves the agent belongs to the fleet; its token still names the machine.
                _ = try NIOSSLCertificate.fromPEMFile(clientCA)
                tlsConfiguration.trustRoots = .file(clientCA)
                tlsConfiguration.certificateVerification = .noHostnameVerification
            }
            server = try .tls(server, tlsConfiguration: tlsConfiguration)
        }
        let logger = self.logger
        let onListening = self.onListening
        let scheme = configuration.tls == nil ? "ws" : "wss"
        let configuration = self.configuration
        let app = Application(
            router: router, server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: "cta-gateway"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                logger.info("gateway listening", metadata: ["cta.gateway.url": "\(scheme)://\(configuration.host):\(port)/v1/agent"])
                onListening(port)
            },
            logger: logger)
        try await app.runService()
    }
}
