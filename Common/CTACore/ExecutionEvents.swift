// Payloads about executions: dispatch, parallel tests, cancel, states, logs and results.

/// The scenario an execution runs.
public struct ScenarioReference: Hashable, Sendable, Codable {
    public var id: ScenarioID
    public var name: String
    /// Creates a reference.
    public init(id: ScenarioID, name: String) {
        self.id = id
        self.name = name
    }
}

/// The test suite an execution runs.
public struct SuiteReference: Hashable, Sendable, Codable {
    public var id: SuiteID
    public var name: String
    /// Creates a reference.
    public init(id: SuiteID, name: String) {
        self.id = id
        self.name = name
    }
}

/// The time limits of an execution.
public struct ExecutionTimeouts: Hashable, Sendable, Codable {
    /// Work not started by this instant is not started at all: the agent reports `acked` then `timeout`.
    ///
    /// An absolute time, because the event may wait in a queue for a long time; machines keep their clocks in
    /// sync (NTP).
    public var pendingDeadline: Timestamp
    /// How long one machine's part may run, counted from its `running` state.
    public var runningTimeoutMs: Milliseconds

    /// Creates timeouts.
    public init(pendingDeadline: Timestamp, runningTimeoutMs: Milliseconds) {
        self.pendingDeadline = pendingDeadline
        self.runningTimeoutMs = runningTimeoutMs
    }
}

/// What every piece of work of one execution shares.
public struct ExecutionContext: Hashable, Sendable, Codable {
    /// The execution.
    public var executionID: ExecutionID
    /// The scenario that produced it.
    public var scenario: ScenarioReference
    /// The suite it runs.
    public var suite: SuiteReference
    /// How it is spread over machines.
    public var runMode: RunMode
    /// Environment for every test (tests and stages add to it).
    public var env: [String: String]
    /// Time limits.
    public var timeouts: ExecutionTimeouts
    /// Who started it, e.g. `user/alice`, `scheduler`, `pipeline/gitlab-ci`.
    public var requestedBy: String

    /// Creates a context.
    public init(
        executionID: ExecutionID,
        scenario: ScenarioReference,
        suite: SuiteReference,
        runMode: RunMode,
        env: [String: String] = [:],
        timeouts: ExecutionTimeouts,
        requestedBy: String
    ) {
        self.executionID = executionID
        self.scenario = scenario
        self.suite = suite
        self.runMode = runMode
        self.env = env
        self.timeouts = timeouts
        self.requestedBy = requestedBy
    }

    private enum CodingKeys: String, CodingKey {
        case executionID, scenario, suite, runMode, env, timeouts, requestedBy
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        executionID = try c.required(.executionID)
        scenario = try c.required(.scenario)
        suite = try c.required(.suite)
        runMode = try c.required(.runMode)
        env = try c.optional(.env) ?? [:]
        timeouts = try c.required(.timeouts)
        requestedBy = try c.required(.requestedBy)
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(scenario.name, at: path.appending("scenario").appending("name"))
        try checkText(suite.name, at: path.appending("suite").appending("name"))
        try checkEnvironment(env, at: path.appending("env"))
        if timeouts.runningTimeoutMs.value == 0 {
            throw WireError.invalid(path.appending("timeouts").appending("runningTimeoutMs"), "must be greater than 0")
        }
        try checkText(requestedBy, at: path.appending("requestedBy"), limit: 256)
    }
}

/// Where the tests of a parallel execution wait, announced in its dispatch.
public struct ParallelWork: Hashable, Sendable, Codable {
    /// The execution's shared queue, always ``Topology/parallelQueue(execution:)``.
    public var queue: String
    /// How many `execution.test` events the coordinator published into it.
    public var testCount: Int

    /// Creates the announcement for an execution.
    public init(execution: ExecutionID, testCount: Int) {
        queue = Topology.parallelQueue(execution: execution)
        self.testCount = testCount
    }

    private enum CodingKeys: String, CodingKey { case queue, testCount }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        queue = try c.required(.queue)
        testCount = try c.integer(.testCount, minimum: 1)
    }
}

/// `execution.dispatch`: work for a machine (mono, stress), for any machine of a group (group), or the announcement
/// of a parallel execution's shared queue (parallel).
public struct ExecutionDispatch: EventPayload {
    public static let eventType = EventType.executionDispatch
    public var event: Event { .executionDispatch(self) }

