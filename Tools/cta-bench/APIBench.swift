import ArgumentParser
import CBaseline
import CTAAPI
import CTABroker
import CTACoordinator
import CTACore
import CTADefinitions
import CTALive
import CTAMongo
import Foundation
import HummingbirdWSClient
import Logging
import ServiceLifecycle
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `cta-bench api`: the coordinator's API server in this process, against the real database, with real clients.
///
/// - `live_fanout`: events delivered per second to many WebSocket subscribers of one execution, next to as many
///   raw libmongoc change streams receiving the same events (what each subscriber watching the database itself
///   would get).
/// - `live_store_to_subscriber_p50`/`_p99`: from the write that stores a result to a subscriber receiving it,
///   with paced writes, next to the same for the raw change streams.
/// - `rest_get_execution`: `GET /v1/executions/{id}` per second over keep-alive connections, next to raw
///   libmongoc reading the same document by `_id` from as many threads.
struct APIBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "The live feed's fan-out and latency next to raw change streams, and REST reads next to raw libmongoc.",
        discussion: """
            Runs the API server (REST and the live feed, no TLS) in this process on a database of its own \
            (cta_bench_<random>, dropped at the end); clients, server and baselines share the machine. Prints one \
            JSON line per figure.
            """
    )

    @Option(help: "MongoDB connection string (default: $CTA_MONGO_URI). SecantusDB needs retryWrites=false.")
    var uri: String?

    @Option(help: "Live feed subscribers (and raw change streams in the baseline).")
    var subscribers = 100

    @Option(help: "Results written back to back per fan-out round.")
    var events = 2000

    @Option(help: "Results written one at a time per latency round.")
    var paced = 200

    @Option(help: "Milliseconds between the paced writes (at 50, 100 subscribers take 2,000 frames a second).")
    var interval = 50

    @Option(help: "Rounds per side; the median is reported.")
    var rounds = 3

    @Option(help: "Keep-alive connections (and baseline threads) reading an execution.")
    var connections = 8

    @Option(help: "Seconds each REST round reads.")
    var seconds = 3.0

    @Option(help: "Ended executions stored first, as a database in use holds.")
    var history = 2000

    @Option(help: "Only these parts (comma-separated: live,rest).")
    var only: String?

    func validate() throws {
        guard subscribers > 0, events > 0, paced > 0, interval >= 0, rounds > 0, connections > 0, seconds > 0, history >= 0
        else { throw ValidationError("the counts must be positive") }
    }

    func run() async throws {
        guard let uri = uri ?? ProcessInfo.processInfo.environment["CTA_MONGO_URI"] else {
            throw ValidationError("no database: pass --uri or set CTA_MONGO_URI")
        }
        let parts = Set((only ?? "live,rest").split(separator: ",").map(String.init))
        var logger = Logger(label: "cta.bench.api")
        logger.logLevel = .error
        let bench = try APIBenchRun(uri: uri, logger: logger)
        do {
            try await bench.prepare(history: history)
            // One server for the whole run, as a coordinator that has been up for a while: its live feed already
            // holds the changes since a moment before each execution is created, so subscribers start from its
            // memory, not from the database's change history (see `warmUp`).
            try await bench.withServer { port in
                try await bench.warmUp()
                if parts.contains("live") {
                    let figures = try await bench.live(
                        port: port, subscribers: subscribers, events: events, paced: paced,
                        interval: .milliseconds(interval), rounds: rounds)
                    for figure in figures { figure.printLine() }
                }
                if parts.contains("rest") {
                    try await bench.rest(port: port, connections: connections, seconds: seconds, rounds: rounds)
                        .printLine()
                }
            }
        } catch {
            await bench.stop()
            throw error
        }
        await bench.stop()
    }
}

/// One `cta-bench api` run: its database, the API over it, and the tokens and scenario the rounds use.
private final class APIBenchRun: Sendable {
    let uri: String
    let logger: Logger
    let client: MongoClient
    let databaseName = "cta_bench_\(UInt32.random(in: 0...UInt32.max))"
    let store: MongoStore
    let api: API
    private let setup = Mutex<(admin: String, viewer: String, scenario: ScenarioID)?>(nil)

