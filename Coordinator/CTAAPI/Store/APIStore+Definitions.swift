import CTACoordinator
import CTACore
public import CTADefinitions
public import CTAMongo
public import Foundation

/// The four kinds of definition, as the API names them.
public enum DefinitionKindName: String, CaseIterable, Sendable {
    case tests, suites, configurations, scenarios

    /// The `kind` of a YAML document of this kind.
    public var yamlKind: String {
        switch self {
        case .tests: "test"
        case .suites: "suite"
        case .configurations: "configuration"
        case .scenarios: "scenario"
        }
    }

    var collection: String { rawValue }
}

/// A stored definition as the API reads it: the definition (as stored, in JSON), its owners and when it changed.
public struct StoredDefinition: Sendable {
    public var id: String
    public var owners: [String]
    public var definition: BSONDocument
    public var updatedAt: Date?
}

extension APIStore {
    func definitions(_ kind: DefinitionKindName) -> MongoCollection<BSONDocument> { database.collection(kind.collection) }

    static func stored(_ document: BSONDocument) -> StoredDefinition? {
        guard let id = document["_id"]?.stringValue, case .document(let definition)? = document["definition"] else {
            return nil
        }
        var owners: [String] = []
        if case .array(let values)? = document["owners"] { owners = values.compactMap(\.stringValue) }
        var updatedAt: Date?
        if case .date(let date)? = document["updatedAt"] { updatedAt = date }
        return StoredDefinition(id: id, owners: owners, definition: definition, updatedAt: updatedAt)
    }

    public func definition(_ kind: DefinitionKindName, id: String) async throws -> StoredDefinition? {
        try await definitions(kind).findOne(["_id": .string(id)]).flatMap(Self.stored)
    }

    public func definitionsPage(
        _ kind: DefinitionKindName, _ request: PageRequest, include: (StoredDefinition) -> Bool
    ) async throws -> (items: [StoredDefinition], next: Cursor?) {
        let (documents, next) = try await page(
            definitions(kind), filter: [:], sortKey: nil, descending: false, request: request,
            cursor: { Cursor(key: .text($0["_id"]?.stringValue ?? ""), id: $0["_id"]?.stringValue ?? "") },
            include: { Self.stored($0).map(include) ?? false })
        return (documents.compactMap(Self.stored), next)
    }

    /// The owners of every definition of a kind that has some (those without owners are left out).
    public func owners(_ kind: DefinitionKindName) async throws -> [String: [String]] {
        let rows = try await definitions(kind).find(["owners": ["$ne": .null]], projection: .including("_id", "owners"))
        var owners: [String: [String]] = [:]
        for row in rows {
            guard let id = row["_id"]?.stringValue, case .array(let values)? = row["owners"], !values.isEmpty else { continue }
            owners[id] = values.compactMap(\.stringValue)
        }
        return owners
    }

    /// The ids stored per YAML kind (`test`, `suite`, …), for checking references of new definitions.
    public func existingIDs() async throws -> [String: Set<String>] {
        var ids: [String: Set<String>] = [:]
        for kind in DefinitionKindName.allCases {
            let rows = try await definitions(kind).find([:], projection: .including("_id"))
            ids[kind.yamlKind] = Set(rows.compactMap { $0["_id"]?.stringValue })
        }
        return ids
    }

    /// Saves definitions, keeping each one's owners unless `owners` or the set's own `owners` (from the files)
    /// give new ones (by YAML kind and id; `owners` wins). Returns the ids that did not exist before.
    @discardableResult
    public func save(_ set: DefinitionSet, owners explicit: [String: [String]] = [:]) async throws -> Set<String> {
        let owners = set.owners.merging(explicit) { _, explicit in explicit }
        var created: Set<String> = []
        let encoder = BSONEncoder()
        let now = Date()
        func write(_ kind: DefinitionKindName, _ id: String, _ definition: some Encodable) async throws {
            var fields: BSONDocument = ["definition": .document(try encoder.encode(definition)), "updatedAt": .date(now)]
            if let given = owners["\(kind.yamlKind)/\(id)"] { fields["owners"] = .array(given.map { .string($0) }) }
            let result = try await definitions(kind).updateOne(["_id": .string(id)], .set(fields), upsert: true)
            if result.upsertedCount > 0 { created.insert("\(kind.yamlKind)/\(id)") }
        }
        for test in set.tests.values { try await write(.tests, test.id.rawValue, test) }
        for suite in set.suites.values { try await write(.suites, suite.id.rawValue, suite) }
        for configuration in set.configurations.values {
            try await write(.configurations, configuration.id.rawValue, configuration)
        }
        for scenario in set.scenarios.values { try await write(.scenarios, scenario.id.rawValue, scenario) }
        return created
    }

    /// What refers to a definition (`suite smoke`, `scenario nightly`); a definition referred to cannot be deleted.
    public func references(to kind: DefinitionKindName, id: String) async throws -> [String] {
        let value = BSONValue.string(id)
        let (referrer, filter): (DefinitionKindName?, BSONDocument) =
            switch kind {
            case .tests: (.suites, ["definition.tests": value])
            case .suites: (.scenarios, ["definition.suite": value])
            case .configurations: (.scenarios, ["definition.configuration": value])
            case .scenarios: (.scenarios, ["definition.chain.scenario": value])
            }
        guard let referrer else { return [] }
        let rows = try await definitions(referrer).find(filter, projection: .including("_id"), limit: 20)
        return rows.compactMap { $0["_id"]?.stringValue }.map { "\(referrer.yamlKind) \($0)" }
    }

    public func deleteDefinition(_ kind: DefinitionKindName, id: String) async throws -> Bool {
        try await definitions(kind).deleteOne(["_id": .string(id)]) == 1
    }
}
