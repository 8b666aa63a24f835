public import CTACore

/// A definition written back in the shape its file has: the keys and value forms the loader reads (durations as
/// `90s`, selectors as `machines`/`groups`/`tags`, scenario timeouts under `timeouts`), so what is read can be
/// edited and loaded again. Keys come in the order a person would write them; empty optional keys are left out.
public indirect enum DefinitionValue: Hashable, Sendable {
    case text(String)
    case bool(Bool)
    case list([DefinitionValue])
    case map([DefinitionField])
}

/// One key of a ``DefinitionValue/map(_:)``.
public struct DefinitionField: Hashable, Sendable {
    public var key: String
    public var value: DefinitionValue

    public init(_ key: String, _ value: DefinitionValue) {
        self.key = key
        self.value = value
    }
}

/// Writes definitions in their file shape (see ``DefinitionValue``).
public enum DefinitionWriter {
    /// Whether webhook secrets are written: not when the reader may see the definition but not its secrets.
    public enum Secrets: Sendable { case include, omit }

    public static func write(_ test: TestDefinition) -> DefinitionValue {
        var fields = header("test", test.id.rawValue, test.name, test.description)
        if !test.inputs.isEmpty {
            fields.append(
                DefinitionField(
                    "inputs",
                    .list(
                        test.inputs.compactMap { input in
                            // Definitions name git inputs only; file inputs come from dispatches, not files.
                            guard case .git(let git) = input else { return nil }
                            var keys = [DefinitionField("url", .text(git.url))]
                            if let ref = git.ref { keys.append(DefinitionField("ref", .text(ref))) }
                            if let path = git.path { keys.append(DefinitionField("path", .text(path))) }
                            if let into = git.into { keys.append(DefinitionField("into", .text(into))) }
                            return .map([DefinitionField("git", .map(keys))])
                        })))
        }
        append(environment: test.env, to: &fields)
        if let timeout = test.timeoutMs { fields.append(DefinitionField("timeout", duration(timeout))) }
        if let expected = test.expectedDurationMs { fields.append(DefinitionField("expectedDuration", duration(expected))) }
        fields.append(DefinitionField("stages", .list(test.stages.map(write))))
        return .map(fields)
    }

    static func write(_ stage: Stage) -> DefinitionValue {
        var fields = [DefinitionField("name", .text(stage.name)), DefinitionField("run", .text(stage.run))]
        if let stop = stage.stop { fields.append(DefinitionField("stop", .text(stop))) }
        if let cwd = stage.cwd { fields.append(DefinitionField("cwd", .text(cwd))) }
        append(environment: stage.env, to: &fields)
        if let timeout = stage.timeoutMs { fields.append(DefinitionField("timeout", duration(timeout))) }
        if !stage.mandatory { fields.append(DefinitionField("mandatory", .bool(false))) }
        if let report = stage.report {
            var keys = [DefinitionField("format", .text(report.format.rawValue))]
            if let path = report.path { keys.append(DefinitionField("path", .text(path))) }
            fields.append(DefinitionField("report", .map(keys)))
        }
        return .map(fields)
    }

    public static func write(_ suite: SuiteDefinition) -> DefinitionValue {
        var fields = header("suite", suite.id.rawValue, suite.name, suite.description)
        fields.append(DefinitionField("tests", .list(suite.tests.map { .text($0.rawValue) })))
        return .map(fields)
    }

    public static func write(_ configuration: ConfigurationDefinition) -> DefinitionValue {
        var fields = header("configuration", configuration.id.rawValue, configuration.name, configuration.description)
        let selector = configuration.selector
        if !selector.machines.isEmpty {
            fields.append(DefinitionField("machines", .list(selector.machines.map { .text($0.rawValue) })))
        }
        if !selector.groups.isEmpty {
            fields.append(DefinitionField("groups", .list(selector.groups.map { .text($0.rawValue) })))
        }
        if !selector.tags.isEmpty {
            fields.append(
                DefinitionField("tags", .map(selector.tags.sorted { $0.key < $1.key }.map { DefinitionField($0.key, .text($0.value)) })))
        }
        append(environment: configuration.env, to: &fields)
        if let provision = configuration.provision {
            fields.append(
                DefinitionField(
                    "provision",
                    .map([
                        DefinitionField("create", .text(provision.create)),
                        DefinitionField("destroy", .text(provision.destroy)),
                        DefinitionField("vmTimeout", duration(provision.vmTimeoutMs)),
                        DefinitionField("commandTimeout", duration(provision.commandTimeoutMs)),
                    ])))
        }
        return .map(fields)
    }

    public static func write(_ scenario: ScenarioDefinition, secrets: Secrets) -> DefinitionValue {
        var fields = header("scenario", scenario.id.rawValue, scenario.name, scenario.description)
        fields.append(DefinitionField("suite", .text(scenario.suite.rawValue)))
        fields.append(DefinitionField("configuration", .text(scenario.configuration.rawValue)))
        fields.append(DefinitionField("runMode", .text(scenario.runMode.rawValue)))
        fields.append(
            DefinitionField(
                "timeouts",
                .map([
                    DefinitionField("pending", duration(scenario.pendingTimeoutMs)),
                    DefinitionField("running", duration(scenario.runningTimeoutMs)),
                ])))
        append(environment: scenario.env, to: &fields)
        if let schedule = scenario.schedule {
            var keys: [DefinitionField] = []
            if let cron = schedule.cron { keys.append(DefinitionField("cron", .text(cron))) }
            if let at = schedule.at { keys.append(DefinitionField("at", .text(at.description))) }
            fields.append(DefinitionField("schedule", .map(keys)))
        }
        if !scenario.webhooks.isEmpty {
            fields.append(
                DefinitionField(
                    "webhooks",
                    .list(
                        scenario.webhooks.map { webhook in
                            var keys = [
                                DefinitionField("url", .text(webhook.url)),
                                DefinitionField("on", .list(webhook.on.map { .text($0.rawValue) })),
                            ]
                            if secrets == .include, let secret = webhook.secret {
                                keys.append(DefinitionField("secret", .text(secret)))
                            }
                            return .map(keys)
                        })))
        }
        if !scenario.chain.isEmpty {
            fields.append(
                DefinitionField(
                    "chain",
                    .list(
                        scenario.chain.map { link in
                            .map([
                                DefinitionField("scenario", .text(link.scenario.rawValue)),
                                DefinitionField("on", .list(link.on.map { .text($0.rawValue) })),
                            ])
                        })))
        }
        return .map(fields)
    }

    /// A duration in the largest unit that states it exactly: `2h`, `90m`, `45s`, `250ms`.
    public static func duration(_ milliseconds: Milliseconds) -> DefinitionValue {
        let value = milliseconds.value
        for (unit, size) in [("h", UInt64(3_600_000)), ("m", 60_000), ("s", 1000)] where value % size == 0 {
            return .text("\(value / size)\(unit)")
        }
        return .text("\(value)ms")
    }

    private static func header(_ kind: String, _ id: String, _ name: String, _ description: String?) -> [DefinitionField] {
        var fields = [DefinitionField("kind", .text(kind)), DefinitionField("id", .text(id))]
        if name != id { fields.append(DefinitionField("name", .text(name))) }
        if let description { fields.append(DefinitionField("description", .text(description))) }
        return fields
    }

    private static func append(environment: [String: String], to fields: inout [DefinitionField]) {
        guard !environment.isEmpty else { return }
        fields.append(
            DefinitionField("env", .map(environment.sorted { $0.key < $1.key }.map { DefinitionField($0.key, .text($0.value)) })))
    }
}
