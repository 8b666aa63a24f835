// Head-and-tail retention for long stage logs: the first and last bytes stay in the log, the middle is spilled.

/// Receives the middle of a long log, in order, as it leaves the retained window.
///
/// The bytes a sink receives over the life of one ``LogRetention``, concatenated, are exactly the bytes that are
/// missing between the retained head and the retained tail.
public protocol LogSpillSink {
    /// Takes the next part of the omitted middle. The buffer is valid only during the call.
    mutating func spill(_ bytes: UnsafeRawBufferPointer)
}

/// Keeps the first and last bytes of a stream of output in memory and hands everything between them to a
/// ``LogSpillSink`` as soon as it is known to belong to the middle; memory stays bounded by the two limits.
///
/// Boundaries:
/// - Once a middle has to be spilled, the head is cut back to a line boundary when its last newline lies in its
///   second half, otherwise to before a UTF-8 character that would be split; what it gives back is the start of
///   the middle.
/// - When something was spilled, ``finish(spillingTo:)`` moves the start of the tail forward to the first line
///   boundary in the first half of the tail (or past a split UTF-8 character) and spills those bytes too.
/// - Nothing is spilled while the whole output fits in `headBytes + tailBytes`.
///
/// Invariant: `head.count + spilledBytes + tail.count == totalBytes`.
///
/// The value does no I/O; rendering (``rendered(attachmentName:)``) and spilling are up to the owner.
public struct LogRetention: Sendable {
    /// How many bytes stay in place at each end.
    public struct Limits: Hashable, Sendable {
        /// The most bytes kept from the beginning.
        public var headBytes: Int
        /// The most bytes kept from the end.
        public var tailBytes: Int

        /// Creates limits; negative values count as zero.
        public init(headBytes: Int, tailBytes: Int) {
            self.headBytes = max(0, headBytes)
            self.tailBytes = max(0, tailBytes)
        }
    }

    /// The limits this value applies.
    public let limits: Limits
    /// The bytes kept from the beginning of the output.
    public private(set) var head: [UInt8] = []
    /// How many bytes were appended in all.
    public private(set) var totalBytes: UInt64 = 0
    /// How many bytes were handed to the spill sink.
    public private(set) var spilledBytes: UInt64 = 0
    /// Whether ``finish(spillingTo:)`` was called.
    public private(set) var isFinished = false

    /// Whether the head is complete (more output arrived than it can hold).
    private var headClosed = false
    /// The first byte that did not fit in the head; decides a character boundary when the head is cut.
    private var firstAfterHead: UInt8?
    /// Whether the head was cut back to its boundary; done lazily, on the first spill, so that nothing is spilled
    /// while the output fits in `headBytes + tailBytes`.
    private var headCut = false
    /// The tail window: a ring of `limits.tailBytes` bytes.
    private var ring: [UInt8]
    private var ringStart = 0
    private var ringCount = 0

    /// Creates an empty retention with the given limits.
    public init(limits: Limits) {
        self.limits = limits
        self.ring = [UInt8](repeating: 0, count: limits.tailBytes)
        self.head.reserveCapacity(min(limits.headBytes, 64 * 1024))
    }

