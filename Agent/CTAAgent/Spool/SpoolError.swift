/// An error from the agent's outgoing-event spool.
///
/// Match on ``code``; new codes may be added without breaking callers. ``description`` is safe to show a user,
/// ``debugDescription`` adds the file and the system error.
public struct SpoolError: Error, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case full, recordTooLarge, diskFull, ioError, busy, closed, invalidConfiguration, failed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The spool holds ``Spool/Configuration/maximumSize`` bytes of unacknowledged records: nothing more is
        /// accepted until the broker confirms some. Retrying after acknowledgements succeeds.
        public static let full = Code(.full)
        /// One record is larger than ``Spool/Configuration/maximumRecordSize``; it will never fit.
        public static let recordTooLarge = Code(.recordTooLarge)
        /// The file system is out of space or quota (`ENOSPC`, `EDQUOT`). The append was rolled back; the spool
        /// stays usable and a retry may succeed once space is freed.
        public static let diskFull = Code(.diskFull)
        /// A read, write, sync or directory operation failed (`EIO` and others).
        public static let ioError = Code(.ioError)
        /// Another process (or another open spool in this one) holds the spool directory.
        public static let busy = Code(.busy)
        /// The spool was closed.
        public static let closed = Code(.closed)
        /// The configuration cannot work (a size of zero, a segment larger than the spool…).
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// An earlier `fsync` failed, so the kernel's view of the files can no longer be trusted: the spool refuses
        /// everything until it is reopened, which re-reads and re-checks the files.
        public static let failed = Code(.failed)

        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, safe to show a user.
    public var message: String
    /// The file concerned, if any.
    public var path: String?
    /// The system error number, if a system call failed.
    public var errno: Int32?

    /// Creates an error.
    public init(_ code: Code, _ message: String, path: String? = nil, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.errno = errno
    }

    public var description: String { message }

    public var debugDescription: String {
        var text = "SpoolError(\(code)): \(message)"
        if let path { text += " [\(path)]" }
        if let errno { text += " [errno \(errno)]" }
        return text
    }
}
