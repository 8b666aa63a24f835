public import CTACore
public import Foundation
import Glibc
public import Logging
import Synchronization

/// Runs one ``CTACore/Stage`` as a child process and reports a ``StageOutcome``.
///
/// Each stage runs as `/bin/sh -c <run>` started with `posix_spawn` as the leader of its own process group, with
/// standard input from `/dev/null`, in `<work directory>/<stage.cwd>`, with the environment described at
/// ``StageContext``. Standard output and standard error are captured into one log file with head-and-tail
/// retention (``CTAAgentCore/LogRetention``); the omitted middle goes to a spill file next to it.
///
/// Stopping (the stage's `timeoutMs`, ``StageHandle/cancel()``, or cancellation of the task awaiting
/// ``run(_:in:)``) follows one sequence:
/// 1. a note in the log, then the stage's `stop` command, if any, with the same environment and directory, its
///    output in the same log, bounded by ``Configuration/stopCommandTimeout`` (SIGKILL to its group after that);
/// 2. the log file is written out (the evidence is on disk before anything is killed);
/// 3. SIGTERM to the stage's process group, then up to ``Configuration/gracePeriod`` for it to end;
/// 4. SIGKILL to the group; then the shell is reaped and the pipes drained.
///
/// When the shell ends on its own but left processes in its group (background jobs), steps 3 and 4 apply to them.
///
/// Pipes are read and children reaped on one dedicated thread per running stage (`poll` on the pipes and a wake-up
/// pipe), never on Swift's cooperative pool; async callers resume through continuations.
public struct StageRunner: Sendable {
    /// Settings for the runner; every field has a documented default.
    public struct Configuration: Sendable {
        /// How long a stopped stage's process group may take to end after SIGTERM before it gets SIGKILL.
        /// Default 10 seconds.
        public var gracePeriod: Duration
        /// How long the stage's `stop` command may run before its own group gets SIGKILL. Default 15 seconds.
        public var stopCommandTimeout: Duration
        /// Bytes kept from the start of the log. Default 1 MiB.
        public var headBytes: Int
        /// Bytes kept from the end of the log. Default 1 MiB.
        public var tailBytes: Int
        /// How often the log file is rewritten while the stage runs, so it holds recent output. Default 2 seconds.
        public var flushInterval: Duration
        /// How long to keep reading the pipes once the process group is gone (a process that left the group may
        /// still hold them). Default 500 milliseconds.
        public var drainTimeout: Duration
        /// How long to wait for the group to disappear after SIGKILL before giving up. Default 5 seconds.
        public var killTimeout: Duration
        /// The environment every stage starts from. Default: the agent's own environment.
        public var baseEnvironment: [String: String]
        /// How standard output and standard error are captured. Default ``OutputCapture/merged``.
        public var capture: OutputCapture
        /// The shell that runs the command lines. Default `/bin/sh`.
        public var shell: String

        /// Creates a configuration with the defaults described on each property.
        public init(
            gracePeriod: Duration = .seconds(10),
            stopCommandTimeout: Duration = .seconds(15),
            headBytes: Int = 1 << 20,
            tailBytes: Int = 1 << 20,
            flushInterval: Duration = .seconds(2),
            drainTimeout: Duration = .milliseconds(500),
            killTimeout: Duration = .seconds(5),
            baseEnvironment: [String: String] = ProcessInfo.processInfo.environment,
            capture: OutputCapture = .merged,
            shell: String = "/bin/sh"
        ) {
            self.gracePeriod = gracePeriod
            self.stopCommandTimeout = stopCommandTimeout
            self.headBytes = headBytes
            self.tailBytes = tailBytes
            self.flushInterval = flushInterval
            self.drainTimeout = drainTimeout
            self.killTimeout = killTimeout
            self.baseEnvironment = baseEnvironment
            self.capture = capture
            self.shell = shell
        }
    }

