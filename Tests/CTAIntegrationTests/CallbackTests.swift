import CTABroker
import CTACore
import CTAMongo
import Foundation
import Logging
import Synchronization
import Testing

@testable import CTACoordinator
import CTADefinitions

/// What follows the end of an execution, against the real database and a local HTTP receiver: a coordinator is
/// built but never connected to a broker; executions are ended through `Coordinator.end`, and its delivery loop
/// runs in the test.
@Suite("Callbacks: webhooks and chained scenarios", .enabled(if: ServiceEnvironment.mongoEnabled))
struct CallbackTests {
    /// Short waits so that retries happen within the test; the attempt limit is generous for a loaded machine
    /// except where a test is about the timeout.
    static let policy = WebhookPolicy(
        maxAttempts: 3, initialDelay: .milliseconds(50), maximumDelay: .milliseconds(200), jitter: 0.2,
        attemptTimeout: .seconds(10))

    @Test("a signed webhook is POSTed with the documented body and headers, and recorded delivered")
    func signedDelivery() async throws {
        try await withCallbackScene { scene in
            let receiver = try await scene.receiver()
            let scenario = try await scene.define(webhooks: [
                WebhookDefinition(url: receiver.url("/hooks/cta?team=qa"), secret: "correct horse battery staple")
            ])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            _ = try await scene.store.markRunning(execution.executionID, at: Date())
            let counts = ResultCounts(ok: 3, failed: 1)
            #expect(try await scene.coordinator.end(execution, phase: .finished, reason: nil, counts: counts))

            let deliveries = try await scene.waitForDeliveries(execution.executionID, count: 1)
            let delivery = try #require(deliveries.first)
            #expect(delivery.state == .delivered)
            #expect(delivery.attempts.count == 1)
            #expect(delivery.attempts.first?.statusCode == 200)
            #expect(delivery.attempts.first?.error == nil)
            #expect(delivery.attempts.first?.by == scene.coordinator.settings.instance)
            #expect(delivery.finishedAt != nil)
            #expect(delivery.claimToken == nil && delivery.claimedBy == nil && delivery.nextAttemptAt == nil)

            let requests = receiver.requests
            try #require(requests.count == 1)
            let request = requests[0]
            #expect(request.method == "POST")
            #expect(request.path == "/hooks/cta?team=qa")
            #expect(request.header("Content-Type") == "application/json")
            #expect(request.header("X-CTA-Event") == "execution.ended")
            #expect(request.header("X-CTA-Delivery") == delivery._id)
            let expected =
                "sha256="
                + HMACSHA256.authenticationCode(
                    for: Array(request.body.utf8), key: Array("correct horse battery staple".utf8)
                ).hexString
            #expect(request.header("X-CTA-Signature") == expected)
            #expect(request.body == delivery.body)

            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(request.body.utf8)) as? [String: Any])
            #expect(
                Set(json.keys)
                    == [
                        "event", "executionID", "scenario", "phase", "reason", "counts", "startedAt", "endedAt",
                        "requestedBy",
                    ])
            #expect(json["event"] as? String == "execution.ended")
            #expect(json["executionID"] as? String == execution.executionID.description)
            #expect((json["scenario"] as? [String: Any])?["id"] as? String == scenario.rawValue)
            #expect(json["phase"] as? String == "finished")
            #expect(json["reason"] is NSNull)
            #expect(json["requestedBy"] as? String == "test/callbacks")
            let sentCounts = try #require(json["counts"] as? [String: Any])
            #expect(sentCounts["ok"] as? Int == 3)
            #expect(sentCounts["failed"] as? Int == 1)
            let stored = try #require(try await scene.store.execution(execution.executionID))
            #expect(json["endedAt"] as? String == stored.endedAt.map { Timestamp($0).rfc3339 })
            #expect(json["startedAt"] as? String == stored.startedAt.map { Timestamp($0).rfc3339 })
        }
    }

    @Test("a receiver answering 500 twice, then 200: three attempts recorded, delivered")
    func retriedUntilDelivered() async throws {
        try await withCallbackScene { scene in
            let receiver = try await scene.receiver(scripts: ["/flaky": [500, 500, 200]])
            let scenario = try await scene.define(webhooks: [WebhookDefinition(url: receiver.url("/flaky"))])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(
                try await scene.coordinator.end(execution, phase: .timeout, reason: "too slow", counts: ResultCounts()))

            let delivery = try #require(try await scene.waitForDeliveries(execution.executionID, count: 1).first)
            #expect(delivery.state == .delivered)
            #expect(delivery.attempts.map(\.number) == [1, 2, 3])
            #expect(delivery.attempts.map(\.statusCode) == [500, 500, 200])
            #expect(zip(delivery.attempts, delivery.attempts.dropFirst()).allSatisfy { $0.at <= $1.at })
            let requests = receiver.requests(to: "/flaky")
            #expect(requests.count == 3)
            // Every attempt sends the same delivery: same id, same bytes.
            #expect(Set(requests.map { $0.header("X-CTA-Delivery") ?? "" }) == [delivery._id])
            #expect(Set(requests.map(\.body)).count == 1)
            #expect(requests.allSatisfy { $0.header("X-CTA-Signature") == nil })
            let json = try #require(
                try JSONSerialization.jsonObject(with: Data(requests[0].body.utf8)) as? [String: Any])
            #expect(json["phase"] as? String == "timeout")
            #expect(json["reason"] as? String == "too slow")
            #expect(json["startedAt"] is NSNull)
        }
    }

    @Test("an unreachable receiver: failed after the configured attempts, each with its error")
    func unreachable() async throws {
        // A port bound but not listening refuses connections, and no other test can take it meanwhile.
        let (port, socket) = try closedPort()
        defer { close(socket) }
        try await withCallbackScene { scene in
            let scenario = try await scene.define(webhooks: [WebhookDefinition(url: "http://127.0.0.1:\(port)/gone")])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(
                try await scene.coordinator.end(execution, phase: .cancelled, reason: "stop", counts: ResultCounts()))

            let delivery = try #require(try await scene.waitForDeliveries(execution.executionID, count: 1).first)
            #expect(delivery.state == .failed)
            #expect(delivery.attempts.count == Self.policy.maxAttempts)
            #expect(
                delivery.attempts.allSatisfy { $0.statusCode == nil && $0.error?.contains("cannot connect") == true })
            #expect(delivery.finishedAt != nil && delivery.nextAttemptAt == nil)
        }
    }

    @Test("a receiver that never answers: each attempt ends at the attempt time limit, then the delivery fails")
    func attemptTimeout() async throws {
        var policy = Self.policy
        policy.maxAttempts = 2
        policy.attemptTimeout = .milliseconds(300)
        try await withCallbackScene(policy: policy) { scene in
            let receiver = try await scene.receiver(scripts: ["/silent": [nil, nil]])
            let scenario = try await scene.define(webhooks: [WebhookDefinition(url: receiver.url("/silent"))])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(try await scene.coordinator.end(execution, phase: .finished, reason: nil, counts: ResultCounts()))

            let delivery = try #require(try await scene.waitForDeliveries(execution.executionID, count: 1).first)
            #expect(delivery.state == .failed)
            #expect(delivery.attempts.count == 2)
            #expect(delivery.attempts.allSatisfy { $0.error?.contains("timed out") == true })
            #expect(receiver.requests(to: "/silent").count == 2)
        }
    }

    @Test("an https URL is refused at delivery time with a recorded reason, and not retried")
    func httpsRefused() async throws {
        try await withCallbackScene { scene in
            let scenario = try await scene.define(webhooks: [WebhookDefinition(url: "https://127.0.0.1:9/hook")])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(try await scene.coordinator.end(execution, phase: .finished, reason: nil, counts: ResultCounts()))

            let delivery = try #require(try await scene.waitForDeliveries(execution.executionID, count: 1).first)
            #expect(delivery.state == .failed)
            #expect(delivery.attempts.count == 1)
            #expect(delivery.attempts.first?.error?.contains("https is not supported") == true)
        }
    }

    @Test("a webhook whose `on` excludes the end state is neither recorded nor sent")
    func excludedPhase() async throws {
        try await withCallbackScene { scene in
            let receiver = try await scene.receiver()
            let scenario = try await scene.define(webhooks: [
                WebhookDefinition(url: receiver.url("/on-failure"), on: [.timeout, .cancelled]),
                WebhookDefinition(url: receiver.url("/on-finished"), on: [.finished]),
            ])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(try await scene.coordinator.end(execution, phase: .finished, reason: nil, counts: ResultCounts()))

            // Deliveries are recorded before `end` returns: only the matching webhook has one.
            let recorded = try await scene.store.webhookDeliveries(execution.executionID)
            #expect(recorded.map(\.webhook) == [1])
            let delivered = try await scene.waitForDeliveries(execution.executionID, count: 1)
            #expect(delivered.map(\.state) == [.delivered])
            #expect(receiver.requests(to: "/on-finished").count == 1)
            #expect(receiver.requests(to: "/on-failure").isEmpty)
        }
    }

    @Test("a delivery abandoned by a coordinator that died is taken over by the sweep, once, by one coordinator")
    func sweepTakesOver() async throws {
        try await withCallbackScene { scene in
            let receiver = try await scene.receiver()
            let second = scene.makeCoordinator(instance: "callbacks-2")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await second.deliveryLoop() }
                let now = Date()
                // Due, and claimed by a coordinator whose claim has expired: abandoned.
                var abandoned = WebhookDeliveryRecord(
                    executionID: ExecutionID(), scenario: ScenarioID(unchecked: "gone"), webhook: 0,
                    url: receiver.url("/abandoned"), event: ExecutionEndedPayload.event, body: #"{"x":1}"#,
                    signature: nil, maxAttempts: 3, createdAt: now.addingTimeInterval(-120))
                abandoned.attempts = [
                    WebhookAttempt(
                        number: 1, at: now.addingTimeInterval(-119), durationMs: 3, statusCode: 503, by: "dead")
                ]
                abandoned.nextAttemptAt = now.addingTimeInterval(-60)
                abandoned.claimedBy = "dead"
                abandoned.claimToken = "dead-token"
                abandoned.claimedUntil = now.addingTimeInterval(-30)
                // Due, but its holder's claim still runs: left alone.
                var held = abandoned
                held._id = UUID().uuidString.lowercased()
                held.url = receiver.url("/held")
                held.claimedBy = "alive"
                held.claimToken = "alive-token"
                held.claimedUntil = now.addingTimeInterval(600)
                try await scene.store.createWebhookDelivery(abandoned)
                try await scene.store.createWebhookDelivery(held)

                // Both coordinators sweep at once; the claim lets only one of them take the delivery.
                async let first: Void = scene.coordinator.sweep(now: Date())
                async let other: Void = second.sweep(now: Date())
                _ = try await (first, other)

                let stillHeld = try #require(try await scene.store.webhookDelivery(held._id))
                #expect(stillHeld.claimToken == "alive-token")
                #expect(stillHeld.attempts.count == 1)

                let abandonedID = abandoned._id
                let done = try await scene.waitFor("the abandoned delivery to finish") {
                    let record = try await scene.store.webhookDelivery(abandonedID)
                    return record?.state == .pending ? nil : record
                }
                #expect(done.state == .delivered)
                #expect(done.attempts.map(\.number) == [1, 2])
                #expect(done.attempts.map(\.statusCode) == [503, 200])
                let taker = try #require(done.attempts.last?.by)
                #expect([scene.coordinator.settings.instance, second.settings.instance].contains(taker))
                #expect(receiver.requests(to: "/abandoned").count == 1)
                #expect(receiver.requests(to: "/held").isEmpty)
                group.cancelAll()
            }
        }
    }

    @Test("a coordinator stopping mid-attempt gives its claim up uncounted; another one's sweep delivers it")
    func stoppingReleasesClaim() async throws {
        try await withCallbackScene { scene in
            let receiver = try await scene.receiver(scripts: ["/hang": [nil, 200]])
            let scenario = try await scene.define(webhooks: [WebhookDefinition(url: receiver.url("/hang"))])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            let stopping = scene.makeCoordinator(instance: "callbacks-stopping")
            let loop = Task { await stopping.deliveryLoop() }
            #expect(try await stopping.end(execution, phase: .finished, reason: nil, counts: ResultCounts()))
            _ = try await scene.waitFor("the first request") { receiver.requests(to: "/hang").isEmpty ? nil : true }
            loop.cancel()
            await loop.value

            let released = try #require(try await scene.store.webhookDeliveries(execution.executionID).first)
            #expect(released.state == .pending)
            #expect(released.attempts.isEmpty)
            #expect(released.claimToken == nil && released.claimedBy == nil && released.claimedUntil == nil)

            try await scene.coordinator.sweep(now: Date())
            let delivery = try #require(try await scene.waitForDeliveries(execution.executionID, count: 1).first)
            #expect(delivery.state == .delivered)
            #expect(delivery.attempts.map(\.statusCode) == [200])
            #expect(delivery.attempts.map(\.by) == [scene.coordinator.settings.instance])
            #expect(receiver.requests(to: "/hang").count == 2)
        }
    }

    @Test("a chained scenario gets a pending execution, chainedFrom the ended one; others are not started")
    func chain() async throws {
        try await withCallbackScene { scene in
            let next = try await scene.define()
            let onTimeout = try await scene.define()
            let scenario = try await scene.define(chain: [
                ChainedScenario(scenario: next),
                ChainedScenario(scenario: onTimeout, on: [.timeout]),
                ChainedScenario(scenario: ScenarioID(unchecked: "does-not-exist")),
            ])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(
                try await scene.coordinator.end(execution, phase: .finished, reason: nil, counts: ResultCounts(ok: 1)))

            let pending = try await scene.store.executions(in: .pending, limit: 100)
            let chained = pending.filter { $0.chainedFrom == execution._id }
            try #require(chained.count == 1)
            #expect(chained[0].scenario.id == next)
            #expect(chained[0].requestedBy == "chain/\(scenario.rawValue)")
            #expect(chained[0]._id != execution._id)
            #expect(pending.allSatisfy { $0.scenario.id != onTimeout })
            #expect(scene.logs.contains { $0.level == .error && $0.message.contains("chained scenario") })

            // Ending it again does nothing: what follows an end runs once.
            #expect(
                try await scene.coordinator.end(execution, phase: .finished, reason: nil, counts: ResultCounts())
                    == false)
            let after = try await scene.store.executions(in: .pending, limit: 100)
            #expect(after.filter { $0.chainedFrom == execution._id }.count == 1)
        }
    }

    @Test("chain entries with `on` start after those end states only")
    func chainOnTimeout() async throws {
        try await withCallbackScene { scene in
            let onFinish = try await scene.define()
            let onTimeout = try await scene.define()
            let scenario = try await scene.define(chain: [
                ChainedScenario(scenario: onFinish), ChainedScenario(scenario: onTimeout, on: [.timeout, .cancelled]),
            ])
            let execution = try await scene.store.requestExecution(of: scenario, requestedBy: "test/callbacks")
            #expect(try await scene.coordinator.end(execution, phase: .timeout, reason: "late", counts: ResultCounts()))
            let chained = try await scene.store.executions(in: .pending, limit: 100).filter {
                $0.chainedFrom == execution._id
            }
            #expect(chained.map(\.scenario.id) == [onTimeout])
        }
    }
}

