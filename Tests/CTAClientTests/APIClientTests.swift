import CTAClient
import CTACore
import Foundation
import Synchronization
import Testing

/// Answers every request with one response and remembers the requests.
final class FixedResponder: HTTPSending {
    let response: HTTPResponse
    let requests = Mutex<[HTTPRequest]>([])

    init(status: Int, json: String, headers: [(String, String)] = []) {
        response = HTTPResponse(status: status, headers: headers, body: Array(json.utf8))
    }

    func send(_ request: HTTPRequest) async throws(ClientError) -> HTTPResponse {
        requests.withLock { $0.append(request) }
        return response
    }
}

@Suite("API client")
struct APIClientTests {
    @Test("an error body becomes code, field and message")
    func errors() async {
        let responder = FixedResponder(
            status: 400,
            json: #"{"error":{"code":"unknownField","message":"unknown key; did you mean tags?","field":"selector.tagz"}}"#)
        let client = APIClient(transport: responder, token: "cta_x")
        do {
            _ = try await client.startExecution(scenario: "smoke")
            Issue.record("no error")
        } catch {
            #expect(error.description == "unknownField selector.tagz: unknown key; did you mean tags?")
            #expect(error.status == 400 && error.apiCode == "unknownField")
        }
        let request = responder.requests.withLock { $0.first }
        #expect(request?.target == "/v1/executions")
        let authorization = request?.headers.first { $0.0 == "Authorization" }?.1
        #expect(authorization == "Bearer cta_x")
        #expect(request.flatMap { $0.body.map { String(decoding: $0, as: UTF8.self) } } == #"{"scenario":"smoke"}"#)
    }

    @Test("401 says how to log in; 429 says when to retry; a body that is not JSON is quoted")
    func statuses() async {
        let unauthenticated = APIClient(
            transport: FixedResponder(status: 401, json: #"{"error":{"code":"unauthenticated","message":"token expired"}}"#),
            token: "t")
        await #expect(throws: ClientError(
            code: .api, message: "token expired (log in again with cta login)", status: 401, apiCode: "unauthenticated")
        ) { try await unauthenticated.whoami() }
        let limited = APIClient(
            transport: FixedResponder(
                status: 429, json: #"{"error":{"code":"tooManyRequests","message":"slow down"}}"#,
                headers: [("Retry-After", "42")]), token: nil)
        await #expect(throws: ClientError(
            code: .api, message: "slow down (retry after 42 s)", status: 429, apiCode: "tooManyRequests")
        ) { try await limited.login(user: "u", password: "p") }
        let proxy = APIClient(transport: FixedResponder(status: 502, json: "Bad Gateway\n<html>"), token: "t")
        await #expect(throws: ClientError(code: .api, message: "Bad Gateway", status: 502)) {
            try await proxy.whoami()
        }
    }

    @Test("definition problems come back as file:line: key: message")
    func problems() async {
        let responder = FixedResponder(
            status: 400,
            json: #"""
                {"error":{"code":"invalidField","message":"2 problems"},
                 "problems":[{"file":"definitions","line":7,"key":"scenario s: suite","message":"no suite \"x\" is defined"},
                             {"file":"definitions","message":"whole file"}]}
                """#)
        let client = APIClient(transport: responder, token: "t")
        do {
            _ = try await client.applyDefinitions("kind: test\n", file: "definitions")
            Issue.record("no error")
        } catch {
            #expect(error.problems == [#"definitions:7: scenario s: suite: no suite "x" is defined"#, "definitions: whole file"])
        }
        let sent = responder.requests.withLock { $0.first }
        #expect(sent?.target == "/v1/definitions?file=definitions")
        let contentType = sent?.headers.first { $0.0 == "Content-Type" }?.1
        #expect(contentType == "application/yaml")
    }

    @Test("executions and results decode from the contract's shapes")
    func decoding() async throws {
        let execution = APIClient(
            transport: FixedResponder(
                status: 200,
                json: #"""
                    {"id":"01J","scenario":"smoke","suite":"s","configuration":"c","runMode":"mono","phase":"pending",
                     "requestedBy":"admin","tags":["ci"],"createdAt":"2026-11-22T10:00:00.123Z","dispatchedAt":null,
                     "startedAt":null,"endedAt":null,"endReason":null,
                     "pending":{"summary":"no machine matches","candidates":[{"machine":"m","missing":["no tag os=linux"]}]},
                     "counts":{"ok":0,"failed":0,"partial":0,"inconclusive":0,"skipped":0},"tests":8,"machines":[]}
                    """#), token: "t")
        let record = try await execution.execution("01J")
        #expect(record.phase == "pending" && record.tests == 8 && !record.hasEnded)
        #expect(record.pending?.candidates.first?.missing == ["no tag os=linux"])
        let results = APIClient(
            transport: FixedResponder(
                status: 200,
                json: #"""
                    {"items":[{"eventId":"e1","test":"t","index":0,"attempt":1,"machine":"m","status":"ok",
                     "durationMs":12,"message":null,"startedAt":"x","endedAt":"y","attachments":[]}],"next":null}
                    """#), token: "t")
        let page = try await results.results("01J", cursor: "c 1")
        #expect(page.items.first?.eventId == "e1" && page.next == nil)
    }

    @Test("query strings are percent-encoded")
    func queries() {
        #expect(Query().adding("tag", "os=linux").adding("skip", nil).adding("q", "é & ü").text
            == "?tag=os%3Dlinux&q=%C3%A9%20%26%20%C3%BC")
        #expect(Query().text == "")
    }
}

@Suite("Attachment downloads")
struct AttachmentDownloadPathTests {
    @Test("a test's file goes under its test's directory; names that could leave the directory are refused")
    func paths() {
        func info(_ name: String, test: String?) -> AttachmentInfo {
            var object: [String: Any] = ["id": "4b3a2c1d-0e9f-4877-a665-544332211009", "name": name]
            if let test { object["test"] = test }
            let data = try! JSONSerialization.data(withJSONObject: object)
            return try! JSONDecoder().decode(AttachmentInfo.self, from: data)
        }
        #expect(info("test.log", test: "t-a").downloadPath(in: "/tmp/d") == "/tmp/d/t-a/test.log")
        #expect(info("my report.txt", test: nil).downloadPath(in: "/tmp/d") == "/tmp/d/my report.txt")
        for (name, test) in [("../x", "t"), ("..", "t"), ("a/b", nil), ("ok.txt", ".."), ("ok.txt", "a/b"), ("", "t"), ("a\nb", "t")] {
            #expect(info(name, test: test).downloadPath(in: "/tmp/d") == nil, "\(name) \(test ?? "-")")
        }
    }
}
