public import CTACore
import Foundation

/// One frame between an agent and the gateway (docs/protocol.md, "The gateway"): a WebSocket text message of a
/// compact JSON header, a newline, and for `deliver` and `publish` the message or envelope bytes, unchanged.
public enum GatewayFrame: Hashable, Sendable {
    // Gateway to agent.
    /// A broker delivery from `queue`, settled by the agent with `ack`, `release` or `reject` of the same tag.
    case deliver(tag: UInt64, queue: String, redelivered: Bool, body: [UInt8])
    /// The broker ended the consumer of `queue` (the queue was deleted, or does not exist).
    case consumerCancelled(queue: String)
    /// The broker confirmed the events published with these ids (at most ``confirmedPerFrame``).
    case confirmed(ids: [String])
    /// The event published with this id was refused and dead-lettered; resending it cannot succeed.
    case refused(id: String, error: WireError)
    /// No queue took the events published with these ids (the coordinators have not declared theirs yet): the agent
    /// keeps them and sends them again later (at most ``confirmedPerFrame``).
    case unroutable(ids: [String])

    // Agent to gateway.
    /// The work of this delivery is durably in the agent's spool.
    case ack(tag: UInt64)
    /// Not taken now: back to the queue.
    case release(tag: UInt64)
    /// Refused: dead-lettered with the reason.
    case reject(tag: UInt64, error: WireError)
    /// How many deliveries of a shared queue the agent may take now; 0 stops consuming it.
    case credit(queue: String, credit: Int)
    /// An event for `cta.events`, answered with `confirmed` or `refused`.
    case publish(id: String, body: [UInt8])

    /// The frame's name, as in its header.
    public var name: String {
        switch self {
        case .deliver: "deliver"
        case .consumerCancelled: "consumerCancelled"
        case .confirmed: "confirmed"
        case .refused: "refused"
        case .unroutable: "unroutable"
        case .ack: "ack"
        case .release: "release"
        case .reject: "reject"
        case .credit: "credit"
        case .publish: "publish"
        }
    }

    /// Longest header accepted.
    public static let maximumHeaderBytes = 4096
    /// Longest queue name (AMQP's limit).
    static let maximumQueueBytes = 255
    /// Longest event id accepted (ids are UUIDs).
    static let maximumIDBytes = 64
    /// Most ids one `confirmed` frame carries: with ids of the longest kind accepted, the header stays within
    /// ``maximumHeaderBytes``.
    public static let confirmedPerFrame = 56

    /// The frame as a WebSocket text message's bytes. A body that is not UTF-8 cannot ride in a text message:
    /// callers check ``bodyIsText(_:)`` first (the gateway dead-letters such a delivery instead of forwarding it).
    public var encoded: [UInt8] {
        var header = "{\"frame\":\"\(name)\""
        func add(_ key: String, _ value: String) { header += ",\"\(key)\":" + JSONText.quoted(value) }
        func add(_ key: String, number: some BinaryInteger) { header += ",\"\(key)\":\(number)" }
        func add(_ error: WireError) {
            add("code", error.code.name)
            add("path", error.path)
            add("reason", error.reason)
        }
        var body: [UInt8] = []
        switch self {
        case .deliver(let tag, let queue, let redelivered, let bytes):
            add("tag", number: tag)
            add("queue", queue)
            header += ",\"redelivered\":\(redelivered)"
            body = bytes
        case .consumerCancelled(let queue): add("queue", queue)
        case .confirmed(let ids), .unroutable(let ids):
            header += ",\"ids\":[" + ids.map(JSONText.quoted).joined(separator: ",") + "]"
        case .refused(let id, let error):
            add("id", id)
            add(error)
        case .ack(let tag), .release(let tag): add("tag", number: tag)
        case .reject(let tag, let error):
            add("tag", number: tag)
            add(error)
        case .credit(let queue, let credit):
            add("queue", queue)
            add("credit", number: credit)
        case .publish(let id, let bytes):
            add("id", id)
            body = bytes
        }
        header += "}\n"
        var bytes: [UInt8] = []
        bytes.reserveCapacity(header.utf8.count + body.count)
        bytes.append(contentsOf: header.utf8)
        bytes.append(contentsOf: body)
        return bytes
    }

    /// Whether `body` can ride in a text message.
    public static func bodyIsText(_ body: [UInt8]) -> Bool {
        String(validating: body, as: UTF8.self) != nil
    }

