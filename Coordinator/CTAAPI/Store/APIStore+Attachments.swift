import CTAMongo
import Foundation

extension APIStore {
    static let chunkSize = 255 * 1024

    /// Stores an attachment's bytes in chunks, then marks it complete; a second upload under the same name replaces
    /// the first.
    public func putAttachment(_ record: AttachmentRecord, bytes: [UInt8]) async throws {
        var record = record
        record.complete = false
        _ = try await attachments.replaceOne(["_id": .string(record._id)], with: record, upsert: true)
        _ = try await attachmentChunks.deleteMany(["attachment": .string(record._id)])
        var chunks: [AttachmentChunk] = []
        var n = 0
        var offset = 0
        while offset < bytes.count || (n == 0 && bytes.isEmpty) {
            let end = min(offset + Self.chunkSize, bytes.count)
            chunks.append(AttachmentChunk(_id: "\(record._id)#\(n)", attachment: record._id, n: n, data: Data(bytes[offset..<end])))
            n += 1
            offset = end
            if bytes.isEmpty { break }
        }
        for start in stride(from: 0, to: chunks.count, by: 16) {
            _ = try await attachmentChunks.insertMany(Array(chunks[start..<min(start + 16, chunks.count)]))
        }
        _ = try await attachments.updateOne(
            ["_id": .string(record._id)], .set(["complete": true, "chunks": .int64(Int64(chunks.count))]))
    }

    public func attachment(execution: String, name: String) async throws -> AttachmentRecord? {
        try await attachments.findOne(["_id": .string("\(execution)/\(name)"), "complete": true])
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
