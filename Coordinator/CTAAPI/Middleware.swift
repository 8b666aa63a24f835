import CTAMongo
import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Synchronization

/// Gives every failure the API's error shape, and counts requests per route and status.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let api: API

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = Self.apiError(error, request: request, logger: api.logger)
                .responseBody(for: request)
        }
        let route = context.endpointPath.map { $0 == "NotFound" ? "unmatched" : $0 } ?? "unmatched"
        api.metrics.count(method: request.method.rawValue, route: route, status: Int(response.status.code))
        return response
    }

    static func apiError(_ error: any Error, request: Request, logger: Logger) -> APIError {
        switch error {
        case let error as APIError:
            return error
        case let error as HTTPError:
            switch error.status {
            case .notFound: return APIError(.notFound, "no such endpoint: \(request.method.rawValue) \(request.uri.path)")
            case .contentTooLarge: return APIError(.payloadTooLarge, "the body is too large")
            case .unauthorized: return .unauthenticated(error.body ?? "unauthenticated")
            case .forbidden: return .forbidden(error.body ?? "forbidden")
            case .methodNotAllowed: return APIError(.notFound, "no such endpoint: \(request.method.rawValue) \(request.uri.path)")
            default:
                if error.status.code < 500 { return .badRequest(error.body ?? error.status.reasonPhrase) }
                return APIError(.internal, "internal error")
            }
        case let error as MongoError where error.code == .connection || error.code == .timeout || error.code == .clientClosed:
            logger.warning("store unavailable", metadata: ["cta.error": "\(error)"])
            return APIError(.unavailable, "the database is not available; try again")
        default:
            logger.error("request failed", metadata: ["cta.error": "\(error)", "cta.path": "\(request.uri.path)"])
            return APIError(.internal, "internal error")
        }
    }
}

extension APIError {
    func responseBody(for request: Request) -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: .init(bytes: JSON.encode(body))))
    }
}

/// Request counters for `cta_http_requests_total{route,status}`; routes are the router's patterns, so the label set
/// is bounded.
final class HTTPMetrics: Sendable {
    struct Key: Hashable { var route: String; var status: Int }
    private let counts = Mutex<[Key: Int]>([:])

    func count(method: String, route: String, status: Int) {
        counts.withLock { $0[Key(route: "\(method) \(route)", status: status), default: 0] += 1 }
    }

    var snapshot: [Key: Int] { counts.withLock { $0 } }
}
