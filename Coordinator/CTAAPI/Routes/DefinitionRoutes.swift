import CTACoordinator
import CTACore
import CTADefinitions
import CTAMongo
import Foundation
import Hummingbird

// Definitions: one resource per kind, and `POST /v1/definitions` for YAML files. Bodies go through the same
// loader as definition files, so the rules (and messages) are the files'.

extension API {
    func addDefinitionRoutes(to router: Router<APIRequestContext>) {
        for kind in DefinitionKindName.allCases {
            router.get("/v1/\(kind.rawValue)") { request, _ in
                let principal = try await self.user(request)
                let (items, next) = try await self.store.definitionsPage(kind, try request.page()) {
                    Policy.canSee(principal, owners: $0.owners)
                }
                return JSON.response(Page(items: items.map { Self.view($0, kind: kind) }, next: next?.encoded))
            }
            router.get("/v1/\(kind.rawValue)/:id") { request, context in
                let principal = try await self.user(request)
                let id = context.parameter("id")
                guard let stored = try await self.store.definition(kind, id: id),
                    Policy.canSee(principal, owners: stored.owners)
                else { throw APIError.notFound("no \(kind.yamlKind) \(id)") }
                return JSON.response(Self.view(stored, kind: kind))
            }
            router.put("/v1/\(kind.rawValue)/:id") { request, context in
                try await self.put(kind, id: context.parameter("id"), request: request)
            }
            router.delete("/v1/\(kind.rawValue)/:id") { request, context in
                let principal = try await self.user(request)
                let id = context.parameter("id")
                guard let stored = try await self.store.definition(kind, id: id) else {
                    throw APIError.notFound("no \(kind.yamlKind) \(id)")
                }
                try self.require(.deleteDefinition, principal, owners: stored.owners, notFound: "\(kind.yamlKind) \(id)")
                let referrers = try await self.store.references(to: kind, id: id)
                guard referrers.isEmpty else {
                    throw APIError.conflict("\(kind.yamlKind) \(id) is used by \(referrers.joined(separator: ", "))")
                }
                _ = try await self.store.deleteDefinition(kind, id: id)
                return JSON.empty(.noContent)
            }
        }
        router.post("/v1/definitions") { request, _ in try await self.applyYAML(request) }
    }

    /// A stored definition as answered: its keys as a definition file has them (what `PUT` takes back, and
    /// without webhook secrets), its `owners` and `updatedAt` (which `PUT` ignores).
    static func view(_ stored: StoredDefinition, kind: DefinitionKindName) -> JSONValue {
        var members: [String: JSONValue] = [:]
        if case .object(let definition)? = fileShape(stored.definition, kind: kind).map(json) { members = definition }
        members["owners"] = .array(stored.owners.map { .string($0) })
        members["updatedAt"] = stored.updatedAt.map { .string(JSON.timestamp($0)) } ?? .null
        return .object(members)
    }

    /// The stored model in its file shape; nil for a document that does not decode (reported by the store).
    static func fileShape(_ document: BSONDocument, kind: DefinitionKindName) -> DefinitionValue? {
        let decoder = BSONDecoder()
        switch kind {
        case .tests: return (try? decoder.decode(TestDefinition.self, from: document)).map { DefinitionWriter.write($0) }
        case .suites: return (try? decoder.decode(SuiteDefinition.self, from: document)).map { DefinitionWriter.write($0) }
        case .configurations:
            return (try? decoder.decode(ConfigurationDefinition.self, from: document)).map { DefinitionWriter.write($0) }
        case .scenarios:
            return (try? decoder.decode(ScenarioDefinition.self, from: document)).map {
                DefinitionWriter.write($0, secrets: .omit)
            }
        }
    }

    static func json(_ value: DefinitionValue) -> JSONValue {
        switch value {
        case .text(let text): .string(text)
        case .bool(let flag): .bool(flag)
        case .list(let items): .array(items.map(json))
        case .map(let fields): .object(Dictionary(fields.map { ($0.key, json($0.value)) }) { first, _ in first })
        }
    }

