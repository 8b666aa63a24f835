public import Foundation

// Small typed wrappers for the identifiers that travel on the wire, so a machine name cannot be passed where a group
// name is expected. UUIDs are written in lower case and read in either case.

/// An identifier that is a UUID on the wire, written in lower case and read in either case.
public protocol UUIDIdentifier: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The UUID.
    var uuid: UUID { get }
    /// Wraps a UUID.
    init(_ uuid: UUID)
}

extension UUIDIdentifier {
    /// Parses a UUID string.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.init(uuid)
    }
    public var description: String { uuid.uuidString.lowercased() }
    public init(from decoder: any Decoder) throws { self.init(try decoder.decodeUUID()) }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The identifier of one event: a UUID, and the idempotency key every store write is keyed by.
public struct EventID: UUIDIdentifier {
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
}

/// The identifier of one execution (one run of a scenario).
public struct ExecutionID: UUIDIdentifier {
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
}

/// The identifier of an uploaded attachment; chosen by the uploader so that a retried upload is idempotent.
public struct AttachmentID: UUIDIdentifier {
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
}

/// The identity of an agent's `seq` counter: created with the agent's spool, replaced only when the spool is lost.
///
/// `seq` values are comparable only within one epoch; a new epoch starts again at 1.
public struct SequenceEpoch: UUIDIdentifier {
    public let uuid: UUID
    /// Wraps a UUID; a fresh random one by default.
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
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

/// A name that appears inside queue names and routing keys, so its alphabet is restricted (see
/// `docs/protocol.md`, "Names").
public protocol RestrictedName: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// What the name names, for error messages: "machine name".
    static var kind: String { get }
    /// The name.
    var rawValue: String { get }
    /// Wraps a name without checking it.
    ///
    /// - Important: No check is made: for input, use `init?(_:)` or `init(validating:)`.
    init(unchecked rawValue: String)
}

extension RestrictedName {
    /// Validates a name; nil when it breaks the naming rule.
    public init?(_ rawValue: String) {
        guard nameProblem(rawValue) == nil else { return nil }
        self.init(unchecked: rawValue)
    }
    /// Validates a name, explaining the problem.
    public init(validating rawValue: String) throws(WireError) {
        if let problem = nameProblem(rawValue) {
            throw WireError(code: .invalidValue, path: "", reason: "\(Self.kind) \(problem)")
        }
        self.init(unchecked: rawValue)
    }
    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = nameProblem(raw) { throw WireError.invalid(decoder.wirePath, "\(Self.kind) \(problem)") }
        self.init(unchecked: raw)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The name of a test machine, as its agent registers it.
public struct MachineName: RestrictedName {
    public static let kind = "machine name"
    public let rawValue: String
    public init(unchecked rawValue: String) { self.rawValue = rawValue }
}

/// The name of a pool of machines; each group has its own queue.
public struct GroupName: RestrictedName {
    public static let kind = "group name"
    public let rawValue: String
    public init(unchecked rawValue: String) { self.rawValue = rawValue }
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

/// A definition identifier (test, suite, scenario): free text of 1–256 bytes without control characters.
public protocol DefinitionIdentifier: Hashable, Sendable, Codable, CustomStringConvertible {
    /// What it identifies, for error messages: "test id".
    static var kind: String { get }
    /// The identifier.
    var rawValue: String { get }
    /// Wraps an identifier without checking it.
    ///
    /// - Important: No check is made: for input, use `init?(_:)`.
    init(unchecked rawValue: String)
}

extension DefinitionIdentifier {
    /// Validates an identifier; nil when it is empty, too long or holds control characters.
    public init?(_ rawValue: String) {
        guard identifierProblem(rawValue) == nil else { return nil }
        self.init(unchecked: rawValue)
    }
    public var description: String { rawValue }
    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        if let problem = identifierProblem(raw) { throw WireError.invalid(decoder.wirePath, "\(Self.kind) \(problem)") }
        self.init(unchecked: raw)
    }
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The identifier of a test definition; unique within an execution.
public struct TestID: DefinitionIdentifier {
    public static let kind = "test id"
    public let rawValue: String
    public init(unchecked rawValue: String) { self.rawValue = rawValue }
}

/// The identifier of a test suite definition.
public struct SuiteID: DefinitionIdentifier {
    public static let kind = "suite id"
    public let rawValue: String
    public init(unchecked rawValue: String) { self.rawValue = rawValue }
}

/// The identifier of a scenario definition.
public struct ScenarioID: DefinitionIdentifier {
    public static let kind = "scenario id"
    public let rawValue: String
    public init(unchecked rawValue: String) { self.rawValue = rawValue }
}
