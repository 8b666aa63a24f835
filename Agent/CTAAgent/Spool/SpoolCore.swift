public import CTACore
import Foundation
import Glibc
public import Logging

/// The durable outgoing-event spool, synchronous: every call does its file I/O before it returns.
///
/// Appends assign the next `seq` of the spool's ``SequenceEpoch`` and return only once the records are on stable
/// storage (`fdatasync` of the segment, and of the directory when a segment was created). ``pending(after:limit:)``
/// reads unacknowledged records back in `seq` order; ``acknowledge(seq:)`` removes one, in any order, once the
/// broker confirmed it. See ``SpoolFormat`` for the files and ``SpoolConfiguration`` for the limits.
///
/// **Sequence numbers.** `seq` starts at 1 in a new epoch and is never reused, even when the records holding the
/// highest values are acknowledged and removed: the newest segment is never deleted, and its header holds the
/// first `seq` it may contain, so the counter is recovered as the larger of that and the newest record's `seq`
/// plus one. An append that did not return (crash mid-write) may see its `seq` assigned again after recovery;
/// that record was never reported durable, so it was never published.
///
/// **Recovery on open.** Segments are read in order and each record is checked (magic, length, CRC-32C, `seq`
/// increasing). Unreadable bytes followed by no intact record are a torn tail: the newest segment is cut there, with
/// a warning. Unreadable bytes followed by intact records are corruption: reported, skipped, and the intact records
/// after them kept. A segment with an unreadable header is set aside. A missing or unreadable `epoch` file is
/// restored from the segment headers; if no segment exists either, the spool is treated as lost and a new epoch
/// begins at `seq` 1 (logged as a warning). Every finding is in ``recovery``; no bad file makes the open crash.
///
/// **Acknowledgements** are appended to the segment's `.acks` file as they come, without a sync, and synced every
/// ``SpoolConfiguration/acknowledgementSyncInterval`` entries, on ``sync()``, on ``close()`` and when the spool is
/// opened again. Replay bound: after a process crash no acknowledged record is replayed; after a power loss at most
/// `acknowledgementSyncInterval - 1` records acknowledged since the last sync are. Receivers deduplicate these by
/// event id. Opening also syncs every segment, so a record that recovery hands out cannot vanish later.
///
/// **Failures.** A write that fails (`ENOSPC`, `EIO`…) is cut back off the segment and thrown; the spool stays
/// usable. A failed `fdatasync` leaves the page cache in an unknown state (the kernel may drop the dirty pages), so
/// the spool then throws ``SpoolError/Code/failed`` for everything until it is reopened, which re-reads the files.
///
/// A spool directory is locked (`flock` on `lock`) while open, so two processes never write one spool.
///
/// - Important: Not thread-safe. Use it from one thread at a time; the asynchronous ``Spool`` confines it to its own
///   thread. Never call it from Swift's cooperative thread pool: every method blocks on disk I/O.
public final class SpoolCore {
    /// The spool directory.
    public let directory: String
    /// The limits in force.
    public let configuration: SpoolConfiguration
    /// The epoch every `seq` of this spool belongs to.
    public private(set) var epoch: SequenceEpoch
    /// What opening the spool found.
    public private(set) var recovery: SpoolRecovery

    private let logger: Logger
    private var lock: SpoolFile?
    private var segments: [Segment] = []
    private var nextSeq: UInt64 = 1
    private var totalSize = 0
    private var pendingTotal = 0
    private var unsyncedAcknowledgements = 0
    private var directoryNeedsSync = false
    private var failure: SpoolError?
    private var closed = false

    // Records staged for the next commit.
    private var staged: [UInt8] = []
    private var stagedRecords: [(seq: UInt64, offset: Int, length: Int)] = []

    /// One segment file and the index of its records.
    private final class Segment {
        let firstSeq: UInt64
        let file: SpoolFile
        var size: Int
        var seqs: [UInt64] = []
        /// Offset of each record's payload in the file.
        var offsets: [Int] = []
        var lengths: [Int] = []
        var acknowledged: [Bool] = []
        var pending = 0
        /// No record before this index is pending.
        var firstPending = 0
        var acknowledgements: SpoolFile?
        var acknowledgementsSize = 0
        var acknowledgementsDirty = false

