/// An error from the AMQP client: what went wrong, in words safe to show a user, and where.
///
/// Match on ``code``; new codes may be added without breaking callers.
public struct AMQPError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidURL, invalidArgument, connectionFailed, authenticationFailed, tls
            case connectionClosed, channelClosed, notFound, preconditionFailed, accessRefused
            case timeout, nacked, unroutable, consumerCancelled, closed, protocolError
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The URL could not be parsed or names something unsupported.
        public static let invalidURL = Code(.invalidURL)
        /// An argument the caller passed is not acceptable (empty queue name, bad value…).
        public static let invalidArgument = Code(.invalidArgument)
        /// The TCP connection could not be opened (refused, unreachable, name not resolved, timed out).
        public static let connectionFailed = Code(.connectionFailed)
        /// The broker refused the credentials or the virtual host.
        public static let authenticationFailed = Code(.authenticationFailed)
        /// The TLS handshake or TLS set-up failed (CA file, certificate, verification).
        public static let tls = Code(.tls)
        /// The broker or the network closed the connection.
        public static let connectionClosed = Code(.connectionClosed)
        /// The broker closed a channel because of an operation it refused (see ``AMQPError/replyCode``).
        public static let channelClosed = Code(.channelClosed)
        /// The broker says the queue or exchange does not exist (reply code 404).
        public static let notFound = Code(.notFound)
        /// The broker refused a declaration that conflicts with the existing one (reply code 406).
        public static let preconditionFailed = Code(.preconditionFailed)
        /// The broker refused access to a resource (reply code 403, or 405 for an exclusive queue).
        public static let accessRefused = Code(.accessRefused)
        /// The operation did not complete in the allowed time (for a publish: no confirm in time).
        public static let timeout = Code(.timeout)
        /// The broker refused to take responsibility for a published message (basic.nack).
        public static let nacked = Code(.nacked)
        /// A mandatory message could not be routed to any queue (basic.return).
        public static let unroutable = Code(.unroutable)
        /// The broker cancelled a consumer (its queue was deleted, for example).
        public static let consumerCancelled = Code(.consumerCancelled)
        /// The connection was closed by the application.
        public static let closed = Code(.closed)
        /// The broker sent something the client did not expect.
        public static let protocolError = Code(.protocolError)

        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, safe to show a user.
    public var message: String
    /// The operation that failed, for example `queue.declare 'cta.results'`.
    public var context: String?
    /// The AMQP reply code the broker sent, when it sent one (404, 406, 320…).
    public var replyCode: UInt16?
    /// Lower-level detail (librabbitmq status, errno), for logs.
    public var detail: String?

    public init(_ code: Code, _ message: String, context: String? = nil, replyCode: UInt16? = nil, detail: String? = nil) {
        self.code = code
        self.message = message
        self.context = context
        self.replyCode = replyCode
        self.detail = detail
    }

    public var description: String {
        if let context { return "\(context): \(message)" }
        return message
    }

    public var debugDescription: String {
        var text = "AMQPError(\(code)): \(description)"
        if let replyCode { text += " [reply \(replyCode)]" }
        if let detail { text += " [\(detail)]" }
        return text
    }

    func with(context: String) -> AMQPError {
        var copy = self
        copy.context = context
        return copy
    }
}
