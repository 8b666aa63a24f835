import CTACoordinator
import CTACore
import CTADefinitions
import Foundation

// What the API answers with: the JSON shapes of its resources. Optional members are always present (`null`),
// so clients can rely on every key.

struct UserView: Encodable {
    var name: String
    var role: String
    var groups: [String]
    var disabled: Bool
    var hasPassword: Bool
    var createdAt: Date

    init(_ user: UserRecord) {
        name = user.name
        role = user.role.rawValue
        groups = user.groups
        disabled = user.disabled
        hasPassword = user.passwordHash != nil
        createdAt = user.createdAt
    }
}

struct GroupView: Encodable {
    var name: String
    var description: String

    init(_ group: GroupRecord) {
        name = group._id
        description = group.description
    }
}

/// Encodes `nil` as `null` instead of leaving the key out.
struct Nullable<T: Encodable>: Encodable {
    var value: T?
    init(_ value: T?) { self.value = value }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let value { try container.encode(value) } else { try container.encodeNil() }
    }
}

struct TokenView: Encodable {
    var id: String
    var user: String
    var name: String
    var createdAt: Date
    var expiresAt: Nullable<Date>
    var revokedAt: Nullable<Date>
    var lastUsedAt: Nullable<Date>

    init(_ token: TokenRecord) {
        id = token._id
        user = token.user
        name = token.name
        createdAt = token.createdAt
        expiresAt = Nullable(token.expiresAt)
        revokedAt = Nullable(token.revokedAt)
        lastUsedAt = Nullable(token.lastUsedAt)
    }
}

struct EnrollmentTokenView: Encodable {
    var id: String
    var name: String
    var machine: Nullable<String>
    var createdBy: String
    var createdAt: Date
    var expiresAt: Nullable<Date>
    var revokedAt: Nullable<Date>
    var lastUsedAt: Nullable<Date>

    init(_ token: EnrollmentTokenRecord) {
        id = token._id
        name = token.name
        machine = Nullable(token.machine)
        createdBy = token.createdBy
        createdAt = token.createdAt
        expiresAt = Nullable(token.expiresAt)
        revokedAt = Nullable(token.revokedAt)
        lastUsedAt = Nullable(token.lastUsedAt)
    }
}

struct CreatedTokenView: Encodable {
    var id: String
    var token: String
    var expiresAt: Nullable<Date>
}

struct CountsView: Encodable {
    var ok: UInt64
    var failed: UInt64
    var partial: UInt64
    var inconclusive: UInt64
    var skipped: UInt64
    var total: UInt64

    init(_ counts: ResultCounts, skipped: UInt64) {
        ok = counts.ok
        failed = counts.failed
        partial = counts.partial
        inconclusive = counts.inconclusive
        self.skipped = skipped
        total = counts.total
    }
}

struct PendingView: Encodable {
    struct Candidate: Encodable {
        var machine: String
        var missing: [String]
    }
    var summary: String
    var candidates: [Candidate]
    var checkedAt: Date
}

struct ExecutionView: Encodable {
    var id: String
    var scenario: String
    var scenarioName: String
    var suite: String
    var configuration: String
    var runMode: String
    var phase: String
    var requestedBy: String
    var tags: [String]
    var env: [String: String]
    var createdAt: Date
    var dispatchedAt: Nullable<Date>
    var startedAt: Nullable<Date>
    var endedAt: Nullable<Date>
    var endReason: Nullable<String>
    var cancelRequested: Nullable<String>
    var chainedFrom: Nullable<String>
    var pending: Nullable<PendingView>
    var counts: CountsView
    var tests: Int
    var machines: [String]
    var group: Nullable<String>

    init(_ record: ExecutionRecord) {
        id = record._id
        scenario = record.scenario.id.rawValue
        scenarioName = record.scenario.name
        suite = record.suite.id.rawValue
        configuration = record.configuration.rawValue
        runMode = record.runMode.rawValue
        phase = record.phase.rawValue
        requestedBy = record.requestedBy
        tags = record.tags ?? []
        env = record.env
        createdAt = record.createdAt
        dispatchedAt = Nullable(record.dispatchedAt)
        startedAt = Nullable(record.startedAt)
        endedAt = Nullable(record.endedAt)
        endReason = Nullable(record.endReason)
        cancelRequested = Nullable(record.cancelRequested)
        chainedFrom = Nullable(record.chainedFrom)
        pending = Nullable(
            record.pending.map { pending in
                PendingView(
                    summary: pending.summary,
                    candidates: pending.candidates.map { .init(machine: $0.machine.rawValue, missing: $0.missing) },
                    checkedAt: pending.checkedAt)
            })
        let total = UInt64(record.tests.count)
        let skipped = record.phase.isEnd && total > record.counts.total ? total - record.counts.total : 0
        counts = CountsView(record.counts, skipped: skipped)
        tests = record.tests.count
        machines = record.dispatch?.machines.map(\.rawValue) ?? []
        group = Nullable(record.dispatch?.group?.rawValue)
    }
}

