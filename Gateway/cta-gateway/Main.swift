import ArgumentParser
import CTAAPI
import CTABroker
import CTACoordinator
import CTAGateway
import CTAMongo
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

@main
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cta-gateway",
        abstract: "Bridges agents that reach only HTTPS to the broker: one WebSocket per agent, authenticated by its enrollment token.")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 8443

    @Option(name: .customLong("tls-cert"), help: "PEM certificate (chain) for wss://; with --tls-key.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(
        name: .customLong("tls-client-ca"),
        help: "PEM CA certificate(s): agents must also present a client certificate signed by one (needs --tls-cert).")
    var tlsClientCA: String?

    @Option(name: .customLong("amqp-url"), help: "The broker URL (default: $CTA_AMQP_URL).")
    var amqpURL: String?

    @Option(help: "MongoDB connection string of the coordinators' database, for enrollment tokens (default: $CTA_MONGO_URI).")
    var uri: String?

    @Option(help: "The coordinators' database name (default: $CTA_DATABASE, else cta).")
    var database: String?

    @Option(name: .customLong("upload-limit"), help: "Largest attachment upload in bytes (default: $CTA_UPLOAD_LIMIT, else 64 MiB).")
    var uploadLimit: Int?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("give --tls-cert and --tls-key together") }
        guard tlsClientCA == nil || tlsCert != nil else {
            throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked in the TLS handshake")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level \(logLevel)") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = amqpURL ?? environment["CTA_AMQP_URL"] else {
            throw ValidationError("no broker URL: pass --amqp-url or set CTA_AMQP_URL")
        }
        guard let uri = uri ?? environment["CTA_MONGO_URI"] else {
            throw ValidationError("no database: pass --uri or set CTA_MONGO_URI")
        }
        var limitBytes = APIConfiguration.defaultUploadLimit
        if let text = uploadLimit.map(String.init) ?? environment["CTA_UPLOAD_LIMIT"] {
            guard let value = Int(text), value > 0 else { throw ValidationError("--upload-limit must be a positive number of bytes") }
            limitBytes = value
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cta.gateway")
        // Every agent holds a WebSocket, a broker connection and its wake-up descriptor: allow as many open files as
        // the system lets this process have.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        logger.info("open files allowed", metadata: ["cta.files": "\(limit.rlim_cur)", "cta.agents.about": "\(limit.rlim_cur / 3)"])
        let client = try MongoClient(configuration: .init(uri: uri, appName: "cta-gateway"), logger: logger)
        let tokens = APIStore(store: MongoStore(database: client.database(database ?? environment["CTA_DATABASE"] ?? "cta")))
        let server = GatewayServer(
            configuration: GatewayConfiguration(
                host: host, port: port, tls: tlsCert.flatMap { cert in tlsKey.map { (cert, $0) } }, clientCA: tlsClientCA,
                broker: try AMQPConfiguration(url: url), uploadLimit: limitBytes),
            tokens: tokens, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        try await client.shutdown()
    }
}
