/// How a spool is sized and how often it syncs acknowledgements.
public struct SpoolConfiguration: Sendable, Hashable {
    /// The most bytes the segment files may hold together (headers and record framing included). An append that
    /// would pass it throws ``SpoolError/Code/full``. Default 256 MiB.
    public var maximumSize: Int
    /// The size at which the newest segment is closed and a new one started. A segment holds whole commits, so it
    /// passes this size only when one commit is larger. Fully acknowledged segments are deleted, so space comes
    /// back in steps of about this size. Default 8 MiB.
    public var segmentSize: Int
    /// The largest payload one record may have. Default 4 MiB.
    public var maximumRecordSize: Int
    /// How many acknowledgements may be written without an `fdatasync`. This is the replay bound after a power
    /// loss: at most this many records acknowledged before it are replayed again. After a process crash
    /// (`kill -9`) none are, because the entries are already in the kernel's page cache. Default 256.
    public var acknowledgementSyncInterval: Int
    /// The most append requests the asynchronous ``Spool`` gathers into one commit (one `fdatasync`).
    /// Default 512.
    public var groupCommitLimit: Int
    /// How long opening waits for another holder of the spool directory's lock to let go before it throws
    /// ``SpoolError/Code/busy``. A lock outlives its process briefly when a child process is being spawned at the
    /// moment (the descriptor table is copied until the `exec`), and a restarted agent may start while the old
    /// process is still exiting. Default 2 seconds.
    public var lockTimeout: Duration

    /// Creates a configuration; every parameter has the documented default.
    public init(
        maximumSize: Int = 256 << 20,
        segmentSize: Int = 8 << 20,
        maximumRecordSize: Int = 4 << 20,
        acknowledgementSyncInterval: Int = 256,
        groupCommitLimit: Int = 512,
        lockTimeout: Duration = .seconds(2)
    ) {
        self.maximumSize = maximumSize
        self.segmentSize = segmentSize
        self.maximumRecordSize = maximumRecordSize
        self.acknowledgementSyncInterval = acknowledgementSyncInterval
        self.groupCommitLimit = groupCommitLimit
        self.lockTimeout = lockTimeout
    }

    /// Checks that the sizes can work together.
    func validate() throws(SpoolError) {
        func refuse(_ reason: String) -> SpoolError { SpoolError(.invalidConfiguration, reason) }
        if segmentSize <= SpoolFormat.segmentHeaderSize { throw refuse("segmentSize is too small") }
        if maximumRecordSize < 1 { throw refuse("maximumRecordSize must be at least 1") }
        if maximumRecordSize > Int(UInt32.max) { throw refuse("maximumRecordSize must fit in 32 bits") }
        if maximumSize < 2 * SpoolFormat.segmentHeaderSize + SpoolFormat.recordHeaderSize + maximumRecordSize {
            throw refuse("maximumSize must hold two segment headers and one record of maximumRecordSize")
        }
        if acknowledgementSyncInterval < 1 { throw refuse("acknowledgementSyncInterval must be at least 1") }
        if groupCommitLimit < 1 { throw refuse("groupCommitLimit must be at least 1") }
    }
}
