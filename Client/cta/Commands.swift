import ArgumentParser
import CTAClient
import CTACore
import CTADefinitions
import Foundation

// MARK: login, whoami

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks credentials with the API and stores the URL and token in the configuration file.",
        discussion: """
            With --token, the token is checked (GET /v1/whoami) and stored. With --user, the password is read from \
            $CTA_PASSWORD or asked for, exchanged for a token (POST /v1/login, valid 12 h), and that is stored. The \
            file is written with mode 0600.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Log in as this user with a password instead of a token.")
    var user: String?

    mutating func validate() throws {
        if user != nil && connection.token != nil { throw ValidationError("give either --token or --user, not both") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let path = ClientSettings.configPath(environment: environment) else {
            throw ClientError.usage("neither XDG_CONFIG_HOME nor HOME is set: nowhere to store the configuration")
        }
        var file = (try ConfigFile.read(path: path)) ?? ConfigFile()
        let session = try connection.session(requireToken: false)
        var token = connection.token ?? environment["CTA_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let user {
            let password = try Self.password(environment: environment, user: user)
            token = try await session.client.login(user: user, password: password).token
        }
        guard let token else {
            throw ClientError.usage("give --token TOKEN (or set CTA_TOKEN), or --user NAME")
        }
        let client = APIClient(transport: session.client.transport, token: token)
        let identity = try await client.whoami()
        file.url = session.endpoint.description
        file.token = token
        if let caCert = connection.caCert { file.caCertificateFile = caCert }
        try file.write(path: path)
        Console.line(
            "logged in to \(session.endpoint) as \(identity.user) (\(identity.role)"
                + (identity.groups.isEmpty ? "" : "; groups \(identity.groups.joined(separator: ", "))")
                + "); saved in \(path)")
    }

    static func password(environment: [String: String], user: String) throws -> String {
        if let password = environment["CTA_PASSWORD"], !password.isEmpty { return password }
        guard isatty(STDIN_FILENO) == 1 else {
            throw ClientError.usage("no password: set CTA_PASSWORD, or run cta login on a terminal")
        }
        guard let pointer = getpass("password for \(user): ") else { throw ClientError.usage("no password read") }
        return String(cString: pointer)
    }
}

struct Whoami: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Shows who the token belongs to.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let session = try connection.session()
        let identity = try await session.client.whoami()
        if output.json {
            Console.line(JSONOutput.pretty(identity))
        } else {
            Console.line(
                "\(identity.user) (\(identity.role)) at \(session.endpoint)"
                    + (identity.groups.isEmpty ? "" : "; groups \(identity.groups.joined(separator: ", "))"))
        }
    }
}

// MARK: apply

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checks definition files (YAML or TOML) and applies them, all or nothing.",
        discussion: """
            Each -f names a file or a directory (its *.yaml, *.yml and *.toml files). Every file is checked here \
            first; each problem is printed as file:line: key: message and nothing is sent. References to \
            definitions the files do not hold are checked by the server.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    @Option(name: [.customShort("f"), .customLong("file")], help: "A definition file or directory (repeatable).")
    var files: [String] = []

    @Flag(help: "Only check the files; send nothing.")
    var dryRun = false

    mutating func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one -f FILE") }
    }

    func run() async throws {
        let bundle: DefinitionBundle
        do {
            bundle = try DefinitionBundle.load(paths: files)
        } catch {
            for problem in error.errors { Console.error(problem.description) }
            Console.error(
                Console.errorStyle.red("error:")
                    + " \(error.errors.count) problem\(error.errors.count == 1 ? "" : "s") in the definitions; "
                    + "nothing was applied")
            throw ExitCode(ExitStatus.error)
        }
        if dryRun {
            Console.line("ok: \(Self.describe(bundle.counts)) checked; nothing sent (--dry-run)")
            return
        }
        let session = try connection.session()
        let name = files.count == 1 ? (files[0] as NSString).lastPathComponent : "definitions"
        let applied: [String: Int]
        do {
            applied = try await session.client.applyDefinitions(bundle.text, file: name)
        } catch {
            throw Self.mapProblems(error, bundle: bundle)
        }
        if output.json {
            Console.line(JSONOutput.pretty(JSONValue.object(["applied": .object(applied.mapValues { .integer(Int64($0)) })])))
        } else {
            Console.line("applied \(Self.describe(applied))")
        }
    }

    /// `3 tests, 1 suite, 1 configuration, 4 scenarios`.
    static func describe(_ counts: [String: Int]) -> String {
        let order = ["tests", "suites", "configurations", "scenarios", "test", "suite", "configuration", "scenario"]
        let keys = counts.keys.sorted { (order.firstIndex(of: $0) ?? 99, $0) < (order.firstIndex(of: $1) ?? 99, $1) }
        return keys.map { key in
            let count = counts[key]!
            let singular = key.hasSuffix("s") ? String(key.dropLast()) : key
            return "\(count) \(count == 1 ? singular : singular + "s")"
        }.joined(separator: ", ")
    }

    /// Maps the server's problems, whose lines are lines of the stream sent, back to the files.
    static func mapProblems(_ error: ClientError, bundle: DefinitionBundle) -> ClientError {
        guard error.code == .api, !error.problems.isEmpty else { return error }
        var mapped = error
        mapped.problems = error.problems.map { problem in
            // "NAME:LINE: key: message" → the file and line the stream's line came from.
            let parts = problem.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let line = Int(parts[1]), let origin = bundle.origin(ofLine: line) else {
                return problem
            }
            return "\(origin.file):\(origin.line):\(parts[2])"
        }
        return mapped
    }
}

// MARK: results export

struct Results: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exports an execution's results.", subcommands: [Export.self])

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Writes an execution's results as JUnit XML (one testsuite, one testcase per result).")

        @OptionGroup var connection: ConnectionOptions

        @Option(help: "The JUnit XML file to write ('-' for standard output).")
        var junit: String

        @Argument(help: "The execution's id.")
        var execution: String

        func run() async throws {
            let session = try connection.session()
            let record = try await session.client.execution(execution)
            let results = try await session.client.allResults(execution)
            try JUnitFile.write(execution: record, results: results, to: junit)
            if junit != "-" {
                Console.error("wrote \(results.count) test cases of execution \(record.id) to \(junit)")
            }
        }
    }
}

enum JUnitFile {
    static func write(execution: Execution, results: [TestResultItem], to path: String) throws {
        let xml = JUnitWriter.xml(JUnitWriter.report(execution: execution, results: results))
        if path == "-" {
            Console.out(xml)
            return
        }
        do {
            try Data(xml.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ClientError.usage("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
