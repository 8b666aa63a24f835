public import CTACore
public import CTAMongo
public import Foundation
import CTADefinitions

// API-managed scenario webhooks: collection `apiWebhooks`, `_id` = the webhook id, indexed by scenario.

extension MongoStore {
    public var managedWebhooksCollection: MongoCollection<ManagedWebhook> {
        database.collection("apiWebhooks", as: ManagedWebhook.self)
    }

    public func managedWebhooks(_ scenario: ScenarioID) async throws -> [ManagedWebhook] {
        try await findDecodable(
            managedWebhooksCollection, ["scenario": .string(scenario.rawValue)], sort: .ascending("createdAt", "_id"))
    }
}
