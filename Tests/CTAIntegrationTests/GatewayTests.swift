import CTAAPI
import CTAAgent
import CTAAgentGateway
import CTABroker
import CTACoordinator
import CTACore
@testable import CTAGateway
import CTAMessaging
import CTAMongo
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOSSL
import NIOWebSocket
import Synchronization
import Testing

/// A gateway on a free port, with the real broker and a real token store.
extension APIStore {
    /// Stores a new enrollment token, bound to `machine` when given, revoked when asked; returns its text.
    func newEnrollmentToken(machine: String?, revoked: Bool = false) async throws -> String {
        let secret = Secrets.newEnrollmentToken()
        var record = EnrollmentTokenRecord(
            id: UUID().uuidString, hash: Secrets.tokenHash(secret), name: "test", machine: machine, createdBy: "test",
            createdAt: Date(), expiresAt: nil)
        if revoked { record.revokedAt = Date() }
        try await createEnrollmentToken(record)
        return secret
    }
}

/// An `agent.registration` envelope of `machine` (its payload is the coordinator's to check, not the gateway's): no
/// queue of the gateway tests' virtual host takes that type.
func unroutableBody(_ id: EventID, machine: MachineName) -> [UInt8] {
    Array(
        #"{"version":"1.0","id":"\#(id)","type":"agent.registration","source":"agent/\#(machine)","time":"2026-11-23T04:00:00Z","epoch":"\#(SequenceEpoch())","seq":3,"payload":{}}"#
            .utf8)
}

final class GatewayUnderTest: Sendable {
    let port: Int
    let tokens: APIStore
    /// What the gateway logged at info and above (its broker connections too), for failure messages.
    let log = LogRecorder()
    private let task: Task<Void, Never>

    let scheme: String

    init(
        tokens: APIStore, brokerURL: String, refusalLimit: Int = 10, tls: (certificate: String, key: String)? = nil,
        clientCA: String? = nil
    ) async throws {
        scheme = tls == nil ? "ws" : "wss"

        self.tokens = tokens
        let listening = AsyncStream<Int>.makeStream()
        var logger = log.logger
        logger.logLevel = .info
        let server = GatewayServer(
            configuration: GatewayConfiguration(
                host: "127.0.0.1", port: 0, tls: tls, clientCA: clientCA, broker: try AMQPConfiguration(url: brokerURL),
                refusalLimit: refusalLimit),
            tokens: tokens, logger: logger
        ) { listening.continuation.yield($0) }
        task = Task {
            do { try await server.run() } catch {}
            listening.continuation.finish()
        }
        var ports = listening.stream.makeAsyncIterator()
        port = try #require(await ports.next())
    }

    func url(machine: String? = nil) -> String {
        "\(scheme)://\(scheme == "wss" ? "localhost" : "127.0.0.1"):\(port)/v1/agent" + (machine.map { "?machine=\($0)" } ?? "")
    }

    /// A new enrollment token: bound to `machine` when given, revoked when asked.
    func token(machine: String?, revoked: Bool = false) async throws -> String {
        try await tokens.newEnrollmentToken(machine: machine, revoked: revoked)
    }

    func stop() async {
        task.cancel()
        await task.value
    }

    /// For a failure message: the frame that came instead, whether the connection ended, what the gateway logged.
    func explain(_ frame: GatewayFrame?, _ agent: FrameAgent) -> String {
        "got \(frame.map { String(decoding: $0.encoded, as: UTF8.self) } ?? "nothing"), connection ended: \(agent.ended), "
            + "gateway log: \(log.messages)"
    }
}

/// An agent that speaks gateway frames by hand.
final class FrameAgent: Sendable {
    /// What the connection's task shares with the test.
    final class Shared: Sendable {
        let writer = Mutex<WebSocketOutboundWriter?>(nil)
        let problems = Mutex<[String]>([])
    }

    private let frames = Mailbox()
    private let shared = Shared()
    private let connected = AsyncStream<Void>.makeStream()
    private let task: Task<WebSocketCloseFrame?, any Error>

    var problems: [String] { shared.problems.withLock { $0 } }

