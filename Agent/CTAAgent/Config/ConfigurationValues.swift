import CTAYAML

// The textual forms of configuration values: durations, sizes, booleans, integers. Pure functions, shared by the
// file, the environment and flags.

/// Parsers and printers for the value forms configuration keys take.
enum ConfigurationValue {
    /// Parses a duration: a number of seconds (`90`), or numbers with units in decreasing order, each unit at most
    /// once: `h`, `m`, `s`, `ms` (`500ms`, `15s`, `2m`, `1h30m`, `1m30s500ms`). Nil for anything else, negative
    /// values and values that overflow.
    static func duration(_ text: String) -> Duration? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return nil }
        if bytes.allSatisfy(isDigit) {
            guard let seconds = decimal(bytes[...]),
                case (let ms, false) = seconds.multipliedReportingOverflow(by: 1000)
            else { return nil }
            return .milliseconds(ms)
        }
        return DurationText.parse(text)
    }

    /// Parses a size in bytes: a plain number, or a number with a unit: `B`, decimal `kB` (also `KB`), `MB`,
    /// `GB`, `TB`, binary `KiB`, `MiB`, `GiB`, `TiB`. Nil for anything else and for values that overflow.
    static func size(_ text: String) -> UInt64? {
        let bytes = Array(text.utf8)
        var end = 0
        while end < bytes.count, isDigit(bytes[end]) { end += 1 }
        guard end > 0, let number = decimal(bytes[..<end]) else { return nil }
        let multipliers: [String: UInt64] = [
            "": 1, "B": 1,
            "kB": 1000, "KB": 1000, "MB": 1_000_000, "GB": 1_000_000_000, "TB": 1_000_000_000_000,
            "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
        ]
        guard let multiplier = multipliers[String(decoding: bytes[end...], as: UTF8.self)],
            case (let value, false) = UInt64(number).multipliedReportingOverflow(by: multiplier)
        else { return nil }
        return value
    }

    /// Parses a decimal integer without sign or separators; nil on overflow.
    static func integer(_ text: String) -> Int? {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.allSatisfy(isDigit), let value = decimal(bytes[...]) else { return nil }
        return Int(exactly: value)
    }

    /// Parses `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`, in any case.
    static func bool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "yes", "on", "1": true
        case "false", "no", "off", "0": false
        default: nil
        }
    }

    /// Prints a duration in the form ``duration(_:)`` reads: `10m`, `1h30m`, `500ms`.
    static func format(_ duration: Duration) -> String { DurationText.format(duration) }

    /// Prints a byte count with the largest binary unit that divides it: `1MiB`, `512KiB`, `100B`.
    static func format(bytes: UInt64) -> String {
        for (name, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)]
        where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(name)"
        }
        return "\(bytes)B"
    }

    /// A value for an error message: quoted, escaped, and cut short when long.
    static func quoted(_ text: String) -> String { YAMLNode.quoted(text) }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static func decimal(_ digits: ArraySlice<UInt8>) -> Int64? { DurationText.decimal(digits) }
}
