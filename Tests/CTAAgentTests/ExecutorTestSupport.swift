import CTACore
import Foundation
import Glibc
import Logging
import Synchronization

@testable import CTAAgent

/// A temporary root holding an attachment store and per-test directories; removed by `cleanUp()`.
struct ExecutorSandbox {
    let root: String

    init() throws {
        let template = (NSTemporaryDirectory() as NSString).appendingPathComponent("cta-exec-XXXXXX")
        var buffer = Array(template.utf8CString)
        guard let made = mkdtemp(&buffer) else { throw POSIXError(.EIO) }
        root = String(cString: made)
    }

    var store: AttachmentStore { AttachmentStore(directory: root + "/store") }
    var testDirectory: String { root + "/tests/t1" }

    func executor(
        _ configuration: TestExecutor.Configuration = .init(), runner: StageRunner = testRunner()
    ) -> TestExecutor {
        TestExecutor(
            runner: runner, attachments: store, configuration: configuration,
            logger: Logger(label: "cta.test.executor"))
    }

    func assignment(_ test: TestDefinition, index: Int? = nil) -> TestAssignment {
        TestAssignment(
            execution: testExecution, attempt: 2, machine: MachineName(unchecked: "lab-01"), test: test, index: index,
            directory: testDirectory)
    }

    /// Runs a test to its end.
    func run(
        _ test: TestDefinition, configuration: TestExecutor.Configuration = .init(), runner: StageRunner = testRunner(),
        control: TestControl = TestControl(), onLog: (@Sendable (LiveLogChunk) -> Void)? = nil
    ) async -> TestRunOutcome {
        await executor(configuration, runner: runner).run(assignment(test), control: control, onLog: onLog)
    }

    /// The stored content of an attachment.
    func content(_ reference: AttachmentReference?) -> String {
        guard let reference else { return "" }
        return readText(store.path(for: reference.id))
    }

    func cleanUp() {
        _ = try? FileOperations.removeTree(root)
    }
}

let testExecution = ExecutionContext(
    executionID: ExecutionID(),
    scenario: ScenarioReference(id: ScenarioID(unchecked: "scenario"), name: "Scenario"),
    suite: SuiteReference(id: SuiteID(unchecked: "suite"), name: "Suite"),
    runMode: .mono,
    env: ["EXEC_VAR": "from-execution"],
    timeouts: ExecutionTimeouts(pendingDeadline: .now(), runningTimeoutMs: Milliseconds(600_000)),
    requestedBy: "tests")

/// A test definition with one or more stages.
func makeTest(
    _ stages: [Stage], inputs: [TestInput] = [], timeoutMs: UInt64? = nil, env: [String: String] = [:]
) -> TestDefinition {
    TestDefinition(
        id: TestID(unchecked: "t1"), name: "The test", description: "What it checks", stages: stages, inputs: inputs,
        env: env, timeoutMs: timeoutMs.map { Milliseconds($0) })
}

/// Collects live log chunks from any thread.
final class ChunkCollector: Sendable {
    private let chunks = Mutex<[LiveLogChunk]>([])
    var all: [LiveLogChunk] { chunks.withLock { $0 } }
    var callback: @Sendable (LiveLogChunk) -> Void {
        { chunk in self.chunks.withLock { $0.append(chunk) } }
    }
}

/// Runs a shell command to its end (off the cooperative pool) and returns its status and standard output.
@discardableResult
func shell(_ command: String, in directory: String? = nil) async -> (status: Int32, output: String) {
    await onDedicatedThread("test-shell") {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return (-1, "") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// Whether a path exists (without following a final symbolic link).
func exists(_ path: String) -> Bool {
    FileOperations.status(path) != nil
}
