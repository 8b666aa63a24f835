import CTACoordinator
import CTACore
import CTADefinitions
import Foundation
import Hummingbird
import NIOCore

// Executions: request, list, show, cancel, results, states, logs, JUnit.

extension API {
    func addExecutionRoutes(to router: Router<APIRequestContext>) {
        router.post("/v1/executions") { request, _ in
            let principal = try await self.user(request)
            let body = try await self.json(
                request,
                .object([
                    "scenario": .required(.string(maxLength: 256, rule: Rules.nonEmpty)),
                    "env": .optional(.map(.string(maxLength: 65_536), keyRule: Rules.envName, maxCount: 500)),
                    "tags": .optional(.array(.string(maxLength: 256, rule: Rules.nonEmpty), maxCount: 50)),
                ]))
            let scenario = body["scenario"]!.stringValue!
            guard let scenarioID = ScenarioID(scenario), let stored = try await self.store.definition(.scenarios, id: scenario)
            else { throw APIError(.notFound, "no scenario \(scenario)", field: "scenario") }
            try self.require(.runExecution, principal, owners: stored.owners, notFound: "scenario \(scenario)")
            let record: ExecutionRecord
            do {
                record = try await self.store.store.requestExecution(
                    of: scenarioID, requestedBy: "user/\(principal.user)", env: body["env"]?.stringMap ?? [:],
                    tags: body["tags"]?.stringArray ?? [])
            } catch let error as ExecutionRequestError {
                throw APIError(.conflict, error.description, field: "scenario")
            }
            self.coordinator.wakeComposer(with: record)
            return JSON.response(ExecutionView(record), status: .created)
        }

        router.get("/v1/executions") { request, _ in
            let principal = try await self.user(request)
            var filter = ExecutionFilter()
            filter.scenario = request.query("scenario")
            if let phase = request.query("phase") {
                guard ExecutionPhase(rawValue: phase) != nil else {
                    throw APIError(.invalidField, "phase must be one of pending, running, finished, cancelled, timeout", field: "phase")
                }
                filter.phase = phase
            }
            for name in ["since", "until"] {
                guard let text = request.query(name) else { continue }
                guard let date = JSON.parseTimestamp(text) else {
                    throw APIError(.invalidField, "\(name) must be an RFC 3339 time", field: name)
                }
                if name == "since" { filter.since = date } else { filter.until = date }
            }
            filter.requestedBy = request.query("requestedBy")
            filter.tag = request.query("tag")
            let owners = principal.role == .admin ? [:] : try await self.store.owners(.scenarios)
            let (items, next) = try await self.store.executionsPage(filter, try request.page()) { record in
                Policy.canSee(principal, owners: owners[record.scenario.id.rawValue] ?? [])
            }
            return JSON.response(Page(items: items.map(ExecutionView.init), next: next?.encoded))
        }

        router.get("/v1/executions/:id") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            return JSON.response(ExecutionView(record))
        }

        router.post("/v1/executions/:id/cancel") { request, context in
            let (principal, record) = try await self.execution(request, context, .cancelExecution)
            let body = try await self.json(request, .object(["reason": .optional(.string(maxLength: 1024))]))
            guard !record.phase.isEnd else { throw APIError.conflict("execution \(record._id) already ended (\(record.phase.rawValue))") }
            let reason = body["reason"]?.stringValue ?? "cancelled by \(principal.user)"
            guard try await self.coordinator.cancel(record.executionID, reason: reason) else {
                throw APIError.conflict("execution \(record._id) already ended")
            }
            return JSON.response(["id": .string(record._id), "cancelRequested": .string(reason)] as [String: JSONValue], status: .accepted)
        }

