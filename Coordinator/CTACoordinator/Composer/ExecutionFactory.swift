public import CTACore
public import Foundation
import CTADefinitions

/// Why an execution could not be created from a scenario.
public struct ExecutionRequestError: Error, CustomStringConvertible {
    public var description: String
}

extension Store {
    /// Creates a pending execution of `scenario` from the stored definitions: the suite's tests as they are now
    /// (later edits do not change it), the configuration's selector, the environment (configuration, then the
    /// scenario's own, then `env` of the request), `tags`, and its deadlines. The composer dispatches it.
    public func requestExecution(
        of scenario: ScenarioID, requestedBy: String, at now: Date = Date(), chainedFrom: ExecutionID? = nil,
        env: [String: String] = [:], tags: [String] = []
    ) async throws -> ExecutionRecord {
        guard let definition = try await self.scenario(scenario) else {
            throw ExecutionRequestError(description: "no scenario \(scenario)")
        }
        guard let suite = try await self.suite(definition.suite) else {
            throw ExecutionRequestError(description: "scenario \(scenario) names suite \(definition.suite), which does not exist")
        }
        guard let configuration = try await self.configuration(definition.configuration) else {
            throw ExecutionRequestError(
                description: "scenario \(scenario) names configuration \(definition.configuration), which does not exist")
        }
        let found = try await tests(suite.tests)
        let missing = suite.tests.filter { found[$0] == nil }
        guard missing.isEmpty else {
            throw ExecutionRequestError(
                description: "suite \(suite.id) names tests that do not exist: \(missing.map(\.rawValue).joined(separator: ", "))")
        }
        guard !suite.tests.isEmpty else { throw ExecutionRequestError(description: "suite \(suite.id) has no tests") }
        let created = ExecutionRecord(
            id: ExecutionID(), scenario: ScenarioReference(id: definition.id, name: definition.name),
            suite: SuiteReference(id: suite.id, name: suite.name), configuration: configuration.id,
            selector: configuration.selector, runMode: definition.runMode,
            env: configuration.env.merging(definition.env) { _, scenario in scenario }.merging(env) { _, request in request },
            requestedBy: requestedBy,
            tests: suite.tests.compactMap { found[$0] }, createdAt: now,
            pendingDeadline: now.addingTimeInterval(Double(definition.pendingTimeoutMs.value) / 1000),
            runningTimeoutMs: Int64(clamping: definition.runningTimeoutMs.value),
            chainedFrom: chainedFrom?.description)
        var record = created
        if !tags.isEmpty { record.tags = tags }
        try await createExecution(record)
        return record
    }
}
