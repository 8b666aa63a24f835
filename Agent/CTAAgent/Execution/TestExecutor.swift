import CTACore
import Foundation
public import Logging

/// Runs one test (inputs, stages, reports, attachments) and turns it into `test.result` payloads.
///
/// ## Directory
/// The assignment's directory is wiped if it exists (a leftover of an interrupted run), then `work/`, `artifacts/`
/// and `logs/` are created in it. Stages run with ``StageContext`` `workDirectory: <dir>/work`,
/// `artifactsDirectory: <dir>/artifacts`, `logDirectory: <dir>/logs` and the execution's and the test's environment
/// on top of the runner's base environment. After the run the directory is removed, unless
/// ``Configuration/keepWorkDirectory``.
///
/// ## Inputs
/// Inputs run first, in order; `<n>` below is an input's position, from 1.
/// - `git`: a stage named `input-git-<n>` run by the same ``StageRunner`` (so logs, live output, the test's deadline
///   and stopping apply; its own timeout is 10 minutes):
///   `git init -q <tmp> && git -C <tmp> fetch -q --depth 1 <url> <ref or HEAD> && git -C <tmp> checkout -q
///   FETCH_HEAD`, every argument shell-quoted, with `GIT_TERMINAL_PROMPT=0`. Then `<tmp>/<path>` (or the whole
///   checkout) is moved to `<work>/<into>` (no `into`: the checkout's contents go directly into the work directory;
///   existing directories are merged, an existing file is a failure). A `path` that goes through a symbolic link is
///   refused. URLs and refs starting with `-` are refused.
/// - `file`: copied from the ``AttachmentStore`` when it holds the attachment, verifying size and SHA-256; otherwise
///   the input fails with `file inputs need the attachment service; attachment <id> is not on this machine`.
///
/// A failed input ends the test before any stage: one `inconclusive` result, message
/// `input <n> (git <url>) failed: <summary>` (`(file <name>)` for files), origin `exitCode` of `input-git-<n>` (or
/// `input-file-<n>` with exit code -1: no process ran). Credentials in URLs are masked in messages.
///
/// ## Stages and the test-level verdict
/// Stages run in order. The test's `timeoutMs` is one deadline over inputs and stages: when it passes, the running
/// stage is stopped with `.timedOut`. A stage's own `timeoutMs` is the runner's business. The first of these ends
/// the test (no further stages run):
/// - a mandatory stage that could not start (``StageOutcome/failure``: command not found, working directory
///   missing, …) → `inconclusive`, `stage '<name>' could not start: <failure>`;
/// - a mandatory stage exits non-zero or is killed → `failed`, `stage '<name>' failed: exit 3` /
///   `… failed: killed by signal 9`;
/// - a mandatory stage runs past its own `timeoutMs` → `failed`, `stage '<name>' timed out after <ms> ms`;
/// - the test's deadline → `failed`, `test timed out after <ms> ms`;
/// - a stop from outside (``TestControl``) → `inconclusive`, `cancelled: <reason>` /
///   `execution running timeout reached` / `agent shutting down`;
/// - a mandatory report stage whose report is missing, unreadable or holds no case → `failed`,
///   `stage '<name>' wrote no <format> report at <path> (exit N)` (`on its output` for TAP read from the output).
///
/// The same problems in a non-mandatory stage (a timeout included) are noted and the test goes on; the verdict is
/// then at best `partial`, its message naming the stages. When nothing went wrong the verdict is `ok`.
///
/// ## Reports
/// After a stage with a `report` ends (whatever its exit code), its report is read: JUnit at `path`, TAP at `path`
/// or, without one, from the stage's output (the log with its spilled middle put back, so no test point is lost;
/// output over 64 MiB is read as its retained head and tail only, and a report problem says so). `path` is
/// relative to the stage's working directory and may be a glob (`*`, `?`, `[…]`, `**`). Each case becomes a result:
/// the case's name, status, message, description, duration (0 if unknown), origin from
/// ``CTAAgentCore/ParsedResult/resultOrigin(stage:file:)``, custom = the case's custom plus `properties`
/// (`[{name, value}]`), `systemOut`, `systemErr` when present, and the report's problems as `reportProblems`. When
/// a report stage produced cases its non-zero exit is not a failure (the cases carry the verdicts); a signal still
/// is.
///
/// ## Results
/// All report cases, then one test-level result when no report produced cases or when something no case represents
/// went wrong (an input, a launch failure, a failing stage without cases, a timeout, a stop). The test-level result
/// has the test's name, id and description, the verdict, `startedAt`/`finishedAt`/`durationMs` of the whole test
/// (up to the end of the last stage), and origin `exitCode` of the last stage that ran (exit code, or the signal's
/// name; -1 when nothing ran). Its custom holds `reportProblems` of reports that produced no case.
///
/// ## Evidence
/// After the stages, also after a failure or a stop, every regular file under `artifacts/` (recursively, symbolic
/// links not followed, in path order) is copied into the ``AttachmentStore`` under its file name, within
/// ``Configuration/maxAttachments`` and ``Configuration/maxAttachmentBytes``; files left out are listed in custom
/// `skippedAttachments` (`[{path, size, reason}]`). `screenshot.png` (else the first image whose name starts with
/// `screenshot`) becomes the screenshot. `custom.json` at the artifacts root, when it is a JSON object of at most
/// 64 KiB, is merged into every result's custom (the executor's own keys win) instead of being attached. The test
/// log (`test.log`, text/plain) holds every stage's output under a header line, spilled middles in place; when the
/// stages wrote more than 8 MiB together it holds the retained heads and tails and each spilled middle becomes an
/// attachment named as its marker line says. Every result of the test carries the same attachments, screenshot and
/// log.
///
/// ## Live output
/// With `onLog`, each stage's output is coalesced per stream (see ``CTAAgentCore/LiveLogCoalescer``) into chunks of
/// valid UTF-8 of at most ``Configuration/liveLogChunkBytes``, sent when full or ``Configuration/liveLogInterval``
/// after their first byte; at most ``Configuration/liveLogLimitBytes`` per stage and stream, then one note. Every
/// stage ends each of its streams with a `final` chunk (empty if need be).
///
/// ## Blocking work
/// Directory set-up and removal, input copies and moves, report reading and parsing, and evidence collection run on
/// dedicated threads, never on Swift's cooperative pool.
public struct TestExecutor: Sendable {
    /// Settings for the executor; every field has a documented default.
    public struct Configuration: Sendable {
        /// A file larger than this is not attached; it is listed in custom `skippedAttachments`. Default 64 MiB, the
        /// servers' default upload limit.
        public var maxAttachmentBytes: UInt64
        /// At most this many artifacts are attached (the screenshot and spilled logs aside); the others are listed
        /// in custom `skippedAttachments`. Default 64.
        public var maxAttachments: Int
        /// Keep the test's directory after the run (for debugging). Default false: it is removed once the evidence
        /// is in the attachment store.
        public var keepWorkDirectory: Bool
        /// The most UTF-8 bytes of text per live chunk; capped at the protocol's 16 KiB. Default 16 KiB.
        public var liveLogChunkBytes: Int
        /// How long output may wait before it is sent as a live chunk. Default 1 second.
        public var liveLogInterval: Duration
        /// The most bytes per stage and stream sent live; then one note chunk, and the rest is only in the result's
        /// log. Default 1 MiB.
        public var liveLogLimitBytes: Int
        /// The git executable for `git` inputs (a name looked up in `PATH`, or a path). Default `git`.
        public var git: String
        /// How long fetching one `git` input may take. Default 10 minutes.
        public var gitInputTimeout: Duration
        /// How long a test's files are retried while the upload target cannot be reached; then the results go out
        /// without them (listed in custom `skippedAttachments`). Default 10 minutes.
        public var uploadTimeout: Duration

