// SHA-256 (FIPS 180-4, section 6.2) with a streaming interface, for attachment digests and webhook signatures.

/// A SHA-256 digest computed over data given in pieces.
///
/// ```swift
/// var hash = SHA256()
/// hash.update(firstChunk)
/// hash.update(secondChunk)
/// let hex = hash.finalize().hexString   // 64 lower-case hexadecimal digits
/// ```
///
/// The value is a plain struct: copying it forks the computation. Hashing does no I/O; callers that hash big files
/// read them off Swift's cooperative pool.
public struct SHA256: Sendable {
    /// The finished digest: 32 bytes.
    public struct Digest: Hashable, Sendable, CustomStringConvertible {
        /// The 32 digest bytes.
        public let bytes: [UInt8]

        /// The digest as 64 lower-case hexadecimal digits, the form attachment references carry.
        public var hexString: String {
            let digits = Array("0123456789abcdef".utf8)
            var out = [UInt8]()
            out.reserveCapacity(64)
            for byte in bytes {
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0x0f)])
            }
            return String(decoding: out, as: UTF8.self)
        }

        public var description: String { hexString }
    }

    /// The hash state H0…H7.
    private var state: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19
    )
    /// Bytes of an incomplete block, waiting for more input.
    private var buffer = [UInt8]()
    /// How many bytes were hashed in all.
    private var length: UInt64 = 0

    /// Starts a new digest.
    public init() {
        buffer.reserveCapacity(64)
    }

    /// The digest of `bytes` in one call.
    public static func hash(_ bytes: some Sequence<UInt8>) -> Digest {
        var hash = SHA256()
        hash.update(Array(bytes))
        return hash.finalize()
    }

    /// Adds bytes to the message.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        length &+= UInt64(bytes.count)
        var position = 0
        if !buffer.isEmpty {
            let take = min(64 - buffer.count, bytes.count)
            buffer.append(contentsOf: bytes[0..<take])
            position = take
            guard buffer.count == 64 else { return }
            buffer.withUnsafeBytes { compress($0.baseAddress!) }
            buffer.removeAll(keepingCapacity: true)
        }
        while bytes.count - position >= 64 {
            compress(bytes.baseAddress!.advanced(by: position))
            position += 64
        }
        if position < bytes.count { buffer.append(contentsOf: bytes[position...]) }
    }

    /// Adds bytes to the message.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Adds the UTF-8 form of a string to the message.
    public mutating func update(_ text: String) {
        update(Array(text.utf8))
    }

    /// Pads the message and returns the digest. The value can still be used afterwards: it continues to describe
    /// the message without the padding (finalizing a copy).
    public func finalize() -> Digest {
        var copy = self
        let bitLength = length &* 8
        var padding: [UInt8] = [0x80]
        let afterMarker = (copy.buffer.count + 1) % 64
        let zeros = afterMarker <= 56 ? 56 - afterMarker : 120 - afterMarker
        padding.append(contentsOf: repeatElement(0, count: zeros))
        for shift in stride(from: 56, through: 0, by: -8) {
            padding.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift)))
        }
        let savedLength = copy.length
        copy.update(padding)
        copy.length = savedLength
        precondition(copy.buffer.isEmpty)
        var out = [UInt8]()
        out.reserveCapacity(32)
        let words = [
            copy.state.0, copy.state.1, copy.state.2, copy.state.3,
            copy.state.4, copy.state.5, copy.state.6, copy.state.7,
        ]
        for word in words {
            out.append(UInt8(truncatingIfNeeded: word >> 24))
            out.append(UInt8(truncatingIfNeeded: word >> 16))
            out.append(UInt8(truncatingIfNeeded: word >> 8))
            out.append(UInt8(truncatingIfNeeded: word))
        }
        return Digest(bytes: out)
    }

    /// Processes one 64-byte block.
    private mutating func compress(_ block: UnsafeRawPointer) {
        var w = (
            UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0),
            UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0)
        )
        withUnsafeMutableBytes(of: &w) { raw in
            let words = raw.bindMemory(to: UInt32.self)
            for t in 0..<16 {
                let base = t * 4
                words[t] =
                    UInt32(block.load(fromByteOffset: base, as: UInt8.self)) << 24
                    | UInt32(block.load(fromByteOffset: base + 1, as: UInt8.self)) << 16
                    | UInt32(block.load(fromByteOffset: base + 2, as: UInt8.self)) << 8
                    | UInt32(block.load(fromByteOffset: base + 3, as: UInt8.self))
            }
            var a = state.0
            var b = state.1
            var c = state.2
            var d = state.3
            var e = state.4
            var f = state.5
            var g = state.6
            var h = state.7
            SHA256.roundConstants.withUnsafeBufferPointer { k in
                for t in 0..<64 {
                    let wt: UInt32
                    if t < 16 {
                        wt = words[t]
                    } else {
                        // The schedule only ever needs the last 16 words: keep them in a ring.
                        let w15 = words[(t - 15) & 15]
                        let w2 = words[(t - 2) & 15]
                        let s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3)
                        let s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10)
                        wt = words[t & 15] &+ s0 &+ words[(t - 7) & 15] &+ s1
                        words[t & 15] = wt
                    }
                    let sum1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                    let choose = (e & f) ^ (~e & g)
                    let t1 = h &+ sum1 &+ choose &+ k[t] &+ wt
                    let sum0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                    let majority = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = sum0 &+ majority
                    h = g
                    g = f
                    f = e
                    e = d &+ t1
                    d = c
                    c = b
                    b = a
                    a = t1 &+ t2
                }
            }
            state.0 &+= a
            state.1 &+= b
            state.2 &+= c
            state.3 &+= d
            state.4 &+= e
            state.5 &+= f
            state.6 &+= g
            state.7 &+= h
        }
    }

    /// The first 32 bits of the fractional parts of the cube roots of the first 64 primes (FIPS 180-4, 4.2.2).
    private static let roundConstants: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]
}

@inline(__always)
private func rotr(_ value: UInt32, _ count: UInt32) -> UInt32 {
    (value >> count) | (value << (32 &- count))
}
