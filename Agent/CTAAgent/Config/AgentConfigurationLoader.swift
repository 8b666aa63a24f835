import CTABroker
import CTACore
import CTAYAML
import Foundation
import Logging

/// Reads an ``AgentConfiguration`` from the configuration file, the environment and command-line flags.
///
/// Each key may be set in the YAML file (nested: `executions:` then `maxConcurrent: 2`), some in the environment,
/// and any of them by a flag. A later source wins: file, then environment, then flags. Every value is checked
/// wherever it is set, so a bad value in the file is an error even while a flag overrides it.
///
/// | key | type | default | environment | meaning |
/// |---|---|---|---|---|
/// | `broker.url` | AMQP URL | — | `CTA_AGENT_BROKER_URL` | the broker: `amqp://user:pass@host/vhost`, `amqps://…` |
/// | `gateway.url` | HTTP(S) URL | — | `CTA_AGENT_GATEWAY_URL` | a gateway, for agents behind a firewall |
/// | `gateway.token` | text | — | `CTA_AGENT_GATEWAY_TOKEN` | the enrollment token for the gateway; required with `gateway.url` |
/// | `gateway.caFile` | readable file | the system's | `CTA_AGENT_GATEWAY_CA_FILE` | PEM CA certificates to trust for the gateway |
/// | `gateway.certFile` | readable file | — | `CTA_AGENT_GATEWAY_CERT_FILE` | PEM client certificate, for a gateway that asks for one |
/// | `gateway.keyFile` | readable file | — | `CTA_AGENT_GATEWAY_KEY_FILE` | PEM private key of `gateway.certFile`; set both or neither |
/// | `api.url` | HTTP(S) URL | — | `CTA_AGENT_API_URL` | the coordinator's API, for uploads (with `broker.url`; a gateway takes them otherwise) |
/// | `api.token` | text | — | `CTA_AGENT_API_TOKEN` | the enrollment token for uploads to `api.url`; required with it |
/// | `api.caFile` | readable file | the system's | `CTA_AGENT_API_CA_FILE` | PEM CA certificates to trust for `api.url` |
/// | `machine` | name | the host name's first label | `CTA_AGENT_MACHINE` | the machine name the agent registers |
/// | `groups` | list of names | none | `CTA_AGENT_GROUPS` (`a,b`) | the pools the machine belongs to |
/// | `tags` | mapping | none | `CTA_AGENT_TAGS` (`k=v,k2=v2`) | capabilities the scheduler selects on |
/// | `directories.work` | absolute path | `/var/lib/cta/work` | `CTA_AGENT_WORK_DIR` | a directory per execution |
/// | `directories.state` | absolute path | `/var/lib/cta/state` | `CTA_AGENT_STATE_DIR` | the spool and the journal |
/// | `executions.maxConcurrent` | integer 1…256 | `1` | `CTA_AGENT_MAX_CONCURRENT` | executions run at once |
/// | `executions.gracePeriod` | duration 0s…1h | `10s` | `CTA_AGENT_GRACE_PERIOD` | SIGTERM to SIGKILL |
/// | `executions.stopCommandTimeout` | duration 1s…1h | `15s` | — | how long a test's stop command may run |
/// | `executions.keepWorkDirectories` | boolean | `false` | — | keep work directories after the execution |
/// | `executions.passEnvironment` | list of names | see below | — | agent variables test stages inherit |
/// | `heartbeat.interval` | duration 1s…10m | `15s` | `CTA_AGENT_HEARTBEAT_INTERVAL` | between heartbeats |
/// | `logs.headBytes` | size 0…1GiB | `1MiB` | — | output kept from a stage's beginning |
/// | `logs.tailBytes` | size 0…1GiB | `1MiB` | — | output kept from a stage's end |
/// | `logs.level` | level | `info` | `CTA_AGENT_LOG_LEVEL` | `trace` … `critical` (swift-log's levels) |
/// | `shutdown.budget` | duration 0s…24h | `5m` | `CTA_AGENT_SHUTDOWN_BUDGET` | drain time after SIGTERM |
/// | `attachments.maxBytes` | size 1B…1TiB | `64MiB` | — | the largest attachment uploaded (the servers' default upload limit) |
/// | `attachments.uploadTimeout` | duration 1s…24h | `10m` | — | how long a test's uploads retry an unreachable server |
///
/// Rules:
/// - Exactly one of `broker.url` and `gateway.url` is set. An empty environment or flag value unsets a URL.
/// - Tests' files (logs, artifacts) are uploaded before their results are published: to `api.url` when it is set,
///   else to the gateway. A directly connected agent without `api.url` keeps them in `<state>/attachments`.
/// - `machine` defaults to the host name's first label, lower-cased, with every character outside `a-z`, `0-9`,
///   `.`, `_`, `-` replaced by `-`. Machine and group names are 1 to 128 ASCII letters, digits, `.`, `_` and `-`,
///   starting with a letter or digit. Duplicate groups are dropped, keeping the first.
/// - `tags` values may be any scalar and are kept as written (`true`, `3.5`); a null value is the empty string.
///   Tag names are 1 to 128 bytes; neither names nor values may hold control characters.
/// - `directories.work` and `directories.state` are absolute, without `..`, not `/`, and neither holds the other
///   (work directories are deleted; the spool must not be).
/// - `executions.passEnvironment` defaults to `PATH HOME LANG LC_ALL TZ TMPDIR USER LOGNAME SHELL`; names are
///   letters, digits and `_`, not starting with a digit.
/// - Durations: a number of seconds (`90`) or numbers with units `h`, `m`, `s`, `ms` from largest to smallest
///   (`500ms`, `15s`, `2m`, `1h30m`).
/// - Sizes: a number of bytes, or a number with `B`, `kB`, `MB`, `GB`, `TB` (powers of 1000) or `KiB`, `MiB`,
///   `GiB`, `TiB` (powers of 1024), without a space: `512KiB`.
/// - Booleans: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`.
/// - In the environment and in flags, lists are comma-separated (`linux,gpu`) and tags are `name=value` pairs
///   (`os=debian,gpu=yes`).
/// - In the file, a key with no value (or `~`, `null`) is not set. Unknown keys, repeated keys and values of the
///   wrong shape (a list where a single value belongs) are errors that name the key and the line.
///
/// The file is `--config PATH`, else the file `CTA_AGENT_CONFIG` names, else ``defaultPath``. Only the default
/// file may be missing; the agent then runs on defaults, the environment and flags.
public struct AgentConfigurationLoader: Sendable {
    /// The configuration file read when none is named.
    public static let defaultPath = "/etc/cta/agent.yaml"

