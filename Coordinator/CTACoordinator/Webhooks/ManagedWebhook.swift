public import CTACore
public import Foundation
public import CTADefinitions

/// A scenario webhook added through the HTTP API (in addition to those in the scenario's definition), stored in
/// `apiWebhooks`. It fires like a definition's webhook: a delivery is recorded for it when an execution of the
/// scenario ends in one of `on` (any end state when empty).
public struct ManagedWebhook: Codable, Hashable, Sendable {
    /// The webhook id, unique (random, URL-safe).
    public var _id: String
    public var scenario: ScenarioID
    public var url: String
    public var on: [ExecutionPhase]
    /// The signing secret; never returned by the API.
    public var secret: String?
    public var createdBy: String
    public var createdAt: Date

    public init(
        id: String, scenario: ScenarioID, url: String, on: [ExecutionPhase], secret: String?, createdBy: String,
        createdAt: Date
    ) {
        self._id = id
        self.scenario = scenario
        self.url = url
        self.on = on
        self.secret = secret
        self.createdBy = createdBy
        self.createdAt = createdAt
    }

    /// The same webhook as a definition's entry.
    public var definition: WebhookDefinition { WebhookDefinition(url: url, on: on, secret: secret) }
}

extension Store {
    /// A store without API-managed webhooks has none.
    public func managedWebhooks(_ scenario: ScenarioID) async throws -> [ManagedWebhook] { [] }
}
