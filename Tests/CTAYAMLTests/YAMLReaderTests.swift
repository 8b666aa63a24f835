import CTAYAML
import Testing

private let file = "defs.yaml"

/// The error reading `text` as one document gives, or nil when it reads.
private func documentFailure(_ text: String) -> YAMLError? {
    do throws(YAMLError) {
        _ = try YAMLReader.document(text, file: file)
        return nil
    } catch {
        return error
    }
}

@Suite("YAML reader: nodes, lines and errors")
struct YAMLReaderTests {
    @Test("nodes carry their lines, scalars their text, empty values are null")
    func nodes() throws {
        let text = """
            # comment
            name: demo
            list:
              - a
              - "~"
            nested: {x: 1}
            empty:
            tilde: ~
            """
        let root = try #require(try YAMLReader.document(text, file: file))
        let entries = try #require(root.mapping)
        #expect(entries.map(\.name) == ["name", "list", "nested", "empty", "tilde"])
        #expect(entries.map(\.key.line) == [2, 3, 6, 7, 8])
        #expect(entries[0].value.scalar == "demo" && !entries[0].value.isNull)
        let items = try #require(entries[1].value.sequence)
        #expect(items.map(\.line) == [4, 5])
        #expect(items[1].scalar == "~" && !items[1].isNull)
        #expect(entries[2].value.shape == "a mapping" && entries[1].value.shape == "a list")
        #expect(entries[3].value.isNull && entries[4].value.isNull)
        #expect(entries[0].value.shape == #""demo""#)
    }

    @Test("an empty text has no document; a second document is an error for a single-document reader")
    func documentCount() throws {
        #expect(try YAMLReader.document("# nothing\n", file: file) == nil)
        let second = try #require(documentFailure("a: 1\n---\nb: 2\n"))
        #expect(second.line == 2)
        #expect(second.message.hasPrefix("invalid YAML: "))
    }

    @Test("syntax errors name the file and line")
    func syntax() throws {
        let error = try #require(documentFailure("a:\n  b: 1\n c: 2\n"))
        #expect(error.line == 3 && error.path.isEmpty)
        #expect(error.description.hasPrefix("defs.yaml:3: invalid YAML: "))
    }

    @Test("a repeated key names its dotted path, the line of the repeat and the first line")
    func duplicateInDocument() throws {
        let error = try #require(documentFailure("a:\n  b: 1\n  c: 2\n  b: 3\n"))
        #expect(error.path.description == "a.b" && error.line == 4)
        #expect(error.description == "defs.yaml:4: a.b: duplicate key; first set at line 2")
    }

    @Test("several documents: every repeat is listed with its document and list position; the first value stays")
    func duplicatesInDocuments() throws {
        let text = """
            kind: test
            stages:
              - name: one
                run: a
                run: b
            ---
            kind: suite
            id: x
            id: y
            id: z
            """
        let read = try YAMLReader.documents(text, file: file)
        #expect(read.documents.count == 2)
        #expect(
            read.duplicates == [
                YAMLDuplicateKey(
                    document: 0, path: YAMLPath.root.appending("stages").appending(index: 0).appending("run"), line: 5,
                    firstLine: 4),
                YAMLDuplicateKey(document: 1, path: YAMLPath.root.appending("id"), line: 9, firstLine: 8),
                YAMLDuplicateKey(document: 1, path: YAMLPath.root.appending("id"), line: 10, firstLine: 8),
            ])
        #expect(read.duplicates[0].path.description == "stages[0].run")
        let stage = try #require(read.documents[0].mapping?[1].value.sequence?[0].mapping)
        #expect(stage.map(\.name) == ["name", "run"] && stage[1].value.scalar == "a")
        let suite = try #require(read.documents[1].mapping)
        #expect(suite.map(\.name) == ["kind", "id"] && suite[1].value.scalar == "x")
    }

    @Test("keys that are not plain words are quoted in paths")
    func pathRendering() {
        let path = YAMLPath.root.appending("tags").appending("gpu.model").appending("list").appending(index: 2)
        #expect(path.description == #"tags["gpu.model"].list[2]"#)
        #expect(path.keys == ["tags", "gpu.model", "list"])
    }
}

@Suite("YAML values: durations and key suggestions")
struct YAMLValueTests {
    @Test(
        "durations with units",
        arguments: [
            ("250ms", Duration.milliseconds(250)), ("90s", .seconds(90)), ("10m", .seconds(600)),
            ("2h", .seconds(7200)), ("1h30m", .seconds(5400)), ("1m30s500ms", .milliseconds(90_500)), ("0s", .zero),
        ])
    func durations(text: String, expected: Duration) {
        #expect(DurationText.parse(text) == expected)
        #expect(DurationText.parse(DurationText.format(expected)) == expected)
    }

    @Test(
        "refused durations",
        arguments: ["", "90", "1.5s", "10 m", "30m1h", "1s1s", "5d", "-1s", "s", "99999999999999999h"])
    func refusedDurations(text: String) {
        #expect(DurationText.parse(text) == nil, "\(text)")
    }

    @Test("edit distance")
    func editDistance() {
        #expect(KeySuggestion.editDistance("maxconcurent", "maxconcurrent") == 1)
        #expect(KeySuggestion.editDistance("", "abc") == 3)
        #expect(KeySuggestion.editDistance("abc", "") == 3)
        #expect(KeySuggestion.editDistance("kitten", "sitting") == 3)
    }

    @Test("the closest key is suggested only when it is close")
    func suggestion() {
        #expect(KeySuggestion.closest(to: "runmode", among: ["suite", "runMode", "env"]) == "runMode")
        #expect(KeySuggestion.closest(to: "timeoutMs", among: ["name", "timeout"]) == "timeout")
        #expect(KeySuggestion.closest(to: "colour", among: ["name", "timeout"]) == nil)
    }
}
