import CTACore
import Foundation
import Logging
import Synchronization
import Testing

@testable import CTAAgent

/// An upload target that fails as told, and records what it accepted.
final class RecordingUploader: AttachmentUploading {
    struct Upload: Sendable {
        var reference: AttachmentReference
        var content: [UInt8]
        var execution: ExecutionID
        var test: TestID
        var machine: MachineName
    }

    private struct State {
        var accepted: [Upload] = []
        var attempts: [String: Int] = [:]
    }

    private let state = Mutex(State())
    /// Outages before each file is accepted.
    let outages: Int
    /// Files (by name) refused for good, with the reason.
    let refused: [String: String]

    init(outages: Int = 0, refused: [String: String] = [:]) {
        self.outages = outages
        self.refused = refused
    }

    var accepted: [Upload] { state.withLock { $0.accepted } }
    func attempts(_ name: String) -> Int { state.withLock { $0.attempts[name] ?? 0 } }

    func upload(
        _ reference: AttachmentReference, content: [UInt8], execution: ExecutionID, test: TestID, machine: MachineName
    ) async throws(UploadFailure) {
        let attempt = state.withLock { state -> Int in
            state.attempts[reference.name, default: 0] += 1
            return state.attempts[reference.name]!
        }
        if let reason = refused[reference.name] { throw UploadFailure(permanent: true, reason) }
        if attempt <= outages { throw UploadFailure(permanent: false, "cannot connect: Connection refused") }
        state.withLock {
            $0.accepted.append(
                Upload(reference: reference, content: content, execution: execution, test: test, machine: machine))
        }
    }
}

@Suite("Test executor: evidence is uploaded before the results go out")
struct EvidenceUploadTests {
    let artifactTest = makeTest([
        Stage(name: "run", run: "echo hello; printf 'artifact bytes' > \"$CTA_ARTIFACTS_DIR/out.txt\"")
    ])

    func run(
        _ sandbox: ExecutorSandbox, uploader: RecordingUploader, uploadTimeout: Duration = .seconds(30)
    ) async -> TestResult? {
        var configuration = TestExecutor.Configuration()
        configuration.uploadTimeout = uploadTimeout
        let executor = TestExecutor(
            runner: testRunner(), attachments: sandbox.store, uploader: uploader, configuration: configuration,
            logger: Logger(label: "cta.test.upload"))
        return await executor.run(sandbox.assignment(artifactTest), control: TestControl()).results.first
    }

    @Test("uploads the log and the files after outages; the result refers to them; they leave the agent's store")
    func uploadsAfterOutages() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let uploader = RecordingUploader(outages: 2)
        let result = try #require(await run(sandbox, uploader: uploader))
        let log = try #require(result.log)
        let file = try #require(result.attachments.first)
        #expect(result.attachments.map(\.name) == ["out.txt"])
        #expect(uploader.attempts("test.log") == 3 && uploader.attempts("out.txt") == 3)
        let accepted = Dictionary(uniqueKeysWithValues: uploader.accepted.map { ($0.reference.id, $0) })
        let sentLog = try #require(accepted[log.id])
        #expect(String(decoding: sentLog.content, as: UTF8.self).contains("hello"))
        #expect(SHA256.hash(sentLog.content).hexString == log.sha256 && UInt64(sentLog.content.count) == log.size)
        #expect(sentLog.execution == testExecution.executionID && sentLog.test == TestID(unchecked: "t1"))
        #expect(sentLog.machine.rawValue == "lab-01")
        #expect(accepted[file.id]?.content == Array("artifact bytes".utf8))
        #expect(!sandbox.store.contains(log.id) && !sandbox.store.contains(file.id))
        #expect(result.custom["skippedAttachments"] == nil)
    }

    @Test("a file the server refuses is taken out of the result and listed with the reason; the rest is uploaded")
    func refusedFile() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let uploader = RecordingUploader(refused: ["out.txt": "413: the body is larger than 10 bytes"])
        let result = try #require(await run(sandbox, uploader: uploader))
        #expect(result.log != nil)
        #expect(result.attachments.isEmpty)
        #expect(uploader.attempts("out.txt") == 1, "a refusal is not retried")
        let skipped = try #require(result.custom["skippedAttachments"])
        #expect(
            skipped
                == .array([
                    .object([
                        "path": .string("out.txt"), "size": .integer(14),
                        "reason": .string("not uploaded: 413: the body is larger than 10 bytes"),
                    ])
                ]))
    }

    @Test("an outage longer than the upload timeout: the result still goes out, without the references it cannot keep")
    func outageOutlastsTimeout() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let uploader = RecordingUploader(outages: .max)
        let result = try #require(await run(sandbox, uploader: uploader, uploadTimeout: .seconds(2)))
        #expect(result.status == .ok)
        #expect(result.log == nil && result.attachments.isEmpty)
        #expect(uploader.attempts("test.log") >= 2, "an outage is retried")
        #expect(uploader.attempts("out.txt") == 0, "once an outage outlasted the timeout, the test's other files wait no longer")
        guard case .array(let skipped)? = result.custom["skippedAttachments"] else {
            Issue.record("no skippedAttachments: \(result.custom)")
            return
        }
        #expect(skipped.count == 2)
        for entry in skipped {
            guard case .object(let fields) = entry, case .string(let reason)? = fields["reason"] else {
                Issue.record("\(entry)")
                continue
            }
            #expect(reason.hasPrefix("not uploaded: cannot connect: Connection refused (gave up after"), "\(reason)")
        }
    }
}
