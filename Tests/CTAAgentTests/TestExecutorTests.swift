import CTACore
import Foundation
import Glibc
import Testing

@testable import CTAAgent

@Suite("Test executor: stage outcomes become the test-level result")
struct ExecutorMappingTests {
    @Test("all stages exit 0: one ok result with the envelope fields, the log attached, the directory removed")
    func allSucceed() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let test = makeTest(
            [
                Stage(name: "prepare", run: "echo preparing; echo \"$EXEC_VAR/$TEST_VAR\""),
                Stage(name: "run", run: "echo running; pwd"),
            ], env: ["TEST_VAR": "from-test"])
        let executor = sandbox.executor()
        let outcome = await executor.run(sandbox.assignment(test, index: 7), control: TestControl())
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .ok)
        #expect(result.message == nil)
        #expect(result.name == "The test" && result.description == "What it checks")
        #expect(result.testID == TestID(unchecked: "t1") && result.index == 7 && result.attempt == 2)
        #expect(result.executionID == testExecution.executionID && result.machine.rawValue == "lab-01")
        #expect(result.origin == .exitCode(stage: "run", exitCode: 0, signal: nil))
        #expect(result.startedAt != nil && result.finishedAt != nil)
        #expect(outcome.stopCause == nil)
        #expect(outcome.startedAt <= outcome.finishedAt)
        let log = try #require(result.log)
        #expect(log.name == "test.log" && log.contentType == "text/plain")
        let text = sandbox.content(log)
        #expect(text.contains("=== stage 'prepare': exit 0"))
        #expect(text.contains("preparing\nfrom-execution/from-test\n"))
        #expect(text.contains("=== stage 'run': exit 0"))
        #expect(text.contains(sandbox.testDirectory + "/work"))
        #expect(!exists(sandbox.testDirectory))
    }

    @Test("a mandatory stage exiting 3 fails the test and later stages do not run")
    func mandatoryFailure() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let marker = sandbox.root + "/later-ran"
        let outcome = await sandbox.run(
            makeTest([
                Stage(name: "build", run: "echo compiling; exit 3"),
                Stage(name: "later", run: "touch \(marker)"),
            ]))
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .failed)
        #expect(result.message == "stage 'build' failed: exit 3")
        #expect(result.origin == .exitCode(stage: "build", exitCode: 3, signal: nil))
        #expect(!exists(marker))
        #expect(sandbox.content(result.log).contains("=== stage 'later': not run ==="))
    }

    @Test("a mandatory stage killed by a signal fails the test, naming the signal")
    func killedBySignal() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(makeTest([Stage(name: "crash", run: "kill -KILL $$")]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .failed)
        #expect(result.message == "stage 'crash' failed: killed by signal 9")
        #expect(result.origin == .exitCode(stage: "crash", exitCode: nil, signal: "SIGKILL"))
    }

    @Test("a command that is not found makes the test inconclusive with a clear message")
    func commandNotFound() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([Stage(name: "setup", run: "cta-no-such-command-xyz --flag"), Stage(name: "run", run: "true")]))
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .inconclusive)
        #expect(result.message == "stage 'setup' could not start: command not found: cta-no-such-command-xyz")
        #expect(result.origin == .exitCode(stage: "setup", exitCode: 127, signal: nil))
    }

    @Test("a missing working directory is a launch failure too")
    func missingDirectory() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(makeTest([Stage(name: "run", run: "true", cwd: "nowhere")]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .inconclusive)
        #expect(result.message?.hasPrefix("stage 'run' could not start: working directory does not exist") == true)
        #expect(result.origin == .exitCode(stage: "run", exitCode: -1, signal: nil))
    }

    @Test("non-mandatory failures are noted, later stages run, the test is partial")
    func nonMandatoryFailure() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let marker = sandbox.root + "/later-ran"
        let outcome = await sandbox.run(
            makeTest([
                Stage(name: "lint", run: "exit 1", mandatory: false),
                Stage(name: "optional-tool", run: "cta-no-such-command-xyz", mandatory: false),
                Stage(name: "main", run: "touch \(marker)"),
            ]))
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .partial)
        #expect(
            result.message
                == "stage 'lint' failed: exit 1; stage 'optional-tool' could not start: command not found: "
                + "cta-no-such-command-xyz")
        #expect(exists(marker))
        #expect(result.origin == .exitCode(stage: "main", exitCode: 0, signal: nil))
    }

    @Test("a mandatory failure after a non-mandatory one: failed, both named")
    func mandatoryAfterOptional() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([Stage(name: "lint", run: "exit 1", mandatory: false), Stage(name: "main", run: "exit 2")]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .failed)
        #expect(result.message == "stage 'main' failed: exit 2 (also: stage 'lint' failed: exit 1)")
    }

    @Test("a stage running past its own timeout fails the test")
    func stageTimeout() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let started = ContinuousClock.now
        let outcome = await sandbox.run(
            makeTest([
                Stage(name: "slow", run: "sleep 60", timeoutMs: Milliseconds(300)), Stage(name: "n", run: "true"),
            ]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .failed)
        #expect(result.message == "stage 'slow' timed out after 300 ms")
        #expect(ContinuousClock.now - started < .seconds(40), "well before the 60 s the stage would sleep")
    }

    @Test("the test's deadline covers all stages and stops the running one")
    func testDeadline() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let started = ContinuousClock.now
        let outcome = await sandbox.run(
            makeTest(
                [
                    Stage(name: "first", run: "echo first-done"),
                    Stage(name: "second", run: "echo second-started; sleep 60"),
                ],
                timeoutMs: 1000))
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .failed)
        #expect(result.message == "test timed out after 1000 ms")
        #expect(outcome.stopCause == nil)
        #expect(ContinuousClock.now - started < .seconds(40), "well before the 60 s the stage would sleep")
        // On a loaded machine the deadline may pass before the second stage starts; then it is not run.
        let log = sandbox.content(result.log)
        if result.origin.stage == "second" {
            #expect(log.contains("=== stage 'second': timed out"))
        } else {
            #expect(log.contains("=== stage 'second': not run ==="))
        }
    }

    @Test("a stage's own timeout that came first stays the stage's, even if the deadline passed while it stopped")
    func ownTimeoutWins() {
        let t0 = ContinuousClock.now
        let stage = Stage(name: "slow", run: "sleep 60", timeoutMs: Milliseconds(200))
        func attribute(_ first: TestControl.Stop?, timedOut: Bool = true, cancelled: Bool = false, deadline: Duration)
            -> TestControl.Stop?
        {
            TestRun.attribute(
                first, timedOut: timedOut, cancelled: cancelled, stage: stage, started: t0, deadline: t0 + deadline)
        }
        #expect(attribute(.deadline, deadline: .milliseconds(1500)) == nil)
        #expect(attribute(.deadline, deadline: .milliseconds(100)) == .deadline)
        #expect(attribute(.deadline, timedOut: false, deadline: .milliseconds(100)) == nil)
        #expect(attribute(nil, deadline: .milliseconds(100)) == nil)
        #expect(attribute(.external(.executionTimeout), deadline: .seconds(9)) == .external(.executionTimeout))
        #expect(attribute(.external(.shutdown), deadline: .seconds(9)) == nil)
        #expect(
            attribute(.external(.shutdown), timedOut: false, cancelled: true, deadline: .seconds(9))
                == .external(.shutdown))
    }

    @Test("stopped mid-stage: inconclusive, the process group is gone, the log holds the output before the stop")
    func stopMidStage() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let pidFile = sandbox.root + "/pids"
        let marker = sandbox.root + "/later-ran"
        let control = TestControl()
        let chunks = ChunkCollector()
        let test = makeTest([
            Stage(name: "long", run: "echo before-stop; sleep 30 & echo $$ > \(pidFile); wait"),
            Stage(name: "later", run: "touch \(marker)"),
        ])
        async let outcome = sandbox.run(test, control: control, onLog: chunks.callback)
        for _ in 0..<250 where !readText(pidFile).contains("\n") { try await Task.sleep(for: .milliseconds(20)) }
        control.stop(.cancelled(reason: "user asked"))
        control.stop(.shutdown)  // the first cause wins
        let finished = await outcome
        let result = try #require(finished.results.first)
        #expect(finished.results.count == 1)
        #expect(result.status == .inconclusive)
        #expect(result.message == "cancelled: user asked")
        #expect(finished.stopCause == .cancelled(reason: "user asked"))
        #expect(control.stopCause == .cancelled(reason: "user asked"))
        let group = try #require(pids(in: pidFile).first)
        #expect(liveProcesses(inGroup: group).isEmpty)
        #expect(!exists(marker))
        let log = sandbox.content(result.log)
        #expect(log.contains("before-stop"))
        #expect(log.contains("cancelled after"))
        #expect(chunks.all.contains { $0.stage == "long" && $0.final })
    }

    @Test(
        "stopped before the first stage: inconclusive with the cause's message, nothing runs",
        arguments: [
            (TestStopCause.cancelled(reason: "scenario deleted"), "cancelled: scenario deleted"),
            (.executionTimeout, "execution running timeout reached"),
            (.shutdown, "agent shutting down"),
        ])
    func stopBeforeStart(cause: TestStopCause, message: String) async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let marker = sandbox.root + "/ran"
        let control = TestControl()
        control.stop(cause)
        let outcome = await sandbox.run(makeTest([Stage(name: "run", run: "touch \(marker)")]), control: control)
        let result = try #require(outcome.results.first)
        #expect(result.status == .inconclusive)
        #expect(result.message == message)
        #expect(result.origin == .exitCode(stage: "run", exitCode: -1, signal: nil))
        #expect(outcome.stopCause == cause)
        #expect(!exists(marker))
        #expect(result.log == nil)
    }

    @Test("the execution's timeout stops the running stage as a timeout, and says so")
    func executionTimeoutMidStage() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let control = TestControl()
        let started = sandbox.root + "/started"
        async let outcome = sandbox.run(
            makeTest([Stage(name: "long", run: "touch \(started); sleep 30")]), control: control)
        for _ in 0..<250 where !exists(started) { try await Task.sleep(for: .milliseconds(20)) }
        control.stop(.executionTimeout)
        let result = try #require(await outcome.results.first)
        #expect(result.status == .inconclusive)
        #expect(result.message == "execution running timeout reached")
        #expect(sandbox.content(result.log).contains("timed out after"))
    }

    @Test("cancelling the calling task stops the test like a shutdown")
    func taskCancellation() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let started = sandbox.root + "/started"
        let task = Task { await sandbox.run(makeTest([Stage(name: "long", run: "touch \(started); sleep 30")])) }
        for _ in 0..<250 where !exists(started) { try await Task.sleep(for: .milliseconds(20)) }
        task.cancel()
        let outcome = await task.value
        #expect(outcome.results.first?.message == "agent shutting down")
        #expect(outcome.stopCause == .shutdown)
    }

    @Test("a leftover directory from an interrupted run is wiped first; keepWorkDirectory keeps it afterwards")
    func directoryLifecycle() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        try FileManager.default.createDirectory(
            atPath: sandbox.testDirectory + "/work/stale/locked", withIntermediateDirectories: true)
        try "old".write(toFile: sandbox.testDirectory + "/work/stale/locked/file", atomically: false, encoding: .utf8)
        chmod(sandbox.testDirectory + "/work/stale/locked", 0o500)
        let outcome = await sandbox.run(
            makeTest([Stage(name: "check", run: "test ! -e stale && test -d \"$CTA_ARTIFACTS_DIR\"")]),
            configuration: .init(keepWorkDirectory: true))
        #expect(outcome.results.first?.status == .ok)
        #expect(exists(sandbox.testDirectory + "/logs/check.log"))
    }
}

