import ArgumentParser
import Foundation
#if canImport(CTAAPI)
import CTAAPI
#endif

/// The HTTP API's flags of `serve`; each falls back to its environment variable (see ``APIConfiguration``).
struct APIOptions: ParsableArguments {
    @Option(name: .customLong("api-host"), help: "Address the HTTP API listens on (default: $CTA_API_HOST, else 127.0.0.1).")
    var host: String?

    @Option(name: .customLong("api-port"), help: "Port of the HTTP API (default: $CTA_API_PORT, else 8420; 0: any free port).")
    var port: Int?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve HTTPS (default: $CTA_TLS_CERT).")
    var tlsCertificate: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert (default: $CTA_TLS_KEY).")
    var tlsKey: String?

    @Option(
        name: .customLong("admin-token-file"),
        help: "Where the first admin token is also written (mode 0600) when this coordinator creates it (default: $CTA_ADMIN_TOKEN_FILE).")
    var adminTokenFile: String?

    @Option(name: .customLong("upload-limit"), help: "Largest attachment upload in bytes (default: $CTA_UPLOAD_LIMIT, else 64 MiB).")
    var uploadLimit: Int?

    #if canImport(CTAAPI)
    func configuration() throws -> APIConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var configuration = APIConfiguration()
        configuration.host = host ?? environment["CTA_API_HOST"] ?? configuration.host
        if let text = port.map(String.init) ?? environment["CTA_API_PORT"] {
            guard let value = Int(text), (0...65_535).contains(value) else { throw ValidationError("--api-port must be 0 to 65535") }
            configuration.port = value
        }
        let certificate = tlsCertificate ?? environment["CTA_TLS_CERT"]
        let key = tlsKey ?? environment["CTA_TLS_KEY"]
        switch (certificate, key) {
        case (let certificate?, let key?): configuration.tls = (certificate, key)
        case (nil, nil): break
        default: throw ValidationError("--tls-cert and --tls-key go together")
        }
        configuration.adminTokenFile = adminTokenFile ?? environment["CTA_ADMIN_TOKEN_FILE"]
        if let text = uploadLimit.map(String.init) ?? environment["CTA_UPLOAD_LIMIT"] {
            guard let value = Int(text), value > 0 else { throw ValidationError("--upload-limit must be a positive number of bytes") }
            configuration.uploadLimit = value
        }
        return configuration
    }
    #endif
}
