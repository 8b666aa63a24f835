import CTACore
public import Foundation

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Reads a JUnit XML report, as written by Surefire, Gradle, pytest, jest, Go, .NET, cargo-nextest and others.
///
/// Every `<testcase>` becomes its own ``ParsedResult``. The suite path is the chain of `<testsuite>` names around
/// it (the `<testsuites>` wrapper's name is the runner's, not a suite's, and is left out).
///
/// Status mapping:
/// - no `failure`, `error` or `skipped` child → `ok`;
/// - `failure` → `failed` (custom `junitKind: "failure"`);
/// - `error` → `failed` with custom `junitKind: "error"`: a test that threw is still a failed test;
/// - Surefire `rerunFailure`/`rerunError` → `failed` (with or without a first `failure`), the reruns in custom
///   `reruns`;
/// - Surefire `flakyFailure`/`flakyError` on a test with no `failure`/`error` (it passed on a rerun) → `ok` with
///   custom `flaky: true` and the failed attempts in `flakyRuns`;
/// - `skipped` (or a `disabled` element, or a `status` attribute of `disabled`, `skipped`, `notrun`, `ignored`)
///   → `inconclusive` with message `skipped: <reason>`;
/// - a `status` attribute of `failed`/`error` with no outcome element → `failed`;
/// - a `failure` or `error` directly inside a `<testsuite>` (the suite could not run, e.g. a class failed to load)
///   → one extra `inconclusive` result named after the suite, custom `suiteLevel: true`.
///
/// A `time` attribute that is not a non-negative number (`1,234.5`, `abc`, `-3`) leaves the duration unknown and is
/// kept in custom `junitTime`; it is not a problem. Other test case attributes (`file`, `line`, …) are kept in
/// custom `attributes`.
///
/// Damage: when the XML is corrupt or truncated, the results read before the damage are kept and a problem names
/// the line and column. A test case the damage cut through is still reported: `failed` if a failure or error had
/// begun, `inconclusive` (skipped) if a skip had begun, otherwise `inconclusive` with a message saying the report
/// ends inside it; all of them carry custom `incomplete: true`.
public struct JUnitParser: Sendable {
    /// Bounds on the text kept per result.
    public var limits: ReportLimits

    /// Creates a parser.
    public init(limits: ReportLimits = .standard) {
        self.limits = limits
    }

    /// Parses a report from its bytes.
    public func parse(_ bytes: [UInt8]) -> ParsedReport {
        parse(Data(bytes))
    }

    /// Parses a report from its bytes.
    public func parse(_ data: Data) -> ParsedReport {
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            return ParsedReport(format: .junit, problems: ["the report is empty"])
        }
        let reader = JUnitReader(limits: limits)
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = false
        parser.shouldReportNamespacePrefixes = false
        parser.shouldResolveExternalEntities = false
        parser.delegate = reader
        let complete = parser.parse()
        if !complete || reader.errorLine != nil {
            reader.damaged(
                line: reader.errorLine ?? parser.lineNumber,
                column: reader.errorColumn ?? parser.columnNumber,
                code: parser.parserError.map { ($0 as NSError).code },
                empty: data.isEmpty)
        } else if reader.depth > 0 {
            // Some XMLParser builds end a truncated document without an error; open elements give it away.
            reader.damaged(line: parser.lineNumber, column: parser.columnNumber, code: nil, empty: false)
        }
        return reader.finish()
    }
}

// MARK: - Reader

/// The XML delegate: a stack of open elements that turns test cases into results as they close.
///
/// - Important: used by one `XMLParser` on one thread, synchronously, and discarded after `finish()`.
private final class JUnitReader: NSObject, XMLParserDelegate {
    let limits: ReportLimits
    var results: [ParsedResult] = []
    var suites: [ParsedSuite] = []
    var problems: [String] = []
    var keys = KeyAllocator()
    var errorLine: Int?
    var errorColumn: Int?

    var suiteStack: [SuiteState] = []
    var testCase: CaseState?
    var outcome: OutcomeState?
    var text: TextTarget = .none
    var textBuffer: BoundedText
    var propertyName: String?
    var depth = 0
    var sawRoot = false
    var testCaseDepth = 0
    var outcomeDepth = 0

