internal import CMongoC
import Foundation
import NIOCore
import NIOPosix

/// Where a change stream stands: save it, and start a later stream after it with
/// ``MongoCollection/watch(_:fullDocumentOnUpdate:resumeAfter:startAfter:startAtOperationTime:maxAwaitTime:batchSize:)``.
///
/// The token is opaque. Store it as a document field (it is `Codable`) or as bytes (``bsonBytes``).
public struct ResumeToken: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The token as the server gave it.
    public let document: BSONDocument

    public init(_ document: BSONDocument) {
        self.document = document
    }

    /// The token's BSON bytes, for storage outside MongoDB.
    public var bsonBytes: [UInt8] { document.bsonBytes }

    /// A token from bytes saved from ``bsonBytes``.
    public init(bsonBytes: [UInt8]) throws {
        self.document = try BSONDocument(bsonBytes: bsonBytes)
    }

    public init(from decoder: any Decoder) throws {
        self.document = try BSONDocument(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try document.encode(to: encoder)
    }

    public var description: String { document.extendedJSON }
}

/// What happened (`insert`, `update`, `replace`, `delete`, `drop`, `invalidate`…).
public struct ChangeOperationType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let insert = ChangeOperationType(rawValue: "insert")
    public static let update = ChangeOperationType(rawValue: "update")
    public static let replace = ChangeOperationType(rawValue: "replace")
    public static let delete = ChangeOperationType(rawValue: "delete")
    public static let drop = ChangeOperationType(rawValue: "drop")
    public static let rename = ChangeOperationType(rawValue: "rename")
    public static let dropDatabase = ChangeOperationType(rawValue: "dropDatabase")
    public static let invalidate = ChangeOperationType(rawValue: "invalidate")

    public var description: String { rawValue }
}

/// One change a change stream reported.
public struct ChangeEvent<Document: Decodable & Sendable>: Sendable {
    public typealias OperationType = ChangeOperationType

    public let operationType: OperationType
    /// This event's token (its `_id`): a stream resumed after it starts with the next event.
    public let resumeToken: ResumeToken
    /// The `_id` (and shard key) of the changed document.
    public let documentKey: BSONDocument?
    /// The document after the change: for inserts and replaces always, for updates with
    /// `fullDocumentOnUpdate`.
    public let fullDocument: Document?
    /// For updates: the fields set.
    public let updatedFields: BSONDocument?
    /// For updates: the fields removed.
    public let removedFields: [String]?
    /// When the server applied the change.
    public let clusterTime: BSONTimestamp?
    /// The database and collection of the change.
    public let database: String?
    public let collection: String?
    /// The whole event as the server sent it.
    public let raw: BSONDocument

    init(raw: BSONDocument, collectionName: String) throws {
        guard let token = raw["_id"]?.documentValue else {
            throw MongoError(
                code: .server, message: "change event without a resume token (_id)", collection: collectionName)
        }
        guard let operation = raw["operationType"]?.stringValue else {
            throw MongoError(
                code: .decoding, message: "change event without operationType", collection: collectionName,
                field: "operationType")
        }
        self.raw = raw
        self.resumeToken = ResumeToken(token)
        self.operationType = OperationType(rawValue: operation)
        self.documentKey = raw["documentKey"]?.documentValue
        if case .document(let full)? = raw["fullDocument"] {
            do {
                self.fullDocument = try BSONDecoder().decode(Document.self, from: full)
            } catch {
                let mapped = MongoError.decoding(error, collection: collectionName)
                throw MongoError(
                    code: .decoding, message: mapped.message, collection: collectionName,
                    field: ["fullDocument", mapped.field].compactMap { $0 }.joined(separator: "."))
            }
        } else {
            self.fullDocument = nil
        }
        let description = raw["updateDescription"]?.documentValue
        self.updatedFields = description?["updatedFields"]?.documentValue
        if case .array(let removed)? = description?["removedFields"] {
            self.removedFields = removed.compactMap(\.stringValue)
        } else {
            self.removedFields = nil
        }
        if case .timestamp(let t)? = raw["clusterTime"] { self.clusterTime = t } else { self.clusterTime = nil }
        let namespace = raw["ns"]?.documentValue
        self.database = namespace?["db"]?.stringValue
        self.collection = namespace?["coll"]?.stringValue
    }
}

