import CTACoordinator
import CTACore
import Testing
import CTADefinitions

@Suite("Definition loader: every problem names its file, line and key")
struct DefinitionErrorTests {
    @Test("unknown keys name the closest known key, or list the keys; a missing key names its mapping's line")
    func unknownKeys() {
        let errors = problems(
            """
            kind: scenario
            id: s
            suite: suite1
            configuration: anywhere
            runmode: mono
            colour: blue
            timeouts:
              pendng: 5m
            """)
        #expect(
            errors.map(\.description) == [
                "defs.yaml:1: scenario s: runMode: missing required key",
                "defs.yaml:5: scenario s: runmode: unknown key; did you mean runMode?",
                "defs.yaml:6: scenario s: colour: unknown key; the keys of a scenario are kind, id, name, description, "
                    + "suite, configuration, runMode, timeouts, env, schedule, webhooks, chain, owners",
                "defs.yaml:8: scenario s: timeouts.pendng: unknown key; did you mean pending?",
            ])
        #expect(errors.map(\.code) == [.missingKey, .unknownKey, .unknownKey, .unknownKey])
        #expect(errors.first?.file == "defs.yaml" && errors.first?.line == 1)
        #expect(errors.first?.key == "scenario s: runMode" && errors.first?.message == "missing required key")
    }

    @Test("missing keys, keys without a value, and documents without a known kind")
    func missingKeys() {
        let errors = problems(
            """
            kind: test
            id: t
            stages:
              - name: build
              - run: make
                name:
            ---
            id: x
            stages: []
            ---
            kind: tests
            id: y
            """)
        #expect(
            errors.map(\.description) == [
                "defs.yaml:4: test t: stages[0].run: missing required key",
                "defs.yaml:6: test t: stages[1].name: required key has no value",
                "defs.yaml:8: kind: missing required key; kind is test, suite, configuration or scenario",
                #"defs.yaml:11: kind: expected test, suite, configuration or scenario, got "tests"; did you mean test?"#,
            ])
        #expect(errors.map(\.code) == [.missingKey, .missingKey, .missingKey, .invalidValue])
    }

    @Test("values of the wrong shape say what was expected and what was found")
    func wrongTypes() {
        let errors = problems(
            """
            kind: test
            id: t
            stages: run-it
            env: [A, B]
            inputs:
              - git: https://example.com/repo.git
            ---
            kind: configuration
            id: c
            tags: [os]
            groups: linux
            machines:
              - {name: lab}
            """)
        #expect(
            errors.map(\.description) == [
                #"defs.yaml:3: test t: stages: expected a list of stages, got "run-it"; write [a, b] or one '- a' per line"#,
                "defs.yaml:4: test t: env: expected a mapping of variable names to values, got a list",
                "defs.yaml:6: test t: inputs[0].git: expected a git input (a mapping of url, ref, path, into), got "
                    + #""https://example.com/repo.git""#,
                "defs.yaml:10: configuration c: tags: expected a mapping of tag names to values, got a list",
                #"defs.yaml:11: configuration c: groups: expected a list of group names, got "linux"; write [a, b] or one '- a' per line"#,
                "defs.yaml:13: configuration c: machines[0]: expected a machine name, got a mapping",
            ])
        #expect(errors.allSatisfy { $0.code == .wrongType })
    }

    @Test("stage values: empty commands, escaping and absolute paths, booleans, variable names, report formats")
    func invalidStageValues() {
        let errors = problems(
            """
            kind: test
            id: t
            stages:
              - name: unit
                run: ""
                cwd: ../outside
                mandatory: perhaps
                env: {9LIVES: x, OK_1: y}
                report: {format: junit}
              - name: lint
                run: make lint
                report: {format: xml, path: /tmp/r.xml}
            inputs:
              - git: {url: "https://e.com/r.git", into: /abs}
            """)
        #expect(
            errors.map(\.description) == [
                "defs.yaml:5: test t: stages[0].run: must not be empty",
                #"defs.yaml:6: test t: stages[0].cwd: must not contain a ".." component; got "../outside""#,
                #"defs.yaml:7: test t: stages[0].mandatory: expected true or false, got "perhaps""#,
                #"defs.yaml:8: test t: stages[0].env.9LIVES: "9LIVES" is not a valid environment variable name: "#
                    + "names are ASCII letters, digits and '_', not starting with a digit",
                "defs.yaml:9: test t: stages[0].report.path: a JUnit report needs the path of its file",
                #"defs.yaml:12: test t: stages[1].report.format: expected junit or tap, got "xml""#,
                #"defs.yaml:12: test t: stages[1].report.path: must be a relative path; got "/tmp/r.xml""#,
                #"defs.yaml:14: test t: inputs[0].git.into: must be a relative path; got "/abs""#,
            ])
        #expect(
            errors.map(\.code) == Array(repeating: .invalidValue, count: 4) + [.missingKey]
                + Array(repeating: .invalidValue, count: 3))
    }

    @Test("identifiers, lists, run modes, schedules, webhooks, chains, tags and stage names")
    func invalidValues() {
        let errors = problems(
            """
            kind: suite
            id: ""
            tests: []
            ---
            kind: suite
            id: twice
            tests: [t1, t1]
            ---
            kind: scenario
            id: odd
            suite: suite1
            configuration: anywhere
            runMode: paralel
            schedule:
              cron: "*/5 * * *"
              at: tomorrow
            webhooks:
              - url: ftp://example.com/hook
                on: [running]
            chain:
              - scenario: odd
            ---
            kind: configuration
            id: tagged
            tags: {gpu: }
            ---
            kind: test
            id: stages
            stages:
              - {name: a, run: x}
              - {name: a, run: y}
            """)
        #expect(
            errors.map(\.description) == [
                #"defs.yaml:2: suite: id: suite id must not be empty; got """#,
                "defs.yaml:3: suite: tests: a suite needs at least one test",
                #"defs.yaml:7: suite twice: tests[1]: test "t1" is already listed at line 7"#,
                #"defs.yaml:13: scenario odd: runMode: expected mono, stress, group or parallel, got "paralel"; did you mean parallel?"#,
                "defs.yaml:15: scenario odd: schedule.cron: expected 5 cron fields (minute hour day-of-month month "
                    + "day-of-week) or a macro such as @daily, got 4 fields",
                #"defs.yaml:16: scenario odd: schedule.at: expected an RFC 3339 time like 2025-03-14T09:00:00Z, got "tomorrow""#,
                #"defs.yaml:18: scenario odd: webhooks[0].url: expected an https:// (or http://) URL with a host, got "ftp://example.com/hook""#,
                #"defs.yaml:19: scenario odd: webhooks[0].on[0]: expected finished, cancelled or timeout, got "running""#,
                "defs.yaml:21: scenario odd: chain[0].scenario: a scenario cannot chain to itself",
                #"defs.yaml:25: configuration tagged: tags.gpu: give the value the tag must have, or "*" for any value"#,
                #"defs.yaml:31: test stages: stages[1].name: stage name "a" is already used by stages[0]"#,
            ])
    }

    @Test("a repeated key names the line of the repeat and of the first; the first value counts")
    func duplicateKeys() {
        let errors = problems(
            """
            kind: scenario
            id: s
            suite: suite1
            configuration: anywhere
            runMode: mono
            suite: other
            """)
        #expect(errors.map(\.description) == ["defs.yaml:6: scenario s: suite: duplicate key; first set at line 3"])
        #expect(errors.first?.code == .duplicateKey)
    }

    @Test("a YAML syntax error is reported alone: references are not checked against an incomplete set")
    func syntaxError() throws {
        do throws(DefinitionErrors) {
            _ = try DefinitionLoader.load(sources: [
                DefinitionSource(path: "broken.yaml", text: "kind: test\nid: x\nstages: [\n"),
                DefinitionSource(path: "suite.yaml", text: "kind: suite\nid: s2\ntests: [x, ghost]\n"),
            ])
            Issue.record("loaded broken YAML")
        } catch {
            #expect(error.errors.count == 1)
            let syntax = try #require(error.errors.first)
            #expect(syntax.code == .syntax && syntax.file == "broken.yaml" && syntax.key.isEmpty)
            #expect(syntax.line != nil && syntax.message.hasPrefix("invalid YAML: "))
        }
    }

    @Test("references to nothing name the closest existing identifier")
    func danglingReferences() {
        let errors = problems(
            """
            kind: suite
            id: s2
            tests: [t1, t2]
            ---
            kind: scenario
            id: s
            suite: suite2
            configuration: pol
            runMode: mono
            chain:
              - scenario: nowhere
            """)
        #expect(
            errors.map(\.description) == [
                #"defs.yaml:3: suite s2: tests[1]: no test "t2" is defined; did you mean t1?"#,
                #"defs.yaml:7: scenario s: suite: no suite "suite2" is defined; did you mean suite1?"#,
                #"defs.yaml:8: scenario s: configuration: no configuration "pol" is defined; did you mean pool?"#,
                #"defs.yaml:11: scenario s: chain[0].scenario: no scenario "nowhere" is defined"#,
            ])
        #expect(errors.allSatisfy { $0.code == .unknownReference })
    }

    @Test("group mode needs a configuration with groups; parallel mode may select every matching machine")
    func groupMode() throws {
        let parallel = """
            kind: scenario
            id: p
            suite: suite1
            configuration: anywhere
            runMode: parallel
            ---
            kind: scenario
            id: g2
            suite: suite1
            configuration: pool
            runMode: group
            """
        let set = try loadWithBase(parallel)
        #expect(set.scenarios.count == 2)
        let errors = problems(
            parallel + "\n---\nkind: scenario\nid: g\nsuite: suite1\nconfiguration: anywhere\nrunMode: group\n")
        #expect(
            errors.map(\.description) == [
                "defs.yaml:17: scenario g: runMode: run mode group needs a configuration that names groups; "
                    + #"configuration "anywhere" (base.yaml:16) names none"#
            ])
    }

    @Test("provision: create, destroy and vmTimeout are read; missing ones named; a VM configuration runs mono only")
    func provision() throws {
        let vm = """
            kind: configuration
            id: vm
            provision:
              create: ./vm.sh create "$CTA_VM_NAME"
              destroy: ./vm.sh destroy "$CTA_VM_NAME"
              vmTimeout: 30m
            ---
            kind: scenario
            id: on-vm
            suite: suite1
            configuration: vm
            runMode: mono
            """
        let set = try loadWithBase(vm)
        let provision = try #require(set.configurations[ConfigurationID(unchecked: "vm")]?.provision)
        #expect(provision.create == #"./vm.sh create "$CTA_VM_NAME""#)
        #expect(provision.vmTimeoutMs == Milliseconds(1_800_000))
        #expect(provision.commandTimeoutMs == Milliseconds(300_000))
        #expect(
            described(vm + "\n---\nkind: scenario\nid: spread\nsuite: suite1\nconfiguration: vm\nrunMode: stress\n") == [
                "defs.yaml:18: scenario spread: runMode: run mode stress cannot use configuration \"vm\" (defs.yaml:2): "
                    + "it provisions one VM per execution, so it runs mono only"
            ])
        #expect(
            described("kind: configuration\nid: half\nprovision:\n  create: make-vm\n  vmTimeot: 5m\n") == [
                "defs.yaml:4: configuration half: provision.destroy: missing required key",
                "defs.yaml:4: configuration half: provision.vmTimeout: missing required key",
                "defs.yaml:5: configuration half: provision.vmTimeot: unknown key; did you mean vmTimeout?",
            ])
    }

    @Test("several problems in several documents are all reported, in line order")
    func manyAtOnce() {
        let errors = problems(
            """
            kind: test
            id: broken
            descripton: A broken test
            timeout: 90
            stages:
              - name: build
                run: make
                cwd: /abs
              - name: build
                run: make test
                mandatory: perhaps
            ---
            kind: scenario
            id: s1
            suite: nowhere
            configuration: c1
            runMode: swarm
            ---
            kind: configuration
            id: c1
            machines: [lab 01]
            """)
        #expect(
            errors.map(\.description) == [
                "defs.yaml:3: test broken: descripton: unknown key; did you mean description?",
                #"defs.yaml:4: test broken: timeout: "90" has no unit; add one: 90s, 90m, 90h or 90ms"#,
                #"defs.yaml:8: test broken: stages[0].cwd: must be a relative path; got "/abs""#,
                #"defs.yaml:9: test broken: stages[1].name: stage name "build" is already used by stages[0]"#,
                #"defs.yaml:11: test broken: stages[1].mandatory: expected true or false, got "perhaps""#,
                #"defs.yaml:15: scenario s1: suite: no suite "nowhere" is defined"#,
                #"defs.yaml:17: scenario s1: runMode: expected mono, stress, group or parallel, got "swarm""#,
                "defs.yaml:21: configuration c1: machines[0]: machine name may contain only ASCII letters, digits, "
                    + #"'.', '_' and '-'; got "lab 01""#,
            ])
    }

    @Test("an identifier defined twice in two files names both places; kinds have separate identifiers")
    func duplicatesAcrossFiles() {
        do throws(DefinitionErrors) {
            _ = try DefinitionLoader.load(sources: [
                DefinitionSource(
                    path: "b.yaml",
                    text:
                        "kind: suite\nid: smoke\ntests: [smoke]\n---\nkind: test\nid: smoke\nstages: [{name: r, run: \"false\"}]\n"
                ),
                DefinitionSource(path: "a.yaml", text: "kind: test\nid: smoke\nstages: [{name: r, run: \"true\"}]\n"),
                DefinitionSource(
                    path: "c.yaml", text: "# a third\n\nkind: test\nid: smoke\nstages: [{name: r, run: x}]\n"),
            ])
            Issue.record("loaded duplicate ids")
        } catch {
            // b.yaml was given first, so its test is the first definition; the others name it. Errors are sorted by
            // file, then line.
            #expect(
                error.errors.map(\.description) == [
                    #"a.yaml:2: test smoke: id: test "smoke" is also defined at b.yaml:6"#,
                    #"c.yaml:4: test smoke: id: test "smoke" is also defined at b.yaml:6"#,
                ])
            #expect(error.errors.allSatisfy { $0.code == .duplicateID })
            #expect(error.description == error.errors.map(\.description).joined(separator: "\n"))
        }
    }

    @Test("owners: a list of group names on any kind, kept by kind and id; a bad name or shape names its line")
    func owners() throws {
        let set = try loadWithBase(
            """
            kind: test
            id: owned
            owners: [qa, web-team]
            stages: [{name: run, run: "true"}]
            ---
            kind: scenario
            id: nobody
            suite: suite1
            configuration: anywhere
            runMode: mono
            owners: []
            """)
        #expect(set.owners == ["test/owned": ["qa", "web-team"], "scenario/nobody": []])
        let errors = problems(
            """
            kind: suite
            id: s
            tests: [t1]
            owners: qa
            ---
            kind: configuration
            id: c
            owners: ["-bad"]
            """)
        #expect(errors.map(\.line) == [4, 8], "\(errors)")
        #expect(errors.allSatisfy { $0.key.hasSuffix("owners") || $0.key.hasSuffix("owners[0]") }, "\(errors)")
    }
}