        router.get("/v1/executions/:id/results") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            let status = request.query("status")
            if let status, TestStatus(rawValue: status) == nil {
                throw APIError(.invalidField, "status must be one of ok, failed, partial, inconclusive", field: "status")
            }
            let (items, next) = try await self.store.resultsPage(
                execution: record.executionID, status: status, machine: request.query("machine"), try request.page())
            return JSON.response(Page(items: items.map(ResultView.init), next: next?.encoded))
        }

        router.get("/v1/executions/:id/states") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            let (items, next) = try await self.store.statesPage(execution: record.executionID, try request.page())
            return JSON.response(Page(items: items.map(StateView.init), next: next?.encoded))
        }

        router.get("/v1/executions/:id/logs") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            let logs = try await self.store.logs(
                execution: record.executionID, machine: request.query("machine"), test: request.query("test"))
            var text: [UInt8] = []
            for chunk in logs { if let piece = chunk.log.text { text += Array(piece.utf8) } }
            return try Self.ranged(text, contentType: "text/plain; charset=utf-8", request: request)
        }

        router.get("/v1/executions/:id/junit") { request, context in
            let (_, record) = try await self.execution(request, context, .read)
            var all: [ResultRecord] = []
            var page = PageRequest(limit: PageRequest.maximumLimit)
            while true {
                let (items, next) = try await self.store.resultsPage(
                    execution: record.executionID, status: nil, machine: nil, page)
                all += items
                guard let next else { break }
                page.cursor = next
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/xml; charset=utf-8"
            return Response(
                status: .ok, headers: headers,
                body: .init(byteBuffer: ByteBuffer(string: JUnitReport.xml(execution: record, results: all))))
        }
    }

    /// The execution named in the path, if the user may do `action` on it (404 when hidden, 403 when read-only).
    func execution(_ request: Request, _ context: APIRequestContext, _ action: Action) async throws
        -> (Principal, ExecutionRecord)
    {
        let principal = try await user(request)
        let id = context.parameter("id")
        guard let executionID = ExecutionID(id), let record = try await store.store.execution(executionID) else {
            throw APIError.notFound("no execution \(id)")
        }
        let owners = try await store.definition(.scenarios, id: record.scenario.id.rawValue)?.owners ?? []
        try require(action, principal, owners: owners, notFound: "execution \(id)")
        return (principal, record)
    }

    /// A body answered whole (200) or in part for a `Range: bytes=` request (206), or 416 for a range outside it.
    static func ranged(_ bytes: [UInt8], contentType: String, request: Request, extraHeaders: HTTPFields = [:]) throws
        -> Response
    {
        var headers = extraHeaders
        headers[.contentType] = contentType
        headers[.acceptRanges] = "bytes"
        guard let header = request.headers[.range] else {
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        switch ByteRange.parse(header, size: bytes.count) {
        case .none:
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        case .unsatisfiable:
            var errorHeaders = HTTPFields()
            errorHeaders[.contentRange] = "bytes */\(bytes.count)"
            throw APIError(.rangeNotSatisfiable, "the range is outside the \(bytes.count) bytes", headers: errorHeaders)
        case .range(let range):
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(bytes.count)"
            return Response(
                status: .partialContent, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes[range])))
        }
    }
}

/// A single `Range: bytes=` request (RFC 9110 §14.1.2). Several ranges are not supported: the whole body is sent.
public enum ByteRange: Equatable, Sendable {
    /// No usable range header: send everything.
    case none
    case unsatisfiable
    /// The closed range of byte offsets to send.
    case range(ClosedRange<Int>)

    public static func parse(_ header: String, size: Int) -> ByteRange {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("bytes=") else { return .none }
        let spec = trimmed.dropFirst("bytes=".count)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .none }
        let first = spec[..<dash].trimmingCharacters(in: .whitespaces)
        let last = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            // The last N bytes.
            guard let count = Int(last), count >= 0 else { return .none }
            guard count > 0, size > 0 else { return .unsatisfiable }
            return .range(max(0, size - count)...(size - 1))
        }
        guard let start = Int(first), start >= 0 else { return .none }
        var end = size - 1
        if !last.isEmpty {
            guard let value = Int(last), value >= start else { return .none }
            end = min(value, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .range(start...end)
    }
}

/// JUnit XML of an execution's stored results: one `<testsuite>` per machine.
enum JUnitReport {
    static func xml(execution: ExecutionRecord, results: [ResultRecord]) -> String {
        let byMachine = Dictionary(grouping: results, by: { $0.machine.rawValue })
        let failures = results.filter { $0.result.status == .failed }.count
        let errors = results.filter { $0.result.status == .inconclusive || $0.result.status == .partial }.count
        let total = results.reduce(0.0) { $0 + Double($1.result.durationMs.value) / 1000 }
        var out = #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
        out += #"<testsuites name="\#(escape(execution.scenario.id.rawValue))" tests="\#(results.count)" failures="\#(failures)" errors="\#(errors)" time="\#(seconds(total))">"# + "\n"
        for machine in byMachine.keys.sorted() {
            let cases = byMachine[machine]!
            let time = cases.reduce(0.0) { $0 + Double($1.result.durationMs.value) / 1000 }
            let suiteFailures = cases.filter { $0.result.status == .failed }.count
            let suiteErrors = cases.filter { $0.result.status == .inconclusive || $0.result.status == .partial }.count
            out += #"  <testsuite name="\#(escape(execution.suite.id.rawValue))@\#(escape(machine))" tests="\#(cases.count)" failures="\#(suiteFailures)" errors="\#(suiteErrors)" time="\#(seconds(time))" hostname="\#(escape(machine))">"# + "\n"
            for record in cases {
                let result = record.result
                let time = Double(result.durationMs.value) / 1000
                out += #"    <testcase name="\#(escape(result.name))" classname="\#(escape(execution.suite.id.rawValue)).\#(escape(result.testID.rawValue))" time="\#(seconds(time))""#
                let message = escape(result.message ?? "")
                switch result.status {
                case .ok:
                    out += "/>\n"
                case .failed:
                    out += ">\n      <failure message=\"\(message)\">\(escape(result.description ?? result.message ?? ""))</failure>\n    </testcase>\n"
                case .partial, .inconclusive:
                    out += ">\n      <error type=\"\(result.status.rawValue)\" message=\"\(message)\">\(escape(result.description ?? result.message ?? ""))</error>\n    </testcase>\n"
                }
            }
            out += "  </testsuite>\n"
        }
        out += "</testsuites>\n"
        return out
    }

    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }

    static func escape(_ text: String) -> String { XMLText.escape(text) }
}
