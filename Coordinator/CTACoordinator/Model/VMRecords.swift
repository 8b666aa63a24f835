public import CTACore
public import Foundation

/// A VM made for one execution by its configuration's `provision` commands. Its machine name is derived from the
/// execution (``VMRecord/name(for:)``), so every coordinator composing that execution agrees on it.
public struct VMRecord: Codable, Hashable, Sendable {
    public enum State: String, Codable, Hashable, Sendable {
        /// Recorded; the create command is running (or its coordinator died while it ran).
        case creating
        /// The create command succeeded: the VM's agent is expected to register.
        case created
        /// The create command failed: the execution stays pending with the output as its explanation.
        case createFailed
        /// A coordinator holds the claim to destroy it and runs the destroy command.
        case destroying
        case destroyed
        /// The destroy command failed: the output says why; the VM may still exist and needs a person.
        case destroyFailed
    }

    /// The VM's machine name: the name its agent must register under.
    public var _id: String
    public var executionID: String
    public var state: State
    public var createdBy: String
    public var createdAt: Date
    /// The VM timeout: destroyed at the latest at this time, whatever runs on it.
    public var destroyBy: Date
    public var create: VMCommandOutcome?
    public var destroy: VMCommandOutcome?
    public var destroyClaimedBy: String?
    public var destroyClaimedUntil: Date?
    public var destroyedAt: Date?

    public var name: MachineName { MachineName(unchecked: _id) }

    /// `vm-` and the execution's id: a valid machine name, unique per execution.
    public static func name(for execution: ExecutionID) -> MachineName {
        MachineName(unchecked: "vm-" + execution.description.lowercased())
    }

    public init(execution: ExecutionID, createdBy: String, createdAt: Date, destroyBy: Date) {
        self._id = Self.name(for: execution).rawValue
        self.executionID = execution.description
        self.state = .creating
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.destroyBy = destroyBy
    }
}

/// How a provision command ended.
public struct VMCommandOutcome: Codable, Hashable, Sendable {
    /// The exit status; 128 + signal when it was killed; nil when it could not be started.
    public var status: Int32?
    /// The end of what it printed (stdout and stderr together), at most 4 KiB.
    public var output: String
    public var durationMs: Int64
    /// Set when it ran past its command timeout and was killed.
    public var timedOut: Bool

    public var succeeded: Bool { status == 0 && !timedOut }

    /// One line for explanations and logs: "exit 3: <last line of output>".
    public var summary: String {
        let what = timedOut ? "timed out" : status.map { "exit \($0)" } ?? "could not start"
        let last = output.split(whereSeparator: \.isNewline).last.map(String.init) ?? ""
        return last.isEmpty ? what : "\(what): \(last)"
    }

    public init(status: Int32?, output: String, durationMs: Int64, timedOut: Bool) {
        self.status = status
        self.output = output
        self.durationMs = durationMs
        self.timedOut = timedOut
    }
}
