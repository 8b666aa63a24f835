import CTACore
import CTADefinitions
public import CTACoordinator
import Foundation
import Synchronization

/// The `event` object of each kind of change, as JSON text (the shapes of the REST API's items).
public enum LiveEvents {
    /// The frame `type` of a change.
    public static func type(of change: FeedChange) -> String { change.kind.rawValue }

    /// The change's `event` object as JSON text.
    public static func json(_ change: FeedChange) -> String {
        switch change.record {
        case .state(let record)?:
            return JSON.object([
                ("eventId", .string(record._id)), ("execution", .string(record.executionID)),
                ("machine", .string(record.machine.rawValue)), ("state", .string(record.change.state.rawValue)),
                ("at", date(record.time)), ("reason", record.change.reason.map(JSON.string) ?? .null),
            ]).text
        case .result(let record)?:
            let result = record.result
            return JSON.object([
                ("eventId", .string(record._id)), ("execution", .string(record.executionID)),
                ("test", .string(result.testID.rawValue)), ("index", result.index.map { .int(Int64($0)) } ?? .null),
                ("attempt", .int(Int64(result.attempt))), ("machine", .string(record.machine.rawValue)),
                ("status", .string(result.status.rawValue)),
                ("durationMs", .int(Int64(clamping: result.durationMs.value))),
                ("message", result.message.map(JSON.string) ?? .null),
                ("startedAt", result.startedAt.map { date($0.date) } ?? .null),
                ("endedAt", result.finishedAt.map { date($0.date) } ?? .null),
                ("attachments", .array(result.attachments.map { .string($0.name) })),
            ]).text
        case .execution(let record)?:
            let ended = record.phase.isEnd
            return JSON.object([
                ("id", .string(record._id)), ("scenario", .string(record.scenario.id.rawValue)),
                ("suite", .string(record.suite.id.rawValue)), ("configuration", .string(record.configuration.rawValue)),
                ("runMode", .string(record.runMode.rawValue)), ("phase", .string(record.phase.rawValue)),
                ("requestedBy", .string(record.requestedBy)), ("createdAt", date(record.createdAt)),
                ("startedAt", record.startedAt.map(date) ?? .null),
                ("endedAt", ended ? record.endedAt.map(date) ?? .null : .null),
                ("endReason", ended ? record.endReason.map(JSON.string) ?? .null : .null),
                (
                    "counts",
                    .object([
                        ("ok", .int(Int64(clamping: record.counts.ok))),
                        ("failed", .int(Int64(clamping: record.counts.failed))),
                        ("partial", .int(Int64(clamping: record.counts.partial))),
                        ("inconclusive", .int(Int64(clamping: record.counts.inconclusive))),
                    ])
                ),
            ]).text
        case .machine(let record)?:
            let now = Date()
            return JSON.object([
                ("name", .string(record._id)), ("online", .bool(record.isOnline(at: now))),
                ("hostname", .string(record.hostname)), ("os", .string(record.os.name)),
                ("arch", .string(record.arch)), ("agentVersion", .string(record.agentVersion)),
                ("groups", .array(record.groups.map { .string($0.rawValue) })),
                (
                    "tags",
                    .object(record.tags.sorted { $0.key < $1.key }.map { ($0.key, JSON.string($0.value)) })
                ),
                ("freeSlots", .int(Int64(record.freeSlots))), ("draining", .bool(record.draining)),
                ("running", .array(record.running.map(JSON.string))), ("lastSeenAt", date(record.lastSeenAt)),
                ("onlineUntil", date(record.onlineUntil)),
                ("shutdownReason", record.shutdownReason.map(JSON.string) ?? .null),
            ]).text
        case nil:
            // The stored document did not decode: what the change itself tells.
            var fields: [(String, JSON)] = []
            if let execution = change.executionID { fields.append(("execution", .string(execution))) }
            if let machine = change.machine { fields.append(("machine", .string(machine))) }
            if let phase = change.phase { fields.append(("phase", .string(phase.rawValue))) }
            fields.append(("unreadable", .bool(true)))
            return JSON.object(fields).text
        }
    }

    static func date(_ date: Date) -> JSON {
        .string(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }
}

/// The JSON of recent changes, so that a change many subscribers receive is rendered once.
final class LiveEventCache: Sendable {
    private struct State {
        var entries: [String: String] = [:]
        var order: [String] = []
        var next = 0
    }

    private let state: Mutex<State>
    private let capacity: Int

    init(capacity: Int = 4096) {
        self.capacity = capacity
        self.state = Mutex(State())
    }

    func json(_ change: FeedChange) -> String {
        let key = change.cursor.description
        if let hit = state.withLock({ $0.entries[key] }) { return hit }
        let rendered = LiveEvents.json(change)
        state.withLock { state in
            if state.order.count < capacity {
                state.order.append(key)
            } else {
                state.entries[state.order[state.next]] = nil
                state.order[state.next] = key
                state.next = (state.next + 1) % capacity
            }
            state.entries[key] = rendered
        }
        return rendered
    }
}
