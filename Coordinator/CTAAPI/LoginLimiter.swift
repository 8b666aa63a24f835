public import Foundation

/// Counts failed logins per key (a user name, a client address) in a sliding window: after `limit` failures within
/// `window`, further attempts are refused until the oldest failure leaves the window. A plain value: the caller
/// keeps it behind a lock.
public struct LoginLimiter: Sendable {
    public var limit: Int
    public var window: TimeInterval
    private var failures: [String: [Date]] = [:]

    public init(limit: Int, window: TimeInterval) {
        self.limit = limit
        self.window = window
    }

    /// Seconds until one of `keys` may try again; nil when every key may try now.
    public mutating func retryAfter(_ keys: [String], now: Date) -> TimeInterval? {
        var wait: TimeInterval?
        for key in keys {
            let recent = prune(key, now: now)
            guard recent.count >= limit, let oldest = recent.first else { continue }
            let seconds = oldest.addingTimeInterval(window).timeIntervalSince(now)
            wait = max(wait ?? 0, seconds)
        }
        return wait
    }

    /// Records a failed attempt under every key.
    public mutating func fail(_ keys: [String], now: Date) {
        for key in keys {
            _ = prune(key, now: now)
            failures[key, default: []].append(now)
        }
    }

    /// Forgets the failures of a user who logged in.
    public mutating func succeed(_ key: String) {
        failures[key] = nil
    }

    private mutating func prune(_ key: String, now: Date) -> [Date] {
        guard let list = failures[key] else { return [] }
        let kept = list.filter { now.timeIntervalSince($0) < window }
        failures[key] = kept.isEmpty ? nil : kept
        return kept
    }
}
