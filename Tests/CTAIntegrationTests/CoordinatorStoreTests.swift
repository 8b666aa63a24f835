import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Testing
import CTADefinitions

/// The coordinator's store against the real MongoDB-wire server: idempotent event writes, sequence accounting,
/// and reads that survive a document that does not decode.
@Suite("Coordinator store", .enabled(if: ServiceEnvironment.mongoEnabled, "needs CTA_MONGO_URI"))
struct CoordinatorStoreTests {
    static let machine = MachineName(unchecked: "store-lab")

    static func result(_ execution: ExecutionID, epoch: SequenceEpoch, seq: UInt64, id: EventID = EventID()) -> Envelope {
        Envelope(
            id: id, source: .agent(machine), epoch: epoch, seq: seq,
            payload: TestResult(
                executionID: execution, machine: machine, testID: TestID(unchecked: "t\(seq)"), name: "t\(seq)",
                status: seq % 2 == 0 ? .failed : .ok, durationMs: Milliseconds(5),
                origin: .exitCode(stage: "run", exitCode: 0, signal: nil)))
    }

    @Test("results are stored once: a repeat is a duplicate, another event under the same (epoch, seq) a conflict")
    func idempotentResults() async throws {
        try await withMongoDatabase("cta-store") { _, database in
            let store = MongoStore(database: database)
            try await store.prepare()
            let execution = ExecutionID()
            let epoch = SequenceEpoch()
            let batch = (1...20).map { Self.result(execution, epoch: epoch, seq: UInt64($0)) }
            #expect(try await store.storeResultsAndLogs(batch, receivedAt: Date()) == Array(repeating: .stored, count: 20))
            // A redelivered half batch mixed with new events and an impostor for seq 3.
            let again = Array(batch[0..<10]) + [Self.result(execution, epoch: epoch, seq: 21), Self.result(execution, epoch: epoch, seq: 3)]
            let writes = try await store.storeResultsAndLogs(again, receivedAt: Date())
            #expect(writes == Array(repeating: .duplicate, count: 10) + [.stored, .sequenceConflict])
            #expect(try await store.results(execution).count == 21)
            #expect(try await store.resultCounts(execution, machine: Self.machine) == ResultCounts(ok: 11, failed: 10))
            #expect(try await store.storedSequenceCount(epoch: epoch.description, range: 1...21) == 21)
            #expect(try await store.storedSequenceCount(epoch: epoch.description, range: 1...22) == 21)
        }
    }

    @Test("definition files keep the owners they do not name (cta-coordinator apply, serve --definitions) and set those they do")
    func definitionOwners() async throws {
        try await withMongoDatabase("cta-store") { _, database in
            let store = MongoStore(database: database)
            try await store.prepare()
            let text = "kind: test\nid: owned\nowners: [qa]\nstages: [{name: run, run: \"true\"}]\n"
            try await store.save(try DefinitionLoader.load(text: text, path: "a.yaml"))
            func owners() async throws -> [String]? {
                guard case .array(let values)? = try await database.collection("tests").findOne(["_id": "owned"])?["owners"]
                else { return nil }
                return values.compactMap(\.stringValue)
            }
            #expect(try await owners() == ["qa"])
            let edited = text.replacingOccurrences(of: "owners: [qa]\n", with: "").replacingOccurrences(of: "true", with: "false")
            try await store.save(try DefinitionLoader.load(text: edited, path: "a.yaml"))
            #expect(try await owners() == ["qa"], "a file without owners keeps them")
            #expect(try await store.tests([TestID(unchecked: "owned")]).values.first?.stages.first?.run == "false")
            try await store.save(try DefinitionLoader.load(text: text.replacingOccurrences(of: "[qa]", with: "[web, qa]"), path: "a.yaml"))
            #expect(try await owners() == ["web", "qa"])
        }
    }

