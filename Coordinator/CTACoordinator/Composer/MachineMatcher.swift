public import CTACore
public import Foundation
public import CTADefinitions

/// Which machines a selector accepts, and for those it does not, what they lack. Pure logic: the composer feeds it
/// the machines as stored.
public struct MachineMatcher: Sendable {
    public var selector: MachineSelector
    public var now: Date

    public init(selector: MachineSelector, now: Date) {
        self.selector = selector
        self.now = now
    }

    /// What a machine lacks to take new work under the selector; empty when it can.
    public func missing(_ machine: MachineRecord) -> [String] {
        var missing: [String] = []
        if !selector.machines.isEmpty, !selector.machines.contains(machine.name) {
            missing.append("not one of the named machines (\(selector.machines.map(\.rawValue).joined(separator: ", ")))")
        }
        if !selector.groups.isEmpty, Set(selector.groups).isDisjoint(with: machine.groups) {
            missing.append("not in group \(selector.groups.map(\.rawValue).joined(separator: " or "))")
        }
        for (key, wanted) in selector.tags.sorted(by: { $0.key < $1.key }) {
            guard let has = machine.tags[key] else {
                missing.append(wanted == "*" ? "no tag \(key)" : "no tag \(key)=\(wanted)")
                continue
            }
            if wanted != "*", has != wanted { missing.append("tag \(key)=\(wanted) (has \(has))") }
        }
        if !machine.isOnline(at: now) {
            let since = Timestamp(machine.lastSeenAt).rfc3339
            missing.append(machine.shutdownReason.map { "offline since \(since) (\($0))" } ?? "offline since \(since)")
        } else if machine.draining {
            missing.append("draining")
        }
        return missing
    }

    /// The machines that can take the work now, in name order.
    public func matching(_ machines: [MachineRecord]) -> [MachineRecord] {
        machines.filter { missing($0).isEmpty }.sorted { $0._id < $1._id }
    }

    /// Why nothing matched: the closest machines (fewest missing requirements first, at most `limit`).
    public func explanation(_ machines: [MachineRecord], configuration: ConfigurationID, limit: Int = 5)
        -> PendingExplanation
    {
        let candidates = machines.map { PendingExplanation.Candidate(machine: $0.name, missing: missing($0)) }
            .filter { !$0.missing.isEmpty }
            .sorted { ($0.missing.count, $0.machine.rawValue) < ($1.missing.count, $1.machine.rawValue) }
        let summary =
            machines.isEmpty
            ? "no machine has registered yet; configuration \(configuration) needs \(describe())"
            : "no online machine matches configuration \(configuration) (\(describe())); \(machines.count) known"
        return PendingExplanation(summary: summary, candidates: Array(candidates.prefix(limit)), checkedAt: now)
    }

    /// The selector in words: "group demo-pool, tags os=linux".
    public func describe() -> String {
        var parts: [String] = []
        if !selector.machines.isEmpty { parts.append("machines \(selector.machines.map(\.rawValue).joined(separator: ", "))") }
        if !selector.groups.isEmpty { parts.append("group \(selector.groups.map(\.rawValue).joined(separator: " or "))") }
        if !selector.tags.isEmpty {
            parts.append("tags " + selector.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        }
        return parts.isEmpty ? "any machine" : parts.joined(separator: ", ")
    }

    /// Mono mode's choice: the matching machine with the most free slots, then the fewest running executions,
    /// then by name.
    public static func pickOne(_ machines: [MachineRecord]) -> MachineRecord? {
        machines.min { a, b in
            (-a.freeSlots, a.running.count, a._id) < (-b.freeSlots, b.running.count, b._id)
        }
    }

    /// Orders tests longest first by their expected duration (history first, then the definition's own estimate);
    /// tests without either go last, in suite order. Returns suite indexes.
    public static func longestFirst(_ tests: [TestDefinition], history: [TestID: Int64]) -> [Int] {
        let expected: [Int64?] = tests.map { test in
            history[test.id] ?? test.expectedDurationMs.map { Int64(clamping: $0.value) }
        }
        return tests.indices.sorted { a, b in
            switch (expected[a], expected[b]) {
            case let (x?, y?): return x != y ? x > y : a < b
            case (.some, nil): return true
            case (nil, .some): return false
            case (nil, nil): return a < b
            }
        }
    }
}
