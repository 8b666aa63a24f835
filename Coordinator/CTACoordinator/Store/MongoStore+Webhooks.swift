public import CTACore
public import CTAMongo
public import Foundation

// Webhook deliveries: collection `webhookDeliveries`, `_id` = the delivery id. A delivery is worked on by the
// coordinator that holds its claim (`claimToken`, until `claimedUntil`); every write after an attempt matches the
// token, so a coordinator whose claim expired and was taken over cannot record anything any more.

extension MongoStore {
    public var webhookDeliveriesCollection: MongoCollection<WebhookDeliveryRecord> {
        database.collection("webhookDeliveries", as: WebhookDeliveryRecord.self)
    }

    /// The indexes of `webhookDeliveries`: due pending deliveries for the sweep, and an execution's deliveries.
    func prepareWebhookDeliveries() async throws {
        try await webhookDeliveriesCollection.createIndexes([
            IndexModel(keys: .ascending("state", "nextAttemptAt"), name: "state_due"),
            IndexModel(keys: .ascending("executionID"), name: "execution"),
        ])
    }

    public func createWebhookDelivery(_ delivery: WebhookDeliveryRecord) async throws {
        _ = try await insertIdempotently([delivery], into: webhookDeliveriesCollection)
    }

    /// A read of the due deliveries, then a conditional update by id (see the note on claims in MongoStore: no
    /// findAndModify, whose cost grows with the collection on SecantusDB).
    public func claimDueWebhookDelivery(holder: String, token: String, now: Date, until: Date) async throws
        -> WebhookDeliveryRecord?
    {
        let due: BSONDocument = [
            "state": .string(WebhookDeliveryState.pending.rawValue), "nextAttemptAt": ["$lte": .date(now)],
            "claimedUntil": ["$not": ["$gte": .date(now)]],
        ]
        return try await claimOne(
            in: webhookDeliveriesCollection, due: due, oldestFirst: "nextAttemptAt",
            set: ["claimedBy": .string(holder), "claimToken": .string(token), "claimedUntil": .date(until)])
    }

    public func renewWebhookClaim(_ delivery: String, token: String, until: Date) async throws -> Bool {
        let result = try await webhookDeliveriesCollection.updateOne(
            [
                "_id": .string(delivery), "claimToken": .string(token),
                "state": .string(WebhookDeliveryState.pending.rawValue),
            ],
            .set(["claimedUntil": .date(until)]))
        return result.matchedCount == 1
    }

    public func recordWebhookAttempt(
        _ delivery: String, token: String, attempt: WebhookAttempt, decision: WebhookDecision, holdUntil: Date
    ) async throws -> Bool {
        var update = BSONDocument.push(["attempts": .document(try BSONEncoder().encode(attempt))])
        let finished = attempt.at.addingTimeInterval(Double(attempt.durationMs) / 1000)
        switch decision {
        case .retry(let next):
            update = update.set(["nextAttemptAt": .date(next), "claimedUntil": .date(holdUntil)])
        case .delivered, .failed:
            let state: WebhookDeliveryState = decision == .delivered ? .delivered : .failed
            update = update.set(["state": .string(state.rawValue), "finishedAt": .date(finished)])
                .unsetting("nextAttemptAt", "claimedBy", "claimToken", "claimedUntil")
        }
        let result = try await webhookDeliveriesCollection.updateOne(
            [
                "_id": .string(delivery), "claimToken": .string(token),
                "state": .string(WebhookDeliveryState.pending.rawValue),
            ],
            update)
        return result.matchedCount == 1
    }

    public func releaseWebhookClaim(_ delivery: String, token: String) async throws {
        _ = try await webhookDeliveriesCollection.updateOne(
            ["_id": .string(delivery), "claimToken": .string(token)],
            .unset("claimedBy", "claimToken", "claimedUntil"))
    }

    public func webhookDelivery(_ id: String) async throws -> WebhookDeliveryRecord? {
        try await webhookDeliveriesCollection.findOne(["_id": .string(id)])
    }

    public func webhookDeliveries(_ execution: ExecutionID) async throws -> [WebhookDeliveryRecord] {
        try await webhookDeliveriesCollection.find(
            ["executionID": .string(execution.description)], sort: .ascending("webhook", "createdAt"))
    }
}
