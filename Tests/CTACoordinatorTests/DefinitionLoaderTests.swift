import CTACore
import Foundation
import Testing

@testable import CTACoordinator
import CTADefinitions

@Suite("Definition loader: every field read")
struct DefinitionLoaderTests {
    /// A document of each kind with every key.
    static let everyKey = """
        kind: test
        id: login-ui
        name: Login through the web form
        description: A known user logs in and sees the dashboard
        inputs:
          - git: {url: "https://git.example.com/qa/login-tests.git", ref: main, path: ui, into: src}
          - git:
              url: https://git.example.com/qa/fixtures.git
        env:
          BROWSER: firefox
          RETRIES: 3
          EMPTY:
        timeout: 10m
        expectedDuration: 1m35s
        stages:
          - name: setup
            run: npm ci
            cwd: src
            timeout: 5m
          - name: test
            run: |
              npx playwright test \\
                --reporter=junit
            stop: pkill -INT -f playwright
            cwd: src
            env:
              PLAYWRIGHT_JUNIT_OUTPUT_NAME: results.xml
            mandatory: false
            report: {format: junit, path: results.xml}
          - name: prove
            run: prove -v t/login.t
            mandatory: yes
            report:
              format: tap
        ---
        kind: suite
        id: login-suite
        name: Login
        description: Everything about logging in
        tests: [login-ui]
        ---
        kind: configuration
        id: linux-firefox
        name: Linux with Firefox
        description: Lab machines with a display
        machines: [lab-01, lab-02, lab-01]
        groups:
          - linux-pool
        tags:
          browser: firefox
          display: "*"
          cores: 8
        env:
          TARGET_URL: https://staging.example.com
        ---
        kind: scenario
        id: nightly-login
        name: Nightly login checks
        description: Every weekday night
        suite: login-suite
        configuration: linux-firefox
        runMode: group
        timeouts: {pending: 30m, running: 2h}
        env: {LEVEL: full}
        schedule:
          cron: "0 2 * * 1-5"
          at: 2025-03-14T09:00:00Z
        webhooks:
          - url: https://hooks.example.com/cta
            on: [finished, timeout, finished]
            secret: s3cret
          - url: http://localhost:8080/hook
        chain:
          - scenario: cleanup
            on: [finished, cancelled]
          - scenario: cleanup
        ---
        kind: scenario
        id: cleanup
        suite: login-suite
        configuration: linux-firefox
        runMode: mono
        schedule: {cron: "@daily"}
        """

