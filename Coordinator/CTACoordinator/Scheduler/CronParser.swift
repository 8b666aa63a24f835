/// Turns the text of a cron expression into one bit set per field; see ``CronExpression`` for the syntax.
struct CronParser {
    typealias Field = CronExpression.ParseError.Field

    /// One parsed field: the values it selects, and whether it was written starting with `*`.
    struct ParsedField {
        var bits: UInt64
        var isStar: Bool
    }

    struct Result {
        /// minute, hour, day of month, month, day of week.
        var fields: [ParsedField]
        var normalised: String
    }

    /// What a field accepts.
    private struct Bounds {
        let field: Field
        /// The smallest and largest number accepted (day of week accepts 7 for Sunday).
        let range: ClosedRange<Int>
        /// Where `*` and an open-ended step (`5/10`) stop: 6 for the day of week, so `*/2` is 0, 2, 4, 6.
        let starEnd: Int
        /// Names accepted for 1, 2, … (months) or 0, 1, … (weekdays), with their first value.
        let names: [String]
        let firstNamed: Int
        /// What a field value is, for "is not a number or month name".
        var valueKind: String {
            names.isEmpty ? "a number" : "a number or \(field == .month ? "month" : "weekday") name"
        }
        /// The largest sensible step: the number of values the field has.
        var maximumStep: Int { starEnd - range.lowerBound + 1 }
    }

    private static let fieldBounds: [Bounds] = [
        Bounds(field: .minute, range: 0...59, starEnd: 59, names: [], firstNamed: 0),
        Bounds(field: .hour, range: 0...23, starEnd: 23, names: [], firstNamed: 0),
        Bounds(field: .dayOfMonth, range: 1...31, starEnd: 31, names: [], firstNamed: 0),
        Bounds(
            field: .month, range: 1...12, starEnd: 12,
            names: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], firstNamed: 1),
        Bounds(
            field: .dayOfWeek, range: 0...7, starEnd: 6, names: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
            firstNamed: 0),
    ]

    /// The macros, their normalised spelling and the expression each stands for.
    private static let macros: [(name: String, normalised: String, expansion: String)] = [
        ("@yearly", "@yearly", "0 0 1 1 *"),
        ("@annually", "@yearly", "0 0 1 1 *"),
        ("@monthly", "@monthly", "0 0 1 * *"),
        ("@weekly", "@weekly", "0 0 * * 0"),
        ("@daily", "@daily", "0 0 * * *"),
        ("@midnight", "@daily", "0 0 * * *"),
        ("@hourly", "@hourly", "0 * * * *"),
    ]

    /// Parses `text`; names and macros are matched in any case, and the normalised text is in lower case.
    func parse(_ text: String) throws(CronExpression.ParseError) -> Result {
        let tokens = text.split(whereSeparator: \.isWhitespace).map(String.init)
        let trimmed = tokens.joined(separator: " ")
        if tokens.count == 1, tokens[0].hasPrefix("@") {
            guard let macro = Self.macros.first(where: { $0.name == tokens[0].lowercased() }) else {
                let known = Self.macros.map(\.name).joined(separator: " ")
                throw .init(
                    field: .expression, text: text, reason: "unknown macro \(tokens[0]) (known: \(known))")
            }
            let expansion = macro.expansion.split(separator: " ").map(String.init)
            return Result(fields: try parseFields(expansion), normalised: macro.normalised)
        }
        guard tokens.count == 5 else {
            let reason =
                tokens.isEmpty
                ? "empty; expected 5 fields (minute hour day-of-month month day-of-week) or a macro such as @daily"
                : "expected 5 fields (minute hour day-of-month month day-of-week), got \(tokens.count)"
                    + " in \"\(trimmed)\""
            throw .init(field: .expression, text: text, reason: reason)
        }
        return Result(fields: try parseFields(tokens), normalised: trimmed.lowercased())
    }

    private func parseFields(_ tokens: [String]) throws(CronExpression.ParseError) -> [ParsedField] {
        var fields: [ParsedField] = []
        for (token, bounds) in zip(tokens, Self.fieldBounds) {
            fields.append(ParsedField(bits: try parseField(token, bounds), isStar: token.hasPrefix("*")))
        }
        return fields
    }

    private func parseField(_ text: String, _ bounds: Bounds) throws(CronExpression.ParseError) -> UInt64 {
        var bits: UInt64 = 0
        for element in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !element.isEmpty else {
                throw .init(field: bounds.field, text: text, reason: "empty list element in \"\(text)\"")
            }
            bits |= try parseElement(String(element), bounds)
        }
        return bits
    }

    /// One list element: `*`, `n`, `a-b`, each optionally followed by `/step`.
    private func parseElement(_ element: String, _ bounds: Bounds) throws(CronExpression.ParseError) -> UInt64 {
        let parts = element.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else {
            throw .init(field: bounds.field, text: element, reason: "\"\(element)\" has more than one step")
        }
        let base = String(parts[0])
        let step = parts.count == 2 ? try parseStep(String(parts[1]), bounds) : 1

        let first: Int
        var last: Int
        if base == "*" {
            first = bounds.range.lowerBound
            last = bounds.starEnd
        } else if base.contains("-") {
            let ends = base.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count == 2, !ends[0].isEmpty, !ends[1].isEmpty else {
                throw .init(
                    field: bounds.field, text: base, reason: "\"\(base)\" is not \(bounds.valueKind) or a range")
            }
            first = try parseValue(String(ends[0]), bounds)
            last = try parseValue(String(ends[1]), bounds)
            // A weekday range may end on Sunday written as 0 or sun: fri-sun is 5-7.
            if bounds.field == .dayOfWeek, last == 0, first > 0 { last = 7 }
            guard first <= last else {
                throw .init(field: bounds.field, text: base, reason: "range \(base) is backwards")
            }
        } else {
            first = try parseValue(base, bounds)
            // `5/10` runs from 5 to the end of the field; a plain `5` is just 5.
            last = parts.count == 2 ? max(first, bounds.starEnd) : first
        }

        var bits: UInt64 = 0
        for value in stride(from: first, through: last, by: step) {
            // Weekday 7 is Sunday, bit 0.
            let bit = bounds.field == .dayOfWeek ? value % 7 : value
            bits |= 1 << UInt64(bit)
        }
        return bits
    }

    private func parseStep(_ text: String, _ bounds: Bounds) throws(CronExpression.ParseError) -> Int {
        guard let step = Self.number(text) else {
            throw .init(field: bounds.field, text: text, reason: "step \"\(text)\" is not a number")
        }
        guard (1...bounds.maximumStep).contains(step) else {
            throw .init(field: bounds.field, text: text, reason: "step \(text) is out of range 1-\(bounds.maximumStep)")
        }
        return step
    }

    /// A number within the field's range, or a name the field accepts.
    private func parseValue(_ text: String, _ bounds: Bounds) throws(CronExpression.ParseError) -> Int {
        if let value = Self.number(text) {
            guard bounds.range.contains(value) else {
                throw .init(
                    field: bounds.field, text: text,
                    reason: "\(text) is out of range \(bounds.range.lowerBound)-\(bounds.range.upperBound)")
            }
            return value
        }
        if let index = bounds.names.firstIndex(of: text.lowercased()) { return bounds.firstNamed + index }
        throw .init(field: bounds.field, text: text, reason: "\"\(text)\" is not \(bounds.valueKind)")
    }

    /// The value of a string of ASCII digits; `Int.max` when there are too many digits for an `Int` (so it is
    /// reported as out of range, not as "not a number").
    private static func number(_ text: String) -> Int? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int(text) ?? Int.max
    }
}