struct AttachmentRefView: Encodable {
    var id: String
    var name: String
    var contentType: Nullable<String>
    var size: Nullable<UInt64>
}

struct ResultView: Encodable {
    var eventId: String
    var test: String
    var name: String
    var index: Nullable<Int>
    var attempt: Int
    var machine: String
    var status: String
    var durationMs: UInt64
    var message: Nullable<String>
    var startedAt: Nullable<Date>
    var endedAt: Nullable<Date>
    var receivedAt: Date
    var origin: JSONValue
    var attachments: [JSONValue]
    /// The test's log and screenshot, as attachment references (`GET /v1/executions/{id}/attachments/{ref.id}`).
    var log: JSONValue
    var screenshot: JSONValue

    init(_ record: ResultRecord) {
        let result = record.result
        eventId = record._id
        test = result.testID.rawValue
        name = result.name
        index = Nullable(result.index)
        attempt = result.attempt
        machine = record.machine.rawValue
        status = result.status.rawValue
        durationMs = result.durationMs.value
        message = Nullable(result.message)
        startedAt = Nullable(result.startedAt?.date)
        endedAt = Nullable(result.finishedAt?.date)
        receivedAt = record.receivedAt
        origin = jsonValue(result.origin)
        attachments = result.attachments.map(jsonValue)
        log = result.log.map(jsonValue) ?? .null
        screenshot = result.screenshot.map(jsonValue) ?? .null
    }
}

struct StateView: Encodable {
    var eventId: String
    var machine: String
    var state: String
    var attempt: Int
    var at: Date
    var receivedAt: Date
    var reason: Nullable<String>

    init(_ record: StateRecord) {
        eventId = record._id
        machine = record.machine.rawValue
        state = record.change.state.rawValue
        attempt = record.change.attempt
        at = record.time
        receivedAt = record.receivedAt
        reason = Nullable(record.change.reason)
    }
}

struct MachineView: Encodable {
    var name: String
    var hostname: String
    var addresses: [String]
    var os: [String: String]
    var arch: String
    var cpuCount: Int
    var memoryBytes: UInt64
    var agentVersion: String
    var tags: [String: String]
    var groups: [String]
    var maxConcurrentExecutions: Int
    var transport: String
    var online: Bool
    var registeredAt: Date
    var lastSeenAt: Date
    var onlineUntil: Date
    var freeSlots: Int
    var running: [String]
    var draining: Bool
    var drainRequested: Bool
    var shutdownReason: Nullable<String>

    init(_ record: MachineRecord, now: Date, drainRequested: Bool) {
        name = record._id
        hostname = record.hostname
        addresses = record.addresses
        os = ["name": record.os.name, "version": record.os.version]
        arch = record.arch
        cpuCount = record.cpuCount
        memoryBytes = record.memoryBytes
        agentVersion = record.agentVersion
        tags = record.tags
        groups = record.groups.map(\.rawValue)
        maxConcurrentExecutions = record.maxConcurrentExecutions
        transport = record.transport
        online = record.isOnline(at: now)
        registeredAt = record.registeredAt
        lastSeenAt = record.lastSeenAt
        onlineUntil = record.onlineUntil
        freeSlots = record.freeSlots
        running = record.running
        draining = record.draining
        self.drainRequested = drainRequested
        shutdownReason = Nullable(record.shutdownReason)
    }
}

struct WebhookView: Encodable {
    var id: String
    var scenario: String
    var url: String
    var on: [String]
    var hasSecret: Bool
    var createdBy: String
    var createdAt: Date

    init(_ webhook: ManagedWebhook) {
        id = webhook._id
        scenario = webhook.scenario.rawValue
        url = webhook.url
        on = webhook.on.map(\.rawValue)
        hasSecret = webhook.secret != nil
        createdBy = webhook.createdBy
        createdAt = webhook.createdAt
    }
}

struct DeliveryView: Encodable {
    struct Attempt: Encodable {
        var number: Int
        var at: Date
        var durationMs: Int64
        var statusCode: Nullable<Int>
        var error: Nullable<String>
    }
    var id: String
    var execution: String
    var url: String
    var event: String
    var state: String
    var attempts: [Attempt]
    var createdAt: Date
    var finishedAt: Nullable<Date>

    init(_ record: WebhookDeliveryRecord) {
        id = record._id
        execution = record.executionID
        url = record.url
        event = record.event
        state = record.state.rawValue
        attempts = record.attempts.map {
            Attempt(number: $0.number, at: $0.at, durationMs: $0.durationMs, statusCode: Nullable($0.statusCode), error: Nullable($0.error))
        }
        createdAt = record.createdAt
        finishedAt = Nullable(record.finishedAt)
    }
}

/// Any encodable value as JSON (the wire types' own encoding).
func jsonValue(_ value: some Encodable) -> JSONValue {
    (try? JSONEncoder().encode(value)).flatMap { try? JSONDecoder().decode(JSONValue.self, from: $0) } ?? .null
}
