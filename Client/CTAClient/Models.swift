import CTACore
import Foundation

// What the API answers, as the client reads it. Fields the client does not need are not decoded (the `--json`
// output prints the server's JSON itself); fields that may be absent are optional.

/// `GET /v1/whoami`.
public struct Identity: Codable, Hashable, Sendable {
    public var user: String
    public var role: String
    public var groups: [String]
    public var tokenId: String?

    public init(user: String, role: String, groups: [String] = [], tokenId: String? = nil) {
        self.user = user
        self.role = role
        self.groups = groups
        self.tokenId = tokenId
    }
}

/// `POST /v1/login`.
public struct LoginResponse: Codable, Hashable, Sendable {
    public var token: String
    public var expiresAt: String?
}

/// One page of a list: its items and the cursor of the next page.
public struct Page<Item: Decodable & Sendable>: Decodable, Sendable {
    public var items: [Item]
    public var next: String?

    public init(items: [Item], next: String?) {
        self.items = items
        self.next = next
    }
}

/// Why an execution is still pending: a summary and the machines that almost match.
public struct PendingExplanation: Codable, Hashable, Sendable {
    public struct Candidate: Codable, Hashable, Sendable {
        public var machine: String
        public var missing: [String]

        public init(machine: String, missing: [String]) {
            self.machine = machine
            self.missing = missing
        }
    }

    public var summary: String
    public var candidates: [Candidate]

    public init(summary: String, candidates: [Candidate] = []) {
        self.summary = summary
        self.candidates = candidates
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        summary = try container.decode(String.self, forKey: .summary)
        candidates = try container.decodeIfPresent([Candidate].self, forKey: .candidates) ?? []
    }
}

/// An execution's results by status.
public struct StatusCounts: Codable, Hashable, Sendable {
    public var ok: Int
    public var failed: Int
    public var partial: Int
    public var inconclusive: Int
    public var skipped: Int

    public init(ok: Int = 0, failed: Int = 0, partial: Int = 0, inconclusive: Int = 0, skipped: Int = 0) {
        self.ok = ok
        self.failed = failed
        self.partial = partial
        self.inconclusive = inconclusive
        self.skipped = skipped
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        ok = try container.decodeIfPresent(Int.self, forKey: .ok) ?? 0
        failed = try container.decodeIfPresent(Int.self, forKey: .failed) ?? 0
        partial = try container.decodeIfPresent(Int.self, forKey: .partial) ?? 0
        inconclusive = try container.decodeIfPresent(Int.self, forKey: .inconclusive) ?? 0
        skipped = try container.decodeIfPresent(Int.self, forKey: .skipped) ?? 0
    }

    /// Every result counted.
    public var total: Int { ok + failed + partial + inconclusive + skipped }
    /// Results that are neither `ok` nor skipped.
    public var notOK: Int { failed + partial + inconclusive }

    /// Counts one more result of `status` (an unknown status counts as inconclusive).
    public mutating func add(_ status: String) {
        switch status {
        case "ok": ok += 1
        case "failed": failed += 1
        case "partial": partial += 1
        case "skipped": skipped += 1
        default: inconclusive += 1
        }
    }
}

/// `GET /v1/executions/{id}`.
public struct Execution: Codable, Hashable, Sendable {
    public var id: String
    public var scenario: String
    public var suite: String?
    public var configuration: String?
    public var runMode: String?
    public var phase: String
    public var requestedBy: String?
    public var tags: [String]
    public var createdAt: String?
    public var dispatchedAt: String?
    public var startedAt: String?
    public var endedAt: String?
    public var endReason: String?
    public var pending: PendingExplanation?
    public var counts: StatusCounts
    /// How many tests the execution's suite holds.
    public var tests: Int?
    public var machines: [String]

