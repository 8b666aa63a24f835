import CTACore
public import Foundation

/// Reads a Test Anything Protocol stream (versions 12, 13 and 14), as written by node-tap, tape, Perl's
/// Test::More and Test2, node's test runner, mocha, tap4j and others.
///
/// Every test point becomes a ``ParsedResult``; test points of subtests (indented four spaces, with or without a
/// `# Subtest:` comment, or the buffered `ok 1 - name {` … `}` form) are results too, with the subtest names as
/// their suite path. A subtest's own test point is not a result of its own, unless it failed while none of its
/// children did (a plan mismatch, a crash): then it is reported as well, so the failure is not lost.
///
/// Status mapping:
/// - `ok` → `ok`; `not ok` → `failed`;
/// - `# SKIP reason` (on `ok` or `not ok`) → `inconclusive`, message `skipped: reason`;
/// - `not ok # TODO reason` → `inconclusive`, message `todo: reason` (a known gap, not a failure);
/// - `ok # TODO reason` → `ok`, message `todo (passed): reason`, custom `todo: true`;
/// - `1..0 # SKIP reason` with no test points (skip all) → one `inconclusive` result, message `skipped: reason`;
/// - `Bail out! reason` → the stream ends there; planned tests not seen → `inconclusive`, `bailed out: reason`;
/// - planned tests that never appeared → `inconclusive`, message `missing from output`.
///
/// A YAML diagnostic block after a test point is read with a small YAML subset and kept in custom `diagnostic`
/// (`message`, `severity`, `data` and everything else); its `message` (or `error`) becomes the result's message when
/// it has none, `stack` the description, `duration_ms` the duration. YAML that cannot be read is kept as text in
/// custom `diagnosticText`. `\#` and `\\` in descriptions are unescaped. Lines that are not TAP are ignored and
/// counted in ``ParsedReport/ignoredLines``.
public struct TAPParser: Sendable {
    /// Bounds on the text kept per result.
    public var limits: ReportLimits

    /// Creates a parser.
    public init(limits: ReportLimits = .standard) {
        self.limits = limits
    }

    /// Parses a stream from its bytes (UTF-8; invalid sequences are replaced).
    public func parse(_ bytes: [UInt8]) -> ParsedReport {
        parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Parses a stream from its bytes (UTF-8; invalid sequences are replaced).
    public func parse(_ data: Data) -> ParsedReport {
        parse(String(decoding: data, as: UTF8.self))
    }

    /// Parses a stream.
    public func parse(_ text: String) -> ParsedReport {
        var reader = TAPReader(limits: limits)
        var body = Substring(text)
        if body.first == "\u{FEFF}" { body = body.dropFirst() }
        for line in body.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            if reader.bailReason != nil { break }
            reader.consume(line)
        }
        return reader.finish()
    }
}

// MARK: - Line classification

enum TAPDirective: Equatable {
    case skip(String?)
    case todo(String?)
}

struct TAPPoint {
    var ok: Bool
    var number: Int?
    var description: String?
    var directive: TAPDirective?
    var durationMs: Milliseconds?
    var opensBrace = false
}

enum TAPLine {
    case point(TAPPoint)
    case plan(count: Int, reason: String?)
    case bailOut(String?)
    case version(Int?)
    case pragma
    case subtest(String?)
    case comment
    case closeBrace
    case yamlStart
    case other

    init(_ content: Substring) {
        if content.hasPrefix("ok"), content.count == 2 || content.dropFirst(2).first == " " {
            self = .point(TAPLine.point(ok: true, content.dropFirst(2)))
        } else if content.hasPrefix("not ok"), content.count == 6 || content.dropFirst(6).first == " " {
            self = .point(TAPLine.point(ok: false, content.dropFirst(6)))
        } else if content.hasPrefix("1..") {
            let rest = content.dropFirst(3)
            let digits = rest.prefix(while: { $0.isASCII && $0.isNumber })
            guard !digits.isEmpty, let count = Int(digits) else {
                self = .other
                return
            }
            let after = trimmed(rest.dropFirst(digits.count))
            self = .plan(count: count, reason: after.hasPrefix("#") ? trimmed(after.dropFirst()) : nil)
        } else if content.lowercased().hasPrefix("bail out!") {
            let reason = TAPLine.unescape(trimmed(content.dropFirst(9)))
            self = .bailOut(reason.isEmpty ? nil : reason)
        } else if content.lowercased().hasPrefix("tap version ") {
            self = .version(Int(trimmed(content.dropFirst(12))))
        } else if content.hasPrefix("pragma ") {
            self = .pragma
        } else if content.hasPrefix("#") {
            let comment = trimmed(content.dropFirst())
            if comment.hasPrefix("Subtest") {
                var name = Substring(comment.dropFirst(7))
                if name.first == ":" { name = name.dropFirst() } else if !name.isEmpty && name.first != " " {
                    self = .comment
                    return
                }
                let cleaned = trimmed(name)
                self = .subtest(cleaned.isEmpty ? nil : cleaned)
            } else {
                self = .comment
            }
        } else if content == "}" {
            self = .closeBrace
        } else if content == "---" {
            self = .yamlStart
        } else {
            self = .other
        }
    }

