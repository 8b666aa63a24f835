import Yams

/// Reads YAML text into ``YAMLNode`` trees; every problem names the file and the line.
///
/// A repeated key in a mapping is an error that names the dotted key, the line of the repeat and the line where the
/// key was first set. Yams refuses such a mapping before it hands out any node, naming only the key and its first
/// occurrence; so the reader puts a private-use character in front of that first occurrence, which makes it a
/// different key, and composes again until the text composes. The marked keys then show where each repeat is; the
/// marks are removed from the tree, and each mapping keeps the first value of a repeated key.
public enum YAMLReader {
    /// Composes the single document of `text`; nil when it holds none (empty, or only comments).
    ///
    /// - Throws: A syntax error, a second document, or the first repeated key Yams finds.
    public static func document(_ text: String, file: String) throws(YAMLError) -> YAMLNode? {
        let composed = try compose(text, file: file, single: true)
        if let duplicate = composed.duplicates.first { throw duplicate.error(file: file) }
        return composed.documents.first
    }

    /// Composes every document of `text` (documents are separated by `---`), empty ones included.
    ///
    /// Repeated keys do not stop it: each repeat is listed in ``YAMLDocuments/duplicates`` and left out of its
    /// mapping, so the rest can still be checked.
    ///
    /// - Throws: A syntax error anywhere in the text.
    public static func documents(_ text: String, file: String) throws(YAMLError) -> YAMLDocuments {
        try compose(text, file: file, single: false)
    }

    // MARK: Composing

    /// The most repeated keys marked before giving up on naming them.
    private static let maximumMarks = 256
    private static let firstMark: UInt32 = 0xE000
    private static let lastMark: UInt32 = 0xF8FF

    /// A repeated key as Yams reports it: the key and its first occurrence.
    private struct Report {
        var name: String
        var first: Mark
    }

    private static func compose(_ text: String, file: String, single: Bool) throws(YAMLError) -> YAMLDocuments {
        var current = text
        var reports: [Report] = []
        // Marks must not be confused with characters of the text itself.
        let markable = !text.unicodeScalars.contains { isMark($0) }
        while true {
            do {
                let roots = try parse(current, single: single)
                var converter = Converter()
                let documents = roots.enumerated().map { index, root in
                    converter.document = index
                    return converter.convert(root, path: .root)
                }
                let duplicates = converter.duplicates.sorted { ($0.order, $0.key.line) < ($1.order, $1.key.line) }
                if let first = reports.first, duplicates.isEmpty { throw unlocated(first, file: file) }
                return YAMLDocuments(documents: documents, duplicates: duplicates.map(\.key))
            } catch YamlError.duplicatedKeysInMapping(let names, let context) {
                let report = Report(name: names.first ?? "", first: context.mark)
                guard markable, reports.count < maximumMarks,
                    let mark = Unicode.Scalar(firstMark + UInt32(reports.count)),
                    let marked = insert(mark, into: current, at: context.mark)
                else { throw unlocated(reports.first ?? report, file: file) }
                reports.append(report)
                current = marked
            } catch let error as YAMLError {
                throw error
            } catch let error as YamlError {
                // A single document is read for configuration: the repeated key found first is the error to show.
                if single, let first = reports.first { throw unlocated(first, file: file) }
                throw syntaxError(error, text: current, file: file)
            } catch {
                if single, let first = reports.first { throw unlocated(first, file: file) }
                throw YAMLError(file: file, line: nil, message: "invalid YAML: \(error)")
            }
        }
    }

    private static func parse(_ text: String, single: Bool) throws -> [Node] {
        if single { return try Yams.compose(yaml: text).map { [$0] } ?? [] }
        let parser = try Parser(yaml: text)
        var roots: [Node] = []
        while let root = try parser.nextRoot() { roots.append(root) }
        return roots
    }

    /// A repeated key whose repeat could not be found: named by its first occurrence only.
    private static func unlocated(_ report: Report, file: String) -> YAMLError {
        YAMLError(
            file: file, line: report.first.line, path: YAMLPath.root.appending(report.name), message: "duplicate key")
    }

    private static func syntaxError(_ error: YamlError, text: String, file: String) -> YAMLError {
        func syntax(_ problem: String, _ context: YamlError.Context?, _ line: Int?) -> YAMLError {
            var message = "invalid YAML: \(problem)"
            if let context, !context.text.isEmpty { message += " (\(context.text) at line \(context.mark.line))" }
            return YAMLError(file: file, line: line, message: message)
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return syntax(problem, context, mark.line)
        case .reader(let problem, let offset, _, _):
            return syntax(problem, nil, offset.map { line(ofCharacterOffset: $0, in: text) })
        default:
            return syntax("\(error)", nil, nil)
        }
    }

    /// The 1-based line of a character offset, as Yams reports it for reader errors.
    static func line(ofCharacterOffset offset: Int, in text: String) -> Int {
        1 + text.prefix(offset).reduce(0) { count, character in character.isNewline ? count + 1 : count }
    }

    // MARK: Marks

    private static func isMark(_ scalar: Unicode.Scalar) -> Bool { (firstMark...lastMark).contains(scalar.value) }

