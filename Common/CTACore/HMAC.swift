// HMAC (RFC 2104) over SHA-256, for signing webhook bodies.

/// A keyed message authentication code: HMAC-SHA256 (RFC 2104, test vectors in RFC 4231).
///
/// ```swift
/// let code = HMACSHA256.authenticationCode(for: Array(body.utf8), key: Array(secret.utf8))
/// let header = "sha256=" + code.hexString
/// ```
///
/// Like ``SHA256``, the value is a plain struct fed in pieces; copying it forks the computation.
public struct HMACSHA256: Sendable {
    /// SHA-256 works on 64-byte blocks; the key is padded (or first hashed) to this size.
    private static let blockSize = 64

    private var inner = SHA256()
    private var outer = SHA256()

    /// Starts a code keyed with `key`. A key longer than a block is hashed first, as RFC 2104 says.
    public init(key: some Sequence<UInt8>) {
        var block = Array(key)
        if block.count > Self.blockSize { block = SHA256.hash(block).bytes }
        block.append(contentsOf: repeatElement(0, count: Self.blockSize - block.count))
        inner.update(block.map { $0 ^ 0x36 })
        outer.update(block.map { $0 ^ 0x5c })
    }

    /// Adds bytes to the message.
    public mutating func update(_ bytes: [UInt8]) {
        inner.update(bytes)
    }

    /// Adds the UTF-8 form of a string to the message.
    public mutating func update(_ text: String) {
        inner.update(text)
    }

    /// The code of the message so far: SHA-256 of the outer key block followed by the inner digest.
    public func finalize() -> SHA256.Digest {
        var result = outer
        result.update(inner.finalize().bytes)
        return result.finalize()
    }

    /// The code of `message` under `key` in one call.
    public static func authenticationCode(
        for message: some Sequence<UInt8>, key: some Sequence<UInt8>
    ) -> SHA256.Digest {
        var code = HMACSHA256(key: key)
        code.update(Array(message))
        return code.finalize()
    }
}
