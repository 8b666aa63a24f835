import CTACore
import Foundation
import Logging
import Testing

@testable import CTAAgent

/// Files of this repository, found from this source file.
enum RepositoryFile {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // CTAAgentTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

private typealias Loader = AgentConfigurationLoader
private typealias Override = AgentConfigurationLoader.Override

private let path = "/etc/cta/agent.yaml"
private let broker = "broker:\n  url: amqp://localhost\n"

private func load(
    _ yaml: String,
    environment: [String: String] = [:],
    overrides: [Override] = [],
    hostname: String = "testhost"
) throws(ConfigurationError) -> AgentConfiguration {
    try Loader.load(yaml: yaml, path: path, environment: environment, overrides: overrides, hostname: hostname)
}

/// The error loading gives, or nil when it loads.
private func failure(
    _ yaml: String,
    environment: [String: String] = [:],
    overrides: [Override] = [],
    hostname: String = "testhost"
) -> ConfigurationError? {
    do throws(ConfigurationError) {
        _ = try load(yaml, environment: environment, overrides: overrides, hostname: hostname)
        return nil
    } catch {
        return error
    }
}

private func at(_ line: Int?) -> ConfigurationError.Origin { .file(path: path, line: line) }

@Suite("Agent configuration: defaults and precedence")
struct AgentConfigurationDefaultsTests {
    @Test("a file with only the broker gives every documented default")
    func defaults() throws {
        let configuration = try load(broker, hostname: "build-07")
        #expect(configuration.brokerURL == "amqp://localhost")
        #expect(configuration.gatewayURL == nil)
        #expect(configuration.machine == MachineName("build-07"))
        #expect(configuration.groups == [])
        #expect(configuration.tags == [:])
        #expect(configuration.workDirectory == "/var/lib/cta/work")
        #expect(configuration.stateDirectory == "/var/lib/cta/state")
        #expect(configuration.maxConcurrentExecutions == 1)
        #expect(configuration.gracePeriod == .seconds(10))
        #expect(configuration.stopCommandTimeout == .seconds(15))
        #expect(configuration.keepWorkDirectories == false)
        #expect(
            configuration.passEnvironment == [
                "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL",
            ])
        #expect(configuration.heartbeatInterval == .seconds(15))
        #expect(configuration.logHeadBytes == 1 << 20)
        #expect(configuration.logTailBytes == 1 << 20)
        #expect(configuration.logLevel == .info)
        #expect(configuration.shutdownBudget == .seconds(300))
        #expect(configuration.maxAttachmentBytes == 64 << 20)
        // The memberwise defaults are the loader's defaults.
        #expect(configuration == AgentConfiguration(brokerURL: "amqp://localhost", machine: MachineName("build-07")!))
    }

    @Test(
        "an empty file, a file of comments and a bare document separator give the defaults",
        arguments: [
            "", "\n\n", "# nothing here\n   # indented comment\n", "---\n", "---\n...\n", "~\n",
        ])
    func emptyFiles(yaml: String) throws {
        let configuration = try load(yaml, environment: ["CTA_AGENT_BROKER_URL": "amqp://h"])
        #expect(configuration == AgentConfiguration(brokerURL: "amqp://h", machine: MachineName("testhost")!))
    }

    @Test("a key with no value, ~ or null is not set")
    func nullValues() throws {
        let configuration = try load(
            """
            broker:
              url: amqp://h
            gateway:
            machine: ~
            groups: null
            tags:
            executions:
              maxConcurrent:
            """
        )
        #expect(configuration == AgentConfiguration(brokerURL: "amqp://h", machine: MachineName("testhost")!))
    }

