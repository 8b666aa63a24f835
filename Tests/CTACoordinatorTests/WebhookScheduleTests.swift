import CTACoordinator
import CTACore
import Foundation
import Testing
import CTADefinitions

/// A seeded generator (SplitMix64), so that jittered delays are reproducible.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

@Suite("Webhook retry schedule")
struct WebhookScheduleTests {
    @Test("the default schedule: 5 attempts, waits of 4, 8, 16 and 32 seconds, about a minute in all")
    func defaults() {
        let policy = WebhookPolicy()
        #expect(policy.maxAttempts == 5)
        #expect(policy.attemptTimeout == .seconds(10))
        let waits = (1..<policy.maxAttempts).map { policy.nominalDelay(after: $0) }
        #expect(waits == [.seconds(4), .seconds(8), .seconds(16), .seconds(32)])
        #expect(waits.reduce(.zero, +) == .seconds(60))
    }

    @Test("waits double until the maximum, then stay there")
    func capped() {
        let policy = WebhookPolicy(maxAttempts: 10, initialDelay: .seconds(1), maximumDelay: .seconds(10))
        let waits = (1...8).map { policy.nominalDelay(after: $0) }
        #expect(
            waits == [
                .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10), .seconds(10),
                .seconds(10),
            ])
        // Far past any representable doubling, the maximum still holds.
        #expect(policy.nominalDelay(after: 500) == .seconds(10))
    }

    @Test("jitter draws each wait within ±jitter of its nominal value, and does vary it")
    func jitter() {
        let policy = WebhookPolicy(jitter: 0.2)
        var generator = SeededGenerator(state: 42)
        for attempt in 1...4 {
            let nominal = policy.nominalDelay(after: attempt)
            var seen = Set<Duration>()
            for _ in 0..<200 {
                let wait = policy.delay(after: attempt, using: &generator)
                #expect(wait >= nominal * 0.8 - .nanoseconds(1) && wait <= nominal * 1.2 + .nanoseconds(1))
                seen.insert(wait)
            }
            #expect(seen.count > 100, "jitter should spread the waits of attempt \(attempt)")
        }
    }

    @Test("without jitter the waits are exact")
    func noJitter() {
        let policy = WebhookPolicy(initialDelay: .milliseconds(50), jitter: 0)
        var generator = SeededGenerator(state: 1)
        #expect(
            (1...3).map { policy.delay(after: $0, using: &generator) } == [
                .milliseconds(50), .milliseconds(100), .milliseconds(200),
            ])
    }

    @Test("settings are clamped to sensible values")
    func clamped() {
        let policy = WebhookPolicy(maxAttempts: 0, initialDelay: .seconds(5), maximumDelay: .seconds(1), jitter: 3)
        #expect(policy.maxAttempts == 1)
        #expect(policy.maximumDelay == .seconds(5))
        #expect(policy.jitter == 1)
    }

    @Test("2xx is delivered; other answers and errors retry until the last attempt, then fail")
    func decisions() {
        let policy = WebhookPolicy(maxAttempts: 3, initialDelay: .seconds(2), jitter: 0)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var generator = SeededGenerator(state: 7)
        for code in [200, 201, 202, 204, 299] {
            #expect(policy.decision(after: 1, outcome: .status(code), now: now, using: &generator) == .delivered)
        }
        #expect(policy.decision(after: 3, outcome: .status(200), now: now, using: &generator) == .delivered)
        for outcome: WebhookAttemptOutcome in [
            .status(500), .status(404), .status(301), .status(199), .error("refused"),
        ] {
            #expect(policy.decision(after: 1, outcome: outcome, now: now, using: &generator) == .retry(at: now + 2))
            #expect(policy.decision(after: 2, outcome: outcome, now: now, using: &generator) == .retry(at: now + 4))
            #expect(policy.decision(after: 3, outcome: outcome, now: now, using: &generator) == .failed)
        }
        // A URL that can never be delivered to is not retried.
        #expect(policy.decision(after: 1, outcome: .refused("https"), now: now, using: &generator) == .failed)
    }
}