/// The changes to a collection, as they happen: an `AsyncSequence` of ``ChangeEvent``s.
///
/// The stream is open on the server from the moment `watch` returns: changes made after that are reported.
/// Iterate it once. Waiting for the next change blocks a thread in libmongoc (up to `maxAwaitTime` per
/// round trip); each stream has one thread of its own for that, never the cooperative pool.
///
/// It ends (`next()` returns `nil`) when ``close()`` is called, the iterating task is cancelled, the client
/// is shut down, or after an `invalidate` event; the
/// cursor and its connection are then released, which takes at most `maxAwaitTime`. A server or
/// connection error is thrown once, and ends the stream; a ``MongoError/Code/decoding`` error (a
/// `fullDocument` that does not decode as `Document`) is thrown for that event only, and iteration may go on.
public final class ChangeStream<Document: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = ChangeEvent<Document>
    public typealias Failure = any Error

    private let core: ChangeStreamCore

    init(core: ChangeStreamCore) {
        self.core = core
    }

    deinit {
        core.closeDetached()
    }

    /// The token to resume after everything this stream has returned so far (the server's post-batch token
    /// when there is one), or `nil` before the first round trip.
    public var resumeToken: ResumeToken? { core.latestToken }

    /// Ends the stream and releases its cursor and connection. An iteration in progress returns `nil`.
    public func close() async {
        await core.close()
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(stream: self)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: ChangeStream

        public mutating func next() async throws -> ChangeEvent<Document>? {
            guard let raw = try await stream.core.next() else { return nil }
            return try ChangeEvent<Document>(raw: raw, collectionName: stream.core.collectionName)
        }
    }
}

/// A change stream's libmongoc state and its thread.
///
/// `@unchecked Sendable`: the C handles (`client`, `collection`, `stream`) and `pool` are only read and
/// written by jobs on `thread`, a pool of exactly one thread, so those jobs run one at a time, in order.
/// The only exception is the cleanup a shutdown runs in place of a queued job, which happens after the
/// thread has stopped taking jobs. The flags other tasks read are behind locks.
final class ChangeStreamCore: @unchecked Sendable {
    let collectionName: String
    private let thread: NIOThreadPool
    private let registry: StreamRegistry
    private var pool: ClientPool?
    private var client: OpaquePointer?
    private var collection: OpaquePointer?
    private var stream: OpaquePointer?

    private let cancelled = Locked(false)
    private let closing = Locked(false)
    private let token = Locked<ResumeToken?>(nil)

    var latestToken: ResumeToken? { token.withLock { $0 } }

    private init(collectionName: String, thread: NIOThreadPool, registry: StreamRegistry) {
        self.collectionName = collectionName
        self.thread = thread
        self.registry = registry
    }

    /// Opens a change stream on its own thread: pops a client and runs `mongoc_collection_watch` (or
    /// `mongoc_database_watch` when `collection` is nil: every collection of the database).
    static func open(
        client: MongoClient, database: String, collection: String?, pipeline: BSONDocument, options: BSONDocument
    ) async throws -> ChangeStreamCore {
        let pool = try client.currentPool()
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let core = ChangeStreamCore(collectionName: collection ?? database, thread: thread, registry: client.streams)
        guard client.streams.add(core) else {
            await core.close()
            throw MongoError.clientClosed
        }
        do {
            try await thread.runIfActive {
                try core.openOnThread(
                    pool: pool, database: database, collection: collection, pipeline: pipeline, options: options)
            }
        } catch {
            await core.close()
            throw error
        }
        return core
    }