    init(url: String, token: String) async throws {
        let frames = self.frames
        let shared = self.shared
        let connected = self.connected
        var headers = HTTPFields()
        headers[.authorization] = "Bearer \(token)"
        task = Task {
            defer {
                frames.end()
                connected.continuation.finish()
            }
            return try await WebSocketClient.connect(
                url: url, configuration: .init(maxFrameSize: 1 << 21, additionalHeaders: headers),
                logger: Logger(label: "cta.gateway.test.agent")
            ) { inbound, outbound, _ in
                shared.writer.withLock { $0 = outbound }
                connected.continuation.yield()
                for try await message in inbound.messages(maxSize: 1 << 21) {
                    guard case .text(let text) = message else { continue }
                    do {
                        frames.put(try GatewayFrame.decode(Array(text.utf8)))
                    } catch {
                        shared.problems.withLock { $0.append("\(error)") }
                    }
                }
            }
        }
        var iterator = connected.stream.makeAsyncIterator()
        _ = await iterator.next()
    }

    func send(_ frame: GatewayFrame) async throws {
        try await sendRaw(String(decoding: frame.encoded, as: UTF8.self))
    }

    func sendRaw(_ text: String) async throws {
        let outbound = try #require(shared.writer.withLock { $0 })
        try await outbound.write(.text(text))
    }

    /// The next frame, or nil when none came within `timeout` or the connection ended (``ended`` tells which).
    func next(timeout: Duration = .seconds(30)) async -> GatewayFrame? {
        await frames.next(timeout: timeout)
    }

    /// Whether the connection has ended.
    var ended: Bool { frames.ended }

    /// Frames received and not yet taken. Waiting for one is a poll, so a wait that times out leaves the next
    /// frame for the next wait (an async stream whose waiting task is cancelled ends for good).
    final class Mailbox: Sendable {
        private let state = Mutex<(frames: [GatewayFrame], ended: Bool)>(([], false))

        var ended: Bool { state.withLock { $0.ended } }

        func put(_ frame: GatewayFrame) { state.withLock { $0.frames.append(frame) } }

        func end() { state.withLock { $0.ended = true } }

