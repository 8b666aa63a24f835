import CTABroker
import CTACore
import CTAYAML
import Foundation
import Logging

// The table of configuration keys: how each one reads its value into an AgentConfiguration. The documentation of
// every key is on AgentConfigurationLoader; keep the two in the same order.

/// One configuration key and how its value is read.
struct ConfigurationKey: Sendable {
    typealias Apply = @Sendable (inout AgentConfiguration, ConfigurationInput) throws(ValueProblem) -> Void

    /// The dotted key.
    let key: String
    /// Checks a value and stores it.
    let apply: Apply

    init(_ key: String, _ apply: @escaping Apply) {
        self.key = key
        self.apply = apply
    }

    static let all: [ConfigurationKey] = [
        ConfigurationKey("broker.url") { (configuration, value) throws(ValueProblem) in
            let url = try text(value, expected: "an AMQP URL")
            guard !url.isEmpty else {
                configuration.brokerURL = nil
                return
            }
            do throws(AMQPError) {
                _ = try AMQPConfiguration(url: url)
            } catch {
                throw ValueProblem("not a usable AMQP URL: \(error.message)")
            }
            configuration.brokerURL = url
        },
        ConfigurationKey("gateway.url") { (configuration, value) throws(ValueProblem) in
            configuration.gatewayURL = try httpURL(value)
        },
        ConfigurationKey("gateway.token") { (configuration, value) throws(ValueProblem) in
            configuration.gatewayToken = try enrollmentToken(value)
        },
        ConfigurationKey("gateway.caFile") { (configuration, value) throws(ValueProblem) in
            configuration.gatewayCAFile = try readableFile(value, expected: "a PEM file of CA certificates")
        },
        ConfigurationKey("gateway.certFile") { (configuration, value) throws(ValueProblem) in
            configuration.gatewayCertificateFile = try readableFile(value, expected: "a PEM certificate file")
        },
        ConfigurationKey("gateway.keyFile") { (configuration, value) throws(ValueProblem) in
            configuration.gatewayKeyFile = try readableFile(value, expected: "a PEM private key file")
        },
        ConfigurationKey("api.url") { (configuration, value) throws(ValueProblem) in
            configuration.apiURL = try httpURL(value)
        },
        ConfigurationKey("api.token") { (configuration, value) throws(ValueProblem) in
            configuration.apiToken = try enrollmentToken(value)
        },
        ConfigurationKey("api.caFile") { (configuration, value) throws(ValueProblem) in
            configuration.apiCAFile = try readableFile(value, expected: "a PEM file of CA certificates")
        },
        ConfigurationKey("machine") { (configuration, value) throws(ValueProblem) in
            configuration.machine = try name(MachineName.self, try text(value, expected: "a machine name"))
        },
        ConfigurationKey("groups") { (configuration, value) throws(ValueProblem) in
            var groups: [GroupName] = []
            for item in try items(value, expected: "a list of group names", item: "a group name") {
                let group = try name(GroupName.self, item.text, line: item.line)
                if !groups.contains(group) { groups.append(group) }
            }
            configuration.groups = groups
        },
        ConfigurationKey("tags") { (configuration, value) throws(ValueProblem) in
            configuration.tags = try tags(value)
        },
        ConfigurationKey("directories.work") { (configuration, value) throws(ValueProblem) in
            configuration.workDirectory = try directory(try text(value, expected: "an absolute path"))
        },
        ConfigurationKey("directories.state") { (configuration, value) throws(ValueProblem) in
            configuration.stateDirectory = try directory(try text(value, expected: "an absolute path"))
        },
        ConfigurationKey("executions.maxConcurrent") { (configuration, value) throws(ValueProblem) in
            let expected = "an integer from 1 to 256"
            let raw = try text(value, expected: expected)
            guard let count = ConfigurationValue.integer(raw), (1...256).contains(count) else {
                throw ValueProblem("expected \(expected), got \(ConfigurationValue.quoted(raw))")
            }
            configuration.maxConcurrentExecutions = count
        },
        ConfigurationKey("executions.gracePeriod") { (configuration, value) throws(ValueProblem) in
            configuration.gracePeriod = try duration(value, in: .zero ... .seconds(3600))
        },
        ConfigurationKey("executions.stopCommandTimeout") { (configuration, value) throws(ValueProblem) in
            configuration.stopCommandTimeout = try duration(value, in: .seconds(1) ... .seconds(3600))
        },
        ConfigurationKey("executions.keepWorkDirectories") { (configuration, value) throws(ValueProblem) in
            let raw = try text(value, expected: "true or false")
            guard let flag = ConfigurationValue.bool(raw) else {
                throw ValueProblem("expected true or false, got \(ConfigurationValue.quoted(raw))")
            }
            configuration.keepWorkDirectories = flag
        },
        ConfigurationKey("executions.passEnvironment") { (configuration, value) throws(ValueProblem) in
            var names: [String] = []
            for item in try items(
                value,
                expected: "a list of environment variable names",
                item: "an environment variable name"
            ) {
                guard isVariableName(item.text) else {
                    throw ValueProblem(
                        "invalid environment variable name \(ConfigurationValue.quoted(item.text)): names are "
                            + "ASCII letters, digits and '_', not starting with a digit",
                        line: item.line
                    )
                }
                if !names.contains(item.text) { names.append(item.text) }
            }
            configuration.passEnvironment = names
        },
        ConfigurationKey("heartbeat.interval") { (configuration, value) throws(ValueProblem) in
            configuration.heartbeatInterval = try duration(value, in: .seconds(1) ... .seconds(600))
        },
        ConfigurationKey("logs.headBytes") { (configuration, value) throws(ValueProblem) in
            configuration.logHeadBytes = Int(try size(value, in: 0...(1 << 30)))
        },
        ConfigurationKey("logs.tailBytes") { (configuration, value) throws(ValueProblem) in
            configuration.logTailBytes = Int(try size(value, in: 0...(1 << 30)))
        },
        ConfigurationKey("logs.level") { (configuration, value) throws(ValueProblem) in
            let levels = "trace, debug, info, notice, warning, error, critical"
            let raw = try text(value, expected: "one of \(levels)")
            guard let level = Logger.Level(rawValue: raw.lowercased()) else {
                throw ValueProblem("expected one of \(levels), got \(ConfigurationValue.quoted(raw))")
            }
            configuration.logLevel = level
        },
        ConfigurationKey("shutdown.budget") { (configuration, value) throws(ValueProblem) in
            configuration.shutdownBudget = try duration(value, in: .zero ... .seconds(86_400))
        },
        ConfigurationKey("attachments.maxBytes") { (configuration, value) throws(ValueProblem) in
            configuration.maxAttachmentBytes = try size(value, in: 1...(1 << 40))
        },
        ConfigurationKey("attachments.uploadTimeout") { (configuration, value) throws(ValueProblem) in
            configuration.uploadTimeout = try duration(value, in: .seconds(1) ... .seconds(86_400))
        },
    ]

