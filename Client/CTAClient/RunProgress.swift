import Foundation

/// What a run has shown so far: the execution as last read and the results seen, each counted once.
public struct RunProgress: Sendable {
    public private(set) var execution: Execution
    public private(set) var counts = StatusCounts()
    public private(set) var results: [TestResultItem] = []
    private var seen: Set<String> = []
    private var finishedTests: Set<String> = []

    public init(execution: Execution) { self.execution = execution }

    /// Records a newer reading of the execution; returns whether its phase or pending explanation changed.
    @discardableResult
    public mutating func update(_ execution: Execution) -> Bool {
        let changed = execution.phase != self.execution.phase || execution.pending != self.execution.pending
        self.execution = execution
        return changed
    }

    /// Records a result; false when it was already seen (the same event id).
    @discardableResult
    public mutating func record(_ result: TestResultItem) -> Bool {
        guard seen.insert(result.eventId).inserted else { return false }
        results.append(result)
        counts.add(result.status)
        finishedTests.insert(result.machine + "\u{0}" + result.test)
        return true
    }

    /// Tests with at least one result (a test is counted once per machine it ran on).
    public var done: Int { finishedTests.count }

    /// The tests expected: the suite's tests, once per machine in stress mode; nil when unknown.
    public var total: Int? {
        guard let tests = execution.tests else { return nil }
        if execution.runMode == "stress" { return tests * max(execution.machines.count, 1) }
        return tests
    }
}

/// How a run's progress is shown: a redrawn bar on a terminal, one line per result otherwise.
public struct ProgressRenderer: Sendable {
    public var style: Style
    /// A terminal: a status bar is redrawn in place and only problems get lines of their own.
    public var interactive: Bool
    /// The width of the bar itself, in characters.
    public var barWidth: Int

    public init(style: Style, interactive: Bool, barWidth: Int = 24) {
        self.style = style
        self.interactive = interactive
        self.barWidth = barWidth
    }

    /// The first line: which execution of which scenario.
    public func started(_ execution: Execution) -> String {
        var text = "execution \(style.bold(execution.id)) of scenario \(execution.scenario)"
        var details: [String] = []
        if let runMode = execution.runMode { details.append(runMode) }
        if let tests = execution.tests { details.append("\(tests) tests") }
        if !details.isEmpty { text += " (\(details.joined(separator: ", ")))" }
        return text
    }

    /// Lines about the execution's phase: running on which machines, or why it is still pending.
    public func phaseLines(_ execution: Execution) -> [String] {
        switch execution.phase {
        case "pending":
            guard let pending = execution.pending else { return [] }
            return ["\(style.yellow("pending")): \(pending.summary)"] + candidateLines(pending)
        case "running":
            let machines = execution.machines.isEmpty ? "" : " on \(execution.machines.joined(separator: ", "))"
            return ["\(style.status("running"))\(machines)"]
        default:
            return []
        }
    }

    func candidateLines(_ pending: PendingExplanation) -> [String] {
        pending.candidates.map { "  \($0.machine): \($0.missing.joined(separator: "; "))" }
    }

    /// The lines a new result gets: every result as a line on a plain output; on a terminal, only those not `ok`.
    public func lines(for result: TestResultItem) -> [String] {
        let isOK = result.status == "ok" || result.status == "skipped"
        if interactive && isOK { return [] }
        if interactive {
            var line = "\(style.red("✗")) \(style.status(result.status)) \(style.bold(result.displayName)) on "
                + result.machine
            if let attempt = result.attempt, attempt > 1 { line += " (attempt \(attempt))" }
            if let message = result.message, !message.isEmpty { line += ": \(Self.oneLine(message))" }
            return [line]
        }
        let status = result.status.padding(toLength: 12, withPad: " ", startingAt: 0)
        var line = "  \(style.status(status)) \(result.machine)  \(result.displayName)"
        if let duration = result.durationMs { line += " (\(HumanFormat.duration(milliseconds: duration)))" }
        if let attempt = result.attempt, attempt > 1 { line += " [attempt \(attempt)]" }
        if !isOK, let message = result.message, !message.isEmpty { line += ": \(Self.oneLine(message))" }
        return [line]
    }

