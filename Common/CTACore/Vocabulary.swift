// The domain words that travel on the wire: run modes, states, statuses, stages, tests, attachments.

/// How an execution is spread over machines.
public enum RunMode: String, CaseIterable, Hashable, Sendable, Codable {
    /// One matching machine runs the suite; the dispatch goes to that machine's queue.
    case mono
    /// Every matching machine runs the suite; one dispatch per machine, each to its machine queue.
    case stress
    /// Any one machine of a group runs the suite; one dispatch to the group's queue.
    case group
    /// Each test is its own event in a per-execution queue that the pool's free machines drain (work stealing).
    case parallel

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// The state of an execution on one machine, as that machine's agent reports it.
///
/// The coordinator's own execution state also has `pending` (not yet taken by any machine); agents never send it.
public enum ExecutionState: String, CaseIterable, Hashable, Sendable, Codable {
    /// The agent durably took the work (it is in the agent's spool); always the machine's first state.
    case acked
    /// The agent started running tests.
    case running
    /// The machine's part ran to its end (whatever the test statuses).
    case finished
    /// The machine's part was cancelled (cancel event, tombstone, or agent shutdown).
    case cancelled
    /// The machine's part hit its running timeout, or was taken after its pending deadline.
    case timeout

    /// Whether this is a machine's last state for an execution.
    public var isFinal: Bool {
        switch self {
        case .acked, .running: false
        case .finished, .cancelled, .timeout: true
        }
    }

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// The outcome of one test. A test's outcome is a value, never an error.
public enum TestStatus: String, CaseIterable, Hashable, Sendable, Codable {
    /// The test passed.
    case ok
    /// The test ran and failed.
    case failed
    /// Part of the test passed; other parts could not run because something outside the test was missing.
    case partial
    /// The test could not run because its mandatory conditions were not met (setup failed, agent lost, …).
    case inconclusive

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// How an agent reaches the broker.
public enum Transport: String, CaseIterable, Hashable, Sendable, Codable {
    /// Directly over AMQP.
    case amqp
    /// Through a `cta-gateway` over HTTPS and WebSocket.
    case gateway

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// Which output of a stage a log chunk holds.
public enum LogStream: String, CaseIterable, Hashable, Sendable, Codable {
    case stdout
    case stderr
    /// Both streams interleaved in the order they were written.
    case combined

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// Why an execution is cancelled; decides the final state the agents report.
public enum CancelCause: String, CaseIterable, Hashable, Sendable, Codable {
    /// A user or pipeline asked for it; final state `cancelled`.
    case requested
    /// The coordinator's scheduler saw the running timeout pass; final state `timeout`.
    case timeout
    /// The system decided (machine drained for health, scenario deleted, …); final state `cancelled`.
    case system

    /// The final state an agent reports for work cancelled with this cause.
    public var finalState: ExecutionState { self == .timeout ? .timeout : .cancelled }

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// A report format the agent parses into one result per test case.
public enum ReportFormat: String, CaseIterable, Hashable, Sendable, Codable {
    /// JUnit XML written to a file.
    case junit
    /// Test Anything Protocol, on stdout or in a file.
    case tap

    public init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
}

/// Where a stage leaves a report whose test cases become results.
public struct ReportSpec: Hashable, Sendable, Codable {
    /// The format.
    public var format: ReportFormat
    /// The report file, relative to the stage's working directory; a glob is allowed. Required for JUnit; for TAP,
    /// absent means the stage's stdout.
    public var path: String?

    /// Creates a report specification.
    public init(format: ReportFormat, path: String? = nil) {
        self.format = format
        self.path = path
    }

    func validate(at path: WirePath) throws(WireError) {
        if let file = self.path {
            try checkRelativePath(file, at: path.appending("path"))
        } else if format == .junit {
            throw WireError.missing(path.appending("path"), "a JUnit report needs a path")
        }
    }
}

/// One step of a test: a command run as a child process in its own process group.
public struct Stage: Hashable, Sendable, Codable {
    /// A name, unique within the test; results and logs refer to it.
    public var name: String
    /// The command line, run with `/bin/sh -c`.
    public var run: String
    /// A command run when the stage is cancelled or times out, before the process tree is signalled.
    public var stop: String?
    /// The working directory, relative to the test's work directory.
    public var cwd: String?
    /// Extra environment variables for this stage (on top of the test's and the execution's).
    public var env: [String: String]
    /// How long the stage may run; absent means bounded only by the test's and the execution's timeouts.
    public var timeoutMs: Milliseconds?
    /// Whether a failure of this stage ends the test (later stages are skipped). Default `true`.
    public var mandatory: Bool
    /// A report this stage writes, whose test cases become results.
    public var report: ReportSpec?

