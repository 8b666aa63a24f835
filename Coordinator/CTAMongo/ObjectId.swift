internal import CMongoC
public import Foundation

/// A MongoDB ObjectId: 12 bytes, a timestamp, a per-process random value and a counter.
///
/// Encodes as a BSON ObjectId through ``BSONEncoder``; through other encoders (JSON) as its 24-digit hex string.
public struct ObjectId: Sendable, Hashable, Comparable, CustomStringConvertible {
    // The 12 bytes as two big-endian integers: no allocation per id.
    private let head: UInt64
    private let tail: UInt32

    /// A new, unique ObjectId.
    public init() {
        var oid = bson_oid_t()
        bson_oid_init(&oid, nil)
        self = withUnsafeBytes(of: &oid.bytes) { ObjectId(unchecked: $0) }
    }

    /// An ObjectId from its 12 bytes; `nil` if `bytes` is not 12 long.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 12 else { return nil }
        self = bytes.withUnsafeBytes { ObjectId(unchecked: $0) }
    }

    /// Reads 12 bytes; the caller guarantees there are at least 12.
    init(unchecked raw: UnsafeRawBufferPointer) {
        var head: UInt64 = 0
        for i in 0..<8 { head = head << 8 | UInt64(raw[i]) }
        var tail: UInt32 = 0
        for i in 8..<12 { tail = tail << 8 | UInt32(raw[i]) }
        self.head = head
        self.tail = tail
    }

    /// The 12 bytes, big-endian as on the wire.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(12)
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: head >> UInt64(shift)))
        }
        for shift in stride(from: 24, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: tail >> UInt32(shift)))
        }
        return out
    }

    /// An ObjectId from its 24-digit hex form; `nil` if `hex` is not one.
    public init?(_ hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 24 else { return nil }
        var result = [UInt8]()
        result.reserveCapacity(12)
        var index = 0
        while index < 24 {
            guard let hi = Self.nibble(utf8[index]), let lo = Self.nibble(utf8[index + 1]) else { return nil }
            result.append(hi << 4 | lo)
            index += 2
        }
        self = result.withUnsafeBytes { ObjectId(unchecked: $0) }
    }

    /// The time encoded in the first four bytes (second precision).
    public var timestamp: Date {
        let seconds = UInt32(truncatingIfNeeded: head >> 32)
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }

    /// The 24-digit lower-case hex form.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(24)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func < (lhs: ObjectId, rhs: ObjectId) -> Bool {
        (lhs.head, lhs.tail) < (rhs.head, rhs.tail)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension ObjectId: Codable {
    public init(from decoder: any Decoder) throws {
        if let bson = decoder as? _BSONDecoder {
            self = try bson.decodeObjectId()
            return
        }
        let container = try decoder.singleValueContainer()
        let hex = try container.decode(String.self)
        guard let oid = ObjectId(hex) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ObjectId: \(hex)")
        }
        self = oid
    }

    public func encode(to encoder: any Encoder) throws {
        if let bson = encoder as? _BSONEncoder {
            bson.encodeBSONValue(.objectId(self))
            return
        }
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}
