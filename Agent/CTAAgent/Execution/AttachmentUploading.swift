public import CTACore
import Foundation
import Glibc
import Logging

/// Where a finished test's files go before its results are published: `PUT /v1/attachments/{id}` on the
/// coordinator's API or on the gateway.
public protocol AttachmentUploading: Sendable {
    /// Uploads `content`, the file `reference` describes. Idempotent: the server keeps one copy per id.
    func upload(
        _ reference: AttachmentReference, content: [UInt8], execution: ExecutionID, test: TestID, machine: MachineName
    ) async throws(UploadFailure)
}

/// Why an upload failed, and whether trying again can help.
public struct UploadFailure: Error, Sendable, CustomStringConvertible {
    /// True when the server refused the upload itself (too large, no such execution, a revoked token): it is not
    /// retried. False for outages (no connection, 5xx, a timeout).
    public var permanent: Bool
    public var message: String

    public init(permanent: Bool, _ message: String) {
        self.permanent = permanent
        self.message = message
    }

    public var description: String { message }
}

/// Uploads a test's evidence, retrying outages until a deadline; what cannot be uploaded is taken out of the
/// references (a result never refers to a file the server does not have) and listed in custom
/// `skippedAttachments` with the reason. An uploaded file leaves the agent's store.
struct EvidenceUpload {
    let uploader: any AttachmentUploading
    let store: AttachmentStore
    /// How long outages are retried, counted from the start of the upload of the test's files.
    let timeout: Duration
    let logger: Logger
    /// The first wait after a failed attempt; it doubles up to ``maximumDelay``.
    var firstDelay: Duration = .milliseconds(250)
    var maximumDelay: Duration = .seconds(5)

    func upload(_ evidence: Evidence, execution: ExecutionID, test: TestID, machine: MachineName) async -> Evidence {
        var evidence = evidence
        let deadline = ContinuousClock.now + timeout
        /// Why the test's uploads stopped: after an outage outlasted the timeout the other files are not tried.
        var stopped: String?
        func skip(_ reference: AttachmentReference, _ reason: String) {
            logger.warning(
                "attachment not uploaded",
                metadata: ["cta.attachment": "\(reference.id)", "cta.file": "\(reference.name)", "cta.error": "\(reason)"])
            evidence.skipped.append(
                .object([
                    "path": .string(reference.name), "size": .integer(Int64(clamping: reference.size)),
                    "reason": .string("not uploaded: \(reason)"),
                ]))
        }
        func send(_ reference: AttachmentReference) async -> Bool {
            if let stopped {
                skip(reference, stopped)
                return false
            }
            let path = store.path(for: reference.id)
            guard let content = await onDedicatedThread("cta-attachment-read", { FileOperations.read(path) }) else {
                skip(reference, "the file is no longer in the agent's store \(path)")
                return false
            }
            var delay = firstDelay
            while true {
                let failure: UploadFailure
                do throws(UploadFailure) {
                    try await uploader.upload(reference, content: content, execution: execution, test: test, machine: machine)
                    _ = await onDedicatedThread("cta-attachment-remove") { unlink(path) }
                    return true
                } catch {
                    failure = error
                }
                let now = ContinuousClock.now
                guard !failure.permanent, !Task.isCancelled, now + delay < deadline else {
                    if failure.permanent {
                        skip(reference, failure.message)
                    } else {
                        let reason = Task.isCancelled ? failure.message : "\(failure.message) (gave up after \(timeout))"
                        stopped = reason
                        skip(reference, reason)
                    }
                    return false
                }
                logger.info(
                    "attachment upload failed; retrying",
                    metadata: ["cta.attachment": "\(reference.id)", "cta.error": "\(failure.message)", "cta.retry.delay": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, maximumDelay)
            }
        }
        if let log = evidence.log, await !send(log) { evidence.log = nil }
        if let screenshot = evidence.screenshot, await !send(screenshot) { evidence.screenshot = nil }
        var kept: [AttachmentReference] = []
        for reference in evidence.attachments where await send(reference) { kept.append(reference) }
        evidence.attachments = kept
        return evidence
    }
}