    /// The bytes currently kept from the end of the output (after the head).
    public var tail: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(ringCount)
        forEachRingRegion(from: 0, count: ringCount) { out.append(contentsOf: $0) }
        return out
    }

    /// Whether the output was longer than the limits, so that a middle was (or will be) spilled.
    public var isTruncated: Bool { spilledBytes > 0 }

    /// Appends a chunk of output; bytes that fall out of the retained window go to `sink` before this returns.
    ///
    /// - Important: Call ``finish(spillingTo:)`` with the same sink once the output ended.
    public mutating func append(_ chunk: UnsafeRawBufferPointer, spillingTo sink: inout some LogSpillSink) {
        precondition(!isFinished, "LogRetention.append after finish")
        guard !chunk.isEmpty else { return }
        totalBytes += UInt64(chunk.count)
        var rest = chunk[...]
        if !headClosed {
            let room = limits.headBytes - head.count
            if rest.count <= room {
                head.append(contentsOf: rest)
                return
            }
            head.append(contentsOf: rest.prefix(room))
            rest = rest.dropFirst(room)
            headClosed = true
            firstAfterHead = rest.first
        }
        pushTail(UnsafeRawBufferPointer(rebasing: rest)[...], sink: &sink)
    }

    /// Appends bytes from an array; see ``append(_:spillingTo:)-(UnsafeRawBufferPointer,_)``.
    public mutating func append(_ bytes: [UInt8], spillingTo sink: inout some LogSpillSink) {
        bytes.withUnsafeBytes { append($0, spillingTo: &sink) }
    }

    /// Ends the output: aligns the start of the tail on a line or character boundary when a middle was spilled,
    /// spilling the bytes that moves out of the tail.
    public mutating func finish(spillingTo sink: inout some LogSpillSink) {
        guard !isFinished else { return }
        let skip = tailAlignment()
        isFinished = true
        if skip > 0 { evict(skip, sink: &sink) }
    }

    /// The marker line put between head and tail when a middle was spilled (without a newline).
    public static func marker(omittedBytes: UInt64, attachmentName: String) -> String {
        "… \(omittedBytes) bytes omitted, see attachment \(attachmentName) …"
    }

    /// The log as it reads in place: head, a marker line when a middle was spilled, tail.
    ///
    /// Before ``finish(spillingTo:)`` this is a snapshot: the tail is shown from the boundary `finish` would choose
    /// and the marker counts those bytes as omitted, although they were not spilled yet.
    public func rendered(attachmentName: String) -> [UInt8] {
        let skip = tailAlignment()
        let omitted = spilledBytes + UInt64(skip)
        var out = [UInt8]()
        out.reserveCapacity(head.count + ringCount + 160)
        out.append(contentsOf: head)
        if omitted > 0 {
            if let last = head.last, last != newline { out.append(newline) }
            out.append(contentsOf: Self.marker(omittedBytes: omitted, attachmentName: attachmentName).utf8)
            out.append(newline)
        }
        forEachRingRegion(from: skip, count: ringCount - skip) { out.append(contentsOf: $0) }
        return out
    }

    // MARK: Boundaries

    /// Cuts the head back to its boundary; the bytes it gives back are the first bytes of the middle.
    private mutating func cutHead(sink: inout some LogSpillSink) {
        guard !headCut else { return }
        headCut = true
        guard let next = firstAfterHead else { return }
        let cut = headBoundary(next: next)
        guard cut < head.count else { return }
        head[cut...].withUnsafeBytes { sink.spill($0) }
        spilledBytes += UInt64(head.count - cut)
        head.removeSubrange(cut...)
    }

    /// Where the full head should end, given the first byte that did not fit.
    private func headBoundary(next: UInt8) -> Int {
        let limit = head.count
        guard limit > 0 else { return 0 }
        if head[limit - 1] == newline { return limit }
        if let index = head[(limit / 2)...].lastIndex(of: newline) { return index + 1 }
        guard isContinuation(next) else { return limit }
        // The next byte continues a character: end the head before that character's lead byte.
        var index = limit - 1
        while index > 0, limit - index < 4, isContinuation(head[index]) { index -= 1 }
        return head[index] >= 0xC0 ? index : limit
    }

    /// How many bytes at the start of the tail `finish` spills to land on a boundary; zero when nothing was spilled
    /// and once `finish` has aligned the tail.
    private func tailAlignment() -> Int {
        guard !isFinished, spilledBytes > 0, ringCount > 0 else { return 0 }
        var found: Int?
        var offset = 0
        let window = ringCount / 2
        forEachRingRegion(from: 0, count: window) { region in
            guard found == nil else { return }
            if let index = region.firstIndex(of: newline) { found = offset + (index - region.startIndex) + 1 }
            offset += region.count
        }
        if let found { return found }
        var skip = 0
        while skip < 3, skip < ringCount, isContinuation(ringByte(skip)) { skip += 1 }
        return skip
    }

    // MARK: Tail ring

    private mutating func pushTail(_ bytes: Slice<UnsafeRawBufferPointer>, sink: inout some LogSpillSink) {
        guard !bytes.isEmpty else { return }
        let capacity = limits.tailBytes
        var bytes = bytes
        let overflow = ringCount + bytes.count - capacity
        if overflow > 0 {
            cutHead(sink: &sink)
            evict(min(overflow, ringCount), sink: &sink)
            if bytes.count > capacity {
                let drop = bytes.count - capacity
                sink.spill(UnsafeRawBufferPointer(rebasing: bytes.prefix(drop)))
                spilledBytes += UInt64(drop)
                bytes = bytes.dropFirst(drop)
            }
        }
        guard capacity > 0 else { return }
        var source = bytes.startIndex
        while source < bytes.endIndex {
            let writeAt = (ringStart + ringCount) % capacity
            let run = min(bytes.endIndex - source, capacity - writeAt)
            ring.withUnsafeMutableBytes { target in
                target.baseAddress!.advanced(by: writeAt)
                    .copyMemory(from: bytes.base.baseAddress!.advanced(by: source), byteCount: run)
            }
            ringCount += run
            source += run
        }
    }

    /// Spills the oldest `count` bytes of the ring.
    private mutating func evict(_ count: Int, sink: inout some LogSpillSink) {
        guard count > 0 else { return }
        ring.withUnsafeBytes { buffer in
            var remaining = count
            var start = ringStart
            while remaining > 0 {
                let run = min(remaining, buffer.count - start)
                sink.spill(UnsafeRawBufferPointer(rebasing: buffer[start..<(start + run)]))
                remaining -= run
                start = (start + run) % buffer.count
            }
        }
        ringStart = (ringStart + count) % max(1, limits.tailBytes)
        ringCount -= count
        spilledBytes += UInt64(count)
    }

    private func ringByte(_ offset: Int) -> UInt8 { ring[(ringStart + offset) % limits.tailBytes] }

    /// Calls `body` with the (at most two) contiguous regions of `count` ring bytes starting at `offset`.
    private func forEachRingRegion(from offset: Int, count: Int, _ body: (ArraySlice<UInt8>) -> Void) {
        guard count > 0 else { return }
        let capacity = limits.tailBytes
        let start = (ringStart + offset) % capacity
        let first = min(count, capacity - start)
        body(ring[start..<(start + first)])
        if first < count { body(ring[0..<(count - first)]) }
    }
}

private let newline = UInt8(ascii: "\n")

private func isContinuation(_ byte: UInt8) -> Bool { byte & 0xC0 == 0x80 }
