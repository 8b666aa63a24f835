import CTAClient
import CTACoordinator
import CTACore
import CTADefinitions
import CTAMongo
import Foundation
import NIOHTTP1
import Testing

extension CoordinatorProcessSuites {
    /// The CI flow through the real `cta` executable: a real coordinator serving the API over TLS, two real agents,
    /// RabbitMQ and the MongoDB-wire server. One scene serves every check.
    @Suite(
        "cta command line: login, apply, run --wait --junit, exit statuses", .serialized,
        .enabled(if: EndToEndBroker.enabled, "needs CTA_AMQP_E2E_URL and CTA_MONGO_URI"))
    struct CLIEndToEndTests {
        @Test("the CI flow: login, apply the examples, run with a JUnit report; a failing test exits 1, a pending one 2")
        func ciFlow() async throws {
            try await withScene(agents: 2, coordinators: 0, group: "demo-pool", tags: ["os": "linux"]) { scene in
                let cli = try await CLIScene(scene: scene)
                do {
                    try await cli.run()
                } catch {
                    Issue.record("\(error)\n\(cli.diagnostics())")
                }
                await cli.close()
            }
        }
    }
}

/// A coordinator with the API for the `cta` processes, and the checks in order.
final class CLIScene: Sendable {
    let scene: Scene
    let coordinator: CoordinatorProcess
    let port: Int
    let caFile: String
    let adminTokenFile: String
    let home: String
    let examples: String

