import CTACore
import Foundation
import Testing

/// A valid `test.result` message as a JSON object, for tests that change one thing in it.
func sampleResult() -> [String: Any] {
    [
        "id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "type": "test.result",
        "version": "1.0",
        "source": "agent/lab-01",
        "time": "2025-03-14T09:13:40.002Z",
        "epoch": "5b0d7c1e-3f2a-4c8e-9d41-7a6b2e9f0c13",
        "seq": 27,
        "payload": [
            "executionID": "0f8e2a4c-6b1d-4e7f-8a93-2c5d7e9f1b30",
            "machine": "lab-01",
            "attempt": 1,
            "testID": "login-api",
            "name": "Login API",
            "status": "ok",
            "durationMs": 10,
            "origin": ["kind": "exitCode", "stage": "prove", "exitCode": 0],
        ] as [String: Any],
    ]
}

func json(_ object: [String: Any]) throws -> Data {
    try JSONSerialization.data(withJSONObject: object)
}

func decodeError(_ object: [String: Any]) throws -> WireError? {
    let data = try json(object)
    return #expect(throws: WireError.self) { try Envelope.decode(data) }
}

@Suite("Envelope decoding")
struct EnvelopeTests {
    @Test("the sample is valid, so every variation below tests only its own change")
    func sampleIsValid() throws {
        let envelope = try Envelope.decode(try json(sampleResult()))
        #expect(envelope.type == .testResult)
        #expect(envelope.seq == 27)
    }

    @Test("unknown fields are ignored at the root and inside the payload")
    func unknownFieldsIgnored() throws {
        var message = sampleResult()
        message["priority"] = "high"
        message["trace"] = ["span": 1]
        var payload = message["payload"] as! [String: Any]
        payload["flakiness"] = 0.25
        var origin = payload["origin"] as! [String: Any]
        origin["pid"] = 4242
        payload["origin"] = origin
        message["payload"] = payload
        let envelope = try Envelope.decode(try json(message))
        let plain = try Envelope.decode(try json(sampleResult()))
        #expect(envelope == plain)
    }

    @Test("a newer minor version is accepted", arguments: ["1.1", "1.7", "1.42"])
    func newerMinorAccepted(version: String) throws {
        var message = sampleResult()
        message["version"] = version
        let envelope = try Envelope.decode(try json(message))
        #expect(envelope.version == ProtocolVersion(version))
        #expect(envelope.version.major == 1)
    }

    @Test("an unknown major version is refused before anything else is read", arguments: ["0.9", "2.0", "3.1"])
    func unknownMajorRefused(version: String) throws {
        var message = sampleResult()
        message["version"] = version
        message["id"] = "not checked when the major is unknown"
        let error = try decodeError(message)
        #expect(error?.code == .unsupportedVersion)
        #expect(error?.path == "version")
    }

    @Test("malformed versions are invalid values", arguments: ["1", "1.0.0", "01.0", "v1.0", "1.x", ""])
    func malformedVersion(version: String) throws {
        var message = sampleResult()
        message["version"] = version
        let error = try decodeError(message)
        #expect(error?.code == .invalidValue)
        #expect(error?.path == "version")
    }

