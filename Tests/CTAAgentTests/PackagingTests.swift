import CTACore
import Foundation
import Testing

@testable import CTAAgent

/// A systemd unit file: section → key → every value given, in order.
private struct UnitFile {
    var sections: [String: [String: [String]]] = [:]

    init(path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var section = ""
        var pending = ""
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = pending + rawLine.trimmingCharacters(in: .whitespaces)
            pending = ""
            if line.hasSuffix("\\") {
                line.removeLast()
                pending = line + " "
                continue
            }
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            guard let equals = line.firstIndex(of: "=") else {
                Issue.record("not a key=value line in \(path): \(line)")
                continue
            }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[section, default: [:]][key, default: []].append(value)
        }
    }

    /// The last value of a key, as systemd reads single-valued settings.
    func value(_ section: String, _ key: String) -> String? { sections[section]?[key]?.last }

    /// Every value of a list setting, split on spaces.
    func words(_ section: String, _ key: String) -> [String] {
        (sections[section]?[key] ?? []).flatMap { $0.split(separator: " ").map(String.init) }
    }
}

/// Reads a systemd time span: `360`, `360s`, `6min`, `5min 30s`, `1h`. Nil for anything else (`infinity`).
private func timeSpan(_ text: String) -> Duration? {
    let units: [String: Int64] = [
        "ms": 1, "msec": 1,
        "": 1000, "s": 1000, "sec": 1000, "second": 1000, "seconds": 1000,
        "m": 60_000, "min": 60_000, "minute": 60_000, "minutes": 60_000,
        "h": 3_600_000, "hr": 3_600_000, "hour": 3_600_000, "hours": 3_600_000,
    ]
    var milliseconds: Int64 = 0
    var rest = Substring(text.trimmingCharacters(in: .whitespaces))
    guard !rest.isEmpty else { return nil }
    while !rest.isEmpty {
        let digits = rest.prefix { $0.isASCII && $0.isNumber }
        guard let number = Int64(digits) else { return nil }
        rest = rest.dropFirst(digits.count).drop { $0 == " " }
        let unit = rest.prefix { $0.isLetter }
        guard let scale = units[String(unit)] else { return nil }
        rest = rest.dropFirst(unit.count).drop { $0 == " " }
        milliseconds += number * scale
    }
    return .milliseconds(milliseconds)
}

@Suite("Packaging: systemd units and the example configuration")
struct PackagingTests {
    static let single = RepositoryFile.path("packaging/systemd/cta-agent.service")
    static let template = RepositoryFile.path("packaging/systemd/cta-agent@.service")

    @Test("systemd time spans")
    func timeSpans() {
        #expect(timeSpan("360") == .seconds(360))
        #expect(timeSpan("360s") == .seconds(360))
        #expect(timeSpan("6min") == .seconds(360))
        #expect(timeSpan("5min 30s") == .seconds(330))
        #expect(timeSpan("1h") == .seconds(3600))
        #expect(timeSpan("500ms") == .milliseconds(500))
        #expect(timeSpan("infinity") == nil)
        #expect(timeSpan("") == nil)
    }

    @Test("both units drain on stop and outlast the drain", arguments: [single, template])
    func stopBehaviour(path: String) throws {
        let unit = try UnitFile(path: path)
        #expect(unit.value("Service", "KillMode") == "mixed")
        #expect(unit.value("Service", "KillSignal") ?? "SIGTERM" == "SIGTERM")
        #expect(unit.value("Service", "SendSIGKILL") == "yes")
        let timeout = try #require(unit.value("Service", "TimeoutStopSec").flatMap(timeSpan))
        let defaults = AgentConfiguration(machine: MachineName("m")!)
        let drain = defaults.shutdownBudget + defaults.stopCommandTimeout + defaults.gracePeriod
        #expect(timeout > drain, "TimeoutStopSec \(timeout) must exceed the drain \(drain)")
        #expect(timeout - drain >= .seconds(15), "leave a margin to publish agent.shutdown and exit")
    }

