public import CTACore

/// What a test report (JUnit XML or TAP) yields: one result per test case, and what went wrong while reading it.
///
/// A damaged report is not an error: the results read before the damage are kept and the damage is described in
/// `problems`, so the caller can report both.
public struct ParsedReport: Hashable, Sendable {
    /// The report's format.
    public var format: ReportFormat
    /// One result per test case or test point, in report order.
    public var results: [ParsedResult]
    /// The suites of a JUnit report (with their properties and output), in document order; empty for TAP.
    public var suites: [ParsedSuite]
    /// Human-readable descriptions of damage or oddities (corrupt XML with line and column, a missing plan, …).
    public var problems: [String]
    /// How many input lines were not TAP and were ignored (always 0 for JUnit).
    public var ignoredLines: Int

    /// Creates a report.
    public init(
        format: ReportFormat,
        results: [ParsedResult] = [],
        suites: [ParsedSuite] = [],
        problems: [String] = [],
        ignoredLines: Int = 0
    ) {
        self.format = format
        self.results = results
        self.suites = suites
        self.problems = problems
        self.ignoredLines = ignoredLines
    }

    /// How many results of each status the report holds.
    public var counts: ResultCounts {
        var counts = ResultCounts()
        for result in results { counts.add(result.status) }
        return counts
    }
}

/// One test case of a report, carrying what a `test.result` payload needs.
public struct ParsedResult: Hashable, Sendable {
    /// A key that is stable for the same report and distinct among the report's results (duplicate test names get
    /// a `#2`, `#3`, … suffix in order of appearance). Suitable for idempotent result identifiers.
    public var key: String
    /// The test case's name, never empty and without control characters.
    public var name: String
    /// The enclosing suites, outermost first (JUnit `testsuite` names; TAP subtest names).
    public var suitePath: [String]
    /// The JUnit `classname`, if any.
    public var classname: String?
    /// The outcome.
    public var status: TestStatus
    /// A short message about the outcome (the failure's `message`, a skip reason, a TAP diagnostic message).
    public var message: String?
    /// Longer detail: a failure's text or stack trace, bounded by ``ReportLimits/description``.
    public var description: String?
    /// How long the test ran; `nil` when the report does not say or says something unreadable.
    public var durationMs: Milliseconds?
    /// The test's standard output as the report recorded it, bounded by ``ReportLimits/output``.
    public var systemOut: String?
    /// The test's standard error as the report recorded it, bounded by ``ReportLimits/output``.
    public var systemErr: String?
    /// The test case's own properties, in order (names may repeat).
    public var properties: [ReportProperty]
    /// Extra facts that have no field of their own (`junitKind`, `flaky`, reruns, TAP YAML diagnostics, …).
    public var custom: [String: JSONValue]
    /// Where in the report the result came from.
    public var origin: ParsedOrigin

    /// Creates a result.
    public init(
        key: String,
        name: String,
        suitePath: [String] = [],
        classname: String? = nil,
        status: TestStatus,
        message: String? = nil,
        description: String? = nil,
        durationMs: Milliseconds? = nil,
        systemOut: String? = nil,
        systemErr: String? = nil,
        properties: [ReportProperty] = [],
        custom: [String: JSONValue] = [:],
        origin: ParsedOrigin
    ) {
        self.key = key
        self.name = name
        self.suitePath = suitePath
        self.classname = classname
        self.status = status
        self.message = message
        self.description = description
        self.durationMs = durationMs
        self.systemOut = systemOut
        self.systemErr = systemErr
        self.properties = properties
        self.custom = custom
        self.origin = origin
    }

    /// The suite path joined with `/`, or `nil` at the top level.
    public var suite: String? { suitePath.isEmpty ? nil : suitePath.joined(separator: "/") }

    /// The wire origin of this result, for a report that `stage` produced in `file` (`nil`: TAP on stdout).
    ///
    /// A JUnit report always has a file; when `file` is `nil` for one, the stage name stands in.
    public func resultOrigin(stage: String, file: String?) -> ResultOrigin {
        switch origin {
        case .junit(let suite, let classname, let testcase):
            .junit(stage: stage, file: file ?? stage, suite: suite, classname: classname, testcase: testcase)
        case .tap(let number, let description):
            .tap(stage: stage, file: file, number: number, description: description)
        }
    }
}

/// Where a parsed result sits in its report.
public enum ParsedOrigin: Hashable, Sendable {
    /// A JUnit `<testcase>` (or a suite-level error): the innermost suite's name, the classname, the test case name.
    case junit(suite: String?, classname: String?, testcase: String)
    /// A TAP test point: its number (explicit, or implied by its position) and its description.
    case tap(number: Int, description: String?)
}

/// A `<property name=… value=…>` of a JUnit suite or test case (the value may be the element's text instead).
public struct ReportProperty: Hashable, Sendable {
    /// The property's name.
    public var name: String
    /// The property's value.
    public var value: String

