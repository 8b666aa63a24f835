import CTACore
import CTAYAML

// Reading the documents of one definition file: the shapes and values every kind shares. What each kind holds is
// in DocumentReader+Kinds.swift; the checks across files are in DefinitionLoader.swift.

/// The kinds of definition a document can hold.
enum DefinitionKind: String, CaseIterable, Sendable {
    case test, suite, configuration, scenario
}

/// One document of a file: its definition when it is valid, and what the loader checks once every file is read.
struct ReadDocument {
    enum Definition {
        case test(TestDefinition)
        case suite(SuiteDefinition)
        case configuration(ConfigurationDefinition)
        case scenario(ScenarioDefinition)
    }

    /// A reference to another definition.
    struct Reference {
        var kind: DefinitionKind
        var id: String
        var line: Int
        var path: YAMLPath
    }

    /// A scenario's run mode and configuration, checked together: group mode needs a configuration that names
    /// groups; a configuration that provisions a VM runs mono only.
    struct RunModeUse {
        var mode: RunMode
        var configuration: String
        var line: Int
        var path: YAMLPath
    }

    var kind: DefinitionKind
    var file: String
    /// The document's identifier when it is valid.
    var id: String?
    /// The line of the identifier, or of the document when it has none.
    var line: Int
    /// "test login-ui", prefixed to the keys of its errors.
    var subject: String
    /// Nil when the document has errors of its own.
    var definition: Definition?
    var references: [Reference]
    var runModeUse: RunModeUse?
    /// The user groups named by `owners`, when the document names any (an empty list included).
    var owners: [String]?
}

/// A mapping's values by key, once its keys were checked against the keys it may have.
struct Fields {
    /// The line the mapping starts on: where a missing key is reported.
    let line: Int
    let path: YAMLPath
    private let entries: [String: YAMLNode.Entry]

    init(line: Int, path: YAMLPath, entries: [String: YAMLNode.Entry]) {
        self.line = line
        self.path = path
        self.entries = entries
    }

    /// The key and value as written, also when the value is empty.
    func entry(_ key: String) -> YAMLNode.Entry? { entries[key] }

    /// The value of `key`; nil when the key is absent or has no value (`~`, nothing).
    subscript(_ key: String) -> YAMLNode? {
        guard let value = entries[key]?.value, !value.isNull else { return nil }
        return value
    }
}

/// Reads the documents of one file into definitions, collecting every problem instead of stopping at the first.
struct DocumentReader {
    let file: String
    private(set) var errors: [DefinitionError] = []
    /// Whether the file could be read as YAML at all; when not, its definitions are unknown.
    private(set) var readable = true

    /// The document being read: its subject, identifier and references.
    private var subject = ""
    var documentID: (text: String, line: Int)?
    var references: [ReadDocument.Reference] = []
    var runModeUse: ReadDocument.RunModeUse?

    init(file: String) { self.file = file }

    /// Reads every document of `text`.
    mutating func read(_ text: String) -> [ReadDocument] {
        let stream: YAMLDocuments
        do throws(YAMLError) {
            stream = try YAMLReader.documents(text, file: file)
        } catch {
            readable = false
            let code: DefinitionError.Code = error.path.isEmpty ? .syntax : .duplicateKey
            errors.append(
                DefinitionError(code: code, file: file, line: error.line, key: "\(error.path)", message: error.message))
            return []
        }
        return read(stream)
    }

    /// Reads every document of a stream composed elsewhere (a YAML stream, or another format turned into nodes).
    mutating func read(_ stream: YAMLDocuments) -> [ReadDocument] {
        var documents: [ReadDocument] = []
        for (index, root) in stream.documents.enumerated() {
            subject = Self.subject(of: root)
            for duplicate in stream.duplicates where duplicate.document == index {
                fail(.duplicateKey, duplicate.line, duplicate.path, duplicate.message)
            }
            if let document = readDocument(root) { documents.append(document) }
        }
        return documents
    }

