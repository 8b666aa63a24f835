import CTABroker
import CTACore
import CTAMessaging
import Foundation
import Logging
import Synchronization

/// A machine's agent reduced to its protocol: it registers, sends heartbeats, and answers every
/// `execution.dispatch` at once with `acked` then `running` (published together, with confirms); `finish`
/// ends its part of an execution. It notes when each dispatch arrived and when its states were confirmed.
final class SimulatedAgent: Sendable {
    /// When the agent saw an execution's dispatch and when the broker confirmed its `acked` and `running`.
    struct Part: Sendable {
        var attempt: Int
        var delivered: Date
        var statesConfirmed: Date?
        var ackedSeq: UInt64
        var runningSeq: UInt64
    }

    private struct State {
        var lastSeq: UInt64 = 0
        var parts: [ExecutionID: Part] = [:]
        var tasks: [Task<Void, Never>] = []
    }

    let machine: MachineName
    let connection: AMQPConnection
    let epoch = SequenceEpoch()
    private let logger: Logger
    private let state = Mutex(State())

    init(machine: MachineName, url: String, logger: Logger) throws {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "cta-bench-agent/\(machine)"
        self.machine = machine
        self.logger = logger
        connection = AMQPConnection(configuration: configuration, logger: logger)
    }

    /// Connects, declares and empties its machine queue, registers, then heartbeats every 5 s and answers
    /// dispatches until ``stop()``.
    func start() async throws {
        try await connection.connect()
        let queue = Topology.machineQueue(machine)
        try await connection.declareTopology(
            queues: [Topology.machineQueueDeclaration(machine)], bindings: Topology.machineBindings(machine))
        try await connection.purgeQueue(queue)
        let registration = AgentRegistration(
            machine: machine, hostname: machine.rawValue, addresses: ["127.0.0.1"],
            os: OperatingSystem(name: "Linux", version: "bench"), arch: "x86_64", cpuCount: 2, memoryBytes: 1 << 30,
            agentVersion: "cta-bench", startedAt: .now())
        try await publish([registration.event], sequenced: true)
        try await heartbeat()
        let consumer = try await connection.consume(queue: queue, prefetch: 10)
        let answering = Task {
            do {
                for try await delivery in consumer {
                    await self.answer(delivery)
                    delivery.ack()
                }
            } catch {
                self.logger.warning("simulated agent stopped consuming", metadata: ["cta.error": "\(error)"])
            }
        }
        let beating = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                do { try await self.heartbeat() } catch {
                    self.logger.warning("simulated agent heartbeat failed", metadata: ["cta.error": "\(error)"])
                }
            }
        }
        state.withLock { $0.tasks += [answering, beating] }
    }

    func stop() async {
        let tasks = state.withLock { state -> [Task<Void, Never>] in
            defer { state.tasks = [] }
            return state.tasks
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        _ = try? await connection.deleteQueue(Topology.machineQueue(machine))
        await connection.close()
    }

    /// What the agent noted for `execution`.
    func part(_ execution: ExecutionID) -> Part? {
        state.withLock { $0.parts[execution] }
    }

    /// Reports the execution `finished` with no results: its part holds the `acked` and `running` states.
    func finish(_ execution: ExecutionID) async throws {
        // The coordinator may store `running` before the broker's confirm reaches the agent.
        let deadline = ContinuousClock.now + .seconds(30)
        var answered = part(execution)
        while answered?.statesConfirmed == nil {
            guard ContinuousClock.now < deadline else {
                throw AgentSimulationError("no dispatch of \(execution) answered")
            }
            try await Task.sleep(for: .milliseconds(1))
            answered = part(execution)
        }
        guard let part = answered else { return }
        let finished = ExecutionStateChange(
            executionID: execution, machine: machine, state: .finished, attempt: part.attempt, counts: ResultCounts(),
            firstSeq: part.ackedSeq, lastSeq: part.runningSeq)
        try await publish([finished.event], sequenced: true)
    }

    private func answer(_ delivery: AMQPDelivery) async {
        let delivered = Date()
        guard
            case .executionDispatch(let dispatch)? = try? Envelope.decode(
                Data(delivery.body), accepting: Topology.machineQueueTypes
            ).event
        else { return }
        let execution = dispatch.execution.executionID
        let states = [ExecutionState.acked, .running].map {
            ExecutionStateChange(executionID: execution, machine: machine, state: $0, attempt: dispatch.attempt).event
        }
        do {
            let seqs = try await publish(states, sequenced: true)
            let confirmed = Date()
            state.withLock {
                $0.parts[execution] = Part(
                    attempt: dispatch.attempt, delivered: delivered, statesConfirmed: confirmed, ackedSeq: seqs[0],
                    runningSeq: seqs[1])
            }
        } catch {
            logger.warning("simulated agent could not publish states", metadata: ["cta.error": "\(error)"])
        }
    }

    private func heartbeat() async throws {
        let lastSeq = state.withLock { $0.lastSeq }
        let heartbeat = AgentHeartbeat(
            machine: machine, load: LoadAverage(one: 0, five: 0, fifteen: 0), freeSlots: 1, lastSeq: lastSeq,
            intervalMs: Milliseconds(15_000))
        try await publish([heartbeat.event], sequenced: false)
    }

    /// Publishes events in order, pipelined, each numbered in the agent's sequence when `sequenced`; returns
    /// their numbers.
    @discardableResult
    private func publish(_ events: [Event], sequenced: Bool) async throws -> [UInt64] {
        let first = state.withLock { state -> UInt64 in
            defer { if sequenced { state.lastSeq += UInt64(events.count) } }
            return state.lastSeq + 1
        }
        var messages: [OutgoingMessage] = []
        var seqs: [UInt64] = []
        for (offset, event) in events.enumerated() {
            let seq = sequenced ? first + UInt64(offset) : nil
            let envelope = Envelope(source: .agent(machine), epoch: epoch, seq: seq, event: event)
            messages.append(
                try OutgoingMessage.envelope(
                    envelope, exchange: Topology.eventsExchange, routingKey: Topology.routingKey(for: envelope.type)))
            if let seq { seqs.append(seq) }
        }
        for outcome in await connection.publish(contentsOf: messages) { try outcome.get() }
        return seqs
    }
}

struct AgentSimulationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
