public import CTACore
public import CTAMongo
public import Foundation
public import Logging
public import CTADefinitions

/// The coordinator's store on MongoDB.
///
/// Collections: `tests`, `suites`, `configurations`, `scenarios` (definitions, `_id` = their id), `machines`
/// (`_id` = machine name), `executions` (`_id` = execution id), `parts` (one machine's share of an execution),
/// `results`, `states`, `logs`, `agentEvents` (`_id` = event id; a unique `(epoch, seq)` index on each proves an
/// agent never sent two events under one number), `rejections`, `testStats`, `webhookDeliveries`
/// (MongoStore+Webhooks.swift), `meta` (the schema version).
public struct MongoStore: Store {
    /// The schema version this code writes. A database with a newer one is refused at start.
    public static let schemaVersion = 1

    public let database: MongoDatabase
    let logger: Logger

    public init(database: MongoDatabase, logger: Logger = Logger(label: "cta.store")) {
        self.database = database
        self.logger = logger
    }

    /// The documents matching `filter`, decoded one by one: a document that does not decode (written by a newer
    /// version, or edited by hand) is reported in the log and skipped, instead of failing the whole read.
    func findDecodable<T: Codable & Sendable>(
        _ collection: MongoCollection<T>, _ filter: BSONDocument, sort: BSONDocument? = nil, limit: Int? = nil
    ) async throws -> [T] {
        let raw = try await collection.find(filter, sort: sort, limit: limit, as: BSONDocument.self)
        var decoded: [T] = []
        decoded.reserveCapacity(raw.count)
        let decoder = BSONDecoder()
        for document in raw {
            do {
                decoded.append(try decoder.decode(T.self, from: document))
            } catch {
                logger.error(
                    "a stored document does not decode; skipped",
                    metadata: [
                        "cta.collection": "\(collection.name)", "cta.id": "\(document["_id"].map { "\($0)" } ?? "-")",
                        "cta.error": "\(error)",
                    ])
            }
        }
        return decoded
    }

    struct DefinitionDocument<Definition: Codable & Sendable>: Codable, Sendable {
        var _id: String
        var definition: Definition
        var updatedAt: Date
    }

    struct TestStats: Codable, Sendable {
        var _id: String
        var meanDurationMs: Int64
        var runs: Int64
        var lastDurationMs: Int64
        var updatedAt: Date
    }

    struct Meta: Codable, Sendable {
        var _id: String
        var schemaVersion: Int
    }

    var tests: MongoCollection<DefinitionDocument<TestDefinition>> { database.collection("tests", as: DefinitionDocument<TestDefinition>.self) }
    var suites: MongoCollection<DefinitionDocument<SuiteDefinition>> { database.collection("suites", as: DefinitionDocument<SuiteDefinition>.self) }
    var configurations: MongoCollection<DefinitionDocument<ConfigurationDefinition>> {
        database.collection("configurations", as: DefinitionDocument<ConfigurationDefinition>.self)
    }
    var scenarios: MongoCollection<DefinitionDocument<ScenarioDefinition>> {
        database.collection("scenarios", as: DefinitionDocument<ScenarioDefinition>.self)
    }
    public var machinesCollection: MongoCollection<MachineRecord> { database.collection("machines", as: MachineRecord.self) }
    public var executionsCollection: MongoCollection<ExecutionRecord> {
        database.collection("executions", as: ExecutionRecord.self)
    }
    public var partsCollection: MongoCollection<PartRecord> { database.collection("parts", as: PartRecord.self) }
    public var resultsCollection: MongoCollection<ResultRecord> { database.collection("results", as: ResultRecord.self) }
    public var statesCollection: MongoCollection<StateRecord> { database.collection("states", as: StateRecord.self) }
    public var logsCollection: MongoCollection<LogRecord> { database.collection("logs", as: LogRecord.self) }
    var agentEvents: MongoCollection<AgentEventRecord> { database.collection("agentEvents", as: AgentEventRecord.self) }
    public var rejectionsCollection: MongoCollection<RejectionRecord> {
        database.collection("rejections", as: RejectionRecord.self)
    }
    var testStats: MongoCollection<TestStats> { database.collection("testStats", as: TestStats.self) }
    var meta: MongoCollection<Meta> { database.collection("meta", as: Meta.self) }

