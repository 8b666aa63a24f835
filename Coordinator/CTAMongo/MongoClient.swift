internal import CMongoC
import Foundation
public import Logging
import NIOCore
import NIOPosix

/// `mongoc_init()` must run once per process before any other libmongoc call; Swift initialises globals
/// lazily and exactly once (with `swift_once`), which is the guard. `mongoc_cleanup()` is never called:
/// the library stays initialised until the process exits.
///
/// libmongoc's own log lines (it prints them to stderr by default) go to `libmongocLogger` instead:
/// warnings and errors at `info`, the rest at `debug` and `trace`.
private let mongocInitialized: Void = {
    mongoc_log_set_handler(
        { level, domain, message, _ in
            let swiftLevel: Logger.Level
            switch level {
            case MONGOC_LOG_LEVEL_ERROR, MONGOC_LOG_LEVEL_CRITICAL, MONGOC_LOG_LEVEL_WARNING: swiftLevel = .info
            case MONGOC_LOG_LEVEL_MESSAGE, MONGOC_LOG_LEVEL_INFO: swiftLevel = .debug
            default: swiftLevel = .trace
            }
            guard libmongocLogger.logLevel <= swiftLevel else { return }
            libmongocLogger.log(
                level: swiftLevel, "\(message.map { String(cString: $0) } ?? "")",
                metadata: ["cta.mongo.log_domain": "\(domain.map { String(cString: $0) } ?? "")"])
        }, nil)
    mongoc_init()
}()

/// Where libmongoc's log lines go (see `mongocInitialized`).
private let libmongocLogger = Logger(label: "cta.mongo.libmongoc")

/// A MongoDB client: a pool of connections from a URI, on which databases and collections are used.
///
/// Every libmongoc call is blocking; the client runs them on threads of its own (`NIOThreadPool`s, see
/// `BlockingLanes`), never on the cooperative pool. A pooled connection is
/// taken from the pool (`mongoc_client_pool_pop`) and given back inside one job on that pool, never held
/// across an `await`.
///
/// - Important: call ``shutdown()`` when done. It ends the client's open change streams, waits for running
///   operations, then closes the connections off the caller's thread.
public final class MongoClient: Sendable {
    /// How to connect.
    public struct Configuration: Sendable {
        /// The connection string, for example `mongodb://127.0.0.1:27017/?retryWrites=false`. Its options
        /// (`serverSelectionTimeoutMS`, `maxPoolSize`, `retryWrites`, TLS, credentials…) apply as libmongoc
        /// documents them; nothing is added to it.
        public var uri: String
        /// Threads that run blocking libmongoc calls, which bounds the operations in flight. Default 4.
        public var threadCount: Int
        /// The application name the server sees in its logs (the URI's `appname` wins). Default `cta`.
        public var appName: String?

        public init(uri: String, threadCount: Int = 4, appName: String? = "cta") {
            self.uri = uri
            self.threadCount = threadCount
            self.appName = appName
        }
    }

    public let configuration: Configuration
    let logger: Logger
    private let threads: BlockingLanes
    /// The connection pool; `nil` once shut down.
    private let pool: Locked<ClientPool?>
    /// Change streams still open, closed by `shutdown()`.
    let streams = StreamRegistry()

    /// Creates the client and its connection pool. No connection is made until the first operation.
    ///
    /// - Throws: ``MongoError`` with code `invalidArgument` when the URI does not parse.
    public init(configuration: Configuration, logger: Logger) throws {
        _ = mongocInitialized
        let pool = try ClientPool(configuration: configuration)
        self.configuration = configuration
        self.logger = logger
        self.pool = Locked(pool)
        self.threads = BlockingLanes(count: max(1, configuration.threadCount))
        logger.debug("MongoDB client created", metadata: ["cta.mongo.threads": "\(configuration.threadCount)"])
    }

    /// Creates a client for `uri` with default settings.
    public convenience init(uri: String, logger: Logger) throws {
        try self.init(configuration: Configuration(uri: uri), logger: logger)
    }

