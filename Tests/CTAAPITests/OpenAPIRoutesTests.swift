import CTABroker
import CTACoordinator
import CTAMongo
import Foundation
import Hummingbird
import Logging
import Testing

@testable import CTAAPI

/// The operations of docs/openapi.yaml: `METHOD /path/{param}` and their documented statuses. Reads the layout
/// the file is written in (paths at two spaces, methods at four, statuses at eight).
func documentedOperations() throws -> [String: Set<Int>] {
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
            let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
            current = "\(method) \(path)"
            operations[current!] = []
        } else if let current, line.hasPrefix("        '"), let status = Int(line.dropFirst(9).prefix(3)) {
            operations[current]!.insert(status)
        }
    }
    return operations
}

@Suite("OpenAPI document")
struct OpenAPIRoutesTests {
    /// `{name}` and `:name` both become `{}`.
    static func normalise(_ route: String) -> String {
        route.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix(":") || part.hasPrefix("{") ? "{}" : String(part)
        }.joined(separator: "/")
    }

    @Test("every routed method and path is documented, and every documented one is routed")
    func routesMatch() async throws {
        let documented = try documentedOperations()
        #expect(documented.count > 40)
        for (operation, statuses) in documented {
            #expect(!statuses.isEmpty, "\(operation) documents no status")
        }
        // The router, built as `serve` builds it (nothing connects).
        let client = try MongoClient(uri: "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=100", logger: Logger(label: "test"))
        let store = MongoStore(database: client.database("unused"))
        let coordinator = Coordinator(
            store: store, broker: try AMQPConfiguration(url: "amqp://guest:guest@127.0.0.1:1/"),
            settings: Coordinator.Settings(instance: "test"), logger: Logger(label: "test"))
        let api = API(store: APIStore(store: store), coordinator: coordinator, configuration: APIConfiguration(), logger: Logger(label: "test"))
        let router = APIServer(api: api).router()
        let routed = Set(router.routes.map { Self.normalise("\($0.method.rawValue) \($0.path)") })
        let listed = Set(documented.keys.map(Self.normalise))
        #expect(routed.subtracting(listed).isEmpty, "routed but not documented: \(routed.subtracting(listed).sorted())")
        #expect(listed.subtracting(routed).isEmpty, "documented but not routed: \(listed.subtracting(routed).sorted())")
        try await client.shutdown()
    }
}