    /// The group whose viewer subscribes and reads: the API checks the scenario's owners on every read.
    static let group = "bench"
    static let batch = Coordinator.Settings(instance: "cta-bench").resultBatch

    init(uri: String, logger: Logger) throws {
        self.uri = uri
        self.logger = logger
        client = try MongoClient(configuration: .init(uri: uri, appName: "cta-bench"), logger: logger)
        store = MongoStore(database: client.database(databaseName))
        // The API's coordinator is never run: nothing here publishes (the broker URL is not used).
        let coordinator = Coordinator(
            store: store, broker: try AMQPConfiguration(url: "amqp://127.0.0.1:1/"),
            settings: Coordinator.Settings(instance: "cta-bench-api"), logger: logger)
        api = API(
            store: APIStore(store: store), coordinator: coordinator,
            configuration: APIConfiguration(host: "127.0.0.1", port: 0), logger: logger)
    }

    var tokens: (admin: String, viewer: String, scenario: ScenarioID) {
        get throws {
            guard let setup = setup.withLock({ $0 }) else { throw ValidationError("the bench is not prepared") }
            return setup
        }
    }

    /// Indexes, the first admin, a viewer of group `bench` with a token, a scenario the group owns (all through
    /// the REST API but the admin), and `history` ended executions.
    func prepare(history: Int) async throws {
        try await client.ping()
        try await store.prepare()
        try await api.store.prepare()
        guard let admin = try await api.store.bootstrapAdmin(holder: "cta-bench", at: Date()) else {
            throw ValidationError("the bench database \(databaseName) already has an admin")
        }
        let (viewer, scenario) = try await withServer { port in
            try await HTTPLoad.withConnection(port: port) { connection in
                func call(_ method: HTTPMethod, _ target: String, _ body: String) async throws -> String {
                    let (status, text) = try await connection.send(method, target, token: admin, body: Array(body.utf8))
                    guard (200..<300).contains(status) else {
                        throw ValidationError("\(method) \(target): \(status) \(text)")
                    }
                    return text
                }
                let owners = "\"owners\":[\"\(Self.group)\"]"
                _ = try await call(.POST, "/v1/groups", "{\"name\":\"\(Self.group)\"}")
                _ = try await call(
                    .POST, "/v1/users", "{\"name\":\"bench-viewer\",\"role\":\"viewer\",\"groups\":[\"\(Self.group)\"]}")
                let created = try await call(.POST, "/v1/tokens", "{\"name\":\"bench\",\"user\":\"bench-viewer\"}")
                guard let object = try JSONSerialization.jsonObject(with: Data(created.utf8)) as? [String: Any],
                    let token = object["token"] as? String
                else { throw ValidationError("no token in \(created)") }
                _ = try await call(
                    .PUT, "/v1/tests/bench-test", "{\"stages\":[{\"name\":\"run\",\"run\":\"true\"}],\(owners)}")
                _ = try await call(.PUT, "/v1/suites/bench-suite", "{\"tests\":[\"bench-test\"],\(owners)}")
                _ = try await call(.PUT, "/v1/configurations/bench-configuration", "{\"groups\":[\"\(Self.group)\"],\(owners)}")
                _ = try await call(
                    .PUT, "/v1/scenarios/bench-scenario",
                    "{\"suite\":\"bench-suite\",\"configuration\":\"bench-configuration\",\"runMode\":\"mono\",\(owners)}")
                return (token, ScenarioID(unchecked: "bench-scenario"))
            }
        }
        setup.withLock { $0 = (admin, viewer, scenario) }
        try await store.storeHistory(history, of: scenario)
    }

    func stop() async {
        try? await client.database(databaseName).drop()
        try? await client.shutdown()
    }

