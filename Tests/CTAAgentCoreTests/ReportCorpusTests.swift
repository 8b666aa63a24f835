import CTACore
import Foundation
import Testing

@testable import CTAAgentCore

/// Every real report in the shared corpus, and exact expectations for many of them.
@Suite(.enabled(if: ReportCorpus.isAvailable, ReportCorpus.missingReason))
struct ReportCorpusTests {
    @Test func everyJUnitFileYieldsResultsOrAProblem() throws {
        let files = try ReportCorpus.files("junit")
        #expect(files.count >= 50)
        for name in files {
            let report = try ReportCorpus.junit(name)
            #expect(!report.results.isEmpty || !report.problems.isEmpty, "\(name) yields nothing")
            #expect(Set(report.results.map(\.key)).count == report.results.count, "\(name) has duplicate keys")
            #expect(report.results.allSatisfy { !$0.name.isEmpty }, "\(name) has an empty name")
        }
    }

    @Test func everyTAPFileYieldsResultsOrAProblem() throws {
        let files = try ReportCorpus.files("tap")
        #expect(files.count >= 30)
        for name in files {
            let report = try ReportCorpus.tap(name)
            #expect(!report.results.isEmpty || !report.problems.isEmpty, "\(name) yields nothing")
            #expect(Set(report.results.map(\.key)).count == report.results.count, "\(name) has duplicate keys")
        }
    }

    // MARK: JUnit

    @Test(arguments: [
        ("dorny_go-junit-report.xml", ResultCounts(ok: 2, failed: 2, inconclusive: 1)),
        ("dorny_jest-junit.xml", ResultCounts(ok: 1, failed: 4, inconclusive: 1)),
        ("dorny_python-xunit-pytest.xml", ResultCounts(ok: 6, failed: 2, inconclusive: 2)),
        ("dorny_python-xunit-unittest.xml", ResultCounts(ok: 4, failed: 2, inconclusive: 2)),
        ("dorny_xcode-trainer-nested-suites.xml", ResultCounts(ok: 4, failed: 1, inconclusive: 1)),
        ("enricomi_no-attributes.xml", ResultCounts(ok: 1, failed: 2, inconclusive: 1)),
        ("enricomi_unsupported-unicode.xml", ResultCounts(ok: 1, failed: 4, inconclusive: 2)),
        ("enricomi_testsuite-root-nested.xml", ResultCounts(ok: 5)),
        ("gojunitreport_012-subtests.xml", ResultCounts(ok: 6, failed: 4, inconclusive: 1)),
        ("gojunitreport_013-build-failed-errors.xml", ResultCounts(ok: 2, failed: 3)),
        ("mikepenz_cpp-status-disabled.xml", ResultCounts(ok: 6, failed: 6, inconclusive: 10)),
        ("mikepenz_surefire-EmailAddressTest.xml", ResultCounts(ok: 2, failed: 7)),
        ("spekt_dotnet-nunit-JunitXml.TestLogger-bom.xml", ResultCounts(ok: 32, failed: 14, inconclusive: 6)),
        ("jenkins_eclipse-pde-huge-783KB.xml", ResultCounts(ok: 3366)),
        ("jenkins_nested-3-level-suite-error.xml", ResultCounts(ok: 2, inconclusive: 1)),
    ])
    func junitCounts(file: String, expected: ResultCounts) throws {
        let report = try ReportCorpus.junit(file)
        #expect(report.counts == expected, "\(report.listing)")
        #expect(report.problems.isEmpty, "\(report.problems)")
    }

    @Test func jestFailureNameAndMessage() throws {
        let report = try ReportCorpus.junit("dorny_jest-junit.xml")
        let failing = try report.result(named: "Failing test")
        #expect(failing.status == .failed)
        #expect(failing.classname == "Test 1 › Test 1.1")
        #expect(failing.message == "Error: expect(received).toBeTruthy()")
        #expect(failing.description?.contains("main.test.js:10:21") == true)
    }

    @Test func surefireFlakyAndReruns() throws {
        let report = try ReportCorpus.junit("enricomi_surefire-flaky-rerun.xml")
        #expect(report.counts == ResultCounts(ok: 2, failed: 2))
        let flaky = try report.result(named: "failsAssertionOnlyFirstAttempt")
        #expect(flaky.status == .ok)
        #expect(flaky.custom["flaky"] == .bool(true))
        let always = try report.result(named: "throwsAlways")
        #expect(always.status == .failed)
        #expect(always.custom["junitKind"] == .string("error"))
        guard case .array(let reruns)? = always.custom["reruns"] else {
            Issue.record("no reruns")
            return
        }
        #expect(reruns.count == 3)

        let onlyFlaky = try ReportCorpus.junit("jenkins_surefire-flaky-only-flakyFailure.xml")
        let testApp = try onlyFlaky.result(named: "testApp")
        #expect(testApp.status == .ok)
        #expect(testApp.message == "flaky: passed after 2 failed attempts")
    }