    @Test("every key read from the file")
    func everyKey() throws {
        let configuration = try load(
            """
            gateway:
              url: https://gw.example.com:8443/cta
              token: cta_enroll_secret
            machine: Build-07.lab
            groups: [linux, gpu, linux]
            tags: {browser: firefox, gpu: true, ram: 64, ratio: 1.5, empty: ~, quoted: "x y"}
            directories:
              work: /srv/cta//work/
              state: /srv/cta/./state
            executions:
              maxConcurrent: 8
              gracePeriod: 500ms
              stopCommandTimeout: 1m30s
              keepWorkDirectories: yes
              passEnvironment: [PATH, JAVA_HOME, PATH]
            heartbeat:
              interval: 30
            logs:
              headBytes: 512KiB
              tailBytes: 2048
              level: DEBUG
            shutdown:
              budget: 1h30m
            attachments:
              maxBytes: 1GiB
            """
        )
        #expect(configuration.brokerURL == nil)
        #expect(configuration.gatewayURL == "https://gw.example.com:8443/cta")
        #expect(configuration.gatewayToken == "cta_enroll_secret")
        #expect(configuration.machine.rawValue == "Build-07.lab")
        #expect(configuration.groups.map(\.rawValue) == ["linux", "gpu"])
        #expect(
            configuration.tags == [
                "browser": "firefox", "gpu": "true", "ram": "64", "ratio": "1.5", "empty": "", "quoted": "x y",
            ]
        )
        #expect(configuration.workDirectory == "/srv/cta/work")
        #expect(configuration.stateDirectory == "/srv/cta/state")
        #expect(configuration.maxConcurrentExecutions == 8)
        #expect(configuration.gracePeriod == .milliseconds(500))
        #expect(configuration.stopCommandTimeout == .seconds(90))
        #expect(configuration.keepWorkDirectories)
        #expect(configuration.passEnvironment == ["PATH", "JAVA_HOME"])
        #expect(configuration.heartbeatInterval == .seconds(30))
        #expect(configuration.logHeadBytes == 512 * 1024)
        #expect(configuration.logTailBytes == 2048)
        #expect(configuration.logLevel == .debug)
        #expect(configuration.shutdownBudget == .seconds(5400))
        #expect(configuration.maxAttachmentBytes == 1 << 30)
    }

    @Test("the file, then the environment, then flags: a later source wins, key by key")
    func precedence() throws {
        let yaml = broker + "executions:\n  maxConcurrent: 2\n  gracePeriod: 3s\nheartbeat:\n  interval: 20s\n"
        let environment = ["CTA_AGENT_MAX_CONCURRENT": "3", "CTA_AGENT_GRACE_PERIOD": "4s"]
        let flags = [Override(key: "executions.maxConcurrent", value: "4", flag: "--max-concurrent")]

        let fileOnly = try load(yaml)
        #expect(fileOnly.maxConcurrentExecutions == 2 && fileOnly.gracePeriod == .seconds(3))

        let withEnvironment = try load(yaml, environment: environment)
        #expect(withEnvironment.maxConcurrentExecutions == 3 && withEnvironment.gracePeriod == .seconds(4))
        #expect(withEnvironment.heartbeatInterval == .seconds(20))

        let withFlags = try load(yaml, environment: environment, overrides: flags)
        #expect(withFlags.maxConcurrentExecutions == 4)
        #expect(withFlags.gracePeriod == .seconds(4))
        #expect(withFlags.heartbeatInterval == .seconds(20))

        // Of two flags for one key, the later wins.
        let twice = try load(
            yaml,
            overrides: flags + [Override(key: "executions.maxConcurrent", value: "5", flag: "--max-concurrent")]
        )
        #expect(twice.maxConcurrentExecutions == 5)
    }

    @Test("every environment variable maps to a key the loader knows")
    func environmentVariables() throws {
        #expect(Loader.environmentKeys.count == 19)
        for (variable, key) in Loader.environmentKeys {
            #expect(variable.hasPrefix("CTA_AGENT_"))
            #expect(Loader.keys.contains(key), "\(variable) → \(key)")
        }
        let configuration = try load(
            "",
            environment: [
                "CTA_AGENT_BROKER_URL": "amqps://u:p@broker:5671/cta",
                "CTA_AGENT_MACHINE": "m1",
                "CTA_AGENT_GROUPS": " linux , gpu,,linux ",
                "CTA_AGENT_TAGS": "os=debian, gpu = yes,empty=",
                "CTA_AGENT_WORK_DIR": "/w",
                "CTA_AGENT_STATE_DIR": "/s",
                "CTA_AGENT_MAX_CONCURRENT": "16",
                "CTA_AGENT_HEARTBEAT_INTERVAL": "1m",
                "CTA_AGENT_LOG_LEVEL": "warning",
                "CTA_AGENT_SHUTDOWN_BUDGET": "0",
                "CTA_AGENT_GRACE_PERIOD": "2s",
                "CTA_AGENT_UNRELATED": "ignored",
            ]
        )
        #expect(configuration.brokerURL == "amqps://u:p@broker:5671/cta")
        #expect(configuration.machine.rawValue == "m1")
        #expect(configuration.groups.map(\.rawValue) == ["linux", "gpu"])
        #expect(configuration.tags == ["os": "debian", "gpu": "yes", "empty": ""])
        #expect(configuration.workDirectory == "/w" && configuration.stateDirectory == "/s")
        #expect(configuration.maxConcurrentExecutions == 16)
        #expect(configuration.heartbeatInterval == .seconds(60))
        #expect(configuration.logLevel == .warning)
        #expect(configuration.shutdownBudget == .zero)
        #expect(configuration.gracePeriod == .seconds(2))
    }

    @Test("flags reach keys the environment does not")
    func flagsForEveryKey() throws {
        let configuration = try load(
            broker,
            overrides: [
                Override(key: "executions.passEnvironment", value: "PATH,HOME", flag: "--pass-env"),
                Override(key: "executions.keepWorkDirectories", value: "on", flag: "--keep"),
                Override(key: "logs.headBytes", value: "10kB", flag: "--head"),
                Override(key: "attachments.maxBytes", value: "5MB", flag: "--max-attachment"),
                Override(key: "executions.stopCommandTimeout", value: "2s", flag: "--stop-timeout"),
            ]
        )
        #expect(configuration.passEnvironment == ["PATH", "HOME"])
        #expect(configuration.keepWorkDirectories)
        #expect(configuration.logHeadBytes == 10_000)
        #expect(configuration.maxAttachmentBytes == 5_000_000)
        #expect(configuration.stopCommandTimeout == .seconds(2))
    }

    @Test("an empty URL in the environment unsets the file's, so the transport can be switched")
    func switchTransport() throws {
        let configuration = try load(
            broker,
            environment: [
                "CTA_AGENT_BROKER_URL": "", "CTA_AGENT_GATEWAY_URL": "https://gw.example.com",
                "CTA_AGENT_GATEWAY_TOKEN": "cta_enroll_secret",
            ]
        )
        #expect(configuration.brokerURL == nil)
        #expect(configuration.gatewayURL == "https://gw.example.com")
        #expect(configuration.gatewayToken == "cta_enroll_secret")
        // A gateway without a token is refused, naming the key.
        #expect(throws: ConfigurationError.self) {
            try load(broker, environment: ["CTA_AGENT_BROKER_URL": "", "CTA_AGENT_GATEWAY_URL": "https://gw.example.com"])
        }
    }

    @Test("the gateway's TLS files must be readable files; a client certificate needs its key")
    func gatewayTLSFiles() throws {
        let directory = NSTemporaryDirectory() + "cta-agent-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for name in ["ca.pem", "agent.pem", "agent.key"] {
            try "-----BEGIN CERTIFICATE-----\n".write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let gateway = "gateway:\n  url: https://gw.example.com\n  token: cta_enroll_secret\n"
        let configuration = try load(
            gateway + "  caFile: \(directory)/ca.pem\n  certFile: \(directory)/agent.pem\n  keyFile: \(directory)/agent.key\n")
        #expect(configuration.gatewayCAFile == directory + "/ca.pem")
        #expect(configuration.gatewayCertificateFile == directory + "/agent.pem")
        #expect(configuration.gatewayKeyFile == directory + "/agent.key")
        // The environment sets them too.
        let fromEnvironment = try load(gateway, environment: ["CTA_AGENT_GATEWAY_CA_FILE": directory + "/ca.pem"])
        #expect(fromEnvironment.gatewayCAFile == directory + "/ca.pem")

        let missing = try #require(failure(gateway + "  caFile: \(directory)/nope.pem\n"))
        #expect(missing.key == "gateway.caFile" && missing.origin == at(4))
        #expect(missing.message.contains("there is no file"), "\(missing.message)")
        let folder = try #require(failure(gateway + "  caFile: \(directory)\n"))
        #expect(folder.key == "gateway.caFile" && folder.message.contains("there is no file"))
        let alone = try #require(failure(gateway + "  certFile: \(directory)/agent.pem\n"))
        #expect(alone.key == "gateway.certFile" && alone.origin == at(4))
        #expect(alone.message == "a client certificate needs both gateway.certFile and gateway.keyFile; gateway.keyFile is not set")
    }

    @Test("uploads: api.url needs api.token; the upload timeout is a duration; the environment sets them")
    func uploadKeys() throws {
        let configuration = try load(
            broker + "api:\n  url: https://cta.example.com:8420\n  token: ctae_secret\nattachments:\n  uploadTimeout: 2m\n")
        #expect(configuration.apiURL == "https://cta.example.com:8420" && configuration.apiToken == "ctae_secret")
        #expect(configuration.uploadTimeout == .seconds(120))
        #expect(try load(broker).uploadTimeout == .seconds(600) && (try load(broker)).apiURL == nil)
        let fromEnvironment = try load(
            broker, environment: ["CTA_AGENT_API_URL": "http://127.0.0.1:8420", "CTA_AGENT_API_TOKEN": "ctae_x"])
        #expect(fromEnvironment.apiURL == "http://127.0.0.1:8420" && fromEnvironment.apiToken == "ctae_x")

        let noToken = try #require(failure(broker + "api:\n  url: https://cta.example.com\n"))
        #expect(noToken.key == "api.url" && noToken.origin == at(4))
        #expect(noToken.message.contains("api.token"), "\(noToken.message)")
        let notHTTP = try #require(failure(broker + "api:\n  url: ftp://cta.example.com\n  token: t\n"))
        #expect(notHTTP.key == "api.url" && notHTTP.origin == at(4))
        let tooShort = try #require(failure(broker + "attachments:\n  uploadTimeout: 500ms\n"))
        #expect(tooShort.key == "attachments.uploadTimeout" && tooShort.origin == at(4))
    }

    @Test(
        "the machine name defaults to the host name's first label, lower-cased, other characters as '-'",
        arguments: [
            ("build-07", "build-07"),
            ("Build-07.lab.example.com", "build-07"),
            ("WEB_01", "web_01"),
            ("web 01+x", "web-01-x"),
            ("héllo", "h-llo"),
            ("a", "a"),
        ]
    )
    func machineDefault(hostname: String, expected: String) throws {
        #expect(Loader.machineName(fromHostname: hostname) == expected)
        #expect(try load(broker, hostname: hostname).machine.rawValue == expected)
    }

    @Test(
        "a host name that gives no valid machine name is an error only when machine is not set",
        arguments: [
            "", "-dash", ".lab", "_x", String(repeating: "a", count: 129),
        ])
    func badHostname(hostname: String) throws {
        let error = try #require(failure(broker, hostname: hostname))
        #expect(error.key == "machine")
        #expect(error.origin == .none)
        #expect(error.message.contains("set machine"))
        #expect(error.message.contains("names are 1 to 128 ASCII letters"))
        #expect(try load(broker + "machine: m\n", hostname: hostname).machine.rawValue == "m")
    }
}