    /// The status bar: `[########........] 5/8 tests  12 ok  1 failed  running  0:12`.
    public func bar(_ progress: RunProgress, elapsed: Duration) -> String {
        var text: String
        if let total = progress.total, total > 0 {
            let done = min(progress.done, total)
            let filled = barWidth * done / total
            text = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled)
                + "] \(done)/\(total) tests"
        } else {
            text = "\(progress.done) tests"
        }
        let counts = progress.counts
        text += "  " + style.green("\(counts.ok) ok")
        text += "  " + (counts.failed > 0 ? style.red("\(counts.failed) failed") : "0 failed")
        let other = counts.partial + counts.inconclusive
        if other > 0 { text += "  " + style.yellow("\(other) other") }
        text += "  \(progress.execution.phase)  \(Self.clock(elapsed))"
        return text
    }

    /// The last line: the end state, the counts, and the reason when it did not finish.
    public func summary(_ progress: RunProgress, elapsed: Duration) -> String {
        let execution = progress.execution
        let counts = execution.counts.total > 0 ? execution.counts : progress.counts
        var text = "\(style.status(execution.phase)): \(counts.ok) ok, \(counts.failed) failed"
        if counts.partial > 0 { text += ", \(counts.partial) partial" }
        if counts.inconclusive > 0 { text += ", \(counts.inconclusive) inconclusive" }
        if counts.skipped > 0 { text += ", \(counts.skipped) skipped" }
        text += " — \(counts.total) results in \(Self.clock(elapsed))"
        if let reason = execution.endReason, !reason.isEmpty { text += " (\(reason))" }
        return text
    }

    /// `m:ss`, or `h:mm:ss` from an hour.
    public static func clock(_ duration: Duration) -> String {
        let seconds = Int(duration.components.seconds)
        if seconds >= 3600 { return String(format: "%d:%02d:%02d", seconds / 3600, (seconds % 3600) / 60, seconds % 60) }
        return String(format: "%d:%02d", seconds / 60, seconds % 60)
    }

    static func oneLine(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.count > 300 ? String(line.prefix(300)) + "…" : line
    }
}

/// Where progress is written: lines above a status bar that is redrawn in place on a terminal.
public final class ProgressOutput: @unchecked Sendable {
    // Safe: used only from the one task that follows an execution; the lock guards against misuse anyway.
    private let lock = NSLock()
    private let write: @Sendable (String) -> Void
    private let interactive: Bool
    private var barShown = false

    public init(interactive: Bool, write: @escaping @Sendable (String) -> Void) {
        self.interactive = interactive
        self.write = write
    }

    /// Writes lines, above the bar on a terminal.
    public func lines(_ lines: [String]) {
        guard !lines.isEmpty else { return }
        lock.withLock {
            if barShown { write("\r\u{1B}[2K") }
            barShown = false
            write(lines.joined(separator: "\n") + "\n")
        }
    }

    /// Redraws the bar (a terminal only).
    public func bar(_ text: String) {
        guard interactive else { return }
        lock.withLock {
            write("\r\u{1B}[2K" + text)
            barShown = true
        }
    }

    /// Clears the bar.
    public func finishBar() {
        lock.withLock {
            if barShown { write("\r\u{1B}[2K") }
            barShown = false
        }
    }
}

/// The exit status of `cta run` and the other commands.
public enum ExitStatus {
    /// Finished, every result ok (or skipped).
    public static let success: Int32 = 0
    /// Finished, some result not ok.
    public static let testsFailed: Int32 = 1
    /// The execution did not finish: timeout, cancelled, still pending or running when `--timeout` passed.
    public static let notFinished: Int32 = 2
    /// Bad usage, configuration, connection, or an error from the API.
    public static let error: Int32 = 3

    /// The status for an execution as last read; `waitedTooLong` when `--timeout` passed before it ended.
    public static func forRun(_ execution: Execution, results: StatusCounts, waitedTooLong: Bool) -> Int32 {
        guard !waitedTooLong, execution.phase == "finished" else { return notFinished }
        // The server's counts, and the results seen here in case they arrived after the counts were read.
        return max(execution.counts.notOK, results.notOK) == 0 ? success : testsFailed
    }
}
