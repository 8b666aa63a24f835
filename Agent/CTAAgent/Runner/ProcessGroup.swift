import Glibc

/// A stage's process group: the shell the runner started and everything it started that stayed in its group.
struct ProcessGroup: Hashable {
    /// The group id, which is the pid of the shell that leads it.
    let id: pid_t

    /// Sends a signal to every process in the group. Returns false when the group no longer exists.
    @discardableResult
    func signal(_ signal: Int32) -> Bool {
        Glibc.kill(-id, signal) == 0
    }

    /// Whether any process of the group is still alive.
    ///
    /// `kill(-pgid, 0)` also counts zombies, which never go away on hosts whose init does not reap orphans (some
    /// containers). Where `/proc` exists, processes in state `Z` (zombie) or `X` (dead) therefore do not count.
    var hasLiveMembers: Bool {
        if Glibc.kill(-id, 0) != 0, errno == ESRCH { return false }
        guard let members = ProcessGroup.scanProc(group: id) else { return true }
        return members.contains { $0.state != "Z" && $0.state != "X" }
    }

    /// One entry of `/proc/<pid>/stat`.
    struct ProcEntry: Hashable {
        var pid: pid_t
        var state: Character
        var group: pid_t
    }

    /// The processes of a group according to `/proc`, or nil when `/proc` cannot be read.
    static func scanProc(group: pid_t) -> [ProcEntry]? {
        guard let directory = opendir("/proc") else { return nil }
        defer { closedir(directory) }
        var members: [ProcEntry] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(name), let stat = readStat(pid: pid), stat.group == group else { continue }
            members.append(stat)
        }
        return members
    }

    /// Parses `/proc/<pid>/stat`: `pid (comm) state ppid pgrp …`; `comm` may hold spaces and parentheses.
    static func readStat(pid: pid_t) -> ProcEntry? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let bytes = buffer[..<count]
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        guard fields.count >= 3, let state = fields[0].first,
            let group = pid_t(String(decoding: fields[2], as: UTF8.self))
        else { return nil }
        return ProcEntry(pid: pid, state: Character(Unicode.Scalar(state)), group: group)
    }
}
