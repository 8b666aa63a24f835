public import CTACore
import Foundation
import Glibc
public import Logging

/// Finds and kills test processes a previous run of the agent left behind.
///
/// Stages run in process groups of their own, so when the agent dies (`kill -9`, a crash) its tests keep running,
/// adopted by init. On the next start the agent looks for processes whose environment carries
/// `CTA_EXECUTION_ID=<id>` of work it had not finished, and sends SIGKILL to their process groups before it
/// reports those tests as interrupted: nothing of the old run may keep writing into the work directory.
public enum OrphanProcesses {
    /// The process groups of processes whose environment names one of `executions`.
    static func find(executions: [ExecutionID]) -> Set<pid_t> {
        let needles = Set(executions.map { "CTA_EXECUTION_ID=\($0)" })
        let own = getpgrp()
        var groups = Set<pid_t>()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return groups }
        for entry in entries {
            guard let pid = pid_t(entry), pid != getpid() else { continue }
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            let matches = data.split(separator: 0).contains { variable in
                variable.starts(with: Array("CTA_EXECUTION_ID=".utf8))
                    && needles.contains(String(decoding: variable, as: UTF8.self))
            }
            guard matches else { continue }
            let group = getpgid(pid)
            if group > 1, group != own { groups.insert(group) }
        }
        return groups
    }

    /// Kills the process groups of `executions`' leftover processes (on a thread of its own: it reads /proc).
    public static func kill(executions: [ExecutionID], logger: Logger) async {
        let groups = await onDedicatedThread("cta-orphans") {
            let groups = find(executions: executions)
            for group in groups { Glibc.kill(-group, SIGKILL) }
            return groups
        }
        if !groups.isEmpty {
            logger.warning(
                "killed test processes left by the previous run", metadata: ["cta.process.groups": "\(groups.sorted())"])
        }
    }
}
