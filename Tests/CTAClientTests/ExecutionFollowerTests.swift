import CTAClient
import CTACore
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Synchronization
import Testing

/// The REST side of a fake API: an execution that is running until `ended` is set, and its stored results.
///
/// When `growing`, each read of the results shows one more, and the execution ends with the last; otherwise every
/// result is visible at once.
final class FakeExecutionAPI: HTTPSending {
    let results: [TestResultItem]
    let growing: Bool
    let ended = Atomic<Bool>(false)
    let resultReads = Atomic<Int>(0)

    init(results: [TestResultItem], growing: Bool) {
        self.results = results
        self.growing = growing
    }

    func send(_ request: CTAClient.HTTPRequest) async throws(ClientError) -> CTAClient.HTTPResponse {
        let path = request.target.split(separator: "?").first.map(String.init) ?? ""
        let encoder = JSONEncoder()
        switch path {
        case "/v1/executions/E1":
            let phase = ended.load(ordering: .relaxed) ? "finished" : "running"
            let execution = Execution(
                id: "E1", scenario: "smoke", runMode: "mono", phase: phase,
                counts: phase == "finished" ? StatusCounts(ok: results.count) : StatusCounts(), tests: 3,
                machines: ["m1"])
            return CTAClient.HTTPResponse(status: 200, body: Array(try! encoder.encode(execution)))
        case "/v1/executions/E1/results":
            // Polling: one more result visible per read, and the execution ends after the last.
            let reads = resultReads.add(1, ordering: .relaxed).newValue
            let visible = growing ? min(reads, results.count) : results.count
            if growing && visible == results.count { ended.store(true, ordering: .relaxed) }
            struct Page: Encodable {
                var items: [TestResultItem]
                var next: String?
            }
            return CTAClient.HTTPResponse(
                status: 200, body: Array(try! encoder.encode(Page(items: Array(results.prefix(visible)), next: nil))))
        default:
            return CTAClient.HTTPResponse(status: 404, body: Array(#"{"error":{"code":"notFound","message":"no such thing"}}"#.utf8))
        }
    }
}

/// Lines recorded by a handler that outlives the call that made it.
final class Recorder: Sendable {
    let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

@Suite("Following an execution")
struct ExecutionFollowerTests {
    static let results = (1...3).map { index in
        TestResultItem(eventId: "e\(index)", test: "t\(index)", attempt: 1, machine: "m1", status: "ok", durationMs: 5)
    }

    /// Runs a WebSocket server that speaks the live feed's frames for execution E1, then `body` with its port.
    func withLiveServer(
        sent: Recorder, _ body: @Sendable (Int) async throws -> Void
    ) async throws {
        let router = Router(context: BasicWebSocketRequestContext.self)
        router.ws("/v1/live") { request, _ in
            request.headers[.authorization] == "Bearer cta_test" ? .upgrade([:]) : .dontUpgrade
        } onUpgrade: { inbound, outbound, _ in
            var frames = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
            guard case .text(let subscribe)? = try await frames.next() else { return }
            sent.append(subscribe)
            func frame(_ value: JSONValue) async throws { try await outbound.write(.text(JSONOutput.compact(value))) }
            try await frame(.object(["sub": .string("run"), "type": .string("subscribed")]))
            let encoder = JSONEncoder()
            // e1 twice (a resumed feed may repeat), e2 once; e3 is left for the final read.
            for result in [Self.results[0], Self.results[0], Self.results[1]] {
                let event = try JSONDecoder().decode(JSONValue.self, from: encoder.encode(result))
                try await frame(
                    .object(["sub": .string("run"), "cursor": .string("c"), "type": .string("result"), "event": event]))
            }
            try await frame(.object(["sub": .string("run"), "type": .string("end"), "phase": .string("finished")]))
            // Wait for the client to close.
            while try await frames.next() != nil {}
        }
        let port = Mutex<Int?>(nil)
        let app = Application(
            router: router, server: .http1WebSocketUpgrade(webSocketRouter: router),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var bound: Int?
            for _ in 0..<200 where bound == nil {
                try await Task.sleep(for: .milliseconds(10))
                bound = port.withLock { $0 }
            }
            try await body(try #require(bound))
            group.cancelAll()
        }
    }

    @Test("live: each result once, in order; the end stops the feed; the final read adds what the feed missed")
    func live() async throws {
        let sent = Recorder()
        try await withLiveServer(sent: sent) { port in
            let api = FakeExecutionAPI(results: Self.results, growing: false)
            api.ended.store(true, ordering: .relaxed)
            let endpoint = try #require(Endpoint("http://127.0.0.1:\(port)"))
            let follower = ExecutionFollower(
                client: APIClient(transport: api, token: "cta_test"), endpoint: endpoint,
                configuration: TransportConfiguration())
            let events = Mutex<[String]>([])
            let start = Execution(id: "E1", scenario: "smoke", phase: "pending")
            let end = try await follower.follow(start, limit: .seconds(20)) { event in
                switch event {
                case .result(let result): events.withLock { $0.append("result \(result.eventId)") }
                case .polling(let reason): events.withLock { $0.append("polling \(reason)") }
                case .execution, .tick: break
                }
            }
            guard case .ended(let final) = end else {
                Issue.record("did not end: \(end)")
                return
            }
            #expect(final.phase == "finished")
            #expect(events.withLock { $0 } == ["result e1", "result e2", "result e3"])
        }
        let subscription = try #require(sent.all.first)
        let parsed = try JSONDecoder().decode(JSONValue.self, from: Data(subscription.utf8))
        #expect(parsed == .object(["op": .string("subscribe"), "id": .string("run"), "execution": .string("E1")]))
    }

    @Test("no live feed: the follower says so and polls, and still reports each result once")
    func polling() async throws {
        try await withLiveServer(sent: Recorder()) { port in
            let api = FakeExecutionAPI(results: Self.results, growing: true)
            // A base path the server does not serve: the upgrade is refused.
            let endpoint = try #require(Endpoint("http://127.0.0.1:\(port)/elsewhere"))
            var follower = ExecutionFollower(
                client: APIClient(transport: api, token: "cta_test"), endpoint: endpoint,
                configuration: TransportConfiguration())
            follower.pollInterval = .milliseconds(10)
            let events = Mutex<[String]>([])
            let end = try await follower.follow(Execution(id: "E1", scenario: "smoke", phase: "pending"), limit: .seconds(20)) {
                event in
                switch event {
                case .result(let result): events.withLock { $0.append("result \(result.eventId)") }
                case .polling: events.withLock { $0.append("polling") }
                case .execution, .tick: break
                }
            }
            guard case .ended = end else {
                Issue.record("did not end: \(end)")
                return
            }
            #expect(events.withLock { $0 } == ["polling", "result e1", "result e2", "result e3"])
        }
    }

    @Test("the wait limit ends following with the execution as last read")
    func waitLimit() async throws {
        let api = FakeExecutionAPI(results: [], growing: false)
        var follower = ExecutionFollower(
            client: APIClient(transport: api, token: "t"), endpoint: try #require(Endpoint("http://127.0.0.1:1")),
            configuration: TransportConfiguration())
        follower.live = false
        follower.pollInterval = .milliseconds(20)
        // The execution never ends: the limit must.
        let started = ContinuousClock.now
        let end = try await follower.follow(Execution(id: "E1", scenario: "smoke", phase: "pending"), limit: .milliseconds(300)) {
            _ in
        }
        guard case .waitedTooLong(let last) = end else {
            Issue.record("ended: \(end)")
            return
        }
        #expect(last.phase == "running")
        #expect(ContinuousClock.now - started < .seconds(30), "the limit ended it, not the time limit")
    }
}
