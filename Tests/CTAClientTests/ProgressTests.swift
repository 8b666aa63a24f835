import CTAClient
import Foundation
import Synchronization
import Testing

@Suite("Run progress")
struct ProgressTests {
    static let execution = Execution(
        id: "01JX", scenario: "smoke", runMode: "parallel", phase: "running", tests: 4, machines: ["m1", "m2"])

    static func result(_ id: String, _ test: String, _ status: String, machine: String = "m1", message: String? = nil)
        -> TestResultItem
    {
        TestResultItem(
            eventId: id, test: test, attempt: 1, machine: machine, status: status, durationMs: 1500, message: message)
    }

    @Test("each result counts once; a test counts as done once per machine")
    func counting() {
        var progress = RunProgress(execution: Self.execution)
        #expect(progress.total == 4)
        let first = progress.record(Self.result("e1", "a", "ok"))
        #expect(first)
        let repeated = progress.record(Self.result("e1", "a", "ok"))
        #expect(!repeated)
        // Two cases of one JUnit report: two results, one test done.
        let secondCase = progress.record(Self.result("e2", "b", "ok"))
        #expect(secondCase)
        let failure = progress.record(Self.result("e3", "b", "failed", message: "expected 2\ngot 3"))
        #expect(failure)
        #expect(progress.done == 2)
        #expect(progress.counts == StatusCounts(ok: 2, failed: 1))
        var stress = Self.execution
        stress.runMode = "stress"
        #expect(RunProgress(execution: stress).total == 8)
    }

    @Test("a terminal gets a bar and a line per failure; a pipe gets a line per result")
    func rendering() {
        var progress = RunProgress(execution: Self.execution)
        progress.record(Self.result("e1", "a", "ok"))
        progress.record(Self.result("e2", "b", "failed", machine: "m2", message: "expected 2\ngot 3"))
        let terminal = ProgressRenderer(style: .plain, interactive: true, barWidth: 8)
        #expect(terminal.bar(progress, elapsed: .seconds(12)) == "[####....] 2/4 tests  1 ok  1 failed  running  0:12")
        #expect(terminal.lines(for: Self.result("e1", "a", "ok")).isEmpty)
        #expect(
            terminal.lines(for: Self.result("e2", "b", "failed", machine: "m2", message: "expected 2\ngot 3"))
                == ["✗ failed b on m2: expected 2"])
        let plain = ProgressRenderer(style: .plain, interactive: false)
        #expect(plain.lines(for: Self.result("e1", "a", "ok")) == ["  ok           m1  a (1.5 s)"])
        #expect(
            plain.lines(for: Self.result("e2", "b", "failed", machine: "m2", message: "boom"))
                == ["  failed       m2  b (1.5 s): boom"])
        var ended = Self.execution
        ended.phase = "finished"
        ended.counts = StatusCounts(ok: 1, failed: 1)
        progress.update(ended)
        #expect(plain.summary(progress, elapsed: .seconds(65)) == "finished: 1 ok, 1 failed — 2 results in 1:05")
    }

    @Test("a pending execution explains itself")
    func pending() {
        var execution = Self.execution
        execution.phase = "pending"
        execution.pending = PendingExplanation(
            summary: "no machine matches", candidates: [.init(machine: "m3", missing: ["no tag os=linux", "draining"])])
        let renderer = ProgressRenderer(style: .plain, interactive: false)
        #expect(renderer.phaseLines(execution) == ["pending: no machine matches", "  m3: no tag os=linux; draining"])
        var progress = RunProgress(execution: Self.execution)
        let changed = progress.update(execution)
        #expect(changed)
        let unchanged = progress.update(execution)
        #expect(!unchanged)
    }

    @Test("the bar is redrawn in place, and lines go above it")
    func output() {
        let written = Mutex("")
        let output = ProgressOutput(interactive: true) { text in written.withLock { $0 += text } }
        output.bar("[..] 0/2")
        output.lines(["✗ failed"])
        output.bar("[#.] 1/2")
        output.finishBar()
        #expect(
            written.withLock { $0 }
                == "\r\u{1B}[2K[..] 0/2\r\u{1B}[2K✗ failed\n\r\u{1B}[2K[#.] 1/2\r\u{1B}[2K")
        let plain = Mutex("")
        let pipe = ProgressOutput(interactive: false) { text in plain.withLock { $0 += text } }
        pipe.bar("[..] 0/2")
        pipe.lines(["a", "b"])
        pipe.finishBar()
        #expect(plain.withLock { $0 } == "a\nb\n")
    }

    @Test("exit status: 0 all ok, 1 a test not ok, 2 not finished")
    func exitStatus() {
        var execution = Self.execution
        execution.phase = "finished"
        execution.counts = StatusCounts(ok: 3, skipped: 1)
        #expect(ExitStatus.forRun(execution, results: StatusCounts(), waitedTooLong: false) == 0)
        #expect(ExitStatus.forRun(execution, results: StatusCounts(inconclusive: 1), waitedTooLong: false) == 1)
        execution.counts.partial = 1
        #expect(ExitStatus.forRun(execution, results: StatusCounts(), waitedTooLong: false) == 1)
        #expect(ExitStatus.forRun(execution, results: StatusCounts(), waitedTooLong: true) == 2)
        for phase in ["timeout", "cancelled", "pending", "running"] {
            execution.phase = phase
            execution.counts = StatusCounts(ok: 1)
            #expect(ExitStatus.forRun(execution, results: StatusCounts(), waitedTooLong: false) == 2)
        }
        #expect(ExitStatus.error == 3)
    }
}
