import CTACore
import Foundation
import Testing

@testable import CTAAgent

@Suite("Spool: randomized against a model")
struct SpoolModelTests {
    /// What the spool should hold.
    private struct Model {
        var pending: [UInt64: [UInt8]] = [:]
        var lastSeq: UInt64 = 0
        /// Acknowledgements since the last point at which all were synced (close, reopen).
        var recentAcknowledgements: [UInt64] = []
    }

    @Test(
        "random appends, acknowledgements, reopens, crashes, torn tails and lost unsynced acknowledgements",
        arguments: [UInt64(1), 0xDEAD_BEEF, 20_251_122])
    func randomized(seed: UInt64) throws {
        print("spool model test seed \(seed)")
        var random = SplitMix64(seed: seed)
        let dir = TemporaryDirectory()
        let interval = 8
        let configuration = SpoolConfiguration(
            maximumSize: 1 << 20, segmentSize: 2048, maximumRecordSize: 1024, acknowledgementSyncInterval: interval)
        var spool: SpoolCore? = try openCore(dir.spool, configuration)
        var model = Model()
        let epoch = spool!.epoch
        var counts: [String: Int] = [:]

        func reopen(_ what: String) throws -> SpoolCore {
            let opened = try openCore(dir.spool, configuration)
            #expect(opened.epoch == epoch, "\(what): epoch")
            #expect(opened.lastSeq == model.lastSeq, "\(what): lastSeq")
            return opened
        }

        func checkExact(_ core: SpoolCore, _ what: String) throws {
            let records = try core.pending()
            #expect(records.map(\.seq) == model.pending.keys.sorted(), "\(what): pending seqs")
            for record in records { #expect(record.payload == model.pending[record.seq], "\(what): payload") }
            #expect(core.pendingCount == model.pending.count)
        }

        for step in 0..<400 {
            // No local reference to the spool: a crash step must be able to drop the last one.
            let roll = Int.random(in: 0..<100, using: &random)
            switch roll {
            case 0..<35:
                counts["append", default: 0] += 1
                let count = Int.random(in: 1...6, using: &random)
                let sizes = (0..<count).map { _ in Int.random(in: 60...400, using: &random) }
                let range = try spool!.append(count: count) { epoch, seq, index in
                    testPayload(epoch: epoch, seq: seq, size: sizes[index])
                }
                #expect(range.lowerBound == model.lastSeq + 1 && range.count == count)
                for (index, seq) in range.enumerated() {
                    model.pending[seq] = testPayload(epoch: epoch, seq: seq, size: sizes[index])
                }
                model.lastSeq = range.upperBound
            case 35..<70:
                counts["acknowledge", default: 0] += 1
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    guard let seq = model.pending.keys.randomElement(using: &random) else { break }
                    #expect(try spool!.acknowledge(seq: seq))
                    model.pending[seq] = nil
                    model.recentAcknowledgements.append(seq)
                }
            case 70..<74:
                counts["acknowledge unknown", default: 0] += 1
                let seq = UInt64.random(in: 0...(model.lastSeq + 3), using: &random)
                if model.pending[seq] == nil { #expect(try !spool!.acknowledge(seq: seq)) }
            case 74..<80:
                counts["pending window", default: 0] += 1
                let after = UInt64.random(in: 0...(model.lastSeq + 1), using: &random)
                let limit = Int.random(in: 1...20, using: &random)
                let expected = Array(model.pending.keys.filter { $0 > after }.sorted().prefix(limit))
                #expect(try spool!.pending(after: after, limit: limit).map(\.seq) == expected)
            case 80..<85:
                counts["close and reopen", default: 0] += 1
                try spool!.close()
                spool = nil
                spool = try reopen("reopen")
                #expect(spool!.recovery.damage.isEmpty)
                model.recentAcknowledgements = []
                try checkExact(spool!, "reopen at step \(step)")
            case 85..<90:
                counts["crash", default: 0] += 1
                spool = nil  // abandoned: no close, no final sync
                spool = try reopen("crash")
                #expect(spool!.recovery.damage.isEmpty)
                model.recentAcknowledgements = []
                try checkExact(spool!, "crash at step \(step)")
            case 90..<95:
                counts["crash with torn tail", default: 0] += 1
                spool = nil
                let segment = try #require(SpoolFiles.newestSegment(in: dir.spool))
                var record: [UInt8] = []
                SpoolFormat.appendRecord(
                    seq: model.lastSeq + 1, payload: testPayload(epoch: epoch, seq: model.lastSeq + 1, size: 300),
                    to: &record)
                let tail =
                    Bool.random(using: &random)
                    ? Array(record.prefix(Int.random(in: 1..<record.count, using: &random)))
                    : (0..<Int.random(in: 1...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random)
                    }
                SpoolFiles.append(tail, to: segment)
                spool = try reopen("torn tail")
                #expect(spool!.recovery.damage.allSatisfy { $0.kind == .tornTail }, "\(spool!.recovery.damage)")
                model.recentAcknowledgements = []
                try checkExact(spool!, "torn tail at step \(step)")
            default:
                // A power loss: the acknowledgements not yet synced may be gone. Emulated by removing the entries
                // of the last (interval - 1) acknowledgements since the last full sync from their files.
                counts["power loss of unsynced acknowledgements", default: 0] += 1
                spool = nil
                let lost = Set(model.recentAcknowledgements.suffix(interval - 1))
                for name in SpoolFiles.names(in: dir.spool) where name.hasSuffix(".acks") {
                    let path = dir.spool + "/" + name
                    let bytes = SpoolFiles.read(path)
                    var kept: [UInt8] = []
                    for start in stride(from: 0, to: bytes.count - bytes.count % 12, by: 12) {
                        let entry = Array(bytes[start..<start + 12])
                        let seq = SpoolFormat.readLE(UInt64.self, entry, at: 0)
                        if !lost.contains(seq) { kept += entry }
                    }
                    SpoolFiles.write(kept, to: path)
                }
                let reopened = try reopen("power loss")
                let records = try reopened.pending()
                let replayed = Set(records.map(\.seq)).subtracting(model.pending.keys)
                #expect(replayed.isSubset(of: lost), "only acknowledgements that may be unsynced come back")
                #expect(replayed.count <= interval - 1)
                #expect(Set(model.pending.keys).isSubset(of: Set(records.map(\.seq))), "nothing pending was lost")
                counts["acknowledged records replayed", default: 0] += replayed.count
                for record in records where replayed.contains(record.seq) {
                    #expect(record.payload == testPayload(epoch: epoch, seq: record.seq, size: record.payload.count))
                    model.pending[record.seq] = record.payload
                }
                model.recentAcknowledgements = []
                spool = reopened
                try checkExact(reopened, "power loss at step \(step)")
            }
            #expect(spool!.pendingCount == model.pending.count, "step \(step)")
            #expect(spool!.lastSeq == model.lastSeq, "step \(step)")
        }
        // Every kind of step ran, and some power losses did bring acknowledged records back.
        #expect(counts.count == 9, "\(counts)")
        print("spool model test seed \(seed): \(counts.sorted { $0.key < $1.key })")
    }
}
