import CTACore
import Foundation
import Glibc
import Testing

@testable import CTAAgent

@Suite("Stage runner: timeouts and cancellation")
struct RunnerTerminationTests {
    /// A stage with a shell, two background grandchildren (their pids in `pidFile`) and a foreground sleep.
    static func treeStage(pidFile: String, timeoutMs: UInt64? = nil, stop: String? = "echo stop-evidence") -> Stage {
        Stage(
            name: "tree",
            run: "sleep 30 & echo $! >> \(pidFile); sleep 30 & echo $! >> \(pidFile); echo started; sleep 30; wait",
            stop: stop,
            timeoutMs: timeoutMs.map { Milliseconds($0) })
    }

    @Test("a timeout runs the stop command, writes the log, then ends the whole process group")
    func timeout() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let pidFile = sandbox.root + "/pids"
        let outcome = await testRunner(grace: .milliseconds(400)).run(
            Self.treeStage(pidFile: pidFile, timeoutMs: 300), in: sandbox.context())
        #expect(outcome.timedOut)
        #expect(!outcome.cancelled && !outcome.succeeded)
        #expect(ms(outcome.duration) >= 300)
        #expect(ms(outcome.duration) < 300 + 400 + 15_000, "well before the 30 s the tree would sleep")
        #expect(outcome.termination == StageOutcome.Termination.signalled(SIGTERM))
        #expect(!outcome.killed)
        #expect(outcome.stopCommand?.termination == .exited(0))

        let group = try #require(outcome.processGroupID)
        #expect(liveProcesses(inGroup: group).isEmpty)
        let grandchildren = pids(in: pidFile)
        #expect(grandchildren.count == 2)
        #expect(grandchildren.allSatisfy { !isAlive($0) })

        let log = readText(outcome.log.path)
        let started = try #require(log.range(of: "started\n"))
        let evidence = try #require(log.range(of: "stop-evidence\n"))
        let term = try #require(log.range(of: "SIGTERM to process group \(group)"))
        #expect(started.upperBound <= evidence.lowerBound)
        #expect(evidence.upperBound <= term.lowerBound)
        #expect(log.contains("[cta] timed out after"))
    }

    @Test("a child that ignores SIGTERM is killed after the grace period")
    func ignoresTerm() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let pidFile = sandbox.root + "/pids"
        let stage = Stage(
            name: "stubborn", run: "trap '' TERM; sleep 30 & echo $! > \(pidFile); sleep 30",
            timeoutMs: Milliseconds(200))
        let outcome = await testRunner(grace: .milliseconds(500)).run(stage, in: sandbox.context())
        #expect(outcome.timedOut)
        #expect(outcome.killed)
        #expect(outcome.termination == StageOutcome.Termination.signalled(SIGKILL))
        #expect(ms(outcome.duration) >= 200 + 500)
        #expect(ms(outcome.duration) < 200 + 500 + 15_000, "well before the 30 s the stage would sleep")
        #expect(outcome.stopCommand == nil)
        #expect(liveProcesses(inGroup: try #require(outcome.processGroupID)).isEmpty)
        #expect(pids(in: pidFile).allSatisfy { !isAlive($0) })
        #expect(readText(outcome.log.path).contains("SIGKILL to process group"))
    }

    @Test("cancel mid-run: stop command, evidence, the process tree gone")
    func cancelHandle() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let pidFile = sandbox.root + "/pids"
        let started = Collected()
        let handle = testRunner().start(Self.treeStage(pidFile: pidFile), in: sandbox.context()) { stream, bytes in
            started.add(stream, bytes)
        }
        try await waitUntil { started.text(for: .combined).contains("started") }
        handle.cancel()
        handle.cancel()  // idempotent
        let outcome = await handle.outcome()
        #expect(outcome.cancelled && !outcome.timedOut)
        #expect(outcome.stopCommand?.termination == .exited(0))
        #expect(liveProcesses(inGroup: try #require(outcome.processGroupID)).isEmpty)
        #expect(pids(in: pidFile).count == 2)
        #expect(pids(in: pidFile).allSatisfy { !isAlive($0) })
        let log = readText(outcome.log.path)
        #expect(log.contains("[cta] cancelled after"))
        #expect(log.contains("stop-evidence\n"))
        #expect(ms(outcome.duration) < 15_000, "well before the 30 s the tree would sleep")
        // A second wait returns the same outcome.
        #expect(await handle.outcome() == outcome)
    }

    @Test("cancelling the awaiting task stops the stage and still returns its outcome")
    func cancelTask() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let pidFile = sandbox.root + "/pids"
        let runner = testRunner()
        let context = sandbox.context()
        let task = Task { await runner.run(Self.treeStage(pidFile: pidFile), in: context) }
        try await waitUntil { pids(in: pidFile).count == 2 }
        let begin = ContinuousClock.now
        task.cancel()
        let outcome = await task.value
        #expect(outcome.cancelled)
        #expect(ms(ContinuousClock.now - begin) < 3000)
        #expect(liveProcesses(inGroup: try #require(outcome.processGroupID)).isEmpty)
        #expect(pids(in: pidFile).allSatisfy { !isAlive($0) })
    }

    @Test("a stop command that hangs is killed after its own timeout, then the stage is ended")
    func stopCommandTimeout() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let stage = Stage(name: "hang", run: "sleep 30", stop: "echo stopping; sleep 30", timeoutMs: Milliseconds(200))
        let outcome = await testRunner(grace: .milliseconds(300), stopTimeout: .milliseconds(300)).run(
            stage, in: sandbox.context())
        #expect(outcome.timedOut)
        let stop = try #require(outcome.stopCommand)
        #expect(stop.timedOut)
        #expect(stop.termination == StageOutcome.Termination.signalled(SIGKILL))
        #expect(ms(outcome.duration) < 200 + 300 + 300 + 15_000, "well before the 30 s either would sleep")
        #expect(liveProcesses(inGroup: try #require(outcome.processGroupID)).isEmpty)
        #expect(readText(outcome.log.path).contains("stopping\n"))
    }

    @Test("a stop request after the stage ended changes nothing")
    func cancelAfterEnd() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let handle = testRunner().start(Stage(name: "quick", run: "exit 0"), in: sandbox.context())
        let outcome = await handle.outcome()
        handle.cancel()
        #expect(outcome.succeeded)
        #expect(await handle.outcome().cancelled == false)
    }
}

/// Polls a condition every 20 ms for up to 5 seconds.
func waitUntil(_ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while !condition() {
        if ContinuousClock.now > deadline {
            Issue.record("condition not met in time")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}
