public import Foundation

/// One BSON value: what a field of a ``BSONDocument`` holds.
///
/// Integer literals become `.int64`, floating-point literals `.double`, `nil` becomes `.null`; array and
/// dictionary literals become `.array` and `.document`, so filters read like the shell:
/// `["status": "queued", "priority": ["$gte": 3]]`.
public indirect enum BSONValue: Sendable, Hashable {
    case double(Double)
    case string(String)
    case document(BSONDocument)
    case array([BSONValue])
    /// Binary data with its BSON subtype (`0` generic, `4` UUID).
    case binary(subtype: UInt8, Data)
    case objectId(ObjectId)
    case bool(Bool)
    /// A UTC datetime, stored by BSON with millisecond precision.
    case date(Date)
    case null
    case regex(pattern: String, options: String)
    case javascript(String)
    case int32(Int32)
    case timestamp(BSONTimestamp)
    case int64(Int64)
    /// A decimal128, kept as its 16 raw little-endian bytes.
    case decimal128(low: UInt64, high: UInt64)
    case minKey
    case maxKey
    case undefined

    /// A UUID as BSON binary subtype 4.
    public static func uuid(_ uuid: UUID) -> BSONValue {
        let u = uuid.uuid
        let bytes: [UInt8] = [
            u.0, u.1, u.2, u.3, u.4, u.5, u.6, u.7, u.8, u.9, u.10, u.11, u.12, u.13, u.14, u.15,
        ]
        return .binary(subtype: 4, Data(bytes))
    }

    /// The value as an `Int`, when it is an integer, or a double holding an integer.
    public var intValue: Int? {
        switch self {
        case .int32(let v): Int(v)
        case .int64(let v): Int(exactly: v)
        case .double(let v): Int(exactly: v)
        default: nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { s } else { nil }
    }

    public var documentValue: BSONDocument? {
        if case .document(let d) = self { d } else { nil }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { b } else { nil }
    }

    /// The BSON type's name as the server spells it (`$type`), for error messages.
    public var typeName: String {
        switch self {
        case .double: "double"
        case .string: "string"
        case .document: "object"
        case .array: "array"
        case .binary: "binData"
        case .objectId: "objectId"
        case .bool: "bool"
        case .date: "date"
        case .null: "null"
        case .regex: "regex"
        case .javascript: "javascript"
        case .int32: "int"
        case .timestamp: "timestamp"
        case .int64: "long"
        case .decimal128: "decimal"
        case .minKey: "minKey"
        case .maxKey: "maxKey"
        case .undefined: "undefined"
        }
    }
}

extension BSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int64(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: BSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, BSONValue)...) {
        self = .document(BSONDocument(elements))
    }
    public init(nilLiteral: ()) { self = .null }
}

/// A BSON timestamp (the server's internal operation time, as in a change event's `clusterTime`).
public struct BSONTimestamp: Sendable, Hashable, Comparable {
    public var seconds: UInt32
    public var increment: UInt32

    public init(seconds: UInt32, increment: UInt32) {
        self.seconds = seconds
        self.increment = increment
    }

    public static func < (lhs: BSONTimestamp, rhs: BSONTimestamp) -> Bool {
        (lhs.seconds, lhs.increment) < (rhs.seconds, rhs.increment)
    }
}

/// An ordered BSON document: keys keep the order they were added in, which matters for sorts and
/// compound index keys.
///
/// Build filters, sorts, projections and updates with literals:
/// ```swift
/// let filter: BSONDocument = ["status": "queued", "attempts": ["$lt": 3]]
/// let update: BSONDocument = ["$set": ["status": "running"], "$inc": ["attempts": 1]]
/// ```
/// or with the update helpers: `.set(["status": "running"]).inc(["attempts": 1])`.
public struct BSONDocument: Sendable, Hashable {
    /// The fields in order. Keys are unique when built through the subscript; a document read from the
    /// server keeps whatever it holds.
    public private(set) var elements: [(key: String, value: BSONValue)]

    public init() { elements = [] }

    public init(_ elements: [(String, BSONValue)]) {
        self.elements = []
        self.elements.reserveCapacity(elements.count)
        for (k, v) in elements { self[k] = v }
    }

    /// Builds a document from elements without checking for duplicate keys (for the parser).
    init(uncheckedElements: [(key: String, value: BSONValue)]) {
        self.elements = uncheckedElements
    }

    public var count: Int { elements.count }
    public var isEmpty: Bool { elements.isEmpty }
    public var keys: [String] { elements.map(\.key) }

