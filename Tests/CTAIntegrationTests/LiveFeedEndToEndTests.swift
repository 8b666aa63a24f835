import CTACoordinator
import CTACore
import CTADefinitions
import CTALive
import CTAMongo
import Foundation
import Hummingbird
import HummingbirdWSClient
import HummingbirdWebSocket
import Logging
import Synchronization
import Testing

/// A live feed and its WebSocket route on a port of its own, on its own MongoDB client: what one coordinator's
/// API would serve.
final class LiveServer: Sendable {
    let client: MongoClient
    let feed: LiveFeed
    let port: Int
    private let tasks: [Task<Void, Never>]

    static let token = "test-token"

    init(mongoURI: String, database: String) async throws {
        client = try MongoClient(uri: mongoURI, logger: Logger(label: "cta.live.test"))
        let feed = LiveFeed(
            source: MongoFeedSource(database: client.database(database)), logger: Logger(label: "cta.live"))
        self.feed = feed
        let router = Router(context: BasicWebSocketRequestContext.self)
        LiveRoutes.add(to: router, feed: feed) { request in
            guard request.token == LiveServer.token else { return .deny(code: "unauthenticated", message: "no token") }
            if case .scenario("forbidden")? = request.target { return .deny(code: "forbidden", message: "not yours") }
            return .allow
        }
        let bound = AsyncStream<Int>.makeStream()
        // Quiet: stopping the app by cancellation logs errors that are not.
        var httpLogger = Logger(label: "cta.live.http")
        httpLogger.logLevel = .critical
        let app = Application(
            router: router, server: .http1WebSocketUpgrade(webSocketRouter: router),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in bound.continuation.yield(channel.localAddress?.port ?? 0) },
            logger: httpLogger)
        tasks = [Task { await feed.run() }, Task { try? await app.runService(gracefulShutdownSignals: []) }]
        var iterator = bound.stream.makeAsyncIterator()
        port = try #require(await iterator.next())
    }

    var url: String { "ws://127.0.0.1:\(port)/v1/live?token=\(Self.token)" }

    func close() async {
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        try? await client.shutdown()
    }
}

/// One frame a test client received.
struct LiveFrame: Sendable {
    var type: String
    var sub: String?
    var cursor: String?
    var phase: String?
    var event: [String: String]
    var errorCode: String?

    init(_ text: String) throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        type = try #require(object["type"] as? String)
        sub = object["sub"] as? String
        cursor = object["cursor"] as? String
        phase = object["phase"] as? String
        event = (object["event"] as? [String: Any] ?? [:]).compactMapValues { $0 as? String }
        errorCode = (object["error"] as? [String: Any])?["code"] as? String
    }
}

/// Connects to `url`, sends `frames`, and collects frames until `stop` says so (or 60 s pass); then closes.
func collectLive(
    url: String, send frames: [String], until stop: @escaping @Sendable ([LiveFrame]) -> Bool
) async throws -> [LiveFrame] {
    let collected = Mutex<[LiveFrame]>([])
    let problem = Mutex<(any Error)?>(nil)
    let connection = Task {
        try await WebSocketClient.connect(url: url, logger: Logger(label: "cta.live.client")) { inbound, outbound, _ in
            for frame in frames { try await outbound.write(.text(frame)) }
            for try await message in inbound.messages(maxSize: 1 << 20) {
                guard case .text(let text) = message else { continue }
                do {
                    let frame = try LiveFrame(text)
                    let done = collected.withLock { all in
                        all.append(frame)
                        return stop(all)
                    }
                    if done { break }
                } catch {
                    problem.withLock { $0 = error }
                    break
                }
            }
        }
    }
    let watchdog = Task {
        try await Task.sleep(for: .seconds(60))
        connection.cancel()
    }
    _ = try? await connection.value
    watchdog.cancel()
    if let error = problem.withLock({ $0 }) { throw error }
    return collected.withLock { $0 }
}

func endFrame(_ frames: [LiveFrame]) -> Bool { frames.contains { $0.type == "end" || $0.type == "error" } }

extension CoordinatorProcessSuites {
    @Suite(
        "Live feed over WebSocket, fed by real coordinators and agents",
        .enabled(if: EndToEndBroker.enabled, "CTA_AMQP_E2E_URL or CTA_MONGO_URI is not set")
    )
    struct LiveFeedEndToEndTests {
        @Test(
            "subscribers get every stored event in store order, once; a resumed subscriber on another feed misses and repeats nothing, across a coordinator swap"
        )
        func liveFeed() async throws {
            try await withScene(agents: 1, coordinators: 1) { scene in
                try await scene.waitForMachines()
                let serverA = try await LiveServer(mongoURI: scene.mongoURI, database: scene.databaseName)
                let serverB = try await LiveServer(mongoURI: scene.mongoURI, database: scene.databaseName)
                do {
                    try await check(scene, serverA, serverB)
                } catch {
                    await serverA.close()
                    await serverB.close()
                    throw error
                }
                await serverA.close()
                await serverB.close()
            }
        }

