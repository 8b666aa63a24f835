internal import CMongoC

/// A database on a ``MongoClient``: a name and the client, cheap to create and to copy.
public struct MongoDatabase: Sendable {
    public let name: String
    public let client: MongoClient

    /// The collection `name`, whose documents are read and written as `T`.
    public func collection<T: Codable & Sendable>(_ name: String, as type: T.Type) -> MongoCollection<T> {
        MongoCollection(name: name, database: self)
    }

    /// The collection `name`, with untyped documents.
    public func collection(_ name: String) -> MongoCollection<BSONDocument> {
        MongoCollection(name: name, database: self)
    }

    /// Runs a database command (`{"ping": 1}`, `{"collMod": …}`) and returns the server's reply.
    @discardableResult
    public func runCommand(_ command: BSONDocument) async throws -> BSONDocument {
        let name = self.name
        return try await client.withClient(collection: nil) { client in
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = withBSON(command) { cmd in
                reply.withPointer { r in mongoc_client_command_simple(client, name, cmd, nil, r, &error) }
            }
            let document = reply.document
            guard ok else { throw MongoError(error, reply: document) }
            return document
        }
    }

    /// The names of the collections in this database.
    public func listCollectionNames() async throws -> [String] {
        let reply = try await runCommand(["listCollections": 1, "nameOnly": true])
        guard case .array(let batch)? = reply["cursor"]?.documentValue?["firstBatch"] else { return [] }
        return batch.compactMap { $0.documentValue?["name"]?.stringValue }
    }

    /// Drops the database and everything in it.
    public func drop() async throws {
        let name = self.name
        try await client.withClient(collection: nil) { client in
            guard let database = mongoc_client_get_database(client, name) else {
                throw MongoError(code: .invalidArgument, message: "invalid database name \(name)")
            }
            defer { mongoc_database_destroy(database) }
            var error = bson_error_t()
            guard mongoc_database_drop_with_opts(database, nil, &error) else { throw MongoError(error) }
        }
    }
}
