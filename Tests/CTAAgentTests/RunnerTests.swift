import CTACore
import Foundation
import Glibc
import Synchronization
import Testing

@testable import CTAAgent

@Suite("Stage runner: commands, environment, launch problems")
struct RunnerBasicsTests {
    @Test("exit 0 succeeds and its output is in the log")
    func exitZero() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await testRunner().run(Stage(name: "ok", run: "echo hello"), in: sandbox.context())
        #expect(outcome.termination == .exited(0))
        #expect(outcome.succeeded)
        #expect(outcome.failure == nil && !outcome.timedOut && !outcome.cancelled && !outcome.killed)
        #expect(readText(outcome.log.path) == "hello\n")
        #expect(outcome.log.spillPath == nil && outcome.log.spilledBytes == 0)
        #expect(outcome.log.totalBytes == 6)
    }

    @Test("exit 3 is reported as exit 3, not a failure to launch")
    func exitThree() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await testRunner().run(Stage(name: "three", run: "echo failing; exit 3"), in: sandbox.context())
        #expect(outcome.termination == .exited(3))
        #expect(!outcome.succeeded)
        #expect(outcome.failure == nil)
    }

    @Test("a command killed by a signal reports the signal")
    func killedBySignal() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await testRunner().run(Stage(name: "sig", run: "kill -KILL $$"), in: sandbox.context())
        #expect(outcome.termination == StageOutcome.Termination.signalled(SIGKILL))
        #expect(!outcome.succeeded)
    }

    @Test("environment layers and CTA_* variables reach the command, in its working directory")
    func environmentAndDirectory() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        try FileManager.default.createDirectory(atPath: sandbox.work + "/sub/dir", withIntermediateDirectories: true)
        let execution = ExecutionID()
        let context = sandbox.context(
            execution: execution, test: "login test",
            testEnv: ["LAYER": "test", "TEST_ONLY": "t"], executionEnv: ["LAYER": "execution", "EXEC_ONLY": "e"])
        let stage = Stage(
            name: "env",
            run: #"printf '%s|' "$CTA_EXECUTION_ID" "$CTA_TEST_ID" "$CTA_STAGE" "$CTA_WORK_DIR" "#
                + #""$CTA_ARTIFACTS_DIR" "$LAYER" "$TEST_ONLY" "$EXEC_ONLY" "$CTA_BASE"; pwd -P"#,
            cwd: "sub/dir", env: ["LAYER": "stage", "CTA_STAGE": "overridden?"])
        let outcome = await testRunner().run(stage, in: context)
        #expect(outcome.succeeded)
        let realWork = URL(fileURLWithPath: sandbox.work).resolvingSymlinksInPath().path
        let expected =
            [
                execution.description, "login test", "env", sandbox.work, sandbox.artifacts, "stage", "t", "e", "base",
            ].joined(separator: "|") + "|" + realWork + "/sub/dir\n"
        #expect(readText(outcome.log.path) == expected)
    }

    @Test("stdout and stderr are captured in the order they were written")
    func orderedStreams() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let script = (1...50).map { $0 % 2 == 0 ? "echo out\($0)" : "echo err\($0) >&2" }.joined(separator: "; ")
        let outcome = await testRunner().run(Stage(name: "order", run: script), in: sandbox.context())
        let expected = (1...50).map { $0 % 2 == 0 ? "out\($0)\n" : "err\($0)\n" }.joined()
        #expect(readText(outcome.log.path) == expected)
    }

    @Test("separate capture tags chunks by stream")
    func separateStreams() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let seen = Collected()
        let outcome = await testRunner(capture: .separate).run(
            Stage(name: "tags", run: "echo to-out; echo to-err >&2"), in: sandbox.context()
        ) { stream, bytes in seen.add(stream, bytes) }
        #expect(outcome.succeeded)
        #expect(seen.text(for: .stdout) == "to-out\n")
        #expect(seen.text(for: .stderr) == "to-err\n")
        let log = readText(outcome.log.path)
        #expect(log.contains("to-out\n") && log.contains("to-err\n"))
    }

    @Test("a command that does not exist is an outcome naming it")
    func commandNotFound() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await testRunner().run(
            Stage(name: "missing", run: "no-such-command-cta --version"), in: sandbox.context())
        #expect(outcome.termination == .exited(127))
        let failure = try #require(outcome.failure)
        #expect(failure.code == .commandNotFound)
        #expect(failure.message == "command not found: no-such-command-cta")
        #expect(outcome.summary == "command not found: no-such-command-cta")
    }

    @Test("a missing command later in a script is named, not the first word")
    func commandNotFoundLater() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await testRunner().run(
            Stage(name: "later", run: "echo ok && not-there-either arg"), in: sandbox.context())
        #expect(outcome.failure?.message == "command not found: not-there-either")
    }

    @Test("a missing working directory is an outcome, and nothing runs")
    func missingDirectory() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let marker = sandbox.root + "/ran"
        let outcome = await testRunner().run(
            Stage(name: "nocwd", run: "touch \(marker)", cwd: "does/not/exist"), in: sandbox.context())
        #expect(outcome.termination == .notStarted)
        let failure = try #require(outcome.failure)
        #expect(failure.code == .workingDirectoryMissing)
        #expect(failure.message.contains("does/not/exist"))
        #expect(!FileManager.default.fileExists(atPath: marker))
        #expect(readText(outcome.log.path).contains("working directory does not exist"))
    }

    @Test("a shell that cannot be spawned is an outcome")
    func spawnFailure() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        var runner = testRunner()
        runner.configuration.shell = "/nonexistent/sh"
        let outcome = await runner.run(Stage(name: "noshell", run: "true"), in: sandbox.context())
        #expect(outcome.termination == .notStarted)
        #expect(outcome.failure?.code == .spawnFailed)
    }

    @Test("background processes a finished command left in its group are terminated")
    func leftoversTerminated() async throws {
        let sandbox = try RunnerSandbox()
        defer { sandbox.cleanUp() }
        let pidFile = sandbox.root + "/pids"
        let outcome = await testRunner().run(
            Stage(name: "daemon", run: "sleep 30 & echo $! > \(pidFile); echo done"), in: sandbox.context())
        #expect(outcome.termination == .exited(0))
        #expect(ms(outcome.duration) < 15_000, "not waiting for the 30 s the background process would sleep")
        let background = pids(in: pidFile)
        #expect(background.count == 1)
        #expect(background.allSatisfy { !isAlive($0) })
        #expect(liveProcesses(inGroup: try #require(outcome.processGroupID)).isEmpty)
    }
}

/// Output chunks collected from the runner thread.
final class Collected: Sendable {
    private let state = Mutex<[LogStream: [UInt8]]>([:])
    func add(_ stream: LogStream, _ bytes: [UInt8]) { state.withLock { $0[stream, default: []] += bytes } }
    func text(for stream: LogStream) -> String { String(decoding: state.withLock { $0[stream] ?? [] }, as: UTF8.self) }
}
