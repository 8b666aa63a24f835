public import CTAMongo
import Foundation

/// Where a live-feed subscriber stands: the position of the last event it received, as an opaque string.
///
/// A cursor is the database's change-stream resume token of that event (`1.` + the token's BSON in base64url).
/// The token names a position in the server's change history, which every coordinator reads the same way, so
/// a cursor handed out by one coordinator resumes on any other, after any restart, as long as the server still
/// holds that history.
public struct LiveCursor: Hashable, Sendable, CustomStringConvertible {
    /// The resume token this cursor stands for.
    public let token: ResumeToken

    public init(token: ResumeToken) {
        self.token = token
    }

    static let prefix = "1."
    /// Longest cursor string accepted (a token is a small document; this bounds what a client can make us parse).
    public static let maximumLength = 2048

    /// Reads a cursor string made by ``description``; throws ``LiveCursorError`` for anything else.
    public init(parsing text: String) throws(LiveCursorError) {
        guard text.utf8.count <= Self.maximumLength else { throw .init("the cursor is too long") }
        guard text.hasPrefix(Self.prefix) else { throw .init("the cursor is not one this server made") }
        var base64 = String(text.dropFirst(Self.prefix.count))
        guard !base64.isEmpty, base64.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }),
            base64.allSatisfy(\.isASCII)
        else { throw .init("the cursor is not base64url") }
        base64 = base64.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64) else { throw .init("the cursor is not base64url") }
        let document: BSONDocument
        do {
            document = try BSONDocument(bsonBytes: [UInt8](data))
        } catch {
            throw .init("the cursor does not hold a position")
        }
        guard !document.isEmpty else { throw .init("the cursor does not hold a position") }
        self.token = ResumeToken(document)
    }

    public var description: String {
        Self.prefix
            + Data(token.bsonBytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

/// A cursor string that is not one this server made.
public struct LiveCursorError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
