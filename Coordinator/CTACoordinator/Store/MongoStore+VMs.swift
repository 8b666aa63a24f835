public import CTACore
public import CTAMongo
public import Foundation

// VMs made for executions: collection `vms`, `_id` = the VM's machine name. One document per execution (unique
// index on `executionID`), so two coordinators composing the same execution create one VM.

extension MongoStore {
    public var vmsCollection: MongoCollection<VMRecord> { database.collection("vms", as: VMRecord.self) }

    func prepareVMs() async throws {
        try await vmsCollection.createIndexes([
            IndexModel(keys: .ascending("executionID"), name: "execution", unique: true),
            IndexModel(keys: .ascending("state"), name: "state"),
        ])
    }

    /// The states of a VM that may still exist.
    static let undestroyedStates = BSONValue.array(
        [VMRecord.State.creating, .created, .createFailed, .destroying].map { .string($0.rawValue) })

    public func createVM(_ vm: VMRecord) async throws -> Bool {
        try await insertIdempotently([vm], into: vmsCollection)[0] == .stored
    }

    public func vm(_ name: MachineName) async throws -> VMRecord? {
        try await findDecodable(vmsCollection, ["_id": .string(name.rawValue)], limit: 1).first
    }

    public func recordVMCreated(_ name: MachineName, outcome: VMCommandOutcome) async throws {
        let id: BSONDocument = ["_id": .string(name.rawValue)]
        _ = try await vmsCollection.updateOne(id, .set(["create": .document(try BSONEncoder().encode(outcome))]))
        // The state moves only from creating: a VM already being destroyed stays so.
        _ = try await vmsCollection.updateOne(
            id.merging(["state": .string(VMRecord.State.creating.rawValue)]),
            .set(["state": .string((outcome.succeeded ? VMRecord.State.created : .createFailed).rawValue)]))
    }

    public func undestroyedVMs() async throws -> [VMRecord] {
        try await findDecodable(vmsCollection, ["state": ["$in": Self.undestroyedStates]], limit: 1000)
    }

    public func claimVMDestruction(_ name: MachineName, holder: String, now: Date, until: Date) async throws -> Bool {
        let result = try await vmsCollection.updateOne(
            [
                "_id": .string(name.rawValue), "state": ["$in": Self.undestroyedStates],
                "destroyClaimedUntil": ["$not": ["$gte": .date(now)]],
            ],
            .set([
                "state": .string(VMRecord.State.destroying.rawValue), "destroyClaimedBy": .string(holder),
                "destroyClaimedUntil": .date(until),
            ]))
        return result.matchedCount == 1
    }

    public func recordVMDestroyed(_ name: MachineName, outcome: VMCommandOutcome, at: Date) async throws {
        _ = try await vmsCollection.updateOne(
            ["_id": .string(name.rawValue)],
            .set([
                "state": .string((outcome.succeeded ? VMRecord.State.destroyed : .destroyFailed).rawValue),
                "destroy": .document(try BSONEncoder().encode(outcome)), "destroyedAt": .date(at),
            ]))
    }
}
