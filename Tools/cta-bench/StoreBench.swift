import ArgumentParser
import CBaseline
import CTAMongo
import Foundation
import Logging

/// The document both sides write: the same fields and values as `build_document` in `mongo_baseline.c`
/// (about 200 bytes of BSON).
private struct BenchMachine: Codable, Sendable {
    var _id: ObjectId
    var key: Int64
    var name: String
    var pool: String
    var state: String
    var cores: Int32
    var memoryBytes: Int64
    var createdAt: Date
    var tags: [String]
    var note: String

    init(key: Int64) {
        _id = ObjectId()
        self.key = key
        name = "machine-" + String(repeating: "0", count: max(0, 6 - String(key).count)) + String(key)
        pool = "linux-x86_64"
        state = "idle"
        cores = 8
        memoryBytes = 34_359_738_368
        createdAt = Date(timeIntervalSince1970: (1_700_000_000_000 + Double(key)) / 1000)
        tags = ["ci", "linux"]
        note = "benchmark document with a few fields of payload"
    }
}

struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "MongoDB insert, bulk insert and find rates, next to raw libmongoc.",
        discussion: """
            Runs each figure in alternating rounds (libmongoc, CTA, libmongoc, CTA…) in a database of its own
            (cta_bench_<random>), dropped at the end. Prints one JSON line per figure.
            """
    )

    @Option(help: "MongoDB connection string (default: $CTA_MONGO_URI). SecantusDB needs retryWrites=false.")
    var uri: String?

    @Option(help: "Documents per round for insert_one and queries per round for find_one_indexed (default 5000).")
    var documents: Int = 5000

    @Option(help: "Documents per round for insert_many (default: 10 × --documents, so 50000).")
    var bulkDocuments: Int?

    @Option(help: "Documents per insert_many call.")
    var batch: Int = 1000

    @Option(help: "Rounds per side.")
    var rounds: Int = 3

    @Option(help: "Threads of CTA's client that run blocking libmongoc calls.")
    var threads: Int = MongoClient.Configuration(uri: "").threadCount

    @Option(help: "Only these figures (comma-separated: insert_one,insert_many,find_one_indexed).")
    var only: String?

    func validate() throws {
        guard documents > 0, rounds > 0, batch > 0, (bulkDocuments ?? 1) > 0 else {
            throw ValidationError("--documents, --bulk-documents, --batch and --rounds must be positive")
        }
    }

    func run() async throws {
        guard let uri = uri ?? ProcessInfo.processInfo.environment["CTA_MONGO_URI"] else {
            throw ValidationError("no URI: pass --uri or set CTA_MONGO_URI")
        }
        let figures = Set((only ?? "insert_one,insert_many,find_one_indexed").split(separator: ",").map(String.init))
        var logger = Logger(label: "cta.bench.store")
        logger.logLevel = .warning
        let client = try MongoClient(configuration: .init(uri: uri, threadCount: threads), logger: logger)
        let databaseName = "cta_bench_" + UUID().uuidString.prefix(8).lowercased()
        let database = client.database(databaseName)
        try await client.ping()
        do {
            if figures.contains("insert_one") {
                try await insertOne(uri: uri, database: database).printLine()
            }
            if figures.contains("insert_many") {
                try await insertMany(uri: uri, database: database).printLine()
            }
            if figures.contains("find_one_indexed") {
                try await findOne(uri: uri, database: database).printLine()
            }
        } catch {
            try? await database.drop()
            try? await client.shutdown()
            throw error
        }
        try await database.drop()
        try await client.shutdown()
    }

    private func insertOne(uri: String, database: MongoDatabase) async throws -> Figure {
        let count = documents
        var swift: [Double] = []
        var c: [Double] = []
        for round in 0..<rounds {
            let cName = "insert_one_c_\(round)"
            let (seconds, _) = try await baseline("insert_one") { error, size, _ in
                cta_mongo_baseline_insert_one(uri, database.name, cName, 0, Int32(count), error, size)
            }
            c.append(Double(count) / seconds)
            try await database.collection(cName).drop()

            let collection = database.collection("insert_one_swift_\(round)", as: BenchMachine.self)
            let elapsed = try await measureSeconds {
                for key in 0..<count {
                    try await collection.insertOne(BenchMachine(key: Int64(key)))
                }
            }
            swift.append(Double(count) / elapsed)
            try await collection.drop()
        }
        return Figure(
            bench: "store", figure: "insert_one", unit: "docs/s", samples: swift, baselineSamples: c,
            baselineName: "libmongoc", operations: count)
    }

    private func insertMany(uri: String, database: MongoDatabase) async throws -> Figure {
        let count = bulkDocuments ?? documents * 10
        let batch = self.batch
        var swift: [Double] = []
        var c: [Double] = []
        for round in 0..<rounds {
            let cName = "insert_many_c_\(round)"
            let (seconds, _) = try await baseline("insert_many") { error, size, _ in
                cta_mongo_baseline_insert_many(uri, database.name, cName, 0, Int32(count), Int32(batch), error, size)
            }
            c.append(Double(count) / seconds)
            try await database.collection(cName).drop()

            let collection = database.collection("insert_many_swift_\(round)", as: BenchMachine.self)
            let elapsed = try await measureSeconds {
                var next = 0
                while next < count {
                    let end = min(count, next + batch)
                    try await collection.insertMany((next..<end).map { BenchMachine(key: Int64($0)) })
                    next = end
                }
            }
            swift.append(Double(count) / elapsed)
            try await collection.drop()
        }
        return Figure(
            bench: "store", figure: "insert_many", unit: "docs/s", samples: swift, baselineSamples: c,
            baselineName: "libmongoc", operations: count)
    }

    private func findOne(uri: String, database: MongoDatabase) async throws -> Figure {
        let count = documents
        let keyRange = Int64(max(1000, documents))
        let collection = database.collection("find_one", as: BenchMachine.self)
        try await collection.createIndex(IndexModel(keys: ["key": 1], unique: true))
        var next: Int64 = 0
        while next < keyRange {
            let end = min(keyRange, next + 1000)
            try await collection.insertMany((next..<end).map { BenchMachine(key: $0) })
            next = end
        }
        var swift: [Double] = []
        var c: [Double] = []
        for _ in 0..<rounds {
            let (seconds, found) = try await baseline("find_one") { error, size, found in
                cta_mongo_baseline_find_one(uri, database.name, "find_one", Int32(count), keyRange, found, error, size)
            }
            guard found == count else { throw ValidationError("libmongoc found \(found) of \(count) documents") }
            c.append(Double(count) / seconds)

            var hits = 0
            let elapsed = try await measureSeconds {
                for i in 0..<count {
                    let key = Int64(i) * 7919 % keyRange
                    if let machine = try await collection.findOne(["key": .int64(key)]), machine.key == key {
                        hits += 1
                    }
                }
            }
            guard hits == count else { throw ValidationError("CTA found \(hits) of \(count) documents") }
            swift.append(Double(count) / elapsed)
        }
        return Figure(
            bench: "store", figure: "find_one_indexed", unit: "ops/s", samples: swift, baselineSamples: c,
            baselineName: "libmongoc", operations: count)
    }

    /// Runs a blocking C baseline on a thread of its own (not the cooperative pool). `body` gets an error
    /// buffer, its size and a counter; returns the baseline's seconds and the counter.
    private func baseline(
        _ name: String,
        _ body: @escaping @Sendable (UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<Int64>) -> Double
    ) async throws -> (Double, Int64) {
        let (seconds, counter, message) = await onOwnThread { () -> (Double, Int64, String) in
            let size = 512
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            buffer.initialize(repeating: 0, count: size)
            defer { buffer.deallocate() }
            var counter: Int64 = 0
            let seconds = body(buffer, size, &counter)
            return (seconds, counter, String(cString: buffer))
        }
        guard seconds > 0 else { throw ValidationError("libmongoc \(name) failed: \(message)") }
        return (seconds, counter)
    }
}
