import Foundation
import Gazetteer
import IncidentDomain
@testable import IncidentLog
import LMDB
import StrictJSON
import Testing

/// The rebuild folds `incident-streams` entries read back from LMDB, where a flipped byte or a hand edit may have
/// changed them: a damaged entry stops the fold with an error naming it, and never becomes a projection the
/// daemon traps on. (Found by the stored-form fuzz target, `make fuzz-stored`.)
@Suite struct DamagedStreamTests {
    static let projector = Projector(gazetteer: .embedded)

    /// `entries` (key start, version, the position the value names, the event summarised) folded as the rebuild
    /// folds them, in an LMDB environment of their own.
    static func fold(_ entries: [(start: UInt64, version: Int64, position: UInt64, event: RecordedEvent)]) throws -> StreamFold {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stream-tests-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let environment = try Environment(directory: directory)
        let db = try environment.openDatabase("incident-streams", create: true)
        return try environment.write { txn in
            for entry in entries {
                var value = Keys.position(entry.position)
                StreamSummary.append(entry.event, to: &value)
                try txn.put(db, key: Keys.stream(start: entry.start, version: entry.version), value: value)
            }
            var fold = StreamFold(projector: projector, direct: true)
            try fold.fold(try txn.cursor(db), reports: 0..<UInt64.max)
            return fold
        }
    }

    /// An incident reported at position 1 (version 1) and its response at position 2 (version 2).
    static func reportAndResponse() throws -> (report: RecordedEvent, response: RecordedEvent) {
        let report = try StoredEvents.event(
            1, version: 1, type: "incident-reported", data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration"])
        let response = try StoredEvents.event(2, version: 2, type: "response-observed", data: ["by": "police", "responses": ["tear-gas"]])
        return (report, response)
    }

    @Test("an entry naming a position past Int64.max stops the rebuild as damage, where its incident's JSON trapped")
    func positionNoEventCanHave() throws {
        let (report, response) = try Self.reportAndResponse()
        let sound = try Self.fold([(1, 1, 1, report), (1, 2, 2, response)])
        #expect(sound.incidentCount == 1)
        #expect(try IncidentState(encoded: Array(sound.record(0)), incident: String(decoding: sound.id(0), as: UTF8.self)).json["lastPosition"] == .int(2))
        for position in [UInt64(Int64.max) + 1, UInt64.max, 0] {
            #expect(throws: LogError(.corrupt, "an incident-streams entry names position \(position), which no event can have")) {
                try Self.fold([(1, 1, 1, report), (1, 2, position, response)])
            }
        }
    }

    @Test("an entry whose version no event can have (0, or past Int64.max) stops the rebuild as damage, where it made an incident the rebuild stored and could not read back")
    func versionNoEventCanHave() throws {
        let (report, response) = try Self.reportAndResponse()
        let sound = try Self.fold([(1, 1, 1, report), (1, 2, 2, response)])
        #expect(try IncidentState(encoded: Array(sound.record(0)), incident: String(decoding: sound.id(0), as: UTF8.self)).version == 2)
        for version in [Int64.min + 3, -1, 0] {
            #expect(throws: LogError(.corrupt, "an incident-streams entry has version \(UInt64(bitPattern: version)), which no event can have")) {
                try Self.fold([(1, 1, 1, report), (1, version, 2, response)])
            }
        }
    }

    @Test("an entry naming a position at or before the one before it in its stream stops the rebuild as damage, where it made an incident the rebuild stored and could not read back")
    func positionOutOfOrder() throws {
        let report = try StoredEvents.event(
            9, version: 1, type: "incident-reported", data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration"])
        let response = try StoredEvents.event(10, version: 2, type: "response-observed", data: ["by": "police", "responses": ["tear-gas"]])
        let outcome = try StoredEvents.event(11, version: 3, type: "outcome-updated", data: ["status": "dispersed"])
        let sound = try Self.fold([(9, 1, 9, report), (9, 2, 10, response), (9, 3, 11, outcome)])
        #expect(try IncidentState(encoded: Array(sound.record(0)), incident: String(decoding: sound.id(0), as: UTF8.self)).lastPosition == 11)
        for (position, before) in [(UInt64(5), UInt64(9)), (9, 9)] {
            #expect(throws: LogError(.corrupt, "an incident-streams entry names position \(position), not after the one before it in its stream (\(before))")) {
                try Self.fold([(9, 1, 9, report), (9, 2, position, response)])
            }
        }
        #expect(throws: LogError(.corrupt, "an incident-streams entry names position 10, not after the one before it in its stream (10)")) {
            try Self.fold([(9, 1, 9, report), (9, 2, 10, response), (9, 3, 10, outcome)])
        }
    }
}