// MARK: - Scene

/// A database, a coordinator that is never connected to a broker, its delivery loop, and captured logs.
final class CallbackScene: Sendable {
    let store: MongoStore
    let coordinator: Coordinator
    let policy: WebhookPolicy
    private let captured: CapturedLogs
    private let receivers = Mutex<[WebhookReceiver]>([])

    init(store: MongoStore, policy: WebhookPolicy) {
        self.store = store
        self.policy = policy
        captured = CapturedLogs()
        coordinator = Coordinator(
            store: store, broker: AMQPConfiguration(),
            settings: Coordinator.Settings(instance: "callbacks-1", webhooks: policy),
            logger: Logger(label: "cta.test.callbacks") { [captured] _ in captured })
    }

    func makeCoordinator(instance: String) -> Coordinator {
        Coordinator(
            store: store, broker: AMQPConfiguration(),
            settings: Coordinator.Settings(instance: instance, webhooks: policy),
            logger: Logger(label: "cta.test.callbacks") { [captured] _ in captured })
    }

    var logs: [CapturedLogs.Entry] { captured.entries }

    /// A receiver that lives as long as the scene.
    func receiver(scripts: [String: [Int?]] = [:]) async throws -> WebhookReceiver {
        let receiver = try await WebhookReceiver(scripts: scripts)
        receivers.withLock { $0.append(receiver) }
        return receiver
    }

