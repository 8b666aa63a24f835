import CTAAgentCore
import CTACore
import Foundation
import Glibc
import Logging

/// Writes the spilled middle of a log to its file, creating the file on the first spilled byte.
struct FileSpillSink: LogSpillSink {
    let path: String
    private(set) var fd: Int32 = -1
    /// The first write error; later bytes are dropped (the byte counts in the outcome still add up).
    private(set) var error: SystemErrno?

    init(path: String) { self.path = path }

    mutating func spill(_ bytes: UnsafeRawBufferPointer) {
        guard error == nil, !bytes.isEmpty else { return }
        if fd < 0 {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 {
                error = SystemErrno(errno)
                return
            }
        }
        if let failure = writeAll(fd, bytes) { error = failure }
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// Writes all bytes to a blocking descriptor; returns the error if one occurred.
private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: off_t? = nil) -> SystemErrno? {
    var done = 0
    while done < bytes.count {
        let pointer = bytes.baseAddress!.advanced(by: done)
        let rc =
            if let offset { pwrite(fd, pointer, bytes.count - done, offset + off_t(done)) } else {
                write(fd, pointer, bytes.count - done)
            }
        if rc < 0 {
            if errno == EINTR { continue }
            return SystemErrno(errno)
        }
        done += rc
    }
    return nil
}

/// One child the supervisor watches: the stage's shell or its stop command.
private final class Child {
    struct Stream {
        var fd: Int32
        var tag: LogStream
    }

    let pid: pid_t
    let group: ProcessGroup
    let started: ContinuousClock.Instant
    var streams: [Stream]
    var status: WaitStatus?

    init(pid: pid_t, streams: [Stream]) {
        self.pid = pid
        self.group = ProcessGroup(id: pid)
        self.started = .now
        self.streams = streams
    }

    var ended: Bool { status != nil }

    func closeStreams() {
        for stream in streams { Glibc.close(stream.fd) }
        streams = []
    }
}

/// Runs one stage on the calling (dedicated) thread: spawn, read, stop, kill, reap, write the log.
///
/// - Important: Not thread-safe; created and used on one runner thread only. It talks to other threads only
///   through its ``StageHandle``.
final class StageSupervisor {
    private enum Phase {
        case running
        case stopping(deadline: ContinuousClock.Instant)
        case terminating(deadline: ContinuousClock.Instant)
        case killing(deadline: ContinuousClock.Instant)
        case draining(deadline: ContinuousClock.Instant)
        case done
    }

    private static let tick: Duration = .milliseconds(50)

    private let job: StageJob
    private let handle: StageHandle
    private let logger: Logger
    private let clock = ContinuousClock()

    private var retention: LogRetention
    private var spill: FileSpillSink
    private let logPath: String
    private let spillName: String
    private var logFD: Int32 = -1
    private var lastByte: UInt8?
    private var dirty = false
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    private var wake = PipePair(read: -1, write: -1)

    private var phase = Phase.running
    private var timedOut = false
    private var cancelled = false
    private var killed = false
    private var remained = false
    private var stopChild: Child?
    private var mainPID: pid_t?
    private var stopOutcome: StageOutcome.StopCommand?

    init(job: StageJob, handle: StageHandle) {
        self.job = job
        self.handle = handle
        var logger = job.logger
        logger[metadataKey: "cta.execution.id"] = "\(job.context.executionID)"
        logger[metadataKey: "cta.test.id"] = "\(job.context.testID)"
        logger[metadataKey: "cta.stage.name"] = "\(job.stage.name)"
        self.logger = logger
        let base = StageContext.logBaseName(for: job.stage)
        self.logPath = (job.context.logDirectory as NSString).appendingPathComponent("\(base).log")
        self.spillName = "\(base).omitted.log"
        self.spill = FileSpillSink(path: (job.context.logDirectory as NSString).appendingPathComponent(spillName))
        self.retention = LogRetention(
            limits: .init(headBytes: job.configuration.headBytes, tailBytes: job.configuration.tailBytes))
    }

