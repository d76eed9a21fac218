import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import StrictJSON
import Synchronization
import Testing

/// A batch that could not be stored leaves nothing that the batches after it build on: their rules are never
/// checked against events that did not land. (It guarded the two-thread committer tried as change 24 in
/// BENCHMARKS.md, which prepared a batch over the one being written, and must keep holding for any committer.)
@Suite("Group commit after a failed batch")
struct GroupCommitFailureTests {
    static let recorder = Recorder(uid: 0, user: "root")

    static func report(_ incident: String, description: String) throws -> ProposedEvent {
        try ProposedEvent(
            json: .object([
                "type": .string("incident-reported"), "incident": .string(incident), "occurredAt": .string("2022-03-05"),
                "precision": .string("day"),
                "data": .object([
                    "city": .string("Kupiansk"), "kind": .string("demonstration"), "description": .string(description),
                ]),
            ]), now: .now())
    }

    static func response(_ incident: String) throws -> ProposedEvent {
        try ProposedEvent(
            json: .object([
                "type": .string("response-observed"), "incident": .string(incident),
                "data": .object(["by": .string("occupation police"), "responses": .array([.string("detentions")])]),
            ]), now: .now())
    }

    /// Submits `request` and returns a way to wait for its result.
    static func submit(_ committer: GroupCommitter, _ request: AppendRequest) -> @Sendable () -> Result<AppendReceipt, AppendFailure> {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<AppendReceipt, AppendFailure>?>(nil)
        committer.submit(request) { outcome in
            result.withLock { $0 = outcome }
            done.signal()
        }
        return {
            done.wait()
            return result.withLock { $0! }
        }
    }

    @Test("after a batch that could not be stored, a response to an incident it reported is refused")
    func failedBatchIsNotBuiltUpon() throws {
        let directory = makeTemporaryDirectory("pipeline")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = LogOptions(directory: directory)
        // A map that cannot grow, too small for the first request; the second is small.
        options.initialMapSize = 1 << 20
        options.maxMapSize = 1 << 20
        let filler = String(repeating: "Residents gathered on the square with flags. ", count: 150)
        let big = try (0..<200).map { try Self.report($0 == 0 ? "kupiansk-2022-03-05-square" : "kupiansk-2022-03-05-filler-\($0)", description: filler) }
        // One batch per request: the first fills a batch on its own.
        options.maxEventsPerCommit = big.count
        let log = try EventLog(options: options, gazetteer: .embedded)
        let committer = GroupCommitter(log: log)
        defer { committer.shutdown() }

        for _ in 0..<3 {
            let first = Self.submit(committer, AppendRequest(events: big, allowNewCity: false, recordedBy: Self.recorder))
            let second = Self.submit(
                committer,
                AppendRequest(events: [try Self.response("kupiansk-2022-03-05-square")], allowNewCity: false, recordedBy: Self.recorder))
            guard case .failure(.storageFull) = first() else {
                Issue.record("the first request should not fit in the map")
                return
            }
            switch second() {
            case .failure(.rejected(let error, _)):
                #expect(error.code == .unknownIncident, "\(error)")
            case let other:
                Issue.record("a response to an incident that was never stored got \(other)")
            }
        }
        #expect(try log.status().position == 0)
        #expect(try log.incidentDocument("kupiansk-2022-03-05-square") == nil)
        // The log still takes what fits.
        let small = Self.submit(
            committer,
            AppendRequest(events: [try Self.report("kupiansk-2022-03-05-square", description: "A short one.")], allowNewCity: false, recordedBy: Self.recorder))
        guard case .success(let receipt) = small() else {
            Issue.record("a small append should fit")
            return
        }
        #expect(receipt.positions == [1])
    }

    @Test("onCommitted hears of each commit that stored events, and not of one that only answered a retry or refused")
    func committedOnlyWhenStored() throws {
        let directory = makeTemporaryDirectory("committed")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try EventLog(options: LogOptions(directory: directory), gazetteer: .embedded)
        let commits = Mutex(0)
        let committer = GroupCommitter(log: log, onCommitted: { commits.withLock { $0 += 1 } })
        var report = try Self.report("kupiansk-2022-03-05-square", description: "Residents gathered on the square.")
        report.eventId = "5d0d8a52-1f1e-4c43-9a4e-0d7d8c1b2a01"
        let requests = [
            AppendRequest(events: [report], allowNewCity: false, recordedBy: Self.recorder),
            // The same event again, as after a lost answer: stored already.
            AppendRequest(events: [report], allowNewCity: false, recordedBy: Self.recorder),
            // Refused: no such incident.
            AppendRequest(events: [try Self.response("kupiansk-2022-03-05-nowhere")], allowNewCity: false, recordedBy: Self.recorder),
            AppendRequest(events: [try Self.response("kupiansk-2022-03-05-square")], allowNewCity: false, recordedBy: Self.recorder),
        ]
        // One at a time, so that each is a commit of its own.
        var results: [Result<AppendReceipt, AppendFailure>] = []
        for request in requests { results.append(Self.submit(committer, request)()) }
        // Every call of onCommitted has been made once the writer thread has ended.
        committer.shutdown()
        guard case .success(let first) = results[0], case .success(let retry) = results[1],
            case .failure(.rejected(let refusal, _)) = results[2], case .success(let response) = results[3]
        else {
            Issue.record("\(results)")
            return
        }
        #expect(first.positions == [1] && retry.positions == [1] && retry.alreadyStored == [0])
        #expect(refusal.code == .unknownIncident, "\(refusal)")
        #expect(response.positions == [2])
        #expect(commits.withLock { $0 } == 2, "the two commits that stored an event")
        #expect(committer.statistics.commits == 2)
    }
}