    /// The mark's number and the text without it, when the text starts with a mark.
    fileprivate static func unmarked(_ text: String) -> (order: Int, text: String)? {
        guard let first = text.unicodeScalars.first, isMark(first) else { return nil }
        return (Int(first.value - firstMark), String(text.unicodeScalars.dropFirst()))
    }

    /// Inserts `mark` at the start of the scalar that begins at `position` (inside its quotes, if quoted).
    private static func insert(_ mark: Unicode.Scalar, into text: String, at position: Mark) -> String? {
        var scalars = text.unicodeScalars
        var index = scalars.startIndex
        var line = 1
        // Lines end as libyaml ends them: LF, CR LF, CR, NEL, LS or PS.
        while line < position.line {
            guard index < scalars.endIndex else { return nil }
            let scalar = scalars[index]
            index = scalars.index(after: index)
            if scalar == "\r" {
                if index < scalars.endIndex, scalars[index] == "\n" { index = scalars.index(after: index) }
                line += 1
            } else if scalar == "\n" || scalar == "\u{85}" || scalar == "\u{2028}" || scalar == "\u{2029}" {
                line += 1
            }
        }
        // libyaml counts columns in Unicode scalars, from 1.
        for _ in 1..<max(position.column, 1) {
            guard index < scalars.endIndex else { return nil }
            index = scalars.index(after: index)
        }
        guard index < scalars.endIndex else { return nil }
        if scalars[index] == "\"" || scalars[index] == "'" { index = scalars.index(after: index) }
        scalars.insert(mark, at: index)
        return String(scalars)
    }
}

/// The documents of a YAML stream and the keys repeated in them.
public struct YAMLDocuments: Hashable, Sendable {
    /// Every document, in order; an empty document is a null scalar.
    public var documents: [YAMLNode]
    /// Each repeat of a key, in the order Yams found them; the mapping kept the key's first value.
    public var duplicates: [YAMLDuplicateKey]

    /// Creates a result.
    public init(documents: [YAMLNode], duplicates: [YAMLDuplicateKey]) {
        self.documents = documents
        self.duplicates = duplicates
    }
}

/// A key given a second time in the same mapping.
public struct YAMLDuplicateKey: Hashable, Sendable {
    /// The document it is in, from 0.
    public var document: Int
    /// The repeated key, from the document's root.
    public var path: YAMLPath
    /// The line of the repeat.
    public var line: Int
    /// The line where the key was first set.
    public var firstLine: Int

    /// Creates a record.
    public init(document: Int, path: YAMLPath, line: Int, firstLine: Int) {
        self.document = document
        self.path = path
        self.line = line
        self.firstLine = firstLine
    }

    /// "duplicate key; first set at line 3".
    public var message: String { "duplicate key; first set at line \(firstLine)" }

    /// The error for this repeat in `file`.
    public func error(file: String) -> YAMLError {
        YAMLError(file: file, line: line, path: path, message: message)
    }
}

/// Turns Yams' nodes into ``YAMLNode``s, removing the marks and the repeated keys they reveal.
private struct Converter {
    var document = 0
    /// Each repeat, with the number of the mark that revealed it (the order Yams reported them in).
    var duplicates: [(order: Int, key: YAMLDuplicateKey)] = []

    mutating func convert(_ node: Node, path: YAMLPath) -> YAMLNode {
        let line = node.mark?.line ?? 1
        let column = node.mark?.column ?? 1
        switch node {
        case .scalar(let scalar):
            return YAMLNode(.scalar(YAMLScalar(scalar.string, isNull: node.null != nil)), line: line, column: column)
        case .sequence(let sequence):
            var items: [YAMLNode] = []
            for (index, item) in sequence.enumerated() {
                items.append(convert(item, path: path.appending(index: index)))
            }
            return YAMLNode(.sequence(items), line: line, column: column)
        case .mapping(let mapping):
            var entries: [YAMLNode.Entry] = []
            var seen: [String: (line: Int, order: Int?)] = [:]
            for (keyNode, valueNode) in mapping {
                var key = convert(keyNode, path: path)
                var order: Int?
                if case .scalar(var scalar) = key.content, let (mark, text) = YAMLReader.unmarked(scalar.text) {
                    order = mark
                    scalar.text = text
                    key.content = .scalar(scalar)
                }
                if let name = key.scalar {
                    if let first = seen[name] {
                        // Only keys Yams itself called repeated: `1` and `"1"` differ in type, not in text.
                        if let revealed = first.order ?? order {
                            let duplicate = YAMLDuplicateKey(
                                document: document, path: path.appending(name), line: key.line, firstLine: first.line)
                            duplicates.append((revealed, duplicate))
                            continue
                        }
                    } else {
                        seen[name] = (key.line, order)
                    }
                }
                let valuePath = key.scalar.map { path.appending($0) } ?? path
                entries.append(YAMLNode.Entry(key: key, value: convert(valueNode, path: valuePath)))
            }
            return YAMLNode(.mapping(entries), line: line, column: column)
        case .alias:
            // Composing resolves aliases to the nodes they name; an alias node never comes out of the parser.
            return YAMLNode(.scalar(YAMLScalar("", isNull: true)), line: line, column: column)
        }
    }
}
