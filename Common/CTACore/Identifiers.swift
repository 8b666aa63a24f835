public import Foundation

// Small typed wrappers for the identifiers that travel on the wire, so a machine name cannot be passed where a group
// name is expected. UUIDs are written in lower case and read in either case.

/// The identifier of one event: a UUID, and the idempotency key every store write is keyed by.
public struct EventID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The UUID.
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
    /// Parses a UUID string.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }
    public var description: String { uuid.uuidString.lowercased() }
    public init(from decoder: any Decoder) throws { uuid = try decoder.decodeUUID() }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The identifier of one execution (one run of a scenario).
public struct ExecutionID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The UUID.
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
    /// Parses a UUID string.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }
    public var description: String { uuid.uuidString.lowercased() }
    public init(from decoder: any Decoder) throws { uuid = try decoder.decodeUUID() }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The identifier of an uploaded attachment; chosen by the uploader so that a retried upload is idempotent.
public struct AttachmentID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The UUID.
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
    /// Parses a UUID string.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }
    public var description: String { uuid.uuidString.lowercased() }
    public init(from decoder: any Decoder) throws { uuid = try decoder.decodeUUID() }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The identity of an agent's `seq` counter: created with the agent's spool, replaced only when the spool is lost.
///
/// `seq` values are comparable only within one epoch; a new epoch starts again at 1.
public struct SequenceEpoch: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The UUID.
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
    /// Parses a UUID string.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }
    public var description: String { uuid.uuidString.lowercased() }
    public init(from decoder: any Decoder) throws { uuid = try decoder.decodeUUID() }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Checks a name used inside queue names and routing keys: 1–128 ASCII letters, digits, `.`, `_`, `-`, starting
/// with a letter or digit. Returns the problem, or nil when the name is valid.
func nameProblem(_ value: String) -> String? {
    if value.isEmpty { return "must not be empty" }
    if value.utf8.count > 128 { return "must be at most 128 characters" }
    let scalars = value.unicodeScalars
    func isAlphanumeric(_ s: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(s) || ("A"..."Z").contains(s) || ("0"..."9").contains(s)
    }
    if !isAlphanumeric(scalars.first!) { return "must start with an ASCII letter or digit" }
    if !scalars.allSatisfy({ isAlphanumeric($0) || $0 == "." || $0 == "_" || $0 == "-" }) {
        return "may contain only ASCII letters, digits, '.', '_' and '-'"
    }
    return nil
}

/// The name of a test machine, as its agent registers it. It appears in queue names, so its alphabet is restricted
/// (see `docs/protocol.md`, "Names").
public struct MachineName: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The name.
    public let rawValue: String
    /// Validates a machine name; nil when it breaks the naming rule.
    public init?(_ rawValue: String) {
        guard nameProblem(rawValue) == nil else { return nil }
        self.rawValue = rawValue
    }
    /// Validates a machine name, explaining the problem.
    public init(validating rawValue: String) throws(WireError) {
        if let problem = nameProblem(rawValue) {
            throw WireError(code: .invalidValue, path: "", reason: "machine name \(problem)")
        }
        self.rawValue = rawValue
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = nameProblem(raw) { throw WireError.invalid(decoder.wirePath, "machine name \(problem)") }
        rawValue = raw
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The name of a pool of machines; each group has its own queue.
public struct GroupName: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The name.
    public let rawValue: String
    /// Validates a group name; nil when it breaks the naming rule.
    public init?(_ rawValue: String) {
        guard nameProblem(rawValue) == nil else { return nil }
        self.rawValue = rawValue
    }
    /// Validates a group name, explaining the problem.
    public init(validating rawValue: String) throws(WireError) {
        if let problem = nameProblem(rawValue) {
            throw WireError(code: .invalidValue, path: "", reason: "group name \(problem)")
        }
        self.rawValue = rawValue
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = nameProblem(raw) { throw WireError.invalid(decoder.wirePath, "group name \(problem)") }
        rawValue = raw
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// Checks a definition identifier (test, suite, scenario): 1–256 bytes, no control characters.
func identifierProblem(_ value: String) -> String? {
    if value.isEmpty { return "must not be empty" }
    if value.utf8.count > 256 { return "must be at most 256 bytes" }
    if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
        return "must not contain control characters"
    }
    return nil
}

/// The identifier of a test definition; unique within an execution.
public struct TestID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The identifier.
    public let rawValue: String
    /// Validates an identifier; nil when it is empty, too long or holds control characters.
    public init?(_ rawValue: String) {
        guard identifierProblem(rawValue) == nil else { return nil }
        self.rawValue = rawValue
    }
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = identifierProblem(raw) { throw WireError.invalid(decoder.wirePath, "test id \(problem)") }
        rawValue = raw
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The identifier of a test suite definition.
public struct SuiteID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The identifier.
    public let rawValue: String
    /// Validates an identifier; nil when it is empty, too long or holds control characters.
    public init?(_ rawValue: String) {
        guard identifierProblem(rawValue) == nil else { return nil }
        self.rawValue = rawValue
    }
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = identifierProblem(raw) { throw WireError.invalid(decoder.wirePath, "suite id \(problem)") }
        rawValue = raw
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The identifier of a scenario definition.
public struct ScenarioID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The identifier.
    public let rawValue: String
    /// Validates an identifier; nil when it is empty, too long or holds control characters.
    public init?(_ rawValue: String) {
        guard identifierProblem(rawValue) == nil else { return nil }
        self.rawValue = rawValue
    }
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = identifierProblem(raw) {
            throw WireError.invalid(decoder.wirePath, "scenario id \(problem)")
        }
        rawValue = raw
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}