    /// The environment variable that names the configuration file when no path is passed.
    public static let configPathVariable = "CTA_AGENT_CONFIG"

    /// Environment variable → dotted key, for the keys the environment may set.
    public static let environmentKeys: [String: String] = [
        "CTA_AGENT_BROKER_URL": "broker.url",
        "CTA_AGENT_GATEWAY_URL": "gateway.url",
        "CTA_AGENT_GATEWAY_TOKEN": "gateway.token",
        "CTA_AGENT_GATEWAY_CA_FILE": "gateway.caFile",
        "CTA_AGENT_GATEWAY_CERT_FILE": "gateway.certFile",
        "CTA_AGENT_GATEWAY_KEY_FILE": "gateway.keyFile",
        "CTA_AGENT_API_URL": "api.url",
        "CTA_AGENT_API_TOKEN": "api.token",
        "CTA_AGENT_API_CA_FILE": "api.caFile",
        "CTA_AGENT_MACHINE": "machine",
        "CTA_AGENT_GROUPS": "groups",
        "CTA_AGENT_TAGS": "tags",
        "CTA_AGENT_WORK_DIR": "directories.work",
        "CTA_AGENT_STATE_DIR": "directories.state",
        "CTA_AGENT_MAX_CONCURRENT": "executions.maxConcurrent",
        "CTA_AGENT_HEARTBEAT_INTERVAL": "heartbeat.interval",
        "CTA_AGENT_LOG_LEVEL": "logs.level",
        "CTA_AGENT_SHUTDOWN_BUDGET": "shutdown.budget",
        "CTA_AGENT_GRACE_PERIOD": "executions.gracePeriod",
    ]