    /// Decodes one text message. Every header key is checked: a frame with an unknown name or key, a missing or
    /// mistyped value, a body where none belongs, or a header over ``maximumHeaderBytes`` is refused with the reason.
    public static func decode(_ message: some Collection<UInt8>) throws(GatewayFrameError) -> GatewayFrame {
        let bytes = Array(message)
        guard let newline = bytes.prefix(maximumHeaderBytes + 1).firstIndex(of: 0x0A) else {
            throw GatewayFrameError(
                bytes.count > maximumHeaderBytes
                    ? "the header is longer than \(maximumHeaderBytes) bytes or has no newline after it"
                    : "a frame is a JSON header and a newline")
        }
        let body = Array(bytes[(newline + 1)...])
        guard let object = FlatJSONReader.object(bytes[..<newline], nested: .refuse) else {
            throw GatewayFrameError("the header is not a JSON object of strings, numbers, booleans and lists of strings")
        }
        guard case .string(let name)? = object["frame"] else { throw GatewayFrameError("the header has no frame name") }
        let keys: Set<String>
        let hasBody: Bool
        switch name {
        case "deliver": (keys, hasBody) = (["tag", "queue", "redelivered"], true)
        case "consumerCancelled": (keys, hasBody) = (["queue"], false)
        case "confirmed", "unroutable": (keys, hasBody) = (["ids"], false)
        case "refused": (keys, hasBody) = (["id", "code", "path", "reason"], false)
        case "ack", "release": (keys, hasBody) = (["tag"], false)
        case "reject": (keys, hasBody) = (["tag", "code", "path", "reason"], false)
        case "credit": (keys, hasBody) = (["queue", "credit"], false)
        case "publish": (keys, hasBody) = (["id"], true)
        default: throw GatewayFrameError("unknown frame \(name.prefix(40))")
        }
        if let unknown = object.keys.sorted().first(where: { $0 != "frame" && !keys.contains($0) }) {
            throw GatewayFrameError("\(name): unknown key \(unknown.prefix(40))")
        }
        if !hasBody, !body.isEmpty { throw GatewayFrameError("\(name) carries no body") }
        if hasBody, body.isEmpty { throw GatewayFrameError("\(name) needs a body after the header") }

        func string(_ key: String, limit: Int) throws(GatewayFrameError) -> String {
            guard case .string(let value)? = object[key], !value.isEmpty, value.utf8.count <= limit else {
                throw GatewayFrameError("\(name): \(key) must be a string of 1 to \(limit) bytes")
            }
            return value
        }
        func integer(_ key: String) throws(GatewayFrameError) -> Int64 {
            guard case .integer(let number)? = object[key], number >= 0 else {
                throw GatewayFrameError("\(name): \(key) must be a whole number, 0 or more")
            }
            return number
        }
        func tag() throws(GatewayFrameError) -> UInt64 {
            let value = try integer("tag")
            guard value > 0 else { throw GatewayFrameError("\(name): tag must be 1 or more") }
            return UInt64(value)
        }
        func wireError() throws(GatewayFrameError) -> WireError {
            guard case .string(let text)? = object["code"], let code = WireError.Code(name: text) else {
                throw GatewayFrameError("\(name): code must be a wire error code")
            }
            guard case .string(let path)? = object["path"], path.utf8.count <= 1024 else {
                throw GatewayFrameError("\(name): path must be a string of at most 1024 bytes")
            }
            let reason = try string("reason", limit: 4096)
            return WireError(code: code, path: path, reason: reason)
        }

        switch name {
        case "deliver":
            guard case .bool(let redelivered)? = object["redelivered"] else {
                throw GatewayFrameError("deliver: redelivered must be true or false")
            }
            return .deliver(
                tag: try tag(), queue: try string("queue", limit: maximumQueueBytes), redelivered: redelivered, body: body)
        case "consumerCancelled": return .consumerCancelled(queue: try string("queue", limit: maximumQueueBytes))
        case "confirmed", "unroutable":
            guard case .strings(let ids)? = object["ids"], (1...confirmedPerFrame).contains(ids.count),
                ids.allSatisfy({ !$0.isEmpty && $0.utf8.count <= maximumIDBytes })
            else {
                throw GatewayFrameError("\(name): ids must be a list of 1 to \(confirmedPerFrame) strings of 1 to \(maximumIDBytes) bytes")
            }
            return name == "confirmed" ? .confirmed(ids: ids) : .unroutable(ids: ids)
        case "refused": return .refused(id: try string("id", limit: maximumIDBytes), error: try wireError())
        case "ack": return .ack(tag: try tag())
        case "release": return .release(tag: try tag())
        case "reject": return .reject(tag: try tag(), error: try wireError())
        case "credit":
            let credit = try integer("credit")
            guard credit <= Int64(UInt16.max) else { throw GatewayFrameError("credit: credit must be at most \(UInt16.max)") }
            return .credit(queue: try string("queue", limit: maximumQueueBytes), credit: Int(credit))
        default: return .publish(id: try string("id", limit: maximumIDBytes), body: body)
        }
    }
}

/// Why a gateway frame was refused: the connection that sent it is closed with this reason.
public struct GatewayFrameError: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String

    public init(_ reason: String) { self.reason = reason }

    public var description: String { reason }
}

/// Limits both ends of a gateway connection keep.
public enum GatewayLimits {
    /// Largest WebSocket message accepted (an envelope is at most 1 MiB, plus the header).
    public static let maximumFrameBytes = (1 << 20) + GatewayFrame.maximumHeaderBytes + 1
}