        func check(_ scene: Scene, _ serverA: LiveServer, _ serverB: LiveServer) async throws {
            let scenario = try await scene.define(
                [
                    E2ETests.junit("live-a", cases: 120), E2ETests.shell("live-pause", "sleep 3"),
                    E2ETests.junit("live-b", cases: 120), E2ETests.shell("live-pause2", "sleep 1"),
                    E2ETests.junit("live-c", cases: 120),
                ], runMode: .mono)

            // Refusals: no token (HTTP), a denied target, an unknown execution, a bad frame.
            let refused = try await collectLive(
                url: "ws://127.0.0.1:\(serverA.port)/v1/live", send: [], until: endFrame)
            #expect(refused.map(\.type) == ["error"] && refused.first?.errorCode == "unauthenticated", "\(refused)")
            let errors = try await collectLive(
                url: serverA.url,
                send: [
                    #"{"op":"subscribe","id":"f","scenario":"forbidden"}"#,
                    #"{"op":"subscribe","id":"n","execution":"no-such-execution"}"#, #"{"op":"dance"}"#,
                    #"{"op":"ping"}"#,
                ], until: { $0.count >= 4 })
            #expect(errors.contains { $0.sub == "f" && $0.errorCode == "forbidden" })
            #expect(errors.contains { $0.sub == "n" && $0.errorCode == "notFound" })
            #expect(errors.contains { $0.sub == nil && $0.errorCode == "invalidField" })
            #expect(errors.contains { $0.type == "pong" })

            // A scenario subscriber on B, open before the execution exists.
            let scenarioFrames = Task {
                try await collectLive(
                    url: serverB.url, send: [#"{"op":"subscribe","id":"sc","scenario":"\#(scenario.rawValue)"}"#],
                    until: { frames in frames.contains { $0.type == "execution" && ["finished", "cancelled", "timeout"].contains($0.event["phase"] ?? "") } })
            }
            try await Task.sleep(for: .milliseconds(500))
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/live")
            let id = execution._id
            let subscribe = #"{"op":"subscribe","id":"x","execution":"\#(id)"}"#

            // A subscriber on A that stays to the end.
            let full = Task { try await collectLive(url: serverA.url, send: [subscribe], until: endFrame) }
            // A subscriber on A that leaves after 40 events…
            let first = try await collectLive(
                url: serverA.url, send: [subscribe], until: { $0.filter { $0.cursor != nil }.count >= 40 })
            let firstEvents = first.filter { $0.cursor != nil }
            #expect(firstEvents.count == 40)
            let last = try #require(firstEvents.last?.cursor)

            // …meanwhile the coordinator that stored them stops and another one takes over.
            await scene.coordinators[0].terminate()
            let swappedAt = Date()
            try scene.startCoordinator(instance: "e2e-1")

            // The subscriber comes back on B with its last cursor.
            let second = try await collectLive(
                url: serverB.url, send: [#"{"op":"subscribe","id":"x","execution":"\#(id)","after":"\#(last)"}"#],
                until: endFrame)
            let fullFrames = try await full.value
            let ended = try await scene.waitForEnd(execution.executionID)
            #expect(ended.phase == .finished)

            let fullEvents = fullFrames.filter { $0.cursor != nil }
            let secondEvents = second.filter { $0.cursor != nil }
            #expect(fullFrames.first?.type == "subscribed")
            #expect(fullFrames.last?.type == "end" && fullFrames.last?.phase == "finished")
            #expect(second.last?.type == "end" && second.last?.phase == "finished", "\(second.suffix(2))")
            // No gap, no duplicate: the two halves are exactly the whole.
            #expect((firstEvents + secondEvents).map(\.cursor) == fullEvents.map(\.cursor))

            // The whole is exactly what was stored, each once.
            let results = try await scene.store.results(execution.executionID)
            let states = try await scene.store.states(execution.executionID)
            let deliveredResults = fullEvents.filter { $0.type == "result" }.compactMap { $0.event["eventId"] }
            let deliveredStates = fullEvents.filter { $0.type == "state" }.compactMap { $0.event["eventId"] }
            #expect(results.count == 3 * 120 + 2)
            #expect(deliveredResults.count == results.count && Set(deliveredResults) == Set(results.map(\._id)))
            #expect(deliveredStates.count == states.count && Set(deliveredStates) == Set(states.map(\._id)))
            #expect(fullEvents.filter { $0.type == "execution" }.compactMap { $0.event["phase"] }.suffix(1) == ["finished"])
            // Events stored after the first coordinator stopped were stored by the second one, and arrived.
            let storedLater = Set(results.filter { $0.receivedAt > swappedAt }.map(\._id))
            #expect(!storedLater.isEmpty)
            #expect(storedLater.isSubset(of: Set(secondEvents.compactMap { $0.event["eventId"] })))

            // The order is the database's own change order: the same as a raw change stream's.
            let raw = try await scene.client.database(scene.databaseName).watch(
                MongoFeedSource.pipeline, fullDocumentOnUpdate: true,
                startAtOperationTime: BSONTimestamp(
                    seconds: UInt32(execution.createdAt.timeIntervalSince1970.rounded(.down)), increment: 0),
                maxAwaitTime: .milliseconds(200))
            var rawCursors: [String] = []
            for try await event in raw {
                let document = event.fullDocument
                let belongs = document?["executionID"]?.stringValue == id
                    || (event.collection == "executions" && event.documentKey?["_id"]?.stringValue == id)
                if belongs { rawCursors.append(LiveCursor(token: event.resumeToken).description) }
                if rawCursors.count == fullEvents.count { break }
            }
            await raw.close()
            #expect(rawCursors == fullEvents.compactMap(\.cursor))

            // The scenario subscriber on B saw the same events of its one execution.
            let scenarioEvents = try await scenarioFrames.value.filter { $0.cursor != nil }
            #expect(scenarioEvents.map(\.cursor) == fullEvents.map(\.cursor))
        }
    }
}
