import CTACoordinator
import CTACore
import Foundation
public import Hummingbird
public import HTTPTypes

/// `PUT /v1/attachments/{id}`: an agent uploads one file (a test's log, an artifact) before it publishes the event that
/// refers to it. The coordinator's API and the gateway both serve it, into the same database.
///
/// The agent chose the attachment id when it collected the file, so a retried upload is idempotent: an id already
/// stored with the same SHA-256 and size answers 200 and writes nothing; with other content, 409. The query names the
/// execution (`execution`, required), the file name (`name`, required), the test (`test`) and the machine
/// (`machine`, checked against a token bound to one); `X-CTA-SHA256` must match the content.
public struct AttachmentUpload: Sendable {
    public let store: APIStore
    /// The largest upload accepted (413 above it).
    public let limit: Int

    public init(store: APIStore, limit: Int) {
        self.store = store
        self.limit = limit
    }

    /// The header that carries the content's SHA-256.
    public static let digestHeader = HTTPField.Name("X-CTA-SHA256")!

    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    /// A name fit for an uploaded file: 1 to 255 bytes, no `/`, no control character, not `.` or `..`.
    public static func fileNameProblem(_ name: String) -> String? {
        guard (1...255).contains(name.utf8.count) else { return "must be 1 to 255 bytes" }
        guard name != "." && name != ".." else { return "must not be '.' or '..'" }
        guard !name.unicodeScalars.contains(where: { $0 == "/" || $0.value < 0x20 || $0.value == 0x7f }) else {
            return "must not hold '/' or control characters"
        }
        return nil
    }

    /// Checks the request, reads and verifies the content, stores it; answers 201 (stored), 200 (already stored).
    ///
    /// - Parameters:
    ///   - agent: The enrollment token the request was authenticated with.
    public func handle(_ request: Request, id text: String, agent: EnrollmentTokenRecord) async throws(APIError) -> Response {
        guard let id = AttachmentID(text) else {
            throw APIError(.invalidField, "the attachment id must be a UUID, not '\(text.prefix(64))'", field: "id")
        }
        let query = request.uri.queryParameters
        guard let executionText = query.get("execution") else {
            throw APIError(.invalidField, "name the execution: ?execution=<id>", field: "execution")
        }
        guard let executionID = ExecutionID(executionText) else {
            throw APIError(.invalidField, "execution must be a UUID", field: "execution")
        }
        guard let name = query.get("name") else {
            throw APIError(.invalidField, "name the file: ?name=<file name>", field: "name")
        }
        if let problem = Self.fileNameProblem(name) { throw APIError(.invalidField, "name \(problem)", field: "name") }
        let test = query.get("test")
        if let test, TestID(test) == nil { throw APIError(.invalidField, "test must be a test id", field: "test") }
        let machine = query.get("machine") ?? agent.machine
        if let bound = agent.machine, machine != bound {
            throw APIError(.forbidden, "this enrollment token is for machine \(bound)", field: "machine")
        }
        guard let digest = request.headers[Self.digestHeader]?.lowercased() else {
            throw APIError(.invalidField, "give the content's SHA-256 in X-CTA-SHA256", field: "X-CTA-SHA256")
        }
        guard digest.utf8.count == 64, digest.utf8.allSatisfy(Self.isLowerHex) else {
            throw APIError(.invalidField, "X-CTA-SHA256 must be 64 hexadecimal digits", field: "X-CTA-SHA256")
        }

        let key = id.description
        do {
            guard try await store.store.executionExists(executionID) else {
                throw APIError.notFound("no execution \(executionID)")
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.unavailable, "the database cannot be reached now: \(error)")
        }
        let bytes = try await request.collectBody(limit: limit)
        let actual = SHA256.hash(bytes).hexString
        guard actual == digest else {
            throw APIError(
                .invalidField, "the content's SHA-256 is \(actual), not the \(digest) of X-CTA-SHA256 (\(bytes.count) bytes arrived)",
                field: "X-CTA-SHA256")
        }
        let record = AttachmentRecord(
            _id: key, executionID: executionID.description, name: name, size: Int64(bytes.count), sha256: actual,
            chunkSize: APIStore.chunkSize, chunks: 0, machine: machine, test: test,
            contentType: request.headers[.contentType] ?? "application/octet-stream",
            uploadedBy: "enrollment/\(agent._id)", uploadedAt: Date(), complete: false)
        let existing: AttachmentRecord?
        do {
            existing = try await store.putUpload(record, bytes: bytes)
        } catch {
            throw APIError(.unavailable, "the attachment could not be stored now: \(error)")
        }
        if let existing {
            guard existing.sha256 == actual, existing.executionID == record.executionID else {
                throw APIError(.conflict, "attachment \(key) is stored with other content or for another execution")
            }
            return JSON.response(AttachmentView(existing), status: .ok)
        }
        var stored = record
        stored.complete = true
        return JSON.response(AttachmentView(stored), status: .created)
    }
}
