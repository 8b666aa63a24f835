import CTACore

extension Coordinator {
    /// What follows the end of an execution, run once by the coordinator that ended it.
    func executionEnded(_ record: ExecutionRecord, phase: ExecutionPhase, reason: String?, counts: ResultCounts) async {}
}
