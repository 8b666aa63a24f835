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

    /// The Prometheus text exposition (format 0.0.4): executions and machines read from the database, queue depths
    /// from the broker, and what this process counted (dispatch latency, results stored, HTTP requests).
    func metricsText() async throws -> String {
        var out = MetricsWriter()
        let executions = store.store.executionsCollection
        out.header("cta_executions", "Executions by phase.", type: "gauge")
        for phase in ["pending", "running", "finished", "cancelled", "timeout"] {
            out.sample("cta_executions", ["phase": phase], Double(try await executions.count(["phase": .string(phase)])))
        }

        out.header(
            "cta_dispatch_latency_seconds", "Time from an execution's request to its dispatch by this coordinator.",
            type: "histogram")
        out.histogram("cta_dispatch_latency_seconds", coordinator.metrics.dispatchLatency)

        out.header("cta_results_ingested_total", "Test results stored by this coordinator.", type: "counter")
        out.sample("cta_results_ingested_total", [:], Double(coordinator.metrics.resultsStored))

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
    var text = ""

    mutating func header(_ name: String, _ help: String, type: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [String: String], _ value: Double) {
        text += name + Self.labels(labels) + " " + Self.number(value) + "\n"
    }

    mutating func histogram(_ name: String, _ histogram: CoordinatorMetrics.Histogram) {
        for (bound, count) in zip(histogram.bounds, histogram.counts) {
            sample("\(name)_bucket", ["le": Self.number(bound)], Double(count))
        }
        sample("\(name)_bucket", ["le": "+Inf"], Double(histogram.count))
        sample("\(name)_sum", [:], histogram.sum)
        sample("\(name)_count", [:], Double(histogram.count))
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
