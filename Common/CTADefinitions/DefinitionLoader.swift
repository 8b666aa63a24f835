import CTACore
public import CTAYAML
import Foundation

/// Reads tests, suites, configurations and scenarios from YAML definition files into a ``DefinitionSet``.
///
/// A file holds one or more documents separated by `---`; each has a `kind` and the keys of that kind. Keys not
/// marked required are optional; a key with no value (`~`, nothing) counts as absent. `name` defaults to the `id`.
///
/// **test** — what an agent runs.
///
/// | key | type | meaning |
/// |---|---|---|
/// | `id` | identifier, required | unique among tests; 1 to 256 bytes, no control characters |
/// | `name`, `description` | text | for people |
/// | `stages` | list of stages, required, at least one | run in order |
/// | `inputs` | list of `git: {url, ref, path, into}` | repositories cloned before the first stage |
/// | `env` | mapping | environment of every stage |
/// | `timeout`, `expectedDuration` | duration | limit of the whole test; its usual length (longest run first) |
///
/// A stage: `name` (required, unique in the test), `run` (required, run with `/bin/sh -c`), `stop` (run before a
/// cancelled or timed-out stage is signalled), `cwd` (relative path), `env`, `timeout`, `mandatory` (boolean,
/// default `true`: a failure ends the test), `report: {format: junit | tap, path}` (a JUnit report needs `path`; a
/// TAP report without one is read from stdout).
///
/// **suite**: `id` (required), `name`, `description`, `tests` (required: test ids, in the order results are
/// reported, each once).
///
/// **configuration**: `id` (required), `name`, `description`, `machines` (machine names), `groups` (group names),
/// `tags` (tag → value a machine must have, `"*"` for any value), `env`, `provision: {create, destroy, vmTimeout,
/// commandTimeout}` (shell commands that create and destroy a VM per execution, the VM timeout, and how long each
/// command may run, 5m by default). A machine matches when it satisfies every criterion given; a configuration with
/// none matches every machine. A configuration with `provision` runs each execution on the VM made for it alone.
///
/// **scenario**: `id` (required), `name`, `description`, `suite` and `configuration` (required ids), `runMode`
/// (required: `mono`, `stress`, `group` or `parallel`), `timeouts: {pending, running}` (durations, 1h each by
/// default), `env` (wins over the configuration's), `schedule: {cron, at}` (five cron fields or a macro such as
/// `@daily`; an RFC 3339 time), `webhooks: [{url, on, secret}]` (an http(s) URL; `on` lists end states —
/// `finished`, `cancelled`, `timeout` — and is every one when absent), `chain: [{scenario, on}]` (started when this
/// one ends in one of `on`, `finished` when absent; never the scenario itself).
///
/// Rules:
/// - Durations carry a unit: `250ms`, `90s`, `10m`, `2h`, or units from largest to smallest (`1h30m`); a bare
///   number is refused. Every duration is greater than zero.
/// - Machine and group names are 1 to 128 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or digit.
///   `cwd`, `into`, `path` and report paths are relative and have no `..` component. Environment names are
///   letters, digits and `_`, not starting with a digit. Booleans are `true`/`false` (also `yes`/`no`, `on`/`off`).
/// - Identifiers are unique per kind across every file; a suite's tests, a scenario's suite and configuration, and
///   chained scenarios must exist; a `group` scenario's configuration must name at least one group (`parallel`,
///   `stress` and `mono` may select by machines and tags alone); a configuration with `provision` is used by `mono`
///   scenarios only.
///
/// Every problem is reported, not only the first: unknown keys (with the closest known key), missing keys, values
/// of the wrong shape or breaking a rule, repeated keys, duplicate identifiers (naming both places) and references
/// to nothing. When a file cannot be read or is not valid YAML, references are not checked, since the definitions
/// they point to may be in that file.
public enum DefinitionLoader {
    /// The largest definition file read; anything larger is surely not one.
    public static let maximumFileSize = 4 << 20

    /// The file name endings read from a directory.
    public static let fileExtensions = ["yaml", "yml"]

    /// Loads one file, or every `*.yaml` and `*.yml` file directly inside a directory, in name order. Hidden files
    /// and subdirectories are skipped: pass several paths to combine directories.
    public static func load(path: String) throws(DefinitionErrors) -> DefinitionSet {
        try load(paths: [path])
    }

