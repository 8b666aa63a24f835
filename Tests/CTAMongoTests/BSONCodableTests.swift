import Foundation
import Testing

@testable import CTAMongo

/// A run record shaped like what the coordinator stores: every type the codec supports, nested.
private struct Run: Codable, Equatable, Sendable {
    enum Status: String, Codable, Sendable { case queued, running, passed }

    struct Step: Codable, Equatable, Sendable {
        var name: String
        var status: Status
        var durationSeconds: Double?
        var exitCode: Int32?
    }

    struct Machine: Codable, Equatable, Sendable {
        var hostname: String
        var cores: Int
        var memoryBytes: Int64
        var labels: [String: String]
    }

    var _id: ObjectId
    var runId: UUID
    var attempt: Int32
    var sequence: Int64
    var count: Int
    var score: Double
    var ratio: Float
    var flaky: Bool
    var name: String
    var createdAt: Date
    var finishedAt: Date?
    var log: Data
    var status: Status
    var machine: Machine
    var steps: [Step]
    var retries: [Int]
    var matrix: [[String]]
    var notes: String?
    var small: UInt8
    var big: UInt64
    var extra: BSONDocument
}

private func sampleRun() -> Run {
    Run(
        _id: ObjectId(),
        runId: UUID(),
        attempt: 3,
        sequence: 9_000_000_000,
        count: -42,
        score: 0.125,
        ratio: 0.5,
        flaky: true,
        name: "checkout → pay ✓",
        // Millisecond precision: what BSON datetimes keep.
        createdAt: Date(timeIntervalSince1970: 1_700_000_000.123),
        finishedAt: nil,
        log: Data([0, 1, 2, 250, 255]),
        status: .running,
        machine: .init(
            hostname: "agent-7", cores: 16, memoryBytes: 68_719_476_736, labels: ["os": "linux", "arch": "x86_64"]),
        steps: [
            .init(name: "build", status: .passed, durationSeconds: 12.5, exitCode: 0),
            .init(name: "test", status: .running, durationSeconds: nil, exitCode: nil),
        ],
        retries: [1, 2, 3],
        matrix: [["a", "b"], [], ["c"]],
        notes: "first run",
        small: 200,
        big: UInt64(Int64.max),
        extra: ["k": "v", "n": .int32(1)]
    )
}

@Suite("BSON codec")
struct BSONCodableTests {
    @Test("a nested struct with every supported type survives encode → BSON bytes → decode")
    func roundTrip() throws {
        let run = sampleRun()
        let document = try BSONDocument(encoding: run)
        let bytes = document.bsonBytes
        let parsed = try BSONDocument(bsonBytes: bytes)
        #expect(parsed == document)
        let decoded = try parsed.decode(as: Run.self)
        #expect(decoded == run)
    }

    @Test("each Swift type maps to its BSON type")
    func typeMapping() throws {
        let run = sampleRun()
        let document = try BSONDocument(encoding: run)
        #expect(document["_id"] == .objectId(run._id))
        #expect(document["attempt"] == .int32(3))
        #expect(document["sequence"] == .int64(9_000_000_000))
        #expect(document["count"] == .int64(-42))
        #expect(document["score"] == .double(0.125))
        #expect(document["flaky"] == .bool(true))
        #expect(document["createdAt"] == .date(run.createdAt))
        #expect(document["log"] == .binary(subtype: 0, Data([0, 1, 2, 250, 255])))
        #expect(document["runId"] == .uuid(run.runId))
        guard case .binary(4, let uuidBytes)? = document["runId"] else {
            Issue.record("UUID is not binary subtype 4: \(String(describing: document["runId"]))")
            return
        }
        #expect(uuidBytes.count == 16)
        #expect(document["status"] == .string("running"))
        #expect(document["finishedAt"] == nil, "nil optionals are left out")
        #expect(document["machine"]?.documentValue?["labels"]?.documentValue?["os"] == .string("linux"))
        #expect(document["retries"] == .array([.int64(1), .int64(2), .int64(3)]))
        #expect(document["small"] == .int32(200))
        #expect(document.keys.first == "_id", "keys keep declaration order")
    }

    @Test("libbson reads what the Swift writer wrote, and the other way round")
    func agreesWithLibbson() throws {
        let run = sampleRun()
        let document = try BSONDocument(encoding: run)
        // extendedJSON goes through bson_new_from_data + bson_as_relaxed_extended_json.
        let json = document.extendedJSON
        #expect(json.contains("\"attempt\" : 3"))
        #expect(json.contains("\"sequence\" : 9000000000"))
        // Relaxed JSON does not keep int32 apart from int64; canonical JSON keeps every type.
        let back = try BSONDocument(extendedJSON: document.canonicalExtendedJSON)
        #expect(back == document)

        let canonicalJSON =
            #"{"a": {"$numberLong": "5"}, "b": {"$numberInt": "7"}, "#
            + #""c": {"$date": {"$numberLong": "1500"}}, "d": null, "e": [true, 1.5]}"#
        let canonical = try BSONDocument(extendedJSON: canonicalJSON)
        #expect(canonical["a"] == .int64(5))
        #expect(canonical["b"] == .int32(7))
        #expect(canonical["c"] == .date(Date(timeIntervalSince1970: 1.5)))
        #expect(canonical["d"] == .null)
        #expect(canonical["e"] == .array([.bool(true), .double(1.5)]))
    }

