import Foundation
import Testing

/// The tagged blocks of `docs/protocol.md`, read from the repository at test time.
struct ProtocolDocument {
    /// A fenced block that follows an `<!-- example: TYPE [VARIANT] -->` line.
    struct Example {
        var type: String
        var label: String
        var line: Int
        var body: String
    }

    /// A fenced block that follows a `<!-- malformed: NAME code=CODE path=PATH -->` line.
    struct Malformed {
        var name: String
        var code: String
        var path: String
        var line: Int
        var body: String
    }

    var text: String
    var examples: [Example] = []
    var malformed: [Malformed] = []
    /// Tags that are not followed by a fenced block, or whose attributes are incomplete.
    var problems: [String] = []

    static let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // CTACoreTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // repository root
        .appendingPathComponent("docs/protocol.md")

    static func load() throws -> ProtocolDocument {
        let text = try String(contentsOf: url, encoding: .utf8)
        return ProtocolDocument(text: text)
    }

    init(text: String) {
        self.text = text
        let lines = text.components(separatedBy: "\n")
        var index = 0
        while index < lines.count {
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            let number = index + 1
            index += 1
            guard line.hasPrefix("<!--"), line.hasSuffix("-->") else { continue }
            let inner = line.dropFirst(4).dropLast(3).trimmingCharacters(in: .whitespaces)
            let isExample = inner.hasPrefix("example:")
            let isMalformed = inner.hasPrefix("malformed:")
            guard isExample || isMalformed else { continue }

            guard index < lines.count, lines[index].hasPrefix("```") else {
                problems.append("line \(number): tag not immediately followed by a fenced block")
                continue
            }
            index += 1
            var body: [String] = []
            while index < lines.count, !lines[index].hasPrefix("```") {
                body.append(lines[index])
                index += 1
            }
            guard index < lines.count else {
                problems.append("line \(number): fenced block never closed")
                break
            }
            index += 1
            let content = body.joined(separator: "\n")

            let words = inner.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if isExample {
                let rest = Array(words.dropFirst())
                guard let type = rest.first else {
                    problems.append("line \(number): example without a type")
                    continue
                }
                examples.append(Example(type: type, label: rest.joined(separator: " "), line: number, body: content))
            } else {
                guard words.count >= 2 else {
                    problems.append("line \(number): malformed example without a name")
                    continue
                }
                var attributes: [String: String] = [:]
                for word in words.dropFirst(2) {
                    let parts = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    if parts.count == 2 { attributes[String(parts[0])] = String(parts[1]) }
                }
                guard let code = attributes["code"], let path = attributes["path"] else {
                    problems.append("line \(number): malformed example without code= and path=")
                    continue
                }
                malformed.append(Malformed(name: words[1], code: code, path: path, line: number, body: content))
            }
        }
    }
}
