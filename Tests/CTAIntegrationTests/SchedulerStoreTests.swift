import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Logging
import Synchronization
import Testing
import CTADefinitions

/// A wall clock that moves only when told to, so lease expiry is decided by the test and not by timing.
private final class ManualClock: Sendable {
    private let current: Mutex<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Mutex(start) }

    var now: @Sendable () -> Date { { self.current.withLock { $0 } } }

    func advance(by seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// What one holder's concurrent acquire calls in one round got.
private struct Attempt: Sendable {
    var holder: String
    var grant: LeaseGrant?
}

@Suite(
    "Scheduler leases and firing claims against the real server",
    .enabled(if: ServiceEnvironment.mongoEnabled, "CTA_MONGO_URI is not set: no MongoDB-wire server to test against")
)
struct SchedulerStoreTests {
    @Test("a lease is granted when free, renewed by its holder with the same term, refused to others")
    func grantRenewRefuse() async throws {
        try await withMongoDatabase { _, db in
            let clock = ManualClock()
            let leases = LeaseManager(database: db, now: clock.now)
            let start = clock.now()

            let first = try #require(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(30)))
            #expect(first.term == 1)
            #expect(first.holder == "a" && first.name == "scheduler")
            #expect(first.expiresAt == start.addingTimeInterval(30))
            #expect(first.heldSince == start)

            clock.advance(by: 10)
            #expect(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(30)) == nil)
            let renewed = try #require(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(30)))
            #expect(renewed.term == 1, "a renewal keeps the term")
            #expect(renewed.expiresAt == start.addingTimeInterval(40))
            #expect(renewed.heldSince == start, "a renewal keeps the start of the tenure")
            #expect(try await leases.current(name: "scheduler") == renewed)

            // Exactly at the expiry the lease is free.
            clock.advance(by: 30)
            let other = try #require(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(30)))
            #expect(other.term == 2, "a new holder gets the next term")
            #expect(other.heldSince == start.addingTimeInterval(40))
            #expect(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(30)) == nil)

            // Another lease is independent; a holder name that looks like a field path is only a name.
            #expect(try await leases.acquire(name: "reaper", holder: "$holder", duration: .seconds(30))?.term == 1)
            let odd = try await leases.acquire(name: "reaper", holder: "$holder", duration: .seconds(30))
            #expect(odd?.term == 1 && odd?.holder == "$holder")
            #expect(try await leases.current(name: "reaper")?.holder == "$holder")
        }
    }

    @Test("an expired lease passes to whoever asks next; its old holder may take it back only as a new term")
    func expiry() async throws {
        try await withMongoDatabase { _, db in
            let clock = ManualClock()
            let leases = LeaseManager(database: db, now: clock.now)
            _ = try #require(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(15)))

            clock.advance(by: 14.999)
            #expect(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(15)) == nil)
            clock.advance(by: 0.002)
            #expect(try await leases.current(name: "scheduler") == nil, "expired by this clock")
            let b = try #require(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(15)))
            #expect(b.term == 2)

            clock.advance(by: 20)
            let a = try #require(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(15)))
            #expect(a.term == 3)

            // A holder renewing its own expired lease, which nobody took in between, keeps its term.
            clock.advance(by: 60)
            #expect(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(15))?.term == 3)
        }
    }

    @Test("release frees the lease only for its holder, and the next holder's term still grows")
    func release() async throws {
        try await withMongoDatabase { _, db in
            let clock = ManualClock()
            let leases = LeaseManager(database: db, now: clock.now)
            #expect(try await leases.release(name: "scheduler", holder: "a") == false, "nothing to release")
            _ = try #require(try await leases.acquire(name: "scheduler", holder: "a", duration: .seconds(30)))

            #expect(try await leases.release(name: "scheduler", holder: "b") == false)
            #expect(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(30)) == nil)

            #expect(try await leases.release(name: "scheduler", holder: "a") == true)
            #expect(try await leases.release(name: "scheduler", holder: "a") == false, "already released")
            #expect(try await leases.current(name: "scheduler") == nil)
            let b = try #require(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(30)))
            #expect(b.term == 2, "released before its expiry, and taken over at once")

            // Released and taken back by the same holder: a new tenure, so a new term.
            #expect(try await leases.release(name: "scheduler", holder: "b"))
            #expect(try await leases.acquire(name: "scheduler", holder: "b", duration: .seconds(30))?.term == 3)
        }
    }

    @Test("two holders racing for leases round after round: one wins each round, the term grows on each takeover")
    func race() async throws {
        try await withMongoDatabase { _, db in
            let clock = ManualClock()
            let leases = LeaseManager(database: db, now: clock.now)
            let holders = ["coordinator-a", "coordinator-b"]
            let leaseNames = (0..<8).map { "lease-\($0)" }
            var previous: [String: LeaseGrant] = [:]

            for round in 0..<30 {
                // Every lease is free (round 0: it does not exist yet) or expired. In even rounds both holders race
                // for each lease, four calls each, submitted in random order; in odd rounds only the holder that did
                // not win the last round asks, four calls at once, so each lease certainly changes hands.
                let contested = round % 2 == 0
                let calls = leaseNames.flatMap { name in
                    let contenders = contested ? holders : holders.filter { $0 != previous[name]?.holder }
                    return contenders.flatMap { holder in Array(repeating: (name, holder), count: 4) }
                }.shuffled()
                let attempts = try await withThrowingTaskGroup(of: (String, Attempt).self) { group in
                    for (name, holder) in calls {
                        group.addTask {
                            let grant = try await leases.acquire(name: name, holder: holder, duration: .seconds(10))
                            return (name, Attempt(holder: holder, grant: grant))
                        }
                    }
                    var byLease: [String: [Attempt]] = [:]
                    for try await (name, attempt) in group { byLease[name, default: []].append(attempt) }
                    return byLease
                }

                for name in leaseNames {
                    let context = "round \(round), \(name)"
                    let granted = (attempts[name] ?? []).compactMap(\.grant)
                    let winners = Set(granted.map(\.holder))
                    #expect(winners.count == 1, "\(context): granted to \(winners)")
                    guard let winner = winners.first, let grant = granted.first else { continue }
                    #expect(Set(granted.map(\.term)).count == 1, "\(context): one term per round")
                    #expect(
                        (attempts[name] ?? []).allSatisfy { $0.holder == winner || $0.grant == nil },
                        "\(context): the other holder was refused")
                    if let before = previous[name] {
                        if contested && before.holder == winner {
                            #expect(grant.term == before.term, "\(context): same holder, same term")
                        } else {
                            #expect(before.holder != winner, "\(context): the lease changed hands")
                            #expect(grant.term == before.term + 1, "\(context): a takeover, the next term")
                        }
                    } else {
                        #expect(grant.term == 1, "\(context): the first holder")
                    }
                    let stored = try #require(try await leases.current(name: name))
                    #expect(stored.holder == winner && stored.term == grant.term, "\(context): stored as granted")
                    previous[name] = grant
                }
                clock.advance(by: 11)
            }
            #expect(previous.values.allSatisfy { $0.term >= 16 }, "15 certain takeovers after the first grant")
        }
    }

    @Test(
        "a leader whose lease was taken over steps down; stopping releases the lease to the other at once",
        .timeLimit(.minutes(1)))
    func leaderElection() async throws {
        try await withMongoDatabase { _, db in
            let logger = Logger(label: "cta.test.election")
            let leases = LeaseManager(database: db)
            let configuration = LeaderElection.Configuration(
                leaseDuration: .seconds(3), renewInterval: .milliseconds(300), clockMargin: .milliseconds(500))
            let a = LeaderElection(
                leases: leases, name: "scheduler", holder: "a", configuration: configuration, logger: logger)
            let b = LeaderElection(
                leases: leases, name: "scheduler", holder: "b", configuration: configuration, logger: logger)
            #expect(a.leadership == .follower)

            var aChanges = a.changes().makeAsyncIterator()
            #expect(await aChanges.next() == .follower, "a stream starts with the current state")
            let runA = Task { await a.run() }
            #expect(await aChanges.next() == .leader(term: 1))
            #expect(a.isLeader)
            #expect(a.grant?.term == 1)

            var bChanges = b.changes().makeAsyncIterator()
            #expect(await bChanges.next() == .follower)
            let runB = Task { await b.run() }

            // A coordinator whose clock runs a minute ahead sees a's lease as expired and takes it over; a learns
            // at its next renewal.
            let skewed = LeaseManager(database: db, now: { Date().addingTimeInterval(60) })
            let takeover = try #require(
                try await skewed.acquire(name: "scheduler", holder: "c", duration: .seconds(61)))
            #expect(takeover.term == 2)
            #expect(await aChanges.next() == .follower)
            #expect(!a.isLeader)
            #expect(a.grant == nil)

            // When c lets go, one of a and b takes over; stopping that one hands the lease to the other.
            #expect(try await skewed.release(name: "scheduler", holder: "c"))
            while !a.isLeader && !b.isLeader { try await Task.sleep(for: .milliseconds(20)) }
            let aWon = a.isLeader
            let (first, firstRun, second, secondRun) = aWon ? (a, runA, b, runB) : (b, runB, a, runA)
            var (firstChanges, secondChanges) = aWon ? (aChanges, bChanges) : (bChanges, aChanges)
            #expect(await firstChanges.next() == .leader(term: 3))
            #expect(first.isLeader && !second.isLeader)

            firstRun.cancel()
            await firstRun.value
            #expect(!first.isLeader)
            #expect(await secondChanges.next() == .leader(term: 4), "the stopped leader released its lease")
            #expect(second.isLeader)

            secondRun.cancel()
            await secondRun.value
            #expect(await secondChanges.next() == .follower)
            #expect(await secondChanges.next() == nil, "the stream ends when run returns")
            #expect(try await leases.current(name: "scheduler") == nil)
        }
    }

    @Test("a firing raced by many coordinators is claimed by exactly one")
    func firingClaims() async throws {
        try await withMongoDatabase { _, db in
            let coordinators = (0..<12).map { FiringClaims(database: db, coordinator: "coordinator-\($0)") }
            try await coordinators[0].createIndexes()
            let scenarios = ["nightly", "smoke@eu", "hourly"].map { ScenarioID(unchecked: $0) }
            let planned = (0..<6).map { Date(timeIntervalSince1970: 1_800_000_000 + Double($0) * 3600) }
            let firings = scenarios.flatMap { scenario in planned.map { (scenario, $0) } }

            let wins = try await withThrowingTaskGroup(of: (String, String)?.self) { group in
                for (scenario, time) in firings {
                    for claims in coordinators {
                        for _ in 0..<2 {
                            group.addTask {
                                let won = try await claims.claim(scenario: scenario, plannedAt: time)
                                return won
                                    ? (FiringClaims.id(scenario: scenario, plannedAt: time), claims.coordinator) : nil
                            }
                        }
                    }
                }
                var wins: [String: [String]] = [:]
                for try await case (let id, let coordinator)? in group { wins[id, default: []].append(coordinator) }
                return wins
            }

            #expect(wins.count == firings.count, "every firing was won")
            for (scenario, time) in firings {
                let id = FiringClaims.id(scenario: scenario, plannedAt: time)
                let winners = wins[id] ?? []
                #expect(winners.count == 1, "\(id) won by \(winners)")
                let stored = try #require(try await coordinators[0].existingClaim(scenario: scenario, plannedAt: time))
                #expect(stored._id == id && stored.scenario == scenario && stored.plannedAt == time)
                #expect(stored.coordinator == winners.first)
            }
            #expect(try await coordinators[0].collection.count() == firings.count)

            // Claimed already: a later claim, by anyone, is refused.
            let late = FiringClaims(database: db, coordinator: "late")
            #expect(try await late.claim(scenario: scenarios[0], plannedAt: planned[0]) == false)
            #expect(try await late.claim(scenario: scenarios[0], plannedAt: planned[0].addingTimeInterval(60)) == true)
        }
    }

    @Test("a firing's id is the scenario and the planned time in RFC 3339 UTC, to the millisecond")
    func firingIDs() {
        let scenario = ScenarioID(unchecked: "nightly")
        let time = Timestamp(rfc3339: "2025-03-14T02:00:00Z")!.date
        #expect(FiringClaims.id(scenario: scenario, plannedAt: time) == "nightly@2025-03-14T02:00:00.000000Z")
        #expect(
            FiringClaims.id(scenario: scenario, plannedAt: time.addingTimeInterval(0.1234))
                == "nightly@2025-03-14T02:00:00.123000Z")
        #expect(
            FiringClaims.id(scenario: ScenarioID(unchecked: "a@b"), plannedAt: time)
                == "a@b@2025-03-14T02:00:00.000000Z")
    }

    @Test("the TTL index on claims is created once, again without effect, and changed in place")
    func expiryIndex() async throws {
        try await withMongoDatabase { _, db in
            let claims = FiringClaims(database: db, coordinator: "c")
            try await claims.createIndexes()
            try await claims.createIndexes()
            func expiry() async throws -> Int? {
                let indexes = try await claims.collection.listIndexes()
                let index = indexes.first { $0["name"]?.stringValue == FiringClaims.expiryIndexName }
                #expect(index?["key"]?.documentValue?.keys == ["claimedAt"])
                return index?["expireAfterSeconds"]?.intValue
            }
            #expect(try await expiry() == 30 * 86_400)
            try await claims.createIndexes(retention: .seconds(7 * 86_400))
            #expect(try await expiry() == 7 * 86_400)
        }
    }
}
