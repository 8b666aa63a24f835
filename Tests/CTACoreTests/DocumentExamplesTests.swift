import CTACore
import Foundation
import Testing

@Suite("docs/protocol.md examples")
struct DocumentExamplesTests {
    let document: ProtocolDocument

    init() throws { document = try ProtocolDocument.load() }

    @Test("every tag is followed by a well-formed fenced block")
    func tagsAreWellFormed() {
        #expect(document.problems == [])
        #expect(!document.examples.isEmpty)
        #expect(!document.malformed.isEmpty)
    }

    @Test("the example types are exactly the event types the code knows")
    func examplesCoverEveryEventType() {
        let documented = Set(document.examples.map(\.type))
        let known = Set(EventType.allCases.map(\.rawValue))
        let missing = known.subtracting(documented).sorted()
        let stale = documented.subtracting(known).sorted()
        #expect(documented == known, "missing examples: \(missing); stale examples: \(stale)")
    }

    @Test("example labels are unique, and each has field checks here")
    func everyExampleIsChecked() {
        let labels = document.examples.map(\.label)
        #expect(Set(labels).count == labels.count, "duplicate example labels: \(labels)")
        #expect(Set(labels) == Set(Self.checks.keys))
    }

    @Test("every example decodes, survives a round trip and has the documented values")
    func examplesDecode() {
        for example in document.examples {
            let envelope: Envelope
            do {
                envelope = try Envelope.decode(Data(example.body.utf8))
            } catch {
                Issue.record("example \(example.label) (line \(example.line)) was refused: \(error)")
                continue
            }
            #expect(envelope.type.rawValue == example.type, "example at line \(example.line)")
            #expect(envelope.version == .current)

            do {
                let again = try Envelope.decode(try envelope.encoded())
                #expect(again == envelope, "round trip of \(example.label)")
            } catch {
                Issue.record("example \(example.label) (line \(example.line)) failed its round trip: \(error)")
            }

            guard let check = Self.checks[example.label] else {
                Issue.record("no field checks for example \(example.label) (line \(example.line))")
                continue
            }
            do {
                try check(envelope)
            } catch {
                Issue.record("example \(example.label) (line \(example.line)) is not the expected event: \(error)")
            }
        }
    }

