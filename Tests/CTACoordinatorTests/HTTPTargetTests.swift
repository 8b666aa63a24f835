import Testing

@testable import CTACoordinator

@Suite("Webhook URLs")
struct HTTPTargetTests {
    @Test("an http URL gives host, port, request target and Host header")
    func http() throws {
        let target = try HTTPTarget("http://hooks.example.com:8080/cta/ended?token=a%20b")
        #expect(target.host == "hooks.example.com")
        #expect(target.port == 8080)
        #expect(target.requestTarget == "/cta/ended?token=a%20b")
        #expect(target.hostHeader == "hooks.example.com:8080")
    }

    @Test("defaults: port 80 (left out of Host) and path /")
    func defaults() throws {
        let target = try HTTPTarget("http://127.0.0.1")
        #expect(target.port == 80)
        #expect(target.requestTarget == "/")
        #expect(target.hostHeader == "127.0.0.1")
    }

    @Test("an IPv6 literal is connected to bare and bracketed in Host")
    func ipv6() throws {
        let target = try HTTPTarget("http://[::1]:9000/x")
        #expect(target.host == "::1")
        #expect(target.hostHeader == "[::1]:9000")
    }

    @Test("https is refused with the reason, as are other schemes and URLs without a host")
    func refused() {
        #expect {
            try HTTPTarget("https://hooks.example.com/")
        } throws: { error in
            guard let error = error as? HTTPClientError else { return false }
            return error.code == .unsupportedURL && error.detail.contains("https is not supported")
        }
        for url in ["ftp://example.com/", "http:///path", "not a url", "mailto:someone@example.com"] {
            #expect(throws: HTTPClientError.self, "\(url)") { try HTTPTarget(url) }
        }
    }
}