    /// Runs the API server (with the live feed) on a free port for the length of `body`, then shuts it down
    /// gracefully.
    func withServer<T: Sendable>(_ body: (Int) async throws -> T) async throws -> T {
        let feed = LiveFeed(source: MongoFeedSource(database: store.database), logger: logger)
        let listening = AsyncStream<Int>.makeStream()
        let server = APIServer(api: api, extensions: [API.liveFeedRoutes(feed)]) { port in
            listening.continuation.yield(port)
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [server], gracefulShutdownSignals: [], logger: logger))
        let feeding = Task { await feed.run() }
        let serving = Task {
            do {
                try await group.run()
            } catch {
                logger.error("the API server failed", metadata: ["cta.error": "\(error)"])
            }
            listening.continuation.finish()
        }
        func stop() async {
            await group.triggerGracefulShutdown()
            feeding.cancel()
            await serving.value
            await feeding.value
        }
        var ports = listening.stream.makeAsyncIterator()
        guard let port = await ports.next() else {
            await stop()
            throw ValidationError("the API server did not start")
        }
        do {
            let result = try await body(port)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    // MARK: Live feed

    struct LiveRound {
        /// Deliveries (event × subscriber) per second, from the first write to the last delivery.
        var fanout: Double
        /// Store-to-subscriber latencies of the paced writes, in milliseconds.
        var p50: Double
        var p99: Double
    }

    /// Stores a change the feed reads, then waits past the next second: the feed then holds a change older
    /// than any execution created from now on, so a subscription to one starts from the feed's memory. (A
    /// subscription to an execution older than what the feed holds first reads the database's change history from
    /// the execution's creation; on SecantusDB that costs time in proportion to the whole server's change log.)
    func warmUp() async throws {
        for _ in 0..<2 {
            _ = try await store.requestExecution(of: try tokens.scenario, requestedBy: "cta-bench/warm-up")
            try await Task.sleep(for: .milliseconds(600))
        }
        try await Task.sleep(for: .milliseconds(1000))
    }

    func live(port: Int, subscribers: Int, events: Int, paced: Int, interval: Duration, rounds: Int) async throws
        -> [Figure]
    {
        var cta: [LiveRound] = []
        var raw: [LiveRound] = []
        for _ in 0..<rounds {
            let fanoutCTA = try await liveRound(port: port, subscribers: subscribers, count: events, interval: nil)
            let pacedCTA = try await liveRound(port: port, subscribers: subscribers, count: paced, interval: interval)
            cta.append(LiveRound(fanout: fanoutCTA.rate, p50: pacedCTA.p50, p99: pacedCTA.p99))
            let fanout = try await rawRound(streams: subscribers, count: events, interval: nil)
            let pacedRaw = try await rawRound(streams: subscribers, count: paced, interval: interval)
            raw.append(LiveRound(fanout: fanout.rate, p50: pacedRaw.p50, p99: pacedRaw.p99))
        }
        let rawName = "\(subscribers) libmongoc change streams, one thread and client each, same pipeline"
        var fanout = Figure(
            bench: "api", figure: "live_fanout", unit: "deliveries/s", samples: cta.map(\.fanout),
            baselineSamples: raw.map(\.fanout), baselineName: rawName, operations: subscribers * events)
        fanout.note = """
            \(events) results of one execution are written back to back in the coordinator's batches of \
            \(Self.batch) while \(subscribers) WebSocket subscribers (a viewer's token, each on its own \
            connection) follow the execution; a delivery is one result reaching one subscriber. From the first \
            write to the last delivery. The server reads one change stream and fans it out; the baseline opens a \
            change stream per subscriber. The server stays up during the baseline rounds (its one change stream \
            reads their writes too).
            """
        func latency(_ name: String, _ value: KeyPath<LiveRound, Double>, _ label: String) -> Figure {
            var figure = Figure(
                bench: "api", figure: name, unit: "ms", samples: cta.map { $0[keyPath: value] },
                baselineSamples: raw.map { $0[keyPath: value] }, baselineName: rawName, operations: subscribers * paced)
            figure.note = """
                \(label) over every (result, subscriber) of \(paced) results written one at a time every \
                \(interval.components.seconds * 1000 + interval.components.attoseconds / 1_000_000_000_000_000) ms to an execution \(subscribers) subscribers follow: from the start of the write that \
                stored the result to the subscriber reading its frame (one clock, one process). Lower is better.
                """
            return figure
        }
        return [
            fanout, latency("live_store_to_subscriber_p50", \.p50, "Median"),
            latency("live_store_to_subscriber_p99", \.p99, "99th percentile"),
        ]
    }

    struct Delivery {
        var rate: Double
        var p50: Double
        var p99: Double
    }

    /// `count` results of a new execution written while `subscribers` follow it over WebSocket.
    private func liveRound(port: Int, subscribers: Int, count: Int, interval: Duration?) async throws -> Delivery {
        let record = try await store.requestExecution(of: try tokens.scenario, requestedBy: "cta-bench/live")
        let execution = record._id
        let url = "ws://127.0.0.1:\(port)/v1/live?token=\(try tokens.viewer)"
        let ready = Countdown(subscribers)
        let clients = (0..<subscribers).map { _ in
            Task { try await LiveSubscriber.follow(url: url, execution: execution, expected: count, ready: ready) }
        }
        do {
            try await ready.wait(timeout: .seconds(120), what: "subscribers to be ready")
            let written = try await write(count, to: record.executionID, interval: interval)
            var receipts: [[UInt64]] = []
            for client in clients { receipts.append(try await client.value) }
            return Self.delivery(written: written, receipts: receipts)
        } catch {
            for client in clients { client.cancel() }
            throw error
        }
    }

    /// The same writes while `streams` raw change streams watch the database.
    private func rawRound(streams: Int, count: Int, interval: Duration?) async throws -> Delivery {
        let record = try await store.requestExecution(of: try tokens.scenario, requestedBy: "cta-bench/raw")
        let pipeline: BSONDocument = ["pipeline": .array(MongoFeedSource.pipeline.map { .document($0) })]
        let bytes = pipeline.bsonBytes
        let uri = self.uri
        let databaseName = self.databaseName
        let opened = await onOwnThread { () -> Result<Watchers, ValidationError> in
            let message = CError()
            let set = bytes.withUnsafeBufferPointer { buffer in
                cta_watchers_open(
                    uri, databaseName, buffer.baseAddress, buffer.count, Int32(streams), Int32(count), 100,
                    message.buffer, message.size)
            }
            guard let set else { return .failure(ValidationError("raw change streams: \(message.text)")) }
            return .success(Watchers(set: set))
        }
        let watchers = try opened.get()
        do {
            let written = try await write(count, to: record.executionID, interval: interval)
            let receipts = try await onOwnThread { () -> Result<[[UInt64]], ValidationError> in
                let message = CError()
                let received = cta_watchers_wait(watchers.set, 120_000, message.buffer, message.size)
                guard received >= 0 else { return .failure(ValidationError("raw change stream: \(message.text)")) }
                guard received == Int64(streams * count) else {
                    return .failure(ValidationError("raw change streams received \(received) of \(streams * count)"))
                }
                let all = UnsafeBufferPointer(start: cta_watchers_receipts(watchers.set), count: streams * count)
                return .success((0..<streams).map { Array(all[$0 * count..<($0 + 1) * count]) })
            }.get()
            await onOwnThread { cta_watchers_close(watchers.set) }
            return Self.delivery(written: written, receipts: receipts)
        } catch {
            await onOwnThread { cta_watchers_close(watchers.set) }
            throw error
        }
    }

    /// Stores `count` results of `execution` (seq 0 ..< count) the way the coordinator stores results: back to
    /// back in its batches, or one at a time every `interval`. Returns when each write started, by seq.
    private func write(_ count: Int, to execution: ExecutionID, interval: Duration?) async throws -> [UInt64] {
        let machine = MachineName(unchecked: "bench-1")
        let now = Date()
        let stamp = Timestamp.now()
        let records = (0..<count).map { seq in
            let name = "case-\(seq)"
            return ResultRecord(
                id: "\(execution)/\(seq)", executionID: execution.description, machine: machine, epoch: execution.description,
                seq: UInt64(seq), time: now, receivedAt: now,
                result: TestResult(
                    executionID: execution, machine: machine, testID: TestID(unchecked: "bench-test"), name: name,
                    status: .ok, startedAt: stamp, finishedAt: stamp, durationMs: Milliseconds(3),
                    origin: .junit(stage: "run", file: "results.xml", suite: "bench", classname: "bench.Cases", testcase: name)))
        }
        var started = [UInt64](repeating: 0, count: count)
        if let interval {
            let clock = ContinuousClock()
            let start = clock.now
            for seq in 0..<count {
                try await clock.sleep(until: start + interval * seq)
                started[seq] = cta_baseline_now_ns()
                try await stored(try await store.storeCoordinatorResults([records[seq]]))
            }
        } else {
            var first = 0
            while first < count {
                let end = min(count, first + Self.batch)
                let at = cta_baseline_now_ns()
                for seq in first..<end { started[seq] = at }
                try await stored(try await store.storeCoordinatorResults(Array(records[first..<end])))
                first = end
            }
        }
        return started
    }

    private func stored(_ writes: [StoreWrite]) async throws {
        guard writes.allSatisfy({ $0 == .stored }) else { throw ValidationError("a result was not stored: \(writes)") }
    }

    static func delivery(written: [UInt64], receipts: [[UInt64]]) -> Delivery {
        var latencies: [Double] = []
        latencies.reserveCapacity(receipts.count * written.count)
        var last: UInt64 = 0
        for subscriber in receipts {
            for (seq, at) in subscriber.enumerated() {
                latencies.append(Double(at &- written[seq]) / 1e6)
                last = max(last, at)
            }
        }
        let first = written.min() ?? 0
        let seconds = Double(last - first) / 1e9
        return Delivery(
            rate: Double(latencies.count) / seconds, p50: Figure.percentile(50, latencies),
            p99: Figure.percentile(99, latencies))
    }

    // MARK: REST

    func rest(port: Int, connections: Int, seconds: Double, rounds: Int) async throws -> Figure {
        let record = try await store.requestExecution(of: try tokens.scenario, requestedBy: "cta-bench/rest")
        let id = record._id
        let viewer = try tokens.viewer
        var cta: [Double] = []
        var raw: [Double] = []
        // Every answer must be the execution, as the viewer may see it.
        try await HTTPLoad.withConnection(port: port) { connection in
            let (status, text) = try await connection.send(.GET, "/v1/executions/\(id)", token: viewer, body: nil)
            guard status == 200, text.contains("\"id\":\"\(id)\"") else {
                throw ValidationError("GET /v1/executions/\(id): \(status) \(text)")
            }
        }
        for _ in 0..<rounds {
            cta.append(
                try await HTTPLoad.rate(
                    port: port, connections: connections, seconds: seconds, target: "/v1/executions/\(id)",
                    token: viewer))
            raw.append(try await rawReads(id: id, threads: connections, seconds: seconds))
        }
        var figure = Figure(
            bench: "api", figure: "rest_get_execution", unit: "req/s", samples: cta, baselineSamples: raw,
            baselineName: "libmongoc find by _id of the same document, \(connections) threads, a client each",
            operations: 0)
        figure.operations = Int(figure.value * seconds)
        figure.note = """
            GET /v1/executions/{id} with a viewer's token over \(connections) keep-alive HTTP/1.1 connections (plain \
            HTTP, client and server in one process), each request after the previous answer, for \(seconds) s a \
            round. Each request reads the token, its user, the execution and its scenario's owners (four database \
            reads) and answers JSON; the baseline makes one read. \(Self.historyNote) operations: the requests of a \
            median round.
            """
        return figure
    }

    static let historyNote = "The executions collection holds the stored history too."

    private func rawReads(id: String, threads: Int, seconds: Double) async throws -> Double {
        let uri = self.uri
        let databaseName = self.databaseName
        let milliseconds = Int32(seconds * 1000)
        return try await onOwnThread { () -> Result<Double, ValidationError> in
            let message = CError()
            let rate = cta_mongo_baseline_find_by_id(
                uri, databaseName, "executions", id, Int32(threads), milliseconds, message.buffer, message.size)
            guard rate > 0 else { return .failure(ValidationError("libmongoc find: \(message.text)")) }
            return .success(rate)
        }.get()
    }
}

/// A raw change-stream set, handed between threads (it is only used by one at a time).
private struct Watchers: @unchecked Sendable {
    let set: OpaquePointer
}

/// A buffer for a C function's error message.
private final class CError {
    let size = 512
    let buffer: UnsafeMutablePointer<CChar>

