import Foundation

/// How to reach a broker and how the connection behaves.
public struct AMQPConfiguration: Sendable, Hashable {
    /// TLS settings for `amqps://`.
    public struct TLS: Sendable, Hashable {
        /// PEM file of the certificate authorities to trust. `nil`: the system's default store.
        public var caFile: String?
        /// Client certificate and key (PEM), for brokers that require client certificates.
        public var certificateFile: String?
        public var keyFile: String?
        /// Verify the broker's certificate chain. Default: `true`.
        public var verifyPeer: Bool
        /// Verify that the certificate names the host. Default: `true`.
        public var verifyHostname: Bool

        public init(
            caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
            verifyPeer: Bool = true, verifyHostname: Bool = true
        ) {
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.verifyPeer = verifyPeer
            self.verifyHostname = verifyHostname
        }
    }

    /// How the connection comes back after the broker or the network went away.
    public struct Reconnect: Sendable, Hashable {
        /// Reconnect at all. Default: `true`.
        public var enabled: Bool
        /// First delay; doubled after each failed attempt, with full jitter. Default: 100 ms.
        public var initialDelay: Duration
        /// Upper bound of the delay. Default: 5 s.
        public var maximumDelay: Duration

        public init(enabled: Bool = true, initialDelay: Duration = .milliseconds(100), maximumDelay: Duration = .seconds(5)) {
            self.enabled = enabled
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
        }

        /// Never reconnect: the first connection loss fails everything pending.
        public static let disabled = Reconnect(enabled: false)
    }

    public var host: String
    /// Default 5672, or 5671 with TLS.
    public var port: Int
    public var username: String
    public var password: String
    /// The virtual host. Default `/`.
    public var virtualHost: String
    /// TLS, when set (`amqps://`).
    public var tls: TLS?
    /// The heartbeat interval asked of the broker; `.zero` turns heartbeats off. Default: 30 s.
    public var heartbeat: Duration
    /// How long opening the socket and the AMQP handshake may take. Default: 10 s.
    public var connectTimeout: Duration
    /// How long a synchronous broker call (declare, bind, consume) may take. Default: 30 s.
    public var rpcTimeout: Duration
    /// How long a publish may wait, for a connection and then for the broker's confirm, before it fails with
    /// ``AMQPError/Code/timeout``. During an outage publishes wait this long for the reconnect. Default: 60 s.
    public var publishTimeout: Duration
    /// Most published messages awaiting a confirm at once; more wait their turn. Default: 1,000.
    public var maxUnconfirmed: Int
    public var reconnect: Reconnect
    /// The name the broker shows for this connection (management UI, `rabbitmqctl list_connections`).
    public var connectionName: String

    public init(
        host: String = "127.0.0.1", port: Int? = nil, username: String = "guest", password: String = "guest",
        virtualHost: String = "/", tls: TLS? = nil, heartbeat: Duration = .seconds(30),
        connectTimeout: Duration = .seconds(10), rpcTimeout: Duration = .seconds(30),
        publishTimeout: Duration = .seconds(60), maxUnconfirmed: Int = 1000, reconnect: Reconnect = Reconnect(),
        connectionName: String = "cta"
    ) {
        self.host = host
        self.port = port ?? (tls == nil ? 5672 : 5671)
        self.username = username
        self.password = password
        self.virtualHost = virtualHost
        self.tls = tls
        self.heartbeat = heartbeat
        self.connectTimeout = connectTimeout
        self.rpcTimeout = rpcTimeout
        self.publishTimeout = publishTimeout
        self.maxUnconfirmed = maxUnconfirmed
        self.reconnect = reconnect
        self.connectionName = connectionName
    }

    /// Reads `amqp://user:password@host:port/vhost?options` or `amqps://…`.
    ///
    /// The path is the virtual host, percent-decoded (`/%2F` and an empty path both mean `/`). Options:
    /// `heartbeat` (seconds), `connection_timeout` (milliseconds), and for TLS `cacertfile`, `certfile`,
    /// `keyfile`, `verify` (`verify_peer` or `verify_none`). An unknown option is an error, not ignored.
    public init(url: String) throws(AMQPError) {
        func fail(_ why: String) -> AMQPError {
            AMQPError(.invalidURL, why, context: "AMQP URL '\(AMQPConfiguration.redacted(url))'")
        }
        guard let schemeEnd = url.range(of: "://") else { throw fail("missing scheme (expected amqp:// or amqps://)") }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "amqp" || scheme == "amqps" else {
            throw fail("unsupported scheme '\(scheme)' (expected amqp or amqps)")
        }
        var rest = Substring(url[schemeEnd.upperBound...])
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var username = "guest"
        var password = "guest"
        if let at = rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            let parts = userinfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = AMQPConfiguration.percentDecode(parts[0]) else { throw fail("bad percent-encoding in user") }
            username = user
            if parts.count > 1 {
                guard let pass = AMQPConfiguration.percentDecode(parts[1]) else {
                    throw fail("bad percent-encoding in password")
                }
                password = pass
            }
        }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw fail("unterminated IPv6 address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw fail("junk after host") }
        } else if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        if host.isEmpty { host = "localhost" }
        var port: Int?
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw fail("port '\(portText)' is not a number from 1 to 65535")
            }
            port = value
        }
        let vhost: String
        if path.isEmpty {
            vhost = "/"
        } else {
            guard let decoded = AMQPConfiguration.percentDecode(path) else { throw fail("bad percent-encoding in virtual host") }
            vhost = decoded
        }

        var tls: TLS? = scheme == "amqps" ? TLS() : nil
        var heartbeat = Duration.seconds(30)
        var connectTimeout = Duration.seconds(10)
        for item in query.split(separator: "&") where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(kv[0])
            guard kv.count == 2, let value = AMQPConfiguration.percentDecode(kv[1]) else {
                throw fail("option '\(key)' needs a value")
            }
            switch key {
            case "heartbeat":
                guard let seconds = Int(value), seconds >= 0 else { throw fail("option 'heartbeat' must be whole seconds >= 0") }
                heartbeat = .seconds(seconds)
            case "connection_timeout":
                guard let ms = Int(value), ms > 0 else { throw fail("option 'connection_timeout' must be milliseconds > 0") }
                connectTimeout = .milliseconds(ms)
            case "cacertfile", "certfile", "keyfile", "verify":
                guard tls != nil else { throw fail("option '\(key)' needs amqps://") }
                switch key {
                case "cacertfile": tls?.caFile = value
                case "certfile": tls?.certificateFile = value
                case "keyfile": tls?.keyFile = value
                default:
                    switch value {
                    case "verify_peer": tls?.verifyPeer = true
                    case "verify_none": tls?.verifyPeer = false; tls?.verifyHostname = false
                    default: throw fail("option 'verify' must be verify_peer or verify_none")
                    }
                }
            default:
                throw fail("unknown option '\(key)'")
            }
        }
        self.init(
            host: String(host), port: port, username: username, password: password, virtualHost: vhost, tls: tls,
            heartbeat: heartbeat, connectTimeout: connectTimeout
        )
    }

    /// The URL with its password replaced, fit for logs and error messages.
    public static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"),
            let at = url[schemeEnd.upperBound...].firstIndex(of: "@")
        else { return url }
        let userinfo = url[schemeEnd.upperBound..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
