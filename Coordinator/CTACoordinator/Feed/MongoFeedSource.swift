public import CTAMongo
import Foundation
import CTADefinitions

/// The live feed's changes read from MongoDB: one change stream on the database, with the server's resume
/// tokens as cursors.
///
/// The stream reports inserts into `states` and `results`, inserts of `executions` and the updates that set an
/// execution's `phase`, and every insert or update of `machines` (with the machine as it is when read). Every
/// coordinator opens it with the same pipeline, so the tokens are the same for all of them.
public struct MongoFeedSource: FeedSource {
    public let database: MongoDatabase
    /// How long one wait on the server lasts before it answers an empty batch (and the longest a close waits).
    public var maxAwaitTime: Duration

    public init(database: MongoDatabase, maxAwaitTime: Duration = .milliseconds(500)) {
        self.database = database
        self.maxAwaitTime = maxAwaitTime
    }

    /// The filter every feed stream uses (the same for all coordinators).
    public static let pipeline: [BSONDocument] = [
        [
            "$match": [
                "$or": [
                    ["ns.coll": ["$in": ["states", "results"]], "operationType": "insert"],
                    ["ns.coll": "executions", "operationType": "insert"],
                    [
                        "ns.coll": "executions", "operationType": "update",
                        "updateDescription.updatedFields.phase": ["$exists": true],
                    ],
                    ["ns.coll": "machines", "operationType": ["$in": ["insert", "update", "replace"]]],
                ]
            ]
        ]
    ]

    public func changes(from start: FeedStart) async throws(LiveFeedError) -> any FeedChangeSequence {
        var resumeAfter: ResumeToken?
        var startAt: BSONTimestamp?
        switch start {
        case .now: break
        case .after(let cursor): resumeAfter = cursor.token
        case .at(let date):
            startAt = BSONTimestamp(
                seconds: UInt32(clamping: Int64(date.timeIntervalSince1970.rounded(.down))), increment: 0)
        }
        do {
            let stream = try await database.watch(
                Self.pipeline, as: BSONDocument.self, fullDocumentOnUpdate: true, resumeAfter: resumeAfter,
                startAtOperationTime: startAt, maxAwaitTime: maxAwaitTime)
            return MongoFeedSequence(stream: stream)
        } catch {
            throw Self.feedError(error, resuming: resumeAfter != nil)
        }
    }

    public func execution(_ id: String) async throws(LiveFeedError) -> FeedExecution? {
        do {
            let found = try await database.collection("executions").findOne(
                ["_id": .string(id)], projection: .including("scenario", "phase", "createdAt"))
            guard let found else { return nil }
            guard let scenario = found["scenario"]?.documentValue?["id"]?.stringValue,
                let phase = found["phase"]?.stringValue.flatMap(ExecutionPhase.init(rawValue:)),
                case .date(let createdAt)? = found["createdAt"]
            else {
                throw LiveFeedError(.unavailable, "the stored execution \(id) could not be read")
            }
            return FeedExecution(id: id, scenario: scenario, phase: phase, createdAt: createdAt)
        } catch let error as LiveFeedError {
            throw error
        } catch {
            throw Self.feedError(error, resuming: false)
        }
    }

    static func feedError(_ error: any Error, resuming: Bool) -> LiveFeedError {
        if let error = error as? MongoError, error.code == .server || error.code == .invalidArgument {
            // 286 ChangeStreamHistoryLost; 280 ChangeStreamFatalError (a token the server cannot use).
            if error.serverCode == 286 {
                return LiveFeedError(.cursorExpired, "the database no longer holds the change history from there")
            }
            if resuming {
                return LiveFeedError(.invalidCursor, "the database does not accept this cursor")
            }
        }
        if error is CancellationError { return LiveFeedError(.closed, "the live feed is shutting down") }
        return LiveFeedError(.unavailable, "the database could not be read")
    }
}

/// A database change stream seen as feed changes.
final class MongoFeedSequence: FeedChangeSequence {
    let stream: ChangeStream<BSONDocument>

    init(stream: ChangeStream<BSONDocument>) {
        self.stream = stream
    }

    func next() async throws(LiveFeedError) -> FeedChange? {
        var iterator = stream.makeAsyncIterator()
        while true {
            let event: ChangeEvent<BSONDocument>?
            do {
                event = try await iterator.next()
            } catch {
                throw MongoFeedSource.feedError(error, resuming: false)
            }
            guard let event else { return nil }
            if let change = Self.change(event) { return change }
        }
    }

    func close() async {
        await stream.close()
    }

    /// The feed change for a change event, nil for events the feed does not report.
    static func change(_ event: ChangeEvent<BSONDocument>) -> FeedChange? {
        let cursor = LiveCursor(token: event.resumeToken)
        let document = event.fullDocument
        let decoder = BSONDecoder()
        switch event.collection {
        case "states":
            let record = document.flatMap { try? decoder.decode(StateRecord.self, from: $0) }
            return FeedChange(
                cursor: cursor, kind: .state, executionID: document?["executionID"]?.stringValue, scenario: nil,
                machine: document?["machine"]?.stringValue, phase: nil, record: record.map { .state($0) },
                clusterTime: event.clusterTime)
        case "results":
            let record = document.flatMap { try? decoder.decode(ResultRecord.self, from: $0) }
            return FeedChange(
                cursor: cursor, kind: .result, executionID: document?["executionID"]?.stringValue, scenario: nil,
                machine: document?["machine"]?.stringValue, phase: nil, record: record.map { .result($0) },
                clusterTime: event.clusterTime)
        case "executions":
            let id = event.documentKey?["_id"]?.stringValue ?? document?["_id"]?.stringValue
            // The phase this change set (the document read may already be newer).
            let phaseText = event.operationType == .insert
                ? document?["phase"]?.stringValue : event.updatedFields?["phase"]?.stringValue
            let phase = phaseText.flatMap(ExecutionPhase.init(rawValue:))
            var record = document.flatMap { try? decoder.decode(ExecutionRecord.self, from: $0) }
            if let phase { record?.phase = phase }
            return FeedChange(
                cursor: cursor, kind: .execution, executionID: id,
                scenario: document?["scenario"]?.documentValue?["id"]?.stringValue, machine: nil, phase: phase,
                record: record.map { .execution($0) }, clusterTime: event.clusterTime)
        case "machines":
            let name = event.documentKey?["_id"]?.stringValue ?? document?["_id"]?.stringValue
            let record = document.flatMap { try? decoder.decode(MachineRecord.self, from: $0) }
            return FeedChange(
                cursor: cursor, kind: .machine, executionID: nil, scenario: nil, machine: name, phase: nil,
                record: record.map { .machine($0) }, clusterTime: event.clusterTime)
        default:
            return nil
        }
    }
}
