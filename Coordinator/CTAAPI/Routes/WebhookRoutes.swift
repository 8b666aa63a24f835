import CTACoordinator
import CTACore
import CTADefinitions
import Foundation
import Hummingbird

// Scenario webhooks managed through the API; the coordinator fires them with the definition's own.

extension API {
    func addWebhookRoutes(to router: Router<APIRequestContext>) {
        router.get("/v1/scenarios/:id/webhooks") { request, context in
            let (_, scenario) = try await self.scenarioForWebhooks(request, context)
            let (items, next) = try await self.store.managedWebhooksPage(scenario: scenario, try request.page())
            return JSON.response(Page(items: items.map(WebhookView.init), next: next?.encoded))
        }
        router.post("/v1/scenarios/:id/webhooks") { request, context in
            let (principal, scenario) = try await self.scenarioForWebhooks(request, context)
            let body = try await self.json(
                request,
                .object([
                    "url": .required(.string(maxLength: 2048, rule: { text in
                        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                            scheme == "http" || scheme == "https", url.host != nil
                        else { return "must be an http or https URL" }
                        return nil
                    })),
                    "on": .optional(.array(.oneOf(["finished", "cancelled", "timeout"]), maxCount: 3)),
                    "secret": .optional(.string(maxLength: 1024, rule: Rules.nonEmpty)),
                ]))
            let webhook = ManagedWebhook(
                id: Secrets.newID(), scenario: ScenarioID(unchecked: scenario), url: body["url"]!.stringValue!,
                on: (body["on"]?.stringArray ?? []).compactMap(ExecutionPhase.init(rawValue:)),
                secret: body["secret"]?.stringValue, createdBy: principal.user, createdAt: Date())
            try await self.store.createManagedWebhook(webhook)
            return JSON.response(WebhookView(webhook), status: .created)
        }
        router.delete("/v1/scenarios/:id/webhooks/:webhook") { request, context in
            let (_, scenario) = try await self.scenarioForWebhooks(request, context)
            let id = context.parameter("webhook")
            guard let webhook = try await self.store.managedWebhook(id), webhook.scenario.rawValue == scenario else {
                throw APIError.notFound("no webhook \(id) on scenario \(scenario)")
            }
            _ = try await self.store.deleteManagedWebhook(id)
            return JSON.empty(.noContent)
        }
        router.get("/v1/scenarios/:id/webhooks/:webhook/deliveries") { request, context in
            let (_, scenario) = try await self.scenarioForWebhooks(request, context)
            let id = context.parameter("webhook")
            guard let webhook = try await self.store.managedWebhook(id), webhook.scenario.rawValue == scenario else {
                throw APIError.notFound("no webhook \(id) on scenario \(scenario)")
            }
            let (items, next) = try await self.store.deliveriesPage(webhook: id, try request.page())
            return JSON.response(Page(items: items.map(DeliveryView.init), next: next?.encoded))
        }
    }

    /// The scenario of a webhook route, if the user may manage its webhooks (operators of its groups, admins).
    func scenarioForWebhooks(_ request: Request, _ context: APIRequestContext) async throws -> (Principal, String) {
        let principal = try await user(request)
        let id = context.parameter("id")
        guard let stored = try await store.definition(.scenarios, id: id) else { throw APIError.notFound("no scenario \(id)") }
        try require(.manageWebhooks, principal, owners: stored.owners, notFound: "scenario \(id)")
        return (principal, id)
    }
}
