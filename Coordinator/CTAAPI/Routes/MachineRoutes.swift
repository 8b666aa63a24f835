import CTACoordinator
import CTACore
import Foundation
import Hummingbird
import Logging

// Machines: list, show, drain, resume. A machine belongs to the groups it registered with.

extension API {
    func addMachineRoutes(to router: Router<APIRequestContext>) {
        router.get("/v1/machines") { request, _ in
            let principal = try await self.user(request)
            var online: Bool?
            if let text = request.query("online") {
                guard text == "true" || text == "false" else {
                    throw APIError(.invalidField, "online must be true or false", field: "online")
                }
                online = text == "true"
            }
            if let tag = request.query("tag"), !tag.contains("=") {
                throw APIError(.invalidField, "tag must be key=value", field: "tag")
            }
            let now = Date()
            let (items, next) = try await self.store.machinesPage(
                online: online, group: request.query("group"), tag: request.query("tag"), try request.page(), now: now
            ) { Policy.canSee(principal, owners: $0.groups.map(\.rawValue)) }
            var views: [MachineView] = []
            for machine in items {
                let drain = try await self.store.drainRequest(machine._id)
                views.append(MachineView(machine, now: now, drainRequested: drain?.requested ?? false))
            }
            return JSON.response(Page(items: views, next: next?.encoded))
        }
        router.get("/v1/machines/:name") { request, context in
            let (_, machine) = try await self.machine(request, context, .read)
            let drain = try await self.store.drainRequest(machine._id)
            return JSON.response(MachineView(machine, now: Date(), drainRequested: drain?.requested ?? false))
        }
        for (path, drain) in [("drain", true), ("resume", false)] {
            router.post("/v1/machines/:name/\(path)") { request, context in
                let (principal, machine) = try await self.machine(request, context, .machineAction)
                let body = try await self.json(request, .object(["reason": .optional(.string(maxLength: 1024))]))
                let reason = body["reason"]?.stringValue
                _ = try await self.store.markDrainRequested(machine._id, drain: drain, by: principal.user, at: Date())
                do {
                    try await self.coordinator.requestDrain(
                        machine.name, drain: drain, reason: reason, requestedBy: "user/\(principal.user)")
                } catch {
                    self.logger.warning("drain not published", metadata: ["cta.machine": "\(machine._id)", "cta.error": "\(error)"])
                    throw APIError(.unavailable, "the broker did not take the \(path) order; try again")
                }
                return JSON.response(
                    ["machine": .string(machine._id), "drainRequested": .bool(drain)] as [String: JSONValue], status: .accepted)
            }
        }
    }

    func machine(_ request: Request, _ context: APIRequestContext, _ action: Action) async throws -> (Principal, MachineRecord) {
        let principal = try await user(request)
        let name = context.parameter("name")
        guard let machineName = MachineName(name), let machine = try await store.store.machine(machineName) else {
            throw APIError.notFound("no machine \(name)")
        }
        try require(action, principal, owners: machine.groups.map(\.rawValue), notFound: "machine \(name)")
        return (principal, machine)
    }
}