    @Test("a refused event's seq counts as received, once, however often it was refused")
    func rejectionsCount() async throws {
        try await withMongoDatabase("cta-store") { _, database in
            let store = MongoStore(database: database)
            try await store.prepare()
            let epoch = SequenceEpoch()
            for _ in 0..<2 {
                try await store.storeRejection(
                    RejectionRecord(
                        id: "bad-1", source: "agent/store-lab", epoch: epoch.description, seq: 1, code: "invalidValue",
                        path: "payload.status", reason: "unknown", queue: "q", routingKey: "test.result", rejectedAt: Date()))
            }
            try await store.storeRejection(
                RejectionRecord(
                    id: "bad-2", source: "agent/store-lab", epoch: epoch.description, seq: 1, code: "invalidValue",
                    path: "payload.status", reason: "unknown", queue: "q", routingKey: "test.result", rejectedAt: Date()))
            _ = try await store.storeResultsAndLogs([Self.result(ExecutionID(), epoch: epoch, seq: 2)], receivedAt: Date())
            #expect(try await store.storedSequenceCount(epoch: epoch.description, range: 1...2) == 2)
        }
    }

    @Test("a stored document that does not decode is skipped and reported, not fatal to the read")
    func undecodableDocument() async throws {
        try await withMongoDatabase("cta-store") { _, database in
            let store = MongoStore(database: database)
            try await store.prepare()
            let registration = AgentRegistration(
                machine: Self.machine, hostname: "h", addresses: [], os: OperatingSystem(name: "debian", version: "12"),
                arch: "x86_64", cpuCount: 2, memoryBytes: 1 << 30, agentVersion: "0.1.0", tags: [:], groups: [],
                maxConcurrentExecutions: 1, transport: .amqp, startedAt: .now())
            let envelope = Envelope(source: .agent(Self.machine), epoch: SequenceEpoch(), seq: 1, payload: registration)
            #expect(try await store.register(registration, envelope: envelope, receivedAt: Date()) == .stored)
            try await database.collection("machines").insertOne(["_id": "broken", "hostname": 42])
            let machines = try await store.machines()
            #expect(machines.map(\._id) == [Self.machine.rawValue])
        }
    }

    @Test("an execution handed to the composer is claimed and planned in one write, once, and never over a saved plan")
    func claimWithPlan() async throws {
        try await withMongoDatabase("cta-store") { _, database in
            let store = MongoStore(database: database)
            try await store.prepare()
            let now = Date()
            func pending() -> ExecutionRecord { .pendingWithoutTests(at: now) }
            let plan = DispatchPlan(machines: [Self.machine], eventIDs: [EventID()])
            let until = now.addingTimeInterval(30)
            let fresh = pending()
            try await store.createExecution(fresh)
            #expect(try await store.claimWithPlan(plan, execution: fresh.executionID, holder: "a", now: now, until: until))
            // A second composer (or the same one again) finds it claimed.
            #expect(try await !store.claimWithPlan(plan, execution: fresh.executionID, holder: "b", now: now, until: until))
            let stored = try #require(try await store.execution(fresh.executionID))
            #expect(stored.claimedBy == "a")
            #expect(stored.dispatch == plan)

            // Claimed by the usual path first: the handed path stays out.
            let polled = pending()
            try await store.createExecution(polled)
            let claimed = try await store.claimPendingExecution(holder: "b", now: now, until: until)
            #expect(claimed?.executionID == polled.executionID)
            #expect(try await !store.claimWithPlan(plan, execution: polled.executionID, holder: "a", now: now, until: until))

            // A plan saved by a composer whose claim expired must be published as saved, not replaced.
            let planned = pending()
            try await store.createExecution(planned)
            #expect(try await store.claimWithPlan(plan, execution: planned.executionID, holder: "a", now: now, until: now))
            let later = now.addingTimeInterval(1)
            let other = DispatchPlan(machines: [MachineName(unchecked: "other")], eventIDs: [EventID()])
            #expect(try await !store.claimWithPlan(other, execution: planned.executionID, holder: "b", now: later, until: until))
            #expect(try await store.execution(planned.executionID)?.dispatch == plan)
        }
    }
}

extension ExecutionRecord {
    /// A pending mono execution of no tests, for checks that need one to exist.
    static func pendingWithoutTests(at now: Date = Date()) -> ExecutionRecord {
        ExecutionRecord(
            id: ExecutionID(), scenario: ScenarioReference(id: ScenarioID(unchecked: "s"), name: "S"),
            suite: SuiteReference(id: SuiteID(unchecked: "suite"), name: "Suite"),
            configuration: ConfigurationID(unchecked: "c"), selector: MachineSelector(), runMode: .mono, env: [:],
            requestedBy: "test", tests: [], createdAt: now, pendingDeadline: now.addingTimeInterval(60),
            runningTimeoutMs: 60_000)
    }
}
