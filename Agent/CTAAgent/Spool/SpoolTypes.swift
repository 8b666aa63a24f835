public import CTACore

/// One unacknowledged record of the spool: its sequence number and the bytes the caller stored (the encoded
/// envelope, which carries the same `seq`).
public struct SpoolRecord: Sendable, Hashable {
    /// The sequence number the spool assigned, within the spool's epoch.
    public var seq: UInt64
    /// The stored bytes.
    public var payload: [UInt8]

    /// Creates a record.
    public init(seq: UInt64, payload: [UInt8]) {
        self.seq = seq
        self.payload = payload
    }
}

/// Something recovery found wrong in the spool's files when it was opened, and what it did about it.
public struct SpoolDamage: Sendable, Hashable, CustomStringConvertible {
    /// What was wrong.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case tornTail, corruptRecords, damagedSegment, foreignSegment, damagedAcknowledgements, lostSpool
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The newest segment ends in a partial or unreadable record (a crash during a write): it was cut off.
        /// Nothing that an append had reported durable is lost this way.
        public static let tornTail = Kind(.tornTail)
        /// Unreadable bytes between intact records (media corruption): skipped; the records around them are
        /// kept. ``SpoolDamage/missingSeqs`` names the sequence numbers lost, when they can be told.
        public static let corruptRecords = Kind(.corruptRecords)
        /// A segment whose header is unreadable: renamed to `*.damaged` and not replayed.
        public static let damagedSegment = Kind(.damagedSegment)
        /// A segment of another epoch: renamed to `*.foreign` and not replayed.
        public static let foreignSegment = Kind(.foreignSegment)
        /// Acknowledgement entries with a bad checksum or a partial one at the end: ignored (their records may be
        /// replayed once more).
        public static let damagedAcknowledgements = Kind(.damagedAcknowledgements)
        /// The epoch file or every segment was missing or unreadable: a new epoch was started at `seq` 1.
        public static let lostSpool = Kind(.lostSpool)

        public var description: String { base.rawValue }
    }

    /// What was wrong.
    public var kind: Kind
    /// The file concerned (a name inside the spool directory).
    public var file: String
    /// Where the damage starts in the file.
    public var offset: Int
    /// How many bytes are affected.
    public var length: Int
    /// The sequence numbers lost, when they can be told (the gap between the intact records around the damage).
    public var missingSeqs: ClosedRange<UInt64>?

    public var description: String {
        var text = "\(kind) in \(file) at \(offset) (\(length) bytes)"
        if let missingSeqs { text += ", seq \(missingSeqs.lowerBound)...\(missingSeqs.upperBound) lost" }
        return text
    }
}

/// What opening a spool found.
public struct SpoolRecovery: Sendable {
    /// The epoch in use.
    public var epoch: SequenceEpoch
    /// Whether the epoch was created by this open (a new spool, or a lost one replaced).
    public var createdEpoch: Bool
    /// The highest `seq` assigned so far in the epoch (0 when none).
    public var lastSeq: UInt64
    /// How many records are waiting for an acknowledgement.
    public var pendingRecords: Int
    /// Everything found wrong, in the order found. Empty after a clean shutdown or a crash between writes.
    public var damage: [SpoolDamage]
}
