import CTACoordinator
import CTACore
import CTAMongo
import Foundation
import Logging
import Testing

extension CoordinatorProcessSuites {
    /// The HTTP API of real `cta-coordinator serve` processes, over real HTTP(S), with a real agent, RabbitMQ and
    /// the MongoDB-wire server. One scene serves every check: two coordinators on one database (the first over
    /// TLS), one agent.
    @Suite(
        "HTTP API: auth, executions through a real agent, limits, TLS", .serialized,
        .enabled(if: EndToEndBroker.enabled, "needs CTA_AMQP_E2E_URL and CTA_MONGO_URI"))
    struct APITests {
        @Test("the API end to end")
        func api() async throws {
            let scene = try await APIScene()
            do {
                try await scene.run()
            } catch {
                Issue.record("\(error)\n\(scene.diagnostics())")
            }
            await scene.close()
        }
    }
}

/// Everything the API test needs, and its checks in order.
final class APIScene: Sendable {
    let directory: String
    let database: String
    let client: MongoClient
    let store: MongoStore
    let tlsCoordinator: CoordinatorProcess
    let plainCoordinator: CoordinatorProcess
    let agent: AgentProcess
    let group: String
    let otherGroup: String
    let https: APIClient
    let http: APIClient
    let tlsPort: Int
    let adminTokenFile: String
    let suffix = UUID().uuidString.prefix(6).lowercased()

