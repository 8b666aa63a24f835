public import CTACore

// Coalescing of a running stage's output into `execution.log`-sized pieces of valid UTF-8 text.

/// Turns the raw output chunks of one stage into few, bounded pieces of text for live streaming.
///
/// Rules, per stream (`stdout`, `stderr`, `combined` are independent):
/// - A piece is emitted when ``Limits/chunkBytes`` bytes are waiting, or ``Limits/interval`` after the first byte
///   that is still waiting (see ``due(at:)``), or when the stage ends (``finish(streams:)``).
/// - Text is valid UTF-8: a piece never ends inside a multi-byte character while more bytes may follow; invalid
///   bytes become U+FFFD. A piece's text never exceeds ``Limits/chunkBytes`` UTF-8 bytes.
/// - `offset` is the position of a piece's first byte in the stream's raw output (which is the stage's log), so the
///   offsets of consecutive pieces differ by the number of raw bytes the first one covers; that equals its text's
///   UTF-8 length unless invalid bytes were replaced.
/// - At most ``Limits/streamLimitBytes`` bytes of a stream are streamed; then one note piece says so (at the offset
///   where streaming stopped) and later output is only counted. The stream's final piece then has the offset of the
///   stream's end, leaving a gap that shows how much was not streamed.
/// - ``finish(streams:)`` emits each stream's last piece with `final` set, an empty one if nothing is waiting.
///
/// The value does no I/O and reads no clock: the caller passes the time.
public struct LiveLogCoalescer: Sendable {
    /// Bounds on pieces.
    public struct Limits: Hashable, Sendable {
        /// The most UTF-8 bytes of text per piece (the protocol's inline limit is 16 KiB). At least 16.
        public var chunkBytes: Int
        /// How long the first waiting byte may wait before its piece is emitted.
        public var interval: Duration
        /// The most raw bytes streamed per stream; the rest is only in the log.
        public var streamLimitBytes: Int

        /// Creates limits.
        public init(chunkBytes: Int, interval: Duration, streamLimitBytes: Int) {
            self.chunkBytes = max(16, chunkBytes)
            self.interval = interval
            self.streamLimitBytes = max(0, streamLimitBytes)
        }
    }

    /// One piece of text ready to send.
    public struct Piece: Hashable, Sendable {
        /// The stream it belongs to.
        public var stream: LogStream
        /// The raw byte offset of its first byte in the stream.
        public var offset: UInt64
        /// Valid UTF-8 text of at most ``Limits/chunkBytes`` bytes; may be empty for a final piece.
        public var text: String
        /// Whether this is the stream's last piece.
        public var final: Bool

        /// Creates a piece.
        public init(stream: LogStream, offset: UInt64, text: String, final: Bool) {
            self.stream = stream
            self.offset = offset
            self.text = text
            self.final = final
        }
    }

    private struct StreamState: Sendable {
        /// The raw offset of the first waiting byte.
        var offset: UInt64 = 0
        /// Bytes accepted for streaming, not yet emitted.
        var waiting: [UInt8] = []
        /// When the oldest waiting byte arrived.
        var since: ContinuousClock.Instant?
        /// Raw bytes accepted for streaming so far.
        var accepted = 0
        /// Raw bytes seen in all.
        var total: UInt64 = 0
        /// Whether the streaming limit was reached.
        var limited = false
        /// Whether the final piece was emitted.
        var finished = false
    }

    /// The limits in force.
    public let limits: Limits
    private var streams: [LogStream: StreamState] = [:]
    private var order: [LogStream] = []

    /// Creates an empty coalescer.
    public init(limits: Limits) {
        self.limits = limits
    }

    /// The note emitted once a stream reaches its streaming limit.
    public static func limitNote(limitBytes: Int) -> String {
        "[cta] live output stops after \(limitBytes) bytes; the complete log is attached to the result\n"
    }

    /// When ``due(at:)`` next has something to emit, if anything is waiting.
    public var nextDeadline: ContinuousClock.Instant? {
        streams.values.compactMap { $0.since.map { $0 + limits.interval } }.min()
    }

    /// Takes a chunk of output; returns the pieces that are ready (full ones, or the rest plus the note when the
    /// streaming limit is reached).
    public mutating func append(_ bytes: some Collection<UInt8>, stream: LogStream, at now: ContinuousClock.Instant)
        -> [Piece]
    {
        guard !bytes.isEmpty else { return [] }
        if streams[stream] == nil {
            order.append(stream)
            streams[stream] = StreamState()
        }
        var state = streams[stream]!
        defer { streams[stream] = state }
        guard !state.finished else { return [] }
        state.total += UInt64(bytes.count)
        guard !state.limited else { return [] }
        let accept = min(bytes.count, limits.streamLimitBytes - state.accepted)
        if accept > 0 {
            if state.waiting.isEmpty { state.since = now }
            state.waiting.append(contentsOf: bytes.prefix(accept))
            state.accepted += accept
        }
        var pieces: [Piece] = []
        while state.waiting.count >= limits.chunkBytes {
            guard let piece = take(from: &state, stream: stream, force: false) else { break }
            pieces.append(piece)
        }
        if accept < bytes.count {
            pieces += drain(&state, stream: stream)
            state.limited = true
            pieces.append(
                Piece(
                    stream: stream, offset: state.offset, text: Self.limitNote(limitBytes: limits.streamLimitBytes),
                    final: false))
        }
        if state.waiting.isEmpty { state.since = nil }
        return pieces
    }