@Suite("Agent configuration: errors name the key and the line")
struct AgentConfigurationErrorTests {
    @Test("a bad value names the file, line, key and value")
    func badValue() throws {
        let yaml = """
            # agent
            broker:
              url: amqp://localhost

            executions:
              gracePeriod: 5s
              maxConcurrent: two
            """
        let error = try #require(failure(yaml))
        #expect(error.key == "executions.maxConcurrent")
        #expect(error.origin == at(7))
        #expect(error.message == #"expected an integer from 1 to 256, got "two""#)
        #expect(
            error.description
                == #"/etc/cta/agent.yaml:7: executions.maxConcurrent: expected an integer from 1 to 256, got "two""#
        )
    }

    @Test("the environment and flags are named in the message")
    func environmentAndFlagOrigins() throws {
        let environmentError = try #require(failure(broker, environment: ["CTA_AGENT_MACHINE": "bad name"]))
        #expect(environmentError.origin == .environment(variable: "CTA_AGENT_MACHINE"))
        #expect(environmentError.description.hasPrefix("environment CTA_AGENT_MACHINE: machine: invalid machine name"))

        let flagError = try #require(
            failure(broker, overrides: [Override(key: "heartbeat.interval", value: "0s", flag: "--heartbeat-interval")])
        )
        #expect(flagError.origin == .flag(name: "--heartbeat-interval"))
        #expect(
            flagError.description
                == "flag --heartbeat-interval: heartbeat.interval: expected a duration from 1s to 10m (like 15s, "
                + #"500ms, 2m, 1h30m, or a number of seconds), got "0s""#
        )
    }

    @Test("a bad value in the file is an error even while a flag overrides it")
    func overriddenBadValue() throws {
        let error = try #require(
            failure(
                broker + "heartbeat:\n  interval: soon\n",
                overrides: [Override(key: "heartbeat.interval", value: "5s", flag: "--heartbeat-interval")]
            )
        )
        #expect(error.key == "heartbeat.interval" && error.origin == at(4))
    }

    @Test("unknown keys are errors with the closest known key")
    func unknownKeys() throws {
        let typo = try #require(failure(broker + "executions:\n  maxConcurent: 2\n"))
        #expect(typo.key == "executions.maxConcurent")
        #expect(typo.origin == at(4))
        #expect(typo.message == "unknown key; did you mean executions.maxConcurrent?")

        let caseSlip = try #require(failure(broker + "heartbeat:\n  Interval: 5s\n"))
        #expect(caseSlip.message == "unknown key; did you mean heartbeat.interval?")

        let section = try #require(failure(broker + "executon:\n  maxConcurrent: 2\n"))
        #expect(section.key == "executon" && section.origin == at(3))
        #expect(section.message == "unknown key; did you mean executions?")

        let misplaced = try #require(failure(broker + "heartbeat:\n  maxConcurrent: 2\n"))
        #expect(misplaced.key == "heartbeat.maxConcurrent")
        #expect(misplaced.message == "unknown key; did you mean executions.maxConcurrent?")

        let dotted = try #require(failure(broker + "executions.maxConcurrent: 2\n"))
        #expect(dotted.key == "executions.maxConcurrent" && dotted.origin == at(3))
        #expect(dotted.message.contains("write nested keys"))

        let unrelated = try #require(failure(broker + "color: blue\n"))
        #expect(unrelated.key == "color")
        #expect(unrelated.message.hasPrefix("unknown key; the top-level keys are broker, gateway, api, machine, groups"))

        let nested = try #require(failure(broker + "logs:\n  level: info\n  format: json\n"))
        #expect(nested.key == "logs.format" && nested.origin == at(5))
        #expect(nested.message == "unknown key; the keys under logs are headBytes, tailBytes, level")

        let flag = try #require(
            failure(broker, overrides: [Override(key: "heartbeat.intervall", value: "5s", flag: "--x")]))
        #expect(flag.key == "heartbeat.intervall" && flag.origin == .flag(name: "--x"))
        #expect(flag.message == "unknown key; did you mean heartbeat.interval?")
    }

    @Test("a repeated key names the dotted key, the line of the repeat and the first line")
    func duplicateKeys() throws {
        let topLevel = try #require(failure(broker + "machine: a\ngroups: [x]\nmachine: b\n"))
        #expect(topLevel.key == "machine")
        #expect(topLevel.origin == at(5))
        #expect(topLevel.message == "duplicate key; first set at line 3")

        let nested = try #require(
            failure(broker + "executions:\n  gracePeriod: 1s\n  maxConcurrent: 1\n  \"gracePeriod\": 2s\n")
        )
        #expect(nested.key == "executions.gracePeriod")
        #expect(nested.origin == at(6))
        #expect(nested.message == "duplicate key; first set at line 4")

        let thrice = try #require(failure(broker + "tags:\n  a: 1\n  b: 2\n  a: 3\n  a: 4\n"))
        #expect(thrice.key == "tags.a" && thrice.origin == at(6))
        #expect(thrice.message == "duplicate key; first set at line 4")

        let flow = try #require(failure(broker + "logs: {level: info, headBytes: 1, level: debug}\n"))
        #expect(flow.key == "logs.level" && flow.origin == at(3))

        let sections = try #require(failure(broker + "logs:\n  level: info\nbroker:\n  url: amqp://other\n"))
        #expect(sections.key == "broker" && sections.origin == at(5))
        #expect(sections.message == "duplicate key; first set at line 1")

        let crlf = try #require(failure("broker:\r\n  url: amqp://h\r\nmachine: a\r\nmachine: b\r\n"))
        #expect(crlf.key == "machine" && crlf.origin == at(4))
    }

    @Test("YAML syntax errors name the line")
    func syntaxErrors() throws {
        let unclosed = try #require(failure(broker + "groups: [linux, gpu\nmachine: m\n"))
        #expect(unclosed.key == "")
        #expect(unclosed.message.hasPrefix("invalid YAML: "))
        if case .file(let file, let line?) = unclosed.origin {
            #expect(file == path)
            #expect((3...5).contains(line))
        } else {
            Issue.record("no line: \(unclosed)")
        }

        let badIndent = try #require(failure("broker:\n  url: amqp://h\n bad: 1\n"))
        #expect(badIndent.origin == at(3))
        #expect(badIndent.description.hasPrefix("/etc/cta/agent.yaml:3: invalid YAML: "))

        let tab = try #require(failure("broker:\n\turl: amqp://h\n"))
        #expect(tab.origin == at(2))

        let twoDocuments = try #require(failure(broker + "---\nmachine: m\n"))
        #expect(twoDocuments.origin == at(3))

        let undefinedAlias = try #require(failure(broker + "machine: *nowhere\n"))
        #expect(undefinedAlias.origin == at(3))
    }

    @Test("values of the wrong shape are errors")
    func wrongShapes() throws {
        let listForString = try #require(failure(broker + "machine:\n  - a\n  - b\n"))
        #expect(listForString.key == "machine" && listForString.origin == at(4))
        #expect(listForString.message == "expected a machine name, got a list")

        let mappingForInteger = try #require(failure(broker + "executions:\n  maxConcurrent: {a: 1}\n"))
        #expect(mappingForInteger.message == "expected an integer from 1 to 256, got a mapping")

        let stringForList = try #require(failure(broker + "groups: linux\n"))
        #expect(stringForList.key == "groups" && stringForList.origin == at(3))
        #expect(stringForList.message.hasPrefix(#"expected a list of group names, got "linux""#))

        let nestedList = try #require(failure(broker + "groups:\n  - linux\n  - [a, b]\n"))
        #expect(nestedList.key == "groups" && nestedList.origin == at(5))
        #expect(nestedList.message == "expected a group name, got a list")

        let emptyItem = try #require(failure(broker + "groups:\n  - linux\n  -\n"))
        #expect(emptyItem.origin == at(5) && emptyItem.message == "expected a group name, got an empty item")

        let scalarSection = try #require(failure(broker + "executions: 4\n"))
        #expect(scalarSection.key == "executions" && scalarSection.origin == at(3))
        #expect(scalarSection.message.hasPrefix("expected a mapping of maxConcurrent, gracePeriod"))

        let nestedTag = try #require(failure(broker + "tags:\n  browser: firefox\n  gpus:\n    - a\n"))
        #expect(nestedTag.key == "tags" && nestedTag.origin == at(6))
        #expect(nestedTag.message == #"tag "gpus": expected a single value, got a list"#)

        let listForTags = try #require(failure(broker + "tags: [a, b]\n"))
        #expect(listForTags.message == "expected a mapping of tag names to values, got a list")

        let topLevelList = try #require(failure("- a\n- b\n"))
        #expect(topLevelList.key == "" && topLevelList.origin == at(1))
        #expect(topLevelList.message.hasPrefix("expected a mapping of keys"))

        let complexKey = try #require(failure(broker + "? [a, b]\n: 1\n"))
        #expect(complexKey.origin == at(3) && complexKey.message.hasPrefix("keys must be plain names"))
    }

    @Test("invalid machine and group names show the naming rule")
    func invalidNames() throws {
        let machine = try #require(failure(broker + "machine: build 07\n"))
        #expect(machine.key == "machine" && machine.origin == at(3))
        #expect(
            machine.message
                == #"invalid machine name "build 07": it may contain only ASCII letters, digits, '.', '_' and '-'; "#
                + "names are 1 to 128 ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"
        )

        let group = try #require(failure(broker + "groups:\n  - linux\n  - -gpu\n"))
        #expect(group.key == "groups" && group.origin == at(5))
        #expect(group.message.hasPrefix(#"invalid group name "-gpu": it must start with an ASCII letter or digit; "#))

        let emptyMachine = try #require(failure(broker + "machine: \"\"\n"))
        #expect(emptyMachine.message.hasPrefix(#"invalid machine name "": it must not be empty"#))

        let environmentGroup = try #require(failure(broker, environment: ["CTA_AGENT_GROUPS": "ok,b@d"]))
        #expect(environmentGroup.origin == .environment(variable: "CTA_AGENT_GROUPS"))
        #expect(environmentGroup.message.hasPrefix(#"invalid group name "b@d""#))
    }

    @Test("exactly one of broker.url and gateway.url")
    func transport() throws {
        let neither = try #require(failure("machine: m\n"))
        #expect(neither.key == "broker.url" && neither.origin == at(nil))
        #expect(neither.message == "set exactly one of broker.url and gateway.url; neither is set")

        let both = try #require(failure(broker + "gateway:\n  url: https://gw\n"))
        #expect(both.key == "gateway.url" && both.origin == at(4))
        #expect(both.message == "set exactly one of broker.url and gateway.url; broker.url is also set at \(path):2")

        let byEnvironment = try #require(
            failure("gateway:\n  url: https://gw\n", environment: ["CTA_AGENT_BROKER_URL": "amqp://h"])
        )
        #expect(byEnvironment.key == "broker.url")
        #expect(byEnvironment.origin == .environment(variable: "CTA_AGENT_BROKER_URL"))
        #expect(byEnvironment.message.hasSuffix("gateway.url is also set at \(path):2"))
    }

    @Test("URLs are checked, and a broker password never appears in the error")
    func urls() throws {
        let scheme = try #require(failure("broker:\n  url: http://user:s3cret@host/\n"))
        #expect(scheme.key == "broker.url" && scheme.origin == at(2))
        #expect(scheme.message.hasPrefix("not a usable AMQP URL: "))
        #expect(!scheme.description.contains("s3cret"))

        let port = try #require(failure("broker:\n  url: amqp://user:s3cret@host:99999/\n"))
        #expect(!port.description.contains("s3cret"))

        let gateway = try #require(failure("gateway:\n  url: ftp://token@gw/\n"))
        #expect(gateway.key == "gateway.url")
        #expect(gateway.message == "expected an https:// (or http://) URL with a host")
        #expect(!gateway.description.contains("token"))
    }

    @Test("directories are absolute, without '..', and apart")
    func directories() throws {
        let relative = try #require(failure(broker + "directories:\n  work: var/work\n"))
        #expect(relative.key == "directories.work" && relative.origin == at(4))
        #expect(relative.message == #"expected an absolute path, got "var/work""#)

        let parent = try #require(failure(broker + "directories:\n  state: /srv/../etc\n"))
        #expect(parent.key == "directories.state" && parent.message.hasPrefix("must not contain '..'"))

        let root = try #require(failure(broker + "directories:\n  work: //\n"))
        #expect(root.message == "must not be the root directory")

        let same = try #require(failure(broker + "directories:\n  work: /srv/cta\n  state: /srv/cta/\n"))
        #expect(same.key == "directories.state" && same.origin == at(5))

        let inside = try #require(failure(broker + "directories:\n  work: /var/lib/cta\n"))
        #expect(inside.key == "directories.work" && inside.origin == at(4))
        #expect(inside.message.contains("directories.state (/var/lib/cta/state)"))

        #expect(
            try load(broker + "directories:\n  work: /srv/cta-work\n  state: /srv/cta\n").workDirectory
                == "/srv/cta-work")
    }

    @Test("ranges and forms of the other keys")
    func otherValues() throws {
        func message(_ key: String, _ value: String) -> String? {
            failure(broker, overrides: [Override(key: key, value: value, flag: "--f")])?.message
        }
        #expect(message("executions.maxConcurrent", "0") == #"expected an integer from 1 to 256, got "0""#)
        #expect(message("executions.maxConcurrent", "257") != nil)
        #expect(message("executions.maxConcurrent", "256") == nil)
        #expect(message("executions.maxConcurrent", "-1") != nil)
        #expect(message("executions.maxConcurrent", "1.0") != nil)
        #expect(message("heartbeat.interval", "1s") == nil)
        #expect(message("heartbeat.interval", "10m") == nil)
        #expect(message("heartbeat.interval", "10m1ms") != nil)
        #expect(message("heartbeat.interval", "999ms") != nil)
        #expect(message("executions.gracePeriod", "0s") == nil)
        #expect(message("executions.gracePeriod", "-1s") != nil)
        #expect(message("executions.stopCommandTimeout", "0s") != nil)
        #expect(message("shutdown.budget", "24h") == nil)
        #expect(message("shutdown.budget", "25h") != nil)
        #expect(message("logs.headBytes", "0") == nil)
        #expect(message("logs.tailBytes", "1GiB") == nil)
        #expect(
            message("logs.tailBytes", "2GiB")
                == #"expected a size from 0B to 1GiB (like 512KiB, 1MiB, 10MB, or a number of bytes), got "2GiB""#
        )
        #expect(message("attachments.maxBytes", "0") != nil)
        #expect(message("attachments.maxBytes", "1TiB") == nil)
        #expect(
            message("logs.level", "verbose")
                == #"expected one of trace, debug, info, notice, warning, error, critical, got "verbose""#)
        #expect(message("logs.level", "Critical") == nil)
        #expect(message("executions.keepWorkDirectories", "maybe") == #"expected true or false, got "maybe""#)
        #expect(
            message("executions.passEnvironment", "PATH,1BAD")?.hasPrefix(#"invalid environment variable name "1BAD""#)
                == true)
        #expect(message("executions.passEnvironment", "") == nil)
        #expect(message("tags", "a=1,noequals") == #"expected name=value pairs separated by commas, got "noequals""#)
        #expect(message("tags", "a=1,a=2") == #"tag "a" is given twice"#)
        #expect(message("tags", "=1") == "a tag name must not be empty")
        #expect(message("machine", "") != nil)

        let badEnvironmentName = try #require(
            failure(broker + "executions:\n  passEnvironment:\n    - PATH\n    - MY-VAR\n"))
        #expect(badEnvironmentName.key == "executions.passEnvironment" && badEnvironmentName.origin == at(6))

        let longTag = try #require(failure(broker + "tags:\n  \(String(repeating: "k", count: 129)): v\n"))
        #expect(longTag.key == "tags" && longTag.origin == at(4))

        let controlTag = try #require(failure(broker + "tags:\n  k: \"a\\u0007b\"\n"))
        #expect(controlTag.message.contains("control characters"))

        let booleans = [("true", true), ("False", false), ("yes", true), ("NO", false), ("on", true), ("off", false)]
        for (text, value) in booleans {
            #expect(try load(broker + "executions:\n  keepWorkDirectories: \(text)\n").keepWorkDirectories == value)
        }
    }

    @Test("long values are cut short in messages")
    func longValues() throws {
        let error = try #require(failure(broker + "logs:\n  level: \(String(repeating: "x", count: 500))\n"))
        #expect(error.message.count < 200)
        #expect(error.message.hasSuffix("…"))
    }
}