        /// Creates a configuration with the defaults described on each property.
        public init(
            maxAttachmentBytes: UInt64 = 64 << 20,
            maxAttachments: Int = 64,
            keepWorkDirectory: Bool = false,
            liveLogChunkBytes: Int = 16 * 1024,
            liveLogInterval: Duration = .seconds(1),
            liveLogLimitBytes: Int = 1 << 20,
            git: String = "git",
            gitInputTimeout: Duration = .seconds(600),
            uploadTimeout: Duration = .seconds(600)
        ) {
            self.maxAttachmentBytes = maxAttachmentBytes
            self.maxAttachments = maxAttachments
            self.keepWorkDirectory = keepWorkDirectory
            self.liveLogChunkBytes = liveLogChunkBytes
            self.liveLogInterval = liveLogInterval
            self.liveLogLimitBytes = liveLogLimitBytes
            self.git = git
            self.gitInputTimeout = gitInputTimeout
            self.uploadTimeout = uploadTimeout
        }
    }

    /// Runs the stages.
    public var runner: StageRunner
    /// Receives the evidence and holds the files of `file` inputs.
    public var attachments: AttachmentStore
    /// Where the evidence is uploaded before the results are published; nil keeps it in ``attachments`` (the
    /// references then point at files on this machine).
    public var uploader: (any AttachmentUploading)?
    /// The settings.
    public var configuration: Configuration
    /// Where the executor logs what it does.
    public var logger: Logger

    /// Creates an executor.
    public init(
        runner: StageRunner, attachments: AttachmentStore, uploader: (any AttachmentUploading)? = nil,
        configuration: Configuration = .init(), logger: Logger
    ) {
        self.runner = runner
        self.attachments = attachments
        self.uploader = uploader
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs the test. Never throws: every problem becomes a result; returns at least one result.
    ///
    /// Cancelling the calling task stops the test as ``TestStopCause/shutdown`` would; the results still come back
    /// once the stage is stopped and the evidence is stored.
    ///
    /// - Parameters:
    ///   - assignment: The test and where to run it.
    ///   - control: Stops the test from outside; use a new one for each run.
    ///   - onLog: Receives live output chunks, on the runner's or the executor's threads, one at a time and in order
    ///     per stage and stream. It must return quickly.
    public func run(
        _ assignment: TestAssignment,
        control: TestControl,
        onLog: (@Sendable (LiveLogChunk) -> Void)? = nil
    ) async -> TestRunOutcome {
        let run = TestRun(executor: self, assignment: assignment, control: control, onLog: onLog)
        return await run.perform()
    }
}