@Suite("Webhook and chain triggers")
struct CallbackTriggerTests {
    @Test("a webhook without `on` fires on every end state, never before the end")
    func webhookDefault() {
        let webhook = WebhookDefinition(url: "http://example.invalid/")
        #expect(ExecutionPhase.allCases.filter { webhook.fires(after: $0) } == [.finished, .cancelled, .timeout])
    }

    @Test("a webhook with `on` fires on those end states only")
    func webhookSelected() {
        let webhook = WebhookDefinition(url: "http://example.invalid/", on: [.timeout, .cancelled])
        #expect(ExecutionPhase.allCases.filter { webhook.fires(after: $0) } == [.cancelled, .timeout])
    }

    @Test("a chain entry without `on` starts after `finished` only; with `on`, after those")
    func chain() {
        let plain = ChainedScenario(scenario: ScenarioID(unchecked: "next"))
        #expect(ExecutionPhase.allCases.filter { plain.starts(after: $0) } == [.finished])
        let onFailure = ChainedScenario(scenario: ScenarioID(unchecked: "next"), on: [.timeout, .cancelled])
        #expect(ExecutionPhase.allCases.filter { onFailure.starts(after: $0) } == [.cancelled, .timeout])
    }
}

@Suite("Webhook body, headers and signature")
struct WebhookBodyTests {
    let payload = ExecutionEndedPayload(
        executionID: ExecutionID(UUID(uuidString: "3f2a9c4e-1b7d-4e8a-9c2f-5d6e7f8a9b0c")!),
        scenario: ScenarioReference(id: ScenarioID(unchecked: "nightly"), name: "Nightly"), phase: .finished,
        reason: nil, counts: ResultCounts(ok: 3, failed: 1),
        startedAt: Timestamp(rfc3339: "2026-01-02T03:04:05.000006Z"),
        endedAt: Timestamp(rfc3339: "2026-01-02T03:14:05.5Z")!, requestedBy: "ci/pipeline-7")

    @Test("the body carries every key, null for what is absent, in a stable order")
    func body() throws {
        let body = try payload.json()
        #expect(
            body
                == #"{"counts":{"failed":1,"inconclusive":0,"ok":3,"partial":0},"#
                + #""endedAt":"2026-01-02T03:14:05.500000Z","event":"execution.ended","#
                + #""executionID":"3f2a9c4e-1b7d-4e8a-9c2f-5d6e7f8a9b0c","phase":"finished","#
                + #""reason":null,"requestedBy":"ci/pipeline-7","scenario":{"id":"nightly","name":"Nightly"},"#
                + #""startedAt":"2026-01-02T03:04:05.000006Z"}"#)
        #expect(try payload.json() == body)
    }

    @Test("the signature is the hex HMAC-SHA256 of the body under the secret, prefixed sha256= (RFC 4231 case 2)")
    func signature() {
        #expect(
            ExecutionEndedPayload.signature(of: "what do ya want for nothing?", secret: "Jefe")
                == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test("headers: content type, event, delivery id, and the signature only when there is one")
    func headers() throws {
        let body = try payload.json()
        var delivery = WebhookDeliveryRecord(
            executionID: payload.executionID, scenario: payload.scenario.id, webhook: 0, url: "http://127.0.0.1/",
            event: ExecutionEndedPayload.event, body: body, signature: nil, maxAttempts: 5, createdAt: Date())
        var headers = Dictionary(uniqueKeysWithValues: delivery.headers.map { ($0.name, $0.value) })
        #expect(headers["Content-Type"] == "application/json")
        #expect(headers["X-CTA-Event"] == "execution.ended")
        #expect(headers["X-CTA-Delivery"] == delivery._id)
        #expect(headers["X-CTA-Signature"] == nil)
        delivery.signature = ExecutionEndedPayload.signature(of: body, secret: "s3cret")
        headers = Dictionary(uniqueKeysWithValues: delivery.headers.map { ($0.name, $0.value) })
        #expect(headers["X-CTA-Signature"] == delivery.signature)
        #expect(delivery.signature?.hasPrefix("sha256=") == true)
        #expect(delivery.signature?.count == 7 + 64)
    }
}
