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

    /// The gateway tests' virtual host (`CTA_AMQP_GATEWAY_URL`), else the shared one: the agent events they publish
    /// must not land in the coordinator queues other suites count.
    static func requireGatewayAMQPURL() throws -> String {
        if let url = environment["CTA_AMQP_GATEWAY_URL"] { return url }
        return try requireAMQPURL()
    }

    static func requireMongoURI() throws -> String {
        try #require(mongoURI, "CTA_MONGO_URI is not set: start the services with scripts/services.sh start")
    }

    /// Runs `scripts/services.sh ARG` (for example `stop-rabbitmq`), failing the test if it fails.
    /// `overrides` replace environment variables, to address a second, private service instance.
    ///
    /// Uses `posix_spawn` and `waitpid` on a thread of its own: Foundation's `Process` can miss the exit of a
    /// script that leaves a daemon running in the background.
    static func services(_ argument: String, overrides: [String: String] = [:]) async throws {
        let script = try #require(servicesScript, "CTA_SERVICES_SCRIPT is not set")
        let env = environment.merging(overrides) { _, new in new }.map { "\($0.key)=\($0.value)" }
        let status = try await run(["/bin/bash", script, argument], environment: env)
        #expect(status == 0, "services.sh \(argument) exited \(status)")
    }

    /// Runs a command to completion and returns its exit status.
    static func run(_ arguments: [String], environment: [String]) async throws -> Int32 {
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let rc = posix_spawn(&pid, arguments[0], nil, nil, argv, envp)
        try #require(rc == 0, "posix_spawn \(arguments[0]) failed: \(rc)")
        let child = pid
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                var status: Int32 = 0
                while waitpid(child, &status, 0) == -1 && errno == EINTR {}
                // WIFEXITED / WEXITSTATUS, which Swift does not import.
                let exited = status & 0x7f == 0
                continuation.resume(returning: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f))
            }
            thread.start()
        }
    }

    /// A name unique to this test run, for queues, exchanges and collections.
    static func uniqueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// A RabbitMQ node of a suite's own, on ports `base`+672 (AMQP), +671, +673 and +369 and in a directory of its own,
/// so the suite can stop and start it without disturbing the tests that share the main one.
struct PrivateBrokerNode {
    let port: Int
    let overrides: [String: String]

    init(name: String, base: Int) {
        port = base + 672
        overrides = [
            "CTA_SERVICES_DIR": (ServiceEnvironment.environment["CTA_SERVICES_DIR"] ?? NSTemporaryDirectory()) + "/" + name,
            "CTA_AMQP_PORT": String(base + 672), "CTA_AMQPS_PORT": String(base + 671), "CTA_RABBIT_DIST_PORT": String(base + 673),
            "CTA_EPMD_PORT": String(base + 369), "CTA_RABBIT_STOP_GRACE": "3",
        ]
    }

    var url: String { "amqp://guest:guest@127.0.0.1:\(port)/" }

    func start() async throws { try await ServiceEnvironment.services("start-rabbitmq", overrides: overrides) }

    func stop() async throws { try await ServiceEnvironment.services("stop-rabbitmq", overrides: overrides) }
}
