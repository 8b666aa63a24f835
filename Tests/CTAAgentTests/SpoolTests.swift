import CTACore
import Foundation
import Logging
import Testing

@testable import CTAAgent

@Suite("Spool: append, pending, acknowledge, reopen")
struct SpoolTests {
    @Test("records come back in seq order with their bytes, before and after a reopen")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        var epoch: SequenceEpoch
        do {
            let spool = try openCore(dir.spool)
            epoch = spool.epoch
            #expect(spool.recovery.createdEpoch)
            for expected in UInt64(1)...5 { #expect(try spool.appendTest() == expected) }
            let records = try spool.pending()
            #expect(records.map(\.seq) == [1, 2, 3, 4, 5])
            #expect(records.map(\.payload) == (1...5).map { testPayload(epoch: epoch, seq: $0) })
            #expect(try spool.acknowledge(seq: 2))
            #expect(try spool.acknowledge(seq: 4))
            #expect(try !spool.acknowledge(seq: 4), "a second acknowledgement is a no-op")
            #expect(try !spool.acknowledge(seq: 99), "an unknown seq is a no-op")
            #expect(try spool.pendingSeqs() == [1, 3, 5])
            #expect(try spool.pending(after: 1, limit: 1).map(\.seq) == [3])
            try spool.close()
        }
        let reopened = try openCore(dir.spool)
        #expect(reopened.epoch == epoch)
        #expect(!reopened.recovery.createdEpoch)
        #expect(reopened.recovery.damage.isEmpty)
        #expect(reopened.recovery.pendingRecords == 3)
        #expect(reopened.lastSeq == 5)
        let records = try reopened.pending()
        #expect(records.map(\.seq) == [1, 3, 5])
        #expect(records.map(\.payload) == [1, 3, 5].map { testPayload(epoch: epoch, seq: $0) })
        #expect(try reopened.appendTest() == 6)
    }

