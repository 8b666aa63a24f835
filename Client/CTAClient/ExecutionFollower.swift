import CTACore
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOSSL

/// What following an execution reports as it goes.
public enum FollowEvent: Sendable {
    /// A newer reading of the execution (phase, pending explanation, counts).
    case execution(Execution)
    /// A result not seen before.
    case result(TestResultItem)
    /// The live feed could not be used; the follower polls the API instead.
    case polling(reason: String)
    /// Time passed without news (about once a second): a moment to redraw a clock.
    case tick
}

/// How following ended.
public enum FollowEnd: Sendable {
    /// The execution ended; its last reading.
    case ended(Execution)
    /// The wait limit passed first; the execution as last read.
    case waitedTooLong(Execution)
}

/// Follows one execution until it ends: live over the WebSocket feed (`/v1/live`) when the server offers it,
/// otherwise by polling its results with a cursor. Either way every result is reported exactly once (by event id),
/// and once the execution has ended its results are read once more from the API, so none is missing.
public struct ExecutionFollower: Sendable {
    public let client: APIClient
    public let endpoint: Endpoint
    public let configuration: TransportConfiguration
    /// How often to poll when the live feed is unavailable.
    public var pollInterval: Duration = .milliseconds(500)
    /// Whether to try the live feed at all.
    public var live = true

    public init(client: APIClient, endpoint: Endpoint, configuration: TransportConfiguration) {
        self.client = client
        self.endpoint = endpoint
        self.configuration = configuration
    }

    /// Follows `execution` until it ends or `limit` passes; `report` is called for each event, in order.
    public func follow(
        _ execution: Execution, limit: Duration?, report: @Sendable (FollowEvent) -> Void
    ) async throws(ClientError) -> FollowEnd {
        let deadline = limit.map { ContinuousClock.now + $0 }
        var state = State(execution: execution)
        var ended = false
        if live {
            switch await followLive(&state, deadline: deadline, report: report) {
            case .ended: ended = true
            case .waitedTooLong: return .waitedTooLong(state.execution)
            case .unavailable(let reason): report(.polling(reason: reason))
            }
        }
        if !ended {
            if try await poll(&state, deadline: deadline, report: report) == false {
                return .waitedTooLong(state.execution)
            }
        }
        // The final word: every result stored, and the execution's end state and counts.
        try await catchUp(&state, report: report)
        let final = try await client.execution(execution.id)
        report(.execution(final))
        return .ended(final)
    }

    struct State {
        var execution: Execution
        var seen: Set<String> = []
        /// The cursor after the last full page read; results from it on are read again (and deduplicated).
        var cursor: String?
    }

    // MARK: Polling

    /// Polls until the execution ends (true) or the deadline passes (false).
    private func poll(
        _ state: inout State, deadline: ContinuousClock.Instant?, report: @Sendable (FollowEvent) -> Void
    ) async throws(ClientError) -> Bool {
        while true {
            let execution = try await client.execution(state.execution.id)
            if execution != state.execution {
                state.execution = execution
                report(.execution(execution))
            }
            try await catchUp(&state, report: report)
            if execution.hasEnded { return true }
            if let deadline, ContinuousClock.now >= deadline { return false }
            report(.tick)
            do {
                try await Task.sleep(for: pollInterval)
            } catch {
                throw .usage("interrupted")
            }
        }
    }

    /// Reads the results stored since the cursor and reports the new ones.
    private func catchUp(_ state: inout State, report: @Sendable (FollowEvent) -> Void) async throws(ClientError) {
        while true {
            let page = try await client.results(state.execution.id, cursor: state.cursor)
            for item in page.items where state.seen.insert(item.eventId).inserted {
                report(.result(item))
            }
            guard let next = page.next, !page.items.isEmpty else { return }
            state.cursor = next
        }
    }

    // MARK: Live feed

    enum LiveEnd {
        case ended
        case waitedTooLong
        case unavailable(String)
    }

    /// What the WebSocket task hands to the follower.
    enum LiveMessage: Sendable {
        case subscribed
        case result(TestResultItem)
        /// Something changed that the event itself does not carry in a form the client reads: read it from the API.
        case changed
        case end
        case failed(String)
        case tick
    }