    /// An enrollment token; nil for an empty value.
    static func enrollmentToken(_ value: ConfigurationInput) throws(ValueProblem) -> String? {
        let token = try text(value, expected: "an enrollment token")
        return token.isEmpty ? nil : token
    }

    /// An `https://` (or `http://`) URL with a host; nil for an empty value (which unsets the key).
    static func httpURL(_ value: ConfigurationInput) throws(ValueProblem) -> String? {
        let url = try text(value, expected: "an https:// URL")
        guard !url.isEmpty else { return nil }
        guard let components = URLComponents(string: url),
            let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http",
            let host = components.host, !host.isEmpty
        else {
            throw ValueProblem("expected an https:// (or http://) URL with a host")
        }
        return url
    }

    static let byKey: [String: ConfigurationKey] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })

    /// The dotted keys that hold other keys: `executions`, `logs`, ….
    static let sections: Set<String> = Set(
        all.flatMap { spec in
            let parts = spec.key.split(separator: ".")
            return (1..<parts.count).map { parts[..<$0].joined(separator: ".") }
        })

    /// The names directly under a section ("" for the top level), in table order.
    static func children(of section: String) -> [String] {
        let prefix = section.isEmpty ? "" : section + "."
        var names: [String] = []
        for spec in all where spec.key.hasPrefix(prefix) {
            let name = String(spec.key.dropFirst(prefix.count).prefix { $0 != "." })
            if !names.contains(name) { names.append(name) }
        }
        return names
    }

    /// What to say about an unknown key `name` under `prefix` (nil: a full dotted key, as flags give).
    static func unknownKeyMessage(name: String, prefix: String?) -> String {
        func closest(_ candidates: [String]) -> String? { KeySuggestion.closest(to: name, among: candidates) }
        guard let prefix else {
            if let match = closest(all.map(\.key)) { return "unknown key; did you mean \(match)?" }
            return "unknown key"
        }
        let qualified = { (child: String) in prefix.isEmpty ? child : "\(prefix).\(child)" }
        let siblings = children(of: prefix)
        if let match = closest(siblings) { return "unknown key; did you mean \(qualified(match))?" }
        // A key put under the wrong section: `heartbeat: maxConcurrent:`.
        if let elsewhere = all.first(where: { $0.key.split(separator: ".").last?.lowercased() == name.lowercased() }) {
            return "unknown key; did you mean \(elsewhere.key)?"
        }
        // A dotted key written literally: `executions.maxConcurrent: 2`.
        if byKey[qualified(name)] != nil, let dot = name.firstIndex(of: ".") {
            return "unknown key; write nested keys: \(name[..<dot]):, then \(name[name.index(after: dot)...]): "
                + "indented below it"
        }
        let place = prefix.isEmpty ? "the top-level keys" : "the keys under \(prefix)"
        return "unknown key; \(place) are \(siblings.joined(separator: ", "))"
    }

    /// The naming rule for machines and groups, for error messages.
    static let nameRule = "names are 1 to 128 ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"

    /// Why `raw` is not a valid name of this kind (e.g. "must not be empty"), or nil.
    static func nameProblem<Name: RestrictedName>(_ type: Name.Type, _ raw: String) -> String? {
        do throws(WireError) {
            _ = try Name(validating: raw)
            return nil
        } catch {
            let prefix = Name.kind + " "
            return error.reason.hasPrefix(prefix) ? String(error.reason.dropFirst(prefix.count)) : error.reason
        }
    }

    /// Whether two normalised absolute directories are the same or one holds the other.
    static func overlaps(_ a: String, _ b: String) -> Bool {
        let left = a.split(separator: "/")
        let right = b.split(separator: "/")
        let common = min(left.count, right.count)
        return Array(left.prefix(common)) == Array(right.prefix(common))
    }

    // MARK: Value forms

    private static func text(_ value: ConfigurationInput, expected: String) throws(ValueProblem) -> String {
        switch value {
        case .text(let text):
            return text
        case .node(let node):
            if let scalar = node.scalar { return scalar }
            throw ValueProblem("expected \(expected), got \(node.shape)")
        }
    }

    /// A path to a file the agent can read now (an empty value unsets it): a missing certificate is found at start,
    /// not at the first connection.
    private static func readableFile(_ value: ConfigurationInput, expected: String) throws(ValueProblem) -> String? {
        let path = try text(value, expected: expected)
        guard !path.isEmpty else { return nil }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw ValueProblem("expected \(expected), but there is no file \(ConfigurationValue.quoted(path))")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ValueProblem("the agent cannot read \(ConfigurationValue.quoted(path))")
        }
        return path
    }

    /// The items of a list: a YAML sequence of scalars, or comma-separated text (blank items dropped).
    private static func items(
        _ value: ConfigurationInput,
        expected: String,
        item: String
    ) throws(ValueProblem) -> [(text: String, line: Int?)] {
        switch value {
        case .text(let text):
            return text.split(separator: ",").map { ($0.trimmingCharacters(in: .whitespaces), nil) }
                .filter { !$0.0.isEmpty }
        case .node(let node):
            guard let sequence = node.sequence else {
                throw ValueProblem("expected \(expected), got \(node.shape); write [a, b] or one '- a' per line")
            }
            var result: [(text: String, line: Int?)] = []
            for element in sequence {
                guard let scalar = element.scalar, !element.isNull else {
                    let shape = element.isNull ? "an empty item" : element.shape
                    throw ValueProblem("expected \(item), got \(shape)", line: element.line)
                }
                result.append((scalar, element.line))
            }
            return result
        }
    }

    private static func name<Name: RestrictedName>(
        _ type: Name.Type,
        _ raw: String,
        line: Int? = nil
    ) throws(ValueProblem) -> Name {
        if let problem = nameProblem(type, raw) {
            throw ValueProblem(
                "invalid \(Name.kind) \(ConfigurationValue.quoted(raw)): it \(problem); \(nameRule)",
                line: line
            )
        }
        return Name(unchecked: raw)
    }

    private static func tags(_ value: ConfigurationInput) throws(ValueProblem) -> [String: String] {
        var tags: [String: String] = [:]
        func add(_ name: String, _ value: String, line: Int?) throws(ValueProblem) {
            let quotedName = ConfigurationValue.quoted(name)
            if name.isEmpty { throw ValueProblem("a tag name must not be empty", line: line) }
            if name.utf8.count > 128 {
                throw ValueProblem("tag name \(quotedName) is longer than 128 bytes", line: line)
            }
            if (name + value).unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw ValueProblem("tag \(quotedName) must not contain control characters", line: line)
            }
            if tags[name] != nil { throw ValueProblem("tag \(quotedName) is given twice", line: line) }
            tags[name] = value
        }
        switch value {
        case .text(let text):
            for pair in text.split(separator: ",") {
                let trimmed = pair.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty { continue }
                guard let equals = trimmed.firstIndex(of: "=") else {
                    throw ValueProblem(
                        "expected name=value pairs separated by commas, got \(ConfigurationValue.quoted(trimmed))")
                }
                try add(
                    trimmed[..<equals].trimmingCharacters(in: .whitespaces),
                    trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces),
                    line: nil
                )
            }
        case .node(let node):
            guard let mapping = node.mapping else {
                throw ValueProblem("expected a mapping of tag names to values, got \(node.shape)")
            }
            for entry in mapping {
                let (key, tag) = (entry.key, entry.value)
                guard let name = key.scalar else {
                    throw ValueProblem("expected tag names, got \(key.shape) as a key", line: key.line)
                }
                guard let scalar = tag.scalar else {
                    throw ValueProblem(
                        "tag \(ConfigurationValue.quoted(name)): expected a single value, got \(tag.shape)",
                        line: tag.line
                    )
                }
                try add(name, tag.isNull ? "" : scalar, line: tag.line)
            }
        }
        return tags
    }

    /// Checks an absolute directory and returns it without `.` components, repeated or trailing slashes.
    private static func directory(_ raw: String) throws(ValueProblem) -> String {
        guard raw.hasPrefix("/") else {
            throw ValueProblem("expected an absolute path, got \(ConfigurationValue.quoted(raw))")
        }
        if raw.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw ValueProblem("must not contain control characters")
        }
        let components = raw.split(separator: "/").filter { $0 != "." }
        if components.contains("..") {
            throw ValueProblem("must not contain '..', got \(ConfigurationValue.quoted(raw))")
        }
        if components.isEmpty { throw ValueProblem("must not be the root directory") }
        return "/" + components.joined(separator: "/")
    }

    private static func duration(
        _ value: ConfigurationInput,
        in range: ClosedRange<Duration>
    ) throws(ValueProblem) -> Duration {
        let expected =
            "a duration from \(ConfigurationValue.format(range.lowerBound)) to "
            + "\(ConfigurationValue.format(range.upperBound)) (like 15s, 500ms, 2m, 1h30m, or a number of seconds)"
        let raw = try text(value, expected: expected)
        guard let duration = ConfigurationValue.duration(raw), range.contains(duration) else {
            throw ValueProblem("expected \(expected), got \(ConfigurationValue.quoted(raw))")
        }
        return duration
    }

    private static func size(_ value: ConfigurationInput, in range: ClosedRange<UInt64>) throws(ValueProblem) -> UInt64
    {
        let expected =
            "a size from \(ConfigurationValue.format(bytes: range.lowerBound)) to "
            + "\(ConfigurationValue.format(bytes: range.upperBound)) (like 512KiB, 1MiB, 10MB, or a number of bytes)"
        let raw = try text(value, expected: expected)
        guard let size = ConfigurationValue.size(raw), range.contains(size) else {
            throw ValueProblem("expected \(expected), got \(ConfigurationValue.quoted(raw))")
        }
        return size
    }

    private static func isVariableName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_"
        }
    }
}