    /// Emits what has waited for ``Limits/interval`` or longer. A trailing incomplete character is held back once
    /// (it is likely completed by the next chunk) and emitted with a replacement character if it is still alone
    /// the next time.
    public mutating func due(at now: ContinuousClock.Instant) -> [Piece] {
        var pieces: [Piece] = []
        for stream in order {
            guard var state = streams[stream], let since = state.since, now >= since + limits.interval else { continue }
            let onlyPartialCharacter = completePrefixLength(state.waiting) == 0
            while !state.waiting.isEmpty {
                guard let piece = take(from: &state, stream: stream, force: onlyPartialCharacter) else { break }
                pieces.append(piece)
            }
            state.since = state.waiting.isEmpty ? nil : now
            streams[stream] = state
        }
        return pieces
    }

    /// Ends the output: emits everything waiting and each stream's final piece. `streams` are streams that get a
    /// final piece even if they never had output (so a silent stage still ends its stream).
    public mutating func finish(streams extra: [LogStream]) -> [Piece] {
        for stream in extra where streams[stream] == nil {
            order.append(stream)
            streams[stream] = StreamState()
        }
        var pieces: [Piece] = []
        for stream in order {
            guard var state = streams[stream], !state.finished else { continue }
            var own = drain(&state, stream: stream)
            if state.limited { state.offset = state.total }
            if own.isEmpty {
                own.append(Piece(stream: stream, offset: state.offset, text: "", final: true))
            } else {
                own[own.count - 1].final = true
            }
            state.finished = true
            state.since = nil
            streams[stream] = state
            pieces += own
        }
        return pieces
    }

    // MARK: Pieces

    /// Emits all waiting bytes, partial characters included.
    private func drain(_ state: inout StreamState, stream: LogStream) -> [Piece] {
        var pieces: [Piece] = []
        while !state.waiting.isEmpty {
            guard let piece = take(from: &state, stream: stream, force: true) else { break }
            pieces.append(piece)
        }
        return pieces
    }

    /// Takes one piece from the front of the waiting bytes. Without `force`, a trailing incomplete character stays
    /// behind; returns nil when nothing can be taken.
    private func take(from state: inout StreamState, stream: LogStream, force: Bool) -> Piece? {
        let waiting = state.waiting
        guard !waiting.isEmpty else { return nil }
        var count = boundary(waiting, limit: min(waiting.count, limits.chunkBytes), force: force)
        guard count > 0 else { return nil }
        var text = String(decoding: waiting[..<count], as: UTF8.self)
        while text.utf8.count > limits.chunkBytes {
            // Replacement characters made the text longer than its bytes: take fewer bytes.
            let excess = text.utf8.count - limits.chunkBytes
            let smaller = max(1, count - (excess + 1) / 2)
            count = boundary(waiting, limit: smaller, force: true)
            text = String(decoding: waiting[..<count], as: UTF8.self)
        }
        state.waiting.removeFirst(count)
        let piece = Piece(stream: stream, offset: state.offset, text: text, final: false)
        state.offset += UInt64(count)
        return piece
    }

    /// How many of `bytes` to take, at most `limit`, without splitting a character: when the cut falls inside a
    /// multi-byte sequence it moves before the sequence; at the end of the waiting bytes an incomplete sequence is
    /// held back unless `force`. Never zero when `force` and there are bytes.
    private func boundary(_ bytes: [UInt8], limit: Int, force: Bool) -> Int {
        guard limit > 0 else { return 0 }
        var cut = limit
        if cut < bytes.count {
            if isContinuation(bytes[cut]) {
                var lead = cut - 1
                while lead > 0, cut - lead < 4, isContinuation(bytes[lead]) { lead -= 1 }
                if !isContinuation(bytes[lead]), sequenceLength(bytes[lead]) > cut - lead { cut = lead }
            }
        } else if !force {
            cut = completePrefixLength(bytes)
        }
        if cut == 0 && force { cut = limit }
        return cut
    }
}

/// The length of `bytes` without a trailing incomplete (but so far well-formed) UTF-8 sequence.
func completePrefixLength(_ bytes: [UInt8]) -> Int {
    let count = bytes.count
    var lead = count - 1
    while lead >= 0, count - lead < 4, isContinuation(bytes[lead]) { lead -= 1 }
    guard lead >= 0, !isContinuation(bytes[lead]) else { return count }
    return sequenceLength(bytes[lead]) > count - lead ? lead : count
}

/// How many bytes a sequence starting with `lead` has (1 for ASCII and for bytes that cannot start one).
private func sequenceLength(_ lead: UInt8) -> Int {
    switch lead {
    case 0xC2...0xDF: 2
    case 0xE0...0xEF: 3
    case 0xF0...0xF4: 4
    default: 1
    }
}

private func isContinuation(_ byte: UInt8) -> Bool { byte & 0xC0 == 0x80 }