    private func openOnThread(
        pool: ClientPool, database: String, collection collectionName: String?, pipeline: BSONDocument,
        options: BSONDocument
    ) throws {
        self.pool = pool
        let client = pool.pop()
        self.client = client
        let stream: OpaquePointer?
        if let collectionName {
            guard let collection = mongoc_client_get_collection(client, database, collectionName) else {
                throw MongoError(code: .invalidArgument, message: "invalid collection name", collection: collectionName)
            }
            self.collection = collection
            stream = withBSON(pipeline) { p in withBSON(options) { o in mongoc_collection_watch(collection, p, o) } }
        } else {
            guard let handle = mongoc_client_get_database(client, database) else {
                throw MongoError(code: .invalidArgument, message: "invalid database name", collection: database)
            }
            stream = withBSON(pipeline) { p in withBSON(options) { o in mongoc_database_watch(handle, p, o) } }
            // The stream keeps what it needs of the database handle.
            mongoc_database_destroy(handle)
        }
        self.stream = stream
        let collectionName = collectionName ?? database
        guard let stream else {
            throw MongoError(code: .invalidArgument, message: "watch returned no stream", collection: collectionName)
        }
        try checkError(stream)
        updateToken(stream)
    }

    /// The next event document, or `nil` once cancelled or closed.
    func next() async throws -> BSONDocument? {
        if closing.withLock({ $0 }) { return nil }
        let result: BSONDocument?
        do {
            result = try await withTaskCancellationHandler {
                try await thread.runIfActive { try self.nextOnThread() }
            } onCancel: {
                self.cancelled.withLock { $0 = true }
            }
        } catch is CancellationError {
            result = nil
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            result = nil
        } catch let error as MongoError where error.code == .decoding {
            throw error
        } catch {
            await close()
            throw error
        }
        if result == nil { await close() }
        // After `invalidate` (the collection was dropped or renamed) the server has closed the cursor: the
        // event is returned, the next call ends the stream. Resume with `startAfter` its token.
        if result?["operationType"] == "invalidate" { cancelled.withLock { $0 = true } }
        return result
    }

    /// Waits on the server for the next change, round trip after round trip, until one arrives, an error
    /// occurs, or the stream is cancelled (checked between round trips).
    private func nextOnThread() throws -> BSONDocument? {
        var idleRounds = 0
        while !cancelled.withLock({ $0 }) {
            guard let stream else { return nil }
            let started = ContinuousClock.now
            var current: OpaquePointer?
            if mongoc_change_stream_next(stream, &current), let current {
                let document = try BSONDocument(borrowing: current)
                updateToken(stream)
                return document
            }
            try checkError(stream)
            updateToken(stream)
            // A server that answers an empty getMore at once (ignoring maxAwaitTimeMS) must not make this spin.
            if ContinuousClock.now - started < .milliseconds(5) {
                idleRounds += 1
                let pause = min(100, 5 * idleRounds)
                usleep(useconds_t(pause * 1000))
            } else {
                idleRounds = 0
            }
        }
        return nil
    }

    private func checkError(_ stream: OpaquePointer) throws {
        var error = bson_error_t()
        var reply: OpaquePointer?
        if mongoc_change_stream_error_document(stream, &error, &reply) {
            throw MongoError(
                error, reply: reply.flatMap { try? BSONDocument(borrowing: $0) }, collection: collectionName)
        }
    }

    private func updateToken(_ stream: OpaquePointer) {
        guard let pointer = mongoc_change_stream_get_resume_token(stream),
            let document = try? BSONDocument(borrowing: pointer), !document.isEmpty
        else { return }
        token.withLock { $0 = ResumeToken(document) }
    }

    /// Releases the stream, the collection and the client (on the stream's thread), then stops the thread.
    func close() async {
        cancelled.withLock { $0 = true }
        guard !closing.exchange(true) else { return }
        registry.remove(self)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            thread.submit { _ in
                self.releaseHandles()
                continuation.resume()
            }
        }
        try? await thread.shutdownGracefully()
    }

    /// `close()` for `deinit`: the same work, without waiting for it.
    func closeDetached() {
        cancelled.withLock { $0 = true }
        guard !closing.exchange(true) else { return }
        registry.remove(self)
        thread.submit { _ in self.releaseHandles() }
        thread.shutdownGracefully { _ in }
    }

    private func releaseHandles() {
        if let stream { mongoc_change_stream_destroy(stream) }
        if let collection { mongoc_collection_destroy(collection) }
        if let client, let pool { pool.push(client) }
        stream = nil
        collection = nil
        client = nil
        pool = nil
    }
}