    /// How standard output and standard error reach the log.
    public enum OutputCapture: Sendable, Hashable {
        /// One pipe for both (like `2>&1`): the combined log has exactly the order the stage wrote in, but chunks
        /// handed to an output observer are all tagged `.combined`.
        case merged
        /// One pipe each: chunks are tagged `.stdout` / `.stderr`; the combined log interleaves them in the order
        /// they were read, which can differ from the order they were written when both arrive at once.
        case separate
    }

    /// The settings.
    public var configuration: Configuration
    /// Where the runner logs what it does.
    public var logger: Logger

    /// Creates a runner.
    public init(configuration: Configuration = Configuration(), logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts a stage and returns at once; the handle cancels it and delivers its outcome.
    ///
    /// - Parameter onOutput: Called on the runner's thread with each chunk of output as it is read, for live
    ///   streaming; it must return quickly.
    public func start(
        _ stage: Stage,
        in context: StageContext,
        onOutput: (@Sendable (LogStream, [UInt8]) -> Void)? = nil
    ) -> StageHandle {
        let handle = StageHandle()
        let job = StageJob(
            stage: stage, context: context, configuration: configuration, logger: logger, onOutput: onOutput)
        let thread = Thread {
            let outcome = StageSupervisor(job: job, handle: handle).run()
            handle.complete(with: outcome)
        }
        thread.name = "cta-stage-\(stage.name)"
        thread.start()
        return handle
    }

    /// Runs a stage to its end. Cancelling the calling task stops the stage (stop command, SIGTERM, grace period,
    /// SIGKILL) and still returns its outcome once clean-up is done.
    public func run(
        _ stage: Stage,
        in context: StageContext,
        onOutput: (@Sendable (LogStream, [UInt8]) -> Void)? = nil
    ) async -> StageOutcome {
        let handle = start(stage, in: context, onOutput: onOutput)
        return await withTaskCancellationHandler {
            await handle.outcome()
        } onCancel: {
            handle.cancel()
        }
    }
}

/// Where and for whom a stage runs.
///
/// The child's environment is, later entries winning: ``StageRunner/Configuration/baseEnvironment``, then
/// ``executionEnvironment``, then ``testEnvironment``, then the stage's `env`, then these variables, which a
/// definition cannot override:
///
/// | variable | value |
/// |---|---|
/// | `CTA_EXECUTION_ID` | the execution's id (a lower-case UUID) |
/// | `CTA_TEST_ID` | the test's id |
/// | `CTA_STAGE` | the stage's name |
/// | `CTA_WORK_DIR` | the test's work directory (absolute) |
/// | `CTA_ARTIFACTS_DIR` | where the test drops files to attach (absolute) |
///
/// The `stop` command additionally gets `CTA_STOP_REASON` (`timeout` or `cancel`) and `CTA_STAGE_PGID`, the
/// process group id of the stage being stopped.
public struct StageContext: Sendable {
    /// The execution this stage belongs to.
    public var executionID: ExecutionID
    /// The test this stage belongs to.
    public var testID: TestID
    /// The test's work directory (absolute); the stage's `cwd` is relative to it.
    public var workDirectory: String
    /// Where the test drops files to be attached (absolute).
    public var artifactsDirectory: String
    /// Where the log and spill files are written (absolute); created if missing.
    public var logDirectory: String
    /// The execution's environment.
    public var executionEnvironment: [String: String]
    /// The test's environment.
    public var testEnvironment: [String: String]

    /// Creates a context.
    public init(
        executionID: ExecutionID,
        testID: TestID,
        workDirectory: String,
        artifactsDirectory: String,
        logDirectory: String,
        executionEnvironment: [String: String] = [:],
        testEnvironment: [String: String] = [:]
    ) {
        self.executionID = executionID
        self.testID = testID
        self.workDirectory = workDirectory
        self.artifactsDirectory = artifactsDirectory
        self.logDirectory = logDirectory
        self.executionEnvironment = executionEnvironment
        self.testEnvironment = testEnvironment
    }

