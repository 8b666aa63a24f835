internal import CMongoC
import Foundation

/// A collection whose documents are `Document` values, encoded and decoded with ``BSONEncoder`` and
/// ``BSONDecoder``. Cheap to create and to copy; every operation runs on the client's thread pool.
public struct MongoCollection<Document: Codable & Sendable>: Sendable {
    public let name: String
    public let database: MongoDatabase

    /// The same collection read and written as another type (for example a projection's shape).
    public func withType<T: Codable & Sendable>(_ type: T.Type) -> MongoCollection<T> {
        MongoCollection<T>(name: name, database: database)
    }

    // MARK: Insert

    /// Inserts `document` and returns its `_id`: the document's own, or a new ObjectId when it has none.
    ///
    /// - Throws: ``MongoError`` with code `duplicateKey` when a unique index already holds its key.
    @discardableResult
    public func insertOne(_ document: Document) async throws -> BSONValue {
        let (encoded, id) = try encodeForInsert(document)
        let name = self.name
        try await withCollection { collection in
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = BSONBox(encoded).withPointer { doc in
                reply.withPointer { r in mongoc_collection_insert_one(collection, doc, nil, r, &error) }
            }
            guard ok else { throw MongoError(error, reply: reply.document, collection: name) }
        }
        return id
    }

    /// Inserts `documents` (libmongoc splits them into batches the server accepts) and returns their `_id`s
    /// in order. With `ordered` (the default) the first failure stops the rest.
    @discardableResult
    public func insertMany(_ documents: [Document], ordered: Bool = true) async throws -> [BSONValue] {
        guard !documents.isEmpty else { return [] }
        let (batch, ids) = try encodeForInsert(documents)
        let (ok, error, reply) = try await sendInsertMany(batch, ordered: ordered)
        guard ok else { throw MongoError(error, reply: reply, collection: name) }
        return ids
    }

    /// Inserts every document it can, whatever happens to the others (an unordered insert), and reports which
    /// ones the server refused and why, instead of throwing for them. Throws only when the insert as a whole
    /// failed (connection, timeout, server error not tied to one document).
    ///
    /// This is how an idempotent batch is written: documents keyed by an event id that are already stored come
    /// back as `duplicateKey` failures while the rest are inserted.
    public func insertManyReportingFailures(_ documents: [Document]) async throws -> InsertManyOutcome {
        guard !documents.isEmpty else { return InsertManyOutcome(ids: [], failures: [:]) }
        let (batch, ids) = try encodeForInsert(documents)
        let (ok, error, reply) = try await sendInsertMany(batch, ordered: false)
        var failures: [Int: MongoError] = [:]
        if case .array(let writeErrors)? = reply["writeErrors"] {
            for case .document(let writeError) in writeErrors {
                guard let index = writeError["index"]?.intValue, index >= 0, index < documents.count else { continue }
                let code = writeError["code"]?.intValue ?? 0
                let message = writeError["errmsg"]?.stringValue ?? "write error \(code)"
                failures[index] = MongoError(serverWriteError: code, message: message, collection: name)
            }
        }
        if !ok && failures.isEmpty { throw MongoError(error, reply: reply, collection: name) }
        return InsertManyOutcome(ids: ids, failures: failures)
    }

    private func encodeForInsert(_ documents: [Document]) throws -> ([BSONDocument], [BSONValue]) {
        var encoded: [BSONDocument] = []
        var ids: [BSONValue] = []
        encoded.reserveCapacity(documents.count)
        ids.reserveCapacity(documents.count)
        for document in documents {
            let (doc, id) = try encodeForInsert(document)
            encoded.append(doc)
            ids.append(id)
        }
        return (encoded, ids)
    }

