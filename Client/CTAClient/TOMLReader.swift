public import CTAYAML

/// Reads TOML text (v1.0) into the same ``YAMLNode`` trees the YAML reader makes, so that definition and
/// configuration files in TOML are checked by the same code and every problem names its file and line.
///
/// Tables become mappings (keys in the order they were first written), arrays and arrays of tables become lists,
/// and every value a scalar holding its text: a string without quotes or escapes, a number without `_`
/// separators, `true`/`false`, or a date-time as written. Each node starts on the line of its key or header.
///
/// Repeated keys, tables defined twice, and keys that would extend an inline table or a value are errors naming
/// both lines; a syntax error stops the reading at its line.
public enum TOMLReader {
    /// Reads the whole text as one table.
    ///
    /// - Throws: The first syntax error, or the first key defined twice.
    public static func read(_ text: String, file: String) throws(YAMLError) -> YAMLNode {
        var parser = Parser(text: text, file: file)
        let root = try parser.parse()
        if let problem = parser.problems.first { throw problem }
        return root.node(line: 1, column: 1)
    }

    /// Reads a TOML definition file into documents, as ``YAMLReader/documents(_:file:)`` does for YAML.
    ///
    /// A file holds either one definition (top-level keys with `kind`), or arrays of tables named after the kinds:
    /// `[[test]]`, `[[suite]]`, `[[configuration]]`, `[[scenario]]` (a single `[scenario]` table is one too). Each
    /// such table is one document whose `kind` is its name, in the order of the file.
    public static func definitionDocuments(_ text: String, file: String) throws(YAMLError) -> YAMLDocuments {
        let root = try read(text, file: file)
        guard let entries = root.mapping, !entries.isEmpty else {
            return YAMLDocuments(documents: [], duplicates: [])
        }
        if entries.contains(where: { $0.name == "kind" }) {
            return YAMLDocuments(documents: [root], duplicates: [])
        }
        let kinds = ["test", "suite", "configuration", "scenario"]
        var documents: [YAMLNode] = []
        for entry in entries {
            guard let name = entry.name, kinds.contains(name) else {
                let hint = entry.name.flatMap { KeySuggestion.closest(to: $0, among: kinds) }
                    .map { "; did you mean [[\($0)]]?" } ?? ""
                throw YAMLError(
                    file: file, line: entry.key.line, path: YAMLPath.root.appending(entry.name ?? "?"),
                    message: "expected [[test]], [[suite]], [[configuration]] or [[scenario]] tables, "
                        + "or a definition with kind\(hint)")
            }
            let tables: [YAMLNode]
            switch entry.value.content {
            case .sequence(let items): tables = items
            case .mapping: tables = [entry.value]
            case .scalar: tables = [entry.value]
            }
            for table in tables {
                guard var fields = table.mapping else {
                    throw YAMLError(
                        file: file, line: table.line, path: YAMLPath.root.appending(name),
                        message: "expected a table ([[\(name)]]), got \(table.shape)")
                }
                let kind = YAMLNode.Entry(
                    key: YAMLNode(.scalar(YAMLScalar("kind")), line: table.line, column: table.column),
                    value: YAMLNode(.scalar(YAMLScalar(name)), line: table.line, column: table.column))
                fields.insert(kind, at: 0)
                documents.append(YAMLNode(.mapping(fields), line: table.line, column: table.column))
            }
        }
        documents.sort { ($0.line, $0.column) < ($1.line, $1.column) }
        return YAMLDocuments(documents: documents, duplicates: [])
    }
}

// MARK: The tree while it is built

/// A TOML table while the text is read: tables may be extended later in the file, so they are shared references.
private final class TOMLTable {
    enum Origin {
        /// Created as the parent of a header or a dotted key; may still be defined by a header of its own.
        case implicit
        /// Defined by a `[header]`.
        case header
        /// Defined by dotted keys (`a.b = 1` defines table `a`).
        case dotted
        /// An inline table `{ … }`: complete as written.
        case inline
        /// An element of an array of tables `[[header]]`.
        case arrayElement
    }

    var order: [String] = []
    var items: [String: Item] = [:]
    var origin: Origin
    let line: Int
    let column: Int
    /// The line of each key, for messages about repeats.
    var keyLines: [String: (line: Int, column: Int)] = [:]

