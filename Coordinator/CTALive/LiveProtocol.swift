import CTACore
public import CTACoordinator
import Foundation

/// A message a live-feed client sends, decoded and checked.
public enum LiveClientMessage: Hashable, Sendable {
    case subscribe(id: String, target: FeedTarget, after: LiveCursor?)
    case unsubscribe(id: String)
    case ping
}

/// A problem with what a client sent, reported in an error frame: `code` is one of the API's error codes.
public struct LiveProtocolError: Error, Hashable, Sendable {
    public var code: String
    public var message: String
    /// The subscription the problem is about, when known.
    public var sub: String?
    /// The key at fault, when one is.
    public var field: String?

    public init(code: String, message: String, sub: String? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.sub = sub
        self.field = field
    }
}

/// The live feed's wire protocol: client frames in, server frames out (JSON text frames).
public enum LiveProtocol {
    /// Longest subscription id accepted.
    static let maximumIDLength = 128
    /// Longest execution or scenario id accepted.
    static let maximumTargetLength = 256

    /// Decodes one client text frame. Every key is checked: an unknown one is `unknownField`, a wrong type or
    /// value `invalidField`, a frame that is not a JSON object `badRequest`.
    public static func decode(_ text: String) -> Result<LiveClientMessage, LiveProtocolError> {
        guard let fields = try? JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8)) else {
            return .failure(LiveProtocolError(code: "badRequest", message: "a frame must be one JSON object"))
        }
        func string(_ key: String) -> String? {
            if case .string(let value)? = fields[key] { return value }
            return nil
        }
        let sub = string("id")
        func invalid(_ field: String, _ message: String) -> Result<LiveClientMessage, LiveProtocolError> {
            .failure(LiveProtocolError(code: "invalidField", message: message, sub: sub, field: field))
        }
        guard let opValue = fields["op"] else { return invalid("op", "op is missing") }
        guard case .string(let op) = opValue else { return invalid("op", "op must be a string") }
        let allowed: Set<String>
        switch op {
        case "subscribe": allowed = ["op", "id", "execution", "scenario", "machines", "after"]
        case "unsubscribe": allowed = ["op", "id"]
        case "ping": allowed = ["op"]
        default: return invalid("op", "unknown op \(op.prefix(32)); expected subscribe, unsubscribe or ping")
        }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            return .failure(
                LiveProtocolError(
                    code: "unknownField", message: "unknown key \(unknown.prefix(64)) for \(op)", sub: sub,
                    field: String(unknown.prefix(64))))
        }
        if op == "ping" { return .success(.ping) }
        guard let idValue = fields["id"] else { return invalid("id", "id is missing") }
        guard case .string(let id) = idValue, !id.isEmpty, id.utf8.count <= maximumIDLength else {
            return .failure(
                LiveProtocolError(
                    code: "invalidField", message: "id must be a string of 1 to \(maximumIDLength) bytes", field: "id"))
        }
        if op == "unsubscribe" { return .success(.unsubscribe(id: id)) }

        var targets: [FeedTarget] = []
        for key in ["execution", "scenario"] {
            guard let value = fields[key] else { continue }
            guard case .string(let text) = value, !text.isEmpty, text.utf8.count <= maximumTargetLength else {
                return invalid(key, "\(key) must be a string of 1 to \(maximumTargetLength) bytes")
            }
            targets.append(key == "execution" ? .execution(text) : .scenario(text))
        }
        if let machines = fields["machines"] {
            guard case .bool(true) = machines else { return invalid("machines", "machines must be true") }
            targets.append(.machines)
        }
        guard targets.count == 1 else {
            return .failure(
                LiveProtocolError(
                    code: "badRequest", message: "a subscription names exactly one of execution, scenario, machines",
                    sub: id))
        }
        var after: LiveCursor?
        if let afterValue = fields["after"] {
            guard case .string(let text) = afterValue else { return invalid("after", "after must be a cursor string") }
            do {
                after = try LiveCursor(parsing: text)
            } catch {
                return invalid("after", "after: \(error.description)")
            }
        }
        return .success(.subscribe(id: id, target: targets[0], after: after))
    }

    // MARK: Server frames

    public static func subscribedFrame(sub: String) -> String {
        object(["sub": .string(sub), "type": .string("subscribed")])
    }

    public static func pongFrame() -> String { object(["type": .string("pong")]) }

    public static func endFrame(sub: String, phase: String) -> String {
        object(["sub": .string(sub), "type": .string("end"), "phase": .string(phase)])
    }

    public static func errorFrame(_ error: LiveProtocolError) -> String {
        var detail: [(String, JSON)] = [("code", .string(error.code)), ("message", .string(error.message))]
        if let field = error.field { detail.append(("field", .string(field))) }
        var fields: [(String, JSON)] = [("type", .string("error"))]
        if let sub = error.sub { fields.append(("sub", .string(sub))) }
        fields.append(("error", .object(detail)))
        return JSON.object(fields).text
    }

    /// `{"sub","cursor","type","event"}` with `event` already rendered as JSON text.
    public static func eventFrame(sub: String, cursor: String, type: String, event: String) -> String {
        "{\"sub\":\(JSONText.quoted(sub)),\"cursor\":\(JSONText.quoted(cursor)),\"type\":\(JSONText.quoted(type)),\"event\":\(event)}"
    }

    private static func object(_ fields: KeyValuePairs<String, JSON>) -> String {
        JSON.object(fields.map { ($0.key, $0.value) }).text
    }
}

