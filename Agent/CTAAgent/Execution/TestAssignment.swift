public import CTACore
import Synchronization

/// One test to run on this machine, with everything its results need.
public struct TestAssignment: Sendable {
    /// What the execution's work shares (ids, environment, timeouts).
    public var execution: ExecutionContext
    /// The dispatch attempt (or, in parallel mode, the test's attempt); copied into every result.
    public var attempt: Int
    /// This machine; copied into every result.
    public var machine: MachineName
    /// The test.
    public var test: TestDefinition
    /// In parallel mode, the test's index in the suite; copied into every result.
    public var index: Int?
    /// The test's own directory (absolute). The executor wipes it if it exists (a leftover of an interrupted run),
    /// creates `work/`, `artifacts/` and `logs/` in it, and removes it after the run unless
    /// ``TestExecutor/Configuration/keepWorkDirectory`` is set.
    public var directory: String

    /// Creates an assignment.
    public init(
        execution: ExecutionContext,
        attempt: Int = 1,
        machine: MachineName,
        test: TestDefinition,
        index: Int? = nil,
        directory: String
    ) {
        self.execution = execution
        self.attempt = attempt
        self.machine = machine
        self.test = test
        self.index = index
        self.directory = directory
    }

    /// The work directory: inputs land here and stages run here (or in their `cwd` below it).
    public var workDirectory: String { directory + "/work" }
    /// Where stages drop files to be attached (`CTA_ARTIFACTS_DIR`).
    public var artifactsDirectory: String { directory + "/artifacts" }
    /// Where the stage logs are written.
    public var logDirectory: String { directory + "/logs" }
}

/// Why a test was stopped from outside.
public enum TestStopCause: Sendable, Hashable {
    /// `execution.cancel` with cause `requested` or `system`; the reason is the cancel event's.
    case cancelled(reason: String)
    /// The execution's running timeout passed (or `execution.cancel` with cause `timeout`).
    case executionTimeout
    /// The agent is shutting down and cancels running work.
    case shutdown

    /// The message of the test-level result of a test stopped for this cause.
    public var message: String {
        switch self {
        case .cancelled(let reason): "cancelled: \(reason)"
        case .executionTimeout: "execution running timeout reached"
        case .shutdown: "agent shutting down"
        }
    }

    /// How the running stage is stopped: `.timedOut` for the execution's timeout, `.cancelled` otherwise.
    var stageReason: StageHandle.StopReason {
        self == .executionTimeout ? .timedOut : .cancelled
    }
}

/// Stops a running test from outside: the runtime keeps it while ``TestExecutor/run(_:control:onLog:)`` runs and
/// calls ``stop(_:)`` on `execution.cancel`, on the execution's running timeout, or when the agent shuts down.
///
/// The executor also uses it for the test's own deadline (`timeoutMs`), so a control serves exactly one run.
public final class TestControl: Sendable {
    /// What stopped the test first.
    enum Stop: Hashable, Sendable {
        case external(TestStopCause)
        /// The test's `timeoutMs` passed.
        case deadline
    }

    private struct State {
        var cause: TestStopCause?
        var first: Stop?
        var handle: StageHandle?
    }

    private let state = Mutex(State())

    /// Creates a control for one run.
    public init() {}

    /// Stops the running stage (``StageHandle/stop(_:)`` with `.timedOut` for ``TestStopCause/executionTimeout``,
    /// `.cancelled` otherwise: stop command, SIGTERM, grace period, SIGKILL) and prevents further inputs and stages.
    /// The first cause wins; later calls change nothing. Returns at once; safe from any thread.
    public func stop(_ cause: TestStopCause) {
        let handle = state.withLock { state -> StageHandle? in
            guard state.cause == nil else { return nil }
            state.cause = cause
            guard state.first == nil else { return nil }
            state.first = .external(cause)
            return state.handle
        }
        handle?.stop(cause.stageReason)
    }

    /// The cause given to the first ``stop(_:)``, if any.
    public var stopCause: TestStopCause? { state.withLock { $0.cause } }

    // MARK: Executor side

    /// What stopped the test first: an outside cause or the test's deadline.
    var firstStop: Stop? { state.withLock { $0.first } }

    /// Marks the test's deadline as passed and stops the running stage with `.timedOut`, unless something stopped
    /// the test already.
    func expireDeadline() {
        let handle = state.withLock { state -> StageHandle? in
            guard state.first == nil else { return nil }
            state.first = .deadline
            return state.handle
        }
        handle?.stop(.timedOut)
    }

    /// Makes `handle` the running stage; stops it at once if the test was already stopped.
    func attach(_ handle: StageHandle) {
        let first = state.withLock { state -> Stop? in
            state.handle = handle
            return state.first
        }
        switch first {
        case .external(let cause): handle.stop(cause.stageReason)
        case .deadline: handle.stop(.timedOut)
        case nil: break
        }
    }

    /// Forgets the running stage.
    func detach() {
        state.withLock { $0.handle = nil }
    }
}

/// A piece of a running stage's output, for an `execution.log` event.
public struct LiveLogChunk: Sendable, Hashable {
    /// The stage (an input's synthetic stage is named `input-git-<n>`).
    public var stage: String
    /// The stream: `combined` when the runner merges stdout and stderr.
    public var stream: LogStream
    /// The raw byte offset of the chunk in the stage's stream.
    public var offset: UInt64
    /// Valid UTF-8 text, at most ``TestExecutor/Configuration/liveLogChunkBytes`` bytes.
    public var text: String
    /// Whether this is the stream's last chunk for the stage.
    public var final: Bool

    /// Creates a chunk.
    public init(stage: String, stream: LogStream, offset: UInt64, text: String, final: Bool) {
        self.stage = stage
        self.stream = stream
        self.offset = offset
        self.text = text
        self.final = final
    }
}

/// What ``TestExecutor/run(_:control:onLog:)`` produced.
public struct TestRunOutcome: Sendable {
    /// The `test.result` payloads, at least one, with execution id, machine, attempt, test id and index set:
    /// one per report case, then the test-level result when there is one.
    public var results: [TestResult]
    /// The outside cause that stopped the test, when it took effect (a stage was stopped, or inputs or stages were
    /// left out because of it); nil when the test ran to its end or its own deadline stopped it.
    public var stopCause: TestStopCause?
    /// When the run began.
    public var startedAt: Timestamp
    /// When the run ended, attachments stored and the directory cleaned up.
    public var finishedAt: Timestamp

    /// Creates an outcome.
    public init(results: [TestResult], stopCause: TestStopCause?, startedAt: Timestamp, finishedAt: Timestamp) {
        self.results = results
        self.stopCause = stopCause
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}