    deinit {
        // Without shutdown(): stop the threads; the pool is released with the last reference to it.
        threads.shutdownDetached()
    }

    public func database(_ name: String) -> MongoDatabase {
        MongoDatabase(name: name, client: self)
    }

    /// Sends `ping` to the server: a quick check that it can be reached.
    public func ping() async throws {
        _ = try await database("admin").runCommand(["ping": 1])
    }

    /// Ends the open change streams (their iterations return `nil`), waits for running operations to finish,
    /// then closes the pool's connections (on a thread of its own, since libmongoc may talk to the server while
    /// closing). Operations started afterwards throw ``MongoError/Code/clientClosed``. Calling it again does
    /// nothing.
    public func shutdown() async throws {
        guard let pool = self.pool.exchange(nil) else { return }
        logger.debug("MongoDB client shutting down")
        for stream in streams.closeAll() { await stream.close() }
        try await threads.shutdown()
        // Release the pool on a thread that may block: if nothing else (a change stream) holds it, this is
        // where mongoc_client_pool_destroy runs.
        let holder = Locked<ClientPool?>(pool)
        let releaser = NIOThreadPool(numberOfThreads: 1)
        releaser.start()
        try await releaser.runIfActive { holder.withLock { $0 = nil } }
        try await releaser.shutdownGracefully()
    }

    /// The pool, or `clientClosed`.
    func currentPool() throws -> ClientPool {
        guard let pool = pool.withLock({ $0 }) else { throw MongoError.clientClosed }
        return pool
    }

    /// Runs `body` on the thread pool with a pooled `mongoc_client_t *`, given back when `body` returns.
    ///
    /// `body` must not let the client pointer escape.
    func withClient<R: Sendable>(
        collection: String?, _ body: @escaping @Sendable (OpaquePointer) throws -> R
    ) async throws -> R {
        let pool = try currentPool()
        do {
            return try await threads.run { try pool.withClient(body) }
        } catch let error as MongoError {
            logger.debug(
                "MongoDB operation failed",
                metadata: [
                    "cta.mongo.collection": "\(collection ?? "-")", "cta.mongo.error": "\(error.debugDescription)",
                ])
            throw error
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw MongoError.clientClosed
        }
    }
}

/// Owns a `mongoc_client_pool_t` and its `mongoc_uri_t`, destroyed in `deinit`.
///
/// `@unchecked Sendable`: libmongoc documents `mongoc_client_pool_t` as thread-safe — `pop` and `push` may be
/// called from any thread — and the two pointers never change after `init`. The clients popped from it are
/// not thread-safe and are only used inside `withClient`'s synchronous body (or by one change stream on its
/// own thread). `deinit` runs only when no other reference, hence no popped client, exists.
final class ClientPool: @unchecked Sendable {
    private let pool: OpaquePointer
    private let uri: OpaquePointer

    init(configuration: MongoClient.Configuration) throws {
        var error = bson_error_t()
        guard let uri = mongoc_uri_new_with_error(configuration.uri, &error) else {
            throw MongoError(code: .invalidArgument, message: "invalid URI: \(MongoError.message(of: error))")
        }
        guard let pool = mongoc_client_pool_new_with_error(uri, &error) else {
            mongoc_uri_destroy(uri)
            throw MongoError(error)
        }
        self.uri = uri
        self.pool = pool
        // Error API 2: every error the server sent has domain MONGOC_ERROR_SERVER and the server's code.
        mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2)
        if let appName = configuration.appName, mongoc_uri_get_appname(uri) == nil {
            _ = mongoc_client_pool_set_appname(pool, appName)
        }
    }

    deinit {
        mongoc_client_pool_destroy(pool)
        mongoc_uri_destroy(uri)
    }

    /// Pops a client, runs `body` with it and pushes it back. Blocks while the pool is at `maxPoolSize`.
    func withClient<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        let client = pop()
        defer { push(client) }
        return try body(client)
    }

    /// Pops a client for a holder that keeps it longer than one call (a change stream); give it back with `push`.
    func pop() -> OpaquePointer {
        guard let client = mongoc_client_pool_pop(pool) else { preconditionFailure("mongoc_client_pool_pop failed") }
        return client
    }

    func push(_ client: OpaquePointer) {
        mongoc_client_pool_push(pool, client)
    }
}

