import CTACore

/// Reads the small part of YAML that TAP diagnostic blocks use, by hand.
///
/// Supported: block mappings and sequences nested by indentation, `- key: value` items, plain, single- and
/// double-quoted scalars, literal and folded block scalars (`|`, `|-`, `>`, `>-`), and `true`/`false`/`null`/`~`
/// and numbers as typed values. Flow collections (`{…}`, `[…]`), anchors and tags are kept as their raw text.
/// Anything it cannot place ends the parse; the caller keeps the raw text then.
enum DiagnosticYAML {
    /// Parses the block's lines (its own indentation already removed). Returns the value and whether every
    /// non-blank line was used.
    static func parse(_ lines: [Substring], limit: Int) -> (value: JSONValue?, complete: Bool) {
        var reader = Reader(lines: lines.map { Line($0) }, limit: limit)
        reader.skipBlank()
        guard reader.index < reader.lines.count else { return (nil, true) }
        let value = reader.node(minimumIndent: 0)
        reader.skipBlank()
        return (value, reader.index >= reader.lines.count)
    }

    struct Line {
        let indent: Int
        let content: Substring
        let raw: Substring
        var isBlank: Bool { content.isEmpty }
        var isComment: Bool { content.first == "#" }

        init(_ raw: Substring) {
            self.raw = raw
            var indent = 0
            var index = raw.startIndex
            while index < raw.endIndex, raw[index] == " " {
                indent += 1
                index = raw.index(after: index)
            }
            self.indent = indent
            var content = raw[index...]
            while let last = content.last, last == " " || last == "\t" { content = content.dropLast() }
            self.content = content
        }
    }

    struct Reader {
        let lines: [Line]
        let limit: Int
        var index = 0

        init(lines: [Line], limit: Int) {
            self.lines = lines
            self.limit = limit
        }

        mutating func skipBlank() {
            while index < lines.count, lines[index].isBlank || lines[index].isComment { index += 1 }
        }

        /// A node whose first line is at `index` and is indented at least `minimumIndent`.
        mutating func node(minimumIndent: Int) -> JSONValue? {
            skipBlank()
            guard index < lines.count, lines[index].indent >= minimumIndent else { return nil }
            let line = lines[index]
            if isSequenceItem(line.content) { return sequence(indent: line.indent) }
            if splitKey(line.content) != nil { return mapping(indent: line.indent) }
            index += 1
            return scalar(line.content)
        }

        mutating func sequence(indent: Int) -> JSONValue {
            var items: [JSONValue] = []
            while true {
                skipBlank()
                guard index < lines.count, lines[index].indent == indent, isSequenceItem(lines[index].content)
                else { break }
                let rest = trimmed(lines[index].content.dropFirst())
                if rest.isEmpty {
                    index += 1
                    items.append(node(minimumIndent: indent + 1) ?? .null)
                } else if splitKey(Substring(rest)) != nil {
                    // `- key: value` starts a mapping whose keys sit two columns in.
                    items.append(inlineMapping(first: Substring(rest), indent: indent + 2))
                } else if let block = blockStyle(rest) {
                    index += 1
                    items.append(blockScalar(parentIndent: indent, style: block))
                } else {
                    index += 1
                    items.append(scalar(Substring(rest)))
                }
            }
            return .array(items)
        }

        mutating func inlineMapping(first: Substring, indent: Int) -> JSONValue {
            let (key, rest) = splitKey(first)!
            index += 1
            return mapping(indent: indent, startingWith: [key: value(after: rest, keyIndent: indent)])
        }

        /// Reads `key: value` lines at `indent` into `object` (a later duplicate key wins).
        mutating func mapping(indent: Int, startingWith object: [String: JSONValue] = [:]) -> JSONValue {
            var object = object
            while true {
                skipBlank()
                guard index < lines.count, lines[index].indent == indent, let (key, rest) = splitKey(lines[index].content)
                else { break }
                index += 1
                object[key] = value(after: rest, keyIndent: indent)
            }
            return .object(object)
        }

