import CTACore
import Foundation
import Testing

/// The contract of an agent's upload, `PUT /v1/attachments/{id}`, checked the same way against the coordinator's API
/// and against the gateway (both store into the coordinators' database).
enum AttachmentUploadContract {
    /// - Parameters:
    ///   - server: The API or the gateway.
    ///   - execution: An execution that exists.
    ///   - agentToken: An enrollment token bound to `machine`.
    ///   - userToken: A user's API token, refused here; nil to leave that case out.
    ///   - limit: The server's upload limit, when small enough to send one byte more; nil to leave that case out.
    ///   - stored: Reads an attachment back by id: its bytes once stored completely, else nil.
    static func check(
        _ server: APIClient, execution: String, machine: String, agentToken: String, userToken: String?, limit: Int?,
        stored: (String) async throws -> [UInt8]?
    ) async throws {
        let content = Array("a log line\n".utf8) + Array(0...255)
        let digest = SHA256.hash(content).hexString
        let id = UUID().uuidString.lowercased()
        let query = "execution=\(execution)&name=test%20log.txt&test=t1&machine=\(machine)"
        func put(
            _ id: String, query: String, token: String? = agentToken, body: [UInt8] = content, digest: String? = digest
        ) async throws -> APIResponse {
            var headers = [("Content-Type", "text/plain")]
            if let digest { headers.append(("X-CTA-SHA256", digest)) }
            return try await server.request("PUT", "/v1/attachments/\(id)?\(query)", token: token, body: body, headers: headers)
        }

        // Refused, and nothing stored.
        let noDigest = try await put(id, query: query, digest: nil)
        #expect(noDigest.status == 400 && noDigest.errorField == "X-CTA-SHA256", "\(noDigest)")
        let wrongDigest = try await put(id, query: query, digest: SHA256.hash([1, 2, 3]).hexString)
        #expect(wrongDigest.status == 400 && wrongDigest.errorField == "X-CTA-SHA256", "\(wrongDigest)")
        #expect(wrongDigest.text.contains(digest), "the answer names the content's digest: \(wrongDigest)")
        let truncated = try await put(id, query: query, body: Array(content.dropLast(10)))
        #expect(truncated.status == 400, "\(truncated)")
        let notUUID = try await put("out.txt", query: query)
        #expect(notUUID.status == 400 && notUUID.errorField == "id", "\(notUUID)")
        let noExecution = try await put(id, query: "name=a.txt")
        #expect(noExecution.status == 400 && noExecution.errorField == "execution", "\(noExecution)")
        let unknownExecution = try await put(id, query: "execution=\(UUID().uuidString)&name=a.txt")
        #expect(unknownExecution.status == 404, "\(unknownExecution)")
        let slash = try await put(id, query: "execution=\(execution)&name=..%2Fetc%2Fpasswd")
        #expect(slash.status == 400 && slash.errorField == "name", "\(slash)")
        let badTest = try await put(id, query: "execution=\(execution)&name=a.txt&test=a%01b")
        #expect(badTest.status == 400 && badTest.errorField == "test", "\(badTest)")
        let otherMachine = try await put(id, query: "execution=\(execution)&name=a.txt&machine=elsewhere")
        #expect(otherMachine.status == 403, "\(otherMachine)")
        let noToken = try await put(id, query: query, token: nil)
        #expect(noToken.status == 401, "\(noToken)")
        if let userToken {
            let user = try await put(id, query: query, token: userToken)
            #expect(user.status == 401, "\(user)")
        }
        if let limit {
            let big = Array(repeating: UInt8(7), count: limit + 1)
            let tooLarge = try await put(id, query: query, body: big, digest: SHA256.hash(big).hexString)
            #expect(tooLarge.status == 413 && tooLarge.errorCode == "payloadTooLarge", "\(tooLarge)")
        }
        #expect(try await stored(id) == nil, "a refused upload left something stored")

        // Stored once; a retry changes nothing; other content under the same id is a conflict.
        let first = try await put(id, query: query)
        #expect(first.status == 201, "\(first)")
        #expect(first.json["id"] as? String == id && first.json["sha256"] as? String == digest, "\(first)")
        #expect(first.json["name"] as? String == "test log.txt" && first.json["test"] as? String == "t1")
        #expect(try await stored(id) == content)
        let retry = try await put(id, query: query)
        #expect(retry.status == 200, "\(retry)")
        let other = Array("other".utf8)
        let conflict = try await put(id, query: query, body: other, digest: SHA256.hash(other).hexString)
        #expect(conflict.status == 409, "\(conflict)")
        #expect(try await stored(id) == content)
    }
}
