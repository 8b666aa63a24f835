internal import CRabbitMQ

/// Placeholder while the AMQP client is written.
public enum AMQPPlaceholder {
    public static func libraryVersion() -> String { String(cString: amqp_version()) }
}
