import CTAClient
import Foundation
import Testing

@Suite("Client settings")
struct SettingsTests {
    let file = ConfigFile(url: "https://file.example:8420", token: "cta_file", caCertificateFile: "/etc/file-ca.pem")

    @Test("flags win over the environment, which wins over the file")
    func precedence() {
        let environment = ["CTA_URL": "https://env.example", "CTA_TOKEN": "cta_env"]
        let flagged = ClientSettings.resolve(
            flags: .init(url: "https://flag.example", token: "cta_flag"), environment: environment, file: file)
        #expect(flagged.url == "https://flag.example")
        #expect(flagged.token == "cta_flag")
        #expect(flagged.caCertificateFile == "/etc/file-ca.pem")
        #expect(flagged.sources == ["url": "flag", "token": "flag", "caCert": "file"])

        let fromEnvironment = ClientSettings.resolve(flags: .init(), environment: environment, file: file)
        #expect(fromEnvironment.url == "https://env.example")
        #expect(fromEnvironment.token == "cta_env")
        #expect(fromEnvironment.sources["token"] == "environment")

        let fromFile = ClientSettings.resolve(flags: .init(), environment: [:], file: file)
        #expect(fromFile.url == "https://file.example:8420")
        #expect(fromFile.token == "cta_file")

        let empty = ClientSettings.resolve(flags: .init(), environment: ["CTA_TOKEN": ""], file: nil)
        #expect(empty.url == ClientSettings.defaultURL)
        #expect(empty.token == nil)
        #expect(empty.sources["url"] == "default")
    }

    @Test("the configuration file lives under XDG_CONFIG_HOME when it is absolute, else under HOME")
    func configPath() {
        #expect(
            ClientSettings.configPath(environment: ["XDG_CONFIG_HOME": "/x/config", "HOME": "/home/u"])
                == "/x/config/cta/config.toml")
        #expect(
            ClientSettings.configPath(environment: ["XDG_CONFIG_HOME": "relative", "HOME": "/home/u/"])
                == "/home/u/.config/cta/config.toml")
        #expect(ClientSettings.configPath(environment: [:]) == nil)
    }

    @Test("the file is written with mode 0600 and read back")
    func writeAndRead() throws {
        let directory = NSTemporaryDirectory() + "cta-settings-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/cta/config.toml"
        let written = ConfigFile(url: "https://cta.example", token: "cta_\"quoted\\", caCertificateFile: nil)
        try written.write(path: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try ConfigFile.read(path: path) == written)
        // Replacing keeps the mode.
        try ConfigFile(url: "https://other.example", token: "cta_2").write(path: path)
        #expect(try ConfigFile.read(path: path)?.url == "https://other.example")
        let again = try FileManager.default.attributesOfItem(atPath: path)
        #expect((again[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try ConfigFile.read(path: directory + "/missing.toml") == nil)
    }

    @Test("a mistake in the file names its line and key")
    func fileErrors() {
        #expect(throws: ClientError.usage("c.toml:2: tokn: unknown key; did you mean token?")) {
            try ConfigFile.parse("url = \"https://a\"\ntokn = \"x\"\n", file: "c.toml")
        }
        #expect(throws: ClientError.usage("c.toml:1: url: expected a string, got a list")) {
            try ConfigFile.parse("url = [1]\n", file: "c.toml")
        }
        #expect(throws: ClientError.self) { try ConfigFile.parse("url = https://a\n", file: "c.toml") }
    }

    @Test("endpoints from URLs")
    func endpoints() throws {
        let secure = try #require(Endpoint("https://cta.example.com/api/"))
        #expect(secure.secure && secure.port == 443 && secure.basePath == "/api")
        #expect(secure.description == "https://cta.example.com/api")
        #expect(secure.webSocketURL("/v1/live") == "wss://cta.example.com:443/api/v1/live")
        let plain = try #require(Endpoint("http://127.0.0.1:8420"))
        #expect(!plain.secure && plain.port == 8420 && plain.description == "http://127.0.0.1:8420")
        #expect(Endpoint("ftp://x") == nil)
        #expect(Endpoint("cta.example.com") == nil)
        #expect(Endpoint("http://x?y=1") == nil)
    }

    @Test("a session needs a token and an http(s) URL")
    func sessions() {
        #expect(throws: ClientError.self) {
            try Session.open(settings: ClientSettings(url: "http://127.0.0.1:1"), requireToken: true)
        }
        #expect(throws: ClientError.self) {
            try Session.open(settings: ClientSettings(url: "localhost:8420", token: "t"), requireToken: true)
        }
        #expect(throws: Never.self) {
            try Session.open(settings: ClientSettings(url: "http://127.0.0.1:1", token: "t"), requireToken: true)
        }
    }
}