    @Test(
        "an id that is not a UUID is an invalid value",
        arguments: ["42", "7c1f7f0e-2a55-4c36-9b55", "", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
    func nonUUIDIdentifier(id: String) throws {
        var message = sampleResult()
        message["id"] = id
        let error = try decodeError(message)
        #expect(error?.code == .invalidValue)
        #expect(error?.path == "id")
    }

    @Test("an id that is a number is a wrong type")
    func numericIdentifier() throws {
        var message = sampleResult()
        message["id"] = 42
        let error = try decodeError(message)
        #expect(error?.code == .wrongType)
        #expect(error?.path == "id")
    }

    @Test("seq must be a positive integer", arguments: [-1, 0, 1.5, "7", 1e30] as [any Sendable])
    func invalidSequence(seq: any Sendable) throws {
        var message = sampleResult()
        message["seq"] = seq
        let error = try decodeError(message)
        let expected: WireError.Code = seq is String ? .wrongType : .invalidValue
        #expect(error?.code == expected, "seq \(seq): \(String(describing: error))")
        #expect(error?.path == "seq")
    }

    @Test("seq is required on sequenced agent events and optional on heartbeats")
    func sequenceRequirement() throws {
        var message = sampleResult()
        message.removeValue(forKey: "seq")
        let error = try decodeError(message)
        #expect(error?.code == .missingField)
        #expect(error?.path == "seq")

        #expect(EventType.allCases.filter { $0.sender == .agent && !$0.isSequenced } == [.agentHeartbeat])
        #expect(EventType.allCases.filter { $0.sender == .coordinator }.allSatisfy { !$0.isSequenced })
    }

    @Test("null counts as absent")
    func nullIsMissing() throws {
        var message = sampleResult()
        message["seq"] = NSNull()
        let error = try decodeError(message)
        #expect(error?.code == .missingField)
        #expect(error?.path == "seq")
    }

    @Test("an unknown type is refused", arguments: ["test.verdict", "agent", "", "TEST.RESULT"])
    func unknownType(type: String) throws {
        var message = sampleResult()
        message["type"] = type
        let error = try decodeError(message)
        #expect(error?.code == .unknownType)
        #expect(error?.path == "type")
    }

    @Test("an unknown enumeration value names the field and the allowed values")
    func unknownEnumerationValue() throws {
        var message = sampleResult()
        var payload = message["payload"] as! [String: Any]
        payload["status"] = "passed"
        message["payload"] = payload
        let error = try #require(try decodeError(message))
        #expect(error.code == .invalidValue)
        #expect(error.path == "payload.status")
        #expect(error.reason.contains("ok, failed, partial, inconclusive"))
    }

    @Test("an unknown origin kind is an invalid value at its path")
    func unknownOriginKind() throws {
        var message = sampleResult()
        var payload = message["payload"] as! [String: Any]
        payload["origin"] = ["kind": "xunit", "stage": "prove"]
        message["payload"] = payload
        let error = try decodeError(message)
        #expect(error?.code == .invalidValue)
        #expect(error?.path == "payload.origin.kind")
    }

    @Test("the payload must be an object")
    func payloadWrongType() throws {
        var message = sampleResult()
        message["payload"] = [1, 2, 3]
        let error = try decodeError(message)
        #expect(error?.code == .wrongType)
        #expect(error?.path == "payload")
    }

    @Test(
        "dates are accepted with and without fractional seconds and with offsets",
        arguments: [
            ("2025-03-14T09:13:40Z", 0),
            ("2025-03-14T09:13:40.5Z", 500_000),
            ("2025-03-14T09:13:40.002Z", 2_000),
            ("2025-03-14T09:13:40.123456Z", 123_456),
            ("2025-03-14T09:13:40.1234569Z", 123_456),
            ("2025-03-14t09:13:40z", 0),
            ("2025-03-14T10:13:40+01:00", 0),
            ("2025-03-14T04:43:40.000-04:30", 0),
        ])
    func datesAccepted(text: String, micros: Int64) throws {
        var message = sampleResult()
        message["time"] = text
        let envelope = try Envelope.decode(try json(message))
        let base = try #require(Timestamp(rfc3339: "2025-03-14T09:13:40Z"))
        #expect(envelope.time.microsecondsSinceEpoch == base.microsecondsSinceEpoch + micros)
    }

    @Test(
        "dates that are not RFC 3339 are refused",
        arguments: [
            "2025-03-14 09:13:40Z", "2025-03-14T09:13:40", "2025-03-14T09:13:40.Z", "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z", "2025-03-14T24:00:00Z", "1741943620", "2025-03-14T09:13:40+0100",
        ])
    func datesRefused(text: String) throws {
        var message = sampleResult()
        message["time"] = text
        let error = try decodeError(message)
        #expect(error?.code == .invalidValue)
        #expect(error?.path == "time")
    }

    @Test("decode(accepting:) refuses a known type that does not belong to the queue")
    func unexpectedType() throws {
        let data = try json(sampleResult())
        let accepted = Topology.acceptedTypes(forCoordinatorQueue: Topology.resultsQueue)
        #expect(try Envelope.decode(data, accepting: accepted).type == .testResult)
        let error = #expect(throws: WireError.self) {
            try Envelope.decode(data, accepting: Topology.acceptedTypes(forCoordinatorQueue: Topology.statesQueue))
        }
        #expect(error?.code == .unexpectedType)
        #expect(error?.path == "type")
    }

    @Test("authorise(as:) compares the claimed source with the authenticated one")
    func authorisation() throws {
        let envelope = try Envelope.decode(try json(sampleResult()))
        try envelope.authorise(as: .agent(MachineName("lab-01")!))
        let error = #expect(throws: WireError.self) { try envelope.authorise(as: .agent(MachineName("lab-02")!)) }
        #expect(error?.code == .unauthorisedSource)
        #expect(error?.path == "source")
    }

    @Test("a final state's lastSeq must precede its own seq")
    func lastSeqBeforeOwnSeq() throws {
        var message = sampleResult()
        message["type"] = "execution.state"
        message["seq"] = 30
        message["payload"] =
            [
                "executionID": "0f8e2a4c-6b1d-4e7f-8a93-2c5d7e9f1b30", "machine": "lab-01", "state": "timeout",
                "attempt": 1, "firstSeq": 12, "lastSeq": 30,
            ] as [String: Any]
        let error = try decodeError(message)
        #expect(error?.code == .invalidValue)
        #expect(error?.path == "payload.lastSeq")
    }

    @Test("paths render array positions and unusual keys")
    func pathRendering() throws {
        var message = sampleResult()
        message["type"] = "agent.registration"
        message["payload"] =
            [
                "machine": "lab-01", "hostname": "h", "os": ["name": "debian", "version": "12"], "arch": "x86_64",
                "cpuCount": 1, "memoryBytes": 1, "agentVersion": "1.0.0", "maxConcurrentExecutions": 1,
                "transport": "amqp", "startedAt": "2025-03-14T09:00:00Z", "tags": ["gpu model": 7],
            ] as [String: Any]
        let error = try decodeError(message)
        #expect(error?.code == .wrongType)
        #expect(error?.path == "payload.tags[\"gpu model\"]")
    }

    @Test("error descriptions name the code and the path, and echo at most a short excerpt")
    func errorDescription() throws {
        var message = sampleResult()
        message["type"] = String(repeating: "x", count: 5000)
        let error = try #require(try decodeError(message))
        #expect(error.description.hasPrefix("unknownType at type: "))
        #expect(error.description.count < 200)
    }
}

@Suite("Envelope encoding")
struct EncodingTests {
    let machine = MachineName("lab-01")!
    let epoch = SequenceEpoch()

