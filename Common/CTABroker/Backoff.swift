/// Exponential backoff with full jitter: attempt n waits a uniformly random time in [0, min(max, initial·2ⁿ)].
///
/// Full jitter spreads the reconnects of many clients after a broker restart instead of synchronising them.
public struct Backoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    public private(set) var attempt = 0

    /// A backoff starting at `initial` and never waiting longer than `maximum`.
    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = max(initial, maximum)
    }

    /// The delay before the next attempt; advances the attempt count.
    public mutating func next<G: RandomNumberGenerator>(using generator: inout G) -> Duration {
        let ceiling = ceiling(for: attempt)
        attempt += 1
        let nanos = ceiling.nanoseconds
        guard nanos > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...nanos, using: &generator))
    }

    /// The delay before the next attempt, drawn from the system's random source.
    public mutating func next() -> Duration {
        var generator = SystemRandomNumberGenerator()
        return next(using: &generator)
    }

    /// The largest delay attempt `n` can draw.
    public func ceiling(for attempt: Int) -> Duration {
        let shift = min(attempt, 30)
        let scaled = initial.nanoseconds.multipliedReportingOverflow(by: Int64(1) << shift)
        if scaled.overflow { return maximum }
        return min(.nanoseconds(scaled.partialValue), maximum)
    }

    /// Starts again from the first attempt (after a success).
    public mutating func reset() { attempt = 0 }
}

extension Duration {
    /// The whole duration in nanoseconds, saturating.
    var nanoseconds: Int64 {
        let parts = components
        let (s, overflow) = parts.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return parts.seconds < 0 ? .min : .max }
        return s.addingReportingOverflow(parts.attoseconds / 1_000_000_000).partialValue
    }

    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
