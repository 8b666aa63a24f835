import CTABroker
import CTACore
import CTAMessaging
import Synchronization
import Foundation
import Logging
import CTADefinitions

// The composer: claims pending executions, finds the machines that match, and publishes the work per run mode.

extension Coordinator {
    /// Wakes the composer at once (a new execution or a new machine), instead of at its next interval.
    public func wakeComposer() {
        wake.signal()
    }

    /// Hands an execution just requested in this process to the composer: it is matched from `record` and
    /// claimed and planned in one write, without first being looked for in the store. Whatever goes wrong on that
    /// path (another composer took it, no machine matches) leaves it to the usual claim.
    public func wakeComposer(with record: ExecutionRecord) {
        handed.withLock { $0.append(record) }
        wake.signal()
    }

    func composeLoop() async {
        while !Task.isCancelled {
            for record in handed.withLock({ list in defer { list.removeAll() }; return list }) {
                await compose(handed: record)
            }
            await composeDue()
            await wake.wait(upTo: settings.composerInterval)
        }
    }

    /// The fast path for an execution requested in this process.
    func compose(handed record: ExecutionRecord) async {
        // A VM execution takes the usual path: its VM is made first.
        guard record.phase == .pending, record.dispatch == nil, record.cancelRequested == nil, record.provision == nil
        else { return }
        let now = Date()
        let holder = settings.instance
        do {
            guard now < record.pendingDeadline, record.nextAttemptAt.map({ $0 <= now }) ?? true else { return }
            let machines = try await recentMachines(now: now)
            let matching = MachineMatcher(selector: record.selector, now: now).matching(machines)
            guard let plan = try await makePlan(record, matching: matching),
                try await store.claimWithPlan(
                    plan, execution: record.executionID, holder: holder, now: now,
                    until: now.addingTimeInterval(settings.claimDuration.timeInterval))
            else { return }
            var claimed = record
            claimed.dispatch = plan
            await dispatch(claimed, plan: plan)
        } catch {
            logger.notice(
                "handed execution left to the next look", metadata: ["cta.execution": "\(record.executionID)", "cta.error": "\(error)"])
        }
    }

    /// Claims and composes every due pending execution.
    func composeDue() async {
        while !Task.isCancelled {
            let now = Date()
            let claimed: ExecutionRecord?
            do {
                claimed = try await store.claimPendingExecution(
                    holder: settings.instance, now: now, until: now.addingTimeInterval(settings.claimDuration.timeInterval))
            } catch {
                logger.warning("cannot claim pending executions", metadata: ["cta.error": "\(error)"])
                return
            }
            guard let execution = claimed else { return }
            await compose(execution)
        }
    }

    /// Dispatches a claimed execution, or leaves it pending with an explanation, or ends it when its pending
    /// deadline passed or it was cancelled before it ran.
    func compose(_ record: ExecutionRecord) async {
        let execution = record.executionID
        let now = Date()
        let holder = settings.instance
        let plan: DispatchPlan
        do {
            if let reason = record.cancelRequested {
                _ = try await end(record, phase: .cancelled, reason: reason, counts: ResultCounts())
                return
            }
            if now >= record.pendingDeadline {
                let why = record.pending?.summary ?? "it was not dispatched"
                _ = try await end(
                    record, phase: .timeout, reason: "pending deadline passed: \(why)", counts: ResultCounts())
                logger.info("execution timed out pending", metadata: ["cta.execution": "\(execution)"])
                return
            }
            if let saved = record.dispatch {
                // A composer died between saving the plan and marking it published: publish the same messages again.
                plan = saved
            } else {
                switch try await choosePlan(record, now: now) {
                case .plan(let made):
                    guard try await store.savePlan(made, execution: execution, holder: holder) else { return }
                    plan = made
                case .waiting(let explanation):
                    try await store.deferExecution(
                        execution, holder: holder, explanation: explanation,
                        retryAt: now.addingTimeInterval(settings.retryInterval.timeInterval))
                    return
                }
            }
        } catch {
            logger.warning("dispatch failed; retrying", metadata: ["cta.execution": "\(execution)", "cta.error": "\(error)"])
            try? await store.deferExecution(
                execution, holder: holder,
                explanation: PendingExplanation(summary: "dispatch failed: \(error)", candidates: [], checkedAt: now),
                retryAt: now.addingTimeInterval(settings.retryInterval.timeInterval))
            return
        }
        await dispatch(record, plan: plan)
    }

