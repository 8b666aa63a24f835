import Foundation
import Testing

/// Where the real services the integration tests talk to are, as `scripts/services.sh` exports them.
///
/// Without `CTA_AMQP_URL` / `CTA_MONGO_URI` the integration tests are skipped with that reason, unless
/// `CTA_REQUIRE_SERVICES=1` (set by `scripts/test.sh` and CI), in which case their absence fails the run.
enum ServiceEnvironment {
    static let environment = ProcessInfo.processInfo.environment

    static var amqpURL: String? { environment["CTA_AMQP_URL"] }
    static var amqpsURL: String? { environment["CTA_AMQPS_URL"] }
    static var amqpsCAFile: String? { environment["CTA_AMQPS_CA_FILE"] }
    static var mongoURI: String? { environment["CTA_MONGO_URI"] }
    static var servicesScript: String? { environment["CTA_SERVICES_SCRIPT"] }
    static var servicesRequired: Bool { environment["CTA_REQUIRE_SERVICES"] == "1" }

    /// True when the broker is reachable by configuration, or when it is required (so a missing URL fails).
    static var brokerEnabled: Bool { amqpURL != nil || servicesRequired }
    static var mongoEnabled: Bool { mongoURI != nil || servicesRequired }

    static func requireAMQPURL() throws -> String {
        try #require(amqpURL, "CTA_AMQP_URL is not set: start the services with scripts/services.sh start")
    }

    static func requireMongoURI() throws -> String {
        try #require(mongoURI, "CTA_MONGO_URI is not set: start the services with scripts/services.sh start")
    }

    /// Runs `scripts/services.sh ARG` (for example `stop-rabbitmq`), failing the test if it fails.
    /// `overrides` replace environment variables, to address a second, private service instance.
    static func services(_ argument: String, overrides: [String: String] = [:]) throws {
        let script = try #require(servicesScript, "CTA_SERVICES_SCRIPT is not set")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script, argument]
        process.environment = environment.merging(overrides) { _, new in new }
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "services.sh \(argument) exited \(process.terminationStatus)")
    }

    /// A name unique to this test run, for queues, exchanges and collections.
    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}
