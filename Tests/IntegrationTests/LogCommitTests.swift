import Foundation
import Gazetteer
import IncidentDomain
@testable import IncidentLog
import StrictJSON
import Testing

/// Appends written straight through ``EventLog/commit(_:committedCities:)``, the group committer's one call, so
/// that several requests are certainly in one batch.
@Suite("Log commits")
struct LogCommitTests {
    static let recorder = Recorder(uid: 0, user: "root")

    static func proposal(_ json: JSONValue) throws -> ProposedEvent {
        try ProposedEvent(json: json, now: .now())
    }

    static func request(_ events: [ProposedEvent]) -> AppendRequest {
        AppendRequest(events: events, allowNewCity: false, recordedBy: recorder)
    }

    @Test("an event id used by an earlier request of the same group commit names the position it landed at; the same event again gets it back")
    func eventIdOfAnEarlierRequestInTheBatch() throws {
        let directory = makeTemporaryDirectory("batch-ids")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try EventLog(options: LogOptions(directory: directory), gazetteer: .embedded)
        let id = Wire.uuid()
        let report = try Self.proposal(Wire.report(incident: "kupiansk-batch", eventId: id))
        let other = try Self.proposal(Wire.report(incident: "kupiansk-batch-other", eventId: id))
        var cities: [String: CityState] = [:]
        let results = log.commit(
            [
                Self.request([try Self.proposal(Wire.report(incident: "kupiansk-batch-first"))]),
                Self.request([report]),
                // Another request of the batch reusing the id, alone and behind an event of its own.
                Self.request([other]),
                Self.request([try Self.proposal(Wire.report(incident: "kupiansk-batch-third")), other]),
                // The same event again: a retry, as if the first answer had been lost.
                Self.request([report]),
            ], committedCities: &cities)
        #expect(results.count == 5)
        guard case .success(let first) = results[1], case .success(let retry) = results[4] else {
            Issue.record("\(results)")
            return
        }
        #expect(first.positions == [2])
        #expect(retry.positions == [2] && retry.incidents == ["kupiansk-batch"])
        for (n, expectedIndex) in [(2, 0), (3, 1)] {
            guard case .failure(.rejected(let error, let index)) = results[n] else {
                Issue.record("request \(n): \(results[n])")
                continue
            }
            #expect(error.code == .duplicateEventId, "\(error)")
            #expect(index == expectedIndex)
            // That request was stored: its position is where the id is, and stays so.
            #expect(error.details["position"] == 2, "\(error)")
            #expect(error.details["firstIndex"] == nil, "\(error)")
            #expect(error.message == "event id \(id) was already used for a different event at position 2", "\(error)")
        }
        let stored = try log.events(from: 1, limit: 10).events
        #expect(stored.map { $0["incident"] } == ["kupiansk-batch-first", "kupiansk-batch"])
        #expect(stored.last?["eventId"]?.stringValue == id)
    }
}