    func close() async {
        for receiver in receivers.withLock({ $0 }) { await receiver.close() }
    }

    /// Stores a one-test suite, a configuration and a scenario with these webhooks and chain; returns its id.
    func define(webhooks: [WebhookDefinition] = [], chain: [ChainedScenario] = []) async throws -> ScenarioID {
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let test = E2ETests.shell("test-\(suffix)", "true")
        let suite = SuiteDefinition(
            id: SuiteID(unchecked: "suite-\(suffix)"), name: "Suite \(suffix)", tests: [test.id])
        let configuration = ConfigurationDefinition(
            id: ConfigurationID(unchecked: "config-\(suffix)"), name: "Config \(suffix)",
            selector: MachineSelector(groups: [GroupName(unchecked: "nowhere")]))
        let scenario = ScenarioDefinition(
            id: ScenarioID(unchecked: "scenario-\(suffix)"), name: "Scenario \(suffix)", suite: suite.id,
            configuration: configuration.id, runMode: .mono, webhooks: webhooks, chain: chain)
        try await store.save(
            DefinitionSet(
                tests: [test.id: test], suites: [suite.id: suite], configurations: [configuration.id: configuration],
                scenarios: [scenario.id: scenario]))
        return scenario.id
    }

    /// Waits until the execution has `count` deliveries and none is pending any more.
    func waitForDeliveries(_ execution: ExecutionID, count: Int) async throws -> [WebhookDeliveryRecord] {
        try await waitFor("\(count) finished deliveries of \(execution)") {
            let deliveries = try await self.store.webhookDeliveries(execution)
            return deliveries.count == count && deliveries.allSatisfy({ $0.state != .pending }) ? deliveries : nil
        }
    }

