internal import CMongoC

/// An error from the MongoDB client: the server refused or failed an operation, it could not be reached,
/// or a document did not match the Swift type it was read into.
///
/// Compare ``code`` with the static codes (`error.code == .duplicateKey`); new codes may be added without
/// breaking callers. ``description`` is safe to show a user (it never contains field values from the server);
/// ``debugDescription`` carries libmongoc's and the server's messages.
public struct MongoError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case connection, timeout, duplicateKey, server, decoding, invalidArgument, clientClosed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The server could not be reached, or the connection failed.
        public static let connection = Code(.connection)
        /// The operation took longer than its time limit (`maxTimeMS`, socket timeout).
        public static let timeout = Code(.timeout)
        /// A write would have created a second document with the same key of a unique index.
        public static let duplicateKey = Code(.duplicateKey)
        /// The server answered with an error not covered by another code (see `serverCode`).
        public static let server = Code(.server)
        /// A document did not decode as the requested Swift type (see `field` and `collection`).
        public static let decoding = Code(.decoding)
        /// The request itself was invalid: a bad URI, option, filter or value.
        public static let invalidArgument = Code(.invalidArgument)
        /// The client was shut down before the operation could run.
        public static let clientClosed = Code(.clientClosed)

        public var description: String { base.rawValue }
    }

    /// What kind of failure this is.
    public let code: Code
    /// The server's numeric error code (for example 11000), when the server answered with one.
    public let serverCode: Int?
    /// The collection the operation was on, when known.
    public internal(set) var collection: String?
    /// For ``Code/decoding``: the dotted path of the field that did not decode, for example `steps.2.status`.
    public let field: String?
    /// libmongoc's or the server's message, or the decoder's: for logs, not for users.
    let message: String
    /// libmongoc's error domain, when the error came from libmongoc.
    let domain: UInt32?

    init(
        code: Code, message: String, serverCode: Int? = nil, collection: String? = nil, field: String? = nil,
        domain: UInt32? = nil
    ) {
        self.code = code
        self.message = message
        self.serverCode = serverCode
        self.collection = collection
        self.field = field
        self.domain = domain
    }

    public var description: String {
        switch code {
        case .connection: "cannot reach the database server"
        case .timeout: "the database operation timed out"
        case .duplicateKey: "a document with the same unique key already exists" + inCollection
        case .decoding: "a stored document could not be read" + inCollection + (field.map { " (field \($0))" } ?? "")
        case .invalidArgument: "invalid database request" + inCollection
        case .clientClosed: "the database client is shut down"
        default: "the database server reported an error" + inCollection + (serverCode.map { " (code \($0))" } ?? "")
        }
    }

    public var debugDescription: String {
        var parts = ["MongoError(\(code)"]
        if let serverCode { parts.append("serverCode: \(serverCode)") }
        if let domain { parts.append("domain: \(domain)") }
        if let collection { parts.append("collection: \(collection)") }
        if let field { parts.append("field: \(field)") }
        parts.append("message: \(message)")
        return parts.joined(separator: ", ") + ")"
    }

    private var inCollection: String { collection.map { " in collection \($0)" } ?? "" }
}

extension MongoError {
    /// Server codes for a duplicate key: DuplicateKey, the legacy update variant, and the index-build one.
    private static let duplicateKeyCodes: Set<UInt32> = [11000, 11001, 12582]
    /// MaxTimeMSExpired, NetworkTimeout, ExceededTimeLimit.
    private static let timeoutCodes: Set<UInt32> = [50, 89, 262]
    /// HostUnreachable, HostNotFound, ShutdownInProgress, NotWritablePrimary, InterruptedAtShutdown,
    /// PrimarySteppedDown, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary.
    private static let connectionCodes: Set<UInt32> = [6, 7, 91, 10107, 11600, 189, 13435, 13436]
    /// BadValue, FailedToParse, TypeMismatch, InvalidNamespace.
    private static let invalidArgumentCodes: Set<UInt32> = [2, 9, 14, 73]

