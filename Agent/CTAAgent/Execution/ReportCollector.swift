import CTAAgentCore
import CTACore
import Foundation
import Glibc

/// The cases of one stage's report, ready to become results.
struct CollectedReport: Sendable {
    /// One parsed case and the file it came from (nil: TAP read from the stage's output).
    struct Case: Sendable {
        var result: ParsedResult
        var file: String?
    }

    var format: ReportFormat
    /// Where the report was looked for, for messages: `at results.xml`, `on its output`.
    var location: String
    var cases: [Case] = []
    /// What the parsers (and the reading) found wrong.
    var problems: [String] = []
}

/// Reads the report a stage declared. Blocking: runs on the executor's dedicated threads.
enum ReportCollector {
    /// Reading TAP from a stage's output reads at most this much of it (head, spilled middle and tail); longer
    /// output is read as its retained head and tail only, and a problem says so.
    static let maximumOutputBytes: UInt64 = 64 << 20

    /// Collects the report of `stage`, which ran in `workingDirectory` and logged to `log`.
    static func collect(
        _ spec: ReportSpec, stage: Stage, workingDirectory: String, log: StageOutcome.Log
    ) -> CollectedReport {
        guard let path = spec.path else {
            guard spec.format == .tap else {
                return CollectedReport(
                    format: spec.format, location: "(no path given)", problems: ["a JUnit report needs a path"])
            }
            return fromOutput(stage: stage, log: log)
        }
        var report = CollectedReport(format: spec.format, location: "at \(path)")
        guard FileOperations.isSafeRelativePath(path) else {
            report.problems.append("the report path \(path) leaves the working directory")
            return report
        }
        let files = matchingFiles(path, in: workingDirectory)
        for relative in files {
            guard let bytes = FileOperations.read(FileOperations.join(workingDirectory, relative)) else {
                report.problems.append("could not read \(relative)")
                continue
            }
            let parsed =
                switch spec.format {
                case .junit: JUnitParser().parse(bytes)
                case .tap: TAPParser().parse(bytes)
                }
            report.cases += parsed.results.map { CollectedReport.Case(result: $0, file: relative) }
            let prefix = files.count > 1 ? "\(relative): " : ""
            report.problems += parsed.problems.map { prefix + $0 }
        }
        return report
    }

    /// TAP read from the stage's captured output: the retained log with the spilled middle put back in place.
    private static func fromOutput(stage: Stage, log: StageOutcome.Log) -> CollectedReport {
        var report = CollectedReport(format: .tap, location: "on its output")
        let bytes: [UInt8]
        if log.totalBytes > maximumOutputBytes {
            bytes = FileOperations.read(log.path) ?? []
            report.problems.append(
                "the output was \(log.totalBytes) bytes; only its first and last bytes kept in the log were read")
        } else if let full = StageLogText.fullOutput(log) {
            bytes = full
        } else {
            report.problems.append("could not read the stage's log")
            return report
        }
        let parsed = TAPParser().parse(bytes)
        report.cases = parsed.results.map { CollectedReport.Case(result: $0, file: nil) }
        report.problems += parsed.problems
        return report
    }

    // MARK: Globs

    /// The files a report path names, relative to `directory`, sorted: the path itself, or the regular files its
    /// pattern matches. Patterns use `*`, `?` and `[…]` within one path component (a leading `.` must be matched
    /// explicitly) and `**` for any number of directories; directories reached through symbolic links are not
    /// searched.
    static func matchingFiles(_ pattern: String, in directory: String) -> [String] {
        let components = pattern.split(separator: "/").map(String.init).filter { $0 != "." }
        guard components.contains(where: isPattern) else {
            var isDirectory: ObjCBool = false
            let path = FileOperations.join(directory, pattern)
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue
            else { return [] }
            return [components.joined(separator: "/")]
        }
        var found = Set<String>()
        expand(components[...], directory: directory, relative: "", into: &found, budget: 100_000)
        return found.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    private static func isPattern(_ component: String) -> Bool {
        component.contains { $0 == "*" || $0 == "?" || $0 == "[" }
    }

    private static func expand(
        _ components: ArraySlice<String>, directory: String, relative: String, into found: inout Set<String>,
        budget: Int
    ) {
        guard let component = components.first, found.count < budget else { return }
        let rest = components.dropFirst()
        func child(_ name: String) -> (path: String, relative: String) {
            (directory + "/" + name, relative.isEmpty ? name : relative + "/" + name)
        }
        if component == "**" {
            expand(rest, directory: directory, relative: relative, into: &found, budget: budget)
            for name in (try? FileOperations.entries(of: directory)) ?? [] where !name.hasPrefix(".") {
                let next = child(name)
                guard let info = FileOperations.status(next.path), FileOperations.isDirectory(info) else { continue }
                expand(components, directory: next.path, relative: next.relative, into: &found, budget: budget)
            }
            return
        }
        let names: [String]
        if isPattern(component) {
            names = ((try? FileOperations.entries(of: directory)) ?? []).filter {
                fnmatch(component, $0, FNM_PERIOD) == 0
            }
        } else {
            names = [component]
        }
        for name in names {
            let next = child(name)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: next.path, isDirectory: &isDirectory) else { continue }
            if rest.isEmpty {
                if !isDirectory.boolValue { found.insert(next.relative) }
            } else if isDirectory.boolValue {
                if isPattern(component), let own = FileOperations.status(next.path), FileOperations.isSymlink(own) {
                    continue
                }
                expand(rest, directory: next.path, relative: next.relative, into: &found, budget: budget)
            }
        }
    }
}

/// Reading a stage's log back as the stage wrote it.
enum StageLogText {
    /// The stage's complete output: the retained log with the marker line replaced by the spill file's content;
    /// the retained log itself when nothing was spilled. Nil when the log cannot be read.
    static func fullOutput(_ log: StageOutcome.Log) -> [UInt8]? {
        guard let retained = FileOperations.read(log.path) else { return nil }
        guard let spillPath = log.spillPath, log.spilledBytes > 0 else { return retained }
        let spillName = (spillPath as NSString).lastPathComponent
        let marker = Array(LogRetention.marker(omittedBytes: log.spilledBytes, attachmentName: spillName).utf8)
        guard let at = firstIndex(of: marker, in: retained) else { return retained }
        // The file is head, a newline when the head did not end with one, the marker line, tail; head and tail
        // together are the bytes that were not spilled.
        let kept = Int(log.totalBytes - log.spilledBytes)
        let inserted = retained.count - (marker.count + 1) - kept == 1 ? 1 : 0
        let headEnd = max(0, at - inserted)
        let tailStart = min(retained.count, at + marker.count + 1)
        guard let spilled = FileOperations.read(spillPath) else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(headEnd + spilled.count + retained.count - tailStart)
        out.append(contentsOf: retained[..<headEnd])
        out.append(contentsOf: spilled)
        out.append(contentsOf: retained[tailStart...])
        return out
    }

    /// The first position of `needle` in `haystack`.
    static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard let first = needle.first, needle.count <= haystack.count else { return nil }
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            guard let candidate = haystack[index...last].firstIndex(of: first) else { return nil }
            if haystack[candidate..<(candidate + needle.count)].elementsEqual(needle) { return candidate }
            index = candidate + 1
        }
        return nil
    }
}