    /// Publishes a claimed execution's saved plan and marks it dispatched; on failure the claim is released and
    /// the execution looked at again after the retry interval (its plan, saved, is published as it is).
    private func dispatch(_ record: ExecutionRecord, plan: DispatchPlan) async {
        let execution = record.executionID
        let holder = settings.instance
        do {
            try await publishPlan(plan, record: record)
            let dispatched = Date()
            try await store.markDispatched(execution, holder: holder, at: dispatched)
            metrics.dispatched(after: dispatched.timeIntervalSince(record.createdAt))
            logger.info(
                "execution dispatched",
                metadata: [
                    "cta.execution": "\(execution)", "cta.runMode": "\(record.runMode.rawValue)",
                    "cta.machines": "\(plan.machines.map(\.rawValue).joined(separator: ","))",
                    "cta.group": "\(plan.group?.rawValue ?? "-")",
                ])
        } catch {
            logger.warning("dispatch failed; retrying", metadata: ["cta.execution": "\(execution)", "cta.error": "\(error)"])
            let now = Date()
            try? await store.deferExecution(
                execution, holder: holder,
                explanation: PendingExplanation(summary: "dispatch failed: \(error)", candidates: [], checkedAt: now),
                retryAt: now.addingTimeInterval(settings.retryInterval.timeInterval))
        }
    }

    /// The plan: on the execution's own VM when its configuration provisions one, else among the matching
    /// machines; or why it waits.
    private func choosePlan(_ record: ExecutionRecord, now: Date) async throws -> PlanChoice {
        if let provision = record.provision { return try await vmPlan(record, provision: provision, now: now) }
        let machines = try await recentMachines(now: now)
        let matcher = MachineMatcher(selector: record.selector, now: now)
        guard let made = try await makePlan(record, matching: matcher.matching(machines)) else {
            return .waiting(matcher.explanation(machines, configuration: record.configuration))
        }
        return .plan(made)
    }

    /// The plan for the run mode, or nil when no machine can take the execution now.
    private func makePlan(_ record: ExecutionRecord, matching: [MachineRecord]) async throws -> DispatchPlan? {
        switch record.runMode {
        case .mono:
            guard let machine = MachineMatcher.pickOne(matching) else { return nil }
            return DispatchPlan(machines: [machine.name], eventIDs: [EventID()])
        case .stress:
            guard !matching.isEmpty else { return nil }
            return DispatchPlan(machines: matching.map(\.name), eventIDs: matching.map { _ in EventID() })
        case .group:
            // The first of the configuration's groups with a matching online member is the pool.
            let group = record.selector.groups.first { group in matching.contains { $0.groups.contains(group) } }
            guard let group else { return nil }
            return DispatchPlan(machines: [], group: group, eventIDs: [EventID()])
        case .parallel:
            guard !matching.isEmpty else { return nil }
            let queue = Topology.parallelQueue(execution: record.executionID)
            // One id per test, then one per announcement.
            let ids = (0..<(record.tests.count + matching.count)).map { _ in EventID() }
            return DispatchPlan(machines: matching.map(\.name), parallelQueue: queue, eventIDs: ids)
        }
    }

    func dispatchContext(_ record: ExecutionRecord) -> ExecutionContext {
        ExecutionContext(
            executionID: record.executionID, scenario: record.scenario, suite: record.suite, runMode: record.runMode,
            env: record.env,
            timeouts: ExecutionTimeouts(
                pendingDeadline: Timestamp(record.pendingDeadline),
                runningTimeoutMs: Milliseconds(UInt64(max(0, record.runningTimeoutMs)))),
            requestedBy: record.requestedBy)
    }