    /// Every dotted key the configuration knows, in the order of the documentation table.
    public static var keys: [String] { ConfigurationKey.all.map(\.key) }

    /// A value given on the command line for one key.
    public struct Override: Sendable, Hashable {
        /// The dotted key, e.g. `heartbeat.interval`.
        public var key: String
        /// The value in its textual form, as in the environment.
        public var value: String
        /// The flag that gave it, e.g. `--heartbeat-interval`, for error messages.
        public var flag: String

        /// Creates an override.
        public init(key: String, value: String, flag: String) {
            self.key = key
            self.value = value
            self.flag = flag
        }
    }

    /// Loads the configuration: the file, then the environment, then the overrides; a later source wins.
    ///
    /// - Parameters:
    ///   - path: The configuration file. When nil, the file `CTA_AGENT_CONFIG` names, else ``defaultPath``; a
    ///     missing default file counts as an empty one. A file named explicitly must exist.
    ///   - environment: The process environment.
    ///   - overrides: Values from command-line flags.
    ///   - hostname: The host name, for the default machine name.
    public static func load(
        path: String?,
        environment: [String: String],
        overrides: [Override],
        hostname: String
    ) throws(ConfigurationError) -> AgentConfiguration {
        let filePath: String
        let namedBy: ConfigurationError.Origin?
        if let path {
            filePath = path
            namedBy = .file(path: path, line: nil)
        } else if let named = environment[configPathVariable], !named.isEmpty {
            filePath = named
            namedBy = .environment(variable: configPathVariable)
        } else {
            filePath = defaultPath
            namedBy = nil
        }
        var builder = ConfigurationBuilder(hostname: hostname)
        switch readFile(filePath) {
        case .success(let text):
            try builder.read(yaml: text, path: filePath)
        case .failure(let failure):
            if case .missing = failure, namedBy == nil {
                break
            }
            let subject = namedBy == .environment(variable: configPathVariable) ? "\(filePath): " : ""
            throw ConfigurationError(
                key: "",
                origin: namedBy ?? .file(path: filePath, line: nil),
                message: subject + failure.message
            )
        }
        try builder.read(environment: environment)
        try builder.read(overrides: overrides)
        return try builder.finish()
    }

    /// Loads the configuration from YAML text that stands for the file at `path`, then the environment and the
    /// overrides, as ``load(path:environment:overrides:hostname:)`` does.
    public static func load(
        yaml: String,
        path: String,
        environment: [String: String],
        overrides: [Override],
        hostname: String
    ) throws(ConfigurationError) -> AgentConfiguration {
        var builder = ConfigurationBuilder(hostname: hostname)
        try builder.read(yaml: yaml, path: path)
        try builder.read(environment: environment)
        try builder.read(overrides: overrides)
        return try builder.finish()
    }

    /// The machine name a host name gives: its first label, lower-cased, with every character outside `a-z`,
    /// `0-9`, `.`, `_`, `-` replaced by `-`. It may still break the naming rule (an empty host name, a leading `-`).
    public static func machineName(fromHostname hostname: String) -> String {
        let label = hostname.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789._-".unicodeScalars)
        return String(
            String.UnicodeScalarView(label.lowercased().unicodeScalars.map { allowed.contains($0) ? $0 : "-" }))
    }

    // MARK: Reading the file

    enum ReadFailure: Error {
        case missing
        case other(String)

        init(_ failure: TextFile.Failure) {
            switch failure {
            case .missing: self = .missing
            case .cannotOpen(let reason): self = .other("cannot open: \(reason)")
            case .cannotRead(let reason): self = .other("cannot read: \(reason)")
            case .tooLarge(let limit): self = .other("larger than \(ConfigurationValue.format(bytes: UInt64(limit)))")
            case .notUTF8: self = .other("not UTF-8 text")
            }
        }

        var message: String {
            switch self {
            case .missing: "no such file"
            case .other(let message): message
            }
        }
    }

    /// The largest configuration file read; anything larger is surely not one.
    static let maximumFileSize = 1 << 20

    static func readFile(_ path: String) -> Result<String, ReadFailure> {
        TextFile.read(path, maximumSize: maximumFileSize).mapError(ReadFailure.init)
    }
}