    public init(
        id: String, scenario: String, suite: String? = nil, configuration: String? = nil, runMode: String? = nil,
        phase: String, requestedBy: String? = nil, tags: [String] = [], createdAt: String? = nil,
        dispatchedAt: String? = nil, startedAt: String? = nil, endedAt: String? = nil, endReason: String? = nil,
        pending: PendingExplanation? = nil, counts: StatusCounts = .init(), tests: Int? = nil, machines: [String] = []
    ) {
        self.id = id
        self.scenario = scenario
        self.suite = suite
        self.configuration = configuration
        self.runMode = runMode
        self.phase = phase
        self.requestedBy = requestedBy
        self.tags = tags
        self.createdAt = createdAt
        self.dispatchedAt = dispatchedAt
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.endReason = endReason
        self.pending = pending
        self.counts = counts
        self.tests = tests
        self.machines = machines
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        scenario = try container.decodeLooseIdentifier(forKey: .scenario) ?? ""
        suite = try container.decodeLooseIdentifier(forKey: .suite)
        configuration = try container.decodeLooseIdentifier(forKey: .configuration)
        runMode = try container.decodeIfPresent(String.self, forKey: .runMode)
        phase = try container.decode(String.self, forKey: .phase)
        requestedBy = try container.decodeIfPresent(String.self, forKey: .requestedBy)
        tags = try container.decodeIfPresent([String].self, forKey: .tags) ?? []
        createdAt = try container.decodeIfPresent(String.self, forKey: .createdAt)
        dispatchedAt = try container.decodeIfPresent(String.self, forKey: .dispatchedAt)
        startedAt = try container.decodeIfPresent(String.self, forKey: .startedAt)
        endedAt = try container.decodeIfPresent(String.self, forKey: .endedAt)
        endReason = try container.decodeIfPresent(String.self, forKey: .endReason)
        pending = try container.decodeIfPresent(PendingExplanation.self, forKey: .pending)
        counts = try container.decodeIfPresent(StatusCounts.self, forKey: .counts) ?? StatusCounts()
        if let number = try? container.decodeIfPresent(Int.self, forKey: .tests) {
            tests = number
        } else if let list = try? container.decodeIfPresent([JSONValue].self, forKey: .tests) {
            tests = list.count
        } else {
            tests = nil
        }
        if let names = try? container.decodeIfPresent([String].self, forKey: .machines) {
            machines = names
        } else if let objects = try? container.decodeIfPresent([[String: JSONValue]].self, forKey: .machines) {
            machines = objects.compactMap { object in
                if case .string(let name)? = object["machine"] ?? object["name"] { return name }
                return nil
            }
        } else {
            machines = []
        }
    }

    /// Whether the execution has ended (`finished`, `cancelled` or `timeout`).
    public var hasEnded: Bool { !["pending", "running"].contains(phase) }
}

/// One stored test result: `GET /v1/executions/{id}/results`.
public struct TestResultItem: Codable, Hashable, Sendable {
    public var eventId: String
    /// The test's identifier.
    public var test: String
    /// The result's own name when it differs from the test (a test case of a JUnit or TAP report).
    public var name: String?
    public var index: Int?
    public var attempt: Int?
    public var machine: String
    public var status: String
    public var durationMs: Int?
    public var message: String?
    public var startedAt: String?
    public var endedAt: String?

    public init(
        eventId: String, test: String, name: String? = nil, index: Int? = nil, attempt: Int? = nil, machine: String,
        status: String, durationMs: Int? = nil, message: String? = nil, startedAt: String? = nil,
        endedAt: String? = nil
    ) {
        self.eventId = eventId
        self.test = test
        self.name = name
        self.index = index
        self.attempt = attempt
        self.machine = machine
        self.status = status
        self.durationMs = durationMs
        self.message = message
        self.startedAt = startedAt
        self.endedAt = endedAt
    }

    /// The name to show: the result's own name under its test, or the test.
    public var displayName: String {
        guard let name, !name.isEmpty, name != test else { return test }
        return "\(test) › \(name)"
    }
}

/// `GET /v1/executions/{id}/attachments`.
public struct AttachmentInfo: Codable, Hashable, Sendable {
    /// The attachment id of an agent's upload; nil for one uploaded by name.
    public var id: String?
    public var name: String
    public var size: Int?
    public var sha256: String?
    public var machine: String?
    public var test: String?

    /// Where a download of it goes under `directory`: `<test>/<name>` for a test's file (several tests leave a
    /// `test.log`), else `<name>`; nil when the server's name or test could leave the directory.
    public func downloadPath(in directory: String) -> String? {
        func safe(_ part: String) -> Bool {
            !part.isEmpty && part != "." && part != ".." && !part.contains("/") && !part.unicodeScalars.contains { $0.value < 0x20 }
        }
        guard safe(name) else { return nil }
        guard let test else { return (directory as NSString).appendingPathComponent(name) }
        guard safe(test) else { return nil }
        return ((directory as NSString).appendingPathComponent(test) as NSString).appendingPathComponent(name)
    }
}

/// `POST /v1/definitions`.
public struct AppliedDefinitions: Decodable, Sendable {
    public var applied: [String: Int]
}

/// A problem the server found in definition text.
public struct DefinitionProblem: Codable, Hashable, Sendable {
    public var file: String?
    public var line: Int?
    public var key: String?
    public var message: String
}

extension KeyedDecodingContainer {
    /// An identifier written as a string, or as an object with an `id`.
    func decodeLooseIdentifier(forKey key: Key) throws -> String? {
        if let text = try? decodeIfPresent(String.self, forKey: key) { return text }
        if let object = try? decodeIfPresent([String: JSONValue].self, forKey: key),
            case .string(let id)? = object["id"]
        {
            return id
        }
        return nil
    }
}