    /// What the execution's work shares.
    public var execution: ExecutionContext
    /// 1 for the first dispatch; more when the coordinator re-dispatches after an infrastructure failure.
    public var attempt: Int
    /// The tests to run, in order. Empty in parallel mode (the tests are in the shared queue).
    public var tests: [TestDefinition]
    /// Present exactly in parallel mode: the shared queue to drain.
    public var parallel: ParallelWork?

    /// Creates a dispatch.
    public init(execution: ExecutionContext, attempt: Int = 1, tests: [TestDefinition], parallel: ParallelWork? = nil) {
        self.execution = execution
        self.attempt = attempt
        self.tests = tests
        self.parallel = parallel
    }

    private enum CodingKeys: String, CodingKey { case execution, attempt, tests, parallel }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        execution = try c.required(.execution)
        attempt = try c.integer(.attempt, minimum: 1)
        tests = try c.optional(.tests) ?? []
        parallel = try c.optional(.parallel)
    }

    func validate(at path: WirePath) throws(WireError) {
        try execution.validate(at: path.appending("execution"))
        if execution.runMode == .parallel {
            guard let parallel else {
                throw WireError.missing(path.appending("parallel"), "a parallel dispatch must name its shared queue")
            }
            if parallel.queue != Topology.parallelQueue(execution: execution.executionID) {
                throw WireError.invalid(
                    path.appending("parallel").appending("queue"),
                    "must be \(Topology.parallelQueue(execution: execution.executionID))"
                )
            }
            if !tests.isEmpty {
                throw WireError.invalid(path.appending("tests"), "must be empty in parallel mode")
            }
        } else {
            if parallel != nil {
                throw WireError.invalid(path.appending("parallel"), "only a parallel dispatch has a shared queue")
            }
            if tests.isEmpty { throw WireError.invalid(path.appending("tests"), "must hold at least one test") }
        }
        var ids = Set<TestID>()
        for (index, test) in tests.enumerated() {
            let testPath = path.appending("tests").appending(index: index)
            try test.validate(at: testPath)
            if !ids.insert(test.id).inserted {
                throw WireError.invalid(testPath.appending("id"), "test ids must be unique within an execution")
            }
        }
    }
}

/// `execution.test`: one test of a parallel execution, in the execution's shared queue.
///
/// It carries the execution's shared context so that it can be run on its own.
public struct TestDispatch: EventPayload {
    public static let eventType = EventType.executionTest
    public var event: Event { .executionTest(self) }

    /// What the execution's work shares; `runMode` is `parallel`.
    public var execution: ExecutionContext
    /// The test's position in the suite, from 0.
    public var index: Int
    /// How many tests the execution has.
    public var count: Int
    /// 1 for the first publication; more when the coordinator re-queues the test after an infrastructure failure.
    public var attempt: Int
    /// The test.
    public var test: TestDefinition

    /// Creates a parallel test event.
    public init(execution: ExecutionContext, index: Int, count: Int, attempt: Int = 1, test: TestDefinition) {
        self.execution = execution
        self.index = index
        self.count = count
        self.attempt = attempt
        self.test = test
    }

    private enum CodingKeys: String, CodingKey { case execution, index, count, attempt, test }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        execution = try c.required(.execution)
        index = try c.integer(.index, minimum: 0)
        count = try c.integer(.count, minimum: 1)
        attempt = try c.integer(.attempt, minimum: 1)
        test = try c.required(.test)
    }

    func validate(at path: WirePath) throws(WireError) {
        try execution.validate(at: path.appending("execution"))
        if execution.runMode != .parallel {
            throw WireError.invalid(path.appending("execution").appending("runMode"), "must be parallel")
        }
        if index >= count { throw WireError.invalid(path.appending("index"), "must be less than count") }
        try test.validate(at: path.appending("test"))
    }
}

/// `execution.cancel`: stop an execution everywhere. Broadcast to every machine queue; each agent records a
/// tombstone (until `tombstoneUntil`) and stops the execution if it holds it.
public struct ExecutionCancel: EventPayload {
    public static let eventType = EventType.executionCancel
    public var event: Event { .executionCancel(self) }

    /// The execution.
    public var executionID: ExecutionID
    /// Why, which decides the final state agents report.
    public var cause: CancelCause
    /// A sentence for people.
    public var reason: String
    /// Who asked, e.g. `user/alice` or `scheduler`.
    public var requestedBy: String
    /// How long agents keep the tombstone: the execution's pending deadline, after which no agent starts it anyway.
    public var tombstoneUntil: Timestamp

