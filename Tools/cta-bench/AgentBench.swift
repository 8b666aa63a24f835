import ArgumentParser
import CBaseline
import CTABroker
import CTACore
import Foundation
import CTADefinitions

/// `cta-bench agent`: a real `cta-agent` process against the real broker. Reports its idle memory and CPU, the
/// rate at which it emits the results of a suite of 10,000 trivial test cases (a JUnit report written by one
/// stage: every case is spooled, published with confirms, and reaches the coordinator's queue), next to raw
/// librabbitmq publishing with confirms into the same quorum queue in the same run; and how many one-stage process
/// tests it runs per second, next to the bench spawning the same shell commands itself.
struct AgentBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "cta-agent idle footprint, result emission rate and process-test rate."
    )

    @Option(help: "Broker URL (default: $CTA_AMQP_URL). The baseline logs in as guest/guest on its host and port.")
    var url: String?

    @Option(help: "The cta-agent binary (default: next to cta-bench).")
    var agent: String?

    @Option(help: "Test cases in the emission suite.")
    var cases = 10_000

    @Option(help: "One-stage process tests in the process-test suite.")
    var processTests = 200

    @Option(help: "Seconds the agent idles before its footprint is sampled, and the sampling window.")
    var idleSeconds = 5

    @Option(help: "Rounds per side; the median is reported.")
    var rounds = 3

    func run() async throws {
        guard let url = url ?? ProcessInfo.processInfo.environment["CTA_AMQP_URL"] else {
            throw ValidationError("no broker: pass --url or set CTA_AMQP_URL")
        }
        let binary = agent ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cta-agent").path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no cta-agent at \(binary)") }

        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "cta-bench-agent"
        let broker = AMQPConnection(configuration: configuration)
        try await broker.connect()
        for exchange in Topology.exchanges {
            try await broker.declareExchange(exchange.name, kind: ExchangeKind(exchange.kind.rawValue), durable: exchange.durable)
        }
        for queue in Topology.coordinatorQueues {
            try await broker.declareQueue(queue.name, durable: queue.durable, arguments: queue.arguments.mapValues { value in
                switch value {
                case .string(let s): .string(s)
                case .integer(let i): .int(i)
                }
            })
        }
        for binding in Topology.coordinatorBindings {
            try await broker.bindQueue(binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
        }
        for queue in Topology.coordinatorQueues { _ = try await broker.purgeQueue(queue.name) }

        let machine = MachineName("bench-\(UUID().uuidString.prefix(6).lowercased())")!
        let directory = NSTemporaryDirectory() + "cta-bench-agent-\(machine)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = """
            broker:
              url: \(url)
            machine: \(machine)
            directories:
              work: \(directory)/work
              state: \(directory)/state
            logs:
              level: warning
            """
        try config.write(toFile: directory + "/agent.yaml", atomically: true, encoding: .utf8)

        let collector = EventCounter(broker: broker)
        try await collector.start()
        let pid = try spawnLogged([binary, "--config", directory + "/agent.yaml"], log: directory + "/agent.log")
        defer {
            kill(pid, SIGTERM)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        try await collector.waitForRegistration(machine, timeout: .seconds(30))

        // Idle footprint.
        try await Task.sleep(for: .seconds(idleSeconds))
        let before = try ProcessSample(pid: pid)
        try await Task.sleep(for: .seconds(idleSeconds))
        let after = try ProcessSample(pid: pid)
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let idleCPU = Double(after.cpuTicks - before.cpuTicks) / ticks / Double(idleSeconds) * 100
        Figure(bench: "agent", figure: "idle_rss", unit: "MiB", samples: [Double(after.rssKiB) / 1024],
               baselineSamples: nil, baselineName: nil, operations: 1).printLine()
        // Most of the RSS is shared library text (Swift runtime, Foundation, ICU) mapped from files; what the agent
        // itself allocates is its anonymous memory.
        Figure(bench: "agent", figure: "idle_rss_anonymous", unit: "MiB", samples: [Double(after.anonymousKiB) / 1024],
               baselineSamples: nil, baselineName: nil, operations: 1).printLine()
        Figure(bench: "agent", figure: "idle_cpu", unit: "%", samples: [idleCPU], baselineSamples: nil,
               baselineName: nil, operations: 1).printLine()

        // Result emission vs raw confirms, alternating rounds.
        var emission: [Double] = [], endToEnd: [Double] = [], raw: [Double] = []
        let resultsQueue = Topology.resultsQueue
        let (host, port) = (configuration.host, Int32(configuration.port))
        let caseCount = cases
        for _ in 0..<rounds {
            let size = Int32(520)  // about the size of a test.result envelope
            let seconds = await onOwnThread { cta_amqp_baseline_publish(host, port, resultsQueue, Int32(caseCount), size, 1000) }
            guard seconds > 0 else { throw ValidationError("the C publish baseline failed") }
            raw.append(Double(caseCount) / seconds)
            try await collector.drainBaseline(count: caseCount)

            let execution = ExecutionID()
            var xml = "<testsuite name=\"bench\">"
            for n in 0..<caseCount { xml += "<testcase classname=\"bench\" name=\"case-\(n)\" time=\"0\"/>" }
            xml += "</testsuite>"
            let reportFile = directory + "/report-\(execution).xml"
            try xml.write(toFile: reportFile, atomically: true, encoding: .utf8)
            let test = TestDefinition(
                id: TestID("bench-suite")!, name: "bench suite",
                stages: [Stage(name: "run", run: "cp \(reportFile) results.xml", report: ReportSpec(format: .junit, path: "results.xml"))])
            try await publish(broker, dispatch: ExecutionDispatch(execution: context(execution), tests: [test]), machine: machine)
            let timing = try await collector.waitForExecution(execution, results: caseCount, timeout: .seconds(300))
            emission.append(Double(caseCount) / timing.firstToLast)
            endToEnd.append(Double(caseCount) / timing.runningToLast)
        }
        Figure(bench: "agent", figure: "result_emission", unit: "results/s", samples: emission, baselineSamples: raw,
               baselineName: "librabbitmq publish_confirm (quorum queue)", operations: caseCount).printLine()
        Figure(bench: "agent", figure: "result_end_to_end", unit: "results/s", samples: endToEnd, baselineSamples: raw,
               baselineName: "librabbitmq publish_confirm (quorum queue)", operations: caseCount).printLine()

        // Process tests: one stage each, vs the bench spawning the same command.
        var processRates: [Double] = [], spawnRates: [Double] = []
        let testCount = processTests
        for _ in 0..<rounds {
            let seconds = await onOwnThread { spawnSequentially(count: testCount) }
            spawnRates.append(Double(testCount) / seconds)
            let execution = ExecutionID()
            let tests = (0..<testCount).map { n in
                TestDefinition(id: TestID("p\(n)")!, name: "process \(n)", stages: [Stage(name: "run", run: "true")])
            }
            try await publish(broker, dispatch: ExecutionDispatch(execution: context(execution), tests: tests), machine: machine)
            let timing = try await collector.waitForExecution(execution, results: testCount, timeout: .seconds(300))
            processRates.append(Double(testCount) / timing.runningToLast)
        }
        Figure(bench: "agent", figure: "process_tests", unit: "tests/s", samples: processRates, baselineSamples: spawnRates,
               baselineName: "posix_spawn /bin/sh -c true, sequential", operations: testCount).printLine()

        let end = try ProcessSample(pid: pid)
        Figure(bench: "agent", figure: "peak_rss", unit: "MiB", samples: [Double(end.peakKiB) / 1024], baselineSamples: nil,
               baselineName: nil, operations: 1).printLine()
        await collector.stop()
        await broker.close()
    }

    private func context(_ execution: ExecutionID) -> ExecutionContext {
        ExecutionContext(
            executionID: execution, scenario: ScenarioReference(id: ScenarioID("bench")!, name: "bench"),
            suite: SuiteReference(id: SuiteID("bench")!, name: "bench"), runMode: .mono,
            timeouts: ExecutionTimeouts(pendingDeadline: Timestamp.now().adding(Milliseconds(3_600_000)), runningTimeoutMs: Milliseconds(3_600_000)),
            requestedBy: "cta-bench")
    }

    private func publish(_ broker: AMQPConnection, dispatch: ExecutionDispatch, machine: MachineName) async throws {
        let envelope = Envelope(source: .coordinator("cta-bench"), payload: dispatch)
        try await broker.publish(
            OutgoingMessage(
                exchange: Topology.dispatchExchange, routingKey: Topology.machineRoutingKey(machine),
                body: Array(try envelope.encoded()), mandatory: true))
    }
}

/// Counts what reaches the coordinator's queues, reading only routing keys for results (no JSON on the hot path).
actor EventCounter {
    struct Timing {
        var firstToLast: Double
        var runningToLast: Double
    }

    let broker: AMQPConnection
    private var registrations = Set<String>()
    private var running: [ExecutionID: ContinuousClock.Instant] = [:]
    private var finished = Set<ExecutionID>()
    private var results = 0
    private var firstResult: ContinuousClock.Instant?
    private var lastResult: ContinuousClock.Instant?
    private var baselineReceived = 0
    private var tasks: [Task<Void, Never>] = []

    init(broker: AMQPConnection) { self.broker = broker }

    func start() async throws {
        let states = try await broker.consume(queue: Topology.statesQueue, prefetch: 100)
        let agents = try await broker.consume(queue: Topology.agentsQueue, prefetch: 100)
        let results = try await broker.consume(queue: Topology.resultsQueue, prefetch: 2000)
        tasks.append(Task {
            do { for try await d in states { self.state(d.body); d.ack() } } catch {}
        })
        tasks.append(Task {
            do { for try await d in agents { self.agent(d.body); d.ack() } } catch {}
        })
        tasks.append(Task {
            var n = 0
            do {
                for try await d in results {
                    self.result(isResult: d.routingKey == "test.result", isBaseline: d.properties.type == nil && d.routingKey == Topology.resultsQueue)
                    n += 1
                    if n % 200 == 0 { d.ack(multiple: true) }
                    else { d.ack() }
                }
            } catch {}
        })
    }

    private func state(_ body: [UInt8]) {
        guard case .executionState(let change)? = try? Envelope.decode(Data(body)).event else { return }
        if change.state == .running { running[change.executionID] = .now }
        if change.state.isFinal { finished.insert(change.executionID) }
    }

    private func agent(_ body: [UInt8]) {
        if case .agentRegistration(let registration)? = try? Envelope.decode(Data(body)).event {
            registrations.insert(registration.machine.rawValue)
        }
    }

    private func result(isResult: Bool, isBaseline: Bool) {
        if isBaseline { baselineReceived += 1; return }
        guard isResult else { return }
        let now = ContinuousClock.now
        if firstResult == nil { firstResult = now }
        lastResult = now
        results += 1
    }

    func waitForRegistration(_ machine: MachineName, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while !registrations.contains(machine.rawValue) {
            guard ContinuousClock.now < deadline else { throw ValidationError("the agent did not register") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the raw baseline's messages to be consumed (they share the results queue).
    func drainBaseline(count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while baselineReceived < count {
            guard ContinuousClock.now < deadline else { throw ValidationError("baseline messages not consumed") }
            try await Task.sleep(for: .milliseconds(20))
        }
        baselineReceived = 0
    }

    func waitForExecution(_ execution: ExecutionID, results expected: Int, timeout: Duration) async throws -> Timing {
        let deadline = ContinuousClock.now + timeout
        while !(results >= expected && finished.contains(execution)) {
            guard ContinuousClock.now < deadline else {
                throw ValidationError("execution did not finish: \(results) of \(expected) results")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        guard let first = firstResult, let last = lastResult, let start = running[execution] else {
            throw ValidationError("missing timing")
        }
        results = 0
        firstResult = nil
        lastResult = nil
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        return Timing(firstToLast: max(1e-6, seconds(last - first)), runningToLast: max(1e-6, seconds(last - start)))
    }

    func stop() { for task in tasks { task.cancel() } }
}

/// Memory and CPU of a process, from /proc.
struct ProcessSample {
    var rssKiB: Int
    var anonymousKiB: Int
    var peakKiB: Int
    var cpuTicks: Int

    init(pid: pid_t) throws {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        func field(_ name: String) -> Int {
            for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
                return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
            }
            return 0
        }
        rssKiB = field("VmRSS")
        anonymousKiB = field("RssAnon")
        peakKiB = field("VmHWM")
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        // After the command name: state is field 3; utime and stime are fields 14 and 15.
        cpuTicks = (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }
}

/// Starts `arguments` with standard output and error appended to `log` (and no `CTA_AGENT_*` variables, so only the
/// flags and files given configure it).
func spawnLogged(_ arguments: [String], log: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var pid: pid_t = 0
    let argv = arguments.map { strdup($0) } + [nil]
    let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CTA_AGENT_") }.map { "\($0.key)=\($0.value)" }
    let envp = environment.map { strdup($0) } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    let rc = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
    guard rc == 0 else { throw ValidationError("cannot start \(arguments[0]): \(rc)") }
    return pid
}

/// Spawns `/bin/sh -c true` `count` times, one after the other; returns the seconds taken.
private func spawnSequentially(count: Int) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<count {
        var pid: pid_t = 0
        let arguments: [String] = ["/bin/sh", "-c", "true"]
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        if posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0 {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}
