import CTABroker
import Foundation
import Synchronization
import Testing

/// Restarts a broker mid-stream. It runs its own private RabbitMQ node (other ports, other directory), so
/// stopping it cannot disturb the tests that share the main one.
@Suite("Broker restart", .serialized, .enabled(if: ServiceEnvironment.brokerEnabled, "needs the services script (scripts/services.sh)"))
struct BrokerRestartTests {
    static let node = PrivateBrokerNode(name: "restart-node", base: 22000)

    @Test(.timeLimit(.minutes(3)))
    func noConfirmedMessageIsLostWhenTheBrokerRestartsMidStream() async throws {
        try await Self.node.stop()  // a node left by a killed run
        try await Self.node.start()

        var configuration = try AMQPConfiguration(url: Self.node.url)
        configuration.heartbeat = .seconds(2)
        configuration.publishTimeout = .seconds(90)
        configuration.reconnect = .init(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500))
        configuration.connectionName = "cta-restart-test"
        let publisher = AMQPConnection(configuration: configuration)
        let consumerConnection = AMQPConnection(configuration: configuration)
        try await publisher.connect()
        try await consumerConnection.connect()

        let queue = "cta.test.restart"
        try await publisher.declareQueue(queue, arguments: ["x-queue-type": "quorum"])
        _ = try await publisher.purgeQueue(queue)

        let confirmed = Mutex(Set<Int>())
        let consumed = Mutex(Set<Int>())
        let keepPublishing = Atomic<Bool>(true)
        let consumer = try await consumerConnection.consume(queue: queue, prefetch: 200)

        let consuming = Task {
            for try await delivery in consumer {
                if let id = Int(String(decoding: delivery.body, as: UTF8.self)) { _ = consumed.withLock { $0.insert(id) } }
                delivery.ack()
            }
        }

        // Publishes numbered messages in small batches until told to stop, so the restart lands mid-stream.
        let publishing = Task {
            var failures: [String] = []
            var next = 0
            while keepPublishing.load(ordering: .relaxed) {
                let batch = (next..<next + 20).map { OutgoingMessage(routingKey: queue, body: Array(String($0).utf8)) }
                let outcomes = await publisher.publish(contentsOf: batch)
                for (offset, outcome) in outcomes.enumerated() {
                    switch outcome {
                    case .success: _ = confirmed.withLock { $0.insert(next + offset) }
                    case .failure(let error): failures.append("\(next + offset): \(error)")
                    }
                }
                next += 20
                try await Task.sleep(for: .milliseconds(5))
            }
            return (failures, next)
        }

        try await waitUntil(timeout: .seconds(30)) { confirmed.withLock { $0.count } >= 500 }
        try await Self.node.stop()
        try await Task.sleep(for: .seconds(1))
        try await Self.node.start()
        let confirmedAtRestart = confirmed.withLock { $0.count }
        // Keep going until the stream has clearly resumed on the new broker.
        try await waitUntil(timeout: .seconds(60)) { confirmed.withLock { $0.count } >= confirmedAtRestart + 1000 }
        keepPublishing.store(false, ordering: .relaxed)
        let (failures, sent) = try await publishing.value
        #expect(failures.isEmpty, "publishes failed across the restart: \(failures.prefix(5))")
        #expect(confirmed.withLock { $0.count } == sent, "every publish is confirmed in the end")

        // Every confirmed message arrives (duplicates are allowed: unconfirmed ones were sent again).
        try await waitUntil(timeout: .seconds(60)) { consumed.withLock { $0.count } >= sent }
        let missing = confirmed.withLock { $0 }.subtracting(consumed.withLock { $0 })
        #expect(missing.isEmpty, "confirmed but never delivered: \(missing.sorted().prefix(20))")
        consuming.cancel()
        await consumer.cancel()
        try await publisher.deleteQueue(queue)
        await publisher.close()
        await consumerConnection.close()
        try await Self.node.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func publishDuringAnOutageFailsClearlyAfterItsTimeout() async throws {
        try await Self.node.stop()
        try await Self.node.start()
        var configuration = try AMQPConfiguration(url: Self.node.url)
        configuration.publishTimeout = .seconds(2)
        configuration.heartbeat = .seconds(2)
        let connection = AMQPConnection(configuration: configuration)
        try await connection.connect()
        try await Self.node.stop()
        let start = ContinuousClock.now
        do {
            try await connection.publish(OutgoingMessage(routingKey: "anything", body: [1]))
            Issue.record("publish succeeded with the broker down")
        } catch {
            #expect(error.code == .timeout)
            #expect(error.message.contains("no connection") || error.message.contains("confirm"))
        }
        let waited = ContinuousClock.now - start
        #expect(waited >= .seconds(1.5) && waited < .seconds(10), "waited \(waited)")
        await connection.close(drainTimeout: .zero)
    }
}