    /// The one mapping from libmongoc's `bson_error_t` (and the server reply that came with it) to a `MongoError`.
    ///
    /// The client pool uses error API version 2, so every error the server sent has domain `MONGOC_ERROR_SERVER`
    /// (or `MONGOC_ERROR_WRITE_CONCERN`) and the server's code; the other domains are libmongoc's own.
    init(_ error: bson_error_t, reply: BSONDocument? = nil, collection: String? = nil) {
        let domain = error.domain
        var code = error.code
        let message = MongoError.message(of: error)
        // A write error's code is in the reply too; prefer it when libmongoc reported something generic.
        if case .array(let writeErrors)? = reply?["writeErrors"], let first = writeErrors.first?.documentValue,
            let replyCode = first["code"]?.intValue, let replyCode = UInt32(exactly: replyCode),
            MongoError.duplicateKeyCodes.contains(replyCode)
        {
            code = replyCode
        }
        var detail = message
        if let reply, !reply.isEmpty, let codeName = reply["codeName"]?.stringValue { detail += " [\(codeName)]" }

        let mapped: Code
        var serverCode: Int?
        switch domain {
        case MONGOC_ERROR_SERVER.rawValue, MONGOC_ERROR_WRITE_CONCERN.rawValue, MONGOC_ERROR_QUERY.rawValue,
            MONGOC_ERROR_COLLECTION.rawValue, MONGOC_ERROR_INSERT.rawValue:
            serverCode = Int(code)
            if MongoError.duplicateKeyCodes.contains(code) {
                mapped = .duplicateKey
            } else if MongoError.timeoutCodes.contains(code) {
                mapped = .timeout
            } else if MongoError.connectionCodes.contains(code) {
                mapped = .connection
            } else if MongoError.invalidArgumentCodes.contains(code) && domain == MONGOC_ERROR_SERVER.rawValue {
                mapped = .invalidArgument
            } else {
                mapped = .server
            }
        case MONGOC_ERROR_STREAM.rawValue:
            let lower = message.lowercased()
            mapped = lower.contains("timeout") || lower.contains("timed out") ? .timeout : .connection
        case MONGOC_ERROR_SERVER_SELECTION.rawValue, MONGOC_ERROR_SASL.rawValue, MONGOC_ERROR_SCRAM.rawValue:
            mapped = .connection
        case MONGOC_ERROR_CLIENT.rawValue:
            mapped =
                code == MONGOC_ERROR_CLIENT_AUTHENTICATE.rawValue || code == MONGOC_ERROR_CLIENT_NOT_READY.rawValue
                ? .connection : .invalidArgument
        case MONGOC_ERROR_PROTOCOL.rawValue, MONGOC_ERROR_TRANSACTION.rawValue:
            mapped = .server
        case MONGOC_ERROR_COMMAND.rawValue:
            // Client-side validation, unless the code is one the server sends (legacy error API).
            if MongoError.duplicateKeyCodes.contains(code) {
                mapped = .duplicateKey
                serverCode = Int(code)
            } else {
                mapped = code == MONGOC_ERROR_COMMAND_INVALID_ARG.rawValue ? .invalidArgument : .server
            }
        default:
            mapped = .invalidArgument
        }
        self.init(
            code: mapped, message: detail, serverCode: serverCode, collection: collection, domain: domain)
    }

    /// `bson_error_t.message`, a fixed-size `char` array imported as a tuple.
    /// One document's failure in a multi-document write, from the reply's `writeErrors`.
    init(serverWriteError code: Int, message: String, collection: String?) {
        let mapped: Code
        if let code = UInt32(exactly: code), MongoError.duplicateKeyCodes.contains(code) {
            mapped = .duplicateKey
        } else {
            mapped = .server
        }
        self.init(code: mapped, message: message, serverCode: code, collection: collection)
    }

    static func message(of error: bson_error_t) -> String {
        withUnsafeBytes(of: error.message) { raw in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// A decoding failure, naming the field (as a dotted path) and the collection.
    static func decoding(_ error: any Error, collection: String?) -> MongoError {
        if let error = error as? MongoError {
            var error = error
            error.collection = error.collection ?? collection
            return error
        }
        guard let error = error as? DecodingError else {
            return MongoError(code: .decoding, message: "\(error)", collection: collection)
        }
        let path: [any CodingKey]
        let detail: String
        switch error {
        case .keyNotFound(let key, let context):
            path = context.codingPath + [key]
            detail = "missing field: \(context.debugDescription)"
        case .typeMismatch(_, let context):
            path = context.codingPath
            detail = "type mismatch: \(context.debugDescription)"
        case .valueNotFound(_, let context):
            path = context.codingPath
            detail = "null or missing value: \(context.debugDescription)"
        case .dataCorrupted(let context):
            path = context.codingPath
            detail = "invalid value: \(context.debugDescription)"
        @unknown default:
            path = []
            detail = "\(error)"
        }
        let field = path.dottedPath
        return MongoError(
            code: .decoding, message: "field \(field.isEmpty ? "(document)" : field): \(detail)",
            collection: collection, field: field.isEmpty ? nil : field)
    }

    /// An encoding failure: the value cannot be stored (for example a `UInt64` above `Int64.max`).
    static func encoding(_ error: any Error, collection: String?) -> MongoError {
        if let error = error as? MongoError { return error }
        var field: String?
        if case EncodingError.invalidValue(_, let context)? = error as? EncodingError {
            field = context.codingPath.dottedPath
        }
        return MongoError(
            code: .invalidArgument, message: "cannot encode: \(error)", collection: collection, field: field)
    }

    static let clientClosed = MongoError(code: .clientClosed, message: "the client is shut down")
}

extension MongoError {
    /// Maps an error as libmongoc would report it: for tests of the mapping without a server.
    init(domain: UInt32, code: UInt32, message: String, reply: BSONDocument? = nil, collection: String? = nil) {
        var error = bson_error_t()
        error.domain = domain
        error.code = code
        withUnsafeMutableBytes(of: &error.message) { buffer in
            let bytes = Array(message.utf8.prefix(buffer.count - 1)) + [0]
            buffer.copyBytes(from: bytes)
        }
        self.init(error, reply: reply, collection: collection)
    }
}
