public import CTACore

/// The identifier of a configuration definition (which machines a scenario runs on).
public struct ConfigurationID: DefinitionIdentifier {
    public static let kind = "configuration id"
    public let rawValue: String
    public init(unchecked rawValue: String) { self.rawValue = rawValue }
}

/// A test suite: an ordered list of tests, run together.
public struct SuiteDefinition: Codable, Hashable, Sendable {
    public var id: SuiteID
    public var name: String
    public var description: String?
    /// The suite's tests, in the order results are reported.
    public var tests: [TestID]

    public init(id: SuiteID, name: String, description: String? = nil, tests: [TestID]) {
        self.id = id
        self.name = name
        self.description = description
        self.tests = tests
    }
}

/// Which machines a scenario may run on. A machine matches when it satisfies every given criterion:
/// it is one of `machines` (when given), it serves one of `groups` (when given), and it has every tag in `tags`
/// with that value (`*` accepts any value, the tag only has to exist).
public struct MachineSelector: Codable, Hashable, Sendable {
    public var machines: [MachineName]
    public var groups: [GroupName]
    public var tags: [String: String]

    public init(machines: [MachineName] = [], groups: [GroupName] = [], tags: [String: String] = [:]) {
        self.machines = machines
        self.groups = groups
        self.tags = tags
    }
}

/// A configuration: where a scenario runs, and the environment its tests get there.
public struct ConfigurationDefinition: Codable, Hashable, Sendable {
    public var id: ConfigurationID
    public var name: String
    public var description: String?
    public var selector: MachineSelector
    /// Environment variables every test of the execution gets (the scenario's own `env` wins).
    public var env: [String: String]
    /// A virtual machine created for each execution instead of a machine chosen among those online.
    public var provision: ProvisionDefinition?

    public init(
        id: ConfigurationID, name: String, description: String? = nil, selector: MachineSelector,
        env: [String: String] = [:], provision: ProvisionDefinition? = nil
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.selector = selector
        self.env = env
        self.provision = provision
    }
}

/// How a configuration gets a machine made for each execution (a VM created on the fly): the coordinator runs
/// `create`, which must start an agent registering under the name in `CTA_VM_NAME`; the execution is dispatched
/// to that machine alone; `destroy` runs when the execution ends, or at the latest `vmTimeoutMs` after the VM was
/// created (the VM timeout: a running execution is cancelled first).
public struct ProvisionDefinition: Codable, Hashable, Sendable {
    /// A shell command (`/bin/sh -c`) that creates the VM and returns; exit 0 means created.
    public var create: String
    /// A shell command that destroys it; exit 0 means destroyed.
    public var destroy: String
    /// The VM timeout: how long after its creation the VM is destroyed, whatever runs on it.
    public var vmTimeoutMs: Milliseconds
    /// How long either command may run before it is killed and counted as failed.
    public var commandTimeoutMs: Milliseconds

    public init(create: String, destroy: String, vmTimeoutMs: Milliseconds, commandTimeoutMs: Milliseconds = Milliseconds(300_000)) {
        self.create = create
        self.destroy = destroy
        self.vmTimeoutMs = vmTimeoutMs
        self.commandTimeoutMs = commandTimeoutMs
    }
}

/// When a scenario runs by itself.
public struct ScenarioSchedule: Codable, Hashable, Sendable {
    /// A five-field cron expression (minute hour day-of-month month day-of-week), evaluated in UTC.
    public var cron: String?
    /// One fixed time.
    public var at: Timestamp?

    public init(cron: String? = nil, at: Timestamp? = nil) {
        self.cron = cron
        self.at = at
    }
}

/// An HTTP callback fired when an execution of the scenario ends.
public struct WebhookDefinition: Codable, Hashable, Sendable {
    public var url: String
    /// The end states that fire it; empty means every end state.
    public var on: [ExecutionPhase]
    /// Signs the body (HMAC-SHA256, header `X-CTA-Signature`); absent means unsigned.
    public var secret: String?

    public init(url: String, on: [ExecutionPhase] = [], secret: String? = nil) {
        self.url = url
        self.on = on
        self.secret = secret
    }
}

/// A scenario chained after this one: started when an execution of this one ends in one of `on`.
public struct ChainedScenario: Codable, Hashable, Sendable {
    public var scenario: ScenarioID
    /// The end states that start it; empty means `finished` only.
    public var on: [ExecutionPhase]

    public init(scenario: ScenarioID, on: [ExecutionPhase] = []) {
        self.scenario = scenario
        self.on = on
    }
}

/// A scenario: a suite, where it runs, how, and with which time limits.
public struct ScenarioDefinition: Codable, Hashable, Sendable {
    public var id: ScenarioID
    public var name: String
    public var description: String?
    public var suite: SuiteID
    public var configuration: ConfigurationID
    public var runMode: RunMode
    /// How long an execution may wait for a machine before it ends `timeout`.
    public var pendingTimeoutMs: Milliseconds
    /// How long an execution may run (from its first `running`) before it is cancelled with cause `timeout`.
    public var runningTimeoutMs: Milliseconds
    public var env: [String: String]
    public var schedule: ScenarioSchedule?
    public var webhooks: [WebhookDefinition]
    public var chain: [ChainedScenario]

    public init(
        id: ScenarioID, name: String, description: String? = nil, suite: SuiteID, configuration: ConfigurationID,
        runMode: RunMode, pendingTimeoutMs: Milliseconds = Milliseconds(3_600_000),
        runningTimeoutMs: Milliseconds = Milliseconds(3_600_000), env: [String: String] = [:],
        schedule: ScenarioSchedule? = nil, webhooks: [WebhookDefinition] = [], chain: [ChainedScenario] = []
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.suite = suite
        self.configuration = configuration
        self.runMode = runMode
        self.pendingTimeoutMs = pendingTimeoutMs
        self.runningTimeoutMs = runningTimeoutMs
        self.env = env
        self.schedule = schedule
        self.webhooks = webhooks
        self.chain = chain
    }
}

/// Everything read from a set of definition files, keyed by identifier.
public struct DefinitionSet: Hashable, Sendable {
    public var tests: [TestID: TestDefinition]
    public var suites: [SuiteID: SuiteDefinition]
    public var configurations: [ConfigurationID: ConfigurationDefinition]
    public var scenarios: [ScenarioID: ScenarioDefinition]
    /// The user groups owning a definition, by `"<kind>/<id>"` (`"scenario/nightly"`), for the definitions whose
    /// file names `owners`; the others keep the owners they have.
    public var owners: [String: [String]]

    public init(
        tests: [TestID: TestDefinition] = [:], suites: [SuiteID: SuiteDefinition] = [:],
        configurations: [ConfigurationID: ConfigurationDefinition] = [:],
        scenarios: [ScenarioID: ScenarioDefinition] = [:], owners: [String: [String]] = [:]
    ) {
        self.tests = tests
        self.suites = suites
        self.configurations = configurations
        self.scenarios = scenarios
        self.owners = owners
    }
}
