public import CTACore
import Foundation
public import Logging

/// The agent's durable outgoing-event spool, for async code: a ``SpoolCore`` confined to a dedicated thread.
///
/// Every outgoing agent event is appended here before it is published, read back with ``pending(after:limit:)`` by
/// the publisher, and acknowledged with ``acknowledge(seq:)`` once the broker confirmed it. After a broker outage or
/// a restart the publisher simply starts again from ``pending(after:limit:)``: the records come back in `seq` order
/// with their original bytes (and therefore their original event `id`, `epoch` and `seq`).
///
/// File I/O blocks, so none of it runs on Swift's cooperative thread pool: calls are queued to the spool's own
/// thread and resumed through continuations. Appends that queue up while the thread is syncing are committed
/// together with one `fdatasync` (group commit, at most ``SpoolConfiguration/groupCommitLimit`` requests at a
/// time), so many concurrent writers cost one sync per round rather than one each. Each request still succeeds or
/// fails on its own: a request whose record builder throws, or that does not fit, fails alone; a failed write or
/// sync fails every request of that commit.
///
/// A call that returned is durable; a task cancelled while waiting still waits for its call to finish, because the
/// record may already be on disk.
public final class Spool: Sendable {
    /// The epoch every `seq` of this spool belongs to.
    public let epoch: SequenceEpoch
    /// What opening the spool found (damage repaired, a new epoch, records waiting).
    public let recovery: SpoolRecovery
    /// The spool directory.
    public let directory: String

    private let worker: SpoolWorker

    private init(worker: SpoolWorker, recovery: SpoolRecovery, directory: String) {
        self.worker = worker
        self.recovery = recovery
        self.epoch = recovery.epoch
        self.directory = directory
    }

    deinit {
        worker.stop()
    }

    /// Opens (or creates) the spool in `directory` on a new thread and recovers its contents.
    ///
    /// - Throws: ``SpoolError`` as ``SpoolCore/init(directory:configuration:logger:)`` does.
    public static func open(
        directory: String,
        configuration: SpoolConfiguration = SpoolConfiguration(),
        logger: Logger
    ) async throws(SpoolError) -> Spool {
        let worker = SpoolWorker(groupCommitLimit: configuration.groupCommitLimit)
        let recovery = try await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<SpoolRecovery, SpoolError>, Never>) in
            worker.start(name: "cta-spool") { () throws(SpoolError) -> SpoolCore in
                try SpoolCore(directory: directory, configuration: configuration, logger: logger)
            } opened: { result in
                continuation.resume(returning: result)
            }
        }.get()
        return Spool(worker: worker, recovery: recovery, directory: directory)
    }

    /// Appends one record durably; `makeRecord` (run on the spool's thread) receives the epoch and the assigned
    /// `seq` and returns the bytes to store.
    ///
    /// - Returns: The `seq` assigned.
    /// - Throws: ``SpoolError``, or what `makeRecord` threw; in both cases nothing was appended.
    @discardableResult
    public func append(_ makeRecord: @escaping @Sendable (SequenceEpoch, UInt64) throws -> [UInt8]) async throws
        -> UInt64
    {
        try await append(count: 1) { epoch, seq, _ in try makeRecord(epoch, seq) }.lowerBound
    }

    /// Appends `count` records durably as one unit: consecutive `seq`s, one sync, all or none.
    ///
    /// - Returns: The `seq`s assigned.
    /// - Throws: ``SpoolError``, or what `makeRecord` threw; in both cases none of the records was appended.
    @discardableResult
    public func append(
        count: Int,
        _ makeRecord: @escaping @Sendable (SequenceEpoch, UInt64, Int) throws -> [UInt8]
    ) async throws -> ClosedRange<UInt64> {
        precondition(count >= 1, "append(count:) needs at least one record")
        return try await withCheckedThrowingContinuation { continuation in
            worker.submit(.append(count: count, make: makeRecord) { continuation.resume(with: $0) })
        }
    }

    /// Up to `limit` unacknowledged records with a `seq` greater than `after`, in `seq` order.
    public func pending(after: UInt64 = 0, limit: Int = 1024) async throws(SpoolError) -> [SpoolRecord] {
        try await perform { core throws(SpoolError) in try core.pending(after: after, limit: limit) }
    }

    /// Acknowledges one record (see ``SpoolCore/acknowledge(seq:)``).
    ///
    /// - Returns: Whether the record was pending.
    @discardableResult
    public func acknowledge(seq: UInt64) async throws(SpoolError) -> Bool {
        try await perform { core throws(SpoolError) in try core.acknowledge(seq: seq) }
    }

    /// Acknowledges several records in one trip to the spool's thread.
    ///
    /// - Returns: How many of them were pending.
    @discardableResult
    public func acknowledge(seqs: some Sequence<UInt64> & Sendable) async throws(SpoolError) -> Int {
        try await perform { core throws(SpoolError) in
            var count = 0
            for seq in seqs where try core.acknowledge(seq: seq) { count += 1 }
            return count
        }
    }

    /// The highest `seq` assigned so far, how many records wait for an acknowledgement, the bytes the segments
    /// hold, and how many commits (syncs of a segment) were made since the spool was opened.
    public func state() async throws(SpoolError) -> (lastSeq: UInt64, pending: Int, size: Int, commits: Int) {
        try await perform { core in (core.lastSeq, core.pendingCount, core.size, core.commits) }
    }

    /// Syncs the acknowledgements written so far.
    public func sync() async throws(SpoolError) {
        try await perform { core throws(SpoolError) in try core.sync() }
    }

    /// Syncs, closes the files and ends the spool's thread. Later calls throw ``SpoolError/Code/closed``.
    public func close() async throws(SpoolError) {
        try await perform { core throws(SpoolError) in try core.close() }
        worker.stop()
    }

    private func perform<T: Sendable>(
        _ body: @escaping @Sendable (SpoolCore) throws(SpoolError) -> T
    ) async throws(SpoolError) -> T {
        try await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, SpoolError>, Never>) in
            worker.submit(
                .call { core in
                    guard let core else {
                        continuation.resume(returning: .failure(SpoolError(.closed, "the spool is closed")))
                        return
                    }
                    do throws(SpoolError) {
                        continuation.resume(returning: .success(try body(core)))
                    } catch {
                        continuation.resume(returning: .failure(error))
                    }
                })
        }.get()
    }
}

