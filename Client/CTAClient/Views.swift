import Foundation
public import CTACore

/// The tables and detail views the commands print for people.
public enum Views {
    // MARK: Machines

    /// A machine's state in one word: `draining`, `online` or `offline`.
    public static func machineState(_ machine: JSONValue) -> String {
        let draining = machine["draining"]?.bool == true || machine["drainRequested"]?.bool == true
        let online = machine["online"]?.bool ?? false
        if draining { return online ? "draining" : "offline" }
        return online ? "online" : "offline"
    }

    public static func machines(_ machines: [JSONValue], style: Style) -> Table {
        Table(
            headers: ["NAME", "STATE", "GROUPS", "TAGS", "LAST SEEN"],
            rows: machines.map { machine in
                [
                    machine["name"]?.cell ?? "-",
                    style.status(machineState(machine)),
                    machine["groups"]?.cell ?? "-",
                    machine["tags"]?.cell ?? "-",
                    HumanFormat.time((machine["lastSeenAt"] ?? machine["lastSeen"])?.string),
                ]
            })
    }

    /// Every field of an object, one `key: value` per line, keys in order.
    public static func details(_ object: JSONValue, style: Style) -> String {
        guard case .object(let fields) = object else { return object.cell + "\n" }
        let width = fields.keys.map(\.count).max() ?? 0
        return fields.keys.sorted().map { key in
            let value = fields[key]!
            let text: String
            switch value {
            case .object, .array:
                let rendered = JSONOutput.compact(value)
                text = rendered.count > 200 ? String(rendered.prefix(200)) + "…" : rendered
            default:
                text = value.cell
            }
            return style.bold(key.padding(toLength: width, withPad: " ", startingAt: 0)) + "  " + text
        }.joined(separator: "\n") + "\n"
    }

    // MARK: Executions

    public static func executions(_ executions: [JSONValue], style: Style) -> Table {
        Table(
            headers: ["ID", "SCENARIO", "PHASE", "OK", "NOT OK", "REQUESTED BY", "CREATED"],
            rows: executions.map { execution in
                let counts = execution["counts"]
                func count(_ key: String) -> Int {
                    if case .integer(let value)? = counts?[key] { return Int(value) }
                    return 0
                }
                let notOK = count("failed") + count("partial") + count("inconclusive")
                let scenario = execution["scenario"]?.string ?? execution["scenario"]?["id"]?.string ?? "-"
                return [
                    execution["id"]?.cell ?? "-",
                    scenario,
                    style.status(execution["phase"]?.string ?? "-"),
                    "\(count("ok"))",
                    notOK > 0 ? style.red("\(notOK)") : "0",
                    execution["requestedBy"]?.cell ?? "-",
                    HumanFormat.time(execution["createdAt"]?.string),
                ]
            })
    }

    /// One execution for a person: what, where, when, how it went, and why it waits.
    public static func execution(_ execution: Execution, style: Style) -> String {
        var lines: [String] = []
        func add(_ key: String, _ value: String?) {
            guard let value, !value.isEmpty else { return }
            lines.append(style.bold(key.padding(toLength: 13, withPad: " ", startingAt: 0)) + value)
        }
        add("execution", execution.id)
        add("scenario", execution.scenario)
        add("suite", execution.suite)
        add("configuration", execution.configuration)
        add("run mode", execution.runMode)
        add("phase", style.status(execution.phase))
        add("end reason", execution.endReason)
        add("requested by", execution.requestedBy)
        add("tags", execution.tags.isEmpty ? nil : execution.tags.joined(separator: ", "))
        add("created", HumanFormat.time(execution.createdAt))
        add("dispatched", execution.dispatchedAt.map { HumanFormat.time($0) })
        add("started", execution.startedAt.map { HumanFormat.time($0) })
        add("ended", execution.endedAt.map { HumanFormat.time($0) })
        add("tests", execution.tests.map { "\($0)" })
        add("machines", execution.machines.isEmpty ? nil : execution.machines.joined(separator: ", "))
        let counts = execution.counts
        add(
            "results",
            "\(counts.ok) ok, \(counts.failed) failed, \(counts.partial) partial, \(counts.inconclusive) inconclusive"
                + (counts.skipped > 0 ? ", \(counts.skipped) skipped" : ""))
        if let pending = execution.pending, execution.phase == "pending" || execution.phase == "timeout" {
            add("pending", pending.summary)
            for candidate in pending.candidates {
                lines.append("  \(candidate.machine): \(candidate.missing.joined(separator: "; "))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func results(_ results: [TestResultItem], style: Style) -> Table {
        Table(
            headers: ["TEST", "MACHINE", "STATUS", "ATTEMPT", "DURATION", "MESSAGE"],
            rows: results.map { result in
                [
                    result.displayName, result.machine, style.status(result.status), "\(result.attempt ?? 1)",
                    result.durationMs.map { HumanFormat.duration(milliseconds: $0) } ?? "-",
                    result.status == "ok" ? "" : ProgressRenderer.oneLine(result.message ?? ""),
                ]
            })
    }

    public static func attachments(_ attachments: [AttachmentInfo], style: Style) -> Table {
        Table(
            headers: ["NAME", "SIZE", "MACHINE", "TEST", "SHA-256", "ID"],
            rows: attachments.map { attachment in
                [
                    attachment.name, attachment.size.map { "\($0)" } ?? "-", attachment.machine ?? "-",
                    attachment.test ?? "-", attachment.sha256.map { String($0.prefix(16)) } ?? "-", attachment.id ?? "-",
                ]
            })
    }
}