/// The options of a change stream (`watch` on a collection or a database).
func changeStreamOptions(
    fullDocumentOnUpdate: Bool, resumeAfter: ResumeToken?, startAfter: ResumeToken?,
    startAtOperationTime: BSONTimestamp?, maxAwaitTime: Duration, batchSize: Int?
) -> BSONDocument {
    var options: BSONDocument = [:]
    if fullDocumentOnUpdate { options["fullDocument"] = "updateLookup" }
    if let resumeAfter { options["resumeAfter"] = .document(resumeAfter.document) }
    if let startAfter { options["startAfter"] = .document(startAfter.document) }
    if let startAtOperationTime { options["startAtOperationTime"] = .timestamp(startAtOperationTime) }
    let ms = maxAwaitTime.components.seconds * 1000 + maxAwaitTime.components.attoseconds / 1_000_000_000_000_000
    options["maxAwaitTimeMS"] = .int64(max(1, ms))
    if let batchSize { options["batchSize"] = .int32(Int32(clamping: batchSize)) }
    return options
}

extension MongoCollection {
    /// Opens a change stream on this collection.
    ///
    /// - Parameters:
    ///   - pipeline: stages applied to the events (for example a `$match` on `operationType`).
    ///   - fullDocumentOnUpdate: also report the whole document after an update (`fullDocument: updateLookup`).
    ///   - resumeAfter: start after the event with this token (from ``ChangeEvent/resumeToken`` or
    ///     ``ChangeStream/resumeToken``) — events after it are reported exactly once.
    ///   - startAfter: like `resumeAfter`, but also accepted after an `invalidate` event.
    ///   - startAtOperationTime: start with the first change at or after this cluster time (the server must
    ///     still hold that history, else the stream fails with `ChangeStreamHistoryLost`).
    ///   - maxAwaitTime: how long the server waits for a change before answering an empty batch; also the
    ///     longest a cancellation or ``ChangeStream/close()`` waits. Default 1 s.
    public func watch(
        _ pipeline: [BSONDocument] = [], fullDocumentOnUpdate: Bool = false, resumeAfter: ResumeToken? = nil,
        startAfter: ResumeToken? = nil, startAtOperationTime: BSONTimestamp? = nil,
        maxAwaitTime: Duration = .seconds(1), batchSize: Int? = nil
    ) async throws -> ChangeStream<Document> {
        let options = changeStreamOptions(
            fullDocumentOnUpdate: fullDocumentOnUpdate, resumeAfter: resumeAfter, startAfter: startAfter,
            startAtOperationTime: startAtOperationTime, maxAwaitTime: maxAwaitTime, batchSize: batchSize)
        let core = try await ChangeStreamCore.open(
            client: database.client, database: database.name, collection: name,
            pipeline: ["pipeline": .array(pipeline.map { .document($0) })], options: options)
        return ChangeStream(core: core)
    }
}

extension MongoDatabase {
    /// Opens one change stream on every collection of this database: one order for changes to different
    /// collections (the order the server applied them in), and one token to resume it. Parameters as for
    /// ``MongoCollection/watch(_:fullDocumentOnUpdate:resumeAfter:startAfter:startAtOperationTime:maxAwaitTime:batchSize:)``;
    /// ``ChangeEvent/collection`` tells which collection each change is in, so `Document` is usually
    /// ``BSONDocument``.
    public func watch<Document: Decodable & Sendable>(
        _ pipeline: [BSONDocument] = [], as type: Document.Type = BSONDocument.self,
        fullDocumentOnUpdate: Bool = false, resumeAfter: ResumeToken? = nil, startAfter: ResumeToken? = nil,
        startAtOperationTime: BSONTimestamp? = nil, maxAwaitTime: Duration = .seconds(1), batchSize: Int? = nil
    ) async throws -> ChangeStream<Document> {
        let options = changeStreamOptions(
            fullDocumentOnUpdate: fullDocumentOnUpdate, resumeAfter: resumeAfter, startAfter: startAfter,
            startAtOperationTime: startAtOperationTime, maxAwaitTime: maxAwaitTime, batchSize: batchSize)
        let core = try await ChangeStreamCore.open(
            client: client, database: name, collection: nil,
            pipeline: ["pipeline": .array(pipeline.map { .document($0) })], options: options)
        return ChangeStream(core: core)
    }
}
