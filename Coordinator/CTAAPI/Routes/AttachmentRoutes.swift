import CTACoordinator
import CTACore
import Foundation
import Hummingbird

// Attachments: uploaded by agents (enrollment token), read by users who may read the execution.

extension API {
    /// `[A-Za-z0-9._-]{1,128}` without a leading dot: no path separator and no `..` component can be written.
    public static func attachmentNameProblem(_ name: String) -> String? {
        guard (1...128).contains(name.utf8.count) else { return "must be 1 to 128 characters" }
        guard name.utf8.first != UInt8(ascii: ".") else { return "must not start with '.'" }
        let allowed = name.utf8.allSatisfy { byte in
            (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || (byte >= 48 && byte <= 57) || byte == 46
                || byte == 95 || byte == 45
        }
        return allowed ? nil : "may hold only letters, digits, '.', '_' and '-'"
    }

    func addAttachmentRoutes(to router: Router<APIRequestContext>) {
        let upload = AttachmentUpload(store: store, limit: configuration.uploadLimit)
        router.put("/v1/attachments/:id") { request, context in
            let agent = try await self.agent(request)
            return try await upload.handle(request, id: context.parameter("id"), agent: agent)
        }
        router.put("/v1/executions/:id/attachments/:name") { request, context in
            let agent = try await self.agent(request)
            let name = context.parameter("name")
            if let problem = Self.attachmentNameProblem(name) {
                throw APIError(.invalidField, "attachment name \(problem)", field: "name")
            }
            let id = context.parameter("id")
            guard let executionID = ExecutionID(id), let record = try await self.store.store.execution(executionID) else {
                throw APIError.notFound("no execution \(id)")
            }
            let machine = request.query("machine") ?? agent.machine
            if let bound = agent.machine, machine != bound {
                throw APIError(.forbidden, "this enrollment token is for machine \(bound)", field: "machine")
            }
            let bytes = try await self.body(request, limit: self.configuration.uploadLimit)
            let attachment = AttachmentRecord(
                _id: "\(record._id)/\(name)", executionID: record._id, name: name, size: Int64(bytes.count),
                sha256: SHA256.hash(bytes).hexString, chunkSize: APIStore.chunkSize, chunks: 0, machine: machine,
                test: request.query("test"),
                contentType: request.headers[.contentType] ?? "application/octet-stream",
                uploadedBy: "enrollment/\(agent._id)", uploadedAt: Date(), complete: false)
            try await self.store.putAttachment(attachment, bytes: bytes)
            return JSON.response(AttachmentView(attachment), status: .created)
        }
        router.get("/v1/executions/:id/attachments") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            let items = try await self.store.attachments(execution: record._id)
            return JSON.response(Page(items: items.map(AttachmentView.init), next: nil))
        }
        router.get("/v1/executions/:id/attachments/:name") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            let name = context.parameter("name")
            guard Self.attachmentNameProblem(name) == nil || AttachmentID(name) != nil,
                let attachment = try await self.store.attachment(execution: record._id, name: name)
            else { throw APIError.notFound("no attachment \(name)") }
            let bytes = try await self.store.attachmentBytes(attachment)
            var headers = HTTPFields()
            headers[.contentDisposition] = Self.contentDisposition(attachment.name)
            return try Self.ranged(bytes, contentType: attachment.contentType, request: request, extraHeaders: headers)
        }
    }
}

extension API {
    /// `attachment` with the file name: plain when it is safe ASCII, else also RFC 8187 `filename*`.
    static func contentDisposition(_ name: String) -> String {
        let plain = name.unicodeScalars.allSatisfy { $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" }
        if plain { return "attachment; filename=\"\(name)\"" }
        let fallback = String(name.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" ? Character($0) : "_" })
        var encoded = ""
        for byte in name.utf8 {
            let unreserved = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || byte == 0x2d || byte == 0x2e || byte == 0x5f || byte == 0x7e
            encoded += unreserved ? String(UnicodeScalar(byte)) : String(format: "%%%02X", byte)
        }
        return "attachment; filename=\"\(fallback)\"; filename*=UTF-8''\(encoded)"
    }
}

struct AttachmentView: Encodable {
    /// The attachment id of an agent's upload (`PUT /v1/attachments/{id}`); null for one uploaded by name.
    var id: Nullable<String>
    var name: String
    var size: Int64
    var sha256: String
    var machine: Nullable<String>
    var test: Nullable<String>
    var contentType: String
    var uploadedAt: Date

    init(_ record: AttachmentRecord) {
        id = Nullable(AttachmentID(record._id).map(\.description))
        name = record.name
        size = record.size
        sha256 = record.sha256
        machine = Nullable(record.machine)
        test = Nullable(record.test)
        contentType = record.contentType
        uploadedAt = record.uploadedAt
    }
}