    @Test("a document of each kind, with every key, maps onto the model")
    func everyField() throws {
        let text = Self.everyKey
        let set = try DefinitionLoader.load(text: text, path: "all.yaml")

        let test = TestDefinition(
            id: TestID(unchecked: "login-ui"),
            name: "Login through the web form",
            description: "A known user logs in and sees the dashboard",
            stages: [
                Stage(name: "setup", run: "npm ci", cwd: "src", timeoutMs: Milliseconds(300_000)),
                Stage(
                    name: "test", run: "npx playwright test \\\n  --reporter=junit\n", stop: "pkill -INT -f playwright",
                    cwd: "src", env: ["PLAYWRIGHT_JUNIT_OUTPUT_NAME": "results.xml"], mandatory: false,
                    report: ReportSpec(format: .junit, path: "results.xml")),
                Stage(name: "prove", run: "prove -v t/login.t", mandatory: true, report: ReportSpec(format: .tap)),
            ],
            inputs: [
                .git(GitInput(url: "https://git.example.com/qa/login-tests.git", ref: "main", path: "ui", into: "src")),
                .git(GitInput(url: "https://git.example.com/qa/fixtures.git")),
            ],
            env: ["BROWSER": "firefox", "RETRIES": "3", "EMPTY": ""],
            timeoutMs: Milliseconds(600_000),
            expectedDurationMs: Milliseconds(95_000)
        )
        #expect(set.tests == [test.id: test])

        let suite = SuiteDefinition(
            id: SuiteID(unchecked: "login-suite"), name: "Login", description: "Everything about logging in",
            tests: [test.id])
        #expect(set.suites == [suite.id: suite])

        let configuration = ConfigurationDefinition(
            id: ConfigurationID(unchecked: "linux-firefox"),
            name: "Linux with Firefox",
            description: "Lab machines with a display",
            selector: MachineSelector(
                machines: [MachineName(unchecked: "lab-01"), MachineName(unchecked: "lab-02")],
                groups: [GroupName(unchecked: "linux-pool")],
                tags: ["browser": "firefox", "display": "*", "cores": "8"]),
            env: ["TARGET_URL": "https://staging.example.com"]
        )
        #expect(set.configurations == [configuration.id: configuration])

        let at = try #require(Timestamp(rfc3339: "2025-03-14T09:00:00Z"))
        let nightly = ScenarioDefinition(
            id: ScenarioID(unchecked: "nightly-login"),
            name: "Nightly login checks",
            description: "Every weekday night",
            suite: suite.id,
            configuration: configuration.id,
            runMode: .group,
            pendingTimeoutMs: Milliseconds(1_800_000),
            runningTimeoutMs: Milliseconds(7_200_000),
            env: ["LEVEL": "full"],
            schedule: ScenarioSchedule(cron: "0 2 * * 1-5", at: at),
            webhooks: [
                WebhookDefinition(url: "https://hooks.example.com/cta", on: [.finished, .timeout], secret: "s3cret"),
                WebhookDefinition(url: "http://localhost:8080/hook"),
            ],
            chain: [
                ChainedScenario(scenario: ScenarioID(unchecked: "cleanup"), on: [.finished, .cancelled]),
                ChainedScenario(scenario: ScenarioID(unchecked: "cleanup")),
            ]
        )
        let cleanup = ScenarioDefinition(
            id: ScenarioID(unchecked: "cleanup"), name: "cleanup", suite: suite.id, configuration: configuration.id,
            runMode: .mono, schedule: ScenarioSchedule(cron: "@daily"))
        #expect(set.scenarios == [nightly.id: nightly, cleanup.id: cleanup])
    }

    @Test("absent keys take their defaults: name is the id, stages are mandatory, timeouts are an hour")
    func defaults() throws {
        let set = try loadWithBase(
            """
            kind: scenario
            id: plain
            suite: suite1
            configuration: anywhere
            runMode: parallel
            description: ~
            env:
            """)
        let scenario = try #require(set.scenarios[ScenarioID(unchecked: "plain")])
        #expect(scenario.name == "plain" && scenario.description == nil)
        #expect(scenario.pendingTimeoutMs == Milliseconds(3_600_000))
        #expect(scenario.runningTimeoutMs == Milliseconds(3_600_000))
        #expect(scenario.env.isEmpty && scenario.schedule == nil && scenario.webhooks.isEmpty && scenario.chain.isEmpty)
        let test = try #require(set.tests[TestID(unchecked: "t1")])
        #expect(test.name == "t1" && test.stages[0].mandatory && test.stages[0].report == nil)
        #expect(test.timeoutMs == nil && test.expectedDurationMs == nil && test.inputs.isEmpty)
        let anywhere = try #require(set.configurations[ConfigurationID(unchecked: "anywhere")])
        #expect(anywhere.selector == MachineSelector() && anywhere.name == "anywhere")
    }

    @Test(
        "durations take h, m, s and ms, largest first",
        arguments: [
            ("250ms", 250), ("90s", 90_000), ("10m", 600_000), ("2h", 7_200_000), ("1h30m", 5_400_000),
            ("1m30s250ms", 90_250), ("48h", 172_800_000),
        ] as [(String, UInt64)])
    func durations(text: String, milliseconds: UInt64) throws {
        let set = try loadWithBase("kind: test\nid: timed\ntimeout: \(text)\nstages: [{name: s, run: x}]\n")
        #expect(set.tests[TestID(unchecked: "timed")]?.timeoutMs == Milliseconds(milliseconds))
    }

