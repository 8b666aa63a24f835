import CTACore
import CTAMessaging
import Testing

@Suite("Gateway frames")
struct GatewayFrameTests {
    static let refusal = WireError(code: .invalidValue, path: "payload.attempt", reason: "must be 1 or more, \"got\" 0\n")

    @Test(
        "every frame encodes as a JSON header, a newline and its body, and decodes to itself",
        arguments: [
            GatewayFrame.deliver(tag: 17, queue: "cta.machine.lab-01", redelivered: false, body: Array(#"{"id":"x"}"#.utf8)),
            .deliver(tag: UInt64(Int64.max), queue: "cta.group.linux-pool", redelivered: true, body: Array("é\n{}".utf8)),
            .consumerCancelled(queue: "cta.parallel.7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01"),
            .confirmed(ids: ["7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01"]),
            .confirmed(ids: (0..<GatewayFrame.confirmedPerFrame).map { _ in EventID().description }),
            .unroutable(ids: ["7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01", "7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d02"]),
            .refused(id: "7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01", error: refusal),
            .ack(tag: 1), .release(tag: 2), .reject(tag: 3, error: refusal),
            .credit(queue: "cta.group.linux-pool", credit: 0), .credit(queue: "cta.group.linux-pool", credit: 1),
            .publish(id: "7c1f7f0e-2a55-4c36-9b55-0a4f5f7c1d01", body: Array(#"{"type":"test.result"}"#.utf8)),
        ])
    func roundTrip(_ frame: GatewayFrame) throws {
        let bytes = frame.encoded
        let newline = try #require(bytes.firstIndex(of: 0x0A))
        #expect(String(decoding: bytes[..<newline], as: UTF8.self).hasPrefix("{\"frame\":\"\(frame.name)\""))
        #expect(try GatewayFrame.decode(bytes) == frame)
    }

    @Test("the documented examples decode")
    func documented() throws {
        #expect(
            try GatewayFrame.decode(Array("{\"frame\":\"deliver\",\"tag\":17,\"queue\":\"cta.machine.lab-01\",\"redelivered\":false}\n{}".utf8))
                == .deliver(tag: 17, queue: "cta.machine.lab-01", redelivered: false, body: Array("{}".utf8)))
        #expect(
            try GatewayFrame.decode(Array(#"{"frame":"reject","tag":17,"code":"invalidValue","path":"payload.attempt","reason":"too small"}"#.utf8 + [0x0A]))
                == .reject(tag: 17, error: WireError(code: .invalidValue, path: "payload.attempt", reason: "too small")))
    }

    @Test(
        "a bad frame is refused with its reason",
        arguments: [
            ("", "a frame is a JSON header and a newline"),
            ("{\"frame\":\"ack\",\"tag\":1}", "a frame is a JSON header and a newline"),
            ("[1]\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"ack\",\"tag\":1,\"tag\":2}\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"ack\",\"tag\":{\"n\":1}}\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"ack\",\"tag\":1} x\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"ack\",\"tag\":1\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"ack\",\"tag\":1,}\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"a\\x\"}\n", "the header is not a JSON object of strings, numbers, booleans and lists of strings"),
            ("{\"frame\":\"ack\",\"tag\":null}\n", "ack: tag must be a whole number, 0 or more"),
            ("{\"frame\":\"confirmed\",\"ids\":[]}\n", "confirmed: ids must be a list of 1 to 56 strings of 1 to 64 bytes"),
            ("{\"frame\":\"confirmed\",\"ids\":\"x\"}\n", "confirmed: ids must be a list of 1 to 56 strings of 1 to 64 bytes"),
            ("{\"frame\":\"confirmed\",\"id\":\"x\"}\n", "confirmed: unknown key id"),
            ("{\"frame\":\"unroutable\",\"ids\":[]}\n", "unroutable: ids must be a list of 1 to 56 strings of 1 to 64 bytes"),
            ("{\"tag\":1}\n", "the header has no frame name"),
            ("{\"frame\":\"nack\",\"tag\":1}\n", "unknown frame nack"),
            ("{\"frame\":\"ack\",\"tag\":1,\"requeue\":true}\n", "ack: unknown key requeue"),
            ("{\"frame\":\"ack\",\"tag\":0}\n", "ack: tag must be 1 or more"),
            ("{\"frame\":\"ack\",\"tag\":-1}\n", "ack: tag must be a whole number, 0 or more"),
            ("{\"frame\":\"ack\",\"tag\":1.5}\n", "ack: tag must be a whole number, 0 or more"),
            ("{\"frame\":\"ack\",\"tag\":true}\n", "ack: tag must be a whole number, 0 or more"),
            ("{\"frame\":\"ack\",\"tag\":\"1\"}\n", "ack: tag must be a whole number, 0 or more"),
            ("{\"frame\":\"ack\",\"tag\":1}\nbody", "ack carries no body"),
            ("{\"frame\":\"publish\",\"id\":\"x\"}\n", "publish needs a body after the header"),
            ("{\"frame\":\"publish\",\"id\":\"\"}\n{}", "publish: id must be a string of 1 to 64 bytes"),
            ("{\"frame\":\"deliver\",\"tag\":1,\"queue\":\"q\",\"redelivered\":1}\n{}", "deliver: redelivered must be true or false"),
            ("{\"frame\":\"credit\",\"queue\":\"q\",\"credit\":70000}\n", "credit: credit must be at most 65535"),
            ("{\"frame\":\"reject\",\"tag\":1,\"code\":\"nope\",\"path\":\"\",\"reason\":\"r\"}\n", "reject: code must be a wire error code"),
            ("{\"frame\":\"reject\",\"tag\":1,\"code\":\"invalidValue\",\"path\":\"\",\"reason\":\"\"}\n", "reject: reason must be a string of 1 to 4096 bytes"),
        ])
    func refused(_ text: String, _ reason: String) {
        #expect(throws: GatewayFrameError(reason)) { try GatewayFrame.decode(Array(text.utf8)) }
    }

    @Test("headers are JSON: spacing, escapes and surrogate pairs are read as JSON reads them")
    func json() throws {
        #expect(try GatewayFrame.decode(Array("{ \"frame\" : \"ack\" ,\t\"tag\" : 1 }\n".utf8)) == .ack(tag: 1))
        #expect(
            try GatewayFrame.decode(Array(#"{"frame":"consumerCancelled","queue":"caf\u00e9 \ud83d\ude00 \/ \"q\""}"#.utf8 + [0x0A]))
                == .consumerCancelled(queue: "café 😀 / \"q\""))
        #expect(throws: GatewayFrameError("the header is not a JSON object of strings, numbers, booleans and lists of strings")) {
            try GatewayFrame.decode(Array(#"{"frame":"consumerCancelled","queue":"\ud83d x"}"#.utf8 + [0x0A]))
        }
        let many = (0...GatewayFrame.confirmedPerFrame).map { _ in "\"\(EventID())\"" }.joined(separator: ",")
        #expect(throws: GatewayFrameError("confirmed: ids must be a list of 1 to 56 strings of 1 to 64 bytes")) {
            try GatewayFrame.decode(Array("{\"frame\":\"confirmed\",\"ids\":[\(many)]}\n".utf8))
        }
        // The most ids a frame carries, each of the longest length accepted, stay within the header limit.
        let longest = GatewayFrame.confirmed(ids: Array(repeating: String(repeating: "a", count: 64), count: GatewayFrame.confirmedPerFrame))
        #expect(try GatewayFrame.decode(longest.encoded) == longest)
    }

    @Test("a header longer than the limit is refused without reading on; bodies must be text to ride a text message")
    func limits() {
        let long = "{\"frame\":\"ack\",\"tag\":1" + String(repeating: " ", count: GatewayFrame.maximumHeaderBytes) + "}\n"
        #expect(throws: GatewayFrameError("the header is longer than 4096 bytes or has no newline after it")) {
            try GatewayFrame.decode(Array(long.utf8))
        }
        #expect(GatewayFrame.bodyIsText(Array("{\"é\":1}".utf8)))
        #expect(!GatewayFrame.bodyIsText([0xFF, 0xFE]))
    }
}
