import CTACore

/// The test-level verdict of one run, built stage by stage. A plain value: no I/O, no clock.
///
/// The first thing that ends the test (a mandatory failure, a timeout, a stop, a failed input) decides the status
/// and the message; failures of non-mandatory stages are collected and make an otherwise clean test `partial`.
struct TestVerdict: Hashable {
    /// What ended the test early.
    struct Ending: Hashable {
        var status: TestStatus
        var message: String
    }

    /// The first ending, if any.
    private(set) var ending: Ending?
    /// Failures of non-mandatory stages, in order.
    private(set) var problems: [String] = []
    /// How many report cases the stages produced.
    private(set) var reportCases = 0

    /// Whether the test was ended: no further inputs or stages run.
    var isEnded: Bool { ending != nil }

    /// Ends the test; the first ending wins.
    mutating func end(_ status: TestStatus, _ message: String) {
        if ending == nil { ending = Ending(status: status, message: message) }
    }

    /// Notes a failure of a non-mandatory stage.
    mutating func note(_ problem: String) {
        problems.append(problem)
    }

    /// Counts report cases that became results.
    mutating func addCases(_ count: Int) {
        reportCases += count
    }

    /// The test-level status: the ending's, else `partial` when a non-mandatory stage failed, else `ok`.
    var status: TestStatus {
        ending?.status ?? (problems.isEmpty ? .ok : .partial)
    }

    /// The test-level message: the ending's (with the non-mandatory failures before it), or the non-mandatory
    /// failures, or nil for a clean run.
    var message: String? {
        let noted = problems.joined(separator: "; ")
        guard let ending else { return problems.isEmpty ? nil : noted }
        return problems.isEmpty ? ending.message : "\(ending.message) (also: \(noted))"
    }

    /// Whether a test-level result is reported: when no report produced cases, or when something went wrong that no
    /// case represents (an input, a launch failure, a failing stage without cases, a timeout, a stop).
    var needsTestLevelResult: Bool {
        reportCases == 0 || ending != nil || !problems.isEmpty
    }

    /// What one stage's end means for the test.
    enum Judgement: Hashable {
        /// Nothing to report.
        case fine
        /// A non-mandatory stage failed: noted, the test goes on, at best `partial`.
        case problem(String)
        /// The test ends with this status and message.
        case end(TestStatus, String)
    }

    /// How a stage ended, as far as the verdict cares.
    struct StageEnd: Hashable {
        var stage: Stage
        var termination: StageOutcome.Termination
        /// The runner's launch failure (command not found, working directory missing, …).
        var failure: String?
        /// Whether the stage's own `timeoutMs` stopped it.
        var timedOutOnItsOwn: Bool
        /// What stopped it from above (an outside cause or the test's deadline), if that is what ended it.
        var stoppedBy: TestControl.Stop?
        /// The report the stage declared: how many cases it produced and where it was looked for.
        var report: ReportEnd?
        /// How long the stage ran, used when a timeout has no declared length.
        var durationMs: UInt64
    }

    /// What reading a stage's report gave.
    struct ReportEnd: Hashable {
        var format: ReportFormat
        /// `at results.xml`, or `on its output` for TAP read from the stage's output.
        var location: String
        var cases: Int
    }

    /// Judges one stage's end (see `TestExecutor` for the rules).
    static func judge(_ end: StageEnd, testTimeoutMs: UInt64?) -> Judgement {
        let stage = end.stage
        let name = "stage '\(stage.name)'"
        func failing(_ message: String, status: TestStatus = .failed) -> Judgement {
            stage.mandatory ? .end(status, message) : .problem(message)
        }
        switch end.stoppedBy {
        case .external(let cause): return .end(.inconclusive, cause.message)
        case .deadline: return .end(.failed, "test timed out after \(testTimeoutMs ?? end.durationMs) ms")
        case nil: break
        }
        if end.timedOutOnItsOwn {
            return failing("\(name) timed out after \(stage.timeoutMs?.value ?? end.durationMs) ms")
        }
        let cases = end.report?.cases ?? 0
        if let failure = end.failure, cases == 0 {
            return failing("\(name) could not start: \(failure)", status: .inconclusive)
        }
        if let report = end.report {
            if report.cases > 0 {
                // The cases carry the verdicts; a runner exits non-zero when cases fail. A signal is not how a
                // runner reports failed cases, so it still counts.
                if case .signalled(let signal) = end.termination {
                    return failing("\(name) failed: killed by signal \(signal)")
                }
                return .fine
            }
            return failing(
                "\(name) wrote no \(report.format.rawValue) report \(report.location) (\(end.termination))")
        }
        switch end.termination {
        case .exited(0): return .fine
        case .exited(let code): return failing("\(name) failed: exit \(code)")
        case .signalled(let signal): return failing("\(name) failed: killed by signal \(signal)")
        case .notStarted: return failing("\(name) could not start", status: .inconclusive)
        }
    }

    /// Applies a judgement.
    mutating func apply(_ judgement: Judgement) {
        switch judgement {
        case .fine: break
        case .problem(let message): note(message)
        case .end(let status, let message): end(status, message)
        }
    }
}

/// The wire name of a signal (Linux numbering), or `SIG<n>` for one without a common name.
func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
        9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
        16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU",
        23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO",
        30: "SIGPWR", 31: "SIGSYS",
    ]
    return names[signal] ?? "SIG\(signal)"
}

/// The exit-code origin of a stage that ended this way: the exit code, or the signal's name; a process that never
/// ran has exit code -1.
func exitOrigin(stage: String, _ termination: StageOutcome.Termination) -> ResultOrigin {
    switch termination {
    case .exited(let code): .exitCode(stage: stage, exitCode: code, signal: nil)
    case .signalled(let signal): .exitCode(stage: stage, exitCode: nil, signal: signalName(signal))
    case .notStarted: .exitCode(stage: stage, exitCode: -1, signal: nil)
    }
}
