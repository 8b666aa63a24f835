import CTACore
import Foundation
import Logging
import Testing

@testable import CTACoordinator
import CTADefinitions

@Suite("Which firings are due")
struct SchedulerCursorTests {
    static let logger = Logger(label: "test")

    static func scenario(cron: String? = nil, at: Date? = nil) -> ScenarioDefinition {
        ScenarioDefinition(
            id: ScenarioID(unchecked: "s"), name: "S", suite: SuiteID(unchecked: "suite"),
            configuration: ConfigurationID(unchecked: "c"), runMode: .mono,
            schedule: ScenarioSchedule(cron: cron, at: at.map { Timestamp($0) }))
    }

    /// 2026-11-22T10:00:30Z.
    static let base = Date(timeIntervalSince1970: 1_795_341_630)

    @Test("a cron firing is due once the cursor passes it, and not again after the cursor advanced")
    func cronDueOnce() {
        var cursor = SchedulerCursor(catchUp: .seconds(600))
        cursor.advance(to: Self.base)
        let scenario = Self.scenario(cron: "* * * * *")
        #expect(cursor.due(scenario, now: Self.base.addingTimeInterval(10), logger: Self.logger).isEmpty)
        let later = Self.base.addingTimeInterval(40)  // 10:01:10
        #expect(cursor.due(scenario, now: later, logger: Self.logger) == [Date(timeIntervalSince1970: 1_795_341_660)])
        cursor.advance(to: later)
        #expect(cursor.due(scenario, now: later.addingTimeInterval(5), logger: Self.logger).isEmpty)
    }

    @Test("a new leader makes only the latest missed cron firing within the catch-up window")
    func catchUpLatestOnly() {
        var cursor = SchedulerCursor(catchUp: .seconds(600))
        cursor.reset(now: Self.base)
        let due = cursor.due(Self.scenario(cron: "* * * * *"), now: Self.base, logger: Self.logger)
        #expect(due == [Date(timeIntervalSince1970: 1_795_341_600)])
        var short = SchedulerCursor(catchUp: .seconds(20))
        short.reset(now: Self.base)
        #expect(short.due(Self.scenario(cron: "0 * * * *"), now: Self.base, logger: Self.logger).isEmpty)
    }

    @Test("a fixed time is due once, only within the window; an invalid cron fires nothing")
    func fixedTimeAndInvalid() {
        var cursor = SchedulerCursor(catchUp: .seconds(60))
        cursor.reset(now: Self.base)
        let soon = Self.base.addingTimeInterval(-30)
        #expect(cursor.due(Self.scenario(at: soon), now: Self.base, logger: Self.logger) == [soon])
        #expect(cursor.due(Self.scenario(at: Self.base.addingTimeInterval(-3600)), now: Self.base, logger: Self.logger).isEmpty)
        #expect(cursor.due(Self.scenario(at: Self.base.addingTimeInterval(30)), now: Self.base, logger: Self.logger).isEmpty)
        #expect(cursor.due(Self.scenario(cron: "61 * * * *"), now: Self.base, logger: Self.logger).isEmpty)
    }
}