@Suite("Agent configuration: durations and sizes")
struct ConfigurationValueTests {
    @Test(
        "durations",
        arguments: [
            ("0", Duration.zero), ("90", .seconds(90)), ("500ms", .milliseconds(500)), ("15s", .seconds(15)),
            ("2m", .seconds(120)), ("1h", .seconds(3600)), ("1h30m", .seconds(5400)),
            ("1m30s500ms", .milliseconds(90_500)), ("1h1ms", .milliseconds(3_600_001)), ("0s", .zero),
            ("007s", .seconds(7)), ("90m", .seconds(5400)),
        ])
    func durations(text: String, expected: Duration) {
        #expect(ConfigurationValue.duration(text) == expected)
    }

    @Test(
        "rejected durations",
        arguments: [
            "", " ", "-5s", "+5s", "-1", "1.5s", "1.5", "5x", "s", "ms", "5 s", " 5s", "5s ", "30m1h", "1s1m", "1h1h",
            "1ms1s", "5S", "5sec", "5min", "1d", "0x10", "1_000", "1:30", "99999999999999999999",
            "9223372036854775807", "9223372036854775807ms1ms", "2562047788015216h",
        ])
    func rejectedDurations(text: String) {
        #expect(ConfigurationValue.duration(text) == nil, "\(text)")
    }

