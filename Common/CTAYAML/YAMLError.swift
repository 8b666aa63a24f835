/// YAML text that cannot be read: which file, which line, which key, and why.
///
/// ``description`` is the line to print for a person: `/etc/cta/agent.yaml:4: machine: duplicate key; first set at
/// line 3`.
public struct YAMLError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file the text came from, as the caller named it.
    public var file: String
    /// The 1-based line; nil when the problem is the whole file.
    public var line: Int?
    /// The key the problem is about; the root for problems with the text itself (syntax).
    public var path: YAMLPath
    /// What is wrong, in one sentence without the file, line or key.
    public var message: String

    /// Creates an error.
    public init(file: String, line: Int?, path: YAMLPath = .root, message: String) {
        self.file = file
        self.line = line
        self.path = path
        self.message = message
    }

    public var description: String {
        let place = line.map { "\(file):\($0): " } ?? "\(file): "
        return path.isEmpty ? place + message : place + "\(path): " + message
    }
}
