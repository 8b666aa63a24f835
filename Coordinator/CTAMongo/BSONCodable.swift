// Codable ⇄ BSON: the one place Swift values become documents and documents become Swift values.
//
// Mapping (both directions):
//   Int, Int64, UInt32, UInt64, UInt → int64 (UInt64 above Int64.max is an encoding error)
//   Int8, Int16, Int32, UInt8, UInt16 → int32
//   Double, Float → double;  Bool → bool;  String → string
//   Date → UTC datetime (millisecond precision);  UUID → binary subtype 4;  Data → binary subtype 0
//   ObjectId → objectId;  BSONDocument / BSONValue → themselves;  URL → string
//   nested Codable → embedded document;  arrays → array;  [String: T] → embedded document
//   Optional: `nil` is left out of the document (synthesized `encodeIfPresent`); a missing or null field
//   decodes as `nil`.
// Decoding numbers is lenient where no information is lost: an int32, int64 or integral double decodes into
// any integer type it fits, and any number decodes into Double. Everything else must match.

import Foundation

/// Encodes `Encodable` values as ``BSONDocument``s.
public struct BSONEncoder: Sendable {
    public init() {}

    /// Encodes `value`, which must encode as a keyed container (a struct or a class, or a dictionary).
    public func encode<T: Encodable>(_ value: T) throws -> BSONDocument {
        let encoded = try encodeValue(value)
        guard case .document(let document) = encoded else {
            throw EncodingError.invalidValue(
                value,
                .init(codingPath: [], debugDescription: "a \(T.self) encodes as \(encoded.typeName), not as a document")
            )
        }
        return document
    }

    /// Encodes `value` as any BSON value (a filter operand, an array element).
    public func encodeValue<T: Encodable>(_ value: T) throws -> BSONValue {
        try _BSONEncoder.box(value, codingPath: [])
    }
}

/// Decodes ``BSONDocument``s into `Decodable` values.
public struct BSONDecoder: Sendable {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from document: BSONDocument) throws -> T {
        try _BSONDecoder.unbox(.document(document), as: type, codingPath: [])
    }

    public func decode<T: Decodable>(_ type: T.Type, from value: BSONValue) throws -> T {
        try _BSONDecoder.unbox(value, as: type, codingPath: [])
    }
}

extension BSONDocument {
    /// A document from an `Encodable` value, with ``BSONEncoder``.
    public init<T: Encodable>(encoding value: T) throws {
        self = try BSONEncoder().encode(value)
    }

    /// This document decoded as `T`, with ``BSONDecoder``.
    public func decode<T: Decodable>(as type: T.Type = T.self) throws -> T {
        try BSONDecoder().decode(type, from: self)
    }
}

extension BSONValue {
    /// A value from an `Encodable` one, with ``BSONEncoder`` (for example a filter operand).
    public init<T: Encodable>(encoding value: T) throws {
        self = try BSONEncoder().encodeValue(value)
    }
}

/// A coding key for array indices and for keys that are not in the type's `CodingKeys`.
struct BSONKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) {
        self.stringValue = stringValue
        self.intValue = nil
    }
    init(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }
    static let superclass = BSONKey(stringValue: "super")
}

extension [any CodingKey] {
    /// The path as MongoDB spells it: `steps.2.name`.
    var dottedPath: String {
        map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}

// MARK: - Encoding

/// A container whose content is not known until the value that asked for it has finished encoding.
private enum Pending {
    case document(DocumentBuffer)
    case array(ArrayBuffer)
    case encoder(_BSONEncoder)

    func finish() throws -> BSONValue {
        switch self {
        case .document(let d): .document(try d.finish())
        case .array(let a): .array(try a.finish())
        case .encoder(let e): try e.finish()
        }
    }
}

private final class DocumentBuffer {
    var elements: [(key: String, value: BSONValue)] = []
    /// Elements whose values are nested containers still being filled: resolved in `finish()`.
    var pending: [(index: Int, value: Pending)] = []

    func append(_ key: String, _ value: BSONValue) { elements.append((key, value)) }

    func append(_ key: String, pending value: Pending) {
        pending.append((elements.count, value))
        elements.append((key, .null))
    }