    /// Loads files and directories (as ``load(path:)`` does for each) into one set.
    public static func load(paths: [String]) throws(DefinitionErrors) -> DefinitionSet {
        var sources: [DefinitionSource] = []
        var problems: [DefinitionError] = []
        for path in paths {
            switch files(at: path) {
            case .failure(let problem):
                problems.append(problem)
            case .success(let files):
                for file in files {
                    switch TextFile.read(file, maximumSize: maximumFileSize) {
                    case .success(let text): sources.append(DefinitionSource(path: file, text: text))
                    case .failure(let failure): problems.append(unreadable(file, failure))
                    }
                }
            }
        }
        return try load(sources: sources, problems: problems)
    }

    /// Loads the documents of one text that stands for the file at `path`.
    public static func load(text: String, path: String) throws(DefinitionErrors) -> DefinitionSet {
        try load(sources: [DefinitionSource(path: path, text: text)])
    }

    /// Loads texts that stand for files, in the given order.
    public static func load(sources: [DefinitionSource]) throws(DefinitionErrors) -> DefinitionSet {
        try load(sources: sources, problems: [])
    }

    /// Loads documents already turned into nodes (from another file format, such as TOML), in the given order;
    /// `problems` are those found while reading them, reported with the rest. References are checked only when
    /// there are none.
    public static func load(
        documents: [DefinitionDocuments],
        problems: [DefinitionError] = []
    ) throws(DefinitionErrors) -> DefinitionSet {
        var errors = problems
        var read: [ReadDocument] = []
        for source in documents {
            var reader = DocumentReader(file: source.path)
            read += reader.read(source.documents)
            errors += reader.errors
        }
        let set = assemble(read, errors: &errors, checkReferences: problems.isEmpty, existing: [:])
        if !errors.isEmpty { throw DefinitionErrors(errors) }
        return set
    }

    /// Loads texts whose references may also name definitions stored earlier: `existing` holds, per kind (`test`,
    /// `suite`, `configuration`, `scenario`), the ids that exist outside these texts.
    public static func load(
        sources: [DefinitionSource], existing: [String: Set<String>]
    ) throws(DefinitionErrors) -> DefinitionSet {
        try load(sources: sources, problems: [], existing: existing)
    }

    // MARK: Files

