import ArgumentParser
import CTAAPI
import CTAAgent
import CTAAgentGateway
import CTABroker
import CTACoordinator
import CTACore
import CTADefinitions
import CTAMessaging
import CTAMongo
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import Synchronization

/// `cta-bench gateway`: a real `cta-gateway` process between simulated agents and the real broker.
///
/// - **Agents held.** Agents connect one enrollment token each way an agent does (a WebSocket to `/v1/agent`),
///   at most 64 connecting at once; each then publishes a heartbeat every few seconds, which the gateway publishes
///   with a confirm and answers. After all are in, they are held for a while: the figures are how many stayed
///   connected with every heartbeat answered, the heartbeat answer time, and the gateway's memory and CPU.
/// - **Result events.** One agent's stream of `test.result` events, published through the agent's own gateway
///   transport, next to the same events through the agent's own AMQP transport (direct to the broker), in
///   alternating rounds, both in the agent's batches (1,000 events, two batches in flight).
/// - **Uploads.** A test's log uploaded the way the agent does before publishing its result (`PUT
///   /v1/attachments/{id}` with the agent's uploader, one after the other), next to the same uploads stored straight
///   into the database by the bench (the store's own writes, without HTTP, token check or execution check).
struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Agents one cta-gateway holds with heartbeats flowing; result events/s through it next to direct AMQP."
    )

    @Option(help: "Broker URL (default: $CTA_AMQP_BENCH_URL, then $CTA_AMQP_URL).")
    var url: String?

    @Option(help: "MongoDB URI of the token store (default: $CTA_MONGO_URI).")
    var uri: String?

    @Option(help: "The cta-gateway binary (default: next to cta-bench).")
    var gateway: String?

    @Option(help: "Simulated agents to connect and hold.")
    var agents = 2_000

    @Option(help: "Seconds the agents are held once all are connected.")
    var holdSeconds = 20

    @Option(help: "Seconds between an agent's heartbeats.")
    var heartbeatSeconds = 5

    @Option(help: "Result events per round and side.")
    var events = 20_000

    @Option(help: "Rounds per side for result events; the median is reported.")
    var rounds = 3

    @Option(help: "Uploads per round and side.")
    var uploads = 300

    @Option(help: "Bytes per upload.")
    var uploadBytes = 16_384

    func validate() throws {
        guard agents > 0, holdSeconds > 0, heartbeatSeconds > 0, events > 0, rounds > 0, uploads > 0, uploadBytes > 0 else {
            throw ValidationError(
                "--agents, --hold-seconds, --heartbeat-seconds, --events, --rounds, --uploads and --upload-bytes must be positive")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = url ?? environment["CTA_AMQP_BENCH_URL"] ?? environment["CTA_AMQP_URL"] else {
            throw ValidationError("no broker: pass --url or set CTA_AMQP_URL")
        }
        guard let uri = uri ?? environment["CTA_MONGO_URI"] else { throw ValidationError("no database: pass --uri or set CTA_MONGO_URI") }
        let binary = gateway
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cta-gateway").path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no cta-gateway at \(binary)") }

        // Each agent is a socket here and two in the gateway (its WebSocket and its broker connection), which
        // inherits this limit.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        guard limit.rlim_cur >= rlim_t(agents * 3 + 256) else {
            throw ValidationError("--agents \(agents) needs \(agents * 3 + 256) open files for the gateway; the limit here is \(limit.rlim_cur)")
        }
        var logger = Logger(label: "cta.bench.gateway")
        logger.logLevel = .warning
        let run = try await GatewayBenchRun(url: url, uri: uri, binary: binary, logger: logger)
        do {
            for figure in try await run.hold(agents: agents, seconds: holdSeconds, interval: .seconds(heartbeatSeconds)) {
                figure.printLine()
            }
            try await run.resultEvents(count: events, rounds: rounds).printLine()
            for figure in try await run.uploads(count: uploads, bytes: uploadBytes, rounds: rounds) { figure.printLine() }
        } catch {
            await run.stop()
            throw error
        }
        await run.stop()
    }
}

