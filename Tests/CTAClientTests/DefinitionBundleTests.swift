import CTAClient
import CTADefinitions
import Foundation
import Testing

@Suite("Definition bundle")
struct DefinitionBundleTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("examples").path

    @Test("the examples become one stream that reads back into the same definitions")
    func examples() throws {
        let bundle = try DefinitionBundle.load(paths: [Self.examples])
        #expect(bundle.counts == ["test": 8, "suite": 1, "configuration": 1, "scenario": 4])
        let original = try DefinitionLoader.load(path: Self.examples)
        let sent = try DefinitionLoader.load(text: bundle.text, path: "stream.yaml")
        #expect(sent == original)
        // Tests come first, scenarios last: the server can check references in one pass.
        #expect(bundle.text.hasPrefix("\"kind\": \"test\"\n"))
        // Each line of the stream names its origin.
        let lines = bundle.text.split(separator: "\n", omittingEmptySubsequences: false)
        let scenarioLine = try #require(lines.firstIndex { $0 == "\"id\": \"example-parallel\"" }) + 1
        #expect(bundle.origin(ofLine: scenarioLine) == .init(file: Self.examples + "/scenarios.yaml", line: 4))
    }

    @Test("problems are reported with file and line before anything is sent; unknown references are left to the server")
    func problems() throws {
        let directory = NSTemporaryDirectory() + "cta-bundle-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let referencing = directory + "/scenario.yaml"
        try """
            kind: scenario
            id: uses-stored
            suite: stored-suite
            configuration: stored-configuration
            runMode: mono
            """.write(toFile: referencing, atomically: true, encoding: .utf8)
        let bundle = try DefinitionBundle.load(paths: [referencing])
        #expect(bundle.counts == ["scenario": 1])

        let broken = directory + "/broken.yaml"
        try """
            kind: test
            id: t
            stages:
              - name: s
                run: echo
                timeot: 10s
            """.write(toFile: broken, atomically: true, encoding: .utf8)
        do {
            _ = try DefinitionBundle.load(paths: [referencing, broken])
            Issue.record("accepted")
        } catch {
            #expect(error.errors.map(\.description) == [
                "\(broken):6: test t: stages[0].timeot: unknown key; did you mean timeout?"
            ])
        }
        #expect(throws: DefinitionErrors.self) { try DefinitionBundle.load(paths: [directory + "/none.yaml"]) }
    }
}