@Suite("Test executor: JUnit and TAP reports become results")
struct ExecutorReportTests {
    static let junit = """
        <?xml version="1.0" encoding="UTF-8"?>
        <testsuites>
          <testsuite name="login" tests="3" failures="1" skipped="1">
            <testcase classname="login.spec" name="accepts a good password" time="0.25">
              <properties><property name="browser" value="firefox"/></properties>
            </testcase>
            <testcase classname="login.spec" name="rejects a wrong password" time="1.5">
              <failure message="expected error banner">stack trace here</failure>
            </testcase>
            <testcase classname="login.spec" name="remembers the user">
              <skipped message="not implemented"/>
            </testcase>
          </testsuite>
        </testsuites>
        """

    @Test("a JUnit stage with 3 cases gives exactly those 3 results, its non-zero exit is not a failure")
    func junitCases() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let write = "mkdir -p out && cat > out/results.xml <<'XML'\n\(Self.junit)\nXML\nexit 1"
        let outcome = await sandbox.run(
            makeTest([
                Stage(name: "test", run: write, report: ReportSpec(format: .junit, path: "out/results.xml")),
                Stage(name: "after", run: "true"),
            ]))
        #expect(outcome.results.count == 3)
        let byName = Dictionary(uniqueKeysWithValues: outcome.results.map { ($0.name, $0) })
        let ok = try #require(byName["accepts a good password"])
        let failed = try #require(byName["rejects a wrong password"])
        let skipped = try #require(byName["remembers the user"])
        #expect(ok.status == .ok && ok.durationMs == Milliseconds(250))
        #expect(failed.status == .failed && failed.message == "expected error banner")
        #expect(failed.description == "stack trace here" && failed.durationMs == Milliseconds(1500))
        #expect(skipped.status == .inconclusive && skipped.durationMs == Milliseconds(0))
        #expect(
            ok.origin
                == .junit(
                    stage: "test", file: "out/results.xml", suite: "login", classname: "login.spec",
                    testcase: "accepts a good password"))
        #expect(
            ok.custom["properties"] == .array([.object(["name": .string("browser"), "value": .string("firefox")])]))
        #expect(outcome.results.allSatisfy { $0.testID == TestID(unchecked: "t1") && $0.log != nil })
        #expect(Set(outcome.results.map(\.log)).count == 1)
    }

    @Test("TAP on standard output: one result per test point, origin without a file")
    func tapOnOutput() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let tap =
            "echo 'TAP version 13'; echo 1..3; echo 'ok 1 - first'; echo 'not ok 2 - second'; "
            + "echo 'noise'; echo 'ok 3 - third # SKIP no network'; exit 1"
        let outcome = await sandbox.run(makeTest([Stage(name: "prove", run: tap, report: ReportSpec(format: .tap))]))
        #expect(outcome.results.map(\.status) == [.ok, .failed, .inconclusive])
        #expect(outcome.results.map(\.name) == ["first", "second", "third"])
        #expect(outcome.results[1].origin == .tap(stage: "prove", file: nil, number: 2, description: "second"))
    }

    @Test("TAP on a huge output whose middle was spilled still yields every test point")
    func tapSpilled() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let count = 3000
        let script =
            "echo 1..\(count); i=1; while [ $i -le \(count) ]; do "
            + "echo \"ok $i - point number $i with some padding to make the output long\"; i=$((i+1)); done"
        let runner = testRunner(head: 8 * 1024, tail: 8 * 1024)
        let outcome = await sandbox.run(
            makeTest([Stage(name: "prove", run: script, report: ReportSpec(format: .tap))]), runner: runner)
        #expect(outcome.results.count == count)
        #expect(outcome.results.allSatisfy { $0.status == .ok })
        #expect(outcome.results.last?.name == "point number \(count) with some padding to make the output long")
        #expect(outcome.results.allSatisfy { $0.custom["reportProblems"] == nil })
        // The test log has the spilled middle back in place.
        let log = sandbox.content(outcome.results.first?.log)
        #expect(log.contains("ok 1500 - point number 1500 "))
        #expect(!log.contains("bytes omitted"))
    }

    @Test("a TAP file found by a glob")
    func tapFileGlob() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let script = "mkdir -p reports/a && printf '1..1\\nok 1 - from a file\\n' > reports/a/run.tap"
        let outcome = await sandbox.run(
            makeTest([Stage(name: "t", run: script, report: ReportSpec(format: .tap, path: "reports/**/*.tap"))]))
        #expect(outcome.results.map(\.name) == ["from a file"])
        #expect(
            outcome.results.first?.origin
                == .tap(stage: "t", file: "reports/a/run.tap", number: 1, description: "from a file"))
    }

    @Test("a mandatory report stage without its report fails the test")
    func missingReport() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([Stage(name: "test", run: "true", report: ReportSpec(format: .junit, path: "results.xml"))]))
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .failed)
        #expect(result.message == "stage 'test' wrote no junit report at results.xml (exit 0)")
    }

    @Test("a non-mandatory report stage without its report makes the test partial")
    func missingOptionalReport() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([
                Stage(name: "main", run: "true"),
                Stage(
                    name: "extra", run: "echo no tap here; exit 2", mandatory: false, report: ReportSpec(format: .tap)),
            ]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .partial)
        #expect(result.message == "stage 'extra' wrote no tap report on its output (exit 2)")
        #expect(result.custom["reportProblems"] != nil)
    }

    @Test("cases plus a failing later stage: the cases and a failed test-level result")
    func casesAndLaterFailure() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([
                Stage(name: "prove", run: "echo 1..1; echo ok 1 - fine", report: ReportSpec(format: .tap)),
                Stage(name: "teardown", run: "exit 4"),
            ]))
        #expect(outcome.results.count == 2)
        #expect(outcome.results[0].name == "fine" && outcome.results[0].status == .ok)
        #expect(outcome.results[1].name == "The test" && outcome.results[1].status == .failed)
        #expect(outcome.results[1].message == "stage 'teardown' failed: exit 4")
    }

    @Test("damaged reports keep their cases and carry the problems")
    func reportProblems() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([Stage(name: "prove", run: "echo ok 1 - one", report: ReportSpec(format: .tap))]))
        let one = try #require(outcome.results.first { $0.name == "one" })
        guard case .array(let problems) = one.custom["reportProblems"] else {
            Issue.record("no reportProblems")
            return
        }
        #expect(problems == [.string("the stream has no plan (1..N); tests may be missing unnoticed")])
    }
}