    /// Runs the stage to its end and returns its outcome.
    func run() -> StageOutcome {
        let started = clock.now
        let stage = job.stage
        let configuration = job.configuration

        if let failure = openLog() {
            return outcome(.notStarted, started: started, failure: failure)
        }
        defer {
            if logFD >= 0 { Glibc.close(logFD) }
            spill.close()
        }

        let directory = job.context.workingDirectory(for: stage)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            let failure = StageLaunchError(
                .workingDirectoryMissing, "working directory does not exist: \(directory)",
                detail: stage.cwd.map { "stage cwd \($0)" })
            note(failure.message)
            return finish(.notStarted, started: started, failure: failure)
        }

        switch PipePair.make() {
        case .success(let pair): wake = pair
        case .failure(let error):
            let failure = StageLaunchError(.spawnFailed, "could not start the stage: \(error)")
            note(failure.message)
            return finish(.notStarted, started: started, failure: failure)
        }
        _ = fcntl(wake.write, F_SETFL, fcntl(wake.write, F_GETFL) | O_NONBLOCK)
        handle.attachWakeup(wake.write)
        defer {
            handle.detachWakeup()
            Glibc.close(wake.read)
            Glibc.close(wake.write)
        }

        let environment = job.context.environment(for: stage, base: configuration.baseEnvironment)
        let main: Child
        switch launch(stage.run, environment: environment, directory: directory) {
        case .success(let child): main = child
        case .failure(let error):
            let failure = StageLaunchError(.spawnFailed, "could not start the stage: \(error)", detail: "posix_spawn")
            note(failure.message)
            return finish(.notStarted, started: started, failure: failure)
        }
        mainPID = main.pid
        logger.debug("stage started", metadata: ["cta.stage.pid": "\(main.pid)"])

        let timeoutDeadline = stage.timeoutMs.map { started + .milliseconds(Int64(clamping: $0.value)) }
        var nextFlush = started + configuration.flushInterval

        while true {
            if case .done = phase { break }
            var wakeAt = clock.now + Self.tick
            switch phase {
            case .running: if let timeoutDeadline { wakeAt = min(wakeAt, timeoutDeadline) }
            case .stopping(let deadline), .terminating(let deadline), .killing(let deadline),
                .draining(let deadline):
                wakeAt = min(wakeAt, deadline)
            case .done: break
            }
            if dirty { wakeAt = min(wakeAt, nextFlush) }
            if main.status == nil, main.streams.isEmpty {
                // Its output is closed: the shell is exiting. Reap it promptly instead of sleeping a whole tick,
                // which would add up to 50 ms to every short stage.
                wakeAt = min(wakeAt, clock.now + .milliseconds(1))
            }
            pollOnce(children: [main, stopChild].compactMap { $0 }, until: wakeAt)

            if main.status == nil { main.status = reapIfEnded(main.pid) }
            if let stopChild, stopChild.status == nil { stopChild.status = reapIfEnded(stopChild.pid) }

            let now = clock.now
            if dirty, now >= nextFlush {
                writeLog()
                nextFlush = now + configuration.flushInterval
            }
            advance(
                main: main, now: now, timeoutDeadline: timeoutDeadline, environment: environment,
                directory: directory)
        }
        main.closeStreams()

        var failure: StageLaunchError?
        let termination: StageOutcome.Termination =
            switch main.status {
            case .exited(let code): .exited(code)
            case .signalled(let signal): .signalled(signal)
            case nil: .notStarted
            }
        if !timedOut, !cancelled {
            if termination == .exited(127) {
                let name = shellComplaint() ?? firstWord(of: stage.run)
                failure = StageLaunchError(.commandNotFound, "command not found: \(name)", detail: "exit 127")
            } else if termination == .exited(126) {
                let name = shellComplaint() ?? firstWord(of: stage.run)
                failure = StageLaunchError(.commandNotExecutable, "command not executable: \(name)", detail: "exit 126")
            }
        }
        let result = finish(termination, started: started, failure: failure)
        logger.debug("stage ended", metadata: ["cta.stage.outcome": "\(result.summary)"])
        return result
    }

    // MARK: Phases

