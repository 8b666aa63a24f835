import CTAAgentCore
import CTACore
import Foundation
import Logging

/// One run of one test: the executor's working state, used by one task from start to end.
///
/// - Important: Not thread-safe and not `Sendable`: it lives inside ``TestExecutor/run(_:control:onLog:)``. Work
///   on other threads gets copies of the values it needs.
final class TestRun {
    let executor: TestExecutor
    let assignment: TestAssignment
    let control: TestControl
    let onLog: (@Sendable (LiveLogChunk) -> Void)?
    let logger: Logger
    let clock = ContinuousClock()

    let context: StageContext
    private(set) var startedAt = Timestamp.now()
    private(set) var started = ContinuousClock.now
    /// When the test's `timeoutMs` passes.
    private(set) var deadline: ContinuousClock.Instant?

    var verdict = TestVerdict()
    /// The stages that ran (inputs included) and those that did not, for the test log.
    var records: [StageRecord] = []
    /// The origin of the test-level result: the last stage that ran.
    var origin: ResultOrigin?
    /// Report cases in stage order, each with its stage's name and report problems.
    var cases: [(stage: String, item: CollectedReport.Case, problems: [String])] = []
    /// Problems of reports that produced no case (they go on the test-level result).
    var orphanReportProblems: [String] = []
    /// Whether an outside stop took effect (stopped a stage or kept work from starting).
    var stopTookEffect = false

    init(
        executor: TestExecutor, assignment: TestAssignment, control: TestControl,
        onLog: (@Sendable (LiveLogChunk) -> Void)?
    ) {
        self.executor = executor
        self.assignment = assignment
        self.control = control
        self.onLog = onLog
        var logger = executor.logger
        logger[metadataKey: "cta.execution.id"] = "\(assignment.execution.executionID)"
        logger[metadataKey: "cta.test.id"] = "\(assignment.test.id)"
        self.logger = logger
        self.context = StageContext(
            executionID: assignment.execution.executionID,
            testID: assignment.test.id,
            workDirectory: assignment.workDirectory,
            artifactsDirectory: assignment.artifactsDirectory,
            logDirectory: assignment.logDirectory,
            executionEnvironment: assignment.execution.env,
            testEnvironment: assignment.test.env)
    }

    // MARK: The run

    func perform() async -> TestRunOutcome {
        startedAt = .now()
        started = clock.now
        deadline = assignment.test.timeoutMs.map { started + $0.duration }
        logger.debug("test starting")

        let directory = assignment.directory
        let subdirectories = [assignment.workDirectory, assignment.artifactsDirectory, assignment.logDirectory]
        let prepared = await onDedicatedThread("cta-test-prepare") { () -> FileProblem? in
            do throws(FileProblem) {
                try FileOperations.removeTree(directory)
                for path in subdirectories { try FileOperations.makeDirectory(path) }
                return nil
            } catch {
                return error
            }
        }
        if let prepared {
            logger.warning("could not prepare the test directory", metadata: ["cta.error": "\(prepared)"])
            verdict.end(.inconclusive, "could not prepare the test directory: \(prepared)")
        } else {
            let control = self.control
            let deadline = self.deadline
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { group in
                    if let deadline {
                        group.addTask {
                            do {
                                try await Task.sleep(until: deadline, clock: ContinuousClock())
                                control.expireDeadline()
                            } catch {}
                        }
                    }
                    await runInputsAndStages()
                    group.cancelAll()
                }
            } onCancel: {
                control.stop(.shutdown)
            }
        }
        let stagesEnded = Timestamp.now()
        let duration = Milliseconds(clock.now - started)

        var evidence = await collectEvidence()
        if let uploader = executor.uploader {
            let upload = EvidenceUpload(
                uploader: uploader, store: executor.attachments, timeout: executor.configuration.uploadTimeout,
                logger: logger)
            evidence = await upload.upload(
                evidence, execution: assignment.execution.executionID, test: assignment.test.id,
                machine: assignment.machine)
        }
        let results = makeResults(evidence: evidence, finishedAt: stagesEnded, duration: duration)

