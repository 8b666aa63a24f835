import CTACore
import Foundation
import Testing

@testable import CTAAgent

@Suite("Test executor: git inputs")
struct ExecutorGitInputTests {
    /// A repository with `main` (README root-v2), an annotated tag `v1` (README root-v1) and a branch `feature`
    /// (ui/sub/file.txt ui-feature).
    static func makeRepository(at path: String) async throws {
        let commit = "git -c user.name=tester -c user.email=tester@example.invalid commit -q"
        let script = """
            set -e
            git init -q -b main '\(path)'
            cd '\(path)'
            mkdir -p ui/sub
            echo ui-v1 > ui/sub/file.txt
            echo root-v1 > README
            git add -A
            \(commit) -m one
            git -c user.name=tester -c user.email=tester@example.invalid tag -a v1 -m 'version 1'
            git checkout -q -b feature
            echo ui-feature > ui/sub/file.txt
            \(commit) -am two
            git checkout -q main
            echo root-v2 > README
            \(commit) -am three
            """
        let result = await shell(script)
        try #require(result.status == 0)
    }

    @Test("ref = branch, with path and into: the subdirectory lands at <work>/<into>")
    func branchPathInto() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let repo = sandbox.root + "/repo"
        try await Self.makeRepository(at: repo)
        let input = GitInput(url: "file://" + repo, ref: "feature", path: "ui", into: "src")
        let outcome = await sandbox.run(
            makeTest([Stage(name: "check", run: "cat src/sub/file.txt")], inputs: [.git(input)]),
            configuration: .init(keepWorkDirectory: true))
        let result = try #require(outcome.results.first)
        #expect(result.status == .ok)
        let work = sandbox.testDirectory + "/work"
        #expect(readText(work + "/src/sub/file.txt") == "ui-feature\n")
        #expect(!exists(work + "/src/.git") && !exists(work + "/README") && !exists(work + "/src/README"))
        #expect(!exists(sandbox.testDirectory + "/inputs/git-1"))
        let log = sandbox.content(result.log)
        #expect(log.contains("=== stage 'input-git-1': exit 0"))
        #expect(log.contains("ui-feature"))
    }

    @Test("ref = annotated tag, no into: the checkout's contents go directly into the work directory")
    func tagIntoWork() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let repo = sandbox.root + "/repo"
        try await Self.makeRepository(at: repo)
        let outcome = await sandbox.run(
            makeTest(
                [Stage(name: "check", run: "test \"$(cat README)\" = root-v1 && git rev-parse --git-dir")],
                inputs: [.git(GitInput(url: "file://" + repo, ref: "v1"))]),
            configuration: .init(keepWorkDirectory: true))
        #expect(outcome.results.first?.status == .ok)
        let work = sandbox.testDirectory + "/work"
        #expect(readText(work + "/ui/sub/file.txt") == "ui-v1\n")
        #expect(exists(work + "/.git"))
    }

    @Test("no ref: the default branch; a second input merges into the first's directory, clashes fail")
    func defaultBranchAndMerge() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let repo = sandbox.root + "/repo"
        try await Self.makeRepository(at: repo)
        let outcome = await sandbox.run(
            makeTest(
                [Stage(name: "check", run: "test \"$(cat main/README)\" = root-v2 && cat main/sub/file.txt")],
                inputs: [
                    .git(GitInput(url: "file://" + repo, into: "main")),
                    .git(GitInput(url: "file://" + repo, ref: "feature", path: "ui/sub", into: "main/sub")),
                ]))
        let result = try #require(outcome.results.first)
        #expect(result.status == .ok)
        let log = sandbox.content(result.log)
        #expect(log.contains("=== stage 'input-git-2': exit 0"))
        #expect(log.contains("=== stage 'check': exit 0"))
        #expect(log.contains("ui-feature"))

        let clash = await sandbox.run(
            makeTest(
                [Stage(name: "check", run: "true")],
                inputs: [.git(GitInput(url: "file://" + repo)), .git(GitInput(url: "file://" + repo, ref: "v1"))]))
        let clashResult = try #require(clash.results.first)
        #expect(clashResult.status == .inconclusive)
        #expect(clashResult.message?.hasPrefix("input 2 (git file://\(repo)) failed: .git/") == true)
        #expect(clashResult.message?.hasSuffix(" already exists") == true)
    }

    @Test("a path naming a file puts that file into the work directory")
    func singleFile() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let repo = sandbox.root + "/repo"
        try await Self.makeRepository(at: repo)
        let outcome = await sandbox.run(
            makeTest(
                [Stage(name: "check", run: "test \"$(cat file.txt)\" = ui-v1 && test ! -e .git")],
                inputs: [.git(GitInput(url: "file://" + repo, ref: "v1", path: "ui/sub/file.txt"))]))
        #expect(outcome.results.first?.status == .ok)
    }

    @Test("a bad URL fails the input: inconclusive, git's complaint, origin input-git-<n>, no stage runs")
    func badURL() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let marker = sandbox.root + "/ran"
        let url = "file://" + sandbox.root + "/no-such-repo"
        let outcome = await sandbox.run(
            makeTest([Stage(name: "run", run: "touch \(marker)")], inputs: [.git(GitInput(url: url))]))
        let result = try #require(outcome.results.first)
        #expect(outcome.results.count == 1)
        #expect(result.status == .inconclusive)
        #expect(result.message?.hasPrefix("input 1 (git \(url)) failed: fatal:") == true)
        #expect(result.message?.hasSuffix("(exit 128)") == true)
        #expect(result.origin == .exitCode(stage: "input-git-1", exitCode: 128, signal: nil))
        #expect(!exists(marker))
        #expect(sandbox.content(result.log).contains("=== stage 'run': not run ==="))
    }

    @Test("a path missing from the repository, or one through a symbolic link, fails the input")
    func badPath() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let repo = sandbox.root + "/repo"
        try await Self.makeRepository(at: repo)
        let missing = await sandbox.run(
            makeTest([Stage(name: "run", run: "true")], inputs: [.git(GitInput(url: "file://" + repo, path: "nope"))]))
        #expect(
            missing.results.first?.message
                == "input 1 (git file://\(repo)) failed: nope does not exist in the repository")

        let hadHostname = exists("/etc/hostname")
        let link =
            "ln -s /etc escape && git add escape && git -c user.name=t -c user.email=t@example.invalid commit -qm l"
        try #require(await shell(link, in: repo).status == 0)
        let escaped = await sandbox.run(
            makeTest(
                [Stage(name: "run", run: "true")],
                inputs: [.git(GitInput(url: "file://" + repo, path: "escape/hostname", into: "x"))]))
        #expect(escaped.results.first?.message?.hasSuffix("escape/hostname goes through a symbolic link") == true)
        #expect(exists("/etc/hostname") == hadHostname)
    }

    @Test("credentials in a URL are masked; URLs starting with '-' are refused")
    func credentialsAndOptions() async throws {
        #expect(
            maskCredentials("https://user:s3cret@git.example.com/r.git") == "https://user:***@git.example.com/r.git")
        #expect(maskCredentials("https://git.example.com/r.git") == "https://git.example.com/r.git")
        #expect(maskCredentials("https://token@git.example.com/a@b") == "https://token:***@git.example.com/a@b")
        #expect(shellQuote("it's") == #"'it'\''s'"#)
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let outcome = await sandbox.run(
            makeTest([Stage(name: "run", run: "true")], inputs: [.git(GitInput(url: "--upload-pack=touch /tmp/x"))]))
        #expect(outcome.results.first?.message?.hasSuffix("a URL or ref must not start with '-'") == true)
    }
}

