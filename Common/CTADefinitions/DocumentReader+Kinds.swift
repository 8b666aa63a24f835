import CTACore
import CTAYAML
import Foundation

// What each kind of document holds. Each reader reports every problem it finds and returns a definition built from
// what it could read; the caller keeps that definition only when the document had no problem.

extension DocumentReader {
    static let testKeys = [
        "kind", "id", "name", "description", "stages", "inputs", "env", "timeout", "expectedDuration", "owners",
    ]
    static let stageKeys = ["name", "run", "stop", "cwd", "env", "timeout", "mandatory", "report"]
    static let reportKeys = ["format", "path"]
    static let inputKeys = ["git"]
    static let gitKeys = ["url", "ref", "path", "into"]
    static let suiteKeys = ["kind", "id", "name", "description", "tests", "owners"]
    static let configurationKeys = [
        "kind", "id", "name", "description", "machines", "groups", "tags", "env", "provision", "owners",
    ]
    static let provisionKeys = ["create", "destroy", "vmTimeout", "commandTimeout"]
    static let scenarioKeys = [
        "kind", "id", "name", "description", "suite", "configuration", "runMode", "timeouts", "env", "schedule",
        "webhooks", "chain", "owners",
    ]
    static let timeoutKeys = ["pending", "running"]
    static let scheduleKeys = ["cron", "at"]
    static let webhookKeys = ["url", "on", "secret"]
    static let chainKeys = ["scenario", "on"]

    /// The default pending and running timeouts of a scenario.
    static let defaultTimeout = Milliseconds(3_600_000)