/// One `cta-bench gateway` run: the broker topology, a token store of its own, and the gateway process.
private final class GatewayBenchRun: Sendable {
    let url: String
    let logger: Logger
    let broker: AMQPConnection
    let client: MongoClient
    let databaseName = "cta_bench_gateway_\(UInt32.random(in: 0...UInt32.max))"
    let directory = NSTemporaryDirectory() + "cta-bench-gateway-\(UInt32.random(in: 0...UInt32.max))"
    let port: Int
    let pid: pid_t
    /// An enrollment token for any machine; agents name theirs with `?machine=`.
    let token = Secrets.newEnrollmentToken()
    let prefix = "bench-gw-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"

    init(url: String, uri: String, binary: String, logger: Logger) async throws {
        self.url = url
        self.logger = logger
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "cta-bench-gateway"
        broker = AMQPConnection(configuration: configuration, logger: logger)
        try await broker.connect()
        // The coordinator's queues take what agents publish (events are mandatory: without them nothing routes).
        try await broker.declareTopology(queues: Topology.coordinatorQueues, bindings: Topology.coordinatorBindings)
        for queue in Topology.coordinatorQueues { _ = try await broker.purgeQueue(queue.name) }

        client = try MongoClient(configuration: .init(uri: uri, appName: "cta-bench"), logger: logger)
        let tokens = APIStore(store: MongoStore(database: client.database(databaseName)))
        try await tokens.prepare()
        try await tokens.createEnrollmentToken(
            EnrollmentTokenRecord(
                id: UUID().uuidString, hash: Secrets.tokenHash(token), name: "cta-bench", machine: nil, createdBy: "cta-bench",
                createdAt: Date(), expiresAt: nil))

        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try freePort()
        pid = try spawnLogged(
            [
                binary, "--host", "127.0.0.1", "--port", "\(port)", "--amqp-url", url, "--uri", uri, "--database", databaseName,
                "--log-level", "warning",
            ], log: directory + "/gateway.log")
        try await waitForListener(port: port, timeout: .seconds(30))
    }

    var gatewayLog: String { (try? String(contentsOfFile: directory + "/gateway.log", encoding: .utf8)) ?? "" }

