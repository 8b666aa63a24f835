public import Foundation

/// A five-field cron expression (minute hour day-of-month month day-of-week), evaluated in UTC.
///
/// Each field is `*`, a number, a range `1-5`, a step over either (`*/15`, `1-30/5`; `5/10` means `5-59/10` in the
/// minute field, from 5 to the field's end), or a comma-separated list of those. Months and weekdays may be named by
/// their first three letters in any case (`jan`–`dec`, `sun`–`sat`); weekday `7` is Sunday like `0`, and a weekday
/// range ending in Sunday wraps to it (`fri-sun` is Friday, Saturday and Sunday). The macros `@yearly` (or
/// `@annually`), `@monthly`, `@weekly`, `@daily` (or `@midnight`) and `@hourly` stand for a whole expression.
///
/// Day of month and day of week combine as classic cron does: when both are restricted, a day matches if either
/// matches (`0 9 1 * mon` runs on the first of the month and on every Monday); when either one starts with `*`
/// (including `*/2`), a day must match both. Because UTC has no daylight saving time, no time is skipped or repeated.
///
/// Equality, hashing and the `Codable` form all use ``description``, the normalised text: fields in lower case,
/// separated by one space, and `@annually` / `@midnight` spelt `@yearly` / `@daily`. Expressions that fire at the
/// same times but are written differently (`@daily` and `0 0 * * *`) are not equal.
public struct CronExpression: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The normalised text, which parses back to an equal expression.
    public let description: String

    /// Bit `n` set when minute `n` (0–59) matches.
    let minutes: UInt64
    /// Bit `n` set when hour `n` (0–23) matches.
    let hours: UInt64
    /// Bit `n` set when day of month `n` (1–31) matches.
    let daysOfMonth: UInt64
    /// Bit `n` set when month `n` (1–12) matches.
    let months: UInt64
    /// Bit `n` set when weekday `n` (0 Sunday – 6 Saturday) matches.
    let daysOfWeek: UInt64
    /// The day-of-month field starts with `*`, so it does not restrict the day on its own (see the type's notes).
    let dayOfMonthIsStar: Bool
    /// The day-of-week field starts with `*`.
    let dayOfWeekIsStar: Bool
    /// False when no day of any selected month can ever match (`0 0 30 2 *`), decided once at parse time.
    let canFire: Bool

    /// Parses `text`.
    ///
    /// - Throws: ``ParseError`` naming the field, the offending text and the reason, for example
    ///   `minute: 61 is out of range 0-59`.
    public init(_ text: String) throws(ParseError) {
        let parsed = try CronParser().parse(text)
        description = parsed.normalised
        minutes = parsed.fields[0].bits
        hours = parsed.fields[1].bits
        daysOfMonth = parsed.fields[2].bits
        months = parsed.fields[3].bits
        daysOfWeek = parsed.fields[4].bits
        dayOfMonthIsStar = parsed.fields[2].isStar
        dayOfWeekIsStar = parsed.fields[4].isStar
        canFire = Self.canFire(
            daysOfMonth: daysOfMonth, months: months, daysMustMatchMonthDay: dayOfMonthIsStar || dayOfWeekIsStar)
    }

    // MARK: Equality and coding by the normalised text

    public static func == (lhs: CronExpression, rhs: CronExpression) -> Bool { lhs.description == rhs.description }

    public func hash(into hasher: inout Hasher) { hasher.combine(description) }

    /// Decodes the expression from its text; a text that does not parse is a `DecodingError.dataCorrupted` whose
    /// message is the ``ParseError``'s description.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do throws(ParseError) {
            self = try CronExpression(text)
        } catch {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: decoder.codingPath, debugDescription: error.description, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    // MARK: Evaluation

    /// How far ``next(after:)`` looks: the Gregorian calendar repeats itself, weekdays included, every 400 years
    /// (146 097 days, exactly 20 871 weeks), so an expression that does not fire within 400 years never fires.
    static let searchYears: Int64 = 400

    /// True when `date`'s minute (in UTC) matches; seconds are ignored.
    public func matches(_ date: Date) -> Bool {
        guard let minute = CivilMinute(flooring: date) else { return false }
        return monthMatches(minute.month) && dayMatches(minute.day, weekday: minute.weekday)
            && hours.contains(minute.hour) && minutes.contains(minute.minute)
    }

    /// The first whole minute strictly after `date` at which the expression fires, in UTC.
    ///
    /// An exact match is not its own successor: `next(after: 09:00:00)` of `0 9 * * *` is 09:00 the day after.
    /// Returns `nil` when the expression can never fire (`0 0 30 2 *`), or when `date` is so far from 1970 that
    /// it cannot be handled with minute precision (beyond about ±30 million years).
    public func next(after date: Date) -> Date? {
        guard canFire, var cursor = CivilMinute(after: date) else { return nil }
        let lastYear = cursor.year + Self.searchYears
        while cursor.year <= lastYear {
            if !monthMatches(cursor.month) {
                cursor.startNextMonth()
                continue
            }
            if !dayMatches(cursor.day, weekday: cursor.weekday) {
                cursor.startNextDay()
                continue
            }
            guard let hour = hours.first(atOrAbove: cursor.hour) else {
                cursor.startNextDay()
                continue
            }
            if hour != cursor.hour {
                cursor.hour = hour
                cursor.minute = 0
            }
            guard let minute = minutes.first(atOrAbove: cursor.minute) else {
                cursor.startNextHour()
                continue
            }
            cursor.minute = minute
            return cursor.date
        }
        return nil
    }

    private func monthMatches(_ month: Int) -> Bool { months.contains(month) }

    /// The classic rule: both restricted → either matches; otherwise both must match (a `*` field always does,
    /// except a stepped one such as `*/2`).
    private func dayMatches(_ day: Int, weekday: Int) -> Bool {
        let byMonthDay = daysOfMonth.contains(day)
        let byWeekday = daysOfWeek.contains(weekday)
        if dayOfMonthIsStar || dayOfWeekIsStar { return byMonthDay && byWeekday }
        return byMonthDay || byWeekday
    }

    /// When days must match the day-of-month field, some selected month must have one of its days (February
    /// counted with 29). Otherwise any weekday rescues a day, and some day of every month has every weekday.
    private static func canFire(daysOfMonth: UInt64, months: UInt64, daysMustMatchMonthDay: Bool) -> Bool {
        guard daysMustMatchMonthDay else { return true }
        return (1...12).contains { month in
            months.contains(month)
                && (1...CivilMinute.maximumDays(inMonth: month)).contains { daysOfMonth.contains($0) }
        }
    }
}

