import CTAMongo
import Foundation
import Logging
import Testing

/// A client on the test server and a database of its own, dropped when `body` finishes.
func withMongoDatabase<R>(
    _ prefix: String = "cta-test", _ body: (MongoClient, MongoDatabase) async throws -> R
) async throws -> R {
    let uri = try ServiceEnvironment.requireMongoURI()
    let client = try MongoClient(uri: uri, logger: Logger(label: "cta.mongo.test"))
    let database = client.database(ServiceEnvironment.uniqueName(prefix))
    do {
        let result = try await body(client, database)
        try? await database.drop()
        try await client.shutdown()
        return result
    } catch {
        try? await database.drop()
        try? await client.shutdown()
        throw error
    }
}

/// A machine record as the coordinator might store it.
struct TestMachine: Codable, Equatable, Sendable {
    var _id: String
    var name: String
    var cores: Int
    var pool: String
    var tags: [String]
    var lastSeen: Date?
    var attempts: Int?
}

func machine(_ index: Int, pool: String = "linux") -> TestMachine {
    TestMachine(
        _id: "m\(index)", name: "host-\(index)", cores: index % 8 + 1, pool: pool, tags: ["t\(index % 3)"],
        lastSeen: Date(timeIntervalSince1970: 1_700_000_000 + Double(index)), attempts: nil)
}