    @Test("every malformed example is refused with its documented code and path")
    func malformedExamplesAreRefused() throws {
        #expect(document.malformed.count >= 20)
        #expect(Set(document.malformed.map(\.name)).count == document.malformed.count, "malformed names must be unique")
        for example in document.malformed {
            let code = try #require(
                WireError.Code(name: example.code), "unknown code \(example.code) at line \(example.line)")
            let error = #expect(throws: WireError.self, "\(example.name) must be refused") {
                try Envelope.decode(Data(example.body.utf8))
            }
            #expect(error?.code == code, "\(example.name): got \(String(describing: error))")
            #expect(error?.path == example.path, "\(example.name): got \(String(describing: error))")
        }
    }

    @Test("the malformed examples cover every decoder error code")
    func malformedExamplesCoverCodes() {
        let documented = Set(document.malformed.map(\.code))
        let decoderCodes: Set<WireError.Code> = [
            .malformedJSON, .missingField, .wrongType, .invalidValue, .unknownType, .unsupportedVersion,
            .unauthorisedSource,
        ]
        #expect(documented == Set(decoderCodes.map(\.name)))
    }

    // MARK: Field checks, one per example label

    typealias Check = @Sendable (Envelope) throws -> Void

    static let epoch = SequenceEpoch(UUID(uuidString: "5b0d7c1e-3f2a-4c8e-9d41-7a6b2e9f0c13")!)
    static let execution = ExecutionID(UUID(uuidString: "0f8e2a4c-6b1d-4e7f-8a93-2c5d7e9f1b30")!)
    static let parallelExecution = ExecutionID(UUID(uuidString: "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d")!)
    static let lab01 = MachineName("lab-01")!

    static let checks: [String: Check] = [
        "agent.registration": { envelope in
            guard case .agentRegistration(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.source == .agent(lab01))
            #expect(envelope.epoch == epoch)
            #expect(envelope.seq == 1)
            #expect(envelope.time == Timestamp(rfc3339: "2025-03-14T09:00:00.125Z"))
            #expect(p.memoryBytes == 17_179_869_184)
            #expect(p.cpuCount == 8)
            #expect(p.tags["browser"] == "firefox")
            #expect(p.groups == [GroupName("linux-pool")])
            #expect(p.transport == .amqp)
            #expect(p.os == OperatingSystem(name: "debian", version: "12"))
        },
        "agent.heartbeat": { envelope in
            guard case .agentHeartbeat(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.seq == nil)
            #expect(envelope.epoch == epoch)
            #expect(p.running == [execution])
            #expect(p.load.one == 1.25)
            #expect(p.freeSlots == 1)
            #expect(p.spoolDepth == 3)
            #expect(p.lastSeq == 42)
            #expect(p.intervalMs.duration == .seconds(15))
        },
        "agent.shutdown": { envelope in
            guard case .agentShutdown(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.seq == 97)
            #expect(p.reason.hasPrefix("SIGTERM"))
            #expect(p.running.isEmpty)
        },
        "agent.drain": { envelope in
            guard case .agentDrain(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.source == .coordinator("cta-1"))
            #expect(envelope.seq == nil && envelope.epoch == nil)
            #expect(p.machine == lab01)
            #expect(p.drain)
            #expect(p.requestedBy == "coordinator/health")
        },
        "execution.dispatch mono": { envelope in
            guard case .executionDispatch(let p) = envelope.event else { throw Mismatch() }
            #expect(p.execution.executionID == execution)
            #expect(p.execution.runMode == .mono)
            #expect(p.execution.timeouts.runningTimeoutMs == Milliseconds(1_800_000))
            #expect(p.execution.timeouts.pendingDeadline == Timestamp(rfc3339: "2025-03-14T10:10:00Z"))
            #expect(p.parallel == nil)
            #expect(p.tests.count == 2)
            let ui = try #require(p.tests.first)
            #expect(ui.id == TestID("login-ui"))
            #expect(
                ui.inputs == [
                    .git(
                        GitInput(
                            url: "https://git.example.com/qa/login-tests.git", ref: "main", path: "ui", into: "src"))
                ])
            #expect(ui.stages.map(\.name) == ["setup", "test"])
            #expect(ui.stages[0].mandatory, "mandatory defaults to true")
            #expect(!ui.stages[1].mandatory)
            #expect(ui.stages[1].stop == "pkill -INT -f playwright")
            #expect(ui.stages[1].report == ReportSpec(format: .junit, path: "results.xml"))
            #expect(p.tests[1].stages[0].report == ReportSpec(format: .tap))
        },
        "execution.dispatch parallel": { envelope in
            guard case .executionDispatch(let p) = envelope.event else { throw Mismatch() }
            let id = parallelExecution
            #expect(p.execution.runMode == .parallel)
            #expect(p.tests.isEmpty)
            #expect(p.parallel == ParallelWork(execution: id, testCount: 120))
            #expect(p.parallel?.queue == Topology.parallelQueue(execution: id))
            #expect(p.execution.env.isEmpty)
        },
        "execution.test": { envelope in
            guard case .executionTest(let p) = envelope.event else { throw Mismatch() }
            #expect(p.execution.executionID == parallelExecution)
            #expect(p.index == 17)
            #expect(p.count == 120)
            #expect(p.attempt == 1)
            #expect(p.test.id == TestID("checkout-payment"))
            #expect(p.test.expectedDurationMs == Milliseconds(410_000))
        },
        "execution.cancel": { envelope in
            guard case .executionCancel(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.source == .coordinator("cta-2"))
            #expect(p.executionID == execution)
            #expect(p.cause == .requested)
            #expect(p.cause.finalState == .cancelled)
            #expect(p.requestedBy == "user/alice")
            #expect(p.tombstoneUntil == Timestamp(rfc3339: "2025-03-14T10:10:00Z"))
        },
        "execution.state acked": { envelope in
            guard case .executionState(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.seq == 12)
            #expect(p.state == .acked)
            #expect(p.counts == ResultCounts())
            #expect(p.firstSeq == nil && p.lastSeq == nil)
        },
        "execution.state finished": { envelope in
            guard case .executionState(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.seq == 31)
            #expect(p.state == .finished)
            #expect(p.state.isFinal)
            #expect(p.counts == ResultCounts(ok: 5, failed: 1))
            #expect(p.counts.total == 6)
            #expect(p.firstSeq == 12)
            #expect(p.lastSeq == 30)
        },
        "test.result junit": { envelope in
            guard case .testResult(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.seq == 27)
            #expect(p.status == .failed)
            #expect(p.testID == TestID("login-ui"))
            #expect(p.durationMs == Milliseconds(8250))
            #expect(p.startedAt == Timestamp(rfc3339: "2025-03-14T09:13:31.5Z"))
            #expect(p.attachments.map(\.size) == [482_113])
            #expect(p.screenshot?.contentType == "image/png")
            #expect(p.custom["retries"] == .integer(0))
            #expect(p.custom["viewport"] == .object(["width": .integer(1280), "height": .integer(720)]))
            #expect(p.custom["flags"] == .array([.string("a11y")]))
            #expect(
                p.origin
                    == .junit(
                        stage: "test", file: "results.xml", suite: "login", classname: "login.spec.ts",
                        testcase: "rejects a wrong password"))
        },
        "test.result exit-code": { envelope in
            guard case .testResult(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.source == .agent(try #require(MachineName("lab-02"))))
            #expect(envelope.time.microsecondsSinceEpoch % 1_000_000 == 1, "six fractional digits are kept")
            #expect(p.index == 17)
            #expect(p.status == .ok)
            #expect(p.custom.isEmpty && p.attachments.isEmpty)
            #expect(p.origin == .exitCode(stage: "run", exitCode: 0, signal: nil))
        },
        "execution.log": { envelope in
            guard case .executionLog(let p) = envelope.event else { throw Mismatch() }
            #expect(envelope.time == Timestamp(rfc3339: "2025-03-14T08:12:05.250Z"), "offsets are converted to UTC")
            #expect(p.stream == .combined)
            #expect(p.offset == 16384)
            #expect(p.text == "added 812 packages in 41s\n")
            #expect(p.attachment == nil)
            #expect(p.final)
        },
    ]

    struct Mismatch: Error {}
}