    private func advance(
        main: Child, now: ContinuousClock.Instant, timeoutDeadline: ContinuousClock.Instant?,
        environment: [String: String], directory: String
    ) {
        let configuration = job.configuration
        switch phase {
        case .running:
            if let status = main.status {
                if main.group.hasLiveMembers {
                    note(
                        "the command ended (\(describe(status))); SIGTERM to what it left in process group \(main.pid)")
                    main.group.signal(SIGTERM)
                    phase = .terminating(deadline: now + configuration.gracePeriod)
                } else {
                    // Output already closed: nothing to drain, no reason to wait another tick.
                    phase = main.streams.isEmpty ? .done : .draining(deadline: now + configuration.drainTimeout)
                }
                return
            }
            let reason: StageHandle.StopReason?
            if let timeoutDeadline, now >= timeoutDeadline {
                reason = .timedOut
            } else {
                reason = handle.stopRequest
            }
            guard let reason else { return }
            switch reason {
            case .timedOut:
                timedOut = true
                note("timed out after \(describe(now - main.started)); stopping the stage")
            case .cancelled:
                cancelled = true
                note("cancelled after \(describe(now - main.started)); stopping the stage")
            }
            logger.info("stopping stage", metadata: ["cta.stage.reason": "\(reason)"])
            guard let stop = job.stage.stop else {
                beginTermination(main: main, now: now)
                return
            }
            note("running the stop command: \(stop)")
            var stopEnvironment = environment
            stopEnvironment["CTA_STOP_REASON"] = reason == .timedOut ? "timeout" : "cancel"
            stopEnvironment["CTA_STAGE_PGID"] = "\(main.pid)"
            switch launch(stop, environment: stopEnvironment, directory: directory) {
            case .success(let child):
                stopChild = child
                phase = .stopping(deadline: now + configuration.stopCommandTimeout)
            case .failure(let error):
                note("the stop command could not start: \(error)")
                stopOutcome = .init(termination: .notStarted, timedOut: false, duration: .zero)
                beginTermination(main: main, now: now)
            }

        case .stopping(let deadline):
            guard let stopChild else { return beginTermination(main: main, now: now) }
            var overran = false
            if stopChild.status == nil {
                guard now >= deadline else { return }
                overran = true
                note("the stop command ran past \(describe(configuration.stopCommandTimeout)); SIGKILL to it")
                stopChild.group.signal(SIGKILL)
                stopChild.status = reapBlocking(stopChild.pid)
            }
            drainNow(stopChild)
            stopChild.group.signal(SIGKILL)  // whatever it left behind
            stopChild.closeStreams()
            let termination: StageOutcome.Termination =
                switch stopChild.status {
                case .exited(let code): .exited(code)
                case .signalled(let signal): .signalled(signal)
                case nil: .notStarted
                }
            stopOutcome = .init(termination: termination, timedOut: overran, duration: now - stopChild.started)
            note("the stop command ended (\(termination))")
            self.stopChild = nil
            beginTermination(main: main, now: now)

        case .terminating(let deadline):
            if main.ended, !main.group.hasLiveMembers {
                phase = .draining(deadline: now + configuration.drainTimeout)
            } else if now >= deadline {
                note(
                    "grace period of \(describe(configuration.gracePeriod)) over; SIGKILL to process group \(main.pid)")
                logger.info("killing stage process group", metadata: ["cta.stage.pid": "\(main.pid)"])
                main.group.signal(SIGKILL)
                killed = true
                phase = .killing(deadline: now + configuration.killTimeout)
            }

        case .killing(let deadline):
            if main.ended, !main.group.hasLiveMembers {
                phase = .draining(deadline: now + configuration.drainTimeout)
            } else if now >= deadline {
                note("processes of group \(main.pid) are still alive after SIGKILL; giving up on them")
                logger.warning("stage processes survived SIGKILL", metadata: ["cta.stage.pid": "\(main.pid)"])
                remained = true
                phase = .draining(deadline: now)
            }

        case .draining(let deadline):
            if main.streams.isEmpty || now >= deadline { phase = .done }

        case .done:
            break
        }
    }

