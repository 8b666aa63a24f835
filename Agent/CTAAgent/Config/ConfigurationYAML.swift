import Yams

// Reading the configuration file's YAML into nodes that know their lines, and turning Yams' errors into
// configuration errors that name a line.

enum ConfigurationYAML {
    /// Composes the single document of `yaml`; nil when it holds no document (empty, or only comments).
    static func compose(_ yaml: String, path: String) throws(ConfigurationError) -> Node? {
        do {
            return try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw configurationError(error, yaml: yaml, path: path)
        } catch {
            throw ConfigurationError(key: "", origin: .file(path: path, line: nil), message: "invalid YAML: \(error)")
        }
    }

    static func configurationError(_ error: YamlError, yaml: String, path: String) -> ConfigurationError {
        func syntax(_ problem: String, _ context: YamlError.Context?, _ line: Int?) -> ConfigurationError {
            var message = "invalid YAML: \(problem)"
            if let context, !context.text.isEmpty { message += " (\(context.text) at line \(context.mark.line))" }
            return ConfigurationError(key: "", origin: .file(path: path, line: line), message: message)
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return syntax(problem, context, mark.line)
        case .reader(let problem, let offset, _, _):
            return syntax(problem, nil, offset.map { line(ofCharacterOffset: $0, in: yaml) })
        case .duplicatedKeysInMapping(let duplicates, let context):
            return duplicateKeyError(yaml: yaml, name: duplicates.first ?? "", first: context.mark, path: path)
        default:
            return syntax("\(error)", nil, nil)
        }
    }

    /// The 1-based line of a character offset, as Yams reports it for reader errors.
    static func line(ofCharacterOffset offset: Int, in text: String) -> Int {
        1 + text.prefix(offset).reduce(0) { count, character in character.isNewline ? count + 1 : count }
    }

    // MARK: Duplicate keys

    // Yams refuses a mapping with a duplicate key before it hands out any node, and names only the key and its
    // first occurrence. To name the dotted key and the line of the second occurrence, a private-use character is
    // put in front of the first occurrence, which makes it a different key; the document then composes, and the
    // marked key shows both the path and the sibling that repeats it.

    private static let firstMark: Unicode.Scalar = "\u{E000}"
    private static let otherMark: Unicode.Scalar = "\u{E001}"

    static func duplicateKeyError(yaml: String, name: String, first: Mark, path: String) -> ConfigurationError {
        let fallback = ConfigurationError(
            key: name,
            origin: .file(path: path, line: first.line),
            message: "duplicate key"
        )
        guard var text = insert(firstMark, into: yaml, at: first) else { return fallback }
        var root: Node?
        // Further duplicates (a key given three times, or another repeated key) get a mark of their own.
        for _ in 0..<64 {
            do {
                root = try Yams.compose(yaml: text)
                break
            } catch YamlError.duplicatedKeysInMapping(_, let context) {
                guard let marked = insert(otherMark, into: text, at: context.mark) else { return fallback }
                text = marked
            } catch {
                return fallback
            }
        }
        guard let root, let (keys, mapping) = findMarked(in: root, keys: []) else { return fallback }
        let second = mapping.first { key, _ in
            guard let string = key.scalar?.string, !string.unicodeScalars.contains(firstMark) else { return false }
            return unmarked(string) == name
        }
        guard let second, let line = second.key.mark?.line else { return fallback }
        return ConfigurationError(
            key: (keys + [name]).joined(separator: "."),
            origin: .file(path: path, line: line),
            message: "duplicate key; first set at line \(first.line)"
        )
    }

    /// The keys leading to the mapping that holds the key marked first, and that mapping.
    private static func findMarked(in node: Node, keys: [String]) -> ([String], Node.Mapping)? {
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                let string = key.scalar?.string ?? ""
                if string.unicodeScalars.first == firstMark { return (keys, mapping) }
                if let found = findMarked(in: value, keys: keys + [unmarked(string)]) { return found }
            }
            return nil
        case .sequence(let sequence):
            for item in sequence {
                if let found = findMarked(in: item, keys: keys) { return found }
            }
            return nil
        case .scalar, .alias:
            return nil
        }
    }

    private static func unmarked(_ string: String) -> String {
        var scalars = string.unicodeScalars
        scalars.removeAll { $0 == firstMark || $0 == otherMark }
        return String(scalars)
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