    init() {
        buffer = .allocate(capacity: size)
        buffer.initialize(repeating: 0, count: size)
    }

    deinit { buffer.deallocate() }

    var text: String { String(cString: buffer) }
}

/// Waits until `count` parties have arrived.
private final class Countdown: Sendable {
    private let state: Mutex<(remaining: Int, failure: String?, waiter: CheckedContinuation<Void, Never>?)>

    init(_ count: Int) { state = Mutex((count, nil, nil)) }

    func arrive() { resume { $0.remaining -= 1 } }

    func fail(_ reason: String) { resume { if $0.failure == nil { $0.failure = reason } } }

    private func resume(_ change: (inout (remaining: Int, failure: String?, waiter: CheckedContinuation<Void, Never>?)) -> Void) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            change(&state)
            guard state.remaining <= 0 || state.failure != nil, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(timeout: Duration, what: String) async throws {
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.fail("timed out after \(timeout) waiting for \(what)")
        }
        defer { timer.cancel() }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.remaining <= 0 || state.failure != nil { return true }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
        if let failure = state.withLock({ $0.failure }) { throw ValidationError(failure) }
    }
}

/// One live-feed subscriber of the bench.
private enum LiveSubscriber {
    /// Subscribes to `execution`, arrives at `ready` once the execution's own event came (the subscription has
    /// caught up), and returns when each of results `0 ..< expected` arrived, by seq.
    static func follow(url: String, execution: String, expected: Int, ready: Countdown) async throws -> [UInt64] {
        let receipts = Mutex<[UInt64]>([])
        let failure = Mutex<String?>(nil)
        let prefix = Array("\"eventId\":\"\(execution)/".utf8)
        var logger = Logger(label: "cta.bench.subscriber")
        logger.logLevel = .error
        try await WebSocketClient.connect(url: url, logger: logger) { inbound, outbound, _ in
            var got = [UInt64](repeating: 0, count: expected)
            var count = 0
            var caughtUp = false
            try await outbound.write(.text("{\"op\":\"subscribe\",\"id\":\"b\",\"execution\":\"\(execution)\"}"))
            for try await message in inbound.messages(maxSize: 1 << 20) {
                let at = cta_baseline_now_ns()
                guard case .text(let text) = message else { continue }
                if let seq = seq(in: text, after: prefix) {
                    guard seq < expected, got[seq] == 0 else {
                        failure.withLock { $0 = "result \(seq) delivered twice or out of range" }
                        break
                    }
                    got[seq] = at
                    count += 1
                    if count == expected { break }
                } else if text.contains("\"type\":\"error\"") || text.contains("\"type\":\"end\"") {
                    failure.withLock { $0 = "subscriber got \(text.prefix(300))" }
                    break
                } else if !caughtUp && text.contains("\"type\":\"execution\"") {
                    caughtUp = true
                    ready.arrive()
                }
            }
            receipts.withLock { $0 = got }
        }
        if let failure = failure.withLock({ $0 }) {
            ready.fail(failure)
            throw ValidationError(failure)
        }
        let got = receipts.withLock { $0 }
        guard got.count == expected, !got.contains(0) else {
            ready.fail("a subscriber's connection ended early")
            throw ValidationError("a subscriber got \(got.filter { $0 != 0 }.count) of \(expected) results")
        }
        return got
    }

