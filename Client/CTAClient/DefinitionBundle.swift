public import CTADefinitions
import CTAYAML
import Foundation

/// Definition files read and checked on this side, ready to be sent in one request.
///
/// YAML (`.yaml`, `.yml`) and TOML (`.toml`) files are read into node trees and checked by `CTADefinitions`, exactly
/// as the coordinator checks them, so a mistake is shown as `file:line: key: message` before anything is sent.
/// References to definitions the files do not hold are left to the server, which may have them.
///
/// Every document of every file is then written into one YAML stream (tests, then suites, configurations and
/// scenarios), so the server applies them all or nothing; ``origin(ofLine:)`` maps a line of that stream back to
/// the file and line it came from, for the problems the server reports.
public struct DefinitionBundle: Sendable {
    /// The YAML stream to send.
    public let text: String
    /// How many definitions of each kind it holds.
    public let counts: [String: Int]
    /// For each line of ``text`` (from 1), the file and line it came from.
    private let origins: [Int: Origin]

    /// Where a line of the stream came from.
    public struct Origin: Hashable, Sendable {
        public var file: String
        public var line: Int

        public init(file: String, line: Int) {
            self.file = file
            self.line = line
        }
    }

    /// The file and line that a line of ``text`` came from.
    public func origin(ofLine line: Int) -> Origin? { origins[line] }

    /// The file name endings read as definitions: YAML, and TOML.
    public static let yamlExtensions = ["yaml", "yml"]
    public static let tomlExtensions = ["toml"]

    /// Reads and checks `paths` (files, or directories whose `*.yaml`, `*.yml` and `*.toml` files are read in name
    /// order).
    ///
    /// - Throws: ``DefinitionErrors`` with every problem found, references to unknown definitions excepted.
    public static func load(paths: [String]) throws(DefinitionErrors) -> DefinitionBundle {
        var problems: [DefinitionError] = []
        var sources: [DefinitionDocuments] = []
        for path in paths {
            let files: [String]
            switch expand(path) {
            case .success(let found): files = found
            case .failure(let problem):
                problems.append(problem)
                continue
            }
            for file in files {
                switch read(file) {
                case .success(let documents): sources.append(DefinitionDocuments(path: file, documents: documents))
                case .failure(let problem): problems.append(problem)
                }
            }
        }
        do {
            _ = try DefinitionLoader.load(documents: sources, problems: problems)
        } catch {
            let fatal = error.errors.filter { $0.code != .unknownReference }
            if !fatal.isEmpty { throw DefinitionErrors(fatal) }
        }
        return bundle(sources)
    }

    /// Reads one file into documents: YAML or TOML by its name.
    static func read(_ file: String) -> Result<YAMLDocuments, DefinitionError> {
        let text: String
        switch TextFile.read(file, maximumSize: DefinitionLoader.maximumFileSize) {
        case .success(let read): text = read
        case .failure(let failure):
            let message =
                switch failure {
                case .missing: "no such file"
                case .cannotOpen(let reason): "cannot open: \(reason)"
                case .cannotRead(let reason): "cannot read: \(reason)"
                case .tooLarge(let limit): "larger than \(limit >> 20) MiB"
                case .notUTF8: "not UTF-8 text"
                }
            return .failure(DefinitionError(code: .unreadable, file: file, line: nil, key: "", message: message))
        }
        do throws(YAMLError) {
            let documents =
                isTOML(file)
                ? try TOMLReader.definitionDocuments(text, file: file) : try YAMLReader.documents(text, file: file)
            return .success(documents)
        } catch {
            let code: DefinitionError.Code = error.message.hasPrefix("duplicate key") ? .duplicateKey : .syntax
            return .failure(
                DefinitionError(code: code, file: file, line: error.line, key: "\(error.path)", message: error.message))
        }
    }

    static func isTOML(_ file: String) -> Bool {
        tomlExtensions.contains(URL(fileURLWithPath: file).pathExtension.lowercased())
    }

    /// The file itself, or a directory's definition files (YAML and TOML) in name order.
    static func expand(_ path: String) -> Result<[String], DefinitionError> {
        DefinitionLoader.files(at: path, extensions: yamlExtensions + tomlExtensions)
    }

    // MARK: Writing the stream

    private static let kindOrder = ["test", "suite", "configuration", "scenario"]

    static func bundle(_ sources: [DefinitionDocuments]) -> DefinitionBundle {
        var documents: [(kind: Int, file: String, node: YAMLNode)] = []
        for source in sources {
            for node in source.documents.documents where !node.isNull {
                let kind = node.mapping?.first { $0.name == "kind" }?.value.scalar ?? ""
                documents.append((kindOrder.firstIndex(of: kind) ?? kindOrder.count, source.path, node))
            }
        }
        // A stable sort: files and documents keep their order within a kind.
        let ordered = documents.enumerated().sorted { ($0.element.kind, $0.offset) < ($1.element.kind, $1.offset) }
        var writer = YAMLWriter()
        var counts: [String: Int] = [:]
        for (position, entry) in ordered.enumerated() {
            if position > 0 { writer.line("---", origin: nil) }
            writer.file = entry.element.file
            writer.write(entry.element.node)
            let kind = entry.element.kind < kindOrder.count ? kindOrder[entry.element.kind] : "other"
            counts[kind, default: 0] += 1
        }
        return DefinitionBundle(text: writer.text, counts: counts, origins: writer.origins)
    }
}

/// Writes node trees as block YAML, every scalar double-quoted on one line, remembering where each line came from.
struct YAMLWriter {
    private(set) var text = ""
    private(set) var origins: [Int: DefinitionBundle.Origin] = [:]
    var file = ""
    private var lineCount = 0

    mutating func line(_ content: String, origin: Int?) {
        text += content + "\n"
        lineCount += 1
        if let origin { origins[lineCount] = DefinitionBundle.Origin(file: file, line: origin) }
    }

    mutating func write(_ node: YAMLNode) {
        if Self.isBlock(node) {
            write(node, indent: "")
        } else {
            line(Self.inline(node), origin: node.line)
        }
    }

    private mutating func write(_ node: YAMLNode, indent: String) {
        switch node.content {
        case .mapping(let entries):
            for entry in entries {
                let key = Self.quoted(entry.key.scalar ?? "")
                if Self.isBlock(entry.value) {
                    line("\(indent)\(key):", origin: entry.key.line)
                    write(entry.value, indent: indent + "  ")
                } else {
                    line("\(indent)\(key): \(Self.inline(entry.value))", origin: entry.key.line)
                }
            }
        case .sequence(let items):
            for item in items {
                if Self.isBlock(item) {
                    line("\(indent)-", origin: item.line)
                    write(item, indent: indent + "  ")
                } else {
                    line("\(indent)- \(Self.inline(item))", origin: item.line)
                }
            }
        case .scalar:
            line(indent + Self.inline(node), origin: node.line)
        }
    }

    /// A non-empty mapping or list: written over several lines.
    static func isBlock(_ node: YAMLNode) -> Bool {
        switch node.content {
        case .mapping(let entries): !entries.isEmpty
        case .sequence(let items): !items.isEmpty
        case .scalar: false
        }
    }

    static func inline(_ node: YAMLNode) -> String {
        switch node.content {
        case .mapping: "{}"
        case .sequence: "[]"
        case .scalar(let scalar): scalar.isNull ? "~" : quoted(scalar.text)
        }
    }

    /// A YAML double-quoted scalar on one line.
    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                    || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF
                {
                    result += String(format: "\\u%04X", scalar.value)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