    /// Creates a cancel event.
    public init(
        executionID: ExecutionID,
        cause: CancelCause,
        reason: String,
        requestedBy: String,
        tombstoneUntil: Timestamp
    ) {
        self.executionID = executionID
        self.cause = cause
        self.reason = reason
        self.requestedBy = requestedBy
        self.tombstoneUntil = tombstoneUntil
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(reason, at: path.appending("reason"))
        try checkText(requestedBy, at: path.appending("requestedBy"), limit: 256)
    }
}

/// `execution.state`: an execution's state on one machine.
///
/// The state's time is the envelope's `time`. A machine's first state for an execution is always `acked`; its last
/// is exactly one of `finished`, `cancelled`, `timeout`, which carries `firstSeq` and `lastSeq` so the coordinator
/// can prove it holds every event of that machine's part (see `docs/protocol.md`, "Completeness").
public struct ExecutionStateChange: EventPayload {
    public static let eventType = EventType.executionState
    public var event: Event { .executionState(self) }

    /// The execution.
    public var executionID: ExecutionID
    /// The machine; equal to the envelope's source.
    public var machine: MachineName
    /// The new state.
    public var state: ExecutionState
    /// The dispatch attempt this state belongs to.
    public var attempt: Int
    /// Results this machine produced for the execution so far (all of them in a final state).
    public var counts: ResultCounts
    /// Why (cancel reason, timeout, error); for people.
    public var reason: String?
    /// In a final state: the `seq` of this machine's `acked` event for the execution.
    public var firstSeq: UInt64?
    /// In a final state: the `seq` of the last event this machine sent for the execution before this one.
    public var lastSeq: UInt64?

    /// Creates a state change.
    public init(
        executionID: ExecutionID,
        machine: MachineName,
        state: ExecutionState,
        attempt: Int = 1,
        counts: ResultCounts = ResultCounts(),
        reason: String? = nil,
        firstSeq: UInt64? = nil,
        lastSeq: UInt64? = nil
    ) {
        self.executionID = executionID
        self.machine = machine
        self.state = state
        self.attempt = attempt
        self.counts = counts
        self.reason = reason
        self.firstSeq = firstSeq
        self.lastSeq = lastSeq
    }

    private enum CodingKeys: String, CodingKey {
        case executionID, machine, state, attempt, counts, reason, firstSeq, lastSeq
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        executionID = try c.required(.executionID)
        machine = try c.required(.machine)
        state = try c.required(.state)
        attempt = try c.integer(.attempt, minimum: 1)
        counts = try c.optional(.counts) ?? ResultCounts()
        reason = try c.optional(.reason)
        firstSeq = try c.optionalInteger(.firstSeq, minimum: 1)
        lastSeq = try c.optionalInteger(.lastSeq, minimum: 1)
    }

    func validate(at path: WirePath) throws(WireError) {
        if let reason { try checkText(reason, at: path.appending("reason"), limit: 4096) }
        guard state.isFinal else { return }
        guard let firstSeq else {
            throw WireError.missing(path.appending("firstSeq"), "a final state must carry firstSeq")
        }
        guard let lastSeq else {
            throw WireError.missing(path.appending("lastSeq"), "a final state must carry lastSeq")
        }
        if lastSeq < firstSeq {
            throw WireError.invalid(path.appending("lastSeq"), "must not be less than firstSeq")
        }
    }
}

/// Where a result came from: a stage's exit code, a JUnit test case or a TAP test point.
public enum ResultOrigin: Hashable, Sendable, Codable {
    /// The test's outcome is its stages' exit status.
    case exitCode(stage: String, exitCode: Int32?, signal: String?)
    /// One `<testcase>` of a JUnit XML report.
    case junit(stage: String, file: String, suite: String?, classname: String?, testcase: String)
    /// One test point of a TAP stream.
    case tap(stage: String, file: String?, number: Int, description: String?)

    /// The stage that produced the result.
    public var stage: String {
        switch self {
        case .exitCode(let stage, _, _), .junit(let stage, _, _, _, _), .tap(let stage, _, _, _): stage
        }
    }

    private enum Kind: String, CaseIterable, Codable {
        case exitCode, junit, tap
        init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
    }