    init(limits: ReportLimits) {
        self.limits = limits
        self.textBuffer = BoundedText(limit: limits.output)
    }

    enum TextTarget {
        case none
        case outcome
        case stackTrace
        case output(OutputKind)
        case property
    }

    enum OutputKind { case out, err }

    struct SuiteState {
        var name: String
        var path: [String]
        var durationMs: Milliseconds?
        var properties: [ReportProperty] = []
        var systemOut: String?
        var systemErr: String?
        var errors: [Outcome] = []
        var resultIndices: [Int] = []
    }

    struct CaseState {
        var name: String
        var classname: String?
        var durationMs: Milliseconds?
        var rawTime: String?
        var statusAttribute: String?
        var attributes: [String: JSONValue] = [:]
        var outcomes: [Outcome] = []
        var properties: [ReportProperty] = []
        var systemOut: String?
        var systemErr: String?
    }

    enum OutcomeKind: String {
        case failure, error, skipped, disabled, flakyFailure, flakyError, rerunFailure, rerunError

        var isFailure: Bool { self == .failure || self == .error }
        var isRerun: Bool { self == .rerunFailure || self == .rerunError }
        var isFlaky: Bool { self == .flakyFailure || self == .flakyError }
        var isSkip: Bool { self == .skipped || self == .disabled }
    }

    struct Outcome {
        var kind: OutcomeKind
        var message: String?
        var type: String?
        var text: String?
        var stackTrace: String?
        var systemOut: String?
        var systemErr: String?
        var complete: Bool
    }

    struct OutcomeState {
        var kind: OutcomeKind
        var message: String?
        var type: String?
        var text: BoundedText
        var stackTrace: String?
        var systemOut: String?
        var systemErr: String?
        var depth: Int

        func outcome(complete: Bool) -> Outcome {
            Outcome(
                kind: kind, message: message, type: type, text: text.finished(), stackTrace: stackTrace,
                systemOut: systemOut, systemErr: systemErr, complete: complete)
        }
    }

