import CTAClient
import CTACore
import Foundation
import Testing

@Suite("Output")
struct OutputTests {
    @Test("colour only on a terminal, without NO_COLOR, and not for TERM=dumb")
    func colourDetection() {
        #expect(Style.detect(environment: [:], isTerminal: true).colour)
        #expect(!Style.detect(environment: [:], isTerminal: false).colour)
        #expect(!Style.detect(environment: ["NO_COLOR": "1"], isTerminal: true).colour)
        // An empty NO_COLOR does not count (no-color.org).
        #expect(Style.detect(environment: ["NO_COLOR": ""], isTerminal: true).colour)
        #expect(!Style.detect(environment: ["TERM": "dumb"], isTerminal: true).colour)
        #expect(Style(colour: true).red("x") == "\u{1B}[31mx\u{1B}[0m")
        #expect(Style.plain.red("x") == "x")
    }

    @Test("tables pad columns to the widest cell, colour codes not counted")
    func tables() {
        let table = Table(headers: ["NAME", "STATE"], rows: [["demo-1", "online"], ["a", "offline"]])
        #expect(table.render(style: .plain) == "NAME    STATE\ndemo-1  online\na       offline\n")
        let coloured = Style(colour: true)
        let rendered = Table(headers: ["A", "B"], rows: [[coloured.green("ok"), "x"]]).render(style: coloured)
        #expect(rendered == "\u{1B}[1mA   B\u{1B}[0m\n\u{1B}[32mok\u{1B}[0m  x\n")
    }

    @Test("machine and execution tables from the API's JSON")
    func views() {
        let machines: [JSONValue] = [
            .object([
                "name": .string("demo-1"), "online": .bool(true), "groups": .array([.string("pool")]),
                "tags": .object(["os": .string("linux"), "arch": .string("x86_64")]),
                "lastSeenAt": .string("2026-11-22T10:00:00.123Z"),
            ]),
            .object(["name": .string("demo-2"), "online": .bool(true), "draining": .bool(true)]),
        ]
        #expect(
            Views.machines(machines, style: .plain).render(style: .plain) == """
                NAME    STATE     GROUPS  TAGS                  LAST SEEN
                demo-1  online    pool    arch=x86_64,os=linux  2026-11-22 10:00:00
                demo-2  draining  -       -                     -

                """)
        let executions: [JSONValue] = [
            .object([
                "id": .string("01J1"), "scenario": .string("smoke"), "phase": .string("finished"),
                "counts": .object(["ok": .integer(7), "failed": .integer(1)]), "requestedBy": .string("ci"),
                "createdAt": .string("2026-11-22T10:00:00.000Z"),
            ])
        ]
        #expect(
            Views.executions(executions, style: .plain).render(style: .plain) == """
                ID    SCENARIO  PHASE     OK  NOT OK  REQUESTED BY  CREATED
                01J1  smoke     finished  7   1       ci            2026-11-22 10:00:00

                """)
    }

    @Test("JSON for scripts has sorted keys and is valid JSON")
    func json() throws {
        let value: JSONValue = .object(["b": .integer(1), "a": .array([.string("x/y"), .null])])
        let text = JSONOutput.pretty(value)
        #expect(text == "{\n  \"a\" : [\n    \"x/y\",\n    null\n  ],\n  \"b\" : 1\n}")
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) == value)
        #expect(JSONOutput.compact(value) == #"{"a":["x\/y",null],"b":1}"#)
    }

    @Test("durations for people")
    func durations() {
        #expect(HumanFormat.duration(milliseconds: 850) == "850 ms")
        #expect(HumanFormat.duration(milliseconds: 12_340) == "12.3 s")
        #expect(HumanFormat.duration(milliseconds: 245_000) == "4 m 05 s")
        #expect(HumanFormat.duration(milliseconds: 7_380_000) == "2 h 03 m")
        #expect(ProgressRenderer.clock(.seconds(75)) == "1:15")
        #expect(ProgressRenderer.clock(.seconds(3725)) == "1:02:05")
    }
}
