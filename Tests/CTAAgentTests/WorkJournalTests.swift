import CTACore
import Foundation
import Testing

@testable import CTAAgent

@Suite("Work journal and outbox records")
struct WorkJournalTests {
    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "cta-journal-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func takenWorkAndNotedSeqsReadBackAfterReopening() async throws {
        let directory = try Self.temporaryDirectory()
        let epoch = SequenceEpoch()
        let part = PartKey(executionID: ExecutionID(), attempt: 2)
        let id = EventID()
        do {
            let journal = try WorkJournal(directory: directory)
            try await journal.take(part, id: id, body: Array("{\"work\":1}".utf8), epoch: epoch)
            journal.note(part, JournalEntry(.acked, seq: 4))
            journal.note(part, JournalEntry(.running, seq: 5, at: Timestamp(microsecondsSinceEpoch: 1_000_000)))
            journal.note(part, JournalEntry(.start, key: "t0"))
            journal.note(part, JournalEntry(.results, seq: 8, first: 6, key: "t0", counts: ResultCounts(ok: 2, failed: 1)))
            journal.note(part, JournalEntry(.start, key: "t1"))
        }
        let parts = try await WorkJournal(directory: directory).load()
        let progress = try #require(parts.first)
        #expect(parts.count == 1)
        #expect(progress.key == part)
        #expect(progress.taken.map(\.id) == [id])
        #expect(progress.taken.first?.body == Array("{\"work\":1}".utf8))
        #expect(progress.ackedSeq == 4)
        #expect(progress.runningAt == Timestamp(microsecondsSinceEpoch: 1_000_000))
        #expect(progress.started == ["t0", "t1"])
        #expect(progress.reported == ["t0"])
        #expect(progress.counts == ResultCounts(ok: 2, failed: 1))
        #expect(progress.lastSeq == 8)
        #expect(progress.epoch == epoch.description)
        #expect(!progress.finished)
    }

    @Test func aTornLastLineIsIgnoredAndAFinalMarksThePartDone() throws {
        let part = PartKey(executionID: ExecutionID(), attempt: 1)
        var data = Data()
        for entry in [JournalEntry(.acked, seq: 1), JournalEntry(.final, seq: 3)] {
            data.append(try JSONEncoder().encode(entry))
            data.append(UInt8(ascii: "\n"))
        }
        data.append(Data("{\"kind\":\"results\",\"se".utf8))
        let progress = WorkJournal.parse(data, key: part)
        #expect(progress.finished)
        #expect(progress.lastSeq == 3)
        #expect(progress.reported.isEmpty)
    }

    @Test func partKeysRoundTripThroughFileNames() {
        let key = PartKey(executionID: ExecutionID(), attempt: 12)
        #expect(PartKey(fileName: key.fileName) == key)
        #expect(PartKey(fileName: "tombstones.json") == nil)
        #expect(PartKey(fileName: "not-a-uuid-a1.journal") == nil)
    }

    @Test func tombstonesAndTheDrainFlagSurviveReopening() async throws {
        let directory = try Self.temporaryDirectory()
        let tombstone = Tombstone(executionID: ExecutionID(), cause: .timeout, reason: "late", until: Timestamp.now())
        do {
            let journal = try WorkJournal(directory: directory)
            try await journal.saveTombstones([tombstone])
            try await journal.saveDraining(true)
            try await journal.saveFinishedIDs([EventID(), EventID()])
        }
        let journal = try WorkJournal(directory: directory)
        #expect(try await journal.loadTombstones() == [tombstone])
        #expect(try await journal.loadDraining())
        #expect(try await journal.loadFinishedIDs().count == 2)
        try await journal.saveDraining(false)
        #expect(try await !journal.loadDraining())
    }

    @Test func outboxRecordsCarryTypeIdTimeAndTheExactEnvelope() throws {
        let machine = MachineName("lab-01")!
        let envelope = Envelope(
            source: .agent(machine), time: Timestamp(microsecondsSinceEpoch: 1_700_000_000_123_456),
            epoch: SequenceEpoch(), seq: 7,
            payload: AgentShutdown(machine: machine, reason: "test"))
        let bytes = try OutboxRecord.encode(envelope)
        let event = try #require(OutboxRecord.decode(SpoolRecord(seq: 7, payload: bytes)))
        #expect(event.seq == 7)
        #expect(event.type == .agentShutdown)
        #expect(event.id == envelope.id)
        #expect(event.time == envelope.time)
        #expect(try Envelope.decode(Data(event.body)) == envelope)
        #expect(OutboxRecord.decode(SpoolRecord(seq: 1, payload: Array("garbage".utf8))) == nil)
    }
}
