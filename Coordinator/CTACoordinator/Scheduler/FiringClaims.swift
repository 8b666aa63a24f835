public import CTACore
public import CTAMongo
public import Foundation
import CTADefinitions

/// A scheduled firing of a scenario, claimed by the coordinator that starts it.
public struct FiringClaim: Codable, Hashable, Sendable {
    /// `<scenario>@<planned time>`, the time in RFC 3339 UTC to the millisecond
    /// (see ``FiringClaims/id(scenario:plannedAt:)``).
    public var _id: String
    public var scenario: ScenarioID
    /// When the schedule said the scenario should start.
    public var plannedAt: Date
    /// The coordinator that claimed it.
    public var coordinator: String
    /// When it was claimed, by that coordinator's clock; the retention counts from here.
    public var claimedAt: Date
    /// Unique to one claim attempt: tells a coordinator that a duplicate it meets is its own earlier insert.
    public var token: String

    public init(
        _id: String, scenario: ScenarioID, plannedAt: Date, coordinator: String, claimedAt: Date, token: String
    ) {
        self._id = _id
        self.scenario = scenario
        self.plannedAt = plannedAt
        self.coordinator = coordinator
        self.claimedAt = claimedAt
        self.token = token
    }
}

/// Makes each scheduled firing start once, however many coordinators see it come due.
///
/// Every coordinator that finds a scenario due calls ``claim(scenario:plannedAt:)``; the claim inserts a document
/// whose `_id` names the scenario and the planned time, so the unique `_id` index lets exactly one insert through
/// and refuses the others with a duplicate key error. Only the coordinator whose claim returns `true` starts the
/// execution. Claims are kept for ``defaultRetention`` (30 days) after they are made, by a TTL index that
/// ``createIndexes(retention:)`` creates; a firing planned further back than that must not be claimed again.
public struct FiringClaims: Sendable {
    /// The collection the claims live in unless told otherwise.
    public static let defaultCollectionName = "firings"
    /// How long claims are kept by default: 30 days.
    public static let defaultRetention: Duration = .seconds(30 * 86_400)
    /// The name of the TTL index on `claimedAt`.
    public static let expiryIndexName = "expire_firings"

    /// The collection of claims.
    public let collection: MongoCollection<FiringClaim>
    /// The name this coordinator claims under.
    public let coordinator: String
    private let now: @Sendable () -> Date

    /// Claims in `database`'s collection `collectionName`, made as `coordinator`.
    public init(
        database: MongoDatabase, coordinator: String, collectionName: String = defaultCollectionName,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        collection = database.collection(collectionName, as: FiringClaim.self)
        self.coordinator = coordinator
        self.now = now
    }

    /// The `_id` of a firing: `nightly@2025-03-14T02:00:00.000000Z`.
    ///
    /// The time is rounded to the millisecond, the precision a BSON date keeps, and written as the wire protocol
    /// writes times (``Timestamp/rfc3339``), so every coordinator derives the same key for the same firing.
    public static func id(scenario: ScenarioID, plannedAt: Date) -> String {
        "\(scenario.rawValue)@\(Timestamp(microsecondsSinceEpoch: milliseconds(plannedAt) * 1000).rfc3339)"
    }

    /// Claims the firing of `scenario` planned for `plannedAt`; `true` when this coordinator won it and should start
    /// the execution, `false` when another claim (by any coordinator, this one included) got there first.
    ///
    /// A claim whose insert reached the server but whose answer was lost, and which is then sent again, finds its
    /// own document and still returns `true`.
    public func claim(scenario: ScenarioID, plannedAt: Date) async throws -> Bool {
        let claim = FiringClaim(
            _id: Self.id(scenario: scenario, plannedAt: plannedAt), scenario: scenario,
            plannedAt: Date(timeIntervalSince1970: Double(Self.milliseconds(plannedAt)) / 1000),
            coordinator: coordinator, claimedAt: now(), token: UUID().uuidString.lowercased())
        do {
            try await collection.insertOne(claim)
            return true
        } catch let error as MongoError where error.code == .duplicateKey {
            let existing = try await collection.findOne(["_id": .string(claim._id)])
            return existing?.token == claim.token
        }
    }

    /// The claim of a firing, if one was made (and has not expired).
    public func existingClaim(scenario: ScenarioID, plannedAt: Date) async throws -> FiringClaim? {
        try await collection.findOne(["_id": .string(Self.id(scenario: scenario, plannedAt: plannedAt))])
    }

    /// Creates the TTL index that deletes claims `retention` after they were made. Creating it again with the
    /// same retention does nothing; with another, the index's retention is changed in place.
    public func createIndexes(retention: Duration = defaultRetention) async throws {
        let index = IndexModel(keys: ["claimedAt": 1], name: Self.expiryIndexName, expireAfter: retention)
        do {
            try await collection.createIndex(index)
        } catch let error as MongoError where error.serverCode.map(Self.indexConflicts.contains) == true {
            try await collection.database.runCommand([
                "collMod": .string(collection.name),
                "index": [
                    "name": .string(Self.expiryIndexName),
                    "expireAfterSeconds": .int64(retention.components.seconds),
                ],
            ])
        }
    }

    /// An index of that name exists with other options: MongoDB answers IndexOptionsConflict (85); SecantusDB
    /// answers IndexKeySpecsConflict (86), which MongoDB keeps for an index of that name on other keys (the keys
    /// of this index never change, so that does not happen here).
    private static let indexConflicts: Set<Int> = [85, 86]

    /// `date` in whole milliseconds since 1970, rounded to the nearest.
    private static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }
}
