import ArgumentParser
import CBaseline
import CTABroker
import CTACoordinator
import CTACore
import CTAMessaging
import CTAMongo
import Foundation
import Logging
import Synchronization
import CTADefinitions

/// `cta-bench consumer`: an in-process coordinator against the real broker and database.
///
/// - `results_stored`: how many `test.result` events per second the coordinator stores when its queue holds a
///   backlog, next to raw libmongoc writing the same documents into an identically indexed collection.
/// - `results_stored_live`: the same while the events are being published (publisher, broker, coordinator and
///   database share the machine), with the publish rate beside it.
/// - `trigger_to_running`: from requesting an execution to its `running` state being stored, with one simulated
///   agent that acknowledges and starts every dispatch at once; with and without waking the composer.
struct ConsumerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consumer",
        abstract: "The coordinator's result store rate next to raw libmongoc, and its trigger-to-running latency.",
        discussion: """
            Runs a coordinator in this process against the broker virtual host given: it purges and consumes the \
            coordinator's queues there, so give it a virtual host of its own. Every round uses a database of its \
            own (cta_bench_<random>), dropped at the end. Prints one JSON line per figure.
            """
    )

    @Option(help: "Broker URL of a virtual host for the bench alone (default: $CTA_AMQP_BENCH_URL).")
    var url: String?

    @Option(help: "MongoDB connection string (default: $CTA_MONGO_URI). SecantusDB needs retryWrites=false.")
    var uri: String?

    @Option(help: "Result events per round.")
    var results = 20_000

    @Option(help: "Rounds per side for the store rates; the median is reported.")
    var rounds = 3

    @Option(help: "Executions measured per latency mode.")
    var samples = 200

    @Option(help: "Ended executions stored before the latency is measured, as a database in use holds.")
    var history = 2000

    @Option(help: "Only these parts (comma-separated: results,latency).")
    var only: String?

    func validate() throws {
        guard results > 0, rounds > 0, samples > 0 else {
            throw ValidationError("--results, --rounds and --samples must be positive")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = url ?? environment["CTA_AMQP_BENCH_URL"] else {
            throw ValidationError(
                "no broker: pass --url or set CTA_AMQP_BENCH_URL (a virtual host for the bench alone)")
        }
        guard let uri = uri ?? environment["CTA_MONGO_URI"] else {
            throw ValidationError("no database: pass --uri or set CTA_MONGO_URI")
        }
        let parts = Set((only ?? "results,latency").split(separator: ",").map(String.init))
        var logger = Logger(label: "cta.bench.consumer")
        logger.logLevel = .warning
        let bench = try ConsumerBenchRun(url: url, uri: uri, logger: logger)
        try await bench.start()
        do {
            if parts.contains("results") {
                for figure in try await bench.storeRates(count: results, rounds: rounds) { figure.printLine() }
            }
            if parts.contains("latency") {
                for figure in try await bench.latency(samples: samples, history: history) { figure.printLine() }
            }
        } catch {
            await bench.stop()
            throw error
        }
        await bench.stop()
    }
}

/// The state one `cta-bench consumer` run shares between its parts: the bench's own broker connection and
/// database client (the coordinator under test gets its own of each), and the databases to drop at the end.
private final class ConsumerBenchRun: Sendable {
    let url: String
    let uri: String
    let logger: Logger
    let broker: AMQPConnection
    let client: MongoClient
    private let databases = Mutex<[String]>([])

    /// The batch the coordinator writes at most (its results prefetch), also the baseline's batch.
    static let batch = Coordinator.Settings(instance: "cta-bench").resultBatch

    init(url: String, uri: String, logger: Logger) throws {
        self.url = url
        self.uri = uri
        self.logger = logger
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "cta-bench-consumer"
        broker = AMQPConnection(configuration: configuration, logger: logger)
        client = try MongoClient(configuration: .init(uri: uri, appName: "cta-bench"), logger: logger)
    }

    func start() async throws {
        try await broker.connect()
        try await client.ping()
        try await broker.declareTopology(queues: Topology.coordinatorQueues, bindings: Topology.coordinatorBindings)
    }