    init(origin: Origin, line: Int, column: Int) {
        self.origin = origin
        self.line = line
        self.column = column
    }

    func set(_ key: String, _ item: Item, line: Int, column: Int) {
        if items[key] == nil { order.append(key) }
        items[key] = item
        keyLines[key] = (line, column)
    }

    func node(line: Int, column: Int) -> YAMLNode {
        let entries = order.map { key in
            let place = keyLines[key] ?? (line, column)
            return YAMLNode.Entry(
                key: YAMLNode(.scalar(YAMLScalar(key)), line: place.line, column: place.column),
                value: items[key]!.node)
        }
        return YAMLNode(.mapping(entries), line: line, column: column)
    }
}

private indirect enum Item {
    case scalar(String, line: Int, column: Int)
    /// An array; `tables` when it was made by `[[header]]` (and may grow), not by an inline `[ … ]`.
    case array([Item], line: Int, column: Int, tables: Bool)
    case table(TOMLTable)

    var node: YAMLNode {
        switch self {
        case .scalar(let text, let line, let column):
            return YAMLNode(.scalar(YAMLScalar(text)), line: line, column: column)
        case .array(let items, let line, let column, _):
            return YAMLNode(.sequence(items.map(\.node)), line: line, column: column)
        case .table(let table):
            return table.node(line: table.line, column: table.column)
        }
    }

    var line: Int {
        switch self {
        case .scalar(_, let line, _), .array(_, let line, _, _): line
        case .table(let table): table.line
        }
    }
}

// MARK: Parsing

private struct Parser {
    let scalars: [Unicode.Scalar]
    let file: String
    var index = 0
    var line = 1
    var column = 1
    var problems: [YAMLError] = []

    init(text: String, file: String) {
        scalars = Array(text.unicodeScalars)
        self.file = file
    }

    // MARK: Characters

    var atEnd: Bool { index >= scalars.count }
    var current: Unicode.Scalar? { index < scalars.count ? scalars[index] : nil }

    func peek(_ offset: Int) -> Unicode.Scalar? {
        index + offset < scalars.count ? scalars[index + offset] : nil
    }

    mutating func advance() {
        guard let scalar = current else { return }
        index += 1
        if scalar == "\n" {
            line += 1
            column = 1
        } else {
            column += 1
        }
    }

    func starts(with text: String) -> Bool {
        var offset = 0
        for scalar in text.unicodeScalars {
            guard peek(offset) == scalar else { return false }
            offset += 1
        }
        return true
    }

    mutating func skip(_ count: Int) { for _ in 0..<count { advance() } }

    func error(_ message: String, line: Int? = nil, path: [String] = []) -> YAMLError {
        YAMLError(file: file, line: line ?? self.line, path: Self.path(path), message: message)
    }

    static func path(_ keys: [String]) -> YAMLPath {
        keys.reduce(YAMLPath.root) { $0.appending($1) }
    }

    mutating func skipSpaces() {
        while let scalar = current, scalar == " " || scalar == "\t" { advance() }
    }

    /// Skips a comment to the end of its line (the newline stays).
    mutating func skipComment() throws(YAMLError) {
        guard current == "#" else { return }
        while let scalar = current, scalar != "\n" {
            if scalar == "\r" && peek(1) == "\n" { break }
            if isControl(scalar) && scalar != "\t" { throw error("control character in a comment") }
            advance()
        }
    }

    /// Skips spaces, comments and newlines.
    mutating func skipBlank() throws(YAMLError) {
        while true {
            skipSpaces()
            try skipComment()
            if current == "\n" {
                advance()
            } else if current == "\r" && peek(1) == "\n" {
                skip(2)
            } else {
                return
            }
        }
    }

    /// After a key/value pair or a header: only spaces and a comment may follow on the line.
    mutating func endOfLine() throws(YAMLError) {
        skipSpaces()
        try skipComment()
        if atEnd { return }
        if current == "\n" {
            advance()
            return
        }
        if current == "\r" && peek(1) == "\n" {
            skip(2)
            return
        }
        throw error("expected the end of the line, got \(describe(current))")
    }

