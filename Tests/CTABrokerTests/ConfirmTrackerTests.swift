import Testing

@testable import CTABroker

@Suite("Publisher confirm bookkeeping")
struct ConfirmTrackerTests {
    @Test func singleAcksInAnyOrder() {
        var tracker = ConfirmTracker<String>()
        #expect(tracker.sent("a") == 1)
        #expect(tracker.sent("b") == 2)
        #expect(tracker.sent("c") == 3)
        #expect(tracker.settle(tag: 2, multiple: false).map(\.token) == ["b"])
        #expect(tracker.oldest?.token == "a")
        #expect(tracker.settle(tag: 1, multiple: false).map(\.token) == ["a"])
        #expect(tracker.oldest?.token == "c")
        #expect(tracker.count == 1)
    }

    @Test func multipleAckSettlesEverythingUpToTheTag() {
        var tracker = ConfirmTracker<Int>()
        for i in 1...10 { _ = tracker.sent(i) }
        _ = tracker.settle(tag: 3, multiple: false)
        let settled = tracker.settle(tag: 7, multiple: true)
        #expect(settled.map(\.token) == [1, 2, 4, 5, 6, 7])
        #expect(tracker.count == 3)
        #expect(tracker.oldest?.tag == 8)
    }

    @Test func duplicateAndUnknownAcksSettleNothing() {
        var tracker = ConfirmTracker<Int>()
        _ = tracker.sent(1)
        _ = tracker.sent(2)
        #expect(tracker.settle(tag: 1, multiple: false).count == 1)
        #expect(tracker.settle(tag: 1, multiple: false).isEmpty)
        #expect(tracker.settle(tag: 1, multiple: true).isEmpty)
        #expect(tracker.settle(tag: 99, multiple: false).isEmpty)
        // A multiple ack beyond what was sent settles only what exists.
        #expect(tracker.settle(tag: 99, multiple: true).map(\.token) == [2])
        #expect(tracker.isEmpty)
    }

    @Test func resetReturnsOutstandingInOrderAndRestartsNumbering() {
        var tracker = ConfirmTracker<String>()
        for token in ["a", "b", "c", "d"] { _ = tracker.sent(token) }
        _ = tracker.settle(tag: 2, multiple: false)
        #expect(tracker.reset() == ["a", "c", "d"])
        #expect(tracker.isEmpty)
        #expect(tracker.sent("e") == 1)
    }
}

@Suite("Reconnect backoff")
struct BackoffTests {
    struct FixedGenerator: RandomNumberGenerator {
        var value: UInt64
        mutating func next() -> UInt64 { value }
    }

    @Test func ceilingDoublesUpToTheMaximum() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        #expect(backoff.ceiling(for: 0) == .milliseconds(100))
        #expect(backoff.ceiling(for: 1) == .milliseconds(200))
        #expect(backoff.ceiling(for: 4) == .milliseconds(1600))
        #expect(backoff.ceiling(for: 5) == .seconds(2))
        #expect(backoff.ceiling(for: 500) == .seconds(2))
    }

    @Test func delaysStayWithinTheCeilingAndVary() {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var delays: [Duration] = []
        for attempt in 0..<20 {
            let delay = backoff.next()
            #expect(delay >= .zero)
            #expect(delay <= backoff.ceiling(for: attempt))
            delays.append(delay)
        }
        #expect(Set(delays).count > 10, "full jitter should not repeat the same delays")
        backoff.reset()
        #expect(backoff.attempt == 0)
    }
}

@Suite("FIFO and topology log")
struct FIFOTests {
    @Test func fifoKeepsOrderAcrossPrepend() {
        var fifo = FIFO<Int>()
        for i in 1...2000 { fifo.append(i) }
        for i in 1...1500 { #expect(fifo.popFirst() == i) }
        fifo.prepend(contentsOf: [-2, -1])
        #expect(fifo.count == 502)
        #expect(fifo.popFirst() == -2)
        #expect(fifo.popFirst() == -1)
        #expect(fifo.popFirst() == 1501)
    }

    @Test func topologyLogForgetsDeletedThings() {
        var log = TopologyLog()
        log.record(.declareExchange(name: "x", kind: .topic, durable: true, autoDelete: false, internal: false, arguments: [:]))
        log.record(.declareQueue(name: "q", durable: true, exclusive: false, autoDelete: false, arguments: [:]))
        log.record(.bindQueue(queue: "q", exchange: "x", routingKey: "a.#", arguments: [:]))
        log.record(.bindQueue(queue: "q", exchange: "x", routingKey: "a.#", arguments: [:]))
        #expect(log.replay().count == 3)
        log.record(.deleteQueue(name: "q", ifUnused: false, ifEmpty: false))
        #expect(log.replay().count == 1)
        log.record(.deleteExchange(name: "x"))
        #expect(log.replay().isEmpty)
    }

    @Test func missingExchangeIsReadFromTheBrokersText() {
        let error = AMQPError(.notFound, "broker closed the channel: NOT_FOUND - no exchange 'cta.nope' in vhost '/'", replyCode: 404)
        #expect(ConnectionWorker.missingExchange(in: error) == "cta.nope")
        #expect(ConnectionWorker.missingExchange(in: AMQPError(.notFound, "NOT_FOUND - no queue 'q'", replyCode: 404)) == nil)
    }
}
