public import CTACore
import Foundation

/// Colours and emphasis for a terminal, or nothing at all.
///
/// Colour is on only when the output is a terminal, `NO_COLOR` is unset or empty (https://no-color.org) and `TERM`
/// is not `dumb`.
public struct Style: Sendable, Hashable {
    public var colour: Bool

    public init(colour: Bool) { self.colour = colour }

    /// The style for an output: `isTerminal` says whether it is a terminal.
    public static func detect(environment: [String: String], isTerminal: Bool) -> Style {
        let noColour = environment["NO_COLOR"].map { !$0.isEmpty } ?? false
        let dumb = environment["TERM"] == "dumb"
        return Style(colour: isTerminal && !noColour && !dumb)
    }

    public static let plain = Style(colour: false)

    private func wrap(_ text: String, _ code: String) -> String {
        colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    public func bold(_ text: String) -> String { wrap(text, "1") }
    public func dim(_ text: String) -> String { wrap(text, "2") }
    public func red(_ text: String) -> String { wrap(text, "31") }
    public func green(_ text: String) -> String { wrap(text, "32") }
    public func yellow(_ text: String) -> String { wrap(text, "33") }

    /// A test status or execution phase in its colour: green for good, red for bad, yellow for the rest.
    public func status(_ text: String) -> String {
        switch text {
        case "ok", "finished", "online": green(text)
        case "failed", "timeout", "cancelled", "offline": red(text)
        default: yellow(text)
        }
    }
}

/// A table for people: a header and rows, columns padded to their widest cell.
public struct Table: Sendable {
    public var headers: [String]
    public var rows: [[String]]

    public init(headers: [String], rows: [[String]] = []) {
        self.headers = headers
        self.rows = rows
    }

    /// The table as lines (the header in bold when the style has colour). Cells may carry colour codes: widths are
    /// measured without them.
    public func render(style: Style) -> String {
        var widths = headers.map(Self.width)
        for row in rows {
            for (column, cell) in row.enumerated() where column < widths.count {
                widths[column] = max(widths[column], Self.width(cell))
            }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (column, cell) in cells.enumerated() {
                let isLast = column == cells.count - 1
                text += cell
                if !isLast { text += String(repeating: " ", count: widths[column] - Self.width(cell) + 2) }
            }
            return text
        }
        var lines = [style.bold(line(headers))]
        lines += rows.map(line)
        return lines.joined(separator: "\n") + "\n"
    }

    /// The width of a cell on screen: its characters, colour codes left out.
    static func width(_ text: String) -> Int {
        var count = 0
        var inEscape = false
        for scalar in text.unicodeScalars {
            if inEscape {
                if scalar == "m" { inEscape = false }
                continue
            }
            if scalar == "\u{1B}" {
                inEscape = true
                continue
            }
            count += 1
        }
        return count
    }
}

/// JSON for scripts: pretty-printed with sorted keys, or compact.
public enum JSONOutput {
    public static func pretty(_ value: JSONValue) -> String { encode(value, pretty: true) }
    public static func compact(_ value: JSONValue) -> String { encode(value, pretty: false) }

    public static func pretty<T: Encodable>(_ value: T) -> String { encode(value, pretty: true) }

    private static func encode<T: Encodable>(_ value: T, pretty: Bool) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys]
        guard let data = try? encoder.encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }
}

extension JSONValue {
    /// The value at a key of an object.
    public subscript(_ key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    /// The value as text for a table cell: strings as they are, numbers and booleans written out, lists joined
    /// with commas, objects as `k=v` pairs, null as `-`.
    public var cell: String {
        switch self {
        case .null: "-"
        case .bool(let value): value ? "yes" : "no"
        case .integer(let value): "\(value)"
        case .number(let value): "\(value)"
        case .string(let value): value
        case .array(let values): values.isEmpty ? "-" : values.map(\.cell).joined(separator: ",")
        case .object(let object):
            object.isEmpty ? "-" : object.keys.sorted().map { "\($0)=\(object[$0]!.cell)" }.joined(separator: ",")
        }
    }

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }
}

/// Durations and times for people.
public enum HumanFormat {
    /// `850 ms`, `12.3 s`, `4 m 05 s`, `2 h 03 m`.
    public static func duration(milliseconds: Int) -> String {
        if milliseconds < 1000 { return "\(milliseconds) ms" }
        let seconds = Double(milliseconds) / 1000
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let whole = Int(seconds)
        if whole < 3600 { return String(format: "%d m %02d s", whole / 60, whole % 60) }
        return String(format: "%d h %02d m", whole / 3600, (whole % 3600) / 60)
    }

    /// An RFC 3339 time shortened for a table: `2026-11-22 10:00:00`.
    public static func time(_ text: String?) -> String {
        guard let text, text.count >= 19 else { return text ?? "-" }
        return text.prefix(10) + " " + text.dropFirst(11).prefix(8)
    }
}