    private enum CodingKeys: String, CodingKey {
        case kind, stage, exitCode, signal, file, suite, classname, testcase, number, description
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let stage: String = try c.required(.stage)
        switch try c.required(.kind, as: Kind.self) {
        case .exitCode:
            let exitCode: Int32? = try c.optionalInteger(.exitCode, minimum: Int32.min)
            self = .exitCode(stage: stage, exitCode: exitCode, signal: try c.optional(.signal))
        case .junit:
            self = .junit(
                stage: stage,
                file: try c.required(.file),
                suite: try c.optional(.suite),
                classname: try c.optional(.classname),
                testcase: try c.required(.testcase)
            )
        case .tap:
            self = .tap(
                stage: stage,
                file: try c.optional(.file),
                number: try c.integer(.number, minimum: 1),
                description: try c.optional(.description)
            )
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .exitCode(let stage, let exitCode, let signal):
            try c.encode(Kind.exitCode, forKey: .kind)
            try c.encode(stage, forKey: .stage)
            try c.encodeIfPresent(exitCode, forKey: .exitCode)
            try c.encodeIfPresent(signal, forKey: .signal)
        case .junit(let stage, let file, let suite, let classname, let testcase):
            try c.encode(Kind.junit, forKey: .kind)
            try c.encode(stage, forKey: .stage)
            try c.encode(file, forKey: .file)
            try c.encodeIfPresent(suite, forKey: .suite)
            try c.encodeIfPresent(classname, forKey: .classname)
            try c.encode(testcase, forKey: .testcase)
        case .tap(let stage, let file, let number, let description):
            try c.encode(Kind.tap, forKey: .kind)
            try c.encode(stage, forKey: .stage)
            try c.encodeIfPresent(file, forKey: .file)
            try c.encode(number, forKey: .number)
            try c.encodeIfPresent(description, forKey: .description)
        }
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(stage, at: path.appending("stage"), limit: 256)
        switch self {
        case .exitCode(_, let exitCode, let signal):
            if exitCode == nil && signal == nil {
                throw WireError.missing(path.appending("exitCode"), "an exit-code result needs exitCode or signal")
            }
        case .junit(_, let file, _, _, let testcase):
            try checkText(file, at: path.appending("file"))
            try checkText(testcase, at: path.appending("testcase"), limit: 4096)
        case .tap(_, let file, _, _):
            if let file { try checkText(file, at: path.appending("file")) }
        }
    }
}

/// `test.result`: the outcome of one test (or one test case of a report) on one machine.
public struct TestResult: EventPayload {
    public static let eventType = EventType.testResult
    public var event: Event { .testResult(self) }

    /// The execution.
    public var executionID: ExecutionID
    /// The machine; equal to the envelope's source.
    public var machine: MachineName
    /// The dispatch attempt (or, in parallel mode, the test's attempt).
    public var attempt: Int
    /// The test definition this result belongs to.
    public var testID: TestID
    /// In parallel mode, the test's index in the suite.
    public var index: Int?
    /// The result's name: the test's name, or the test case's name for JUnit and TAP results.
    public var name: String
    /// The outcome.
    public var status: TestStatus
    /// A message about the outcome (assertion text, exit status).
    public var message: String?
    /// What the test checks.
    public var description: String?
    /// When the test started, if known (JUnit reports often only give a duration).
    public var startedAt: Timestamp?
    /// When the test finished, if known.
    public var finishedAt: Timestamp?
    /// How long the test ran.
    public var durationMs: Milliseconds
    /// Files the test left in its artifacts directory, uploaded.
    public var attachments: [AttachmentReference]
    /// A screenshot relevant to the outcome.
    public var screenshot: AttachmentReference?
    /// The test's output, uploaded.
    public var log: AttachmentReference?
    /// Anything else the test reports, as a JSON object.
    public var custom: [String: JSONValue]
    /// Where the result came from.
    public var origin: ResultOrigin

    /// Creates a result.
    public init(
        executionID: ExecutionID,
        machine: MachineName,
        attempt: Int = 1,
        testID: TestID,
        index: Int? = nil,
        name: String,
        status: TestStatus,
        message: String? = nil,
        description: String? = nil,
        startedAt: Timestamp? = nil,
        finishedAt: Timestamp? = nil,
        durationMs: Milliseconds,
        attachments: [AttachmentReference] = [],
        screenshot: AttachmentReference? = nil,
        log: AttachmentReference? = nil,
        custom: [String: JSONValue] = [:],
        origin: ResultOrigin
    ) {
        self.executionID = executionID
        self.machine = machine
        self.attempt = attempt
        self.testID = testID
        self.index = index
        self.name = name
        self.status = status
        self.message = message
        self.description = description
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.durationMs = durationMs
        self.attachments = attachments
        self.screenshot = screenshot
        self.log = log
        self.custom = custom
        self.origin = origin
    }

