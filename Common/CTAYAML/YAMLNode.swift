// A YAML document as a tree of nodes that know the line they start on, so that every problem found while reading
// a value can name its line.

/// One node of a YAML document: a scalar, a mapping or a list, with the place where it starts.
public struct YAMLNode: Hashable, Sendable {
    /// What a node holds.
    public enum Content: Hashable, Sendable {
        /// A single value as written, without quotes: `true`, `3.5`, `10m`.
        case scalar(YAMLScalar)
        /// Keys and their values, in document order. A repeated key never appears twice (see ``YAMLReader``).
        case mapping([Entry])
        /// Items in document order.
        case sequence([YAMLNode])
    }

    /// A key of a mapping and its value.
    public struct Entry: Hashable, Sendable {
        /// The key, usually a scalar.
        public var key: YAMLNode
        /// The value.
        public var value: YAMLNode

        /// Creates an entry.
        public init(key: YAMLNode, value: YAMLNode) {
            self.key = key
            self.value = value
        }

        /// The key's text, or nil when the key is not a scalar.
        public var name: String? { key.scalar }
    }

    /// The node's content.
    public var content: Content
    /// The 1-based line the node starts on.
    public var line: Int
    /// The 1-based column the node starts at, counted in Unicode scalars.
    public var column: Int

    /// Creates a node.
    public init(_ content: Content, line: Int, column: Int = 1) {
        self.content = content
        self.line = line
        self.column = column
    }

    /// The text of a scalar (also of an empty one: `~`, `null` or nothing), nil for a mapping or a list.
    public var scalar: String? {
        if case .scalar(let scalar) = content { return scalar.text }
        return nil
    }

    /// Whether the node is an empty value: nothing, `~` or `null` written without quotes.
    public var isNull: Bool {
        if case .scalar(let scalar) = content { return scalar.isNull }
        return false
    }

    /// The entries of a mapping, nil for anything else.
    public var mapping: [Entry]? {
        if case .mapping(let entries) = content { return entries }
        return nil
    }

    /// The items of a list, nil for anything else.
    public var sequence: [YAMLNode]? {
        if case .sequence(let items) = content { return items }
        return nil
    }

    /// The node in words, for messages that say what was found instead: "a mapping", "a list", or the quoted
    /// scalar.
    public var shape: String {
        switch content {
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .scalar(let scalar): YAMLNode.quoted(scalar.text)
        }
    }

    /// A value for an error message: quoted, escaped, and cut short when long.
    public static func quoted(_ text: String) -> String {
        let limit = 60
        if text.count <= limit { return text.debugDescription }
        return String(text.prefix(limit)).debugDescription + "…"
    }
}

/// A scalar as written in the document.
public struct YAMLScalar: Hashable, Sendable {
    /// The text, without quotes or escapes.
    public var text: String
    /// Whether it is an empty value: nothing, `~` or `null` written without quotes (`"~"` is the text `~`).
    public var isNull: Bool

    /// Creates a scalar.
    public init(_ text: String, isNull: Bool = false) {
        self.text = text
        self.isNull = isNull
    }
}
