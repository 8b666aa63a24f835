import CTACore
import Foundation
import Testing

@testable import CTAAgentCore

/// The JUnit mapping rules, one small inline report each.
@Suite struct ReportJUnitTests {
    private func parse(_ xml: String, limits: ReportLimits = .standard) -> ParsedReport {
        JUnitParser(limits: limits).parse(Array(xml.utf8))
    }

    @Test func passingFailingErroredAndSkippedCases() throws {
        let report = parse(
            """
            <testsuite name="s">
              <testcase classname="C" name="passes" time="0.25"/>
              <testcase classname="C" name="fails" time="1"><failure message="expected 1" type="Assert">trace
            line 2</failure></testcase>
              <testcase classname="C" name="throws"><error message="boom" type="NPE">stack</error></testcase>
              <testcase classname="C" name="skips"><skipped message="not on linux"/></testcase>
            </testsuite>
            """)
        #expect(report.problems.isEmpty)
        #expect(report.counts == ResultCounts(ok: 1, failed: 2, inconclusive: 1))
        let passes = try report.result(named: "passes")
        #expect(passes.status == .ok)
        #expect(passes.durationMs == Milliseconds(250))
        #expect(passes.suitePath == ["s"])
        #expect(passes.origin == .junit(suite: "s", classname: "C", testcase: "passes"))
        let fails = try report.result(named: "fails")
        #expect(fails.status == .failed)
        #expect(fails.message == "expected 1")
        #expect(fails.description == "trace\nline 2")
        #expect(fails.custom["junitKind"] == .string("failure"))
        #expect(fails.custom["junitType"] == .string("Assert"))
        let throwsCase = try report.result(named: "throws")
        #expect(throwsCase.status == .failed)
        #expect(throwsCase.custom["junitKind"] == .string("error"))
        let skips = try report.result(named: "skips")
        #expect(skips.status == .inconclusive)
        #expect(skips.message == "skipped: not on linux")
    }

