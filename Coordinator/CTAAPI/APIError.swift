public import CTACore
import Foundation
public import HTTPTypes
public import Hummingbird
import NIOCore

/// An error answered to an API client: `{"error": {"code", "message", "field"?}}` with the code's HTTP status.
///
/// Every 4xx and 5xx response of the API has this shape; handlers throw it, and ``ErrorMiddleware`` turns anything
/// else (a routing miss, a body over the limit, an unexpected failure) into one.
public struct APIError: Error, Sendable, CustomStringConvertible, HTTPResponseError {
    /// The class of an error; new codes may be added, so compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case badRequest, invalidField, unknownField, unauthenticated, forbidden, notFound, conflict
            case payloadTooLarge, rangeNotSatisfiable, tooManyRequests, unavailable, internalError = "internal"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        public static let badRequest = Code(.badRequest)
        public static let invalidField = Code(.invalidField)
        public static let unknownField = Code(.unknownField)
        public static let unauthenticated = Code(.unauthenticated)
        public static let forbidden = Code(.forbidden)
        public static let notFound = Code(.notFound)
        public static let conflict = Code(.conflict)
        public static let payloadTooLarge = Code(.payloadTooLarge)
        public static let rangeNotSatisfiable = Code(.rangeNotSatisfiable)
        public static let tooManyRequests = Code(.tooManyRequests)
        public static let unavailable = Code(.unavailable)
        public static let `internal` = Code(.internalError)

        public var description: String { base.rawValue }

        /// The HTTP status answered with this code.
        public var status: HTTPResponse.Status {
            switch base {
            case .badRequest, .invalidField, .unknownField: .badRequest
            case .unauthenticated: .unauthorized
            case .forbidden: .forbidden
            case .notFound: .notFound
            case .conflict: .conflict
            case .payloadTooLarge: .contentTooLarge
            case .rangeNotSatisfiable: .rangeNotSatisfiable
            case .tooManyRequests: .tooManyRequests
            case .unavailable: .serviceUnavailable
            case .internalError: .internalServerError
            }
        }
    }

    public var code: Code
    /// Safe to show: says what is wrong without internals.
    public var message: String
    /// The body field (JSON path) or query parameter the error is about.
    public var field: String?
    /// Extra headers (`WWW-Authenticate`, `Retry-After`, `Content-Range`).
    public var headers: HTTPFields
    /// Extra top-level members of the body (`problems` of a definition upload).
    public var extra: [String: JSONValue]

    public init(_ code: Code, _ message: String, field: String? = nil, headers: HTTPFields = [:], extra: [String: JSONValue] = [:]) {
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra
    }

    public var description: String { "\(code): \(message)" + (field.map { " (\($0))" } ?? "") }
    public var status: HTTPResponse.Status { code.status }

    public static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }
    public static func forbidden(_ message: String) -> APIError { APIError(.forbidden, message) }
    public static func conflict(_ message: String) -> APIError { APIError(.conflict, message) }
    public static func badRequest(_ message: String) -> APIError { APIError(.badRequest, message) }
    public static func invalid(_ field: String, _ message: String) -> APIError {
        APIError(.invalidField, message, field: field)
    }
    public static func unauthenticated(_ message: String) -> APIError {
        var headers = HTTPFields()
        headers[.wwwAuthenticate] = "Bearer"
        return APIError(.unauthenticated, message, headers: headers)
    }

    /// The JSON body of the error.
    public var body: JSONValue {
        var error: [String: JSONValue] = ["code": .string(code.description), "message": .string(message)]
        if let field { error["field"] = .string(field) }
        var top = extra
        top["error"] = .object(error)
        return .object(top)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSON.encode(body))))
    }
}
