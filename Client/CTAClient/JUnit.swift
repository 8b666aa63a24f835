import CTACore
public import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A JUnit XML report: what CI systems read (GitLab, Jenkins, GitHub Actions). ``JUnitWriter`` makes it from an
/// execution's results, ``JUnitReader`` reads one back.
public struct JUnitReport: Hashable, Sendable {
    public var suites: [Suite]

    public init(suites: [Suite]) { self.suites = suites }

    /// One `<testsuite>`: one execution.
    public struct Suite: Hashable, Sendable {
        public var name: String
        public var id: String?
        public var timestamp: String?
        /// Seconds.
        public var time: Double?
        public var properties: [Property]
        public var cases: [Case]

        public init(
            name: String, id: String? = nil, timestamp: String? = nil, time: Double? = nil,
            properties: [Property] = [], cases: [Case] = []
        ) {
            self.name = name
            self.id = id
            self.timestamp = timestamp
            self.time = time
            self.properties = properties
            self.cases = cases
        }

        public var tests: Int { cases.count }
        public var failures: Int { cases.filter { $0.outcome.kind == .failure }.count }
        public var errors: Int { cases.filter { $0.outcome.kind == .error }.count }
        public var skipped: Int { cases.filter { $0.outcome.kind == .skipped }.count }
    }

    /// A `<property name value/>`.
    public struct Property: Hashable, Sendable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// One `<testcase>`: one test result.
    public struct Case: Hashable, Sendable {
        public var name: String
        public var classname: String
        /// Seconds.
        public var time: Double?
        public var properties: [Property]
        public var outcome: Outcome

        public init(name: String, classname: String, time: Double?, properties: [Property] = [], outcome: Outcome) {
            self.name = name
            self.classname = classname
            self.time = time
            self.properties = properties
            self.outcome = outcome
        }

        /// The value of a property of the test case.
        public func property(_ name: String) -> String? { properties.first { $0.name == name }?.value }
    }

    /// Whether a test case passed, and if not how.
    public struct Outcome: Hashable, Sendable {
        public enum Kind: String, Hashable, Sendable {
            case passed, failure, error, skipped
        }

        public var kind: Kind
        /// The `type` attribute: the CTA status (`failed`, `partial`, `inconclusive`).
        public var type: String?
        public var message: String?

        public init(_ kind: Kind, type: String? = nil, message: String? = nil) {
            self.kind = kind
            self.type = type
            self.message = message
        }

        public static let passed = Outcome(.passed)
    }
}

/// Writes an execution's results as JUnit XML: one `<testsuite>` for the execution, one `<testcase>` per result.
///
/// Mapping: `ok` passes; `failed` is a `<failure>`; `partial` and `inconclusive` (the test could not run as a
/// whole: setup, lost machine, timeout) are an `<error>` with the status as its `type`; `skipped` is `<skipped>`.
/// A test case's `classname` is the test's identifier and its `name` the result's own name (a case of a JUnit or
/// TAP report the test produced) or the test's; its properties name the `machine` and the `attempt`.
public enum JUnitWriter {
    public static func report(execution: Execution, results: [TestResultItem]) -> JUnitReport {
        var properties = [JUnitReport.Property("execution", execution.id), .init("scenario", execution.scenario)]
        if let suite = execution.suite { properties.append(.init("suite", suite)) }
        if let configuration = execution.configuration { properties.append(.init("configuration", configuration)) }
        if let runMode = execution.runMode { properties.append(.init("runMode", runMode)) }
        properties.append(.init("phase", execution.phase))
        if let reason = execution.endReason { properties.append(.init("endReason", reason)) }
        let cases = results.map { result in
            let message = result.message.map(sanitized)
            var caseProperties = [JUnitReport.Property("machine", result.machine)]
            caseProperties.append(.init("attempt", "\(result.attempt ?? 1)"))
            if let index = result.index { caseProperties.append(.init("index", "\(index)")) }
            caseProperties.append(.init("eventId", result.eventId))
            let outcome: JUnitReport.Outcome =
                switch result.status {
                case "ok": .passed
                case "failed": .init(.failure, type: result.status, message: message ?? "failed")
                case "skipped": .init(.skipped, message: message)
                default: .init(.error, type: result.status, message: message ?? result.status)
                }
            return JUnitReport.Case(
                name: result.name.flatMap { $0.isEmpty ? nil : $0 } ?? result.test, classname: result.test,
                time: result.durationMs.map { Double($0) / 1000 }, properties: caseProperties, outcome: outcome)
        }
        let time = results.compactMap(\.durationMs).reduce(0, +)
        let suite = JUnitReport.Suite(
            name: execution.scenario, id: execution.id, timestamp: execution.startedAt ?? execution.createdAt,
            time: Double(time) / 1000, properties: properties, cases: cases)
        return JUnitReport(suites: [suite])
    }