        if !executor.configuration.keepWorkDirectory {
            let removal = await onDedicatedThread("cta-test-cleanup") { () -> FileProblem? in
                do throws(FileProblem) {
                    try FileOperations.removeTree(directory)
                    return nil
                } catch {
                    return error
                }
            }
            if let removal {
                logger.warning("could not remove the test directory", metadata: ["cta.error": "\(removal)"])
            }
        }
        let stopCause: TestStopCause? =
            if stopTookEffect, case .external(let cause) = control.firstStop { cause } else { nil }
        logger.debug("test finished", metadata: ["cta.test.status": "\(verdict.status)"])
        return TestRunOutcome(results: results, stopCause: stopCause, startedAt: startedAt, finishedAt: .now())
    }

    private func runInputsAndStages() async {
        let test = assignment.test
        for (position, input) in test.inputs.enumerated() {
            if stopIfRequested() { break }
            await fetch(input, number: position + 1)
            if verdict.isEnded { break }
        }
        for (position, stage) in test.stages.enumerated() {
            if verdict.isEnded || stopIfRequested() {
                records += test.stages[position...].map { StageRecord(name: $0.name, outcome: nil) }
                break
            }
            await runTestStage(stage)
        }
    }

    /// Ends the test when it was stopped (from outside or by its deadline) before the next input or stage. Returns
    /// whether it was.
    private func stopIfRequested() -> Bool {
        guard let stop = control.firstStop else { return false }
        switch stop {
        case .external(let cause):
            stopTookEffect = true
            verdict.end(.inconclusive, cause.message)
        case .deadline:
            verdict.end(.failed, "test timed out after \(assignment.test.timeoutMs?.value ?? 0) ms")
        }
        return true
    }

    // MARK: Stages

    /// Runs one stage of the test, reads its report, and judges it.
    private func runTestStage(_ stage: Stage) async {
        let (outcome, stageStarted) = await runStage(stage)
        var reportEnd: TestVerdict.ReportEnd?
        if let spec = stage.report {
            let workingDirectory = context.workingDirectory(for: stage)
            let log = outcome.log
            let collected = await onDedicatedThread("cta-test-report") {
                ReportCollector.collect(spec, stage: stage, workingDirectory: workingDirectory, log: log)
            }
            cases += collected.cases.map { (stage.name, $0, collected.problems) }
            if collected.cases.isEmpty { orphanReportProblems += collected.problems }
            verdict.addCases(collected.cases.count)
            reportEnd = .init(format: collected.format, location: collected.location, cases: collected.cases.count)
        }
        let end = TestVerdict.StageEnd(
            stage: stage,
            termination: outcome.termination,
            failure: outcome.failure?.message,
            timedOutOnItsOwn: outcome.timedOut && stoppedBy(outcome, stage: stage, started: stageStarted) == nil,
            stoppedBy: stoppedBy(outcome, stage: stage, started: stageStarted),
            report: reportEnd,
            durationMs: Milliseconds(outcome.duration).value)
        verdict.apply(TestVerdict.judge(end, testTimeoutMs: assignment.test.timeoutMs?.value))
    }

    /// Starts a stage, ties it to the control, streams its output, and waits for its outcome.
    func runStage(_ stage: Stage) async -> (StageOutcome, ContinuousClock.Instant) {
        let pump = onLog.map { LiveLogPump(stage: stage.name, configuration: executor.configuration, onLog: $0) }
        let stageStarted = clock.now
        var onOutput: (@Sendable (LogStream, [UInt8]) -> Void)?
        if let pump { onOutput = { stream, bytes in pump.receive(stream, bytes) } }
        let handle = executor.runner.start(stage, in: context, onOutput: onOutput)
        control.attach(handle)
        let outcome: StageOutcome
        if let pump {
            outcome = await withTaskGroup(of: Void.self, returning: StageOutcome.self) { group in
                group.addTask { await pump.pump() }
                let outcome = await handle.outcome()
                group.cancelAll()
                return outcome
            }
            let streams: [LogStream] =
                executor.runner.configuration.capture == .merged ? [.combined] : [.stdout, .stderr]
            pump.finish(streams: streams)
        } else {
            outcome = await handle.outcome()
        }
        control.detach()
        records.append(StageRecord(name: stage.name, outcome: outcome))
        origin = exitOrigin(stage: stage.name, outcome.termination)
        if case .external = stoppedBy(outcome, stage: stage, started: stageStarted) { stopTookEffect = true }
        return (outcome, stageStarted)
    }

    /// What stopped a stage from above, if that is how it ended (see `attribute`).
    func stoppedBy(_ outcome: StageOutcome, stage: Stage, started: ContinuousClock.Instant) -> TestControl.Stop? {
        Self.attribute(
            control.firstStop, timedOut: outcome.timedOut, cancelled: outcome.cancelled, stage: stage,
            started: started, deadline: deadline)
    }

    /// Whether the first stop of the test is what ended a stage: an outside cause when the stage was cancelled
    /// (timed out, for the execution's timeout); the test's deadline when the stage timed out, unless the stage's
    /// own timeout came no later than the deadline (then the timeout is the stage's own, even if the deadline passed
    /// while the stage was being stopped).
    static func attribute(
        _ first: TestControl.Stop?, timedOut: Bool, cancelled: Bool, stage: Stage,
        started: ContinuousClock.Instant, deadline: ContinuousClock.Instant?
    ) -> TestControl.Stop? {
        guard let first else { return nil }
        switch first {
        case .external(let cause):
            let stopped = cause == .executionTimeout ? timedOut : cancelled
            return stopped ? first : nil
        case .deadline:
            guard timedOut else { return nil }
            if let own = stage.timeoutMs, let deadline, started + own.duration <= deadline { return nil }
            return first
        }
    }

    // MARK: Evidence and results

    private func collectEvidence() async -> Evidence {
        let directory = assignment.directory
        let artifacts = assignment.artifactsDirectory
        let records = self.records
        let store = executor.attachments
        let configuration = executor.configuration
        let logger = self.logger
        return await onDedicatedThread("cta-test-evidence") {
            EvidenceCollector.collect(
                directory: directory, artifacts: artifacts, stages: records, store: store,
                configuration: configuration, logger: logger)
        }
    }

    private func makeResults(evidence: Evidence, finishedAt: Timestamp, duration: Milliseconds) -> [TestResult] {
        let test = assignment.test
        var shared = evidence.custom
        if !evidence.skipped.isEmpty { shared["skippedAttachments"] = .array(evidence.skipped) }
        if let problem = evidence.customProblem { shared["customJSONProblem"] = .string(problem) }

        func result(
            name: String, status: TestStatus, message: String?, description: String?, startedAt: Timestamp?,
            finishedAt: Timestamp?, durationMs: Milliseconds, custom: [String: JSONValue], origin: ResultOrigin
        ) -> TestResult {
            TestResult(
                executionID: assignment.execution.executionID, machine: assignment.machine,
                attempt: assignment.attempt, testID: test.id, index: assignment.index, name: name, status: status,
                message: message, description: description, startedAt: startedAt, finishedAt: finishedAt,
                durationMs: durationMs, attachments: evidence.attachments, screenshot: evidence.screenshot,
                log: evidence.log, custom: custom, origin: origin)
        }

        var results: [TestResult] = []
        for (stage, item, problems) in cases {
            let parsed = item.result
            var custom = shared.merging(parsed.custom) { $1 }
            if !parsed.properties.isEmpty {
                custom["properties"] = .array(
                    parsed.properties.map { .object(["name": .string($0.name), "value": .string($0.value)]) })
            }
            if let out = parsed.systemOut { custom["systemOut"] = .string(out) }
            if let err = parsed.systemErr { custom["systemErr"] = .string(err) }
            if !problems.isEmpty { custom["reportProblems"] = .array(problems.map { .string($0) }) }
            results.append(
                result(
                    name: parsed.name, status: parsed.status, message: parsed.message,
                    description: parsed.description, startedAt: nil, finishedAt: nil,
                    durationMs: parsed.durationMs ?? Milliseconds(0), custom: custom,
                    origin: parsed.resultOrigin(stage: stage, file: item.file)))
        }
        if verdict.needsTestLevelResult {
            var custom = shared
            if !orphanReportProblems.isEmpty {
                custom["reportProblems"] = .array(orphanReportProblems.map { .string($0) })
            }
            let origin =
                self.origin ?? .exitCode(stage: test.stages.first?.name ?? test.name, exitCode: -1, signal: nil)
            results.append(
                result(
                    name: test.name, status: verdict.status, message: verdict.message, description: test.description,
                    startedAt: startedAt, finishedAt: finishedAt, durationMs: duration, custom: custom,
                    origin: origin))
        }
        return results
    }
}
