import ArgumentParser
#if canImport(CTAAPI)
import CTAAPI
#endif
import CTABroker
import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import CTADefinitions

@main
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cta-coordinator",
        abstract: "Schedules CTA executions, dispatches them to agents and stores what they report.",
        subcommands: [Serve.self, Apply.self, Run.self, Cancel.self])
}

/// Where the database is; shared by every subcommand.
struct StoreOptions: ParsableArguments {
    @Option(name: .customLong("mongo-uri"), help: "The MongoDB URI (default: $CTA_MONGO_URI).")
    var mongoURI: String?

    @Option(help: "The database name (default: $CTA_DATABASE, else cta).")
    var database: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func bootstrapLogging() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "cta.coordinator")
    }

    func open(logger: Logger) throws -> (MongoClient, MongoStore) {
        let environment = ProcessInfo.processInfo.environment
        guard let uri = mongoURI ?? environment["CTA_MONGO_URI"] else {
            throw ValidationError("no MongoDB URI: pass --mongo-uri or set CTA_MONGO_URI")
        }
        let client = try MongoClient(uri: uri, logger: logger)
        let name = database ?? environment["CTA_DATABASE"] ?? "cta"
        return (client, MongoStore(database: client.database(name)))
    }
}

extension CoordinatorCommand {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Runs a coordinator until SIGTERM or SIGINT.")

        @OptionGroup var store: StoreOptions

        @Option(name: .customLong("amqp-url"), help: "The broker URL (default: $CTA_AMQP_URL).")
        var amqpURL: String?

        @Option(help: "This coordinator's instance name (default: the host name and process id).")
        var instance: String?

        @Option(name: .customLong("definitions"), help: "Definition files to load before starting (a file or a directory).")
        var definitions: String?

        @Option(name: .customLong("scheduler-lease"), help: "Seconds the scheduler lease lasts (a dead leader is replaced within it).")
        var schedulerLease: Int = 15

        @OptionGroup var api: APIOptions

        func run() async throws {
            let logger = store.bootstrapLogging()
            guard schedulerLease >= 2 else { throw ValidationError("--scheduler-lease must be at least 2 seconds") }
            let environment = ProcessInfo.processInfo.environment
            guard let url = amqpURL ?? environment["CTA_AMQP_URL"] else {
                throw ValidationError("no broker URL: pass --amqp-url or set CTA_AMQP_URL")
            }
            let broker = try AMQPConfiguration(url: url)
            let name = instance ?? defaultInstanceName()
            guard MachineName(name) != nil else {
                throw ValidationError("instance \"\(name)\": use letters, digits, '.', '_' and '-', starting with a letter or digit")
            }
            let definitionSet = try definitions.map(loadDefinitions)
            let (client, mongoStore) = try store.open(logger: logger)
            if let definitionSet {
                try await mongoStore.prepare()
                try await mongoStore.save(definitionSet)
            }
            let coordinator = Coordinator(
                store: mongoStore, broker: broker, settings: Coordinator.Settings(instance: name, schedulerLease: .seconds(schedulerLease)),
                logger: logger)
            var services: [any Service] = [CoordinatorService(coordinator: coordinator)]
            #if canImport(CTAAPI)
            let feed = LiveFeed(source: MongoFeedSource(database: mongoStore.database), logger: logger)
            let apiServer = APIServer(
                api: API(
                    store: APIStore(store: mongoStore), coordinator: coordinator, configuration: try api.configuration(),
                    logger: logger),
                extensions: [API.liveFeedRoutes(feed)])
            services += [LiveFeedService(feed: feed), apiServer]
            #else
            // A build without the HTTP targets (CTA_PACKAGE_CORE_ONLY=1, the release test run): no API, no live feed.
            logger.notice("this build has no HTTP API; the API options are ignored")
            #endif
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: services,
                    gracefulShutdownSignals: [.sigterm, .sigint],
                    cancellationSignals: [.sigquit],
                    logger: logger))
            try await group.run()
            try await client.shutdown()
        }

        private func defaultInstanceName() -> String {
            let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "coordinator"
            let clean = String(host.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-" })
            return "\(clean.isEmpty ? "coordinator" : clean)-\(getpid())"
        }
    }

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Checks definition files and stores them.")

        @OptionGroup var store: StoreOptions

        @Argument(help: "A definition file or a directory of them.")
        var path: String

        func run() async throws {
            let logger = store.bootstrapLogging()
            let definitions = try loadDefinitions(path)
            let (client, mongoStore) = try store.open(logger: logger)
            try await mongoStore.prepare()
            try await mongoStore.save(definitions)
            try await client.shutdown()
            print(
                "applied \(definitions.tests.count) tests, \(definitions.suites.count) suites, "
                    + "\(definitions.configurations.count) configurations, \(definitions.scenarios.count) scenarios")
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Runs a scenario, prints each result as it arrives and a summary.",
            discussion: "Exits 0 when the execution finished and every test passed, 1 when a test did not pass, 2 when the execution did not finish.")

        @OptionGroup var store: StoreOptions

        @Argument(help: "The scenario id.")
        var scenario: String

        @Option(name: .customLong("definitions"), help: "Definition files to apply first (a file or a directory).")
        var definitions: String?

        @Option(name: .customLong("wait-for"), help: "A machine that must be online before the run is requested (repeatable; waits up to 60 s).")
        var waitFor: [String] = []

        @Option(name: .customLong("requested-by"), help: "Who asks for the run (shown with the execution).")
        var requestedBy: String = "cli/\(ProcessInfo.processInfo.environment["USER"] ?? "user")"

        func run() async throws {
            let logger = store.bootstrapLogging()
            guard let scenarioID = ScenarioID(scenario) else { throw ValidationError("\"\(scenario)\" is not a scenario id") }
            let definitionSet = try definitions.map(loadDefinitions)
            let (client, mongoStore) = try store.open(logger: logger)
            try await mongoStore.prepare()
            if let definitionSet { try await mongoStore.save(definitionSet) }
            try await waitForMachines(mongoStore)
            let record: ExecutionRecord
            do {
                record = try await mongoStore.requestExecution(of: scenarioID, requestedBy: requestedBy)
            } catch let error as ExecutionRequestError {
                FileHandle.standardError.write(Data("cta-coordinator: \(error)\n".utf8))
                try? await client.shutdown()
                throw ExitCode(65)
            }
            let code = try await ExecutionFollower(store: mongoStore).follow(record)
            try await client.shutdown()
            if code != 0 { throw ExitCode(code) }
        }
    }
}