    func stop() async {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        for queue in Topology.coordinatorQueues { _ = try? await broker.purgeQueue(queue.name) }
        await broker.close()
        try? await client.database(databaseName).drop()
        try? await client.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Agents held

    func hold(agents count: Int, seconds: Int, interval: Duration) async throws -> [Figure] {
        let idle = try ProcessSample(pid: pid)
        let gatewayURL = "ws://127.0.0.1:\(port)/v1/agent"
        let started = ContinuousClock.now
        var fleet: [HeartbeatingAgent] = []
        var refused: [String] = []
        // At most 64 agents connecting at once, each in until its first heartbeat is answered.
        try await withThrowingTaskGroup(of: (HeartbeatingAgent, Bool).self) { group in
            var connecting = 0
            for index in 0..<count {
                if connecting >= 64, let (agent, admitted) = try await group.next() {
                    connecting -= 1
                    fleet.append(agent)
                    if !admitted { refused.append(agent.outcome) }
                }
                let machine = MachineName(unchecked: "\(prefix)-\(index)")
                let token = self.token
                let logger = self.logger
                group.addTask {
                    let agent = HeartbeatingAgent(machine: machine, url: gatewayURL, token: token, interval: interval, logger: logger)
                    return (agent, await agent.admitted(timeout: .seconds(120)))
                }
                connecting += 1
            }
            for try await (agent, admitted) in group {
                fleet.append(agent)
                if !admitted { refused.append(agent.outcome) }
            }
        }
        let connectSeconds = (ContinuousClock.now - started).timeInterval
        let admitted = fleet.count - refused.count
        if !refused.isEmpty {
            logger.warning(
                "agents not admitted", metadata: ["cta.count": "\(refused.count)", "cta.first": "\(refused.first ?? "")"])
        }

        // The hold: every agent heartbeats on its own phase; what it sent and what was answered count from here.
        for agent in fleet { agent.resetCounts() }
        let before = try ProcessSample(pid: pid)
        let holdStart = ContinuousClock.now
        try await Task.sleep(for: .seconds(seconds))
        let after = try ProcessSample(pid: pid)
        let held = (ContinuousClock.now - holdStart).timeInterval
        for agent in fleet { agent.stopHeartbeats() }
        // Answers to the last heartbeats sent may still be on their way.
        let settleDeadline = ContinuousClock.now + .seconds(15)
        while fleet.contains(where: { $0.unanswered > 0 && !$0.ended }), ContinuousClock.now < settleDeadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let counts = fleet.map { $0.counts }
        let sent = counts.reduce(0) { $0 + $1.sent }
        let answered = counts.reduce(0) { $0 + $1.answered }
        let latencies = counts.flatMap(\.latencies)
        let stayed = fleet.filter { $0.wasAdmitted && !$0.ended }
        let whole = stayed.filter { $0.counts.sent > 0 && $0.counts.answered == $0.counts.sent }.count
        for agent in fleet { await agent.close() }

        // The machine queues the gateway declared for the agents.
        for index in 0..<count { _ = try? await broker.deleteQueue(Topology.machineQueue(MachineName(unchecked: "\(prefix)-\(index)"))) }
        for queue in Topology.coordinatorQueues { _ = try? await broker.purgeQueue(queue.name) }

        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpu = Double(after.cpuTicks - before.cpuTicks) / ticks / held * 100
        let perAgent = admitted > 0 ? Double(after.rssKiB - idle.rssKiB) / Double(admitted) : 0
        func figure(_ name: String, _ unit: String, _ value: Double, note: String) -> Figure {
            var figure = Figure(
                bench: "gateway", figure: name, unit: unit, samples: [value], baselineSamples: nil, baselineName: nil, operations: count)
            figure.note = note
            return figure
        }
        let setting = "\(count) agents, a heartbeat each every \(interval.timeInterval) s, held \(seconds) s"
        if stayed.count < count {
            logger.warning("agents lost", metadata: ["cta.gateway.log": "\(gatewayLog.suffix(2_000))"])
        }
        return [
            figure(
                "agents_held", "agents", Double(whole),
                note: "\(setting): connected for the whole hold with every heartbeat answered (target 2,000); "
                    + "\(admitted) admitted, \(stayed.count) still connected, \(sent) heartbeats sent in the hold, \(answered) answered"),
            figure(
                "connect_rate", "agents/s", Figure.rounded(Double(admitted) / connectSeconds, 1),
                note: "from the first WebSocket upgrade to the last agent's first heartbeat answered, 64 connecting at once"),
            figure(
                "heartbeat_answer_p50", "ms", Figure.rounded(Figure.percentile(50, latencies), 2),
                note: "\(setting): frame written to `confirmed` read, through the broker's confirm"),
            figure(
                "heartbeat_answer_p99", "ms", Figure.rounded(Figure.percentile(99, latencies), 2),
                note: "\(setting): frame written to `confirmed` read, through the broker's confirm"),
            figure(
                "held_cpu", "%", Figure.rounded(cpu, 1),
                note: "\(setting): the gateway process's CPU (user + system) over the hold; 100 is one core"),
            figure(
                "held_rss", "MiB", Figure.rounded(Double(after.rssKiB) / 1024, 1),
                note: "\(setting): the gateway's resident memory; idle before the agents it was "
                    + "\(Figure.rounded(Double(idle.rssKiB) / 1024, 1)) MiB"),
            figure(
                "rss_per_agent", "KiB", Figure.rounded(perAgent, 1),
                note: "(held RSS - idle RSS) / agents admitted: one WebSocket, one broker connection and its thread each"),
        ]
    }

    // MARK: Result events

    func resultEvents(count: Int, rounds: Int) async throws -> Figure {
        let results = Topology.resultsQueue
        var throughGateway: [Double] = []
        var direct: [Double] = []
        for round in 0..<rounds {
            for side in [true, false] {
                let machine = MachineName(unchecked: "\(prefix)-events-\(round)-\(side ? "gw" : "amqp")")
                let transport: any AgentTransport =
                    side
                    ? try GatewayAgentTransport(gateway: "http://127.0.0.1:\(port)", token: token, machine: machine, logger: logger)
                    : AMQPAgentTransport(configuration: try AMQPConfiguration(url: url), machine: machine, logger: logger)
                try await transport.declare(machine: machine, groups: [])
                let batches = try Self.resultBatches(machine: machine, count: count, batchSize: 1_000)
                let start = ContinuousClock.now
                try await Self.publishAll(batches, through: transport)
                let rate = Double(count) / (ContinuousClock.now - start).timeInterval
                await transport.close()
                if side { throughGateway.append(rate) } else { direct.append(rate) }
                _ = try await broker.purgeQueue(results)
                _ = try? await broker.deleteQueue(Topology.machineQueue(machine))
            }
        }
        var figure = Figure(
            bench: "gateway", figure: "result_events", unit: "events/s", samples: throughGateway.map { Figure.rounded($0, 0) },
            baselineSamples: direct.map { Figure.rounded($0, 0) }, baselineName: "the agent's direct AMQP transport",
            operations: count)
        figure.note =
            "test.result events (about 520 bytes) published and confirmed in the agent's batches (1,000, two in flight), "
            + "through the gateway's WebSocket (the gateway publishes with confirms and answers each) vs straight to the broker; target ratio 0.6"
        return figure
    }

    // MARK: Uploads

    /// `count` uploads of `bytes` each through the gateway, one after the other, next to the same content stored
    /// by the bench straight into the database; per round, alternating.
    func uploads(count: Int, bytes: Int, rounds: Int) async throws -> [Figure] {
        let store = MongoStore(database: client.database(databaseName))
        let execution = ExecutionRecord(
            id: ExecutionID(), scenario: ScenarioReference(id: ScenarioID(unchecked: "bench"), name: "bench"),
            suite: SuiteReference(id: SuiteID(unchecked: "bench"), name: "bench"), configuration: ConfigurationID(unchecked: "bench"),
            selector: MachineSelector(), runMode: .mono, env: [:], requestedBy: "cta-bench", tests: [], createdAt: Date(),
            pendingDeadline: Date().addingTimeInterval(3600), runningTimeoutMs: 3_600_000, chainedFrom: nil, provision: nil)
        try await store.createExecution(execution)
        let apiStore = APIStore(store: store)
        let uploader = try HTTPAttachmentUploader(url: "http://127.0.0.1:\(port)", token: token, caFile: nil, clientCertificate: nil)
        let machine = MachineName(unchecked: "\(prefix)-uploads")
        var content = [UInt8](repeating: 0, count: bytes)
        for index in content.indices { content[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
        let digest = SHA256.hash(content).hexString
        var throughGateway: [Double] = []
        var direct: [Double] = []
        var latencies: [Double] = []
        for _ in 0..<rounds {
            let start = ContinuousClock.now
            for _ in 0..<count {
                let reference = AttachmentReference(
                    id: AttachmentID(), name: "test.log", size: UInt64(bytes), contentType: "text/plain", sha256: digest)
                let one = ContinuousClock.now
                try await uploader.upload(
                    reference, content: content, execution: execution.executionID, test: TestID(unchecked: "bench"), machine: machine)
                latencies.append((ContinuousClock.now - one).timeInterval * 1000)
            }
            throughGateway.append(Double(count) / (ContinuousClock.now - start).timeInterval)

            let baselineStart = ContinuousClock.now
            for _ in 0..<count {
                let record = AttachmentRecord(
                    _id: AttachmentID().description, executionID: execution.executionID.description, name: "test.log",
                    size: Int64(bytes), sha256: digest, chunkSize: APIStore.chunkSize, chunks: 0, machine: machine.rawValue,
                    test: "bench", contentType: "text/plain", uploadedBy: "cta-bench", uploadedAt: Date(), complete: false)
                _ = try await apiStore.putUpload(record, bytes: content)
            }
            direct.append(Double(count) / (ContinuousClock.now - baselineStart).timeInterval)
        }
        var rate = Figure(
            bench: "gateway", figure: "uploads", unit: "uploads/s", samples: throughGateway.map { Figure.rounded($0, 1) },
            baselineSamples: direct.map { Figure.rounded($0, 1) },
            baselineName: "the same content stored by the bench straight into the database", operations: count)
        rate.note =
            "\(bytes)-byte uploads through the gateway with the agent's uploader, one after the other (a connection each; "
            + "token, execution and SHA-256 checked; stored in chunks, then the record)"
        var latency = Figure(
            bench: "gateway", figure: "upload_latency_p50", unit: "ms", samples: [Figure.rounded(Figure.percentile(50, latencies), 2)],
            baselineSamples: nil, baselineName: nil, operations: latencies.count)
        latency.note = "p99 \(Figure.rounded(Figure.percentile(99, latencies), 2)) ms over every upload of every round"
        return [rate, latency]
    }

    /// Publishes the batches in order with two in flight, as the agent's outbox does; any failure fails the round.
    static func publishAll(_ batches: [[OutboundEvent]], through transport: any AgentTransport) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for batch in batches {
                if inFlight >= 2 {
                    try await group.next()
                    inFlight -= 1
                }
                group.addTask {
                    for outcome in await transport.publish(batch) {
                        if case .failure(let error) = outcome { throw error }
                    }
                }
                inFlight += 1
                // The next batch is handed over only after this one is on its way, so the wire order is the spool's.
                await Task.yield()
            }
            try await group.waitForAll()
        }
    }

    static func resultBatches(machine: MachineName, count: Int, batchSize: Int) throws -> [[OutboundEvent]] {
        let execution = ExecutionID()
        let epoch = SequenceEpoch()
        let now = Timestamp.now()
        var events: [OutboundEvent] = []
        events.reserveCapacity(count)
        for seq in 1...UInt64(count) {
            let name = "case-" + String(format: "%07llu", seq)
            let result = TestResult(
                executionID: execution, machine: machine, testID: TestID(unchecked: "bench-suite"), name: name,
                status: .ok, startedAt: now, finishedAt: now, durationMs: Milliseconds(3),
                origin: .junit(stage: "run", file: "results.xml", suite: "bench", classname: "bench.Cases", testcase: name))
            let envelope = Envelope(source: .agent(machine), time: now, epoch: epoch, seq: seq, payload: result)
            events.append(
                OutboundEvent(seq: seq, type: envelope.type, id: envelope.id, time: now, body: Array(try envelope.encoded())))
        }
        return stride(from: 0, to: count, by: batchSize).map { Array(events[$0..<min($0 + batchSize, count)]) }
    }
}

/// An agent reduced to its gateway connection and heartbeats: it connects with the enrollment token, publishes a
/// heartbeat at once (its answer is the sign it is in) and then one every `interval`, on a phase of its own.
private final class HeartbeatingAgent: Sendable {
    struct Counts {
        var sent = 0
        var answered = 0
        var latencies: [Double] = []
    }