    /// Creates a property.
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// A JUnit `<testsuite>`: what it says about itself beyond its test cases.
public struct ParsedSuite: Hashable, Sendable {
    /// The suite's path, outermost first (its own name last).
    public var path: [String]
    /// The suite's properties, in order.
    public var properties: [ReportProperty]
    /// The suite's own `system-out`, bounded.
    public var systemOut: String?
    /// The suite's own `system-err`, bounded.
    public var systemErr: String?
    /// The suite's `time` attribute, if readable.
    public var durationMs: Milliseconds?

    /// Creates a suite summary.
    public init(
        path: [String],
        properties: [ReportProperty] = [],
        systemOut: String? = nil,
        systemErr: String? = nil,
        durationMs: Milliseconds? = nil
    ) {
        self.path = path
        self.properties = properties
        self.systemOut = systemOut
        self.systemErr = systemErr
        self.durationMs = durationMs
    }
}

/// Bounds on the text a parser keeps, so a runaway report cannot blow up an event or the agent's memory.
public struct ReportLimits: Hashable, Sendable {
    /// The most UTF-8 bytes kept of a result's message. Default 4 KiB.
    public var message: Int
    /// The most UTF-8 bytes kept of a result's description (failure text, stack trace). Default 16 KiB.
    public var description: Int
    /// The most UTF-8 bytes kept of each of a result's or suite's `system-out` and `system-err`. Default 16 KiB.
    public var output: Int
    /// The most UTF-8 bytes kept of a name (test case, classname, suite). Default 1 KiB.
    public var name: Int

    /// Creates limits; every value is at least 64 bytes.
    public init(message: Int = 4096, description: Int = 16384, output: Int = 16384, name: Int = 1024) {
        self.message = max(64, message)
        self.description = max(64, description)
        self.output = max(64, output)
        self.name = max(64, name)
    }

    /// The default limits.
    public static let standard = ReportLimits()
}

// MARK: - Text helpers shared by the parsers

/// A text accumulator that keeps at most `limit` UTF-8 bytes and counts what it dropped.
struct BoundedText {
    private(set) var text = ""
    private(set) var bytes = 0
    private(set) var dropped = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    mutating func append(_ piece: String) {
        let count = piece.utf8.count
        if bytes + count <= limit {
            text += piece
            bytes += count
        } else {
            let room = limit - bytes
            if room > 0 {
                let head = prefix(piece, maxBytes: room)
                text += head
                bytes += head.utf8.count
                dropped += count - head.utf8.count
            } else {
                dropped += count
            }
        }
    }

    /// The kept text with a marker for what was dropped, or `nil` when only whitespace was seen.
    func finished(trimming: Bool = true) -> String? {
        let kept = trimming ? trimmed(text) : text
        if kept.isEmpty && dropped == 0 { return nil }
        if dropped == 0 { return kept }
        return kept + "\n… [\(dropped) more bytes not kept]"
    }
}

/// The longest prefix of `text` whose UTF-8 form has at most `maxBytes` bytes, cut on a scalar boundary.
func prefix(_ text: String, maxBytes: Int) -> String {
    let utf8 = text.utf8
    if utf8.count <= maxBytes { return text }
    var end = utf8.index(utf8.startIndex, offsetBy: max(0, maxBytes))
    while end > utf8.startIndex && (utf8[end] & 0xC0) == 0x80 { end = utf8.index(before: end) }
    return String(decoding: utf8[..<end], as: UTF8.self)
}

/// `text` cut to `limit` UTF-8 bytes, with a marker when something was cut.
func bounded(_ text: String, limit: Int) -> String {
    let count = text.utf8.count
    if count <= limit { return text }
    let head = prefix(text, maxBytes: limit)
    return head + "… [\(count - head.utf8.count) more bytes not kept]"
}

/// `text` without leading and trailing whitespace and newlines.
func trimmed(_ text: some StringProtocol) -> String {
    var scalars = Substring(text).unicodeScalars[...]
    while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
    while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
    return String(scalars)
}

/// A name fit for the wire: control characters become spaces, whitespace is trimmed, length is bounded.
func cleanName(_ text: String, limit: Int) -> String {
    var scalars = String.UnicodeScalarView()
    for scalar in text.unicodeScalars {
        scalars.append(scalar.properties.generalCategory == .control ? " " : scalar)
    }
    return bounded(trimmed(String(scalars)), limit: limit)
}

/// A message: trimmed, bounded, `nil` when empty.
func cleanMessage(_ text: String?, limit: Int) -> String? {
    guard let text else { return nil }
    let kept = trimmed(text)
    return kept.isEmpty ? nil : bounded(kept, limit: limit)
}

/// Gives each key a distinct form: the first use stays as is, later uses get `#2`, `#3`, ….
struct KeyAllocator {
    private var used: Set<String> = []
    private var next: [String: Int] = [:]

    mutating func allocate(_ base: String) -> String {
        if used.insert(base).inserted { return base }
        var number = next[base, default: 2]
        while !used.insert("\(base)#\(number)").inserted { number += 1 }
        next[base] = number + 1
        return "\(base)#\(number)"
    }
}