    /// The files to read for `path`: the file itself, or a directory's files with one of `extensions` (not hidden,
    /// not directories) in name order; a directory with none is an error.
    public static func files(at path: String, extensions: [String] = fileExtensions) -> Result<[String], DefinitionError> {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return .failure(
                DefinitionError(code: .unreadable, file: path, line: nil, key: "", message: "no such file or directory")
            )
        }
        guard isDirectory.boolValue else { return .success([path]) }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path)
        } catch {
            return .failure(
                DefinitionError(code: .unreadable, file: path, line: nil, key: "", message: "cannot list the directory")
            )
        }
        let base = path.hasSuffix("/") ? path : path + "/"
        let files = names.sorted()
            .filter { name in
                guard !name.hasPrefix("."), let dot = name.lastIndex(of: ".") else { return false }
                return extensions.contains(name[name.index(after: dot)...].lowercased())
            }
            .map { base + $0 }
            .filter { file in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) && !isDirectory.boolValue
            }
        if files.isEmpty {
            return .failure(
                DefinitionError(
                    code: .unreadable, file: path, line: nil, key: "",
                    message: "no definition files (\(extensions.map { "*.\($0)" }.joined(separator: ", "))) in this directory"))
        }
        return .success(files)
    }

    private static func unreadable(_ file: String, _ failure: TextFile.Failure) -> DefinitionError {
        let message =
            switch failure {
            case .missing: "no such file"
            case .cannotOpen(let reason): "cannot open: \(reason)"
            case .cannotRead(let reason): "cannot read: \(reason)"
            case .tooLarge(let limit): "larger than \(limit >> 20) MiB"
            case .notUTF8: "not UTF-8 text"
            }
        return DefinitionError(code: .unreadable, file: file, line: nil, key: "", message: message)
    }

    // MARK: Checks across files

    private static func load(
        sources: [DefinitionSource],
        problems: [DefinitionError],
        existing: [String: Set<String>] = [:]
    ) throws(DefinitionErrors) -> DefinitionSet {
        var errors = problems
        var documents: [ReadDocument] = []
        var complete = problems.isEmpty
        for source in sources {
            var reader = DocumentReader(file: source.path)
            documents += reader.read(source.text)
            errors += reader.errors
            complete = complete && reader.readable
        }
        let set = assemble(documents, errors: &errors, checkReferences: complete, existing: existing)
        if !errors.isEmpty { throw DefinitionErrors(errors) }
        return set
    }

    /// Builds the set from the valid definitions and reports duplicate identifiers and broken references.
    private static func assemble(
        _ documents: [ReadDocument],
        errors: inout [DefinitionError],
        checkReferences: Bool,
        existing: [String: Set<String>]
    ) -> DefinitionSet {
        var places: [DefinitionKind: [String: ReadDocument]] = [:]
        var set = DefinitionSet()
        for document in documents {
            guard let id = document.id else { continue }
            if let first = places[document.kind]?[id] {
                errors.append(
                    DefinitionError(
                        code: .duplicateID, file: document.file, line: document.line, key: "\(document.subject): id",
                        message:
                            "\(document.kind) \(YAMLNode.quoted(id)) is also defined at \(first.file):\(first.line)"
                    ))
                continue
            }
            places[document.kind, default: [:]][id] = document
            switch document.definition {
            case .test(let test): set.tests[test.id] = test
            case .suite(let suite): set.suites[suite.id] = suite
            case .configuration(let configuration): set.configurations[configuration.id] = configuration
            case .scenario(let scenario): set.scenarios[scenario.id] = scenario
            case nil: break
            }
            if document.definition != nil, let owners = document.owners {
                set.owners["\(document.kind.rawValue)/\(id)"] = owners
            }
        }
        guard checkReferences else { return set }
        for document in documents {
            for reference in document.references
            where places[reference.kind]?[reference.id] == nil
                && existing[reference.kind.rawValue]?.contains(reference.id) != true
            {
                let known = places[reference.kind].map { Array($0.keys).sorted() } ?? []
                let hint = KeySuggestion.closest(to: reference.id, among: known).map { "; did you mean \($0)?" } ?? ""
                errors.append(
                    DefinitionError(
                        code: .unknownReference, file: document.file, line: reference.line,
                        key: "\(document.subject): \(reference.path)",
                        message: "no \(reference.kind) \(YAMLNode.quoted(reference.id)) is defined\(hint)"))
            }
            if let use = document.runModeUse,
                let configuration = set.configurations[ConfigurationID(unchecked: use.configuration)],
                let place = places[.configuration]?[use.configuration]
            {
                let named = "configuration \(YAMLNode.quoted(use.configuration)) (\(place.file):\(place.line))"
                var problem: String?
                if use.mode == .group, configuration.selector.groups.isEmpty {
                    problem = "run mode group needs a configuration that names groups; \(named) names none"
                } else if use.mode != .mono, configuration.provision != nil {
                    problem = "run mode \(use.mode.rawValue) cannot use \(named): it provisions one VM per execution, so it runs mono only"
                }
                if let problem {
                    errors.append(
                        DefinitionError(
                            code: .unknownReference, file: document.file, line: use.line,
                            key: "\(document.subject): \(use.path)", message: problem))
                }
            }
        }
        return set
    }
}

/// Definition text that stands for a file: the path names it in errors.
public struct DefinitionSource: Hashable, Sendable {
    /// The file's path, as errors show it.
    public var path: String
    /// The file's content.
    public var text: String

    /// Creates a source.
    public init(path: String, text: String) {
        self.path = path
        self.text = text
    }
}

/// The documents of one file, already composed into nodes: the path names it in errors.
public struct DefinitionDocuments: Hashable, Sendable {
    /// The file's path, as errors show it.
    public var path: String
    /// Its documents, in order.
    public var documents: YAMLDocuments

    /// Creates a source.
    public init(path: String, documents: YAMLDocuments) {
        self.path = path
        self.documents = documents
    }
}