    /// The cron macros a schedule may use instead of five fields.
    static let cronMacros = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]

    /// The end states webhooks and chains may name.
    static let endPhases: [ExecutionPhase] = [.finished, .cancelled, .timeout]

    // MARK: Shared

    /// `name` (default: the identifier) and `description`.
    private mutating func header(_ fields: Fields, id: String?, nameLimit: Int? = nil) -> (String, String?) {
        var name = id ?? ""
        if let node = fields["name"], let text = text(node, fields.path.appending("name"), limit: nameLimit) {
            name = text
        }
        var description: String?
        if let node = fields["description"] {
            description = scalar(node, fields.path.appending("description"), expected: "text")
        }
        return (name, description)
    }

    /// A required reference to another definition, remembered for the loader's check.
    private mutating func reference<ID: DefinitionIdentifier>(
        _ node: YAMLNode,
        _ path: YAMLPath,
        _ type: ID.Type,
        kind: DefinitionKind
    ) -> ID? {
        guard let id = identifier(node, path, type) else { return nil }
        references.append(ReadDocument.Reference(kind: kind, id: id.rawValue, line: node.line, path: path))
        return id
    }

    // MARK: test

    mutating func readTest(_ root: YAMLNode) -> TestDefinition? {
        guard let fields = fields(root, .root, known: Self.testKeys, what: "a test") else { return nil }
        let id = documentID(fields, TestID.self)
        let (name, description) = header(fields, id: id?.rawValue, nameLimit: TestDefinition.maximumNameBytes)
        var stages: [Stage] = []
        if let node = required(fields, "stages"), let items = list(node, fields.path.appending("stages"), of: "stages")
        {
            if items.isEmpty {
                fail(.invalidValue, node.line, fields.path.appending("stages"), "a test needs at least one stage")
            }
            var names: [String: Int] = [:]
            for (index, item) in items.enumerated() {
                let path = fields.path.appending("stages").appending(index: index)
                guard let stage = readStage(item, path) else { continue }
                if let first = names[stage.name] {
                    let line = item.mapping?.first { $0.name == "name" }?.value.line ?? item.line
                    fail(
                        .invalidValue, line, path.appending("name"),
                        "stage name \(YAMLNode.quoted(stage.name)) is already used by stages[\(first)]")
                } else {
                    names[stage.name] = index
                }
                stages.append(stage)
            }
        }
        var inputs: [TestInput] = []
        if let node = fields["inputs"], let items = list(node, fields.path.appending("inputs"), of: "inputs") {
            for (index, item) in items.enumerated() {
                if let input = readInput(item, fields.path.appending("inputs").appending(index: index)) {
                    inputs.append(input)
                }
            }
        }
        let env = fields["env"].map { environment($0, fields.path.appending("env")) } ?? [:]
        let timeout = fields["timeout"].flatMap { duration($0, fields.path.appending("timeout")) }
        let expected = fields["expectedDuration"].flatMap { duration($0, fields.path.appending("expectedDuration")) }
        guard let id else { return nil }
        return TestDefinition(
            id: id, name: name, description: description, stages: stages, inputs: inputs, env: env,
            timeoutMs: timeout, expectedDurationMs: expected)
    }

    private mutating func readStage(_ node: YAMLNode, _ path: YAMLPath) -> Stage? {
        guard let fields = fields(node, path, known: Self.stageKeys, what: "a stage") else { return nil }
        let name = required(fields, "name").flatMap { text($0, path.appending("name"), limit: Stage.maximumNameBytes) }
        let run = required(fields, "run").flatMap { nonEmpty($0, path.appending("run")) }
        let stop = fields["stop"].flatMap { nonEmpty($0, path.appending("stop")) }
        let cwd = fields["cwd"].flatMap { relativePath($0, path.appending("cwd")) }
        let env = fields["env"].map { environment($0, path.appending("env")) } ?? [:]
        let timeout = fields["timeout"].flatMap { duration($0, path.appending("timeout")) }
        let mandatory = fields["mandatory"].flatMap { bool($0, path.appending("mandatory")) } ?? true
        let report = fields["report"].flatMap { readReport($0, path.appending("report")) }
        guard let name, let run else { return nil }
        return Stage(
            name: name, run: run, stop: stop, cwd: cwd, env: env, timeoutMs: timeout, mandatory: mandatory,
            report: report)
    }

    private mutating func readReport(_ node: YAMLNode, _ path: YAMLPath) -> ReportSpec? {
        guard let fields = fields(node, path, known: Self.reportKeys, what: "a report") else { return nil }
        let format = required(fields, "format").flatMap {
            choice($0, path.appending("format"), among: ReportFormat.allCases)
        }
        let file = fields["path"].flatMap { relativePath($0, path.appending("path")) }
        guard let format else { return nil }
        if format == .junit, fields.entry("path") == nil {
            fail(.missingKey, fields.line, path.appending("path"), "a JUnit report needs the path of its file")
            return nil
        }
        return ReportSpec(format: format, path: file)
    }

    private mutating func readInput(_ node: YAMLNode, _ path: YAMLPath) -> TestInput? {
        guard let fields = fields(node, path, known: Self.inputKeys, what: "an input (git: {url, ref, path, into})"),
            let gitNode = required(fields, "git")
        else { return nil }
        let gitPath = path.appending("git")
        guard let git = self.fields(gitNode, gitPath, known: Self.gitKeys, what: "a git input") else { return nil }
        let url = required(git, "url").flatMap { text($0, gitPath.appending("url"), limit: GitInput.maximumURLBytes) }
        let ref = git["ref"].flatMap { text($0, gitPath.appending("ref"), limit: GitInput.maximumRefBytes) }
        let subdirectory = git["path"].flatMap { relativePath($0, gitPath.appending("path")) }
        let into = git["into"].flatMap { relativePath($0, gitPath.appending("into")) }
        guard let url else { return nil }
        return .git(GitInput(url: url, ref: ref, path: subdirectory, into: into))
    }

    // MARK: suite

    mutating func readSuite(_ root: YAMLNode) -> SuiteDefinition? {
        guard let fields = fields(root, .root, known: Self.suiteKeys, what: "a suite") else { return nil }
        let id = documentID(fields, SuiteID.self)
        let (name, description) = header(fields, id: id?.rawValue)
        var tests: [TestID] = []
        let testsPath = fields.path.appending("tests")
        if let node = required(fields, "tests"), let items = list(node, testsPath, of: "test ids") {
            if items.isEmpty { fail(.invalidValue, node.line, testsPath, "a suite needs at least one test") }
            var lines: [TestID: Int] = [:]
            for (index, item) in items.enumerated() {
                guard let test = reference(item, testsPath.appending(index: index), TestID.self, kind: .test) else {
                    continue
                }
                if let first = lines[test] {
                    fail(
                        .invalidValue, item.line, testsPath.appending(index: index),
                        "test \(YAMLNode.quoted(test.rawValue)) is already listed at line \(first)")
                    continue
                }
                lines[test] = item.line
                tests.append(test)
            }
        }
        guard let id else { return nil }
        return SuiteDefinition(id: id, name: name, description: description, tests: tests)
    }

    // MARK: configuration

    mutating func readConfiguration(_ root: YAMLNode) -> ConfigurationDefinition? {
        guard let fields = fields(root, .root, known: Self.configurationKeys, what: "a configuration") else {
            return nil
        }
        let id = documentID(fields, ConfigurationID.self)
        let (name, description) = header(fields, id: id?.rawValue)
        let machines = fields["machines"].map { names($0, fields.path.appending("machines"), MachineName.self) } ?? []
        let groups = fields["groups"].map { names($0, fields.path.appending("groups"), GroupName.self) } ?? []
        let tags = fields["tags"].map { readTags($0, fields.path.appending("tags")) } ?? [:]
        let env = fields["env"].map { environment($0, fields.path.appending("env")) } ?? [:]
        let provision = fields["provision"].flatMap { readProvision($0, fields.path.appending("provision")) }
        guard let id else { return nil }
        return ConfigurationDefinition(
            id: id, name: name, description: description,
            selector: MachineSelector(machines: machines, groups: groups, tags: tags), env: env, provision: provision)
    }

    /// `provision`: `create` and `destroy` commands and the `vmTimeout` are required; `commandTimeout` defaults
    /// to five minutes.
    private mutating func readProvision(_ node: YAMLNode, _ path: YAMLPath) -> ProvisionDefinition? {
        guard let fields = fields(node, path, known: Self.provisionKeys, what: "a provision") else { return nil }
        let create = required(fields, "create").flatMap { text($0, path.appending("create")) }
        let destroy = required(fields, "destroy").flatMap { text($0, path.appending("destroy")) }
        let vmTimeout = required(fields, "vmTimeout").flatMap { duration($0, path.appending("vmTimeout")) }
        let commandTimeout = fields["commandTimeout"].flatMap { duration($0, path.appending("commandTimeout")) }
        guard let create, let destroy, let vmTimeout else { return nil }
        return ProvisionDefinition(
            create: create, destroy: destroy, vmTimeoutMs: vmTimeout,
            commandTimeoutMs: commandTimeout ?? Milliseconds(300_000))
    }

    /// Tags a machine must have: name → value, `"*"` for any value. Names and values follow the agent's rule: names
    /// of 1 to 128 bytes, neither with control characters.
    private mutating func readTags(_ node: YAMLNode, _ path: YAMLPath) -> [String: String] {
        guard let entries = node.mapping else {
            fail(.wrongType, node.line, path, "expected a mapping of tag names to values, got \(node.shape)")
            return [:]
        }
        var tags: [String: String] = [:]
        for entry in entries {
            guard let name = entry.name else {
                fail(.wrongType, entry.key.line, path, "expected tag names, got \(entry.key.shape) as a key")
                continue
            }
            let tagPath = path.appending(name)
            if let problem = ValueRules.textProblem(name, limit: 128) {
                fail(.invalidValue, entry.key.line, tagPath, "tag name \(problem)")
                continue
            }
            if entry.value.isNull {
                fail(.missingKey, entry.key.line, tagPath, "give the value the tag must have, or \"*\" for any value")
                continue
            }
            guard let value = scalar(entry.value, tagPath, expected: "a single value") else { continue }
            if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                fail(.invalidValue, entry.value.line, tagPath, "must not contain control characters")
                continue
            }
            tags[name] = value
        }
        return tags
    }

    // MARK: scenario

    mutating func readScenario(_ root: YAMLNode) -> ScenarioDefinition? {
        guard let fields = fields(root, .root, known: Self.scenarioKeys, what: "a scenario") else { return nil }
        let path = fields.path
        let id = documentID(fields, ScenarioID.self)
        let (name, description) = header(fields, id: id?.rawValue)
        let suite = required(fields, "suite").flatMap {
            reference($0, path.appending("suite"), SuiteID.self, kind: .suite)
        }
        let configuration = required(fields, "configuration").flatMap {
            reference($0, path.appending("configuration"), ConfigurationID.self, kind: .configuration)
        }
        let runModeNode = required(fields, "runMode")
        let runMode = runModeNode.flatMap { choice($0, path.appending("runMode"), among: RunMode.allCases) }
        if let runMode, let runModeNode, let configuration {
            runModeUse = ReadDocument.RunModeUse(
                mode: runMode, configuration: configuration.rawValue, line: runModeNode.line,
                path: path.appending("runMode"))
        }
        var pending = Self.defaultTimeout
        var running = Self.defaultTimeout
        if let node = fields["timeouts"],
            let timeouts = self.fields(node, path.appending("timeouts"), known: Self.timeoutKeys, what: "timeouts")
        {
            pending = timeouts["pending"].flatMap { duration($0, timeouts.path.appending("pending")) } ?? pending
            running = timeouts["running"].flatMap { duration($0, timeouts.path.appending("running")) } ?? running
        }
        let env = fields["env"].map { environment($0, path.appending("env")) } ?? [:]
        let schedule = fields["schedule"].flatMap { readSchedule($0, path.appending("schedule")) }
        var webhooks: [WebhookDefinition] = []
        if let node = fields["webhooks"], let items = list(node, path.appending("webhooks"), of: "webhooks") {
            for (index, item) in items.enumerated() {
                if let webhook = readWebhook(item, path.appending("webhooks").appending(index: index)) {
                    webhooks.append(webhook)
                }
            }
        }
        var chain: [ChainedScenario] = []
        if let node = fields["chain"], let items = list(node, path.appending("chain"), of: "chained scenarios") {
            for (index, item) in items.enumerated() {
                if let link = readChain(item, path.appending("chain").appending(index: index), from: id) {
                    chain.append(link)
                }
            }
        }
        guard let id, let suite, let configuration, let runMode else { return nil }
        return ScenarioDefinition(
            id: id, name: name, description: description, suite: suite, configuration: configuration,
            runMode: runMode, pendingTimeoutMs: pending, runningTimeoutMs: running, env: env, schedule: schedule,
            webhooks: webhooks, chain: chain)
    }

    private mutating func readSchedule(_ node: YAMLNode, _ path: YAMLPath) -> ScenarioSchedule? {
        guard let fields = fields(node, path, known: Self.scheduleKeys, what: "a schedule") else { return nil }
        if fields["cron"] == nil, fields["at"] == nil {
            fail(.missingKey, node.line, path, "a schedule needs cron, at, or both")
            return nil
        }
        var schedule = ScenarioSchedule()
        if let cronNode = fields["cron"],
            let cron = scalar(cronNode, path.appending("cron"), expected: "a cron expression")
        {
            if let problem = Self.cronProblem(cron) {
                fail(.invalidValue, cronNode.line, path.appending("cron"), problem)
            } else {
                schedule.cron = cron
            }
        }
        if let atNode = fields["at"], let at = scalar(atNode, path.appending("at"), expected: "a time") {
            if let time = Timestamp(rfc3339: at) {
                schedule.at = time
            } else {
                fail(
                    .invalidValue, atNode.line, path.appending("at"),
                    "expected an RFC 3339 time like 2025-03-14T09:00:00Z, got \(YAMLNode.quoted(at))")
            }
        }
        return schedule
    }

    /// Why `text` is not five whitespace-separated cron fields or a macro, or nil. The fields themselves are parsed
    /// by the scheduler.
    static func cronProblem(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return "must not be empty" }
        if trimmed.hasPrefix("@") {
            if cronMacros.contains(trimmed) { return nil }
            return
                "unknown cron macro \(YAMLNode.quoted(trimmed)); the macros are \(cronMacros.joined(separator: ", "))"
        }
        let count = trimmed.split(whereSeparator: { $0.isWhitespace }).count
        if count == 5 { return nil }
        return "expected 5 cron fields (minute hour day-of-month month day-of-week) or a macro such as @daily, "
            + "got \(count) field\(count == 1 ? "" : "s")"
    }

    private mutating func readWebhook(_ node: YAMLNode, _ path: YAMLPath) -> WebhookDefinition? {
        guard let fields = fields(node, path, known: Self.webhookKeys, what: "a webhook") else { return nil }
        var url: String?
        if let urlNode = required(fields, "url"), let text = text(urlNode, path.appending("url"), limit: 2048) {
            if let components = URLComponents(string: text),
                let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http",
                let host = components.host, !host.isEmpty
            {
                url = text
            } else {
                fail(
                    .invalidValue, urlNode.line, path.appending("url"),
                    "expected an https:// (or http://) URL with a host, got \(YAMLNode.quoted(text))")
            }
        }
        let on = fields["on"].map { phases($0, path.appending("on")) } ?? []
        let secret = fields["secret"].flatMap { nonEmpty($0, path.appending("secret")) }
        guard let url else { return nil }
        return WebhookDefinition(url: url, on: on, secret: secret)
    }

    private mutating func readChain(_ node: YAMLNode, _ path: YAMLPath, from scenario: ScenarioID?) -> ChainedScenario?
    {
        guard let fields = fields(node, path, known: Self.chainKeys, what: "a chained scenario") else { return nil }
        var next: ScenarioID?
        let targetPath = path.appending("scenario")
        if let target = required(fields, "scenario"), let id = identifier(target, targetPath, ScenarioID.self) {
            if id == scenario {
                fail(.invalidValue, target.line, targetPath, "a scenario cannot chain to itself")
            } else {
                references.append(
                    ReadDocument.Reference(kind: .scenario, id: id.rawValue, line: target.line, path: targetPath))
                next = id
            }
        }
        let on = fields["on"].map { phases($0, path.appending("on")) } ?? []
        guard let next else { return nil }
        return ChainedScenario(scenario: next, on: on)
    }

    /// End states (`finished`, `cancelled`, `timeout`); one given twice counts once.
    private mutating func phases(_ node: YAMLNode, _ path: YAMLPath) -> [ExecutionPhase] {
        guard let items = list(node, path, of: "end states (finished, cancelled, timeout)") else { return [] }
        var phases: [ExecutionPhase] = []
        for (index, item) in items.enumerated() {
            if let phase = choice(item, path.appending(index: index), among: Self.endPhases), !phases.contains(phase) {
                phases.append(phase)
            }
        }
        return phases
    }
}