    /// `PUT /v1/{kind}/{id}`: create (201) or replace (200).
    func put(_ kind: DefinitionKindName, id: String, request: Request) async throws -> Response {
        let principal = try await user(request)
        let bytes = try await body(request, limit: configuration.bodyLimit)
        guard case .object(var members) = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
            throw APIError.badRequest("the body is not a JSON object")
        }
        // What GET answers besides the definition: read-only, so a GET body can be sent back as it is.
        members.removeValue(forKey: "updatedAt")
        var owners: [String]?
        if let given = members.removeValue(forKey: "owners"), given != .null {
            try BodySchema.array(.string(maxLength: 128, rule: Rules.name), maxCount: 100).validate(given, path: "owners")
            owners = given.stringArray
        }
        if let given = members["id"], given != .string(id) {
            throw APIError(.invalidField, "id must be the id in the path (\(id))", field: "id")
        }
        if let given = members["kind"], given != .string(kind.yamlKind) {
            throw APIError(.invalidField, "kind must be \(kind.yamlKind)", field: "kind")
        }
        members["id"] = .string(id)
        members["kind"] = .string(kind.yamlKind)
        // Authorisation before validation, so nothing about a hidden definition leaks.
        let existing = try await store.definition(kind, id: id)
        if let existing {
            try require(.applyDefinition, principal, owners: existing.owners, notFound: "\(kind.yamlKind) \(id)")
        } else {
            try require(.applyDefinition, principal)
        }
        if let owners {
            guard Policy.mayAssign(owners: owners, principal: principal) else {
                throw APIError(.forbidden, "owners must be groups of yours", field: "owners")
            }
        } else if existing == nil, !Policy.mayAssign(owners: [], principal: principal) {
            throw APIError(.forbidden, "give owners: one or more of your groups", field: "owners")
        }
        let text = String(decoding: JSON.encode(JSONValue.object(members)), as: UTF8.self)
        var set = try await load([DefinitionSource(path: "body", text: text)], prefix: "\(kind.yamlKind) \(id): ")
        if let existing, kind == .scenarios { Self.keepSecrets(of: existing, in: &set) }
        var ownerMap: [String: [String]] = [:]
        if let owners { ownerMap["\(kind.yamlKind)/\(id)"] = owners }
        let created = try await store.save(set, owners: ownerMap)
        guard let stored = try await store.definition(kind, id: id) else { throw APIError(.internal, "the definition was not stored") }
        return JSON.response(Self.view(stored, kind: kind), status: created.isEmpty ? .ok : .created)
    }

    /// GET never shows webhook secrets, so a scenario sent back without them keeps the stored ones: a webhook
    /// given without `secret` keeps the secret of the stored webhook with the same URL.
    static func keepSecrets(of existing: StoredDefinition, in set: inout DefinitionSet) {
        guard let stored = try? BSONDecoder().decode(ScenarioDefinition.self, from: existing.definition) else { return }
        let secrets = Dictionary(stored.webhooks.compactMap { hook in hook.secret.map { (hook.url, $0) } }) { first, _ in first }
        for (id, var scenario) in set.scenarios {
            for index in scenario.webhooks.indices where scenario.webhooks[index].secret == nil {
                scenario.webhooks[index].secret = secrets[scenario.webhooks[index].url]
            }
            set.scenarios[id] = scenario
        }
    }

    /// `POST /v1/definitions`: a multi-document YAML file; nothing is stored when anything is wrong.
    func applyYAML(_ request: Request) async throws -> Response {
        let principal = try await user(request)
        try require(.applyDefinition, principal)
        let bytes = try await body(request, limit: configuration.bodyLimit)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw APIError.badRequest("the body is not UTF-8 text") }
        let file = request.query("file") ?? "body.yaml"
        let set = try await load([DefinitionSource(path: file, text: text)], prefix: nil)
        // Every definition must be the user's to change: an existing one by its owners; a new one needs owners in
        // the file (groups of the user's), unless an admin adds it; owners a file names must be groups of the user's.
        var refused: [String] = []
        func check(_ kind: DefinitionKindName, _ ids: [String]) async throws {
            for id in ids {
                let subject = "\(kind.yamlKind) \(id)"
                let given = set.owners["\(kind.yamlKind)/\(id)"]
                if let given, !Policy.mayAssign(owners: given, principal: principal) {
                    refused.append("\(subject) (owners must be groups of yours)")
                    continue
                }
                if let existing = try await store.definition(kind, id: id)?.owners {
                    if Policy.decide(.applyDefinition, principal: principal, owners: existing) != .allow {
                        refused.append("\(subject) (not yours to change)")
                    }
                } else if given == nil, !Policy.mayAssign(owners: [], principal: principal) {
                    refused.append("\(subject) (new: give it owners, one or more of your groups)")
                }
            }
        }
        try await check(.tests, set.tests.keys.map(\.rawValue))
        try await check(.suites, set.suites.keys.map(\.rawValue))
        try await check(.configurations, set.configurations.keys.map(\.rawValue))
        try await check(.scenarios, set.scenarios.keys.map(\.rawValue))
        guard refused.isEmpty else {
            throw APIError.forbidden("nothing was applied: " + refused.sorted().joined(separator: "; "))
        }
        try await store.save(set)
        return JSON.response([
            "applied": .object([
                "tests": .integer(Int64(set.tests.count)), "suites": .integer(Int64(set.suites.count)),
                "configurations": .integer(Int64(set.configurations.count)),
                "scenarios": .integer(Int64(set.scenarios.count)),
            ])
        ] as [String: JSONValue])
    }

    /// Loads definition text against the stored ids; problems become a 400 with `problems` (and the first one's
    /// field: the key without `prefix`, for a single-definition body).
    func load(_ sources: [DefinitionSource], prefix: String?) async throws -> DefinitionSet {
        let existing = try await store.existingIDs()
        do {
            return try DefinitionLoader.load(sources: sources, existing: existing)
        } catch {
            let problems: [JSONValue] = error.errors.map { problem in
                .object([
                    "file": .string(problem.file), "line": problem.line.map { .integer(Int64($0)) } ?? .null,
                    "key": .string(problem.key), "code": .string(problem.code.description),
                    "message": .string(problem.message),
                ])
            }
            let first = error.errors[0]
            var field: String? = nil
            if let prefix {
                field = first.key.hasPrefix(prefix) ? String(first.key.dropFirst(prefix.count)) : nil
            }
            let code: APIError.Code =
                prefix != nil && first.code == .unknownKey ? .unknownField : (prefix != nil ? .invalidField : .badRequest)
            let message = prefix == nil ? "the definitions have \(error.errors.count) problem(s): \(first)" : first.message
            throw APIError(code, message, field: field, extra: ["problems": .array(problems)])
        }
    }
}
