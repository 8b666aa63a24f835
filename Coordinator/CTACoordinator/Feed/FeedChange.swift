public import CTADefinitions
public import CTAMongo
public import Foundation

/// One stored change the live feed reports: a state or a result stored, an execution's phase changed, a machine
/// registered, beat or shut down.
public struct FeedChange: Sendable {
    public enum Kind: String, Hashable, Sendable {
        case state, result, execution, machine
    }

    /// The stored record (for an execution or a machine: as it was when the feed read the change, which may be
    /// a little later than the change itself).
    public enum Record: Sendable {
        case state(StateRecord)
        case result(ResultRecord)
        case execution(ExecutionRecord)
        case machine(MachineRecord)
    }

    /// Where this change sits in the store's order; a subscription resumed after it starts with the next one.
    public var cursor: LiveCursor
    public var kind: Kind
    /// The execution a state, result or execution change belongs to.
    public var executionID: String?
    /// The scenario of that execution, when known.
    public var scenario: String?
    /// The machine of a state, result or machine change.
    public var machine: String?
    /// For an execution change: the phase this change set.
    public var phase: ExecutionPhase?
    /// The record, or nil when the stored document did not decode (the change still holds its place).
    public var record: Record?
    /// When the database applied the change (its cluster time), when known.
    public var clusterTime: BSONTimestamp?

    public init(
        cursor: LiveCursor, kind: Kind, executionID: String?, scenario: String?, machine: String?,
        phase: ExecutionPhase?, record: Record?, clusterTime: BSONTimestamp? = nil
    ) {
        self.clusterTime = clusterTime
        self.cursor = cursor
        self.kind = kind
        self.executionID = executionID
        self.scenario = scenario
        self.machine = machine
        self.phase = phase
        self.record = record
    }

    /// True for the change that ended an execution.
    public var endsExecution: Bool { kind == .execution && phase?.isEnd == true }
}

/// What a subscription follows.
public enum FeedTarget: Hashable, Sendable, CustomStringConvertible {
    /// One execution: its states, results and phase changes, from its creation, until it ends.
    case execution(String)
    /// Every execution of a scenario: their states, results and phase changes.
    case scenario(String)
    /// Every machine's registrations, heartbeats and shutdowns.
    case machines

    /// Whether `change` belongs to this target.
    public func matches(_ change: FeedChange) -> Bool {
        switch self {
        case .execution(let id): change.kind != .machine && change.executionID == id
        case .scenario(let id): change.kind != .machine && change.scenario == id
        case .machines: change.kind == .machine
        }
    }

    public var description: String {
        switch self {
        case .execution(let id): "execution \(id)"
        case .scenario(let id): "scenario \(id)"
        case .machines: "machines"
        }
    }
}

/// Where a change sequence starts.
public enum FeedStart: Hashable, Sendable {
    /// With the first change stored after it opens.
    case now
    /// With the first change stored after this cursor.
    case after(LiveCursor)
    /// With the first change stored at or after this time (second precision: earlier changes of the same second
    /// may come too).
    case at(Date)
}

/// What the feed needs to know of an execution to start a subscription on it.
public struct FeedExecution: Hashable, Sendable {
    public var id: String
    public var scenario: String
    public var phase: ExecutionPhase
    public var createdAt: Date

    public init(id: String, scenario: String, phase: ExecutionPhase, createdAt: Date) {
        self.id = id
        self.scenario = scenario
        self.phase = phase
        self.createdAt = createdAt
    }
}

/// The stored changes in store order, read from a database: ``MongoFeedSource`` in production, a test double
/// in unit tests.
public protocol FeedSource: Sendable {
    /// Opens a sequence of every change (not only one subscription's) from `start`.
    func changes(from start: FeedStart) async throws(LiveFeedError) -> any FeedChangeSequence
    /// The execution `id`, or nil when there is none.
    func execution(_ id: String) async throws(LiveFeedError) -> FeedExecution?
}

/// An open sequence of changes. `next()` waits for the next change; it is called from one task at a time.
public protocol FeedChangeSequence: Sendable {
    /// The next change, or nil once closed.
    func next() async throws(LiveFeedError) -> FeedChange?
    func close() async
}

/// Why a subscription could not start, or ended before its target did.
public struct LiveFeedError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Sendable { case notFound, cursorExpired, invalidCursor, tooSlow, unavailable, closed }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The execution does not exist.
        public static let notFound = Code(.notFound)
        /// The cursor (or the start of the execution) is older than the change history the database still holds.
        public static let cursorExpired = Code(.cursorExpired)
        /// The cursor is not one a coordinator made.
        public static let invalidCursor = Code(.invalidCursor)
        /// The subscriber fell further behind than the feed keeps; resume with its last cursor.
        public static let tooSlow = Code(.tooSlow)
        /// The database could not be read.
        public static let unavailable = Code(.unavailable)
        /// The feed is shutting down.
        public static let closed = Code(.closed)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// Safe to show a subscriber.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