    @Test(
        "sizes",
        arguments: [
            ("0", UInt64(0)), ("1024", 1024), ("7B", 7), ("512KiB", 524_288), ("1MiB", 1_048_576),
            ("2GiB", 2_147_483_648), ("1TiB", 1 << 40), ("10kB", 10_000), ("10KB", 10_000), ("5MB", 5_000_000),
            ("3GB", 3_000_000_000), ("2TB", 2_000_000_000_000), ("16777215TiB", 16_777_215 << 40),
        ])
    func sizes(text: String, expected: UInt64) {
        #expect(ConfigurationValue.size(text) == expected)
    }

    @Test(
        "rejected sizes",
        arguments: [
            "", "-1", "+1", "1.5MiB", "1mib", "1Mib", "1mb", "MiB", "1 MiB", " 1", "1EiB", "1KIB", "0x10",
            "18446744073709551616", "9223372036854775808", "16777216TiB", "99999999999999999999GB",
        ])
    func rejectedSizes(text: String) {
        #expect(ConfigurationValue.size(text) == nil, "\(text)")
    }

    @Test("printed forms read back")
    func formats() {
        #expect(ConfigurationValue.format(.seconds(600)) == "10m")
        #expect(ConfigurationValue.format(.seconds(5400)) == "1h30m")
        #expect(ConfigurationValue.format(.milliseconds(1500)) == "1s500ms")
        #expect(ConfigurationValue.format(.zero) == "0s")
        for duration in [Duration.seconds(86_400), .milliseconds(3_723_004)] {
            #expect(ConfigurationValue.duration(ConfigurationValue.format(duration)) == duration)
        }
        #expect(ConfigurationValue.format(bytes: 1 << 20) == "1MiB")
        #expect(ConfigurationValue.format(bytes: 1536) == "1536B")
        #expect(ConfigurationValue.format(bytes: 0) == "0B")
        #expect(ConfigurationValue.format(bytes: 100 << 20) == "100MiB")
    }
}