    /// Reads what follows `ok` / `not ok`: number, `-`, description, directive.
    static func point(ok: Bool, _ rest: Substring) -> TAPPoint {
        var text = rest.drop(while: { $0 == " " || $0 == "\t" })
        let digits = text.prefix(while: { $0.isASCII && $0.isNumber })
        var point = TAPPoint(ok: ok)
        if !digits.isEmpty {
            point.number = Int(digits)
            text = text.dropFirst(digits.count).drop(while: { $0 == " " || $0 == "\t" })
        }
        if text.first == "-", text.count == 1 || text.dropFirst().first == " " {
            text = text.dropFirst().drop(while: { $0 == " " || $0 == "\t" })
        }
        var description = ""
        var directive: Substring?
        var index = text.startIndex
        var previous: Character?
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if character == "\\", next < text.endIndex, text[next] == "#" || text[next] == "\\" {
                description.append(text[next])
                previous = text[next]
                index = text.index(after: next)
                continue
            }
            if character == "#", previous == nil || previous!.isWhitespace {
                directive = text[next...]
                break
            }
            description.append(character)
            previous = character
            index = next
        }
        description = trimmed(description)
        if description == "{" || description.hasSuffix(" {") {
            point.opensBrace = true
            description = trimmed(description.dropLast())
        }
        point.description = description.isEmpty ? nil : description
        if let directive {
            let words = trimmed(directive)
            let lower = words.lowercased()
            let firstWordEnd = words.firstIndex(where: \.isWhitespace) ?? words.endIndex
            let reason = trimmed(words[firstWordEnd...])
            if lower.hasPrefix("skip") {
                point.directive = .skip(reason.isEmpty ? nil : reason)
            } else if lower.hasPrefix("todo") {
                point.directive = .todo(reason.isEmpty ? nil : reason)
            } else if lower.hasPrefix("time=") {
                point.durationMs = timeDirective(words.dropFirst(5))
            }
        }
        return point
    }

    /// `13.457ms` or `1.5s` as milliseconds.
    static func timeDirective(_ text: Substring) -> Milliseconds? {
        let number = text.prefix(while: { $0.isNumber || $0 == "." })
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let unit = text.dropFirst(number.count).prefix(while: \.isLetter)
        let milliseconds = unit == "s" ? value * 1000 : value
        return Milliseconds(UInt64(milliseconds.rounded()))
    }

    /// `\#` → `#`, `\\` → `\`; other backslashes stay.
    static func unescape(_ text: String) -> String {
        var result = ""
        var iterator = text.makeIterator()
        while let character = iterator.next() {
            if character == "\\" {
                if let next = iterator.next() {
                    if next == "#" || next == "\\" { result.append(next) } else { result.append(character); result.append(next) }
                } else {
                    result.append(character)
                }
            } else {
                result.append(character)
            }
        }
        return result
    }
}

// MARK: - Reader

/// The TAP state machine: a stack of (sub)test levels by indentation.
struct TAPReader {
    let limits: ReportLimits
    var levels: [Level] = [Level(indent: 0)]
    var problems: [String] = []
    var ignoredLines = 0
    var bailReason: String?
    var yaml: YAMLBlock?
    var orphanCount = 0
    /// The most missing results generated for one plan; larger gaps become a problem instead.
    static let missingLimit = 100_000

    init(limits: ReportLimits) {
        self.limits = limits
    }

    struct Level {
        var indent: Int
        var name: String?
        var plan: (count: Int, reason: String?)?
        var count = 0
        var numbers: [Int: Int] = [:]
        var results: [ParsedResult] = []
        /// The result a YAML block may annotate: set by a test point, cleared by anything else.
        var annotatable: Int?
        var pendingSubtestName: String?
        var pendingChild: Child?
        var braceParent: TAPPoint?
    }