extension CronExpression {
    /// Why a cron expression did not parse: the field, the offending text and the reason.
    ///
    /// `description` reads `minute: 61 is out of range 0-59`; it is safe to show a user.
    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        /// The part of an expression an error is about.
        public enum Field: String, Hashable, Sendable, CaseIterable {
            /// The expression as a whole: the number of fields, an unknown macro.
            case expression
            case minute
            case hour
            case dayOfMonth = "day-of-month"
            case month
            case dayOfWeek = "day-of-week"

            /// The name used in messages: `minute`, `day-of-month`, …
            public var name: String { rawValue }
        }

        /// Where the problem is.
        public var field: Field
        /// The offending text: a list element, a number, a step, or the whole expression.
        public var text: String
        /// Why, as a phrase that quotes the offending text: `61 is out of range 0-59`.
        public var reason: String

        public init(field: Field, text: String, reason: String) {
            self.field = field
            self.text = text
            self.reason = reason
        }

        public var description: String { "\(field.name): \(reason)" }
    }
}

// MARK: - Bit sets

extension UInt64 {
    /// True when bit `index` is set.
    fileprivate func contains(_ index: Int) -> Bool { index >= 0 && index < 64 && self & (1 << UInt64(index)) != 0 }

    /// The lowest set bit at `index` or above, if any.
    fileprivate func first(atOrAbove index: Int) -> Int? {
        guard index < 64 else { return nil }
        let remaining = self & (UInt64.max << UInt64(Swift.max(index, 0)))
        return remaining == 0 ? nil : remaining.trailingZeroBitCount
    }
}

// MARK: - Calendar arithmetic in UTC

