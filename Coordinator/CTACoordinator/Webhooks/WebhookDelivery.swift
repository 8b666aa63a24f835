public import CTACore
public import Foundation
public import CTADefinitions

/// Where a webhook delivery stands.
public enum WebhookDeliveryState: String, Codable, Hashable, Sendable, CaseIterable {
    /// Not delivered yet; the next attempt is due at `nextAttemptAt`.
    case pending
    /// A 2xx answer was received.
    case delivered
    /// Every attempt failed, or the URL can never be delivered to.
    case failed
}

/// One attempt to deliver a webhook.
public struct WebhookAttempt: Codable, Hashable, Sendable {
    /// 1 for the first attempt.
    public var number: Int
    /// When the attempt started.
    public var at: Date
    /// How long it took, until the response status or the error.
    public var durationMs: Int64
    /// The HTTP status the receiver answered with.
    public var statusCode: Int?
    /// Why there was no answer (connection refused, timeout, unsupported URL).
    public var error: String?
    /// Which coordinator made the attempt.
    public var by: String

    public init(number: Int, at: Date, durationMs: Int64, statusCode: Int? = nil, error: String? = nil, by: String) {
        self.number = number
        self.at = at
        self.durationMs = durationMs
        self.statusCode = statusCode
        self.error = error
        self.by = by
    }
}

/// A webhook delivery as stored in `webhookDeliveries`: the exact request to send, every attempt made, and a claim
/// that tells other coordinators that one of them is working on it.
///
/// The body and its signature are fixed when the delivery is created, so every attempt, by whichever coordinator,
/// sends the same bytes; the secret itself is not stored here.
public struct WebhookDeliveryRecord: Codable, Hashable, Sendable {
    /// The delivery id (lower-case UUID), sent as `X-CTA-Delivery`: receivers use it to ignore repeats.
    public var _id: String
    public var executionID: String
    public var scenario: ScenarioID
    /// The webhook's position in the scenario's `webhooks`; API-managed webhooks follow the definition's.
    public var webhook: Int
    /// The id of the API-managed webhook this delivery is for; nil for a definition's webhook.
    public var managedWebhook: String?
    public var url: String
    /// The event name, sent as `X-CTA-Event`.
    public var event: String
    /// The JSON body, exactly as sent.
    public var body: String
    /// `sha256=<hex>`, sent as `X-CTA-Signature`; absent for a webhook without a secret.
    public var signature: String?
    public var state: WebhookDeliveryState
    public var maxAttempts: Int
    public var attempts: [WebhookAttempt]
    public var createdAt: Date
    /// When the next attempt is due (pending deliveries only).
    public var nextAttemptAt: Date?
    /// When it was delivered or given up.
    public var finishedAt: Date?
    /// The coordinator working on it, until `claimedUntil`.
    public var claimedBy: String?
    /// Identifies one claim: conditional writes match it, so a holder whose claim expired and was taken over cannot
    /// write any more.
    public var claimToken: String?
    public var claimedUntil: Date?

    public init(
        id: UUID = UUID(), executionID: ExecutionID, scenario: ScenarioID, webhook: Int, url: String, event: String,
        body: String, signature: String?, maxAttempts: Int, createdAt: Date
    ) {
        self._id = id.uuidString.lowercased()
        self.executionID = executionID.description
        self.scenario = scenario
        self.webhook = webhook
        self.url = url
        self.event = event
        self.body = body
        self.signature = signature
        self.state = .pending
        self.maxAttempts = maxAttempts
        self.attempts = []
        self.createdAt = createdAt
        self.nextAttemptAt = createdAt
    }

    /// The request headers, in sending order (`Host`, `Content-Length` and `Connection` are added by the client).
    public var headers: [(name: String, value: String)] {
        var headers = [
            ("Content-Type", "application/json"), ("User-Agent", "cta-coordinator"), ("X-CTA-Event", event),
            ("X-CTA-Delivery", _id),
        ]
        if let signature { headers.append(("X-CTA-Signature", signature)) }
        return headers
    }
}

/// The body of an `execution.ended` webhook.
///
/// Every key is always present: `reason` and `startedAt` are `null` when there is none. Times are RFC 3339 in UTC
/// with microseconds, like the wire protocol's.
public struct ExecutionEndedPayload: Encodable, Hashable, Sendable {
    public static let event = "execution.ended"

    public var executionID: ExecutionID
    public var scenario: ScenarioReference
    public var phase: ExecutionPhase
    public var reason: String?
    public var counts: ResultCounts
    public var startedAt: Timestamp?
    public var endedAt: Timestamp
    public var requestedBy: String

    public init(
        executionID: ExecutionID, scenario: ScenarioReference, phase: ExecutionPhase, reason: String?,
        counts: ResultCounts, startedAt: Timestamp?, endedAt: Timestamp, requestedBy: String
    ) {
        self.executionID = executionID
        self.scenario = scenario
        self.phase = phase
        self.reason = reason
        self.counts = counts
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.requestedBy = requestedBy
    }

    private enum CodingKeys: String, CodingKey {
        case event, executionID, scenario, phase, reason, counts, startedAt, endedAt, requestedBy
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(Self.event, forKey: .event)
        try container.encode(executionID.description, forKey: .executionID)
        try container.encode(scenario, forKey: .scenario)
        try container.encode(phase, forKey: .phase)
        try container.encode(reason, forKey: .reason)
        try container.encode(counts, forKey: .counts)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encode(endedAt, forKey: .endedAt)
        try container.encode(requestedBy, forKey: .requestedBy)
    }

    /// The body as sent: compact JSON with sorted keys, so that the same payload always has the same signature.
    public func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// `sha256=<hex HMAC-SHA256 of body under secret>`, the `X-CTA-Signature` header value.
    public static func signature(of body: String, secret: String) -> String {
        "sha256=" + HMACSHA256.authenticationCode(for: Array(body.utf8), key: Array(secret.utf8)).hexString
    }
}
