import CTACoordinator
import CTADefinitions
import CTAMongo
import Foundation
import Logging
import Synchronization
import Testing

/// A change history in memory: what a database's change stream would report, with tokens `{s: n}`.
final class MemoryFeedSource: FeedSource {
    struct State {
        var log: [FeedChange] = []
        /// Changes before this index are no longer held (like a capped oplog).
        var floor = 0
        var executions: [String: FeedExecution] = [:]
        var opened = 0
    }

    let state = Mutex(State())

    static func cursor(_ n: Int) -> LiveCursor { LiveCursor(token: ResumeToken(["s": .int64(Int64(n))])) }

    /// Stores a change of `kind` for `execution` (time in seconds), returns its index.
    @discardableResult
    func store(_ kind: FeedChange.Kind, execution: String? = nil, machine: String? = nil, phase: ExecutionPhase? = nil,
               seconds: UInt32 = 1000) -> Int
    {
        state.withLock { state in
            let n = state.log.count
            state.log.append(
                FeedChange(
                    cursor: Self.cursor(n), kind: kind, executionID: execution, scenario: nil, machine: machine,
                    phase: phase, record: nil, clusterTime: BSONTimestamp(seconds: seconds, increment: UInt32(n))))
            return n
        }
    }

    func changes(from start: FeedStart) async throws(LiveFeedError) -> any FeedChangeSequence {
        let position: Int = try state.withLock { state throws(LiveFeedError) -> Int in
            state.opened += 1
            switch start {
            case .now: return state.log.count
            case .after(let cursor):
                guard let index = state.log.firstIndex(where: { $0.cursor == cursor }) else {
                    throw LiveFeedError(.invalidCursor, "unknown cursor")
                }
                if index < state.floor { throw LiveFeedError(.cursorExpired, "expired") }
                return index + 1
            case .at(let date):
                let seconds = UInt32(date.timeIntervalSince1970)
                let index = state.log.firstIndex { ($0.clusterTime?.seconds ?? 0) >= seconds } ?? state.log.count
                if index < state.floor { throw LiveFeedError(.cursorExpired, "expired") }
                return index
            }
        }
        return Sequence(source: self, position: position)
    }

    func execution(_ id: String) async throws(LiveFeedError) -> FeedExecution? {
        state.withLock { $0.executions[id] }
    }

    final class Sequence: FeedChangeSequence {
        let source: MemoryFeedSource
        let position: Mutex<Int>
        let closed = Mutex(false)

        init(source: MemoryFeedSource, position: Int) {
            self.source = source
            self.position = Mutex(position)
        }

        func next() async throws(LiveFeedError) -> FeedChange? {
            while !closed.withLock({ $0 }) && !Task.isCancelled {
                let index = position.withLock { $0 }
                if let change = source.state.withLock({ index < $0.log.count ? $0.log[index] : nil }) {
                    position.withLock { $0 += 1 }
                    return change
                }
                try? await Task.sleep(for: .milliseconds(1))
            }
            return nil
        }

        func close() async { closed.withLock { $0 = true } }
    }
}

/// Runs a feed on `source` for the duration of `body`.
func withFeed(
    _ source: MemoryFeedSource, capacity: Int = 100, _ body: (LiveFeed) async throws -> Void
) async throws {
    let feed = LiveFeed(
        source: source, configuration: .init(ringCapacity: capacity, retryDelay: .milliseconds(10)),
        logger: Logger(label: "test"))
    let runner = Task { await feed.run() }
    defer { runner.cancel() }
    try await body(feed)
}

