public import CTACore
public import Logging

/// Everything an agent is told by its operator: where the broker is, which machine it serves, how much it runs at
/// once and how it stops.
///
/// ``AgentConfigurationLoader`` fills it from the configuration file, the environment and command-line flags; its
/// documentation lists every key. The defaults here are the documented defaults.
public struct AgentConfiguration: Sendable, Hashable {
    /// The environment variables an agent passes on to test stages unless told otherwise.
    public static let defaultPassEnvironment = [
        "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL",
    ]

    /// The AMQP URL of the broker (`broker.url`), when the agent connects to RabbitMQ directly. Exactly one of
    /// ``brokerURL`` and ``gatewayURL`` is set.
    public var brokerURL: String?
    /// The HTTPS URL of a gateway (`gateway.url`), when the agent sits behind a firewall.
    public var gatewayURL: String?
    /// The enrollment token the agent presents to the gateway (`gateway.token`); required with ``gatewayURL``.
    public var gatewayToken: String?
    /// CA certificates (PEM) to trust for the gateway instead of the system's (`gateway.caFile`).
    public var gatewayCAFile: String?
    /// The client certificate (PEM) for a gateway that asks for one (`gateway.certFile`), with ``gatewayKeyFile``.
    public var gatewayCertificateFile: String?
    /// The private key (PEM) of ``gatewayCertificateFile`` (`gateway.keyFile`).
    public var gatewayKeyFile: String?
    /// The coordinator's API (`api.url`), where a directly connected agent uploads its tests' files; without it
    /// (and without a gateway) the files stay on the machine.
    public var apiURL: String?
    /// The enrollment token for uploads to ``apiURL`` (`api.token`).
    public var apiToken: String?
    /// CA certificates (PEM) to trust for ``apiURL`` instead of the system's (`api.caFile`).
    public var apiCAFile: String?
    /// The machine name the agent registers (`machine`).
    public var machine: MachineName
    /// The groups (pools) the machine belongs to, without duplicates, in the order given (`groups`).
    public var groups: [GroupName]
    /// Capabilities the scheduler selects on (`tags`).
    public var tags: [String: String]
    /// The absolute directory under which each execution gets a work directory (`directories.work`).
    public var workDirectory: String
    /// The absolute directory that holds the event spool and the journal (`directories.state`).
    public var stateDirectory: String
    /// How many executions run at once (`executions.maxConcurrent`), 1 to 256.
    public var maxConcurrentExecutions: Int
    /// How long a cancelled test's process group has between SIGTERM and SIGKILL (`executions.gracePeriod`).
    public var gracePeriod: Duration
    /// How long a test's stop command may run before the agent goes on to SIGTERM
    /// (`executions.stopCommandTimeout`).
    public var stopCommandTimeout: Duration
    /// Whether work directories stay after their execution ends (`executions.keepWorkDirectories`).
    public var keepWorkDirectories: Bool
    /// The names of the agent's own environment variables that test stages inherit
    /// (`executions.passEnvironment`).
    public var passEnvironment: [String]
    /// The interval between heartbeats (`heartbeat.interval`), 1 second to 10 minutes.
    public var heartbeatInterval: Duration
    /// How many bytes of a stage's output are kept from its beginning (`logs.headBytes`).
    public var logHeadBytes: Int
    /// How many bytes of a stage's output are kept from its end (`logs.tailBytes`).
    public var logTailBytes: Int
    /// The agent's log level (`logs.level`).
    public var logLevel: Logger.Level
    /// How long running tests may go on after the first SIGTERM before they are cancelled (`shutdown.budget`).
    public var shutdownBudget: Duration
    /// The largest attachment the agent uploads (`attachments.maxBytes`).
    public var maxAttachmentBytes: UInt64
    /// How long a test's files are retried while the upload target is away (`attachments.uploadTimeout`).
    public var uploadTimeout: Duration

    /// Creates a configuration; every parameter but the machine has the documented default, and neither URL is set.
    public init(
        brokerURL: String? = nil,
        gatewayURL: String? = nil,
        gatewayToken: String? = nil,
        machine: MachineName,
        groups: [GroupName] = [],
        tags: [String: String] = [:],
        workDirectory: String = "/var/lib/cta/work",
        stateDirectory: String = "/var/lib/cta/state",
        maxConcurrentExecutions: Int = 1,
        gracePeriod: Duration = .seconds(10),
        stopCommandTimeout: Duration = .seconds(15),
        keepWorkDirectories: Bool = false,
        passEnvironment: [String] = AgentConfiguration.defaultPassEnvironment,
        heartbeatInterval: Duration = .seconds(15),
        logHeadBytes: Int = 1 << 20,
        logTailBytes: Int = 1 << 20,
        logLevel: Logger.Level = .info,
        shutdownBudget: Duration = .seconds(300),
        maxAttachmentBytes: UInt64 = 64 << 20,
        uploadTimeout: Duration = .seconds(600)
    ) {
        self.brokerURL = brokerURL
        self.gatewayURL = gatewayURL
        self.gatewayToken = gatewayToken
        self.machine = machine
        self.groups = groups
        self.tags = tags
        self.workDirectory = workDirectory
        self.stateDirectory = stateDirectory
        self.maxConcurrentExecutions = maxConcurrentExecutions
        self.gracePeriod = gracePeriod
        self.stopCommandTimeout = stopCommandTimeout
        self.keepWorkDirectories = keepWorkDirectories
        self.passEnvironment = passEnvironment
        self.heartbeatInterval = heartbeatInterval
        self.logHeadBytes = logHeadBytes
        self.logTailBytes = logTailBytes
        self.logLevel = logLevel
        self.shutdownBudget = shutdownBudget
        self.maxAttachmentBytes = maxAttachmentBytes
        self.uploadTimeout = uploadTimeout
    }
}