// MARK: - Building

/// A key's value before it is checked: a YAML node from the file, or text from the environment or a flag.
enum ConfigurationInput {
    case node(YAMLNode)
    case text(String)
}

/// Why a value is refused; `line` points inside a file value (a list item, a tag) when the value's own line does
/// not say enough.
struct ValueProblem: Error {
    var message: String
    var line: Int?

    init(_ message: String, line: Int? = nil) {
        self.message = message
        self.line = line
    }
}

/// Applies the sources in order to one configuration and remembers where each key was last set.
struct ConfigurationBuilder {
    private var configuration = AgentConfiguration(machine: MachineName(unchecked: ""))
    private var origins: [String: ConfigurationError.Origin] = [:]
    /// The file, when one was read, for errors that belong to no single key.
    private var fileOrigin: ConfigurationError.Origin?
    private let hostname: String

    init(hostname: String) { self.hostname = hostname }

    mutating func read(yaml: String, path: String) throws(ConfigurationError) {
        fileOrigin = .file(path: path, line: nil)
        let document: YAMLNode?
        do throws(YAMLError) {
            document = try YAMLReader.document(yaml, file: path)
        } catch {
            throw ConfigurationError(error)
        }
        guard let root = document, !root.isNull else { return }
        guard let mapping = root.mapping else {
            throw ConfigurationError(
                key: "",
                origin: .file(path: path, line: root.line),
                message: "expected a mapping of keys (like `broker:`) at the top level, got \(root.shape)"
            )
        }
        try walk(mapping, prefix: "", path: path)
    }

    private mutating func walk(
        _ mapping: [YAMLNode.Entry],
        prefix: String,
        path: String
    ) throws(ConfigurationError) {
        for entry in mapping {
            let (keyNode, value) = (entry.key, entry.value)
            let keyLine = keyNode.line
            guard let name = keyNode.scalar else {
                throw ConfigurationError(
                    key: prefix,
                    origin: .file(path: path, line: keyLine),
                    message: "keys must be plain names, got \(keyNode.shape) as a key"
                )
            }
            let key = prefix.isEmpty ? name : "\(prefix).\(name)"
            let valueLine = value.line
            // Names never hold dots: `executions.maxConcurrent: 2` would dodge the duplicate check.
            let known = !name.contains(".")
            if known, ConfigurationKey.byKey[key] != nil {
                if value.isNull { continue }
                try set(key, .node(value), origin: .file(path: path, line: valueLine))
            } else if known, ConfigurationKey.sections.contains(key) {
                if value.isNull { continue }
                guard let inner = value.mapping else {
                    let children = ConfigurationKey.children(of: key).joined(separator: ", ")
                    throw ConfigurationError(
                        key: key,
                        origin: .file(path: path, line: valueLine),
                        message: "expected a mapping of \(children), got \(value.shape)"
                    )
                }
                try walk(inner, prefix: key, path: path)
            } else {
                throw ConfigurationError(
                    key: key,
                    origin: .file(path: path, line: keyLine),
                    message: ConfigurationKey.unknownKeyMessage(name: name, prefix: prefix)
                )
            }
        }
    }

    mutating func read(environment: [String: String]) throws(ConfigurationError) {
        for (variable, key) in AgentConfigurationLoader.environmentKeys.sorted(by: { $0.key < $1.key }) {
            guard let value = environment[variable] else { continue }
            try set(key, .text(value), origin: .environment(variable: variable))
        }
    }

    mutating func read(overrides: [AgentConfigurationLoader.Override]) throws(ConfigurationError) {
        for override in overrides {
            guard ConfigurationKey.byKey[override.key] != nil else {
                throw ConfigurationError(
                    key: override.key,
                    origin: .flag(name: override.flag),
                    message: ConfigurationKey.unknownKeyMessage(name: override.key, prefix: nil)
                )
            }
            try set(override.key, .text(override.value), origin: .flag(name: override.flag))
        }
    }