    private func sendInsertMany(_ batch: [BSONDocument], ordered: Bool) async throws
        -> (ok: Bool, error: bson_error_t, reply: BSONDocument)
    {
        let options: BSONDocument? = ordered ? nil : ["ordered": false]
        return try await withCollection { collection in
            let boxes = batch.map { BSONBox($0) }
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = withExtendedLifetime(boxes) {
                // The pointers outlive withPointer's closure, but not `boxes`, which this closure keeps alive.
                var pointers: [OpaquePointer?] = boxes.map { $0.withPointer { $0 } }
                return withOptionalBSON(options) { opts in
                    reply.withPointer { r in
                        pointers.withUnsafeMutableBufferPointer { buffer in
                            mongoc_collection_insert_many(
                                collection, buffer.baseAddress, buffer.count, opts, r, &error)
                        }
                    }
                }
            }
            return (ok, error, reply.document)
        }
    }

    // MARK: Find

    /// The documents matching `filter`, decoded as `Document`, all in memory.
    ///
    /// - Parameters:
    ///   - sort: for example `.descending("createdAt")`.
    ///   - projection: decode into another type with ``find(_:sort:projection:skip:limit:as:)`` when the
    ///     projection leaves out fields `Document` requires.
    public func find(
        _ filter: BSONDocument = [:], sort: BSONDocument? = nil, projection: BSONDocument? = nil, skip: Int? = nil,
        limit: Int? = nil
    ) async throws -> [Document] {
        try await find(filter, sort: sort, projection: projection, skip: skip, limit: limit, as: Document.self)
    }

    /// The documents matching `filter`, decoded as `T`.
    public func find<T: Decodable & Sendable>(
        _ filter: BSONDocument = [:], sort: BSONDocument? = nil, projection: BSONDocument? = nil, skip: Int? = nil,
        limit: Int? = nil, as type: T.Type
    ) async throws -> [T] {
        var options = BSONDocument()
        if let sort { options["sort"] = .document(sort) }
        if let projection { options["projection"] = .document(projection) }
        if let skip { options["skip"] = .int64(Int64(skip)) }
        if let limit { options["limit"] = .int64(Int64(limit)) }
        if limit == 1 { options["singleBatch"] = true }
        let findOptions = options
        let name = self.name
        return try await withCollection { collection in
            let cursor = withBSON(filter) { f in
                withBSON(findOptions) { o in mongoc_collection_find_with_opts(collection, f, o, nil) }
            }
            guard let cursor else { throw MongoError(code: .invalidArgument, message: "find returned no cursor") }
            defer { mongoc_cursor_destroy(cursor) }
            return try Self.drain(cursor, as: T.self, collection: name)
        }
    }

    /// The first document matching `filter` (in `sort` order), or `nil`.
    public func findOne(
        _ filter: BSONDocument = [:], sort: BSONDocument? = nil, projection: BSONDocument? = nil
    ) async throws -> Document? {
        try await find(filter, sort: sort, projection: projection, limit: 1).first
    }

    /// Reads every document of `cursor`, decoding each; then reports the cursor's error, if any.
    static func drain<T: Decodable>(_ cursor: OpaquePointer, as type: T.Type, collection: String) throws -> [T] {
        var results: [T] = []
        var current: OpaquePointer?
        let decoder = BSONDecoder()
        while mongoc_cursor_next(cursor, &current) {
            guard let current else { continue }
            let document = try BSONDocument(borrowing: current)
            do {
                results.append(try decoder.decode(T.self, from: document))
            } catch {
                throw MongoError.decoding(error, collection: collection)
            }
        }
        var error = bson_error_t()
        var reply: OpaquePointer?
        if mongoc_cursor_error_document(cursor, &error, &reply) {
            throw MongoError(error, reply: reply.flatMap { try? BSONDocument(borrowing: $0) }, collection: collection)
        }
        return results
    }

    // MARK: Update

    /// Updates the first document matching `filter` with `update` (operators such as `$set`, `$inc`).
    /// With `upsert`, inserts one built from the filter and the update when none matches.
    @discardableResult
    public func updateOne(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool = false) async throws
        -> UpdateResult
    {
        try await performUpdate(filter, update, upsert: upsert, kind: .updateOne)
    }

    /// Updates every document matching `filter` with `update`.
    @discardableResult
    public func updateMany(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool = false) async throws
        -> UpdateResult
    {
        try await performUpdate(filter, update, upsert: upsert, kind: .updateMany)
    }