    private struct State {
        var counts = Counts()
        /// When each unanswered heartbeat was written, by id.
        var outstanding: [String: ContinuousClock.Instant] = [:]
        var admitted = false
        var ended = false
        var beating = true
        var outcome = "not connected yet"
    }

    let machine: MachineName
    private let state = Mutex(State())
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(machine: MachineName, url: String, token: String, interval: Duration, logger: Logger) {
        self.machine = machine
        var headers = HTTPFields()
        headers[.authorization] = "Bearer \(token)"
        let target = url + "?machine=\(machine)"
        let task = Task { [self] in
            do {
                let close = try await WebSocketClient.connect(
                    url: target, configuration: .init(maxFrameSize: 1 << 16, additionalHeaders: headers), logger: logger
                ) { inbound, outbound, _ in
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            try await outbound.write(.text(self.heartbeat()))
                            // A phase of its own, so the fleet's heartbeats spread over the interval.
                            try await Task.sleep(for: interval * Double.random(in: 0..<1))
                            while !Task.isCancelled {
                                if self.state.withLock({ $0.beating }) { try await outbound.write(.text(self.heartbeat())) }
                                try await Task.sleep(for: interval)
                            }
                        }
                        for try await message in inbound.messages(maxSize: 1 << 16) {
                            guard case .text(let text) = message, case .confirmed(let ids)? = try? GatewayFrame.decode(Array(text.utf8))
                            else { continue }
                            for id in ids { self.answered(id) }
                        }
                        group.cancelAll()
                    }
                }
                state.withLock { $0.outcome = "closed: \(close.map { "\($0.closeCode) \($0.reason ?? "")" } ?? "no close frame")" }
            } catch {
                state.withLock { $0.outcome = "failed: \(error)" }
            }
            state.withLock { $0.ended = true }
        }
        self.task.withLock { $0 = task }
    }

    var counts: Counts { state.withLock { $0.counts } }
    var wasAdmitted: Bool { state.withLock { $0.admitted } }
    var ended: Bool { state.withLock { $0.ended } }
    var outcome: String { state.withLock { $0.outcome } }
    var unanswered: Int { state.withLock { $0.outstanding.count } }

    /// Waits until the first heartbeat is answered (true), or the connection ends or `timeout` passes (false).
    func admitted(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (admitted, ended) = state.withLock { ($0.admitted, $0.ended) }
            if admitted { return true }
            if ended { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    func resetCounts() {
        state.withLock {
            $0.counts = Counts()
            $0.outstanding = [:]
        }
    }

    func stopHeartbeats() { state.withLock { $0.beating = false } }

    func close() async {
        let task = self.task.withLock { $0 }
        task?.cancel()
        await task?.value
    }

    private func heartbeat() -> String {
        let heartbeat = AgentHeartbeat(
            machine: machine, load: LoadAverage(one: 0, five: 0, fifteen: 0), freeSlots: 1, lastSeq: 0,
            intervalMs: Milliseconds(15_000))
        let envelope = Envelope(source: .agent(machine), epoch: SequenceEpoch(), seq: nil, event: heartbeat.event)
        let body = (try? envelope.encoded()).map { Array($0) } ?? []
        let id = envelope.id.description
        state.withLock {
            $0.outstanding[id] = .now
            $0.counts.sent += 1
        }
        return String(decoding: GatewayFrame.publish(id: id, body: body).encoded, as: UTF8.self)
    }

    private func answered(_ id: String) {
        state.withLock { state in
            state.admitted = true
            state.outcome = "admitted"
            guard let written = state.outstanding.removeValue(forKey: id) else { return }
            state.counts.answered += 1
            state.counts.latencies.append((ContinuousClock.now - written).timeInterval * 1000)
        }
    }
}

/// A port nothing listens on now (the kernel's pick for a socket bound to port 0).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ValidationError("socket: \(errno)") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw ValidationError("bind: \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
func waitForListener(port: Int, timeout: Duration) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(fd)
        if connected == 0 { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw ValidationError("nothing listens on port \(port) after \(timeout)")
}
