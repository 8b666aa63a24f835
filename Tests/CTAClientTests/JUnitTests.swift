import CTAClient
import Foundation
import Testing

@Suite("JUnit XML")
struct JUnitTests {
    static let execution = Execution(
        id: "01JEXEC", scenario: "example-stress", suite: "example-suite", configuration: "demo-pool",
        runMode: "stress", phase: "finished", startedAt: "2026-11-22T10:00:00.000Z",
        counts: StatusCounts(ok: 2, failed: 1, partial: 1, inconclusive: 1, skipped: 1), tests: 5,
        machines: ["demo-1", "demo-2"])

    static let results = [
        TestResultItem(eventId: "e1", test: "kernel-facts", attempt: 1, machine: "demo-1", status: "ok", durationMs: 250),
        TestResultItem(
            eventId: "e2", test: "python-junit", name: "json_round_trip", index: 0, attempt: 1, machine: "demo-2",
            status: "ok", durationMs: 12),
        TestResultItem(
            eventId: "e3", test: "disk-free", attempt: 2, machine: "demo-2", status: "failed", durationMs: 1500,
            message: "need 100 MiB <free: 3 MiB> & \"more\"\nsecond line"),
        TestResultItem(
            eventId: "e4", test: "loopback-echo", attempt: 1, machine: "demo-1", status: "inconclusive",
            message: "agent lost"),
        TestResultItem(
            eventId: "e5", test: "tar-roundtrip", attempt: 1, machine: "demo-1", status: "partial", durationMs: 3,
            message: "unpack stage could not run\u{0}"),
        TestResultItem(eventId: "e6", test: "tap-checks", machine: "demo-2", status: "skipped", message: "not today"),
    ]

    @Test("written, read back, the same report")
    func roundTrip() throws {
        let report = JUnitWriter.report(execution: Self.execution, results: Self.results)
        let xml = JUnitWriter.xml(report)
        let read = try JUnitReader.read(Data(xml.utf8))
        #expect(read.suites.count == 1)
        let suite = try #require(read.suites.first)
        #expect(suite.name == "example-stress")
        #expect(suite.id == "01JEXEC")
        #expect(suite.tests == 6 && suite.failures == 1 && suite.errors == 2 && suite.skipped == 1)
        #expect(suite.properties.contains(.init("runMode", "stress")))
        #expect(suite.cases.count == Self.results.count)
        for (testCase, result) in zip(suite.cases, Self.results) {
            #expect(testCase.classname == result.test)
            #expect(testCase.name == (result.name ?? result.test))
            #expect(testCase.property("machine") == result.machine)
            #expect(testCase.property("attempt") == "\(result.attempt ?? 1)")
            #expect(testCase.property("eventId") == result.eventId)
            #expect(testCase.time == result.durationMs.map { Double($0) / 1000 })
        }
        #expect(suite.cases[0].outcome == .passed)
        #expect(suite.cases[2].outcome.kind == .failure)
        #expect(suite.cases[2].outcome.message == "need 100 MiB <free: 3 MiB> & \"more\"\nsecond line")
        #expect(suite.cases[3].outcome == .init(.error, type: "inconclusive", message: "agent lost"))
        // A character XML cannot hold is replaced, not written.
        #expect(suite.cases[4].outcome == .init(.error, type: "partial", message: "unpack stage could not run\u{FFFD}"))
        #expect(suite.cases[5].outcome == .init(.skipped, message: "not today"))
        // The whole model survives.
        #expect(read == report)
        #expect(xml.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"cta\" tests=\"6\" failures=\"1\" errors=\"2\" skipped=\"1\""))
    }

    @Test("damaged XML is an error with its line")
    func damaged() {
        #expect(throws: JUnitReader.Failure.self) {
            try JUnitReader.read(Data("<testsuites>\n<testsuite name=\"x\">\n<testcase".utf8))
        }
        #expect(throws: JUnitReader.Failure.self) {
            try JUnitReader.read(Data("<testsuites>\n<testsuite name=\"x\">\n</testsuites>\n".utf8))
        }
        #expect(throws: JUnitReader.Failure.self) { try JUnitReader.read(Data("not xml".utf8)) }
    }
}
