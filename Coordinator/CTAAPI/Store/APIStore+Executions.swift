public import CTACoordinator
public import CTACore
import CTADefinitions
import CTAMongo
public import Foundation

/// The filters of `GET /v1/executions`.
public struct ExecutionFilter: Sendable {
    public var scenario: String?
    public var phase: String?
    public var since: Date?
    public var until: Date?
    public var requestedBy: String?
    public var tag: String?

    public init() {}

    var document: BSONDocument {
        var filter: BSONDocument = [:]
        if let scenario { filter["scenario.id"] = .string(scenario) }
        if let phase { filter["phase"] = .string(phase) }
        var created: BSONDocument = [:]
        if let since { created["$gte"] = .date(since) }
        if let until { created["$lt"] = .date(until) }
        if !created.isEmpty { filter["createdAt"] = .document(created) }
        if let requestedBy { filter["requestedBy"] = .string(requestedBy) }
        if let tag { filter["tags"] = .string(tag) }
        return filter
    }
}

extension APIStore {
    public func executionsPage(
        _ filter: ExecutionFilter, _ request: PageRequest, include: (ExecutionRecord) -> Bool
    ) async throws -> (items: [ExecutionRecord], next: Cursor?) {
        try await page(
            store.executionsCollection, filter: filter.document, sortKey: "createdAt", descending: true, request: request,
            cursor: { Cursor(time: $0.createdAt, id: $0._id) }, include: include)
    }

    public func resultsPage(
        execution: ExecutionID, status: String?, machine: String?, _ request: PageRequest
    ) async throws -> (items: [ResultRecord], next: Cursor?) {
        var filter: BSONDocument = ["executionID": .string(execution.description)]
        if let status { filter["result.status"] = .string(status) }
        if let machine { filter["machine"] = .string(machine) }
        return try await page(
            store.resultsCollection, filter: filter, sortKey: "receivedAt", descending: false, request: request,
            cursor: { Cursor(time: $0.receivedAt, id: $0._id) })
    }

    public func statesPage(execution: ExecutionID, _ request: PageRequest) async throws
        -> (items: [StateRecord], next: Cursor?)
    {
        try await page(
            store.statesCollection, filter: ["executionID": .string(execution.description)], sortKey: "receivedAt",
            descending: false, request: request, cursor: { Cursor(time: $0.receivedAt, id: $0._id) })
    }

    /// An execution's log chunks in `seq` order (per machine), optionally of one machine or test.
    public func logs(execution: ExecutionID, machine: String?, test: String?) async throws -> [LogRecord] {
        var filter: BSONDocument = ["executionID": .string(execution.description)]
        if let machine { filter["machine"] = .string(machine) }
        if let test { filter["log.testID"] = .string(test) }
        return try await store.logsCollection.find(filter, sort: .ascending("machine", "epoch", "seq"))
    }

    public func machinesPage(
        online: Bool?, group: String?, tag: String?, _ request: PageRequest, now: Date, include: (MachineRecord) -> Bool
    ) async throws -> (items: [MachineRecord], next: Cursor?) {
        var filter: BSONDocument = [:]
        if let online { filter["onlineUntil"] = [online ? "$gt" : "$lte": .date(now)] }
        if let group { filter["groups"] = .string(group) }
        if let tag { filter["tagPairs"] = .string(tag) }
        return try await page(
            store.machinesCollection, filter: filter, sortKey: nil, descending: false, request: request,
            cursor: { Cursor(key: .text($0._id), id: $0._id) }, include: include)
    }

    /// Records that a drain (or resume) was requested for a machine.
    public func markDrainRequested(_ machine: String, drain: Bool, by: String, at now: Date) async throws -> Bool {
        let result = try await store.machinesCollection.updateOne(
            ["_id": .string(machine)],
            .set(["drainRequested": .bool(drain), "drainRequestedAt": .date(now), "drainRequestedBy": .string(by)]))
        return result.matchedCount == 1
    }

    /// The drain request fields the API adds to a machine.
    public func drainRequest(_ machine: String) async throws -> (requested: Bool, at: Date?)? {
        guard
            let row = try await store.machinesCollection.find(
                ["_id": .string(machine)], projection: .including("drainRequested", "drainRequestedAt"), limit: 1,
                as: BSONDocument.self
            ).first
        else { return nil }
        var at: Date?
        if case .date(let date)? = row["drainRequestedAt"] { at = date }
        if case .bool(let requested)? = row["drainRequested"] { return (requested, at) }
        return (false, at)
    }

    // MARK: Webhooks

    public func managedWebhook(_ id: String) async throws -> ManagedWebhook? {
        try await store.managedWebhooksCollection.findOne(["_id": .string(id)])
    }

    public func createManagedWebhook(_ webhook: ManagedWebhook) async throws {
        _ = try await store.managedWebhooksCollection.insertOne(webhook)
    }

    public func deleteManagedWebhook(_ id: String) async throws -> Bool {
        try await store.managedWebhooksCollection.deleteOne(["_id": .string(id)]) == 1
    }

    public func managedWebhooksPage(scenario: String, _ request: PageRequest) async throws
        -> (items: [ManagedWebhook], next: Cursor?)
    {
        try await page(
            store.managedWebhooksCollection, filter: ["scenario": .string(scenario)], sortKey: "createdAt",
            descending: false, request: request, cursor: { Cursor(time: $0.createdAt, id: $0._id) })
    }

    public func deliveriesPage(webhook: String, _ request: PageRequest) async throws
        -> (items: [WebhookDeliveryRecord], next: Cursor?)
    {
        try await page(
            store.webhookDeliveriesCollection, filter: ["managedWebhook": .string(webhook)], sortKey: "createdAt",
            descending: true, request: request, cursor: { Cursor(time: $0.createdAt, id: $0._id) })
    }
}