@Suite("Test executor: artifacts, screenshot, custom data, attachment store")
struct ExecutorEvidenceTests {
    @Test("artifacts become attachments with the right SHA-256; screenshot and custom.json are special")
    func artifacts() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let script = """
            cd "$CTA_ARTIFACTS_DIR"
            mkdir -p nested/deeper
            printf 'hello artifacts\\n' > a.txt
            head -c 300000 /dev/urandom > nested/deeper/blob.bin
            printf '\\211PNG fake' > screenshot.png
            printf '{"browser": "firefox", "retries": 2}' > custom.json
            ln -s /etc/passwd link-to-outside
            head -c 2000 /dev/zero > nested/big.log
            exit 5
            """
        let outcome = await sandbox.run(makeTest([Stage(name: "shoot", run: script)]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .failed)
        #expect(result.attachments.map(\.name) == ["a.txt", "big.log", "blob.bin"])
        #expect(result.custom["browser"] == .string("firefox") && result.custom["retries"] == .integer(2))
        let screenshot = try #require(result.screenshot)
        #expect(screenshot.name == "screenshot.png" && screenshot.contentType == "image/png")
        for reference in result.attachments + [screenshot] {
            let stored = sandbox.store.path(for: reference.id)
            let sum = await shell("sha256sum '\(stored)'").output.split(separator: " ").first.map(String.init)
            #expect(sum == reference.sha256)
            #expect(reference.size == UInt64(FileOperations.status(stored)?.st_size ?? -1))
        }
        #expect(result.attachments.first { $0.name == "blob.bin" }?.size == 300_000)
        #expect(result.attachments.first { $0.name == "a.txt" }?.contentType == "text/plain")
    }

