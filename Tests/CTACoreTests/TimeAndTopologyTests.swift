import CTACore
import Foundation
import Testing

@Suite("Timestamp and Milliseconds")
struct TimeTests {
    @Test("timestamps are written in UTC with six fractional digits")
    func formatting() throws {
        #expect(Timestamp(microsecondsSinceEpoch: 0).rfc3339 == "1970-01-01T00:00:00.000000Z")
        #expect(Timestamp(microsecondsSinceEpoch: 1_741_944_413_589_793).rfc3339 == "2025-03-14T09:26:53.589793Z")
        #expect(Timestamp(microsecondsSinceEpoch: -1).rfc3339 == "1969-12-31T23:59:59.999999Z")
        #expect(Timestamp(microsecondsSinceEpoch: 951_782_400_000_000).rfc3339 == "2000-02-29T00:00:00.000000Z")
    }

    @Test(
        "parsing and formatting are inverse",
        arguments: [
            "1970-01-01T00:00:00.000000Z", "2000-02-29T23:59:59.999999Z", "2025-03-14T09:26:53.589793Z",
            "2100-12-31T12:00:00.000001Z", "1969-07-20T20:17:40.000000Z",
        ])
    func inverse(text: String) throws {
        let timestamp = try #require(Timestamp(rfc3339: text))
        #expect(timestamp.rfc3339 == text)
    }

    @Test("a Date converts both ways at microsecond precision")
    func dates() {
        let date = Date(timeIntervalSince1970: 1_741_944_413.25)
        let timestamp = Timestamp(date)
        #expect(timestamp.microsecondsSinceEpoch == 1_741_944_413_250_000)
        #expect(timestamp.date == date)
        #expect(timestamp.adding(Milliseconds(1500)).microsecondsSinceEpoch == 1_741_944_414_750_000)
    }

    @Test("milliseconds convert to and from Duration, and refuse negatives on the wire")
    func milliseconds() throws {
        #expect(Milliseconds(.seconds(90)).value == 90_000)
        #expect(Milliseconds(.milliseconds(-5)).value == 0)
        #expect(Milliseconds(1500).duration == .milliseconds(1500))
        let decoded = try JSONDecoder().decode([Milliseconds].self, from: Data("[0, 42]".utf8))
        #expect(decoded == [Milliseconds(0), Milliseconds(42)])
        #expect(throws: WireError.self) { try JSONDecoder().decode([Milliseconds].self, from: Data("[-1]".utf8)) }
    }
}

@Suite("Names and identifiers")
struct NameTests {
    @Test(
        "machine and group names follow the queue-name alphabet",
        arguments: [
            ("lab-01", true), ("win11.perf-3", true), ("A_b", true), ("", false), ("-lab", false), ("lab 01", false),
            ("lab/01", false), ("labé", false), (String(repeating: "a", count: 128), true),
            (String(repeating: "a", count: 129), false),
        ])
    func names(name: String, valid: Bool) {
        #expect((MachineName(name) != nil) == valid)
        #expect((GroupName(name) != nil) == valid)
    }

    @Test("sources parse and print", arguments: ["agent/lab-01", "coordinator/cta-1"])
    func sources(text: String) throws {
        let source = try #require(Source(text))
        #expect(source.description == text)
    }

    @Test("bad sources are refused", arguments: ["agent/", "agent", "gateway/gw-1", "coordinator/a b", "agent/lab/01"])
    func badSources(text: String) {
        #expect(Source(text) == nil)
    }

    @Test("every error code has a distinct wire name that maps back to it")
    func codes() {
        let names = WireError.Code.allCodes.map(\.name)
        #expect(Set(names).count == names.count)
        for code in WireError.Code.allCodes { #expect(WireError.Code(name: code.name) == code) }
        #expect(WireError.Code(name: "nope") == nil)
    }
}

@Suite("Topology")
struct TopologyTests {
    let machine = MachineName("lab-01")!
    let group = GroupName("linux-pool")!
    let execution = ExecutionID(UUID(uuidString: "6A7B8C9D-0E1F-4A2B-8C3D-4E5F6A7B8C9D")!)

    @Test("queue names and routing keys")
    func names() {
        #expect(Topology.machineQueue(machine) == "cta.machine.lab-01")
        #expect(Topology.groupQueue(group) == "cta.group.linux-pool")
        #expect(Topology.parallelQueue(execution: execution) == "cta.parallel.6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d")
        #expect(Topology.machineRoutingKey(machine) == "machine.lab-01")
        #expect(Topology.groupRoutingKey(group) == "group.linux-pool")
        #expect(Topology.parallelRoutingKey(execution: execution) == "parallel.6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d")
        #expect(Topology.routingKey(for: .testResult) == "test.result")
    }

