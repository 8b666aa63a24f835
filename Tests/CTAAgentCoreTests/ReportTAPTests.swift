import CTACore
import Testing

@testable import CTAAgentCore

/// The TAP mapping rules, one small inline stream each.
@Suite struct ReportTAPTests {
    private func parse(_ text: String) -> ParsedReport {
        TAPParser().parse(text)
    }

    @Test func okAndNotOkWithNumbersAndDescriptions() throws {
        let report = parse("TAP version 14\n1..3\nok 1 - first\nnot ok 2 second\nok\n")
        #expect(report.problems.isEmpty)
        #expect(report.results.map(\.status) == [.ok, .failed, .ok])
        #expect(report.results.map(\.name) == ["first", "second", "test 3"])
        #expect(report.results[2].origin == .tap(number: 3, description: nil))
        #expect(report.results[0].resultOrigin(stage: "run", file: nil)
            == .tap(stage: "run", file: nil, number: 1, description: "first"))
    }

    @Test func skipDirectiveIsInconclusive() throws {
        let report = parse("1..2\nok 1 - a # SKIP no network\nnot ok 2 - b # skip\n")
        #expect(report.results.map(\.status) == [.inconclusive, .inconclusive])
        #expect(report.results[0].message == "skipped: no network")
        #expect(report.results[1].message == "skipped")
    }

    @Test func todoSemantics() throws {
        let report = parse("1..2\nnot ok 1 - later # TODO fix me\nok 2 - early # TODO fix me\n")
        #expect(report.results[0].status == .inconclusive)
        #expect(report.results[0].message == "todo: fix me")
        #expect(report.results[1].status == .ok)
        #expect(report.results[1].message == "todo (passed): fix me")
        #expect(report.results[1].custom["todo"] == .bool(true))
    }

    @Test func escapedHashIsNotADirective() throws {
        let report = parse("1..2\nok 1 - not a \\# SKIP\nok 2 - back\\\\slash\n")
        #expect(report.results.map(\.status) == [.ok, .ok])
        #expect(report.results.map(\.name) == ["not a # SKIP", "back\\slash"])
    }

    @Test func planAtTheEndAndMissingTests() throws {
        let report = parse("ok 1\nok 3\n1..4\n")
        #expect(report.counts == ResultCounts(ok: 2, inconclusive: 2))
        let missing = report.results.filter { $0.status == .inconclusive }
        #expect(missing.map(\.name) == ["test 2", "test 4"])
        #expect(missing.allSatisfy { $0.message == "missing from output" })
    }

    @Test func skipAll() throws {
        let report = parse("TAP version 13\n1..0 # SKIP no database\n")
        #expect(report.results.count == 1)
        #expect(report.results[0].status == .inconclusive)
        #expect(report.results[0].message == "skipped: no database")
    }

    @Test func bailOutMarksTheRestOfThePlan() throws {
        let report = parse("1..4\nok 1\nnot ok 2\nBail out! disk full\nok 3\n")
        #expect(report.results.map(\.status) == [.ok, .failed, .inconclusive, .inconclusive])
        #expect(report.results[2].message == "bailed out: disk full")
        #expect(report.problems == ["the test run bailed out: disk full"])
    }

    @Test func yamlDiagnosticsBecomeMessageAndCustomData() throws {
        let report = parse(
            """
            1..1
            not ok 1 - compare
              ---
              message: 'values differ'
              severity: fail
              duration_ms: 12.6
              data:
                got: 1
                expect: [1, 2]
              stack: |-
                at a
                at b
              ...
            """)
        let result = try #require(report.results.first)
        #expect(result.message == "values differ")
        #expect(result.durationMs == Milliseconds(13))
        #expect(result.description == "at a\nat b")
        guard case .object(let diagnostic)? = result.custom["diagnostic"] else {
            Issue.record("no diagnostic: \(result.custom)")
            return
        }
        #expect(diagnostic["severity"] == .string("fail"))
        #expect(diagnostic["data"] == .object(["got": .integer(1), "expect": .string("[1, 2]")]))
    }

    @Test func garbageYAMLIsToleratedAndKeptAsText() throws {
        let report = parse("1..2\nnot ok 1 - x\n  ---\n  : : :\n  - {\nok 2 - y\n")
        #expect(report.results.map(\.status) == [.failed, .ok])
        #expect(report.results[0].custom["diagnosticText"] != nil)
    }

    @Test func indentedSubtestsWithSubtestComments() throws {
        let report = parse(
            """
            TAP version 14
            # Subtest: group
                1..2
                ok 1 - inner a
                not ok 2 - inner b
            not ok 1 - group
            1..1
            """)
        #expect(report.results.map(\.name) == ["inner a", "inner b"])
        #expect(report.results.allSatisfy { $0.suitePath == ["group"] })
        #expect(report.results.map(\.key) == ["1.1", "1.2"])
        #expect(report.counts == ResultCounts(ok: 1, failed: 1))
    }

    @Test func failedParentWithPassingChildrenIsStillReported() throws {
        let report = parse("1..1\n    1..2\n    ok 1 - a\nnot ok 1 - parent crashed\n")
        #expect(report.results.map(\.status) == [.ok, .inconclusive, .failed])
        #expect(report.results.last?.name == "parent crashed")
    }

    @Test func strayLinesAreIgnoredButCounted() throws {
        let report = parse("1..1\nhello world\nok 1\n  not TAP either\n")
        #expect(report.ignoredLines == 2)
        #expect(report.results.count == 1)
    }

    @Test func outOfOrderAndDuplicateNumbers() throws {
        let report = parse("1..3\nok 3\nok 1\nok 2\nok 2\n")
        #expect(report.results.map(\.key) == ["3", "1", "2", "2#2"])
        #expect(report.problems.contains { $0.contains("more than once") })
    }

    @Test func missingPlanIsAProblem() {
        let report = parse("ok 1\n")
        #expect(report.problems.contains { $0.contains("no plan") })
    }

    @Test func emptyStreamIsAProblem() {
        #expect(!parse("").problems.isEmpty)
    }

    @Test func crlfAndBom() throws {
        let report = TAPParser().parse(Array("\u{FEFF}TAP version 13\r\n1..1\r\nok 1 - é\r\n".utf8))
        #expect(report.problems.isEmpty)
        #expect(report.results.first?.name == "é")
    }
}