/// The threads that run a client's blocking libmongoc calls: one single-thread `NIOThreadPool` per lane.
///
/// A job goes to the lane that became idle most recently, so a caller doing one operation after another
/// keeps using the same, warm thread (measured: a plain 4-thread `NIOThreadPool` hands consecutive jobs to
/// its threads in turn, which cost about 8 % of the indexed `find_one` rate). When every lane is busy, the job
/// queues on the lane with the fewest jobs.
final class BlockingLanes: Sendable {
    private struct State {
        /// Jobs submitted and not finished, per lane.
        var load: [Int]
        /// Idle lanes, the most recently idle last.
        var idle: [Int]
    }

    private let lanes: [NIOThreadPool]
    private let state: Locked<State>

    init(count: Int) {
        lanes = (0..<count).map { _ in NIOThreadPool(numberOfThreads: 1) }
        for lane in lanes { lane.start() }
        state = Locked(State(load: Array(repeating: 0, count: count), idle: Array((0..<count).reversed())))
    }

    /// Runs `body` on a lane's thread.
    func run<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
        let lane = state.withLock { state -> Int in
            let lane: Int
            if let idle = state.idle.popLast() {
                lane = idle
            } else {
                lane = state.load.indices.min { state.load[$0] < state.load[$1] } ?? 0
            }
            state.load[lane] += 1
            return lane
        }
        let state = self.state
        do {
            return try await lanes[lane].runIfActive {
                defer { BlockingLanes.finish(lane, state) }
                return try body()
            }
        } catch let error as NIOThreadPoolError.ThreadPoolInactive {
            BlockingLanes.finish(lane, state)
            throw error
        } catch is CancellationError {
            // Cancelled before it ran: `body` did not run, so the lane was not released by it.
            BlockingLanes.finish(lane, state)
            throw CancellationError()
        }
    }

    private static func finish(_ lane: Int, _ state: Locked<State>) {
        state.withLock { state in
            state.load[lane] -= 1
            if state.load[lane] == 0 { state.idle.append(lane) }
        }
    }

    func shutdown() async throws {
        for lane in lanes { try await lane.shutdownGracefully() }
    }

    func shutdownDetached() {
        for lane in lanes { lane.shutdownGracefully { _ in } }
    }
}

/// The change streams of a client that are still open, held weakly.
final class StreamRegistry: Sendable {
    private struct Entry: Sendable {
        weak var core: ChangeStreamCore?
    }

    /// `nil` once closed: streams opened afterwards are refused.
    private let entries = Locked<[ObjectIdentifier: Entry]?>([:])

    /// Adds `core`; `false` when the client is shutting down.
    func add(_ core: ChangeStreamCore) -> Bool {
        entries.withLock { entries in
            guard entries != nil else { return false }
            entries?[ObjectIdentifier(core)] = Entry(core: core)
            return true
        }
    }

    func remove(_ core: ChangeStreamCore) {
        _ = entries.withLock { $0?.removeValue(forKey: ObjectIdentifier(core)) }
    }

    /// Every open stream; streams opened from now on are refused.
    func closeAll() -> [ChangeStreamCore] {
        entries.withLock { entries in
            defer { entries = nil }
            return entries?.values.compactMap(\.core) ?? []
        }
    }
}

/// A value behind a lock.
///
/// `@unchecked Sendable`: `value` is only read or written inside `withLock`, which holds `lock`.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }

    /// Sets the value and returns the one it replaced.
    func exchange(_ newValue: Value) -> Value {
        withLock { value in
            defer { value = newValue }
            return value
        }
    }
}