    func finish() throws -> BSONDocument {
        for (index, value) in pending { elements[index].value = try value.finish() }
        pending = []
        return BSONDocument(uncheckedElements: elements)
    }
}

private final class ArrayBuffer {
    var values: [BSONValue] = []
    var pending: [(index: Int, value: Pending)] = []

    func append(pending value: Pending) {
        pending.append((values.count, value))
        values.append(.null)
    }

    func finish() throws -> [BSONValue] {
        for (index, value) in pending { values[index] = try value.finish() }
        pending = []
        return values
    }
}

final class _BSONEncoder: Encoder {
    private enum Storage {
        case empty
        case value(BSONValue)
        case document(DocumentBuffer)
        case array(ArrayBuffer)
    }

    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    private var storage: Storage = .empty

    init(codingPath: [any CodingKey]) {
        self.codingPath = codingPath
    }

    /// Encodes one value: the types BSON has natively directly, everything else through its `Encodable`.
    static func box<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws -> BSONValue {
        if let native = native(value) { return native }
        let encoder = _BSONEncoder(codingPath: codingPath)
        try value.encode(to: encoder)
        return try encoder.finish()
    }

    /// The Foundation types BSON stores natively. (ObjectId, BSONDocument and BSONValue recognise this encoder
    /// in their own `encode(to:)`.) Type identity is compared first: it is much cheaper than dynamic casts.
    private static func native<T: Encodable>(_ value: T) -> BSONValue? {
        if T.self == Date.self { return .date(value as! Date) }
        if T.self == Data.self { return .binary(subtype: 0, value as! Data) }
        if T.self == UUID.self { return .uuid(value as! UUID) }
        if T.self == URL.self { return .string((value as! URL).absoluteString) }
        return nil
    }

    func encodeBSONValue(_ value: BSONValue) {
        storage = .value(value)
    }

