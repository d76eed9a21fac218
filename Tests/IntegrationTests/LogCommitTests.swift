import Foundation
import Gazetteer
import IncidentDomain
@testable import IncidentLog
import LMDB
import StrictJSON
import Synchronization
import Testing

/// Appends written straight through ``EventLog/commit(_:committedCities:)``, the group committer's one call: so
/// that several requests are certainly in one batch, and so that events can be stored as an earlier daemon
/// stored them, past today's wire rules.
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

    /// What a checkpoint throws to cut a walk of the log short.
    struct CutShort: Error, Equatable {}

    /// A checkpoint that throws ``CutShort`` from its `n`th call on, and counts its calls.
    final class Checkpoint: Sendable {
        let calls = Mutex(0)
        let n: Int
        init(throwingFrom n: Int) { self.n = n }
        func pass() throws {
            let call = calls.withLock { calls -> Int in
                calls += 1
                return calls
            }
            if call >= n { throw CutShort() }
        }
    }

    @Test("verify, its derived-data check and replay ask their checkpoint between stretches, and what it throws ends them")
    func walksEndAtACheckpoint() throws {
        let directory = makeTemporaryDirectory("checkpoints")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try EventLog(options: LogOptions(directory: directory), gazetteer: .embedded)
        var cities: [String: CityState] = [:]
        for batch in 0..<10 {
            let requests = try (0..<500).map { n in
                Self.request([try Self.proposal(Wire.report(incident: "walk-\(batch)-\(n)", city: ["Kupiansk", "Melitopol"][n % 2]))])
            }
            for result in log.commit(requests, committedCities: &cities) { _ = try result.get() }
        }
        // Whole, each asks its checkpoint more than twice: 50 stretches of the chain, as many of the events' digests,
        // two blocks of the replay's fold.
        let passing = Checkpoint(throwingFrom: .max)
        #expect(try log.verify(stretch: 100, checkpoint: passing.pass).isIntact)
        #expect(passing.calls.withLock { $0 } > 100)
        let chain = Checkpoint(throwingFrom: 3)
        #expect(throws: CutShort()) { try log.verify(stretch: 100, checkingDerivedData: false, checkpoint: chain.pass) }
        let derived = Checkpoint(throwingFrom: 3)
        #expect(throws: CutShort()) { try log.verifyDerivedData(stretch: 100, checkpoint: derived.pass) }
        let replay = Checkpoint(throwingFrom: 2)
        #expect(throws: CutShort()) { try log.replay(checkpoint: replay.pass) }
        #expect(try log.replay(checkpoint: Checkpoint(throwingFrom: 3).pass).count == 2)
    }

    @Test("a log holding what earlier versions accepted (a space before the time, a source published in the future) is served, verified, replayed and rebuilt")
    func datesAcceptedBefore() throws {
        let root = makeTemporaryDirectory()
        do {
            let log = try EventLog(options: LogOptions(directory: root + "/data"), gazetteer: .embedded)
            var report = try Self.proposal(Wire.report(incident: "kupiansk-legacy", kind: "blockade"))
            report.occurredAt = "2022-03-01 14:30Z"
            report.precision = .minute
            var source = Source(name: "Suspilne", verification: .verified)
            source.publishedAt = "2099-01-01"
            var second = Source(name: "Ukrainska Pravda")
            second.publishedAt = "2022-03-01 16:00+02:00"
            report.sources = [source, second]
            // A response without a time takes its report's; an outcome with one of its own.
            let response = try Self.proposal(Wire.response(incident: "kupiansk-legacy", detained: 3))
            var outcome = try Self.proposal(Wire.outcome(incident: "kupiansk-legacy"))
            outcome.occurredAt = "2022-03-02 09:00+02:00"
            outcome.precision = .minute
            var cities: [String: CityState] = [:]
            let results = log.commit([Self.request([report, response]), Self.request([outcome])], committedCities: &cities)
            guard case .success(let receipt) = results.first, case .success = results.last else {
                Issue.record("\(results)")
                return
            }
            #expect(receipt.positions == [1, 2])
        }
        let daemon = try Daemon(root: root)
        let client = try daemon.client()
        let events = try checkLogIntegrity(daemon, client)
        #expect(events.map { $0["occurredAt"]?.stringValue } == ["2022-03-01 14:30Z", "2022-03-01 14:30Z", "2022-03-02 09:00+02:00"])
        #expect(events.first?["sources"]?.arrayValue?.map { $0["publishedAt"] } == ["2099-01-01", "2022-03-01 16:00+02:00"])
        let city = try client.call("city", ["city": "Kupiansk"])["city"]
        #expect(city?["firstIncidentAt"] == "2022-03-01 14:30Z", "\(city ?? .null)")
        #expect(city?["casualties"]?["detained"] == 3)
        // Replay limits read the stored dates too: the report happened before 15:00 that day.
        let early = try runCommand(
            Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--occurred-before", "2022-03-01T15:00Z", "--format", "json"])
        #expect(early.status == 0, "\(early.stderr)")
        #expect(early.json?.arrayValue?.first?["incidents"]?["total"] == 1, "\(early.stdout)")
        // The log goes on from there.
        #expect(try client.appendEvents([Wire.response(incident: "kupiansk-legacy")])["positions"] == [4])
        #expect(daemon.stop() == 0)

        // Its projections made again from the events alone are the ones the daemon kept.
        let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
        let projections = [
            try log.environment.openDatabase("incidents", create: false), try log.environment.openDatabase("cities", create: false),
        ]
        let kept = try RebuildTests.digest(log.environment, projections)
        #expect(try log.rebuildProjections() == 4)
        #expect(try RebuildTests.digest(log.environment, projections) == kept)
        #expect(try log.verify().isIntact)
    }

    @Test("a report past today's rules, corrected in the batch that stored it, is counted alike live, after a rebuild, and by replay")
    func correctionOfAReportPastTodaysRules() throws {
        let root = makeTemporaryDirectory()
        do {
            // As an earlier daemon with a looser limit on the location stored it, in one request with an outcome
            // that corrects the kind and the description: the live projector corrects the whole report it holds.
            let log = try EventLog(options: LogOptions(directory: root + "/data"), gazetteer: .embedded)
            var report = try Self.proposal(Wire.report(incident: "kupiansk-long-location", participants: (150, 200)))
            guard case .reported(var data) = report.data else {
                Issue.record("\(report.data)")
                return
            }
            data.location = String(repeating: "x", count: Limits.location + 1)
            report.data = .reported(data)
            let outcome = try Self.proposal(
                Wire.setting(
                    Wire.outcome(incident: "kupiansk-long-location"), "data.corrections",
                    ["kind": "blockade", "description": "a blockade of the bridge, first reported as a demonstration"]))
            var cities: [String: CityState] = [:]
            let results = log.commit([Self.request([report, outcome])], committedCities: &cities)
            guard case .success(let receipt) = results.first else {
                Issue.record("\(results)")
                return
            }
            #expect(receipt.positions == [1, 2])
        }
        let daemon = try Daemon(root: root)
        let client = try daemon.client()
        _ = try checkLogIntegrity(daemon, client)
        let live = try client.call("city", ["city": "Kupiansk"])["city"]
        #expect(live?["incidents"]?["byKind"]?["blockade"] == 1, "\(live ?? .null)")
        #expect(live?["incidents"]?["byKind"]?["demonstration"] == 0, "\(live ?? .null)")
        #expect(daemon.stop() == 0)

        do {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
            let projections = [
                try log.environment.openDatabase("incidents", create: false),
                try log.environment.openDatabase("cities", create: false),
            ]
            let kept = try RebuildTests.digest(log.environment, projections)
            #expect(try log.rebuildProjections() == 2)
            #expect(try RebuildTests.digest(log.environment, projections) == kept)
        }
        try daemon.start()
        #expect(try daemon.client().call("city", ["city": "Kupiansk"])["city"] == live)
        #expect(daemon.stop() == 0)
    }
}
