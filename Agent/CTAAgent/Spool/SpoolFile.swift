import Foundation
import Glibc

/// An open file of the spool: a file descriptor closed when the object goes away.
///
/// Every call retries on `EINTR` and loops on short reads and writes. System errors become ``SpoolError``s:
/// `ENOSPC` and `EDQUOT` are ``SpoolError/Code/diskFull``, anything else ``SpoolError/Code/ioError``.
///
/// - Important: Not thread-safe; owned by one ``SpoolCore``, which is confined to one thread.
final class SpoolFile {
    let path: String
    private(set) var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// Opens an existing file for reading and writing.
    static func open(_ path: String) throws(SpoolError) -> SpoolFile {
        try open(path, flags: O_RDWR)
    }

    /// Opens a file for reading and writing, creating it if it does not exist.
    static func openOrCreate(_ path: String) throws(SpoolError) -> SpoolFile {
        try open(path, flags: O_RDWR | O_CREAT)
    }

    /// Creates a new file (it must not exist), readable and writable by the owner only.
    static func create(_ path: String) throws(SpoolError) -> SpoolFile {
        try open(path, flags: O_RDWR | O_CREAT | O_EXCL)
    }

    private static func open(_ path: String, flags: Int32) throws(SpoolError) -> SpoolFile {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, 0o600)
            if fd >= 0 { return SpoolFile(path: path, fd: fd) }
            if errno == EINTR { continue }
            throw Self.error("cannot open a spool file", path: path)
        }
    }

    /// Closes the descriptor now (a close error is ignored: the data that matters was synced before).
    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    /// The current size in bytes.
    func size() throws(SpoolError) -> Int {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Self.error("cannot read the size of a spool file", path: path) }
        return Int(info.st_size)
    }

    /// Reads the whole file.
    func readAll() throws(SpoolError) -> [UInt8] {
        try read(count: try size(), at: 0)
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    func read(count: Int, at offset: Int) throws(SpoolError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        let failure: Int32? = bytes.withUnsafeMutableBytes { buffer in
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if n > 0 {
                    done += n
                } else if n == 0 {
                    break
                } else if errno != EINTR {
                    return errno
                }
            }
            return nil
        }
        if let failure { throw Self.error("cannot read a spool file", path: path, errno: failure) }
        if done < count { bytes.removeLast(count - done) }
        return bytes
    }

    /// Writes all of `bytes` at `offset`, looping on short writes.
    func write(_ bytes: [UInt8], at offset: Int) throws(SpoolError) {
        var done = 0
        let failure: Int32? = bytes.withUnsafeBytes { buffer in
            while done < buffer.count {
                let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
                if n >= 0 {
                    done += n
                } else if errno != EINTR {
                    return errno
                }
            }
            return nil
        }
        if let failure { throw Self.error("cannot write to a spool file", path: path, errno: failure) }
    }

    /// Flushes the file's data (and the size, which `fdatasync` includes) to stable storage.
    func sync() throws(SpoolError) {
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw Self.error("cannot sync a spool file to disk", path: path)
        }
    }

    /// Cuts the file to `size` bytes.
    func truncate(to size: Int) throws(SpoolError) {
        while ftruncate(fd, off_t(size)) != 0 {
            if errno == EINTR { continue }
            throw Self.error("cannot truncate a spool file", path: path)
        }
    }

    // MARK: Directory operations

    /// Creates `path` (mode 0700) and any missing parents; syncs the parent of each directory it creates.
    static func makeDirectory(_ path: String) throws(SpoolError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw SpoolError(.ioError, "the spool path exists and is not a directory", path: path)
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectory(parent) }
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw error("cannot create the spool directory", path: path)
        }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }

    /// Syncs a directory, so that files created, renamed or removed in it stay so after a power loss.
    static func syncDirectory(_ path: String) throws(SpoolError) {
        let directory = try open(path, flags: O_RDONLY | O_DIRECTORY)
        try directory.syncFully()
    }

    private func syncFully() throws(SpoolError) {
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw Self.error("cannot sync a spool directory to disk", path: path)
        }
    }

    /// The names of the entries of a directory.
    static func list(_ path: String) throws(SpoolError) -> [String] {
        guard let dir = opendir(path) else { throw error("cannot list the spool directory", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes a file; a file that is already gone is not an error.
    static func remove(_ path: String) throws(SpoolError) {
        if unlink(path) != 0 && errno != ENOENT { throw error("cannot remove a spool file", path: path) }
    }

    /// Renames a file, replacing `to` if it exists.
    static func rename(_ from: String, to: String) throws(SpoolError) {
        if Glibc.rename(from, to) != 0 { throw error("cannot rename a spool file", path: from) }
    }

    /// Whether a file exists.
    static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    /// Converts `errno` (or `code`) into a spool error.
    static func error(_ message: String, path: String, errno code: Int32 = errno) -> SpoolError {
        let reason = String(cString: strerror(code))
        if code == ENOSPC || code == EDQUOT {
            return SpoolError(.diskFull, "\(message): \(reason)", path: path, errno: code)
        }
        return SpoolError(.ioError, "\(message): \(reason)", path: path, errno: code)
    }
}