/// The next `count` changes' cursors of a subscription (fails after 30 s: a guard against a hang, not a speed check).
func take(_ count: Int, from subscription: LiveSubscription) async throws -> [FeedItem] {
    try await withThrowingTaskGroup(of: [FeedItem]?.self) { group in
        group.addTask {
            var items: [FeedItem] = []
            while items.count < count, let item = try await subscription.next() { items.append(item) }
            return items
        }
        group.addTask {
            try await Task.sleep(for: .seconds(30))
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        await subscription.close()
        return try #require(first, "no \(count) items within 30 s")
    }
}

func indexes(_ items: [FeedItem]) -> [Int] {
    items.compactMap { item in
        guard case .change(let change) = item, case .int64(let n)? = change.cursor.token.document["s"] else { return nil }
        return Int(n)
    }
}

@Suite("Live feed: cursors, ring and subscriptions (no database)")
struct LiveFeedTests {
    @Test("a cursor survives its string form; anything else is refused with a reason")
    func cursorEncoding() throws {
        let cursor = LiveCursor(token: ResumeToken(["_data": "8264A1B2C3000000012B", "n": .int64(7)]))
        let text = cursor.description
        #expect(text.hasPrefix("1."))
        #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
        #expect(try LiveCursor(parsing: text) == cursor)
        for bad in ["", "1.", "2.abc", "1.!!!", "1.AAAA", String(repeating: "a", count: 3000), "1." + "_-_-"] {
            #expect(throws: LiveCursorError.self, "\(bad.prefix(20))") { try LiveCursor(parsing: bad) }
        }
    }

    @Test("targets match only their own changes")
    func targets() {
        let state = FeedChange(
            cursor: MemoryFeedSource.cursor(0), kind: .state, executionID: "e1", scenario: "smoke", machine: "m1",
            phase: nil, record: nil)
        let machine = FeedChange(
            cursor: MemoryFeedSource.cursor(1), kind: .machine, executionID: nil, scenario: nil, machine: "m1",
            phase: nil, record: nil)
        #expect(FeedTarget.execution("e1").matches(state))
        #expect(!FeedTarget.execution("e2").matches(state))
        #expect(FeedTarget.scenario("smoke").matches(state))
        #expect(!FeedTarget.scenario("other").matches(state))
        #expect(!FeedTarget.machines.matches(state))
        #expect(FeedTarget.machines.matches(machine))
        #expect(!FeedTarget.execution("e1").matches(machine))
    }

    @Test("a subscription from now gets later changes of its target, in order, once each")
    func fromNow() async throws {
        let source = MemoryFeedSource()
        source.store(.result, execution: "old")
        try await withFeed(source) { feed in
            let subscription = try await feed.subscribe(.machines)
            for i in 0..<30 { source.store(i % 3 == 0 ? .machine : .result, execution: "x", machine: "m") }
            let items = try await take(10, from: subscription)
            #expect(indexes(items) == Array(stride(from: 1, to: 30, by: 3)))
        }
    }

    @Test("an execution subscription starts at the execution's creation and ends after its ending change")
    func executionFromStart() async throws {
        let source = MemoryFeedSource()
        source.store(.result, execution: "other", seconds: 900)
        source.state.withLock {
            $0.executions["e"] = FeedExecution(
                id: "e", scenario: "s", phase: .running, createdAt: Date(timeIntervalSince1970: 1000))
        }
        source.store(.execution, execution: "e", phase: .pending, seconds: 1000)
        source.store(.state, execution: "e", seconds: 1001)
        source.store(.result, execution: "other", seconds: 1001)
        try await withFeed(source) { feed in
            let subscription = try await feed.subscribe(.execution("e"))
            source.store(.result, execution: "e", seconds: 1002)
            source.store(.execution, execution: "e", phase: .finished, seconds: 1003)
            source.store(.result, execution: "e", seconds: 1004)
            let items = try await take(10, from: subscription)
            #expect(indexes(items) == [1, 2, 4, 5])
            guard case .end(let phase)? = items.last else {
                Issue.record("no end item: \(items)")
                return
            }
            #expect(phase == .finished)
            #expect(items.count == 5)
            await #expect(throws: LiveFeedError.self) { try await feed.subscribe(.execution("missing")) }
        }
    }

    @Test("resuming after any cursor, old (read from the source) or recent (in the ring), gives exactly the rest")
    func resume() async throws {
        let source = MemoryFeedSource()
        for _ in 0..<50 { source.store(.result, execution: "e") }
        try await withFeed(source, capacity: 20) { feed in
            // Let the watcher open, then store more: the ring holds only the last 20.
            _ = try await feed.subscribe(.machines)
            for i in 0..<60 { source.store(i % 2 == 0 ? .result : .state, execution: "e") }
            try await Task.sleep(for: .milliseconds(100))
            for after in [0, 10, 49, 60, 95, 108] {
                let subscription = try await feed.subscribe(.execution("e"), after: MemoryFeedSource.cursor(after))
                // A change stored while it catches up arrives too, once.
                let last = source.store(.result, execution: "e")
                let items = try await take(last - after, from: subscription)
                #expect(indexes(items) == Array((after + 1)...last), "after \(after)")
            }
        }
    }

    @Test("a subscriber that falls further behind than the ring holds is told so, others go on")
    func tooSlow() async throws {
        let source = MemoryFeedSource()
        try await withFeed(source, capacity: 10) { feed in
            let slow = try await feed.subscribe(.machines)
            let fast = try await feed.subscribe(.machines)
            let reader = Task { try await take(40, from: fast) }
            for _ in 0..<40 {
                source.store(.machine, machine: "m")
                try await Task.sleep(for: .milliseconds(2))
            }
            #expect(indexes(try await reader.value) == Array(0..<40))
            await #expect(throws: LiveFeedError.self) {
                for _ in 0..<40 { _ = try await slow.next() }
            }
        }
    }

    @Test("a cursor older than the source's history is refused as expired")
    func expired() async throws {
        let source = MemoryFeedSource()
        for _ in 0..<10 { source.store(.result, execution: "e") }
        source.state.withLock { $0.floor = 5 }
        try await withFeed(source) { feed in
            let subscription = try await feed.subscribe(.execution("e"), after: MemoryFeedSource.cursor(2))
            do {
                _ = try await subscription.next()
                Issue.record("an expired cursor was accepted")
            } catch {
                #expect((error as? LiveFeedError)?.code == .cursorExpired)
            }
        }
    }
}
