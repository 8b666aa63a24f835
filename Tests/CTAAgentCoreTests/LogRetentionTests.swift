import Testing

@testable import CTAAgentCore

/// Collects spilled bytes in memory.
struct CollectingSink: LogSpillSink {
    var bytes: [UInt8] = []
    var calls = 0
    mutating func spill(_ bytes: UnsafeRawBufferPointer) {
        self.bytes.append(contentsOf: bytes)
        calls += 1
    }
}

/// Feeds `input` in chunks of the given sizes (cycled) and finishes.
func retain(
    _ input: [UInt8], head: Int, tail: Int, chunks: [Int] = [Int.max]
) -> (LogRetention, CollectingSink) {
    var retention = LogRetention(limits: .init(headBytes: head, tailBytes: tail))
    var sink = CollectingSink()
    var offset = 0
    var index = 0
    while offset < input.count {
        let size = max(1, min(chunks[index % chunks.count], input.count - offset))
        retention.append(Array(input[offset..<(offset + size)]), spillingTo: &sink)
        offset += size
        index += 1
    }
    retention.finish(spillingTo: &sink)
    return (retention, sink)
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("Log retention")
struct LogRetentionTests {
    @Test("output within the limits is kept whole and nothing is spilled")
    func withinLimits() {
        let input = bytes("line one\nline two\n")
        let (retention, sink) = retain(input, head: 10, tail: 10, chunks: [3])
        #expect(retention.spilledBytes == 0)
        #expect(sink.bytes.isEmpty)
        #expect(retention.head + retention.tail == input)
        #expect(retention.rendered(attachmentName: "x.log") == input)
    }

    @Test("exactly head + tail bytes: nothing spilled; one more byte: exactly one spilled")
    func exactlyAtLimit() {
        let input = bytes("abcdefghij")  // no newlines: byte-exact boundaries
        let (atLimit, atSink) = retain(input, head: 4, tail: 6, chunks: [1])
        #expect(atLimit.spilledBytes == 0 && atSink.bytes.isEmpty)
        #expect(atLimit.head == bytes("abcd") && atLimit.tail == bytes("efghij"))

        let (over, overSink) = retain(input + bytes("k"), head: 4, tail: 6, chunks: [1])
        #expect(over.spilledBytes == 1)
        #expect(over.head == bytes("abcd"))
        #expect(overSink.bytes == bytes("e"))
        #expect(over.tail == bytes("fghijk"))
        #expect(over.totalBytes == 11)
    }

    @Test("head exactly full when the output ends is not cut")
    func headExactlyFull() {
        let (retention, sink) = retain(bytes("abc€"), head: 6, tail: 0)
        #expect(retention.head == bytes("abc€"))
        #expect(sink.bytes.isEmpty && retention.spilledBytes == 0)
    }

    @Test("the head ends on a line boundary in its second half")
    func headLineBoundary() {
        let input = bytes("0123\n5678\nabcdefghijklmnopqrstuvwxyz")
        let (retention, sink) = retain(input, head: 12, tail: 4, chunks: [5])
        #expect(retention.head == bytes("0123\n5678\n"))
        #expect(retention.tail == bytes("wxyz"))
        #expect(sink.bytes == bytes("abcdefghijklmnopqrstuv"))
    }

    @Test("a multi-byte character split across chunks at the head limit moves out of the head")
    func headUTF8Boundary() {
        // "abcd" then "é" (C3 A9): the limit of 5 falls inside "é", which arrives one byte per chunk.
        let input = bytes("abcdé") + Array(repeating: UInt8(ascii: "x"), count: 20)
        let (retention, sink) = retain(input, head: 5, tail: 4, chunks: [1])
        #expect(retention.head == bytes("abcd"))
        #expect(String(validating: retention.head, as: UTF8.self) != nil)
        #expect(sink.bytes.prefix(2) == [0xC3, 0xA9])
        #expect(retention.head.count + sink.bytes.count + retention.tail.count == input.count)
    }

    @Test("a four-byte character is never split at either end")
    func fourByteCharacters() {
        let input = bytes(String(repeating: "😀", count: 40))  // 160 bytes, no newlines
        for head in 0...9 {
            for tail in 0...9 {
                let (retention, sink) = retain(input, head: head, tail: tail, chunks: [3, 1, 7])
                #expect(retention.head.count % 4 == 0, "head \(head) tail \(tail)")
                #expect(retention.tail.count % 4 == 0, "head \(head) tail \(tail)")
                #expect(retention.head + sink.bytes + retention.tail == input)
            }
        }
    }

    @Test("after a spill the tail starts on a line boundary in its first half")
    func tailLineBoundary() {
        let input = bytes("HEAD\n") + bytes(String(repeating: "middle\n", count: 10)) + bytes("ab\nlast line\n")
        let (retention, sink) = retain(input, head: 5, tail: 16, chunks: [4])
        #expect(retention.head == bytes("HEAD\n"))
        // The last 16 bytes are "le\nab\nlast line\n"; the first newline in their first half starts the tail.
        #expect(retention.tail == bytes("ab\nlast line\n"))
        #expect(retention.head + sink.bytes + retention.tail == input)
        #expect(retention.spilledBytes == UInt64(sink.bytes.count))
    }

    @Test("the rendered log has head, marker line and tail")
    func rendering() {
        let input = bytes("first\n") + Array(repeating: UInt8(ascii: "m"), count: 100) + bytes("\nend\n")
        let (retention, sink) = retain(input, head: 6, tail: 4)
        let text = String(decoding: retention.rendered(attachmentName: "build.omitted.log"), as: UTF8.self)
        #expect(text == "first\n… \(sink.bytes.count) bytes omitted, see attachment build.omitted.log …\nend\n")
        #expect(sink.bytes.count == 101)
    }

    @Test("rendering after finish shows the aligned tail once, with the marker counting exactly the spill")
    func renderingAfterFinish() {
        let input = bytes("h\n") + bytes(String(repeating: "x\n", count: 50)) + bytes("ab\ncd\nef\n")
        let (retention, sink) = retain(input, head: 2, tail: 9, chunks: [7])
        #expect(retention.tail == bytes("cd\nef\n"))
        let text = String(decoding: retention.rendered(attachmentName: "a"), as: UTF8.self)
        #expect(text == "h\n… \(sink.bytes.count) bytes omitted, see attachment a …\ncd\nef\n")
        #expect(2 + sink.bytes.count + 6 == input.count)
    }

    @Test("zero limits spill everything")
    func zeroLimits() {
        let input = bytes("anything\n")
        let (retention, sink) = retain(input, head: 0, tail: 0, chunks: [2])
        #expect(retention.head.isEmpty && retention.tail.isEmpty)
        #expect(sink.bytes == input)
        #expect(retention.spilledBytes == UInt64(input.count))
    }

    @Test("head, spill and tail add up to the input for any chunking", arguments: [1, 2, 3, 5, 8, 13, 64, 1000])
    func invariant(chunk: Int) {
        var generator = SplitMix(seed: UInt64(chunk))
        let alphabet = ["a", "b", "\n", "é", "€", "😀", " "]
        for _ in 0..<40 {
            let length = Int(generator.next() % 300)
            let text = (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }.joined()
            let input = bytes(text)
            let head = Int(generator.next() % 40)
            let tail = Int(generator.next() % 40)
            let (retention, sink) = retain(input, head: head, tail: tail, chunks: [chunk, chunk * 2 + 1])
            #expect(retention.head + sink.bytes + retention.tail == input)
            #expect(retention.totalBytes == UInt64(input.count))
            #expect(retention.spilledBytes == UInt64(sink.bytes.count))
            #expect(retention.head.count <= head && retention.tail.count <= tail)
            if sink.bytes.isEmpty {
                #expect(retention.head + retention.tail == input)
            } else {
                // Cut pieces never split a character.
                #expect(String(validating: retention.head, as: UTF8.self) != nil)
                #expect(String(validating: retention.tail, as: UTF8.self) != nil)
            }
            if input.count <= head + tail { #expect(sink.bytes.isEmpty) }
        }
    }

    @Test("the snapshot rendering before finish already shows the marker")
    func snapshot() {
        var retention = LogRetention(limits: .init(headBytes: 3, tailBytes: 3))
        var sink = CollectingSink()
        retention.append(bytes("abcdefghij"), spillingTo: &sink)
        let text = String(decoding: retention.rendered(attachmentName: "s"), as: UTF8.self)
        #expect(text == "abc\n… 4 bytes omitted, see attachment s …\nhij")
        #expect(!retention.isFinished)
    }
}

/// A small deterministic generator, so failures reproduce.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