    private mutating func set(
        _ key: String,
        _ value: ConfigurationInput,
        origin: ConfigurationError.Origin
    ) throws(ConfigurationError) {
        guard let spec = ConfigurationKey.byKey[key] else { preconditionFailure("no key \(key)") }
        do throws(ValueProblem) {
            try spec.apply(&configuration, value)
        } catch {
            var place = origin
            if case .file(let path, _) = origin, let line = error.line { place = .file(path: path, line: line) }
            throw ConfigurationError(key: key, origin: place, message: error.message)
        }
        origins[key] = origin
    }

    /// Fills in the machine default and checks the rules between keys.
    mutating func finish() throws(ConfigurationError) -> AgentConfiguration {
        if origins["machine"] == nil {
            let derived = AgentConfigurationLoader.machineName(fromHostname: hostname)
            if let name = MachineName(derived) {
                configuration.machine = name
            } else {
                let reason = ConfigurationKey.nameProblem(MachineName.self, derived) ?? "is not valid"
                throw ConfigurationError(
                    key: "machine",
                    origin: .none,
                    message: "not set, and the host name \(ConfigurationValue.quoted(hostname)) gives no valid machine "
                        + "name (\(ConfigurationValue.quoted(derived)) \(reason)); set machine "
                        + "(CTA_AGENT_MACHINE); \(ConfigurationKey.nameRule)"
                )
            }
        }
        switch (configuration.brokerURL, configuration.gatewayURL) {
        case (nil, nil):
            throw ConfigurationError(
                key: "broker.url",
                origin: fileOrigin ?? .none,
                message: "set exactly one of broker.url and gateway.url; neither is set"
            )
        case (.some, .some):
            let broker = origins["broker.url"] ?? .none
            let gateway = origins["gateway.url"] ?? .none
            // Blame the value set last: it is the one a reader would look at first.
            let blameGateway = Self.rank(gateway) >= Self.rank(broker)
            throw ConfigurationError(
                key: blameGateway ? "gateway.url" : "broker.url",
                origin: blameGateway ? gateway : broker,
                message: "set exactly one of broker.url and gateway.url; "
                    + (blameGateway
                        ? "broker.url is also set \(broker.phrase)" : "gateway.url is also set \(gateway.phrase)")
            )
        case (nil, .some) where configuration.gatewayToken == nil:
            throw ConfigurationError(
                key: "gateway.token",
                origin: fileOrigin ?? .none,
                message: "gateway.url needs the machine's enrollment token in gateway.token (or CTA_AGENT_GATEWAY_TOKEN)"
            )
        default:
            break
        }
        if (configuration.gatewayCertificateFile == nil) != (configuration.gatewayKeyFile == nil) {
            let missing = configuration.gatewayCertificateFile == nil ? "gateway.certFile" : "gateway.keyFile"
            let given = missing == "gateway.certFile" ? "gateway.keyFile" : "gateway.certFile"
            throw ConfigurationError(
                key: given, origin: origins[given] ?? .none,
                message: "a client certificate needs both gateway.certFile and gateway.keyFile; \(missing) is not set")
        }
        if configuration.apiURL != nil, configuration.apiToken == nil {
            throw ConfigurationError(
                key: "api.url", origin: origins["api.url"] ?? .none,
                message: "api.url needs the machine's enrollment token in api.token (or CTA_AGENT_API_TOKEN)")
        }
        if ConfigurationKey.overlaps(configuration.workDirectory, configuration.stateDirectory) {
            let work = origins["directories.work"] ?? .none
            let state = origins["directories.state"] ?? .none
            let blameWork = Self.rank(work) >= Self.rank(state)
            throw ConfigurationError(
                key: blameWork ? "directories.work" : "directories.state",
                origin: blameWork ? work : state,
                message: "must neither be nor hold nor lie inside "
                    + (blameWork
                        ? "directories.state (\(configuration.stateDirectory))"
                        : "directories.work (\(configuration.workDirectory))")
                    + ": work directories are deleted, the state directory must stay"
            )
        }
        return configuration
    }

    /// Orders origins by precedence, and lines within the file.
    private static func rank(_ origin: ConfigurationError.Origin) -> Int {
        switch origin {
        case .none: 0
        case .file(_, let line): 1 + (line ?? 0)
        case .environment: Int.max - 1
        case .flag: Int.max
        }
    }
}
