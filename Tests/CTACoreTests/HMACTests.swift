import CTACore
import Testing

@Suite("HMAC-SHA256: RFC 4231 vectors")
struct HMACTests {
    static let longKey = [UInt8](repeating: 0xaa, count: 131)

    /// RFC 4231 section 4, test cases 1–4, 6 and 7 (case 5, a truncated output, follows below).
    static let vectors: [(name: String, key: [UInt8], data: [UInt8], code: String)] = [
        (
            "case 1", [UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        ),
        (
            "case 2: a key shorter than the output", Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ),
        (
            "case 3: combined key and data of 50 bytes", [UInt8](repeating: 0xaa, count: 20),
            [UInt8](repeating: 0xdd, count: 50), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        ),
        (
            "case 4: a key of 25 counting bytes", Array(1...25), [UInt8](repeating: 0xcd, count: 50),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
        ),
        (
            "case 6: a key longer than a block", longKey,
            Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        ),
        (
            "case 7: key and data longer than a block", longKey,
            Array(
                ("This is a test using a larger than block-size key and a larger than block-size data. "
                    + "The key needs to be hashed before being used by the HMAC algorithm.").utf8),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        ),
    ]

    @Test("RFC 4231 test cases", arguments: vectors.indices)
    func vector(_ index: Int) {
        let vector = Self.vectors[index]
        #expect(
            HMACSHA256.authenticationCode(for: vector.data, key: vector.key).hexString == vector.code, "\(vector.name)")
    }

    @Test("RFC 4231 case 5: the output truncated to 128 bits")
    func truncated() {
        let code = HMACSHA256.authenticationCode(
            for: Array("Test With Truncation".utf8), key: [UInt8](repeating: 0x0c, count: 20))
        #expect(code.hexString.prefix(32) == "a3b6167473100ee06e0c796c2955552b")
    }

    @Test("the message fed in pieces gives the same code; a copy forks the computation")
    func streaming() {
        var code = HMACSHA256(key: Array("Jefe".utf8))
        code.update("what do ya ")
        let fork = code
        code.update("want for nothing?")
        #expect(code.finalize().hexString == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(fork.finalize() != code.finalize())
    }

    @Test("a key of exactly one block is used as it is, not hashed")
    func blockSizedKey() {
        // Checked against Python's hmac module.
        let code = HMACSHA256.authenticationCode(for: Array("abc".utf8), key: [UInt8](repeating: 0x61, count: 64))
        let hashedKey = HMACSHA256.authenticationCode(
            for: Array("abc".utf8), key: SHA256.hash([UInt8](repeating: 0x61, count: 64)).bytes)
        #expect(code != hashedKey)
        #expect(code.hexString == Self.blockKeyCode)
    }

    static let blockKeyCode = "6608ac82dca1cb1fddbb5d81e3d9877642b744f565cd9697ac27daa250c80d28"
}
