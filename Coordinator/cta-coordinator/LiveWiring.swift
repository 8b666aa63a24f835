#if canImport(CTALive)
import CTACoordinator
import CTALive
import ServiceLifecycle

/// The live feed of `serve`: one change stream of the coordinator's database, fanned out to WebSocket subscribers
/// of `GET /v1/live` on the API's port (mounted with `API.liveFeedRoutes`).
struct LiveFeedService: Service {
    let feed: LiveFeed

    func run() async throws {
        await cancelWhenGracefulShutdown { await feed.run() }
    }
}
#endif