    struct Child {
        var name: String?
        var results: [ParsedResult]
    }

    struct YAMLBlock {
        var indent: Int
        var level: Int
        var target: Int?
        var lines: [Substring] = []
        var bytes = 0
        var truncated = false
    }

    mutating func consume(_ line: Substring) {
        var indent = 0
        var content = line[...]
        while content.first == " " {
            indent += 1
            content = content.dropFirst()
        }
        while let last = content.last, last == " " || last == "\t" || last == "\r" { content = content.dropLast() }

        if var block = yaml {
            if content.isEmpty {
                block.lines.append("")
                yaml = block
                return
            }
            if indent == block.indent && content == "..." {
                finishYAML(terminated: true)
                return
            }
            if indent >= block.indent {
                if block.bytes < limits.description * 4 {
                    block.lines.append(line.dropFirst(block.indent))
                    block.bytes += line.utf8.count
                } else {
                    block.truncated = true
                }
                yaml = block
                return
            }
            finishYAML(terminated: false)
        }
        if content.isEmpty { return }
        let kind = TAPLine(content)
        if case .other = kind {
            ignoredLines += 1
            return
        }
        if indent < levels[levels.count - 1].indent {
            switch kind {
            case .yamlStart:
                ignoredLines += 1
                return
            case .comment, .pragma:
                // Output and pragmas interleaved with a subtest do not end it.
                return
            default:
                break
            }
            while levels.count > 1 && levels[levels.count - 1].indent > indent { closeChild() }
        }
        // Only scalars are read from the current level: a copy of it would share its results array and make every
        // later append copy that array.
        let currentIndent = levels[levels.count - 1].indent
        if indent > currentIndent {
            if case .yamlStart = kind, indent == currentIndent + 2 {
                yaml = YAMLBlock(indent: indent, level: levels.count - 1, target: levels[levels.count - 1].annotatable)
                levels[levels.count - 1].annotatable = nil
                return
            }
            guard indent == currentIndent + 4 else {
                ignoredLines += 1
                return
            }
            switch kind {
            case .comment, .pragma:
                return
            case .closeBrace, .yamlStart, .other:
                ignoredLines += 1
                return
            case .subtest(let name):
                // `# Subtest: X` one level in names that level, unless the parent already named it (then X names
                // the level below, as in the style that puts the comment at the parent's indentation).
                if levels[levels.count - 1].pendingSubtestName == nil {
                    openChild(indent: indent, name: name)
                    return
                }
                openChild(indent: indent, name: nil)
            case .point, .plan, .bailOut, .version:
                openChild(indent: indent, name: nil)
            }
        }
        handle(kind)
    }

    mutating func openChild(indent: Int, name: String?) {
        let parent = levels.count - 1
        if let child = levels[parent].pendingChild {
            levels[parent].pendingChild = nil
            attachOrphan(child, to: parent)
        }
        let subtestName = name ?? levels[parent].pendingSubtestName
        levels[parent].pendingSubtestName = nil
        levels[parent].annotatable = nil
        levels.append(Level(indent: indent, name: subtestName))
    }

    mutating func handle(_ kind: TAPLine) {
        let top = levels.count - 1
        switch kind {
        case .version(let version):
            if let version, version > 14 { problems.append("TAP version \(version) is newer than 14; read as 14") }
            levels[top].annotatable = nil
        case .pragma, .comment:
            break
        case .subtest(let name):
            if let child = levels[top].pendingChild {
                levels[top].pendingChild = nil
                attachOrphan(child, to: top)
            }
            levels[top].pendingSubtestName = name
            levels[top].annotatable = nil
        case .plan(let count, let reason):
            if levels[top].plan != nil {
                problems.append("a second plan 1..\(count) was ignored")
            } else {
                levels[top].plan = (count, reason)
            }
            levels[top].annotatable = nil
        case .bailOut(let reason):
            bailReason = reason ?? ""
            problems.append("the test run bailed out" + (reason.map { ": \($0)" } ?? ""))
        case .closeBrace:
            if let parent = levels[top].braceParent {
                levels[top].braceParent = nil
                let child = levels[top].pendingChild
                levels[top].pendingChild = nil
                record(parent, child: child, at: top)
            } else {
                ignoredLines += 1
            }
        case .point(let point):
            if let parent = levels[top].braceParent {
                levels[top].braceParent = nil
                let child = levels[top].pendingChild
                levels[top].pendingChild = nil
                record(parent, child: child, at: top)
            }
            if point.opensBrace {
                if let child = levels[top].pendingChild {
                    levels[top].pendingChild = nil
                    attachOrphan(child, to: top)
                }
                levels[top].braceParent = numbered(point, at: top)
                levels[top].annotatable = nil
            } else {
                let child = levels[top].pendingChild
                levels[top].pendingChild = nil
                record(numbered(point, at: top), child: child, at: top)
            }
        case .yamlStart, .other:
            ignoredLines += 1
        }
    }

