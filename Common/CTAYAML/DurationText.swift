/// Durations written with units, as configuration and definition files take them: `500ms`, `15s`, `2m`, `1h30m`.
public enum DurationText {
    /// The units, largest first, in milliseconds.
    private static let units: [(name: String, milliseconds: Int64)] = [
        ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1),
    ]

    /// Parses numbers with units in decreasing order, each unit at most once: `h`, `m`, `s`, `ms` (`500ms`, `15s`,
    /// `2m`, `1h30m`, `1m30s500ms`). Nil for anything else, a bare number included, and for values that overflow.
    public static func parse(_ text: String) -> Duration? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return nil }
        var total: Int64 = 0
        var nextUnit = 0
        var index = 0
        while index < bytes.count {
            let numberStart = index
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            guard index > numberStart, let number = decimal(bytes[numberStart..<index]) else { return nil }
            let unitStart = index
            while index < bytes.count, isLetter(bytes[index]) { index += 1 }
            let unitName = String(decoding: bytes[unitStart..<index], as: UTF8.self)
            // A unit may follow only a larger one.
            guard let unit = units.indices.first(where: { units[$0].name == unitName }), unit >= nextUnit else {
                return nil
            }
            nextUnit = unit + 1
            guard case (let part, false) = number.multipliedReportingOverflow(by: units[unit].milliseconds),
                case (let sum, false) = total.addingReportingOverflow(part)
            else { return nil }
            total = sum
        }
        return .milliseconds(total)
    }

    /// Prints a duration in the form ``parse(_:)`` reads, to the millisecond: `10m`, `1h30m`, `500ms`, `0s`.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        var milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        if milliseconds == 0 { return "0s" }
        var text = milliseconds < 0 ? "-" : ""
        milliseconds = abs(milliseconds)
        for (name, size) in units where milliseconds >= size {
            text += "\(milliseconds / size)\(name)"
            milliseconds %= size
        }
        return text
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    /// The value of ASCII digits; nil when it does not fit in an `Int64`.
    public static func decimal(_ digits: ArraySlice<UInt8>) -> Int64? {
        var value: Int64 = 0
        for digit in digits {
            guard case (let shifted, false) = value.multipliedReportingOverflow(by: 10),
                case (let sum, false) = shifted.addingReportingOverflow(Int64(digit - UInt8(ascii: "0")))
            else { return nil }
            value = sum
        }
        return value
    }
}
