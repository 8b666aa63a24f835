import CTACore
import Foundation

/// CRC-32C (Castagnoli, the polynomial of iSCSI and ext4 metadata), table-driven, eight bytes at a time.
///
/// Chosen over the zlib CRC-32 for its better error detection on the short records the spool writes; the value of
/// `"123456789"` is `0xE3069283`.
enum CRC32C {
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for n in 0..<256 {
            var c = UInt32(n)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            tables[0][n] = c
        }
        for n in 0..<256 {
            var c = tables[0][n]
            for k in 1..<8 {
                c = tables[0][Int(c & 0xFF)] ^ (c >> 8)
                tables[k][n] = c
            }
        }
        return tables
    }()

    /// The checksum of `bytes`, continuing from `crc` (0 to start).
    static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        var i = 0
        let count = bytes.count
        tables.withUnsafeBufferPointer { t in
            let t0 = t[0]
            let t1 = t[1]
            let t2 = t[2]
            let t3 = t[3]
            let t4 = t[4]
            let t5 = t[5]
            let t6 = t[6]
            let t7 = t[7]
            while count - i >= 8 {
                let lo =
                    c
                    ^ (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16
                        | UInt32(bytes[i + 3]) << 24)
                c =
                    t7[Int(lo & 0xFF)] ^ t6[Int((lo >> 8) & 0xFF)] ^ t5[Int((lo >> 16) & 0xFF)] ^ t4[Int(lo >> 24)]
                    ^ t3[Int(bytes[i + 4])] ^ t2[Int(bytes[i + 5])] ^ t1[Int(bytes[i + 6])] ^ t0[Int(bytes[i + 7])]
                i += 8
            }
            while i < count {
                c = t0[Int((c ^ UInt32(bytes[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    /// The checksum of `bytes`.
    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        if let crc = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0)) }) { return crc }
        return Array(bytes).withUnsafeBytes { checksum($0) }
    }
}

/// The on-disk layout of the spool's files. All integers are little-endian.
///
/// The spool directory holds:
/// - `epoch`: the ``SequenceEpoch`` (28 bytes: magic `CTAEPOCH`, the 16 UUID bytes, CRC-32C of the 24 before).
///   Written to `epoch.tmp`, synced, renamed over `epoch`, then the directory is synced.
/// - `segment-<first seq, 20 digits>.log`: append-only segments of records, in `seq` order. A segment starts with
///   a 44-byte header: magic `CTASPOOL`, format version (UInt32, 1), reserved (UInt32, 0), the epoch (16 bytes),
///   the first `seq` the segment may hold (UInt64), CRC-32C of the 40 bytes before. Then records, each:
///   ```
///   offset 0  magic        4 bytes  FF 53 50 4C ("\u{FF}SPL"; 0xFF never occurs in UTF-8 text)
///   offset 4  length       UInt32   payload bytes
///   offset 8  seq          UInt64
///   offset 16 checksum     UInt32   CRC-32C of bytes 4..<16 and of the payload
///   offset 20 payload      length bytes (the encoded envelope)
///   ```
/// - `segment-<first seq>.acks`: the acknowledgements of that segment's records, 12 bytes each: the `seq`
///   (UInt64) and CRC-32C of those 8 bytes. Order does not matter; duplicates are harmless.
/// - `*.damaged`, `*.foreign`: segments set aside by recovery (unreadable header, or another epoch); never read
///   again, kept for inspection.
enum SpoolFormat {
    static let epochFileName = "epoch"
    static let epochMagic: [UInt8] = Array("CTAEPOCH".utf8)
    static let epochFileSize = 28

    static let segmentMagic: [UInt8] = Array("CTASPOOL".utf8)
    static let formatVersion: UInt32 = 1
    static let segmentHeaderSize = 44

    static let recordMagic: [UInt8] = [0xFF, 0x53, 0x50, 0x4C]
    static let recordHeaderSize = 20

    static let acknowledgementSize = 12

    /// The seqs a record or a segment header may carry. Anything above is treated as damage, which also keeps the
    /// counter arithmetic far from overflow whatever a file says.
    static let validSeqs: ClosedRange<UInt64> = 1...(UInt64(1) << 62)

    static func segmentName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return "segment-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".log"
    }

    static func acknowledgementName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return "segment-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".acks"
    }

    /// The first seq named by a segment or acknowledgement file name with `suffix`, or nil.
    static func firstSeq(ofFileNamed name: String, suffix: String) -> UInt64? {
        guard name.hasPrefix("segment-"), name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst("segment-".count).dropLast(suffix.count)
        guard digits.count == 20, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    // MARK: Epoch

    static func encodeEpoch(_ epoch: SequenceEpoch) -> [UInt8] {
        var bytes = epochMagic
        bytes += uuidBytes(epoch.uuid)
        appendLE(checksum(bytes), to: &bytes)
        return bytes
    }

    static func decodeEpoch(_ bytes: [UInt8]) -> SequenceEpoch? {
        guard bytes.count == epochFileSize, Array(bytes[0..<8]) == epochMagic,
            readLE(UInt32.self, bytes, at: 24) == checksum(bytes[0..<24])
        else { return nil }
        return SequenceEpoch(uuid(from: bytes[8..<24]))
    }

    // MARK: Segment header

    struct SegmentHeader: Equatable {
        var epoch: SequenceEpoch
        var firstSeq: UInt64
    }

    static func encodeSegmentHeader(_ header: SegmentHeader) -> [UInt8] {
        var bytes = segmentMagic
        appendLE(formatVersion, to: &bytes)
        appendLE(UInt32(0), to: &bytes)
        bytes += uuidBytes(header.epoch.uuid)
        appendLE(header.firstSeq, to: &bytes)
        appendLE(checksum(bytes), to: &bytes)
        return bytes
    }

    static func decodeSegmentHeader(_ bytes: ArraySlice<UInt8>) -> SegmentHeader? {
        guard bytes.count >= segmentHeaderSize else { return nil }
        let b = bytes.startIndex
        guard bytes[b..<b + 8].elementsEqual(segmentMagic),
            readLE(UInt32.self, bytes, at: b + 8) == formatVersion,
            readLE(UInt32.self, bytes, at: b + 40) == checksum(bytes[b..<b + 40])
        else { return nil }
        return SegmentHeader(
            epoch: SequenceEpoch(uuid(from: bytes[b + 16..<b + 32])), firstSeq: readLE(UInt64.self, bytes, at: b + 32))
    }

    // MARK: Records

    /// Appends one record to `buffer`.
    static func appendRecord(seq: UInt64, payload: [UInt8], to buffer: inout [UInt8]) {
        buffer += recordMagic
        let start = buffer.count
        appendLE(UInt32(payload.count), to: &buffer)
        appendLE(seq, to: &buffer)
        var crc = buffer.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start..<start + 12])) }
        crc = payload.withUnsafeBytes { CRC32C.checksum($0, continuing: crc) }
        appendLE(crc, to: &buffer)
        buffer += payload
    }

    /// A record read back: its seq, and where its payload lies in the segment.
    struct RecordLocation: Equatable {
        var seq: UInt64
        var offset: Int
        var length: Int
        /// The offset just past the record.
        var end: Int { offset + recordHeaderSize + length }
    }

    /// The record at `offset` of `bytes`, if a whole, intact one starts there.
    static func record(in bytes: [UInt8], at offset: Int, maximumLength: Int) -> RecordLocation? {
        guard offset >= 0, bytes.count - offset >= recordHeaderSize,
            bytes[offset] == recordMagic[0], bytes[offset + 1] == recordMagic[1],
            bytes[offset + 2] == recordMagic[2], bytes[offset + 3] == recordMagic[3]
        else { return nil }
        let length = Int(readLE(UInt32.self, bytes, at: offset + 4))
        guard length <= maximumLength, bytes.count - offset - recordHeaderSize >= length else { return nil }
        let seq = readLE(UInt64.self, bytes, at: offset + 8)
        let stored = readLE(UInt32.self, bytes, at: offset + 16)
        let crc = bytes.withUnsafeBytes { raw in
            let header = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[offset + 4..<offset + 16]))
            return CRC32C.checksum(
                UnsafeRawBufferPointer(rebasing: raw[offset + recordHeaderSize..<offset + recordHeaderSize + length]),
                continuing: header)
        }
        guard crc == stored else { return nil }
        return RecordLocation(seq: seq, offset: offset, length: length)
    }

    /// The offset of the next possible record start (the record magic) at or after `offset`, or nil.
    static func nextMagic(in bytes: [UInt8], from offset: Int) -> Int? {
        var i = offset
        while i + 4 <= bytes.count {
            if bytes[i] == 0xFF && bytes[i + 1] == recordMagic[1] && bytes[i + 2] == recordMagic[2]
                && bytes[i + 3] == recordMagic[3]
            {
                return i
            }
            i += 1
        }
        return nil
    }

    // MARK: Acknowledgements

    static func encodeAcknowledgement(_ seq: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(acknowledgementSize)
        appendLE(seq, to: &bytes)
        appendLE(checksum(bytes), to: &bytes)
        return bytes
    }

    /// The acknowledged seqs in an acknowledgement file; entries with a bad checksum are skipped, and `valid`
    /// tells how many bytes hold whole entries.
    static func decodeAcknowledgements(_ bytes: [UInt8]) -> (seqs: [UInt64], damaged: Int, wholeBytes: Int) {
        var seqs: [UInt64] = []
        var damaged = 0
        let whole = bytes.count - bytes.count % acknowledgementSize
        var offset = 0
        while offset < whole {
            let seq = readLE(UInt64.self, bytes, at: offset)
            if readLE(UInt32.self, bytes, at: offset + 8) == checksum(bytes[offset..<offset + 8]) {
                seqs.append(seq)
            } else {
                damaged += 1
            }
            offset += acknowledgementSize
        }
        return (seqs, damaged, whole)
    }

    // MARK: Helpers

    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 { CRC32C.checksum(bytes) }

    static func appendLE<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Reads a little-endian integer at the absolute index `offset` of `bytes`.
    static func readLE<T: FixedWidthInteger & UnsignedInteger, C: RandomAccessCollection<UInt8>>(
        _: T.Type, _ bytes: C, at offset: Int
    ) -> T where C.Index == Int {
        var value: T = 0
        for k in 0..<(T.bitWidth / 8) { value |= T(bytes[offset + k]) << (8 * k) }
        return value
    }

    static func uuidBytes(_ uuid: UUID) -> [UInt8] {
        withUnsafeBytes(of: uuid.uuid) { Array($0) }
    }

    static func uuid(from bytes: some Collection<UInt8>) -> UUID {
        let b = Array(bytes)
        return UUID(
            uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
        )
    }
}
