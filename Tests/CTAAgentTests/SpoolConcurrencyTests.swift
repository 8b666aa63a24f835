import CTACore
import Foundation
import Testing

@testable import CTAAgent

@Suite("Spool: the asynchronous facade")
struct SpoolConcurrencyTests {
    @Test("many tasks appending at once get unique, gap-free seqs and their own bytes back")
    func concurrentAppends() async throws {
        let dir = TemporaryDirectory()
        let recorder = LogRecorder()
        let spool = try await Spool.open(directory: dir.spool, logger: recorder.logger)
        let tasks = 32
        let each = 25
        let perTask = try await withThrowingTaskGroup(of: [UInt64].self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var mine: [UInt64] = []
                    for index in 0..<each {
                        if index % 5 == 4 {
                            let range = try await spool.append(count: 3) { epoch, seq, _ in
                                testPayload(epoch: epoch, seq: seq, size: 100 + task)
                            }
                            mine += Array(range)
                        } else {
                            mine.append(
                                try await spool.append { epoch, seq in
                                    testPayload(epoch: epoch, seq: seq, size: 100 + task)
                                })
                        }
                    }
                    return mine
                }
            }
            var all: [[UInt64]] = []
            for try await seqs in group { all.append(seqs) }
            return all
        }
        let total = tasks * (each + 2 * (each / 5))
        let all = perTask.flatMap { $0 }
        #expect(all.sorted() == Array(1...UInt64(total)), "unique and gap-free")
        for seqs in perTask { #expect(seqs == seqs.sorted(), "each task sees its own appends in order") }

        let records = try await spool.pending(after: 0, limit: .max)
        #expect(records.map(\.seq) == Array(1...UInt64(total)))
        for record in records { #expect(seq(inPayload: record.payload) == record.seq) }

        let state = try await spool.state()
        #expect(state.lastSeq == UInt64(total) && state.pending == total)
        print("\(tasks) tasks: \(tasks * each) append calls in \(state.commits) commits")

        try await withThrowingTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 1, through: total, by: 50) {
                group.addTask {
                    try await spool.acknowledge(seqs: UInt64(chunk)...UInt64(min(chunk + 49, total)))
                }
            }
            try await group.waitForAll()
        }
        #expect(try await spool.pending().isEmpty)
        try await spool.close()
        await #expect(throws: SpoolError.self) { try await spool.append { _, _ in [1] } }

        let reopened = try await Spool.open(directory: dir.spool, logger: recorder.logger)
        #expect(reopened.epoch == spool.epoch)
        #expect(reopened.recovery.lastSeq == UInt64(total))
        #expect(try await reopened.append { _, _ in [1] } == UInt64(total) + 1)
    }

    @Test("in a coalesced commit, a request whose builder throws or does not fit fails alone")
    func failuresStayAlone() async throws {
        struct Refused: Error {}
        let dir = TemporaryDirectory()
        let spool = try await Spool.open(
            directory: dir.spool, configuration: SpoolConfiguration(maximumRecordSize: 1000),
            logger: LogRecorder().logger)
        let outcomes = await withTaskGroup(of: (Int, Result<UInt64, any Error>).self) { group in
            for task in 0..<60 {
                group.addTask {
                    do {
                        let seq = try await spool.append { epoch, seq in
                            if task % 7 == 3 { throw Refused() }
                            return testPayload(epoch: epoch, seq: seq, size: task % 11 == 5 ? 2000 : 80)
                        }
                        return (task, .success(seq))
                    } catch {
                        return (task, .failure(error))
                    }
                }
            }
            var outcomes: [(Int, Result<UInt64, any Error>)] = []
            for await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        var succeeded: [UInt64] = []
        for (task, result) in outcomes {
            switch result {
            case .success(let seq):
                #expect(task % 7 != 3 && task % 11 != 5)
                succeeded.append(seq)
            case .failure(let error):
                if task % 7 == 3 {
                    #expect(error is Refused)
                } else {
                    #expect((error as? SpoolError)?.code == .recordTooLarge)
                    #expect(task % 11 == 5)
                }
            }
        }
        #expect(succeeded.sorted() == Array(1...UInt64(succeeded.count)), "failures used up no seq")
        #expect(try await spool.pending(limit: .max).map(\.seq) == succeeded.sorted())
    }

    @Test("opening a directory that cannot be created throws a typed error")
    func openFailure() async throws {
        let dir = TemporaryDirectory()
        SpoolFiles.write([1], to: dir.path + "/file")
        let error = await #expect(throws: SpoolError.self) {
            _ = try await Spool.open(directory: dir.path + "/file/spool", logger: LogRecorder().logger)
        }
        #expect(error?.code == .ioError)
    }
}
