public import CTACoordinator
import CTACore
import Foundation
import Hummingbird
public import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The HTTP API of one coordinator: its store, the coordinator it asks to publish (cancels, drains), and the
/// state kept in memory (login failures, request counters).
public final class API: Sendable {
    public let store: APIStore
    /// The running coordinator: cancels and drains go through its broker connection.
    public let coordinator: Coordinator
    public let configuration: APIConfiguration
    public let logger: Logger
    let limiter: Mutex<LoginLimiter>
    let metrics = HTTPMetrics()
    /// Checked against the password of a login for a user without one (unknown, disabled, no password), so that
    /// answer takes as long as a wrong password.
    let decoyHash: PasswordHash

    public init(store: APIStore, coordinator: Coordinator, configuration: APIConfiguration, logger: Logger) {
        self.store = store
        self.coordinator = coordinator
        self.configuration = configuration
        self.logger = logger
        self.decoyHash = PasswordHash(decoyIterations: configuration.passwordIterations)
        self.limiter = Mutex(
            LoginLimiter(limit: configuration.loginAttempts, window: configuration.loginWindow.seconds))
    }

    /// Reads a request body, refusing one larger than `limit` with 413.
    func body(_ request: Request, limit: Int) async throws(APIError) -> [UInt8] {
        try await request.collectBody(limit: limit)
    }

    /// Reads and checks a JSON body.
    func json(_ request: Request, _ schema: BodySchema) async throws(APIError) -> JSONValue {
        try schema.parse(try await body(request, limit: configuration.bodyLimit))
    }

    /// Runs CPU-heavy work (password hashing) off the cooperative pool.
    func offload<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            NIOThreadPool.singleton.submit { _ in continuation.resume(returning: work()) }
        }
    }
}

extension Duration {
    var seconds: TimeInterval {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// Query parameters of a request.
extension Request {
    /// Reads the body, refusing one larger than `limit` with 413.
    func collectBody(limit: Int) async throws(APIError) -> [UInt8] {
        if let length = headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        }
        do {
            let buffer = try await body.collect(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        } catch {
            throw APIError(.badRequest, "the body could not be read")
        }
    }

    func query(_ name: String) -> String? {
        uri.queryParameters.get(name)
    }

    func page() throws(APIError) -> PageRequest {
        try PageRequest(limit: query("limit"), cursor: query("cursor"))
    }
}

extension RequestContext {
    /// A path parameter (always present: the route names it).
    func parameter(_ name: String) -> String {
        parameters.get(name) ?? ""
    }
}