    /// Writes the evidence out, then sends SIGTERM to the stage's process group and starts the grace period.
    private func beginTermination(main: Child, now: ContinuousClock.Instant) {
        note("SIGTERM to process group \(main.pid)")
        writeLog()
        main.group.signal(SIGTERM)
        phase = .terminating(deadline: now + job.configuration.gracePeriod)
    }

    // MARK: Processes and pipes

    private func launch(_ command: String, environment: [String: String], directory: String)
        -> Result<Child, SystemErrno>
    {
        var pipes: [(PipePair, LogStream)] = []
        func closeAll() {
            for (pair, _) in pipes {
                Glibc.close(pair.read)
                Glibc.close(pair.write)
            }
        }
        let tags: [LogStream] = job.configuration.capture == .merged ? [.combined] : [.stdout, .stderr]
        for tag in tags {
            switch PipePair.make() {
            case .success(let pair): pipes.append((pair, tag))
            case .failure(let error):
                closeAll()
                return .failure(error)
            }
        }
        let request = SpawnRequest(
            shell: job.configuration.shell, command: command, directory: directory, environment: environment,
            standardOutput: pipes[0].0.write, standardError: pipes[pipes.count - 1].0.write)
        switch spawnInNewProcessGroup(request) {
        case .success(let pid):
            for (pair, _) in pipes { Glibc.close(pair.write) }
            return .success(Child(pid: pid, streams: pipes.map { Child.Stream(fd: $0.0.read, tag: $0.1) }))
        case .failure(let error):
            closeAll()
            return .failure(error)
        }
    }

    /// Waits for readable pipes (or a stop request) until `deadline`, and reads what is there.
    private func pollOnce(children: [Child], until deadline: ContinuousClock.Instant) {
        var fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
        var owners: [(Child, Int)] = []
        for child in children {
            for (index, stream) in child.streams.enumerated() {
                fds.append(pollfd(fd: stream.fd, events: Int16(POLLIN), revents: 0))
                owners.append((child, index))
            }
        }
        let timeout = Int32(clamping: milliseconds(deadline - clock.now, roundingUp: true))
        let rc = poll(&fds, nfds_t(fds.count), max(0, timeout))
        guard rc > 0 else { return }
        if fds[0].revents != 0 {
            var sink = [UInt8](repeating: 0, count: 64)
            while read(wake.read, &sink, sink.count) > 0 {}
        }
        var closed: [(Child, Int)] = []
        for (slot, owner) in owners.enumerated() where fds[slot + 1].revents != 0 {
            if !readAvailable(owner.0.streams[owner.1]) { closed.append(owner) }
        }
        for (child, index) in closed.sorted(by: { $0.1 > $1.1 }) {
            Glibc.close(child.streams[index].fd)
            child.streams.remove(at: index)
        }
    }

    /// Reads what a non-blocking pipe holds (bounded per call, for fairness). Returns false at end of file.
    private func readAvailable(_ stream: Child.Stream) -> Bool {
        var budget = 1 << 20
        while budget > 0 {
            let count = readBuffer.withUnsafeMutableBytes { read(stream.fd, $0.baseAddress, $0.count) }
            if count > 0 {
                readBuffer.withUnsafeBytes { record(UnsafeRawBufferPointer(rebasing: $0[..<count]), tag: stream.tag) }
                budget -= count
                continue
            }
            if count == 0 { return false }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK
        }
        return true
    }

    /// Reads whatever an ended child's pipes still hold, without waiting for processes that kept them open.
    private func drainNow(_ child: Child) {
        for stream in child.streams { _ = readAvailable(stream) }
    }

    private func reapBlocking(_ pid: pid_t) -> WaitStatus? {
        var status: Int32 = 0
        while true {
            let rc = waitpid(pid, &status, 0)
            if rc == pid { return WaitStatus(raw: status) }
            if rc == -1, errno == EINTR { continue }
            return nil
        }
    }

    // MARK: Log

    private func openLog() -> StageLaunchError? {
        do {
            try FileManager.default.createDirectory(
                atPath: job.context.logDirectory, withIntermediateDirectories: true)
        } catch {
            return StageLaunchError(
                .logUnavailable, "could not create the log directory \(job.context.logDirectory)",
                detail: "\(error)")
        }
        unlink(spill.path)  // a spill file from an earlier run of the same stage would mislead
        logFD = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard logFD >= 0 else {
            return StageLaunchError(
                .logUnavailable, "could not create the log file \(logPath)",
                detail: SystemErrno(errno).description)
        }
        return nil
    }

