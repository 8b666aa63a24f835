import Glibc

/// Reads a small text file (a configuration or definition file) whole, refusing what is surely not one.
public enum TextFile {
    /// Why a file could not be read.
    public enum Failure: Error, Hashable, Sendable {
        /// There is no such file.
        case missing
        /// It could not be opened; the system's reason.
        case cannotOpen(String)
        /// It could not be read (a directory, an I/O error); the system's reason.
        case cannotRead(String)
        /// It is larger than the limit.
        case tooLarge(limit: Int)
        /// It is not UTF-8 text.
        case notUTF8
    }

    /// Reads the file at `path` as UTF-8 text of at most `maximumSize` bytes.
    public static func read(_ path: String, maximumSize: Int) -> Result<String, Failure> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            return .failure(code == ENOENT ? .missing : .cannotOpen(String(cString: strerror(code))))
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                return .failure(.cannotRead(String(cString: strerror(code))))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[..<count])
            if bytes.count > maximumSize { return .failure(.tooLarge(limit: maximumSize)) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(.notUTF8) }
        return .success(text)
    }
}
