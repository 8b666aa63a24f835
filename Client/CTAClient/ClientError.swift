/// Why a command could not do what it was asked: bad usage, no connection, or an error the API answered.
///
/// ``description`` is the line to show a person, without the `error: ` prefix: for an API error its code, field and
/// message (`unknownField selector.tagz: unknown key; did you mean tags?`).
public struct ClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The class of a failure. New codes may be added; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case usage, connection, timeout, api, protocolViolation
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The command line, a file or the configuration is wrong.
        public static let usage = Code(.usage)
        /// The server could not be reached (refused, name unknown, TLS failed).
        public static let connection = Code(.connection)
        /// The server did not answer in time.
        public static let timeout = Code(.timeout)
        /// The server answered with an error (``ClientError/status`` and ``ClientError/apiCode`` say which).
        public static let api = Code(.api)
        /// The server answered something that is not what the API promises.
        public static let protocolViolation = Code(.protocolViolation)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// What happened, for a person.
    public var message: String
    /// For API errors: the HTTP status.
    public var status: Int?
    /// For API errors: the contract's error code (`notFound`, `unknownField`, …).
    public var apiCode: String?
    /// For API errors: the field or parameter it is about.
    public var field: String?
    /// For definition errors: each problem as `file:line: key: message`.
    public var problems: [String]

    public init(
        code: Code, message: String, status: Int? = nil, apiCode: String? = nil, field: String? = nil,
        problems: [String] = []
    ) {
        self.code = code
        self.message = message
        self.status = status
        self.apiCode = apiCode
        self.field = field
        self.problems = problems
    }

    public static func usage(_ message: String) -> ClientError { ClientError(code: .usage, message: message) }
    public static func connection(_ message: String) -> ClientError { ClientError(code: .connection, message: message) }
    public static func timeout(_ message: String) -> ClientError { ClientError(code: .timeout, message: message) }
    public static func protocolViolation(_ message: String) -> ClientError {
        ClientError(code: .protocolViolation, message: message)
    }

    public var description: String {
        guard code == .api else { return message }
        var head = apiCode ?? "HTTP \(status ?? 0)"
        if let field, !field.isEmpty { head += " \(field)" }
        return "\(head): \(message)"
    }
}
