import CTAYAML
import Foundation
import Glibc

/// Where the API is and how to prove who we are, resolved from flags, the environment and the configuration file.
///
/// Precedence, highest first: command-line flags (`--url`, `--token`, `--ca-cert`), the environment (`CTA_URL`,
/// `CTA_TOKEN`, `CTA_CA_CERT`), then the configuration file written by `cta login`.
///
/// The file is `$XDG_CONFIG_HOME/cta/config.toml` (an absolute `XDG_CONFIG_HOME` only), else
/// `~/.config/cta/config.toml`. It is TOML with these keys, all optional:
///
/// | key | meaning |
/// |---|---|
/// | `url` | the API's URL, `https://cta.example.com:8420` |
/// | `token` | an API token (`cta_…`); the file is written with mode 0600 |
/// | `ca_cert` | a PEM file of CA certificates to trust instead of the system's |
public struct ClientSettings: Hashable, Sendable {
    /// The API's URL; `http://127.0.0.1:8420` when nothing says otherwise.
    public var url: String
    public var token: String?
    public var caCertificateFile: String?
    /// Where each value came from (`flag`, `environment`, `file`, `default`), for `cta login --show`-like output.
    public var sources: [String: String]

    public static let defaultURL = "http://127.0.0.1:8420"

    public init(url: String = defaultURL, token: String? = nil, caCertificateFile: String? = nil) {
        self.url = url
        self.token = token
        self.caCertificateFile = caCertificateFile
        sources = [:]
    }

    /// Values given on the command line.
    public struct Flags: Hashable, Sendable {
        public var url: String?
        public var token: String?
        public var caCertificateFile: String?

        public init(url: String? = nil, token: String? = nil, caCertificateFile: String? = nil) {
            self.url = url
            self.token = token
            self.caCertificateFile = caCertificateFile
        }
    }

    /// Resolves every value: flags, then the environment, then the file.
    public static func resolve(flags: Flags, environment: [String: String], file: ConfigFile?) -> ClientSettings {
        var settings = ClientSettings()
        func pick(_ name: String, _ flag: String?, _ variable: String, _ fromFile: String?) -> String? {
            if let flag, !flag.isEmpty {
                settings.sources[name] = "flag"
                return flag
            }
            if let value = environment[variable], !value.isEmpty {
                settings.sources[name] = "environment"
                return value
            }
            if let fromFile, !fromFile.isEmpty {
                settings.sources[name] = "file"
                return fromFile
            }
            return nil
        }
        if let url = pick("url", flags.url, "CTA_URL", file?.url) {
            settings.url = url
        } else {
            settings.sources["url"] = "default"
        }
        settings.token = pick("token", flags.token, "CTA_TOKEN", file?.token)
        settings.caCertificateFile = pick("caCert", flags.caCertificateFile, "CTA_CA_CERT", file?.caCertificateFile)
        return settings
    }

    /// The path of the configuration file for this environment; nil when neither `XDG_CONFIG_HOME` nor `HOME`
    /// says where it is.
    public static func configPath(environment: [String: String]) -> String? {
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            return (xdg.hasSuffix("/") ? xdg : xdg + "/") + "cta/config.toml"
        }
        guard let home = environment["HOME"], !home.isEmpty else { return nil }
        return (home.hasSuffix("/") ? home : home + "/") + ".config/cta/config.toml"
    }
}

/// The configuration file's content.
public struct ConfigFile: Hashable, Sendable {
    public var url: String?
    public var token: String?
    public var caCertificateFile: String?

    public init(url: String? = nil, token: String? = nil, caCertificateFile: String? = nil) {
        self.url = url
        self.token = token
        self.caCertificateFile = caCertificateFile
    }

    static let keys = ["url", "token", "ca_cert"]

    /// Reads the file at `path`; nil when there is none.
    ///
    /// - Throws: A ``ClientError`` with `file:line: key: message` when it cannot be read or holds a mistake.
    public static func read(path: String) throws(ClientError) -> ConfigFile? {
        switch TextFile.read(path, maximumSize: 1 << 20) {
        case .failure(.missing): return nil
        case .failure(let failure): throw .usage("\(path): cannot read: \(failure)")
        case .success(let text): return try parse(text, file: path)
        }
    }

    /// Parses the TOML text of a configuration file.
    public static func parse(_ text: String, file: String) throws(ClientError) -> ConfigFile {
        let root: YAMLNode
        do throws(YAMLError) {
            root = try TOMLReader.read(text, file: file)
        } catch {
            throw .usage(error.description)
        }
        var config = ConfigFile()
        for entry in root.mapping ?? [] {
            let name = entry.name ?? ""
            guard let value = entry.value.scalar else {
                throw .usage("\(file):\(entry.key.line): \(name): expected a string, got \(entry.value.shape)")
            }
            switch name {
            case "url": config.url = value
            case "token": config.token = value
            case "ca_cert": config.caCertificateFile = value
            default:
                let hint = KeySuggestion.closest(to: name, among: keys).map { "; did you mean \($0)?" } ?? ""
                throw .usage("\(file):\(entry.key.line): \(name): unknown key\(hint)")
            }
        }
        return config
    }

    /// The file's text.
    public var text: String {
        var lines = ["# Written by cta login. Keys: url, token, ca_cert."]
        if let url { lines.append("url = \(YAMLWriter.quoted(url))") }
        if let token { lines.append("token = \(YAMLWriter.quoted(token))") }
        if let caCertificateFile { lines.append("ca_cert = \(YAMLWriter.quoted(caCertificateFile))") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the file at `path` with mode 0600 (its directory 0700 when created), replacing it atomically.
    public func write(path: String) throws(ClientError) {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .usage("cannot create \(directory): \(error.localizedDescription)")
        }
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .usage("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw .usage("cannot write \(temporary): \(reason)")
            }
            written += count
        }
        fchmod(fd, 0o600)
        fsync(fd)
        close(fd)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .usage("cannot write \(path): \(reason)")
        }
    }
}
