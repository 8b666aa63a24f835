import CTAClient
import CTACore
import CTADefinitions
import CTAYAML
import Foundation
import Testing

@Suite("TOML reader")
struct TOMLReaderTests {
    @Test("values, tables and arrays of tables become nodes with their lines")
    func tree() throws {
        let text = """
            # a comment
            title = "TOML \\"basic\\" \\u00e9"
            literal = 'C:\\path'
            count = 1_000
            hex = 0xff
            ratio = -3.5e2
            enabled = true
            when = 1979-05-27T07:32:00Z
            day = 1979-05-27 07:32:00
            list = [
              "a", # first
              'b',
            ]
            inline = { x = 1, y.z = "deep" }
            block = \"\"\"
            line one
            line two\\
              joined\"\"\"

            [server]
            host = "h"

            [server.tls]
            enabled = false

            [[stage]]
            name = "one"

            [[stage]]
            name = "two"
            env.KEY = "v"
            """
        let root = try TOMLReader.read(text, file: "t.toml")
        let entries = try #require(root.mapping)
        func value(_ key: String) -> YAMLNode? { entries.first { $0.name == key }?.value }
        #expect(value("title")?.scalar == "TOML \"basic\" é")
        #expect(value("title")?.line == 2)
        #expect(value("literal")?.scalar == "C:\\path")
        #expect(value("count")?.scalar == "1000")
        #expect(value("hex")?.scalar == "0xff")
        #expect(value("ratio")?.scalar == "-3.5e2")
        #expect(value("enabled")?.scalar == "true")
        #expect(value("when")?.scalar == "1979-05-27T07:32:00Z")
        #expect(value("day")?.scalar == "1979-05-27 07:32:00")
        #expect(value("list")?.sequence?.map(\.scalar) == ["a", "b"])
        #expect(value("list")?.sequence?.last?.line == 12)
        let inline = try #require(value("inline")?.mapping)
        #expect(inline.map(\.name) == ["x", "y"])
        #expect(inline.last?.value.mapping?.first?.value.scalar == "deep")
        #expect(value("block")?.scalar == "line one\nline twojoined")
        let server = try #require(value("server")?.mapping)
        #expect(server.first?.value.scalar == "h")
        #expect(server.last?.value.mapping?.first?.value.scalar == "false")
        let stages = try #require(value("stage")?.sequence)
        #expect(stages.count == 2)
        #expect(stages[0].line == 26)
        #expect(stages[1].line == 29)
        #expect(stages[1].mapping?.last?.value.mapping?.first?.value.scalar == "v")
        #expect(stages[1].mapping?.last?.key.line == 31)
    }

    @Test("mistakes name the file, the line and the key")
    func errors() {
        func failure(_ text: String) -> String {
            do {
                _ = try TOMLReader.read(text, file: "d.toml")
                return "no error"
            } catch {
                return error.description
            }
        }
        #expect(failure("a = 1\nb = 2\na = 3\n") == "d.toml:3: a: duplicate key; first set at line 1")
        #expect(failure("[t]\nx = 1\n[t]\ny = 2\n") == "d.toml:3: t: table t is already defined at line 1")
        #expect(failure("a = 10m\n") == "d.toml:1: invalid value \"10m\"; text values are quoted (\"10m\")")
        #expect(failure("a = \"open\nb = 1\n") == "d.toml:1: the string opened at line 1 is not closed on its line")
        #expect(failure("x = 1\na = [1, 2\nb = 3\n").hasPrefix("d.toml:3: expected , or ] in the array opened at line 2"))
        #expect(failure("a = 1 b = 2\n") == "d.toml:1: expected the end of the line, got \"b\"")
        #expect(failure("t = { a = 1 }\n[t.b]\n") == "d.toml:2: t: t is an inline table and cannot be extended")
        #expect(failure("a = \"\\q\"\n") == "d.toml:1: unknown escape \\q")
        #expect(failure("= 1\n").hasPrefix("d.toml:1: expected a key"))
        #expect(failure("a = 1\n[[a]]\n") == "d.toml:2: a: a is already defined at line 1 and is not an array of tables")
    }

    @Test("a TOML definition file is checked like YAML, with TOML lines")
    func definitions() throws {
        let directory = NSTemporaryDirectory() + "cta-toml-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let good = directory + "/defs.toml"
        try """
            [[test]]
            id = "hello"
            timeout = "1m"

            [[test.stages]]
            name = "say"
            run = "echo hello"
            mandatory = true

            [[suite]]
            id = "greetings"
            tests = ["hello"]

            [[configuration]]
            id = "anywhere"
            tags = { os = "linux" }

            [[scenario]]
            id = "greet"
            suite = "greetings"
            configuration = "anywhere"
            runMode = "mono"
            timeouts = { pending = "10m", running = "15m" }
            """.write(toFile: good, atomically: true, encoding: .utf8)
        let bundle = try DefinitionBundle.load(paths: [good])
        #expect(bundle.counts == ["test": 1, "suite": 1, "configuration": 1, "scenario": 1])
        // The stream sent is YAML that reads back into the same definitions.
        let set = try DefinitionLoader.load(text: bundle.text, path: "stream.yaml")
        #expect(set.scenarios.count == 1 && set.tests.count == 1)
        #expect(set.tests.values.first?.stages.first?.run == "echo hello")

        let bad = directory + "/bad.toml"
        try """
            [[scenario]]
            id = "broken"
            suite = "greetings"
            configuration = "anywhere"
            runMode = "paralel"
            timeouts = { pending = "10" }
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        do {
            _ = try DefinitionBundle.load(paths: [good, bad])
            Issue.record("the bad file was accepted")
        } catch {
            let lines = error.errors.map(\.description)
            #expect(lines.contains { $0.hasPrefix("\(bad):5: scenario broken: runMode: ") && $0.contains("parallel") })
            #expect(lines.contains { $0.hasPrefix("\(bad):6: scenario broken: timeouts.pending: ") })
        }

        let unknownTable = directory + "/unknown.toml"
        try "[[tset]]\nid = \"x\"\n".write(toFile: unknownTable, atomically: true, encoding: .utf8)
        #expect(throws: DefinitionErrors.self) { try DefinitionBundle.load(paths: [unknownTable]) }
    }
}
