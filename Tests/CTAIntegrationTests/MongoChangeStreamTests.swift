import CTAMongo
import Foundation
import Logging
import Testing

private struct Job: Codable, Equatable, Sendable {
    var _id: Int
    var state: String
}

/// Reads `count` events from `iterator`, failing the test if they do not come within `timeout`.
private func take(
    _ count: Int, from stream: ChangeStream<Job>, timeout: Duration = .seconds(20)
) async throws -> [ChangeEvent<Job>] {
    try await withThrowingTaskGroup(of: [ChangeEvent<Job>].self) { group in
        group.addTask {
            var events: [ChangeEvent<Job>] = []
            for try await event in stream {
                events.append(event)
                if events.count == count { break }
            }
            return events
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return []
        }
        let first = try #require(try await group.next())
        group.cancelAll()
        try #require(first.count == count, "expected \(count) events within \(timeout), got \(first.count)")
        return first
    }
}

@Suite(
    "MongoDB change streams against the real server",
    .enabled(if: ServiceEnvironment.mongoEnabled, "CTA_MONGO_URI is not set: no MongoDB-wire server to test against")
)
struct MongoChangeStreamTests {
    @Test("inserts, updates and deletes arrive in order with their documents and tokens")
    func events() async throws {
        try await withMongoDatabase { _, db in
            let jobs = db.collection("jobs", as: Job.self)
            let stream = try await jobs.watch(fullDocumentOnUpdate: true, maxAwaitTime: .milliseconds(200))
            try await jobs.insertOne(Job(_id: 1, state: "queued"))
            try await jobs.updateOne(["_id": 1], .set(["state": "running"]))
            // updateLookup reads the document when the event is read: read before deleting it.
            var events = try await take(2, from: stream)
            try await jobs.deleteOne(["_id": 1])
            events += try await take(1, from: stream)
            #expect(events.map(\.operationType) == [.insert, .update, .delete])
            #expect(events[0].fullDocument == Job(_id: 1, state: "queued"))
            #expect(events[1].updatedFields == ["state": "running"])
            #expect(events[1].fullDocument == Job(_id: 1, state: "running"))
            #expect(events[2].documentKey == ["_id": 1])
            #expect(events.allSatisfy { $0.collection == "jobs" && $0.database == db.name })
            #expect(Set(events.map(\.resumeToken)).count == 3)
            #expect(stream.resumeToken != nil)
            await stream.close()
        }
    }

    @Test("resume after a client restart: exactly the events after the saved token, none missing or repeated")
    func resumeAfterRestart() async throws {
        let uri = try ServiceEnvironment.requireMongoURI()
        let databaseName = ServiceEnvironment.uniqueName("cta-test")
        let logger = Logger(label: "cta.mongo.test")

        // First life: watch, receive 0..<5, save the tokens, shut everything down.
        let first = try MongoClient(uri: uri, logger: logger)
        let jobs1 = first.database(databaseName).collection("jobs", as: Job.self)
        let stream1 = try await jobs1.watch(maxAwaitTime: .milliseconds(200))
        for i in 0..<5 { try await jobs1.insertOne(Job(_id: i, state: "first")) }
        let seen = try await take(5, from: stream1)
        #expect(seen.compactMap(\.fullDocument?._id) == Array(0..<5))
        let savedLast = try ResumeToken(bsonBytes: seen[4].resumeToken.bsonBytes)
        let savedMiddle = seen[2].resumeToken
        await stream1.close()
        try await first.shutdown()

        // Meanwhile, more writes from another client.
        let writer = try MongoClient(uri: uri, logger: logger)
        let jobsW = writer.database(databaseName).collection("jobs", as: Job.self)
        for i in 5..<10 { try await jobsW.insertOne(Job(_id: i, state: "while down")) }
        try await writer.shutdown()

        // Second life: a new client resumes after the saved token.
        let second = try MongoClient(uri: uri, logger: logger)
        let jobs2 = second.database(databaseName).collection("jobs", as: Job.self)
        let resumed = try await jobs2.watch(resumeAfter: savedLast, maxAwaitTime: .milliseconds(200))
        let fromMiddle = try await jobs2.watch(resumeAfter: savedMiddle, maxAwaitTime: .milliseconds(200))
        // A sentinel written now must be the very next event after 5..<10: nothing repeated, nothing extra.
        try await jobs2.insertOne(Job(_id: 100, state: "sentinel"))

        let afterLast = try await take(6, from: resumed)
        #expect(afterLast.compactMap(\.fullDocument?._id) == Array(5..<10) + [100])
        #expect(afterLast.allSatisfy { $0.operationType == .insert })
        let afterMiddle = try await take(8, from: fromMiddle)
        #expect(afterMiddle.compactMap(\.fullDocument?._id) == Array(3..<10) + [100])

        await resumed.close()
        await fromMiddle.close()
        try? await second.database(databaseName).drop()
        try await second.shutdown()
    }