    /// Polls `probe` until it returns a value. The limit only keeps a broken run from hanging.
    func waitFor<T: Sendable>(_ what: String, _ probe: @Sendable () async throws -> T?) async throws -> T {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let value = try await probe() { return value }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("gave up waiting for \(what)")
        throw CancellationError()
    }
}

/// Runs `body` with a scene on a database of its own, the coordinator's delivery loop running beside it.
func withCallbackScene(
    policy: WebhookPolicy = CallbackTests.policy, _ body: @Sendable (CallbackScene) async throws -> Void
) async throws {
    try await withMongoDatabase("cta-callbacks") { _, database in
        let store = MongoStore(database: database)
        try await store.prepare()
        let scene = CallbackScene(store: store, policy: policy)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await scene.coordinator.deliveryLoop() }
            do {
                try await body(scene)
            } catch {
                group.cancelAll()
                await scene.close()
                throw error
            }
            group.cancelAll()
            await scene.close()
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on: bound by a receiver that is closed at once.
/// A loopback TCP port held by a socket that is bound but not listening: connecting to it is refused.
func closedPort() throws -> (port: Int, socket: Int32) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0, "socket() failed")
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    try #require(bound == 0, "bind() failed")
    let named = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    try #require(named == 0, "getsockname() failed")
    return (Int(UInt16(bigEndian: address.sin_port)), fd)
}

/// Keeps every log entry, with its level, for assertions.
final class CapturedLogs: LogHandler, Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
    }

    private let stored = Mutex<[Entry]>([])

    var entries: [Entry] { stored.withLock { $0 } }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        stored.withLock { $0.append(Entry(level: event.level, message: event.message.description)) }
    }
}
