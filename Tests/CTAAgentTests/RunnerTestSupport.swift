import CTACore
import Foundation
import Glibc
import Logging

@testable import CTAAgent

/// A temporary directory with a work dir, an artifacts dir and a log dir; removed by `cleanUp()`.
struct RunnerSandbox {
    let root: String
    let work: String
    let artifacts: String
    let logs: String

    init() throws {
        let template = (NSTemporaryDirectory() as NSString).appendingPathComponent("cta-runner-XXXXXX")
        var buffer = Array(template.utf8CString)
        guard let made = mkdtemp(&buffer) else { throw POSIXError(.EIO) }
        root = String(cString: made)
        work = root + "/work"
        artifacts = root + "/artifacts"
        logs = root + "/logs"
        for directory in [work, artifacts] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
    }

    func context(
        execution: ExecutionID = ExecutionID(), test: String = "t1", testEnv: [String: String] = [:],
        executionEnv: [String: String] = [:]
    ) -> StageContext {
        StageContext(
            executionID: execution, testID: TestID(unchecked: test), workDirectory: work,
            artifactsDirectory: artifacts, logDirectory: logs, executionEnvironment: executionEnv,
            testEnvironment: testEnv)
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: root) }
}

/// A runner with short grace periods so termination tests stay quick.
func testRunner(
    grace: Duration = .milliseconds(400), stopTimeout: Duration = .seconds(2), head: Int = 64 * 1024,
    tail: Int = 64 * 1024, capture: StageRunner.OutputCapture = .merged
) -> StageRunner {
    StageRunner(
        configuration: .init(
            gracePeriod: grace, stopCommandTimeout: stopTimeout, headBytes: head, tailBytes: tail,
            flushInterval: .milliseconds(100), drainTimeout: .milliseconds(300), killTimeout: .seconds(3),
            baseEnvironment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "CTA_BASE": "base"], capture: capture),
        logger: Logger(label: "cta.test.runner"))
}

func readText(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

/// Live (non-zombie) processes whose process group is `group`, read from `/proc`.
func liveProcesses(inGroup group: Int32) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { Int32($0) }.filter { pid in
        guard let (state, pgrp) = procState(pid) else { return false }
        return pgrp == group && state != "Z" && state != "X"
    }
}

/// Whether a process is alive: it exists and is not a zombie (orphans may stay zombies in containers).
func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let (state, _) = procState(pid) else { return false }
    return state != "Z" && state != "X"
}

private func procState(_ pid: Int32) -> (Character, Int32)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count >= 3, let state = fields[0].first, let group = Int32(fields[2]) else { return nil }
    return (state, group)
}

/// The pids a stage wrote to a file, one per line.
func pids(in path: String) -> [Int32] {
    readText(path).split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
}

/// Milliseconds in a duration.
func ms(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
}