        init(firstSeq: UInt64, file: SpoolFile, size: Int) {
            self.firstSeq = firstSeq
            self.file = file
            self.size = size
        }

        var lastSeq: UInt64? { seqs.last }

        func index(of seq: UInt64) -> Int? {
            var low = 0
            var high = seqs.count
            while low < high {
                let mid = (low + high) / 2
                if seqs[mid] < seq { low = mid + 1 } else { high = mid }
            }
            return low < seqs.count && seqs[low] == seq ? low : nil
        }

        /// The first index whose seq is greater than `seq`.
        func index(after seq: UInt64) -> Int {
            var low = 0
            var high = seqs.count
            while low < high {
                let mid = (low + high) / 2
                if seqs[mid] <= seq { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }

    /// Opens the spool in `directory`, creating it if needed, and recovers what it holds.
    ///
    /// - Throws: ``SpoolError`` when the directory cannot be used (permissions, I/O errors, another process holds
    ///   it, a bad configuration). Damaged contents do not throw: they are repaired and listed in ``recovery``.
    public init(
        directory: String,
        configuration: SpoolConfiguration = SpoolConfiguration(),
        logger: Logger
    ) throws(SpoolError) {
        try configuration.validate()
        self.directory = directory
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "cta.spool.directory"] = "\(directory)"
        self.logger = logger
        self.epoch = SequenceEpoch()
        self.recovery = SpoolRecovery(epoch: epoch, createdEpoch: false, lastSeq: 0, pendingRecords: 0, damage: [])
        try SpoolFile.makeDirectory(directory)
        try takeLock()
        try recover()
    }

    deinit {
        // Closing the descriptors (SpoolFile.deinit) keeps everything written in the page cache; only the sync of
        // the last acknowledgements is skipped, which is the documented replay bound.
    }

    // MARK: Appending

    /// Appends one record, durably. `makeRecord` receives the epoch and the `seq` assigned and returns the bytes
    /// to store (the envelope, encoded with that `seq`).
    ///
    /// - Returns: The `seq` assigned.
    /// - Throws: ``SpoolError`` (nothing was appended), or what `makeRecord` threw (nothing was appended and the
    ///   `seq` is not used up).
    @discardableResult
    public func append(_ makeRecord: (SequenceEpoch, UInt64) throws -> [UInt8]) throws -> UInt64 {
        try append(count: 1) { epoch, seq, _ in try makeRecord(epoch, seq) }.lowerBound
    }

    /// Appends `count` records with one sync (group commit). `makeRecord` receives the epoch, the `seq` assigned
    /// and the record's index in `0..<count`.
    ///
    /// - Returns: The `seq`s assigned, consecutive.
    /// - Throws: ``SpoolError`` or what `makeRecord` threw; either way none of the records was appended.
    @discardableResult
    public func append(
        count: Int,
        _ makeRecord: (SequenceEpoch, UInt64, Int) throws -> [UInt8]
    ) throws -> ClosedRange<UInt64> {
        precondition(count >= 1, "append(count:) needs at least one record")
        let seqs = try stage(count: count, makeRecord)
        try commit()
        return seqs
    }

    /// Stages `count` records for the next ``commit()``, assigning their `seq`s. On a throw, nothing of this call
    /// stays staged (records staged by earlier calls do).
    func stage(
        count: Int,
        _ makeRecord: (SequenceEpoch, UInt64, Int) throws -> [UInt8]
    ) throws -> ClosedRange<UInt64> {
        try checkUsable()
        let mark = (bytes: staged.count, records: stagedRecords.count, seq: nextSeq)
        do {
            for index in 0..<count {
                let seq = nextSeq
                let payload = try makeRecord(epoch, seq, index)
                guard payload.count <= configuration.maximumRecordSize else {
                    throw SpoolError(
                        .recordTooLarge,
                        "a record of \(payload.count) bytes is larger than the limit of "
                            + "\(configuration.maximumRecordSize) bytes")
                }
                let size = SpoolFormat.recordHeaderSize + payload.count
                guard usableSize() + staged.count + size <= configuration.maximumSize else {
                    throw SpoolError(
                        .full,
                        "the spool is full (\(configuration.maximumSize) bytes of unacknowledged records)")
                }
                stagedRecords.append((seq, staged.count + SpoolFormat.recordHeaderSize, payload.count))
                SpoolFormat.appendRecord(seq: seq, payload: payload, to: &staged)
                nextSeq += 1
            }
        } catch {
            staged.removeSubrange(mark.bytes...)
            stagedRecords.removeSubrange(mark.records...)
            nextSeq = mark.seq
            throw error
        }
        return mark.seq...(nextSeq - 1)
    }

    /// The bytes the segments will hold once a commit rotated away a fully acknowledged newest segment.
    private func usableSize() -> Int {
        guard let active = segments.last, active.pending == 0, !active.seqs.isEmpty else { return totalSize }
        return totalSize - active.size + SpoolFormat.segmentHeaderSize
    }

    /// Writes the staged records to the newest segment and syncs it. On a throw none of them is appended and their
    /// `seq`s are given out again.
    func commit() throws(SpoolError) {
        guard !stagedRecords.isEmpty else { return }
        let firstStaged = stagedRecords[0].seq
        do throws(SpoolError) {
            try checkUsable()
            var active = segments[segments.count - 1]
            if !active.seqs.isEmpty
                && (active.size + staged.count > configuration.segmentSize
                    || (active.pending == 0 && totalSize + staged.count > configuration.maximumSize))
            {
                active = try startSegment(firstSeq: firstStaged)
                try removeAcknowledgedSegments()
            }
            let start = active.size
            do {
                try active.file.write(staged, at: start)
            } catch {
                do { try active.file.truncate(to: start) } catch { fail(error) }
                throw error
            }
            do { try active.file.sync() } catch {
                fail(error)
                throw error
            }
            for record in stagedRecords {
                active.seqs.append(record.seq)
                active.offsets.append(start + record.offset)
                active.lengths.append(record.length)
                active.acknowledged.append(false)
            }
            active.pending += stagedRecords.count
            active.size += staged.count
            totalSize += staged.count
            pendingTotal += stagedRecords.count
            commits += 1
            staged.removeAll(keepingCapacity: staged.capacity <= 1 << 20)
            stagedRecords.removeAll(keepingCapacity: true)
        } catch {
            discardStaged()
            nextSeq = firstStaged
            throw error
        }
    }

    /// Drops the staged records (their seqs are given out again).
    func discardStaged() {
        if let first = stagedRecords.first { nextSeq = first.seq }
        staged.removeAll(keepingCapacity: false)
        stagedRecords.removeAll()
    }

    // MARK: Reading and acknowledging

    /// The highest `seq` assigned so far (0 when none).
    public var lastSeq: UInt64 { nextSeq - 1 - UInt64(stagedRecords.count) }

    /// How many records wait for an acknowledgement.
    public var pendingCount: Int { pendingTotal }

    /// The bytes the segment files hold.
    public var size: Int { totalSize }

    /// How many commits (each one `fdatasync` of a segment) the spool made since it was opened.
    public private(set) var commits = 0

    /// Up to `limit` unacknowledged records with a `seq` greater than `after`, in `seq` order.
    public func pending(after: UInt64 = 0, limit: Int = .max) throws(SpoolError) -> [SpoolRecord] {
        try checkUsable()
        var result: [SpoolRecord] = []
        for segment in segments where result.count < limit {
            if let last = segment.lastSeq, last <= after { continue }
            if segment.pending == 0 { continue }
            var chosen: [Int] = []
            var index = max(segment.firstPending, segment.index(after: after))
            while index < segment.seqs.count && result.count + chosen.count < limit {
                if !segment.acknowledged[index] { chosen.append(index) }
                index += 1
            }
            guard let first = chosen.first, let last = chosen.last else { continue }
            let start = segment.offsets[first]
            let end = segment.offsets[last] + segment.lengths[last]
            let bytes: [UInt8]
            do { bytes = try segment.file.read(count: end - start, at: start) } catch {
                throw error
            }
            guard bytes.count == end - start else {
                throw SpoolError(.ioError, "a spool segment is shorter than its index", path: segment.file.path)
            }
            for i in chosen {
                let from = segment.offsets[i] - start
                result.append(
                    SpoolRecord(seq: segment.seqs[i], payload: Array(bytes[from..<from + segment.lengths[i]])))
            }
        }
        return result
    }

    /// Records that the broker confirmed the record `seq`: it is no longer pending, and its segment is deleted
    /// once every record in it is acknowledged (except the newest segment, which keeps the `seq` counter).
    ///
    /// Acknowledging a `seq` that is not pending does nothing.
    ///
    /// - Returns: Whether the record was pending.
    /// - Throws: ``SpoolError`` when the acknowledgement could not be written; it still holds in memory, so the
    ///   record is not returned by ``pending(after:limit:)`` again, but it may be replayed after a restart.
    @discardableResult
    public func acknowledge(seq: UInt64) throws(SpoolError) -> Bool {
        try checkUsable()
        guard let segment = segment(holding: seq), let index = segment.index(of: seq), !segment.acknowledged[index]
        else { return false }
        segment.acknowledged[index] = true
        segment.pending -= 1
        pendingTotal -= 1
        while segment.firstPending < segment.seqs.count && segment.acknowledged[segment.firstPending] {
            segment.firstPending += 1
        }
        if segment.pending == 0 && segment !== segments.last {
            try removeAcknowledgedSegments()
            return true
        }
        try writeAcknowledgement(seq, in: segment)
        unsyncedAcknowledgements += 1
        if unsyncedAcknowledgements >= configuration.acknowledgementSyncInterval {
            try syncAcknowledgements()
        }
        return true
    }

    /// Syncs the acknowledgements written so far, so that none of them is replayed even after a power loss.
    public func sync() throws(SpoolError) {
        try checkUsable()
        try syncAcknowledgements()
    }

    /// Syncs the acknowledgements and closes the files. Further calls throw ``SpoolError/Code/closed``.
    public func close() throws(SpoolError) {
        guard !closed else { return }
        defer {
            closed = true
            for segment in segments {
                segment.file.close()
                segment.acknowledgements?.close()
            }
            segments.removeAll()
            lock?.close()
            lock = nil
        }
        if failure == nil { try syncAcknowledgements() }
    }

    // MARK: Internals

    private func checkUsable() throws(SpoolError) {
        if closed { throw SpoolError(.closed, "the spool is closed", path: directory) }
        if let failure {
            throw SpoolError(
                .failed, "the spool must be reopened after a failed sync: \(failure.message)", path: failure.path,
                errno: failure.errno)
        }
    }

    private func fail(_ error: SpoolError) {
        if failure == nil {
            failure = error
            logger.warning(
                "Spool sync failed; the spool refuses further work until reopened",
                metadata: ["cta.spool.error": "\(error.debugDescription)"])
        }
    }

    private func segment(holding seq: UInt64) -> Segment? {
        var low = 0
        var high = segments.count
        while low < high {
            let mid = (low + high) / 2
            if segments[mid].firstSeq <= seq { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : segments[low - 1]
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    private func takeLock() throws(SpoolError) {
        let file = try SpoolFile.openOrCreate(path("lock"))
        let deadline = ContinuousClock.now + configuration.lockTimeout
        while flock(file.fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            guard errno == EWOULDBLOCK else {
                throw SpoolFile.error("cannot lock the spool directory", path: file.path)
            }
            guard ContinuousClock.now < deadline else {
                throw SpoolError(.busy, "another process is using this spool directory", path: file.path)
            }
            usleep(10_000)
        }
        lock = file
    }

    /// Creates a new, empty newest segment and makes its existence durable.
    @discardableResult
    private func startSegment(firstSeq: UInt64) throws(SpoolError) -> Segment {
        let name = SpoolFormat.segmentName(firstSeq: firstSeq)
        let file = try SpoolFile.create(path(name))
        do {
            try file.write(SpoolFormat.encodeSegmentHeader(.init(epoch: epoch, firstSeq: firstSeq)), at: 0)
            try file.sync()
            try SpoolFile.syncDirectory(directory)
        } catch {
            file.close()
            try? SpoolFile.remove(path(name))
            throw error
        }
        let segment = Segment(firstSeq: firstSeq, file: file, size: SpoolFormat.segmentHeaderSize)
        segments.append(segment)
        totalSize += segment.size
        logger.debug("Started a spool segment", metadata: ["cta.spool.segment": "\(name)"])
        return segment
    }

    /// Deletes every segment but the newest whose records are all acknowledged: first the segments, then (once
    /// that is durable) their acknowledgement files, so a power loss cannot bring back a segment without them.
    private func removeAcknowledgedSegments() throws(SpoolError) {
        let done = segments.dropLast().filter { $0.pending == 0 }
        guard !done.isEmpty else { return }
        for segment in done {
            segment.file.close()
            try SpoolFile.remove(segment.file.path)
            totalSize -= segment.size
            segments.removeAll { $0 === segment }
        }
        try SpoolFile.syncDirectory(directory)
        for segment in done {
            segment.acknowledgements?.close()
            try SpoolFile.remove(path(SpoolFormat.acknowledgementName(firstSeq: segment.firstSeq)))
        }
    }

    private func writeAcknowledgement(_ seq: UInt64, in segment: Segment) throws(SpoolError) {
        if segment.acknowledgements == nil {
            let name = path(SpoolFormat.acknowledgementName(firstSeq: segment.firstSeq))
            let file = try SpoolFile.openOrCreate(name)
            segment.acknowledgements = file
            segment.acknowledgementsSize = try file.size()
            directoryNeedsSync = true
        }
        guard let file = segment.acknowledgements else { return }
        let start = segment.acknowledgementsSize
        do {
            try file.write(SpoolFormat.encodeAcknowledgement(seq), at: start)
        } catch {
            try? file.truncate(to: start)
            throw error
        }
        segment.acknowledgementsSize += SpoolFormat.acknowledgementSize
        segment.acknowledgementsDirty = true
    }

    private func syncAcknowledgements() throws(SpoolError) {
        for segment in segments where segment.acknowledgementsDirty {
            do { try segment.acknowledgements?.sync() } catch {
                fail(error)
                throw error
            }
            segment.acknowledgementsDirty = false
        }
        if directoryNeedsSync {
            try SpoolFile.syncDirectory(directory)
            directoryNeedsSync = false
        }
        unsyncedAcknowledgements = 0
    }

    // MARK: Recovery

    private func recover() throws(SpoolError) {
        var damage: [SpoolDamage] = []
        let names = try SpoolFile.list(directory)
        for name in names where name.hasSuffix(".tmp") { try SpoolFile.remove(path(name)) }

        // The epoch file.
        var storedEpoch: SequenceEpoch?
        var epochFileDamaged = false
        if SpoolFile.exists(path(SpoolFormat.epochFileName)) {
            let bytes = try SpoolFile.open(path(SpoolFormat.epochFileName)).readAll()
            storedEpoch = SpoolFormat.decodeEpoch(bytes)
            epochFileDamaged = storedEpoch == nil
        }

        // Segment headers.
        var found: [(name: String, header: SpoolFormat.SegmentHeader, file: SpoolFile)] = []
        for name in names.sorted() {
            guard SpoolFormat.firstSeq(ofFileNamed: name, suffix: ".log") != nil else { continue }
            let file = try SpoolFile.open(path(name))
            let head = try file.read(count: SpoolFormat.segmentHeaderSize, at: 0)
            if let header = SpoolFormat.decodeSegmentHeader(head[...]), SpoolFormat.validSeqs.contains(header.firstSeq)
            {
                found.append((name, header, file))
                continue
            }
            let size = try file.size()
            file.close()
            if size <= SpoolFormat.segmentHeaderSize {
                // A crash while the segment was being created, before anything was written to it.
                logger.info(
                    "Removed a spool segment left incomplete by a crash", metadata: ["cta.spool.segment": "\(name)"])
                try SpoolFile.remove(path(name))
            } else {
                try SpoolFile.rename(path(name), to: path(name + ".damaged"))
                damage.append(SpoolDamage(kind: .damagedSegment, file: name, offset: 0, length: size, missingSeqs: nil))
            }
        }

        // Decide the epoch.
        var createdEpoch = false
        let candidate = storedEpoch ?? found.last?.header.epoch
        if let candidate {
            for entry in found where entry.header.epoch != candidate {
                let size = try entry.file.size()
                entry.file.close()
                try SpoolFile.rename(path(entry.name), to: path(entry.name + ".foreign"))
                damage.append(
                    SpoolDamage(kind: .foreignSegment, file: entry.name, offset: 0, length: size, missingSeqs: nil))
            }
            found.removeAll { $0.header.epoch != candidate }
        }
        if let candidate, !found.isEmpty {
            epoch = candidate
            if storedEpoch == nil {
                try writeEpochFile()
                logger.warning(
                    "Spool epoch file was missing or unreadable; restored it from the segments",
                    metadata: ["cta.spool.epoch": "\(epoch)"])
            }
        } else {
            epoch = SequenceEpoch()
            createdEpoch = true
            if storedEpoch != nil || epochFileDamaged {
                damage.append(
                    SpoolDamage(
                        kind: .lostSpool, file: SpoolFormat.epochFileName, offset: 0, length: 0, missingSeqs: nil))
                logger.warning(
                    "Spool was lost or unreadable; starting a new epoch at seq 1",
                    metadata: [
                        "cta.spool.epoch": "\(epoch)",
                        "cta.spool.previousEpoch": "\(storedEpoch.map { "\($0)" } ?? "unreadable")",
                    ])
            } else {
                logger.info("Created a new spool", metadata: ["cta.spool.epoch": "\(epoch)"])
            }
            // The segment first, so that an epoch file never exists without a segment holding its counter.
            try startSegment(firstSeq: 1)
            try writeEpochFile()
        }

        // Records.
        var lastSeen: UInt64 = 0
        for (position, entry) in found.enumerated() {
            let isNewest = position == found.count - 1
            let segment = try scan(
                entry.name, entry.header, entry.file, isNewest: isNewest, after: &lastSeen, damage: &damage)
            segments.append(segment)
            totalSize += segment.size
        }
        if let newest = segments.last { nextSeq = max(newest.firstSeq, lastSeen + 1) }

        // Acknowledgements.
        for name in names {
            guard let firstSeq = SpoolFormat.firstSeq(ofFileNamed: name, suffix: ".acks") else { continue }
            guard let segment = segments.first(where: { $0.firstSeq == firstSeq }) else {
                try SpoolFile.remove(path(name))  // its segment was deleted; the acknowledgements are moot
                continue
            }
            try loadAcknowledgements(name, into: segment, damage: &damage)
        }
        pendingTotal = segments.reduce(0) { $0 + $1.pending }
        try removeAcknowledgedSegments()

        recovery = SpoolRecovery(
            epoch: epoch, createdEpoch: createdEpoch, lastSeq: nextSeq - 1, pendingRecords: pendingTotal, damage: damage
        )
        for item in damage {
            logger.warning(
                "Spool damage found and repaired on open",
                metadata: [
                    "cta.spool.damage": "\(item.kind)", "cta.spool.file": "\(item.file)",
                    "cta.spool.offset": "\(item.offset)", "cta.spool.length": "\(item.length)",
                    "cta.spool.missingSeqs": "\(item.missingSeqs.map { "\($0.lowerBound)...\($0.upperBound)" } ?? "-")",
                ])
        }
        logger.info(
            "Spool opened",
            metadata: [
                "cta.spool.epoch": "\(epoch)", "cta.spool.lastSeq": "\(lastSeq)",
                "cta.spool.pending": "\(pendingTotal)", "cta.spool.segments": "\(segments.count)",
            ])
    }

    private func writeEpochFile() throws(SpoolError) {
        let temporary = path(SpoolFormat.epochFileName + ".tmp")
        try? SpoolFile.remove(temporary)
        let file = try SpoolFile.create(temporary)
        try file.write(SpoolFormat.encodeEpoch(epoch), at: 0)
        try file.sync()
        file.close()
        try SpoolFile.rename(temporary, to: path(SpoolFormat.epochFileName))
        try SpoolFile.syncDirectory(directory)
    }

    /// Reads one segment's records into an index, cutting a torn tail off the newest segment.
    private func scan(
        _ name: String,
        _ header: SpoolFormat.SegmentHeader,
        _ file: SpoolFile,
        isNewest: Bool,
        after lastSeen: inout UInt64,
        damage: inout [SpoolDamage]
    ) throws(SpoolError) -> Segment {
        let bytes = try file.readAll()
        let segment = Segment(firstSeq: header.firstSeq, file: file, size: bytes.count)
        let maximumLength = configuration.maximumRecordSize
        let floor = max(lastSeen, header.firstSeq - 1)
        var previous = floor
        func intact(at offset: Int) -> SpoolFormat.RecordLocation? {
            guard let record = SpoolFormat.record(in: bytes, at: offset, maximumLength: maximumLength),
                record.seq > previous, SpoolFormat.validSeqs.contains(record.seq)
            else { return nil }
            return record
        }
        var offset = SpoolFormat.segmentHeaderSize
        while offset < bytes.count {
            if let record = intact(at: offset) {
                segment.seqs.append(record.seq)
                segment.offsets.append(record.offset + SpoolFormat.recordHeaderSize)
                segment.lengths.append(record.length)
                segment.acknowledged.append(false)
                previous = record.seq
                offset = record.end
                continue
            }
            // Damage: look for the next intact record.
            var probe = offset + 1
            var next: SpoolFormat.RecordLocation?
            while let candidate = SpoolFormat.nextMagic(in: bytes, from: probe) {
                if let record = intact(at: candidate) {
                    next = record
                    break
                }
                probe = candidate + 1
            }
            if let next {
                let missing: ClosedRange<UInt64>? = next.seq > previous + 1 ? (previous + 1)...(next.seq - 1) : nil
                damage.append(
                    SpoolDamage(
                        kind: .corruptRecords, file: name, offset: offset, length: next.offset - offset,
                        missingSeqs: missing))
                offset = next.offset
                continue
            }
            damage.append(
                SpoolDamage(kind: .tornTail, file: name, offset: offset, length: bytes.count - offset, missingSeqs: nil)
            )
            if isNewest {
                try file.truncate(to: offset)
                segment.size = offset
            }
            break
        }
        // A record whose append never returned may still sit unsynced in the page cache. Once the spool hands it
        // out, it must not vanish in a later power loss (its seq would be given out again), so sync it now.
        try file.sync()
        segment.pending = segment.seqs.count
        lastSeen = max(previous, lastSeen)
        return segment
    }

    private func loadAcknowledgements(
        _ name: String,
        into segment: Segment,
        damage: inout [SpoolDamage]
    ) throws(SpoolError) {
        let file = try SpoolFile.open(path(name))
        let bytes = try file.readAll()
        let decoded = SpoolFormat.decodeAcknowledgements(bytes)
        if decoded.damaged > 0 || decoded.wholeBytes < bytes.count {
            damage.append(
                SpoolDamage(
                    kind: .damagedAcknowledgements, file: name, offset: 0, length: bytes.count,
                    missingSeqs: nil))
            if decoded.wholeBytes < bytes.count { try file.truncate(to: decoded.wholeBytes) }
        }
        for seq in decoded.seqs {
            guard let index = segment.index(of: seq), !segment.acknowledged[index] else { continue }
            segment.acknowledged[index] = true
            segment.pending -= 1
        }
        while segment.firstPending < segment.seqs.count && segment.acknowledged[segment.firstPending] {
            segment.firstPending += 1
        }
        try file.sync()  // entries a crashed process wrote unsynced: the replay bound starts afresh
        segment.acknowledgements = file
        segment.acknowledgementsSize = decoded.wholeBytes
    }
}