    @Test(
        "both units start the agent with a configuration file, as cta, after the network",
        arguments: [single, template])
    func service(path: String) throws {
        let unit = try UnitFile(path: path)
        let start = try #require(unit.value("Service", "ExecStart"))
        let arguments = start.split(separator: " ").map(String.init)
        let config = try #require(arguments.firstIndex(of: "--config"))
        #expect(config + 1 < arguments.count)
        #expect(arguments.first?.hasSuffix("/cta-agent") == true)
        #expect(unit.value("Service", "User") == "cta")
        #expect(unit.value("Service", "Group") == "cta")
        #expect(["on-failure", "always"].contains(unit.value("Service", "Restart") ?? ""))
        #expect(unit.value("Service", "RestartSec").flatMap(timeSpan) != nil)
        #expect(unit.words("Unit", "After").contains("network-online.target"))
        #expect(unit.words("Unit", "Wants").contains("network-online.target"))
        #expect(unit.words("Service", "StateDirectory").contains("cta"))
        #expect(unit.value("Service", "OOMPolicy") == "continue")
        #expect(unit.value("Install", "WantedBy") == "multi-user.target")
        // Tests may use sudo and write where they like.
        #expect(unit.value("Service", "ProtectSystem") != "strict")
        #expect(unit.value("Service", "NoNewPrivileges") != "yes")
    }

    @Test("the single unit reads the default configuration file")
    func singleUnit() throws {
        let unit = try UnitFile(path: Self.single)
        #expect(
            unit.value("Service", "ExecStart")?.hasSuffix("--config \(AgentConfigurationLoader.defaultPath)") == true)
    }

    @Test("the template gives each instance its own file, state and work directories")
    func templateUnit() throws {
        let unit = try UnitFile(path: Self.template)
        #expect(unit.value("Service", "ExecStart")?.hasSuffix("--config /etc/cta/agent-%i.yaml") == true)
        let stateDirectories = unit.words("Service", "StateDirectory")
        #expect(stateDirectories.contains("cta/%i"))
        var environment: [String: String] = [:]
        for assignment in unit.sections["Service"]?["Environment"] ?? [] {
            let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
            environment[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        let state = try #require(environment["CTA_AGENT_STATE_DIR"])
        let work = try #require(environment["CTA_AGENT_WORK_DIR"])
        #expect(state.contains("%i") && work.contains("%i"))
        // Each lies in a state directory systemd creates for the instance (%S is /var/lib for system units).
        #expect(stateDirectories.contains { state == "%S/\($0)" })
        #expect(stateDirectories.contains { work == "%S/\($0)" })

        // An instance's directories, as systemd expands them, load with the example file, and differ between
        // instances.
        func expanded(_ instance: String) throws -> AgentConfiguration {
            let variables = environment.mapValues {
                $0.replacingOccurrences(of: "%S", with: "/var/lib").replacingOccurrences(of: "%i", with: instance)
            }
            return try AgentConfigurationLoader.load(
                path: RepositoryFile.path("packaging/config/agent.yaml"),
                environment: variables,
                overrides: [],
                hostname: "h"
            )
        }
        let a = try expanded("a")
        let b = try expanded("b")
        #expect(a.stateDirectory == "/var/lib/cta/a/state" && a.workDirectory == "/var/lib/cta/a/work")
        #expect(a.stateDirectory != b.stateDirectory && a.workDirectory != b.workDirectory)
    }

    @Test("the example configuration loads")
    func exampleConfiguration() throws {
        let configuration = try AgentConfigurationLoader.load(
            path: RepositoryFile.path("packaging/config/agent.yaml"),
            environment: [:],
            overrides: [],
            hostname: "build-07"
        )
        #expect(configuration.brokerURL != nil)
        #expect(configuration.machine.rawValue == "build-07")
    }
}
