public import Foundation

/// A position in a list: the sort key and the unique `_id` of the last item of a page. Opaque to clients
/// (base64url of a small JSON array), so the next page starts strictly after that item whatever was inserted since
/// (keyset pagination, never offsets).
public struct Cursor: Hashable, Sendable {
    public enum Key: Hashable, Sendable {
        /// A time, in milliseconds since 1970 (how MongoDB stores dates).
        case time(Int64)
        case text(String)
    }

    public var key: Key
    public var id: String

    public init(key: Key, id: String) {
        self.key = key
        self.id = id
    }

    public init(time: Date, id: String) {
        self.init(key: .time(Int64((time.timeIntervalSince1970 * 1000).rounded())), id: id)
    }

    /// The opaque form handed to clients.
    public var encoded: String {
        let array: [Any] =
            switch key {
            case .time(let ms): ["t", ms, id]
            case .text(let text): ["s", text, id]
            }
        let data = (try? JSONSerialization.data(withJSONObject: array)) ?? Data()
        return Secrets.base64URL(Array(data))
    }

    /// Parses a cursor given back by a client; nil when it is not one of ours.
    public init?(encoded: String) {
        guard encoded.utf8.count <= 2048, let bytes = Secrets.decodeBase64URL(encoded),
            let array = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [Any], array.count == 3,
            let kind = array[0] as? String, let id = array[2] as? String
        else { return nil }
        switch kind {
        case "t":
            guard let number = array[1] as? NSNumber, let ms = Int64(exactly: number.doubleValue) else { return nil }
            self.init(key: .time(ms), id: id)
        case "s":
            guard let text = array[1] as? String else { return nil }
            self.init(key: .text(text), id: id)
        default:
            return nil
        }
    }

    /// The time of a `.time` cursor.
    public var date: Date? {
        if case .time(let ms) = key { return Date(timeIntervalSince1970: Double(ms) / 1000) }
        return nil
    }
}

/// One page of a list: `{"items": [...], "next": "C" | null}`.
public struct Page<Item: Encodable>: Encodable {
    public var items: [Item]
    public var next: String?

    public init(items: [Item], next: String?) {
        self.items = items
        self.next = next
    }

    enum CodingKeys: String, CodingKey { case items, next }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(items, forKey: .items)
        if let next { try container.encode(next, forKey: .next) } else { try container.encodeNil(forKey: .next) }
    }
}

/// `?limit=` and `?cursor=` of a list request.
public struct PageRequest: Sendable, Equatable {
    public static let defaultLimit = 50
    public static let maximumLimit = 500

    public var limit: Int
    public var cursor: Cursor?

    public init(limit: Int = PageRequest.defaultLimit, cursor: Cursor? = nil) {
        self.limit = limit
        self.cursor = cursor
    }

    /// Reads `limit` (1…500, default 50) and `cursor` from query parameters.
    public init(limit: String?, cursor: String?) throws(APIError) {
        var parsed = PageRequest()
        if let limit {
            guard let value = Int(limit), (1...Self.maximumLimit).contains(value) else {
                throw APIError(.invalidField, "limit must be a whole number from 1 to \(Self.maximumLimit)", field: "limit")
            }
            parsed.limit = value
        }
        if let cursor {
            guard let value = Cursor(encoded: cursor) else {
                throw APIError(.invalidField, "not a cursor this server gave out", field: "cursor")
            }
            parsed.cursor = value
        }
        self = parsed
    }
}
