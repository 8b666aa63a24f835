import CTACore
import CTAMongo
import Foundation
import Logging
import CTADefinitions

// The scheduler: the coordinator holding the `scheduler` lease fires fixed-time and cron scenarios. Each firing
// (scenario + planned time) is claimed in the database before its execution is created, so it happens once even
// when two coordinators both believe they lead for a moment (a lease hand-over, a paused process).

extension Coordinator {
    /// Runs leader election and, while leading, the firing loop; until cancelled.
    func scheduleLoop(database: MongoDatabase) async {
        let election = LeaderElection(
            leases: LeaseManager(database: database), name: "scheduler", holder: settings.instance,
            configuration: LeaderElection.Configuration(leaseDuration: settings.schedulerLease), logger: logger)
        let claims = FiringClaims(database: database, coordinator: settings.instance)
        do {
            try await claims.createIndexes()
        } catch {
            logger.warning("cannot create the firing index", metadata: ["cta.error": "\(error)"])
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await election.run() }
            group.addTask {
                var cursor = SchedulerCursor(catchUp: self.settings.schedulerCatchUp)
                var wasLeader = false
                while !Task.isCancelled {
                    let leader = election.isLeader
                    if leader != wasLeader {
                        self.logger.info(leader ? "leading the scheduler" : "no longer leading the scheduler")
                        // A new leader looks back over the catch-up window for firings nobody made.
                        if leader { cursor.reset(now: Date()) }
                        wasLeader = leader
                    }
                    if leader { await self.fireDue(&cursor, claims: claims) }
                    try? await Task.sleep(for: self.settings.schedulerTick)
                }
            }
            await group.waitForAll()
        }
    }

    /// Fires every scenario whose planned time has come since the cursor.
    private func fireDue(_ cursor: inout SchedulerCursor, claims: FiringClaims) async {
        let now = Date()
        let scenarios: [ScenarioDefinition]
        do {
            scenarios = try await store.scheduledScenarios()
        } catch {
            logger.warning("cannot read scheduled scenarios", metadata: ["cta.error": "\(error)"])
            return
        }
        // A firing that failed (the database away) is tried again at the next tick: the cursor stays put.
        var failed = false
        for scenario in scenarios {
            for planned in cursor.due(scenario, now: now, logger: logger) {
                do {
                    guard try await claims.claim(scenario: scenario.id, plannedAt: planned) else { continue }
                    let record = try await retryingStore("create a scheduled execution") {
                        try await self.store.requestExecution(of: scenario.id, requestedBy: "scheduler", at: Date())
                    }
                    logger.info(
                        "scenario fired",
                        metadata: [
                            "cta.scenario": "\(scenario.id)", "cta.planned": "\(Timestamp(planned).rfc3339)",
                            "cta.execution": "\(record.executionID)",
                        ])
                    wakeComposer(with: record)
                } catch {
                    failed = true
                    logger.error(
                        "a scheduled firing failed", metadata: ["cta.scenario": "\(scenario.id)", "cta.error": "\(error)"])
                }
            }
        }
        if !failed { cursor.advance(to: now) }
    }
}

/// Which planned times are due: those after the cursor and not after now. Only the latest missed cron firing
/// within the catch-up window is made (a coordinator down for a day does not fire 1,440 minutely runs at once).
struct SchedulerCursor {
    var catchUp: Duration
    private(set) var since: Date = Date()
    private var invalid: Set<String> = []

    init(catchUp: Duration) {
        self.catchUp = catchUp
    }

    mutating func reset(now: Date) {
        since = now.addingTimeInterval(-catchUp.timeInterval)
    }

    mutating func advance(to now: Date) {
        since = now
    }

    mutating func due(_ scenario: ScenarioDefinition, now: Date, logger: Logger) -> [Date] {
        guard let schedule = scenario.schedule else { return [] }
        var due: [Date] = []
        if let at = schedule.at?.date, at > since, at <= now { due.append(at) }
        if let text = schedule.cron {
            do {
                let cron = try CronExpression(text)
                var latest: Date?
                var next = cron.next(after: since)
                while let planned = next, planned <= now {
                    latest = planned
                    next = cron.next(after: planned)
                }
                if let latest { due.append(latest) }
            } catch {
                if invalid.insert("\(scenario.id)|\(text)").inserted {
                    logger.error("invalid cron expression", metadata: ["cta.scenario": "\(scenario.id)", "cta.error": "\(error)"])
                }
            }
        }
        return due
    }
}
