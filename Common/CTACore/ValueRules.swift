// The contract's rules for single values, public so that input meant to become a message (definition files, API
// requests) is checked by the same rules the wire applies, and each problem can be reported where it was written.

extension DefinitionIdentifier {
    /// Validates an identifier, explaining the problem.
    public init(validating rawValue: String) throws(WireError) {
        if let problem = identifierProblem(rawValue) {
            throw WireError(code: .invalidValue, path: "", reason: "\(Self.kind) \(problem)")
        }
        self.init(unchecked: rawValue)
    }
}

/// Checks single values by the rules of `docs/protocol.md`; each function returns the problem in words ("must not
/// be empty"), or nil when the value is valid.
public enum ValueRules {
    /// Why `value` is not non-empty text of at most `limit` UTF-8 bytes (1024 when nil, the contract's default
    /// for names and reasons) without control characters.
    public static func textProblem(_ value: String, limit: Int? = nil) -> String? {
        problem { () throws(WireError) in
            if let limit { try checkText(value, at: .root, limit: limit) } else { try checkText(value, at: .root) }
        }
    }

    /// Why `value` is not a relative path that stays inside its base directory (no leading `/`, no `..`).
    public static func relativePathProblem(_ value: String) -> String? {
        problem { () throws(WireError) in try checkRelativePath(value, at: .root) }
    }

    /// Why `name` is not an environment variable name a POSIX shell accepts.
    public static func environmentNameProblem(_ name: String) -> String? {
        problem { () throws(WireError) in try checkEnvironment([name: ""], at: .root) }
    }

    private static func problem(_ check: () throws(WireError) -> Void) -> String? {
        do throws(WireError) {
            try check()
            return nil
        } catch {
            return error.reason
        }
    }
}

extension Stage {
    /// The longest stage name, in UTF-8 bytes.
    public static let maximumNameBytes = 256
}

extension TestDefinition {
    /// The longest test name, in UTF-8 bytes.
    public static let maximumNameBytes = 1024
}

extension GitInput {
    /// The longest repository URL, in UTF-8 bytes.
    public static let maximumURLBytes = 2048
    /// The longest ref, in UTF-8 bytes.
    public static let maximumRefBytes = 256
}
