public import Foundation

/// A point in time on the wire: RFC 3339 in UTC, microsecond precision.
///
/// Written as `2025-03-14T09:26:53.589793Z` (always six fractional digits, always `Z`). Read with or without
/// fractional digits (any count; digits beyond the sixth are truncated) and with `Z` or a numeric offset, which is
/// converted to UTC. Parsing and formatting are done by hand: they are exact (no binary floating point), allocation
/// light and independent of locale and of `DateFormatter`'s thread-safety.
public struct Timestamp: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microsecondsSinceEpoch: Int64

    /// A timestamp from microseconds since the Unix epoch.
    public init(microsecondsSinceEpoch: Int64) { self.microsecondsSinceEpoch = microsecondsSinceEpoch }

    /// A timestamp from a `Date`, truncated to the microsecond.
    public init(_ date: Date) {
        microsecondsSinceEpoch = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
    }

    /// The current time.
    public static func now() -> Timestamp { Timestamp(Date()) }

    /// The same instant as a `Date`.
    public var date: Date { Date(timeIntervalSince1970: Double(microsecondsSinceEpoch) / 1_000_000) }

    /// This instant moved by a number of milliseconds.
    public func adding(_ milliseconds: Milliseconds) -> Timestamp {
        Timestamp(microsecondsSinceEpoch: microsecondsSinceEpoch + Int64(clamping: milliseconds.value) * 1000)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch }

    /// Parses an RFC 3339 date-time; nil when the text is not one (years 0000–9999).
    public init?(rfc3339 text: String) {
        var parser = RFC3339Parser(Array(text.utf8))
        guard let value = parser.parse() else { return nil }
        microsecondsSinceEpoch = value
    }

    /// The RFC 3339 form, in UTC with six fractional digits.
    public var rfc3339: String {
        let micros = microsecondsSinceEpoch
        var days = micros / 86_400_000_000
        var rest = micros % 86_400_000_000
        if rest < 0 {
            rest += 86_400_000_000
            days -= 1
        }
        let (year, month, day) = civil(fromDays: days)
        let seconds = rest / 1_000_000
        let fraction = rest % 1_000_000
        var out = ""
        out.reserveCapacity(27)
        out += pad(year, 4) + "-" + pad(month, 2) + "-" + pad(day, 2) + "T"
        out += pad(seconds / 3600, 2) + ":" + pad(seconds / 60 % 60, 2) + ":" + pad(seconds % 60, 2)
        out += "." + pad(fraction, 6) + "Z"
        return out
    }

    public var description: String { rfc3339 }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = Timestamp(rfc3339: raw) else {
            throw WireError.invalid(decoder.wirePath, "\"\(excerpt(raw))\" is not an RFC 3339 date-time")
        }
        self = parsed
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rfc3339)
    }
}

private func pad(_ value: Int64, _ width: Int) -> String {
    let digits = String(value)
    return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
private func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
private func civil(fromDays count: Int64) -> (Int64, Int64, Int64) {
    let z = count + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
}

private struct RFC3339Parser {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func digits(_ count: Int) -> Int64? {
        guard index + count <= bytes.count else { return nil }
        var value: Int64 = 0
        for _ in 0..<count {
            let byte = bytes[index]
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            value = value * 10 + Int64(byte - 0x30)
            index += 1
        }
        return value
    }

    mutating func expect(_ options: UInt8...) -> Bool {
        guard index < bytes.count, options.contains(bytes[index]) else { return false }
        index += 1
        return true
    }

    mutating func parse() -> Int64? {
        guard let year = digits(4), expect(UInt8(ascii: "-")),
            let month = digits(2), expect(UInt8(ascii: "-")),
            let day = digits(2), expect(UInt8(ascii: "T"), UInt8(ascii: "t")),
            let hour = digits(2), expect(UInt8(ascii: ":")),
            let minute = digits(2), expect(UInt8(ascii: ":")),
            let second = digits(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
            hour <= 23, minute <= 59, second <= 60
        else { return nil }

        var micros: Int64 = 0
        if expect(UInt8(ascii: ".")) {
            var count = 0
            while index < bytes.count, bytes[index] >= 0x30, bytes[index] <= 0x39 {
                if count < 6 { micros = micros * 10 + Int64(bytes[index] - 0x30) }
                count += 1
                index += 1
            }
            guard count > 0 else { return nil }
            for _ in count..<max(count, 6) { micros *= 10 }
        }

        var offsetMinutes: Int64 = 0
        if expect(UInt8(ascii: "Z"), UInt8(ascii: "z")) {
            offsetMinutes = 0
        } else if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign: Int64 = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            index += 1
            guard let offsetHours = digits(2), expect(UInt8(ascii: ":")), let minutes = digits(2),
                offsetHours <= 23, minutes <= 59
            else { return nil }
            offsetMinutes = sign * (offsetHours * 60 + minutes)
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }

        let dayCount = days(fromCivil: year, month, day)
        let secondsOfDay = hour * 3600 + minute * 60 + second - offsetMinutes * 60
        return (dayCount * 86_400 + secondsOfDay) * 1_000_000 + micros
    }

    func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

/// A length of time on the wire: a non-negative whole number of milliseconds, written as a bare JSON integer.
///
/// Fields holding one end in `Ms` (`timeoutMs`, `durationMs`) so the unit is visible in the JSON itself.
public struct Milliseconds: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The number of milliseconds.
    public var value: UInt64

    /// A length in milliseconds.
    public init(_ value: UInt64) { self.value = value }

    /// A `Duration`, truncated to the millisecond; negative durations become zero.
    public init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        if duration <= .zero {
            value = 0
        } else {
            value = UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000)
        }
    }

    /// The same length as a `Duration`.
    public var duration: Duration { .milliseconds(Int64(clamping: value)) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }

    public var description: String { "\(value) ms" }

    public init(from decoder: any Decoder) throws { value = try decoder.decodeInteger(UInt64.self) }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

extension Duration {
    /// The duration in seconds, as `Date` arithmetic wants it.
    public var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