        /// The value of a key whose line (already consumed) ended with `rest`.
        mutating func value(after rest: Substring, keyIndent: Int) -> JSONValue {
            if rest.isEmpty {
                skipBlank()
                guard index < lines.count else { return .null }
                let next = lines[index]
                if next.indent > keyIndent { return node(minimumIndent: keyIndent + 1) ?? .null }
                if next.indent == keyIndent && isSequenceItem(next.content) { return sequence(indent: keyIndent) }
                return .null
            }
            if let block = blockStyle(String(rest)) { return blockScalar(parentIndent: keyIndent, style: block) }
            return scalar(rest)
        }

        mutating func blockScalar(parentIndent: Int, style: (folded: Bool, chomp: Bool)) -> JSONValue {
            var collected: [Line] = []
            while index < lines.count, lines[index].isBlank || lines[index].indent > parentIndent {
                collected.append(lines[index])
                index += 1
            }
            while let last = collected.last, last.isBlank { collected.removeLast() }
            let common = collected.filter { !$0.isBlank }.map(\.indent).min() ?? 0
            let texts = collected.map { $0.isBlank ? "" : String($0.raw.dropFirst(common)) }
            var text: String
            if style.folded {
                text = ""
                for (offset, piece) in texts.enumerated() {
                    if offset > 0 { text += piece.isEmpty || texts[offset - 1].isEmpty ? "\n" : " " }
                    text += piece
                }
            } else {
                text = texts.joined(separator: "\n")
            }
            if !style.chomp && !text.isEmpty { text += "\n" }
            return .string(bounded(text, limit: limit))
        }

        func isSequenceItem(_ content: Substring) -> Bool {
            content == "-" || content.hasPrefix("- ")
        }

        func blockStyle(_ text: String) -> (folded: Bool, chomp: Bool)? {
            switch text {
            case "|", "|+": (false, false)
            case "|-": (false, true)
            case ">", ">+": (true, false)
            case ">-": (true, true)
            default: nil
            }
        }

        /// `key: rest` or `key:` at the end; the key may be quoted.
        func splitKey(_ content: Substring) -> (String, Substring)? {
            guard let first = content.first, !"{[#&*!|>%@`".contains(first), !isSequenceItem(content) else {
                return nil
            }
            if first == "\"" || first == "'" {
                guard let close = content.dropFirst().firstIndex(of: first) else { return nil }
                let after = content[content.index(after: close)...]
                guard after.hasPrefix(":") else { return nil }
                let rest = after.dropFirst()
                guard rest.isEmpty || rest.first == " " else { return nil }
                return (String(content[content.index(after: content.startIndex)..<close]), Substring(trimmed(rest)))
            }
            var search = content.startIndex
            while let colon = content[search...].firstIndex(of: ":") {
                let after = content.index(after: colon)
                if after == content.endIndex || content[after] == " " {
                    let key = trimmed(content[..<colon])
                    if key.isEmpty { return nil }
                    return (key, Substring(trimmed(content[after...])))
                }
                search = after
            }
            return nil
        }

        func scalar(_ text: Substring) -> JSONValue {
            let value = trimmed(text)
            if value.count >= 2, value.hasPrefix("'"), value.hasSuffix("'") {
                return .string(bounded(String(value.dropFirst().dropLast()).replacingAll("''", with: "'"), limit: limit))
            }
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                return .string(bounded(unescapeDoubleQuoted(value.dropFirst().dropLast()), limit: limit))
            }
            switch value {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            case "null", "Null", "NULL", "~", "": return .null
            default: break
            }
            if let integer = Int64(value) { return .integer(integer) }
            if value.first.map({ $0.isNumber || $0 == "-" || $0 == "." }) == true, let number = Double(value),
                number.isFinite
            {
                return .number(number)
            }
            return .string(bounded(value, limit: limit))
        }

        func unescapeDoubleQuoted(_ text: Substring) -> String {
            var result = ""
            var escaping = false
            for character in text {
                if escaping {
                    switch character {
                    case "n": result.append("\n")
                    case "t": result.append("\t")
                    case "r": result.append("\r")
                    case "0": result.append("\0")
                    default: result.append(character)
                    }
                    escaping = false
                } else if character == "\\" {
                    escaping = true
                } else {
                    result.append(character)
                }
            }
            return result
        }
    }
}

extension String {
    /// Every occurrence of `target` replaced by `replacement`, without Foundation.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}
