public import Foundation

/// A user, in `apiUsers` (`_id` = the name).
public struct UserRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var role: Role
    public var groups: [String]
    public var disabled: Bool
    /// ``PasswordHash/stored``; nil when the user has no password (tokens only).
    public var passwordHash: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(name: String, role: Role, groups: [String], disabled: Bool = false, passwordHash: String? = nil, at: Date) {
        self._id = name
        self.role = role
        self.groups = groups
        self.disabled = disabled
        self.passwordHash = passwordHash
        self.createdAt = at
        self.updatedAt = at
    }

    public var name: String { _id }
}

/// A group, in `apiGroups` (`_id` = the name).
public struct GroupRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var description: String
    public var createdAt: Date

    public init(name: String, description: String, at: Date) {
        self._id = name
        self.description = description
        self.createdAt = at
    }
}

/// A user's API token, in `apiTokens` (`_id` = the public token id). Only the SHA-256 of the secret is kept.
public struct TokenRecord: Codable, Hashable, Sendable {
    public var _id: String
    /// Hex SHA-256 of the token text (unique index).
    public var hash: String
    public var user: String
    public var name: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var revokedAt: Date?
    public var lastUsedAt: Date?

    public init(id: String, hash: String, user: String, name: String, createdAt: Date, expiresAt: Date?) {
        self._id = id
        self.hash = hash
        self.user = user
        self.name = name
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    /// Whether the token may be used at `now`.
    public func isValid(at now: Date) -> Bool {
        revokedAt == nil && (expiresAt.map { $0 > now } ?? true)
    }
}

/// An agent enrollment token, in `apiEnrollmentTokens`: role-less, accepted only on agent endpoints.
public struct EnrollmentTokenRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var hash: String
    public var name: String
    /// The one machine it is for; nil for any.
    public var machine: String?
    public var createdBy: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var revokedAt: Date?
    public var lastUsedAt: Date?

    public init(id: String, hash: String, name: String, machine: String?, createdBy: String, createdAt: Date, expiresAt: Date?) {
        self._id = id
        self.hash = hash
        self.name = name
        self.machine = machine
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }

    public func isValid(at now: Date) -> Bool {
        revokedAt == nil && (expiresAt.map { $0 > now } ?? true)
    }
}

/// A one-time decision claimed in the database (`apiClaims`): the first insert of an `_id` wins.
struct ClaimRecord: Codable, Sendable {
    var _id: String
    var by: String
    var at: Date
}

/// An attachment's metadata, in `apiAttachments` (`_id` = `<execution>/<name>`, or the agent's attachment id); its
/// bytes are in `apiAttachmentChunks`, 255 KiB per document, keyed `<attachment id>#<n>`, or
/// `<attachment id>#<sha256>#<n>` for an agent's upload (``chunkDigest``).
public struct AttachmentRecord: Codable, Hashable, Sendable {
    public var _id: String
    public var executionID: String
    public var name: String
    public var size: Int64
    public var sha256: String
    public var chunkSize: Int
    public var chunks: Int
    public var machine: String?
    public var test: String?
    public var contentType: String
    public var uploadedBy: String
    public var uploadedAt: Date
    /// False while the chunks are being written: an incomplete upload is never served.
    public var complete: Bool
    /// Set for an agent's upload: its chunks are those carrying this digest, so an upload of other content under the
    /// same id never writes over them.
    public var chunkDigest: String?

    public init(
        _id: String, executionID: String, name: String, size: Int64, sha256: String, chunkSize: Int, chunks: Int,
        machine: String?, test: String?, contentType: String, uploadedBy: String, uploadedAt: Date, complete: Bool
    ) {
        self._id = _id
        self.executionID = executionID
        self.name = name
        self.size = size
        self.sha256 = sha256
        self.chunkSize = chunkSize
        self.chunks = chunks
        self.machine = machine
        self.test = test
        self.contentType = contentType
        self.uploadedBy = uploadedBy
        self.uploadedAt = uploadedAt
        self.complete = complete
    }
}

struct AttachmentChunk: Codable, Sendable {
    var _id: String
    var attachment: String
    /// The SHA-256 of the whole content, for an agent's upload (see ``AttachmentRecord/chunkDigest``).
    var digest: String?
    var n: Int
    var data: Data
}
