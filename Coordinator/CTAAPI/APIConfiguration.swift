import Foundation

/// How the HTTP API is served. Mapped from `cta-coordinator serve` flags and the environment (the flag wins):
///
/// | flag | environment | default |
/// |---|---|---|
/// | `--api-host` | `CTA_API_HOST` | `127.0.0.1` |
/// | `--api-port` | `CTA_API_PORT` | `8420` (`0`: any free port, printed at start) |
/// | `--tls-cert`, `--tls-key` | `CTA_TLS_CERT`, `CTA_TLS_KEY` | none: plain HTTP |
/// | `--admin-token-file` | `CTA_ADMIN_TOKEN_FILE` | none |
/// | `--upload-limit` | `CTA_UPLOAD_LIMIT` | 64 MiB |
public struct APIConfiguration: Sendable {
    /// JSON and YAML bodies larger than this are refused with 413.
    public static let defaultBodyLimit = 1 << 20
    public static let defaultUploadLimit = 64 << 20

    public var host: String
    public var port: Int
    /// PEM files of the server certificate (chain) and its key; both or neither.
    public var tls: (certificate: String, key: String)?
    /// Where the first admin token is also written (mode 0600), when this coordinator creates it.
    public var adminTokenFile: String?
    public var bodyLimit: Int
    /// Attachment uploads larger than this are refused with 413.
    public var uploadLimit: Int
    /// Failed logins allowed per user and per client address within ``loginWindow``; more get 429.
    public var loginAttempts: Int
    public var loginWindow: Duration
    /// How long a token made by `POST /v1/login` lasts.
    public var loginTokenLifetime: Duration
    /// PBKDF2 rounds for new password hashes (at least 100,000).
    public var passwordIterations: Int

    public init(
        host: String = "127.0.0.1", port: Int = 8420, tls: (certificate: String, key: String)? = nil,
        adminTokenFile: String? = nil, bodyLimit: Int = APIConfiguration.defaultBodyLimit,
        uploadLimit: Int = APIConfiguration.defaultUploadLimit, loginAttempts: Int = 5, loginWindow: Duration = .seconds(60),
        loginTokenLifetime: Duration = .seconds(12 * 3600), passwordIterations: Int = PasswordHash.defaultIterations
    ) {
        self.host = host
        self.port = port
        self.tls = tls
        self.adminTokenFile = adminTokenFile
        self.bodyLimit = bodyLimit
        self.uploadLimit = uploadLimit
        self.loginAttempts = loginAttempts
        self.loginWindow = loginWindow
        self.loginTokenLifetime = loginTokenLifetime
        self.passwordIterations = passwordIterations
    }
}
