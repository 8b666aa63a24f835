// Where documents cross the C boundary: BSONDocument ⇄ BSON bytes ⇄ libbson `bson_t`.
//
// Documents are serialised to BSON bytes in Swift and copied into a heap `bson_t` owned by a final class;
// documents coming back from libmongoc are read from `bson_get_data` straight into a `BSONDocument`.
// A `bson_t` is 128-byte aligned and must never move, so Swift never holds one by value: the owners below
// hand out pointers only inside closures, which keeps the owner alive across the C call in release builds.

internal import CMongoC
import Foundation

// MARK: - Owners of bson_t

/// Owns one heap-allocated `bson_t` (from `bson_new_from_data`/`bson_new`), destroyed in `deinit`.
final class BSONBox {
    private let pointer: OpaquePointer

    /// A `bson_t` holding a copy of `document`.
    convenience init(_ document: BSONDocument) {
        self.init(bytes: BSONWriter.serialize(document))
    }

    /// A `bson_t` holding a copy of `bytes`, which must be one valid BSON document.
    init(bytes: [UInt8]) {
        let made = bytes.withUnsafeBufferPointer { bson_new_from_data($0.baseAddress, $0.count) }
        guard let made else { preconditionFailure("BSONWriter produced an invalid document") }
        pointer = made
    }

    deinit { bson_destroy(pointer) }

    /// Runs `body` with the `bson_t *`; the pointer must not escape it.
    func withPointer<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(pointer) }
    }
}

/// Aligned storage for a `bson_t` that libmongoc fills in ("overwritable storage" reply parameters):
/// initialised empty, destroyed and freed in `deinit`.
final class BSONReply {
    private let pointer: OpaquePointer
    private let raw: UnsafeMutableRawPointer

    init() {
        raw = UnsafeMutableRawPointer.allocate(byteCount: Int(cta_bson_size()), alignment: Int(cta_bson_alignment()))
        pointer = OpaquePointer(raw)
        bson_init(pointer)
    }

    deinit {
        bson_destroy(pointer)
        raw.deallocate()
    }

    func withPointer<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(pointer) }
    }

    /// The reply as a Swift document; an empty document if libmongoc left it empty or it does not parse.
    var document: BSONDocument {
        withPointer { (try? BSONDocument(borrowing: $0)) ?? [:] }
    }
}

/// Runs `body` with a `bson_t *` holding `document`.
func withBSON<R>(_ document: BSONDocument, _ body: (OpaquePointer) throws -> R) rethrows -> R {
    try BSONBox(document).withPointer(body)
}

/// Runs `body` with a `bson_t *` holding `document`, or `nil` when `document` is `nil`.
func withOptionalBSON<R>(_ document: BSONDocument?, _ body: (OpaquePointer?) throws -> R) rethrows -> R {
    guard let document else { return try body(nil) }
    return try BSONBox(document).withPointer(body)
}

extension BSONDocument {
    /// Reads a `const bson_t *` that libmongoc owns (a cursor's current document, a reply) into a Swift document.
    init(borrowing pointer: OpaquePointer) throws {
        guard let data = bson_get_data(pointer) else { throw BSONReader.corrupt("no data") }
        let length = UnsafeRawPointer(data).loadUnaligned(as: Int32.self).littleEndian
        guard length >= 5 else { throw BSONReader.corrupt("document length \(length)") }
        self = try BSONReader.parse(UnsafeRawBufferPointer(start: data, count: Int(length)))
    }

    /// Parses one BSON document from `bytes`.
    public init(bsonBytes bytes: [UInt8]) throws {
        self = try bytes.withUnsafeBytes { try BSONReader.parse($0) }
    }

    /// This document's BSON encoding.
    public var bsonBytes: [UInt8] { BSONWriter.serialize(self) }

