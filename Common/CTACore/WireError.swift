import Foundation

/// A message that breaks the wire contract: what is wrong (`code`), where (`path`) and why (`reason`).
///
/// Consumers put these three values on the dead-letter message (see ``Topology/DeadLetterHeader``), so every
/// rejected event can be traced to the field that caused it. `description` is safe to show a user: it never holds
/// more than a short, truncated excerpt of the offending value.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The class of a wire error. New codes may be added; compare with the static members.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, CaseIterable, Sendable {
            case malformedJSON
            case missingField
            case wrongType
            case invalidValue
            case unknownType
            case unsupportedVersion
            case unauthorisedSource
            case unexpectedType
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// The bytes are not JSON, or the top level is not a JSON object.
        public static let malformedJSON = Code(.malformedJSON)
        /// A required field is absent or `null`.
        public static let missingField = Code(.missingField)
        /// A field holds the wrong JSON type (a number where a string is expected, …).
        public static let wrongType = Code(.wrongType)
        /// A field has the right JSON type but a value the contract forbids (bad UUID, negative count, unknown
        /// enumeration value, broken cross-field rule, …).
        public static let invalidValue = Code(.invalidValue)
        /// The envelope's `type` is not an event type of this protocol version.
        public static let unknownType = Code(.unknownType)
        /// The envelope's major version is not one this code speaks.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// The sender may not send this event, or claims to be someone it is not.
        public static let unauthorisedSource = Code(.unauthorisedSource)
        /// A known event type arrived where it has no business (an agent event on an agent's own queue, …).
        public static let unexpectedType = Code(.unexpectedType)

        /// Every code, in a stable order.
        public static var allCodes: [Code] { Base.allCases.map(Code.init) }

        /// The code for its wire name (the value of the `cta-error-code` dead-letter header), if there is one.
        public init?(name: String) {
            guard let base = Base(rawValue: name) else { return nil }
            self.base = base
        }

        /// The wire name, e.g. `missingField`; this is what the dead-letter header carries.
        public var name: String { base.rawValue }

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// Where, as a JSON path from the envelope root such as `payload.tests[0].stages[1].run`; empty for the root.
    public var path: String
    /// Why, in one sentence without the path.
    public var reason: String

    /// Creates an error.
    public init(code: Code, path: String, reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }

    public var description: String {
        path.isEmpty ? "\(code.name): \(reason)" : "\(code.name) at \(path): \(reason)"
    }

    public var debugDescription: String { "WireError(code: \(code.name), path: \"\(path)\", reason: \"\(reason)\")" }
}

extension WireError {
    static func missing(_ path: WirePath, _ reason: String = "required field is missing") -> WireError {
        WireError(code: .missingField, path: path.rendered, reason: reason)
    }

    static func invalid(_ path: WirePath, _ reason: String) -> WireError {
        WireError(code: .invalidValue, path: path.rendered, reason: reason)
    }

    /// Translates Foundation's decoding error into the contract's vocabulary, with the coding path rendered.
    init(_ error: DecodingError) {
        switch error {
        case .keyNotFound(let key, let context):
            self.init(
                code: .missingField,
                path: WirePath(context.codingPath + [key]).rendered,
                reason: "required field is missing"
            )
        case .valueNotFound(_, let context):
            self.init(
                code: .missingField,
                path: WirePath(context.codingPath).rendered,
                reason: "required field is null"
            )
        case .typeMismatch(let type, let context):
            if context.codingPath.isEmpty {
                self.init(code: .malformedJSON, path: "", reason: "the top level is not a JSON object")
            } else {
                self.init(
                    code: .wrongType,
                    path: WirePath(context.codingPath).rendered,
                    reason: "expected \(WireError.jsonTypeName(type))"
                )
            }
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                self.init(code: .malformedJSON, path: "", reason: "the message is not valid JSON")
            } else {
                self.init(
                    code: .invalidValue,
                    path: WirePath(context.codingPath).rendered,
                    reason: "the value is not valid here"
                )
            }
        @unknown default:
            self.init(code: .malformedJSON, path: "", reason: "the message could not be decoded")
        }
    }

    private static func jsonTypeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Double.Type, is Float.Type: "a number"
        case is any FixedWidthInteger.Type: "an integer"
        case is [Any].Type: "an array"
        case is [String: Any].Type: "an object"
        default:
            // Composite Decodable types (our structs) arrive as objects; arrays are spelled `Array<…>`.
            String(describing: type).hasPrefix("Array<") ? "an array" : "an object"
        }
    }
}

/// A JSON path from the envelope root, e.g. `payload.tests[0].stages[1].run`.
struct WirePath: Hashable, Sendable, CustomStringConvertible {
    private enum Component: Hashable, Sendable {
        case key(String)
        case index(Int)
    }

    private var components: [Component]

    static let root = WirePath(components: [])

    private init(components: [Component]) { self.components = components }

    /// The path of a decoder's coding path. JSONDecoder spells array positions `Index N` with an int value.
    init(_ codingPath: [any CodingKey]) {
        components = codingPath.map { key in
            if let index = key.intValue, key.stringValue == "Index \(index)" {
                return .index(index)
            }
            return .key(key.stringValue)
        }
    }

    func appending(_ key: String) -> WirePath { WirePath(components: components + [.key(key)]) }
    func appending(index: Int) -> WirePath { WirePath(components: components + [.index(index)]) }

    var rendered: String {
        var result = ""
        for component in components {
            switch component {
            case .index(let index):
                result += "[\(index)]"
            case .key(let key):
                if WirePath.isPlain(key) {
                    result += result.isEmpty ? key : ".\(key)"
                } else {
                    let escaped = key.replacingOccurrences(of: "\\", with: "\\\\")
                        .replacingOccurrences(of: "\"", with: "\\\"")
                    result += "[\"\(escaped)\"]"
                }
            }
        }
        return result
    }

    var description: String { rendered }

    private static func isPlain(_ key: String) -> Bool {
        !key.isEmpty
            && key.unicodeScalars.allSatisfy { scalar in
                (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z")
                    || (scalar >= "0" && scalar <= "9") || scalar == "_" || scalar == "-"
            }
    }
}