    @Test("over 8 MiB of output: the test log keeps heads and tails, each spilled middle is an attachment")
    func hugeLog() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let script = "echo first-line; head -c 9000000 /dev/zero | tr '\\0' x; echo; echo last-line"
        let outcome = await sandbox.run(
            makeTest([Stage(name: "big", run: script), Stage(name: "small", run: "echo tiny")]),
            runner: testRunner(head: 16 * 1024, tail: 16 * 1024))
        let result = try #require(outcome.results.first)
        #expect(result.status == .ok)
        let log = sandbox.content(result.log)
        #expect(log.hasPrefix("=== stage 'big': exit 0"))
        #expect(log.contains("first-line") && log.contains("last-line") && log.contains("tiny"))
        #expect(log.contains("bytes omitted, see attachment big.omitted.log"))
        #expect(log.utf8.count < 100_000)
        let spill = try #require(result.attachments.first { $0.name == "big.omitted.log" })
        #expect(spill.contentType == "text/plain")
        #expect(spill.size + UInt64(log.utf8.count) > 9_000_000)
    }

    @Test("limits: files over the size limit and beyond the count limit are listed, not attached")
    func limits() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let script = """
            cd "$CTA_ARTIFACTS_DIR"
            head -c 5000 /dev/zero > huge.bin
            for i in 1 2 3 4; do echo $i > file$i.txt; done
            printf 'screenshot-like' > screenshot-login.jpg
            echo '[1, 2]' > custom.json
            """
        let outcome = await sandbox.run(
            makeTest([Stage(name: "s", run: script)]),
            configuration: .init(maxAttachmentBytes: 1000, maxAttachments: 3))
        let result = try #require(outcome.results.first)
        #expect(result.status == .ok)
        #expect(result.screenshot?.name == "screenshot-login.jpg")
        #expect(result.screenshot?.contentType == "image/jpeg")
        #expect(result.attachments.map(\.name) == ["custom.json", "file1.txt", "file2.txt"])
        #expect(result.custom["customJSONProblem"] == .string("custom.json is not a JSON object"))
        guard case .array(let skipped) = result.custom["skippedAttachments"] else {
            Issue.record("skippedAttachments missing")
            return
        }
        let paths = skipped.compactMap { value -> String? in
            guard case .object(let entry) = value, case .string(let path) = entry["path"] else { return nil }
            return path
        }
        #expect(paths == ["file3.txt", "file4.txt", "huge.bin"])
    }

    @Test("the attachment store: ids, sizes, digests, content types, async add off the pool")
    func store() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let file = sandbox.root + "/report.json"
        try #"{"a": 1}"#.write(toFile: file, atomically: false, encoding: .utf8)
        let store = sandbox.store
        let reference = try await store.add(file: file, name: "report.json")
        #expect(reference.name == "report.json" && reference.contentType == "application/json")
        #expect(reference.size == 8)
        let sum = await shell("sha256sum '\(file)'").output.split(separator: " ").first.map(String.init)
        #expect(reference.sha256 == sum)
        #expect(store.contains(reference.id))
        #expect(readText(store.path(for: reference.id)) == #"{"a": 1}"#)
        await #expect(throws: AttachmentStoreError.self) {
            try await store.add(file: sandbox.root + "/none", name: "x")
        }
        let types = [
            "a.PNG": "image/png", "b.gif": "image/gif", "c.svg": "image/svg+xml", "d.log": "text/plain",
            "e.xml": "application/xml", "f.html": "text/html", "g.zip": "application/zip", "h.tgz": "application/gzip",
            "i.gz": "application/gzip", "j.pdf": "application/pdf", "k.mp4": "video/mp4", "l.webm": "video/webm",
            "m.bin": "application/octet-stream", "noext": "application/octet-stream",
        ]
        for (name, type) in types { #expect(AttachmentStore.contentType(forName: name) == type, "\(name)") }
    }

    @Test("file inputs: copied from the store and verified; absent or corrupt ones fail the input")
    func fileInputs() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let source = sandbox.root + "/build.tar"
        try "build contents".write(toFile: source, atomically: false, encoding: .utf8)
        let reference = try await sandbox.store.add(file: source, name: "build.tar")
        let present = await sandbox.run(
            makeTest(
                [Stage(name: "check", run: "test \"$(cat inputs/build.tar)\" = 'build contents'")],
                inputs: [.file(FileInput(attachment: reference, into: "inputs/build.tar"))]))
        #expect(present.results.first?.status == .ok)

        var absent = reference
        absent.id = AttachmentID()
        let missing = await sandbox.run(
            makeTest([Stage(name: "check", run: "true")], inputs: [.file(FileInput(attachment: absent, into: "b"))]))
        let result = try #require(missing.results.first)
        #expect(result.status == .inconclusive)
        #expect(
            result.message
                == "input 1 (file build.tar) failed: file inputs need the attachment service; attachment "
                + "\(absent.id) is not on this machine")
        #expect(result.origin == .exitCode(stage: "input-file-1", exitCode: -1, signal: nil))

        var corrupt = reference
        corrupt.sha256 = String(repeating: "0", count: 64)
        let mismatch = await sandbox.run(
            makeTest([Stage(name: "check", run: "true")], inputs: [.file(FileInput(attachment: corrupt, into: "b"))]))
        #expect(mismatch.results.first?.message?.contains("does not match its size and SHA-256") == true)
    }
}
