import ArgumentParser
import CTAClient
import Foundation

/// `cta`: the command-line client of the CTA API.
struct CTA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cta",
        abstract: "The CTA command-line client: definitions, runs, results and machines.",
        discussion: """
            Settings come from flags, then the environment (CTA_URL, CTA_TOKEN, CTA_CA_CERT), then the file written \
            by cta login ($XDG_CONFIG_HOME/cta/config.toml or ~/.config/cta/config.toml).

            Exit status: 0 success (cta run: finished, every test ok); 1 a test was not ok; 2 the execution did not \
            finish (timeout, cancelled, still pending when --timeout passed); 3 usage, configuration, connection \
            or API error.
            """,
        version: ClientVersion.current,
        subcommands: [
            Login.self, Whoami.self, Apply.self, Run.self, Executions.self, Results.self, Machines.self,
        ])
}

/// Connection settings every command that talks to the API accepts.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "The API's URL (default: $CTA_URL, the configuration file, else http://127.0.0.1:8420).")
    var url: String?

    @Option(help: "An API token (default: $CTA_TOKEN, else the configuration file).")
    var token: String?

    @Option(name: .customLong("ca-cert"), help: "A PEM file of CA certificates to trust (default: $CTA_CA_CERT).")
    var caCert: String?

    @Option(name: .customLong("request-timeout"), help: "The longest wait for one API response, e.g. 30s, 2m.")
    var requestTimeout: String = "60s"

    var flags: ClientSettings.Flags { ClientSettings.Flags(url: url, token: token, caCertificateFile: caCert) }

    func session(requireToken: Bool = true) throws -> Session {
        guard let timeout = DurationArgument.parse(requestTimeout) else {
            throw ClientError.usage("--request-timeout: expected a duration such as 30s or 2m, got \(requestTimeout)")
        }
        return try Session.open(
            flags: flags, environment: ProcessInfo.processInfo.environment, requestTimeout: timeout,
            requireToken: requireToken)
    }
}

/// `--json` for scripts.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON for scripts instead of text for people.")
    var json = false
}

@main
enum Main {
    static func main() async {
        let command: any ParsableCommand
        do {
            command = try CTA.parseAsRoot()
        } catch {
            // Help, version and completion scripts exit 0 through the parser; a command-line mistake exits 3.
            if CTA.exitCode(for: error) == .success { CTA.exit(withError: error) }
            Console.error(CTA.fullMessage(for: error))
            exit(ExitStatus.error)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
            exit(ExitStatus.success)
        } catch let error as ClientError {
            Console.report(error)
            exit(ExitStatus.error)
        } catch let error as ExitCode {
            exit(error.rawValue)
        } catch {
            if CTA.exitCode(for: error) == .success { CTA.exit(withError: error) }
            Console.error("error: " + CTA.message(for: error))
            exit(ExitStatus.error)
        }
    }
}

/// Standard output and error, and what they are connected to.
enum Console {
    static let environment = ProcessInfo.processInfo.environment
    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    static var style: Style { Style.detect(environment: environment, isTerminal: stdoutIsTerminal) }
    static var errorStyle: Style { Style.detect(environment: environment, isTerminal: isatty(STDERR_FILENO) == 1) }

    static func out(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func line(_ text: String) { out(text + "\n") }

    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    static func report(_ error: ClientError) {
        Console.error(errorStyle.red("error:") + " \(error)")
        for problem in error.problems { Console.error(problem) }
    }
}
