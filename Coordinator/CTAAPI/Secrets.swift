import CTACore

/// Secrets of the API: tokens, their hashes, and password hashes.
///
/// Tokens are `cta_` (users) or `ctae_` (agent enrollment) followed by 32 random bytes in base64url without padding.
/// Only their SHA-256 is stored; the token itself is shown once.
public enum Secrets {
    public static let userPrefix = "cta_"
    public static let enrollmentPrefix = "ctae_"

    /// `count` bytes from the system's cryptographically secure generator (getrandom on Linux).
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// A new user API token: `cta_` + 32 random bytes, base64url.
    public static func newUserToken() -> String { userPrefix + base64URL(randomBytes(32)) }

    /// A new agent enrollment token: `ctae_` + 32 random bytes, base64url.
    public static func newEnrollmentToken() -> String { enrollmentPrefix + base64URL(randomBytes(32)) }

    /// A short public identifier for a token or webhook (12 random bytes, base64url: 16 characters).
    public static func newID() -> String { base64URL(randomBytes(12)) }

    /// What is stored for a token: the hex SHA-256 of its text.
    public static func tokenHash(_ token: String) -> String { SHA256.hash(Array(token.utf8)).hexString }

    /// The kind of a presented token, from its prefix and shape (43 base64url characters after the prefix).
    public enum TokenKind: Equatable, Sendable { case user, enrollment, malformed }

    public static func kind(of token: String) -> TokenKind {
        func wellFormed(_ rest: Substring) -> Bool {
            rest.utf8.count == 43 && rest.utf8.allSatisfy { byte in base64URLAlphabet.contains(byte) }
        }
        if token.hasPrefix(enrollmentPrefix) {
            return wellFormed(token.dropFirst(enrollmentPrefix.count)) ? .enrollment : .malformed
        }
        if token.hasPrefix(userPrefix) { return wellFormed(token.dropFirst(userPrefix.count)) ? .user : .malformed }
        return .malformed
    }

    static let base64URLAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Base64url (RFC 4648 §5) without padding.
    public static func base64URL(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { out.append(base64URLAlphabet[Int((n >> UInt32(shift)) & 63)]) }
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let n = UInt32(bytes[index]) << 16
            for shift in [18, 12] { out.append(base64URLAlphabet[Int((n >> UInt32(shift)) & 63)]) }
        } else if rest == 2 {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            for shift in [18, 12, 6] { out.append(base64URLAlphabet[Int((n >> UInt32(shift)) & 63)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes base64url without padding; nil for anything else.
    public static func decodeBase64URL(_ text: String) -> [UInt8]? {
        var values: [UInt32] = []
        for byte in text.utf8 {
            guard let position = base64URLAlphabet.firstIndex(of: byte) else { return nil }
            values.append(UInt32(position))
        }
        guard values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var index = 0
        while index < values.count {
            let chunk = values[index..<min(index + 4, values.count)]
            var n: UInt32 = 0
            for (offset, value) in chunk.enumerated() { n |= value << UInt32(18 - 6 * offset) }
            out.append(UInt8(n >> 16 & 0xff))
            if chunk.count > 2 { out.append(UInt8(n >> 8 & 0xff)) }
            if chunk.count > 3 { out.append(UInt8(n & 0xff)) }
            index += 4
        }
        // Reject non-canonical encodings (bits set past the data).
        guard base64URL(out) == text else { return nil }
        return out
    }

    /// Compares two byte strings in time that depends only on their length.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }
}

/// PBKDF2 (RFC 8018 §5.2) with HMAC-SHA256 as the pseudo-random function.
public enum PBKDF2 {
    /// The derived key of `password` and `salt` after `iterations` rounds, `length` bytes long.
    public static func sha256(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8] {
        precondition(iterations >= 1 && length >= 1)
        let keyed = HMACSHA256(key: password)
        var derived: [UInt8] = []
        derived.reserveCapacity(length + 32)
        var block: UInt32 = 1
        while derived.count < length {
            var mac = keyed
            mac.update(salt + [UInt8(block >> 24), UInt8(block >> 16 & 0xff), UInt8(block >> 8 & 0xff), UInt8(block & 0xff)])
            var u = mac.finalize().bytes
            var t = u
            if iterations > 1 {
                for _ in 2...iterations {
                    var next = keyed
                    next.update(u)
                    u = next.finalize().bytes
                    for i in 0..<t.count { t[i] ^= u[i] }
                }
            }
            derived += t
            block += 1
        }
        return Array(derived.prefix(length))
    }
}

/// A stored password: `pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>`.
public struct PasswordHash: Sendable, Equatable {
    /// At least this many rounds for new hashes.
    public static let defaultIterations = 120_000

    public var iterations: Int
    public var salt: [UInt8]
    public var hash: [UInt8]

    /// Hashes a new password with a fresh 16-byte salt.
    public init(password: String, iterations: Int = PasswordHash.defaultIterations) {
        self.iterations = iterations
        self.salt = Secrets.randomBytes(16)
        self.hash = PBKDF2.sha256(password: Array(password.utf8), salt: salt, iterations: iterations, length: 32)
    }

    /// A hash no password matches (random salt and hash), which costs as much to check as a real one: for the
    /// logins of users that have none, so they take as long as a wrong password.
    init(decoyIterations iterations: Int) {
        self.iterations = iterations
        self.salt = Secrets.randomBytes(16)
        self.hash = Secrets.randomBytes(32)
    }

    /// Parses a stored hash; nil when it is not one.
    public init?(stored: String) {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let iterations = Int(parts[1]), iterations >= 1,
            let salt = Secrets.decodeBase64URL(String(parts[2])), let hash = Secrets.decodeBase64URL(String(parts[3])),
            !hash.isEmpty
        else { return nil }
        self.iterations = iterations
        self.salt = salt
        self.hash = hash
    }

    public var stored: String {
        "pbkdf2-sha256$\(iterations)$\(Secrets.base64URL(salt))$\(Secrets.base64URL(hash))"
    }

    /// Whether `password` is the one hashed.
    public func verify(_ password: String) -> Bool {
        let candidate = PBKDF2.sha256(password: Array(password.utf8), salt: salt, iterations: iterations, length: hash.count)
        return Secrets.constantTimeEqual(candidate, hash)
    }
}