    @Test func truncatedReportsKeepTheirGoodResults() throws {
        let pytest = try ReportCorpus.junit("enricomi_pytest-corrupt-truncated.xml")
        #expect(try pytest.result(named: "test_check_shape_compatibility").status == .ok)
        let cut = try pytest.result(named: "test_get_available_devices")
        #expect(cut.status == .inconclusive)
        #expect(cut.custom["incomplete"] == .bool(true))
        #expect(pytest.problems.count == 1)
        #expect(pytest.problems.first?.contains("line 11") == true)

        let surefire = try ReportCorpus.junit("mikepenz_surefire-truncated-CorruptTest.xml")
        let testEM = try surefire.result(named: "testEM")
        #expect(testEM.status == .failed)
        #expect(testEM.message == "java.lang.AssertionError: WRONG COVERAGE: 41 > 26")
        #expect(surefire.problems.count == 1)
    }

    @Test func suiteLevelErrorWithoutTestCases() throws {
        let report = try ReportCorpus.junit("jenkins_suite-level-error-no-testcase-6700.xml")
        #expect(report.results.count == 1)
        let result = try report.result(named: "gda.device.detector.XHDetectorTest")
        #expect(result.status == .inconclusive)
        #expect(result.message == "the suite could not run: gda/device/detector/DAServer")
        #expect(result.description?.contains("ClassNotFoundException") == true)
    }

    @Test func duplicateNamesAndEmptyName() throws {
        let duplicates = try ReportCorpus.junit("jenkins_duplicate-names-no-xmldecl-30413.xml")
        #expect(duplicates.results.map(\.name) == ["DuplicateTestName", "DuplicateTestName"])
        #expect(duplicates.results.map(\.status) == [.failed, .ok])
        let testng = try ReportCorpus.junit("dorny_testng-JUnitReportReporter-pulsar.xml")
        #expect(testng.results.count == 2)
        #expect(Set(testng.results.map(\.key)).count == 2)

        let unnamed = try ReportCorpus.junit("jenkins_surefire-junit5-empty-testcasename.xml")
        let result = try #require(unnamed.results.first)
        #expect(result.name == "test.TestJUnit5FailingInBeforeAll")
        #expect(result.status == .failed)
        #expect(result.systemOut == "In setup...")
    }

    @Test func entitiesBomCrlfAndUnicode() throws {
        let entities = try ReportCorpus.junit("enricomi_with-xml-entities.xml")
        #expect(try entities.result(named: "Test with & in the test name").message == "A message with &")
        #expect(try entities.result(named: "Test with < and > in the test name").message == "skipped: A message with < and >")
        let bom = try ReportCorpus.junit("enricomi_xunitnet-to-junit-bom-crlf.xml")
        #expect(bom.counts == ResultCounts(ok: 2))
        let crlf = try ReportCorpus.junit("jenkins_crlf-skip-attr-cobol-review.xml")
        #expect(try crlf.result(named: "bar2").description?.contains("COBOL Code Review – Naming") == true)
        let unicode = try ReportCorpus.junit("enricomi_unsupported-unicode.xml")
        #expect(unicode.results.first?.name.hasSuffix("𒍺𡓿𠄉㦓") == true)
    }

    @Test func badDurationsAndProperties() throws {
        let durations = try ReportCorpus.junit("jenkins_junit-report-bad-duration.xml")
        #expect(durations.results.map(\.durationMs) == [nil, Milliseconds(100_000)])
        let properties = try ReportCorpus.junit("jenkins_junit-report-with-properties.xml")
        let testCaseA = try properties.result(named: "testCaseA")
        #expect(testCaseA.properties == [ReportProperty(name: "description", value: "description of test testCaseA")])
        #expect(properties.suites.first?.properties.count == 2)
    }

    @Test func suiteOutputExplainsAFailureWithoutItsOwn() throws {
        let report = try ReportCorpus.junit("enricomi_bazel-suite-logs.xml")
        let result = try report.result(named: "bazel/failing_absl_test")
        #expect(result.status == .failed)
        #expect(result.systemOut?.contains("ModuleNotFoundError") == true)
    }

    @Test func emptySuiteIsAProblemNotACrash() throws {
        let report = try ReportCorpus.junit("dorny_jest-junit-empty-testsuite.xml")
        #expect(report.results.isEmpty)
        #expect(report.problems == ["the report holds no test cases"])
    }

    // MARK: TAP

    @Test(arguments: [
        ("tap4j_jsdom-tape-huge-315KB.tap", ResultCounts(ok: 5806, failed: 17)),
        ("tapjs_out_of_order.tap", ResultCounts(ok: 15)),
        ("tapjs_skip.tap", ResultCounts(ok: 3, inconclusive: 2)),
        ("tapjs_skipping-a-few.tap", ResultCounts(ok: 1, inconclusive: 4)),
        ("tapjs_todo_inline.tap", ResultCounts(ok: 4, inconclusive: 1)),
        ("tapjs_unknown-amount-and-failures.tap", ResultCounts(ok: 5, failed: 2)),
        ("tapjs_subtest-buffer.tap", ResultCounts(ok: 6)),
        ("tapjs_perl-test2-buffered.tap", ResultCounts(ok: 8, failed: 1)),
        ("tapjs_todo.tap", ResultCounts(ok: 9)),
        ("tapjs_escape_hash.tap", ResultCounts(ok: 3)),
        ("tapjs_creative-liberties.tap", ResultCounts(ok: 9)),
        ("tapjs_version_late.tap", ResultCounts(ok: 5)),
        ("tapjs_pragma-mid-child-strict.tap", ResultCounts(ok: 1)),
        ("tap4j_yaml-containing-tap-text.tap", ResultCounts(ok: 1)),
    ])
    func tapCounts(file: String, expected: ResultCounts) throws {
        let report = try ReportCorpus.tap(file)
        #expect(report.counts == expected, "\(report.listing)")
    }

