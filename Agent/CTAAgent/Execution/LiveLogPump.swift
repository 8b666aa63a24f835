import CTAAgentCore
import CTACore
import Synchronization

/// Feeds one stage's output through a ``CTAAgentCore/LiveLogCoalescer`` to the executor's `onLog` callback.
///
/// Output arrives on the stage runner's thread (``receive(_:_:)``); a task of the executor calls ``pump()`` so that
/// waiting output goes out ``TestExecutor/Configuration/liveLogInterval`` after its first byte even when no more
/// output comes. `onLog` is called with the lock held, so chunks reach it one at a time and in offset order.
///
/// - Important: `onLog` must return quickly and must not call back into the executor for the same test.
final class LiveLogPump: Sendable {
    private let stage: String
    private let interval: Duration
    private let onLog: @Sendable (LiveLogChunk) -> Void
    private let coalescer: Mutex<LiveLogCoalescer>

    init(stage: String, configuration: TestExecutor.Configuration, onLog: @escaping @Sendable (LiveLogChunk) -> Void) {
        self.stage = stage
        self.interval = configuration.liveLogInterval
        self.onLog = onLog
        self.coalescer = Mutex(
            LiveLogCoalescer(
                limits: .init(
                    chunkBytes: min(configuration.liveLogChunkBytes, ExecutionLog.maximumInlineBytes),
                    interval: configuration.liveLogInterval,
                    streamLimitBytes: configuration.liveLogLimitBytes)))
    }

    /// Takes a chunk of output (runner thread). Output that is already due goes out first, so a busy task pool
    /// delays live output only while the stage is silent.
    func receive(_ stream: LogStream, _ bytes: [UInt8]) {
        coalescer.withLock { coalescer in
            let now = ContinuousClock.now
            send(coalescer.due(at: now))
            send(coalescer.append(bytes, stream: stream, at: now))
        }
    }

    /// Emits waiting output when it is due, until the calling task is cancelled.
    func pump() async {
        let clock = ContinuousClock()
        while !Task.isCancelled {
            let next = coalescer.withLock { $0.nextDeadline }
            let wake = min(next ?? clock.now + interval, clock.now + interval)
            try? await Task.sleep(until: wake, clock: clock)
            if Task.isCancelled { return }
            coalescer.withLock { coalescer in
                send(coalescer.due(at: clock.now))
            }
        }
    }

    /// Emits everything left and each stream's final chunk; `streams` end even when they had no output.
    func finish(streams: [LogStream]) {
        coalescer.withLock { coalescer in
            send(coalescer.finish(streams: streams))
        }
    }

    private func send(_ pieces: [LiveLogCoalescer.Piece]) {
        for piece in pieces {
            onLog(
                LiveLogChunk(
                    stage: stage, stream: piece.stream, offset: piece.offset, text: piece.text, final: piece.final))
        }
    }
}