    /// Parses MongoDB extended JSON (canonical or relaxed), as printed by `extendedJSON`.
    public init(extendedJSON json: String) throws {
        var error = bson_error_t()
        let bytes = Array(json.utf8)
        let made = bytes.withUnsafeBufferPointer { buffer in
            bson_new_from_json(buffer.baseAddress, buffer.count, &error)
        }
        guard let made else {
            throw MongoError(code: .invalidArgument, message: "not extended JSON: \(MongoError.message(of: error))")
        }
        defer { bson_destroy(made) }
        self = try BSONDocument(borrowing: made)
    }

    /// Relaxed extended JSON, for logs and for people (numbers print plainly, so int32 and int64 look alike).
    public var extendedJSON: String {
        withBSON(self) { pointer in
            var length = 0
            guard let chars = bson_as_relaxed_extended_json(pointer, &length) else { return "{}" }
            defer { bson_free(chars) }
            return String(cString: chars)
        }
    }

    /// Canonical extended JSON: every BSON type spelled out, so ``init(extendedJSON:)`` gives back this document.
    public var canonicalExtendedJSON: String {
        withBSON(self) { pointer in
            var length = 0
            guard let chars = bson_as_canonical_extended_json(pointer, &length) else { return "{}" }
            defer { bson_free(chars) }
            return String(cString: chars)
        }
    }
}

extension BSONDocument: CustomStringConvertible {
    public var description: String { extendedJSON }
}

// MARK: - BSON bytes

/// Serialises a `BSONDocument` to BSON bytes.
enum BSONWriter {
    static func serialize(_ document: BSONDocument) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(256)
        writeDocument(document, into: &out)
        return out
    }

    private static func writeDocument(_ document: BSONDocument, into out: inout [UInt8]) {
        let start = out.count
        appendInt32(0, into: &out)
        for (key, value) in document.elements {
            writeElement(key: key, value: value, into: &out)
        }
        out.append(0)
        patchLength(at: start, into: &out)
    }

    private static func writeArray(_ values: [BSONValue], into out: inout [UInt8]) {
        let start = out.count
        appendInt32(0, into: &out)
        for (index, value) in values.enumerated() {
            writeElement(key: String(index), value: value, into: &out)
        }
        out.append(0)
        patchLength(at: start, into: &out)
    }

    private static func writeElement(key: String, value: BSONValue, into out: inout [UInt8]) {
        out.append(typeByte(value))
        appendCString(key, into: &out)
        switch value {
        case .double(let d): appendUInt64(d.bitPattern, into: &out)
        case .string(let s), .javascript(let s): appendString(s, into: &out)
        case .document(let d): writeDocument(d, into: &out)
        case .array(let a): writeArray(a, into: &out)
        case .binary(let subtype, let data):
            if subtype == 2 {
                appendInt32(Int32(data.count + 4), into: &out)
                out.append(subtype)
                appendInt32(Int32(data.count), into: &out)
            } else {
                appendInt32(Int32(data.count), into: &out)
                out.append(subtype)
            }
            out.append(contentsOf: data)
        case .objectId(let oid): out.append(contentsOf: oid.bytes)
        case .bool(let b): out.append(b ? 1 : 0)
        case .date(let date): appendUInt64(UInt64(bitPattern: BSONWriter.milliseconds(date)), into: &out)
        case .null, .undefined, .minKey, .maxKey: break
        case .regex(let pattern, let options):
            appendCString(pattern, into: &out)
            appendCString(String(options.sorted()), into: &out)
        case .int32(let i): appendInt32(i, into: &out)
        case .timestamp(let t): appendUInt64(UInt64(t.seconds) << 32 | UInt64(t.increment), into: &out)
        case .int64(let i): appendUInt64(UInt64(bitPattern: i), into: &out)
        case .decimal128(let low, let high):
            appendUInt64(low, into: &out)
            appendUInt64(high, into: &out)
        }
    }

    static func milliseconds(_ date: Date) -> Int64 {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        guard ms.isFinite, ms > Double(Int64.min), ms < Double(Int64.max) else { return ms < 0 ? .min : .max }
        return Int64(ms)
    }

    private static func typeByte(_ value: BSONValue) -> UInt8 {
        switch value {
        case .double: 0x01
        case .string: 0x02
        case .document: 0x03
        case .array: 0x04
        case .binary: 0x05
        case .undefined: 0x06
        case .objectId: 0x07
        case .bool: 0x08
        case .date: 0x09
        case .null: 0x0A
        case .regex: 0x0B
        case .javascript: 0x0D
        case .int32: 0x10
        case .timestamp: 0x11
        case .int64: 0x12
        case .decimal128: 0x13
        case .minKey: 0xFF
        case .maxKey: 0x7F
        }
    }

    /// A C string: the key's UTF-8 bytes up to (not including) any NUL, which BSON keys cannot hold.
    private static func appendCString(_ s: String, into out: inout [UInt8]) {
        for byte in s.utf8 where byte != 0 { out.append(byte) }
        out.append(0)
    }

    private static func appendString(_ s: String, into out: inout [UInt8]) {
        let utf8 = s.utf8
        appendInt32(Int32(utf8.count + 1), into: &out)
        out.append(contentsOf: utf8)
        out.append(0)
    }

    private static func appendInt32(_ value: Int32, into out: inout [UInt8]) {
        let v = UInt32(bitPattern: value)
        out.append(UInt8(truncatingIfNeeded: v))
        out.append(UInt8(truncatingIfNeeded: v >> 8))
        out.append(UInt8(truncatingIfNeeded: v >> 16))
        out.append(UInt8(truncatingIfNeeded: v >> 24))
    }

    private static func appendUInt64(_ v: UInt64, into out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func patchLength(at start: Int, into out: inout [UInt8]) {
        let length = UInt32(out.count - start)
        out[start] = UInt8(truncatingIfNeeded: length)
        out[start + 1] = UInt8(truncatingIfNeeded: length >> 8)
        out[start + 2] = UInt8(truncatingIfNeeded: length >> 16)
        out[start + 3] = UInt8(truncatingIfNeeded: length >> 24)
    }
}