    @Test(
        "a duration without a unit, with a fraction, zero or of another form is refused with the reason",
        arguments: [
            ("90", #""90" has no unit; add one: 90s, 90m, 90h or 90ms"#),
            ("1.5h", #"expected a duration like 250ms, 90s, 10m, 2h or 1h30m, got "1.5h""#),
            ("10 m", #"expected a duration like 250ms, 90s, 10m, 2h or 1h30m, got "10 m""#),
            ("30s1m", #"expected a duration like 250ms, 90s, 10m, 2h or 1h30m, got "30s1m""#),
            ("5d", #"expected a duration like 250ms, 90s, 10m, 2h or 1h30m, got "5d""#),
            ("0s", "must be greater than 0"),
            ("[1s]", "expected a duration like 250ms, 90s, 10m, 2h or 1h30m, got a list"),
        ])
    func refusedDurations(text: String, message: String) {
        let errors = problems(
            "kind: scenario\nid: s\nsuite: suite1\nconfiguration: anywhere\nrunMode: mono\ntimeouts:\n  running: \(text)\n"
        )
        #expect(errors.map(\.description) == ["defs.yaml:7: scenario s: timeouts.running: \(message)"])
    }
}

@Suite("Definition loader: files and directories")
struct DefinitionFileTests {
    @Test("a directory's *.yaml and *.yml files are read in name order; others, hidden files and subdirectories not")
    func directory() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        func write(_ name: String, _ text: String) throws {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        try write("b.yml", "kind: suite\nid: s\ntests: [one]\n")
        try write("a.yaml", "kind: test\nid: one\nstages: [{name: run, run: \"true\"}]\n")
        try write("notes.txt", "kind: nonsense\n")
        try write(".draft.yaml", "kind: nonsense\n")
        try write("nested/c.yaml", "kind: nonsense\n")
        let set = try DefinitionLoader.load(path: directory.path)
        #expect(Set(set.tests.keys) == [TestID(unchecked: "one")])
        #expect(set.suites[SuiteID(unchecked: "s")]?.tests == [TestID(unchecked: "one")])

        // The same id in both files: the later file in name order is the one blamed, with its joined path.
        try write("c.yaml", "# again\nkind: test\nid: one\nstages: [{name: run, run: \"false\"}]\n")
        do throws(DefinitionErrors) {
            _ = try DefinitionLoader.load(path: directory.path + "/")
            Issue.record("loaded a duplicate id")
        } catch {
            #expect(
                error.errors.map(\.description) == [
                    "\(directory.path)/c.yaml:3: test one: id: test \"one\" is also defined at \(directory.path)/a.yaml:2"
                ])
            #expect(error.errors.first?.code == .duplicateID)
        }
    }

    @Test("a missing path, an empty directory and a file that is not UTF-8 are errors naming the path")
    func unreadable() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("missing.yaml").path
        let binary = directory.appendingPathComponent("binary.yaml")
        try Data([0x6b, 0x69, 0xff, 0xfe]).write(to: binary)
        let empty = directory.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        do throws(DefinitionErrors) {
            _ = try DefinitionLoader.load(paths: [missing, binary.path, empty.path])
            Issue.record("loaded unreadable paths")
        } catch {
            #expect(
                error.errors.map(\.description) == [
                    "\(binary.path): not UTF-8 text",
                    "\(empty.path): no definition files (*.yaml, *.yml) in this directory",
                    "\(missing): no such file or directory",
                ])
            #expect(error.errors.allSatisfy { $0.code == .unreadable && $0.line == nil })
        }
    }

    @Test("the examples load without errors: eight tests, one suite, the demo pool and four scenarios")
    func examples() throws {
        let set = try DefinitionLoader.load(path: RepositoryFile.path("examples"))
        let modes = set.scenarios.mapValues(\.runMode)
        #expect(
            modes == [
                ScenarioID(unchecked: "example-parallel"): .parallel, ScenarioID(unchecked: "example-stress"): .stress,
                ScenarioID(unchecked: "example-mono"): .mono, ScenarioID(unchecked: "example-group"): .group,
            ])
        let suite = try #require(set.suites[SuiteID(unchecked: "example-suite")])
        #expect(suite.tests.count == 8 && Set(suite.tests) == Set(set.tests.keys))
        let pool = try #require(set.configurations[ConfigurationID(unchecked: "demo-pool")])
        #expect(pool.selector.groups == [GroupName(unchecked: "demo-pool")] && pool.selector.tags == ["os": "linux"])
        for scenario in set.scenarios.values {
            #expect(scenario.suite == suite.id && scenario.configuration == pool.id)
            #expect(scenario.runningTimeoutMs <= Milliseconds(3_600_000))
        }
        let reports = set.tests.values.flatMap(\.stages).compactMap(\.report)
        #expect(reports.contains(ReportSpec(format: .junit, path: "results.xml")))
        #expect(reports.contains(ReportSpec(format: .tap)))
        #expect(set.tests[TestID(unchecked: "two-seconds")]?.expectedDurationMs == Milliseconds(2000))
        #expect(
            set.scenarios[ScenarioID(unchecked: "example-mono")]?.chain.map(\.scenario) == [
                ScenarioID(unchecked: "example-group")
            ])
    }