    init() async throws {
        let brokerURL = try EndToEndBroker.requireURL()
        let mongoURI = try ServiceEnvironment.requireMongoURI()
        directory = NSTemporaryDirectory() + "cta-api-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        database = ServiceEnvironment.uniqueName("cta-api")
        client = try MongoClient(uri: mongoURI, logger: Logger(label: "cta.api-test"))
        store = MongoStore(database: client.database(database))
        let tls = try #require(
            ServiceEnvironment.environment["CTA_SERVICES_DIR"].map { $0 + "/tls" }, "CTA_SERVICES_DIR is not set")
        group = ServiceEnvironment.uniqueName("team")
        otherGroup = ServiceEnvironment.uniqueName("others")
        tlsPort = try freePort()
        let plainPort = try freePort()
        adminTokenFile = directory + "/admin-token"
        // Two coordinators started together: exactly one creates the first admin.
        tlsCoordinator = try CoordinatorProcess.start(
            instance: "api-tls", brokerURL: brokerURL, mongoURI: mongoURI, database: database, directory: directory,
            arguments: [
                "--api-port", String(tlsPort), "--tls-cert", tls + "/server.pem", "--tls-key", tls + "/server.key",
                "--admin-token-file", adminTokenFile, "--upload-limit", "65536",
            ])
        plainCoordinator = try CoordinatorProcess.start(
            instance: "api-plain", brokerURL: brokerURL, mongoURI: mongoURI, database: database, directory: directory,
            arguments: ["--api-port", String(plainPort), "--admin-token-file", adminTokenFile])
        https = APIClient(port: tlsPort, tls: true, caFile: tls + "/ca.pem")
        http = APIClient(port: plainPort, tls: false)
        let (_, agents) = try AgentProcess.startNew(["api"], brokerURL: brokerURL, groups: [group])
        agent = agents[0]
    }

    func diagnostics() -> String {
        "--- tls coordinator\n\(tlsCoordinator.log.suffix(3000))\n--- plain coordinator\n\(plainCoordinator.log.suffix(3000))"
            + "\n--- agent\n\(agent.log.suffix(1500))"
    }

    func close() async {
        await agent.terminate()
        await tlsCoordinator.terminate()
        await plainCoordinator.terminate()
        try? await client.database(database).drop()
        try? await client.shutdown()
    }

    func waitFor(_ what: String, timeout: Duration = .seconds(60), _ condition: @Sendable () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }

    // MARK: The checks

    func run() async throws {
        let admin = try await firstAdmin()
        try await transport()
        let users = try await makeUsers(admin: admin)
        let ids = try await define(admin: admin, tester: users.tester)
        try await authMatrix(admin: admin, users: users, ids: ids)
        try await execution(users: users, ids: ids)
        try await liveFeed(users: users, ids: ids)
        try await cancel(users: users, ids: ids)
        try await limitsAndValidation(admin: admin, users: users)
        try await conformance(admin: admin, ids: ids)
        try await loginLimit(admin: admin)
        try await metricsAndHealth()
    }

    /// Both coordinators answer; one first admin token was printed, once, and written to the file.
    func firstAdmin() async throws -> String {
        try await waitFor("both APIs to answer") {
            let plain = try await self.http.get("/health").status
            let secure = try await self.https.get("/health").status
            return plain == 200 && secure == 200
        }
        try await waitFor("the admin token file") {
            ((try? String(contentsOfFile: self.adminTokenFile, encoding: .utf8)) ?? "").hasPrefix("cta_")
        }
        let token = try String(contentsOfFile: adminTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let printed = (tlsCoordinator.log + plainCoordinator.log).components(separatedBy: "first admin token: ").count - 1
        #expect(printed == 1, "the first admin token was printed \(printed) times")
        #expect((tlsCoordinator.log + plainCoordinator.log).contains("first admin token: \(token)"))
        let attributes = try FileManager.default.attributesOfItem(atPath: adminTokenFile)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let whoami = try await https.get("/v1/whoami", token: token)
        #expect(whoami.status == 200 && whoami.json["role"] as? String == "admin", "\(whoami)")
        // The other coordinator serves the same database.
        #expect(try await http.get("/v1/whoami", token: token).status == 200)
        return token
    }

    /// HTTPS works on the TLS port; plain HTTP to it gets no HTTP answer.
    func transport() async throws {
        #expect(try await https.get("/health").status == 200)
        let plainToTLS = APIClient(port: tlsPort, tls: false)
        var answered: APIResponse?
        do {
            answered = try await plainToTLS.get("/health")
        } catch {
            answered = nil
        }
        #expect(answered == nil || answered!.status >= 400, "plain HTTP to the TLS port was answered: \(answered!)")
        #expect(answered?.status != 200)
    }

    struct Users {
        var viewer: String
        var tester: String
        var `operator`: String
        var outsider: String
        var expired: String
        var revoked: String
    }

    func makeUsers(admin: String) async throws -> Users {
        for name in [group, otherGroup] {
            let created = try await https.request("POST", "/v1/groups", token: admin, json: ["name": name, "description": "test"])
            #expect(created.status == 201, "\(created)")
        }
        func user(_ name: String, _ role: String, _ groups: [String]) async throws -> String {
            let created = try await https.request(
                "POST", "/v1/users", token: admin, json: ["name": name, "role": role, "groups": groups])
            #expect(created.status == 201, "\(created)")
            let token = try await https.request("POST", "/v1/tokens", token: admin, json: ["name": "test", "user": name])
            #expect(token.status == 201, "\(token)")
            return try #require(token.json["token"] as? String)
        }
        let users = Users(
            viewer: try await user("viewer-\(suffix)", "viewer", [group]),
            tester: try await user("tester-\(suffix)", "tester", [group]),
            operator: try await user("operator-\(suffix)", "operator", [group]),
            outsider: try await user("outsider-\(suffix)", "operator", [otherGroup]),
            expired: "", revoked: "")
        // An expired token and a revoked one of the tester.
        let expiring = try await https.request("POST", "/v1/tokens", token: users.tester, json: ["name": "short", "expiresInMs": 1])
        let revoking = try await https.request("POST", "/v1/tokens", token: users.tester, json: ["name": "revoke-me"])
        let revokedID = try #require(revoking.json["id"] as? String)
        #expect(try await https.request("DELETE", "/v1/tokens/\(revokedID)", token: users.tester).status == 204)
        // A token of another user is hidden from a non-admin.
        #expect(try await https.request("DELETE", "/v1/tokens/\(revokedID)", token: users.viewer).status == 404)
        var result = users
        result.expired = try #require(expiring.json["token"] as? String)
        result.revoked = try #require(revoking.json["token"] as? String)
        return result
    }

    struct IDs {
        var scenario: String
        var slowScenario: String
        var otherScenario: String
        var test: String
    }

    /// Definitions through the API: a tester of the team applies the team's; the admin applies another group's.
    func define(admin: String, tester: String) async throws -> IDs {
        let ids = IDs(
            scenario: "api-\(suffix)", slowScenario: "api-slow-\(suffix)", otherScenario: "api-other-\(suffix)",
            test: "api-passes-\(suffix)")
        let owners = [group]
        func put(_ path: String, _ body: [String: Any], token: String, expect status: Int = 201) async throws {
            let response = try await https.request("PUT", path, token: token, json: body)
            #expect(response.status == status, "PUT \(path): \(response)")
        }
        try await put(
            "/v1/tests/\(ids.test)",
            ["stages": [["name": "run", "run": "echo hello from the api test; true"]], "owners": owners], token: tester)
        try await put(
            "/v1/tests/api-fails-\(suffix)", ["stages": [["name": "run", "run": "echo broken >&2; exit 3"]], "owners": owners],
            token: tester)
        try await put(
            "/v1/tests/api-slow-\(suffix)", ["stages": [["name": "run", "run": "sleep 60"]], "owners": owners], token: tester)
        try await put(
            "/v1/suites/api-\(suffix)", ["tests": [ids.test, "api-fails-\(suffix)"], "owners": owners], token: tester)
        try await put("/v1/suites/api-slow-\(suffix)", ["tests": ["api-slow-\(suffix)"], "owners": owners], token: tester)
        try await put("/v1/configurations/api-\(suffix)", ["groups": [group], "owners": owners], token: tester)
        try await put(
            "/v1/scenarios/\(ids.scenario)",
            ["suite": "api-\(suffix)", "configuration": "api-\(suffix)", "runMode": "mono", "owners": owners], token: tester)
        try await put(
            "/v1/scenarios/\(ids.slowScenario)",
            ["suite": "api-slow-\(suffix)", "configuration": "api-\(suffix)", "runMode": "mono", "owners": owners],
            token: tester)
        try await put(
            "/v1/scenarios/\(ids.otherScenario)",
            ["suite": "api-\(suffix)", "configuration": "api-\(suffix)", "runMode": "mono", "owners": [otherGroup]],
            token: admin)
        // What GET answers, PUT takes back as it is, and nothing changes.
        for path in ["/v1/tests/\(ids.test)", "/v1/configurations/api-\(suffix)", "/v1/scenarios/\(ids.scenario)"] {
            let got = try await https.get(path, token: tester)
            #expect(got.status == 200 && got.json["kind"] != nil && got.json["selector"] == nil, "\(got)")
            let back = try await https.request("PUT", path, token: tester, json: got.json)
            #expect(back.status == 200, "PUT \(path) with its GET body: \(back)")
            var before = got.json
            var after = try await https.get(path, token: tester).json
            before["updatedAt"] = nil
            after["updatedAt"] = nil
            #expect(NSDictionary(dictionary: before) == NSDictionary(dictionary: after), "\(path)")
        }
        // Replacing is 200; a tester cannot give away ownership to a group not theirs.
        try await put(
            "/v1/tests/\(ids.test)",
            ["stages": [["name": "run", "run": "echo hello from the api test; true"]], "owners": owners], token: tester,
            expect: 200)
        try await put(
            "/v1/tests/\(ids.test)", ["stages": [["name": "run", "run": "true"]], "owners": [otherGroup]], token: tester,
            expect: 403)
        // A deletion of something referenced is a conflict.
        #expect(try await https.request("DELETE", "/v1/tests/\(ids.test)", token: tester).status == 409)
        // A YAML file with a problem names file and line, and stores nothing.
        let yaml = "kind: test\nid: yaml-\(suffix)\nstages:\n  - name: run\n    rnu: true\n"
        let refused = try await https.request(
            "POST", "/v1/definitions?file=bad.yaml", token: admin, body: Array(yaml.utf8),
            headers: [("Content-Type", "application/yaml")])
        #expect(refused.status == 400, "\(refused)")
        let problems = refused.json["problems"] as? [[String: Any]] ?? []
        #expect(problems.contains { $0["file"] as? String == "bad.yaml" && $0["line"] as? Int == 5 }, "\(refused)")
        #expect(try await https.get("/v1/tests/yaml-\(suffix)", token: admin).status == 404)
        let good = "kind: test\nid: yaml-\(suffix)\nstages:\n  - name: run\n    run: true\n"
        let applied = try await https.request(
            "POST", "/v1/definitions", token: admin, body: Array(good.utf8), headers: [("Content-Type", "application/yaml")])
        #expect(applied.status == 200 && (applied.json["applied"] as? [String: Any])?["tests"] as? Int == 1, "\(applied)")
        // A tester adds definitions with a file by naming owners among their groups; a new one without owners, or
        // with another group as owner, is refused and nothing of the file is stored.
        func apply(_ text: String) async throws -> APIResponse {
            try await https.request(
                "POST", "/v1/definitions?file=team.yaml", token: tester, body: Array(text.utf8),
                headers: [("Content-Type", "application/yaml")])
        }
        let owned = "kind: test\nid: team-\(suffix)\nowners: [\(group)]\nstages:\n  - name: run\n    run: true\n"
        let unowned = "kind: test\nid: loose-\(suffix)\nstages:\n  - name: run\n    run: true\n"
        let foreign = "kind: test\nid: foreign-\(suffix)\nowners: [\(otherGroup)]\nstages:\n  - name: run\n    run: true\n"
        let refusedNew = try await apply(owned + "---\n" + unowned)
        #expect(refusedNew.status == 403 && refusedNew.errorMessage.contains("test loose-\(suffix) (new: give it owners"), "\(refusedNew)")
        let refusedForeign = try await apply(foreign)
        #expect(refusedForeign.status == 403 && refusedForeign.errorMessage.contains("owners must be groups of yours"), "\(refusedForeign)")
        #expect(try await https.get("/v1/tests/team-\(suffix)", token: admin).status == 404)
        let teamApplied = try await apply(owned)
        #expect(teamApplied.status == 200, "\(teamApplied)")
        // Applying it again without owners (and through the store, as `cta-coordinator apply` does) keeps them.
        let again = try await apply(owned.replacingOccurrences(of: "owners: [\(group)]\n", with: ""))
        #expect(again.status == 200, "\(again)")
        let stored = try await https.get("/v1/tests/team-\(suffix)", token: tester)
        #expect(stored.status == 200 && stored.json["owners"] as? [String] == [group], "\(stored)")
        return ids
    }

    /// Every endpoint family: no token, a wrong, expired or revoked token, an enrollment token; the wrong role;
    /// another group's object.
    func authMatrix(admin: String, users: Users, ids: IDs) async throws {
        try await waitFor("the agent online") {
            try await self.https.get("/v1/machines?online=true", token: admin).items.count == 1
        }
        let machine = try #require(try await https.get("/v1/machines", token: admin).items.first?["name"] as? String)
        let enrollment = try await https.request("POST", "/v1/enrollment-tokens", token: admin, json: ["name": "agents"])
        #expect(enrollment.status == 201)
        let agentToken = try #require(enrollment.json["token"] as? String)
        let created = try await https.request("POST", "/v1/executions", token: users.tester, json: ["scenario": ids.scenario])
        #expect(created.status == 201, "\(created)")
        let execution = try #require(created.json["id"] as? String)

        let reads: [(String, String)] = [
            ("GET", "/v1/whoami"), ("GET", "/v1/users"), ("GET", "/v1/groups"), ("GET", "/v1/tokens"),
            ("GET", "/v1/enrollment-tokens"), ("GET", "/v1/tests"), ("GET", "/v1/suites/api-\(suffix)"),
            ("GET", "/v1/configurations"), ("GET", "/v1/scenarios/\(ids.scenario)"), ("GET", "/v1/executions"),
            ("GET", "/v1/executions/\(execution)"), ("GET", "/v1/executions/\(execution)/results"),
            ("GET", "/v1/executions/\(execution)/states"), ("GET", "/v1/executions/\(execution)/logs"),
            ("GET", "/v1/executions/\(execution)/junit"), ("GET", "/v1/executions/\(execution)/attachments"),
            ("GET", "/v1/machines"), ("GET", "/v1/machines/\(machine)"), ("POST", "/v1/machines/\(machine)/resume"),
            ("GET", "/v1/scenarios/\(ids.scenario)/webhooks"), ("POST", "/v1/executions"),
            ("POST", "/v1/definitions"), ("PUT", "/v1/tests/\(ids.test)"), ("POST", "/v1/users"),
        ]
        let wrong = "cta_" + String(repeating: "A", count: 43)
        for (method, path) in reads {
            for (label, token) in [
                ("no token", nil), ("wrong token", wrong), ("expired token", users.expired),
                ("revoked token", users.revoked), ("enrollment token", agentToken), ("garbage", "Basic x"),
            ] as [(String, String?)] {
                let response = try await https.request(method, path, token: token, json: [String: String]())
                #expect(response.status == 401, "\(label) \(method) \(path): \(response)")
                #expect(response.errorCode == "unauthenticated" && response.header("WWW-Authenticate") == "Bearer")
            }
        }
        // Wrong role (403) and another group's object (404), per family.
        struct Case { var method: String; var path: String; var token: String; var body: Any?; var status: Int }
        let cases: [Case] = [
            Case(method: "GET", path: "/v1/users", token: users.operator, body: nil, status: 403),
            Case(method: "POST", path: "/v1/groups", token: users.operator, body: ["name": "x\(suffix)"], status: 403),
            Case(method: "GET", path: "/v1/groups", token: users.viewer, body: nil, status: 200),
            Case(method: "GET", path: "/v1/tokens?user=tester-\(suffix)", token: users.viewer, body: nil, status: 403),
            Case(method: "GET", path: "/v1/tokens?user=tester-\(suffix)", token: admin, body: nil, status: 200),
            Case(method: "GET", path: "/v1/enrollment-tokens", token: users.operator, body: nil, status: 403),
            Case(method: "GET", path: "/v1/scenarios/\(ids.scenario)", token: users.viewer, body: nil, status: 200),
            Case(method: "GET", path: "/v1/scenarios/\(ids.scenario)", token: users.outsider, body: nil, status: 404),
            Case(method: "GET", path: "/v1/scenarios/\(ids.otherScenario)", token: users.tester, body: nil, status: 404),
            Case(method: "PUT", path: "/v1/tests/\(ids.test)", token: users.viewer,
                 body: ["stages": [["name": "run", "run": "true"]]], status: 403),
            Case(method: "PUT", path: "/v1/tests/\(ids.test)", token: users.outsider,
                 body: ["stages": [["name": "run", "run": "true"]]], status: 404),
            Case(method: "DELETE", path: "/v1/tests/yaml-\(suffix)", token: users.tester, body: nil, status: 403),
            Case(method: "POST", path: "/v1/executions", token: users.viewer, body: ["scenario": ids.scenario], status: 403),
            Case(method: "POST", path: "/v1/executions", token: users.outsider, body: ["scenario": ids.scenario], status: 404),
            Case(method: "GET", path: "/v1/executions/\(execution)", token: users.viewer, body: nil, status: 200),
            Case(method: "GET", path: "/v1/executions/\(execution)", token: users.outsider, body: nil, status: 404),
            Case(method: "GET", path: "/v1/executions/\(execution)/results", token: users.outsider, body: nil, status: 404),
            Case(method: "POST", path: "/v1/executions/\(execution)/cancel", token: users.viewer, body: [:], status: 403),
            Case(method: "POST", path: "/v1/executions/\(execution)/cancel", token: users.outsider, body: [:], status: 404),
            Case(method: "GET", path: "/v1/machines/\(machine)", token: users.outsider, body: nil, status: 404),
            Case(method: "POST", path: "/v1/machines/\(machine)/drain", token: users.tester, body: [:], status: 403),
            Case(method: "POST", path: "/v1/machines/\(machine)/drain", token: users.outsider, body: [:], status: 404),
            Case(method: "GET", path: "/v1/scenarios/\(ids.scenario)/webhooks", token: users.tester, body: nil, status: 403),
            Case(method: "GET", path: "/v1/scenarios/\(ids.scenario)/webhooks", token: users.outsider, body: nil, status: 404),
            Case(method: "GET", path: "/v1/scenarios/\(ids.scenario)/webhooks", token: users.operator, body: nil, status: 200),
            Case(method: "PUT", path: "/v1/executions/\(execution)/attachments/a.txt", token: users.operator, body: nil, status: 401),
        ]
        for item in cases {
            let response = try await https.request(item.method, item.path, token: item.token, json: item.body)
            #expect(response.status == item.status, "\(item.method) \(item.path): \(response)")
            if item.status >= 400 { #expect(response.errorCode != nil, "\(response)") }
        }
        // Lists leave out what is not visible.
        let outsiderList = try await https.get("/v1/executions?scenario=\(ids.scenario)", token: users.outsider)
        #expect(outsiderList.status == 200 && outsiderList.items.isEmpty)
        #expect(try await https.get("/v1/machines", token: users.outsider).items.isEmpty)
        #expect(try await https.get("/v1/machines", token: users.viewer).items.count == 1)

        // Drain and resume by an operator of the machine's group: recorded and published.
        let drain = try await https.request("POST", "/v1/machines/\(machine)/drain", token: users.operator, json: ["reason": "test"])
        #expect(drain.status == 202, "\(drain)")
        #expect(try await https.get("/v1/machines/\(machine)", token: users.viewer).json["drainRequested"] as? Bool == true)
        try await waitFor("the agent to report draining", timeout: .seconds(40)) {
            try await self.https.get("/v1/machines/\(machine)", token: users.viewer).json["draining"] as? Bool == true
        }
        #expect(try await https.request("POST", "/v1/machines/\(machine)/resume", token: users.operator, json: [:]).status == 202)
        try await waitFor("the agent to report resumed", timeout: .seconds(40)) {
            try await self.https.get("/v1/machines/\(machine)", token: users.viewer).json["draining"] as? Bool == false
        }

        // Attachments: enrollment token only; names that could be paths are refused; Range on download.
        let content = Array("0123456789abcdef".utf8)
        let upload = try await https.request(
            "PUT", "/v1/executions/\(execution)/attachments/out.txt?machine=\(machine)", token: agentToken, body: content)
        #expect(upload.status == 201, "\(upload)")
        for name in ["..%2F..%2Fetc%2Fpasswd", ".hidden", "%2e%2e", "a%20b"] {
            let refused = try await https.request(
                "PUT", "/v1/executions/\(execution)/attachments/\(name)", token: agentToken, body: content)
            #expect(refused.status == 400 || refused.status == 404, "\(name): \(refused)")
        }
        let traversal = try await https.get("/v1/executions/\(execution)/attachments/..%2F..%2Fetc%2Fpasswd", token: users.viewer)
        #expect(traversal.status == 404, "\(traversal)")
        let nested = try await https.get("/v1/executions/\(execution)/attachments/../../../etc/passwd", token: users.viewer)
        #expect(nested.status == 404, "\(nested)")
        let whole = try await https.get("/v1/executions/\(execution)/attachments/out.txt", token: users.viewer)
        #expect(whole.status == 200 && whole.body == content)
        let part = try await https.get(
            "/v1/executions/\(execution)/attachments/out.txt", token: users.viewer, headers: [("Range", "bytes=2-5")])
        #expect(part.status == 206 && part.text == "2345" && part.header("Content-Range") == "bytes 2-5/16", "\(part)")
        let outside = try await https.get(
            "/v1/executions/\(execution)/attachments/out.txt", token: users.viewer, headers: [("Range", "bytes=100-")])
        #expect(outside.status == 416 && outside.errorCode == "rangeNotSatisfiable", "\(outside)")
        let listed = try await https.get("/v1/executions/\(execution)/attachments", token: users.viewer)
        #expect(listed.items.first?["sha256"] as? String == SHA256.hash(content).hexString)
        let tooLarge = try await https.request(
            "PUT", "/v1/executions/\(execution)/attachments/big.bin", token: agentToken, body: Array(repeating: 7, count: 70_000))
        #expect(tooLarge.status == 413 && tooLarge.errorCode == "payloadTooLarge", "\(tooLarge)")

        // An agent's upload by attachment id (what agents do before publishing a result), then read by a viewer.
        let bound = try await https.request(
            "POST", "/v1/enrollment-tokens", token: admin, json: ["name": "bound", "machine": machine])
        #expect(bound.status == 201, "\(bound)")
        let boundToken = try #require(bound.json["token"] as? String)
        try await AttachmentUploadContract.check(
            https, execution: execution, machine: machine, agentToken: boundToken, userToken: users.operator, limit: 65536
        ) { id in
            let response = try await self.https.get("/v1/executions/\(execution)/attachments/\(id)", token: users.viewer)
            return response.status == 200 ? response.body : nil
        }
        let byID = try await https.get("/v1/executions/\(execution)/attachments", token: users.viewer)
        let uploaded = byID.items.first { $0["name"] as? String == "test log.txt" }
        #expect(uploaded?["id"] is String, "\(byID.items)")
        let named = try await https.get("/v1/executions/\(execution)/attachments/\(uploaded?["id"] as? String ?? "-")", token: users.viewer)
        #expect(named.header("Content-Disposition")?.contains("filename=\"test log.txt\"") == true, "\(named.headers)")
    }

    /// An execution requested through the API runs on the real agent; its results are paged through the API.
    func execution(users: Users, ids: IDs) async throws {
        let webhook = try await https.request(
            "POST", "/v1/scenarios/\(ids.scenario)/webhooks", token: users.operator,
            json: ["url": "http://127.0.0.1:9/unreachable", "on": ["finished"], "secret": "s"])
        #expect(webhook.status == 201 && webhook.json["secret"] == nil, "\(webhook)")
        let webhookID = try #require(webhook.json["id"] as? String)
        let created = try await http.request(
            "POST", "/v1/executions", token: users.tester, json: ["scenario": ids.scenario, "tags": ["api-\(suffix)"]])
        #expect(created.status == 201 && created.json["phase"] as? String == "pending", "\(created)")
        let id = try #require(created.json["id"] as? String)
        try await waitFor("the execution to finish", timeout: .seconds(90)) {
            try await self.https.get("/v1/executions/\(id)", token: users.viewer).json["phase"] as? String == "finished"
        }
        let shown = try await https.get("/v1/executions/\(id)", token: users.viewer)
        #expect(shown.json["requestedBy"] as? String == "user/tester-\(suffix)")
        #expect((shown.json["counts"] as? [String: Any])?["ok"] as? Int == 1)
        #expect((shown.json["counts"] as? [String: Any])?["failed"] as? Int == 1)
        // Results, one per page, every one exactly once.
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await https.get(
                "/v1/executions/\(id)/results?limit=1" + (cursor.map { "&cursor=\($0)" } ?? ""), token: users.viewer)
            #expect(page.status == 200, "\(page)")
            seen += page.items.compactMap { $0["eventId"] as? String }
            cursor = page.json["next"] as? String
        } while cursor != nil
        let stored = try await store.results(try #require(ExecutionID(id)))
        #expect(seen.count == stored.count && Set(seen) == Set(stored.map(\._id)) && seen.count == 2)
        let failed = try await https.get("/v1/executions/\(id)/results?status=failed", token: users.viewer)
        #expect(failed.items.count == 1 && failed.items.first?["status"] as? String == "failed")
        let states = try await https.get("/v1/executions/\(id)/states", token: users.viewer)
        #expect(states.items.contains { $0["state"] as? String == "finished" }, "\(states)")
        let junit = try await https.get("/v1/executions/\(id)/junit", token: users.viewer)
        #expect(junit.text.contains("<testcase") && junit.text.contains("<failure"), "\(junit)")
        let logs = try await https.get("/v1/executions/\(id)/logs", token: users.viewer)
        #expect(logs.status == 200 && logs.text.contains("hello from the api test"), "\(logs)")
        let ranged = try await https.get("/v1/executions/\(id)/logs", token: users.viewer, headers: [("Range", "bytes=0-4")])
        #expect(ranged.status == 206 && ranged.body.count == 5, "\(ranged)")
        let tagged = try await https.get("/v1/executions?tag=api-\(suffix)", token: users.viewer)
        #expect(tagged.items.map { $0["id"] as? String } == [id])
        // The API-managed webhook fired (a delivery recorded, its receiver unreachable).
        try await waitFor("a webhook delivery", timeout: .seconds(30)) {
            try await self.https.get("/v1/scenarios/\(ids.scenario)/webhooks/\(webhookID)/deliveries", token: users.operator)
                .items.count == 1
        }
    }

    /// The live feed the coordinator serves on its API port, with the API's tokens and group rules: a viewer of the
    /// team follows an execution from its creation to its end and gets each stored result once; an outsider is
    /// told it does not exist; the machines feed is for admins; no token, no connection.
    func liveFeed(users: Users, ids: IDs) async throws {
        let created = try await http.request("POST", "/v1/executions", token: users.tester, json: ["scenario": ids.scenario])
        let id = try #require(created.json["id"] as? String)
        let base = "ws://127.0.0.1:\(http.port)/v1/live?token="
        let subscribe = #"{"op":"subscribe","id":"s1","execution":"\#(id)"}"#
        let frames = try await collectLive(url: base + users.viewer, send: [subscribe], until: endFrame)
        #expect(frames.last?.type == "end" && frames.last?.phase == "finished", "\(frames.map(\.type))")
        let results = frames.filter { $0.type == "result" }.compactMap { $0.event["eventId"] ?? $0.event["id"] }
        let stored = try await store.results(try #require(ExecutionID(id)))
        #expect(results.count == stored.count && Set(results) == Set(stored.map(\._id)), "\(results) vs \(stored.map(\._id))")

        let hidden = try await collectLive(url: base + users.outsider, send: [subscribe], until: endFrame)
        #expect(hidden.last?.type == "error" && hidden.last?.errorCode == "notFound", "\(hidden)")
        let machines = try await collectLive(
            url: base + users.viewer, send: [#"{"op":"subscribe","id":"m","machines":true}"#], until: endFrame)
        #expect(machines.last?.type == "error" && machines.last?.errorCode == "forbidden", "\(machines)")
        for (url, code) in [(base.dropLast("?token=".count) + "", "unauthenticated"), (base + "cta_not-a-token", "unauthenticated")] {
            // Nothing sent: the refusal frame comes first, and a write racing the server's close would fail.
            let refused = try await collectLive(url: String(url), send: [], until: endFrame)
            #expect(refused.map(\.type) == ["error"] && refused.first?.errorCode == code, "\(url): \(refused)")
        }
    }

    /// Cancel through the API: recorded, broadcast, the agent stops; a second cancel is a conflict.
    func cancel(users: Users, ids: IDs) async throws {
        let created = try await https.request("POST", "/v1/executions", token: users.tester, json: ["scenario": ids.slowScenario])
        let id = try #require(created.json["id"] as? String)
        try await waitFor("the slow execution to run", timeout: .seconds(60)) {
            try await self.https.get("/v1/executions/\(id)", token: users.viewer).json["phase"] as? String == "running"
        }
        let cancel = try await https.request("POST", "/v1/executions/\(id)/cancel", token: users.tester, json: ["reason": "enough"])
        #expect(cancel.status == 202, "\(cancel)")
        try await waitFor("the cancelled execution to end", timeout: .seconds(60)) {
            try await self.https.get("/v1/executions/\(id)", token: users.viewer).json["phase"] as? String == "cancelled"
        }
        let again = try await https.request("POST", "/v1/executions/\(id)/cancel", token: users.tester, json: [:])
        #expect(again.status == 409 && again.errorCode == "conflict", "\(again)")
    }

    /// 413 over 1 MiB, unknown fields with their path, bad query values, unknown routes.
    func limitsAndValidation(admin: String, users: Users) async throws {
        let big = Array("{\"name\":\"".utf8) + Array(repeating: UInt8(ascii: "a"), count: 1_100_000) + Array("\"}".utf8)
        let tooLarge = try await https.request("POST", "/v1/groups", token: admin, body: big)
        #expect(tooLarge.status == 413 && tooLarge.errorCode == "payloadTooLarge", "\(tooLarge)")
        let unknown = try await https.request(
            "POST", "/v1/users", token: admin, json: ["name": "u\(suffix)", "role": "viewer", "nmae": "x"])
        #expect(unknown.status == 400 && unknown.errorCode == "unknownField" && unknown.errorField == "nmae", "\(unknown)")
        let nested = try await https.request(
            "PUT", "/v1/configurations/c-\(suffix)", token: admin, json: ["groups": [group], "selector": ["tags": [:]]])
        #expect(nested.status == 400 && nested.errorCode == "unknownField", "\(nested)")
        let wrongType = try await https.request("POST", "/v1/executions", token: users.tester, json: ["scenario": 5])
        #expect(wrongType.status == 400 && wrongType.errorCode == "invalidField" && wrongType.errorField == "scenario")
        let badLimit = try await https.get("/v1/executions?limit=0", token: users.viewer)
        #expect(badLimit.status == 400 && badLimit.errorField == "limit")
        let badCursor = try await https.get("/v1/executions?cursor=xyz", token: users.viewer)
        #expect(badCursor.status == 400 && badCursor.errorField == "cursor")
        let notJSON = try await https.request("POST", "/v1/groups", token: admin, body: Array("{".utf8))
        #expect(notJSON.status == 400 && notJSON.errorCode == "badRequest")
        let noRoute = try await https.get("/v1/nothing", token: admin)
        #expect(noRoute.status == 404 && noRoute.errorCode == "notFound")
    }

    /// Five failed logins per user (and per address) a minute, then 429 with Retry-After, even with the right
    /// password.
    func loginLimit(admin: String) async throws {
        let name = "login-\(suffix)"
        let created = try await https.request(
            "POST", "/v1/users", token: admin, json: ["name": name, "role": "viewer", "password": "right-password"])
        #expect(created.status == 201)
        let good = try await http.request("POST", "/v1/login", json: ["user": name, "password": "right-password"])
        #expect(good.status == 200, "\(good)")
        let token = try #require(good.json["token"] as? String)
        #expect(try await http.get("/v1/whoami", token: token).json["user"] as? String == name)
        // Failures for a user without a password are cheap: no hash is computed.
        for _ in 0..<5 {
            let failed = try await http.request("POST", "/v1/login", json: ["user": "nobody-\(suffix)", "password": "x"])
            #expect(failed.status == 401, "\(failed)")
        }
        let limited = try await http.request("POST", "/v1/login", json: ["user": "nobody-\(suffix)", "password": "x"])
        #expect(limited.status == 429 && limited.errorCode == "tooManyRequests", "\(limited)")
        #expect(Int(limited.header("Retry-After") ?? "") ?? 0 >= 1)
        // The address is limited too: the right password from the same address waits.
        let blocked = try await http.request("POST", "/v1/login", json: ["user": name, "password": "right-password"])
        #expect(blocked.status == 429, "\(blocked)")
    }

    /// Every operation of docs/openapi.yaml, asked with the admin token and an empty JSON object: routed, and
    /// answered with a status the document lists for it. Deletions name objects that do not exist.
    func conformance(admin: String, ids: IDs) async throws {
        let operations = try OpenAPIDocument.operations()
        #expect(operations.count > 40)
        let execution = try #require(try await https.get("/v1/executions?limit=1", token: admin).items.first?["id"] as? String)
        let machine = try #require(try await https.get("/v1/machines", token: admin).items.first?["name"] as? String)
        let webhook = try #require(
            try await https.get("/v1/scenarios/\(ids.scenario)/webhooks", token: admin).items.first?["id"] as? String)
        for (operation, statuses) in operations.sorted(by: { $0.key < $1.key }) {
            let parts = operation.split(separator: " ", maxSplits: 1)
            let method = String(parts[0])
            let deleting = method == "DELETE"
            var path = String(parts[1])
            let values: [String: String] = [
                "{webhookId}": deleting ? "missing-webhook" : webhook,
                "{name}": path.hasPrefix("/v1/machines") ? machine
                    : path.hasPrefix("/v1/groups") ? (deleting ? "missing-group" : group)
                    : path.hasPrefix("/v1/users") ? (deleting ? "missing-user" : "viewer-\(suffix)") : "out.txt",
                "{id}": path.hasPrefix("/v1/executions") ? execution
                    : path.hasPrefix("/v1/scenarios") ? (deleting && !path.contains("webhooks") ? "missing" : ids.scenario)
                    : path.hasPrefix("/v1/tests") ? (deleting ? "missing" : ids.test)
                    : path.hasPrefix("/v1/suites") || path.hasPrefix("/v1/configurations") ? (deleting ? "missing" : "api-\(suffix)")
                    : "missing-token",
            ]
            for (placeholder, value) in values { path = path.replacingOccurrences(of: placeholder, with: value) }
            let response = try await https.request(method, path, token: admin, body: Array("{}".utf8))
            #expect(statuses.contains(response.status), "\(operation) as \(method) \(path) answered \(response)")
            if response.status >= 400 { #expect(response.errorCode != nil, "\(operation): \(response)") }
        }
        _ = try await https.request("POST", "/v1/machines/\(machine)/resume", token: admin, json: [:])
    }

    func metricsAndHealth() async throws {
        let ready = try await https.get("/ready")
        #expect(ready.status == 200, "\(ready)")
        let metrics = try await https.get("/metrics")
        #expect(metrics.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        for name in [
            "cta_executions{phase=\"finished\"}", "cta_dispatch_latency_seconds_bucket", "cta_results_ingested_total",
            "cta_queue_depth{queue=", "cta_machines_online", "cta_http_requests_total{route=",
        ] {
            #expect(metrics.text.contains(name), "\(name) missing")
        }
    }
}

/// The operations docs/openapi.yaml documents, with their statuses (the layout it is written in: paths at two spaces,
/// methods at four, statuses at eight).
enum OpenAPIDocument {
    static func operations() throws -> [String: Set<Int>] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/openapi.yaml")
        let text = try String(contentsOf: file, encoding: .utf8)
        var operations: [String: Set<Int>] = [:]
        var path: String?
        var current: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  /"), line.hasSuffix(":") {
                path = String(line.dropFirst(2).dropLast())
                current = nil
            } else if line.hasPrefix("components:") {
                break
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                current = "\(line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()) \(path)"
                operations[current!] = []
            } else if let current, line.hasPrefix("        '"), let status = Int(line.dropFirst(9).prefix(3)) {
                operations[current]!.insert(status)
            }
        }
        return operations
    }
}