    private mutating func readDocument(_ root: YAMLNode) -> ReadDocument? {
        // An empty document: a file of comments, or a `---` at the end.
        if root.isNull { return nil }
        let kinds = DefinitionKind.allCases.map(\.rawValue)
        let kindList = "test, suite, configuration or scenario"
        guard let entries = root.mapping else {
            fail(
                .wrongType, root.line, .root,
                "expected a definition (a mapping with kind: \(kindList)), got \(root.shape)")
            return nil
        }
        let kindPath = YAMLPath.root.appending("kind")
        guard let kindEntry = entries.first(where: { $0.name == "kind" }), !kindEntry.value.isNull else {
            fail(.missingKey, root.line, kindPath, "missing required key; kind is \(kindList)")
            return nil
        }
        guard let kindText = kindEntry.value.scalar else {
            fail(.wrongType, kindEntry.value.line, kindPath, "expected \(kindList), got \(kindEntry.value.shape)")
            return nil
        }
        guard let kind = DefinitionKind(rawValue: kindText) else {
            let hint = KeySuggestion.closest(to: kindText, among: kinds).map { "; did you mean \($0)?" } ?? ""
            fail(
                .invalidValue, kindEntry.value.line, kindPath,
                "expected \(kindList), got \(YAMLNode.quoted(kindText))\(hint)")
            return nil
        }
        documentID = nil
        references = []
        runModeUse = nil
        let before = errors.count
        let definition: ReadDocument.Definition?
        switch kind {
        case .test: definition = readTest(root).map(ReadDocument.Definition.test)
        case .suite: definition = readSuite(root).map(ReadDocument.Definition.suite)
        case .configuration: definition = readConfiguration(root).map(ReadDocument.Definition.configuration)
        case .scenario: definition = readScenario(root).map(ReadDocument.Definition.scenario)
        }
        // Every kind may name the user groups that own it (the API's access rules); the key was checked with the
        // kind's other keys.
        var owners: [String]?
        if let entry = entries.first(where: { $0.name == "owners" }), !entry.value.isNull {
            owners = names(entry.value, YAMLPath.root.appending("owners"), GroupName.self).map(\.rawValue)
        }
        return ReadDocument(
            kind: kind,
            file: file,
            id: documentID?.text,
            line: documentID?.line ?? root.line,
            subject: subject,
            definition: errors.count == before ? definition : nil,
            references: references,
            runModeUse: runModeUse,
            owners: owners
        )
    }

    /// "test login-ui" from the document's `kind` and `id`, as far as they are known.
    private static func subject(of root: YAMLNode) -> String {
        guard let entries = root.mapping,
            let kind = entries.first(where: { $0.name == "kind" })?.value.scalar,
            DefinitionKind(rawValue: kind) != nil
        else { return "" }
        // Any kind's identifier rule: the test id's is the same as the others'.
        guard let id = entries.first(where: { $0.name == "id" })?.value.scalar, TestID(id) != nil else { return kind }
        return "\(kind) \(id)"
    }

    // MARK: Problems

    mutating func fail(_ code: DefinitionError.Code, _ line: Int, _ path: YAMLPath, _ message: String) {
        let key: String
        switch (subject.isEmpty, path.isEmpty) {
        case (true, _): key = "\(path)"
        case (false, true): key = subject
        case (false, false): key = "\(subject): \(path)"
        }
        errors.append(DefinitionError(code: code, file: file, line: line, key: key, message: message))
    }

    // MARK: Shapes