    /// The `CTA_*` variables for a stage.
    public func ctaVariables(stage: Stage) -> [String: String] {
        [
            "CTA_EXECUTION_ID": executionID.description,
            "CTA_TEST_ID": testID.rawValue,
            "CTA_STAGE": stage.name,
            "CTA_WORK_DIR": workDirectory,
            "CTA_ARTIFACTS_DIR": artifactsDirectory,
        ]
    }

    /// The complete environment of a stage's command (see the table above).
    public func environment(for stage: Stage, base: [String: String]) -> [String: String] {
        var environment = base
        environment.merge(executionEnvironment) { $1 }
        environment.merge(testEnvironment) { $1 }
        environment.merge(stage.env) { $1 }
        environment.merge(ctaVariables(stage: stage)) { $1 }
        return environment
    }

    /// The absolute working directory of a stage: the work directory joined with the stage's `cwd`.
    public func workingDirectory(for stage: Stage) -> String {
        guard let cwd = stage.cwd, !cwd.isEmpty, cwd != "." else { return workDirectory }
        return (workDirectory as NSString).appendingPathComponent(cwd)
    }

    /// The base name of a stage's log files: the stage name with anything but letters, digits, `.`, `_` and `-`
    /// replaced by `_`.
    public static func logBaseName(for stage: Stage) -> String {
        let safe = stage.name.unicodeScalars.map { scalar -> Character in
            let allowed =
                ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar)
                || ("0"..."9").contains(scalar) || scalar == "." || scalar == "_" || scalar == "-"
            return allowed ? Character(scalar) : "_"
        }
        let name = String(safe)
        return name.isEmpty || name.hasPrefix(".") ? "stage\(name)" : name
    }
}

/// A running stage: stop it, or wait for its outcome.
public final class StageHandle: Sendable {
    /// Why a stage is stopped before its end.
    public enum StopReason: Sendable, Hashable {
        /// Someone cancelled it; the outcome has `cancelled`.
        case cancelled
        /// A deadline above the stage (the test's or the execution's) passed; the outcome has `timedOut`.
        case timedOut
    }

    private struct State {
        var stopRequest: StopReason?
        var outcome: StageOutcome?
        var waiters: [CheckedContinuation<StageOutcome, Never>] = []
        /// The write end of the runner thread's wake-up pipe, while the thread listens.
        var wakeFD: Int32 = -1
    }

    private let state = Mutex(State())

    init() {}

    /// Cancels the stage: stop command, log flush, SIGTERM, grace period, SIGKILL. Returns at once; idempotent.
    public func cancel() { stop(.cancelled) }

    /// Stops the stage for a reason (the first request wins). Returns at once.
    public func stop(_ reason: StopReason) {
        state.withLock { state in
            guard state.stopRequest == nil, state.outcome == nil else { return }
            state.stopRequest = reason
            if state.wakeFD >= 0 {
                var byte: UInt8 = 1
                _ = Glibc.write(state.wakeFD, &byte, 1)
            }
        }
    }

    /// Waits for the stage's outcome (after clean-up). Not cancellable: cancel the stage instead.
    public func outcome() async -> StageOutcome {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> StageOutcome? in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    // MARK: Runner thread

    /// The stop request, if any.
    var stopRequest: StopReason? { state.withLock { $0.stopRequest } }

    /// Registers the runner thread's wake-up descriptor; a stop request writes a byte to it.
    func attachWakeup(_ fd: Int32) {
        state.withLock { $0.wakeFD = fd }
    }

    /// Forgets the wake-up descriptor; after this returns no one writes to it, so it may be closed.
    func detachWakeup() {
        state.withLock { $0.wakeFD = -1 }
    }

    func complete(with outcome: StageOutcome) {
        let waiters = state.withLock { state -> [CheckedContinuation<StageOutcome, Never>] in
            state.outcome = outcome
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }
}

/// Everything the runner thread needs, all `Sendable`.
struct StageJob: Sendable {
    var stage: Stage
    var context: StageContext
    var configuration: StageRunner.Configuration
    var logger: Logger
    var onOutput: (@Sendable (LogStream, [UInt8]) -> Void)?
}
