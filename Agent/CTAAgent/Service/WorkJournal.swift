public import CTACore
import Foundation
import Glibc
import Synchronization

/// Which share of an execution a journal file covers: one execution attempt on this machine.
public struct PartKey: Hashable, Sendable, CustomStringConvertible {
    public var executionID: ExecutionID
    public var attempt: Int

    public init(executionID: ExecutionID, attempt: Int) {
        self.executionID = executionID
        self.attempt = attempt
    }

    public var description: String { "\(executionID)-a\(attempt)" }

    var fileName: String { "\(description).journal" }

    init?(fileName: String) {
        guard fileName.hasSuffix(".journal") else { return nil }
        let stem = fileName.dropLast(".journal".count)
        guard let marker = stem.range(of: "-a", options: .backwards),
            let id = ExecutionID(String(stem[..<marker.lowerBound])),
            let attempt = Int(stem[marker.upperBound...])
        else { return nil }
        self.init(executionID: id, attempt: attempt)
    }
}

/// One line of a part's journal.
struct JournalEntry: Codable, Sendable, Hashable {
    enum Kind: String, Codable, Sendable {
        /// A work message durably taken (its id and bytes): written and synced before the broker ack.
        case take
        /// A parallel execution's queue, announced to this machine.
        case announce
        /// The seq of an event of this part, by what it was.
        case acked, running, log, final
        /// A test started (its key), so a crash can tell which test was interrupted.
        case start
        /// A test's results: their seq range and counts.
        case results
        /// The part was given up (spool lost, for example).
        case abandon
    }

    var kind: Kind
    var id: String?
    var body: String?
    var seq: UInt64?
    var first: UInt64?
    var key: String?
    var counts: ResultCounts?
    var at: Timestamp?
    var queue: String?
    var epoch: String?

    init(
        _ kind: Kind, id: String? = nil, body: String? = nil, seq: UInt64? = nil, first: UInt64? = nil,
        key: String? = nil, counts: ResultCounts? = nil, at: Timestamp? = nil, queue: String? = nil,
        epoch: String? = nil
    ) {
        self.kind = kind
        self.id = id
        self.body = body
        self.seq = seq
        self.first = first
        self.key = key
        self.counts = counts
        self.at = at
        self.queue = queue
        self.epoch = epoch
    }
}

/// What a part's journal says happened so far.
public struct PartProgress: Sendable {
    public var key: PartKey
    /// The work messages taken, in order: their event ids and bytes.
    public var taken: [(id: EventID, body: [UInt8])] = []
    /// The parallel queue announced, with its test count.
    public var announced: (queue: String, testCount: Int)?
    /// The announcement's bytes (the execution's shared context).
    public var announcement: [UInt8]?
    /// The seq of the part's `acked` state.
    public var ackedSeq: UInt64?
    /// When the part reported `running`.
    public var runningAt: Timestamp?
    /// Tests started (by key), in order.
    public var started: [String] = []
    /// Tests whose results are in the spool (by key).
    public var reported: Set<String> = []
    /// The results reported so far.
    public var counts = ResultCounts()
    /// The highest seq of an event of this part.
    public var lastSeq: UInt64 = 0
    /// Whether the final state is in the spool.
    public var finished = false
    /// The epoch the seqs belong to.
    public var epoch: String?
}

/// The agent's durable record of the work it took and how far it got, one append-only file per part in
/// `<state>/journal`, plus the tombstones of cancelled executions, the drain flag and the ids of finished work.
///
/// A `take` line is synced before the broker ack ("durably taken"). The lines that note an event's `seq` are
/// written from the spool's thread while the spool builds those records, before the spool syncs them, so after
/// a crash of the agent process (not of the machine) the journal knows every event the spool holds. After a
/// power loss the journal may lag the spool by the last unsynced lines: then a test whose results were spooled
/// can look interrupted and be reported a second time as `inconclusive` (documented bound, not silent loss).
public final class WorkJournal: Sendable {
    /// The journal directory.
    public let directory: String
    private let worker: BlockingWorker
    private let files = Mutex<[PartKey: Int32]>([:])