    /// Creates a stage.
    public init(
        name: String,
        run: String,
        stop: String? = nil,
        cwd: String? = nil,
        env: [String: String] = [:],
        timeoutMs: Milliseconds? = nil,
        mandatory: Bool = true,
        report: ReportSpec? = nil
    ) {
        self.name = name
        self.run = run
        self.stop = stop
        self.cwd = cwd
        self.env = env
        self.timeoutMs = timeoutMs
        self.mandatory = mandatory
        self.report = report
    }

    private enum CodingKeys: String, CodingKey { case name, run, stop, cwd, env, timeoutMs, mandatory, report }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.required(.name)
        run = try c.required(.run)
        stop = try c.optional(.stop)
        cwd = try c.optional(.cwd)
        env = try c.optional(.env) ?? [:]
        timeoutMs = try c.optional(.timeoutMs)
        mandatory = try c.optional(.mandatory) ?? true
        report = try c.optional(.report)
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(name, at: path.appending("name"), limit: Self.maximumNameBytes)
        if run.isEmpty { throw WireError.invalid(path.appending("run"), "must not be empty") }
        if let stop, stop.isEmpty { throw WireError.invalid(path.appending("stop"), "must not be empty") }
        if let cwd { try checkRelativePath(cwd, at: path.appending("cwd")) }
        try checkEnvironment(env, at: path.appending("env"))
        if let timeoutMs, timeoutMs.value == 0 {
            throw WireError.invalid(path.appending("timeoutMs"), "must be greater than 0")
        }
        try report?.validate(at: path.appending("report"))
    }
}

/// Where a test's material comes from before its stages run.
public enum TestInput: Hashable, Sendable, Codable {
    /// A git repository cloned into the work directory.
    case git(GitInput)
    /// An uploaded file downloaded into the work directory (a build under test, a data set).
    case file(FileInput)