        func next(timeout: Duration) async -> GatewayFrame? {
            let deadline = ContinuousClock.now + timeout
            while true {
                let (frame, ended) = state.withLock { state in
                    (state.frames.isEmpty ? nil : state.frames.removeFirst(), state.ended)
                }
                if let frame { return frame }
                if ended || ContinuousClock.now >= deadline { return nil }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// Waits for the connection to end; its close frame, if the server sent one. After `timeout` the connection is
    /// cancelled (nil then): a close that never comes fails the test instead of hanging it.
    func closed(timeout: Duration = .seconds(20)) async -> WebSocketCloseFrame? {
        let task = self.task
        let timer = Task {
            try? await Task.sleep(for: timeout)
            task.cancel()
        }
        defer { timer.cancel() }
        return (try? await task.value) ?? nil
    }

    func close() async {
        try? await shared.writer.withLock { $0 }?.close(.normalClosure, reason: nil)
        _ = await closed(timeout: .seconds(5))
        task.cancel()
    }
}

@Suite(
    "Gateway: agents over WebSocket bridged to the broker",
    .enabled(if: ServiceEnvironment.brokerEnabled && ServiceEnvironment.mongoEnabled, "needs CTA_AMQP_URL and CTA_MONGO_URI")
)
struct GatewayTests {
    @Test("unknown, revoked, user and mismatched tokens are refused with a close reason; nothing is bridged", .timeLimit(.minutes(4)))
    func refusals() async throws {
        try await withMongoDatabase("cta-gateway") { _, database in
            let tokens = APIStore(store: MongoStore(database: database))
            try await tokens.prepare()
            let gateway = try await GatewayUnderTest(tokens: tokens, brokerURL: try ServiceEnvironment.requireGatewayAMQPURL(), refusalLimit: 5)
            let bound = try await gateway.token(machine: "gw-bound")
            let cases: [(String, String, String)] = [
                (gateway.url(machine: "gw-x"), Secrets.newEnrollmentToken(), "unauthenticated: unknown enrollment token"),
                (gateway.url(machine: "gw-x"), try await gateway.token(machine: nil, revoked: true), "unauthenticated: the enrollment token was revoked"),
                (gateway.url(machine: "gw-x"), Secrets.newUserToken(), "unauthenticated: not an agent enrollment token"),
                (gateway.url(machine: "gw-other"), bound, "forbidden: this enrollment token is for machine gw-bound"),
                (gateway.url(), try await gateway.token(machine: nil), "badRequest: name the machine with ?machine="),
            ]
            for (url, token, reason) in cases {
                let agent = try await FrameAgent(url: url, token: token)
                let close = await agent.closed(timeout: .seconds(60))
                #expect(close?.closeCode == .policyViolation, "\(reason)")
                #expect(close?.reason?.hasPrefix(reason) == true, "\(close?.reason ?? "no reason") for \(reason)")
            }
            // Five refusals from this address: the next attempt is refused at once, even with a good token.
            let limited = try await FrameAgent(url: gateway.url(), token: try await gateway.token(machine: "gw-fine"))
            let close = await limited.closed(timeout: .seconds(60))
            #expect(close?.reason?.hasPrefix("tooManyRequests: too many refused connections from 127.0.0.1") == true, "\(String(describing: close))")
            await gateway.stop()
        }
    }

    @Test(
        "a token store that cannot be read refuses agents and uploads as unavailable, and that does not count toward the refusal limit",
        .timeLimit(.minutes(2)))
    func tokenStoreOutage() async throws {
        // No server listens on port 1: every token lookup fails after the short server selection time.
        let client = try MongoClient(
            configuration: .init(uri: "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300", appName: "cta-test"),
            logger: Logger(label: "cta.test.mongo"))
        let tokens = APIStore(store: MongoStore(database: client.database("cta_gateway_outage")))
        let gateway = try await GatewayUnderTest(
            tokens: tokens, brokerURL: try ServiceEnvironment.requireGatewayAMQPURL(), refusalLimit: 2)
        for attempt in 1...4 {
            let agent = try await FrameAgent(url: gateway.url(machine: "gw-outage"), token: Secrets.newEnrollmentToken())
            let close = await agent.closed(timeout: .seconds(60))
            #expect(
                close?.reason?.hasPrefix("unavailable: the token store cannot be read now") == true,
                "attempt \(attempt): \(String(describing: close))")
        }
        let upload = try await APIClient(port: gateway.port, tls: false).request(
            "PUT", "/v1/attachments/\(UUID())?execution=\(UUID())&name=a.txt&machine=gw-outage",
            token: Secrets.newEnrollmentToken(), body: [1], headers: [("X-CTA-SHA256", SHA256.hash([1]).hexString)])
        #expect(upload.status == 503 && upload.errorCode == "unavailable", "\(upload)")
        await gateway.stop()
        try? await client.shutdown()
    }

    @Test(
        "deliveries are acked to the broker only on the agent's ack, released ones come back, unacked ones return when the agent goes; events are confirmed after the broker's confirm, another machine's refused and dead-lettered; a bad frame closes only its connection",
        .timeLimit(.minutes(2))
    )
    func bridge() async throws {
        let url = try ServiceEnvironment.requireGatewayAMQPURL()
        try await withMongoDatabase("cta-gateway") { _, database in
            let tokens = APIStore(store: MongoStore(database: database))
            try await tokens.prepare()
            let gateway = try await GatewayUnderTest(tokens: tokens, brokerURL: url)
            do {
                try await exercise(gateway, url: url)
            } catch {
                await gateway.stop()
                throw error
            }
            await gateway.stop()
        }
    }

    private func exercise(_ gateway: GatewayUnderTest, url: String) async throws {
        do {
            let machine = MachineName(ServiceEnvironment.uniqueName("gw"))!
            let machineQueue = Topology.machineQueue(machine)
            let observer = AMQPConnection(configuration: try AMQPConfiguration(url: url))
            try await observer.connect()
            try await observer.declareTopology(queues: [], bindings: [])
            // Copies of what the gateway publishes for this test, on queues of its own.
            let events = "gw-events-\(machine)"
            let refused = "gw-refused-\(machine)"
            try await observer.declareQueue(events, durable: false, autoDelete: true)
            try await observer.bindQueue(events, exchange: Topology.eventsExchange, routingKey: Topology.routingKey(for: .agentShutdown))
            try await observer.declareQueue(refused, durable: false, autoDelete: true)
            try await observer.bindQueue(refused, exchange: Topology.deadLetterExchange, routingKey: "refused")

            let agent = try await FrameAgent(url: gateway.url(), token: try await gateway.token(machine: machine.rawValue))
            try await waitFor("the gateway consuming the machine queue") {
                (try? await observer.queueState(machineQueue))?.consumerCount == 1
            }

            // Work in: delivered, released (comes back redelivered), then acked.
            let work = Array(#"{"work":1}"#.utf8)
            try await observer.publish(
                OutgoingMessage(exchange: Topology.dispatchExchange, routingKey: Topology.machineRoutingKey(machine), body: work, mandatory: true))
            let delivered = await agent.next()
            guard case .deliver(let tag, let queue, false, let body)? = delivered else {
                Issue.record("no delivery: \(gateway.explain(delivered, agent))")
                return
            }
            #expect(queue == machineQueue && body == work)
            try await agent.send(.release(tag: tag))
            let redelivered = await agent.next()
            guard case .deliver(let again, _, true, let body2)? = redelivered else {
                Issue.record("the released delivery did not come back redelivered: \(gateway.explain(redelivered, agent))")
                return
            }
            #expect(again != tag && body2 == work)
            try await agent.send(.ack(tag: again))

            // A second delivery left unacked returns to the queue when the agent goes.
            try await observer.publish(
                OutgoingMessage(exchange: Topology.dispatchExchange, routingKey: Topology.machineRoutingKey(machine), body: work, mandatory: true))
            let secondDelivery = await agent.next()
            guard case .deliver? = secondDelivery else {
                Issue.record("no second delivery: \(gateway.explain(secondDelivery, agent))")
                return
            }

            // From here the test waits for answers to its events. A loaded CI machine once delivered a further copy
            // of the work (fresh, not redelivered) in between; delivery is at least once, so copies are counted,
            // left unacked like the second delivery, and reported, not taken for the answer.
            var workCopies = 0
            func answer() async -> GatewayFrame? {
                while true {
                    let frame = await agent.next()
                    guard case .deliver(_, machineQueue, _, work)? = frame else { return frame }
                    workCopies += 1
                    print("gateway bridge test: another copy of the work was delivered; gateway log: \(gateway.log.messages)")
                }
            }

            // Events out: confirmed after the broker's confirm; another machine's refused and dead-lettered.
            let mine = Envelope(source: .agent(machine), epoch: SequenceEpoch(), seq: 1, payload: AgentShutdown(machine: machine, reason: "test"))
            let mineBytes = Array(try mine.encoded())
            try await agent.send(.publish(id: mine.id.description, body: mineBytes))
            let confirmed = await answer()
            #expect(confirmed == .confirmed(ids: [mine.id.description]), "\(gateway.explain(confirmed, agent))")
            // The payload is the coordinator's to check, as for a direct agent: this agent's event with a bad payload
            // is confirmed and published, for the coordinator to dead-letter with its reason.
            let badID = EventID()
            let badBody = Array(
                #"{"version":"1.0","id":"\#(badID)","type":"agent.shutdown","source":"agent/\#(machine)","time":"2026-11-23T04:00:00Z","epoch":"\#(SequenceEpoch())","seq":2,"payload":{"machine":5}}"#
                    .utf8)
            #expect(throws: WireError.self) { try Envelope.decode(Data(badBody)) }
            try await agent.send(.publish(id: badID.description, body: badBody))
            let badAnswer = await answer()
            #expect(badAnswer == .confirmed(ids: [badID.description]), "\(gateway.explain(badAnswer, agent))")
            // An event no queue takes (no queue is bound to its type here, as before the coordinators declared
            // theirs) is answered at once, so the agent keeps it and tries again later.
            let strayID = EventID()
            try await agent.send(.publish(id: strayID.description, body: unroutableBody(strayID, machine: machine)))
            let strayAnswer = await answer()
            #expect(strayAnswer == .unroutable(ids: [strayID.description]), "\(gateway.explain(strayAnswer, agent))")
            let other = MachineName(unchecked: "someone-else")
            let theirs = Envelope(source: .agent(other), epoch: SequenceEpoch(), seq: 1, payload: AgentShutdown(machine: other, reason: "x"))
            let theirsBytes = Array(try theirs.encoded())
            try await agent.send(.publish(id: theirs.id.description, body: theirsBytes))
            let refusal = await answer()
            guard case .refused(let id, let error)? = refusal else {
                Issue.record("no refusal: \(gateway.explain(refusal, agent))")
                return
            }
            #expect(id == theirs.id.description && error.code == .unauthorisedSource)
            // The queues are bound on the shared virtual host, where other tests publish events of the same types:
            // look for this test's among what arrives.
            let copies = try await observer.consume(queue: events, prefetch: 100)
            var copied = false
            for try await copy in copies {
                copy.ack()
                // The same bytes the agent sent: the gateway never re-serialises an envelope.
                if copy.body == mineBytes {
                    copied = true
                    break
                }
            }
            #expect(copied, "the confirmed event is on cta.events, byte for byte")
            let deadLetters = try await observer.consume(queue: refused, prefetch: 100)
            var deadLettered = false
            for try await letter in deadLetters {
                letter.ack()
                guard letter.properties.headers[Topology.DeadLetterHeader.deadLetteredBy]?.stringValue == "gateway/\(machine)"
                else { continue }
                #expect(letter.properties.headers[Topology.DeadLetterHeader.code]?.stringValue == "unauthorisedSource")
                #expect(letter.body == theirsBytes)
                deadLettered = true
                break
            }
            #expect(deadLettered)

            // Shared queues while the agent gives credit: a group queue (declared for it), and a parallel queue
            // that does not exist, reported as a cancelled consumer.
            let group = GroupName(ServiceEnvironment.uniqueName("gwpool"))!
            try await agent.send(.credit(queue: Topology.groupQueue(group), credit: 1))
            try await waitFor("the gateway consuming the group queue") {
                (try? await observer.queueState(Topology.groupQueue(group)))?.consumerCount == 1
            }
            try await observer.publish(
                OutgoingMessage(exchange: Topology.dispatchExchange, routingKey: Topology.groupRoutingKey(group), body: work, mandatory: true))
            let groupDelivery = await answer()
            guard case .deliver(let groupTag, Topology.groupQueue(group), false, work)? = groupDelivery else {
                Issue.record("no delivery from the group queue: \(gateway.explain(groupDelivery, agent))")
                return
            }
            try await agent.send(.ack(tag: groupTag))
            try await agent.send(.credit(queue: Topology.groupQueue(group), credit: 0))
            try await waitFor("the group consumer stopped") {
                (try? await observer.queueState(Topology.groupQueue(group)))?.consumerCount == 0
            }
            #expect(try await observer.queueState(Topology.groupQueue(group)).messageCount == 0)
            let missing = Topology.parallelQueue(execution: ExecutionID())
            try await agent.send(.credit(queue: missing, credit: 1))
            #expect(await answer() == .consumerCancelled(queue: missing))

            // A second connection for another machine is not affected by this one's bad frame.
            let neighbour = MachineName(ServiceEnvironment.uniqueName("gw"))!
            let second = try await FrameAgent(url: gateway.url(), token: try await gateway.token(machine: neighbour.rawValue))
            try await agent.sendRaw("{\"frame\":\"ack\",\"tag\":\"x\"}\n")
            let close = await agent.closed()
            #expect(close?.closeCode == .policyViolation)
            #expect(close?.reason == "badFrame: ack: tag must be a whole number, 0 or more")
            let expectedBack = UInt32(1 + workCopies)
            try await waitFor("the unacked delivery back in the queue") {
                (try? await observer.queueState(machineQueue))?.messageCount == expectedBack
            }
            let fine = Envelope(source: .agent(neighbour), epoch: SequenceEpoch(), seq: 1, payload: AgentShutdown(machine: neighbour, reason: "ok"))
            try await second.send(.publish(id: fine.id.description, body: Array(try fine.encoded())))
            #expect(await second.next() == .confirmed(ids: [fine.id.description]))
            await second.close()
            #expect(agent.problems.isEmpty && second.problems.isEmpty)

            _ = try? await observer.deleteQueue(machineQueue)
            _ = try? await observer.deleteQueue(Topology.machineQueue(neighbour))
            _ = try? await observer.deleteQueue(Topology.groupQueue(group))
            await observer.close()
        }
    }
}

@Suite("Gateway: an agent's unanswered events are bounded")
struct GatewayPublishQueueTests {
    @Test("past the limit of unanswered events, receiving waits until answers make room, or the connection ends")
    func backpressure() async throws {
        let queue = PublishQueue(limit: 3)
        for n in 0..<3 { await queue.append(("\(n)", [0x7B, 0x7D])) }
        let fourthIn = Atomic<Bool>(false)
        let fourth = Task {
            await queue.append(("3", [0x7B, 0x7D]))
            fourthIn.store(true, ordering: .sequentiallyConsistent)
        }
        // Taking events out to publish does not make room: they are still unanswered.
        #expect(await queue.next(atMost: 10)?.map(\.id) == ["0", "1", "2"])
        try await Task.sleep(for: .milliseconds(200))
        let tookFourth = fourthIn.load(ordering: .sequentiallyConsistent)
        #expect(!tookFourth, "a fourth event was taken in with three unanswered")
        queue.answered(1)
        await fourth.value
        #expect(await queue.next(atMost: 10)?.map(\.id) == ["3"])

        // A receiver waiting for room is released when the connection ends.
        let fifth = Task { await queue.append(("4", [0x7B, 0x7D])) }
        try await Task.sleep(for: .milliseconds(50))
        queue.finish()
        await fifth.value
    }
}

/// A gateway with TLS that asks agents for client certificates, with the services' test CA.
@Suite(
    "Gateway over TLS with client certificates",
    .enabled(
        if: ServiceEnvironment.brokerEnabled && ServiceEnvironment.mongoEnabled && ServiceEnvironment.amqpsCAFile != nil,
        "needs CTA_AMQP_URL, CTA_MONGO_URI and the services' TLS files (CTA_AMQPS_CA_FILE)")
)
struct GatewayTLSTests {
    @Test(
        "an agent trusting the gateway's CA and presenting a client certificate is admitted, its event confirmed and its upload stored; without a certificate the handshake fails",
        .timeLimit(.minutes(2)))
    func clientCertificates() async throws {
        let directory = URL(fileURLWithPath: try #require(ServiceEnvironment.amqpsCAFile)).deletingLastPathComponent().path
        let file = { (name: String) in directory + "/" + name }
        try #require(FileManager.default.fileExists(atPath: file("client.pem")), "scripts/services.sh makes client.pem")
        try await withMongoDatabase("cta-gateway") { _, database in
            let tokens = APIStore(store: MongoStore(database: database))
            try await tokens.prepare()
            let gateway = try await GatewayUnderTest(
                tokens: tokens, brokerURL: try ServiceEnvironment.requireGatewayAMQPURL(),
                tls: (file("server.pem"), file("server.key")), clientCA: file("ca.pem"))
            do {
                let machine = MachineName(ServiceEnvironment.uniqueName("gw-tls"))!
                let token = try await gateway.token(machine: machine.rawValue)
                // Events are mandatory: a queue takes this test's event type, as the coordinators' does.
                let broker = AMQPConnection(configuration: try AMQPConfiguration(url: try ServiceEnvironment.requireGatewayAMQPURL()))
                try await broker.connect()
                try await broker.declareTopology(queues: [], bindings: [])
                let events = "gw-tls-events-\(machine)"
                try await broker.declareQueue(events, durable: false, autoDelete: false)
                try await broker.bindQueue(events, exchange: Topology.eventsExchange, routingKey: Topology.routingKey(for: .agentShutdown))
                // The agent's own transport, as `gateway.caFile`, `gateway.certFile` and `gateway.keyFile` configure it.
                let transport = try GatewayAgentTransport(
                    gateway: "https://localhost:\(gateway.port)", token: token, machine: machine, caFile: file("ca.pem"),
                    clientCertificate: (file("client.pem"), file("client.key")), logger: gateway.log.logger)
                // A connection that never comes is a failure, not a hang: closing the transport ends the wait.
                let timer = Task {
                    try await Task.sleep(for: .seconds(30))
                    await transport.close()
                }
                try await transport.declare(machine: machine, groups: [])
                timer.cancel()
                let event = Envelope(
                    source: .agent(machine), epoch: SequenceEpoch(), seq: 1, payload: AgentShutdown(machine: machine, reason: "tls"))
                let outcomes = await transport.publish([
                    OutboundEvent(seq: 1, type: event.type, id: event.id, time: event.time, body: Array(try event.encoded()))
                ])
                #expect(outcomes.count == 1 && (try? outcomes[0].get()) != nil, "\(outcomes) \(gateway.log.messages)")
                // An event no queue takes comes back to the agent's transport as unroutable (kept and retried).
                let strayID = EventID()
                let stray = await transport.publish([
                    OutboundEvent(seq: 2, type: .agentRegistration, id: strayID, time: .now(), body: unroutableBody(strayID, machine: machine))
                ])
                guard case .failure(let strayError)? = stray.first else {
                    Issue.record("an unroutable event was answered \(stray)")
                    throw CancellationError()
                }
                #expect(strayError.code == .unroutable, "\(strayError)")
                await transport.close()

                // Uploads go over HTTPS with the same CA file and client certificate; without the certificate the
                // handshake fails, which the agent takes for an outage and retries.
                let execution = ExecutionRecord.pendingWithoutTests()
                try await MongoStore(database: database).createExecution(execution)
                let content = Array("a log over TLS\n".utf8)
                let reference = AttachmentReference(
                    id: AttachmentID(), name: "test.log", size: UInt64(content.count), contentType: "text/plain",
                    sha256: SHA256.hash(content).hexString)
                let uploader = try HTTPAttachmentUploader(
                    url: "https://localhost:\(gateway.port)", token: token, caFile: file("ca.pem"),
                    clientCertificate: (file("client.pem"), file("client.key")))
                try await uploader.upload(
                    reference, content: content, execution: execution.executionID, test: TestID(unchecked: "t"), machine: machine)
                let stored = try #require(try await tokens.attachment(id: reference.id.description))
                #expect(try await tokens.attachmentBytes(stored) == content)
                let withoutCertificate = try HTTPAttachmentUploader(
                    url: "https://localhost:\(gateway.port)", token: token, caFile: file("ca.pem"), clientCertificate: nil)
                let refused = await #expect(throws: UploadFailure.self) {
                    try await withoutCertificate.upload(
                        reference, content: content, execution: execution.executionID, test: TestID(unchecked: "t"),
                        machine: machine)
                }
                #expect(refused?.permanent == false, "\(String(describing: refused))")

                // Trusting the CA is not enough: without a client certificate the gateway ends the handshake.
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.trustRoots = .file(file("ca.pem"))
                var headers = HTTPFields()
                headers[.authorization] = "Bearer \(token)"
                let admitted = Mutex(false)
                await #expect(throws: (any Error).self) {
                    _ = try await WebSocketClient.connect(
                        url: gateway.url(machine: machine.rawValue), configuration: .init(additionalHeaders: headers),
                        tlsConfiguration: tls, logger: Logger(label: "cta.gateway.test.agent")
                    ) { _, _, _ in admitted.withLock { $0 = true } }
                }
                #expect(!admitted.withLock { $0 })
                _ = try? await broker.deleteQueue(Topology.machineQueue(machine))
                _ = try? await broker.deleteQueue(events)
                await broker.close()
            } catch {
                await gateway.stop()
                throw error
            }
            await gateway.stop()
        }
    }
}

@Suite("Gateway packaging")
struct GatewayPackagingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test("the systemd unit starts the built cta-gateway with flags it takes, and its environment file sets what it reads")
    func unitAndEnvironment() async throws {
        let unit = try String(contentsOf: Self.root.appendingPathComponent("packaging/systemd/cta-gateway.service"), encoding: .utf8)
        let lines = unit.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        let exec = try #require(lines.first { $0.hasPrefix("ExecStart=") }).dropFirst("ExecStart=".count)
        let words = exec.split(separator: " ").map(String.init)
        #expect(words.first == "/usr/bin/cta-gateway")
        #expect(lines.contains("EnvironmentFile=/etc/cta/gateway.env"))
        #expect(lines.contains("Restart=on-failure"))

        let candidates = [".build/debug/cta-gateway", ".build/release/cta-gateway"].map { Self.root.appendingPathComponent($0).path }
            + [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cta-gateway").path]
        let binary = try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) }, "cta-gateway not built")
        let output = NSTemporaryDirectory() + "cta-gateway-help-\(UUID().uuidString.prefix(6))"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let pid = try spawn([binary, "--help"], environment: [], output: output)
        #expect(await waitForExit(pid: pid, timeout: .seconds(30)) == 0)
        let help = try String(contentsOfFile: output, encoding: .utf8)
        for flag in words.dropFirst() where flag.hasPrefix("--") {
            #expect(help.contains(flag + " "), "\(flag) is not a cta-gateway flag")
        }
        let environment = try String(contentsOf: Self.root.appendingPathComponent("packaging/config/gateway.env"), encoding: .utf8)
        let names = environment.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }
            .map { String($0.prefix { $0 != "=" }) }
        #expect(names == ["CTA_AMQP_URL", "CTA_MONGO_URI"])
        for name in names { #expect(help.contains("$" + name), "cta-gateway does not read \(name)") }
    }
}

