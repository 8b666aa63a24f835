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
    /// execution); chunks left by an upload that ended before its record are replaced.
    ///
    /// - Returns: The record already stored under the id (nothing was written), or nil when this one was stored.
    public func putUpload(_ record: AttachmentRecord, bytes: [UInt8]) async throws -> AttachmentRecord? {
        let chunks = Self.chunks(of: record._id, bytes)
        do {
            try await insert(chunks)
        } catch let error as MongoError where error.code == .duplicateKey {
            if let stored = try await attachment(id: record._id) { return stored }
            _ = try await attachmentChunks.deleteMany(["attachment": .string(record._id)])
            try await insert(chunks)
        }
        var complete = record
        complete.complete = true
        complete.chunks = chunks.count
        do {
            _ = try await attachments.insertOne(complete)
        } catch let error as MongoError where error.code == .duplicateKey {
            return try await attachment(id: record._id)
        }
        return nil
    }

    /// The content cut into chunks of ``chunkSize``; one empty chunk for empty content.
    static func chunks(of attachment: String, _ bytes: [UInt8]) -> [AttachmentChunk] {
        var chunks: [AttachmentChunk] = []
        var offset = 0
        repeat {
            let end = min(offset + chunkSize, bytes.count)
            chunks.append(
                AttachmentChunk(_id: "\(attachment)#\(chunks.count)", attachment: attachment, n: chunks.count, data: Data(bytes[offset..<end])))
            offset = end
        } while offset < bytes.count
        return chunks
    }

    private func insert(_ chunks: [AttachmentChunk]) async throws {
        for start in stride(from: 0, to: chunks.count, by: 16) {
            _ = try await attachmentChunks.insertMany(Array(chunks[start..<min(start + 16, chunks.count)]))
        }
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
            let chunks = try await attachmentChunks.find(
                ["attachment": .string(record._id), "n": ["$gte": .int64(Int64(start)), "$lt": .int64(Int64(start + 16))]],
                sort: .ascending("n"))
            for chunk in chunks { bytes += chunk.data }
        }
        return bytes
    }
}