@Suite("Test executor: live log chunks")
struct ExecutorLiveLogTests {
    @Test("output is coalesced per stage; offsets are contiguous; each stage ends with one final chunk")
    func coalesced() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let chunks = ChunkCollector()
        // Twenty writes at once, a pause longer than the interval, one more write.
        let talk = "i=1; while [ $i -le 20 ]; do echo line $i; i=$((i+1)); done; sleep 1; echo last"
        let outcome = await sandbox.run(
            makeTest([Stage(name: "talk", run: talk), Stage(name: "quiet", run: "true")]),
            configuration: .init(liveLogInterval: .milliseconds(300)), onLog: chunks.callback)
        #expect(outcome.results.first?.status == .ok)
        let talkChunks = chunks.all.filter { $0.stage == "talk" }
        let lines = (1...20).map { "line \($0)\n" }.joined()
        #expect(talkChunks.map(\.text).joined() == lines + "last\n")
        #expect(talkChunks.count >= 2 && talkChunks.count <= 10)
        #expect(talkChunks.first?.text.hasPrefix("line 1\n") == true)
        // The final chunk may be empty when the last output already went out with an earlier one.
        #expect(talkChunks.last(where: { !$0.text.isEmpty })?.text.hasSuffix("last\n") == true)
        #expect(talkChunks.allSatisfy { $0.stream == .combined })
        var offset: UInt64 = 0
        for chunk in talkChunks {
            #expect(chunk.offset == offset)
            offset += UInt64(chunk.text.utf8.count)
        }
        #expect(talkChunks.filter(\.final).count == 1 && talkChunks.last?.final == true)
        let quiet = chunks.all.filter { $0.stage == "quiet" }
        #expect(quiet == [LiveLogChunk(stage: "quiet", stream: .combined, offset: 0, text: "", final: true)])
        // Chunks of one stage all come before the next stage's.
        let stages = chunks.all.map(\.stage)
        #expect(stages == stages.sorted { $0 == "talk" && $1 == "quiet" })
    }

    @Test("chunks stay within the size limit; past the per-stage limit one note, then the final chunk")
    func limits() async throws {
        let sandbox = try ExecutorSandbox()
        defer { sandbox.cleanUp() }
        let chunks = ChunkCollector()
        let script = "i=0; while [ $i -lt 1000 ]; do echo 'line of exactly forty bytes, 0123456789'; i=$((i+1)); done"
        _ = await sandbox.run(
            makeTest([Stage(name: "loud", run: script)]),
            configuration: .init(liveLogChunkBytes: 4096, liveLogLimitBytes: 10_000), onLog: chunks.callback)
        let all = chunks.all
        #expect(all.allSatisfy { $0.text.utf8.count <= 4096 })
        let note = all.filter { $0.text.hasPrefix("[cta] live output stops after 10000 bytes") }
        #expect(note.count == 1 && note.first?.offset == 10_000)
        let streamed = all.filter { !$0.text.hasPrefix("[cta]") }.map(\.text).joined()
        #expect(streamed.utf8.count == 10_000)
        #expect(all.last == LiveLogChunk(stage: "loud", stream: .combined, offset: 40_000, text: "", final: true))
    }
}

