import Testing

@testable import CTAMongo

// libmongoc's error domains and codes (mongoc-error.h), as the client pool reports them with error API 2.
private let domainStream: UInt32 = 2
private let domainCommand: UInt32 = 11
private let domainCollection: UInt32 = 12
private let domainServerSelection: UInt32 = 15
private let domainWriteConcern: UInt32 = 16
private let domainServer: UInt32 = 17
private let streamSocket: UInt32 = 4
private let serverSelectionFailure: UInt32 = 13051 + 2
private let commandInvalidArgument: UInt32 = 22

@Suite("MongoError mapping")
struct MongoErrorTests {
    @Test("server code 11000 is duplicateKey, and the user-facing text hides the key value")
    func duplicateKey() {
        let error = MongoError(
            domain: domainServer, code: 11000,
            message:
                "E11000 duplicate key error collection: cta.machines index: name_1 dup key: { name: \"secret-host\" }",
            collection: "machines")
        #expect(error.code == .duplicateKey)
        #expect(error.serverCode == 11000)
        #expect(error.collection == "machines")
        #expect(!error.description.contains("secret-host"))
        #expect(error.description.contains("machines"))
        #expect(error.debugDescription.contains("secret-host"))
    }

    @Test("a duplicate key among a bulk write's writeErrors is duplicateKey whatever the top-level code")
    func duplicateKeyInReply() {
        let reply: BSONDocument = ["writeErrors": [["index": 3, "code": .int32(11000), "errmsg": "E11000 dup"]]]
        let error = MongoError(domain: domainCollection, code: 1, message: "write failed", reply: reply)
        #expect(error.code == .duplicateKey)
    }

    @Test(
        "domains and codes map to the small set of codes",
        arguments: [
            (domainServerSelection, serverSelectionFailure, "No suitable servers found", MongoError.Code.connection),
            (domainStream, streamSocket, "Failed to connect to target host: 127.0.0.1:1", .connection),
            (domainStream, streamSocket, "Failed to read 4 bytes: socket error or timeout", .timeout),
            (domainServer, 50, "operation exceeded time limit", .timeout),
            (domainServer, 91, "The server is in quiesce mode and will shut down", .connection),
            (domainServer, 2, "unknown operator: $foo", .invalidArgument),
            (domainServer, 13, "not authorized", .server),
            (domainWriteConcern, 64, "waiting for replication timed out", .server),
            (domainCommand, commandInvalidArgument, "Invalid key '$x'", .invalidArgument),
        ]
    )
    func mapping(domain: UInt32, code: UInt32, message: String, expected: MongoError.Code) {
        let error = MongoError(domain: domain, code: code, message: message)
        #expect(error.code == expected, "\(error.debugDescription)")
        #expect(error.debugDescription.contains(message))
    }

    @Test("a server error keeps its numeric code")
    func serverCode() {
        let error = MongoError(domain: domainServer, code: 13, message: "not authorized")
        #expect(error.serverCode == 13)
        #expect(error.description.contains("13"))
    }

    @Test("a long libmongoc message is read up to its NUL, not past the buffer")
    func longMessage() {
        let long = String(repeating: "x", count: 2000)
        let error = MongoError(domain: domainServer, code: 1, message: long)
        #expect(error.debugDescription.contains(String(repeating: "x", count: 400)))
        #expect(!error.debugDescription.contains(String(repeating: "x", count: 600)))
    }
}
