public import Foundation

/// The protocol version an envelope speaks: `"major.minor"`.
///
/// A reader refuses an unknown major version and accepts any minor version of a major it knows: a minor version
/// only adds optional fields (which older readers ignore) or new event types (which older readers dead-letter as
/// unknown, so coordinators are upgraded before agents).
public struct ProtocolVersion: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// Incremented for changes older readers cannot survive.
    public var major: UInt32
    /// Incremented for compatible additions.
    public var minor: UInt32

    /// The version this code writes.
    public static let current = ProtocolVersion(major: 1, minor: 0)
    /// The major versions this code reads.
    public static let supportedMajors: Set<UInt32> = [1]

    /// Creates a version.
    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }

    /// Parses `"1.0"`; nil for anything else (no leading zeros beyond a single `0`, no extra components).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        func number(_ part: Substring) -> UInt32? {
            guard !part.isEmpty, part.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                part.count == 1 || !part.hasPrefix("0")
            else { return nil }
            return UInt32(part)
        }
        guard parts.count == 2, let major = number(parts[0]), let minor = number(parts[1]) else { return nil }
        self.init(major: major, minor: minor)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.major, lhs.minor) < (rhs.major, rhs.minor) }

    public var description: String { "\(major).\(minor)" }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let version = ProtocolVersion(raw) else {
            throw WireError.invalid(decoder.wirePath, "\"\(excerpt(raw))\" is not a version of the form major.minor")
        }
        self = version
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Who sent an event: `agent/<machine>` or `coordinator/<instance>`.
public enum Source: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The agent of a machine (directly or through a gateway, which relays and never rewrites the source).
    case agent(MachineName)
    /// A coordinator instance, named by its configuration (default: host name and process id).
    case coordinator(String)

    /// Parses `agent/lab-01` or `coordinator/cta-1`; nil for anything else.
    public init?(_ text: String) {
        guard let slash = text.firstIndex(of: "/") else { return nil }
        let kind = text[..<slash]
        let name = String(text[text.index(after: slash)...])
        switch kind {
        case "agent":
            guard let machine = MachineName(name) else { return nil }
            self = .agent(machine)
        case "coordinator":
            guard nameProblem(name) == nil else { return nil }
            self = .coordinator(name)
        default:
            return nil
        }
    }

    /// Whether this is an agent or a coordinator.
    public var sender: Sender {
        switch self {
        case .agent: .agent
        case .coordinator: .coordinator
        }
    }

    /// The machine, for an agent source.
    public var machine: MachineName? {
        if case .agent(let machine) = self { machine } else { nil }
    }

    public var description: String {
        switch self {
        case .agent(let machine): "agent/\(machine)"
        case .coordinator(let instance): "coordinator/\(instance)"
        }
    }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let source = Source(raw) else {
            throw WireError.invalid(
                decoder.wirePath,
                "\"\(excerpt(raw))\" is not a source of the form agent/<machine> or coordinator/<instance>"
            )
        }
        self = source
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// One message of the wire contract: the envelope fields and the event it carries.
///
/// Decode incoming bytes with ``decode(_:)``; write outgoing ones with ``encoded()``. Both check the same rules, so
/// a sender finds its own mistakes before a receiver dead-letters them.
public struct Envelope: Hashable, Sendable {
    /// The idempotency key: a stored event with this id is never stored again.
    public var id: EventID
    /// The protocol version.
    public var version: ProtocolVersion
    /// Who sent it.
    public var source: Source
    /// When the event happened (the state's time for `execution.state`).
    public var time: Timestamp
    /// The sender's sequence epoch; required on every agent event.
    public var epoch: SequenceEpoch?
    /// The sender's sequence number within `epoch`, from 1, with no gaps; required on agent events except
    /// heartbeats. Kept unchanged when the event is replayed from the agent's spool.
    public var seq: UInt64?
    /// The payload.
    public var event: Event

    /// The envelope `type`.
    public var type: EventType { event.type }

    /// Creates an envelope.
    public init(
        id: EventID = EventID(),
        version: ProtocolVersion = .current,
        source: Source,
        time: Timestamp = .now(),
        epoch: SequenceEpoch? = nil,
        seq: UInt64? = nil,
        event: Event
    ) {
        self.id = id
        self.version = version
        self.source = source
        self.time = time
        self.epoch = epoch
        self.seq = seq
        self.event = event
    }

    /// Creates an envelope around a payload.
    public init(
        id: EventID = EventID(),
        source: Source,
        time: Timestamp = .now(),
        epoch: SequenceEpoch? = nil,
        seq: UInt64? = nil,
        payload: some EventPayload
    ) {
        self.init(id: id, source: source, time: time, epoch: epoch, seq: seq, event: payload.event)
    }

