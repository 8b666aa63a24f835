/// Where a value sits inside a document: keys and list positions from the root, rendered `stages[1].run`.
public struct YAMLPath: Hashable, Sendable, CustomStringConvertible {
    /// One step from a node to a node inside it.
    public enum Component: Hashable, Sendable {
        /// A key of a mapping.
        case key(String)
        /// A position in a list, from 0.
        case index(Int)
    }

    /// The steps from the root.
    public var components: [Component]

    /// The root of the document.
    public static let root = YAMLPath(components: [])

    /// Creates a path.
    public init(components: [Component]) { self.components = components }

    /// The path of a key inside the node this path leads to.
    public func appending(_ key: String) -> YAMLPath { YAMLPath(components: components + [.key(key)]) }

    /// The path of a list item inside the node this path leads to.
    public func appending(index: Int) -> YAMLPath { YAMLPath(components: components + [.index(index)]) }

    /// Whether this is the root.
    public var isEmpty: Bool { components.isEmpty }

    /// The keys alone, without list positions.
    public var keys: [String] {
        components.compactMap { component in
            if case .key(let key) = component { return key }
            return nil
        }
    }

    /// `stages[1].run`; a key that is not a plain word (letters, digits, `_`, `-`) is written `["key"]`.
    public var description: String {
        var result = ""
        for component in components {
            switch component {
            case .index(let index):
                result += "[\(index)]"
            case .key(let key) where Self.isPlain(key):
                result += result.isEmpty ? key : ".\(key)"
            case .key(let key):
                var escaped = ""
                for character in key {
                    if character == "\\" || character == "\"" { escaped.append("\\") }
                    escaped.append(character)
                }
                result += "[\"\(escaped)\"]"
            }
        }
        return result
    }

    private static func isPlain(_ key: String) -> Bool {
        !key.isEmpty
            && key.unicodeScalars.allSatisfy { scalar in
                ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || scalar == "_" || scalar == "-"
            }
    }
}