@Suite("Test verdict: judging stage ends without processes")
struct TestVerdictTests {
    func end(
        _ stage: Stage, _ termination: StageOutcome.Termination, failure: String? = nil, ownTimeout: Bool = false,
        stoppedBy: TestControl.Stop? = nil, report: TestVerdict.ReportEnd? = nil
    ) -> TestVerdict.StageEnd {
        .init(
            stage: stage, termination: termination, failure: failure, timedOutOnItsOwn: ownTimeout,
            stoppedBy: stoppedBy, report: report, durationMs: 42)
    }

    @Test("report cases make a non-zero exit fine, but not a signal")
    func reportCases() {
        let stage = Stage(name: "t", run: "x", report: ReportSpec(format: .tap))
        let report = TestVerdict.ReportEnd(format: .tap, location: "on its output", cases: 3)
        #expect(TestVerdict.judge(end(stage, .exited(1), report: report), testTimeoutMs: nil) == .fine)
        #expect(
            TestVerdict.judge(end(stage, .signalled(11), report: report), testTimeoutMs: nil)
                == .end(.failed, "stage 't' failed: killed by signal 11"))
    }

    @Test("a non-mandatory timeout is a problem, a mandatory one ends the test")
    func timeouts() {
        let optional = Stage(name: "o", run: "x", timeoutMs: Milliseconds(50), mandatory: false)
        #expect(
            TestVerdict.judge(end(optional, .signalled(15), ownTimeout: true), testTimeoutMs: nil)
                == .problem("stage 'o' timed out after 50 ms"))
        let mandatory = Stage(name: "m", run: "x", timeoutMs: Milliseconds(50))
        #expect(
            TestVerdict.judge(end(mandatory, .signalled(15), ownTimeout: true), testTimeoutMs: nil)
                == .end(.failed, "stage 'm' timed out after 50 ms"))
    }

    @Test("stops come first, whatever the stage did")
    func stops() {
        let stage = Stage(name: "s", run: "x", mandatory: false)
        #expect(
            TestVerdict.judge(end(stage, .exited(0), stoppedBy: .deadline), testTimeoutMs: 900)
                == .end(.failed, "test timed out after 900 ms"))
        #expect(
            TestVerdict.judge(end(stage, .signalled(15), stoppedBy: .external(.shutdown)), testTimeoutMs: nil)
                == .end(.inconclusive, "agent shutting down"))
    }

    @Test("the verdict: first ending wins, partial from problems, test-level result only when needed")
    func verdict() {
        var verdict = TestVerdict()
        verdict.addCases(2)
        #expect(verdict.status == .ok && !verdict.needsTestLevelResult)
        verdict.apply(.problem("stage 'a' failed: exit 1"))
        #expect(verdict.status == .partial && verdict.needsTestLevelResult)
        verdict.apply(.end(.failed, "stage 'b' failed: exit 2"))
        verdict.apply(.end(.inconclusive, "later"))
        #expect(verdict.status == .failed)
        #expect(verdict.message == "stage 'b' failed: exit 2 (also: stage 'a' failed: exit 1)")
        #expect(TestVerdict().needsTestLevelResult)
    }
}
