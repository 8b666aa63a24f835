import ArgumentParser
import CTAClient
import CTACore
import Foundation

// MARK: run

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Starts an execution of a scenario, and with --wait follows it to its end.",
        discussion: """
            With --wait (implied by --junit), progress is shown as it happens: a bar with tests done and ok/failed \
            counts on a terminal, one line per result otherwise, each failure with its test, machine and message. \
            Exit status: 0 finished and every test ok, 1 a test was not ok, 2 the execution did not finish \
            (timeout, cancelled, or still pending/running when --timeout passed; the pending explanation is \
            printed), 3 usage or connection errors.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Argument(help: "The scenario to run.")
    var scenario: String

    @Flag(help: "Follow the execution until it ends; the exit status says how it went.")
    var wait = false

    @Option(help: "Write the results as JUnit XML to this file when the execution ends (implies --wait).")
    var junit: String?

    @Option(help: "Stop waiting after this long (e.g. 30m); the execution goes on, the exit status is 2.")
    var timeout: String?

    @Option(name: .customLong("env"), help: "An environment variable for the tests, NAME=VALUE (repeatable).")
    var env: [String] = []

    @Option(name: .customLong("tag"), help: "A tag recorded on the execution (repeatable).")
    var tags: [String] = []

    @Flag(name: .customLong("no-live"), help: "Poll the API instead of using the live feed.")
    var noLive = false

    func run() async throws {
        var limit: Duration?
        if let timeout {
            guard let parsed = DurationArgument.parse(timeout) else {
                throw ClientError.usage("--timeout: expected a duration such as 90s or 30m, got \(timeout)")
            }
            limit = parsed
        }
        var environment: [String: String] = [:]
        for pair in env {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ClientError.usage("--env: expected NAME=VALUE, got \(pair)")
            }
            environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        let session = try connection.session()
        let started = ContinuousClock.now
        let created = try await session.client.startExecution(scenario: scenario, env: environment, tags: tags)
        guard wait || junit != nil else {
            if output.json {
                Console.line(JSONOutput.pretty(try await session.client.executionJSON(created.id)))
            } else {
                Console.line(created.id)
            }
            return
        }
        let interactive = !output.json && Console.stdoutIsTerminal
        let renderer = ProgressRenderer(style: Console.style, interactive: interactive)
        // With --json, progress goes to standard error so standard output holds only the JSON.
        let progressOutput = ProgressOutput(interactive: interactive) { text in
            if output.json {
                FileHandle.standardError.write(Data(text.utf8))
            } else {
                Console.out(text)
            }
        }
        let progress = ProgressBox(RunProgress(execution: created))
        progressOutput.lines([renderer.started(created)])
        progressOutput.lines(renderer.phaseLines(created))
        var follower = ExecutionFollower(
            client: session.client, endpoint: session.endpoint, configuration: session.configuration)
        follower.live = !noLive
        let end = try await follower.follow(created, limit: limit) { event in
            switch event {
            case .execution(let execution):
                if progress.update(execution) { progressOutput.lines(renderer.phaseLines(execution)) }
            case .result(let result):
                if progress.record(result) { progressOutput.lines(renderer.lines(for: result)) }
            case .polling(let reason):
                progressOutput.lines([Console.style.dim("live feed unavailable (\(reason)); polling the API")])
            case .tick:
                break
            }
            progressOutput.bar(renderer.bar(progress.value, elapsed: ContinuousClock.now - started))
        }
        progressOutput.finishBar()
        let waitedTooLong: Bool
        switch end {
        case .ended(let execution):
            progress.update(execution)
            waitedTooLong = false
        case .waitedTooLong(let execution):
            progress.update(execution)
            waitedTooLong = true
        }
        let final = progress.value
        let elapsed = ContinuousClock.now - started
        if waitedTooLong {
            progressOutput.lines([
                "still \(final.execution.phase) after \(ProgressRenderer.clock(elapsed)); stopped waiting "
                    + "(the execution goes on: cta executions cancel \(final.execution.id) stops it)"
            ])
        }
        if final.execution.phase == "pending" || (final.execution.phase == "timeout" && final.execution.startedAt == nil),
            let pending = final.execution.pending
        {
            progressOutput.lines(
                ["why it did not run: \(pending.summary)"]
                    + pending.candidates.map { "  \($0.machine): \($0.missing.joined(separator: "; "))" })
        }
        progressOutput.lines([renderer.summary(final, elapsed: elapsed)])
        if let junit {
            // Every stored result, in store order, whatever the live feed showed.
            let results = try await session.client.allResults(final.execution.id)
            try JUnitFile.write(execution: final.execution, results: results, to: junit)
            if junit != "-" { progressOutput.lines(["wrote \(results.count) test cases to \(junit)"]) }
        }
        if output.json {
            Console.line(JSONOutput.pretty(try await session.client.executionJSON(final.execution.id)))
        }
        let status = ExitStatus.forRun(final.execution, results: final.counts, waitedTooLong: waitedTooLong)
        if status != ExitStatus.success { throw ExitCode(status) }
    }
}

/// The run's progress, shared between the follower's callback and the command.
final class ProgressBox: @unchecked Sendable {
    // Safe: every access holds the lock.
    private let lock = NSLock()
    private var progress: RunProgress

    init(_ progress: RunProgress) { self.progress = progress }

    var value: RunProgress { lock.withLock { progress } }

    @discardableResult
    func update(_ execution: Execution) -> Bool { lock.withLock { progress.update(execution) } }

    func record(_ result: TestResultItem) -> Bool { lock.withLock { progress.record(result) } }
}

// MARK: executions

struct Executions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lists, shows and cancels executions; reads their logs and attachments.",
        subcommands: [List.self, Show.self, Cancel.self, Logs.self, Artifacts.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists executions, newest first.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        @Option(help: "Only executions of this scenario.") var scenario: String?
        @Option(help: "Only executions in this phase (pending, running, finished, cancelled, timeout).")
        var phase: String?
        @Option(help: "Only executions requested by this user.") var requestedBy: String?
        @Option(help: "Only executions with this tag.") var tag: String?
        @Option(help: "How many (1 to 500).") var limit: Int = 20

        func run() async throws {
            let session = try connection.session()
            let query = Query().adding("scenario", scenario).adding("phase", phase).adding("requestedBy", requestedBy)
                .adding("tag", tag).adding("limit", "\(limit)")
            let page = try await session.client.executions(query)
            if output.json {
                Console.line(JSONOutput.pretty(JSONValue.array(page.items)))
            } else {
                Console.out(Views.executions(page.items, style: Console.style).render(style: Console.style))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows an execution and its results.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The execution's id.") var execution: String

        func run() async throws {
            let session = try connection.session()
            if output.json {
                Console.line(JSONOutput.pretty(try await session.client.executionJSON(execution)))
                return
            }
            let record = try await session.client.execution(execution)
            Console.out(Views.execution(record, style: Console.style))
            let results = try await session.client.allResults(execution)
            if !results.isEmpty {
                Console.line("")
                Console.out(Views.results(results, style: Console.style).render(style: Console.style))
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancels an execution that has not ended.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The execution's id.") var execution: String
        @Option(help: "Why, recorded with the cancellation.") var reason: String?

        func run() async throws {
            let session = try connection.session()
            try await session.client.cancel(execution, reason: reason)
            Console.line("cancellation of \(execution) requested")
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Prints an execution's logs.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The execution's id.") var execution: String
        @Option(help: "Only this machine's logs.") var machine: String?
        @Option(help: "Only this test's logs.") var test: String?

        func run() async throws {
            let session = try connection.session()
            let bytes = try await session.client.logs(execution, machine: machine, test: test)
            FileHandle.standardOutput.write(Data(bytes))
        }
    }

    struct Artifacts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lists an execution's attachments, or downloads them.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The execution's id.") var execution: String
        @Option(help: "Download this attachment, by name or id (repeatable).") var download: [String] = []
        @Flag(help: "Download every attachment.") var all = false
        @Option(help: "The directory downloads are written to.") var directory: String = "."

        func run() async throws {
            let session = try connection.session()
            let attachments = try await session.client.attachments(execution)
            var chosen = all ? attachments : attachments.filter { download.contains($0.name) || download.contains($0.id ?? "") }
            if !all, let missing = download.first(where: { want in !chosen.contains { $0.name == want || $0.id == want } }) {
                throw ClientError.usage("\(missing) is not an attachment of \(execution)")
            }
            chosen.sort { ($0.test ?? "", $0.name) < ($1.test ?? "", $1.name) }
            guard all || !download.isEmpty else {
                if output.json {
                    Console.line(JSONOutput.pretty(attachments))
                } else {
                    Console.out(Views.attachments(attachments, style: Console.style).render(style: Console.style))
                }
                return
            }
            var written: Set<String> = []
            for attachment in chosen {
                guard var path = attachment.downloadPath(in: directory) else {
                    throw ClientError.protocolViolation("the server named an attachment \(attachment.name) that is not a file name")
                }
                // One test's attempts may each leave a file of the same name: the later ones get their id added.
                if written.contains(path), let id = attachment.id { path += "." + id.prefix(8) }
                written.insert(path)
                try FileManager.default.createDirectory(
                    atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let bytes = try await session.client.attachment(execution, name: attachment.id ?? attachment.name)
                try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
                Console.line("\(path) (\(bytes.count) bytes)")
            }
        }
    }
}

// MARK: machines

struct Machines: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lists and shows machines; drains and resumes them.",
        subcommands: [List.self, Show.self, Drain.self, Resume.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lists machines.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Flag(help: "Only machines online now.") var online = false
        @Option(help: "Only machines of this group.") var group: String?
        @Option(help: "Only machines with this tag, KEY=VALUE.") var tag: String?
        @Option(help: "How many (1 to 500).") var limit: Int = 100

        func run() async throws {
            let session = try connection.session()
            let query = Query().adding("online", online ? "true" : nil).adding("group", group).adding("tag", tag)
                .adding("limit", "\(limit)")
            let page = try await session.client.machines(query)
            if output.json {
                Console.line(JSONOutput.pretty(JSONValue.array(page.items)))
            } else {
                Console.out(Views.machines(page.items, style: Console.style).render(style: Console.style))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Shows a machine.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The machine's name.") var machine: String

        func run() async throws {
            let session = try connection.session()
            let value = try await session.client.machine(machine)
            Console.out(output.json ? JSONOutput.pretty(value) + "\n" : Views.details(value, style: Console.style))
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Asks a machine to take no new work (what it runs finishes).")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The machine's name.") var machine: String

        func run() async throws {
            let session = try connection.session()
            try await session.client.machineAction(machine, action: "drain")
            Console.line("drain of \(machine) requested")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Lets a drained machine take work again.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "The machine's name.") var machine: String

        func run() async throws {
            let session = try connection.session()
            try await session.client.machineAction(machine, action: "resume")
            Console.line("resume of \(machine) requested")
        }
    }
}