    @Test func hugeTAPFailingTest() throws {
        let report = try ReportCorpus.tap("tap4j_jsdom-tape-huge-315KB.tap")
        let failing = report.results.filter { $0.status == .failed }
        #expect(failing.first?.name == "computed color of body is red")
        #expect(failing.first?.origin == .tap(number: 2821, description: "computed color of body is red"))
        #expect(report.problems.isEmpty)
    }

    @Test func skipAllFromCorpus() throws {
        let report = try ReportCorpus.tap("tapjs_skipall_v13.tap")
        #expect(report.results.count == 1)
        #expect(report.results[0].status == .inconclusive)
        #expect(report.results[0].message == "skipped: rope")
    }

    @Test func bailOutsFromCorpus() throws {
        let bailout = try ReportCorpus.tap("tapjs_bailout.tap")
        #expect(bailout.counts == ResultCounts(ok: 3, inconclusive: 2))
        #expect(bailout.results.last?.message == "bailed out: GERONIMMMOOOOOO!!!")
        let givingUp = try ReportCorpus.tap("tapjs_giving-up.tap")
        #expect(givingUp.counts == ResultCounts(failed: 1, inconclusive: 572))
        let escaped = try ReportCorpus.tap("tapjs_bail-escaped.tap")
        #expect(escaped.problems.contains("the test run bailed out: hash # slash \\ noesc hash # noesc slash \\ done"))
        let directives = try ReportCorpus.tap("tap4j_yaml-comments-bailout-directives.tap")
        #expect(directives.results.map(\.status) == [.ok, .inconclusive, .inconclusive])
        #expect(directives.results.map(\.message) == [nil, "skipped: not implemented yet", "bailed out: a test failed"])
    }

    @Test func todoFromCorpus() throws {
        let report = try ReportCorpus.tap("tapjs_not-ok-todo.tap")
        #expect(report.counts == ResultCounts(ok: 3, inconclusive: 1))
        #expect(try report.result(named: "should be equivalent").message == "todo: but we will fix it later")
    }

    @Test func subtestsFromCorpus() throws {
        let node = try ReportCorpus.tap("tapjs_node-test-mjs.tap")
        #expect(node.counts == ResultCounts(failed: 2))
        #expect(try node.result(named: "uhoh, this one throws").message == "Invalid time value")
        #expect(try node.result(named: "nesting suite").suitePath == ["A thing"])

        let npm = try ReportCorpus.tap("tap4j_npm-test-node-tap-subtests.tap")
        let inner = try #require(npm.results.first { $0.key == "2.1.1" })
        #expect(inner.name == "should be equivalent")
        #expect(inner.suitePath == ["test/array.js", "array test"])
        #expect(inner.key == "2.1.1")

        let noise = try ReportCorpus.tap("tapjs_indented-stdout-noise.tap")
        #expect(noise.results.map(\.status) == [.ok, .failed])
        #expect(noise.results.map(\.name) == ["boom", "index.js"])
        #expect(noise.ignoredLines > 10)
    }

    @Test func yamlFromCorpus() throws {
        let unknown = try ReportCorpus.tap("tapjs_unknown-amount-and-failures.tap")
        let saphire = try unknown.result(named: "pinged saphire")
        #expect(saphire.message == "hostname \"saphire\" unknown")
        guard case .object(let diagnostic)? = saphire.custom["diagnostic"] else {
            Issue.record("no diagnostic")
            return
        }
        #expect(diagnostic["severity"] == .string("fail"))

        let garbage = try ReportCorpus.tap("tapjs_garbage-yamlish.tap")
        #expect(garbage.counts == ResultCounts(ok: 1, failed: 3))
        #expect(try garbage.result(named: "de-indenting the yamlish wrongly.").message
            == "Failed with error 'hostname peebles.example.com not found'")

        let broken = try ReportCorpus.tap("tap4j_testng-broken-yaml-plan-at-end.tap")
        #expect(broken.counts == ResultCounts(failed: 1))
        #expect(broken.ignoredLines == 2)
    }

    @Test func planOddities() throws {
        let outside = try ReportCorpus.tap("tapjs_outside-plan-end.tap")
        #expect(outside.counts == ResultCounts(ok: 4, inconclusive: 1))
        #expect(outside.problems == ["test 5 outside the plan 1..4"])
        let testem = try ReportCorpus.tap("tap4j_testem-phantomjs-skip-lines.tap")
        #expect(testem.results.filter { $0.status == .inconclusive }.map(\.message) == ["missing from output", "missing from output"])
    }
}