    private func followLive(
        _ state: inout State, deadline: ContinuousClock.Instant?, report: @Sendable (FollowEvent) -> Void
    ) async -> LiveEnd {
        let (messages, continuation) = AsyncStream<LiveMessage>.makeStream()
        let executionID = state.execution.id
        let socket = Task { await runSocket(execution: executionID, continuation: continuation) }
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                continuation.yield(.tick)
            }
        }
        defer {
            socket.cancel()
            ticker.cancel()
            continuation.finish()
        }
        var subscribed = false
        var ticks = 0
        for await message in messages {
            if let deadline, ContinuousClock.now >= deadline { return .waitedTooLong }
            switch message {
            case .subscribed:
                subscribed = true
            case .result(let item):
                if state.seen.insert(item.eventId).inserted { report(.result(item)) }
            case .changed:
                do {
                    let execution = try await client.execution(state.execution.id)
                    if execution != state.execution {
                        state.execution = execution
                        report(.execution(execution))
                    }
                    try await catchUp(&state, report: report)
                } catch {
                    return .unavailable("reading the execution failed: \(error)")
                }
            case .end:
                return .ended
            case .failed(let reason):
                return .unavailable(subscribed ? "the live feed closed: \(reason)" : reason)
            case .tick:
                ticks += 1
                report(.tick)
                // Not every change is an event (a pending explanation is refined, counts are recomputed): read the
                // execution every few seconds as well.
                if ticks % 5 == 0 {
                    if let execution = try? await client.execution(state.execution.id), execution != state.execution {
                        state.execution = execution
                        report(.execution(execution))
                        if execution.hasEnded { return .ended }
                    }
                }
            }
        }
        return .unavailable("the live feed closed")
    }

    /// Connects to `/v1/live`, subscribes to the execution, and turns every frame into a ``LiveMessage``.
    private func runSocket(execution: String, continuation: AsyncStream<LiveMessage>.Continuation) async {
        var headers = HTTPFields()
        if let token = client.token, let name = HTTPField.Name("Authorization") {
            headers[name] = "Bearer \(token)"
        }
        var tls: TLSConfiguration?
        if endpoint.secure {
            do {
                tls = try configuration.tlsConfiguration()
            } catch {
                continuation.yield(.failed("\(error)"))
                return
            }
        }
        let subscription: JSONValue = .object([
            "op": .string("subscribe"), "id": .string("run"), "execution": .string(execution),
        ])
        var logger = Logger(label: "cta.live")
        logger.logLevel = .critical
        do {
            try await WebSocketClient.connect(
                url: endpoint.webSocketURL("/v1/live"),
                configuration: WebSocketClientConfiguration(maxFrameSize: 1 << 20, additionalHeaders: headers),
                tlsConfiguration: tls, logger: logger
            ) { inbound, outbound, _ in
                try await outbound.write(.text(JSONOutput.compact(subscription)))
                var iterator = inbound.messages(maxSize: 8 << 20).makeAsyncIterator()
                while let message = try await iterator.next() {
                    guard case .text(let text) = message else { continue }
                    let parsed = Self.parse(text)
                    continuation.yield(parsed)
                    if case .end = parsed { return }
                    if case .failed = parsed { return }
                }
            }
            continuation.yield(.failed("the live feed closed"))
        } catch {
            continuation.yield(.failed("\(error)"))
        }
    }

    /// Reads one frame of the live feed.
    static func parse(_ text: String) -> LiveMessage {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else { return .changed }
        switch value["type"]?.string {
        case "subscribed": return .subscribed
        case "end": return .end
        case "pong": return .tick
        case "error":
            let message = value["error"]?["message"]?.string ?? "error"
            let code = value["error"]?["code"]?.string ?? "error"
            return .failed("\(code): \(message)")
        case "result":
            if let event = value["event"], let data = try? JSONEncoder().encode(event),
                let item = try? JSONDecoder().decode(TestResultItem.self, from: data)
            {
                return .result(item)
            }
            return .changed
        default:
            return .changed
        }
    }
}
