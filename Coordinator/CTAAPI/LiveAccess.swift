public import CTACoordinator
import CTACore
import CTALive

extension API {
    /// The route extension mounting the live feed, `GET /v1/live`, on the API's router, with the API's tokens and
    /// group rules.
    public static func liveFeedRoutes(_ feed: LiveFeed) -> RouteExtension {
        { router, api in
            LiveRoutes.add(to: router, feed: feed) { request in await api.authorizeLive(request) }
        }
    }

    /// A user API token opens the connection; each subscription needs read access to what it names: an
    /// execution or scenario visible to the user's groups (else `notFound`, as the REST API answers), and the
    /// machines feed, which carries every machine of every group, for admins only.
    func authorizeLive(_ request: LiveAccessRequest) async -> LiveAccessDecision {
        guard let token = request.token else {
            return .deny(code: "unauthenticated", message: "give an API token: Authorization: Bearer <token>, or ?token=")
        }
        let principal: Principal
        do {
            principal = try await user(token: token)
        } catch {
            return .deny(code: error.code.description, message: error.message)
        }
        guard let target = request.target else { return .allow }
        do {
            switch target {
            case .machines:
                return principal.role == .admin
                    ? .allow : .deny(code: "forbidden", message: "the machines feed shows every group's machines: admins only")
            case .scenario(let id):
                guard let stored = try await store.definition(.scenarios, id: id),
                    Policy.canSee(principal, owners: stored.owners)
                else { return .deny(code: "notFound", message: "no scenario \(id)") }
                return .allow
            case .execution(let id):
                guard let executionID = ExecutionID(id), let record = try await store.store.execution(executionID)
                else { return .deny(code: "notFound", message: "no execution \(id)") }
                let owners = try await store.definition(.scenarios, id: record.scenario.id.rawValue)?.owners ?? []
                guard Policy.canSee(principal, owners: owners) else {
                    return .deny(code: "notFound", message: "no execution \(id)")
                }
                return .allow
            }
        } catch {
            return .deny(code: "unavailable", message: "cannot check access now: \(error)")
        }
    }
}
