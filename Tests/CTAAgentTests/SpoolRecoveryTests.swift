import CTACore
import Foundation
import Logging
import Testing

@testable import CTAAgent

@Suite("Spool: recovery from torn and corrupt files")
struct SpoolRecoveryTests {
    /// Writes `count` records, closes the spool, and returns the newest segment's path and the byte offset at which
    /// each record starts.
    private func prepare(_ dir: TemporaryDirectory, count: Int, size: Int = 64) throws -> (
        segment: String, starts: [Int]
    ) {
        let spool = try openCore(dir.spool)
        var starts: [Int] = []
        for _ in 0..<count {
            starts.append(spool.size)  // one segment (the default size is far larger): its size is the next offset
            try spool.appendTest(size: size)
        }
        try spool.close()
        return (try #require(SpoolFiles.newestSegment(in: dir.spool)), starts)
    }

    @Test(
        "a record cut off mid-write is truncated away with a warning, the others are replayed",
        arguments: [1, 10, 19, 40, 83])
    func tornTail(cut: Int) throws {
        let dir = TemporaryDirectory()
        let (segment, starts) = try prepare(dir, count: 5)
        let fullSize = SpoolFiles.size(segment)
        #expect(cut < fullSize - starts[4])
        SpoolFiles.truncate(segment, to: starts[4] + cut)

        let recorder = LogRecorder()
        let spool = try openCore(dir.spool, recorder: recorder)
        #expect(try spool.pendingSeqs() == [1, 2, 3, 4])
        #expect(spool.recovery.damage.map(\.kind) == [.tornTail])
        #expect(spool.recovery.damage.first?.offset == starts[4])
        #expect(SpoolFiles.size(segment) == starts[4], "the tail was cut off the file")
        #expect(recorder.contains(.warning, "Spool damage"))
        #expect(try spool.appendTest() == 5, "the torn record was never durable, so its seq is given out again")
        try spool.close()

        let again = try openCore(dir.spool)
        #expect(again.recovery.damage.isEmpty, "the repair is durable")
        #expect(try again.pendingSeqs() == [1, 2, 3, 4, 5])
    }

    @Test(
        "garbage after the last record is cut off",
        arguments: [[UInt8](repeating: 0, count: 4096), [0xFF, 0x53, 0x50, 0x4C, 9, 9], Array("{\"half\":".utf8)])
    func garbageTail(garbage: [UInt8]) throws {
        let dir = TemporaryDirectory()
        let (segment, _) = try prepare(dir, count: 3)
        let size = SpoolFiles.size(segment)
        SpoolFiles.append(garbage, to: segment)
        let spool = try openCore(dir.spool)
        #expect(try spool.pendingSeqs() == [1, 2, 3])
        #expect(spool.recovery.damage.map(\.kind) == [.tornTail])
        #expect(SpoolFiles.size(segment) == size)
        #expect(try spool.appendTest() == 4)
    }

    @Test(
        "a flipped bit in a middle record is reported and skipped; the records after it are kept",
        arguments: [0, 5, 9, 17, 30])
    func corruptMiddle(byte: Int) throws {
        let dir = TemporaryDirectory()
        let (segment, starts) = try prepare(dir, count: 5)
        var bytes = SpoolFiles.read(segment)
        bytes[starts[2] + byte] ^= 0x10
        SpoolFiles.write(bytes, to: segment)

        let spool = try openCore(dir.spool)
        #expect(try spool.pendingSeqs() == [1, 2, 4, 5])
        let damage = try #require(spool.recovery.damage.first)
        #expect(spool.recovery.damage.count == 1)
        #expect(damage.kind == .corruptRecords)
        #expect(damage.offset == starts[2])
        #expect(damage.length == starts[3] - starts[2])
        #expect(damage.missingSeqs == 3...3)
        #expect(try spool.appendTest() == 6, "seq 3 was durable once: it is not given out again")
        let payloads = try spool.pending().map { seq(inPayload: $0.payload) }
        #expect(payloads == [1, 2, 4, 5, 6])
    }

    @Test("corrupt records in an older segment are skipped without touching it")
    func corruptOlderSegment() throws {
        let dir = TemporaryDirectory()
        let configuration = SpoolConfiguration(maximumSize: 1 << 20, segmentSize: 400, maximumRecordSize: 512)
        do {
            let spool = try openCore(dir.spool, configuration)
            for _ in 0..<12 { try spool.appendTest(size: 100) }
            try spool.close()
        }
        let first = dir.spool + "/" + SpoolFiles.segments(in: dir.spool)[0]
        var bytes = SpoolFiles.read(first)
        #expect(bytes.count >= 44 + 2 * 120)
        bytes[bytes.count - 10] ^= 0xFF  // inside the last record of the first segment
        SpoolFiles.write(bytes, to: first)
        let spool = try openCore(dir.spool, configuration)
        #expect(spool.recovery.damage.map(\.kind) == [.tornTail])
        #expect(SpoolFiles.size(first) == bytes.count, "an older segment is never rewritten")
        let seqs = try spool.pendingSeqs()
        #expect(seqs.count == 11)
        #expect(seqs.last == 12)
    }

    @Test("a segment whose header is unreadable is set aside; an empty one from a crash during creation is removed")
    func damagedHeaders() throws {
        let dir = TemporaryDirectory()
        let configuration = SpoolConfiguration(maximumSize: 1 << 20, segmentSize: 400, maximumRecordSize: 512)
        do {
            let spool = try openCore(dir.spool, configuration)
            for _ in 0..<12 { try spool.appendTest(size: 100) }
            try spool.close()
        }
        let segments = SpoolFiles.segments(in: dir.spool)
        let first = dir.spool + "/" + segments[0]
        var bytes = SpoolFiles.read(first)
        bytes[3] ^= 0x01
        SpoolFiles.write(bytes, to: first)
        SpoolFiles.write([1, 2, 3], to: dir.spool + "/segment-00000000000000000999.log")

        let spool = try openCore(dir.spool, configuration)
        #expect(spool.recovery.damage.map(\.kind) == [.damagedSegment])
        #expect(SpoolFiles.names(in: dir.spool).contains(segments[0] + ".damaged"))
        #expect(!SpoolFiles.names(in: dir.spool).contains("segment-00000000000000000999.log"))
        let seqs = try spool.pendingSeqs()
        #expect(!seqs.isEmpty && seqs.last == 12 && seqs.first! > 1)
        #expect(try spool.appendTest() == 13)
    }

    @Test("a segment of another epoch is set aside, the spool's own records are kept")
    func foreignSegment() throws {
        let mine = TemporaryDirectory()
        let other = TemporaryDirectory()
        do {
            let spool = try openCore(mine.spool)
            for _ in 0..<3 { try spool.appendTest() }
            try spool.close()
            let stranger = try openCore(other.spool)
            for _ in 0..<9 { try stranger.appendTest() }
            try stranger.close()
        }
        let strangerSegment = try #require(SpoolFiles.newestSegment(in: other.spool))
        let bytes = SpoolFiles.read(strangerSegment)
        SpoolFiles.write(bytes, to: mine.spool + "/segment-00000000000000000002.log")
        let spool = try openCore(mine.spool)
        #expect(spool.recovery.damage.map(\.kind) == [.foreignSegment])
        #expect(spool.recovery.damage.first?.length == bytes.count)
        #expect(SpoolFiles.names(in: mine.spool).contains("segment-00000000000000000002.log.foreign"))
        #expect(try spool.pendingSeqs() == [1, 2, 3])
        #expect(try spool.appendTest() == 4)
    }

    @Test("an intact-looking record with an absurd seq is damage, not a counter near overflow")
    func absurdSeq() throws {
        let dir = TemporaryDirectory()
        let (segment, _) = try prepare(dir, count: 2)
        var record: [UInt8] = []
        SpoolFormat.appendRecord(seq: .max, payload: Array("{}".utf8), to: &record)
        SpoolFiles.append(record, to: segment)
        let spool = try openCore(dir.spool)
        #expect(spool.recovery.damage.map(\.kind) == [.tornTail])
        #expect(try spool.appendTest() == 3)
    }

    @Test("damaged acknowledgement entries are ignored: their records are replayed, the others stay acknowledged")
    func damagedAcknowledgements() throws {
        let dir = TemporaryDirectory()
        do {
            let spool = try openCore(dir.spool)
            for _ in 0..<6 { try spool.appendTest() }
            for seq in UInt64(1)...4 { try spool.acknowledge(seq: seq) }
            try spool.close()
        }
        let acks = try #require(SpoolFiles.names(in: dir.spool).first { $0.hasSuffix(".acks") })
        var bytes = SpoolFiles.read(dir.spool + "/" + acks)
        #expect(bytes.count == 4 * 12)
        bytes[12] ^= 0x04  // the entry for seq 2
        SpoolFiles.write(bytes + [7, 7, 7], to: dir.spool + "/" + acks)  // and a partial entry at the end
        let spool = try openCore(dir.spool)
        #expect(try spool.pendingSeqs() == [2, 5, 6])
        #expect(spool.recovery.damage.map(\.kind) == [.damagedAcknowledgements])
        try spool.acknowledge(seq: 5)
        try spool.close()
        #expect(try openCore(dir.spool).pendingSeqs() == [2, 6], "entries written after the repair line up")
    }

    @Test("random bytes in place of a segment never crash the open")
    func randomGarbage() throws {
        var random = SplitMix64(seed: 0xC7A5_9001)
        for round in 0..<30 {
            let dir = TemporaryDirectory()
            do {
                let spool = try openCore(dir.spool)
                for _ in 0..<8 { try spool.appendTest(size: 40) }
                try spool.close()
            }
            let segment = try #require(SpoolFiles.newestSegment(in: dir.spool))
            var bytes = SpoolFiles.read(segment)
            for _ in 0..<(1 + round % 5) {
                let at = Int.random(in: 0..<bytes.count, using: &random)
                bytes[at] = UInt8.random(in: 0...255, using: &random)
            }
            if round % 3 == 0 { bytes.removeLast(Int.random(in: 0..<bytes.count, using: &random)) }
            SpoolFiles.write(bytes, to: segment)
            let spool = try openCore(dir.spool)
            let seqs = try spool.pendingSeqs()
            #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count)
            #expect(seqs.allSatisfy { (1...8).contains($0) })
            for record in try spool.pending() { #expect(seq(inPayload: record.payload) == record.seq) }
            let next = try spool.appendTest()
            #expect(next > (seqs.last ?? 0))
        }
    }
}