    /// Replaces the first document matching `filter` with `replacement`.
    @discardableResult
    public func replaceOne(_ filter: BSONDocument, with replacement: Document, upsert: Bool = false) async throws
        -> UpdateResult
    {
        let document: BSONDocument
        do {
            document = try BSONEncoder().encode(replacement)
        } catch {
            throw MongoError.encoding(error, collection: name)
        }
        return try await performUpdate(filter, document, upsert: upsert, kind: .replaceOne)
    }

    /// Which libmongoc write `performUpdate` sends.
    private enum UpdateKind { case updateOne, updateMany, replaceOne }

    private func performUpdate(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool, kind: UpdateKind) async throws
        -> UpdateResult
    {
        let name = self.name
        let options: BSONDocument? = upsert ? ["upsert": true] : nil
        return try await withCollection { collection in
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = withBSON(filter) { f in
                withBSON(update) { u in
                    withOptionalBSON(options) { o in
                        reply.withPointer { r in
                            switch kind {
                            case .updateOne: mongoc_collection_update_one(collection, f, u, o, r, &error)
                            case .updateMany: mongoc_collection_update_many(collection, f, u, o, r, &error)
                            case .replaceOne: mongoc_collection_replace_one(collection, f, u, o, r, &error)
                            }
                        }
                    }
                }
            }
            let replyDocument = reply.document
            guard ok else { throw MongoError(error, reply: replyDocument, collection: name) }
            return UpdateResult(reply: replyDocument)
        }
    }

    /// Atomically updates the first document matching `filter` (in `sort` order) and returns it as it was
    /// before the update or, with `returning: .after`, as it is after. `nil` when nothing matched and no
    /// document was upserted.
    public func findOneAndUpdate(
        _ filter: BSONDocument, _ update: BSONDocument, sort: BSONDocument? = nil, projection: BSONDocument? = nil,
        returning: ReturnDocument = .before, upsert: Bool = false
    ) async throws -> Document? {
        let name = self.name
        var flags = MONGOC_FIND_AND_MODIFY_NONE.rawValue
        if upsert { flags |= MONGOC_FIND_AND_MODIFY_UPSERT.rawValue }
        if returning == .after { flags |= MONGOC_FIND_AND_MODIFY_RETURN_NEW.rawValue }
        let modifyFlags = mongoc_find_and_modify_flags_t(rawValue: flags)
        return try await withCollection { collection in
            guard let opts = mongoc_find_and_modify_opts_new() else { preconditionFailure("out of memory") }
            defer { mongoc_find_and_modify_opts_destroy(opts) }
            // The setters copy the documents they are given.
            withBSON(update) { _ = mongoc_find_and_modify_opts_set_update(opts, $0) }
            if let sort { withBSON(sort) { _ = mongoc_find_and_modify_opts_set_sort(opts, $0) } }
            if let projection { withBSON(projection) { _ = mongoc_find_and_modify_opts_set_fields(opts, $0) } }
            _ = mongoc_find_and_modify_opts_set_flags(opts, modifyFlags)
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = withBSON(filter) { f in
                reply.withPointer { r in mongoc_collection_find_and_modify_with_opts(collection, f, opts, r, &error) }
            }
            let replyDocument = reply.document
            guard ok else { throw MongoError(error, reply: replyDocument, collection: name) }
            guard case .document(let value)? = replyDocument["value"] else { return nil }
            do {
                return try BSONDecoder().decode(Document.self, from: value)
            } catch {
                throw MongoError.decoding(error, collection: name)
            }
        }
    }

    // MARK: Delete and count

    /// Deletes the first document matching `filter`; returns how many were deleted (0 or 1).
    @discardableResult
    public func deleteOne(_ filter: BSONDocument) async throws -> Int {
        try await delete(filter, many: false)
    }

    /// Deletes every document matching `filter`; returns how many were deleted.
    @discardableResult
    public func deleteMany(_ filter: BSONDocument) async throws -> Int {
        try await delete(filter, many: true)
    }