    init(scene: Scene) async throws {
        self.scene = scene
        let tls = try #require(
            ServiceEnvironment.environment["CTA_SERVICES_DIR"].map { $0 + "/tls" }, "CTA_SERVICES_DIR is not set")
        caFile = tls + "/ca.pem"
        port = try freePort()
        adminTokenFile = scene.directory + "/admin-token"
        home = scene.directory + "/home"
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples").path
        coordinator = try CoordinatorProcess.start(
            instance: "cli", brokerURL: scene.brokerURL, mongoURI: scene.mongoURI, database: scene.databaseName,
            directory: scene.directory,
            arguments: [
                "--api-port", String(port), "--tls-cert", tls + "/server.pem", "--tls-key", tls + "/server.key",
                "--admin-token-file", adminTokenFile,
            ])
    }

    func close() async { await coordinator.terminate() }

    func diagnostics() -> String {
        "--- coordinator (tail)\n\(coordinator.log.suffix(3000))\n" + scene.diagnostics()
    }

    /// What one `cta` process did.
    struct Outcome {
        var status: Int32?
        var output: String
    }

    /// Runs `cta` with the scene's home as its configuration directory and nothing from the caller's `CTA_*`.
    func cta(_ arguments: [String], environment extra: [String: String] = [:], timeout: Duration = .seconds(120))
        async throws -> Outcome
    {
        let binary = URL(fileURLWithPath: try CoordinatorProcess.binary()).deletingLastPathComponent()
            .appendingPathComponent("cta").path
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CTA_") }
        environment["HOME"] = home
        environment["XDG_CONFIG_HOME"] = home + "/.config"
        environment.merge(extra) { $1 }
        let output = scene.directory + "/cta-\(UUID().uuidString.prefix(8)).out"
        let pid = try spawn(
            [binary] + arguments, environment: environment.map { "\($0.key)=\($0.value)" }, output: output)
        let status = await waitForExit(pid: pid, timeout: timeout)
        if status == nil { await terminate(pid: pid) }
        return Outcome(status: status, output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    var url: String { "https://localhost:\(port)" }

    // MARK: The checks

    func run() async throws {
        try await login()
        try await apply()
        try await scene.waitForMachines()
        try await passingRun()
        try await failingRun()
        try await pendingRun()
        try await listings()
        try await passwordLogin()
    }

    /// `cta login` checks the token over TLS with the private CA and stores URL and token, mode 0600.
    func login() async throws {
        try await scene.waitFor("the first admin token", timeout: .seconds(60)) {
            FileManager.default.fileExists(atPath: self.adminTokenFile)
        }
        let token = try String(contentsOfFile: adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        // Without the CA, TLS fails: a connection error, exit 3.
        let untrusted = try await cta(["login", "--url", url, "--token", token])
        #expect(untrusted.status == 3, "\(untrusted.output)")
        #expect(untrusted.output.contains("TLS"), "\(untrusted.output)")
        var login = Outcome(status: nil, output: "")
        let deadline = ContinuousClock.now + .seconds(30)
        repeat {
            login = try await cta(["login", "--url", url, "--token", token, "--ca-cert", caFile])
            if login.status == 0 { break }
            try await Task.sleep(for: .milliseconds(300))
        } while ContinuousClock.now < deadline
        #expect(login.status == 0, "\(login.output)")
        #expect(login.output.contains("as admin (admin"), "\(login.output)")
        let config = home + "/.config/cta/config.toml"
        let attributes = try FileManager.default.attributesOfItem(atPath: config)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let stored = try #require(try ConfigFile.read(path: config))
        #expect(stored == ConfigFile(url: url, token: token, caCertificateFile: caFile))
        // From now on the file is enough; a bad token from the environment wins over it and is refused.
        let whoami = try await cta(["whoami", "--json"])
        #expect(whoami.status == 0 && whoami.output.contains("\"user\" : \"admin\""), "\(whoami.output)")
        let refused = try await cta(["whoami"], environment: ["CTA_TOKEN": "cta_not-a-token"])
        #expect(refused.status == 3 && refused.output.contains("unauthenticated"), "\(refused.output)")
    }

    /// `cta apply`: a bad file is refused here with file:line and nothing is sent; the examples are applied; a TOML
    /// file whose scenarios use a configuration already stored is applied too.
    func apply() async throws {
        let bad = scene.directory + "/bad.toml"
        try """
            [[scenario]]
            id = "never-stored"
            suite = "example-suite"
            configuration = "demo-pool"
            runMode = "paralel"
            """.write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try await cta(["apply", "-f", examples, "-f", bad])
        #expect(refused.status == 3, "\(refused.output)")
        #expect(refused.output.contains("\(bad):5: scenario never-stored: runMode:"), "\(refused.output)")
        #expect(try await scene.store.scenario(ScenarioID(unchecked: "example-parallel")) == nil)

        let applied = try await cta(["apply", "-f", examples])
        #expect(applied.status == 0, "\(applied.output)")
        #expect(applied.output.contains("applied"), "\(applied.output)")
        #expect(try await scene.store.scenario(ScenarioID(unchecked: "example-parallel")) != nil)

        let extra = scene.directory + "/extra.toml"
        try """
            # A failing test, and a scenario no machine can take; demo-pool comes from the examples already applied.
            [[test]]
            id = "cli-fails"
            timeout = "1m"

              [[test.stages]]
              name = "check"
              run = "echo 'expected 4, got 5' >&2; exit 3"

            [[test]]
            id = "cli-passes"
            [[test.stages]]
            name = "check"
            run = "true"

            [[suite]]
            id = "cli-suite"
            tests = ["cli-passes", "cli-fails"]

            [[configuration]]
            id = "cli-nowhere"
            groups = ["demo-pool"]
            tags = { os = "plan9" }

            [[scenario]]
            id = "cli-failing"
            suite = "cli-suite"
            configuration = "demo-pool"
            runMode = "mono"
            timeouts = { pending = "1m", running = "2m" }

            [[scenario]]
            id = "cli-pending"
            suite = "cli-suite"
            configuration = "cli-nowhere"
            runMode = "mono"
            timeouts = { pending = "10m", running = "2m" }
            """.write(toFile: extra, atomically: true, encoding: .utf8)
        let toml = try await cta(["apply", "-f", extra, "--json"])
        #expect(toml.status == 0, "\(toml.output)")
        #expect(try await scene.store.scenario(ScenarioID(unchecked: "cli-pending")) != nil)
    }

    /// The CI call: progress lines, exit 0, and a JUnit file that holds exactly the stored results.
    func passingRun() async throws {
        let junit = scene.directory + "/parallel.xml"
        let run = try await cta(["run", "example-parallel", "--wait", "--junit", junit], timeout: .seconds(180))
        #expect(run.status == 0, "\(run.output)\n\(diagnostics())")
        #expect(run.output.contains("finished: "), "\(run.output)")
        // The coordinator serves the live feed: the run followed it rather than polling.
        #expect(!run.output.contains("live feed unavailable"), "\(run.output)")
        #expect(!run.output.contains("\u{1B}["), "colour or cursor codes in a pipe: \(run.output)")
        let report = try JUnitReader.read(Data(contentsOf: URL(fileURLWithPath: junit)))
        let suite = try #require(report.suites.first)
        #expect(report.suites.count == 1 && suite.name == "example-parallel")
        let execution = try #require(suite.id)
        let stored = try await scene.store.results(try #require(ExecutionID(execution)))
        #expect(!stored.isEmpty)
        #expect(suite.cases.count == stored.count)
        let cases = Dictionary(uniqueKeysWithValues: suite.cases.map { ($0.property("eventId") ?? "", $0) })
        for record in stored {
            let testCase = try #require(cases[record._id], "no test case for result \(record._id)")
            #expect(testCase.classname == record.result.testID.rawValue)
            #expect(testCase.name == record.result.name)
            #expect(testCase.property("machine") == record.machine.rawValue)
            #expect(testCase.property("attempt") == "\(record.result.attempt)")
            #expect(testCase.outcome == .passed, "\(record.result.status) \(record.result.message ?? "")")
            #expect(testCase.time == Double(record.result.durationMs.value) / 1000)
        }
        #expect(suite.failures == 0 && suite.errors == 0)
        // Every result was printed once, as a plain line.
        let lines = run.output.split(separator: "\n").filter { $0.hasPrefix("  ok ") }
        #expect(lines.count == stored.count, "\(run.output)")
        // The export gives the same report.
        let exported = scene.directory + "/exported.xml"
        let export = try await cta(["results", "export", "--junit", exported, execution])
        #expect(export.status == 0, "\(export.output)")
        let again = try JUnitReader.read(Data(contentsOf: URL(fileURLWithPath: exported)))
        #expect(Set(again.suites.first?.cases ?? []) == Set(suite.cases))
        try await artifacts(of: execution)
    }

    /// Files agents uploaded by id (two tests' `test.log`, a name with a space) are listed and downloaded by
    /// `cta executions artifacts --all`, each under its test's directory.
    func artifacts(of execution: String) async throws {
        let api = CTAIntegrationTests.APIClient(port: port, tls: true, caFile: caFile)
        let admin = try String(contentsOfFile: adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let enrollment = try await api.request("POST", "/v1/enrollment-tokens", token: admin, json: ["name": "cli uploads"])
        let secret = try #require(enrollment.json["token"] as? String, "\(enrollment)")
        let files = [("t-a", "test.log", "log of a\n"), ("t-b", "test.log", "log of b\n"), ("t-a", "my report.txt", "report\n")]
        for (test, name, text) in files {
            let content = Array(text.utf8)
            let upload = try await api.request(
                "PUT",
                "/v1/attachments/\(UUID().uuidString.lowercased())?execution=\(execution)&name=\(name.replacingOccurrences(of: " ", with: "%20"))&test=\(test)&machine=\(scene.machines[0])",
                token: secret, body: content, headers: [("X-CTA-SHA256", SHA256.hash(content).hexString)])
            #expect(upload.status == 201, "\(upload)")
        }
        let listed = try await cta(["executions", "artifacts", execution])
        #expect(listed.status == 0 && listed.output.contains("my report.txt"), "\(listed.output)")
        let directory = scene.directory + "/artifacts"
        let downloaded = try await cta(["executions", "artifacts", execution, "--all", "--directory", directory])
        #expect(downloaded.status == 0, "\(downloaded.output)")
        for (test, name, text) in files {
            let path = "\(directory)/\(test)/\(name)"
            #expect((try? String(contentsOfFile: path, encoding: .utf8)) == text, "\(path)\n\(downloaded.output)")
        }
    }

    /// A failing test: its line names the test, the machine and the message; exit 1; the report has a failure.
    func failingRun() async throws {
        let junit = scene.directory + "/failing.xml"
        let run = try await cta(["run", "cli-failing", "--junit", junit])
        #expect(run.status == 1, "\(run.output)\n\(diagnostics())")
        let failure = run.output.split(separator: "\n").first { $0.contains("failed") && $0.contains("cli-fails") }
        #expect(failure != nil, "\(run.output)")
        #expect(scene.machines.contains { failure?.contains($0.rawValue) == true }, "\(run.output)")
        let report = try JUnitReader.read(Data(contentsOf: URL(fileURLWithPath: junit)))
        let suite = try #require(report.suites.first)
        #expect(suite.tests == 2 && suite.failures == 1, "\(suite)")
        let failed = try #require(suite.cases.first { $0.classname == "cli-fails" })
        #expect(failed.outcome.kind == .failure && failed.outcome.type == "failed")
        let stored = try await scene.store.results(try #require(suite.id.flatMap(ExecutionID.init)))
        let record = try #require(stored.first { $0.result.testID.rawValue == "cli-fails" })
        #expect(failed.outcome.message == record.result.message)
        #expect(failed.property("machine") == record.machine.rawValue)
    }

    /// A scenario no machine can take: waiting stops at --timeout with exit 2 and the pending explanation.
    func pendingRun() async throws {
        let run = try await cta(["run", "cli-pending", "--wait", "--timeout", "3s", "--no-live"])
        #expect(run.status == 2, "\(run.output)")
        #expect(run.output.contains("still pending"), "\(run.output)")
        #expect(run.output.contains("why it did not run:"), "\(run.output)")
        #expect(run.output.contains("os=plan9"), "\(run.output)")
        let id = try #require(
            run.output.split(separator: "\n").first { $0.hasPrefix("execution ") }?.split(separator: " ").dropFirst()
                .first.map(String.init))
        let executionID = try #require(ExecutionID(id))
        let cancel = try await cta(["executions", "cancel", id, "--reason", "test over"])
        #expect(cancel.status == 0, "\(cancel.output)")
        try await scene.waitFor("the pending execution to end", timeout: .seconds(30)) {
            try await self.scene.store.execution(executionID)?.phase == .cancelled
        }
        // A scenario that does not exist: the API's error, exit 3.
        let missing = try await cta(["run", "no-such-scenario"])
        #expect(missing.status == 3 && missing.output.contains("error: notFound"), "\(missing.output)")
    }

    /// `cta login --user` with the password from `CTA_PASSWORD`: the token it gets replaces the stored one.
    func passwordLogin() async throws {
        let admin = try String(contentsOfFile: adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let endpoint = try #require(Endpoint(url))
        let api = CTAClient.APIClient(
            transport: try HTTPTransport(endpoint: endpoint, configuration: .init(caCertificateFile: caFile)), token: admin)
        _ = try await api.request(
            .POST, "/v1/users",
            json: .object([
                "name": .string("cli-tester"), "role": .string("tester"), "groups": .array([]),
                "password": .string("correct horse battery"),
            ]))
        let wrong = try await cta(["login", "--user", "cli-tester"], environment: ["CTA_PASSWORD": "wrong password"])
        #expect(wrong.status == 3 && wrong.output.contains("error: unauthenticated"), "\(wrong.output)")
        let login = try await cta(["login", "--user", "cli-tester"], environment: ["CTA_PASSWORD": "correct horse battery"])
        #expect(login.status == 0 && login.output.contains("as cli-tester (tester"), "\(login.output)")
        let whoami = try await cta(["whoami"])
        #expect(whoami.output.hasPrefix("cli-tester (tester)"), "\(whoami.output)")
        // A tester in no group may not resume another group's machine (it does not even see it): exit 3.
        let resume = try await cta(["machines", "resume", scene.machines[0].rawValue])
        #expect(resume.status == 3 && resume.output.contains("error: notFound"), "\(resume.output)")
    }

    /// Tables and JSON for the executions and machines just used.
    func listings() async throws {
        let list = try await cta(["executions", "list", "--json"])
        #expect(list.status == 0, "\(list.output)")
        let items = try JSONDecoder().decode([JSONValue].self, from: Data(list.output.utf8))
        #expect(Set(items.compactMap { $0["scenario"]?.string }) == ["example-parallel", "cli-failing", "cli-pending"])
        let table = try await cta(["executions", "list", "--phase", "finished"])
        #expect(table.output.hasPrefix("ID "), "\(table.output)")
        #expect(table.output.split(separator: "\n").count == 3, "\(table.output)")
        let machines = try await cta(["machines", "list"])
        #expect(machines.status == 0, "\(machines.output)")
        for machine in scene.machines {
            #expect(machines.output.contains(machine.rawValue + "  online"), "\(machines.output)")
        }
        let drain = try await cta(["machines", "drain", scene.machines[0].rawValue])
        #expect(drain.status == 0, "\(drain.output)")
        let shown = try await cta(["machines", "show", scene.machines[0].rawValue, "--json"])
        let machine = try JSONDecoder().decode(JSONValue.self, from: Data(shown.output.utf8))
        #expect(machine["drainRequested"] == .bool(true), "\(shown.output)")
    }
}
