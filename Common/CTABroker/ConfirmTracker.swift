/// Publisher-confirm bookkeeping for one channel in confirm mode.
///
/// The broker numbers published messages 1, 2, 3… per channel and acknowledges them with `basic.ack` or
/// `basic.nack`, either one tag or, with `multiple`, every outstanding tag up to and including it.
/// librabbitmq 0.11 has no confirm wait, so this tracks it. A plain state machine: no I/O.
struct ConfirmTracker<Token> {
    /// The tag the next published message will get.
    private(set) var nextTag: UInt64 = 1
    private var outstanding: [UInt64: Token] = [:]
    /// No tag below this is outstanding.
    private var lowest: UInt64 = 1

    var count: Int { outstanding.count }
    var isEmpty: Bool { outstanding.isEmpty }

    /// The outstanding message with `tag`, if any.
    subscript(tag: UInt64) -> Token? { outstanding[tag] }

    /// Records a message about to be published and returns its tag.
    mutating func sent(_ token: Token) -> UInt64 {
        let tag = nextTag
        nextTag += 1
        outstanding[tag] = token
        return tag
    }

    /// Settles `tag` (or every outstanding tag up to it) and returns the settled tokens in tag order.
    /// Tags that are unknown or already settled are ignored, so a duplicate ack settles nothing twice.
    mutating func settle(tag: UInt64, multiple: Bool) -> [(tag: UInt64, token: Token)] {
        guard multiple else {
            guard let token = outstanding.removeValue(forKey: tag) else { return [] }
            if tag == lowest { advanceLowest() }
            return [(tag, token)]
        }
        guard tag >= lowest else { return [] }
        var settled: [(tag: UInt64, token: Token)] = []
        var current = lowest
        let upper = min(tag, nextTag - 1)
        while current <= upper {
            if let token = outstanding.removeValue(forKey: current) { settled.append((current, token)) }
            current += 1
        }
        lowest = current
        advanceLowest()
        return settled
    }

    /// The oldest outstanding message, if any.
    var oldest: (tag: UInt64, token: Token)? {
        guard !outstanding.isEmpty else { return nil }
        var tag = lowest
        while tag < nextTag {
            if let token = outstanding[tag] { return (tag, token) }
            tag += 1
        }
        return nil
    }

    /// Forgets everything (the channel is gone) and returns what was outstanding, in tag order.
    /// The next channel numbers from 1 again.
    mutating func reset() -> [Token] {
        let tokens = outstanding.sorted { $0.key < $1.key }.map(\.value)
        outstanding.removeAll(keepingCapacity: true)
        nextTag = 1
        lowest = 1
        return tokens
    }

    private mutating func advanceLowest() {
        while lowest < nextTag, outstanding[lowest] == nil { lowest += 1 }
    }
}
