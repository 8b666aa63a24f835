import Foundation

// Decoding helpers shared by the wire types. They turn the few cases Foundation reports badly (numbers that do not
// fit, enumeration values, UUIDs) into precise `WireError`s that carry the field's path.

/// Truncates a value echoed into an error so that a hostile message cannot flood logs or headers.
func excerpt(_ value: String) -> String {
    let limit = 64
    let clean = String(value.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) })
    return clean.count <= limit ? clean : String(clean.prefix(limit)) + "…"
}

extension Decoder {
    var wirePath: WirePath { WirePath(codingPath) }

    /// Decodes a string enumeration, naming the allowed values when the value is unknown.
    func decodeEnumeration<E: RawRepresentable & CaseIterable>(_ type: E.Type) throws -> E where E.RawValue == String {
        let raw = try singleValueContainer().decode(String.self)
        guard let value = E(rawValue: raw) else {
            let allowed = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw WireError.invalid(wirePath, "unknown value \"\(excerpt(raw))\"; expected one of: \(allowed)")
        }
        return value
    }

    /// Decodes a UUID written as a string (either case accepted).
    func decodeUUID() throws -> UUID {
        let raw = try singleValueContainer().decode(String.self)
        guard let uuid = UUID(uuidString: raw) else {
            throw WireError.invalid(wirePath, "\"\(excerpt(raw))\" is not a UUID")
        }
        return uuid
    }

    /// Decodes an integer, reporting a fraction, a negative number or an overflow as an invalid value at this path.
    ///
    /// Foundation's JSONDecoder reports such numbers as corrupted data without a coding path (or, in newer
    /// versions, with an internal error type); this keeps the path.
    func decodeInteger<T: FixedWidthInteger & Decodable>(_ type: T.Type) throws -> T {
        let container = try singleValueContainer()
        do {
            return try container.decode(T.self)
        } catch let error as DecodingError {
            guard case .dataCorrupted = error else { throw error }
            throw WireError.invalid(wirePath, "must be an integer between \(T.min) and \(T.max)")
        } catch let error as WireError {
            throw error
        } catch {
            throw WireError.invalid(wirePath, "must be an integer between \(T.min) and \(T.max)")
        }
    }
}

extension KeyedDecodingContainer {
    /// A required value.
    func required<T: Decodable>(_ key: Key, as type: T.Type = T.self) throws -> T {
        try decode(T.self, forKey: key)
    }

    /// An optional value; `null` counts as absent.
    func optional<T: Decodable>(_ key: Key, as type: T.Type = T.self) throws -> T? {
        try decodeIfPresent(T.self, forKey: key)
    }

    /// A required integer with a lower bound.
    func integer<T: FixedWidthInteger & Decodable>(_ key: Key, as type: T.Type = T.self, minimum: T) throws -> T {
        let value = try decode(WireInteger<T>.self, forKey: key).value
        guard value >= minimum else {
            throw WireError.invalid(WirePath(codingPath + [key]), "must be at least \(minimum)")
        }
        return value
    }

    /// An optional integer with a lower bound; `null` counts as absent.
    func optionalInteger<T: FixedWidthInteger & Decodable>(
        _ key: Key,
        as type: T.Type = T.self,
        minimum: T
    ) throws -> T? {
        guard let value = try decodeIfPresent(WireInteger<T>.self, forKey: key)?.value else { return nil }
        guard value >= minimum else {
            throw WireError.invalid(WirePath(codingPath + [key]), "must be at least \(minimum)")
        }
        return value
    }
}

/// An integer decoded with a path-preserving error (see ``Decoder/decodeInteger(_:)``).
struct WireInteger<T: FixedWidthInteger & Decodable>: Decodable {
    var value: T
    init(from decoder: any Decoder) throws { value = try decoder.decodeInteger(T.self) }
}

/// A coding key spelled by a string, for hand-written containers.
struct WireKey: CodingKey, Hashable {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

// MARK: - Semantic checks shared by `validate(at:)` implementations

/// Requires a non-empty string without control characters, at most `limit` UTF-8 bytes long.
func checkText(_ value: String, at path: WirePath, limit: Int = 1024) throws(WireError) {
    if value.isEmpty { throw WireError.invalid(path, "must not be empty") }
    if value.utf8.count > limit { throw WireError.invalid(path, "must be at most \(limit) bytes") }
    if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
        throw WireError.invalid(path, "must not contain control characters")
    }
}

/// Requires a relative path that stays inside its base directory (no leading `/`, no `..` component).
func checkRelativePath(_ value: String, at path: WirePath) throws(WireError) {
    try checkText(value, at: path)
    if value.hasPrefix("/") { throw WireError.invalid(path, "must be a relative path") }
    if value.split(separator: "/", omittingEmptySubsequences: false).contains("..") {
        throw WireError.invalid(path, "must not contain a \"..\" component")
    }
}

/// Requires environment variable names that a POSIX shell accepts.
func checkEnvironment(_ env: [String: String], at path: WirePath) throws(WireError) {
    for name in env.keys.sorted() {
        let valid =
            !name.isEmpty
            && name.unicodeScalars.allSatisfy {
                $0.isASCII && ($0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0))
            }
            && !("0"..."9").contains(name.unicodeScalars.first!)
        if !valid { throw WireError.invalid(path.appending(name), "is not a valid environment variable name") }
    }
}