@Suite("Agent configuration: files")
struct AgentConfigurationFileTests {
    /// A fresh directory under the system's temporary directory.
    private func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cta-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("the shipped example loads and shows every default")
    func example() throws {
        let examplePath = RepositoryFile.path("packaging/config/agent.yaml")
        let configuration = try Loader.load(path: examplePath, environment: [:], overrides: [], hostname: "build-07")
        #expect(configuration.brokerURL == "amqp://cta-agent:change-me@broker.example.com:5672/cta")
        #expect(configuration.groups.map(\.rawValue) == ["linux", "x86_64"])
        #expect(configuration.tags == ["browser": "firefox", "gpu": "false"])
        var defaults = AgentConfiguration(brokerURL: configuration.brokerURL, machine: MachineName("build-07")!)
        defaults.groups = configuration.groups
        defaults.tags = configuration.tags
        #expect(configuration == defaults)
        // Every key appears in the example, active or commented out.
        let text = try String(contentsOfFile: examplePath, encoding: .utf8)
        for key in Loader.keys {
            let last = String(key.split(separator: ".").last!)
            #expect(text.contains("\(last):"), "\(key) is missing from the example")
        }
    }

    @Test("a named file is read, and its path is in errors")
    func namedFile() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("agent.yaml").path
        try (broker + "machine: from-file\nlogs:\n  level: loud\n").write(
            toFile: file, atomically: true, encoding: .utf8)
        do throws(ConfigurationError) {
            _ = try Loader.load(path: file, environment: [:], overrides: [], hostname: "h")
            Issue.record("loaded")
        } catch {
            #expect(error.origin == .file(path: file, line: 5))
            #expect(error.description.hasPrefix("\(file):5: logs.level: "))
        }
        try (broker + "machine: from-file\n").write(toFile: file, atomically: true, encoding: .utf8)
        let explicit = try Loader.load(path: file, environment: [:], overrides: [], hostname: "h")
        #expect(explicit.machine.rawValue == "from-file")
        // CTA_AGENT_CONFIG names the file when no path is passed; an explicit path wins over it.
        let named = try Loader.load(path: nil, environment: ["CTA_AGENT_CONFIG": file], overrides: [], hostname: "h")
        #expect(named.machine.rawValue == "from-file")
        let other = directory.appendingPathComponent("other.yaml").path
        try (broker + "machine: other\n").write(toFile: other, atomically: true, encoding: .utf8)
        let both = try Loader.load(path: other, environment: ["CTA_AGENT_CONFIG": file], overrides: [], hostname: "h")
        #expect(both.machine.rawValue == "other")
    }

    @Test("a named file that is missing or unreadable is an error")
    func missingNamedFile() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("nope.yaml").path
        do throws(ConfigurationError) {
            _ = try Loader.load(
                path: missing, environment: ["CTA_AGENT_BROKER_URL": "amqp://h"], overrides: [], hostname: "h")
            Issue.record("loaded")
        } catch {
            #expect(error.key == "" && error.origin == .file(path: missing, line: nil))
            #expect(error.description == "\(missing): no such file")
        }
        do throws(ConfigurationError) {
            _ = try Loader.load(
                path: nil,
                environment: ["CTA_AGENT_CONFIG": missing, "CTA_AGENT_BROKER_URL": "amqp://h"],
                overrides: [],
                hostname: "h"
            )
            Issue.record("loaded")
        } catch {
            #expect(error.origin == .environment(variable: "CTA_AGENT_CONFIG"))
            #expect(error.description == "environment CTA_AGENT_CONFIG: \(missing): no such file")
        }
        do throws(ConfigurationError) {
            _ = try Loader.load(path: directory.path, environment: [:], overrides: [], hostname: "h")
            Issue.record("loaded a directory")
        } catch {
            #expect(error.origin == .file(path: directory.path, line: nil))
            #expect(error.message.hasPrefix("cannot read"))
        }
        let binary = directory.appendingPathComponent("binary.yaml").path
        #expect(FileManager.default.createFile(atPath: binary, contents: Data([0x62, 0x3A, 0x20, 0xFF, 0xFE, 0x0A])))
        do throws(ConfigurationError) {
            _ = try Loader.load(path: binary, environment: [:], overrides: [], hostname: "h")
            Issue.record("loaded")
        } catch {
            #expect(error.message == "not UTF-8 text")
        }
    }

    @Test(
        "a missing default file means defaults",
        .enabled(if: !FileManager.default.fileExists(atPath: AgentConfigurationLoader.defaultPath))
    )
    func missingDefaultFile() throws {
        let configuration = try Loader.load(
            path: nil,
            environment: ["CTA_AGENT_BROKER_URL": "amqp://h", "CTA_AGENT_CONFIG": ""],
            overrides: [],
            hostname: "h"
        )
        #expect(configuration == AgentConfiguration(brokerURL: "amqp://h", machine: MachineName("h")!))
    }
}