    /// The keys of a mapping; each key it may not have is reported, with the closest one it may have.
    mutating func fields(_ node: YAMLNode, _ path: YAMLPath, known: [String], what: String) -> Fields? {
        guard let entries = node.mapping else {
            fail(
                .wrongType, node.line, path,
                "expected \(what) (a mapping of \(known.joined(separator: ", "))), got \(node.shape)")
            return nil
        }
        var byName: [String: YAMLNode.Entry] = [:]
        for entry in entries {
            guard let name = entry.name else {
                fail(.wrongType, entry.key.line, path, "keys must be plain names, got \(entry.key.shape) as a key")
                continue
            }
            if known.contains(name) {
                if byName[name] == nil { byName[name] = entry }
            } else if let match = KeySuggestion.closest(to: name, among: known) {
                fail(.unknownKey, entry.key.line, path.appending(name), "unknown key; did you mean \(match)?")
            } else {
                fail(
                    .unknownKey, entry.key.line, path.appending(name),
                    "unknown key; the keys of \(what) are \(known.joined(separator: ", "))")
            }
        }
        return Fields(line: node.line, path: path, entries: byName)
    }

    /// The value of a required key; a missing or empty one is reported.
    mutating func required(_ fields: Fields, _ key: String) -> YAMLNode? {
        guard let entry = fields.entry(key) else {
            fail(.missingKey, fields.line, fields.path.appending(key), "missing required key")
            return nil
        }
        if entry.value.isNull {
            fail(.missingKey, entry.key.line, fields.path.appending(key), "required key has no value")
            return nil
        }
        return entry.value
    }

    /// The items of a list.
    mutating func list(_ node: YAMLNode, _ path: YAMLPath, of what: String) -> [YAMLNode]? {
        guard let items = node.sequence else {
            fail(
                .wrongType, node.line, path,
                "expected a list of \(what), got \(node.shape); write [a, b] or one '- a' per line")
            return nil
        }
        return items
    }

    /// The text of a scalar, of any content.
    mutating func scalar(_ node: YAMLNode, _ path: YAMLPath, expected: String) -> String? {
        guard let text = node.scalar, !node.isNull else {
            fail(.wrongType, node.line, path, "expected \(expected), got \(node.isNull ? "nothing" : node.shape)")
            return nil
        }
        return text
    }

    // MARK: Values

    /// Text by the contract's rule: not empty, no control characters, at most `limit` bytes.
    mutating func text(_ node: YAMLNode, _ path: YAMLPath, limit: Int? = nil) -> String? {
        guard let text = scalar(node, path, expected: "text") else { return nil }
        if let problem = ValueRules.textProblem(text, limit: limit) {
            fail(.invalidValue, node.line, path, problem)
            return nil
        }
        return text
    }

    /// Text that may span lines (a command, a description); only emptiness is refused.
    mutating func nonEmpty(_ node: YAMLNode, _ path: YAMLPath) -> String? {
        guard let text = scalar(node, path, expected: "text") else { return nil }
        if text.isEmpty {
            fail(.invalidValue, node.line, path, "must not be empty")
            return nil
        }
        return text
    }

    mutating func identifier<ID: DefinitionIdentifier>(_ node: YAMLNode, _ path: YAMLPath, _ type: ID.Type) -> ID? {
        guard let text = scalar(node, path, expected: "a \(ID.kind)") else { return nil }
        do throws(WireError) {
            return try ID(validating: text)
        } catch {
            fail(.invalidValue, node.line, path, "\(error.reason); got \(YAMLNode.quoted(text))")
            return nil
        }
    }

    mutating func name<Name: RestrictedName>(_ node: YAMLNode, _ path: YAMLPath, _ type: Name.Type) -> Name? {
        guard let text = scalar(node, path, expected: "a \(Name.kind)") else { return nil }
        do throws(WireError) {
            return try Name(validating: text)
        } catch {
            fail(.invalidValue, node.line, path, "\(error.reason); got \(YAMLNode.quoted(text))")
            return nil
        }
    }

    /// The identifier of the document, from its required `id`; remembered for the loader's checks.
    mutating func documentID<ID: DefinitionIdentifier>(_ fields: Fields, _ type: ID.Type) -> ID? {
        guard let node = required(fields, "id"), let id = identifier(node, fields.path.appending("id"), type) else {
            return nil
        }
        documentID = (id.rawValue, node.line)
        return id
    }