    /// Gives a point its number (explicit, or its position) and counts it.
    mutating func numbered(_ point: TAPPoint, at level: Int) -> TAPPoint {
        var point = point
        levels[level].count += 1
        let number = point.number ?? levels[level].count
        point.number = number
        levels[level].numbers[number, default: 0] += 1
        if levels[level].numbers[number] == 2 {
            problems.append("test number \(number) appears more than once\(scope(level))")
        }
        return point
    }

    func scope(_ level: Int) -> String {
        let names = levels.dropFirst().prefix(level).map { $0.name ?? "(unnamed)" }
        return names.isEmpty ? "" : " in subtest \(names.joined(separator: "/"))"
    }

    /// Turns a numbered point (and the subtest it closes, if any) into results at `level`.
    mutating func record(_ point: TAPPoint, child: Child?, at level: Int) {
        let number = point.number ?? 0
        var result = self.result(for: point)
        let children = child?.results ?? []
        if children.isEmpty {
            levels[level].annotatable = levels[level].results.count
            levels[level].results.append(result)
            return
        }
        let name = child?.name ?? point.description ?? "subtest \(number)"
        let childFailed = children.contains { $0.status == .failed }
        for var childResult in children {
            childResult.suitePath.insert(cleanName(name, limit: limits.name), at: 0)
            childResult.key = "\(number)." + childResult.key
            levels[level].results.append(childResult)
        }
        if result.status == .failed && !childFailed {
            if result.message == nil { result.message = "the subtest failed although none of its tests did" }
            levels[level].annotatable = levels[level].results.count
            levels[level].results.append(result)
        } else {
            levels[level].annotatable = nil
        }
    }

    func result(for point: TAPPoint) -> ParsedResult {
        let number = point.number ?? 0
        let description = point.description.map { cleanName($0, limit: limits.name) }.flatMap { $0.isEmpty ? nil : $0 }
        var status: TestStatus
        var message: String?
        var custom: [String: JSONValue] = [:]
        switch (point.ok, point.directive) {
        case (let ok, .skip(let reason)):
            status = .inconclusive
            message = "skipped" + (reason.map { ": \($0)" } ?? "")
            if !ok { custom["tapOk"] = .bool(false) }
        case (false, .todo(let reason)):
            status = .inconclusive
            message = "todo" + (reason.map { ": \($0)" } ?? "")
            custom["todo"] = .bool(true)
        case (true, .todo(let reason)):
            status = .ok
            message = "todo (passed)" + (reason.map { ": \($0)" } ?? "")
            custom["todo"] = .bool(true)
        case (true, nil):
            status = .ok
        case (false, nil):
            status = .failed
        }
        return ParsedResult(
            key: "\(number)",
            name: description ?? "test \(number)",
            status: status,
            message: message.map { bounded($0, limit: limits.message) },
            durationMs: point.durationMs,
            custom: custom,
            origin: .tap(number: max(1, number), description: description))
    }

    /// Results of a child that no test point of its parent claimed.
    mutating func attachOrphan(_ child: Child, to level: Int) {
        orphanCount += 1
        let name = cleanName(child.name ?? "(unnamed subtest)", limit: limits.name)
        for var result in child.results {
            result.suitePath.insert(name, at: 0)
            result.key = "subtest\(orphanCount)." + result.key
            levels[level].results.append(result)
        }
        levels[level].annotatable = nil
    }

    /// Ends the innermost level and hands its results to its parent.
    mutating func closeChild() {
        finishBrace(at: levels.count - 1)
        var level = levels.removeLast()
        addMissing(to: &level)
        let parent = levels.count - 1
        if let earlier = levels[parent].pendingChild { attachOrphan(earlier, to: parent) }
        levels[parent].pendingChild = Child(name: level.name, results: level.results)
        levels[parent].annotatable = nil
    }

