import CTACoordinator
import CTACore
import CTADefinitions
import CTAMongo
import Foundation
import Hummingbird
import NIOCore

// Health, readiness and Prometheus metrics: no authentication.

extension API {
    func addHealthRoutes(to router: Router<APIRequestContext>) {
        router.get("/health") { _, _ in JSON.response(["status": "ok"] as [String: String]) }

        router.get("/ready") { _, _ in
            var failed: [String: String] = [:]
            do {
                _ = try await self.store.database.runCommand(["ping": 1])
            } catch {
                failed["mongodb"] = "\(error)"
            }
            do {
                _ = try await self.coordinator.queueDepths([Topology.resultsQueue])
            } catch {
                failed["broker"] = "\(error)"
            }
            guard failed.isEmpty else {
                let message = failed.keys.sorted().map { "\($0): \(failed[$0]!)" }.joined(separator: "; ")
                throw APIError(
                    .unavailable, "not ready: \(message)",
                    extra: ["failed": .object(failed.mapValues { .string($0) })])
            }
            return JSON.response(["status": "ready"] as [String: String])
        }

        router.get("/metrics") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: try await self.metricsText())))
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of the coordinator's state, read from the database and the
    /// broker at scrape time, and of this process's HTTP requests.
    func metricsText() async throws -> String {
        var out = MetricsWriter()
        let executions = store.store.executionsCollection
        out.header("cta_executions", "Executions by phase.", type: "gauge")
        for phase in ["pending", "running", "finished", "cancelled", "timeout"] {
            out.sample("cta_executions", ["phase": phase], Double(try await executions.count(["phase": .string(phase)])))
        }

        // Trigger to dispatch, over the most recent dispatched executions.
        let recent = try await executions.find(
            ["dispatchedAt": ["$ne": .null]], sort: .descending("createdAt"),
            projection: .including("createdAt", "dispatchedAt"), limit: MetricsWriter.latencyWindow, as: BSONDocument.self)
        var latencies: [Double] = []
        for row in recent {
            if case .date(let created)? = row["createdAt"], case .date(let dispatched)? = row["dispatchedAt"] {
                latencies.append(max(0, dispatched.timeIntervalSince(created)))
            }
        }
        out.header(
            "cta_dispatch_latency_seconds",
            "Time from an execution's request to its dispatch, over the last \(MetricsWriter.latencyWindow) dispatched executions.",
            type: "histogram")
        out.histogram("cta_dispatch_latency_seconds", latencies, buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])

        out.header("cta_results_ingested_total", "Test results stored.", type: "counter")
        out.sample("cta_results_ingested_total", [:], Double(try await store.store.resultsCollection.count()))

        out.header("cta_queue_depth", "Messages ready in the coordinator's queues.", type: "gauge")
        if let depths = try? await coordinator.queueDepths(Topology.coordinatorQueues.map(\.name)) {
            for name in depths.keys.sorted() { out.sample("cta_queue_depth", ["queue": name], Double(depths[name]!)) }
        }

        out.header("cta_machines_online", "Machines with a heartbeat in their last three intervals.", type: "gauge")
        out.sample(
            "cta_machines_online", [:], Double(try await store.store.machinesCollection.count(["onlineUntil": ["$gt": .date(Date())]])))

        out.header("cta_http_requests_total", "HTTP requests answered by this coordinator, by route and status.", type: "counter")
        let counts = metrics.snapshot
        for key in counts.keys.sorted(by: { ($0.route, $0.status) < ($1.route, $1.status) }) {
            out.sample("cta_http_requests_total", ["route": key.route, "status": String(key.status)], Double(counts[key]!))
        }
        return out.text
    }
}

/// Writes the Prometheus text format.
struct MetricsWriter {
    static let latencyWindow = 10_000
    var text = ""

    mutating func header(_ name: String, _ help: String, type: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
        text += name + Self.labels(labels) + " " + Self.number(value) + "\n"
    }

    mutating func histogram(_ name: String, _ values: [Double], buckets: [Double]) {
        for bound in buckets {
            sample("\(name)_bucket", ["le": Self.number(bound)], Double(values.filter { $0 <= bound }.count))
        }
        sample("\(name)_bucket", ["le": "+Inf"], Double(values.count))
        sample("\(name)_sum", [:], values.reduce(0, +))
        sample("\(name)_count", [:], Double(values.count))
    }

    static func labels(_ labels: [String: String]) -> String {
        guard !labels.isEmpty else { return "" }
        let pairs = labels.keys.sorted().map { key in
            let value = labels[key]!.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
            return "\(key)=\"\(value)\""
        }
        return "{" + pairs.joined(separator: ",") + "}"
    }

    static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}