    func finish() throws -> BSONValue {
        switch storage {
        case .empty: .document([:])
        case .value(let v): v
        case .document(let d): .document(try d.finish())
        case .array(let a): .array(try a.finish())
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let buffer: DocumentBuffer
        if case .document(let existing) = storage {
            buffer = existing
        } else {
            buffer = DocumentBuffer()
            storage = .document(buffer)
        }
        return KeyedEncodingContainer(BSONKeyedEncodingContainer<Key>(buffer: buffer, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let buffer: ArrayBuffer
        if case .array(let existing) = storage {
            buffer = existing
        } else {
            buffer = ArrayBuffer()
            storage = .array(buffer)
        }
        return BSONUnkeyedEncodingContainer(buffer: buffer, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        BSONSingleValueEncodingContainer(encoder: self)
    }

    fileprivate static func int64<T: BinaryInteger>(_ value: T, _ codingPath: [any CodingKey]) throws -> BSONValue {
        guard let v = Int64(exactly: value) else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: codingPath, debugDescription: "\(value) does not fit a BSON int64"))
        }
        return .int64(v)
    }
}

private struct BSONKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let buffer: DocumentBuffer
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { buffer.append(key.stringValue, .null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { buffer.append(key.stringValue, .bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) throws { buffer.append(key.stringValue, .string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws { buffer.append(key.stringValue, .double(value)) }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        buffer.append(key.stringValue, .double(Double(value)))
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { buffer.append(key.stringValue, .int64(Int64(value))) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { buffer.append(key.stringValue, .int32(Int32(value))) }
    mutating func encode(_ value: Int16, forKey key: Key) throws {
        buffer.append(key.stringValue, .int32(Int32(value)))
    }
    mutating func encode(_ value: Int32, forKey key: Key) throws { buffer.append(key.stringValue, .int32(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { buffer.append(key.stringValue, .int64(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) throws {
        buffer.append(key.stringValue, try _BSONEncoder.int64(value, codingPath + [key]))
    }
    mutating func encode(_ value: UInt8, forKey key: Key) throws {
        buffer.append(key.stringValue, .int32(Int32(value)))
    }
    mutating func encode(_ value: UInt16, forKey key: Key) throws {
        buffer.append(key.stringValue, .int32(Int32(value)))
    }
    mutating func encode(_ value: UInt32, forKey key: Key) throws {
        buffer.append(key.stringValue, .int64(Int64(value)))
    }
    mutating func encode(_ value: UInt64, forKey key: Key) throws {
        buffer.append(key.stringValue, try _BSONEncoder.int64(value, codingPath + [key]))
    }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        buffer.append(key.stringValue, try _BSONEncoder.box(value, codingPath: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = DocumentBuffer()
        buffer.append(key.stringValue, pending: .document(nested))
        return KeyedEncodingContainer(
            BSONKeyedEncodingContainer<NestedKey>(buffer: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = ArrayBuffer()
        buffer.append(key.stringValue, pending: .array(nested))
        return BSONUnkeyedEncodingContainer(buffer: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { superEncoder(key: BSONKey.superclass) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(key: key) }

    private func superEncoder(key: any CodingKey) -> any Encoder {
        let encoder = _BSONEncoder(codingPath: codingPath + [key])
        buffer.append(key.stringValue, pending: .encoder(encoder))
        return encoder
    }
}

private struct BSONUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let buffer: ArrayBuffer
    let codingPath: [any CodingKey]
    var count: Int { buffer.values.count }

    private var nextKey: BSONKey { BSONKey(intValue: buffer.values.count) }

    mutating func encodeNil() throws { buffer.values.append(.null) }
    mutating func encode(_ value: Bool) throws { buffer.values.append(.bool(value)) }
    mutating func encode(_ value: String) throws { buffer.values.append(.string(value)) }
    mutating func encode(_ value: Double) throws { buffer.values.append(.double(value)) }
    mutating func encode(_ value: Float) throws { buffer.values.append(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { buffer.values.append(.int64(Int64(value))) }
    mutating func encode(_ value: Int8) throws { buffer.values.append(.int32(Int32(value))) }
    mutating func encode(_ value: Int16) throws { buffer.values.append(.int32(Int32(value))) }
    mutating func encode(_ value: Int32) throws { buffer.values.append(.int32(value)) }
    mutating func encode(_ value: Int64) throws { buffer.values.append(.int64(value)) }
    mutating func encode(_ value: UInt) throws {
        buffer.values.append(try _BSONEncoder.int64(value, codingPath + [nextKey]))
    }
    mutating func encode(_ value: UInt8) throws { buffer.values.append(.int32(Int32(value))) }
    mutating func encode(_ value: UInt16) throws { buffer.values.append(.int32(Int32(value))) }
    mutating func encode(_ value: UInt32) throws { buffer.values.append(.int64(Int64(value))) }
    mutating func encode(_ value: UInt64) throws {
        buffer.values.append(try _BSONEncoder.int64(value, codingPath + [nextKey]))
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        buffer.values.append(try _BSONEncoder.box(value, codingPath: codingPath + [nextKey]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey>
    {
        let key = nextKey
        let nested = DocumentBuffer()
        buffer.append(pending: .document(nested))
        return KeyedEncodingContainer(
            BSONKeyedEncodingContainer<NestedKey>(buffer: nested, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let key = nextKey
        let nested = ArrayBuffer()
        buffer.append(pending: .array(nested))
        return BSONUnkeyedEncodingContainer(buffer: nested, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = _BSONEncoder(codingPath: codingPath + [nextKey])
        buffer.append(pending: .encoder(encoder))
        return encoder
    }
}

private struct BSONSingleValueEncodingContainer: SingleValueEncodingContainer {
    let encoder: _BSONEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil() throws { encoder.encodeBSONValue(.null) }
    mutating func encode(_ value: Bool) throws { encoder.encodeBSONValue(.bool(value)) }
    mutating func encode(_ value: String) throws { encoder.encodeBSONValue(.string(value)) }
    mutating func encode(_ value: Double) throws { encoder.encodeBSONValue(.double(value)) }
    mutating func encode(_ value: Float) throws { encoder.encodeBSONValue(.double(Double(value))) }
    mutating func encode(_ value: Int) throws { encoder.encodeBSONValue(.int64(Int64(value))) }
    mutating func encode(_ value: Int8) throws { encoder.encodeBSONValue(.int32(Int32(value))) }
    mutating func encode(_ value: Int16) throws { encoder.encodeBSONValue(.int32(Int32(value))) }
    mutating func encode(_ value: Int32) throws { encoder.encodeBSONValue(.int32(value)) }
    mutating func encode(_ value: Int64) throws { encoder.encodeBSONValue(.int64(value)) }
    mutating func encode(_ value: UInt) throws { encoder.encodeBSONValue(try _BSONEncoder.int64(value, codingPath)) }
    mutating func encode(_ value: UInt8) throws { encoder.encodeBSONValue(.int32(Int32(value))) }
    mutating func encode(_ value: UInt16) throws { encoder.encodeBSONValue(.int32(Int32(value))) }
    mutating func encode(_ value: UInt32) throws { encoder.encodeBSONValue(.int64(Int64(value))) }
    mutating func encode(_ value: UInt64) throws {
        encoder.encodeBSONValue(try _BSONEncoder.int64(value, codingPath))
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        encoder.encodeBSONValue(try _BSONEncoder.box(value, codingPath: codingPath))
    }
}

// MARK: - Decoding

final class _BSONDecoder: Decoder {
    let value: BSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(value: BSONValue, codingPath: [any CodingKey]) {
        self.value = value
        self.codingPath = codingPath
    }

    /// Decodes one value: the types BSON has natively directly, everything else through its `Decodable`.
    static func unbox<T: Decodable>(_ value: BSONValue, as type: T.Type, codingPath: [any CodingKey]) throws -> T {
        if T.self == Date.self {
            guard case .date(let d) = value else { throw mismatch(T.self, value, codingPath) }
            return d as! T
        }
        if T.self == UUID.self {
            guard case .binary(let subtype, let data) = value, subtype == 4 || subtype == 3, data.count == 16 else {
                throw mismatch(T.self, value, codingPath)
            }
            let b = [UInt8](data)
            let uuid = UUID(
                uuid: (
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
                ))
            return uuid as! T
        }
        if T.self == Data.self {
            guard case .binary(_, let data) = value else { throw mismatch(T.self, value, codingPath) }
            return data as! T
        }
        if T.self == ObjectId.self {
            guard case .objectId(let oid) = value else { throw mismatch(T.self, value, codingPath) }
            return oid as! T
        }
        if T.self == BSONDocument.self {
            guard case .document(let d) = value else { throw mismatch(T.self, value, codingPath) }
            return d as! T
        }
        if T.self == BSONValue.self { return value as! T }
        if T.self == URL.self {
            guard case .string(let s) = value, let url = URL(string: s) else {
                throw mismatch(T.self, value, codingPath)
            }
            return url as! T
        }
        return try T(from: _BSONDecoder(value: value, codingPath: codingPath))
    }

    static func mismatch(_ type: Any.Type, _ value: BSONValue, _ codingPath: [any CodingKey]) -> DecodingError {
        if case .null = value {
            return .valueNotFound(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found null"))
        }
        return .typeMismatch(
            type, .init(codingPath: codingPath, debugDescription: "expected \(type), found \(value.typeName)"))
    }

    static func integer<I: FixedWidthInteger>(_ value: BSONValue, _ codingPath: [any CodingKey]) throws -> I {
        let converted: I?
        switch value {
        case .int32(let v): converted = I(exactly: v)
        case .int64(let v): converted = I(exactly: v)
        case .double(let v): converted = I(exactly: v)
        default: throw mismatch(I.self, value, codingPath)
        }
        guard let converted else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: codingPath, debugDescription: "\(value) does not fit \(I.self)"))
        }
        return converted
    }

    static func double(_ value: BSONValue, _ codingPath: [any CodingKey]) throws -> Double {
        switch value {
        case .double(let v): v
        case .int32(let v): Double(v)
        case .int64(let v): Double(v)
        default: throw mismatch(Double.self, value, codingPath)
        }
    }

    static func bool(_ value: BSONValue, _ codingPath: [any CodingKey]) throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch(Bool.self, value, codingPath) }
        return b
    }

    static func string(_ value: BSONValue, _ codingPath: [any CodingKey]) throws -> String {
        guard case .string(let s) = value else { throw mismatch(String.self, value, codingPath) }
        return s
    }

    func decodeObjectId() throws -> ObjectId {
        guard case .objectId(let oid) = value else { throw Self.mismatch(ObjectId.self, value, codingPath) }
        return oid
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .document(let document) = value else { throw Self.mismatch(BSONDocument.self, value, codingPath) }
        return KeyedDecodingContainer(BSONKeyedDecodingContainer<Key>(document: document, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let values) = value else { throw Self.mismatch([BSONValue].self, value, codingPath) }
        return BSONUnkeyedDecodingContainer(values: values, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        BSONSingleValueDecodingContainer(value: value, codingPath: codingPath)
    }
}

private struct BSONKeyedDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let document: BSONDocument
    let codingPath: [any CodingKey]
    /// Key → index, built only for documents large enough that a linear scan costs more.
    private let index: [String: Int]?

    init(document: BSONDocument, codingPath: [any CodingKey]) {
        self.document = document
        self.codingPath = codingPath
        if document.count > 16 {
            var index = [String: Int](minimumCapacity: document.count)
            for (i, element) in document.elements.enumerated() where index[element.key] == nil {
                index[element.key] = i
            }
            self.index = index
        } else {
            self.index = nil
        }
    }

    var allKeys: [Key] { document.elements.compactMap { Key(stringValue: $0.key) } }

    private func lookup(_ key: Key) -> BSONValue? {
        let name = key.stringValue
        if let index { return index[name].map { document.elements[$0].value } }
        for element in document.elements where element.key == name { return element.value }
        return nil
    }

    private func value(_ key: Key) throws -> BSONValue {
        guard let value = lookup(key) else {
            throw DecodingError.keyNotFound(
                key, .init(codingPath: codingPath, debugDescription: "no field \"\(key.stringValue)\""))
        }
        return value
    }

    func contains(_ key: Key) -> Bool { lookup(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try value(key) { return true }
        return false
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        try _BSONDecoder.bool(try value(key), codingPath + [key])
    }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try _BSONDecoder.string(try value(key), codingPath + [key])
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try _BSONDecoder.double(try value(key), codingPath + [key])
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        Float(try _BSONDecoder.double(try value(key), codingPath + [key]))
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try integer(key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try integer(key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try integer(key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try integer(key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try integer(key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try integer(key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try integer(key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try integer(key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try integer(key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try integer(key) }

    private func integer<I: FixedWidthInteger>(_ key: Key) throws -> I {
        try _BSONDecoder.integer(try value(key), codingPath + [key])
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try _BSONDecoder.unbox(try value(key), as: type, codingPath: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try _BSONDecoder(value: try value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try _BSONDecoder(value: try value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        _BSONDecoder(
            value: document[BSONKey.superclass.stringValue] ?? .null, codingPath: codingPath + [BSONKey.superclass])
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        _BSONDecoder(value: lookup(key) ?? .null, codingPath: codingPath + [key])
    }
}

private struct BSONUnkeyedDecodingContainer: UnkeyedDecodingContainer {
    let values: [BSONValue]
    let codingPath: [any CodingKey]
    private(set) var currentIndex = 0

    init(values: [BSONValue], codingPath: [any CodingKey]) {
        self.values = values
        self.codingPath = codingPath
    }

    var count: Int? { values.count }
    var isAtEnd: Bool { currentIndex >= values.count }

    private var currentPath: [any CodingKey] { codingPath + [BSONKey(intValue: currentIndex)] }

    private mutating func next(_ type: Any.Type) throws -> BSONValue {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                type, .init(codingPath: currentPath, debugDescription: "the array has only \(values.count) elements"))
        }
        defer { currentIndex += 1 }
        return values[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if case .null = values[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool {
        let path = currentPath
        return try _BSONDecoder.bool(try next(type), path)
    }
    mutating func decode(_ type: String.Type) throws -> String {
        let path = currentPath
        return try _BSONDecoder.string(try next(type), path)
    }
    mutating func decode(_ type: Double.Type) throws -> Double {
        let path = currentPath
        return try _BSONDecoder.double(try next(type), path)
    }
    mutating func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }
    mutating func decode(_ type: Int.Type) throws -> Int { try integer() }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer() }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer() }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer() }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer() }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try integer() }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer() }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer() }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer() }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer() }

    private mutating func integer<I: FixedWidthInteger>() throws -> I {
        let path = currentPath
        return try _BSONDecoder.integer(try next(I.self), path)
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let path = currentPath
        return try _BSONDecoder.unbox(try next(type), as: type, codingPath: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        let path = currentPath
        return try _BSONDecoder(value: try next(BSONDocument.self), codingPath: path).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let path = currentPath
        return try _BSONDecoder(value: try next([BSONValue].self), codingPath: path).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let path = currentPath
        return _BSONDecoder(value: try next(BSONValue.self), codingPath: path)
    }
}

private struct BSONSingleValueDecodingContainer: SingleValueDecodingContainer {
    let value: BSONValue
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }
    func decode(_ type: Bool.Type) throws -> Bool { try _BSONDecoder.bool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try _BSONDecoder.string(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try _BSONDecoder.double(value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { Float(try _BSONDecoder.double(value, codingPath)) }
    func decode(_ type: Int.Type) throws -> Int { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try _BSONDecoder.integer(value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try _BSONDecoder.integer(value, codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try _BSONDecoder.unbox(value, as: type, codingPath: codingPath)
    }
}

// MARK: - Codable for the BSON types themselves

extension BSONDocument: Codable {
    public init(from decoder: any Decoder) throws {
        if let bson = decoder as? _BSONDecoder {
            guard case .document(let d) = bson.value else {
                throw _BSONDecoder.mismatch(BSONDocument.self, bson.value, bson.codingPath)
            }
            self = d
            return
        }
        let container = try decoder.container(keyedBy: BSONKey.self)
        var elements: [(String, BSONValue)] = []
        for key in container.allKeys {
            elements.append((key.stringValue, try container.decode(BSONValue.self, forKey: key)))
        }
        self.init(elements)
    }

    public func encode(to encoder: any Encoder) throws {
        if let bson = encoder as? _BSONEncoder {
            bson.encodeBSONValue(.document(self))
            return
        }
        var container = encoder.container(keyedBy: BSONKey.self)
        for (key, value) in elements {
            try container.encode(value, forKey: BSONKey(stringValue: key))
        }
    }
}

extension BSONValue: Codable {
    /// Outside BSON (for example JSON) a value decodes as the closest JSON shape: bool, integer, double,
    /// string, array, object or null.
    public init(from decoder: any Decoder) throws {
        if let bson = decoder as? _BSONDecoder {
            self = bson.value
            return
        }
        if let container = try? decoder.container(keyedBy: BSONKey.self) {
            var elements: [(String, BSONValue)] = []
            for key in container.allKeys {
                elements.append((key.stringValue, try container.decode(BSONValue.self, forKey: key)))
            }
            self = .document(BSONDocument(elements))
            return
        }
        if var container = try? decoder.unkeyedContainer() {
            var values: [BSONValue] = []
            while !container.isAtEnd { values.append(try container.decode(BSONValue.self)) }
            self = .array(values)
            return
        }
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? container.decode(Int64.self) {
            self = .int64(i)
        } else if let d = try? container.decode(Double.self) {
            self = .double(d)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    /// Outside BSON a value encodes as the closest JSON shape: ObjectId as hex, dates as the encoder's dates,
    /// binary as `Data`, timestamps as `{"t": seconds, "i": increment}`.
    public func encode(to encoder: any Encoder) throws {
        if let bson = encoder as? _BSONEncoder {
            bson.encodeBSONValue(self)
            return
        }
        var container = encoder.singleValueContainer()
        switch self {
        case .double(let v): try container.encode(v)
        case .string(let v), .javascript(let v): try container.encode(v)
        case .document(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .binary(_, let v): try container.encode(v)
        case .objectId(let v): try container.encode(v.hex)
        case .bool(let v): try container.encode(v)
        case .date(let v): try container.encode(v)
        case .null, .undefined, .minKey, .maxKey: try container.encodeNil()
        case .regex(let pattern, let options): try container.encode("/\(pattern)/\(options)")
        case .int32(let v): try container.encode(v)
        case .timestamp(let t): try container.encode(["t": t.seconds, "i": t.increment])
        case .int64(let v): try container.encode(v)
        case .decimal128: try container.encode(BSONDocument([("v", self)]).extendedJSON)
        }
    }
}
