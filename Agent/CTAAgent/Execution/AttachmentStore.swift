public import CTACore
import Foundation
import Glibc

/// The agent's local store of files to upload: artifacts, screenshots and logs of finished tests, kept until the
/// attachment service has them.
///
/// Each file is a copy named after its ``CTACore/AttachmentID`` (`<directory>/<id>`), written under a temporary name,
/// flushed to disk and renamed, so a stored file is always complete; the references the executor puts into results
/// (which are spooled) never point at a half-written file.
///
/// - Important: ``add(file:name:)`` blocks (it copies and hashes the whole file): call it from a thread of your own,
///   or use the `async` overload, which does.
public struct AttachmentStore: Sendable {
    /// The store's directory; created on demand.
    public let directory: String

    /// Creates a store in `directory` (e.g. `<state>/attachments`).
    public init(directory: String) {
        self.directory = directory
    }

    /// Copies `file` into the store under a new id, computing its size and SHA-256; the content type follows the
    /// extension of `name` (see ``contentType(forName:)``).
    ///
    /// - Parameters:
    ///   - file: The file to copy (a regular file; symbolic links are followed).
    ///   - name: The name users see, without a directory part.
    /// - Throws: ``AttachmentStoreError`` when the file cannot be read or the store cannot be written.
    public func add(file: String, name: String) throws -> AttachmentReference {
        do {
            try FileOperations.makeDirectory(directory)
        } catch {
            throw AttachmentStoreError(.storeUnavailable, "could not create the attachment store \(directory)")
        }
        let id = AttachmentID()
        let target = path(for: id)
        let partial = directory + "/." + id.description + ".partial"
        let copied: (size: UInt64, sha256: String)
        do throws(FileProblem) {
            if let info = FileOperations.status(file), FileOperations.isDirectory(info) {
                throw FileProblem("\(file) is a directory")
            }
            copied = try FileOperations.copy(file, to: partial, durable: true)
        } catch {
            unlink(partial)
            throw AttachmentStoreError(error.writing ? .storeUnavailable : .sourceUnreadable, error.description)
        }
        guard rename(partial, target) == 0 else {
            let problem = FileProblem("could not store \(name)", errno: errno)
            unlink(partial)
            throw AttachmentStoreError(.storeUnavailable, problem.description)
        }
        syncDirectory()
        return AttachmentReference(
            id: id, name: Self.fileName(name), size: copied.size, contentType: Self.contentType(forName: name),
            sha256: copied.sha256)
    }

    /// ``add(file:name:)`` on a thread of its own, off Swift's cooperative pool.
    public func add(file: String, name: String) async throws -> AttachmentReference {
        let result = await onDedicatedThread("cta-attachment-add") { () -> Result<AttachmentReference, any Error> in
            Result { try self.add(file: file, name: name) }
        }
        return try result.get()
    }

    /// Where the content of an attachment is (or would be) stored.
    public func path(for id: AttachmentID) -> String {
        directory + "/" + id.description
    }

    /// Whether the store holds an attachment.
    public func contains(_ id: AttachmentID) -> Bool {
        FileOperations.status(path(for: id)).map(FileOperations.isRegular) ?? false
    }

    /// The media type for a file name's extension (case-insensitive): `png`, `jpg`/`jpeg`, `gif`, `svg`, `webp`,
    /// `txt`/`log`, `json`, `xml`, `html`/`htm`, `zip`, `gz`/`tgz`, `pdf`, `mp4`, `webm`; anything else is
    /// `application/octet-stream`.
    public static func contentType(forName name: String) -> String {
        let base = fileName(name)
        guard let dot = base.lastIndex(of: "."), dot != base.startIndex else { return "application/octet-stream" }
        switch base[base.index(after: dot)...].lowercased() {
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "gif": return "image/gif"
        case "svg": return "image/svg+xml"
        case "webp": return "image/webp"
        case "txt", "log": return "text/plain"
        case "json": return "application/json"
        case "xml": return "application/xml"
        case "html", "htm": return "text/html"
        case "zip": return "application/zip"
        case "gz", "tgz": return "application/gzip"
        case "pdf": return "application/pdf"
        case "mp4": return "video/mp4"
        case "webm": return "video/webm"
        default: return "application/octet-stream"
        }
    }

    /// A name fit for an attachment reference: the last path component, at most 255 bytes, never empty.
    static func fileName(_ name: String) -> String {
        let last = name.split(separator: "/").last.map(String.init) ?? ""
        let cleaned = last == "." || last == ".." || last.isEmpty ? "file" : last
        guard cleaned.utf8.count > 255 else { return cleaned }
        var scalars = String.UnicodeScalarView()
        var bytes = 0
        for scalar in cleaned.unicodeScalars {
            bytes += String(scalar).utf8.count
            if bytes > 255 { break }
            scalars.append(scalar)
        }
        return String(scalars)
    }

    /// Flushes the directory entry of a renamed file, so the file survives a crash under its final name.
    private func syncDirectory() {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

/// Why a file could not be added to the ``AttachmentStore``, in words safe to show a user.
///
/// Match on ``code``; new codes may be added without breaking callers.
public struct AttachmentStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of problem.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable { case sourceUnreadable, storeUnavailable }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The file to add could not be read.
        public static let sourceUnreadable = Code(.sourceUnreadable)
        /// The store's directory could not be created or written.
        public static let storeUnavailable = Code(.storeUnavailable)

        public var description: String { base.rawValue }
    }

    /// The kind of problem.
    public var code: Code
    /// What happened.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