    func stop() async {
        for name in databases.withLock({ $0 }) { try? await client.database(name).drop() }
        await broker.close()
        try? await client.shutdown()
    }

    /// A new database name, dropped at the end of the run (and by the caller as soon as it is done with it).
    func newDatabase() -> String {
        let name = "cta_bench_" + UUID().uuidString.prefix(8).lowercased()
        databases.withLock { $0.append(name) }
        return name
    }

    func drop(_ name: String) async throws {
        try await client.database(name).drop()
        databases.withLock { $0.removeAll { $0 == name } }
    }

    /// Empties the coordinator's queues of anything an earlier run left.
    func purgeCoordinatorQueues() async throws {
        for queue in Topology.coordinatorQueues where queue.name != Topology.deadLetterQueue {
            try await broker.purgeQueue(queue.name)
        }
    }

    /// A coordinator on `database` with a database client and broker connection of its own, running in a task.
    func startCoordinator(
        database: String, settings: Coordinator.Settings = Coordinator.Settings(instance: "cta-bench")
    ) throws -> RunningCoordinator {
        // Errors only: a coordinator that is cancelled mid-sweep says so at warning level, which is noise here.
        var coordinatorLogger = Logger(label: "cta.bench.coordinator")
        coordinatorLogger.logLevel = .error
        let coordinatorClient = try MongoClient(uri: uri, logger: coordinatorLogger)
        let coordinator = Coordinator(
            store: MongoStore(database: coordinatorClient.database(database)), broker: try AMQPConfiguration(url: url),
            settings: settings, logger: coordinatorLogger)
        let task = Task { try await coordinator.run() }
        return RunningCoordinator(coordinator: coordinator, client: coordinatorClient, task: task)
    }