    func describe(_ scalar: Unicode.Scalar?) -> String {
        guard let scalar else { return "the end of the file" }
        if scalar == "\n" { return "the end of the line" }
        return String(scalar).debugDescription
    }

    func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F
    }

    static func isBare(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-": true
        default: false
        }
    }

    // MARK: Document

    mutating func parse() throws(YAMLError) -> TOMLTable {
        let root = TOMLTable(origin: .header, line: 1, column: 1)
        var currentTable = root
        var currentPath: [String] = []
        while true {
            try skipBlank()
            if atEnd { break }
            if current == "[" {
                (currentTable, currentPath) = try header(root: root)
            } else {
                try keyValue(into: currentTable, path: currentPath)
            }
            try endOfLine()
        }
        return root
    }

    // MARK: Keys

    /// A dotted key, each part with its place.
    mutating func key() throws(YAMLError) -> [(name: String, line: Int, column: Int)] {
        var parts: [(String, Int, Int)] = []
        while true {
            skipSpaces()
            let place = (line, column)
            let name: String
            if current == "\"" {
                if starts(with: "\"\"\"") { throw error("a key cannot be a multi-line string") }
                name = try basicString()
            } else if current == "'" {
                if starts(with: "'''") { throw error("a key cannot be a multi-line string") }
                name = try literalString()
            } else {
                var text = ""
                while let scalar = current, Self.isBare(scalar) {
                    text.unicodeScalars.append(scalar)
                    advance()
                }
                guard !text.isEmpty else {
                    throw error("expected a key (letters, digits, _ and -, or a quoted string), got \(describe(current))")
                }
                name = text
            }
            parts.append((name, place.0, place.1))
            skipSpaces()
            guard current == "." else { return parts }
            advance()
        }
    }

    /// `[a.b]` or `[[a.b]]`: returns the table the following keys go into.
    mutating func header(root: TOMLTable) throws(YAMLError) -> (TOMLTable, [String]) {
        let headerLine = line
        let headerColumn = column
        let isArray = starts(with: "[[")
        skip(isArray ? 2 : 1)
        let parts = try key()
        if isArray {
            guard starts(with: "]]") else { throw error("expected ]] to close the header, got \(describe(current))") }
            skip(2)
        } else {
            guard current == "]" else { throw error("expected ] to close the header, got \(describe(current))") }
            advance()
        }
        let names = parts.map(\.name)
        // Walk to the parent, creating implicit tables; through an array of tables, its last element.
        var table = root
        for (position, part) in parts.dropLast().enumerated() {
            let path = Array(names[...position])
            switch table.items[part.name] {
            case nil:
                let child = TOMLTable(origin: .implicit, line: headerLine, column: headerColumn)
                table.set(part.name, .table(child), line: part.line, column: part.column)
                table = child
            case .table(let child):
                if child.origin == .inline {
                    throw error("\(path.joined(separator: ".")) is an inline table and cannot be extended", path: path)
                }
                table = child
            case .array(let items, _, _, let tables):
                guard tables, case .table(let last)? = items.last else {
                    throw error("\(path.joined(separator: ".")) is an array, not a table", path: path)
                }
                table = last
            case .scalar(_, let first, _):
                throw error("\(path.joined(separator: ".")) is a value (line \(first)), not a table", path: path)
            }
        }
        let last = parts[parts.count - 1]
        if isArray {
            let element = TOMLTable(origin: .arrayElement, line: headerLine, column: headerColumn)
            switch table.items[last.name] {
            case nil:
                table.set(
                    last.name, .array([.table(element)], line: headerLine, column: headerColumn, tables: true),
                    line: last.line, column: last.column)
            case .array(var items, let firstLine, let firstColumn, let tables):
                guard tables else {
                    throw error(
                        "\(names.joined(separator: ".")) is an inline array (line \(firstLine)) and cannot be extended",
                        path: names)
                }
                items.append(.table(element))
                // Keep the place where the key was first written.
                let place = table.keyLines[last.name] ?? (last.line, last.column)
                table.set(
                    last.name, .array(items, line: firstLine, column: firstColumn, tables: true), line: place.line,
                    column: place.column)
            case let other?:
                throw error(
                    "\(names.joined(separator: ".")) is already defined at line \(other.line) and is not an array "
                        + "of tables", path: names)
            }
            return (element, names)
        }
        switch table.items[last.name] {
        case nil:
            let child = TOMLTable(origin: .header, line: headerLine, column: headerColumn)
            table.set(last.name, .table(child), line: last.line, column: last.column)
            return (child, names)
        case .table(let child) where child.origin == .implicit:
            child.origin = .header
            return (child, names)
        case let other?:
            throw error("table \(names.joined(separator: ".")) is already defined at line \(other.line)", path: names)
        }
    }

    /// `key = value` into `table`.
    mutating func keyValue(into table: TOMLTable, path: [String]) throws(YAMLError) {
        let parts = try key()
        guard current == "=" else {
            throw error("expected = after the key \(parts.map(\.name).joined(separator: ".")), got \(describe(current))")
        }
        advance()
        skipSpaces()
        let value = try self.value()
        var target = table
        var fullPath = path
        for part in parts.dropLast() {
            fullPath.append(part.name)
            switch target.items[part.name] {
            case nil:
                let child = TOMLTable(origin: .dotted, line: part.line, column: part.column)
                target.set(part.name, .table(child), line: part.line, column: part.column)
                target = child
            case .table(let child) where child.origin == .dotted || child.origin == .implicit:
                target = child
            case let other?:
                throw error(
                    "\(fullPath.joined(separator: ".")) is already defined at line \(other.line)", line: part.line,
                    path: fullPath)
            }
        }
        let last = parts[parts.count - 1]
        fullPath.append(last.name)
        if let first = target.keyLines[last.name] {
            // Reported, and the first value kept, so the rest of the file is still read.
            problems.append(
                error("duplicate key; first set at line \(first.line)", line: last.line, path: fullPath))
            return
        }
        target.set(last.name, value, line: last.line, column: last.column)
    }

    // MARK: Values

    mutating func value() throws(YAMLError) -> Item {
        let valueLine = line
        let valueColumn = column
        switch current {
        case "\"":
            let text = starts(with: "\"\"\"") ? try multilineBasicString() : try basicString()
            return .scalar(text, line: valueLine, column: valueColumn)
        case "'":
            let text = starts(with: "'''") ? try multilineLiteralString() : try literalString()
            return .scalar(text, line: valueLine, column: valueColumn)
        case "[":
            return try array()
        case "{":
            return try inlineTable()
        case nil, "\n", "#":
            throw error("missing value after =")
        default:
            return .scalar(try bareValue(), line: valueLine, column: valueColumn)
        }
    }

    /// A number, boolean or date-time: its text, checked.
    mutating func bareValue() throws(YAMLError) -> String {
        var text = ""
        while let scalar = current {
            if scalar == "," || scalar == "]" || scalar == "}" || scalar == "#" || scalar == "\n" || scalar == "\r" {
                break
            }
            // A space separates date and time (`1979-05-27 07:32:00Z`); elsewhere it ends the value.
            if scalar == " " || scalar == "\t" {
                let isDateSpace =
                    scalar == " " && Self.isDate(text) && peek(1).map { ("0"..."9").contains($0) } == true
                if !isDateSpace { break }
            }
            text.unicodeScalars.append(scalar)
            advance()
        }
        if text == "true" || text == "false" { return text }
        if let number = Self.number(text) { return number }
        if Self.isDateTime(text) { return text }
        throw error("invalid value \(YAMLNode.quoted(text)); text values are quoted (\"\(text)\")")
    }

    static func isDate(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count == 10 else { return false }
        for (position, scalar) in scalars.enumerated() {
            if position == 4 || position == 7 {
                if scalar != "-" { return false }
            } else if !("0"..."9").contains(scalar) {
                return false
            }
        }
        return true
    }

    /// A date, a time, or a date-time with an optional offset: checked for its shape only.
    static func isDateTime(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, ("0"..."9").contains(first) else { return false }
        let allowed = Set("0123456789-:.TtZz+ ".unicodeScalars)
        guard text.unicodeScalars.allSatisfy({ allowed.contains($0) }) else { return false }
        return text.contains(":") || isDate(text)
    }

    /// The number's text without `_` separators, or nil when `text` is not a TOML number.
    static func number(_ text: String) -> String? {
        if ["inf", "+inf", "-inf", "nan", "+nan", "-nan"].contains(text) { return text }
        var body = Substring(text)
        var sign = ""
        if body.first == "+" || body.first == "-" {
            sign = String(body.first!)
            body = body.dropFirst()
        }
        guard let first = body.first else { return nil }
        func digits(_ part: Substring, _ isDigit: (Character) -> Bool) -> String? {
            guard let head = part.first, let tail = part.last, isDigit(head), isDigit(tail) else { return nil }
            var previousUnderscore = false
            var result = ""
            for character in part {
                if character == "_" {
                    if previousUnderscore { return nil }
                    previousUnderscore = true
                    continue
                }
                guard isDigit(character) else { return nil }
                previousUnderscore = false
                result.append(character)
            }
            return result
        }
        let decimal: (Character) -> Bool = { $0.isASCII && $0.isNumber }
        if sign.isEmpty, first == "0", body.count > 2 {
            let prefix = body.prefix(2)
            let rest = body.dropFirst(2)
            let check: ((Character) -> Bool)? =
                switch prefix {
                case "0x": { $0.isHexDigit }
                case "0o": { ("0"..."7").contains($0) }
                case "0b": { $0 == "0" || $0 == "1" }
                default: nil
                }
            if let check { return digits(rest, check).map { String(prefix) + $0 } }
        }
        // Integer or float: int [. digits] [e [+-] digits]
        var mantissa = body
        var exponent: Substring?
        if let e = body.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = body[..<e]
            exponent = body[body.index(after: e)...]
        }
        var integer = mantissa
        var fraction: Substring?
        if let dot = mantissa.firstIndex(of: ".") {
            integer = mantissa[..<dot]
            fraction = mantissa[mantissa.index(after: dot)...]
        }
        guard let integerDigits = digits(integer, decimal) else { return nil }
        if integerDigits.count > 1 && integerDigits.first == "0" { return nil }
        var result = sign + integerDigits
        if let fraction {
            guard let fractionDigits = digits(fraction, decimal) else { return nil }
            result += "." + fractionDigits
        }
        if var exponent {
            var exponentSign = ""
            if exponent.first == "+" || exponent.first == "-" {
                exponentSign = String(exponent.first!)
                exponent = exponent.dropFirst()
            }
            guard let exponentDigits = digits(exponent, decimal) else { return nil }
            result += "e" + exponentSign + exponentDigits
        }
        return result
    }

    mutating func array() throws(YAMLError) -> Item {
        let arrayLine = line
        let arrayColumn = column
        advance()
        var items: [Item] = []
        while true {
            try skipBlank()
            if current == "]" {
                advance()
                break
            }
            guard !atEnd else { throw error("the array opened at line \(arrayLine) is not closed") }
            items.append(try value())
            try skipBlank()
            if current == "," {
                advance()
                continue
            }
            guard current == "]" else {
                throw error("expected , or ] in the array opened at line \(arrayLine), got \(describe(current))")
            }
            advance()
            break
        }
        return .array(items, line: arrayLine, column: arrayColumn, tables: false)
    }

    mutating func inlineTable() throws(YAMLError) -> Item {
        let tableLine = line
        let tableColumn = column
        advance()
        let table = TOMLTable(origin: .dotted, line: tableLine, column: tableColumn)
        skipSpaces()
        if current == "}" {
            advance()
            table.origin = .inline
            return .table(table)
        }
        while true {
            skipSpaces()
            try keyValue(into: table, path: [])
            skipSpaces()
            if current == "," {
                advance()
                continue
            }
            guard current == "}" else {
                throw error(
                    "expected , or } in the inline table opened at line \(tableLine) (an inline table is on one line), "
                        + "got \(describe(current))")
            }
            advance()
            break
        }
        freeze(table)
        return .table(table)
    }

    /// Marks an inline table and the tables its dotted keys made as complete.
    func freeze(_ table: TOMLTable) {
        table.origin = .inline
        for item in table.items.values {
            if case .table(let child) = item { freeze(child) }
        }
    }

    // MARK: Strings

    mutating func basicString() throws(YAMLError) -> String {
        let startLine = line
        advance()
        var text = ""
        while true {
            guard let scalar = current, scalar != "\n" else {
                throw error("the string opened at line \(startLine) is not closed on its line", line: startLine)
            }
            if scalar == "\"" {
                advance()
                return text
            }
            if scalar == "\\" {
                text.unicodeScalars.append(try escape())
                continue
            }
            if isControl(scalar) && scalar != "\t" { throw error("control character in a string") }
            text.unicodeScalars.append(scalar)
            advance()
        }
    }

    mutating func escape() throws(YAMLError) -> Unicode.Scalar {
        advance()
        guard let scalar = current else { throw error("unfinished escape at the end of the file") }
        advance()
        switch scalar {
        case "b": return "\u{08}"
        case "t": return "\t"
        case "n": return "\n"
        case "f": return "\u{0C}"
        case "r": return "\r"
        case "e": return "\u{1B}"
        case "\"": return "\""
        case "\\": return "\\"
        case "u", "U":
            let count = scalar == "u" ? 4 : 8
            var hex = ""
            for _ in 0..<count {
                guard let digit = current, digit.properties.isASCIIHexDigit else {
                    throw error("\\\(scalar) needs \(count) hexadecimal digits")
                }
                hex.unicodeScalars.append(digit)
                advance()
            }
            guard let value = UInt32(hex, radix: 16), let result = Unicode.Scalar(value) else {
                throw error("\\\(scalar)\(hex) is not a Unicode scalar value")
            }
            return result
        default:
            throw error("unknown escape \\\(scalar)")
        }
    }

    mutating func literalString() throws(YAMLError) -> String {
        let startLine = line
        advance()
        var text = ""
        while true {
            guard let scalar = current, scalar != "\n" else {
                throw error("the string opened at line \(startLine) is not closed on its line", line: startLine)
            }
            advance()
            if scalar == "'" { return text }
            if isControl(scalar) && scalar != "\t" { throw error("control character in a string") }
            text.unicodeScalars.append(scalar)
        }
    }

    /// Skips the newline right after an opening `"""` or `'''`.
    mutating func trimFirstNewline() {
        if current == "\n" {
            advance()
        } else if current == "\r" && peek(1) == "\n" {
            skip(2)
        }
    }

    mutating func multilineBasicString() throws(YAMLError) -> String {
        let startLine = line
        skip(3)
        trimFirstNewline()
        var text = ""
        while true {
            guard let scalar = current else {
                throw error("the string opened at line \(startLine) is not closed", line: startLine)
            }
            if starts(with: "\"\"\"") {
                // Up to two more quotes belong to the string: `""""` ends with one quote inside.
                var extra = 0
                while extra < 2, peek(3 + extra) == "\"" { extra += 1 }
                for _ in 0..<extra { text.unicodeScalars.append("\"") }
                skip(3 + extra)
                return text
            }
            if scalar == "\\" {
                // A backslash at the end of a line trims the newline and the blanks that follow.
                var offset = 1
                while let next = peek(offset), next == " " || next == "\t" { offset += 1 }
                if peek(offset) == "\n" || (peek(offset) == "\r" && peek(offset + 1) == "\n") {
                    advance()
                    while let next = current, next == " " || next == "\t" || next == "\n" || next == "\r" {
                        advance()
                    }
                    continue
                }
                text.unicodeScalars.append(try escape())
                continue
            }
            if scalar == "\r" && peek(1) == "\n" {
                advance()
                continue
            }
            if isControl(scalar) && scalar != "\t" && scalar != "\n" { throw error("control character in a string") }
            text.unicodeScalars.append(scalar)
            advance()
        }
    }

    mutating func multilineLiteralString() throws(YAMLError) -> String {
        let startLine = line
        skip(3)
        trimFirstNewline()
        var text = ""
        while true {
            guard let scalar = current else {
                throw error("the string opened at line \(startLine) is not closed", line: startLine)
            }
            if starts(with: "'''") {
                var extra = 0
                while extra < 2, peek(3 + extra) == "'" { extra += 1 }
                for _ in 0..<extra { text.unicodeScalars.append("'") }
                skip(3 + extra)
                return text
            }
            if scalar == "\r" && peek(1) == "\n" {
                advance()
                continue
            }
            if isControl(scalar) && scalar != "\t" && scalar != "\n" { throw error("control character in a string") }
            text.unicodeScalars.append(scalar)
            advance()
        }
    }
}
