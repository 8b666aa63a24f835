public import CTACore
import Foundation
public import NIOHTTP1

/// The CTA API (v1) as typed calls. Every error the server answers becomes a ``ClientError`` with its code, field
/// and message; a 401 adds how to log in again.
public struct APIClient: Sendable {
    public let transport: any HTTPSending
    public let token: String?

    public init(transport: any HTTPSending, token: String?) {
        self.transport = transport
        self.token = token
    }

    // MARK: Requests

    /// Sends a request with the token and JSON headers; returns the response when its status is 2xx.
    public func request(
        _ method: HTTPMethod, _ target: String, json body: JSONValue? = nil, body raw: [UInt8]? = nil,
        contentType: String? = nil, headers extra: [(String, String)] = []
    ) async throws(ClientError) -> HTTPResponse {
        var headers: [(String, String)] = [("Accept", "application/json")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        var bytes = raw
        if let body {
            bytes = Array(JSONOutput.compact(body).utf8)
            headers.append(("Content-Type", "application/json"))
        } else if let contentType {
            headers.append(("Content-Type", contentType))
        }
        headers += extra
        let response = try await transport.send(HTTPRequest(method: method, target: target, headers: headers, body: bytes))
        guard (200..<300).contains(response.status) else { throw Self.error(from: response) }
        return response
    }

    /// Sends a request and decodes its JSON answer.
    public func call<T: Decodable>(
        _ type: T.Type, _ method: HTTPMethod, _ target: String, json body: JSONValue? = nil
    ) async throws(ClientError) -> T {
        let response = try await request(method, target, json: body)
        return try Self.decode(type, response.body, what: "\(method) \(target)")
    }

    static func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8], what: String) throws(ClientError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(body))
        } catch {
            throw .protocolViolation("unexpected answer to \(what): \(Self.describe(decoding: error))")
        }
    }

    static func describe(decoding error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing \(path(context)).\(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(path(context)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// The error a non-2xx response stands for.
    public static func error(from response: HTTPResponse) -> ClientError {
        struct Body: Decodable {
            struct Detail: Decodable {
                var code: String?
                var message: String?
                var field: String?
            }
            var error: Detail?
            var problems: [DefinitionProblem]?
        }
        let parsed = try? JSONDecoder().decode(Body.self, from: Data(response.body))
        var message = parsed?.error?.message ?? Self.firstLine(response.text) ?? "HTTP \(response.status)"
        if response.status == 401 {
            message += " (log in again with cta login)"
        }
        if response.status == 429, let retry = response.header("Retry-After") {
            message += " (retry after \(retry) s)"
        }
        let problems = (parsed?.problems ?? []).map { problem in
            var line = ""
            if let file = problem.file { line += file + ":" }
            if let number = problem.line { line += "\(number):" }
            if !line.isEmpty { line += " " }
            if let key = problem.key, !key.isEmpty { line += key + ": " }
            return line + problem.message
        }
        return ClientError(
            code: .api, message: message, status: response.status, apiCode: parsed?.error?.code,
            field: parsed?.error?.field, problems: problems)
    }

    private static func firstLine(_ text: String) -> String? {
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init)?.trimmingCharacters(in: .whitespaces)
        guard let line, !line.isEmpty else { return nil }
        return line.count > 200 ? String(line.prefix(200)) + "…" : line
    }

    // MARK: Identity

    public func whoami() async throws(ClientError) -> Identity {
        try await call(Identity.self, .GET, "/v1/whoami")
    }

    public func login(user: String, password: String) async throws(ClientError) -> LoginResponse {
        try await call(
            LoginResponse.self, .POST, "/v1/login", json: .object(["user": .string(user), "password": .string(password)]))
    }

    // MARK: Machines

    public func machines(_ query: Query = Query()) async throws(ClientError) -> Page<JSONValue> {
        try await call(Page<JSONValue>.self, .GET, "/v1/machines" + query.text)
    }

    public func machine(_ name: String) async throws(ClientError) -> JSONValue {
        try await call(JSONValue.self, .GET, "/v1/machines/\(Query.escape(name))")
    }

    /// Asks a machine to stop (`drain`) or start again (`resume`) taking work.
    public func machineAction(_ name: String, action: String) async throws(ClientError) {
        _ = try await request(.POST, "/v1/machines/\(Query.escape(name))/\(action)", json: .object([:]))
    }

    // MARK: Definitions

    /// Applies a YAML stream of definitions; on refusal the error lists the server's problems.
    public func applyDefinitions(_ yaml: String, file: String) async throws(ClientError) -> [String: Int] {
        let response = try await request(
            .POST, "/v1/definitions" + Query().adding("file", file).text, body: Array(yaml.utf8),
            contentType: "application/yaml")
        return try Self.decode(AppliedDefinitions.self, response.body, what: "POST /v1/definitions").applied
    }

    // MARK: Executions

    public func startExecution(scenario: String, env: [String: String] = [:], tags: [String] = [])
        async throws(ClientError) -> Execution
    {
        var body: [String: JSONValue] = ["scenario": .string(scenario)]
        if !env.isEmpty { body["env"] = .object(env.mapValues { .string($0) }) }
        if !tags.isEmpty { body["tags"] = .array(tags.map { .string($0) }) }
        return try await call(Execution.self, .POST, "/v1/executions", json: .object(body))
    }

    public func execution(_ id: String) async throws(ClientError) -> Execution {
        try await call(Execution.self, .GET, "/v1/executions/\(Query.escape(id))")
    }

    public func executionJSON(_ id: String) async throws(ClientError) -> JSONValue {
        try await call(JSONValue.self, .GET, "/v1/executions/\(Query.escape(id))")
    }

    public func executions(_ query: Query) async throws(ClientError) -> Page<JSONValue> {
        try await call(Page<JSONValue>.self, .GET, "/v1/executions" + query.text)
    }

    public func cancel(_ id: String, reason: String?) async throws(ClientError) {
        var body: [String: JSONValue] = [:]
        if let reason { body["reason"] = .string(reason) }
        _ = try await request(.POST, "/v1/executions/\(Query.escape(id))/cancel", json: .object(body))
    }

    /// One page of an execution's results, from `cursor` (nil: the first).
    public func results(_ id: String, cursor: String?, limit: Int = 500, query: Query = Query())
        async throws(ClientError) -> Page<TestResultItem>
    {
        var query = query.adding("limit", "\(limit)")
        if let cursor { query = query.adding("cursor", cursor) }
        return try await call(
            Page<TestResultItem>.self, .GET, "/v1/executions/\(Query.escape(id))/results" + query.text)
    }

    /// One page of an execution's results as the server wrote them.
    public func resultsJSON(_ id: String, cursor: String?, limit: Int = 500, query: Query = Query())
        async throws(ClientError) -> Page<JSONValue>
    {
        var query = query.adding("limit", "\(limit)")
        if let cursor { query = query.adding("cursor", cursor) }
        return try await call(Page<JSONValue>.self, .GET, "/v1/executions/\(Query.escape(id))/results" + query.text)
    }

    /// Every result of an execution, every page.
    public func allResults(_ id: String) async throws(ClientError) -> [TestResultItem] {
        var items: [TestResultItem] = []
        var cursor: String?
        repeat {
            let page = try await results(id, cursor: cursor)
            items += page.items
            cursor = page.next
        } while cursor != nil
        return items
    }

    public func logs(_ id: String, machine: String?, test: String?) async throws(ClientError) -> [UInt8] {
        var query = Query()
        if let machine { query = query.adding("machine", machine) }
        if let test { query = query.adding("test", test) }
        return try await request(.GET, "/v1/executions/\(Query.escape(id))/logs" + query.text).body
    }

    public func attachments(_ id: String) async throws(ClientError) -> [AttachmentInfo] {
        let response = try await request(.GET, "/v1/executions/\(Query.escape(id))/attachments")
        // A bare list, or a page of items.
        if let list = try? JSONDecoder().decode([AttachmentInfo].self, from: Data(response.body)) { return list }
        return try Self.decode(Page<AttachmentInfo>.self, response.body, what: "GET attachments").items
    }

    public func attachment(_ id: String, name: String) async throws(ClientError) -> [UInt8] {
        try await request(.GET, "/v1/executions/\(Query.escape(id))/attachments/\(Query.escape(name))").body
    }
}

/// A query string, built one parameter at a time, percent-encoded.
public struct Query: Sendable, Hashable {
    public private(set) var parameters: [(String, String)] = []

    public init() {}

    public func adding(_ name: String, _ value: String?) -> Query {
        guard let value else { return self }
        var copy = self
        copy.parameters.append((name, value))
        return copy
    }

    /// `?a=1&b=2`, or nothing.
    public var text: String {
        parameters.isEmpty ? "" : "?" + parameters.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&")
    }

    /// Percent-encodes everything but unreserved characters.
    public static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    public static func == (lhs: Query, rhs: Query) -> Bool { lhs.text == rhs.text }
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }
}
