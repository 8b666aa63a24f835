public import CTACore
public import Foundation

/// Where a sequenced agent event sits in its agent's sequence.
public struct SequencePosition: Codable, Hashable, Sendable {
    public var epoch: String
    public var seq: UInt64

    public init(epoch: SequenceEpoch, seq: UInt64) {
        self.epoch = epoch.description
        self.seq = seq
    }
}

/// A stored `test.result`, keyed by its event id.
public struct ResultRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var executionID: String
    public var machine: MachineName
    public var epoch: String
    public var seq: UInt64
    public var time: Date
    public var receivedAt: Date
    public var result: TestResult

    public init(
        id: String, executionID: String, machine: MachineName, epoch: String, seq: UInt64, time: Date,
        receivedAt: Date, result: TestResult
    ) {
        self._id = id
        self.executionID = executionID
        self.machine = machine
        self.epoch = epoch
        self.seq = seq
        self.time = time
        self.receivedAt = receivedAt
        self.result = result
    }
}

/// A stored `execution.state`, keyed by its event id.
public struct StateRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var executionID: String
    public var machine: MachineName
    public var epoch: String
    public var seq: UInt64
    public var time: Date
    public var receivedAt: Date
    public var change: ExecutionStateChange
}

/// A stored `execution.log` chunk, keyed by its event id.
public struct LogRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var executionID: String
    public var machine: MachineName
    public var epoch: String
    public var seq: UInt64
    public var time: Date
    public var receivedAt: Date
    public var log: ExecutionLog
}

/// A stored `agent.registration` or `agent.shutdown`, kept so that its `seq` counts for completeness.
public struct AgentEventRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var type: EventType
    public var machine: MachineName
    public var epoch: String
    public var seq: UInt64
    public var time: Date
    public var receivedAt: Date
}

/// A message the coordinator refused (and dead-lettered), with what was known of it. When its envelope was read
/// far enough, its `epoch` and `seq` count as received, so one bad event does not block an execution forever.
public struct RejectionRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var source: String?
    public var epoch: String?
    public var seq: UInt64?
    public var code: String
    public var path: String
    public var reason: String
    public var queue: String
    public var routingKey: String
    public var rejectedAt: Date

    public init(
        id: String, source: String?, epoch: String?, seq: UInt64?, code: String, path: String, reason: String,
        queue: String, routingKey: String, rejectedAt: Date
    ) {
        self._id = id
        self.source = source
        self.epoch = epoch
        self.seq = seq
        self.code = code
        self.path = path
        self.reason = reason
        self.queue = queue
        self.routingKey = routingKey
        self.rejectedAt = rejectedAt
    }
}

/// What happened to one event of a batch written to the store.
public enum StoreWrite: Hashable, Sendable {
    /// Written now.
    case stored
    /// Already stored (a redelivery or a replay): nothing written.
    case duplicate
    /// Another event already holds its agent's `(epoch, seq)`: a protocol violation.
    case sequenceConflict
}
