/// Reads one JSON object whose values of interest are strings, whole numbers, booleans or lists of strings: gateway
/// frame headers, and the fields of an envelope. Written for the gateway's hot path instead of a general decoder.
/// Malformed JSON, a repeated key or text after the object makes it nil; so does a nested object or another kind of
/// list, unless they are skipped.
public struct FlatJSONReader {
    public enum Value: Hashable, Sendable {
        case string(String)
        case integer(Int64)
        case bool(Bool)
        case strings([String])
        /// Another JSON value (a fraction, null, a skipped object or list): the key's check names the problem.
        case other
    }

    /// What to do with nested objects and lists other than lists of strings.
    public enum Nested: Sendable {
        /// The whole object is refused (nil).
        case refuse
        /// They are checked as JSON and read as ``Value/other``.
        case skip
    }

    let bytes: ArraySlice<UInt8>
    let nested: Nested
    var index: Int

    init(bytes: ArraySlice<UInt8>, nested: Nested) {
        self.bytes = bytes
        self.nested = nested
        self.index = bytes.startIndex
    }

    /// The members of the object `bytes` hold, or nil.
    public static func object(_ bytes: ArraySlice<UInt8>, nested: Nested) -> [String: Value]? {
        var reader = FlatJSONReader(bytes: bytes, nested: nested)
        return reader.object()
    }

    mutating func object() -> [String: Value]? {
        var object: [String: Value] = [:]
        guard take(UInt8(ascii: "{")) else { return nil }
        if !take(UInt8(ascii: "}")) {
            repeat {
                guard let key = string(), take(UInt8(ascii: ":")), let value = value(), object.updateValue(value, forKey: key) == nil
                else { return nil }
            } while take(UInt8(ascii: ","))
            guard take(UInt8(ascii: "}")) else { return nil }
        }
        skipSpace()
        return index == bytes.endIndex ? object : nil
    }

    private mutating func value() -> Value? {
        skipSpace()
        guard index < bytes.endIndex else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "\""): return string().map(Value.string)
        case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return literal("null") ? .other : nil
        case UInt8(ascii: "["):
            let start = index
            index += 1
            var strings: [String] = []
            if take(UInt8(ascii: "]")) { return .strings([]) }
            repeat {
                guard let string = string() else { return skipAfterRestart(start) }
                strings.append(string)
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "]")) ? .strings(strings) : skipAfterRestart(start)
        case UInt8(ascii: "{"):
            return nested == .skip && skipValue() ? .other : nil
        default: return number()
        }
    }

    /// A list that is not a list of strings: read again from `start` and skipped, when nesting is skipped.
    private mutating func skipAfterRestart(_ start: Int) -> Value? {
        guard nested == .skip else { return nil }
        index = start
        return skipValue() ? .other : nil
    }

    /// Checks and passes over one JSON value of any kind.
    private mutating func skipValue() -> Bool {
        skipSpace()
        guard index < bytes.endIndex else { return false }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            if take(UInt8(ascii: "}")) { return true }
            repeat {
                guard scanString() != nil, take(UInt8(ascii: ":")), skipValue() else { return false }
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "}"))
        case UInt8(ascii: "["):
            index += 1
            if take(UInt8(ascii: "]")) { return true }
            repeat {
                guard skipValue() else { return false }
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "]"))
        case UInt8(ascii: "\""):
            return scanString() != nil
        default:
            return value() != nil
        }
    }

    private mutating func number() -> Value? {
        let start = index
        if index < bytes.endIndex, bytes[index] == UInt8(ascii: "-") { index += 1 }
        let digitsStart = index
        while index < bytes.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
        guard index > digitsStart else { return nil }
        var whole = true
        while index < bytes.endIndex, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"), UInt8(ascii: "+"), UInt8(ascii: "-")]
            .contains(bytes[index]) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index])
        {
            whole = false
            index += 1
        }
        guard whole else { return .other }
        return Int64(String(decoding: bytes[start..<index], as: UTF8.self)).map(Value.integer) ?? .other
    }

    /// A string's value: its bytes as they are when it has no escapes (the usual case), decoded otherwise.
    private mutating func string() -> String? {
        guard let (start, end, escaped) = scanString() else { return nil }
        guard escaped else { return String(validating: bytes[start..<end], as: UTF8.self) }
        var utf8: [UInt8] = []
        utf8.reserveCapacity(end - start)
        var position = start
        while position < end {
            let byte = bytes[position]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                position += 1
                continue
            }
            let escape = bytes[position + 1]
            position += 2
            switch escape {
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var code = Self.hex4(bytes, at: position)!
                position += 4
                if (0xD800..<0xDC00).contains(code) {
                    code = 0x10000 + ((code - 0xD800) << 10) + (Self.hex4(bytes, at: position + 2)! - 0xDC00)
                    position += 6
                }
                utf8.append(contentsOf: String(Unicode.Scalar(code)!).utf8)
            default: utf8.append(escape)  // \", \\ and \/ stand for themselves
            }
        }
        return String(validating: utf8, as: UTF8.self)
    }

    /// Passes over a string, checking its escapes and (for text that is not ASCII) its UTF-8; returns where its
    /// content starts and ends and whether it has escapes.
    private mutating func scanString() -> (start: Int, end: Int, escaped: Bool)? {
        guard take(UInt8(ascii: "\"")) else { return nil }
        let start = index
        var escaped = false
        var ascii = true
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let end = index
                index += 1
                if !ascii, String(validating: bytes[start..<end], as: UTF8.self) == nil { return nil }
                return (start, end, escaped)
            }
            if byte < 0x20 { return nil }
            if byte >= 0x80 { ascii = false }
            guard byte == UInt8(ascii: "\\") else {
                index += 1
                continue
            }
            escaped = true
            guard index + 1 < bytes.endIndex else { return nil }
            let escape = bytes[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"), UInt8(ascii: "n"),
                UInt8(ascii: "r"), UInt8(ascii: "t"):
                continue
            case UInt8(ascii: "u"):
                guard let code = Self.hex4(bytes, at: index) else { return nil }
                index += 4
                if (0xD800..<0xDC00).contains(code) {
                    // A high surrogate must be followed by an escaped low one.
                    guard index + 1 < bytes.endIndex, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u"),
                        let low = Self.hex4(bytes, at: index + 2), (0xDC00..<0xE000).contains(low)
                    else { return nil }
                    index += 6
                } else if (0xDC00..<0xE000).contains(code) {
                    return nil
                }
            default: return nil
            }
        }
        return nil
    }

    private static func hex4(_ bytes: ArraySlice<UInt8>, at index: Int) -> UInt32? {
        guard index + 4 <= bytes.endIndex else { return nil }
        var code: UInt32 = 0
        for byte in bytes[index..<index + 4] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            code = code << 4 | UInt32(digit)
        }
        return code
    }

    private mutating func literal(_ word: String) -> Bool {
        let utf8 = Array(word.utf8)
        guard index + utf8.count <= bytes.endIndex, Array(bytes[index..<index + utf8.count]) == utf8 else { return false }
        index += utf8.count
        return true
    }

    private mutating func take(_ byte: UInt8, skippingSpace: Bool = true) -> Bool {
        if skippingSpace { skipSpace() }
        guard index < bytes.endIndex, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    private mutating func skipSpace() {
        while index < bytes.endIndex, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }
}

