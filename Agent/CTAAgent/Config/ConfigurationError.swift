import CTAYAML

/// A configuration value the agent cannot use: which key, where it was set, and why.
///
/// ``description`` is the line to print for the operator, e.g.
/// `/etc/cta/agent.yaml:7: executions.maxConcurrent: expected an integer from 1 to 256, got "two"`. It never holds
/// a broker or gateway URL, which may carry a password.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where a value came from.
    public enum Origin: Sendable, Hashable {
        /// The configuration file; the line is 1-based, nil when the problem is the whole file.
        case file(path: String, line: Int?)
        /// An environment variable.
        case environment(variable: String)
        /// A command-line flag.
        case flag(name: String)
        /// Nowhere in particular: a default, or a rule between keys that no single place breaks.
        case none
    }

    /// The dotted key, e.g. `executions.maxConcurrent`; empty for problems with the file itself.
    public var key: String
    /// Where the offending value was set.
    public var origin: Origin
    /// What is wrong, in one sentence without the key or the place.
    public var message: String

    /// Creates an error.
    public init(key: String, origin: Origin, message: String) {
        self.key = key
        self.origin = origin
        self.message = message
    }

    public var description: String {
        let place: String
        switch origin {
        case .file(let path, let line?): place = "\(path):\(line): "
        case .file(let path, nil): place = "\(path): "
        case .environment(let variable): place = "environment \(variable): "
        case .flag(let name): place = "flag \(name): "
        case .none: place = ""
        }
        return key.isEmpty ? place + message : place + key + ": " + message
    }
}

extension ConfigurationError.Origin {
    /// The place in words, for messages that point at a second value: "at /etc/cta/agent.yaml:3".
    var phrase: String {
        switch self {
        case .file(let path, let line?): "at \(path):\(line)"
        case .file(let path, nil): "in \(path)"
        case .environment(let variable): "by \(variable)"
        case .flag(let name): "by \(name)"
        case .none: "by default"
        }
    }
}

extension ConfigurationError {
    /// The configuration file's YAML cannot be read: the same place and message, with the key dotted.
    init(_ error: YAMLError) {
        self.init(
            key: error.path.keys.joined(separator: "."),
            origin: .file(path: error.file, line: error.line),
            message: error.message
        )
    }
}