    // MARK: XMLParserDelegate

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
        qualifiedName qName: String?, attributes: [String: String] = [:]
    ) {
        if errorLine != nil { return }
        depth += 1
        if !sawRoot {
            sawRoot = true
            if elementName != "testsuites" && elementName != "testsuite" {
                problems.append("the root element is <\(elementName)>, not <testsuites> or <testsuite>")
            }
        }
        if outcome != nil {
            // Inside failure/skipped/flaky…: only stackTrace and output children matter.
            switch elementName {
            case "stackTrace": beginText(.stackTrace, limit: limits.description)
            case "system-out": beginText(.output(.out), limit: limits.output)
            case "system-err": beginText(.output(.err), limit: limits.output)
            default: break
            }
            return
        }
        switch elementName {
        case "testsuite":
            let name = cleanName(attributes["name"] ?? "", limit: limits.name)
            let parent = suiteStack.last?.path ?? []
            suiteStack.append(
                SuiteState(
                    name: name, path: name.isEmpty ? parent : parent + [name],
                    durationMs: junitDuration(attributes["time"])))
        case "testcase" where testCase == nil:
            beginCase(attributes)
        case "failure", "error", "skipped", "disabled", "flakyFailure", "flakyError", "rerunFailure", "rerunError":
            let kind = OutcomeKind(rawValue: elementName)!
            outcome = OutcomeState(
                kind: kind, message: attributes["message"], type: attributes["type"],
                text: BoundedText(limit: limits.description), depth: depth)
            text = .outcome
        case "system-out": beginText(.output(.out), limit: limits.output)
        case "system-err": beginText(.output(.err), limit: limits.output)
        case "property":
            propertyName = attributes["name"] ?? ""
            if let value = attributes["value"] {
                addProperty(ReportProperty(name: propertyName ?? "", value: value))
                propertyName = nil
            } else {
                beginText(.property, limit: limits.output)
            }
        default:
            break
        }
    }

    func parser(
        _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?
    ) {
        if errorLine != nil { return }
        defer { depth -= 1 }
        if var current = outcome {
            if depth == current.depth {
                endOutcome(complete: true)
                return
            }
            switch (elementName, text) {
            case ("stackTrace", .stackTrace):
                current.stackTrace = textBuffer.finished()
            case ("system-out", .output(.out)):
                current.systemOut = textBuffer.finished()
            case ("system-err", .output(.err)):
                current.systemErr = textBuffer.finished()
            default:
                return
            }
            outcome = current
            text = .outcome
            return
        }
        switch elementName {
        case "testsuite":
            endSuite()
        case "testcase" where testCase != nil && depth == testCaseDepth:
            endCase(incomplete: false)
        case "system-out", "system-err":
            guard case .output(let kind) = text else { return }
            let value = textBuffer.finished()
            text = .none
            if testCase != nil {
                if kind == .out { testCase?.systemOut = value } else { testCase?.systemErr = value }
            } else if !suiteStack.isEmpty {
                if kind == .out { suiteStack[suiteStack.count - 1].systemOut = value }
                else { suiteStack[suiteStack.count - 1].systemErr = value }
            }
        case "property":
            guard case .property = text, let name = propertyName else { return }
            addProperty(ReportProperty(name: name, value: textBuffer.finished() ?? ""))
            propertyName = nil
            text = .none
        default:
            break
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if errorLine != nil { return }
        appendText(string)
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        if errorLine != nil { return }
        if case .none = text { return }
        appendText(String(decoding: CDATABlock, as: UTF8.self))
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
        // What a recovering parser reports after damage is guesswork: keep only what came before it.
        if errorLine == nil {
            errorLine = parser.lineNumber
            errorColumn = parser.columnNumber
            parser.abortParsing()
        }
    }

    // MARK: Building

    private func appendText(_ string: String) {
        switch text {
        case .none: return
        case .outcome: outcome?.text.append(string)
        case .stackTrace, .output, .property: textBuffer.append(string)
        }
    }

    private func beginText(_ target: TextTarget, limit: Int) {
        text = target
        textBuffer = BoundedText(limit: limit)
    }

    private func addProperty(_ property: ReportProperty) {
        if testCase != nil {
            testCase?.properties.append(property)
        } else if !suiteStack.isEmpty {
            suiteStack[suiteStack.count - 1].properties.append(property)
        }
    }

    private func beginCase(_ attributes: [String: String]) {
        var state = CaseState(
            name: cleanName(attributes["name"] ?? "", limit: limits.name),
            classname: attributes["classname"].map { cleanName($0, limit: limits.name) }.flatMap {
                $0.isEmpty ? nil : $0
            },
            durationMs: junitDuration(attributes["time"]),
            statusAttribute: attributes["status"]?.lowercased())
        if let time = attributes["time"], state.durationMs == nil { state.rawTime = time }
        for (key, value) in attributes where !["name", "classname", "time"].contains(key) {
            state.attributes[key] = .string(bounded(value, limit: limits.message))
        }
        testCase = state
        testCaseDepth = depth
        text = .none
    }

    private func endOutcome(complete: Bool) {
        guard let current = outcome else { return }
        outcome = nil
        text = .none
        let finished = current.outcome(complete: complete)
        if testCase != nil {
            testCase?.outcomes.append(finished)
        } else if !suiteStack.isEmpty {
            suiteStack[suiteStack.count - 1].errors.append(finished)
        }
    }

    private func endCase(incomplete: Bool) {
        guard let state = testCase else { return }
        testCase = nil
        text = .none
        let suitePath = suiteStack.last?.path ?? []
        let name = state.name.isEmpty ? (state.classname ?? "(unnamed test case)") : state.name
        var custom: [String: JSONValue] = [:]
        if !state.attributes.isEmpty { custom["attributes"] = .object(state.attributes) }
        if let raw = state.rawTime { custom["junitTime"] = .string(bounded(raw, limit: 256)) }
        if state.name.isEmpty { custom["unnamed"] = .bool(true) }
        if incomplete { custom["incomplete"] = .bool(true) }

        let verdict = self.verdict(for: state, incomplete: incomplete)
        for (key, value) in verdict.custom { custom[key] = value }

        let base = ([suitePath.joined(separator: "/")] + [state.classname ?? "", name]).joined(separator: "::")
        let result = ParsedResult(
            key: keys.allocate(base),
            name: name,
            suitePath: suitePath,
            classname: state.classname,
            status: verdict.status,
            message: verdict.message,
            description: verdict.description,
            durationMs: state.durationMs,
            systemOut: state.systemOut,
            systemErr: state.systemErr,
            properties: state.properties,
            custom: custom,
            origin: .junit(suite: suitePath.last, classname: state.classname, testcase: name))
        if !suiteStack.isEmpty { suiteStack[suiteStack.count - 1].resultIndices.append(results.count) }
        results.append(result)
    }

    struct Verdict {
        var status: TestStatus
        var message: String?
        var description: String?
        var custom: [String: JSONValue] = [:]
    }

    private func verdict(for state: CaseState, incomplete: Bool) -> Verdict {
        let failures = state.outcomes.filter { $0.kind.isFailure }
        let reruns = state.outcomes.filter { $0.kind.isRerun }
        let flaky = state.outcomes.filter { $0.kind.isFlaky }
        let skips = state.outcomes.filter { $0.kind.isSkip }

        if let first = failures.first ?? reruns.first {
            var verdict = Verdict(
                status: .failed,
                message: cleanMessage(first.message ?? firstLine(first.text ?? first.stackTrace), limit: limits.message),
                description: describe(failures.isEmpty ? [first] : failures))
            verdict.custom["junitKind"] = .string(failures.contains { $0.kind == .error } ? "error" : first.kind.rawValue)
            if let type = first.type, !type.isEmpty { verdict.custom["junitType"] = .string(type) }
            if failures.count > 1 {
                verdict.custom["additionalFailures"] = .array(failures.dropFirst().map(summary))
            }
            if !reruns.isEmpty { verdict.custom["reruns"] = .array(reruns.map(summary)) }
            if !flaky.isEmpty { verdict.custom["flakyRuns"] = .array(flaky.map(summary)) }
            return verdict
        }
        if !flaky.isEmpty && !incomplete {
            var verdict = Verdict(
                status: .ok,
                message: "flaky: passed after \(flaky.count) failed attempt\(flaky.count == 1 ? "" : "s")")
            verdict.custom["flaky"] = .bool(true)
            verdict.custom["flakyRuns"] = .array(flaky.map(summary))
            return verdict
        }
        if let skip = skips.first {
            let reason = cleanMessage(skip.message, limit: limits.message)
                ?? cleanMessage(firstLine(skip.text), limit: limits.message)
                ?? cleanMessage(skip.type, limit: limits.message)
                ?? (skip.kind == .disabled ? "disabled" : "no reason given")
            return Verdict(status: .inconclusive, message: "skipped: \(reason)", description: skip.text)
        }
        if incomplete {
            var verdict = Verdict(
                status: .inconclusive, message: "the report ends inside this test case; its outcome is unknown")
            if !flaky.isEmpty { verdict.custom["flakyRuns"] = .array(flaky.map(summary)) }
            return verdict
        }
        switch state.statusAttribute {
        case "disabled", "skipped", "notrun", "ignored", "skip":
            return Verdict(status: .inconclusive, message: "skipped: \(state.statusAttribute!)")
        case "failed", "failure", "fail", "error", "errored":
            return Verdict(status: .failed, message: "status \(state.statusAttribute!)")
        default:
            return Verdict(status: .ok)
        }
    }

    private func describe(_ outcomes: [Outcome]) -> String? {
        let texts = outcomes.compactMap { $0.text ?? $0.stackTrace }
        if texts.isEmpty { return nil }
        return bounded(texts.joined(separator: "\n\n"), limit: limits.description)
    }

    private func summary(_ outcome: Outcome) -> JSONValue {
        var object: [String: JSONValue] = ["kind": .string(outcome.kind.rawValue)]
        if let message = cleanMessage(outcome.message, limit: limits.message) { object["message"] = .string(message) }
        if let type = outcome.type, !type.isEmpty { object["type"] = .string(type) }
        if let trace = outcome.stackTrace ?? outcome.text { object["stackTrace"] = .string(trace) }
        if let out = outcome.systemOut { object["systemOut"] = .string(out) }
        if let err = outcome.systemErr { object["systemErr"] = .string(err) }
        return .object(object)
    }

    private func endSuite() {
        guard var suite = suiteStack.popLast() else { return }
        if !suite.errors.isEmpty {
            let first = suite.errors[0]
            let name = suite.name.isEmpty ? "(unnamed suite)" : suite.name
            let parentPath = suiteStack.last?.path ?? []
            var custom: [String: JSONValue] = [
                "suiteLevel": .bool(true),
                "junitKind": .string(first.kind == .error ? "error" : first.kind.rawValue),
            ]
            if let type = first.type, !type.isEmpty { custom["junitType"] = .string(type) }
            if suite.errors.count > 1 { custom["additionalFailures"] = .array(suite.errors.dropFirst().map(summary)) }
            let message = cleanMessage(first.message ?? firstLine(first.text), limit: limits.message)
            suite.resultIndices.append(results.count)
            results.append(
                ParsedResult(
                    key: keys.allocate(parentPath.joined(separator: "/") + "::" + name + "::(suite)"),
                    name: name,
                    suitePath: parentPath,
                    status: .inconclusive,
                    message: "the suite could not run" + (message.map { ": \($0)" } ?? ""),
                    description: describe(suite.errors),
                    custom: custom,
                    origin: .junit(suite: name, classname: nil, testcase: name)))
        }
        // The suite's own output helps explain its failures; passing results do not need a copy of it.
        for index in suite.resultIndices where results[index].status != .ok {
            if results[index].systemOut == nil { results[index].systemOut = suite.systemOut }
            if results[index].systemErr == nil { results[index].systemErr = suite.systemErr }
        }
        suites.append(
            ParsedSuite(
                path: suite.path, properties: suite.properties, systemOut: suite.systemOut,
                systemErr: suite.systemErr, durationMs: suite.durationMs))
    }

    // MARK: Ending

    func damaged(line: Int, column: Int, code: Int?, empty: Bool) {
        if empty {
            problems.append("the report is empty")
        } else {
            let detail = code.map { " (XML parser error \($0))" } ?? ""
            problems.append("the XML is damaged or truncated at line \(line), column \(column)\(detail)")
        }
        // Close what the damage left open, innermost first, keeping what was read.
        if case .output(let kind) = text, outcome == nil {
            let value = textBuffer.finished()
            if testCase != nil {
                if kind == .out { testCase?.systemOut = value } else { testCase?.systemErr = value }
            }
        }
        if outcome != nil { endOutcome(complete: false) }
        if testCase != nil { endCase(incomplete: true) }
        while !suiteStack.isEmpty { endSuite() }
    }

    func finish() -> ParsedReport {
        if results.isEmpty && problems.isEmpty {
            problems.append("the report holds no test cases")
        }
        return ParsedReport(format: .junit, results: results, suites: suites, problems: problems)
    }
}

/// The first non-empty line of a text.
private func firstLine(_ text: String?) -> String? {
    guard let text else { return nil }
    return text.split(whereSeparator: \.isNewline).lazy.map { trimmed($0) }.first { !$0.isEmpty }
}

/// A JUnit `time` attribute (seconds) as milliseconds; `nil` unless it is a finite, non-negative number.
func junitDuration(_ attribute: String?) -> Milliseconds? {
    guard let attribute else { return nil }
    let text = trimmed(attribute)
    guard !text.isEmpty, let seconds = Double(text), seconds.isFinite, seconds >= 0 else { return nil }
    let milliseconds = (seconds * 1000).rounded()
    guard milliseconds < Double(UInt64.max / 2) else { return nil }
    return Milliseconds(UInt64(milliseconds))
}
