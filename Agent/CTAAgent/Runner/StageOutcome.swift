/// How one run of a stage ended. A stage's outcome is a value: launch problems, timeouts and cancellation are
/// reported here, never thrown.
public struct StageOutcome: Sendable, Hashable {
    /// How the stage's main process (the shell) ended.
    public enum Termination: Sendable, Hashable, CustomStringConvertible {
        /// It exited with this code.
        case exited(Int32)
        /// A signal ended it.
        case signalled(Int32)
        /// It never ran (see ``StageOutcome/failure``).
        case notStarted

        public var description: String {
            switch self {
            case .exited(let code): "exit \(code)"
            case .signalled(let signal): "signal \(signal)"
            case .notStarted: "not started"
            }
        }
    }

    /// What the stop command did, when the stage was stopped and had one.
    public struct StopCommand: Sendable, Hashable {
        /// How the stop command ended; `.notStarted` when it could not be spawned.
        public var termination: Termination
        /// Whether it overran ``StageRunner/Configuration/stopCommandTimeout`` and was killed.
        public var timedOut: Bool
        /// How long it ran.
        public var duration: Duration
    }

    /// Where the output went.
    public struct Log: Sendable, Hashable {
        /// The combined log (stdout and stderr): head, a marker line when the middle was spilled, tail.
        public var path: String
        /// The file holding the omitted middle; nil when nothing was spilled.
        public var spillPath: String?
        /// How many bytes the stage wrote in all (runner notes included).
        public var totalBytes: UInt64
        /// How many bytes are in the spill file rather than in place.
        public var spilledBytes: UInt64
    }

    /// How the main process ended.
    public var termination: Termination
    /// From spawn to the end of clean-up (the process group gone, the log written).
    public var duration: Duration
    /// Whether the stage ran past its `timeoutMs` (or was stopped with ``StageHandle/StopReason/timedOut``).
    public var timedOut: Bool
    /// Whether the stage was cancelled.
    public var cancelled: Bool
    /// Why the stage could not run or did not run its command; nil when the command ran.
    public var failure: StageLaunchError?
    /// The log files.
    public var log: Log
    /// The stop command, when one ran.
    public var stopCommand: StopCommand?
    /// The process group the stage ran in (the pid of its shell); nil when it did not start.
    public var processGroupID: Int32?
    /// Whether the process group had to be sent SIGKILL (it outlived the grace period).
    public var killed: Bool
    /// Whether processes of the group were still alive when the runner gave up waiting after SIGKILL (a process
    /// in uninterruptible sleep); normally false.
    public var processesRemained: Bool

    /// Whether the stage ran to the end on its own and exited 0.
    public var succeeded: Bool {
        termination == .exited(0) && !timedOut && !cancelled && failure == nil
    }

    /// One line for humans: `exit 3`, `timed out after 0.3 s`, `command not found: foo`.
    public var summary: String {
        if let failure { return failure.description }
        if timedOut { return "timed out (\(termination))" }
        if cancelled { return "cancelled (\(termination))" }
        return termination.description
    }
}

/// Why a stage did not run its command, in words safe to show a user.
///
/// Match on ``code``; new codes may be added without breaking callers.
public struct StageLaunchError: Error, Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The kind of problem.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case commandNotFound, commandNotExecutable, workingDirectoryMissing, spawnFailed, logUnavailable
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The shell could not find a command (it exited 127).
        public static let commandNotFound = Code(.commandNotFound)
        /// The shell found a command but could not execute it (it exited 126).
        public static let commandNotExecutable = Code(.commandNotExecutable)
        /// The stage's working directory does not exist or is not a directory.
        public static let workingDirectoryMissing = Code(.workingDirectoryMissing)
        /// The process could not be created (pipes, `posix_spawn`).
        public static let spawnFailed = Code(.spawnFailed)
        /// The log file could not be created.
        public static let logUnavailable = Code(.logUnavailable)

        public var description: String { base.rawValue }
    }

    /// The kind of problem.
    public var code: Code
    /// What happened, safe to show a user: `command not found: foo`.
    public var message: String
    /// Lower-level detail (errno text, the shell's message), for logs.
    public var detail: String?

    /// Creates an error.
    public init(_ code: Code, _ message: String, detail: String? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    public var description: String { message }

    public var debugDescription: String {
        var text = "StageLaunchError(\(code)): \(message)"
        if let detail { text += " [\(detail)]" }
        return text
    }
}