    @Test("group commit assigns consecutive seqs; a failing builder appends nothing and uses up no seq")
    func groupCommit() throws {
        struct Refused: Error {}
        let dir = TemporaryDirectory()
        let spool = try openCore(dir.spool)
        let range = try spool.append(count: 10) { epoch, seq, index in
            #expect(seq == UInt64(index) + 1)
            return testPayload(epoch: epoch, seq: seq)
        }
        #expect(range == 1...10)
        #expect(throws: Refused.self) {
            try spool.append(count: 3) { epoch, seq, index in
                if index == 2 { throw Refused() }
                return testPayload(epoch: epoch, seq: seq)
            }
        }
        #expect(try spool.appendTest() == 11)
        #expect(try spool.pendingSeqs() == Array(1...11))
        #expect(spool.pendingCount == 11)
    }

    @Test("seq keeps growing across reopens and after every segment holding records was deleted")
    func seqNeverReused() throws {
        let dir = TemporaryDirectory()
        let configuration = SpoolConfiguration(maximumSize: 1 << 20, segmentSize: 1024, maximumRecordSize: 512)
        do {
            let spool = try openCore(dir.spool, configuration)
            for _ in 0..<40 { try spool.appendTest(size: 200) }
            #expect(SpoolFiles.segments(in: dir.spool).count > 3, "small segments rotate")
            for seq in UInt64(1)...40 { try spool.acknowledge(seq: seq) }
            #expect(SpoolFiles.segments(in: dir.spool).count == 1, "acknowledged segments are deleted")
            #expect(spool.pendingCount == 0)
            try spool.close()
        }
        do {
            let spool = try openCore(dir.spool, configuration)
            #expect(try spool.pendingSeqs().isEmpty)
            #expect(spool.lastSeq == 40)
            #expect(try spool.appendTest(size: 200) == 41)
            for _ in 0..<10 { try spool.appendTest(size: 200) }
            for seq in UInt64(41)...51 { try spool.acknowledge(seq: seq) }
            try spool.close()
        }
        // Everything is acknowledged: only the newest segment is left, and it carries the counter.
        do {
            let spool = try openCore(dir.spool, configuration)
            #expect(spool.lastSeq == 51)
            #expect(SpoolFiles.segments(in: dir.spool).count == 1)
            #expect(try spool.appendTest(size: 200) == 52)
            try spool.acknowledge(seq: 52)
        }
        #expect(try openCore(dir.spool, configuration).lastSeq == 52)
    }

    @Test("acknowledging out of order deletes a segment only when all its records are acknowledged")
    func outOfOrderAcknowledgements() throws {
        let dir = TemporaryDirectory()
        let configuration = SpoolConfiguration(maximumSize: 1 << 20, segmentSize: 600, maximumRecordSize: 512)
        let spool = try openCore(dir.spool, configuration)
        for _ in 0..<12 { try spool.appendTest(size: 100) }
        let before = SpoolFiles.segments(in: dir.spool)
        #expect(before.count >= 3)
        for seq in stride(from: UInt64(12), through: 1, by: -1) where seq != 1 { try spool.acknowledge(seq: seq) }
        #expect(SpoolFiles.segments(in: dir.spool).first == before.first, "seq 1 still holds the first segment")
        #expect(try spool.pendingSeqs() == [1])
        try spool.acknowledge(seq: 1)
        #expect(SpoolFiles.segments(in: dir.spool) == [before.last!], "only the newest segment remains")
        #expect(
            !SpoolFiles.names(in: dir.spool).contains {
                $0.hasSuffix(".acks") && !before.last!.hasPrefix(String($0.dropLast(5)))
            })
    }

    @Test("acknowledgements written before a crash are not replayed")
    func acknowledgementsSurviveCrash() throws {
        let dir = TemporaryDirectory()
        do {
            let spool = try openCore(dir.spool, SpoolConfiguration(acknowledgementSyncInterval: 1000))
            for _ in 0..<20 { try spool.appendTest() }
            for seq in UInt64(1)...15 { try spool.acknowledge(seq: seq) }
            // Abandoned without close(): no final sync, like a process that was killed.
        }
        let spool = try openCore(dir.spool)
        #expect(try spool.pendingSeqs() == Array(16...20))
    }

    @Test("the epoch is stable across reopens and new after the spool was wiped")
    func epochLifecycle() throws {
        let dir = TemporaryDirectory()
        let first = try openCore(dir.spool)
        let epoch = first.epoch
        try first.appendTest()
        try first.close()
        #expect(try openCore(dir.spool).epoch == epoch)

        try FileManager.default.removeItem(atPath: dir.spool)
        let recorder = LogRecorder()
        let wiped = try openCore(dir.spool, recorder: recorder)
        #expect(wiped.epoch != epoch)
        #expect(wiped.recovery.createdEpoch)
        #expect(try wiped.appendTest() == 1)
        #expect(recorder.contains(.info, "Created a new spool"))
    }

    @Test("a corrupt epoch file is restored from the segment headers; no segments at all means a new epoch")
    func epochRecovery() throws {
        let dir = TemporaryDirectory()
        let epoch: SequenceEpoch
        do {
            let spool = try openCore(dir.spool)
            epoch = spool.epoch
            for _ in 0..<3 { try spool.appendTest() }
            try spool.close()
        }
        SpoolFiles.write(Array(repeating: 0x41, count: 28), to: dir.spool + "/epoch")
        do {
            let recorder = LogRecorder()
            let spool = try openCore(dir.spool, recorder: recorder)
            #expect(spool.epoch == epoch)
            #expect(try spool.pendingSeqs() == [1, 2, 3])
            #expect(recorder.contains(.warning, "restored it from the segments"))
            try spool.close()
        }
        #expect(try openCore(dir.spool).epoch == epoch, "the epoch file was rewritten")

        for name in SpoolFiles.segments(in: dir.spool) {
            try FileManager.default.removeItem(atPath: dir.spool + "/" + name)
        }
        let recorder = LogRecorder()
        let lost = try openCore(dir.spool, recorder: recorder)
        #expect(lost.epoch != epoch)
        #expect(lost.recovery.createdEpoch)
        #expect(lost.recovery.damage.map(\.kind) == [.lostSpool])
        #expect(try lost.appendTest() == 1)
        #expect(recorder.contains(.warning, "starting a new epoch at seq 1"))
    }

    @Test("a full spool refuses appends with a typed error until acknowledgements free space")
    func fullSpool() throws {
        let dir = TemporaryDirectory()
        let configuration = SpoolConfiguration(maximumSize: 4096, segmentSize: 1024, maximumRecordSize: 512)
        let spool = try openCore(dir.spool, configuration)
        var appended: [UInt64] = []
        let error = try #require(throws: SpoolError.self) {
            while true { appended.append(try spool.appendTest(size: 200)) }
        }
        #expect(error.code == .full)
        #expect(appended.count >= 10)
        #expect(spool.size <= 4096)
        #expect(try spool.pendingSeqs() == appended, "the refused append left nothing behind")
        let next = appended.last! + 1

        for seq in appended { try spool.acknowledge(seq: seq) }
        #expect(try spool.appendTest(size: 200) == next, "space is back and the refused seq is given out again")

        let tooLarge = try #require(throws: SpoolError.self) { try spool.appendTest(size: 600) }
        #expect(tooLarge.code == .recordTooLarge)
    }

    @Test("a fully acknowledged newest segment is rotated away when the spool is full")
    func fullWithAcknowledgedNewestSegment() throws {
        let dir = TemporaryDirectory()
        let configuration = SpoolConfiguration(maximumSize: 2048, segmentSize: 1 << 20, maximumRecordSize: 512)
        let spool = try openCore(dir.spool, configuration)
        var appended: [UInt64] = []
        #expect(throws: SpoolError.self) { while true { appended.append(try spool.appendTest(size: 200)) } }
        #expect(SpoolFiles.segments(in: dir.spool).count == 1)
        for seq in appended { try spool.acknowledge(seq: seq) }
        #expect(try spool.appendTest(size: 200) == appended.last! + 1)
        #expect(SpoolFiles.segments(in: dir.spool).count == 1)
        #expect(try spool.pendingSeqs() == [appended.last! + 1])
    }

    @Test("a second open of the same directory is refused while the first is open")
    func exclusive() throws {
        let dir = TemporaryDirectory()
        let first = try openCore(dir.spool)
        let error = #expect(throws: SpoolError.self) {
            _ = try openCore(dir.spool, SpoolConfiguration(lockTimeout: .milliseconds(50)))
        }
        #expect(error?.code == .busy)
        try first.close()
        _ = try openCore(dir.spool)
    }

    @Test("a configuration that cannot work is refused")
    func badConfiguration() {
        let dir = TemporaryDirectory()
        let error = #expect(throws: SpoolError.self) {
            _ = try openCore(dir.spool, SpoolConfiguration(maximumSize: 100, maximumRecordSize: 4096))
        }
        #expect(error?.code == .invalidConfiguration)
    }

    @Test("CRC-32C matches the standard check value")
    func checksum() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum(Array(repeating: UInt8(0), count: 32)) == 0x8A91_36AA)
    }
}