    func result(machine: MachineName) -> TestResult {
        TestResult(
            executionID: ExecutionID(),
            machine: machine,
            testID: TestID("t")!,
            name: "T",
            status: .partial,
            durationMs: Milliseconds(.seconds(2)),
            custom: ["nested": .object(["n": .null, "pi": .number(3.25), "big": .integer(Int64.max)])],
            origin: .tap(stage: "prove", file: nil, number: 3, description: "third")
        )
    }

    @Test("an agent event round-trips through the wire form")
    func roundTrip() throws {
        let envelope = Envelope(source: .agent(machine), epoch: epoch, seq: 5, payload: result(machine: machine))
        let data = try envelope.encoded()
        let decoded = try Envelope.decode(data)
        #expect(decoded == envelope)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["type"] as? String == "test.result")
        #expect(object["version"] as? String == "1.0")
        #expect(object["source"] as? String == "agent/lab-01")
        #expect(object["id"] as? String == envelope.id.description)
        #expect((object["id"] as? String)?.lowercased() == object["id"] as? String)
    }

    @Test("writers run the same checks as readers")
    func encodingValidates() {
        let missingSeq = Envelope(source: .agent(machine), epoch: epoch, payload: result(machine: machine))
        #expect(throws: WireError(code: .missingField, path: "seq", reason: "test.result must carry seq")) {
            try missingSeq.encoded()
        }
        let otherMachine = Envelope(
            source: .agent(machine), epoch: epoch, seq: 1, payload: result(machine: MachineName("lab-02")!)
        )
        let error = #expect(throws: WireError.self) { try otherMachine.encoded() }
        #expect(error?.code == .unauthorisedSource)
        #expect(error?.path == "payload.machine")
        let wrongSender = Envelope(source: .coordinator("cta-1"), payload: result(machine: machine))
        #expect(throws: WireError.self) { try wrongSender.encoded() }
    }

    @Test("a log chunk holds text or an attachment, not both and not neither")
    func logChunkContent() throws {
        let execution = ExecutionID()
        let neither = ExecutionLog(executionID: execution, machine: machine, stream: .stdout, offset: 0)
        let error = #expect(throws: WireError.self) {
            try Envelope(source: .agent(machine), epoch: epoch, seq: 1, payload: neither).encoded()
        }
        #expect(error?.path == "payload.text")
        let tooLong = ExecutionLog(
            executionID: execution, machine: machine, stream: .stdout, offset: 0,
            text: String(repeating: "a", count: ExecutionLog.maximumInlineBytes + 1)
        )
        let longError = #expect(throws: WireError.self) {
            try Envelope(source: .agent(machine), epoch: epoch, seq: 1, payload: tooLong).encoded()
        }
        #expect(longError?.code == .invalidValue)
        let fine = ExecutionLog(executionID: execution, machine: machine, stream: .stderr, offset: 9, text: "ok")
        #expect(throws: Never.self) {
            try Envelope(source: .agent(machine), epoch: epoch, seq: 1, payload: fine).encoded()
        }
    }
}