    @Test("a null or missing optional decodes as nil; a present one as its value")
    func optionals() throws {
        struct Opt: Codable, Equatable {
            var a: Int?
            var b: String?
        }
        let null: BSONDocument = ["a": .null]
        let present: BSONDocument = ["a": 5, "b": "x"]
        #expect(try null.decode(as: Opt.self) == Opt(a: nil, b: nil))
        #expect(try present.decode(as: Opt.self) == Opt(a: 5, b: "x"))
        #expect(try BSONDocument(encoding: Opt(a: nil, b: "x")) == ["b": "x"])
    }

    @Test("numbers decode across BSON number types only when nothing is lost")
    func lenientNumbers() throws {
        struct N: Codable {
            var i: Int
            var d: Double
            var s: Int32
        }
        let mixed: BSONDocument = ["i": .int32(7), "d": .int64(3), "s": .double(4)]
        let ok = try mixed.decode(as: N.self)
        #expect(ok.i == 7 && ok.d == 3 && ok.s == 4)
        let fraction: BSONDocument = ["i": 3.5, "d": 1, "s": 1]
        #expect(throws: DecodingError.self) { try fraction.decode(as: N.self) }
        let tooBig: BSONDocument = ["i": 1, "d": 1, "s": .int64(5_000_000_000)]
        #expect(throws: DecodingError.self) { try tooBig.decode(as: N.self) }
    }

    @Test("a decoding failure names the key path of the field")
    func decodingFailureNamesPath() throws {
        var document = try BSONDocument(encoding: sampleRun())
        var steps = try #require(
            document["steps"].flatMap { v -> [BSONValue]? in
                if case .array(let a) = v { a } else { nil }
            })
        var second = try #require(steps[1].documentValue)
        second["status"] = .int32(3)
        steps[1] = .document(second)
        document["steps"] = .array(steps)
        do {
            _ = try document.decode(as: Run.self)
            Issue.record("decoding should have failed")
        } catch {
            let mapped = MongoError.decoding(error, collection: "runs")
            #expect(mapped.code == .decoding)
            #expect(mapped.field == "steps.1.status")
            #expect(mapped.collection == "runs")
            #expect(mapped.description.contains("steps.1.status"))
            #expect(mapped.description.contains("runs"))
        }

        var missing = try BSONDocument(encoding: sampleRun())
        var machine = try #require(missing["machine"]?.documentValue)
        machine["hostname"] = nil
        missing["machine"] = .document(machine)
        do {
            _ = try missing.decode(as: Run.self)
            Issue.record("decoding should have failed")
        } catch {
            #expect(MongoError.decoding(error, collection: nil).field == "machine.hostname")
        }
    }

    @Test("values BSON cannot hold are encoding errors; a top-level scalar is not a document")
    func encodingErrors() throws {
        struct Big: Codable { var n: UInt64 }
        #expect(throws: EncodingError.self) { try BSONDocument(encoding: Big(n: .max)) }
        #expect(throws: EncodingError.self) { try BSONDocument(encoding: 5) }
        #expect(try BSONValue(encoding: 5) == .int64(5))
    }

    @Test("corrupt BSON bytes are rejected, not read past their end")
    func corruptBytes() throws {
        let small: BSONDocument = ["name": "x"]
        var bytes = small.bsonBytes
        #expect(try BSONDocument(bsonBytes: bytes)["name"] == "x")
        bytes[0] = 200  // length larger than the buffer
        #expect(throws: MongoError.self) { try BSONDocument(bsonBytes: bytes) }
        #expect(throws: MongoError.self) { try BSONDocument(bsonBytes: Array(bytes.prefix(7))) }
    }

    @Test("ObjectId: unique, hex round trip, BSON and JSON forms")
    func objectIds() throws {
        let a = ObjectId()
        let b = ObjectId()
        #expect(a != b)
        #expect(ObjectId(a.hex) == a)
        #expect(a.hex.count == 24)
        #expect(ObjectId("zz") == nil)
        #expect(abs(a.timestamp.timeIntervalSinceNow) < 60)
        let json = try JSONEncoder().encode([a])
        #expect(String(decoding: json, as: UTF8.self) == "[\"\(a.hex)\"]")
        #expect(try JSONDecoder().decode([ObjectId].self, from: json) == [a])
    }

    @Test("update and sort helpers build the documents the server expects")
    func helpers() {
        let update = BSONDocument.set(["status": "running"]).inc(["attempts": 1]).set(["host": "a"])
        #expect(update == ["$set": ["status": "running", "host": "a"], "$inc": ["attempts": 1]])
        #expect(BSONDocument.descending("createdAt") == ["createdAt": .int32(-1)])
        #expect(BSONDocument.unset("a", "b") == ["$unset": ["a": "", "b": ""]])
        var doc: BSONDocument = ["a": 1, "b": 2]
        doc["a"] = nil
        doc["c"] = 3
        #expect(doc.keys == ["b", "c"])
    }

    @Test("a resume token survives bytes and Codable")
    func resumeToken() throws {
        let token = ResumeToken(["_data": "8263abc"])
        #expect(try ResumeToken(bsonBytes: token.bsonBytes) == token)
        struct Saved: Codable { var token: ResumeToken }
        let saved = try BSONDocument(encoding: Saved(token: token))
        #expect(saved["token"] == .document(["_data": "8263abc"]))
        #expect(try saved.decode(as: Saved.self).token == token)
    }
}
