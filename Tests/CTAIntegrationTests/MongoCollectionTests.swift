import CTAMongo
import Foundation
import Logging
import Testing

@Suite(
    "MongoDB collections against the real server",
    .enabled(if: ServiceEnvironment.mongoEnabled, "CTA_MONGO_URI is not set: no MongoDB-wire server to test against")
)
struct MongoCollectionTests {
    @Test("insertOne, insertMany, findOne, find, count, deleteOne, deleteMany, drop")
    func crud() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            let id = try await machines.insertOne(machine(0))
            #expect(id == .string("m0"))
            let ids = try await machines.insertMany((1..<10).map { machine($0) })
            #expect(ids.count == 9)
            #expect(try await machines.count() == 10)
            #expect(try await machines.count(["pool": "linux", "cores": ["$gte": 5]]) == 4)

            let found = try await machines.findOne(["_id": "m3"])
            #expect(found == machine(3))
            #expect(try await machines.findOne(["_id": "nope"]) == nil)

            #expect(try await machines.deleteOne(["_id": "m0"]) == 1)
            #expect(try await machines.deleteOne(["_id": "m0"]) == 0)
            #expect(try await machines.deleteMany(["cores": ["$lte": 4]]) == 5)
            #expect(try await machines.count() == 4)

            try await machines.drop()
            #expect(try await machines.count() == 0)
            #expect(try await db.listCollectionNames().contains("machines") == false)
        }
    }

    @Test("a document without _id gets an ObjectId, and is found by it")
    func generatedIds() async throws {
        try await withMongoDatabase { _, db in
            let events = db.collection("events")
            let id = try await events.insertOne(["kind": "started", "at": .date(Date(timeIntervalSince1970: 5))])
            guard case .objectId = id else {
                Issue.record("expected an ObjectId, got \(id)")
                return
            }
            let stored = try #require(try await events.findOne(["_id": id]))
            #expect(stored["kind"] == "started")
            #expect(stored.keys.first == "_id")
        }
    }

    @Test("find with sort, skip, limit and a projection into another type")
    func findOptions() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            try await machines.insertMany((0..<20).map { machine($0, pool: $0 % 2 == 0 ? "even" : "odd") })

            let page = try await machines.find(
                ["pool": "even"], sort: .descending("lastSeen"), skip: 2, limit: 3)
            #expect(page.map(\._id) == ["m14", "m12", "m10"])

            struct NameOnly: Codable, Sendable {
                var name: String
                var cores: Int?
            }
            let names = try await machines.find(
                [:], sort: .ascending("name"), projection: ["name": 1, "_id": 0], limit: 2, as: NameOnly.self)
            #expect(names.map(\.name) == ["host-0", "host-1"])
            #expect(names.allSatisfy { $0.cores == nil }, "the projection left cores out")

            let compound = try await machines.find(
                ["cores": ["$in": [1, 2]]], sort: ["cores": -1, "_id": 1])
            #expect(compound.map(\._id) == ["m1", "m17", "m9", "m0", "m16", "m8"])
        }
    }

    @Test("updateOne, updateMany, replaceOne, and upserts report what they did")
    func updates() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            try await machines.insertMany((0..<6).map { machine($0) })

            let one = try await machines.updateOne(["_id": "m1"], .set(["pool": "gpu"]).inc(["attempts": 1]))
            #expect(one.matchedCount == 1 && one.modifiedCount == 1 && one.upsertedId == nil)
            let updated = try #require(try await machines.findOne(["_id": "m1"]))
            #expect(updated.pool == "gpu" && updated.attempts == 1)

            let same = try await machines.updateOne(["_id": "m1"], .set(["pool": "gpu"]))
            #expect(same.matchedCount == 1 && same.modifiedCount == 0)

            let many = try await machines.updateMany(["pool": "linux"], .set(["tags": ["bulk"]]))
            #expect(many.matchedCount == 5 && many.modifiedCount == 5)
            #expect(try await machines.count(["tags": "bulk"]) == 5)

            let upsert = try await machines.updateOne(
                ["_id": "m99"],
                .set(["pool": "new"]).setOnInsert(["name": "host-99", "cores": 2, "tags": []]),
                upsert: true)
            #expect(upsert.upsertedCount == 1 && upsert.upsertedId == .string("m99"))
            let inserted = try #require(try await machines.findOne(["_id": "m99"]))
            #expect(inserted.name == "host-99" && inserted.pool == "new")

            let again = try await machines.updateOne(
                ["_id": "m99"], .set(["pool": "newer"]).setOnInsert(["name": "ignored"]), upsert: true)
            #expect(again.upsertedCount == 0 && again.matchedCount == 1)
            #expect(try await machines.findOne(["_id": "m99"])?.name == "host-99")

            var replacement = machine(2)
            replacement.name = "replaced"
            let replaced = try await machines.replaceOne(["_id": "m2"], with: replacement)
            #expect(replaced.modifiedCount == 1)
            #expect(try await machines.findOne(["_id": "m2"]) == replacement)

            let manyUpsert = try await machines.updateMany(
                ["pool": "none"], .set(["cores": 1]).setOnInsert(["_id": "m100", "name": "x", "tags": []]),
                upsert: true)
            #expect(manyUpsert.upsertedId == .string("m100"))
        }
    }

    @Test("findOneAndUpdate returns the document before or after, and upserts")
    func findOneAndUpdate() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            try await machines.insertMany([machine(1), machine(2), machine(3)])

            let before = try await machines.findOneAndUpdate(
                ["pool": "linux"], .set(["pool": "claimed"]), sort: .descending("cores"))
            #expect(before?._id == "m3")
            #expect(before?.pool == "linux")

            let after = try await machines.findOneAndUpdate(
                ["pool": "linux"], .set(["pool": "claimed"]), sort: .descending("cores"), returning: .after)
            #expect(after?._id == "m2")
            #expect(after?.pool == "claimed")

            let none = try await machines.findOneAndUpdate(["pool": "absent"], .set(["pool": "x"]))
            #expect(none == nil)

            let upserted = try await machines.findOneAndUpdate(
                ["_id": "m7"], .set(["pool": "fresh"]).setOnInsert(["name": "host-7", "cores": 4, "tags": []]),
                returning: .after, upsert: true)
            #expect(upserted?._id == "m7")
            #expect(upserted?.pool == "fresh")
            #expect(try await machines.count() == 4)
        }
    }

    @Test("a second document with the same unique key is MongoError.duplicateKey")
    func duplicateKey() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            let name = try await machines.createIndex(IndexModel(keys: ["name": 1], unique: true))
            #expect(name == "name_1")
            try await machines.insertOne(machine(1))
            var clash = machine(2)
            clash.name = machine(1).name
            do {
                try await machines.insertOne(clash)
                Issue.record("the insert should have failed")
            } catch let error as MongoError {
                #expect(error.code == .duplicateKey, "\(error.debugDescription)")
                #expect(error.collection == "machines")
            }
            // The same through insertMany and through an update.
            do {
                try await machines.insertMany([machine(4), clash])
                Issue.record("the insertMany should have failed")
            } catch let error as MongoError {
                #expect(error.code == .duplicateKey, "\(error.debugDescription)")
            }
            #expect(try await machines.count(["_id": "m4"]) == 1, "an ordered insertMany stops at the failure")
            try await machines.insertOne(machine(5))
            do {
                try await machines.updateOne(["_id": "m5"], .set(["name": .string(machine(1).name)]))
                Issue.record("the update should have failed")
            } catch let error as MongoError {
                #expect(error.code == .duplicateKey, "\(error.debugDescription)")
            }
            // Same _id.
            do {
                try await machines.insertOne(machine(1))
                Issue.record("the insert should have failed")
            } catch let error as MongoError {
                #expect(error.code == .duplicateKey)
            }
        }
    }

    @Test("createIndexes: compound, TTL and partial indexes appear in listIndexes")
    func indexes() async throws {
        try await withMongoDatabase { _, db in
            let results = db.collection("results")
            let names = try await results.createIndexes([
                IndexModel(keys: ["execution": 1, "createdAt": -1]),
                IndexModel(keys: ["createdAt": 1], name: "expire_results", expireAfter: .seconds(86_400)),
                IndexModel(
                    keys: ["token": 1], unique: true, partialFilter: ["token": ["$exists": true]]),
            ])
            #expect(names == ["execution_1_createdAt_-1", "expire_results", "token_1"])
            let indexes = try await results.listIndexes()
            let byName = Dictionary(
                uniqueKeysWithValues: indexes.compactMap { i in i["name"]?.stringValue.map { ($0, i) } })
            #expect(Set(byName.keys) == ["_id_", "execution_1_createdAt_-1", "expire_results", "token_1"])
            #expect(byName["expire_results"]?["expireAfterSeconds"]?.intValue == 86_400)
            #expect(byName["execution_1_createdAt_-1"]?["key"]?.documentValue?.keys == ["execution", "createdAt"])
            #expect(byName["token_1"]?["unique"] == .bool(true))
            // Creating the same indexes again is not an error.
            try await results.createIndex(
                IndexModel(keys: ["createdAt": 1], name: "expire_results", expireAfter: .seconds(86_400)))
        }
    }

    @Test("aggregate groups, sorts and decodes")
    func aggregate() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            try await machines.insertMany((0..<12).map { machine($0, pool: ["a", "b", "c"][$0 % 3]) })
            struct PoolCores: Codable, Sendable, Equatable {
                var _id: String
                var total: Int
                var count: Int
            }
            let pools = try await machines.aggregate(
                [
                    ["$match": ["cores": ["$gt": 1]]],
                    ["$group": ["_id": "$pool", "total": ["$sum": "$cores"], "count": ["$sum": 1]]],
                    ["$sort": ["_id": 1]],
                ], as: PoolCores.self)
            // cores = i % 8 + 1; pool a: i = 0,3,6,9 → 1,4,7,2; b: 1,4,7,10 → 2,5,8,3; c: 2,5,8,11 → 3,6,1,4.
            #expect(
                pools == [
                    .init(_id: "a", total: 13, count: 3), .init(_id: "b", total: 18, count: 4),
                    .init(_id: "c", total: 13, count: 3),
                ])
            let raw = try await machines.aggregate([["$count": "n"]])
            #expect(raw.first?["n"]?.intValue == 12)
        }
    }

    @Test("a stored document that does not decode names the field and the collection")
    func decodingError() async throws {
        try await withMongoDatabase { _, db in
            let raw = db.collection("machines")
            try await raw.insertOne(["_id": "bad", "name": "h", "cores": "eight", "pool": "p", "tags": []])
            let machines = raw.withType(TestMachine.self)
            do {
                _ = try await machines.find()
                Issue.record("decoding should have failed")
            } catch let error as MongoError {
                #expect(error.code == .decoding)
                #expect(error.field == "cores")
                #expect(error.collection == "machines")
                #expect(error.description.contains("cores"))
            }
            try await raw.insertOne(["_id": "bad2", "cores": 1, "pool": "p", "tags": []])
            do {
                _ = try await machines.findOne(["_id": "bad2"])
                Issue.record("decoding should have failed")
            } catch let error as MongoError {
                #expect(error.code == .decoding)
                #expect(error.field == "name")
            }
        }
    }

    @Test("an invalid update is invalidArgument, a server-side failure carries the server's code")
    func requestErrors() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            try await machines.insertOne(machine(1))
            do {
                try await machines.updateOne(["_id": "m1"], ["pool": "no operator"])
                Issue.record("an update without operators should fail")
            } catch let error as MongoError {
                #expect(error.code == .invalidArgument, "\(error.debugDescription)")
            }
            do {
                _ = try await machines.find(["$bogus": 1])
                Issue.record("an unknown top-level operator should fail")
            } catch let error as MongoError {
                #expect(error.serverCode != nil || error.code == .invalidArgument, "\(error.debugDescription)")
            }
        }
    }

    @Test("a server that is not there is a connection error, quickly")
    func connectionRefused() async throws {
        // Port 9 (discard) on loopback: nothing listens there on these machines.
        let client = try MongoClient(
            uri: "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500&connectTimeoutMS=500",
            logger: Logger(label: "cta.mongo.test"))
        let clock = ContinuousClock()
        let started = clock.now
        do {
            try await client.ping()
            Issue.record("ping should have failed")
        } catch let error as MongoError {
            #expect(error.code == .connection, "\(error.debugDescription)")
            #expect(!error.description.isEmpty)
        }
        // Not a speed check: the 500 ms server selection must end it, not the 30 s default. The bound leaves room
        // for a machine busy with other work.
        #expect(clock.now - started < .seconds(20))
        try await client.shutdown()
    }

    @Test("an unparsable URI is invalidArgument; a shut-down client refuses work")
    func lifecycle() async throws {
        #expect(throws: MongoError.self) { try MongoClient(uri: "postgres://nope", logger: Logger(label: "t")) }
        let client = try MongoClient(uri: try ServiceEnvironment.requireMongoURI(), logger: Logger(label: "t"))
        try await client.ping()
        try await client.shutdown()
        try await client.shutdown()
        do {
            try await client.ping()
            Issue.record("ping after shutdown should fail")
        } catch let error as MongoError {
            #expect(error.code == .clientClosed)
        }
    }

    @Test("many concurrent operations share the pool")
    func concurrency() async throws {
        try await withMongoDatabase { _, db in
            let machines = db.collection("machines", as: TestMachine.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<200 {
                    group.addTask { try await machines.insertOne(machine(i)) }
                }
                try await group.waitForAll()
            }
            #expect(try await machines.count() == 200)
        }
    }
}
