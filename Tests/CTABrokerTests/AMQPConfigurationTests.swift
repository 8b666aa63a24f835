import Testing

@testable import CTABroker

@Suite("AMQP URL parsing")
struct AMQPConfigurationTests {
    @Test func fullURL() throws {
        let config = try AMQPConfiguration(url: "amqp://alice:s%40cret@broker.example:5673/prod%2Fa?heartbeat=10&connection_timeout=2500")
        #expect(config.host == "broker.example")
        #expect(config.port == 5673)
        #expect(config.username == "alice")
        #expect(config.password == "s@cret")
        #expect(config.virtualHost == "prod/a")
        #expect(config.heartbeat == .seconds(10))
        #expect(config.connectTimeout == .milliseconds(2500))
        #expect(config.tls == nil)
    }

    @Test func defaults() throws {
        let config = try AMQPConfiguration(url: "amqp://localhost")
        #expect(config.port == 5672)
        #expect(config.username == "guest")
        #expect(config.password == "guest")
        #expect(config.virtualHost == "/")
        let slash = try AMQPConfiguration(url: "amqp://localhost/")
        #expect(slash.virtualHost == "/")
        let encoded = try AMQPConfiguration(url: "amqp://localhost/%2F")
        #expect(encoded.virtualHost == "/")
    }

    @Test func tlsOptions() throws {
        let config = try AMQPConfiguration(url: "amqps://u:p@[::1]/?cacertfile=/etc/ca.pem&verify=verify_none")
        #expect(config.host == "::1")
        #expect(config.port == 5671)
        #expect(config.tls?.caFile == "/etc/ca.pem")
        #expect(config.tls?.verifyPeer == false)
        #expect(config.tls?.verifyHostname == false)
    }

    @Test(arguments: [
        ("http://localhost", "unsupported scheme 'http'"),
        ("localhost:5672", "missing scheme"),
        ("amqp://localhost:99999", "port '99999'"),
        ("amqp://localhost:abc", "port 'abc'"),
        ("amqp://localhost/?heartbeat=-1", "option 'heartbeat'"),
        ("amqp://localhost/?frobnicate=1", "unknown option 'frobnicate'"),
        ("amqp://localhost/?cacertfile=/x", "needs amqps"),
        ("amqp://u:p%zz@localhost", "percent-encoding in password"),
    ])
    func rejectsBadURLs(url: String, fragment: String) {
        #expect {
            try AMQPConfiguration(url: url)
        } throws: { error in
            guard let error = error as? AMQPError else { return false }
            return error.code == .invalidURL && error.description.contains(fragment)
        }
    }

    @Test func redactsPasswords() {
        #expect(AMQPConfiguration.redacted("amqp://alice:secret@host/") == "amqp://alice:***@host/")
        #expect(AMQPConfiguration.redacted("amqp://host/") == "amqp://host/")
        // An error about a bad URL never shows the password.
        do {
            _ = try AMQPConfiguration(url: "amqp://alice:secret@host:0/")
            Issue.record("port 0 accepted")
        } catch {
            #expect(!error.description.contains("secret"))
        }
    }
}
