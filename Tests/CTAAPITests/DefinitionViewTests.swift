import CTACore
import CTADefinitions
import CTAMongo
import Foundation
import Testing

@testable import CTAAPI

@Suite("Definitions as the API answers them")
struct DefinitionViewTests {
    static let file = """
        kind: scenario
        id: nightly
        suite: s
        configuration: c
        runMode: mono
        timeouts: {pending: 90s}
        webhooks:
          - url: https://hooks.example.com/a
            on: [finished]
            secret: first-secret
          - url: https://hooks.example.com/b
            secret: second-secret
        """

    func stored(_ text: String) throws -> (StoredDefinition, ScenarioDefinition) {
        let set = try DefinitionLoader.load(
            sources: [DefinitionSource(path: "s.yaml", text: text)],
            existing: ["suite": ["s"], "configuration": ["c"]])
        let scenario = try #require(set.scenarios.values.first)
        let document = try BSONEncoder().encode(scenario)
        return (StoredDefinition(id: "nightly", owners: ["qa"], definition: document, updatedAt: Date()), scenario)
    }

    @Test("a scenario is answered in file shape, without webhook secrets, with owners and updatedAt")
    func fileShape() throws {
        let (stored, _) = try stored(Self.file)
        guard case .object(let members) = API.view(stored, kind: .scenarios) else {
            Issue.record("not an object")
            return
        }
        #expect(members["kind"] == .string("scenario"))
        #expect(members["timeouts"] == .object(["pending": .string("90s"), "running": .string("1h")]))
        #expect(members["owners"] == .array([.string("qa")]))
        #expect(members["updatedAt"] != nil && members["pendingTimeoutMs"] == nil)
        guard case .array(let hooks)? = members["webhooks"] else {
            Issue.record("no webhooks")
            return
        }
        #expect(hooks.count == 2)
        #expect(hooks.allSatisfy { if case .object(let hook) = $0 { hook["secret"] == nil } else { false } })
    }

    @Test("a scenario sent back without secrets keeps each webhook's secret by URL; a new URL gets none")
    func secretsKept() throws {
        let (stored, _) = try stored(Self.file)
        let edited = """
            kind: scenario
            id: nightly
            suite: s
            configuration: c
            runMode: mono
            webhooks:
              - url: https://hooks.example.com/b
              - url: https://hooks.example.com/new
              - url: https://hooks.example.com/a
                secret: replaced
            """
        var set = try DefinitionLoader.load(
            sources: [DefinitionSource(path: "body", text: edited)], existing: ["suite": ["s"], "configuration": ["c"]])
        API.keepSecrets(of: stored, in: &set)
        let hooks = try #require(set.scenarios.values.first?.webhooks)
        #expect(hooks.map(\.secret) == ["second-secret", nil, "replaced"])
    }
}