    private enum CodingKeys: String, CodingKey { case kind }
    private enum Kind: String, CaseIterable, Codable {
        case git, file
        init(from decoder: any Decoder) throws { self = try decoder.decodeEnumeration(Self.self) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.required(.kind, as: Kind.self) {
        case .git: self = .git(try GitInput(from: decoder))
        case .file: self = .file(try FileInput(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .git(let input):
            try c.encode(Kind.git, forKey: .kind)
            try input.encode(to: encoder)
        case .file(let input):
            try c.encode(Kind.file, forKey: .kind)
            try input.encode(to: encoder)
        }
    }

    func validate(at path: WirePath) throws(WireError) {
        switch self {
        case .git(let input): try input.validate(at: path)
        case .file(let input): try input.validate(at: path)
        }
    }
}

/// A git repository to clone: `{"kind": "git", "url": …, "ref": …, "path": …, "into": …}`.
public struct GitInput: Hashable, Sendable, Codable {
    /// The repository URL (https or ssh).
    public var url: String
    /// A branch, tag or commit; absent means the default branch.
    public var ref: String?
    /// A directory inside the repository the test uses; absent means the repository root.
    public var path: String?
    /// Where to clone, relative to the test's work directory; absent means the work directory itself.
    public var into: String?

    /// Creates a git input.
    public init(url: String, ref: String? = nil, path: String? = nil, into: String? = nil) {
        self.url = url
        self.ref = ref
        self.path = path
        self.into = into
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(url, at: path.appending("url"), limit: Self.maximumURLBytes)
        if let ref { try checkText(ref, at: path.appending("ref"), limit: Self.maximumRefBytes) }
        if let subdirectory = self.path { try checkRelativePath(subdirectory, at: path.appending("path")) }
        if let into { try checkRelativePath(into, at: path.appending("into")) }
    }
}

/// An uploaded file to download: `{"kind": "file", "attachment": {…}, "into": …}`.
public struct FileInput: Hashable, Sendable, Codable {
    /// The uploaded file.
    public var attachment: AttachmentReference
    /// The file's path relative to the test's work directory.
    public var into: String

    /// Creates a file input.
    public init(attachment: AttachmentReference, into: String) {
        self.attachment = attachment
        self.into = into
    }

    func validate(at path: WirePath) throws(WireError) {
        try attachment.validate(at: path.appending("attachment"))
        try checkRelativePath(into, at: path.appending("into"))
    }
}

/// A test as the agent runs it: stages, inputs, environment, timeout.
public struct TestDefinition: Hashable, Sendable, Codable {
    /// The test's identifier, unique within the execution.
    public var id: TestID
    /// A human name.
    public var name: String
    /// What the test is for.
    public var description: String?
    /// The stages, run in order. At least one.
    public var stages: [Stage]
    /// Material fetched before the first stage.
    public var inputs: [TestInput]
    /// Environment for every stage of this test.
    public var env: [String: String]
    /// How long the whole test may run; absent means bounded only by the execution's running timeout.
    public var timeoutMs: Milliseconds?
    /// How long the test took recently (from history); parallel runs are published longest first.
    public var expectedDurationMs: Milliseconds?

    /// Creates a test definition.
    public init(
        id: TestID,
        name: String,
        description: String? = nil,
        stages: [Stage],
        inputs: [TestInput] = [],
        env: [String: String] = [:],
        timeoutMs: Milliseconds? = nil,
        expectedDurationMs: Milliseconds? = nil
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.stages = stages
        self.inputs = inputs
        self.env = env
        self.timeoutMs = timeoutMs
        self.expectedDurationMs = expectedDurationMs
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, description, stages, inputs, env, timeoutMs, expectedDurationMs
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.required(.id)
        name = try c.required(.name)
        description = try c.optional(.description)
        stages = try c.required(.stages)
        inputs = try c.optional(.inputs) ?? []
        env = try c.optional(.env) ?? [:]
        timeoutMs = try c.optional(.timeoutMs)
        expectedDurationMs = try c.optional(.expectedDurationMs)
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(name, at: path.appending("name"), limit: Self.maximumNameBytes)
        if stages.isEmpty { throw WireError.invalid(path.appending("stages"), "a test needs at least one stage") }
        var names = Set<String>()
        for (index, stage) in stages.enumerated() {
            let stagePath = path.appending("stages").appending(index: index)
            try stage.validate(at: stagePath)
            if !names.insert(stage.name).inserted {
                throw WireError.invalid(stagePath.appending("name"), "stage names must be unique within a test")
            }
        }
        for (index, input) in inputs.enumerated() {
            try input.validate(at: path.appending("inputs").appending(index: index))
        }
        try checkEnvironment(env, at: path.appending("env"))
        if let timeoutMs, timeoutMs.value == 0 {
            throw WireError.invalid(path.appending("timeoutMs"), "must be greater than 0")
        }
    }
}

/// A reference to a file uploaded over HTTP: attachments, screenshots and spilled logs never ride in events.
public struct AttachmentReference: Hashable, Sendable, Codable {
    /// The attachment's identifier, chosen by the uploader (a retried upload with the same id is idempotent).
    public var id: AttachmentID
    /// The file name as the user sees it (no directory part).
    public var name: String
    /// The size in bytes.
    public var size: UInt64
    /// The media type, e.g. `image/png`.
    public var contentType: String
    /// The SHA-256 of the content, 64 lower-case hexadecimal digits.
    public var sha256: String

    /// Creates a reference.
    public init(id: AttachmentID, name: String, size: UInt64, contentType: String, sha256: String) {
        self.id = id
        self.name = name
        self.size = size
        self.contentType = contentType
        self.sha256 = sha256
    }

    private enum CodingKeys: String, CodingKey { case id, name, size, contentType, sha256 }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.required(.id)
        name = try c.required(.name)
        size = try c.integer(.size, minimum: 0)
        contentType = try c.required(.contentType)
        sha256 = try c.required(.sha256)
    }

    func validate(at path: WirePath) throws(WireError) {
        try checkText(name, at: path.appending("name"), limit: 255)
        if name.contains("/") || name.contains("\\") || name == "." || name == ".." {
            throw WireError.invalid(path.appending("name"), "must be a file name without a directory part")
        }
        let type = contentType.split(separator: "/", omittingEmptySubsequences: false)
        if type.count < 2 || type.contains(where: \.isEmpty) {
            throw WireError.invalid(path.appending("contentType"), "must be a media type such as text/plain")
        }
        let hex = sha256.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
        if sha256.utf8.count != 64 || !hex {
            throw WireError.invalid(path.appending("sha256"), "must be 64 lower-case hexadecimal digits")
        }
    }
}

/// How many results of each status a machine produced for an execution.
public struct ResultCounts: Hashable, Sendable, Codable {
    public var ok: UInt64
    public var failed: UInt64
    public var partial: UInt64
    public var inconclusive: UInt64

    /// Creates counts; all zero by default.
    public init(ok: UInt64 = 0, failed: UInt64 = 0, partial: UInt64 = 0, inconclusive: UInt64 = 0) {
        self.ok = ok
        self.failed = failed
        self.partial = partial
        self.inconclusive = inconclusive
    }

    /// The number of results.
    public var total: UInt64 { ok + failed + partial + inconclusive }

    /// Adds another set of counts.
    public mutating func add(_ other: ResultCounts) {
        ok += other.ok
        failed += other.failed
        partial += other.partial
        inconclusive += other.inconclusive
    }

    /// Counts one more result of a status.
    public mutating func add(_ status: TestStatus) {
        switch status {
        case .ok: ok += 1
        case .failed: failed += 1
        case .partial: partial += 1
        case .inconclusive: inconclusive += 1
        }
    }

    private enum CodingKeys: String, CodingKey { case ok, failed, partial, inconclusive }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ok = try c.optionalInteger(.ok, minimum: 0) ?? 0
        failed = try c.optionalInteger(.failed, minimum: 0) ?? 0
        partial = try c.optionalInteger(.partial, minimum: 0) ?? 0
        inconclusive = try c.optionalInteger(.inconclusive, minimum: 0) ?? 0
    }
}