    /// Opens (creating) the journal directory.
    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        worker = BlockingWorker(name: "cta-journal")
    }

    deinit {
        files.withLock { files in
            for fd in files.values { Glibc.close(fd) }
            files = [:]
        }
        worker.stop()
    }

    // MARK: Parts

    /// Reads every part journal left in the directory (unfinished work from before a restart).
    public func load() async throws -> [PartProgress] {
        let directory = self.directory
        return try await worker.run {
            var parts: [PartProgress] = []
            for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() {
                guard let key = PartKey(fileName: name) else { continue }
                let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
                parts.append(Self.parse(data, key: key))
            }
            return parts
        }
    }

    static func parse(_ data: Data, key: PartKey) -> PartProgress {
        var progress = PartProgress(key: key)
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            // A torn last line (crash mid-write) does not parse and is skipped.
            guard let entry = try? decoder.decode(JournalEntry.self, from: Data(line)) else { continue }
            if let seq = entry.seq { progress.lastSeq = max(progress.lastSeq, seq) }
            if progress.epoch == nil { progress.epoch = entry.epoch }
            switch entry.kind {
            case .take:
                if let id = entry.id.flatMap(EventID.init), let body = entry.body.flatMap({ Data(base64Encoded: $0) }) {
                    progress.taken.append((id, Array(body)))
                }
            case .announce:
                if let queue = entry.queue { progress.announced = (queue, Int(entry.first ?? 0)) }
                progress.announcement = entry.body.flatMap { Data(base64Encoded: $0) }.map { Array($0) }
            case .acked: progress.ackedSeq = progress.ackedSeq ?? entry.seq
            case .running: progress.runningAt = entry.at
            case .log: break
            case .final: progress.finished = true
            case .abandon: progress.finished = true
            case .start: if let key = entry.key { progress.started.append(key) }
            case .results:
                if let key = entry.key { progress.reported.insert(key) }
                if let counts = entry.counts { progress.counts.add(counts) }
            }
        }
        return progress
    }

    /// Records a work message as taken and syncs it: call before acking the delivery.
    public func take(_ part: PartKey, id: EventID, body: [UInt8], epoch: SequenceEpoch) async throws {
        let line = JournalEntry(.take, id: id.description, body: Data(body).base64EncodedString(), epoch: epoch.description)
        try await appendSynced(part, line)
    }

    /// Records a parallel queue announcement and syncs it.
    public func announce(_ part: PartKey, queue: String, testCount: Int, body: [UInt8], epoch: SequenceEpoch) async throws {
        // The test count rides in `first`: `seq` is only ever an event's seq.
        let line = JournalEntry(
            .announce, body: Data(body).base64EncodedString(), first: UInt64(max(0, testCount)), queue: queue,
            epoch: epoch.description)
        try await appendSynced(part, line)
    }

    /// Notes a line without syncing; safe from any thread (the spool's included). Errors are ignored: the journal
    /// is then behind, which restart handles as an interrupted test.
    func note(_ part: PartKey, _ entry: JournalEntry) {
        guard var bytes = try? JSONEncoder().encode(entry) else { return }
        bytes.append(UInt8(ascii: "\n"))
        files.withLock { files in
            guard let fd = Self.descriptor(for: part, in: directory, files: &files) else { return }
            _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    /// Notes a line from async code: the write runs on the journal's thread, not on the cooperative pool.
    func record(_ part: PartKey, _ entry: JournalEntry) async {
        _ = try? await worker.run { [self] in note(part, entry) }
    }

    /// Removes a finished part's journal.
    public func remove(_ part: PartKey) async throws {
        let directory = self.directory
        try await worker.run { [self] in
            files.withLock { files in
                if let fd = files.removeValue(forKey: part) { Glibc.close(fd) }
            }
            let path = directory + "/" + part.fileName
            if unlink(path) != 0, errno != ENOENT { throw lastPOSIXError() }
        }
    }

    private func appendSynced(_ part: PartKey, _ entry: JournalEntry) async throws {
        var bytes = try JSONEncoder().encode(entry)
        bytes.append(UInt8(ascii: "\n"))
        let directory = self.directory
        let payload = bytes
        try await worker.run { [self] in
            let fd = try files.withLock { files -> Int32 in
                guard let fd = Self.descriptor(for: part, in: directory, files: &files) else {
                    throw lastPOSIXError()
                }
                let written = payload.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                guard written == payload.count else { throw lastPOSIXError() }
                return fd
            }
            guard fdatasync(fd) == 0 else { throw lastPOSIXError() }
        }
    }

    /// The open descriptor of a part's file, opening (and, for a new file, syncing the directory) as needed.
    private static func descriptor(for part: PartKey, in directory: String, files: inout [PartKey: Int32]) -> Int32? {
        if let fd = files[part] { return fd }
        let path = directory + "/" + part.fileName
        let existed = access(path, F_OK) == 0
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        if !existed { syncDirectory(directory) }
        files[part] = fd
        return fd
    }

    // MARK: Small state files

    /// The tombstones stored.
    public func loadTombstones() async throws -> [Tombstone] {
        let path = directory + "/tombstones.json"
        return try await worker.run {
            guard let data = FileManager.default.contents(atPath: path) else { return [] }
            return (try? JSONDecoder().decode([Tombstone].self, from: data)) ?? []
        }
    }

    /// Replaces the stored tombstones (atomically, synced).
    public func saveTombstones(_ tombstones: [Tombstone]) async throws {
        let data = try JSONEncoder().encode(tombstones)
        try await writeAtomically(data, name: "tombstones.json")
    }

    /// Whether the machine was drained (it stays drained across restarts until resumed).
    public func loadDraining() async throws -> Bool {
        let path = directory + "/draining"
        return try await worker.run { access(path, F_OK) == 0 }
    }

    /// Stores the drain flag.
    public func saveDraining(_ draining: Bool) async throws {
        if draining {
            try await writeAtomically(Data("drained\n".utf8), name: "draining")
        } else {
            let path = directory + "/draining"
            let directory = self.directory
            try await worker.run {
                if unlink(path) == 0 { syncDirectory(directory) }
            }
        }
    }

    /// The ids of work messages finished in the last `retention`, so a late redelivery is recognised.
    public func loadFinishedIDs(retention: Duration = .seconds(7 * 24 * 3600)) async throws -> Set<EventID> {
        let path = directory + "/finished.log"
        let horizon = Timestamp.now().microsecondsSinceEpoch - retention.components.seconds * 1_000_000
        return try await worker.run {
            guard let data = FileManager.default.contents(atPath: path) else { return [] }
            var ids = Set<EventID>()
            var kept = Data()
            for line in data.split(separator: UInt8(ascii: "\n")) {
                let fields = line.split(separator: UInt8(ascii: " "))
                guard fields.count == 2, let id = EventID(String(decoding: fields[0], as: UTF8.self)),
                    let micros = Int64(String(decoding: fields[1], as: UTF8.self))
                else { continue }
                guard micros >= horizon else { continue }
                ids.insert(id)
                kept.append(contentsOf: line)
                kept.append(UInt8(ascii: "\n"))
            }
            if kept.count != data.count { try? kept.write(to: URL(fileURLWithPath: path), options: .atomic) }
            return ids
        }
    }

    /// Adds ids of finished work (synced).
    public func saveFinishedIDs(_ ids: [EventID]) async throws {
        guard !ids.isEmpty else { return }
        let path = directory + "/finished.log"
        let now = Timestamp.now().microsecondsSinceEpoch
        let text = ids.map { "\($0) \(now)\n" }.joined()
        try await worker.run {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw lastPOSIXError() }
            defer { Glibc.close(fd) }
            let bytes = Array(text.utf8)
            guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count, fdatasync(fd) == 0
            else { throw lastPOSIXError() }
        }
    }

    private func writeAtomically(_ data: Data, name: String) async throws {
        let directory = self.directory
        try await worker.run {
            let path = directory + "/" + name
            let temporary = path + ".tmp"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw lastPOSIXError() }
            let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            let synced = fdatasync(fd) == 0
            Glibc.close(fd)
            guard written == data.count, synced, rename(temporary, path) == 0 else {
                throw lastPOSIXError()
            }
            syncDirectory(directory)
        }
    }
}

/// A cancelled execution this agent must not start, until `until`.
public struct Tombstone: Codable, Sendable, Hashable {
    public var executionID: ExecutionID
    public var cause: CancelCause
    public var reason: String
    public var until: Timestamp

    public init(executionID: ExecutionID, cause: CancelCause, reason: String, until: Timestamp) {
        self.executionID = executionID
        self.cause = cause
        self.reason = reason
        self.until = until
    }
}

private func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    Glibc.close(fd)
}

/// The error of the last failed system call.
private func lastPOSIXError() -> POSIXError {
    POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
}
