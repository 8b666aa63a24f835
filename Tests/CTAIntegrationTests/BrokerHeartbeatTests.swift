import CTABroker
import Foundation
import Logging
import Synchronization
import Testing

/// Keeps every message logged, for tests that check what a component reported.
final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])

    var messages: [String] { lines.withLock { $0 } }

    var logger: Logger {
        Logger(label: "cta.test") { _ in Handler(recorder: self) }
    }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let metadata = self.metadata.merging(event.metadata ?? [:]) { $1 }
            let line = metadata.isEmpty ? event.message.description : "\(event.message) \(metadata)"
            recorder.lines.withLock { $0.append(line) }
        }
    }
}

@Suite("Broker: heartbeats on an idle connection", .enabled(if: ServiceEnvironment.brokerEnabled, "needs CTA_AMQP_URL"))
struct BrokerHeartbeatTests {
    /// The broker's heartbeats are the only traffic on an idle connection; librabbitmq swallows them, and the client
    /// must still count them, or it drops a healthy connection every two intervals.
    @Test(.timeLimit(.minutes(1)))
    func anIdleConnectionWithShortHeartbeatsStaysUp() async throws {
        let recorder = LogRecorder()
        var configuration = try AMQPConfiguration(url: try ServiceEnvironment.requireAMQPURL())
        configuration.heartbeat = .seconds(1)
        configuration.connectionName = "cta-heartbeat-test"
        let connection = AMQPConnection(configuration: configuration, logger: recorder.logger)
        try await connection.connect()
        try await Task.sleep(for: .seconds(6))
        let queue = ServiceEnvironment.uniqueName("cta.test.heartbeat")
        _ = try await connection.declareQueue(queue, durable: false, autoDelete: true)
        await connection.close()
        let lost = recorder.messages.filter { $0.contains("connection lost") }
        #expect(lost.isEmpty, "an idle, healthy connection was dropped: \(recorder.messages)")
        #expect(recorder.messages.contains { $0.contains("connection open") })
    }
}