    mutating func finishBrace(at level: Int) {
        guard let parent = levels[level].braceParent else { return }
        levels[level].braceParent = nil
        let child = levels[level].pendingChild
        levels[level].pendingChild = nil
        record(parent, child: child, at: level)
    }

    /// Planned tests that never appeared become inconclusive results.
    mutating func addMissing(to level: inout Level) {
        guard let plan = level.plan else { return }
        let outside = level.numbers.keys.filter { $0 > plan.count || $0 < 1 }.sorted()
        if !outside.isEmpty {
            let list = outside.prefix(10).map(String.init).joined(separator: ", ")
            let scope = level.name.map { " in subtest \($0)" } ?? ""
            problems.append("test\(outside.count == 1 ? "" : "s") \(list) outside the plan 1..\(plan.count)\(scope)")
        }
        guard plan.count > 0 else { return }
        let missingCount = (1...plan.count).count { level.numbers[$0] == nil }
        guard missingCount > 0 else { return }
        if missingCount > Self.missingLimit {
            problems.append("\(missingCount) planned tests are missing; too many to report one by one")
            return
        }
        let message = bailReason.map { $0.isEmpty ? "bailed out" : "bailed out: \($0)" } ?? "missing from output"
        for number in 1...plan.count where level.numbers[number] == nil {
            level.results.append(
                ParsedResult(
                    key: "\(number)", name: "test \(number)", status: .inconclusive, message: message,
                    custom: ["missing": .bool(true)], origin: .tap(number: number, description: nil)))
        }
    }

    mutating func finishYAML(terminated: Bool) {
        guard let block = yaml else { return }
        yaml = nil
        guard let target = block.target, block.level < levels.count, target < levels[block.level].results.count
        else { return }
        var result = levels[block.level].results[target]
        let parsed = DiagnosticYAML.parse(block.lines, limit: limits.description)
        if case .object(let object)? = parsed.value {
            result.custom["diagnostic"] = .object(object)
            if result.message == nil {
                if case .string(let message)? = object["message"] ?? object["error"] {
                    result.message = cleanMessage(message, limit: limits.message)
                }
            }
            if result.description == nil, case .string(let stack)? = object["stack"] {
                result.description = bounded(stack, limit: limits.description)
            }
            if result.durationMs == nil {
                switch object["duration_ms"] {
                case .integer(let value)? where value >= 0: result.durationMs = Milliseconds(UInt64(value))
                case .number(let value)? where value >= 0 && value.isFinite:
                    result.durationMs = Milliseconds(UInt64(value.rounded()))
                default: break
                }
            }
        }
        if !parsed.complete || !terminated || block.truncated {
            if parsed.value.map({ if case .object = $0 { false } else { true } }) ?? true || !parsed.complete {
                let text = block.lines.joined(separator: "\n")
                result.custom["diagnosticText"] = .string(bounded(text, limit: limits.description))
            }
        }
        levels[block.level].results[target] = result
    }

    mutating func finish() -> ParsedReport {
        finishYAML(terminated: false)
        while levels.count > 1 { closeChild() }
        finishBrace(at: 0)
        if let child = levels[0].pendingChild {
            levels[0].pendingChild = nil
            attachOrphan(child, to: 0)
        }
        var root = levels[0]
        addMissing(to: &root)
        if let plan = root.plan, plan.count == 0, root.count == 0, root.results.isEmpty {
            var reason = plan.reason ?? ""
            if reason.lowercased().hasPrefix("skip") {
                reason = trimmed(reason.drop(while: { !$0.isWhitespace && $0 != ":" }).drop(while: { $0 == ":" }))
            }
            root.results.append(
                ParsedResult(
                    key: "skip-all", name: "(all tests skipped)", status: .inconclusive,
                    message: "skipped" + (reason.isEmpty ? "" : ": \(reason)"),
                    custom: ["skipAll": .bool(true)], origin: .tap(number: 1, description: nil)))
        } else if root.plan == nil && bailReason == nil {
            problems.append("the stream has no plan (1..N); tests may be missing unnoticed")
        }
        if root.results.isEmpty && problems.isEmpty {
            problems.append("the stream holds no test points")
        }
        var keys = KeyAllocator()
        for index in root.results.indices {
            root.results[index].key = keys.allocate(root.results[index].key)
        }
        return ParsedReport(format: .tap, results: root.results, problems: problems, ignoredLines: ignoredLines)
    }
}
