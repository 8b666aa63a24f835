@testable import CTACore
import Foundation
import Testing

/// The gateway reads only an envelope's fields (``EnvelopeHeader``), first with a reader of its own and, when that
/// declines, with the decoder. Both must accept the same messages, and agree with ``Envelope`` on the fields.
@Suite("Envelope header")
struct EnvelopeHeaderTests {
    let document: ProtocolDocument

    init() throws { document = try ProtocolDocument.load() }

    /// The decoder's reading, without the reader in front of it.
    static func decoded(_ data: Data) -> EnvelopeHeader? {
        try? JSONDecoder().decode(EnvelopeHeader.self, from: data)
    }

    @Test("every documented example is read without the decoder, with the fields Envelope decodes")
    func examples() throws {
        #expect(!document.examples.isEmpty)
        for example in document.examples {
            let data = Data(example.body.utf8)
            let envelope = try Envelope.decode(data)
            let header = try #require(EnvelopeHeader.read(data), "\(example.label) was not read")
            #expect(header == Self.decoded(data), "\(example.label)")
            #expect(
                header.id == envelope.id && header.version == envelope.version && header.source == envelope.source
                    && header.type == envelope.type && header.time == envelope.time && header.epoch == envelope.epoch
                    && header.seq == envelope.seq, "\(example.label)")
        }
    }

    @Test("a malformed envelope field is refused by the header with Envelope's error; the reader never accepts what the decoder refuses")
    func malformed() {
        #expect(document.malformed.count >= 20)
        for example in document.malformed {
            let data = Data(example.body.utf8)
            #expect(EnvelopeHeader.read(data) == nil || EnvelopeHeader.read(data) == Self.decoded(data), "\(example.name)")
            // Payload problems are the coordinator's to find; everything before the payload the header finds too.
            guard !example.path.hasPrefix("payload") else { continue }
            let expected = #expect(throws: WireError.self) { try Envelope.decode(data) }
            let error = #expect(throws: WireError.self, "\(example.name)") { try EnvelopeHeader.decode(data) }
            #expect(error == expected, "\(example.name)")
        }
    }

    @Test(
        "variations the reader declines or takes exactly as the decoder does",
        arguments: [
            // JSON the reader must get right: spacing, escapes, unknown fields with nesting, a payload of any shape.
            #"{ "version" : "1.0", "id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent\u002Flab-01","time":"2026-11-23T04:00:00.000Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","extra":{"a":[1,{"b":null}],"c":"\"}"},"payload":{"x":[[]]}}"#,
            #"{"version":"1.0","id":"7C1F7F0E-2A55-4C36-9B55-0A4F5F7C1D01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","payload":7}"#,
            // Declined, and the decoder decides: null, numbers where strings belong, a repeated key, seq as text.
            #"{"version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":null,"payload":{}}"#,
            #"{"version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","seq":null,"payload":{}}"#,
            #"{"version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"test.result","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","seq":"3","payload":{}}"#,
            #"{"version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"test.result","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","seq":3.0,"payload":{}}"#,
            #"{"version":"1.0","version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","payload":{}}"#,
            #"{"version":1.0,"id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","payload":{}}"#,
            #"{"version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","payload":{"a":}}"#,
            #"{"version":"1.0","id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent/lab-01","time":"2026-11-23T04:00:00Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","payload":{}} trailing"#,
        ])
    func variations(_ text: String) {
        let data = Data(text.utf8)
        let read = EnvelopeHeader.read(data)
        let decoded = Self.decoded(data)
        #expect(read == nil || read == decoded, "the reader took what the decoder reads otherwise")
    }

    @Test("the reader does read the JSON it must get right")
    func readsSpacingAndEscapes() throws {
        let spaced = #"{ "version" : "1.0", "id":"7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01","type":"agent.heartbeat","source":"agent\u002Flab-01","time":"2026-11-23T04:00:00.000Z","epoch":"9b2e6a4c-1d3f-4e5a-8b7c-6d5e4f3a2b1c","extra":{"a":[1,{"b":null}],"c":"\"}"},"payload":{"x":[[]]}}"#
        let header = try #require(EnvelopeHeader.read(Data(spaced.utf8)))
        #expect(header.source == Source("agent/lab-01") && header.type == .agentHeartbeat && header.seq == nil)
        #expect(header == Self.decoded(Data(spaced.utf8)))
    }
}
