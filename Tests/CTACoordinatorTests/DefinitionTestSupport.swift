import CTACoordinator
import Foundation
import Testing
import CTADefinitions

/// Files of this repository, found from this source file.
enum RepositoryFile {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // CTACoordinatorTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

/// Valid definitions other documents can refer to: test `t1`, suite `suite1`, configurations `pool` (group
/// `linux`) and `anywhere` (no criteria).
let baseDefinitions = """
    kind: test
    id: t1
    stages:
      - name: run
        run: "true"
    ---
    kind: suite
    id: suite1
    tests: [t1]
    ---
    kind: configuration
    id: pool
    groups: [linux]
    ---
    kind: configuration
    id: anywhere
    """

/// Loads `text` as `defs.yaml` next to the base definitions (`base.yaml`).
func loadWithBase(_ text: String) throws(DefinitionErrors) -> DefinitionSet {
    try DefinitionLoader.load(sources: [
        DefinitionSource(path: "base.yaml", text: baseDefinitions), DefinitionSource(path: "defs.yaml", text: text),
    ])
}

/// The errors loading `text` next to the base definitions gives, empty (with an issue recorded) when it loads.
func problems(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [DefinitionError] {
    do throws(DefinitionErrors) {
        _ = try loadWithBase(text)
        Issue.record("loaded without errors", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.errors
    }
}

/// The descriptions of those errors: `defs.yaml:4: scenario s: suite: duplicate key; first set at line 3`.
func described(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String] {
    problems(text, sourceLocation: sourceLocation).map(\.description)
}

/// A fresh directory under the system's temporary directory.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("cta-definitions-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
