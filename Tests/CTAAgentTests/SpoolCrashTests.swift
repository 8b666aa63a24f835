import CTACore
import Foundation
import Glibc
import Logging
import Testing

@testable import CTAAgent

@Suite("Spool: crashes")
struct SpoolCrashTests {
    /// A child process (a Swift Testing exit test: the test binary run again) appends as fast as it can, single
    /// records and groups of five, acknowledging every seq divisible by 3, and records the highest seq each append
    /// returned in a side file (a plain write, which survives the process). After the first append a thread kills
    /// it with SIGKILL after `delay` milliseconds, at whatever point it is in. The parent then reopens the spool and checks that every
    /// record an append had returned is there once, in order, with its bytes, and nothing acknowledged came back.
    @Test("kill -9 while appending loses nothing that was reported durable", arguments: [1, 20, 150])
    func killDuringAppends(delay: Int) async throws {
        let dir = TemporaryDirectory()
        let directory = dir.spool
        await #expect(processExitsWith: .signal(SIGKILL)) { [directory = directory as String, delay = delay as Int] in
            let logger = Logger(label: "cta.spool.child") { _ in SwiftLogNoOpLogHandler() }
            let spool = try SpoolCore(
                directory: directory,
                configuration: SpoolConfiguration(segmentSize: 64 << 10, acknowledgementSyncInterval: 1 << 30),
                logger: logger)
            let progress = Glibc.open(directory + ".progress", O_WRONLY | O_CREAT, 0o600)
            let killer = Thread {
                usleep(UInt32(delay) * 1000)
                kill(getpid(), SIGKILL)
            }
            var round = 0
            while true {
                round += 1
                let seqs = try spool.append(count: round % 2 == 0 ? 5 : 1) { epoch, seq, _ in
                    testPayload(epoch: epoch, seq: seq, size: 200)
                }
                var last = seqs.upperBound.littleEndian
                _ = pwrite(progress, &last, 8, 0)
                for seq in seqs where seq % 3 == 0 { try spool.acknowledge(seq: seq) }
                if round == 1 { killer.start() }
            }
        }

        let progress = SpoolFiles.read(directory + ".progress")
        try #require(progress.count == 8, "the child appended at least once before it was killed")
        let durable = progress.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let spool = try openCore(directory)
        #expect(spool.recovery.damage.allSatisfy { $0.kind == .tornTail }, "\(spool.recovery.damage)")
        #expect(spool.lastSeq >= durable && spool.lastSeq <= durable + 5)
        let records = try spool.pending()
        let pending = Set(records.map(\.seq))
        #expect(records.map(\.seq) == records.map(\.seq).sorted())
        for seq in UInt64(1)...spool.lastSeq {
            if seq % 3 != 0 {
                #expect(pending.contains(seq), "seq \(seq) was appended and never acknowledged")
            } else if seq + 5 <= durable {
                #expect(!pending.contains(seq), "seq \(seq) was acknowledged before the crash")
            }
        }
        for record in records {
            #expect(record.payload == testPayload(epoch: spool.epoch, seq: record.seq, size: 200))
        }
        let last = spool.lastSeq
        #expect(try spool.appendTest() == last + 1)
        print("kill -9 after \(delay) ms: \(durable) records durable, \(records.count) pending after recovery")
    }

    @Test("an abandoned spool (no close) is picked up by the next open with everything that was appended")
    func abandonedInstance() throws {
        let dir = TemporaryDirectory()
        let epoch: SequenceEpoch
        do {
            let first = try openCore(dir.spool, SpoolConfiguration(segmentSize: 2048))
            epoch = first.epoch
            for _ in 0..<50 { try first.appendTest(size: 150) }
            for seq in stride(from: UInt64(1), through: 50, by: 2) { try first.acknowledge(seq: seq) }
            // Dropped without close(): the descriptors close, nothing more is synced.
        }
        let second = try openCore(dir.spool)
        #expect(second.epoch == epoch)
        #expect(second.recovery.damage.isEmpty)
        #expect(try second.pendingSeqs() == Array(stride(from: UInt64(2), through: 50, by: 2)))
        #expect(try second.appendTest() == 51)
    }
}