/// A minimal JSON writer with a fixed key order (frames are small; the order makes them easy to read).
enum JSON {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case null
    case array([JSON])
    case object([(String, JSON)])

    var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .string(let s): out += JSONText.quoted(s)
        case .int(let n): out += String(n)
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += "," }
                item.write(to: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (index, (key, value)) in fields.enumerated() {
                if index > 0 { out += "," }
                out += JSONText.quoted(key)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }
}

/// One connection's subscriptions: a plain state machine, so the protocol is tested without a socket.
public struct LiveSession: Sendable {
    /// Most subscriptions one connection may hold at once.
    public let maximumSubscriptions: Int
    public private(set) var active: Set<String> = []

    public init(maximumSubscriptions: Int = 32) {
        self.maximumSubscriptions = maximumSubscriptions
    }

    public enum Action: Hashable, Sendable {
        /// Send this text frame.
        case send(String)
        /// Authorize, then start this subscription.
        case start(id: String, target: FeedTarget, after: LiveCursor?)
        /// Stop this subscription.
        case stop(id: String)
    }

    /// What to do with one text frame.
    public mutating func receive(_ text: String) -> [Action] {
        switch LiveProtocol.decode(text) {
        case .failure(let error):
            return [.send(LiveProtocol.errorFrame(error))]
        case .success(.ping):
            return [.send(LiveProtocol.pongFrame())]
        case .success(.unsubscribe(let id)):
            guard active.remove(id) != nil else {
                return [.send(LiveProtocol.errorFrame(.init(code: "notFound", message: "no subscription \(id)", sub: id)))]
            }
            return [.stop(id: id)]
        case .success(.subscribe(let id, let target, let after)):
            if active.contains(id) {
                return [
                    .send(
                        LiveProtocol.errorFrame(
                            .init(code: "conflict", message: "subscription \(id) already exists", sub: id, field: "id")))
                ]
            }
            guard active.count < maximumSubscriptions else {
                return [
                    .send(
                        LiveProtocol.errorFrame(
                            .init(
                                code: "tooManyRequests",
                                message: "at most \(maximumSubscriptions) subscriptions per connection", sub: id)))
                ]
            }
            active.insert(id)
            return [.start(id: id, target: target, after: after)]
        }
    }

    /// A binary frame: refused with an error frame.
    public func receiveBinary() -> [Action] {
        [.send(LiveProtocol.errorFrame(.init(code: "badRequest", message: "frames must be JSON text, not binary")))]
    }

    /// A subscription ended on its own (its execution ended, it was refused, or it failed).
    public mutating func ended(_ id: String) {
        active.remove(id)
    }
}
