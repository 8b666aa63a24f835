import CTACore
public import CTAMongo
public import Foundation

/// A lease held: who holds it, until when, and the fencing term of this holder's tenure.
public struct LeaseGrant: Hashable, Sendable {
    /// The lease's name, for example `scheduler`.
    public var name: String
    /// Who holds it: a coordinator's instance name.
    public var holder: String
    /// The fencing term: it grows by one each time the lease passes to a holder that did not hold it right before
    /// (a release ends a tenure too), and stays the same while the holder renews. Stamp it on writes that only the
    /// leader may make, so that a store can refuse those of a leader that has been replaced.
    public var term: Int
    /// When the lease lapses unless renewed, by the clock of the coordinator that last acquired or renewed it.
    public var expiresAt: Date
    /// When this tenure (this term) began.
    public var heldSince: Date

    public init(name: String, holder: String, term: Int, expiresAt: Date, heldSince: Date) {
        self.name = name
        self.holder = holder
        self.term = term
        self.expiresAt = expiresAt
        self.heldSince = heldSince
    }
}

/// Named leases in a MongoDB collection: at most one holder at a time per name, for leader election.
///
/// A lease is one document, `{_id: name, holder, term, expiresAt, heldSince, renewedAt}`.
/// ``acquire(name:holder:duration:)`` is one atomic `findAndModify` with upsert: it matches the document when the
/// lease is expired or already the caller's, and otherwise tries to insert it, which the unique `_id` refuses with a
/// duplicate key error when another holder has it. So of any number of concurrent callers, only those of one holder
/// are granted the lease.
///
/// - Important: Clocks. The expiry is a wall-clock time written by the coordinator that acquires or renews, from its
///   own clock, and compared by the next one against its own clock. This assumes the coordinators' clocks agree
///   within a small margin (NTP keeps them within milliseconds). A coordinator whose clock runs ahead by `skew`
///   sees a lease expire `skew` early and may take it over while the holder still believes it leads; a holder
///   should therefore stop acting as leader some margin before `expiresAt` (``LeaderElection`` does), and writes
///   that only a leader may make should carry the ``LeaseGrant/term`` so that stale ones can be refused.
public struct LeaseManager: Sendable {
    /// The collection the leases live in unless told otherwise.
    public static let defaultCollectionName = "leases"

    /// The collection of lease documents.
    public let collection: MongoCollection<LeaseDocument>
    /// The wall clock; ``LeaderElection`` reads the same one.
    let now: @Sendable () -> Date

    /// Leases in `database`'s collection `collectionName`.
    ///
    /// - Parameter now: The wall clock expiries are computed and compared with; tests pass a manual one.
    public init(
        database: MongoDatabase, collectionName: String = defaultCollectionName,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        collection = database.collection(collectionName, as: LeaseDocument.self)
        self.now = now
    }

    /// Grants `name` to `holder` for `duration` from now when the lease is free, expired, or already held by
    /// `holder` (a renewal, which keeps the term); returns `nil` when another holder has it.
    ///
    /// - Throws: ``MongoError`` when the database cannot answer; the caller cannot tell whether it holds the lease
    ///   then, and should assume it does not once its last grant expires.
    public func acquire(name: String, holder: String, duration: Duration) async throws -> LeaseGrant? {
        precondition(duration > .zero, "a lease needs a positive duration")
        let now = self.now()
        let expiresAt = now.addingTimeInterval(duration.timeInterval)
        let filter: BSONDocument = [
            "_id": .string(name),
            "$or": [["holder": .string(holder)], ["expiresAt": ["$lte": .date(now)]]],
        ]
        // An update pipeline, so that the term and the start of the tenure change only when the holder does. The
        // expressions all see the document as it was; a missing document (the upsert) has no holder and no term.
        // `$literal` keeps a holder name that starts with `$` from being read as a field path.
        let sameHolder: BSONValue = ["$eq": ["$holder", ["$literal": .string(holder)]]]
        let stage: BSONDocument = [
            "$set": [
                "term": ["$cond": [sameHolder, "$term", ["$add": [["$ifNull": ["$term", 0]], 1]]]],
                "heldSince": ["$cond": [sameHolder, "$heldSince", .date(now)]],
                "holder": ["$literal": .string(holder)],
                "expiresAt": .date(expiresAt),
                "renewedAt": .date(now),
            ]
        ]
        do {
            let document = try await collection.findOneAndUpdate(
                filter, Self.pipeline([stage]), returning: .after, upsert: true)
            guard let document, document.holder == holder else { return nil }
            return LeaseGrant(
                name: name, holder: holder, term: document.term, expiresAt: document.expiresAt,
                heldSince: document.heldSince)
        } catch let error as MongoError where error.code == .duplicateKey {
            // The filter did not match, so the upsert tried to insert: the lease exists and another holder has it,
            // or another caller inserted it first.
            return nil
        }
    }

    /// Frees `name` if `holder` still holds it, expired or not; returns whether it did.
    ///
    /// The document stays, with no holder and an expiry in the past, so that the next holder's term still grows.
    @discardableResult
    public func release(name: String, holder: String) async throws -> Bool {
        let result = try await collection.updateOne(
            ["_id": .string(name), "holder": .string(holder)],
            .set(["holder": .null, "expiresAt": .date(Date(timeIntervalSince1970: 0)), "renewedAt": .date(now())]))
        return result.matchedCount == 1
    }

    /// The lease as stored, if it is held and not expired by this manager's clock.
    public func current(name: String) async throws -> LeaseGrant? {
        guard let document = try await collection.findOne(["_id": .string(name)]),
            let holder = document.holder, document.expiresAt > now()
        else { return nil }
        return LeaseGrant(
            name: name, holder: holder, term: document.term, expiresAt: document.expiresAt,
            heldSince: document.heldSince)
    }

    /// libmongoc sends an update document whose keys are `0`, `1`, … and whose values are stages as an update
    /// pipeline (an array); ``MongoCollection/findOneAndUpdate(_:_:sort:projection:returning:upsert:)`` takes the
    /// update as a document, so the pipeline is spelt that way.
    private static func pipeline(_ stages: [BSONDocument]) -> BSONDocument {
        BSONDocument(stages.enumerated().map { (String($0.offset), BSONValue.document($0.element)) })
    }
}

/// A lease as stored in the `leases` collection.
public struct LeaseDocument: Codable, Hashable, Sendable {
    /// The lease's name.
    public var _id: String
    /// The current or last holder; `nil` after a release.
    public var holder: String?
    public var term: Int
    public var expiresAt: Date
    /// When the current (or last) tenure began.
    public var heldSince: Date
    /// When the lease was last acquired, renewed or released.
    public var renewedAt: Date
}