    /// The report as an XML document.
    public static func xml(_ report: JUnitReport) -> String {
        var lines = [#"<?xml version="1.0" encoding="UTF-8"?>"#]
        let all = report.suites
        lines.append(
            "<testsuites name=\"cta\" tests=\"\(all.map(\.tests).reduce(0, +))\" "
                + "failures=\"\(all.map(\.failures).reduce(0, +))\" errors=\"\(all.map(\.errors).reduce(0, +))\" "
                + "skipped=\"\(all.map(\.skipped).reduce(0, +))\" time=\"\(seconds(all.compactMap(\.time).reduce(0, +)))\">"
        )
        for suite in report.suites {
            var head = "  <testsuite name=\"\(escape(suite.name))\""
            if let id = suite.id { head += " id=\"\(escape(id))\"" }
            head += " tests=\"\(suite.tests)\" failures=\"\(suite.failures)\" errors=\"\(suite.errors)\""
            head += " skipped=\"\(suite.skipped)\""
            if let time = suite.time { head += " time=\"\(seconds(time))\"" }
            if let timestamp = suite.timestamp { head += " timestamp=\"\(escape(timestamp))\"" }
            lines.append(head + ">")
            lines += properties(suite.properties, indent: "    ")
            for testCase in suite.cases {
                var open = "    <testcase name=\"\(escape(testCase.name))\" classname=\"\(escape(testCase.classname))\""
                if let time = testCase.time { open += " time=\"\(seconds(time))\"" }
                lines.append(open + ">")
                lines += properties(testCase.properties, indent: "      ")
                let outcome = testCase.outcome
                if outcome.kind != .passed {
                    var element = "      <\(outcome.kind.rawValue)"
                    if let message = outcome.message { element += " message=\"\(escape(message))\"" }
                    if let type = outcome.type { element += " type=\"\(escape(type))\"" }
                    if outcome.kind != .skipped, let message = outcome.message {
                        element += ">\(escape(message))</\(outcome.kind.rawValue)>"
                    } else {
                        element += "/>"
                    }
                    lines.append(element)
                }
                lines.append("    </testcase>")
            }
            lines.append("  </testsuite>")
        }
        lines.append("</testsuites>")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func properties(_ properties: [JUnitReport.Property], indent: String) -> [String] {
        guard !properties.isEmpty else { return [] }
        return ["\(indent)<properties>"]
            + properties.map { "\(indent)  <property name=\"\(escape($0.name))\" value=\"\(escape($0.value))\"/>" }
            + ["\(indent)</properties>"]
    }

    /// Text with the characters XML 1.0 cannot hold (most control characters) replaced by U+FFFD.
    public static func sanitized(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            result.append(XMLText.isXMLCharacter(scalar) ? scalar : "\u{FFFD}")
        }
        return String(result)
    }

    /// Seconds with millisecond precision: `1.250`.
    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }

    static func escape(_ text: String) -> String { XMLText.escape(text) }
}

/// Reads a JUnit XML report (the shape ``JUnitWriter`` writes, and the common one of other tools).
public enum JUnitReader {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func read(_ data: Data) throws -> JUnitReport {
        let parser = XMLParser(data: data)
        let delegate = Delegate()
        parser.delegate = delegate
        guard parser.parse() else {
            throw Failure(
                description: "invalid JUnit XML at line \(parser.lineNumber): "
                    + (parser.parserError.map { "\($0)" } ?? "parse error"))
        }
        if let problem = delegate.problem { throw Failure(description: problem) }
        guard delegate.sawRoot, delegate.depth == 0 else {
            throw Failure(description: "invalid JUnit XML: the document ends inside an element")
        }
        return JUnitReport(suites: delegate.suites)
    }

    private final class Delegate: NSObject, XMLParserDelegate {
        var suites: [JUnitReport.Suite] = []
        var problem: String?
        var depth = 0
        var sawRoot = false
        private var suite: JUnitReport.Suite?
        private var testCase: JUnitReport.Case?
        private var outcomeText: String?

        func parser(
            _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            depth += 1
            sawRoot = true
            switch name {
            case "testsuite":
                suite = JUnitReport.Suite(
                    name: attributes["name"] ?? "", id: attributes["id"], timestamp: attributes["timestamp"],
                    time: attributes["time"].flatMap(Double.init))
            case "testcase":
                testCase = JUnitReport.Case(
                    name: attributes["name"] ?? "", classname: attributes["classname"] ?? "",
                    time: attributes["time"].flatMap(Double.init), outcome: .passed)
            case "property":
                let property = JUnitReport.Property(attributes["name"] ?? "", attributes["value"] ?? "")
                if testCase != nil {
                    testCase?.properties.append(property)
                } else {
                    suite?.properties.append(property)
                }
            case "failure", "error", "skipped":
                guard testCase != nil, let kind = JUnitReport.Outcome.Kind(rawValue: name) else { return }
                testCase?.outcome = JUnitReport.Outcome(kind, type: attributes["type"], message: attributes["message"])
                outcomeText = ""
            default:
                break
            }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            outcomeText? += string
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            depth -= 1
            switch name {
            case "failure", "error", "skipped":
                if testCase?.outcome.message == nil, let text = outcomeText, !text.isEmpty {
                    testCase?.outcome.message = text
                }
                outcomeText = nil
            case "testcase":
                if let testCase {
                    if suite == nil { problem = "a testcase outside any testsuite" }
                    suite?.cases.append(testCase)
                }
                testCase = nil
            case "testsuite":
                if let suite { suites.append(suite) }
                suite = nil
            default:
                break
            }
        }
    }
}