/// Parses BSON bytes into a `BSONDocument`, checking every length against the buffer.
enum BSONReader {
    static func corrupt(_ detail: String) -> MongoError {
        MongoError(code: .decoding, message: "corrupt BSON: \(detail)")
    }

    static func parse(_ buffer: UnsafeRawBufferPointer) throws -> BSONDocument {
        var offset = 0
        return try readDocument(buffer, &offset, depth: 0)
    }

    private static func readDocument(_ b: UnsafeRawBufferPointer, _ offset: inout Int, depth: Int) throws
        -> BSONDocument
    {
        var elements: [(key: String, value: BSONValue)] = []
        try readElements(b, &offset, depth: depth) { key, value in elements.append((key, value)) }
        return BSONDocument(uncheckedElements: elements)
    }

    private static func readArray(_ b: UnsafeRawBufferPointer, _ offset: inout Int, depth: Int) throws -> [BSONValue] {
        var values: [BSONValue] = []
        try readElements(b, &offset, depth: depth) { _, value in values.append(value) }
        return values
    }

    private static func readElements(
        _ b: UnsafeRawBufferPointer, _ offset: inout Int, depth: Int, _ add: (String, BSONValue) -> Void
    ) throws {
        guard depth < 100 else { throw corrupt("nested deeper than 100 levels") }
        let start = offset
        let length = Int(try readInt32(b, &offset))
        guard length >= 5, start + length <= b.count else { throw corrupt("document length \(length)") }
        let end = start + length - 1
        while offset < end {
            let type = b[offset]
            offset += 1
            let key = try readCString(b, &offset, end: end)
            add(key, try readValue(type: type, b, &offset, end: end, depth: depth))
        }
        guard offset == end, b[end] == 0 else { throw corrupt("document not terminated") }
        offset = end + 1
    }