    private func delete(_ filter: BSONDocument, many: Bool) async throws -> Int {
        let name = self.name
        return try await withCollection { collection in
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = withBSON(filter) { f in
                reply.withPointer { r in
                    many
                        ? mongoc_collection_delete_many(collection, f, nil, r, &error)
                        : mongoc_collection_delete_one(collection, f, nil, r, &error)
                }
            }
            let replyDocument = reply.document
            guard ok else { throw MongoError(error, reply: replyDocument, collection: name) }
            return replyDocument["deletedCount"]?.intValue ?? 0
        }
    }

    /// How many documents match `filter`.
    public func count(_ filter: BSONDocument = [:]) async throws -> Int {
        let name = self.name
        return try await withCollection { collection in
            var error = bson_error_t()
            let reply = BSONReply()
            let count = withBSON(filter) { f in
                reply.withPointer { r in mongoc_collection_count_documents(collection, f, nil, nil, r, &error) }
            }
            guard count >= 0 else { throw MongoError(error, reply: reply.document, collection: name) }
            return Int(count)
        }
    }

    // MARK: Indexes

    /// Creates the indexes (with the `createIndexes` command) and returns their names. Creating an index that
    /// already exists with the same options does nothing.
    @discardableResult
    public func createIndexes(_ indexes: [IndexModel]) async throws -> [String] {
        let specifications = indexes.map(\.specification)
        let command: BSONDocument = [
            "createIndexes": .string(name), "indexes": .array(specifications.map { .document($0) }),
        ]
        let name = self.name
        try await withCollection { collection in
            var error = bson_error_t()
            let reply = BSONReply()
            let ok = withBSON(command) { c in
                reply.withPointer { r in mongoc_collection_write_command_with_opts(collection, c, nil, r, &error) }
            }
            guard ok else { throw MongoError(error, reply: reply.document, collection: name) }
        }
        return specifications.compactMap { $0["name"]?.stringValue }
    }

    /// Creates one index and returns its name.
    @discardableResult
    public func createIndex(_ index: IndexModel) async throws -> String {
        try await createIndexes([index])[0]
    }

    /// The collection's indexes as the server describes them (`name`, `key`, `unique`, `expireAfterSeconds`…).
    public func listIndexes() async throws -> [BSONDocument] {
        let name = self.name
        return try await withCollection { collection in
            guard let cursor = mongoc_collection_find_indexes_with_opts(collection, nil) else {
                throw MongoError(code: .server, message: "listIndexes returned no cursor", collection: name)
            }
            defer { mongoc_cursor_destroy(cursor) }
            return try Self.drain(cursor, as: BSONDocument.self, collection: name)
        }
    }

    // MARK: Aggregate, drop

    /// Runs an aggregation pipeline and decodes its results as `T`.
    public func aggregate<T: Decodable & Sendable>(_ pipeline: [BSONDocument], as type: T.Type) async throws -> [T] {
        let name = self.name
        let command: BSONDocument = ["pipeline": .array(pipeline.map { .document($0) })]
        return try await withCollection { collection in
            let cursor = withBSON(command) { p in
                mongoc_collection_aggregate(collection, MONGOC_QUERY_NONE, p, nil, nil)
            }
            guard let cursor else { throw MongoError(code: .invalidArgument, message: "aggregate returned no cursor") }
            defer { mongoc_cursor_destroy(cursor) }
            return try Self.drain(cursor, as: T.self, collection: name)
        }
    }

    /// Runs an aggregation pipeline and returns its results as documents.
    public func aggregate(_ pipeline: [BSONDocument]) async throws -> [BSONDocument] {
        try await aggregate(pipeline, as: BSONDocument.self)
    }

    /// Drops the collection with its indexes. Dropping a collection that does not exist is not an error.
    public func drop() async throws {
        let name = self.name
        try await withCollection { collection in
            var error = bson_error_t()
            guard mongoc_collection_drop_with_opts(collection, nil, &error) else {
                // NamespaceNotFound: nothing to drop.
                if error.code == 26 { return }
                throw MongoError(error, collection: name)
            }
        }
    }

    // MARK: Plumbing