    private enum CodingKeys: String, CodingKey {
        case executionID, machine, attempt, testID, index, name, status, message, description, startedAt, finishedAt
        case durationMs, attachments, screenshot, log, custom, origin
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        executionID = try c.required(.executionID)
        machine = try c.required(.machine)
        attempt = try c.integer(.attempt, minimum: 1)
        testID = try c.required(.testID)
        index = try c.optionalInteger(.index, minimum: 0)
        name = try c.required(.name)
        status = try c.required(.status)
        message = try c.optional(.message)
        description = try c.optional(.description)
        startedAt = try c.optional(.startedAt)
        finishedAt = try c.optional(.finishedAt)
        durationMs = try c.required(.durationMs)
        attachments = try c.optional(.attachments) ?? []
        screenshot = try c.optional(.screenshot)
        log = try c.optional(.log)
        custom = try c.optional(.custom) ?? [:]
        origin = try c.required(.origin)
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(name, at: path.appending("name"), limit: 4096)
        if let startedAt, let finishedAt, finishedAt < startedAt {
            throw WireError.invalid(path.appending("finishedAt"), "must not be before startedAt")
        }
        for (index, attachment) in attachments.enumerated() {
            try attachment.validate(at: path.appending("attachments").appending(index: index))
        }
        try screenshot?.validate(at: path.appending("screenshot"))
        try log?.validate(at: path.appending("log"))
        try origin.validate(at: path.appending("origin"))
    }
}

/// `execution.log`: a piece of a stage's output, inline when small, otherwise uploaded and referenced.
///
/// Chunks let people follow a running test; the complete log is the result's `log` attachment.
public struct ExecutionLog: EventPayload {
    public static let eventType = EventType.executionLog
    public var event: Event { .executionLog(self) }

    /// At most this many UTF-8 bytes ride inline in `text`; larger chunks are uploaded.
    public static let maximumInlineBytes = 16 * 1024

    /// The execution.
    public var executionID: ExecutionID
    /// The machine; equal to the envelope's source.
    public var machine: MachineName
    /// The test, when the output belongs to one.
    public var testID: TestID?
    /// The stage whose output this is.
    public var stage: String?
    /// Which stream.
    public var stream: LogStream
    /// The byte offset of this chunk in the stream's full output.
    public var offset: UInt64
    /// The chunk's text, when it rides inline.
    public var text: String?
    /// The chunk, when uploaded.
    public var attachment: AttachmentReference?
    /// Whether this is the stream's last chunk.
    public var final: Bool

    /// Creates a log chunk; give exactly one of `text` and `attachment`.
    public init(
        executionID: ExecutionID,
        machine: MachineName,
        testID: TestID? = nil,
        stage: String? = nil,
        stream: LogStream,
        offset: UInt64,
        text: String? = nil,
        attachment: AttachmentReference? = nil,
        final: Bool = false
    ) {
        self.executionID = executionID
        self.machine = machine
        self.testID = testID
        self.stage = stage
        self.stream = stream
        self.offset = offset
        self.text = text
        self.attachment = attachment
        self.final = final
    }

    private enum CodingKeys: String, CodingKey {
        case executionID, machine, testID, stage, stream, offset, text, attachment, final
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        executionID = try c.required(.executionID)
        machine = try c.required(.machine)
        testID = try c.optional(.testID)
        stage = try c.optional(.stage)
        stream = try c.required(.stream)
        offset = try c.integer(.offset, minimum: 0)
        text = try c.optional(.text)
        attachment = try c.optional(.attachment)
        final = try c.optional(.final) ?? false
    }

    func validate(at path: WirePath) throws(WireError) {
        switch (text, attachment) {
        case (nil, nil):
            throw WireError.missing(path.appending("text"), "a log chunk needs text or attachment")
        case (.some, .some):
            throw WireError.invalid(path.appending("attachment"), "a log chunk has text or attachment, not both")
        case (.some(let text), nil):
            if text.utf8.count > Self.maximumInlineBytes {
                throw WireError.invalid(
                    path.appending("text"),
                    "inline text is limited to \(Self.maximumInlineBytes) bytes; upload larger chunks"
                )
            }
        case (nil, .some(let attachment)):
            try attachment.validate(at: path.appending("attachment"))
        }
        if let stage { try checkText(stage, at: path.appending("stage"), limit: 256) }
    }
}
