import Foundation

/// One measured figure, printed as one JSON line.
///
/// Every figure that has a baseline carries it: the same work done through the raw C library in the same
/// process and run, measured in alternating rounds with the Swift side, so `ratio` (value / baseline) is
/// meaningful on a shared, noisy machine while the absolute numbers are not.
struct Figure: Encodable {
    /// The bench that produced it: `broker`, `store`, …
    var bench: String
    /// What was measured, for example `publish_confirm`.
    var figure: String
    /// The unit of `value` and `baseline`, for example `msg/s`.
    var unit: String
    /// The median over rounds of CTA's figure.
    var value: Double
    /// The median over rounds of the raw C figure, when there is one.
    var baseline: Double?
    /// What the baseline is, for example `librabbitmq`.
    var baselineName: String?
    /// `value / baseline`; above 1 means CTA did better for rates (lower is better for latencies).
    var ratio: Double?
    /// How many operations one round did.
    var operations: Int
    /// How many rounds each side ran.
    var rounds: Int
    /// Every round's value, CTA's then the baseline's, for the sceptical reader.
    var samples: [Double]
    var baselineSamples: [Double]?
    /// How the figure was measured, when its name does not say enough.
    var note: String?
    /// For a latency: where the time went, as milestones measured from the same start.
    var breakdown: [Milestone]?

    /// A point on the way of a latency, in milliseconds from its start.
    struct Milestone: Encodable {
        var name: String
        var p50Ms: Double
        var p99Ms: Double
    }

    /// `value` rounded to `digits` decimals, for figures that do not need more.
    static func rounded(_ value: Double, _ digits: Int) -> Double {
        let scale = pow(10, Double(digits))
        return (value * scale).rounded() / scale
    }

    init(
        bench: String, figure: String, unit: String, samples: [Double], baselineSamples: [Double]?,
        baselineName: String?, operations: Int
    ) {
        self.bench = bench
        self.figure = figure
        self.unit = unit
        self.samples = samples
        self.baselineSamples = baselineSamples
        self.baselineName = baselineName
        self.operations = operations
        self.rounds = samples.count
        self.value = Figure.median(samples)
        if let baselineSamples, !baselineSamples.isEmpty {
            let b = Figure.median(baselineSamples)
            self.baseline = b
            self.ratio = b > 0 ? (self.value / b * 1000).rounded() / 1000 : nil
        }
    }

    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// The nearest-rank percentile `p` (0...100) of `values`.
    static func percentile(_ p: Double, _ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count, max(1, rank)) - 1]
    }

    func printLine() {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if let data = try? encoder.encode(self), let line = String(data: data, encoding: .utf8) {
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
    }
}

/// Measures the wall time of `body`, in seconds.
func measureSeconds(_ body: () async throws -> Void) async rethrows -> Double {
    let clock = ContinuousClock()
    let elapsed = try await clock.measure { try await body() }
    let parts = elapsed.components
    return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
}

/// Runs a blocking call (a raw C baseline) on a thread of its own, never on the cooperative pool, and returns
/// its result.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: body()) }
        thread.start()
    }
}
