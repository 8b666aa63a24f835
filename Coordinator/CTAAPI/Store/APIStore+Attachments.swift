import CTACore
import CTAMongo
import Foundation

extension APIStore {
    /// The bytes of an attachment per stored chunk.
    public static let chunkSize = 255 * 1024

    /// Stores an attachment's bytes in chunks, then marks it complete; a second upload under the same name replaces
    /// the first.
    public func putAttachment(_ record: AttachmentRecord, bytes: [UInt8]) async throws {
        var record = record
        record.complete = false
        _ = try await attachments.replaceOne(["_id": .string(record._id)], with: record, upsert: true)
        _ = try await attachmentChunks.deleteMany(["attachment": .string(record._id)])
        let chunks = Self.chunks(of: record._id, bytes)
        try await insert(chunks)
        _ = try await attachments.updateOne(
            ["_id": .string(record._id)], .set(["complete": true, "chunks": .int64(Int64(chunks.count))]))
    }

    /// Stores an agent's upload under its attachment id, once: the chunks first, then the record, complete, so a
    /// record is never seen before its content. Three round trips for a new one (with the caller's check of the
    /// execution).
    ///
    /// The chunks' ids carry the content's SHA-256: one id holds one content, so chunks left by an attempt that ended
    /// before its record are the same bytes and are kept, and uploads of other content under the same id, even at the
    /// same time, never mix. The first record stored wins; a loser removes its own chunks.
    ///
    /// - Returns: The record already stored under the id (nothing was written), or nil when this one was stored.
    public func putUpload(_ record: AttachmentRecord, bytes: [UInt8]) async throws -> AttachmentRecord? {
        let chunks = Self.chunks(of: record._id, bytes, digest: record.sha256)
        if let stored = try await putUploadChunks(record, chunks) { return stored }
        return try await putUploadRecord(record, chunks: chunks.count)
    }

    /// ``putUpload(_:bytes:)``'s chunks. Returns the record already stored, found when a chunk was there before.
    func putUploadChunks(_ record: AttachmentRecord, _ chunks: [AttachmentChunk]) async throws -> AttachmentRecord? {
        var checked = false
        for batch in Self.batches(chunks) {
            do {
                _ = try await attachmentChunks.insertMany(batch)
            } catch let error as MongoError where error.code == .duplicateKey {
                if !checked, let stored = try await attachment(id: record._id) {
                    try await removeLosingChunks(record, winner: stored)
                    return stored
                }
                checked = true
                // Left by an earlier attempt; the same id holds the same bytes.
                for chunk in batch {
                    do { _ = try await attachmentChunks.insertOne(chunk) } catch let error as MongoError where error.code == .duplicateKey {}
                }
            }
        }
        return nil
    }

    /// ``putUpload(_:bytes:)``'s record, complete. Returns the record stored first, when it is not this one.
    func putUploadRecord(_ record: AttachmentRecord, chunks: Int) async throws -> AttachmentRecord? {
        var complete = record
        complete.complete = true
        complete.chunks = chunks
        complete.chunkDigest = record.sha256
        do {
            _ = try await attachments.insertOne(complete)
        } catch let error as MongoError where error.code == .duplicateKey {
            guard let stored = try await attachment(id: record._id) else { throw error }
            try await removeLosingChunks(record, winner: stored)
            return stored
        }
        return nil
    }

    /// Removes the chunks of an upload that lost to a record of other content.
    private func removeLosingChunks(_ record: AttachmentRecord, winner: AttachmentRecord) async throws {
        guard winner.sha256 != record.sha256 else { return }
        _ = try await attachmentChunks.deleteMany(["attachment": .string(record._id), "digest": .string(record.sha256)])
    }

    /// The content cut into chunks of ``chunkSize``; one empty chunk for empty content. With a digest (an agent's
    /// upload), the chunks' ids and documents carry it.
    static func chunks(of attachment: String, _ bytes: [UInt8], digest: String? = nil) -> [AttachmentChunk] {
        var chunks: [AttachmentChunk] = []
        let prefix = digest.map { "\(attachment)#\($0)" } ?? attachment
        var offset = 0
        repeat {
            let end = min(offset + chunkSize, bytes.count)
            chunks.append(
                AttachmentChunk(
                    _id: "\(prefix)#\(chunks.count)", attachment: attachment, digest: digest, n: chunks.count,
                    data: Data(bytes[offset..<end])))
            offset = end
        } while offset < bytes.count
        return chunks
    }

    private func insert(_ chunks: [AttachmentChunk]) async throws {
        for batch in Self.batches(chunks) { _ = try await attachmentChunks.insertMany(batch) }
    }

    /// Chunks in batches of 16 (about 4 MiB), one insert each.
    private static func batches(_ chunks: [AttachmentChunk]) -> [[AttachmentChunk]] {
        stride(from: 0, to: chunks.count, by: 16).map { Array(chunks[$0..<min($0 + 16, chunks.count)]) }
    }

    /// A complete attachment of an execution, by its name (uploaded by name) or its id (uploaded by an agent).
    public func attachment(execution: String, name: String) async throws -> AttachmentRecord? {
        if let id = AttachmentID(name) {
            return try await attachments.findOne(
                ["_id": .string(id.description), "executionID": .string(execution), "complete": true])
        }
        return try await attachments.findOne(["_id": .string("\(execution)/\(name)"), "complete": true])
    }

    /// An attachment by its id, complete or not.
    public func attachment(id: String) async throws -> AttachmentRecord? {
        try await attachments.findOne(["_id": .string(id)])
    }

    public func attachments(execution: String) async throws -> [AttachmentRecord] {
        try await attachments.find(["executionID": .string(execution), "complete": true], sort: .ascending("name"))
    }

    /// The bytes of a stored attachment, in order.
    public func attachmentBytes(_ record: AttachmentRecord) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(record.size))
        for start in stride(from: 0, to: record.chunks, by: 16) {
            var filter: BSONDocument = [
                "attachment": .string(record._id), "n": ["$gte": .int64(Int64(start)), "$lt": .int64(Int64(start + 16))],
            ]
            if let digest = record.chunkDigest { filter["digest"] = .string(digest) }
            let chunks = try await attachmentChunks.find(filter, sort: .ascending("n"))
            for chunk in chunks { bytes += chunk.data }
        }
        return bytes
    }
}
