public import CTACore
public import Foundation
public import CTADefinitions

/// Everything the coordinator keeps. ``MongoStore`` is the production implementation; every write that comes
/// from an event is idempotent (keyed by the event id), so a redelivered or replayed event changes nothing.
public protocol Store: Sendable {
    /// Creates indexes and checks the schema version. Safe to call from several coordinators at once.
    func prepare() async throws

    // MARK: Definitions

    /// Saves definitions (replacing those with the same ids).
    func save(_ definitions: DefinitionSet) async throws
    func scenario(_ id: ScenarioID) async throws -> ScenarioDefinition?
    func suite(_ id: SuiteID) async throws -> SuiteDefinition?
    func configuration(_ id: ConfigurationID) async throws -> ConfigurationDefinition?
    func tests(_ ids: [TestID]) async throws -> [TestID: TestDefinition]
    /// Every scenario with a schedule.
    func scheduledScenarios() async throws -> [ScenarioDefinition]
    /// Past durations of tests (the mean of their recent runs), for longest-first ordering.
    func expectedDurations(_ ids: [TestID]) async throws -> [TestID: Int64]

    // MARK: Machines

    /// Stores a registration: the machine's facts, online from now.
    func register(_ registration: AgentRegistration, envelope: Envelope, receivedAt: Date) async throws -> StoreWrite
    /// Stores a shutdown: the machine is offline from now.
    func shutdown(_ shutdown: AgentShutdown, envelope: Envelope, receivedAt: Date) async throws -> StoreWrite
    /// Applies a heartbeat; false when the machine never registered.
    func heartbeat(_ heartbeat: AgentHeartbeat, envelope: Envelope, receivedAt: Date) async throws -> Bool
    func machines() async throws -> [MachineRecord]
    func machine(_ name: MachineName) async throws -> MachineRecord?

    // MARK: Executions

    func createExecution(_ execution: ExecutionRecord) async throws
    func execution(_ id: ExecutionID) async throws -> ExecutionRecord?
    /// Executions in `phase`, newest first.
    func executions(in phase: ExecutionPhase, limit: Int) async throws -> [ExecutionRecord]
    /// Claims the pending, undispatched execution that waited longest and is due, for `holder` until `until`.
    func claimPendingExecution(holder: String, now: Date, until: Date) async throws -> ExecutionRecord?
    /// Saves the plan of a claimed execution before it is published; false when the claim was lost.
    func savePlan(_ plan: DispatchPlan, execution: ExecutionID, holder: String) async throws -> Bool
    /// Marks a claimed execution dispatched and releases the claim.
    func markDispatched(_ execution: ExecutionID, holder: String, at: Date) async throws
    /// Releases a claim, leaving the execution pending with an explanation until `retryAt`.
    func deferExecution(_ execution: ExecutionID, holder: String, explanation: PendingExplanation?, retryAt: Date)
        async throws
    /// Moves an execution from pending to running and returns it as updated; nil in any other phase.
    func markRunning(_ execution: ExecutionID, at: Date) async throws -> ExecutionRecord?
    /// Ends an execution once: true for the caller that ended it, false when it had already ended.
    func endExecution(
        _ execution: ExecutionID, phase: ExecutionPhase, reason: String?, counts: ResultCounts, at: Date
    ) async throws -> Bool
    /// Records that a cancel was requested (before the cancel event is published).
    func requestCancel(_ execution: ExecutionID, reason: String) async throws -> Bool
    /// Remembers that a parallel execution's queue was deleted.
    func markParallelQueueDeleted(_ execution: ExecutionID) async throws

    // MARK: Agent events

    /// Writes results and log chunks (the results queue's events), each at most once.
    func storeResultsAndLogs(_ events: [Envelope], receivedAt: Date) async throws -> [StoreWrite]
    /// Writes a state change at most once and applies it to the machine's part of the execution.
    func storeState(_ change: ExecutionStateChange, envelope: Envelope, receivedAt: Date) async throws -> StoreWrite
    /// Remembers a refused message.
    func storeRejection(_ rejection: RejectionRecord) async throws
    /// Adds newly stored results to their executions' live counters.
    func addToCounters(_ counts: [ExecutionID: ResultCounts]) async throws

    /// How many sequenced events of `epoch` with `seq` in `range` are stored (or were refused).
    func storedSequenceCount(epoch: String, range: ClosedRange<UInt64>) async throws -> Int
    /// The results stored for an execution, by status; for one machine when given.
    func resultCounts(_ execution: ExecutionID, machine: MachineName?) async throws -> ResultCounts
    /// How many distinct test indexes of a parallel execution have a result.
    func resultIndexCount(_ execution: ExecutionID) async throws -> Int
    func parts(_ execution: ExecutionID) async throws -> [PartRecord]
    func markPartComplete(_ id: String) async throws
    /// Parts of these machines that have not reported their final state.
    func openParts(on machines: [MachineName]) async throws -> [PartRecord]
    /// Executions with a machine part that reported its final state but is not complete yet.
    func executionsAwaitingCompletion() async throws -> [ExecutionID]
    func results(_ execution: ExecutionID) async throws -> [ResultRecord]
    func states(_ execution: ExecutionID) async throws -> [StateRecord]
    /// Closes the part of a machine that was lost before it reported its final state: complete, with `reason`.
    /// True for the one caller that closed it.
    func closeLostPart(_ id: String, reason: String, at: Date) async throws -> Bool
    /// Writes results the coordinator made itself (for tests a lost machine never reported), each at most once.
    func storeCoordinatorResults(_ results: [ResultRecord]) async throws -> [StoreWrite]

    /// Folds the durations of an ended execution's tests into their history.
    func recordDurations(_ execution: ExecutionID) async throws

    // MARK: Webhook deliveries

    /// Stores a new delivery, as given (pending, normally claimed by the coordinator that created it).
    func createWebhookDelivery(_ delivery: WebhookDeliveryRecord) async throws
    /// Claims the pending delivery due longest whose claim is absent or expired, for `token` until `until`.
    func claimDueWebhookDelivery(holder: String, token: String, now: Date, until: Date) async throws
        -> WebhookDeliveryRecord?
    /// Extends a claim; false when it was lost.
    func renewWebhookClaim(_ delivery: String, token: String, until: Date) async throws -> Bool
    /// Appends an attempt and applies the decision: a retry keeps the claim until `holdUntil`, an end releases it.
    /// False when the claim was lost (nothing is written then).
    func recordWebhookAttempt(
        _ delivery: String, token: String, attempt: WebhookAttempt, decision: WebhookDecision, holdUntil: Date
    ) async throws -> Bool
    /// Gives up a claim, so that any coordinator's sweep takes the delivery when it is due.
    func releaseWebhookClaim(_ delivery: String, token: String) async throws
    func webhookDelivery(_ id: String) async throws -> WebhookDeliveryRecord?
    /// An execution's deliveries, in the order of the scenario's webhooks.
    func webhookDeliveries(_ execution: ExecutionID) async throws -> [WebhookDeliveryRecord]
    /// The webhooks added to a scenario through the API (none when the store keeps none).
    func managedWebhooks(_ scenario: ScenarioID) async throws -> [ManagedWebhook]
}

/// Thrown when the database holds a schema this coordinator does not know.
public struct StoreSchemaError: Error, CustomStringConvertible {
    public var found: Int
    public var supported: Int
    public var description: String {
        "the database has schema version \(found); this coordinator supports up to \(supported): upgrade it"
    }
}