    @Test("written back in file shape, every definition loads again to the same model; webhook secrets only on request")
    func writtenBackLoadsTheSame() throws {
        var examples: [DefinitionSource] = []
        for file in ["configuration.yaml", "scenarios.yaml", "suite.yaml", "tests-system.yaml", "tests-tools.yaml"] {
            let path = RepositoryFile.path("examples/" + file)
            examples.append(DefinitionSource(path: path, text: try String(contentsOfFile: path, encoding: .utf8)))
        }
        for sources in [[DefinitionSource(path: "all.yaml", text: DefinitionLoaderTests.everyKey)], examples] {
            let set = try DefinitionLoader.load(sources: sources)
            #expect(!set.tests.isEmpty && !set.scenarios.isEmpty)
            var documents: [DefinitionValue] = []
            documents += set.tests.values.map { DefinitionWriter.write($0) }
            documents += set.suites.values.map { DefinitionWriter.write($0) }
            documents += set.configurations.values.map { DefinitionWriter.write($0) }
            documents += set.scenarios.values.map { DefinitionWriter.write($0, secrets: .include) }
            // JSON is YAML: the API takes the written shape as JSON.
            let text = documents.map(Self.json).joined(separator: "\n---\n")
            var again = try DefinitionLoader.load(sources: [DefinitionSource(path: "written.yaml", text: text)])
            again.owners = set.owners
            #expect(again == set, "\(sources.map(\.path))")
        }
        let scenario = try #require(
            try DefinitionLoader.load(text: DefinitionLoaderTests.everyKey, path: "all.yaml").scenarios[ScenarioID(unchecked: "nightly-login")])
        #expect(Self.json(DefinitionWriter.write(scenario, secrets: .include)).contains("s3cret"))
        #expect(!Self.json(DefinitionWriter.write(scenario, secrets: .omit)).contains("secret"))
        #expect(DefinitionWriter.duration(Milliseconds(5_400_000)) == .text("90m"))
        #expect(DefinitionWriter.duration(Milliseconds(1500)) == .text("1500ms"))
        #expect(DefinitionWriter.duration(Milliseconds(7_200_000)) == .text("2h"))
    }

    static func json(_ value: DefinitionValue) -> String {
        switch value {
        case .text(let text):
            let data = try? JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])
            return String(decoding: (data ?? Data()).dropFirst().dropLast(), as: UTF8.self)
        case .bool(let flag): return flag ? "true" : "false"
        case .list(let items): return "[" + items.map(json).joined(separator: ",") + "]"
        case .map(let fields): return "{" + fields.map { json(.text($0.key)) + ":" + json($0.value) }.joined(separator: ",") + "}"
        }
    }
}