    /// A relative path that stays inside its base directory.
    mutating func relativePath(_ node: YAMLNode, _ path: YAMLPath) -> String? {
        guard let text = scalar(node, path, expected: "a relative path") else { return nil }
        if let problem = ValueRules.relativePathProblem(text) {
            fail(.invalidValue, node.line, path, "\(problem); got \(YAMLNode.quoted(text))")
            return nil
        }
        return text
    }

    /// A duration with a unit, greater than zero: `250ms`, `90s`, `10m`, `2h`, `1h30m`.
    mutating func duration(_ node: YAMLNode, _ path: YAMLPath) -> Milliseconds? {
        let forms = "like 250ms, 90s, 10m, 2h or 1h30m"
        guard let text = scalar(node, path, expected: "a duration \(forms)") else { return nil }
        if !text.isEmpty, text.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) {
            fail(
                .invalidValue, node.line, path,
                "\(YAMLNode.quoted(text)) has no unit; add one: \(text)s, \(text)m, \(text)h or \(text)ms")
            return nil
        }
        guard let duration = DurationText.parse(text) else {
            fail(.invalidValue, node.line, path, "expected a duration \(forms), got \(YAMLNode.quoted(text))")
            return nil
        }
        let milliseconds = Milliseconds(duration)
        if milliseconds.value == 0 {
            fail(.invalidValue, node.line, path, "must be greater than 0")
            return nil
        }
        return milliseconds
    }

    mutating func bool(_ node: YAMLNode, _ path: YAMLPath) -> Bool? {
        guard let text = scalar(node, path, expected: "true or false") else { return nil }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            fail(.invalidValue, node.line, path, "expected true or false, got \(YAMLNode.quoted(text))")
            return nil
        }
    }

    /// One of an enumeration's values, with the closest one suggested for a slip.
    mutating func choice<Value: RawRepresentable>(
        _ node: YAMLNode,
        _ path: YAMLPath,
        among allowed: [Value]
    ) -> Value? where Value.RawValue == String {
        let names = allowed.map(\.rawValue)
        let list = names.count < 2 ? names.joined() : names.dropLast().joined(separator: ", ") + " or " + names.last!
        guard let text = scalar(node, path, expected: list) else { return nil }
        if let value = Value(rawValue: text), names.contains(text) { return value }
        let hint = KeySuggestion.closest(to: text, among: names).map { "; did you mean \($0)?" } ?? ""
        fail(.invalidValue, node.line, path, "expected \(list), got \(YAMLNode.quoted(text))\(hint)")
        return nil
    }

    /// Environment variables: a mapping of names a POSIX shell accepts to single values (empty for no value).
    mutating func environment(_ node: YAMLNode, _ path: YAMLPath) -> [String: String] {
        guard let entries = node.mapping else {
            fail(.wrongType, node.line, path, "expected a mapping of variable names to values, got \(node.shape)")
            return [:]
        }
        var env: [String: String] = [:]
        for entry in entries {
            guard let name = entry.name else {
                fail(.wrongType, entry.key.line, path, "expected variable names, got \(entry.key.shape) as a key")
                continue
            }
            if let problem = ValueRules.environmentNameProblem(name) {
                fail(
                    .invalidValue, entry.key.line, path.appending(name),
                    "\(YAMLNode.quoted(name)) \(problem): names are ASCII letters, digits and '_', not starting with a digit"
                )
                continue
            }
            guard let value = entry.value.scalar else {
                fail(
                    .wrongType, entry.value.line, path.appending(name),
                    "expected a single value, got \(entry.value.shape)")
                continue
            }
            env[name] = entry.value.isNull ? "" : value
        }
        return env
    }

    /// Names of machines or groups; a name given twice counts once.
    mutating func names<Name: RestrictedName>(_ node: YAMLNode, _ path: YAMLPath, _ type: Name.Type) -> [Name] {
        guard let items = list(node, path, of: "\(Name.kind)s") else { return [] }
        var names: [Name] = []
        for (index, item) in items.enumerated() {
            if let name = name(item, path.appending(index: index), type), !names.contains(name) { names.append(name) }
        }
        return names
    }
}
