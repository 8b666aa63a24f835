import CTACoordinator
import CTACore
import Foundation
import Testing

/// A UTC time written as RFC 3339, for readable expectations.
private func utc(_ text: String) -> Date {
    guard let timestamp = Timestamp(rfc3339: text) else { preconditionFailure("not an RFC 3339 time: \(text)") }
    return timestamp.date
}

/// The first `count` firings of `expression` after `start`.
private func firings(_ expression: String, after start: String, count: Int) throws -> [Date] {
    let cron = try CronExpression(expression)
    var result: [Date] = []
    var cursor = utc(start)
    for _ in 0..<count {
        guard let next = cron.next(after: cursor) else { break }
        result.append(next)
        cursor = next
    }
    return result
}

@Suite("Cron expressions")
struct CronExpressionTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var expression: String
        var after: String
        var expected: [String]
        var testDescription: String { "\(expression) after \(after)" }
    }

    // 2025-03-14 is a Friday, 2025-03-01 a Saturday.
    static let syntaxCases: [Case] = [
        Case(
            expression: "* * * * *", after: "2025-03-14T09:26:53Z",
            expected: ["2025-03-14T09:27:00Z", "2025-03-14T09:28:00Z"]),
        Case(
            expression: "*/15 * * * *", after: "2025-03-14T09:26:53Z",
            expected: ["2025-03-14T09:30:00Z", "2025-03-14T09:45:00Z", "2025-03-14T10:00:00Z"]),
        Case(
            expression: "1-30/5 * * * *", after: "2025-03-14T09:26:53Z",
            expected: ["2025-03-14T10:01:00Z", "2025-03-14T10:06:00Z", "2025-03-14T10:11:00Z"]),
        Case(
            expression: "5/10 * * * *", after: "2025-03-14T09:26:53Z",
            expected: ["2025-03-14T09:35:00Z", "2025-03-14T09:45:00Z", "2025-03-14T09:55:00Z", "2025-03-14T10:05:00Z"]),
        Case(
            expression: "0,30 8,12 * * *", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-14T12:00:00Z", "2025-03-14T12:30:00Z", "2025-03-15T08:00:00Z"]),
        Case(
            expression: "0 9-11 * * *", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-14T10:00:00Z", "2025-03-14T11:00:00Z", "2025-03-15T09:00:00Z"]),
        Case(
            expression: "0 0-23/6 * * *", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-14T12:00:00Z", "2025-03-14T18:00:00Z", "2025-03-15T00:00:00Z"]),
        Case(
            expression: "10-12,40 3 * * *", after: "2025-03-14T03:11:00Z",
            expected: ["2025-03-14T03:12:00Z", "2025-03-14T03:40:00Z", "2025-03-15T03:10:00Z"]),
        Case(
            expression: "0 0 1 jan,JUL *", after: "2025-03-14T09:26:00Z",
            expected: ["2025-07-01T00:00:00Z", "2026-01-01T00:00:00Z"]),
        Case(
            expression: "0 0 1 Mar-May *", after: "2025-03-14T09:26:00Z",
            expected: ["2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
        Case(
            expression: "0 0 1 */3 *", after: "2025-03-14T09:26:00Z",
            expected: ["2025-04-01T00:00:00Z", "2025-07-01T00:00:00Z", "2025-10-01T00:00:00Z", "2026-01-01T00:00:00Z"]),
        Case(
            expression: "0 9 * * MON-fri", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-17T09:00:00Z", "2025-03-18T09:00:00Z"]),
        Case(
            expression: "0 0 * * 7", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-16T00:00:00Z", "2025-03-23T00:00:00Z"]),
        Case(
            expression: "0 0 * * 0", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-16T00:00:00Z", "2025-03-23T00:00:00Z"]),
        Case(expression: "0 0 * * Sun", after: "2025-03-14T09:26:00Z", expected: ["2025-03-16T00:00:00Z"]),
        Case(
            expression: "0 0 * * fri-sun", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z", "2025-03-21T00:00:00Z"]),
        Case(
            expression: "0 0 * * 5-7", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z", "2025-03-21T00:00:00Z"]),
        Case(
            expression: "0 0 * * */2", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z", "2025-03-18T00:00:00Z", "2025-03-20T00:00:00Z"]),
        Case(
            expression: "@yearly", after: "2025-03-14T09:26:00Z",
            expected: ["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
        Case(expression: "@annually", after: "2025-03-14T09:26:00Z", expected: ["2026-01-01T00:00:00Z"]),
        Case(
            expression: "@monthly", after: "2025-03-14T09:26:00Z",
            expected: ["2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z"]),
        Case(
            expression: "@weekly", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-16T00:00:00Z", "2025-03-23T00:00:00Z"]),
        Case(
            expression: "@daily", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z"]),
        Case(expression: "@midnight", after: "2025-03-14T09:26:00Z", expected: ["2025-03-15T00:00:00Z"]),
        Case(
            expression: "@hourly", after: "2025-03-14T09:26:00Z",
            expected: ["2025-03-14T10:00:00Z", "2025-03-14T11:00:00Z"]),
        Case(expression: "@HOURLY", after: "2025-03-14T09:26:00Z", expected: ["2025-03-14T10:00:00Z"]),
        Case(expression: " \t0   9 *\t* *  ", after: "2025-03-14T09:26:00Z", expected: ["2025-03-15T09:00:00Z"]),
    ]

    @Test("every syntax form fires when it should", arguments: syntaxCases)
    func syntax(_ example: Case) throws {
        let expected = example.expected.map(utc)
        #expect(try firings(example.expression, after: example.after, count: expected.count) == expected)
        let cron = try CronExpression(example.expression)
        for date in expected {
            #expect(cron.matches(date))
        }
    }

    @Test("the normalised text is lower case with single spaces, and macro aliases take their main name")
    func normalisedText() throws {
        #expect(try CronExpression("0  9 * *   MON-Fri").description == "0 9 * * mon-fri")
        #expect(try CronExpression(" 0 0 1 JAN * ").description == "0 0 1 jan *")
        #expect(try CronExpression("@ANNUALLY").description == "@yearly")
        #expect(try CronExpression("@Midnight").description == "@daily")
        #expect(try CronExpression("@weekly").description == "@weekly")
        for text in ["*/15 1-5 1,15 */2 mon-fri", "@hourly", "5/10 0 * * 7"] {
            let cron = try CronExpression(text)
            #expect(try CronExpression(cron.description) == cron, "the normalised text parses back to an equal value")
        }
    }

    @Test("equality and hashing follow the normalised text")
    func equality() throws {
        #expect(try CronExpression("0 9 * * MON") == CronExpression("0  9 * * mon"))
        #expect(try CronExpression("@annually") == CronExpression("@yearly"))
        #expect(try CronExpression("@daily") != CronExpression("0 0 * * *"))
        let set: Set<CronExpression> = [
            try CronExpression("0 9 * * MON"), try CronExpression("0 9 * * mon"), try CronExpression("0 9 * * 1"),
        ]
        #expect(set.count == 2)
    }

    @Test("Codable as its text, and a bad text fails decoding with the parse message")
    func codable() throws {
        struct Holder: Codable, Equatable {
            var cron: CronExpression
        }
        let holder = Holder(cron: try CronExpression("*/5  * * * MON"))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let json = try encoder.encode(holder)
        #expect(String(decoding: json, as: UTF8.self) == #"{"cron":"*/5 * * * mon"}"#)
        #expect(try JSONDecoder().decode(Holder.self, from: json) == holder)

        do {
            _ = try JSONDecoder().decode(Holder.self, from: Data(#"{"cron":"61 * * * *"}"#.utf8))
            Issue.record("decoding should have failed")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.debugDescription == "minute: 61 is out of range 0-59")
            #expect(context.codingPath.map(\.stringValue) == ["cron"])
            #expect(context.underlyingError as? CronExpression.ParseError != nil)
        }
    }

    struct ErrorCase: CustomTestStringConvertible, Sendable {
        var expression: String
        var field: CronExpression.ParseError.Field
        var text: String
        var message: String
        var testDescription: String { "\"\(expression)\"" }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(expression: "61 * * * *", field: .minute, text: "61", message: "minute: 61 is out of range 0-59"),
        ErrorCase(expression: "0 24 * * *", field: .hour, text: "24", message: "hour: 24 is out of range 0-23"),
        ErrorCase(
            expression: "0 0 0 * *", field: .dayOfMonth, text: "0", message: "day-of-month: 0 is out of range 1-31"),
        ErrorCase(
            expression: "0 0 32 * *", field: .dayOfMonth, text: "32", message: "day-of-month: 32 is out of range 1-31"),
        ErrorCase(expression: "0 0 * 13 *", field: .month, text: "13", message: "month: 13 is out of range 1-12"),
        ErrorCase(expression: "0 0 * 0 *", field: .month, text: "0", message: "month: 0 is out of range 1-12"),
        ErrorCase(expression: "0 0 * * 8", field: .dayOfWeek, text: "8", message: "day-of-week: 8 is out of range 0-7"),
        ErrorCase(expression: "0 1-70 * * *", field: .hour, text: "70", message: "hour: 70 is out of range 0-23"),
        ErrorCase(
            expression: "99999999999999999999 * * * *", field: .minute, text: "99999999999999999999",
            message: "minute: 99999999999999999999 is out of range 0-59"),
        ErrorCase(expression: "x * * * *", field: .minute, text: "x", message: #"minute: "x" is not a number"#),
        ErrorCase(
            expression: "0 0 mon * *", field: .dayOfMonth, text: "mon", message: #"day-of-month: "mon" is not a number"#
        ),
        ErrorCase(
            expression: "0 0 * Foo *", field: .month, text: "Foo",
            message: #"month: "Foo" is not a number or month name"#),
        ErrorCase(
            expression: "0 0 * mon *", field: .month, text: "mon",
            message: #"month: "mon" is not a number or month name"#),
        ErrorCase(
            expression: "0 0 * * monday", field: .dayOfWeek, text: "monday",
            message: #"day-of-week: "monday" is not a number or weekday name"#),
        ErrorCase(
            expression: "-5 * * * *", field: .minute, text: "-5", message: #"minute: "-5" is not a number or a range"#),
        ErrorCase(
            expression: "1- * * * *", field: .minute, text: "1-", message: #"minute: "1-" is not a number or a range"#),
        ErrorCase(
            expression: "1-2-3 * * * *", field: .minute, text: "1-2-3",
            message: #"minute: "1-2-3" is not a number or a range"#),
        ErrorCase(expression: "0 20-10 * * *", field: .hour, text: "20-10", message: "hour: range 20-10 is backwards"),
        ErrorCase(
            expression: "0 0 * * fri-mon", field: .dayOfWeek, text: "fri-mon",
            message: "day-of-week: range fri-mon is backwards"),
        ErrorCase(
            expression: "0 0 * dec-jan *", field: .month, text: "dec-jan",
            message: "month: range dec-jan is backwards"),
        ErrorCase(expression: "*/0 * * * *", field: .minute, text: "0", message: "minute: step 0 is out of range 1-60"),
        ErrorCase(
            expression: "*/61 * * * *", field: .minute, text: "61", message: "minute: step 61 is out of range 1-60"),
        ErrorCase(
            expression: "0 0 * * mon-fri/8", field: .dayOfWeek, text: "8",
            message: "day-of-week: step 8 is out of range 1-7"),
        ErrorCase(
            expression: "0 0 1 */13 *", field: .month, text: "13", message: "month: step 13 is out of range 1-12"),
        ErrorCase(expression: "*/x * * * *", field: .minute, text: "x", message: #"minute: step "x" is not a number"#),
        ErrorCase(expression: "*/ * * * *", field: .minute, text: "", message: #"minute: step "" is not a number"#),
        ErrorCase(
            expression: "1/2/3 * * * *", field: .minute, text: "1/2/3",
            message: #"minute: "1/2/3" has more than one step"#),
        ErrorCase(
            expression: "1,,2 * * * *", field: .minute, text: "1,,2",
            message: #"minute: empty list element in "1,,2""#),
        ErrorCase(expression: "0 5, * * *", field: .hour, text: "5,", message: #"hour: empty list element in "5,""#),
        ErrorCase(
            expression: "0 0 * *", field: .expression, text: "0 0 * *",
            message: #"expression: expected 5 fields (minute hour day-of-month month day-of-week), got 4 in "0 0 * *""#),
        ErrorCase(
            expression: "0 0 0 * * *", field: .expression, text: "0 0 0 * * *",
            message:
                #"expression: expected 5 fields (minute hour day-of-month month day-of-week), got 6 in "0 0 0 * * *""#),
        ErrorCase(
            expression: "@daily  now", field: .expression, text: "@daily  now",
            message:
                #"expression: expected 5 fields (minute hour day-of-month month day-of-week), got 2 in "@daily now""#),
        ErrorCase(
            expression: "", field: .expression, text: "",
            message: "expression: empty; expected 5 fields (minute hour day-of-month month day-of-week)"
                + " or a macro such as @daily"),
        ErrorCase(
            expression: " \t ", field: .expression, text: " \t ",
            message: "expression: empty; expected 5 fields (minute hour day-of-month month day-of-week)"
                + " or a macro such as @daily"),
        ErrorCase(
            expression: "@reboot", field: .expression, text: "@reboot",
            message: "expression: unknown macro @reboot"
                + " (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)"),
    ]

    @Test("a bad expression names the field, the offending text and the reason", arguments: errorCases)
    func errors(_ example: ErrorCase) {
        do throws(CronExpression.ParseError) {
            let cron = try CronExpression(example.expression)
            Issue.record("parsed as \(cron)")
        } catch {
            #expect(error.description == example.message)
            #expect(error.field == example.field)
            #expect(error.text == example.text)
        }
    }

    @Test("when both day fields are restricted a day matches either; when one starts with * it must match both")
    func dayOfMonthOrDayOfWeek() throws {
        // March 2025: Fridays are the 7th, 14th, 21st and 28th; the 13th is a Thursday.
        #expect(
            try firings("0 0 13 * fri", after: "2025-03-01T00:00:00Z", count: 5)
                == [
                    "2025-03-07T00:00:00Z", "2025-03-13T00:00:00Z", "2025-03-14T00:00:00Z", "2025-03-21T00:00:00Z",
                    "2025-03-28T00:00:00Z",
                ].map(utc))
        #expect(
            try firings("0 0 13 * *", after: "2025-03-01T00:00:00Z", count: 2)
                == ["2025-03-13T00:00:00Z", "2025-04-13T00:00:00Z"].map(utc))
        #expect(
            try firings("0 0 * * fri", after: "2025-03-01T00:00:00Z", count: 2)
                == ["2025-03-07T00:00:00Z", "2025-03-14T00:00:00Z"].map(utc))
        // A day-of-month field spelt out to every day is still a restriction: with a weekday, every day matches.
        #expect(
            try firings("0 0 1-31 * fri", after: "2025-03-01T00:00:00Z", count: 2)
                == ["2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"].map(utc))
        // As in classic cron, */2 starts with * and so combines with the weekday by AND: odd days that are Fridays.
        #expect(
            try firings("0 0 */2 * fri", after: "2025-03-01T00:00:00Z", count: 3)
                == ["2025-03-07T00:00:00Z", "2025-03-21T00:00:00Z", "2025-04-11T00:00:00Z"].map(utc))

        let either = try CronExpression("0 0 13 * fri")
        #expect(either.matches(utc("2025-03-13T00:00:00Z")))
        #expect(either.matches(utc("2025-03-14T00:00:00Z")))
        #expect(!either.matches(utc("2025-03-15T00:00:00Z")))
    }

    @Test("February 29 fires only in leap years, skipping 2100")
    func leapDay() throws {
        #expect(
            try firings("0 0 29 2 *", after: "2025-03-14T00:00:00Z", count: 3)
                == ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"].map(utc))
        #expect(try firings("0 0 29 2 *", after: "2096-03-01T00:00:00Z", count: 1) == [utc("2104-02-29T00:00:00Z")])
        #expect(try firings("30 12 29 feb *", after: "2000-01-01T00:00:00Z", count: 1) == [utc("2000-02-29T12:30:00Z")])
        // A leap day that is a Sunday (a weekday field starting with * combines by AND): 40 years apart around 2100.
        #expect(
            try firings("0 0 29 2 */7", after: "2088-03-01T00:00:00Z", count: 2)
                == ["2128-02-29T00:00:00Z", "2156-02-29T00:00:00Z"].map(utc))
    }

    @Test("an expression that can never fire has no next time, and answers at once")
    func never() throws {
        for text in ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 feb *", "0 0 31 2 */2"] {
            let cron = try CronExpression(text)
            #expect(cron.next(after: utc("2025-03-14T00:00:00Z")) == nil, "\(text)")
        }
        // With a restricted weekday the day fields combine by OR, so the Mondays of February still fire.
        #expect(try firings("0 0 30 2 mon", after: "2025-03-14T00:00:00Z", count: 1) == [utc("2026-02-02T00:00:00Z")])
    }

    @Test("minutes, hours, days, months and years roll over")
    func rollover() throws {
        #expect(try firings("59 23 31 12 *", after: "2025-12-31T23:59:00Z", count: 1) == [utc("2026-12-31T23:59:00Z")])
        #expect(try firings("0 0 1 * *", after: "2025-12-15T10:00:00Z", count: 1) == [utc("2026-01-01T00:00:00Z")])
        #expect(
            try firings("0 0 31 * *", after: "2025-01-31T00:00:00Z", count: 3)
                == ["2025-03-31T00:00:00Z", "2025-05-31T00:00:00Z", "2025-07-31T00:00:00Z"].map(utc))
        #expect(try firings("30 * * * *", after: "2025-12-31T23:45:00Z", count: 1) == [utc("2026-01-01T00:30:00Z")])
        #expect(try firings("* * * * *", after: "2025-12-31T23:59:59Z", count: 1) == [utc("2026-01-01T00:00:00Z")])
        #expect(try firings("0 0 28-31 2 *", after: "2025-02-28T00:00:00Z", count: 1) == [utc("2026-02-28T00:00:00Z")])
        #expect(try firings("0 0 28-31 2 *", after: "2028-02-28T00:00:00Z", count: 1) == [utc("2028-02-29T00:00:00Z")])
        #expect(try firings("* * * * *", after: "1969-12-31T23:59:30Z", count: 1) == [utc("1970-01-01T00:00:00Z")])
        #expect(try firings("0 0 1 1 *", after: "1969-06-01T00:00:00Z", count: 1) == [utc("1970-01-01T00:00:00Z")])
    }

    @Test("next is strictly after its argument, at whole minutes")
    func strictlyAfter() throws {
        let cron = try CronExpression("0 9 * * *")
        #expect(cron.next(after: utc("2025-03-14T09:00:00Z")) == utc("2025-03-15T09:00:00Z"))
        #expect(cron.next(after: utc("2025-03-14T08:59:59.999Z")) == utc("2025-03-14T09:00:00Z"))
        #expect(cron.next(after: utc("2025-03-14T09:00:00.001Z")) == utc("2025-03-15T09:00:00Z"))
        let everyMinute = try CronExpression("* * * * *")
        #expect(everyMinute.next(after: utc("2025-03-14T09:00:00Z")) == utc("2025-03-14T09:01:00Z"))
        #expect(everyMinute.next(after: utc("2025-03-14T09:00:00.5Z")) == utc("2025-03-14T09:01:00Z"))
        #expect(everyMinute.matches(utc("2025-03-14T09:00:59.9Z")))
        #expect(everyMinute.next(after: Date(timeIntervalSince1970: .nan)) == nil)
        #expect(everyMinute.next(after: Date(timeIntervalSince1970: .infinity)) == nil)
    }

    @Test("UTC has no daylight saving time: a daily firing is always 24 hours after the last")
    func noDaylightSaving() throws {
        // Through 2025's changes in Europe (March 30, October 26) and the United States (March 9, November 2).
        let times = try firings("30 2 * * *", after: "2025-01-01T00:00:00Z", count: 365)
        #expect(times.first == utc("2025-01-01T02:30:00Z"))
        #expect(times.last == utc("2025-12-31T02:30:00Z"))
        for (earlier, later) in zip(times, times.dropFirst()) {
            #expect(later.timeIntervalSince(earlier) == 86_400)
        }
        #expect(times.contains(utc("2025-03-30T02:30:00Z")))
        #expect(times.contains(utc("2025-03-09T02:30:00Z")))
    }

    @Test(
        "next agrees with a minute-by-minute search",
        arguments: [
            "*/7 */5 * * *", "13 1-5 1,15 * mon", "0 */6 */10 */2 *", "59 23 * * fri-sun", "0 12 31 * *",
            "45 0 1-7 * 1", "0 0 29 2 *", "5/20 9-17 * jan,jun,dec */3",
        ])
    func agreesWithBruteForce(_ text: String) throws {
        let cron = try CronExpression(text)
        let start = utc("2027-12-20T00:00:00Z")
        let end = utc("2028-03-20T00:00:00Z")
        var expected: [Date] = []
        var minute = start.addingTimeInterval(60)
        while minute < end {
            if cron.matches(minute) { expected.append(minute) }
            minute = minute.addingTimeInterval(60)
        }
        var actual: [Date] = []
        var position = start
        while let next = cron.next(after: position), next < end {
            actual.append(next)
            position = next
        }
        #expect(!expected.isEmpty)
        #expect(actual.count == expected.count)
        let mismatch = zip(actual, expected).first { $0 != $1 }
        let difference = "next gave \(String(describing: mismatch?.0)), the search \(String(describing: mismatch?.1))"
        #expect(mismatch == nil, "first difference: \(difference)")
    }
}
