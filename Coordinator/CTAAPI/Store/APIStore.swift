public import CTACoordinator
import CTACore
import CTADefinitions
public import CTAMongo
import Foundation

/// What the API keeps in MongoDB besides the coordinator's own collections: users, groups, tokens, enrollment
/// tokens, claims, attachments; and the paged reads of the coordinator's collections.
///
/// Collections: `apiUsers`, `apiGroups`, `apiTokens`, `apiEnrollmentTokens`, `apiClaims`, `apiAttachments`,
/// `apiAttachmentChunks`, `apiWebhooks` (read by the coordinator too). Definitions stay in `tests`, `suites`,
/// `configurations`, `scenarios`; the API adds an `owners` field beside `definition`.
public struct APIStore: Sendable {
    public let store: MongoStore
    public var database: MongoDatabase { store.database }

    public init(store: MongoStore) {
        self.store = store
    }

    var users: MongoCollection<UserRecord> { database.collection("apiUsers", as: UserRecord.self) }
    var groups: MongoCollection<GroupRecord> { database.collection("apiGroups", as: GroupRecord.self) }
    var tokens: MongoCollection<TokenRecord> { database.collection("apiTokens", as: TokenRecord.self) }
    var enrollmentTokens: MongoCollection<EnrollmentTokenRecord> {
        database.collection("apiEnrollmentTokens", as: EnrollmentTokenRecord.self)
    }
    var claims: MongoCollection<ClaimRecord> { database.collection("apiClaims", as: ClaimRecord.self) }
    var attachments: MongoCollection<AttachmentRecord> { database.collection("apiAttachments", as: AttachmentRecord.self) }
    var attachmentChunks: MongoCollection<AttachmentChunk> {
        database.collection("apiAttachmentChunks", as: AttachmentChunk.self)
    }

    /// Creates the API's indexes. Safe to call from several coordinators at once.
    public func prepare() async throws {
        try await tokens.createIndexes([
            IndexModel(keys: .ascending("hash"), name: "hash", unique: true),
            IndexModel(keys: .ascending("user", "createdAt"), name: "user"),
        ])
        try await enrollmentTokens.createIndexes([IndexModel(keys: .ascending("hash"), name: "hash", unique: true)])
        try await attachments.createIndexes([IndexModel(keys: .ascending("executionID", "name"), name: "execution")])
        try await attachmentChunks.createIndexes([IndexModel(keys: .ascending("attachment", "n"), name: "attachment")])
        try await store.managedWebhooksCollection.createIndexes([
            IndexModel(keys: .ascending("scenario", "createdAt"), name: "scenario")
        ])
        try await store.executionsCollection.createIndexes([
            IndexModel(keys: ["createdAt": -1, "_id": -1], name: "created_id")
        ])
        try await store.resultsCollection.createIndexes([
            IndexModel(keys: .ascending("executionID", "receivedAt", "_id"), name: "execution_received")
        ])
        try await store.statesCollection.createIndexes([
            IndexModel(keys: .ascending("executionID", "receivedAt", "_id"), name: "execution_received")
        ])
    }

    // MARK: Paging

    /// One page of `collection` after `request.cursor`, in the order of `sortKey` (a date field; nil: `_id` only)
    /// then `_id`, keeping only documents `include` accepts. Reads in batches until the page is full, so a filter
    /// applied here (visibility) never shortens a page that has more behind it.
    func page<T: Codable & Sendable>(
        _ collection: MongoCollection<T>, filter: BSONDocument, sortKey: String?, descending: Bool,
        request: PageRequest, cursor cursorOf: (T) -> Cursor, include: (T) -> Bool = { _ in true }
    ) async throws -> (items: [T], next: Cursor?) {
        let direction: BSONValue = .int32(descending ? -1 : 1)
        var sort: BSONDocument = [:]
        if let sortKey { sort[sortKey] = direction }
        sort["_id"] = direction
        let batch = max(request.limit + 1, 100)
        var after = request.cursor
        var items: [T] = []
        scan: while true {
            var query = filter
            if let after { query = ["$and": [.document(filter), .document(Self.after(after, sortKey: sortKey, descending: descending))]] }
            let found = try await collection.find(query, sort: sort, limit: batch)
            for document in found {
                after = cursorOf(document)
                guard include(document) else { continue }
                items.append(document)
                if items.count > request.limit { break scan }
            }
            if found.count < batch { break }
        }
        guard items.count > request.limit else { return (items, nil) }
        items.removeLast(items.count - request.limit)
        return (items, cursorOf(items[items.count - 1]))
    }

    /// The filter for "strictly after `cursor`" in the sort order.
    static func after(_ cursor: Cursor, sortKey: String?, descending: Bool) -> BSONDocument {
        let op = descending ? "$lt" : "$gt"
        let key: BSONValue =
            switch cursor.key {
            case .time: .date(cursor.date!)
            case .text(let text): .string(text)
            }
        guard let sortKey else { return ["_id": [op: .string(cursor.id)]] }
        return [
            "$or": [
                [sortKey: [op: key]],
                [sortKey: key, "_id": [op: .string(cursor.id)]],
            ]
        ]
    }

    // MARK: Claims

    /// Claims a one-time decision; true for the one caller whose insert created it.
    func claim(_ id: String, by holder: String) async throws -> Bool {
        do {
            _ = try await claims.insertOne(ClaimRecord(_id: id, by: holder, at: Date()))
            return true
        } catch let error as MongoError where error.code == .duplicateKey {
            return false
        }
    }
}