    /// Decodes and checks one message.
    ///
    /// In order: the bytes must be a JSON object; `version` must be present, well-formed and of a supported major
    /// (read first, so a future major may change anything else); then `id`, `type` (a known event type), `source`,
    /// `time`, `epoch` and `seq`; then the payload as the type's payload; then the rules that span fields (sender
    /// kind, sequencing, machine equals source). Unknown fields are ignored anywhere.
    ///
    /// - Throws: ``WireError`` naming the first problem found and its JSON path.
    public static func decode(_ data: Data) throws(WireError) -> Envelope {
        try decodeMessage(Envelope.self, from: data)
    }

    /// `T` from a message's bytes, every failure as the ``WireError`` naming it.
    static func decodeMessage<T: Decodable>(_ type: T.Type, from data: Data) throws(WireError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as WireError {
            throw error
        } catch let error as DecodingError {
            throw WireError(error)
        } catch {
            throw WireError(code: .malformedJSON, path: "", reason: "the message could not be decoded")
        }
    }

    /// Decodes one message and requires its type to be one of `accepted` (the types the receiving queue carries).
    ///
    /// - Throws: ``WireError`` as ``decode(_:)`` does, or `unexpectedType` at `type`.
    public static func decode(_ data: Data, accepting accepted: Set<EventType>) throws(WireError) -> Envelope {
        let envelope = try decode(data)
        guard accepted.contains(envelope.type) else {
            throw WireError(
                code: .unexpectedType,
                path: "type",
                reason: "\(envelope.type.rawValue) is not accepted here"
            )
        }
        return envelope
    }

    /// The message bytes: compact JSON, envelope fields first.
    ///
    /// - Throws: ``WireError`` when the envelope breaks a rule of the contract (the same check as on decoding).
    public func encoded() throws(WireError) -> Data {
        try validate()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        do {
            return try encoder.encode(self)
        } catch {
            throw WireError(code: .invalidValue, path: "payload", reason: "the payload cannot be written as JSON")
        }
    }

    /// Requires the envelope to come from `authenticated`, the identity the transport proved (the broker user or
    /// the gateway's enrollment token).
    ///
    /// - Throws: `unauthorisedSource` at `source` when they differ.
    public func authorise(as authenticated: Source) throws(WireError) {
        guard source == authenticated else {
            throw WireError(
                code: .unauthorisedSource,
                path: "source",
                reason: "the sender is authenticated as \(authenticated), not \(source)"
            )
        }
    }

    /// Checks the rules that span fields, then the payload's own rules.
    public func validate() throws(WireError) {
        if version.major != ProtocolVersion.current.major {
            throw WireError(
                code: .unsupportedVersion, path: "version", reason: "major version \(version.major) is not supported")
        }
        let type = event.type
        try EnvelopeHeader.checkFields(type: type, source: source, epoch: epoch, seq: seq)
        if let machine = event.machine, type.sender == .agent, source.machine != machine {
            throw WireError(
                code: .unauthorisedSource,
                path: "payload.machine",
                reason: "the payload speaks for \(machine) but the source is \(source)"
            )
        }
        if case .executionState(let change) = event, let lastSeq = change.lastSeq, let seq, lastSeq >= seq {
            throw WireError(
                code: .invalidValue,
                path: "payload.lastSeq",
                reason: "must be less than the final state's own seq"
            )
        }
        try event.validate(at: WirePath.root.appending("payload"))
    }
}

/// The keys of an envelope.
enum EnvelopeCodingKey: String, CodingKey { case id, type, version, source, time, epoch, seq, payload }

extension Envelope: Codable {
    private typealias CodingKeys = EnvelopeCodingKey

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let fields = try EnvelopeHeader.fields(in: c)
        (id, version, source, time, epoch, seq) = (fields.id, fields.version, fields.source, fields.time, fields.epoch, fields.seq)
        event = try Event.decode(fields.type, from: try c.superDecoder(forKey: .payload))
        try validate()
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(type, forKey: .type)
        try c.encode(version, forKey: .version)
        try c.encode(source, forKey: .source)
        try c.encode(time, forKey: .time)
        try c.encodeIfPresent(epoch, forKey: .epoch)
        try c.encodeIfPresent(seq, forKey: .seq)
        try event.encode(to: c.superEncoder(forKey: .payload))
    }
}

/// The envelope fields of a message without its payload: what a relay needs to authorise and route it.
///
/// The gateway reads this instead of the whole ``Envelope``: it checks what the broker would enforce for a direct
/// agent (who sends it) and what routing needs (the type), and leaves the payload to the coordinator, which checks
/// it, and dead-letters a bad one with its reason, exactly as for an event that came straight from the broker.
public struct EnvelopeHeader: Hashable, Sendable {
    public var id: EventID
    public var version: ProtocolVersion
    public var source: Source
    public var type: EventType
    public var time: Timestamp
    public var epoch: SequenceEpoch?
    public var seq: UInt64?

