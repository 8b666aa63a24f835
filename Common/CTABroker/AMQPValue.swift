/// A value in an AMQP field table: queue and exchange arguments, message headers.
public enum AMQPValue: Sendable, Hashable {
    case bool(Bool)
    /// A signed 64-bit integer (`l`), what RabbitMQ expects for `x-message-ttl`, `x-max-length` and the like.
    case int(Int64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    /// Milliseconds-free POSIX time in seconds (`T`).
    case timestamp(UInt64)
    case array([AMQPValue])
    case table(AMQPTable)
    case void

    /// The value as a string, when it is one.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The value as an integer, when it is an integer of any width.
    public var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }
}

extension AMQPValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

/// An AMQP field table.
public typealias AMQPTable = [String: AMQPValue]
