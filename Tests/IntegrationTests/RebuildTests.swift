import Foundation
import Gazetteer
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// The rebuild folds the log in chunks and writes each chunk's incidents in several commits; whatever the sizes,
/// the projections must come out byte for byte as the daemon kept them event by event.
@Suite("Rebuild")
struct RebuildTests {
    static let cities = ["Kupiansk", "Melitopol", "Berdyansk"]
    static let kinds = ["demonstration", "blockade", "strike", "symbolic-act"]

    /// Reports of `incidents` incidents, each followed later by responses and outcomes, so that many events
    /// concern incidents reported chunks earlier; every tenth incident gets a correction.
    static func events(incidents: Int) -> [JSONValue] {
        var events: [JSONValue] = []
        func id(_ n: Int) -> String { "\(cities[n % 3].lowercased())-2022-03-\(String(format: "%02d", 1 + n % 28))-rebuild-\(n)" }
        for n in 0..<incidents {
            events.append(.object([
                "type": .string("incident-reported"), "incident": .string(id(n)),
                "occurredAt": .string("2022-03-\(String(format: "%02d", 1 + n % 28))"), "precision": .string("day"),
                "sources": .array([.object(["name": .string("Suspilne"), "verification": .string(n % 4 == 0 ? "disputed" : "verified")])]),
                "data": .object([
                    "city": .string(cities[n % 3]), "kind": .string(kinds[n % 4]),
                    "participants": .object(["low": .int(Int64(10 + n)), "high": .int(Int64(20 + 2 * n))]),
                    "description": .string("Residents gathered with flags; event \(n) of the rebuild test."),
                ]),
            ]))
            // Responses and outcomes for incidents reported well before, and for this one.
            for earlier in [n - 257, n - 31, n] where earlier >= 0 && earlier % 3 != 1 {
                events.append(.object([
                    "type": .string("response-observed"), "incident": .string(id(earlier)),
                    "data": .object([
                        "by": .string("occupation police"), "responses": .array([.string("detentions"), .string("tear-gas")]),
                        "detained": .int(Int64(earlier % 5)), "injured": .int(1),
                    ]),
                ]))
            }
            if n >= 100, n % 7 == 0 {
                var data: [String: JSONValue] = ["status": .string(n % 2 == 0 ? "dispersed" : "ongoing"), "verification": .string("verified")]
                if n % 10 == 0 { data["corrections"] = .object(["kind": .string("strike"), "participants": .object(["low": .int(5), "high": .int(9)])]) }
                events.append(.object(["type": .string("outcome-updated"), "incident": .string(id(n - 100)), "data": .object(data)]))
            }
        }
        return events
    }

    /// A digest of every key and value of `databases`.
    static func digest(_ environment: Environment, _ databases: [Database]) throws -> [UInt8] {
        var all: [UInt8] = []
        try environment.read { txn in
            for db in databases {
                try txn.forEach(db) { key, value in
                    all += Array("\(key.count):\(value.count);".utf8) + Array(key) + Array(value)
                    return true
                }
            }
        }
        return all
    }

    @Test("rebuilding in small chunks and small commits gives the daemon's projections byte for byte")
    func chunkedRebuild() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let events = Self.events(incidents: 900)
        for start in stride(from: 0, to: events.count, by: 200) {
            let answer = try client.appendEvents(Array(events[start..<min(start + 200, events.count)]))
            #expect(answer["ok"]?.boolValue == true, "\(answer)")
        }
        #expect(try client.headPosition() == Int64(events.count))
        #expect(daemon.stop() == 0)

        let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
        let projections = [
            try log.environment.openDatabase("incidents", create: false), try log.environment.openDatabase("cities", create: false),
        ]
        let kept = try Self.digest(log.environment, projections)
        #expect(kept.count > 100_000)
        for (chunk, perCommit) in [(1 << 20, 16_384), (1 << 20, 7), (250, 40), (97, 1)] {
            let folded = try log.rebuildProjections(chunk: chunk, incidentsPerCommit: perCommit)
            #expect(folded == UInt64(events.count))
            #expect(try Self.digest(log.environment, projections) == kept, "chunk \(chunk), \(perCommit) incidents a commit")
        }
    }
}