    /// The value for `key`, or `nil` when absent. Setting `nil` removes the field; setting a new key appends it.
    public subscript(key: String) -> BSONValue? {
        get {
            for element in elements where element.key == key { return element.value }
            return nil
        }
        set {
            if let index = elements.firstIndex(where: { $0.key == key }) {
                if let newValue { elements[index].value = newValue } else { elements.remove(at: index) }
            } else if let newValue {
                elements.append((key, newValue))
            }
        }
    }

    /// Appends a field without checking whether the key exists.
    public mutating func append(_ key: String, _ value: BSONValue) {
        elements.append((key, value))
    }

    /// Inserts a field first, without checking whether the key exists.
    mutating func prepend(_ key: String, _ value: BSONValue) {
        elements.insert((key, value), at: 0)
    }

    /// This document with the fields of `other` added; fields of `other` replace same-named ones.
    public func merging(_ other: BSONDocument) -> BSONDocument {
        var result = self
        for (k, v) in other.elements { result[k] = v }
        return result
    }

    public static func == (lhs: BSONDocument, rhs: BSONDocument) -> Bool {
        lhs.elements.count == rhs.elements.count
            && zip(lhs.elements, rhs.elements).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(elements.count)
        for (k, v) in elements {
            hasher.combine(k)
            hasher.combine(v)
        }
    }
}

extension BSONDocument: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, BSONValue)...) {
        self.init(elements)
    }
}

extension BSONDocument: Sequence {
    public func makeIterator() -> IndexingIterator<[(key: String, value: BSONValue)]> {
        elements.makeIterator()
    }
}

// MARK: Update, sort and projection helpers

extension BSONDocument {
    /// `{"$set": fields}`.
    public static func set(_ fields: BSONDocument) -> BSONDocument { ["$set": .document(fields)] }
    /// `{"$inc": fields}`.
    public static func inc(_ fields: BSONDocument) -> BSONDocument { ["$inc": .document(fields)] }
    /// `{"$setOnInsert": fields}`.
    public static func setOnInsert(_ fields: BSONDocument) -> BSONDocument { ["$setOnInsert": .document(fields)] }
    /// `{"$unset": {field: ""}}` for each field.
    public static func unset(_ fields: String...) -> BSONDocument {
        ["$unset": .document(BSONDocument(fields.map { ($0, BSONValue.string("")) }))]
    }
    /// `{"$push": fields}`.
    public static func push(_ fields: BSONDocument) -> BSONDocument { ["$push": .document(fields)] }

    /// Adds `$set` fields to this update (merging with an existing `$set`).
    public func set(_ fields: BSONDocument) -> BSONDocument { adding("$set", fields) }
    /// Adds `$inc` fields to this update.
    public func inc(_ fields: BSONDocument) -> BSONDocument { adding("$inc", fields) }
    /// Adds `$setOnInsert` fields to this update.
    public func setOnInsert(_ fields: BSONDocument) -> BSONDocument { adding("$setOnInsert", fields) }
    /// Adds `$push` fields to this update.
    public func push(_ fields: BSONDocument) -> BSONDocument { adding("$push", fields) }
    /// Adds `$unset` of each field to this update.
    public func unsetting(_ fields: String...) -> BSONDocument {
        adding("$unset", BSONDocument(fields.map { ($0, BSONValue.string("")) }))
    }

    private func adding(_ op: String, _ fields: BSONDocument) -> BSONDocument {
        var result = self
        let existing = result[op]?.documentValue ?? [:]
        result[op] = .document(existing.merging(fields))
        return result
    }

    /// A sort or index key specification: `ascending("a", "b")` is `{"a": 1, "b": 1}`.
    public static func ascending(_ fields: String...) -> BSONDocument {
        BSONDocument(fields.map { ($0, BSONValue.int32(1)) })
    }

    /// `descending("createdAt")` is `{"createdAt": -1}`.
    public static func descending(_ fields: String...) -> BSONDocument {
        BSONDocument(fields.map { ($0, BSONValue.int32(-1)) })
    }

    /// A projection returning only `fields` (and `_id` unless excluded by adding `"_id": 0`).
    public static func including(_ fields: String...) -> BSONDocument {
        BSONDocument(fields.map { ($0, BSONValue.int32(1)) })
    }

    /// A projection returning everything except `fields`.
    public static func excluding(_ fields: String...) -> BSONDocument {
        BSONDocument(fields.map { ($0, BSONValue.int32(0)) })
    }
}