    @Test("cancelling the consuming task ends the stream promptly")
    func cancellation() async throws {
        try await withMongoDatabase { _, db in
            let jobs = db.collection("jobs", as: Job.self)
            let stream = try await jobs.watch(maxAwaitTime: .milliseconds(300))
            let consumer = Task {
                var count = 0
                for try await _ in stream { count += 1 }
                return count
            }
            try await jobs.insertOne(Job(_id: 1, state: "x"))
            try await Task.sleep(for: .milliseconds(500))
            let clock = ContinuousClock()
            let started = clock.now
            consumer.cancel()
            let count = try await consumer.value
            #expect(count == 1)
            #expect(clock.now - started < .seconds(20), "ended, not left waiting")
            // A stream that ended stays ended.
            var iterator = stream.makeAsyncIterator()
            #expect(try await iterator.next() == nil)
        }
    }

    @Test("close() from another task ends an iteration that is waiting")
    func closeWhileWaiting() async throws {
        try await withMongoDatabase { _, db in
            let jobs = db.collection("jobs", as: Job.self)
            let stream = try await jobs.watch(maxAwaitTime: .milliseconds(300))
            let consumer = Task {
                var count = 0
                for try await _ in stream { count += 1 }
                return count
            }
            try await Task.sleep(for: .milliseconds(400))
            await stream.close()
            #expect(try await consumer.value == 0)
        }
    }

    @Test("dropping the collection reports drop and invalidate, then the stream ends")
    func invalidate() async throws {
        try await withMongoDatabase { _, db in
            let jobs = db.collection("jobs", as: Job.self)
            try await jobs.insertOne(Job(_id: 1, state: "x"))
            let stream = try await jobs.watch(maxAwaitTime: .milliseconds(200))
            try await jobs.drop()
            let ended = Task {
                var kinds: [ChangeOperationType] = []
                for try await event in stream { kinds.append(event.operationType) }
                return kinds
            }
            let timeout = Task {
                try await Task.sleep(for: .seconds(10))
                ended.cancel()
            }
            let kinds = try await ended.value
            timeout.cancel()
            #expect(kinds == [.drop, .invalidate])
        }
    }

    @Test("shutting the client down ends its open change streams and refuses new ones")
    func shutdownEndsStreams() async throws {
        let client = try MongoClient(uri: try ServiceEnvironment.requireMongoURI(), logger: Logger(label: "t"))
        let jobs = client.database(ServiceEnvironment.uniqueName("cta-test")).collection("jobs", as: Job.self)
        let stream = try await jobs.watch(maxAwaitTime: .milliseconds(300))
        let consumer = Task {
            var count = 0
            for try await _ in stream { count += 1 }
            return count
        }
        try await jobs.insertOne(Job(_id: 1, state: "x"))
        try await Task.sleep(for: .milliseconds(500))
        try await jobs.drop()
        let clock = ContinuousClock()
        let started = clock.now
        try await client.shutdown()
        let count = try await consumer.value
        #expect(count >= 1)
        #expect(clock.now - started < .seconds(20), "ended, not left waiting")
        do {
            _ = try await jobs.watch()
            Issue.record("watch after shutdown should fail")
        } catch let error as MongoError {
            #expect(error.code == .clientClosed)
        }
    }

    @Test("a pipeline filters events; a full document that does not decode is a decoding error naming the field")
    func pipelineAndDecoding() async throws {
        try await withMongoDatabase { _, db in
            let jobs = db.collection("jobs", as: Job.self)
            let stream = try await jobs.watch(
                [["$match": ["operationType": "insert"]]], maxAwaitTime: .milliseconds(200))
            try await jobs.insertOne(Job(_id: 1, state: "a"))
            try await jobs.updateOne(["_id": 1], .set(["state": "b"]))
            try await db.collection("jobs").insertOne(["_id": 2, "state": 5])
            try await jobs.insertOne(Job(_id: 3, state: "c"))
            var iterator = stream.makeAsyncIterator()
            #expect(try await iterator.next()?.fullDocument?._id == 1)
            do {
                _ = try await iterator.next()
                Issue.record("the second insert should not decode")
            } catch let error as MongoError {
                #expect(error.code == .decoding)
                #expect(error.field == "fullDocument.state")
            }
            #expect(try await iterator.next()?.fullDocument?._id == 3)
            await stream.close()
        }
    }
}