/// The thread that owns a ``SpoolCore`` and runs the jobs queued for it, gathering consecutive appends into one
/// commit.
///
/// - Important: `jobs`, `state` are read and written only while `condition` is locked; `core` is written once by the
///   worker thread before its loop and then read and used only by that thread. Jobs carry only `@Sendable`
///   closures. That is why the class may be `@unchecked Sendable`.
final class SpoolWorker: @unchecked Sendable {
    enum Job {
        /// Stage and commit records; the completion runs on the worker thread.
        case append(
            count: Int,
            make: @Sendable (SequenceEpoch, UInt64, Int) throws -> [UInt8],
            completion: @Sendable (Result<ClosedRange<UInt64>, any Error>) -> Void
        )
        /// Run a closure with the core (nil when the spool is closed or failed to open).
        case call(@Sendable (SpoolCore?) -> Void)
    }

    private enum State { case idle, running, stopping, stopped }

    private let condition = NSCondition()
    private let groupCommitLimit: Int
    private var jobs: [Job] = []
    private var state = State.idle
    private var core: SpoolCore?

    init(groupCommitLimit: Int) {
        self.groupCommitLimit = groupCommitLimit
    }

    /// Starts the thread, which opens the core with `open` and reports the outcome through `opened`.
    func start(
        name: String,
        open: @escaping @Sendable () throws(SpoolError) -> SpoolCore,
        opened: @escaping @Sendable (Result<SpoolRecovery, SpoolError>) -> Void
    ) {
        condition.lock()
        state = .running
        condition.unlock()
        let thread = Thread { [self] in
            do throws(SpoolError) {
                let core = try open()
                self.core = core
                opened(.success(core.recovery))
            } catch {
                self.stop()
                opened(.failure(error))
            }
            self.loop()
        }
        thread.name = name
        thread.start()
    }

    /// Queues a job. After ``stop()`` the job runs at once on the caller's thread, as if the spool were closed.
    func submit(_ job: Job) {
        condition.lock()
        guard state == .running else {
            condition.unlock()
            Self.reject(job)
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread finish the queued jobs, close the core and end.
    func stop() {
        condition.lock()
        if state == .running || state == .idle { state = .stopping }
        condition.signal()
        condition.unlock()
    }

    private static func reject(_ job: Job) {
        switch job {
        case .append(_, _, let completion): completion(.failure(SpoolError(.closed, "the spool is closed")))
        case .call(let body): body(nil)
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && state == .running { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            let finished = batch.isEmpty
            if finished { state = .stopped }
            condition.unlock()
            if finished { break }
            run(batch)
        }
        try? core?.close()
        core = nil
    }

    private func run(_ batch: [Job]) {
        var index = 0
        while index < batch.count {
            guard case .append = batch[index] else {
                if case .call(let body) = batch[index] { body(core) }
                index += 1
                continue
            }
            var group:
                [(
                    range: Result<ClosedRange<UInt64>, any Error>,
                    completion: @Sendable (Result<ClosedRange<UInt64>, any Error>) -> Void
                )] = []
            while index < batch.count, group.count < groupCommitLimit,
                case .append(let count, let make, let completion) = batch[index]
            {
                guard let core else {
                    group.append((.failure(SpoolError(.closed, "the spool is closed")), completion))
                    index += 1
                    continue
                }
                do {
                    group.append((.success(try core.stage(count: count, make)), completion))
                } catch {
                    group.append((.failure(error), completion))
                }
                index += 1
            }
            var commitError: SpoolError?
            do throws(SpoolError) { try core?.commit() } catch { commitError = error }
            for (range, completion) in group {
                if let commitError, case .success = range {
                    completion(.failure(commitError))
                } else {
                    completion(range)
                }
            }
        }
    }
}