    /// Declares the queues the plan needs and publishes its messages with their planned ids.
    private func publishPlan(_ plan: DispatchPlan, record: ExecutionRecord) async throws {
        let context = dispatchContext(record)
        var messages: [OutgoingMessage] = []
        func add(_ payload: some EventPayload, id: EventID, routingKey: String) throws {
            let envelope = Envelope(id: id, source: source, payload: payload)
            messages.append(try OutgoingMessage.envelope(envelope, exchange: Topology.dispatchExchange, routingKey: routingKey))
        }
        switch record.runMode {
        case .mono, .stress:
            try await declareOnce(
                queues: plan.machines.map(Topology.machineQueueDeclaration),
                bindings: plan.machines.flatMap(Topology.machineBindings))
            for (machine, id) in zip(plan.machines, plan.eventIDs) {
                try add(
                    ExecutionDispatch(execution: context, attempt: plan.attempt, tests: record.tests), id: id,
                    routingKey: Topology.machineRoutingKey(machine))
            }
        case .group:
            guard let group = plan.group else { return }
            try await declareOnce(queues: [Topology.groupQueueDeclaration(group)], bindings: [Topology.groupBinding(group)])
            try add(
                ExecutionDispatch(execution: context, attempt: plan.attempt, tests: record.tests), id: plan.eventIDs[0],
                routingKey: Topology.groupRoutingKey(group))
        case .parallel:
            let execution = record.executionID
            try await connection.declareTopology(
                queues: [Topology.parallelQueueDeclaration(execution: execution)],
                bindings: [Topology.parallelBinding(execution: execution)])
            try await declareOnce(
                queues: plan.machines.map(Topology.machineQueueDeclaration),
                bindings: plan.machines.flatMap(Topology.machineBindings))
            let history = try await store.expectedDurations(record.tests.map(\.id))
            let order = MachineMatcher.longestFirst(record.tests, history: history)
            for (position, index) in order.enumerated() {
                var test = record.tests[index]
                if let expected = history[test.id] { test.expectedDurationMs = Milliseconds(UInt64(max(0, expected))) }
                try add(
                    TestDispatch(execution: context, index: index, count: record.tests.count, attempt: plan.attempt, test: test),
                    id: plan.eventIDs[position], routingKey: Topology.parallelRoutingKey(execution: execution))
            }
            for (offset, machine) in plan.machines.enumerated() {
                try add(
                    ExecutionDispatch(
                        execution: context, attempt: plan.attempt, tests: [],
                        parallel: ParallelWork(execution: execution, testCount: record.tests.count)),
                    id: plan.eventIDs[record.tests.count + offset], routingKey: Topology.machineRoutingKey(machine))
            }
        }
        for result in await connection.publish(contentsOf: messages) { try result.get() }
    }
}

extension Coordinator {
    /// The machines as stored, read at most every 200 ms: a burst of executions is matched against one read.
    /// Staleness is bounded by the same 200 ms, well under a heartbeat interval.
    func recentMachines(now: Date) async throws -> [MachineRecord] {
        if let cached = machineCache.withLock({ $0 }), now.timeIntervalSince(cached.at) < 0.2, now >= cached.at {
            return cached.machines
        }
        let machines = try await store.machines()
        machineCache.withLock { $0 = (now, machines) }
        return machines
    }

    /// Declares the queues (and their bindings) this connection has not declared yet. The broker keeps them
    /// (durable), and the connection declares what it has seen again after a reconnect.
    func declareOnce(queues: [Topology.Queue], bindings: [Topology.Binding]) async throws {
        let missing = declared.withLock { set in queues.filter { !set.contains($0.name) } }
        guard !missing.isEmpty else { return }
        let names = Set(missing.map(\.name))
        try await connection.declareTopology(queues: missing, bindings: bindings.filter { names.contains($0.queue) })
        declared.withLock { set in set.formUnion(names) }
    }
}