    private func record(_ bytes: UnsafeRawBufferPointer, tag: LogStream) {
        guard !bytes.isEmpty else { return }
        retention.append(bytes, spillingTo: &spill)
        lastByte = bytes.last
        dirty = true
        if let onOutput = job.onOutput { onOutput(tag, Array(bytes)) }
    }

    /// Adds a line from the runner itself to the log, starting on a new line.
    private func note(_ text: String) {
        var line = [UInt8]()
        if let lastByte, lastByte != UInt8(ascii: "\n") { line.append(UInt8(ascii: "\n")) }
        line.append(contentsOf: "[cta] \(text)\n".utf8)
        line.withUnsafeBytes { record($0, tag: .combined) }
    }

    /// Rewrites the log file: head, marker, tail.
    private func writeLog() {
        guard logFD >= 0 else { return }
        let bytes = retention.rendered(attachmentName: spillName)
        if let error = bytes.withUnsafeBytes({ writeAll(logFD, $0, at: 0) }) {
            logger.warning("could not write the stage log", metadata: ["cta.error": "\(error)"])
        }
        _ = ftruncate(logFD, off_t(bytes.count))
        dirty = false
    }

    // MARK: Outcome

    private func finish(
        _ termination: StageOutcome.Termination, started: ContinuousClock.Instant, failure: StageLaunchError?
    ) -> StageOutcome {
        retention.finish(spillingTo: &spill)
        writeLog()
        if let error = spill.error {
            logger.warning("could not write the spilled log middle", metadata: ["cta.error": "\(error)"])
        }
        return outcome(termination, started: started, failure: failure)
    }

    private func outcome(
        _ termination: StageOutcome.Termination, started: ContinuousClock.Instant, failure: StageLaunchError?
    ) -> StageOutcome {
        StageOutcome(
            termination: termination,
            duration: clock.now - started,
            timedOut: timedOut,
            cancelled: cancelled,
            failure: failure,
            log: .init(
                path: logPath,
                spillPath: retention.spilledBytes > 0 ? spill.path : nil,
                totalBytes: retention.totalBytes,
                spilledBytes: retention.spilledBytes),
            stopCommand: stopOutcome,
            processGroupID: mainPID,
            killed: killed,
            processesRemained: remained)
    }

    /// The command name from the shell's complaint (`sh: 1: foo: not found`, `bash: line 1: foo: command not
    /// found`, `sh: 1: ./x: Permission denied`) in the retained log, if there is one.
    private func shellComplaint() -> String? {
        let text = String(decoding: retention.head + retention.tail, as: UTF8.self)
        let suffixes = [": command not found", ": not found", ": Permission denied"]
        for line in text.split(separator: "\n").reversed() {
            guard let suffix = suffixes.first(where: { line.hasSuffix($0) }) else { continue }
            let body = line.dropLast(suffix.count)
            guard let separator = body.range(of: ": ", options: .backwards) else { continue }
            let name = body[separator.upperBound...]
            if !name.isEmpty { return String(name) }
        }
        return nil
    }
}

private func firstWord(of command: String) -> String {
    command.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.map(String.init) ?? command
}

private func describe(_ status: WaitStatus) -> String {
    switch status {
    case .exited(let code): "exit \(code)"
    case .signalled(let signal): "signal \(signal)"
    }
}

private func describe(_ duration: Duration) -> String {
    let ms = milliseconds(duration, roundingUp: false)
    return ms < 10_000 ? "\(ms) ms" : "\(ms / 1000) s"
}

private func milliseconds(_ duration: Duration, roundingUp: Bool) -> Int64 {
    let (seconds, attoseconds) = duration.components
    var ms = seconds * 1000 + attoseconds / 1_000_000_000_000_000
    if roundingUp, attoseconds % 1_000_000_000_000_000 > 0 { ms += 1 }
    return ms
}
