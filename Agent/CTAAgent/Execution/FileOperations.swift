import CTACore
import Foundation
import Glibc

// Blocking file-system work for the executor. Everything here blocks; async code reaches it through
// `onDedicatedThread` (BlockingWorker.swift), never directly from Swift's cooperative pool.

/// A file-system problem, in words safe to show a user.
struct FileProblem: Error, CustomStringConvertible {
    var description: String
    /// Whether writing (rather than reading) failed.
    var writing = false

    init(_ description: String, writing: Bool = false) {
        self.description = description
        self.writing = writing
    }

    /// A problem with an `errno` value.
    init(_ what: String, errno code: Int32, writing: Bool = false) {
        description = "\(what): \(String(cString: strerror(code)))"
        self.writing = writing
    }
}

enum FileOperations {
    /// The `lstat` of a path, or nil when it does not exist (or cannot be read).
    static func status(_ path: String) -> stat? {
        var info = stat()
        return lstat(path, &info) == 0 ? info : nil
    }

    static func isDirectory(_ info: stat) -> Bool { info.st_mode & S_IFMT == S_IFDIR }
    static func isRegular(_ info: stat) -> Bool { info.st_mode & S_IFMT == S_IFREG }
    static func isSymlink(_ info: stat) -> Bool { info.st_mode & S_IFMT == S_IFLNK }

    /// Removes a file or a directory tree without following symbolic links. Directories a test made read-only are
    /// made writable first, so a leftover tree can always be removed by its owner.
    static func removeTree(_ path: String) throws(FileProblem) {
        guard let info = status(path) else { return }
        if isDirectory(info) {
            if access(path, W_OK | X_OK) != 0 { _ = chmod(path, 0o700) }
            for name in try entries(of: path) { try removeTree(path + "/" + name) }
            if rmdir(path) != 0, errno != ENOENT { throw FileProblem("could not remove \(path)", errno: errno) }
        } else if unlink(path) != 0, errno != ENOENT {
            throw FileProblem("could not remove \(path)", errno: errno)
        }
    }

    /// The names in a directory, without `.` and `..`, sorted by their UTF-8 bytes.
    static func entries(of path: String) throws(FileProblem) -> [String] {
        guard let directory = opendir(path) else { throw FileProblem("could not read \(path)", errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Creates a directory and its parents.
    static func makeDirectory(_ path: String) throws(FileProblem) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FileProblem("could not create the directory \(path)")
        }
    }

    /// A regular file found by ``regularFiles(under:)``.
    struct FoundFile: Hashable {
        /// The path relative to the walked root.
        var relativePath: String
        /// The absolute path.
        var path: String
        /// The size in bytes.
        var size: UInt64
        /// The last path component.
        var name: String { String(relativePath.split(separator: "/").last ?? Substring(relativePath)) }
    }

    /// Every regular file below `root`, in a stable order (depth first, names sorted by their bytes), without
    /// following symbolic links. Unreadable directories are skipped.
    static func regularFiles(under root: String, limit: Int = 100_000) -> [FoundFile] {
        var found: [FoundFile] = []
        func walk(_ directory: String, _ prefix: String) {
            guard found.count < limit, let names = try? entries(of: directory) else { return }
            for name in names {
                let path = directory + "/" + name
                let relative = prefix.isEmpty ? name : prefix + "/" + name
                guard let info = status(path) else { continue }
                if isDirectory(info) {
                    walk(path, relative)
                } else if isRegular(info), found.count < limit {
                    found.append(FoundFile(relativePath: relative, path: path, size: UInt64(max(0, info.st_size))))
                }
            }
        }
        walk(root, "")
        return found
    }

    /// Reads a whole file, or nil when it cannot be read.
    static func read(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var info = stat()
        if fstat(fd, &info) == 0 { out.reserveCapacity(Int(max(0, info.st_size))) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count > 0 {
                out.append(contentsOf: buffer[..<count])
            } else if count == 0 {
                return out
            } else if errno != EINTR {
                return nil
            }
        }
    }

    /// Reads at most `count` bytes of a file from `offset`.
    static func read(_ path: String, offset: UInt64, count: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let rc = out.withUnsafeMutableBytes {
                pread(fd, $0.baseAddress!.advanced(by: done), count - done, off_t(offset) + off_t(done))
            }
            if rc == 0 { break }
            if rc < 0 {
                if errno == EINTR { continue }
                return nil
            }
            done += rc
        }
        out.removeSubrange(done...)
        return out
    }

    /// Copies `source` to `destination` (created or truncated, mode 0644), computing the size and SHA-256 of what
    /// was copied in the same pass. With `durable`, the copy is flushed to disk before this returns.
    static func copy(_ source: String, to destination: String, durable: Bool = false) throws(FileProblem)
        -> (size: UInt64, sha256: String)
    {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw FileProblem("could not open \(source)", errno: errno) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw FileProblem("could not create \(destination)", errno: errno, writing: true) }
        defer { close(output) }
        var hash = SHA256()
        var size: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileProblem("could not read \(source)", errno: errno)
            }
            if count == 0 { break }
            let failure = buffer.withUnsafeBytes { raw -> FileProblem? in
                let chunk = UnsafeRawBufferPointer(rebasing: raw[..<count])
                hash.update(chunk)
                do throws(FileProblem) {
                    try writeAll(output, chunk, to: destination)
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw failure }
            size += UInt64(count)
        }
        if durable, fsync(output) != 0 {
            throw FileProblem("could not flush \(destination)", errno: errno, writing: true)
        }
        return (size, hash.finalize().hexString)
    }

    /// Writes all of `bytes` to a descriptor.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, to name: String) throws(FileProblem) {
        var done = 0
        while done < bytes.count {
            let rc = write(fd, bytes.baseAddress!.advanced(by: done), bytes.count - done)
            if rc < 0 {
                if errno == EINTR { continue }
                throw FileProblem("could not write \(name)", errno: errno, writing: true)
            }
            done += rc
        }
    }

    /// Moves `source` to `destination`. A missing destination is replaced by a rename; when both are directories
    /// their contents are merged (recursively); any other clash is an error naming the clashing path.
    static func move(_ source: String, to destination: String, shownAs shown: String) throws(FileProblem) {
        guard let target = status(destination) else {
            try makeDirectory((destination as NSString).deletingLastPathComponent)
            if rename(source, destination) != 0 { throw FileProblem("could not move into \(shown)", errno: errno) }
            return
        }
        guard let info = status(source), isDirectory(info), isDirectory(target) else {
            throw FileProblem("\(shown) already exists")
        }
        for name in try entries(of: source) {
            try move(
                source + "/" + name, to: destination + "/" + name, shownAs: shown == "." ? name : shown + "/" + name)
        }
    }

    /// Whether a relative path is safe to join to a directory: not absolute, no `..` component.
    static func isSafeRelativePath(_ path: String) -> Bool {
        !path.hasPrefix("/") && !path.split(separator: "/", omittingEmptySubsequences: false).contains("..")
    }

    /// `base` joined with a relative path; `.` components and empty paths leave `base` unchanged.
    static func join(_ base: String, _ relative: String?) -> String {
        guard let relative else { return base }
        let parts = relative.split(separator: "/").filter { $0 != "." }
        return parts.isEmpty ? base : base + "/" + parts.joined(separator: "/")
    }
}
