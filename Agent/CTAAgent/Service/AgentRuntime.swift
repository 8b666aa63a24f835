public import CTACore
import Foundation
public import Logging

/// The running agent: takes work from its queues, runs it, reports every state and result through the ``Outbox``,
/// and honours cancels, drains, timeouts and shutdown, as `docs/protocol.md` describes.
///
/// Slots: ``Settings/maxConcurrentExecutions`` units of work run at once. A unit is a whole dispatch (mono,
/// stress, group: its tests run one after the other) or one test of a parallel execution. Work from the machine
/// queue is taken eagerly (control events must never wait behind it) and waits locally for a slot; shared queues
/// (groups, parallel executions) are consumed only while a slot is free, so no work is hoarded.
///
/// Every taken message is in the ``WorkJournal`` (synced) before it is acked; every event is in the spool before it
/// is published. After a crash the journal tells which tests were interrupted (reported `inconclusive`) and which
/// were never started (run now).
public actor AgentRuntime {
    /// What the runtime needs to know.
    public struct Settings: Sendable {
        public var machine: MachineName
        public var groups: [GroupName]
        public var maxConcurrentExecutions: Int
        public var heartbeatInterval: Duration
        /// How long running work may take to finish after a graceful shutdown request before it is cancelled.
        public var shutdownBudget: Duration
        /// Where per-test directories are made.
        public var workDirectory: String
        /// The registration sent on start (facts, tags, groups).
        public var registration: AgentRegistration
        /// The load average for heartbeats.
        public var loadAverage: @Sendable () -> LoadAverage
        /// How long the spool may take to empty at shutdown before the agent exits anyway (it replays on start).
        public var shutdownFlushTimeout: Duration

        public init(
            machine: MachineName, groups: [GroupName], maxConcurrentExecutions: Int, heartbeatInterval: Duration,
            shutdownBudget: Duration, workDirectory: String, registration: AgentRegistration,
            loadAverage: @escaping @Sendable () -> LoadAverage, shutdownFlushTimeout: Duration = .seconds(10)
        ) {
            self.machine = machine
            self.groups = groups
            self.maxConcurrentExecutions = maxConcurrentExecutions
            self.heartbeatInterval = heartbeatInterval
            self.shutdownBudget = shutdownBudget
            self.workDirectory = workDirectory
            self.registration = registration
            self.loadAverage = loadAverage
            self.shutdownFlushTimeout = shutdownFlushTimeout
        }
    }

    private enum Control: Sendable { case shutdown, cancelNow }

    /// One unit of work waiting for or holding a slot.
    private enum Unit: Sendable {
        case dispatch(PartKey, ExecutionDispatch, resume: PartProgress?)
        case test(PartKey, TestDispatch)
    }

    /// One execution attempt on this machine.
    private struct Part {
        var key: PartKey
        var execution: ExecutionContext
        var parallelQueue: String?
        var firstSeq: UInt64?
        var lastSeq: UInt64 = 0
        var counts = ResultCounts()
        var runningAt: Timestamp?
        var runningTimer: Task<Void, Never>?
        var controls: [ObjectIdentifier: TestControl] = [:]
        var activeUnits = 0
        var queuedUnits = 0
        var stop: (cause: CancelCause, reason: String)?
        var queueGone = false
        var finalSent = false
        var ackedEmitted = false
        var takenIDs: [EventID] = []
    }

    private enum Consumer {
        case starting
        /// A consumer, its reader, and its generation: a delivery read after the consumer was stopped belongs to
        /// an old generation and is left alone (the broker has put it back in the queue).
        case running(IncomingStream, Task<Void, Never>, generation: Int)
    }

    private let settings: Settings
    private let transport: any AgentTransport
    private let outbox: Outbox
    private let journal: WorkJournal
    private let executor: TestExecutor
    private let logger: Logger
    private let controlStream: AsyncStream<Control>
    private let controlContinuation: AsyncStream<Control>.Continuation

    private var parts: [PartKey: Part] = [:]
    private var localQueue: [Unit] = []
    private var busySlots = 0
    private var tombstones: [ExecutionID: Tombstone] = [:]
    /// Ids of work messages taken (and when), so a redelivery is recognised; forgotten after
    /// ``knownIDRetention`` like the journal's record of finished work.
    private var knownIDs = KnownIDs()
    private var draining = false
    private var shuttingDown = false
    private var cancellingAll = false
    private var consumers: [String: Consumer] = [:]
    private var consumerGeneration = 0
    /// Deliveries of each shared queue being taken: its consumer is not stopped before they are settled, or the
    /// broker would hand them to another agent while this one runs them.
    private var unsettled: [String: Int] = [:]
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    private var startTask: Task<Void, any Error>?
    private let shutdownReason = "the agent was stopped (SIGTERM or SIGINT)"

    public init(
        settings: Settings, transport: any AgentTransport, outbox: Outbox, journal: WorkJournal,
        executor: TestExecutor, logger: Logger
    ) {
        self.settings = settings
        self.transport = transport
        self.outbox = outbox
        self.journal = journal
        self.executor = executor
        self.logger = logger
        (controlStream, controlContinuation) = AsyncStream<Control>.makeStream()
    }

    /// Asks the agent to stop gracefully: no new work; running work gets ``Settings/shutdownBudget`` to finish.
    public nonisolated func requestShutdown() { controlContinuation.yield(.shutdown) }

    /// Cancels running work at once (a second signal); ``run()`` then ends as after a graceful shutdown.
    public nonisolated func cancelRunningWork() { controlContinuation.yield(.cancelNow) }

    /// Free slots now.
    public var freeSlots: Int { max(0, settings.maxConcurrentExecutions - busySlots) }

    /// Runs the agent until a shutdown completes. Cancelling the calling task cancels running work and shuts down.
    public func run() async throws {
        let controls = Task {
            for await control in self.controlStream { await self.handle(control) }
        }
        defer { controls.cancel() }
        try await withTaskCancellationHandler {
            let starting = Task { try await self.start() }
            startTask = starting
            do {
                try await starting.value
            } catch {
                startTask = nil
                // A stop requested while still connecting is a clean stop, not a failure.
                if shuttingDown { return }
                throw error
            }
            startTask = nil
            if shuttingDown { return }
            // Publishing starts once the transport is up; the spool keeps everything until then.
            let publisher = Task { [outbox, transport] in await outbox.run(transport: transport) }
            defer { publisher.cancel() }
            let heartbeat = Task { await self.heartbeatLoop() }
            let machineQueue = Topology.machineQueue(settings.machine)
            let machineConsumer = Task { await self.consumeMachineQueue(machineQueue) }

            await waitForShutdown()
            // Running work gets the budget, then it is cancelled; a second signal cancels it at once.
            let budget = Task {
                try? await Task.sleep(for: self.settings.shutdownBudget)
                if !Task.isCancelled { await self.handle(.cancelNow) }
            }
            await waitUntilIdle()
            budget.cancel()
            await finishOpenParts()
            do {
                try await outbox.append([
                    .agentShutdown(AgentShutdown(machine: settings.machine, reason: shutdownReason, running: []))
                ])
            } catch {
                logger.error("cannot spool the shutdown event", metadata: ["cta.error": "\(error)"])
            }
            heartbeat.cancel()
            // Not cancelled with this task: a second signal still gets the spool flushed for a moment.
            let flush = Task { [outbox, settings] in await outbox.drain(timeout: settings.shutdownFlushTimeout) }
            if !(await flush.value) {
                logger.warning("events remain in the spool; they are sent on the next start")
            }
            machineConsumer.cancel()
            await stopConsumer(machineQueue)
            for queue in Array(consumers.keys) { await stopConsumer(queue) }
            publisher.cancel()
            await publisher.value
            await transport.close()
            logger.info("agent stopped")
        } onCancel: {
            controlContinuation.yield(.cancelNow)
        }
    }

    private func handle(_ control: Control) async {
        switch control {
        case .shutdown:
            guard !shuttingDown else { return }
            if let startTask {
                // Still connecting: nothing runs yet, stop at once.
                shuttingDown = true
                startTask.cancel()
            } else {
                await beginShutdown()
            }
        case .cancelNow:
            if let startTask {
                shuttingDown = true
                startTask.cancel()
                return
            }
            if !shuttingDown { await beginShutdown() }
            stopAll(cause: .system, reason: "the agent is shutting down", testCause: .shutdown)
        }
        let waiters = shutdownWaiters
        shutdownWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    private func waitForShutdown() async {
        while !shuttingDown {
            await withCheckedContinuation { shutdownWaiters.append($0) }
        }
    }

    // MARK: Start

    private func start() async throws {
        for tombstone in try await journal.loadTombstones() where tombstone.until > .now() {
            tombstones[tombstone.executionID] = tombstone
        }
        draining = try await journal.loadDraining()
        for id in try await journal.loadFinishedIDs() { knownIDs.insert(id) }
        let leftovers = try await journal.load()

        try await transport.declare(machine: settings.machine, groups: settings.groups)
        logger.info("connected", metadata: ["cta.machine": "\(settings.machine)", "cta.draining": "\(draining)"])

        var registration = settings.registration
        registration.startedAt = .now()
        try await outbox.append([.agentRegistration(registration)])

        if !leftovers.isEmpty { await resume(leftovers) }
        reconcileConsumers()
    }

    /// Picks up the work a previous run of the agent left unfinished.
    private func resume(_ leftovers: [PartProgress]) async {
        let epoch = outbox.spool.epoch.description
        var orphaned: [ExecutionID] = []
        for progress in leftovers where !progress.finished {
            orphaned.append(progress.key.executionID)
        }
        if !orphaned.isEmpty { await OrphanProcesses.kill(executions: orphaned, logger: logger) }

        for progress in leftovers {
            if progress.finished {
                try? await journal.saveFinishedIDs(progress.taken.map(\.id))
                try? await journal.remove(progress.key)
                continue
            }
            if let recorded = progress.epoch, recorded != epoch {
                logger.error(
                    "the spool was replaced; unfinished work from the old spool is given up",
                    metadata: ["cta.part": "\(progress.key)"])
                try? await journal.remove(progress.key)
                continue
            }
            for taken in progress.taken { knownIDs.insert(taken.id) }
            logger.info(
                "resuming work interrupted by a restart",
                metadata: ["cta.part": "\(progress.key)", "cta.results.reported": "\(progress.counts.total)"])
            if let announced = progress.announced {
                await resumeParallel(progress, queue: announced.queue)
            } else if let first = progress.taken.first,
                case .executionDispatch(let dispatch)? = try? Envelope.decode(Data(first.body)).event
            {
                var part = Part(key: progress.key, execution: dispatch.execution)
                part.firstSeq = progress.ackedSeq
                part.ackedEmitted = progress.ackedSeq != nil
                part.lastSeq = progress.lastSeq
                part.counts = progress.counts
                part.runningAt = progress.runningAt
                part.takenIDs = progress.taken.map(\.id)
                part.queuedUnits = 1
                parts[progress.key] = part
                if progress.ackedSeq == nil { await emitState(progress.key, .acked) }
                applyTombstone(progress.key)
                localQueue.append(.dispatch(progress.key, dispatch, resume: progress))
            } else {
                logger.error("unreadable work journal; giving it up", metadata: ["cta.part": "\(progress.key)"])
                try? await journal.remove(progress.key)
            }
        }
        schedule()
    }

    private func resumeParallel(_ progress: PartProgress, queue: String) async {
        guard let body = progress.announcement,
            case .executionDispatch(let announcement)? = try? Envelope.decode(Data(body)).event
        else {
            logger.error("unreadable parallel announcement in the journal; giving it up", metadata: ["cta.part": "\(progress.key)"])
            try? await journal.remove(progress.key)
            return
        }
        var part = Part(key: progress.key, execution: announcement.execution)
        part.parallelQueue = queue
        part.firstSeq = progress.ackedSeq
        part.ackedEmitted = progress.ackedSeq != nil
        part.lastSeq = progress.lastSeq
        part.counts = progress.counts
        part.runningAt = progress.runningAt
        part.takenIDs = progress.taken.map(\.id)
        for taken in progress.taken {
            if case .executionTest(let test)? = try? Envelope.decode(Data(taken.body)).event {
                let key = Self.testKey(index: test.index)
                if !progress.reported.contains(key) {
                    parts[progress.key] = part
                    await reportInterrupted(progress.key, test: test.test, index: test.index, attempt: test.attempt, key: key)
                    part = parts[progress.key] ?? part
                }
            }
        }
        parts[progress.key] = part
        if part.runningAt != nil { startRunningTimer(progress.key) }
        applyTombstone(progress.key)
        let exists = (try? await transport.queueExists(queue)) ?? true
        if !exists { parts[progress.key]?.queueGone = true }
        await finishIfDone(progress.key)
    }

    // MARK: Machine queue

    private func consumeMachineQueue(_ queue: String) async {
        var delay = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                let stream = try await transport.consume(queue: queue, prefetch: 16)
                consumerGeneration += 1
                consumers[queue] = .running(stream, Task {}, generation: consumerGeneration)
                delay = .milliseconds(200)
                for try await message in stream { await handleMachineMessage(message) }
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning("machine queue consumer ended; resubscribing", metadata: ["cta.error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
    }

    private func handleMachineMessage(_ message: IncomingMessage) async {
        let envelope: Envelope
        do {
            envelope = try Envelope.decode(Data(message.body), accepting: Topology.machineQueueTypes)
        } catch {
            await message.reject(error)
            return
        }
        switch envelope.event {
        case .executionCancel(let cancel):
            await handleCancel(cancel, message: message)
        case .agentDrain(let drain):
            guard drain.machine == settings.machine else {
                await message.reject(WireError(code: .invalidValue, path: "payload.machine", reason: "this is the queue of \(settings.machine)"))
                return
            }
            draining = drain.drain
            do { try await journal.saveDraining(drain.drain) } catch {
                logger.error("cannot store the drain flag", metadata: ["cta.error": "\(error)"])
            }
            await message.ack()
            logger.info(drain.drain ? "drained" : "resumed", metadata: ["cta.reason": "\(drain.reason ?? "")"])
            reconcileConsumers()
        case .executionDispatch(let dispatch):
            if dispatch.execution.runMode == .parallel {
                await handleAnnouncement(dispatch, id: envelope.id, message: message)
            } else {
                await takeDispatch(dispatch, id: envelope.id, message: message, slotReserved: false)
            }
        default:
            await message.reject(WireError(code: .unexpectedType, path: "type", reason: "\(envelope.type.rawValue) is not accepted here"))
        }
    }

    private func handleCancel(_ cancel: ExecutionCancel, message: IncomingMessage) async {
        let tombstone = Tombstone(
            executionID: cancel.executionID, cause: cancel.cause, reason: cancel.reason, until: cancel.tombstoneUntil)
        tombstones[cancel.executionID] = tombstone
        let now = Timestamp.now()
        tombstones = tombstones.filter { $0.value.until > now || $0.key == cancel.executionID }
        do {
            try await journal.saveTombstones(Array(tombstones.values))
        } catch {
            logger.error("cannot store a tombstone", metadata: ["cta.error": "\(error)"])
            await message.release()
            return
        }
        await message.ack()
        logger.info(
            "execution cancelled",
            metadata: ["cta.execution.id": "\(cancel.executionID)", "cta.cause": "\(cancel.cause.rawValue)"])
        for key in parts.keys where key.executionID == cancel.executionID {
            applyTombstone(key)
            await finishIfDone(key)
        }
        reconcileConsumers()
    }

    /// Marks a part stopped when its execution has a tombstone, and stops its running tests.
    private func applyTombstone(_ key: PartKey) {
        guard let tombstone = tombstones[key.executionID], var part = parts[key], part.stop == nil else { return }
        part.stop = (tombstone.cause, tombstone.reason)
        let cause: TestStopCause = tombstone.cause == .timeout ? .executionTimeout : .cancelled(reason: tombstone.reason)
        for control in part.controls.values { control.stop(cause) }
        parts[key] = part
    }

    // MARK: Taking work

    /// Takes a mono, stress or group dispatch: journal (synced), ack, `acked`, then queue or start it.
    private func takeDispatch(_ dispatch: ExecutionDispatch, id: EventID, message: IncomingMessage, slotReserved: Bool) async {
        let key = PartKey(executionID: dispatch.execution.executionID, attempt: dispatch.attempt)
        if knownIDs.contains(id) || parts[key] != nil {
            if slotReserved { releaseSlot() }
            await message.ack()
            logger.info("ignoring work already taken", metadata: ["cta.event.id": "\(id)", "cta.part": "\(key)"])
            return
        }
        if slotReserved, shuttingDown || draining {
            releaseSlot()
            await message.release()
            return
        }
        if shuttingDown {
            // From the machine queue: left unsettled, it goes back to the queue when the agent stops consuming.
            // Released now, the broker would hand it straight back, again and again until the agent exits.
            logger.info("not taking work while shutting down", metadata: ["cta.part": "\(key)"])
            return
        }
        knownIDs.insert(id)
        var part = Part(key: key, execution: dispatch.execution)
        part.takenIDs = [id]
        part.queuedUnits = 1
        parts[key] = part
        do {
            try await journal.take(key, id: id, body: message.body, epoch: outbox.spool.epoch)
        } catch {
            logger.error("cannot journal taken work; it goes back to the queue", metadata: ["cta.error": "\(error)"])
            parts[key] = nil
            knownIDs.remove(id)
            if slotReserved { releaseSlot() }
            await message.release()
            return
        }
        await message.ack()
        await emitState(key, .acked)
        applyTombstone(key)
        logger.info(
            "work taken",
            metadata: ["cta.execution.id": "\(key.executionID)", "cta.run.mode": "\(dispatch.execution.runMode.rawValue)", "cta.tests": "\(dispatch.tests.count)"])
        if shuttingDown {
            // The shutdown began while this work was being taken: it ends like the work it found queued.
            if slotReserved { releaseSlot() }
            await endUnstarted(key)
            return
        }
        if slotReserved {
            startUnit(.dispatch(key, dispatch, resume: nil))
        } else {
            localQueue.append(.dispatch(key, dispatch, resume: nil))
            schedule()
        }
    }

    private func handleAnnouncement(_ dispatch: ExecutionDispatch, id: EventID, message: IncomingMessage) async {
        guard let parallel = dispatch.parallel else {
            await message.reject(WireError(code: .missingField, path: "payload.parallel", reason: "a parallel dispatch names its queue"))
            return
        }
        let key = PartKey(executionID: dispatch.execution.executionID, attempt: dispatch.attempt)
        if tombstones[key.executionID] != nil || parts[key] != nil || knownIDs.contains(id) {
            await message.ack()
            return
        }
        let exists: Bool
        do {
            exists = try await transport.queueExists(parallel.queue)
        } catch {
            await message.release()
            return
        }
        guard exists else {
            // The execution's queue is gone: it ended before this machine could take part.
            await message.ack()
            logger.info("parallel queue already gone; announcement dropped", metadata: ["cta.queue": "\(parallel.queue)"])
            return
        }
        var part = Part(key: key, execution: dispatch.execution)
        part.parallelQueue = parallel.queue
        part.takenIDs = [id]
        parts[key] = part
        knownIDs.insert(id)
        do {
            try await journal.announce(
                key, queue: parallel.queue, testCount: parallel.testCount, body: message.body, epoch: outbox.spool.epoch)
        } catch {
            parts[key] = nil
            knownIDs.remove(id)
            await message.release()
            return
        }
        await message.ack()
        logger.info("joined a parallel execution", metadata: ["cta.queue": "\(parallel.queue)"])
        reconcileConsumers()
    }

    private func handleSharedMessage(_ message: IncomingMessage, generation: Int) async {
        guard case .running(_, _, let current) = consumers[message.queue], current == generation else {
            // Read after its consumer was stopped: the broker has requeued it for someone else.
            return
        }
        unsettled[message.queue, default: 0] += 1
        defer {
            unsettled[message.queue, default: 1] -= 1
            reconcileConsumers()
        }
        let isParallel = message.queue.hasPrefix("cta.parallel.")
        let accepted = isParallel ? Topology.parallelQueueTypes : Topology.groupQueueTypes
        let envelope: Envelope
        do {
            envelope = try Envelope.decode(Data(message.body), accepting: accepted)
        } catch {
            await message.reject(error)
            return
        }
        if knownIDs.contains(envelope.id) {
            await message.ack()
            return
        }
        guard freeSlots > 0, !draining, !shuttingDown else {
            await message.release()
            return
        }
        busySlots += 1  // reserved before any suspension
        switch envelope.event {
        case .executionDispatch(let dispatch):
            guard dispatch.execution.runMode != .parallel else {
                releaseSlot()
                await message.reject(WireError(code: .invalidValue, path: "payload.execution.runMode", reason: "a parallel announcement belongs in a machine queue"))
                return
            }
            await takeDispatch(dispatch, id: envelope.id, message: message, slotReserved: true)
        case .executionTest(let test):
            await takeTest(test, id: envelope.id, message: message)
        default:
            releaseSlot()
            await message.reject(WireError(code: .unexpectedType, path: "type", reason: "\(envelope.type.rawValue) is not accepted here"))
        }
    }

    /// Takes one test of a parallel execution (a slot is already reserved).
    private func takeTest(_ test: TestDispatch, id: EventID, message: IncomingMessage) async {
        guard let key = part(consuming: message.queue) else {
            releaseSlot()
            await message.release()
            return
        }
        if tombstones[test.execution.executionID] != nil || parts[key]?.stop != nil {
            releaseSlot()
            await message.ack()
            return
        }
        knownIDs.insert(id)
        parts[key]?.takenIDs.append(id)
        parts[key]?.activeUnits += 1
        do {
            try await journal.take(key, id: id, body: message.body, epoch: outbox.spool.epoch)
        } catch {
            logger.error("cannot journal taken work; it goes back to the queue", metadata: ["cta.error": "\(error)"])
            knownIDs.remove(id)
            parts[key]?.activeUnits -= 1
            releaseSlot()
            await message.release()
            return
        }
        await message.ack()
        startUnit(.test(key, test))
    }

    // MARK: Slots and units

    private func schedule() {
        while freeSlots > 0, !localQueue.isEmpty {
            let unit = localQueue.removeFirst()
            busySlots += 1
            startUnit(unit)
        }
        reconcileConsumers()
    }

    private func releaseSlot() {
        busySlots = max(0, busySlots - 1)
        schedule()
        notifyIfIdle()
    }

    private func startUnit(_ unit: Unit) {
        // Not a child of `run()`: a second signal stops tests through their controls, never by cancelling the task
        // that must still spool their results. The slot it holds is the record that it runs.
        Task {
            switch unit {
            case .dispatch(let key, let dispatch, let resume): await self.runDispatch(key, dispatch, resume: resume)
            case .test(let key, let test): await self.runParallelTest(key, test)
            }
            self.releaseSlot()
        }
    }

    private func runDispatch(_ key: PartKey, _ dispatch: ExecutionDispatch, resume: PartProgress?) async {
        parts[key]?.queuedUnits -= 1
        parts[key]?.activeUnits += 1
        defer { parts[key]?.activeUnits -= 1 }
        applyTombstone(key)
        guard let part = parts[key] else { return }
        if part.stop == nil, part.runningAt == nil, dispatch.execution.timeouts.pendingDeadline < .now() {
            parts[key]?.stop = (.timeout, "the pending deadline \(dispatch.execution.timeouts.pendingDeadline) passed before the work started")
        }
        if parts[key]?.stop == nil {
            if parts[key]?.runningAt == nil {
                let now = Timestamp.now()
                parts[key]?.runningAt = now
                await emitState(key, .running, runningAt: now)
            }
            startRunningTimer(key)
            for (position, test) in dispatch.tests.enumerated() {
                let testKey = "t\(position)"
                if resume?.reported.contains(testKey) == true { continue }
                if parts[key]?.stop != nil { break }
                if resume?.started.contains(testKey) == true {
                    await reportInterrupted(key, test: test, index: nil, attempt: dispatch.attempt, key: testKey)
                    continue
                }
                await runTest(key, test: test, index: nil, attempt: dispatch.attempt, testKey: testKey)
            }
        }
        await finishIfDone(key, unitEnding: true)
    }

    private func runParallelTest(_ key: PartKey, _ test: TestDispatch) async {
        defer { parts[key]?.activeUnits -= 1 }
        if parts[key]?.firstSeq == nil { await emitState(key, .acked) }
        if parts[key]?.runningAt == nil {
            let now = Timestamp.now()
            parts[key]?.runningAt = now
            await emitState(key, .running, runningAt: now)
            startRunningTimer(key)
        }
        applyTombstone(key)
        if parts[key]?.stop == nil {
            await runTest(key, test: test.test, index: test.index, attempt: test.attempt, testKey: Self.testKey(index: test.index))
        }
        await finishIfDone(key, unitEnding: true)
    }

    private static func testKey(index: Int) -> String { "i\(index)" }

    private func runTest(_ key: PartKey, test: TestDefinition, index: Int?, attempt: Int, testKey: String) async {
        guard let part = parts[key] else { return }
        let control = TestControl()
        parts[key]?.controls[ObjectIdentifier(control)] = control
        if let stop = part.stop {
            control.stop(stop.cause == .timeout ? .executionTimeout : .cancelled(reason: stop.reason))
        }
        if cancellingAll { control.stop(.shutdown) }
        await journal.record(key, JournalEntry(.start, key: testKey))
        let directory = settings.workDirectory + "/" + key.executionID.description + "/a\(key.attempt)-" + testKey
        let assignment = TestAssignment(
            execution: part.execution, attempt: attempt, machine: settings.machine, test: test, index: index,
            directory: directory)

        let (logs, logSink) = AsyncStream<LiveLogChunk>.makeStream()
        let logWriter = Task {
            for await chunk in logs {
                let payload = ExecutionLog(
                    executionID: key.executionID, machine: self.settings.machine, testID: test.id, stage: chunk.stage,
                    stream: chunk.stream, offset: chunk.offset, text: chunk.text, final: chunk.final)
                await self.emit(key, [.executionLog(payload)], kind: .log)
            }
        }
        let outcome = await executor.run(assignment, control: control) { chunk in logSink.yield(chunk) }
        logSink.finish()
        await logWriter.value
        parts[key]?.controls[ObjectIdentifier(control)] = nil
        await emitResults(key, outcome.results, testKey: testKey)
    }

    private func reportInterrupted(_ key: PartKey, test: TestDefinition, index: Int?, attempt: Int, key testKey: String) async {
        let result = TestResult(
            executionID: key.executionID, machine: settings.machine, attempt: attempt, testID: test.id, index: index,
            name: test.name, status: .inconclusive,
            message: "interrupted: the agent stopped (crash, kill or reboot) while this test ran",
            description: test.description, durationMs: Milliseconds(0),
            origin: .exitCode(stage: "agent", exitCode: -1, signal: nil))
        await emitResults(key, [result], testKey: testKey)
    }

    // MARK: Events

    private func emitResults(_ key: PartKey, _ results: [TestResult], testKey: String) async {
        guard !results.isEmpty else { return }
        var counts = ResultCounts()
        for result in results { counts.add(result.status) }
        let noted = counts
        let journal = self.journal
        let range = await emitRetrying(results.map { .testResult($0) }) { range in
            journal.note(key, JournalEntry(.results, seq: range.upperBound, first: range.lowerBound, key: testKey, counts: noted))
        }
        guard let range else { return }
        parts[key]?.counts.add(counts)
        if let last = parts[key]?.lastSeq { parts[key]?.lastSeq = max(last, range.upperBound) }
    }

    private func emit(_ key: PartKey, _ events: [Event], kind: JournalEntry.Kind, at: Timestamp? = nil) async {
        let journal = self.journal
        let range = await emitRetrying(events) { range in
            journal.note(key, JournalEntry(kind, seq: range.upperBound, at: at))
        }
        if let range, let last = parts[key]?.lastSeq { parts[key]?.lastSeq = max(last, range.upperBound) }
    }

    private func emitState(_ key: PartKey, _ state: ExecutionState, runningAt: Timestamp? = nil) async {
        guard let part = parts[key] else { return }
        if state == .acked {
            guard !part.ackedEmitted else { return }
            parts[key]?.ackedEmitted = true
        }
        let change = ExecutionStateChange(
            executionID: key.executionID, machine: settings.machine, state: state, attempt: key.attempt,
            counts: part.counts)
        let journal = self.journal
        let kind: JournalEntry.Kind = state == .acked ? .acked : .running
        let range = await emitRetrying([.executionState(change)]) { range in
            journal.note(key, JournalEntry(kind, seq: range.upperBound, at: runningAt))
        }
        guard let seq = range?.upperBound else { return }
        if state == .acked, parts[key]?.firstSeq == nil { parts[key]?.firstSeq = seq }
        if let last = parts[key]?.lastSeq { parts[key]?.lastSeq = max(last, seq) }
    }

    /// Appends to the spool, retrying while the disk refuses (a full disk, say): an event is never dropped while
    /// the agent runs. Gives up only once the agent is cancelling everything and the spool still fails.
    private func emitRetrying(
        _ events: [Event], committed: @escaping @Sendable (ClosedRange<UInt64>) -> Void
    ) async -> ClosedRange<UInt64>? {
        var attempts = 0
        while true {
            do {
                return try await outbox.append(events, committed: committed)
            } catch let error as WireError {
                // The event breaks the contract: writing it again cannot succeed. A defect, logged loudly.
                logger.critical("an event the agent built is invalid; it is not sent", metadata: ["cta.error": "\(error)"])
                return nil
            } catch {
                attempts += 1
                logger.error("cannot append to the spool", metadata: ["cta.error": "\(error)", "cta.attempt": "\(attempts)"])
                if cancellingAll && attempts >= 3 { return nil }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    // MARK: Ending parts

    /// Sends the part's final state when nothing of it runs or waits any more and it has ended.
    private func finishIfDone(_ key: PartKey, unitEnding: Bool = false) async {
        guard let part = parts[key], !part.finalSent else { return }
        let activeAfter = part.activeUnits - (unitEnding ? 1 : 0)
        guard activeAfter <= 0 else { return }
        if part.parallelQueue != nil {
            // A parallel part ends when its queue is gone (the coordinator deleted it) or it was stopped.
            guard part.queueGone || part.stop != nil else { return }
            guard part.firstSeq != nil else {
                // Never took part: nothing to report.
                parts[key] = nil
                try? await journal.remove(key)
                reconcileConsumers()
                return
            }
        } else {
            // A dispatch part ends when its unit ran; a queued unit that is stopped ends here too.
            if part.queuedUnits > 0 {
                guard part.stop != nil else { return }
                localQueue.removeAll { unit in
                    if case .dispatch(let k, _, _) = unit { return k == key }
                    return false
                }
                parts[key]?.queuedUnits = 0
            } else if !unitEnding && part.stop == nil {
                return
            }
        }
        await sendFinal(key)
    }

    private func sendFinal(_ key: PartKey) async {
        guard var part = parts[key], !part.finalSent else { return }
        part.finalSent = true
        parts[key] = part
        part.runningTimer?.cancel()
        let state: ExecutionState = part.stop.map { $0.cause.finalState } ?? .finished
        var reason = part.stop?.reason
        if reason == nil, part.parallelQueue != nil, shuttingDown, !part.queueGone {
            reason = "the agent left the pool (shutdown)"
        }
        if part.firstSeq == nil { await emitState(key, .acked) }
        guard let current = parts[key], let firstSeq = current.firstSeq else { return }
        let change = ExecutionStateChange(
            executionID: key.executionID, machine: settings.machine, state: state, attempt: key.attempt,
            counts: current.counts, reason: reason, firstSeq: firstSeq, lastSeq: max(current.lastSeq, firstSeq))
        let journal = self.journal
        _ = await emitRetrying([.executionState(change)]) { range in
            journal.note(key, JournalEntry(.final, seq: range.upperBound))
        }
        logger.info(
            "execution part ended",
            metadata: [
                "cta.execution.id": "\(key.executionID)", "cta.state": "\(state.rawValue)",
                "cta.results": "\(current.counts.total)",
            ])
        do {
            try await journal.saveFinishedIDs(current.takenIDs)
            try await journal.remove(key)
        } catch {
            logger.error("cannot clean the work journal", metadata: ["cta.error": "\(error)"])
        }
        parts[key] = nil
        reconcileConsumers()
        notifyIfIdle()
    }

    private func startRunningTimer(_ key: PartKey) {
        guard let part = parts[key], part.runningTimer == nil, let runningAt = part.runningAt else { return }
        let timeout = part.execution.timeouts.runningTimeoutMs
        let deadline = runningAt.adding(timeout)
        let remaining = max(0, deadline.microsecondsSinceEpoch - Timestamp.now().microsecondsSinceEpoch)
        parts[key]?.runningTimer = Task {
            do { try await Task.sleep(for: .microseconds(remaining)) } catch { return }
            await self.runningTimedOut(key, timeout: timeout)
        }
    }

    private func runningTimedOut(_ key: PartKey, timeout: Milliseconds) async {
        guard var part = parts[key], part.stop == nil, !part.finalSent else { return }
        part.stop = (.timeout, "the running timeout of \(timeout.value) ms was reached")
        for control in part.controls.values { control.stop(.executionTimeout) }
        parts[key] = part
        logger.info("running timeout", metadata: ["cta.execution.id": "\(key.executionID)"])
        await finishIfDone(key)
        reconcileConsumers()
    }

    /// Stops every part (a second signal, or the shutdown budget spent).
    private func stopAll(cause: CancelCause, reason: String, testCause: TestStopCause) {
        cancellingAll = true
        for key in Array(parts.keys) {
            guard var part = parts[key] else { continue }
            if part.stop == nil { part.stop = (cause, reason) }
            for control in part.controls.values { control.stop(testCause) }
            parts[key] = part
        }
        localQueue.removeAll()
        for key in Array(parts.keys) { Task { await self.finishIfDone(key) } }
    }

    // MARK: Shared consumers

    /// The parallel part whose execution queue is `queue`.
    private func part(consuming queue: String) -> PartKey? {
        parts.first { $0.value.parallelQueue == queue }?.key
    }

    private func desiredSharedQueues() -> Set<String> {
        guard freeSlots > 0, !draining, !shuttingDown else { return [] }
        var queues = Set(settings.groups.map(Topology.groupQueue))
        for part in parts.values {
            if let queue = part.parallelQueue, part.stop == nil, !part.queueGone, !part.finalSent { queues.insert(queue) }
        }
        return queues
    }

    private func reconcileConsumers() {
        let machineQueue = Topology.machineQueue(settings.machine)
        let desired = desiredSharedQueues()
        for queue in desired where consumers[queue] == nil {
            consumers[queue] = .starting
            Task { await self.openConsumer(queue) }
        }
        for queue in consumers.keys where queue != machineQueue && !desired.contains(queue) && unsettled[queue, default: 0] == 0 {
            if case .running = consumers[queue] { Task { await self.stopConsumer(queue) } }
        }
    }

    private func openConsumer(_ queue: String) async {
        do {
            let stream = try await transport.consume(queue: queue, prefetch: 1)
            guard desiredSharedQueues().contains(queue) else {
                consumers[queue] = nil
                await stream.cancel()
                reconcileConsumers()
                return
            }
            consumerGeneration += 1
            let generation = consumerGeneration
            let reader = Task {
                var gone = false
                do {
                    for try await message in stream { await self.handleSharedMessage(message, generation: generation) }
                } catch let error as TransportError where error.code == .consumerCancelled || error.code == .notFound {
                    gone = true
                } catch {}
                await self.consumerEnded(queue, gone: gone, generation: generation)
            }
            consumers[queue] = .running(stream, reader, generation: generation)
            if let key = part(consuming: queue), parts[key]?.firstSeq == nil {
                await emitState(key, .acked)
            }
        } catch where error.code == .notFound {
            consumers[queue] = nil
            await consumerEnded(queue, gone: true, generation: nil)
        } catch {
            consumers[queue] = nil
            logger.warning("cannot consume a shared queue; retrying", metadata: ["cta.queue": "\(queue)", "cta.error": "\(error)"])
            try? await Task.sleep(for: .seconds(1))
            reconcileConsumers()
        }
    }

    private func consumerEnded(_ queue: String, gone: Bool, generation: Int?) async {
        if case .running(_, _, let current) = consumers[queue], current == generation { consumers[queue] = nil }
        if gone, let key = part(consuming: queue) {
            parts[key]?.queueGone = true
            logger.info("parallel queue deleted", metadata: ["cta.queue": "\(queue)"])
            await finishIfDone(key)
        } else if gone {
            logger.warning("a group queue was deleted", metadata: ["cta.queue": "\(queue)"])
        }
        reconcileConsumers()
    }

    private func stopConsumer(_ queue: String) async {
        guard case .running(let stream, let reader, _) = consumers[queue] else { return }
        consumers[queue] = nil
        await stream.cancel()
        await reader.value
    }

    // MARK: Heartbeats

    private func heartbeatLoop() async {
        while !Task.isCancelled {
            knownIDs.forget(before: ContinuousClock.now - KnownIDs.retention)
            await sendHeartbeat()
            do { try await Task.sleep(for: settings.heartbeatInterval) } catch { return }
        }
    }

    private func sendHeartbeat() async {
        let spoolState = try? await outbox.spool.state()
        let loadAverage = settings.loadAverage
        let load = await onDedicatedThread("cta-load") { loadAverage() }  // reads /proc
        let running = Set(parts.values.filter { $0.activeUnits > 0 }.map { $0.key.executionID })
        let heartbeat = AgentHeartbeat(
            machine: settings.machine, running: running.sorted { $0.description < $1.description },
            load: load, freeSlots: freeSlots, spoolDepth: UInt64(spoolState?.pending ?? 0),
            lastSeq: spoolState?.lastSeq ?? 0, draining: draining || shuttingDown,
            intervalMs: Milliseconds(settings.heartbeatInterval))
        let envelope = Envelope(source: .agent(settings.machine), epoch: outbox.spool.epoch, payload: heartbeat)
        do {
            let body = try envelope.encoded()
            try await transport.publishHeartbeat(Array(body))
        } catch {
            logger.debug("heartbeat not sent", metadata: ["cta.error": "\(error)"])
        }
    }

    // MARK: Shutdown

    private func beginShutdown() async {
        shuttingDown = true
        logger.info("shutting down: no new work", metadata: ["cta.budget": "\(settings.shutdownBudget)"])
        reconcileConsumers()
        // Work taken but not started ends now, so no one waits for it.
        let queued = localQueue
        localQueue.removeAll()
        for unit in queued {
            if case .dispatch(let key, _, _) = unit { await endUnstarted(key) }
        }
        await sendHeartbeat()
    }

    /// Ends work taken but not started, at shutdown.
    private func endUnstarted(_ key: PartKey) async {
        parts[key]?.stop = (.system, "the agent shut down before the work started")
        parts[key]?.queuedUnits = 0
        await sendFinal(key)
    }

    private func waitUntilIdle() async {
        while busySlots > 0 || parts.values.contains(where: { $0.activeUnits > 0 }) {
            await withCheckedContinuation { idleWaiters.append($0) }
        }
    }

    private func notifyIfIdle() {
        guard busySlots == 0 else { return }
        let waiters = idleWaiters
        idleWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// At shutdown: parallel parts still open end with what this machine did.
    private func finishOpenParts() async {
        for key in Array(parts.keys) {
            guard let part = parts[key], !part.finalSent else { continue }
            if part.parallelQueue != nil, part.firstSeq == nil {
                parts[key] = nil
                try? await journal.remove(key)
                continue
            }
            await sendFinal(key)
        }
    }
}

/// Event ids with the time they were taken. Entries older than ``retention`` are dropped, so an agent that runs for
/// months does not grow without bound; the journal's `finished.log` keeps ids for the same time across restarts.
struct KnownIDs {
    static let retention: Duration = .seconds(7 * 24 * 3600)
    private var ids: [EventID: ContinuousClock.Instant] = [:]

    func contains(_ id: EventID) -> Bool { ids[id] != nil }

    mutating func insert(_ id: EventID) { ids[id] = .now }

    mutating func remove(_ id: EventID) { ids[id] = nil }

    mutating func forget(before horizon: ContinuousClock.Instant) {
        ids = ids.filter { $0.value >= horizon }
    }
}