    /// Runs `body` on the client's thread pool with a `mongoc_collection_t *` from a pooled client.
    func withCollection<R: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws -> R) async throws -> R {
        let databaseName = database.name
        let name = self.name
        return try await database.client.withClient(collection: name) { client in
            guard let collection = mongoc_client_get_collection(client, databaseName, name) else {
                throw MongoError(code: .invalidArgument, message: "invalid collection name", collection: name)
            }
            defer { mongoc_collection_destroy(collection) }
            return try body(collection)
        }
    }

    /// Encodes a document for insertion, giving it a new ObjectId `_id` (first, as the server would) if it has none.
    private func encodeForInsert(_ document: Document) throws -> (BSONDocument, BSONValue) {
        var encoded: BSONDocument
        do {
            encoded = try BSONEncoder().encode(document)
        } catch {
            throw MongoError.encoding(error, collection: name)
        }
        if let id = encoded["_id"] { return (encoded, id) }
        let id = BSONValue.objectId(ObjectId())
        encoded.prepend("_id", id)
        return (encoded, id)
    }
}

/// What an unordered insert did: every document's `_id`, and the documents the server refused, by position.
public struct InsertManyOutcome: Sendable {
    /// The `_id` of every document given, in order (inserted or not).
    public var ids: [BSONValue]
    /// The refused documents' positions and why (`duplicateKey` for a key a unique index already holds).
    public var failures: [Int: MongoError]
    /// How many documents were inserted.
    public var insertedCount: Int { ids.count - failures.count }
}

/// Which version of the document ``MongoCollection/findOneAndUpdate(_:_:sort:projection:returning:upsert:)``
/// returns.
public enum ReturnDocument: Sendable {
    case before
    case after
}

/// What an update did.
public struct UpdateResult: Sendable, Equatable {
    /// Documents that matched the filter.
    public var matchedCount: Int
    /// Documents actually changed (a `$set` to the same value matches but does not modify).
    public var modifiedCount: Int
    /// 1 when an upsert inserted a document.
    public var upsertedCount: Int
    /// The `_id` of the upserted document.
    public var upsertedId: BSONValue?

    init(reply: BSONDocument) {
        matchedCount = reply["matchedCount"]?.intValue ?? 0
        modifiedCount = reply["modifiedCount"]?.intValue ?? 0
        upsertedCount = reply["upsertedCount"]?.intValue ?? 0
        upsertedId = reply["upsertedId"]
        if upsertedId != nil, upsertedCount == 0 { upsertedCount = 1 }
    }
}

/// An index to create with ``MongoCollection/createIndexes(_:)``.
public struct IndexModel: Sendable {
    /// The key specification, in order: `["machine": 1, "createdAt": -1]`.
    public var keys: BSONDocument
    /// The index name; by default derived from the keys as the server does (`machine_1_createdAt_-1`).
    public var name: String?
    /// Reject a second document with the same key.
    public var unique: Bool
    /// A TTL index: the server deletes a document once its date field (the single key) is this old.
    public var expireAfter: Duration?
    /// A partial index: only documents matching this filter are indexed.
    public var partialFilter: BSONDocument?
    /// Leave out documents that lack the indexed field.
    public var sparse: Bool

    public init(
        keys: BSONDocument, name: String? = nil, unique: Bool = false, expireAfter: Duration? = nil,
        partialFilter: BSONDocument? = nil, sparse: Bool = false
    ) {
        self.keys = keys
        self.name = name
        self.unique = unique
        self.expireAfter = expireAfter
        self.partialFilter = partialFilter
        self.sparse = sparse
    }

    /// The index document of the `createIndexes` command.
    var specification: BSONDocument {
        var spec: BSONDocument = ["key": .document(keys), "name": .string(name ?? defaultName)]
        if unique { spec["unique"] = true }
        if sparse { spec["sparse"] = true }
        if let expireAfter {
            spec["expireAfterSeconds"] = .int32(Int32(clamping: expireAfter.components.seconds))
        }
        if let partialFilter { spec["partialFilterExpression"] = .document(partialFilter) }
        return spec
    }

    private var defaultName: String {
        keys.elements.map { key, value in
            let direction: String
            switch value {
            case .string(let s): direction = s
            case .double(let d) where d == d.rounded(): direction = String(Int(d))
            default: direction = value.intValue.map(String.init) ?? "1"
            }
            return "\(key)_\(direction)"
        }.joined(separator: "_")
    }
}
