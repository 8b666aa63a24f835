import CTACore
import Foundation
import Testing

@testable import CTAAPI

@Suite("Tokens and password hashes")
struct SecretsTests {
    @Test("user and enrollment tokens: prefix, 32 random bytes in base64url, never repeated")
    func tokenFormat() {
        let user = Secrets.newUserToken()
        let enrollment = Secrets.newEnrollmentToken()
        #expect(user.hasPrefix("cta_") && user.count == 4 + 43)
        #expect(enrollment.hasPrefix("ctae_") && enrollment.count == 5 + 43)
        #expect(Secrets.decodeBase64URL(String(user.dropFirst(4)))?.count == 32)
        #expect(Secrets.kind(of: user) == .user)
        #expect(Secrets.kind(of: enrollment) == .enrollment)
        #expect(Secrets.kind(of: "cta_short") == .malformed)
        #expect(Secrets.kind(of: "Bearer " + user) == .malformed)
        #expect(Secrets.kind(of: "cta_" + String(repeating: "!", count: 43)) == .malformed)
        let many = Set((0..<200).map { _ in Secrets.newUserToken() })
        #expect(many.count == 200)
    }

    @Test("a token is stored as the hex SHA-256 of its text")
    func tokenHash() {
        // SHA-256("abc") from FIPS 180-2.
        #expect(Secrets.tokenHash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let token = Secrets.newUserToken()
        #expect(Secrets.tokenHash(token) == SHA256.hash(Array(token.utf8)).hexString)
        #expect(Secrets.tokenHash(token).count == 64)
    }

    @Test("base64url round trips and refuses what is not base64url")
    func base64() {
        for count in 0..<40 {
            let bytes = Secrets.randomBytes(count)
            #expect(Secrets.decodeBase64URL(Secrets.base64URL(bytes)) == bytes)
        }
        // RFC 4648 §10 vectors, without padding.
        #expect(Secrets.base64URL(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Secrets.base64URL(Array("fo".utf8)) == "Zm8")
        #expect(Secrets.base64URL([0xfb, 0xff]) == "-_8")
        #expect(Secrets.decodeBase64URL("Zm9v+") == nil)
        #expect(Secrets.decodeBase64URL("Z") == nil)
        #expect(Secrets.decodeBase64URL("Zm9=") == nil)
    }

    /// PBKDF2-HMAC-SHA256 vectors in the form of RFC 6070 (which gives them for SHA-1), as published with the
    /// question "PBKDF2-HMAC-SHA2 test vectors" on Stack Overflow (5130513) and checked there against Python's
    /// hashlib.
    @Test(
        "PBKDF2-HMAC-SHA256 vectors",
        arguments: [
            ("password", "salt", 1, 32, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
            ("password", "salt", 2, 32, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
            ("password", "salt", 4096, 32, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
            (
                "passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 40,
                "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9"
            ),
            ("pass\0word", "sa\0lt", 4096, 16, "89b69d0516f829893c696226650a8687"),
        ])
    func pbkdf2(password: String, salt: String, iterations: Int, length: Int, expected: String) {
        let key = PBKDF2.sha256(password: Array(password.utf8), salt: Array(salt.utf8), iterations: iterations, length: length)
        #expect(key.map { String(format: "%02x", $0) }.joined() == expected)
    }

    @Test("a stored password verifies the right password only, and survives its text form")
    func passwordHash() {
        let hash = PasswordHash(password: "correct horse", iterations: 1000)
        #expect(hash.verify("correct horse"))
        #expect(!hash.verify("correct horsf"))
        let parsed = PasswordHash(stored: hash.stored)
        #expect(parsed == hash)
        #expect(hash.stored.hasPrefix("pbkdf2-sha256$1000$"))
        #expect(PasswordHash(stored: "md5$1$x$y") == nil)
        #expect(PasswordHash.defaultIterations >= 100_000)
        // Two hashes of one password differ (fresh salt).
        #expect(PasswordHash(password: "p", iterations: 10).stored != PasswordHash(password: "p", iterations: 10).stored)
    }
}
