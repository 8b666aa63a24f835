import Glibc
import Synchronization

// posix_spawn of `/bin/sh -c` in a new process group, and the few GNU extensions it needs. The GNU functions
// (`pipe2`, `posix_spawn_file_actions_addchdir_np`, `posix_spawn_file_actions_addclosefrom_np`) are not visible
// through the Glibc module, so they are looked up once with `dlsym`; when one is missing the code falls back to a
// portable equivalent.

private typealias Pipe2Function = @convention(c) (UnsafeMutablePointer<Int32>?, Int32) -> Int32
private typealias AddChdirFunction =
    @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
private typealias AddClosefromFunction =
    @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

/// The GNU extensions found in the running C library.
private struct GNUExtensions: Sendable {
    let pipe2: Pipe2Function?
    let addChdir: AddChdirFunction?
    let addClosefrom: AddClosefromFunction?

    static let shared: GNUExtensions = {
        let handle = dlopen(nil, RTLD_NOW)
        func lookup<F>(_ name: String, as type: F.Type) -> F? {
            guard let handle, let symbol = dlsym(handle, name) else { return nil }
            return unsafeBitCast(symbol, to: type)
        }
        return GNUExtensions(
            pipe2: lookup("pipe2", as: Pipe2Function.self),
            addChdir: lookup("posix_spawn_file_actions_addchdir_np", as: AddChdirFunction.self),
            addClosefrom: lookup("posix_spawn_file_actions_addclosefrom_np", as: AddClosefromFunction.self)
        )
    }()
}

/// Serialises descriptor creation with spawning when `pipe2` is missing, so that no child inherits a descriptor in
/// the window between `pipe` and `fcntl(FD_CLOEXEC)`.
private let descriptorLock = Mutex(())

/// A pipe whose both ends are close-on-exec; the read end is non-blocking.
struct PipePair {
    var read: Int32
    var write: Int32

    /// Creates the pipe; returns the `errno` on failure.
    static func make() -> Result<PipePair, SystemErrno> {
        var fds: [Int32] = [-1, -1]
        let rc: Int32
        if let pipe2 = GNUExtensions.shared.pipe2 {
            rc = fds.withUnsafeMutableBufferPointer { pipe2($0.baseAddress, O_CLOEXEC) }
        } else {
            rc = descriptorLock.withLock { _ in
                let rc = fds.withUnsafeMutableBufferPointer { Glibc.pipe($0.baseAddress) }
                if rc == 0 {
                    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
                    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
                }
                return rc
            }
        }
        guard rc == 0 else { return .failure(SystemErrno(errno)) }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return .success(PipePair(read: fds[0], write: fds[1]))
    }
}

/// An `errno` value, with its text.
struct SystemErrno: Error, Hashable, CustomStringConvertible {
    var code: Int32
    init(_ code: Int32) { self.code = code }
    var description: String { String(cString: strerror(code)) + " (errno \(code))" }
}

/// What to start: the shell, its command, where, with which environment and output descriptors.
struct SpawnRequest {
    /// The shell, normally `/bin/sh`.
    var shell: String
    /// The command line passed to `shell -c`.
    var command: String
    /// The absolute working directory; it must exist.
    var directory: String
    /// The complete environment.
    var environment: [String: String]
    /// The descriptor that becomes the child's standard output.
    var standardOutput: Int32
    /// The descriptor that becomes the child's standard error.
    var standardError: Int32
}

/// Starts `request.shell -c request.command` as the leader of a new process group, with standard input from
/// `/dev/null`, default signal dispositions, an empty signal mask and no descriptors beyond 0, 1 and 2 (where the
/// C library can close them).
///
/// Returns the child's pid (which is also its process group id) or the `errno` `posix_spawn` reported.
func spawnInNewProcessGroup(_ request: SpawnRequest) -> Result<pid_t, SystemErrno> {
    let extensions = GNUExtensions.shared
    var arguments = [request.shell, "-c", request.command]
    if extensions.addChdir == nil {
        // Portable fallback: the shell changes directory itself before running the command.
        arguments = [
            request.shell, "-c", "cd -- \"$1\" || exit 126; exec \"$0\" -c \"$2\"", request.shell,
            request.directory, request.command,
        ]
    }

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, request.standardOutput, 1)
    posix_spawn_file_actions_adddup2(&actions, request.standardError, 2)
    if let addClosefrom = extensions.addClosefrom { _ = addClosefrom(&actions, 3) }
    if let addChdir = extensions.addChdir { _ = addChdir(&actions, request.directory) }

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    var allSignals = sigset_t()
    sigfillset(&allSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    posix_spawnattr_setsigdefault(&attributes, &allSignals)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(
        &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

    let argv = arguments.map { strdup($0) } + [nil]
    let envp = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for pointer in argv { free(pointer) }
        for pointer in envp { free(pointer) }
    }

    var pid: pid_t = 0
    let rc: Int32
    if extensions.pipe2 == nil {
        rc = descriptorLock.withLock { _ in posix_spawn(&pid, request.shell, &actions, &attributes, argv, envp) }
    } else {
        rc = posix_spawn(&pid, request.shell, &actions, &attributes, argv, envp)
    }
    guard rc == 0 else { return .failure(SystemErrno(rc)) }
    return .success(pid)
}

/// How a child ended, decoded from a `waitpid` status.
enum WaitStatus: Hashable {
    case exited(Int32)
    case signalled(Int32)

    /// Decodes a status word (`WIFEXITED`, `WEXITSTATUS`, `WTERMSIG` are macros the Glibc module does not import).
    init?(raw status: Int32) {
        let low = status & 0x7f
        if low == 0 {
            self = .exited((status >> 8) & 0xff)
        } else if low != 0x7f {
            self = .signalled(low)
        } else {
            return nil  // stopped, not ended
        }
    }
}

/// Reaps `pid` if it has ended, without blocking. Returns nil while it runs.
func reapIfEnded(_ pid: pid_t) -> WaitStatus? {
    var status: Int32 = 0
    while true {
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid { return WaitStatus(raw: status) }
        if rc == -1, errno == EINTR { continue }
        if rc == -1, errno == ECHILD { return .exited(-1) }  // already reaped elsewhere; should not happen
        return nil
    }
}
