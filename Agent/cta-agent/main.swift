import ArgumentParser
import CTAAgent
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import CTACore
#if canImport(CTAAgentGateway)
import CTAAgentGateway
#endif

/// `cta-agent`: runs tests on this machine for CTA.
///
/// Configuration comes from the YAML file (`--config`, `CTA_AGENT_CONFIG`, or `/etc/cta/agent.yaml`), then
/// `CTA_AGENT_*` environment variables, then these flags. SIGTERM or SIGINT stop it gracefully (no new work; running
/// tests get `shutdown.budget` to finish); a second one, or SIGQUIT, cancels running tests at once.
@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cta-agent",
        abstract: "Runs CTA test executions on this machine.",
        version: AgentVersion.current)

    @Option(name: .customLong("config"), help: "The configuration file (YAML).")
    var configPath: String?

    @Option(name: .customLong("broker-url"), help: "The broker URL (amqp:// or amqps://).")
    var brokerURL: String?

    @Option(help: "This machine's name (default: the host name).")
    var machine: String?

    @Option(name: .customLong("group"), help: "A group this machine serves (repeatable).")
    var groups: [String] = []

    @Option(name: .customLong("tag"), help: "A capability tag KEY=VALUE (repeatable).")
    var tags: [String] = []

    @Option(name: .customLong("work-dir"), help: "Where tests run.")
    var workDirectory: String?

    @Option(name: .customLong("state-dir"), help: "Where the spool and the work journal live.")
    var stateDirectory: String?

    @Option(name: .customLong("max-concurrent"), help: "How many executions run at once.")
    var maxConcurrent: String?

    @Option(name: .customLong("heartbeat-interval"), help: "How often to send a heartbeat, e.g. 15s.")
    var heartbeatInterval: String?

    @Option(name: .customLong("shutdown-budget"), help: "How long running tests may finish after SIGTERM, e.g. 5m.")
    var shutdownBudget: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Flag(name: .customLong("check-config"), help: "Check the configuration, print it and exit.")
    var checkConfig = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var overrides: [AgentConfigurationLoader.Override] = []
        func add(_ key: String, _ value: String?, _ flag: String) {
            if let value { overrides.append(.init(key: key, value: value, flag: flag)) }
        }
        add("broker.url", brokerURL, "--broker-url")
        add("machine", machine, "--machine")
        add("groups", groups.isEmpty ? nil : groups.joined(separator: ","), "--group")
        add("tags", tags.isEmpty ? nil : tags.joined(separator: ","), "--tag")
        add("directories.work", workDirectory, "--work-dir")
        add("directories.state", stateDirectory, "--state-dir")
        add("executions.maxConcurrent", maxConcurrent, "--max-concurrent")
        add("heartbeat.interval", heartbeatInterval, "--heartbeat-interval")
        add("shutdown.budget", shutdownBudget, "--shutdown-budget")
        add("logs.level", logLevel, "--log-level")

        let facts = await HostFacts.detectOffPool()
        let configuration: AgentConfiguration
        do {
            configuration = try AgentConfigurationLoader.load(
                path: configPath, environment: environment, overrides: overrides, hostname: facts.hostname)
        } catch {
            FileHandle.standardError.write(Data("cta-agent: \(error.description)\n".utf8))
            throw ExitCode(78)  // EX_CONFIG
        }
        if checkConfig {
            print("configuration OK: machine \(configuration.machine), groups \(configuration.groups.map(\.rawValue)), state \(configuration.stateDirectory)")
            return
        }

        let level = configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cta.agent")

        let assembly: AgentAssembly
        do {
            assembly = try await AgentAssembly.make(
                configuration: configuration, environment: environment, facts: facts, logger: logger,
                gatewayTransport: Self.gatewayTransport, uploader: Self.uploader)
        } catch {
            logger.critical("cannot start", metadata: ["cta.error": "\(error)"])
            FileHandle.standardError.write(Data("cta-agent: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [AgentService(runtime: assembly.runtime)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                cancellationSignals: [.sigquit],
                logger: logger))
        try await group.run()
        try? await assembly.spool.close()
    }
}

/// The agent as a lifecycle service: graceful shutdown (the first SIGTERM or SIGINT) asks it to drain; a second
/// SIGTERM or SIGINT, SIGQUIT, or cancellation cancels running tests at once.
///
/// The service group owns the first signal; the agent listens to the same signals itself and counts, because a
/// service group may not treat one signal as both graceful and cancelling.
struct AgentService: Service {
    let runtime: AgentRuntime

    func run() async throws {
        let runtime = self.runtime
        let second = Task {
            var received = 0
            for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) {
                received += 1
                if received >= 2 { runtime.cancelRunningWork() }
            }
        }
        defer { second.cancel() }
        try await withGracefulShutdownHandler {
            try await runtime.run()
        } onGracefulShutdown: {
            runtime.requestShutdown()
        }
    }
}

extension AgentCommand {
    #if canImport(CTAAgentGateway)
    /// The transport through a gateway (`gateway.url`).
    static let gatewayTransport: AgentAssembly.GatewayTransportFactory? = { configuration, token, logger in
        try GatewayAgentTransport(
            gateway: configuration.gatewayURL ?? "", token: token, machine: configuration.machine,
            caFile: configuration.gatewayCAFile,
            clientCertificate: configuration.gatewayCertificateFile.flatMap { certificate in
                configuration.gatewayKeyFile.map { (certificate: certificate, key: $0) }
            },
            logger: logger)
    }

    /// Uploads tests' files over HTTPS (to `api.url`, else the gateway).
    static let uploader: AgentAssembly.UploaderFactory? = { url, token, caFile, clientCertificate, _ in
        try HTTPAttachmentUploader(url: url, token: token, caFile: caFile, clientCertificate: clientCertificate)
    }
    #else
    /// A build without the HTTP side (CTA_PACKAGE_CORE_ONLY=1) has no gateway transport.
    static let gatewayTransport: AgentAssembly.GatewayTransportFactory? = nil
    /// … and no uploads: tests' files stay in the agent's state directory.
    static let uploader: AgentAssembly.UploaderFactory? = nil
    #endif
}
