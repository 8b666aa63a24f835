import CTACore
public import Foundation

/// How webhook deliveries are attempted: how often, how far apart, and how long each attempt may take.
///
/// The defaults make 5 attempts over about a minute: the waits after a failed attempt are 4, 8, 16 and 32 seconds,
/// each varied by up to ±20 % so that receivers that come back after an outage are not hit by every coordinator
/// at once.
public struct WebhookPolicy: Sendable, Hashable {
    /// Attempts in all, the first included (at least 1). Default 5.
    public var maxAttempts: Int
    /// The wait after the first failed attempt; it doubles after each further failure. Default 4 s.
    public var initialDelay: Duration
    /// The longest wait between two attempts, before jitter. Default 60 s.
    public var maximumDelay: Duration
    /// How much a wait varies at random: 0.2 draws it from 80 % to 120 % of its nominal value. Default 0.2.
    public var jitter: Double
    /// How long one attempt may take, from connecting to reading the response status. Default 10 s.
    public var attemptTimeout: Duration

    public init(
        maxAttempts: Int = 5, initialDelay: Duration = .seconds(4), maximumDelay: Duration = .seconds(60),
        jitter: Double = 0.2, attemptTimeout: Duration = .seconds(10)
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialDelay = max(.zero, initialDelay)
        self.maximumDelay = max(self.initialDelay, maximumDelay)
        self.jitter = min(1, max(0, jitter))
        self.attemptTimeout = attemptTimeout
    }

    /// The wait after failed attempt `attempt` (1 for the first) before jitter: `initialDelay · 2^(attempt-1)`,
    /// at most `maximumDelay`.
    public func nominalDelay(after attempt: Int) -> Duration {
        let doublings = min(max(0, attempt - 1), 40)
        let seconds = initialDelay.timeInterval * pow(2, Double(doublings))
        return seconds >= maximumDelay.timeInterval ? maximumDelay : .nanoseconds(Int64(seconds * 1e9))
    }

    /// The wait after failed attempt `attempt`, with jitter drawn from `generator`.
    public func delay(after attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let nominal = nominalDelay(after: attempt).timeInterval
        let factor = jitter > 0 ? Double.random(in: (1 - jitter)...(1 + jitter), using: &generator) : 1
        return .nanoseconds(Int64(nominal * factor * 1e9))
    }

    /// What follows an attempt: done (delivered), given up (failed), or another attempt at a later time.
    public func decision(
        after attempt: Int, outcome: WebhookAttemptOutcome, now: Date, using generator: inout some RandomNumberGenerator
    ) -> WebhookDecision {
        switch outcome {
        case .status(let code) where (200..<300).contains(code):
            return .delivered
        case .refused:
            return .failed
        case .status, .error:
            guard attempt < maxAttempts else { return .failed }
            return .retry(at: now.addingTimeInterval(delay(after: attempt, using: &generator).timeInterval))
        }
    }
}

/// How one attempt went.
public enum WebhookAttemptOutcome: Sendable, Hashable {
    /// The receiver answered with this HTTP status.
    case status(Int)
    /// No answer: the connection failed or timed out.
    case error(String)
    /// The attempt was not made and never will be (an unsupported or malformed URL).
    case refused(String)
}

/// What to do after an attempt.
public enum WebhookDecision: Sendable, Hashable {
    case delivered
    case failed
    case retry(at: Date)
}