    /// The collections whose documents carry an agent's `(epoch, seq)`.
    var sequencedCollections: [MongoCollection<BSONDocument>] {
        ["results", "states", "logs", "agentEvents", "rejections"].map { database.collection($0) }
    }

    // MARK: Setup

    public func prepare() async throws {
        if let found = try await meta.findOne(["_id": "schema"]), found.schemaVersion > Self.schemaVersion {
            throw StoreSchemaError(found: found.schemaVersion, supported: Self.schemaVersion)
        }
        _ = try await meta.updateOne(
            ["_id": "schema"], .setOnInsert(["schemaVersion": .int64(Int64(Self.schemaVersion))]), upsert: true)
        let sequence = IndexModel(keys: .ascending("epoch", "seq"), name: "epoch_seq", unique: true)
        try await resultsCollection.createIndexes([
            sequence, IndexModel(keys: .ascending("executionID", "machine"), name: "execution_machine"),
            IndexModel(keys: .ascending("executionID", "result.index"), name: "execution_index"),
        ])
        try await statesCollection.createIndexes([
            sequence, IndexModel(keys: .ascending("executionID"), name: "execution"),
        ])
        try await logsCollection.createIndexes([
            sequence, IndexModel(keys: .ascending("executionID", "log.testID", "seq"), name: "execution_test"),
        ])
        try await agentEvents.createIndexes([sequence])
        try await rejectionsCollection.createIndexes([
            IndexModel(keys: .ascending("epoch", "seq"), name: "epoch_seq"),
            IndexModel(keys: .ascending("rejectedAt"), name: "expiry", expireAfter: .seconds(30 * 86_400)),
        ])
        try await executionsCollection.createIndexes([
            IndexModel(keys: .ascending("phase", "nextAttemptAt"), name: "phase_due"),
            IndexModel(keys: ["scenario.id": 1, "createdAt": -1], name: "scenario_created"),
            IndexModel(keys: ["phase": 1, "createdAt": -1], name: "phase_created"),
        ])
        try await partsCollection.createIndexes([
            IndexModel(keys: .ascending("executionID"), name: "execution"),
            IndexModel(keys: .ascending("complete", "finalState"), name: "awaiting"),
        ])
        try await machinesCollection.createIndexes([
            IndexModel(keys: .ascending("groups"), name: "groups"),
            IndexModel(keys: .ascending("tagPairs"), name: "tags"),
            IndexModel(keys: .ascending("onlineUntil"), name: "online"),
        ])
        try await prepareWebhookDeliveries()
        try await prepareVMs()
    }

    // MARK: Definitions

    public func save(_ definitions: DefinitionSet) async throws {
        let now = Date()
        let encoder = BSONEncoder()
        // An update, not a replace: a definition keeps the owners the API gave it unless its file names owners.
        func write(_ collection: String, kind: String, id: String, _ definition: some Encodable) async throws {
            var fields: BSONDocument = ["definition": .document(try encoder.encode(definition)), "updatedAt": .date(now)]
            if let owners = definitions.owners["\(kind)/\(id)"] { fields["owners"] = .array(owners.map { .string($0) }) }
            _ = try await database.collection(collection).updateOne(["_id": .string(id)], .set(fields), upsert: true)
        }
        for test in definitions.tests.values { try await write("tests", kind: "test", id: test.id.rawValue, test) }
        for suite in definitions.suites.values { try await write("suites", kind: "suite", id: suite.id.rawValue, suite) }
        for configuration in definitions.configurations.values {
            try await write("configurations", kind: "configuration", id: configuration.id.rawValue, configuration)
        }
        for scenario in definitions.scenarios.values {
            try await write("scenarios", kind: "scenario", id: scenario.id.rawValue, scenario)
        }
    }

