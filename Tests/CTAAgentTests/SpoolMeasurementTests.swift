import CTACore
import Foundation
import Testing

@testable import CTAAgent

/// Throughput figures for planning, printed and never asserted (these machines are noisy). Run in release:
/// `swift test -c release -Xswiftc -enable-testing --filter SpoolMeasurement`.
@Suite("Spool: measurement", .serialized)
struct SpoolMeasurementTests {
    #if DEBUG
        static let scale = 1
    #else
        static let scale = 4
    #endif

    private func rate(_ count: Int, _ elapsed: Duration) -> String {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return String(format: "%.0f records/s (%d records in %.3f s)", Double(count) / seconds, count, seconds)
    }

    @Test("records per second: single appends, group commits, concurrent appends through the facade")
    func throughput() async throws {
        let clock = ContinuousClock()
        let payload: @Sendable (SequenceEpoch, UInt64) -> [UInt8] = { testPayload(epoch: $0, seq: $1, size: 200) }

        // One fdatasync per record.
        let single = 500 * Self.scale
        let dir1 = TemporaryDirectory()
        let core1 = try openCore(dir1.spool)
        let singleTime = try clock.measure {
            for _ in 0..<single { try core1.append(payload) }
        }
        #expect(core1.pendingCount == single)

        // append(count:): 100 records per fdatasync.
        let batches = 100 * Self.scale
        let dir2 = TemporaryDirectory()
        let core2 = try openCore(dir2.spool)
        let groupTime = try clock.measure {
            for _ in 0..<batches { try core2.append(count: 100) { epoch, seq, _ in payload(epoch, seq) } }
        }
        #expect(core2.pendingCount == batches * 100)

        // Acknowledging, in order (segments deleted as they empty).
        let ackTime = try clock.measure {
            for seq in UInt64(1)...UInt64(batches * 100) { try core2.acknowledge(seq: seq) }
        }
        #expect(core2.pendingCount == 0)

        // The async facade: 64 tasks each appending single records; concurrent requests share commits.
        let tasks = 64
        let perTask = 40 * Self.scale
        let dir3 = TemporaryDirectory()
        let spool = try await Spool.open(directory: dir3.spool, logger: LogRecorder().logger)
        let start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask { for _ in 0..<perTask { try await spool.append(payload) } }
            }
            try await group.waitForAll()
        }
        let facadeTime = clock.now - start
        let state = try await spool.state()
        #expect(state.pending == tasks * perTask)

        print("spool measurement, 200-byte records:")
        print("  single append (1 sync each):          \(rate(single, singleTime))")
        print("  append(count: 100) (group commit):    \(rate(batches * 100, groupTime))")
        print(
            "  facade, \(tasks) concurrent tasks:       \(rate(tasks * perTask, facadeTime)), \(state.commits) commits")
        print("  acknowledge (in order):               \(rate(batches * 100, ackTime))")
    }
}
