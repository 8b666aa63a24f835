import ArgumentParser
import CBaseline
import CTABroker
import Foundation

/// `cta-bench broker`: the Swift AMQP client's publish-with-confirms and consume rates, each next to the same
/// work done through raw librabbitmq in the same process, in alternating rounds.
struct BrokerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "AMQP publish-with-confirms and consume rates, next to raw librabbitmq."
    )

    @Option(help: "Broker URL (default: $CTA_AMQP_URL). The baseline logs in as guest/guest on its host and port.")
    var url: String?

    @Option(help: "Messages per round.")
    var messages = 50_000

    @Option(help: "Body size in bytes.")
    var bodySize = 200

    @Option(help: "Unconfirmed messages in flight (both sides).")
    var window = 1000

    @Option(help: "Consumer prefetch (both sides).")
    var prefetch: UInt16 = 2000

    @Option(help: "Acknowledge every N deliveries with multiple=true (both sides).")
    var ackEvery = 100

    @Option(help: "Rounds per side; the median is reported.")
    var rounds = 3

    func run() async throws {
        guard let url = url ?? ProcessInfo.processInfo.environment["CTA_AMQP_URL"] else {
            throw ValidationError("no broker: pass --url or set CTA_AMQP_URL")
        }
        var configuration = try AMQPConfiguration(url: url)
        configuration.maxUnconfirmed = window
        configuration.connectionName = "cta-bench"
        let connection = AMQPConnection(configuration: configuration)
        try await connection.connect()
        let queue = "cta.bench.broker"
        try await connection.declareQueue(queue, arguments: ["x-queue-type": "classic"])
        _ = try await connection.purgeQueue(queue)

        let body = [UInt8](repeating: 0x61, count: bodySize)
        let batch = (0..<messages).map { _ in
            OutgoingMessage(routingKey: queue, body: body, properties: AMQPProperties(contentType: "application/octet-stream"))
        }
        var swiftPublish: [Double] = [], cPublish: [Double] = []
        var swiftConsume: [Double] = [], cConsume: [Double] = []

        for _ in 0..<rounds {
            // Raw C: publish, then consume everything it published.
            let (host, port, count, size, inFlight) = (configuration.host, Int32(configuration.port), Int32(messages), Int32(bodySize), Int32(window))
            let (prefetchCount, ackInterval) = (Int32(prefetch), Int32(ackEvery))
            let cPub = await onOwnThread { cta_amqp_baseline_publish(host, port, queue, count, size, inFlight) }
            guard cPub > 0 else { throw ValidationError("the C publish baseline failed") }
            cPublish.append(Double(messages) / cPub)
            let cCon = await onOwnThread { cta_amqp_baseline_consume(host, port, queue, count, prefetchCount, ackInterval) }
            guard cCon > 0 else { throw ValidationError("the C consume baseline failed") }
            cConsume.append(Double(messages) / cCon)

            // Swift: the same.
            var failed = 0
            let pub = await measureSeconds {
                let outcomes = await connection.publish(contentsOf: batch)
                failed = outcomes.filter { if case .failure = $0 { true } else { false } }.count
            }
            guard failed == 0 else { throw ValidationError("\(failed) Swift publishes failed") }
            swiftPublish.append(Double(messages) / pub)
            let consumer = try await connection.consume(queue: queue, prefetch: prefetch)
            let target = messages
            let every = ackEvery
            let con = try await measureSeconds {
                var received = 0
                var bytes = 0
                for try await delivery in consumer {
                    received += 1
                    bytes += delivery.body.count
                    if received % every == 0 || received == target { delivery.ack(multiple: true) }
                    if received == target { break }
                }
                precondition(bytes == target * body.count)
            }
            swiftConsume.append(Double(messages) / con)
            await consumer.cancel()
            let left = try await connection.queueState(queue).messageCount
            if left != 0 { throw ValidationError("\(left) messages left in the queue after a round") }
        }
        try await connection.deleteQueue(queue)
        await connection.close()

        Figure(bench: "broker", figure: "publish_confirm", unit: "msg/s", samples: swiftPublish, baselineSamples: cPublish,
               baselineName: "librabbitmq", operations: messages).printLine()
        Figure(bench: "broker", figure: "consume_ack", unit: "msg/s", samples: swiftConsume, baselineSamples: cConsume,
               baselineName: "librabbitmq", operations: messages).printLine()
    }
}