    public func scenario(_ id: ScenarioID) async throws -> ScenarioDefinition? {
        try await scenarios.findOne(["_id": .string(id.rawValue)])?.definition
    }

    public func suite(_ id: SuiteID) async throws -> SuiteDefinition? {
        try await suites.findOne(["_id": .string(id.rawValue)])?.definition
    }

    public func configuration(_ id: ConfigurationID) async throws -> ConfigurationDefinition? {
        try await configurations.findOne(["_id": .string(id.rawValue)])?.definition
    }

    public func tests(_ ids: [TestID]) async throws -> [TestID: TestDefinition] {
        guard !ids.isEmpty else { return [:] }
        let found = try await tests.find(["_id": ["$in": .array(ids.map { .string($0.rawValue) })]])
        return Dictionary(found.map { ($0.definition.id, $0.definition) }, uniquingKeysWith: { first, _ in first })
    }

    public func scheduledScenarios() async throws -> [ScenarioDefinition] {
        try await scenarios.find(["definition.schedule": ["$ne": .null]]).map(\.definition)
    }

    public func expectedDurations(_ ids: [TestID]) async throws -> [TestID: Int64] {
        guard !ids.isEmpty else { return [:] }
        let found = try await testStats.find(["_id": ["$in": .array(ids.map { .string($0.rawValue) })]])
        return Dictionary(
            found.map { (TestID(unchecked: $0._id), $0.meanDurationMs) }, uniquingKeysWith: { first, _ in first })
    }

    // MARK: Machines

