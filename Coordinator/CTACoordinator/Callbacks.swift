import CTACore
import Foundation
import Logging
public import CTADefinitions

// What follows the end of an execution: the scenario's webhooks are recorded and queued for delivery
// (WebhookDeliverer.swift sends them), and its chained scenarios are requested.

extension WebhookDefinition {
    /// Whether an execution that ended in `phase` fires this webhook: a phase in `on`, or any end state when `on`
    /// is empty.
    public func fires(after phase: ExecutionPhase) -> Bool {
        guard phase.isEnd else { return false }
        return on.isEmpty || on.contains(phase)
    }
}

extension ChainedScenario {
    /// Whether an execution that ended in `phase` starts this scenario: a phase in `on`, or `finished` when `on` is
    /// empty.
    public func starts(after phase: ExecutionPhase) -> Bool {
        guard phase.isEnd else { return false }
        return on.isEmpty ? phase == .finished : on.contains(phase)
    }
}

extension Coordinator {
    /// What follows the end of an execution, run once by the coordinator that ended it. Returns once the
    /// deliveries are recorded and the chained executions created; the deliveries are sent by the delivery loop.
    func executionEnded(_ record: ExecutionRecord, phase: ExecutionPhase, reason: String?, counts: ResultCounts) async {
        let execution = record.executionID
        let scenarioID = record.scenario.id
        let scenario: ScenarioDefinition?
        let stored: ExecutionRecord?
        do {
            scenario = try await retryingStore("load the scenario of an ended execution") {
                try await self.store.scenario(scenarioID)
            }
            stored = try await retryingStore("load an ended execution") { try await self.store.execution(execution) }
        } catch {
            return  // cancelled
        }
        guard let scenario else {
            logger.warning(
                "the scenario of an ended execution no longer exists; no webhooks or chained scenarios",
                metadata: ["cta.execution": "\(execution)", "cta.scenario": "\(scenarioID.rawValue)"])
            return
        }
        let payload = ExecutionEndedPayload(
            executionID: execution, scenario: record.scenario, phase: phase, reason: reason, counts: counts,
            startedAt: (stored?.startedAt ?? record.startedAt).map(Timestamp.init),
            endedAt: Timestamp(stored?.endedAt ?? Date()), requestedBy: record.requestedBy)
        await queueWebhooks(scenario, payload: payload)
        await startChained(scenario, after: record, phase: phase)
    }

    /// Records a delivery for each webhook that fires, claimed by this coordinator, and queues it.
    func queueWebhooks(_ scenario: ScenarioDefinition, payload: ExecutionEndedPayload) async {
        // The definition's webhooks, then those added through the API (numbered after them).
        let scenarioID = scenario.id
        let managed: [ManagedWebhook]
        do {
            managed = try await retryingStore("load the API webhooks of a scenario") {
                try await self.store.managedWebhooks(scenarioID)
            }
        } catch {
            return  // cancelled
        }
        var all: [(webhook: WebhookDefinition, managed: String?)] = scenario.webhooks.map { ($0, nil) }
        for webhook in managed { all.append((webhook.definition, webhook._id)) }
        let webhooks = all.enumerated().filter { $0.element.webhook.fires(after: payload.phase) }
        guard !webhooks.isEmpty else { return }
        let body: String
        do {
            body = try payload.json()
        } catch {
            logger.error(
                "cannot encode a webhook body",
                metadata: ["cta.execution": "\(payload.executionID)", "cta.error": "\(error)"])
            return
        }
        for (index, entry) in webhooks {
            let webhook = entry.webhook
            let now = Date()
            var delivery = WebhookDeliveryRecord(
                executionID: payload.executionID, scenario: scenario.id, webhook: index, url: webhook.url,
                event: ExecutionEndedPayload.event, body: body,
                signature: webhook.secret.map { ExecutionEndedPayload.signature(of: body, secret: $0) },
                maxAttempts: settings.webhooks.maxAttempts, createdAt: now)
            delivery.managedWebhook = entry.managed
            delivery.claimedBy = settings.instance
            delivery.claimToken = UUID().uuidString.lowercased()
            delivery.claimedUntil = webhookClaim(from: now)
            let created = delivery
            do {
                try await retryingStore("record a webhook delivery") {
                    try await self.store.createWebhookDelivery(created)
                }
            } catch {
                return  // cancelled
            }
            webhookQueue.add(created)
            logger.info(
                "webhook delivery queued",
                metadata: [
                    "cta.webhook.delivery": "\(created._id)", "cta.execution": "\(payload.executionID)",
                    "cta.webhook.index": "\(index)",
                ])
        }
    }

    /// Requests an execution of each chained scenario that the end state starts, then wakes the composer.
    func startChained(_ scenario: ScenarioDefinition, after record: ExecutionRecord, phase: ExecutionPhase) async {
        let execution = record.executionID
        let requestedBy = "chain/\(record.scenario.id.rawValue)"
        for entry in scenario.chain where entry.starts(after: phase) {
            let outcome: ChainOutcome
            do {
                outcome = try await retryingStore("request a chained execution") {
                    do {
                        let chained = try await self.store.requestExecution(
                            of: entry.scenario, requestedBy: requestedBy, chainedFrom: execution)
                        return .started(chained)
                    } catch let error as ExecutionRequestError {
                        return .refused(error.description)
                    }
                }
            } catch {
                return  // cancelled
            }
            switch outcome {
            case .started(let chained):
                wakeComposer(with: chained)
                logger.info(
                    "chained execution requested",
                    metadata: [
                        "cta.execution": "\(execution)", "cta.chained.execution": "\(chained.executionID)",
                        "cta.chained.scenario": "\(entry.scenario.rawValue)",
                    ])
            case .refused(let why):
                logger.error(
                    "cannot start a chained scenario",
                    metadata: [
                        "cta.execution": "\(execution)", "cta.chained.scenario": "\(entry.scenario.rawValue)",
                        "cta.error": "\(why)",
                    ])
            }
        }
    }
}

/// The result of requesting a chained execution: the definition problems are final, not retried.
private enum ChainOutcome: Sendable {
    case started(ExecutionRecord)
    case refused(String)
}
