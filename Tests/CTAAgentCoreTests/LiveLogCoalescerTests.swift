import CTACore
import Testing

@testable import CTAAgentCore

@Suite("Live log coalescing: size, time, UTF-8 boundaries, limits, final pieces")
struct LiveLogCoalescerTests {
    let t0 = ContinuousClock.now

    func coalescer(chunk: Int = 16, interval: Duration = .seconds(1), limit: Int = 1 << 20) -> LiveLogCoalescer {
        LiveLogCoalescer(limits: .init(chunkBytes: chunk, interval: interval, streamLimitBytes: limit))
    }

    /// Offsets of consecutive pieces of a stream follow from their texts (valid input only).
    func expectContiguous(_ pieces: [LiveLogCoalescer.Piece]) {
        var next: UInt64 = 0
        for piece in pieces {
            #expect(piece.offset == next)
            next = piece.offset + UInt64(piece.text.utf8.count)
        }
    }

    @Test("small output waits for the interval, then goes out as one piece")
    func coalescesByTime() {
        var c = coalescer(chunk: 100)
        #expect(c.append(Array("abc".utf8), stream: .combined, at: t0).isEmpty)
        #expect(c.append(Array("def".utf8), stream: .combined, at: t0 + .milliseconds(300)).isEmpty)
        #expect(c.nextDeadline == t0 + .seconds(1))
        #expect(c.due(at: t0 + .milliseconds(999)).isEmpty)
        let pieces = c.due(at: t0 + .seconds(1))
        #expect(pieces == [.init(stream: .combined, offset: 0, text: "abcdef", final: false)])
        #expect(c.nextDeadline == nil)
        let final = c.finish(streams: [.combined])
        #expect(final == [.init(stream: .combined, offset: 6, text: "", final: true)])
    }

    @Test("full pieces go out at once; the rest at finish, marked final")
    func coalescesBySize() {
        var c = coalescer(chunk: 16)
        let text = String(repeating: "0123456789", count: 5)
        let pieces = c.append(Array(text.utf8), stream: .combined, at: t0)
        #expect(pieces.map(\.text.utf8.count) == [16, 16, 16])
        let rest = c.finish(streams: [.combined])
        #expect(rest.count == 1 && rest[0].final && rest[0].text == "89")
        expectContiguous(pieces + rest)
        #expect((pieces + rest).map(\.text).joined() == text)
    }

    @Test("a multi-byte character is never split, whatever the chunk boundaries")
    func utf8Boundaries() {
        var c = coalescer(chunk: 16)
        let text = String(repeating: "é€😀a", count: 20)
        var pieces: [LiveLogCoalescer.Piece] = []
        for byte in text.utf8 { pieces += c.append([byte], stream: .combined, at: t0) }
        pieces += c.due(at: t0 + .seconds(2))
        pieces += c.finish(streams: [])
        #expect(pieces.allSatisfy { $0.text.utf8.count <= 16 })
        #expect(pieces.map(\.text).joined() == text)
        #expect(!pieces.contains { $0.text.contains("\u{FFFD}") })
        expectContiguous(pieces)
    }

    @Test("a trailing partial character waits for its rest when the interval passes")
    func partialCharacterHeldBack() {
        var c = coalescer(chunk: 64)
        let euro = Array("€".utf8)
        _ = c.append(Array("ab".utf8) + euro.prefix(2), stream: .combined, at: t0)
        let first = c.due(at: t0 + .seconds(1))
        #expect(first.map(\.text) == ["ab"])
        _ = c.append(Array(euro.suffix(1)), stream: .combined, at: t0 + .seconds(1))
        let second = c.due(at: t0 + .seconds(2))
        #expect(second.map(\.text) == ["€"])
        #expect(second.first?.offset == 2)
    }

    @Test("invalid bytes become U+FFFD; offsets still count raw bytes; text stays within the limit")
    func invalidBytes() {
        var c = coalescer(chunk: 16)
        let bytes: [UInt8] = Array(repeating: 0xFF, count: 40) + Array("ok".utf8)
        var pieces = c.append(bytes, stream: .combined, at: t0)
        pieces += c.finish(streams: [])
        #expect(pieces.allSatisfy { $0.text.utf8.count <= 16 })
        let text = pieces.map(\.text).joined()
        #expect(text == String(repeating: "\u{FFFD}", count: 40) + "ok")
        #expect(pieces.last?.offset ?? 0 < 42)
        // Offsets increase by raw bytes: the sum of the raw byte counts is the whole input.
        for (piece, next) in zip(pieces, pieces.dropFirst()) {
            let raw = piece.text.unicodeScalars.reduce(0) { $0 + ($1 == "\u{FFFD}" ? 1 : String($1).utf8.count) }
            #expect(next.offset == piece.offset + UInt64(raw))
        }
    }

    @Test("past the stream limit: one note, later output only counted, final at the stream's end")
    func streamLimit() {
        var c = coalescer(chunk: 100, limit: 10)
        var pieces = c.append(Array("0123456".utf8), stream: .combined, at: t0)
        #expect(pieces.isEmpty)
        pieces += c.append(Array("789abcdef".utf8), stream: .combined, at: t0)
        pieces += c.append(Array("more".utf8), stream: .combined, at: t0)
        pieces += c.finish(streams: [.combined])
        #expect(pieces.count == 3)
        #expect(pieces[0] == .init(stream: .combined, offset: 0, text: "0123456789", final: false))
        #expect(pieces[1].offset == 10 && pieces[1].text == LiveLogCoalescer.limitNote(limitBytes: 10))
        #expect(pieces[2] == .init(stream: .combined, offset: 20, text: "", final: true))
    }

    @Test("streams are independent; silent streams named at finish get an empty final piece")
    func streams() {
        var c = coalescer(chunk: 100)
        _ = c.append(Array("out".utf8), stream: .stdout, at: t0)
        _ = c.append(Array("error!".utf8), stream: .stderr, at: t0)
        let pieces = c.finish(streams: [.stdout, .stderr, .combined])
        #expect(
            Set(pieces) == [
                .init(stream: .stdout, offset: 0, text: "out", final: true),
                .init(stream: .stderr, offset: 0, text: "error!", final: true),
                .init(stream: .combined, offset: 0, text: "", final: true),
            ])
        #expect(c.finish(streams: [.stdout]).isEmpty)
        #expect(c.append(Array("late".utf8), stream: .stdout, at: t0).isEmpty)
    }
}
