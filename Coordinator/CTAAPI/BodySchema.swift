public import CTACore
import Foundation

/// The shape a JSON request body must have. Bodies are checked against it before anything is read from them:
/// a key the schema does not name is `unknownField` with its path (`selector.tags`, `env.X`, `tags[2]`), a value of
/// the wrong type or breaking a rule is `invalidField` with its path. The first problem in key order is reported.
public indirect enum BodySchema: Sendable {
    /// Text, with at most `maxLength` characters; `pattern` checks it further (nil: anything).
    case string(maxLength: Int = 1024, rule: (@Sendable (String) -> String?)? = nil)
    /// A whole number in the range.
    case integer(ClosedRange<Int64>)
    case bool
    /// One of these texts.
    case oneOf([String])
    /// A list of values of one shape, at most `maxCount` long.
    case array(BodySchema, maxCount: Int = 1000)
    /// An object with exactly these keys (required or optional); no others.
    case object([String: Field])
    /// An object with any keys (checked by `keyRule`), each value of one shape.
    case map(BodySchema, keyRule: (@Sendable (String) -> String?)? = nil, maxCount: Int = 1000)

    public struct Field: Sendable {
        public var schema: BodySchema
        public var required: Bool
        /// Whether `null` counts as absent.
        public var nullable: Bool

        public static func required(_ schema: BodySchema) -> Field { Field(schema: schema, required: true, nullable: false) }
        public static func optional(_ schema: BodySchema) -> Field { Field(schema: schema, required: false, nullable: true) }
    }

    /// Checks `value`; throws the first problem.
    public func validate(_ value: JSONValue, path: String = "") throws(APIError) {
        func fail(_ message: String) -> APIError { APIError(.invalidField, message, field: path.isEmpty ? nil : path) }
        func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
        switch self {
        case .string(let maxLength, let rule):
            guard case .string(let text) = value else { throw fail("\(label(path)) must be text") }
            guard text.count <= maxLength else { throw fail("\(label(path)) is longer than \(maxLength) characters") }
            if let rule, let problem = rule(text) { throw fail("\(label(path)) \(problem)") }
        case .integer(let range):
            let number: Int64
            switch value {
            case .integer(let n): number = n
            case .number(let d) where d == d.rounded() && abs(d) < 9e18: number = Int64(d)
            default: throw fail("\(label(path)) must be a whole number")
            }
            guard range.contains(number) else {
                throw fail("\(label(path)) must be from \(range.lowerBound) to \(range.upperBound)")
            }
        case .bool:
            guard case .bool = value else { throw fail("\(label(path)) must be true or false") }
        case .oneOf(let allowed):
            guard case .string(let text) = value, allowed.contains(text) else {
                throw fail("\(label(path)) must be one of \(allowed.joined(separator: ", "))")
            }
        case .array(let element, let maxCount):
            guard case .array(let items) = value else { throw fail("\(label(path)) must be a list") }
            guard items.count <= maxCount else { throw fail("\(label(path)) has more than \(maxCount) entries") }
            for (index, item) in items.enumerated() { try element.validate(item, path: "\(path)[\(index)]") }
        case .object(let fields):
            guard case .object(let members) = value else { throw fail("\(label(path)) must be an object") }
            for key in members.keys.sorted() where fields[key] == nil {
                throw APIError(.unknownField, "unknown field \(child(key))", field: child(key))
            }
            for key in fields.keys.sorted() {
                let field = fields[key]!
                let member = members[key]
                if member == nil || (member == .null && field.nullable) {
                    if field.required { throw APIError(.invalidField, "\(child(key)) is required", field: child(key)) }
                    continue
                }
                try field.schema.validate(member!, path: child(key))
            }
        case .map(let element, let keyRule, let maxCount):
            guard case .object(let members) = value else { throw fail("\(label(path)) must be an object") }
            guard members.count <= maxCount else { throw fail("\(label(path)) has more than \(maxCount) entries") }
            for key in members.keys.sorted() {
                if let keyRule, let problem = keyRule(key) {
                    throw APIError(.invalidField, "key \(key) of \(label(path)) \(problem)", field: child(key))
                }
                try element.validate(members[key]!, path: child(key))
            }
        }
    }

    private func label(_ path: String) -> String { path.isEmpty ? "the body" : path }

    /// Parses a request body as JSON and checks it against the schema.
    public func parse(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON")
        }
        try validate(value)
        return value
    }
}

extension JSONValue {
    /// The member `key` of an object.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self, let member = members[key], member != .null else { return nil }
        return member
    }

    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var int64Value: Int64? {
        switch self {
        case .integer(let n): n
        case .number(let d) where d == d.rounded() && abs(d) < 9e18: Int64(d)
        default: nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var stringArray: [String]? { arrayValue?.compactMap(\.stringValue) }

    public var stringMap: [String: String]? {
        guard case .object(let members) = self else { return nil }
        return members.compactMapValues(\.stringValue)
    }
}

/// Rules shared by several bodies.
public enum Rules {
    /// A user, group or machine name: 1–128 ASCII letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    public static let name: @Sendable (String) -> String? = { text in
        MachineName(text) == nil ? "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit" : nil
    }

    /// An environment variable name.
    public static let envName: @Sendable (String) -> String? = { text in
        guard let first = text.utf8.first, !(48...57).contains(first), text.utf8.count <= 256,
            text.utf8.allSatisfy({ ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 })
        else { return "must be letters, digits and '_', not starting with a digit" }
        return nil
    }

    /// Not empty.
    public static let nonEmpty: @Sendable (String) -> String? = { $0.isEmpty ? "must not be empty" : nil }
}