/// A minute of the proleptic Gregorian calendar in UTC, with its day number for the weekday. Moving it forward
/// keeps every part consistent; this is all the calendar ``CronExpression`` needs, so it does not depend on
/// `Calendar` or on the time zone of the process.
struct CivilMinute {
    var year: Int64
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    /// Days since 1970-01-01 of `year-month-day`.
    var dayNumber: Int64

    /// The largest `|seconds since 1970|` handled: about ±30 million years, far inside `Int64` minutes and exactly
    /// representable as a `Double`.
    private static let limit: Double = 1e15

    /// The minute containing `date`.
    init?(flooring date: Date) {
        let seconds = date.timeIntervalSince1970
        guard seconds.isFinite, abs(seconds) < Self.limit else { return nil }
        // Division can round up across a minute boundary; correct so that minute * 60 <= seconds < (minute + 1) * 60.
        var minuteNumber = Int64((seconds / 60).rounded(.down))
        if Double(minuteNumber) * 60 > seconds { minuteNumber -= 1 }
        if Double(minuteNumber + 1) * 60 <= seconds { minuteNumber += 1 }
        self.init(minuteNumber: minuteNumber)
    }

    /// The first whole minute strictly after `date`.
    init?(after date: Date) {
        guard let floor = CivilMinute(flooring: date) else { return nil }
        self.init(minuteNumber: floor.dayNumber * 1440 + Int64(floor.hour * 60 + floor.minute) + 1)
    }

    /// The minute `minuteNumber` minutes after 1970-01-01T00:00Z.
    init(minuteNumber: Int64) {
        var days = minuteNumber / 1440
        var rest = minuteNumber % 1440
        if rest < 0 {
            rest += 1440
            days -= 1
        }
        dayNumber = days
        (year, month, day) = Self.civil(fromDays: days)
        hour = Int(rest / 60)
        minute = Int(rest % 60)
    }

    /// 0 Sunday … 6 Saturday; 1970-01-01 was a Thursday.
    var weekday: Int {
        let remainder = Int((dayNumber + 4) % 7)
        return remainder < 0 ? remainder + 7 : remainder
    }

    var date: Date {
        Date(timeIntervalSince1970: Double(dayNumber * 86_400 + Int64(hour * 3600 + minute * 60)))
    }

    mutating func startNextHour() {
        minute = 0
        hour += 1
        if hour == 24 { startNextDay() }
    }

    mutating func startNextDay() {
        hour = 0
        minute = 0
        if day < Self.days(inMonth: month, of: year) {
            day += 1
            dayNumber += 1
        } else {
            startNextMonth()
        }
    }

    mutating func startNextMonth() {
        hour = 0
        minute = 0
        day = 1
        if month == 12 {
            month = 1
            year += 1
        } else {
            month += 1
        }
        dayNumber = Self.days(fromCivil: year, month, 1)
    }

    static func isLeapYear(_ year: Int64) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

    static func days(inMonth month: Int, of year: Int64) -> Int {
        month == 2 ? (isLeapYear(year) ? 29 : 28) : maximumDays(inMonth: month)
    }

    /// The most days `month` ever has (29 for February).
    static func maximumDays(inMonth month: Int) -> Int {
        switch month {
        case 2: 29
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days since 1970-01-01 of a date, by counting whole 400-year eras from 0000-03-01 (years start in March so
    /// that the leap day is the last day of a year).
    static func days(fromCivil year: Int64, _ month: Int, _ day: Int) -> Int64 {
        let marchYear = month <= 2 ? year - 1 : year
        let era = (marchYear >= 0 ? marchYear : marchYear - 399) / 400
        let yearOfEra = marchYear - era * 400
        let marchMonth = Int64(month > 2 ? month - 3 : month + 9)
        let dayOfYear = (153 * marchMonth + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The date of a day number, the inverse of ``days(fromCivil:_:_:)``.
    static func civil(fromDays days: Int64) -> (Int64, Int, Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let marchMonth = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * marchMonth + 2) / 5 + 1)
        let month = Int(marchMonth < 10 ? marchMonth + 3 : marchMonth - 9)
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
