import CTACore
import Foundation
import Testing

@testable import CTACoordinator
import CTADefinitions

@Suite("Machine matching, explanations and ordering")
struct MachineMatcherTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func machine(
        _ name: String, groups: [String] = ["pool"], tags: [String: String] = ["os": "linux"], online: Bool = true,
        draining: Bool = false, freeSlots: Int = 1, running: Int = 0, shutdown: String? = nil
    ) -> MachineRecord {
        MachineRecord(
            _id: name, hostname: name, addresses: [], os: OperatingSystem(name: "debian", version: "12"), arch: "x86_64",
            cpuCount: 2, memoryBytes: 1 << 30, agentVersion: "0.1.0", tags: tags,
            groups: groups.map { GroupName(unchecked: $0) }, maxConcurrentExecutions: 2, transport: "amqp", epoch: "e",
            registeredAt: now.addingTimeInterval(-600), lastSeenAt: now.addingTimeInterval(online ? -1 : -120),
            onlineUntil: now.addingTimeInterval(online ? 44 : -75), freeSlots: freeSlots,
            running: (0..<running).map { "r\($0)" }, draining: draining, lastSeq: 1, shutdownReason: shutdown)
    }

    @Test("a machine matches when online, not draining, named if names are given, in a group, with every tag")
    func matching() {
        let selector = MachineSelector(groups: [GroupName(unchecked: "pool")], tags: ["os": "linux", "gpu": "*"])
        let matcher = MachineMatcher(selector: selector, now: Self.now)
        let good = Self.machine("a", tags: ["os": "linux", "gpu": "a100"])
        #expect(matcher.missing(good).isEmpty)
        #expect(matcher.missing(Self.machine("b", tags: ["os": "linux"])) == ["no tag gpu"])
        #expect(matcher.missing(Self.machine("c", tags: ["os": "windows", "gpu": "x"])) == ["tag os=linux (has windows)"])
        #expect(matcher.missing(Self.machine("d", groups: ["other"], tags: ["os": "linux", "gpu": "x"])) == ["not in group pool"])
        #expect(matcher.missing(Self.machine("e", tags: ["os": "linux", "gpu": "x"], draining: true)) == ["draining"])
        let offline = matcher.missing(Self.machine("f", tags: ["os": "linux", "gpu": "x"], online: false, shutdown: "SIGTERM"))
        #expect(offline.count == 1 && offline[0].hasPrefix("offline since ") && offline[0].hasSuffix("(SIGTERM)"))
        let named = MachineMatcher(selector: MachineSelector(machines: [MachineName(unchecked: "z")]), now: Self.now)
        #expect(named.missing(good) == ["not one of the named machines (z)"])
        #expect(matcher.matching([Self.machine("b"), good]).map(\._id) == ["a"])
    }

    @Test("the explanation lists the closest machines first and says what the selector needs")
    func explanation() {
        let selector = MachineSelector(tags: ["browser": "chrome", "os": "linux"])
        let matcher = MachineMatcher(selector: selector, now: Self.now)
        let machines = [
            Self.machine("far", tags: ["os": "windows"], online: false),
            Self.machine("near", tags: ["os": "linux"]),
        ]
        let explanation = matcher.explanation(machines, configuration: ConfigurationID(unchecked: "web"))
        #expect(explanation.summary == "no online machine matches configuration web (tags browser=chrome, os=linux); 2 known")
        #expect(explanation.candidates.map(\.machine.rawValue) == ["near", "far"])
        #expect(explanation.candidates[0].missing == ["no tag browser=chrome"])
        #expect(explanation.candidates[1].missing.count == 3)
        let empty = matcher.explanation([], configuration: ConfigurationID(unchecked: "web"))
        #expect(empty.summary.hasPrefix("no machine has registered yet"))
        #expect(empty.candidates.isEmpty)
    }

    @Test("mono picks the machine with the most free slots, then the fewest running, then by name")
    func pickOne() {
        let machines = [
            Self.machine("c", freeSlots: 1), Self.machine("b", freeSlots: 2, running: 1), Self.machine("a", freeSlots: 2, running: 1),
            Self.machine("d", freeSlots: 2, running: 3),
        ]
        #expect(MachineMatcher.pickOne(machines)?._id == "a")
        #expect(MachineMatcher.pickOne([]) == nil)
    }

    @Test("parallel order: longest first from history, then the definition's estimate; unknown ones last in suite order")
    func longestFirst() {
        func test(_ id: String, _ expected: UInt64? = nil) -> TestDefinition {
            TestDefinition(
                id: TestID(unchecked: id), name: id, stages: [Stage(name: "run", run: "true")],
                expectedDurationMs: expected.map(Milliseconds.init))
        }
        let tests = [test("u1"), test("short", 10), test("long", 5), test("u2"), test("mid", 50)]
        let order = MachineMatcher.longestFirst(tests, history: [TestID(unchecked: "long"): 900])
        #expect(order.map { tests[$0].id.rawValue } == ["long", "mid", "short", "u1", "u2"])
    }
}