    /// Waits until `queue` has a consumer; returns when it was seen (polled every millisecond).
    func waitForConsumer(on queue: String, timeout: Duration = .seconds(60)) async throws -> ContinuousClock.Instant {
        let deadline = ContinuousClock.now + timeout
        while true {
            if try await broker.queueState(queue).consumerCount > 0 { return .now }
            guard ContinuousClock.now < deadline else {
                throw ValidationError("the coordinator did not start consuming \(queue)")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    // MARK: Result store rate

    /// Alternating rounds: coordinator (a backlog, then live publishing), then libmongoc writing copies of a
    /// document the coordinator stored.
    func storeRates(count: Int, rounds: Int) async throws -> [Figure] {
        var backlog: [Double] = []
        var live: [Double] = []
        var publish: [Double] = []
        var raw: [Double] = []
        var batchSizes: [Double] = []
        var sizes = (envelope: 0, document: 0)
        for _ in 0..<rounds {
            let round = try await coordinatorRound(count: count)
            backlog.append(round.backlogRate)
            live.append(round.liveRate)
            publish.append(round.livePublishRate)
            batchSizes.append(round.meanBatch)
            sizes = (round.envelopeBytes, round.template.count)
            raw.append(try await baselineRound(count: count, template: round.template))
        }
        let baselineName = "libmongoc insert_many, unordered, \(Self.batch) per call, same documents and indexes"
        let sizeNote = "test.result envelopes of \(sizes.envelope) bytes stored as \(sizes.document)-byte documents"
        var stored = Figure(
            bench: "consumer", figure: "results_stored", unit: "docs/s", samples: backlog, baselineSamples: raw,
            baselineName: baselineName, operations: count)
        stored.note = """
            \(count) \(sizeNote) are queued before the coordinator starts; the clock starts when its results consumer \
            appears on the queue (so connecting and creating indexes are not timed) and stops when all are in the \
            results collection (the database is queried only once the queue has no message ready, every 5 ms, so \
            the polling does not compete with the writes measured). Every event is decoded, written in the \
            coordinator's batches and acked after the write. Mean batch written: \
            \(Figure.rounded(Figure.median(batchSizes), 1)) (at most \(Self.batch)). The baseline writes copies of one \
            stored document (new _id and seq each) into a collection with the coordinator's indexes, from one thread.
            """
        var storedLive = Figure(
            bench: "consumer", figure: "results_stored_live", unit: "docs/s", samples: live, baselineSamples: raw,
            baselineName: baselineName, operations: count)
        storedLive.note = """
            The same coordinator, idle and consuming, while the bench publishes \(count) more events as fast as the \
            broker confirms them: from the first publish to the last stored. Publisher, broker, coordinator and \
            database share the machine's cores; compare with results_published_live to see which side limited it.
            """
        var published = Figure(
            bench: "consumer", figure: "results_published_live", unit: "msg/s", samples: publish, baselineSamples: nil,
            baselineName: nil, operations: count)
        published.note = """
            The publish rate (confirms, \(broker.configuration.maxUnconfirmed) in flight) during results_stored_live. \
            When it is close to results_stored_live, the broker side was the bottleneck; when well above, the store.
            """
        return [stored, storedLive, published]
    }

    struct CoordinatorRound {
        var backlogRate: Double
        var liveRate: Double
        var livePublishRate: Double
        var meanBatch: Double
        var envelopeBytes: Int
        var template: [UInt8]
    }

    private func coordinatorRound(count: Int) async throws -> CoordinatorRound {
        let databaseName = newDatabase()
        try await purgeCoordinatorQueues()
        let events = ResultEvents(machine: MachineName(unchecked: "bench-1"))

        // Backlog: queue every event first, then start the coordinator.
        let first = try events.messages(count: count)
        try await publishAll(first.messages)
        let queued = try await broker.queueState(Topology.resultsQueue).messageCount
        guard queued == UInt32(count) else { throw ValidationError("\(queued) of \(count) events queued") }
        let running = try startCoordinator(database: databaseName)
        let results = client.database(databaseName).collection("results")
        do {
            let start = try await waitForConsumer(on: Topology.resultsQueue)
            let end = try await waitForStored(results, lastID: first.lastID, count: count)
            let backlogRate = Double(count) / (end - start).timeInterval
            let batches = try await results.aggregate([["$group": ["_id": "$receivedAt"]], ["$count": "n"]])
            let meanBatch = Double(count) / Double(max(1, batches.first?["n"]?.intValue ?? 1))
            guard let stored = try await results.findOne() else { throw ValidationError("no stored result to copy") }
            // Live: the coordinator is idle and consuming; publish as fast as the broker confirms.
            let second = try events.messages(count: count)
            let liveStart = ContinuousClock.now
            try await publishAll(second.messages)
            let published = ContinuousClock.now
            let liveEnd = try await waitForStored(results, lastID: second.lastID, count: 2 * count)
            let round = CoordinatorRound(
                backlogRate: backlogRate, liveRate: Double(count) / (liveEnd - liveStart).timeInterval,
                livePublishRate: Double(count) / (published - liveStart).timeInterval, meanBatch: meanBatch,
                envelopeBytes: first.messages[0].body.count, template: stored.bsonBytes)
            await running.stop()
            try await drop(databaseName)
            return round
        } catch {
            await running.stop()
            throw error
        }
    }

    /// Raw libmongoc writing `count` copies of `template` into the `results` collection of a new database that
    /// the coordinator's store prepared (so it has the same indexes).
    private func baselineRound(count: Int, template: [UInt8]) async throws -> Double {
        let databaseName = newDatabase()
        try await MongoStore(database: client.database(databaseName)).prepare()
        let uri = self.uri
        let batch = Self.batch
        let (seconds, message) = await onOwnThread { () -> (Double, String) in
            let size = 512
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            buffer.initialize(repeating: 0, count: size)
            defer { buffer.deallocate() }
            let seconds = template.withUnsafeBufferPointer { bytes in
                cta_mongo_baseline_insert_copies(
                    uri, databaseName, "results", bytes.baseAddress, bytes.count, 1, Int32(count), Int32(batch), buffer,
                    size)
            }
            return (seconds, String(cString: buffer))
        }
        guard seconds > 0 else { throw ValidationError("libmongoc insert_many failed: \(message)") }
        let stored = try await client.database(databaseName).collection("results").count()
        guard stored == count else { throw ValidationError("libmongoc stored \(stored) of \(count) documents") }
        try await drop(databaseName)
        return Double(count) / seconds
    }

    private func publishAll(_ messages: [OutgoingMessage]) async throws {
        let outcomes = await broker.publish(contentsOf: messages)
        for outcome in outcomes { try outcome.get() }
    }

    /// Waits until every event is stored and returns when that was first seen. The database is not polled while
    /// the results queue still has messages ready (queries would compete with the writes being measured): first
    /// the broker's queue, every 5 ms, then the last event (`lastID`) by `_id`, every 5 ms, then the count.
    private func waitForStored(_ results: MongoCollection<BSONDocument>, lastID: String, count: Int) async throws
        -> ContinuousClock.Instant
    {
        let deadline = ContinuousClock.now + .seconds(600)
        func check() throws {
            guard ContinuousClock.now < deadline else { throw ValidationError("not every event was stored in 600 s") }
        }
        while try await broker.queueState(Topology.resultsQueue).messageCount > 0 {
            try check()
            try await Task.sleep(for: .milliseconds(5))
        }
        var seen: ContinuousClock.Instant
        while true {
            let found = try await results.findOne(["_id": .string(lastID)], projection: .including("_id"))
            seen = .now
            if found != nil { break }
            try check()
            try await Task.sleep(for: .milliseconds(5))
        }
        while try await results.count() < count {
            try check()
            try await Task.sleep(for: .milliseconds(5))
            seen = .now
        }
        return seen
    }
}

// MARK: Trigger to running

extension ConsumerBenchRun {
    /// One execution's way from the request to its stored `running` state, in milliseconds from the request.
    struct Sample {
        var requested: Double
        var delivered: Double
        var dispatched: Double
        var statesConfirmed: Double
        var ackedReceived: Double
        var started: Double
        var runningReceived: Double
        var runningStored: Double
    }

    /// Alternates executions requested without waking the composer (a request from another process: the
    /// composer finds it at its next look) and with `wakeComposer()` (a request inside the coordinator's process),
    /// `samples` of each, after a few unmeasured ones.
    func latency(samples: Int, history: Int) async throws -> [Figure] {
        let databaseName = newDatabase()
        try await purgeCoordinatorQueues()
        let store = MongoStore(database: client.database(databaseName))
        let machine = MachineName(unchecked: "bench-agent")
        let scenario = try await defineScenario(in: store, machine: machine)
        try await store.storeHistory(history, of: scenario)
        let settings = Coordinator.Settings(instance: "cta-bench")
        let running = try startCoordinator(database: databaseName, settings: settings)
        let agent = try SimulatedAgent(machine: machine, url: url, logger: logger)
        let watcher = StoredStates()
        var watching: Task<Void, Never>?
        do {
            _ = try await waitForConsumer(on: Topology.statesQueue)
            try await agent.start()
            try await waitForMachine(machine, in: store)
            let stream = try await store.statesCollection.watch([
                ["$match": ["operationType": "insert", "fullDocument.change.state": "running"]]
            ])
            watching = Task {
                do {
                    for try await event in stream {
                        if let record = event.fullDocument { watcher.stored(record.executionID, at: Date()) }
                    }
                } catch {}
            }
            let warmUp = 5
            var polled: [Sample] = []
            var woken: [Sample] = []
            for index in 0..<(warmUp + 2 * samples) {
                // Requests fall at random points of the composer's interval.
                try await Task.sleep(for: .microseconds(Int.random(in: 0..<25_000)))
                let wake = index % 2 == 1
                let sample = try await measureOnce(
                    scenario, store: store, coordinator: running.coordinator, agent: agent, watcher: watcher, wake: wake
                )
                guard index >= warmUp else { continue }
                if wake { woken.append(sample) } else { polled.append(sample) }
            }
            await stream.close()
            watching?.cancel()
            await agent.stop()
            await running.stop()
            try await drop(databaseName)
            let interval = Int(
                settings.composerInterval.components.seconds * 1000
                    + settings.composerInterval.components.attoseconds / 1_000_000_000_000_000)
            return latencyFigures(
                "trigger_to_running", polled,
                note: """
                    From just before MongoStore.requestExecution to the moment the execution's running state is \
                    stored (seen on a change stream of the states collection), with one simulated agent that \
                    publishes acked and running as soon as the dispatch arrives. Nothing wakes the composer: it \
                    finds the execution at its next look (every \(interval) ms), as for a request made by another \
                    process. Target: p99 under 50 ms on loopback.
                    """)
                + latencyFigures(
                    "trigger_to_running_woken", woken,
                    note: """
                        As trigger_to_running, but the request is handed to the composer (Coordinator.wakeComposer(with:)) as soon as requestExecution \
                        returns, as a request made inside the coordinator's process would. Target: p99 under 50 ms.
                        """)
        } catch {
            watching?.cancel()
            await agent.stop()
            await running.stop()
            throw error
        }
    }

    private func measureOnce(
        _ scenario: ScenarioID, store: MongoStore, coordinator: Coordinator, agent: SimulatedAgent,
        watcher: StoredStates, wake: Bool
    ) async throws -> Sample {
        let start = Date()
        let record = try await store.requestExecution(of: scenario, requestedBy: "cta-bench")
        let requested = Date()
        if wake { coordinator.wakeComposer(with: record) }
        let execution = record.executionID
        let stored = try await watcher.wait(for: record._id, timeout: .seconds(30))
        try await agent.finish(execution)
        let ended = try await waitForEnd(execution, in: store)
        let states = try await store.states(execution)
        guard let part = agent.part(execution), let confirmed = part.statesConfirmed,
            let acked = states.first(where: { $0.change.state == .acked }),
            let runningState = states.first(where: { $0.change.state == .running }),
            let dispatched = ended.dispatchedAt, let started = ended.startedAt
        else { throw ValidationError("execution \(execution) lacks a milestone") }
        func ms(_ date: Date) -> Double { date.timeIntervalSince(start) * 1000 }
        return Sample(
            requested: ms(requested), delivered: ms(part.delivered), dispatched: ms(dispatched),
            statesConfirmed: ms(confirmed), ackedReceived: ms(acked.receivedAt), started: ms(started),
            runningReceived: ms(runningState.receivedAt), runningStored: ms(stored))
    }

    private func latencyFigures(_ name: String, _ samples: [Sample], note: String) -> [Figure] {
        func milestone(_ label: String, _ value: (Sample) -> Double) -> Figure.Milestone {
            let values = samples.map(value)
            return Figure.Milestone(
                name: label, p50Ms: Figure.rounded(Figure.percentile(50, values), 2),
                p99Ms: Figure.rounded(Figure.percentile(99, values), 2))
        }
        let totals = samples.map(\.runningStored)
        var p50 = Figure(
            bench: "consumer", figure: name + "_p50", unit: "ms",
            samples: [Figure.rounded(Figure.percentile(50, totals), 2)],
            baselineSamples: nil, baselineName: nil, operations: samples.count)
        p50.note = note + " " + """
            Breakdown: milestones from the request; those the coordinator stamps (dispatched, acked received, \
            started, running received) are stored with millisecond precision. The execution's phase becomes running \
            (startedAt) when acked is handled. Running received is stamped just before the state is written, a \
            lower bound for running stored; the change stream may report the write a few ms late when the \
            database is busy with the coordinator's next writes.
            """
        p50.breakdown = [
            milestone("request returned (requestExecution: 4 reads, 1 insert)", \.requested),
            milestone("dispatch delivered to the agent", \.delivered),
            milestone("dispatchedAt (composer: publish confirmed)", \.dispatched),
            milestone("acked+running confirmed to the agent", \.statesConfirmed),
            milestone("acked received by the coordinator", \.ackedReceived),
            milestone("startedAt (phase running, set on acked)", \.started),
            milestone("running received by the coordinator", \.runningReceived),
            milestone("running stored (seen on the change stream)", \.runningStored),
        ]
        var p99 = Figure(
            bench: "consumer", figure: name + "_p99", unit: "ms",
            samples: [Figure.rounded(Figure.percentile(99, totals), 2)],
            baselineSamples: nil, baselineName: nil, operations: samples.count)
        p99.note = note
        return [p50, p99]
    }

    private func defineScenario(in store: MongoStore, machine: MachineName) async throws -> ScenarioID {
        let test = TestDefinition(
            id: TestID(unchecked: "bench-test"), name: "Bench test", stages: [Stage(name: "run", run: "true")])
        let suite = SuiteDefinition(id: SuiteID(unchecked: "bench-suite"), name: "Bench suite", tests: [test.id])
        let configuration = ConfigurationDefinition(
            id: ConfigurationID(unchecked: "bench-configuration"), name: "Bench machine",
            selector: MachineSelector(machines: [machine]))
        let scenario = ScenarioDefinition(
            id: ScenarioID(unchecked: "bench-scenario"), name: "Bench scenario", suite: suite.id,
            configuration: configuration.id, runMode: .mono)
        try await store.prepare()
        try await store.save(
            DefinitionSet(
                tests: [test.id: test], suites: [suite.id: suite], configurations: [configuration.id: configuration],
                scenarios: [scenario.id: scenario]))
        return scenario.id
    }

    private func waitForMachine(_ machine: MachineName, in store: MongoStore) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while try await store.machine(machine)?.isOnline(at: Date()) != true {
            guard ContinuousClock.now < deadline else { throw ValidationError("the simulated agent did not register") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    private func waitForEnd(_ execution: ExecutionID, in store: MongoStore) async throws -> ExecutionRecord {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            if let record = try await store.execution(execution), record.phase.isEnd { return record }
            guard ContinuousClock.now < deadline else { throw ValidationError("execution \(execution) did not end") }
            try await Task.sleep(for: .milliseconds(2))
        }
    }
}

/// When the `running` state of each execution was seen stored.
private final class StoredStates: Sendable {
    private let seen = Mutex<[String: Date]>([:])

    func stored(_ execution: String, at date: Date) {
        seen.withLock { $0[execution] = $0[execution] ?? date }
    }

    /// When `execution`'s state was seen (the time noted on arrival, not when this returns).
    func wait(for execution: String, timeout: Duration) async throws -> Date {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let date = seen.withLock({ $0.removeValue(forKey: execution) }) { return date }
            guard ContinuousClock.now < deadline else { throw ValidationError("execution \(execution) never ran") }
            try await Task.sleep(for: .microseconds(500))
        }
    }
}

/// A coordinator running in a task of the bench, with the database client it owns.
private struct RunningCoordinator: Sendable {
    let coordinator: Coordinator
    let client: MongoClient
    let task: Task<Void, any Error>

    /// Cancels it (it finishes the batch it is writing) and closes its client.
    func stop() async {
        task.cancel()
        _ = try? await task.value
        try? await client.shutdown()
    }
}

/// `test.result` events of one agent sequence and one execution, as an agent emits them for a JUnit report.
private final class ResultEvents: Sendable {
    let machine: MachineName
    let execution = ExecutionID()
    let epoch = SequenceEpoch()
    private let nextSeq = Mutex<UInt64>(1)

    init(machine: MachineName) { self.machine = machine }

    /// The next `count` events of the sequence, encoded, and the id of the last one.
    func messages(count: Int) throws -> (messages: [OutgoingMessage], lastID: String) {
        let first = nextSeq.withLock { seq -> UInt64 in
            defer { seq += UInt64(count) }
            return seq
        }
        var messages: [OutgoingMessage] = []
        messages.reserveCapacity(count)
        var lastID = ""
        let now = Timestamp.now()
        for seq in first..<first + UInt64(count) {
            let name = "case-" + String(format: "%07llu", seq)
            let result = TestResult(
                executionID: execution, machine: machine, testID: TestID(unchecked: "bench-suite"), name: name,
                status: .ok, startedAt: now, finishedAt: now, durationMs: Milliseconds(3),
                origin: .junit(
                    stage: "run", file: "results.xml", suite: "bench", classname: "bench.Cases", testcase: name))
            let envelope = Envelope(source: .agent(machine), time: now, epoch: epoch, seq: seq, payload: result)
            messages.append(
                try OutgoingMessage.envelope(
                    envelope, exchange: Topology.eventsExchange, routingKey: Topology.routingKey(for: .testResult)))
            lastID = envelope.id.description
        }
        return (messages, lastID)
    }
}