extension CoordinatorCommand {
    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancels an execution: a tombstone and a cancel for every machine; running tests run their stop stages.")

        @OptionGroup var store: StoreOptions

        @Option(name: .customLong("amqp-url"), help: "The broker URL (default: $CTA_AMQP_URL).")
        var amqpURL: String?

        @Argument(help: "The execution id.")
        var execution: String

        @Option(help: "Why (shown with the execution and sent to the agents).")
        var reason: String = "cancelled from the command line"

        func run() async throws {
            let logger = store.bootstrapLogging()
            guard let id = ExecutionID(execution) else { throw ValidationError("\"\(execution)\" is not an execution id") }
            guard let url = amqpURL ?? ProcessInfo.processInfo.environment["CTA_AMQP_URL"] else {
                throw ValidationError("no broker URL: pass --amqp-url or set CTA_AMQP_URL")
            }
            let (client, mongoStore) = try store.open(logger: logger)
            let coordinator = Coordinator(
                store: mongoStore, broker: try AMQPConfiguration(url: url),
                settings: Coordinator.Settings(instance: "cli-\(getpid())"), logger: logger)
            try await coordinator.connect()
            let cancelled = try await coordinator.cancel(id, reason: reason)
            await coordinator.close()
            try await client.shutdown()
            guard cancelled else {
                FileHandle.standardError.write(Data("cta-coordinator: \(id) does not exist or has already ended\n".utf8))
                throw ExitCode(1)
            }
            print("cancel requested for \(id)")
        }
    }
}

extension CoordinatorCommand.Run {
    /// Waits until every machine named with --wait-for is online (a heartbeat stored), up to 60 s.
    func waitForMachines(_ store: MongoStore) async throws {
        guard !waitFor.isEmpty else { return }
        let wanted = Set(waitFor)
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let online = Set(try await store.machines().filter { $0.isOnline(at: Date()) && $0.heartbeatIntervalMs != nil }.map(\._id))
            if wanted.isSubset(of: online) { return }
            if ContinuousClock.now > deadline {
                FileHandle.standardError.write(
                    Data("cta-coordinator: not online after 60 s: \(wanted.subtracting(online).sorted().joined(separator: ", "))\n".utf8))
                throw ExitCode(2)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

struct CoordinatorService: Service {
    let coordinator: Coordinator

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await coordinator.run()
        }
    }
}