    private static func readValue(type: UInt8, _ b: UnsafeRawBufferPointer, _ offset: inout Int, end: Int, depth: Int)
        throws -> BSONValue
    {
        switch type {
        case 0x01: return .double(Double(bitPattern: try readUInt64(b, &offset, end: end)))
        case 0x02: return .string(try readString(b, &offset, end: end))
        case 0x0E: return .string(try readString(b, &offset, end: end))  // symbol (deprecated)
        case 0x0D: return .javascript(try readString(b, &offset, end: end))
        case 0x03: return .document(try readDocument(b, &offset, depth: depth + 1))
        case 0x04: return .array(try readArray(b, &offset, depth: depth + 1))
        case 0x05:
            var length = Int(try readInt32(b, &offset, end: end))
            guard length >= 0, offset + 1 + length <= end else { throw corrupt("binary length \(length)") }
            let subtype = b[offset]
            offset += 1
            var dataStart = offset
            if subtype == 2 {
                guard length >= 4 else { throw corrupt("old binary length \(length)") }
                dataStart += 4
                length -= 4
            }
            let data = Data(UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + length)]))
            offset = dataStart + length
            return .binary(subtype: subtype, data)
        case 0x06: return .undefined
        case 0x07:
            guard offset + 12 <= end else { throw corrupt("short ObjectId") }
            let oid = ObjectId(unchecked: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + 12)]))
            offset += 12
            return .objectId(oid)
        case 0x08:
            guard offset < end else { throw corrupt("short bool") }
            defer { offset += 1 }
            return .bool(b[offset] != 0)
        case 0x09:
            let ms = Int64(bitPattern: try readUInt64(b, &offset, end: end))
            return .date(Date(timeIntervalSince1970: Double(ms) / 1000))
        case 0x0A: return .null
        case 0x0B:
            let pattern = try readCString(b, &offset, end: end)
            let options = try readCString(b, &offset, end: end)
            return .regex(pattern: pattern, options: options)
        case 0x10: return .int32(try readInt32(b, &offset, end: end))
        case 0x11:
            let v = try readUInt64(b, &offset, end: end)
            return .timestamp(BSONTimestamp(seconds: UInt32(v >> 32), increment: UInt32(truncatingIfNeeded: v)))
        case 0x12: return .int64(Int64(bitPattern: try readUInt64(b, &offset, end: end)))
        case 0x13:
            let low = try readUInt64(b, &offset, end: end)
            let high = try readUInt64(b, &offset, end: end)
            return .decimal128(low: low, high: high)
        case 0xFF: return .minKey
        case 0x7F: return .maxKey
        default: throw corrupt("unsupported BSON type 0x\(String(type, radix: 16))")
        }
    }

    private static func readInt32(_ b: UnsafeRawBufferPointer, _ offset: inout Int, end: Int? = nil) throws -> Int32 {
        guard offset + 4 <= (end ?? b.count) else { throw corrupt("short int32") }
        defer { offset += 4 }
        return Int32(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: Int32.self))
    }

    private static func readUInt64(_ b: UnsafeRawBufferPointer, _ offset: inout Int, end: Int) throws -> UInt64 {
        guard offset + 8 <= end else { throw corrupt("short 8-byte value") }
        defer { offset += 8 }
        return UInt64(littleEndian: b.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    private static func readCString(_ b: UnsafeRawBufferPointer, _ offset: inout Int, end: Int) throws -> String {
        var nul = offset
        while nul < end, b[nul] != 0 { nul += 1 }
        guard nul < end else { throw corrupt("unterminated key") }
        defer { offset = nul + 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: b[offset..<nul]), as: UTF8.self)
    }

    private static func readString(_ b: UnsafeRawBufferPointer, _ offset: inout Int, end: Int) throws -> String {
        let length = Int(try readInt32(b, &offset, end: end))
        guard length >= 1, offset + length <= end, b[offset + length - 1] == 0 else {
            throw corrupt("string length \(length)")
        }
        defer { offset += length }
        return String(decoding: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + length - 1)]), as: UTF8.self)
    }
}