    public func register(_ registration: AgentRegistration, envelope: Envelope, receivedAt: Date) async throws
        -> StoreWrite
    {
        let write = try await storeAgentEvent(envelope, machine: registration.machine, receivedAt: receivedAt)
        guard write == .stored else { return write }
        // Online for three heartbeat intervals: the interval it last announced, else the default 15 s.
        let known = try await machinesCollection.findOne(["_id": .string(registration.machine.rawValue)])
        let interval = 3 * Double(known?.heartbeatIntervalMs ?? 15_000) / 1000
        var fields: BSONDocument = [
            "hostname": .string(registration.hostname),
            "addresses": .array(registration.addresses.map { .string($0) }),
            "os": ["name": .string(registration.os.name), "version": .string(registration.os.version)],
            "arch": .string(registration.arch),
            "cpuCount": .int64(Int64(registration.cpuCount)),
            "memoryBytes": .int64(Int64(clamping: registration.memoryBytes)),
            "agentVersion": .string(registration.agentVersion),
            "tags": .document(BSONDocument(registration.tags.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
            "tagPairs": .array(registration.tags.map { .string("\($0.key)=\($0.value)") }.sorted { "\($0)" < "\($1)" }),
            "groups": .array(registration.groups.map { .string($0.rawValue) }),
            "maxConcurrentExecutions": .int64(Int64(registration.maxConcurrentExecutions)),
            "transport": .string(registration.transport.rawValue),
            "epoch": .string(envelope.epoch?.description ?? ""),
            "registeredAt": .date(receivedAt),
            "lastSeenAt": .date(receivedAt),
            "onlineUntil": .date(receivedAt.addingTimeInterval(interval)),
            "freeSlots": .int64(Int64(registration.maxConcurrentExecutions)),
            "running": [],
            "draining": false,
            "lastSeq": .int64(Int64(envelope.seq ?? 0)),
        ]
        fields["shutdownReason"] = .null
        _ = try await machinesCollection.updateOne(
            ["_id": .string(registration.machine.rawValue)], .set(fields), upsert: true)
        return write
    }

    public func shutdown(_ shutdown: AgentShutdown, envelope: Envelope, receivedAt: Date) async throws -> StoreWrite {
        let write = try await storeAgentEvent(envelope, machine: shutdown.machine, receivedAt: receivedAt)
        guard write == .stored else { return write }
        _ = try await machinesCollection.updateOne(
            ["_id": .string(shutdown.machine.rawValue)],
            .set([
                "onlineUntil": .date(receivedAt), "shutdownReason": .string(shutdown.reason),
                "lastSeenAt": .date(receivedAt), "running": .array(shutdown.running.map { .string($0.description) }),
            ]))
        return write
    }

    public func heartbeat(_ heartbeat: AgentHeartbeat, envelope: Envelope, receivedAt: Date) async throws -> Bool {
        let interval = Double(heartbeat.intervalMs.value) / 1000
        let result = try await machinesCollection.updateOne(
            ["_id": .string(heartbeat.machine.rawValue)],
            .set([
                "lastSeenAt": .date(receivedAt),
                "onlineUntil": .date(receivedAt.addingTimeInterval(3 * interval)),
                "freeSlots": .int64(Int64(heartbeat.freeSlots)),
                "running": .array(heartbeat.running.map { .string($0.description) }),
                "draining": .bool(heartbeat.draining),
                "lastSeq": .int64(Int64(clamping: heartbeat.lastSeq)),
                "shutdownReason": .null,
                "heartbeatIntervalMs": .int64(Int64(clamping: heartbeat.intervalMs.value)),
            ]))
        return result.matchedCount > 0
    }

    public func machines() async throws -> [MachineRecord] {
        try await findDecodable(machinesCollection, [:], sort: .ascending("_id"))
    }

    public func machine(_ name: MachineName) async throws -> MachineRecord? {
        try await machinesCollection.findOne(["_id": .string(name.rawValue)])
    }

    private func storeAgentEvent(_ envelope: Envelope, machine: MachineName, receivedAt: Date) async throws
        -> StoreWrite
    {
        let record = AgentEventRecord(
            _id: envelope.id.description, type: envelope.type, machine: machine,
            epoch: envelope.epoch?.description ?? "", seq: envelope.seq ?? 0, time: envelope.time.date,
            receivedAt: receivedAt)
        return try await insertIdempotently([record], into: agentEvents)[0]
    }

    // MARK: Executions

    public func createExecution(_ execution: ExecutionRecord) async throws {
        try await executionsCollection.insertOne(execution)
    }

    public func execution(_ id: ExecutionID) async throws -> ExecutionRecord? {
        try await executionsCollection.findOne(["_id": .string(id.description)])
    }

    /// Whether an execution exists, without reading its record (which holds its whole plan).
    public func executionExists(_ id: ExecutionID) async throws -> Bool {
        try await executionsCollection.withType(BSONDocument.self)
            .findOne(["_id": .string(id.description)], projection: .including("_id")) != nil
    }

    public func executions(in phase: ExecutionPhase, limit: Int) async throws -> [ExecutionRecord] {
        try await findDecodable(
            executionsCollection, ["phase": .string(phase.rawValue)], sort: .descending("createdAt"), limit: limit)
    }

    // Claims and phase moves on `executions` are a conditional updateOne by id (the match count tells who won)
    // followed by a read by id, never a findAndModify: SecantusDB's findAndModify costs time in proportion to the
    // collection's size (about 20 µs per stored document: 40 ms with 2,000 executions), an updateOne about 1 ms.

    public func claimPendingExecution(holder: String, now: Date, until: Date) async throws -> ExecutionRecord? {
        // Unclaimed or the claim expired. `$not` rather than an `$or` of the two cases: SecantusDB answers an `$or`
        // by scanning the whole collection, which grows with every execution ever stored.
        let due: BSONDocument = [
            "phase": "pending", "dispatchedAt": .null, "nextAttemptAt": ["$lte": .date(now)],
            "claimedUntil": ["$not": ["$gte": .date(now)]],
        ]
        return try await claimOne(
            in: executionsCollection, due: due, oldestFirst: "nextAttemptAt",
            set: ["claimedBy": .string(holder), "claimedUntil": .date(until)])
    }

    /// Claims one document matching `due`, oldest by `oldestFirst` first: a read of a few candidates, then a
    /// conditional update of each by id until one is won (another claimant may take one between the read and the
    /// update), then a read of the winner.
    func claimOne<Record: Codable & Sendable>(
        in collection: MongoCollection<Record>, due: BSONDocument, oldestFirst: String, set fields: BSONDocument
    ) async throws -> Record? {
        let candidates = try await collection.find(
            due, sort: .ascending(oldestFirst), projection: .including("_id"), limit: 8, as: BSONDocument.self)
        for candidate in candidates {
            guard let id = candidate["_id"] else { continue }
            let claimed = try await collection.updateOne(due.merging(["_id": id]), .set(fields))
            guard claimed.modifiedCount == 1 else { continue }
            return try await findDecodable(collection, ["_id": id], limit: 1).first
        }
        return nil
    }

    public func claimWithPlan(_ plan: DispatchPlan, execution: ExecutionID, holder: String, now: Date, until: Date)
        async throws -> Bool
    {
        let encoded = try BSONEncoder().encode(plan)
        let result = try await executionsCollection.updateOne(
            [
                "_id": .string(execution.description), "phase": "pending", "dispatchedAt": .null, "dispatch": .null,
                "nextAttemptAt": ["$lte": .date(now)], "claimedUntil": ["$not": ["$gte": .date(now)]],
            ],
            .set(["claimedBy": .string(holder), "claimedUntil": .date(until), "dispatch": .document(encoded)]))
        return result.matchedCount == 1
    }

    public func savePlan(_ plan: DispatchPlan, execution: ExecutionID, holder: String) async throws -> Bool {
        let encoded = try BSONEncoder().encode(plan)
        let result = try await executionsCollection.updateOne(
            ["_id": .string(execution.description), "claimedBy": .string(holder), "phase": "pending"],
            .set(["dispatch": .document(encoded)]))
        return result.matchedCount == 1
    }

    public func markDispatched(_ execution: ExecutionID, holder: String, at: Date) async throws {
        _ = try await executionsCollection.updateOne(
            ["_id": .string(execution.description), "claimedBy": .string(holder)],
            .set(["dispatchedAt": .date(at), "pending": .null]).unsetting("claimedBy", "claimedUntil"))
    }

    public func deferExecution(
        _ execution: ExecutionID, holder: String, explanation: PendingExplanation?, retryAt: Date
    ) async throws {
        var fields: BSONDocument = ["nextAttemptAt": .date(retryAt)]
        if let explanation { fields["pending"] = .document(try BSONEncoder().encode(explanation)) }
        _ = try await executionsCollection.updateOne(
            ["_id": .string(execution.description), "claimedBy": .string(holder)],
            .set(fields).unsetting("claimedBy", "claimedUntil"))
    }

    public func markRunning(_ execution: ExecutionID, at: Date) async throws -> ExecutionRecord? {
        let id: BSONDocument = ["_id": .string(execution.description)]
        let moved = try await executionsCollection.updateOne(
            id.merging(["phase": "pending"]), .set(["phase": "running", "startedAt": .date(at)]))
        guard moved.modifiedCount == 1 else { return nil }
        return try await findDecodable(executionsCollection, id, limit: 1).first
    }

    public func endExecution(
        _ execution: ExecutionID, phase: ExecutionPhase, reason: String?, counts: ResultCounts, at: Date
    ) async throws -> Bool {
        var fields: BSONDocument = [
            "phase": .string(phase.rawValue), "endedAt": .date(at),
            "counts": .document(try BSONEncoder().encode(counts)),
        ]
        if let reason { fields["endReason"] = .string(reason) }
        let result = try await executionsCollection.updateOne(
            ["_id": .string(execution.description), "phase": ["$in": ["pending", "running"]]],
            .set(fields).unsetting("claimedBy", "claimedUntil"))
        return result.modifiedCount == 1
    }

    public func requestCancel(_ execution: ExecutionID, reason: String) async throws -> Bool {
        let result = try await executionsCollection.updateOne(
            ["_id": .string(execution.description), "phase": ["$in": ["pending", "running"]]],
            .set(["cancelRequested": .string(reason)]))
        return result.matchedCount == 1
    }

    public func markParallelQueueDeleted(_ execution: ExecutionID) async throws {
        _ = try await executionsCollection.updateOne(
            ["_id": .string(execution.description)], .set(["parallelQueueDeleted": true]))
    }

    // MARK: Agent events

    public func storeResultsAndLogs(_ events: [Envelope], receivedAt: Date) async throws -> [StoreWrite] {
        var results: [(Int, ResultRecord)] = []
        var logs: [(Int, LogRecord)] = []
        for (index, envelope) in events.enumerated() {
            switch envelope.event {
            case .testResult(let result):
                results.append(
                    (
                        index,
                        ResultRecord(
                            id: envelope.id.description, executionID: result.executionID.description,
                            machine: result.machine, epoch: envelope.epoch?.description ?? "", seq: envelope.seq ?? 0,
                            time: envelope.time.date, receivedAt: receivedAt, result: result)
                    ))
            case .executionLog(let log):
                logs.append(
                    (
                        index,
                        LogRecord(
                            _id: envelope.id.description, executionID: log.executionID.description,
                            machine: log.machine, epoch: envelope.epoch?.description ?? "", seq: envelope.seq ?? 0,
                            time: envelope.time.date, receivedAt: receivedAt, log: log)
                    ))
            default:
                preconditionFailure("storeResultsAndLogs is given \(envelope.type)")
            }
        }
        var writes = [StoreWrite](repeating: .stored, count: events.count)
        let resultRecords = results.map(\.1)
        let logRecords = logs.map(\.1)
        async let resultWrites = insertIdempotently(resultRecords, into: resultsCollection)
        async let logWrites = insertIdempotently(logRecords, into: logsCollection)
        for (position, write) in try await resultWrites.enumerated() { writes[results[position].0] = write }
        for (position, write) in try await logWrites.enumerated() { writes[logs[position].0] = write }
        return writes
    }

    public func storeState(_ change: ExecutionStateChange, envelope: Envelope, receivedAt: Date) async throws
        -> StoreWrite
    {
        let record = StateRecord(
            _id: envelope.id.description, executionID: change.executionID.description, machine: change.machine,
            epoch: envelope.epoch?.description ?? "", seq: envelope.seq ?? 0, time: envelope.time.date,
            receivedAt: receivedAt, change: change)
        let write = try await insertIdempotently([record], into: statesCollection)[0]
        guard write != .sequenceConflict else { return write }
        // Applied also for a duplicate: the state may have been stored by a coordinator that died before this step.
        try await applyToPart(change, epoch: record.epoch, seq: record.seq, at: receivedAt)
        return write
    }

    /// Applies a state to its part. States may arrive out of order (several coordinators consume in parallel),
    /// so each field is set by the state that owns it, and `state` only moves forward.
    private func applyToPart(_ change: ExecutionStateChange, epoch: String, seq: UInt64, at: Date) async throws {
        let id = PartRecord.id(execution: change.executionID.description, machine: change.machine)
        let insert: BSONDocument = [
            "executionID": .string(change.executionID.description), "machine": .string(change.machine.rawValue),
            "complete": false,
        ]
        var fields: BSONDocument = ["epoch": .string(epoch), "attempt": .int64(Int64(change.attempt)), "updatedAt": .date(at)]
        let filter: BSONDocument = ["_id": .string(id)]
        switch change.state {
        case .acked:
            fields["ackedSeq"] = .int64(Int64(seq))
            _ = try await partsCollection.updateOne(filter, .set(fields).setOnInsert(insert.merging(["state": "acked"])), upsert: true)
        case .running:
            _ = try await partsCollection.updateOne(filter, .set(fields).setOnInsert(insert), upsert: true)
            _ = try await partsCollection.updateOne(
                ["_id": .string(id), "state": ["$in": [.null, "acked"]]], .set(["state": "running"]))
        case .finished, .cancelled, .timeout:
            fields["state"] = .string(change.state.rawValue)
            fields["finalState"] = .string(change.state.rawValue)
            fields["firstSeq"] = .int64(Int64(change.firstSeq ?? 0))
            fields["lastSeq"] = .int64(Int64(change.lastSeq ?? 0))
            fields["reportedCounts"] = .document(try BSONEncoder().encode(change.counts))
            if let reason = change.reason { fields["reason"] = .string(reason) }
            _ = try await partsCollection.updateOne(filter, .set(fields).setOnInsert(insert), upsert: true)
        }
    }

    public func storeRejection(_ rejection: RejectionRecord) async throws {
        _ = try await insertIdempotently([rejection], into: rejectionsCollection)
    }

    public func addToCounters(_ counts: [ExecutionID: ResultCounts]) async throws {
        for (execution, count) in counts where count.total > 0 {
            _ = try await executionsCollection.updateOne(
                ["_id": .string(execution.description)],
                .inc([
                    "counts.ok": .int64(Int64(count.ok)), "counts.failed": .int64(Int64(count.failed)),
                    "counts.partial": .int64(Int64(count.partial)),
                    "counts.inconclusive": .int64(Int64(count.inconclusive)),
                ]))
        }
    }

    public func storedSequenceCount(epoch: String, range: ClosedRange<UInt64>) async throws -> Int {
        let filter: BSONDocument = [
            "epoch": .string(epoch),
            "seq": ["$gte": .int64(Int64(range.lowerBound)), "$lte": .int64(Int64(range.upperBound))],
        ]
        var total = 0
        var seen = Set<Int64>()
        for collection in sequencedCollections {
            if collection.name == "rejections" {
                // A refused event may be refused more than once (redelivered): count each seq once.
                let rows = try await collection.find(filter, projection: .including("seq"))
                for row in rows { if let seq = row["seq"]?.intValue { seen.insert(Int64(seq)) } }
            } else {
                total += try await collection.count(filter)
            }
        }
        return total + seen.count
    }

    public func resultCounts(_ execution: ExecutionID, machine: MachineName?) async throws -> ResultCounts {
        var match: BSONDocument = ["executionID": .string(execution.description)]
        if let machine { match["machine"] = .string(machine.rawValue) }
        let rows = try await resultsCollection.aggregate([
            ["$match": .document(match)], ["$group": ["_id": "$result.status", "n": ["$sum": 1]]],
        ])
        var counts = ResultCounts()
        for row in rows {
            let n = UInt64(row["n"]?.intValue ?? 0)
            switch row["_id"]?.stringValue {
            case "ok": counts.ok += n
            case "failed": counts.failed += n
            case "partial": counts.partial += n
            case "inconclusive": counts.inconclusive += n
            default: break
            }
        }
        return counts
    }

    public func resultIndexCount(_ execution: ExecutionID) async throws -> Int {
        let rows = try await resultsCollection.aggregate([
            ["$match": ["executionID": .string(execution.description), "result.index": ["$ne": .null]]],
            ["$group": ["_id": "$result.index"]], ["$count": "n"],
        ])
        return rows.first?["n"]?.intValue ?? 0
    }

    public func parts(_ execution: ExecutionID) async throws -> [PartRecord] {
        try await findDecodable(partsCollection, ["executionID": .string(execution.description)], sort: .ascending("_id"))
    }

    public func markPartComplete(_ id: String) async throws {
        _ = try await partsCollection.updateOne(["_id": .string(id)], .set(["complete": true]))
    }

    public func openParts(on machines: [MachineName]) async throws -> [PartRecord] {
        guard !machines.isEmpty else { return [] }
        return try await findDecodable(
            partsCollection, ["finalState": .null, "machine": ["$in": .array(machines.map { .string($0.rawValue) })]])
    }

    public func executionsAwaitingCompletion() async throws -> [ExecutionID] {
        let rows = try await partsCollection.find(
            ["complete": false, "finalState": ["$ne": .null]], projection: .including("executionID"),
            as: BSONDocument.self)
        return Array(Set(rows.compactMap { $0["executionID"]?.stringValue.flatMap(ExecutionID.init) }))
    }

    public func results(_ execution: ExecutionID) async throws -> [ResultRecord] {
        try await findDecodable(
            resultsCollection, ["executionID": .string(execution.description)], sort: .ascending("receivedAt", "seq"))
    }

    public func states(_ execution: ExecutionID) async throws -> [StateRecord] {
        try await findDecodable(
            statesCollection, ["executionID": .string(execution.description)], sort: .ascending("receivedAt", "seq"))
    }

    public func closeLostPart(_ id: String, reason: String, at: Date) async throws -> Bool {
        let result = try await partsCollection.updateOne(
            ["_id": .string(id), "finalState": .null],
            .set([
                "finalState": "finished", "state": "finished", "complete": true, "lost": true, "reason": .string(reason),
                "updatedAt": .date(at),
            ]))
        return result.modifiedCount == 1
    }

    public func storeCoordinatorResults(_ results: [ResultRecord]) async throws -> [StoreWrite] {
        try await insertIdempotently(results, into: resultsCollection)
    }

    public func recordDurations(_ execution: ExecutionID) async throws {
        let rows = try await resultsCollection.aggregate([
            ["$match": ["executionID": .string(execution.description)]],
            ["$group": ["_id": "$result.testID", "ms": ["$sum": "$result.durationMs"]]],
        ])
        let now = Date()
        for row in rows {
            guard let test = row["_id"]?.stringValue, let ms = row["ms"]?.intValue else { continue }
            let previous = try await testStats.findOne(["_id": .string(test)])
            let runs = (previous?.runs ?? 0) + 1
            // A moving mean over the last ten runs or fewer.
            let weight = min(runs, 10)
            let mean = previous.map { ($0.meanDurationMs * (weight - 1) + Int64(ms)) / weight } ?? Int64(ms)
            _ = try await testStats.replaceOne(
                ["_id": .string(test)],
                with: TestStats(_id: test, meanDurationMs: mean, runs: runs, lastDurationMs: Int64(ms), updatedAt: now),
                upsert: true)
        }
    }

    // MARK: Idempotent inserts

    /// Inserts every record whose `_id` is new. A duplicate `_id` is a repeat (`duplicate`); a duplicate
    /// `(epoch, seq)` under another `_id` is a `sequenceConflict`.
    func insertIdempotently<Record: Codable & Sendable>(
        _ records: [Record], into collection: MongoCollection<Record>
    ) async throws -> [StoreWrite] {
        guard !records.isEmpty else { return [] }
        let outcome = try await collection.insertManyReportingFailures(records)
        var writes = [StoreWrite](repeating: .stored, count: records.count)
        guard !outcome.failures.isEmpty else { return writes }
        for failure in outcome.failures.values where failure.code != .duplicateKey { throw failure }
        let ids = outcome.failures.keys.map { outcome.ids[$0] }
        let existing = try await collection.find(["_id": ["$in": .array(ids)]], projection: .including("_id"), as: BSONDocument.self)
        let existingIDs = Set(existing.compactMap { $0["_id"] })
        for index in outcome.failures.keys {
            writes[index] = existingIDs.contains(outcome.ids[index]) ? .duplicate : .sequenceConflict
        }
        return writes
    }
}
