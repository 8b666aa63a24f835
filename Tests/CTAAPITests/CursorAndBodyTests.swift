import CTACore
import CTAMongo
import Foundation
import Testing

@testable import CTAAPI

@Suite("Cursors, pages, body validation, ranges, limits")
struct CursorAndBodyTests {
    @Test("cursors round trip and refuse what this server did not give out")
    func cursors() {
        let time = Cursor(time: Date(timeIntervalSince1970: 1_790_000_000.123), id: "0b6c2f9e-1111-4c4c-9c9c-000000000001")
        #expect(Cursor(encoded: time.encoded) == time)
        #expect(time.key == .time(1_790_000_000_123))
        let text = Cursor(key: .text("lab-01"), id: "lab-01")
        #expect(Cursor(encoded: text.encoded) == text)
        #expect(!text.encoded.contains("=") && !text.encoded.contains("/") && !text.encoded.contains("+"))
        #expect(Cursor(encoded: "nonsense!") == nil)
        #expect(Cursor(encoded: Secrets.base64URL(Array("[\"x\",1,\"a\"]".utf8))) == nil)
        #expect(Cursor(encoded: Secrets.base64URL(Array("{}".utf8))) == nil)
    }

    @Test("limit and cursor query parameters")
    func pageRequest() throws {
        #expect(try PageRequest(limit: nil, cursor: nil) == PageRequest(limit: 50))
        #expect(try PageRequest(limit: "500", cursor: nil).limit == 500)
        for bad in ["0", "501", "-1", "ten", ""] {
            #expect(throws: APIError.self) { try PageRequest(limit: bad, cursor: nil) }
        }
        do {
            _ = try PageRequest(limit: nil, cursor: "garbage")
            Issue.record("a bad cursor was accepted")
        } catch {
            #expect(error.field == "cursor" && error.code == .invalidField)
        }
    }

    @Test("the keyset filter starts strictly after the cursor")
    func keyset() {
        let cursor = Cursor(key: .text("b"), id: "b")
        #expect(APIStore.after(cursor, sortKey: nil, descending: false) == ["_id": ["$gt": "b"]])
        #expect(APIStore.after(cursor, sortKey: nil, descending: true) == ["_id": ["$lt": "b"]])
        let dated = Cursor(time: Date(timeIntervalSince1970: 10), id: "x")
        let filter = APIStore.after(dated, sortKey: "createdAt", descending: true)
        #expect(
            filter == [
                "$or": [
                    ["createdAt": ["$lt": .date(Date(timeIntervalSince1970: 10))]],
                    ["createdAt": .date(Date(timeIntervalSince1970: 10)), "_id": ["$lt": "x"]],
                ]
            ])
    }

    let schema = BodySchema.object([
        "name": .required(.string(maxLength: 8, rule: Rules.nonEmpty)),
        "selector": .optional(
            .object([
                "tags": .optional(.map(.string(), keyRule: Rules.envName)),
                "groups": .optional(.array(.string(rule: Rules.name))),
            ])),
        "count": .optional(.integer(1...10)),
    ])

    func failure(_ json: String) -> APIError? {
        do {
            _ = try schema.parse(Array(json.utf8))
            return nil
        } catch {
            return error
        }
    }

    @Test("an unknown key anywhere is unknownField with its path")
    func unknownFields() {
        #expect(failure(#"{"name":"a","nmae":"b"}"#).map { ($0.code, $0.field) } ?? (.internal, nil) == (.unknownField, "nmae"))
        let nested = failure(#"{"name":"a","selector":{"tags":{},"tgas":1}}"#)
        #expect(nested?.code == .unknownField && nested?.field == "selector.tgas")
    }

    @Test("wrong types and values are invalidField with their path")
    func invalidFields() {
        let cases: [(String, String)] = [
            (#"{}"#, "name"),
            (#"{"name":5}"#, "name"),
            (#"{"name":""}"#, "name"),
            (#"{"name":"waytoolongname"}"#, "name"),
            (#"{"name":"a","count":11}"#, "count"),
            (#"{"name":"a","count":1.5}"#, "count"),
            (#"{"name":"a","selector":{"groups":["ok","-bad"]}}"#, "selector.groups[1]"),
            (#"{"name":"a","selector":{"tags":{"1x":"v"}}}"#, "selector.tags.1x"),
            (#"{"name":"a","selector":{"tags":{"k":1}}}"#, "selector.tags.k"),
        ]
        for (json, field) in cases {
            let error = failure(json)
            #expect(error?.code == .invalidField, "\(json)")
            #expect(error?.field == field, "\(json)")
        }
        #expect(failure(#"{"name":"a","count":null}"#) == nil)
        #expect(failure(#"{"name":"a","count":3,"selector":{"tags":{"os":"linux"}}}"#) == nil)
        #expect(failure("not json")?.code == .badRequest)
        #expect(failure("[1]")?.code == .invalidField)
    }

    @Test("byte ranges", arguments: [
        ("bytes=0-3", 10, ByteRange.range(0...3)),
        ("bytes=5-", 10, .range(5...9)),
        ("bytes=-4", 10, .range(6...9)),
        ("bytes=8-100", 10, .range(8...9)),
        ("bytes=10-", 10, .unsatisfiable),
        ("bytes=-0", 10, .unsatisfiable),
        ("bytes=0-1,3-4", 10, .none),
        ("items=0-1", 10, .none),
        ("bytes=4-2", 10, .none),
    ])
    func ranges(header: String, size: Int, expected: ByteRange) {
        #expect(ByteRange.parse(header, size: size) == expected)
    }

    @Test("attachment names cannot express a path")
    func attachmentNames() {
        for good in ["screenshot.png", "log_1-2.txt", "a", String(repeating: "x", count: 128)] {
            #expect(API.attachmentNameProblem(good) == nil, "\(good)")
        }
        for bad in ["", ".hidden", "..", "../etc", "a/b", "a\\b", "%2e%2e", "a b", String(repeating: "x", count: 129), "é"] {
            #expect(API.attachmentNameProblem(bad) != nil, "\(bad)")
        }
    }

    @Test("failed logins: the sixth within a minute waits for the oldest to expire; success clears the user")
    func loginLimiter() {
        var limiter = LoginLimiter(limit: 5, window: 60)
        let start = Date(timeIntervalSince1970: 1000)
        for i in 0..<5 {
            #expect(limiter.retryAfter(["user:a", "address:x"], now: start + Double(i)) == nil)
            limiter.fail(["user:a", "address:x"], now: start + Double(i))
        }
        #expect(limiter.retryAfter(["user:a"], now: start + 5) == 55)
        #expect(limiter.retryAfter(["user:b", "address:x"], now: start + 10) == 50)
        #expect(limiter.retryAfter(["user:b", "address:y"], now: start + 10) == nil)
        #expect(limiter.retryAfter(["user:a"], now: start + 60.5) == nil)
        limiter.succeed("user:a")
        #expect(limiter.retryAfter(["user:a"], now: start + 6) == nil)
    }

    @Test("times are RFC 3339 UTC with milliseconds")
    func timestamps() {
        #expect(JSON.timestamp(Date(timeIntervalSince1970: 1_795_860_000.123)) == "2026-11-28T10:00:00.123Z")
        #expect(JSON.parseTimestamp("2026-11-22T10:00:00Z") == Date(timeIntervalSince1970: 1_795_341_600))
        #expect(JSON.parseTimestamp("yesterday") == nil)
    }
}
