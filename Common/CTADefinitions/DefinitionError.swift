/// A problem in a definition file: where (file, line, key) and what.
///
/// ``description`` is the line to print for the author, e.g.
/// `defs/login.yaml:12: test login-ui: stages[1].run: missing required key`.
public struct DefinitionError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The class of a problem. New codes may be added; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unreadable
            case syntax
            case duplicateKey
            case unknownKey
            case missingKey
            case wrongType
            case invalidValue
            case duplicateID
            case unknownReference
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// The file or directory could not be read (missing, not UTF-8, too large, no definition files).
        public static let unreadable = Code(.unreadable)
        /// The text is not valid YAML.
        public static let syntax = Code(.syntax)
        /// A key is given twice in the same mapping.
        public static let duplicateKey = Code(.duplicateKey)
        /// A key the definition does not have.
        public static let unknownKey = Code(.unknownKey)
        /// A required key is absent or empty.
        public static let missingKey = Code(.missingKey)
        /// A value of the wrong shape: a list where text belongs, text where a mapping belongs, ….
        public static let wrongType = Code(.wrongType)
        /// A value of the right shape that breaks a rule: a bad identifier, a duration without unit, ….
        public static let invalidValue = Code(.invalidValue)
        /// Two definitions of the same kind share an identifier.
        public static let duplicateID = Code(.duplicateID)
        /// A reference to a definition that does not exist, or that cannot serve (a group scenario whose
        /// configuration names no group).
        public static let unknownReference = Code(.unknownReference)

        public var description: String { base.rawValue }
    }

    /// What kind of problem it is.
    public var code: Code
    /// The file, as the loader was given it (a directory's files are the directory joined with the file name).
    public var file: String
    /// The 1-based line; nil when the problem is the whole file.
    public var line: Int?
    /// The key, within its document, prefixed by the document's kind and id when known:
    /// `test login-ui: stages[1].run`; empty for problems with the file or the document as a whole.
    public var key: String
    /// What is wrong, in one sentence without the place.
    public var message: String

    /// Creates an error.
    public init(code: Code, file: String, line: Int?, key: String, message: String) {
        self.code = code
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        let place = line.map { "\(file):\($0): " } ?? "\(file): "
        return key.isEmpty ? place + message : place + key + ": " + message
    }
}

/// Every problem found in a set of definition files, sorted by file and line.
public struct DefinitionErrors: Error, Hashable, Sendable, CustomStringConvertible {
    /// The problems; never empty.
    public var errors: [DefinitionError]

    /// Collects problems, sorting them by file and line (problems on the same line keep their order).
    public init(_ errors: [DefinitionError]) {
        self.errors = errors.enumerated()
            .sorted { left, right in
                (left.element.file, left.element.line ?? 0, left.offset)
                    < (right.element.file, right.element.line ?? 0, right.offset)
            }
            .map(\.element)
    }

    /// One problem per line.
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