    init(id: EventID, version: ProtocolVersion, source: Source, type: EventType, time: Timestamp) {
        self.id = id
        self.version = version
        self.source = source
        self.type = type
        self.time = time
    }

    /// Decodes the envelope fields and checks them as ``Envelope/decode(_:)`` does (in the same order, with the
    /// same errors), then the rules between them that need no payload: the sender kind, `epoch` on agent events,
    /// `seq` on sequenced ones. A `payload` must be present; its content is not read.
    public static func decode(_ data: Data) throws(WireError) -> EnvelopeHeader {
        if let header = read(data) { return header }
        return try Envelope.decodeMessage(EnvelopeHeader.self, from: data)
    }

    /// The same from bytes, read where they are (the gateway's hot path).
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> EnvelopeHeader {
        if let header = read(bytes[...]) { return header }
        return try Envelope.decodeMessage(EnvelopeHeader.self, from: Data(bytes))
    }
}

extension EnvelopeHeader {
    /// The header read without a general decoder when every field is there and well-formed, by the parsers the
    /// decoder uses; nil otherwise, and the decoder then names the problem. So both accept the same messages.
    static func read(_ data: Data) -> EnvelopeHeader? { read(ArraySlice(data)) }

    static func read(_ bytes: ArraySlice<UInt8>) -> EnvelopeHeader? {
        guard let object = FlatJSONReader.object(bytes, nested: .skip),
            case .string(let rawVersion)? = object["version"], let version = ProtocolVersion(rawVersion),
            ProtocolVersion.supportedMajors.contains(version.major),
            case .string(let rawID)? = object["id"], let id = UUID(uuidString: rawID),
            case .string(let rawType)? = object["type"], let type = EventType(rawValue: rawType),
            case .string(let rawSource)? = object["source"], let source = Source(rawSource),
            case .string(let rawTime)? = object["time"], let time = Timestamp(rfc3339: rawTime),
            object["payload"] != nil
        else { return nil }
        var header = EnvelopeHeader(id: EventID(id), version: version, source: source, type: type, time: time)
        switch object["epoch"] {
        case nil: break
        case .string(let rawEpoch)?:
            guard let epoch = UUID(uuidString: rawEpoch) else { return nil }
            header.epoch = SequenceEpoch(epoch)
        default: return nil
        }
        switch object["seq"] {
        case nil: break
        case .integer(let seq)? where seq >= 0: header.seq = UInt64(seq)
        default: return nil
        }
        do throws(WireError) {
            try checkFields(type: type, source: source, epoch: header.epoch, seq: header.seq)
        } catch {
            return nil
        }
        return header
    }
}

extension EnvelopeHeader: Decodable {
    public init(from decoder: any Decoder) throws {
        self = try Self.fields(in: try decoder.container(keyedBy: EnvelopeCodingKey.self))
        try Self.checkFields(type: type, source: source, epoch: epoch, seq: seq)
    }

    /// The envelope fields, decoded and checked in the contract's order (`version` first, so a future major may
    /// change anything else), and the presence of `payload`; the rules between fields are ``checkFields``'s.
    static func fields(in c: KeyedDecodingContainer<EnvelopeCodingKey>) throws -> EnvelopeHeader {
        let version: ProtocolVersion = try c.required(.version)
        guard ProtocolVersion.supportedMajors.contains(version.major) else {
            throw WireError(
                code: .unsupportedVersion,
                path: "version",
                reason: "major version \(version.major) is not supported (this reader speaks 1.x)"
            )
        }
        let id: EventID = try c.required(.id)
        let type: EventType = try c.required(.type)
        var header = EnvelopeHeader(id: id, version: version, source: try c.required(.source), type: type, time: try c.required(.time))
        header.epoch = try c.optional(.epoch)
        header.seq = try c.optionalInteger(.seq, minimum: 0)
        guard c.contains(.payload) else { throw WireError.missing(WirePath.root.appending("payload")) }
        return header
    }

    /// The rules between envelope fields: the sender kind of the type, `epoch` on agent events, `seq` from 1 on
    /// sequenced ones.
    static func checkFields(type: EventType, source: Source, epoch: SequenceEpoch?, seq: UInt64?) throws(WireError) {
        if source.sender != type.sender {
            throw WireError(
                code: .unauthorisedSource, path: "source", reason: "\(type.rawValue) is sent by \(type.sender.rawValue)s only")
        }
        if type.sender == .agent && epoch == nil {
            throw WireError(code: .missingField, path: "epoch", reason: "agent events must carry epoch")
        }
        if type.isSequenced {
            guard let seq else { throw WireError(code: .missingField, path: "seq", reason: "\(type.rawValue) must carry seq") }
            if seq == 0 { throw WireError(code: .invalidValue, path: "seq", reason: "must be at least 1") }
        }
    }
}