    @Test("every agent event lands in exactly one coordinator queue; coordinator events in none")
    func routing() {
        for type in EventType.allCases {
            #expect((Topology.coordinatorQueue(for: type) != nil) == (type.sender == .agent), "\(type)")
        }
        let bound = Set(
            Topology.coordinatorBindings.filter { $0.exchange == Topology.eventsExchange }.map(\.routingKey))
        #expect(bound == Set(EventType.allCases.filter { $0.sender == .agent }.map(\.rawValue)))
        let agentQueueTypes = Topology.machineQueueTypes.union(Topology.groupQueueTypes).union(
            Topology.parallelQueueTypes)
        #expect(agentQueueTypes == Set(EventType.allCases.filter { $0.sender == .coordinator }))
    }

    @Test("work queues are quorum queues that dead-letter to the dead-letter exchange")
    func arguments() {
        let machineQueue = Topology.machineQueueDeclaration(machine)
        #expect(machineQueue.durable)
        #expect(machineQueue.arguments["x-queue-type"] == .string("quorum"))
        #expect(machineQueue.arguments["x-dead-letter-exchange"] == .string(Topology.deadLetterExchange))
        #expect(machineQueue.arguments["x-delivery-limit"] == .integer(5))
        #expect(Topology.parallelQueueDeclaration(execution: execution).arguments["x-expires"] != nil)
        let heartbeats = Topology.coordinatorQueues.first { $0.name == Topology.heartbeatsQueue }
        #expect(heartbeats?.arguments["x-message-ttl"] == .integer(60_000))
        #expect(heartbeats?.arguments["x-dead-letter-exchange"] == nil)
        #expect(Topology.machineBindings(machine).map(\.routingKey) == ["machine.lab-01", "broadcast"])
    }

    @Test("dead-letter headers carry the error and the origin")
    func deadLetterHeaders() {
        let error = WireError(
            code: .missingField, path: "payload.tests[0].stages[1].run", reason: "required field is missing")
        let headers = Topology.DeadLetterHeader.headers(
            for: error, exchange: Topology.eventsExchange, routingKey: "test.result",
            queue: Topology.resultsQueue, at: Timestamp(microsecondsSinceEpoch: 0), by: "coordinator/cta-1"
        )
        #expect(Set(headers.keys) == Set(Topology.DeadLetterHeader.all))
        #expect(headers[Topology.DeadLetterHeader.code] == "missingField")
        #expect(headers[Topology.DeadLetterHeader.path] == "payload.tests[0].stages[1].run")
        #expect(headers[Topology.DeadLetterHeader.deadLetteredAt] == "1970-01-01T00:00:00.000000Z")
    }

    @Test("docs/protocol.md names every exchange, queue, routing key, argument and header the code uses")
    func documentAgrees() throws {
        let text = try ProtocolDocument.load().text
        var names = [
            Topology.eventsExchange, Topology.dispatchExchange, Topology.deadLetterExchange, Topology.agentsQueue,
            Topology.heartbeatsQueue, Topology.statesQueue, Topology.resultsQueue, Topology.deadLetterQueue,
            Topology.broadcastRoutingKey, "cta.machine.<machine>", "cta.group.<group>", "cta.parallel.<execution-id>",
            "machine.<machine>", "group.<group>", "parallel.<execution-id>", "\(Topology.heartbeatTTL)",
            "\(Topology.parallelQueueExpiry)", "x-delivery-limit: \(Topology.deliveryLimit)",
        ]
        names += Topology.DeadLetterHeader.all
        names += EventType.allCases.map(\.rawValue)
        names += WireError.Code.allCodes.map(\.name)
        for queue in Topology.coordinatorQueues {
            for (key, value) in queue.arguments {
                names.append(key)
                if case .string(let string) = value { names.append(string) }
            }
        }
        for name in names {
            #expect(text.contains("`\(name)`") || text.contains(name), "docs/protocol.md does not mention \(name)")
        }
        for binding in Topology.coordinatorBindings {
            #expect(
                text.contains("| `\(binding.exchange)` | `\(binding.routingKey)` | `\(binding.queue)` |"),
                "binding \(binding)")
        }
    }
}
