import CTAAgentCore
import CTACore
import Foundation
import Glibc
import Logging

/// What a finished test leaves for its results: attachments, a screenshot, the log, custom data.
struct Evidence: Sendable {
    var attachments: [AttachmentReference] = []
    var screenshot: AttachmentReference?
    var log: AttachmentReference?
    /// The content of `custom.json`, when it is a JSON object.
    var custom: [String: JSONValue] = [:]
    /// Files that were not attached, for custom `skippedAttachments`.
    var skipped: [JSONValue] = []
    /// Why `custom.json` was not merged, for custom `customJSONProblem`.
    var customProblem: String?
}

/// One stage (or input stage) of the test, for the test log: nil outcome when it did not run.
struct StageRecord: Sendable {
    var name: String
    var outcome: StageOutcome?
}

/// Gathers a finished test's evidence into the ``AttachmentStore``. Blocking: runs on a dedicated thread.
enum EvidenceCollector {
    /// A test log up to this size (all stages' output) is one attachment with the spilled middles in place; above
    /// it, the log holds the retained heads and tails and each spilled middle is an attachment of its own.
    static let maximumCombinedLogBytes: UInt64 = 8 << 20
    /// A `custom.json` larger than this is attached, not merged (it would swell every result).
    static let maximumCustomJSONBytes: UInt64 = 64 * 1024

    static func collect(
        directory: String,
        artifacts: String,
        stages: [StageRecord],
        store: AttachmentStore,
        configuration: TestExecutor.Configuration,
        logger: Logger
    ) -> Evidence {
        var evidence = Evidence()
        collectArtifacts(artifacts, into: &evidence, store: store, configuration: configuration, logger: logger)
        collectLog(
            directory: directory, stages: stages, into: &evidence, store: store, configuration: configuration,
            logger: logger)
        return evidence
    }

    // MARK: Artifacts

    private static func collectArtifacts(
        _ root: String, into evidence: inout Evidence, store: AttachmentStore,
        configuration: TestExecutor.Configuration, logger: Logger
    ) {
        // The artifacts directory itself must be a directory, not a link a stage put in its place.
        guard let info = FileOperations.status(root), FileOperations.isDirectory(info) else { return }
        var files = FileOperations.regularFiles(under: root)
        if let index = files.firstIndex(where: { $0.relativePath == "custom.json" }) {
            let file = files[index]
            if file.size > maximumCustomJSONBytes {
                evidence.customProblem =
                    "custom.json is \(file.size) bytes; at most \(maximumCustomJSONBytes) are merged"
            } else if let bytes = FileOperations.read(file.path),
                let object = try? JSONDecoder().decode([String: JSONValue].self, from: Data(bytes))
            {
                evidence.custom = object
                files.remove(at: index)
            } else {
                evidence.customProblem = "custom.json is not a JSON object"
            }
        }
        let screenshotIndex =
            files.firstIndex { $0.name == "screenshot.png" }
            ?? files.firstIndex {
                $0.name.hasPrefix("screenshot") && AttachmentStore.contentType(forName: $0.name).hasPrefix("image/")
            }
        if let screenshotIndex {
            let file = files.remove(at: screenshotIndex)
            if let reference = add(file, store: store, configuration: configuration, into: &evidence, logger: logger) {
                evidence.screenshot = reference
            }
        }
        for file in files {
            guard evidence.attachments.count < configuration.maxAttachments else {
                skip(file, "more than \(configuration.maxAttachments) attachments", into: &evidence)
                continue
            }
            if let reference = add(file, store: store, configuration: configuration, into: &evidence, logger: logger) {
                evidence.attachments.append(reference)
            }
        }
    }

    /// Adds a file to the store, or notes why not.
    private static func add(
        _ file: FileOperations.FoundFile, store: AttachmentStore, configuration: TestExecutor.Configuration,
        into evidence: inout Evidence, logger: Logger
    ) -> AttachmentReference? {
        guard file.size <= configuration.maxAttachmentBytes else {
            skip(file, "larger than \(configuration.maxAttachmentBytes) bytes", into: &evidence)
            return nil
        }
        do {
            return try store.add(file: file.path, name: file.name)
        } catch {
            logger.warning(
                "could not store an attachment", metadata: ["cta.file": "\(file.path)", "cta.error": "\(error)"])
            skip(file, "could not be stored: \(error)", into: &evidence)
            return nil
        }
    }

    private static func skip(_ file: FileOperations.FoundFile, _ reason: String, into evidence: inout Evidence) {
        evidence.skipped.append(
            .object([
                "path": .string(file.relativePath), "size": .integer(Int64(clamping: file.size)),
                "reason": .string(reason),
            ]))
    }

    // MARK: The test log

    /// Writes `<directory>/test.log` (every stage's output under a header line) and stores it as `test.log`.
    private static func collectLog(
        directory: String, stages: [StageRecord], into evidence: inout Evidence, store: AttachmentStore,
        configuration: TestExecutor.Configuration, logger: Logger
    ) {
        guard stages.contains(where: { $0.outcome != nil }) else { return }
        let total = stages.reduce(UInt64(0)) { $0 + ($1.outcome?.log.totalBytes ?? 0) }
        let inline = total <= maximumCombinedLogBytes
        let path = directory + "/test.log"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            logger.warning("could not write the test log", metadata: ["cta.file": "\(path)"])
            return
        }
        var failed = false
        func write(_ bytes: [UInt8]) {
            guard !failed else { return }
            bytes.withUnsafeBytes { raw in
                do throws(FileProblem) {
                    try FileOperations.writeAll(fd, raw, to: path)
                } catch {
                    failed = true
                }
            }
        }
        var spills: [(path: String, name: String)] = []
        for record in stages {
            guard let outcome = record.outcome else {
                write(Array("=== stage '\(record.name)': not run ===\n".utf8))
                continue
            }
            let milliseconds = Milliseconds(outcome.duration).value
            write(Array("=== stage '\(record.name)': \(outcome.summary), \(milliseconds) ms ===\n".utf8))
            var content: [UInt8]
            if inline {
                content = StageLogText.fullOutput(outcome.log) ?? Array("[cta] the stage's log is unreadable\n".utf8)
            } else {
                content = FileOperations.read(outcome.log.path) ?? Array("[cta] the stage's log is unreadable\n".utf8)
                if let spill = outcome.log.spillPath, outcome.log.spilledBytes > 0 {
                    spills.append((spill, (spill as NSString).lastPathComponent))
                }
            }
            if let last = content.last, last != UInt8(ascii: "\n") { content.append(UInt8(ascii: "\n")) }
            write(content)
        }
        close(fd)
        if failed { logger.warning("could not write all of the test log", metadata: ["cta.file": "\(path)"]) }
        do {
            evidence.log = try store.add(file: path, name: "test.log")
        } catch {
            logger.warning("could not store the test log", metadata: ["cta.error": "\(error)"])
        }
        for spill in spills {
            let size = FileOperations.status(spill.path).map { UInt64(max(0, $0.st_size)) } ?? 0
            let file = FileOperations.FoundFile(relativePath: spill.name, path: spill.path, size: size)
            if let reference = add(file, store: store, configuration: configuration, into: &evidence, logger: logger) {
                evidence.attachments.append(reference)
            }
        }
    }
}
