import CTACoordinator
import CTACore
import CTADefinitions
import CTAMongo
import Foundation

extension MongoStore {
    /// Stores `count` ended executions of `scenario` (copies of one), so the bench measures against a database in
    /// use, not an empty one.
    func storeHistory(_ count: Int, of scenario: ScenarioID) async throws {
        guard count > 0 else { return }
        let template = try await requestExecution(of: scenario, requestedBy: "cta-bench/history", at: Date(timeIntervalSinceNow: -86_400))
        _ = try await endExecution(template.executionID, phase: .finished, reason: nil, counts: ResultCounts(ok: 1), at: Date())
        guard let ended = try await execution(template.executionID) else {
            throw BenchError("the history template was not stored")
        }
        var documents: [BSONDocument] = []
        for _ in 1..<count {
            var copy = ended
            copy._id = ExecutionID().description
            documents.append(try BSONEncoder().encode(copy))
            if documents.count == 500 {
                _ = try await database.collection("executions").insertMany(documents)
                documents.removeAll()
            }
        }
        if !documents.isEmpty { _ = try await database.collection("executions").insertMany(documents) }
    }
}

/// A bench that cannot go on, with the reason.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
