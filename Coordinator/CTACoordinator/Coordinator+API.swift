import CTABroker
public import CTACore
import Foundation

// What the HTTP API asks of a running coordinator: machine drains, and the broker's view for readiness and metrics.

extension Coordinator {
    /// Publishes `agent.drain` (`drain: true` to stop taking shared work, `false` to resume) to the machine's queue,
    /// declaring the queue first if this connection has not. Throws when the broker did not confirm it.
    public func requestDrain(_ machine: MachineName, drain: Bool, reason: String?, requestedBy: String) async throws {
        try await declareOnce(queues: [Topology.machineQueueDeclaration(machine)], bindings: Topology.machineBindings(machine))
        try await publish(
            AgentDrain(machine: machine, drain: drain, reason: reason, requestedBy: requestedBy),
            routingKey: Topology.machineRoutingKey(machine))
    }

    /// Messages ready in each existing queue of `names` (a queue that does not exist is left out). Throws when the
    /// broker does not answer.
    public func queueDepths(_ names: [String]) async throws -> [String: UInt32] {
        var depths: [String: UInt32] = [:]
        for name in names {
            let state = await inspect(name)
            switch state {
            case .success(let state): depths[name] = state.messageCount
            case .failure(let error) where error.code == .notFound: continue
            case .failure(let error): throw error
            }
        }
        return depths
    }

    private func inspect(_ name: String) async -> Result<QueueState, AMQPError> {
        do {
            return .success(try await connection.queueState(name))
        } catch {
            return .failure(error)
        }
    }
}

extension Coordinator {
    /// This coordinator's instance name.
    public var instanceName: String { settings.instance }
}