/// Polls `condition` every 50 ms for up to 20 s.
private func waitFor(_ what: String, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(20)
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for \(what)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// Restarts the broker behind the gateway with results in flight, on a private RabbitMQ node of its own (other ports
/// and directory than the shared one and the other restart suites'), so the restart disturbs no one.
@Suite(
    "Gateway: broker restart behind the gateway", .serialized,
    .enabled(if: ServiceEnvironment.brokerEnabled && ServiceEnvironment.mongoEnabled, "needs the services script (scripts/services.sh)"))
struct GatewayBrokerRestartTests {
    static let node = PrivateBrokerNode(name: "gateway-restart-node", base: 25000)

    @Test("1,000 results through the gateway while the broker restarts: each arrives, none lost, seqs contiguous", .timeLimit(.minutes(5)))
    func brokerRestart() async throws {
        try await Self.node.stop()
        try await Self.node.start()
        let url = Self.node.url
        try await withMongoDatabase("cta-gateway") { _, database in
            let tokens = APIStore(store: MongoStore(database: database))
            try await tokens.prepare()
            let gateway = try await GatewayUnderTest(tokens: tokens, brokerURL: url)
            let coordinator = try await CoordinatorStandIn(url: url)
            try await coordinator.startConsuming()
            let machine = MachineName(ServiceEnvironment.uniqueName("gwrestart"))!
            let agent = try AgentProcess.start(
                machine: machine, brokerURL: "", directory: try AgentProcess.makeDirectory(machine),
                gateway: (url: "http://127.0.0.1:\(gateway.port)", token: try await gateway.token(machine: machine.rawValue)))
            do {
                try await coordinator.waitForRegistration(of: [machine])
                let execution = ExecutionID()
                let tests = Work.thousandResults()
                try await coordinator.publish(
                    ExecutionDispatch(execution: Work.context(execution), tests: tests), routingKey: Topology.machineRoutingKey(machine))
                try await coordinator.waitUntil("the first results") { $0.results(execution).count >= 150 }

                try await Self.node.stop()
                try await Task.sleep(for: .seconds(2))  // the agent keeps running tests and spooling meanwhile
                try await Self.node.start()

                try await coordinator.waitUntil(timeout: .seconds(180), "the final state after the restart") {
                    $0.finalState(execution) != nil
                }
                let events = await coordinator.events(from: machine)
                let distinct = events.distinct
                let results = distinct.results(execution)
                #expect(results.count == 1000, "1,000 distinct results, got \(results.count)")
                #expect(Set(results.map { "\($0.testID)/\($0.name)" }).count == 1000, "each test case exactly once")
                AgentProcessTests.expectContiguousSequence(events)
                let final = try #require(distinct.finalState(execution))
                #expect(final.state == .finished && final.counts.total == 1000)
                AgentProcessTests.expectConsistentFinal(final, events: events)
                #expect(agent.log.contains("the gateway closed the connection"), "the restart reached the agent\n\(agent.log.suffix(2000))")
            } catch {
                await agent.terminate()
                await coordinator.close()
                await gateway.stop()
                try? await Self.node.stop()
                throw error
            }
            await agent.terminate()
            await coordinator.close()
            await gateway.stop()
        }
        try await Self.node.stop()
    }
}