    /// The seq of a result frame: the digits after `prefix` (`"eventId":"<execution>/`).
    static func seq(in text: String, after prefix: [UInt8]) -> Int? {
        var utf8 = text.utf8[...]
        guard let start = utf8.firstRange(of: prefix)?.upperBound else { return nil }
        utf8 = utf8[start...]
        var value = 0
        var digits = 0
        for byte in utf8 {
            guard byte >= 0x30, byte <= 0x39 else { break }
            value = value * 10 + Int(byte - 0x30)
            digits += 1
        }
        return digits > 0 ? value : nil
    }
}

/// Keep-alive HTTP/1.1 clients for the REST figures.
private enum HTTPLoad {
    /// One connection to `127.0.0.1:port`, open for the length of `body`.
    static func withConnection<T: Sendable>(port: Int, _ body: (inout Exchange) async throws -> T) async throws -> T {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            var exchange = Exchange(responses: inbound.makeAsyncIterator(), requests: outbound, port: port)
            return try await body(&exchange)
        }
    }

    struct Exchange {
        var responses: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
        let requests: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
        let port: Int

        /// One request and its whole answer: status and body text.
        mutating func send(_ method: HTTPMethod, _ target: String, token: String, body: [UInt8]?) async throws
            -> (Int, String)
        {
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: target)
            head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
            head.headers.add(name: "Authorization", value: "Bearer \(token)")
            if let body {
                head.headers.add(name: "Content-Type", value: "application/json")
                head.headers.add(name: "Content-Length", value: "\(body.count)")
            }
            try await requests.write(.head(head))
            if let body { try await requests.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
            try await requests.write(.end(nil))
            var status = 0
            var text = ByteBuffer()
            while let part = try await responses.next() {
                switch part {
                case .head(let response): status = Int(response.status.code)
                case .body(var bytes): text.writeBuffer(&bytes)
                case .end: return (status, String(buffer: text))
                }
            }
            throw ValidationError("the server closed the connection")
        }
    }

    /// Requests per second: `connections` connections each sending `GET target` after the previous answer,
    /// for `seconds` once all are connected. Anything but 200 fails the round.
    static func rate(port: Int, connections: Int, seconds: Double, target: String, token: String) async throws -> Double {
        let connected = Countdown(connections)
        let start = Gate()
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    try await withConnection(port: port) { connection in
                        connected.arrive()
                        let end = await start.wait()
                        var done = 0
                        while ContinuousClock.now < end {
                            let (status, text) = try await connection.send(.GET, target, token: token, body: nil)
                            guard status == 200 else { throw ValidationError("GET \(target): \(status) \(text)") }
                            done += 1
                        }
                        return done
                    }
                }
            }
            try await connected.wait(timeout: .seconds(30), what: "connections")
            let began = ContinuousClock.now
            start.open(began + .milliseconds(Int(seconds * 1000)))
            var total = 0
            for try await done in group { total += done }
            return Double(total) / (ContinuousClock.now - began).timeInterval
        }
    }
}

/// Holds waiters until opened, then hands each the deadline it was opened with.
private final class Gate: Sendable {
    private let state = Mutex<(deadline: ContinuousClock.Instant?, waiters: [CheckedContinuation<ContinuousClock.Instant, Never>])>(
        (nil, []))

    func wait() async -> ContinuousClock.Instant {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> ContinuousClock.Instant? in
                if let deadline = state.deadline { return deadline }
                state.waiters.append(continuation)
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    func open(_ deadline: ContinuousClock.Instant) {
        let waiters = state.withLock { state in
            state.deadline = deadline
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: deadline) }
    }
}
