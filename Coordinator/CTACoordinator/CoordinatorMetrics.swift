import Synchronization

/// What this coordinator process counts as it works, for the API's `/metrics`: kept in memory where the work is
/// done, so a scrape reads no database.
public final class CoordinatorMetrics: Sendable {
    /// Upper bounds of the dispatch latency buckets, in seconds.
    public static let dispatchBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    /// A Prometheus histogram's state: cumulative counts per upper bound, sum and count.
    public struct Histogram: Sendable {
        public var bounds: [Double]
        /// Observations at or under each bound, in the order of `bounds`.
        public var counts: [Int]
        public var sum: Double = 0
        public var count: Int = 0

        init(bounds: [Double]) {
            self.bounds = bounds
            self.counts = Array(repeating: 0, count: bounds.count)
        }

        mutating func observe(_ value: Double) {
            for index in bounds.indices where value <= bounds[index] { counts[index] += 1 }
            sum += value
            count += 1
        }
    }

    private let dispatch = Mutex(Histogram(bounds: CoordinatorMetrics.dispatchBuckets))
    private let results = Atomic<Int>(0)

    public init() {}

    /// Time from an execution's request to its dispatch, for the executions this coordinator dispatched.
    public var dispatchLatency: Histogram { dispatch.withLock { $0 } }
    /// Test results this coordinator's consumer stored (repeats not counted).
    public var resultsStored: Int { results.load(ordering: .relaxed) }

    func dispatched(after seconds: Double) { dispatch.withLock { $0.observe(max(0, seconds)) } }
    func stored(results count: Int) { results.add(count, ordering: .relaxed) }
}
