import CTACore
public import Foundation
public import HTTPTypes
public import Hummingbird
import NIOCore

/// JSON as the API writes it: camelCase keys in sorted order, times RFC 3339 UTC with milliseconds.
public enum JSON {
    /// `2026-11-22T10:00:00.123Z`.
    public static func timestamp(_ date: Date) -> String {
        // Six fractional digits, cut to three.
        let text = Timestamp(date).rfc3339
        return String(text.dropLast(4)) + "Z"
    }

    /// Parses an RFC 3339 time (with or without fractional seconds, any offset).
    public static func parseTimestamp(_ text: String) -> Date? {
        Timestamp(rfc3339: text)?.date
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(timestamp(date))
        }
        return encoder
    }

    /// The bytes of `value`; a value that cannot be encoded (never for the API's own types) is an `internal` error.
    public static func encode(_ value: some Encodable) -> [UInt8] {
        do {
            return Array(try encoder().encode(value))
        } catch {
            return Array(#"{"error":{"code":"internal","message":"the response could not be encoded"}}"#.utf8)
        }
    }

    /// A JSON response.
    public static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:])
        -> Response
    {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: encode(value))))
    }

    /// An empty response (`204`, `202`).
    public static func empty(_ status: HTTPResponse.Status) -> Response {
        Response(status: status)
    }
}

