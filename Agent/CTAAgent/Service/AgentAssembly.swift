import CTABroker
import CTACore
import Foundation
public import Logging

/// Builds a running agent from its configuration: spool, journal, outbox, transport, runner and executor.
public struct AgentAssembly: Sendable {
    /// The agent, ready to ``AgentRuntime/run()``.
    public let runtime: AgentRuntime
    /// The spool (close it after the runtime ended).
    public let spool: Spool

    /// Makes the transport through a gateway from the agent's configuration (`gateway.*`) and its machine name.
    public typealias GatewayTransportFactory =
        @Sendable (_ configuration: AgentConfiguration, _ token: String, _ logger: Logger) throws -> any AgentTransport

    /// Makes what uploads tests' files to `url` (the API's or the gateway's) with an enrollment token, trusting the
    /// CA file when given and presenting the client certificate when given.
    public typealias UploaderFactory =
        @Sendable (
            _ url: String, _ token: String, _ caFile: String?, _ clientCertificate: (certificate: String, key: String)?,
            _ logger: Logger
        ) throws -> any AttachmentUploading

    /// Opens the state directory and wires the parts together.
    ///
    /// - Parameters:
    ///   - environment: The agent's own environment; only the variables named by
    ///     ``AgentConfiguration/passEnvironment`` reach test stages.
    ///   - gatewayTransport: How to reach a gateway (`gateway.url`); nil in a build without one.
    ///   - uploader: How to upload tests' files (to `api.url`, else the gateway); nil in a build without HTTP.
    public static func make(
        configuration: AgentConfiguration, environment: [String: String], facts: HostFacts, logger: Logger,
        gatewayTransport: GatewayTransportFactory? = nil, uploader makeUploader: UploaderFactory? = nil
    ) async throws -> AgentAssembly {
        let transport: any AgentTransport
        let kind: Transport
        if let brokerURL = configuration.brokerURL {
            let amqp: AMQPConfiguration
            do {
                amqp = try AMQPConfiguration(url: brokerURL)
            } catch {
                throw AgentStartError("broker.url: \(error)")
            }
            transport = AMQPAgentTransport(configuration: amqp, machine: configuration.machine, logger: logger)
            kind = .amqp
        } else if configuration.gatewayURL != nil {
            guard let gatewayTransport else {
                throw AgentStartError("this build of the agent has no gateway transport; set broker.url")
            }
            guard let token = configuration.gatewayToken else { throw AgentStartError("gateway.url needs gateway.token") }
            do {
                transport = try gatewayTransport(configuration, token, logger)
            } catch {
                throw AgentStartError("gateway.url: \(error)")
            }
            kind = .gateway
        } else {
            throw AgentStartError("set broker.url or gateway.url")
        }
        let uploader = try Self.uploader(configuration, makeUploader, logger: logger)
        let state = configuration.stateDirectory
        for directory in [state, configuration.workDirectory] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let spool = try await Spool.open(directory: state + "/spool", logger: logger)
        if spool.recovery.createdEpoch {
            logger.info("new spool epoch", metadata: ["cta.epoch": "\(spool.epoch)"])
        }
        if spool.recovery.pendingRecords > 0 {
            logger.info("events to replay from the spool", metadata: ["cta.spool.pending": "\(spool.recovery.pendingRecords)"])
        }
        for damage in spool.recovery.damage {
            logger.warning("spool damage repaired", metadata: ["cta.spool.damage": "\(damage)"])
        }
        let journal = try WorkJournal(directory: state + "/journal")
        let outbox = Outbox(spool: spool, machine: configuration.machine, logger: logger)

        var base: [String: String] = [:]
        for name in configuration.passEnvironment { base[name] = environment[name] }
        let runner = StageRunner(
            configuration: StageRunner.Configuration(
                gracePeriod: configuration.gracePeriod, stopCommandTimeout: configuration.stopCommandTimeout,
                headBytes: configuration.logHeadBytes, tailBytes: configuration.logTailBytes, baseEnvironment: base),
            logger: logger)
        var executorConfiguration = TestExecutor.Configuration()
        executorConfiguration.maxAttachmentBytes = configuration.maxAttachmentBytes
        executorConfiguration.keepWorkDirectory = configuration.keepWorkDirectories
        executorConfiguration.uploadTimeout = configuration.uploadTimeout
        let executor = TestExecutor(
            runner: runner, attachments: AttachmentStore(directory: state + "/attachments"), uploader: uploader,
            configuration: executorConfiguration, logger: logger)

        let registration = AgentRegistration(
            machine: configuration.machine, hostname: facts.hostname, addresses: facts.addresses, os: facts.os,
            arch: facts.arch, cpuCount: facts.cpuCount, memoryBytes: facts.memoryBytes,
            agentVersion: AgentVersion.current, tags: configuration.tags, groups: configuration.groups,
            maxConcurrentExecutions: configuration.maxConcurrentExecutions, transport: kind, startedAt: .now())
        let settings = AgentRuntime.Settings(
            machine: configuration.machine, groups: configuration.groups,
            maxConcurrentExecutions: configuration.maxConcurrentExecutions,
            heartbeatInterval: configuration.heartbeatInterval, shutdownBudget: configuration.shutdownBudget,
            workDirectory: configuration.workDirectory, registration: registration,
            loadAverage: { HostFacts.loadAverage() })
        let runtime = AgentRuntime(
            settings: settings, transport: transport, outbox: outbox, journal: journal, executor: executor,
            logger: logger)
        return AgentAssembly(runtime: runtime, spool: spool)
    }
}

extension AgentAssembly {
    /// Where tests' files go: `api.url` when set, else the gateway; none for a direct agent without `api.url`.
    static func uploader(
        _ configuration: AgentConfiguration, _ make: UploaderFactory?, logger: Logger
    ) throws -> (any AttachmentUploading)? {
        let target: (url: String, token: String, key: String, ca: String?, certificate: (certificate: String, key: String)?)
        if let url = configuration.apiURL, let token = configuration.apiToken {
            target = (url, token, "api.url", configuration.apiCAFile, nil)
        } else if let url = configuration.gatewayURL, let token = configuration.gatewayToken {
            let certificate = configuration.gatewayCertificateFile.flatMap { certificate in
                configuration.gatewayKeyFile.map { (certificate: certificate, key: $0) }
            }
            target = (url, token, "gateway.url", configuration.gatewayCAFile, certificate)
        } else {
            logger.notice("tests' files stay on this machine: set api.url to upload them")
            return nil
        }
        guard let make else {
            if target.key == "api.url" { throw AgentStartError("this build of the agent cannot upload; unset api.url") }
            return nil
        }
        do {
            let uploader = try make(target.url, target.token, target.ca, target.certificate, logger)
            logger.info("tests' files are uploaded", metadata: ["cta.upload.url": "\(target.url)"])
            return uploader
        } catch {
            throw AgentStartError("\(target.key): \(error)")
        }
    }
}

/// The agent cannot start; the message says why, in words for an operator.
public struct AgentStartError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
