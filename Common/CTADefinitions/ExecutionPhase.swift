/// The state of a whole execution: `pending` until a machine took it, `running`, then one end state.
public enum ExecutionPhase: String, Codable, Hashable, Sendable, CaseIterable {
    case pending
    case running
    case finished
    case cancelled
    case timeout

    /// True for `finished`, `cancelled` and `timeout`.
    public var isEnd: Bool { self != .pending && self != .running }
}
