import CTACore
import Foundation
import Testing

@testable import CTAAgentCore

/// The shared corpus of real reports, found by walking up from this file to a directory holding `shared/corpus`.
enum ReportCorpus {
    /// The corpus directory, or `nil` when this checkout has none next to it.
    static let directory: URL? = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("shared/corpus")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), isDirectory.boolValue {
                return candidate
            }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }()

    /// Why corpus tests are skipped, for `.enabled(if:)`.
    static let missingReason: Comment = "no shared/corpus directory above this checkout; corpus tests need ../shared"

    static var isAvailable: Bool { directory != nil }

    /// The names of the files in a corpus folder (`junit` or `tap`), sorted.
    static func files(_ folder: String) throws -> [String] {
        let url = try #require(directory).appendingPathComponent(folder)
        return try FileManager.default.contentsOfDirectory(atPath: url.path).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// A corpus file's bytes.
    static func data(_ folder: String, _ name: String) throws -> Data {
        try Data(contentsOf: try #require(directory).appendingPathComponent(folder).appendingPathComponent(name))
    }

    static func junit(_ name: String) throws -> ParsedReport {
        JUnitParser().parse(try data("junit", name))
    }

    static func tap(_ name: String) throws -> ParsedReport {
        TAPParser().parse(try data("tap", name))
    }
}

extension ParsedReport {
    /// The only result with this name.
    func result(named name: String) throws -> ParsedResult {
        let matches = results.filter { $0.name == name }
        try #require(matches.count == 1, "expected one result named \(name), found \(matches.count)")
        return matches[0]
    }

    /// A one-line-per-result listing, for failure messages.
    var listing: String {
        results.map { "\($0.key) [\($0.status)] \($0.suitePath) \($0.name) — \(($0.message ?? "").prefix(80))".replacingOccurrences(of: "\n", with: "⏎") }
            .joined(separator: "\n") + "\nproblems: \(problems)"
    }
}