    @Test func disabledStatusAttributeIsSkipped() throws {
        let report = parse(#"<testsuites><testsuite name="g"><testcase name="t" status="disabled"/></testsuite></testsuites>"#)
        let result = try report.result(named: "t")
        #expect(result.status == .inconclusive)
        #expect(result.message == "skipped: disabled")
    }

    @Test func flakyTestThatPassedOnRerunIsOkAndMarked() throws {
        let report = parse(
            """
            <testsuite name="s"><testcase name="flaky" classname="C">
              <flakyFailure message="first try" type="AssertionError"><stackTrace>at C.flaky</stackTrace></flakyFailure>
              <flakyError message="second try" type="IOException"><stackTrace>at C.io</stackTrace></flakyError>
            </testcase></testsuite>
            """)
        let result = try report.result(named: "flaky")
        #expect(result.status == .ok)
        #expect(result.custom["flaky"] == .bool(true))
        guard case .array(let runs)? = result.custom["flakyRuns"] else {
            Issue.record("no flakyRuns in \(result.custom)")
            return
        }
        #expect(runs.count == 2)
        #expect(runs.first == .object(["kind": .string("flakyFailure"), "message": .string("first try"),
                                       "type": .string("AssertionError"), "stackTrace": .string("at C.flaky")]))
    }

    @Test func rerunFailureAloneIsFailed() throws {
        let report = parse(
            #"<testsuite name="s"><testcase name="r"><rerunFailure message="again"><stackTrace>x</stackTrace></rerunFailure></testcase></testsuite>"#)
        let result = try report.result(named: "r")
        #expect(result.status == .failed)
        #expect(result.message == "again")
        #expect(result.custom["reruns"] != nil)
    }

    @Test func badDurationsAreUnknownNotProblems() throws {
        let report = parse(
            """
            <testsuite name="s">
              <testcase name="comma" time="1,234.5"/><testcase name="word" time="abc"/>
              <testcase name="negative" time="-3"/><testcase name="exponent" time="4.5e-02"/>
            </testsuite>
            """)
        #expect(report.problems.isEmpty)
        #expect(try report.result(named: "comma").durationMs == nil)
        #expect(try report.result(named: "comma").custom["junitTime"] == .string("1,234.5"))
        #expect(try report.result(named: "word").durationMs == nil)
        #expect(try report.result(named: "negative").durationMs == nil)
        #expect(try report.result(named: "exponent").durationMs == Milliseconds(45))
        #expect(report.counts.ok == 4)
    }

    @Test func suiteLevelErrorBecomesOneInconclusiveResult() throws {
        let report = parse(
            #"<testsuite name="Broken"><error message="NoClassDefFoundError" type="E">trace</error></testsuite>"#)
        #expect(report.results.count == 1)
        let result = try report.result(named: "Broken")
        #expect(result.status == .inconclusive)
        #expect(result.message == "the suite could not run: NoClassDefFoundError")
        #expect(result.custom["suiteLevel"] == .bool(true))
    }

    @Test func duplicateNamesKeepBothWithDistinctStableKeys() throws {
        let xml = #"<testsuite name="s"><testcase classname="C" name="same"/><testcase classname="C" name="same"><failure/></testcase></testsuite>"#
        let first = parse(xml)
        let second = parse(xml)
        #expect(first.results.count == 2)
        #expect(Set(first.results.map(\.key)).count == 2)
        #expect(first.results.map(\.key) == second.results.map(\.key))
        #expect(first.results.map(\.status) == [.ok, .failed])
    }

    @Test func emptyNameFallsBackToClassname() throws {
        let report = parse(#"<testsuite name="s"><testcase classname="pkg.Setup" name=""><failure/></testcase></testsuite>"#)
        let result = try #require(report.results.first)
        #expect(result.name == "pkg.Setup")
        #expect(result.custom["unnamed"] == .bool(true))
    }

    @Test func bomCrlfEntitiesAndNoDeclaration() throws {
        let xml = "\u{FEFF}<testsuites>\r\n<testsuite name=\"a &amp; b\">\r\n<testcase name=\"&lt;x&gt; &#233;\"/>\r\n</testsuite>\r\n</testsuites>\r\n"
        let report = parse(xml)
        #expect(report.problems.isEmpty)
        let result = try #require(report.results.first)
        #expect(result.name == "<x> é")
        #expect(result.suitePath == ["a & b"])
    }

    @Test func nestedSuitesBuildThePath() throws {
        let report = parse(
            #"<testsuites name="runner"><testsuite name="outer"><testsuite name="inner"><testcase name="t"/></testsuite></testsuite></testsuites>"#)
        let result = try report.result(named: "t")
        #expect(result.suitePath == ["outer", "inner"])
        #expect(result.suite == "outer/inner")
    }

    @Test func propertiesAndOutputAreKept() throws {
        let report = parse(
            """
            <testsuite name="s"><properties><property name="os" value="linux"/></properties>
            <testcase name="t"><properties><property name="note">text value</property></properties>
            <system-out><![CDATA[hello]]></system-out><system-err>oops</system-err></testcase></testsuite>
            """)
        let result = try report.result(named: "t")
        #expect(result.properties == [ReportProperty(name: "note", value: "text value")])
        #expect(result.systemOut == "hello")
        #expect(result.systemErr == "oops")
        #expect(report.suites.first?.properties == [ReportProperty(name: "os", value: "linux")])
    }

    @Test func longTextIsBoundedOnACharacterBoundary() throws {
        let long = String(repeating: "é", count: 5000)
        let report = parse(
            "<testsuite name=\"s\"><testcase name=\"t\"><failure message=\"m\">\(long)</failure><system-out>\(long)</system-out></testcase></testsuite>",
            limits: ReportLimits(description: 1001, output: 501))
        let result = try report.result(named: "t")
        let description = try #require(result.description)
        #expect(description.hasPrefix(String(repeating: "é", count: 500)))
        #expect(description.contains("more bytes not kept"))
        #expect(description.utf8.count < 1100)
        #expect(try #require(result.systemOut).hasPrefix(String(repeating: "é", count: 250) + "\n…"))
    }

    @Test func truncatedXMLKeepsEarlierResultsAndReportsWhere() throws {
        let report = parse(
            """
            <testsuite name="s">
              <testcase name="done"/>
              <testcase name="cut"><failure message="bad">trace
            """)
        #expect(report.results.count == 2)
        #expect(try report.result(named: "done").status == .ok)
        let cut = try report.result(named: "cut")
        #expect(cut.status == .failed)
        #expect(cut.custom["incomplete"] == .bool(true))
        #expect(report.problems.count == 1)
        #expect(report.problems.first?.contains("line 3") == true)
    }

    @Test func corruptXMLInTheMiddleKeepsWhatCameBefore() throws {
        let report = parse(#"<testsuite name="s"><testcase name="a"/><testcase name="b" <oops/></testsuite>"#)
        // The malformed start tag of "b" is where the damage begins; nothing after it is trusted.
        #expect(report.results.map(\.name) == ["a"])
        #expect(report.results.map(\.status) == [.ok])
        #expect(report.problems.first?.contains("damaged") == true)
    }

    @Test func emptyInputAndNonJUnitXMLAreProblemsNotCrashes() {
        #expect(parse("").problems == ["the report is empty"])
        let other = parse("<html><body/></html>")
        #expect(other.results.isEmpty)
        #expect(other.problems.contains { $0.contains("<html>") })
    }

    @Test func originMapsOntoTheWire() throws {
        let report = parse(#"<testsuite name="s"><testcase classname="C" name="t"/></testsuite>"#)
        let origin = try #require(report.results.first).resultOrigin(stage: "test", file: "out/report.xml")
        #expect(origin == .junit(stage: "test", file: "out/report.xml", suite: "s", classname: "C", testcase: "t"))
    }
}
