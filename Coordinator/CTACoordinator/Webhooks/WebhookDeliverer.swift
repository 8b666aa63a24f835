import CTACore
import Foundation
import Logging

// Sending webhook deliveries. A delivery is created claimed by the coordinator that ended the execution and handed
// to its delivery loop, which sends it in a child task of its own: the consumer that ended the execution never
// waits for a receiver. The claim is held while attempts are made and while the task waits for the next one; when
// a coordinator dies, its claims expire and the timekeeper's sweep of any coordinator takes the due deliveries over.

/// Deliveries handed from where they are created or taken over to the loop that sends them.
final class WebhookQueue: Sendable {
    let stream: AsyncStream<WebhookDeliveryRecord>
    private let continuation: AsyncStream<WebhookDeliveryRecord>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: WebhookDeliveryRecord.self)
    }

    /// Queues a delivery claimed by this coordinator.
    func add(_ delivery: WebhookDeliveryRecord) {
        continuation.yield(delivery)
    }
}

extension Coordinator {
    /// Sends each queued delivery in a child task until cancelled. On cancellation the deliveries in progress give
    /// up their claims, so that another coordinator continues them when they are due.
    func deliveryLoop() async {
        await withDiscardingTaskGroup { group in
            for await delivery in webhookQueue.stream {
                group.addTask { await self.deliver(delivery) }
            }
        }
    }

    /// How long a claim lasts beyond `start`: one attempt's time limit plus the composer's claim margin.
    func webhookClaim(from start: Date) -> Date {
        start.addingTimeInterval(settings.webhooks.attemptTimeout.timeInterval + settings.claimDuration.timeInterval)
    }

    /// Takes over due pending deliveries that nobody holds (their coordinator stopped or died) and queues them.
    func resumeWebhookDeliveries(now: Date) async throws {
        // Bounded, so one sweep cannot spend all its time here; the rest are taken by the next sweeps.
        for _ in 0..<100 {
            let token = UUID().uuidString.lowercased()
            guard
                let delivery = try await store.claimDueWebhookDelivery(
                    holder: settings.instance, token: token, now: now, until: webhookClaim(from: now))
            else { return }
            logger.info(
                "taking over a webhook delivery",
                metadata: [
                    "cta.webhook.delivery": "\(delivery._id)", "cta.execution": "\(delivery.executionID)",
                    "cta.webhook.attempts": "\(delivery.attempts.count)",
                ])
            webhookQueue.add(delivery)
        }
    }

    /// Makes the remaining attempts of a delivery this coordinator holds, recording each, until it is delivered,
    /// failed, the claim is lost, or the task is cancelled (then the claim is released).
    func deliver(_ claimed: WebhookDeliveryRecord) async {
        guard let token = claimed.claimToken else { return }
        var delivery = claimed
        let id = claimed._id
        var policy = settings.webhooks
        policy.maxAttempts = delivery.maxAttempts
        let client = HTTPClient()
        var generator = SystemRandomNumberGenerator()
        var metadata: Logger.Metadata = [
            "cta.webhook.delivery": "\(delivery._id)", "cta.execution": "\(delivery.executionID)",
            "cta.scenario": "\(delivery.scenario.rawValue)", "cta.webhook.index": "\(delivery.webhook)",
        ]
        do {
            while true {
                if let due = delivery.nextAttemptAt, due.timeIntervalSinceNow > 0 {
                    try await Task.sleep(for: .seconds(due.timeIntervalSinceNow))
                }
                let number = delivery.attempts.count + 1
                let renewed = try await retryingStore("renew a webhook claim") {
                    try await self.store.renewWebhookClaim(id, token: token, until: self.webhookClaim(from: Date()))
                }
                guard renewed else {
                    logger.info("webhook delivery taken over by another coordinator", metadata: metadata)
                    return
                }
                let started = Date()
                let clock = ContinuousClock.now
                let outcome = await attempt(delivery, client: client, timeout: policy.attemptTimeout)
                let elapsed = ContinuousClock.now - clock
                // An attempt cut short by shutdown is not counted: another coordinator makes it again.
                try Task.checkCancellation()
                let record = WebhookAttempt(
                    number: number, at: started, durationMs: Int64(elapsed.timeInterval * 1000), outcome: outcome,
                    by: settings.instance)
                let decision = policy.decision(after: number, outcome: outcome, now: Date(), using: &generator)
                var holdUntil = Date()
                if case .retry(let next) = decision { holdUntil = webhookClaim(from: next) }
                let hold = holdUntil
                let recorded = try await retryingStore("record a webhook attempt") {
                    try await self.store.recordWebhookAttempt(
                        id, token: token, attempt: record, decision: decision, holdUntil: hold)
                }
                guard recorded else {
                    logger.info("webhook delivery taken over by another coordinator", metadata: metadata)
                    return
                }
                metadata["cta.webhook.attempt"] = "\(number)"
                metadata["cta.webhook.result"] = "\(record.statusCode.map(String.init) ?? record.error ?? "-")"
                switch decision {
                case .delivered:
                    logger.info("webhook delivered", metadata: metadata)
                    return
                case .failed:
                    logger.warning("webhook delivery failed", metadata: metadata)
                    return
                case .retry(let next):
                    logger.info(
                        "webhook attempt failed; retrying",
                        metadata: metadata.merging(["cta.webhook.next": "\(next)"]) { $1 })
                    delivery.attempts.append(record)
                    delivery.nextAttemptAt = next
                }
            }
        } catch {
            // Cancelled: the coordinator is stopping. The claim is given up in a task of its own (store calls
            // refuse to start in a cancelled task) that this one awaits, so the coordinator stops after it.
            let store = self.store
            await Task { try? await store.releaseWebhookClaim(id, token: token) }.value
            logger.info("webhook delivery left to other coordinators", metadata: metadata)
        }
    }

    /// One POST of the delivery's body.
    func attempt(_ delivery: WebhookDeliveryRecord, client: HTTPClient, timeout: Duration) async
        -> WebhookAttemptOutcome
    {
        let target: HTTPTarget
        do {
            target = try HTTPTarget(delivery.url)
        } catch {
            return .refused(error.detail)
        }
        do {
            return .status(
                try await client.post(target, headers: delivery.headers, body: delivery.body, timeout: timeout))
        } catch {
            return .error(error.description)
        }
    }
}

extension WebhookAttempt {
    init(number: Int, at: Date, durationMs: Int64, outcome: WebhookAttemptOutcome, by: String) {
        switch outcome {
        case .status(let code):
            self.init(number: number, at: at, durationMs: durationMs, statusCode: code, by: by)
        case .error(let error), .refused(let error):
            self.init(number: number, at: at, durationMs: durationMs, error: error, by: by)
        }
    }
}
