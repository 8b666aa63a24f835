import CTABroker
import Foundation
import Testing

/// Runs `body` with a connected client and closes it afterwards.
func withBroker<R>(
    _ configure: (inout AMQPConfiguration) -> Void = { _ in },
    _ body: (AMQPConnection) async throws -> R
) async throws -> R {
    var configuration = try AMQPConfiguration(url: try ServiceEnvironment.requireAMQPURL())
    configuration.connectionName = "cta-tests"
    configure(&configuration)
    let connection = AMQPConnection(configuration: configuration)
    try await connection.connect()
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

func message(_ text: String, to queue: String, id: String? = nil) -> OutgoingMessage {
    OutgoingMessage(routingKey: queue, body: Array(text.utf8), properties: AMQPProperties(contentType: "text/plain", messageID: id))
}

@Suite("Broker: AMQP client against the real RabbitMQ", .enabled(if: ServiceEnvironment.brokerEnabled, "needs CTA_AMQP_URL (scripts/services.sh start)"))
struct BrokerTests {
    @Test func publishAndConsumeWithProperties() async throws {
        try await withBroker { broker in
            let queue = ServiceEnvironment.uniqueName("cta.test.roundtrip")
            try await broker.declareQueue(queue, arguments: ["x-queue-type": "classic"])
            var props = AMQPProperties(contentType: "application/json", headers: ["x-origin": "test", "x-n": 42, "x-flag": true])
            props.messageID = "m-1"
            props.type = "test.result"
            props.timestamp = 1_700_000_000
            try await broker.publish(OutgoingMessage(routingKey: queue, body: Array(#"{"ok":true}"#.utf8), properties: props))
            #expect(try await broker.queueState(queue).messageCount == 1)

            let consumer = try await broker.consume(queue: queue, prefetch: 10)
            var iterator = consumer.makeAsyncIterator()
            let delivery = try #require(try await iterator.next())
            #expect(String(decoding: delivery.body, as: UTF8.self) == #"{"ok":true}"#)
            #expect(delivery.routingKey == queue)
            #expect(delivery.properties.contentType == "application/json")
            #expect(delivery.properties.messageID == "m-1")
            #expect(delivery.properties.type == "test.result")
            #expect(delivery.properties.timestamp == 1_700_000_000)
            #expect(delivery.properties.persistent)
            #expect(delivery.properties.headers["x-origin"] == .string("test"))
            #expect(delivery.properties.headers["x-n"] == .int(42))
            #expect(delivery.properties.headers["x-flag"] == .bool(true))
            #expect(!delivery.redelivered)
            delivery.ack()
            await consumer.cancel()
            try await waitUntil { try await broker.queueState(queue).messageCount == 0 }
            try await broker.deleteQueue(queue)
        }
    }

    @Test func rejectedMessagesGoToTheDeadLetterQueueWithTheirReason() async throws {
        try await withBroker { broker in
            let dlx = ServiceEnvironment.uniqueName("cta.test.dlx")
            let dlq = ServiceEnvironment.uniqueName("cta.test.dlq")
            let queue = ServiceEnvironment.uniqueName("cta.test.work")
            try await broker.declareExchange(dlx, kind: .fanout)
            try await broker.declareQueue(dlq)
            try await broker.bindQueue(dlq, exchange: dlx, routingKey: "")
            try await broker.declareQueue(queue, arguments: ["x-dead-letter-exchange": .string(dlx), "x-queue-type": "quorum"])
            try await broker.publish(message("poison", to: queue))
            let consumer = try await broker.consume(queue: queue)
            for try await delivery in consumer {
                delivery.reject(requeue: false)
                break
            }
            await consumer.cancel()
            try await waitUntil { try await broker.queueState(dlq).messageCount == 1 }
            let dead = try await broker.consume(queue: dlq)
            var iterator = dead.makeAsyncIterator()
            let delivery = try #require(try await iterator.next())
            #expect(String(decoding: delivery.body, as: UTF8.self) == "poison")
            guard case .array(let deaths)? = delivery.properties.headers["x-death"], case .table(let death)? = deaths.first else {
                Issue.record("no x-death header: \(delivery.properties.headers)")
                return
            }
            #expect(death["reason"] == .string("rejected"))
            #expect(death["queue"] == .string(queue))
            delivery.ack()
            await dead.cancel()
            for q in [queue, dlq] { try await broker.deleteQueue(q) }
            try await broker.deleteExchange(dlx)
        }
    }

    @Test func messageTTLExpiresIntoTheDeadLetterQueue() async throws {
        try await withBroker { broker in
            let dlq = ServiceEnvironment.uniqueName("cta.test.expired")
            let queue = ServiceEnvironment.uniqueName("cta.test.ttl")
            try await broker.declareQueue(dlq)
            try await broker.declareQueue(queue, arguments: [
                "x-message-ttl": 50, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(dlq),
            ])
            try await broker.publish(message("late", to: queue))
            try await waitUntil { try await broker.queueState(dlq).messageCount == 1 }
            #expect(try await broker.queueState(queue).messageCount == 0)
            for q in [queue, dlq] { try await broker.deleteQueue(q) }
        }
    }

    @Test func conflictingRedeclarationIsATypedErrorAndTheConnectionCarriesOn() async throws {
        try await withBroker { broker in
            let queue = ServiceEnvironment.uniqueName("cta.test.conflict")
            try await broker.declareQueue(queue, durable: true)
            do throws(AMQPError) {
                try await broker.declareQueue(queue, durable: false)
                Issue.record("redeclaration with other attributes succeeded")
            } catch {
                #expect(error.code == .preconditionFailed)
                #expect(error.replyCode == 406)
                #expect(error.description.contains(queue))
            }
            // The control channel was reopened: the connection still works.
            try await broker.publish(message("after", to: queue))
            #expect(try await broker.queueState(queue).messageCount == 1)
            try await broker.deleteQueue(queue)
        }
    }

    @Test func missingQueueAndMissingExchangeAreNotFound() async throws {
        try await withBroker { broker in
            await #expect(throws: AMQPError.self) { try await broker.queueState("cta.test.no-such-queue") }
            do throws(AMQPError) {
                _ = try await broker.queueState("cta.test.no-such-queue")
            } catch {
                #expect(error.code == .notFound)
            }
            do throws(AMQPError) {
                try await broker.publish(OutgoingMessage(exchange: "cta.test.no-such-exchange", routingKey: "x", body: [1]))
                Issue.record("publish to a missing exchange succeeded")
            } catch {
                #expect(error.code == .notFound)
                #expect(error.description.contains("cta.test.no-such-exchange"))
            }
            // The publish channel was reopened in confirm mode.
            let queue = ServiceEnvironment.uniqueName("cta.test.after-404")
            try await broker.declareQueue(queue)
            try await broker.publish(message("fine", to: queue))
            #expect(try await broker.queueState(queue).messageCount == 1)
            try await broker.deleteQueue(queue)
        }
    }

    @Test func mandatoryMessageThatNoQueueReceivesIsUnroutable() async throws {
        try await withBroker { broker in
            let exchange = ServiceEnvironment.uniqueName("cta.test.routes")
            try await broker.declareExchange(exchange, kind: .direct, autoDelete: true)
            do throws(AMQPError) {
                try await broker.publish(OutgoingMessage(exchange: exchange, routingKey: "nobody", body: [1], mandatory: true))
                Issue.record("unroutable mandatory message was confirmed as fine")
            } catch {
                #expect(error.code == .unroutable)
                #expect(error.description.contains("nobody"))
            }
            // Without mandatory the broker drops it and says so only by confirming: that is the caller's choice.
            try await broker.publish(OutgoingMessage(exchange: exchange, routingKey: "nobody", body: [1]))
            try await broker.deleteExchange(exchange)
        }
    }

    @Test func cancelledConsumerReturnsUnackedMessagesAndMultipleAckSettlesAll() async throws {
        try await withBroker { broker in
            let queue = ServiceEnvironment.uniqueName("cta.test.settle")
            try await broker.declareQueue(queue)
            let outcomes = await broker.publish(contentsOf: (0..<10).map { message("m\($0)", to: queue) })
            #expect(outcomes.allSatisfy { (try? $0.get()) != nil })

            // Take three without acking, then cancel: they go back.
            let first = try await broker.consume(queue: queue, prefetch: 3)
            var taken = 0
            for try await _ in first {
                taken += 1
                if taken == 3 { break }
            }
            await first.cancel()
            try await waitUntil { try await broker.queueState(queue).messageCount == 10 }

            // Take all ten, ack the tenth with multiple: all settled.
            let second = try await broker.consume(queue: queue, prefetch: 20)
            var seen: [String] = []
            for try await delivery in second {
                seen.append(String(decoding: delivery.body, as: UTF8.self))
                if seen.count == 10 {
                    delivery.ack(multiple: true)
                    break
                }
            }
            #expect(Set(seen).count == 10)
            await second.cancel()
            try await waitUntil { try await broker.queueState(queue).messageCount == 0 }
            try await broker.deleteQueue(queue)
        }
    }

    @Test func refusedConnectionFailsFastWithATypedError() async throws {
        let connection = try AMQPConnection(url: "amqp://guest:guest@127.0.0.1:1/")
        let start = ContinuousClock.now
        do {
            try await connection.connect()
            Issue.record("connected to port 1")
        } catch {
            #expect(error.code == .connectionFailed)
            #expect(error.description.contains("127.0.0.1:1"))
        }
        // Not a speed check: a refused connection must fail at once, not after a retry loop or a 30 s timeout. The
        // bound leaves room for a machine busy with other work.
        #expect(ContinuousClock.now - start < .seconds(20))
    }

    @Test func wrongPasswordIsAnAuthenticationFailure() async throws {
        var configuration = try AMQPConfiguration(url: try ServiceEnvironment.requireAMQPURL())
        configuration.password = "definitely-wrong"
        let connection = AMQPConnection(configuration: configuration)
        do {
            try await connection.connect()
            Issue.record("logged in with a wrong password")
        } catch {
            #expect(error.code == .authenticationFailed)
        }
    }

    @Test func unknownVirtualHostIsRefused() async throws {
        var configuration = try AMQPConfiguration(url: try ServiceEnvironment.requireAMQPURL())
        configuration.virtualHost = "cta-no-such-vhost"
        let connection = AMQPConnection(configuration: configuration)
        await #expect(throws: AMQPError.self) { try await connection.connect() }
    }

    @Test func tlsConnectionWithTheCAFileWorks() async throws {
        let url = try #require(ServiceEnvironment.amqpsURL, "CTA_AMQPS_URL is not set")
        let ca = try #require(ServiceEnvironment.amqpsCAFile, "CTA_AMQPS_CA_FILE is not set")
        let connection = try AMQPConnection(url: url + "?cacertfile=" + ca)
        try await connection.connect()
        let queue = ServiceEnvironment.uniqueName("cta.test.tls")
        try await connection.declareQueue(queue)
        try await connection.publish(message("over tls", to: queue))
        let consumer = try await connection.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let delivery = try #require(try await iterator.next())
        #expect(String(decoding: delivery.body, as: UTF8.self) == "over tls")
        delivery.ack()
        await consumer.cancel()
        try await connection.deleteQueue(queue)
        await connection.close()
    }

    @Test func tlsWithAnUntrustedCertificateIsATLSError() async throws {
        let url = try #require(ServiceEnvironment.amqpsURL, "CTA_AMQPS_URL is not set")
        // The system store does not trust the test CA.
        let connection = try AMQPConnection(url: url)
        do {
            try await connection.connect()
            Issue.record("TLS connection trusted a certificate from an unknown CA")
        } catch {
            #expect(error.code == .tls)
        }
    }

    @Test func hundredThousandConfirmedMessagesAreAllOnTheBroker() async throws {
        try await withBroker { broker in
            let queue = ServiceEnvironment.uniqueName("cta.test.load")
            try await broker.declareQueue(queue)
            let total = 100_000
            let body = [UInt8](repeating: 0x61, count: 200)
            var confirmed = 0
            for batchStart in stride(from: 0, to: total, by: 10_000) {
                let batch = (batchStart..<min(batchStart + 10_000, total)).map { i in
                    OutgoingMessage(routingKey: queue, body: body, properties: AMQPProperties(messageID: String(i)))
                }
                let outcomes = await broker.publish(contentsOf: batch)
                confirmed += outcomes.filter { (try? $0.get()) != nil }.count
            }
            #expect(confirmed == total)
            // Counted by the broker, not by us.
            #expect(try await broker.queueState(queue).messageCount == UInt32(total))

            let consumer = try await broker.consume(queue: queue, prefetch: 2000)
            var ids = Set<String>()
            var count = 0
            for try await delivery in consumer {
                count += 1
                if let id = delivery.properties.messageID { ids.insert(id) }
                if count % 100 == 0 || count == total { delivery.ack(multiple: true) }
                if count == total { break }
            }
            #expect(ids.count == total)
            await consumer.cancel()
            try await waitUntil { try await broker.queueState(queue).messageCount == 0 }
            try await broker.deleteQueue(queue)
        }
    }

    @Test func closingFailsLaterCallsClearly() async throws {
        let connection = try AMQPConnection(url: try ServiceEnvironment.requireAMQPURL())
        try await connection.connect()
        await connection.close()
        do {
            try await connection.publish(message("late", to: "anything"))
            Issue.record("publish after close succeeded")
        } catch {
            #expect(error.code == .closed)
        }
    }
}

/// Polls `condition` until it holds, failing the test after `timeout`.
func waitUntil(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("condition not met within \(timeout)")
}
