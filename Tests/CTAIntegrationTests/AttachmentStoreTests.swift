@testable import CTAAPI
import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Testing

/// Agents' uploads under one attachment id, against the real server: the two halves of an upload (chunks, then
/// record) are driven in the orders that concurrent uploads and interrupted attempts produce.
@Suite(
    "Attachment store: uploads under one id",
    .enabled(if: ServiceEnvironment.mongoEnabled, "needs CTA_MONGO_URI")
)
struct AttachmentStoreTests {
    /// Three chunks' worth (255 KiB each), so ids and order across chunks count.
    static func content(_ seed: UInt8) -> [UInt8] {
        (0..<(2 * APIStore.chunkSize + 1000)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    static func record(id: String, _ bytes: [UInt8]) -> AttachmentRecord {
        AttachmentRecord(
            _id: id, executionID: ExecutionID().description, name: "out.bin", size: Int64(bytes.count),
            sha256: SHA256.hash(bytes).hexString, chunkSize: APIStore.chunkSize, chunks: 0, machine: "m1", test: "t",
            contentType: "application/octet-stream", uploadedBy: "enrollment/x", uploadedAt: Date(), complete: false)
    }

    @Test(
        "two uploads of other content under one id, interleaved: the first record stored keeps its own bytes",
        arguments: [false, true])
    func interleavedUploadsDoNotMix(secondWins: Bool) async throws {
        try await withMongoDatabase("cta-attachments") { _, database in
            let store = APIStore(store: MongoStore(database: database))
            try await store.prepare()
            let id = UUID().uuidString.lowercased()
            let (first, second) = (Self.content(1), Self.content(2))
            let (a, b) = (Self.record(id: id, first), Self.record(id: id, second))
            let aChunks = APIStore.chunks(of: id, first, digest: a.sha256)
            let bChunks = APIStore.chunks(of: id, second, digest: b.sha256)

            // A writes its chunks, B writes its chunks, then one record wins and the other finds it.
            #expect(try await store.putUploadChunks(a, aChunks) == nil)
            #expect(try await store.putUploadChunks(b, bChunks) == nil)
            let (winner, loser) = secondWins ? (b, a) : (a, b)
            let winnerBytes = secondWins ? second : first
            #expect(try await store.putUploadRecord(winner, chunks: 3) == nil)
            #expect(try await store.putUploadRecord(loser, chunks: 3)?.sha256 == winner.sha256)

            let stored = try #require(try await store.attachment(id: id))
            #expect(stored.sha256 == winner.sha256)
            #expect(try await store.attachmentBytes(stored) == winnerBytes)
            #expect(try await store.attachmentChunks.count(["attachment": .string(id)]) == 3, "the loser's chunks are gone")

            // A later upload of the loser's content loses too, and leaves no chunks behind.
            #expect(try await store.putUpload(loser, bytes: secondWins ? first : second)?.sha256 == winner.sha256)
            #expect(try await store.attachmentChunks.count(["attachment": .string(id)]) == 3)
            #expect(try await store.attachmentBytes(stored) == winnerBytes)
        }
    }

    @Test("an attempt that ended after some chunks is completed by its retry, without a second copy")
    func retryAfterAPartialAttemptCompletesIt() async throws {
        try await withMongoDatabase("cta-attachments") { _, database in
            let store = APIStore(store: MongoStore(database: database))
            try await store.prepare()
            let id = UUID().uuidString.lowercased()
            let bytes = Self.content(3)
            let record = Self.record(id: id, bytes)
            let chunks = APIStore.chunks(of: id, bytes, digest: record.sha256)
            #expect(chunks.count == 3)
            // The first attempt stored one chunk, then its connection ended.
            #expect(try await store.putUploadChunks(record, [chunks[1]]) == nil)

            #expect(try await store.putUpload(record, bytes: bytes) == nil, "stored by the retry")
            let stored = try #require(try await store.attachment(id: id))
            #expect(stored.complete && stored.chunks == 3 && stored.chunkDigest == record.sha256)
            #expect(try await store.attachmentBytes(stored) == bytes)
            #expect(try await store.attachmentChunks.count(["attachment": .string(id)]) == 3)

            // A retry of the stored upload is answered with the record.
            #expect(try await store.putUpload(record, bytes: bytes)?.sha256 == record.sha256)
            #expect(try await store.attachmentChunks.count(["attachment": .string(id)]) == 3)
        }
    }
}
