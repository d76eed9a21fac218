import Foundation
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// A city's `firstIncidentAt` and `lastIncidentAt` span exactly the incidents its counts count: a retraction takes
/// an incident's date away (the next one takes its place, or none), an outcome that reinstates it gives it back, and
/// between dates that start at the same instant the one reported first is shown. The daemon keeps them event by
/// event from `city-dates`; the rebuild and `replay` fold them from the events; all three must agree after every step.
@Suite("A city's first and last incident dates")
struct CityDatesTests {
    static func report(_ incident: String, _ occurredAt: String) -> JSONValue {
        Wire.report(incident: incident, city: "Kupiansk", occurredAt: occurredAt)
    }

    static func outcome(_ incident: String, _ status: String) -> JSONValue {
        ["type": "outcome-updated", "incident": .string(incident), "data": ["status": .string(status), "note": "dates test"]]
    }

    /// Kupiansk as the daemon answers it, and the head position then.
    static func kupiansk(_ client: RawClient) throws -> (city: JSONValue, head: Int64) {
        let answer = try client.call("city", ["city": "kupiansk"])
        return (try #require(answer["city"], "\(answer)"), try client.headPosition())
    }

    /// Kupiansk in a `cities` document.
    static func kupiansk(in cities: JSONValue?) -> JSONValue? {
        cities?.arrayValue?.first { $0["cityId"] == "kupiansk" }
    }

    @Test("retracting a city's first or last incident moves its dates to the next counted one, or to none; reinstating it moves them back; equal starts show the one reported first; the daemon, a rebuild and replay agree at every step")
    func retractionMovesDates() throws {
        let daemon = try Daemon()
        var client = try daemon.client()
        // Each step: the events appended, then Kupiansk's first and last incident dates (nil for none) and total.
        let steps: [(events: [JSONValue], first: String?, last: String?, total: Int64)] = [
            ([Self.report("a", "2022-03-05")], "2022-03-05", "2022-03-05", 1),
            ([Self.report("b", "2022-03-01")], "2022-03-01", "2022-03-05", 2),
            ([Self.report("c", "2022-03-20T00:00Z")], "2022-03-01", "2022-03-20T00:00Z", 3),
            // A month that starts when b's day does, and a day that starts when c's minute does: reported later, so
            // neither is shown.
            ([Self.report("d", "2022-03")], "2022-03-01", "2022-03-20T00:00Z", 4),
            ([Self.report("e", "2022-03-20")], "2022-03-01", "2022-03-20T00:00Z", 5),
            // The first retracted: d, which starts at the same instant, takes its place.
            ([Self.outcome("b", "retracted")], "2022-03", "2022-03-20T00:00Z", 4),
            // The last retracted: e, of the same start, takes its place.
            ([Self.outcome("c", "retracted")], "2022-03", "2022-03-20", 3),
            // A retracted incident's other outcomes change nothing of the dates.
            ([Self.outcome("c", "retracted")], "2022-03", "2022-03-20", 3),
            // Reinstated, b is reported before d, and c before e: they are shown again.
            ([Self.outcome("b", "ongoing")], "2022-03-01", "2022-03-20", 4),
            ([Self.outcome("c", "dispersed")], "2022-03-01", "2022-03-20T00:00Z", 5),
            // An outcome that keeps an incident counted moves nothing.
            ([Self.outcome("a", "suppressed")], "2022-03-01", "2022-03-20T00:00Z", 5),
            // Every incident retracted, in one append: no dates at all, as no incidents.
            (["a", "b", "c", "d", "e"].map { Self.outcome($0, "retracted") }, nil, nil, 0),
            // One reinstated: its date alone.
            ([Self.outcome("a", "ongoing")], "2022-03-05", "2022-03-05", 1),
            // A later report in the same append as a retraction of the one before.
            ([Self.report("f", "2022-02-27"), Self.outcome("a", "retracted")], "2022-02-27", "2022-02-27", 1),
        ]
        var kept: [(city: JSONValue, head: Int64)] = []
        for (n, step) in steps.enumerated() {
            let answer = try client.appendEvents(step.events)
            #expect(answer["ok"] == true, "step \(n): \(answer)")
            let (city, head) = try Self.kupiansk(client)
            #expect(city["firstIncidentAt"] == (step.first.map { .string($0) } ?? .null), "step \(n): \(city)")
            #expect(city["lastIncidentAt"] == (step.last.map { .string($0) } ?? .null), "step \(n): \(city)")
            #expect(city["incidents"]?["total"] == .int(step.total), "step \(n): \(city)")
            // Replay folds the log afresh, through the daemon, and must give what the daemon keeps.
            let replayed = Self.kupiansk(in: try client.call("replay")["cities"])
            #expect(replayed == city, "step \(n): replay gives \(String(describing: replayed))")
            kept.append((city, head))
            if n == 6 || n == 11 {
                // Restarted with a rebuild: the projections folded again from the events are the ones kept.
                let cities = try client.call("cities")["cities"]
                #expect(daemon.stop() == 0)
                daemon.extraArguments = ["--rebuild-projections"]
                try daemon.start()
                daemon.extraArguments = []
                client = try daemon.client()
                #expect(try client.call("cities")["cities"] == cities, "step \(n): the rebuild differs")
                let verify = try client.call("verify")
                #expect(verify["derived"]?["intact"] == true && verify["derived"]?["notCompared"] == nil, "step \(n): \(verify)")
            }
        }
        // Replay up to each step's head, through the daemon and from the data directory, gives the city as it stood.
        for (n, (city, head)) in kept.enumerated() {
            let replayed = Self.kupiansk(in: try client.call("replay", ["untilPosition": .int(head)])["cities"])
            #expect(replayed == city, "replay up to step \(n) (position \(head)) gives \(String(describing: replayed))")
        }
        #expect(daemon.stop() == 0)
        for (n, (city, head)) in kept.enumerated() where n % 3 == 2 {
            let direct = try runCommand(
                Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--until-position", "\(head)", "--format", "json"])
            #expect(direct.status == 0, "\(direct.stderr)")
            #expect(Self.kupiansk(in: direct.json) == city, "replay --data-dir up to step \(n): \(direct.stdout)")
        }
    }

    @Test("a request of several events refused after its retraction was folded leaves the dates as they were, and the index of dates with them")
    func refusedRequestLeavesDates() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents([Self.report("a", "2022-03-05"), Self.report("b", "2022-03-09")])
        #expect(answer["ok"] == true, "\(answer)")
        let before = try Self.kupiansk(client).city
        // The retraction of b is folded, then the request is refused at its second event: nothing of it stays.
        let refused = try client.appendEvents([Self.outcome("b", "retracted"), Self.outcome("nowhere", "retracted")])
        #expect(refused["error"]?["code"] == "unknown_incident", "\(refused)")
        #expect(try Self.kupiansk(client).city == before)
        // Were b's entry left out of the index, retracting a would leave no dates, and verify would name it.
        #expect(try client.appendEvents([Self.outcome("a", "retracted")])["ok"] == true)
        let city = try Self.kupiansk(client).city
        #expect(city["firstIncidentAt"] == "2022-03-09" && city["lastIncidentAt"] == "2022-03-09", "\(city)")
        let verify = try client.call("verify")
        #expect(verify["derived"]?["intact"] == true, "\(verify)")
        #expect(daemon.stop() == 0)
    }

    @Test("an entry of city-dates changed, missing or added is named by verify with the rebuild as its remedy, which mends it")
    func verifyNamesIndexDamage() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents([Self.report("a", "2022-03-05"), Self.report("b", "2022-03-09"), Self.outcome("b", "retracted")])
        #expect(answer["ok"] == true, "\(answer)")
        #expect(daemon.stop() == 0)
        // Kupiansk's only entry is a's, the report at position 1.
        let entries = try { () throws -> [(key: [UInt8], value: [UInt8])] in
            let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
            let db = try environment.openDatabase("city-dates", create: false)
            return try environment.read { txn in
                var entries: [(key: [UInt8], value: [UInt8])] = []
                try txn.forEach(db) { key, value in
                    // The dates, not the city's index of incidents after them (CityIncidentsTests).
                    if key.first != 0xFF { entries.append((Array(key), Array(value))) }
                    return true
                }
                return entries
            }
        }()
        #expect(entries.map(\.value) == [Array("2022-03-05".utf8) + [0] + Array("a".utf8)], "\(entries)")
        let entry = try #require(entries.first)
        #expect(entry.key == Array("kupiansk".utf8) + [0] + entry.key[9..<17] + DerivedDataTests.bigEndian(1), "\(entry.key)")
        let retracted = Array(entry.key[..<17]) + DerivedDataTests.bigEndian(2)
        let damages: [(String, (borrowing WriteTransaction, Database) throws -> Void)] = [
            ("it holds the date 2022-03-06 of incident a at this position, where the events give 2022-03-05 of incident a",
             { txn, db in try txn.put(db, key: entry.key, value: Array("2022-03-06".utf8) + [0] + Array("a".utf8)) }),
            ("it holds the date 2022-03-05 of incident b at this position, where the events give 2022-03-05 of incident a",
             { txn, db in try txn.put(db, key: entry.key, value: Array("2022-03-05".utf8) + [0] + Array("b".utf8)) }),
            ("it holds the date 2022-03-05 (no incident id after the date) at this position, where the events give 2022-03-05 of incident a",
             { txn, db in try txn.put(db, key: entry.key, value: Array("2022-03-05".utf8)) }),
            ("it has no entry for the report at this position (2022-03-05 of incident a), which its city counts",
             { txn, db in _ = try txn.delete(db, key: entry.key) }),
            ("it holds the date 2022-03-09 of incident b at this position, which is not an incident its city counts",
             { txn, db in try txn.put(db, key: retracted, value: Array("2022-03-09".utf8) + [0] + Array("b".utf8)) }),
        ]
        for (problem, damage) in damages {
            try DerivedDataTests.damage(daemon, "city-dates", damage)
            let verified = try DerivedDataTests.verify(daemon)
            let difference = try DerivedDataTests.onlyDifference(verified)
            #expect(difference["database"] == "city-dates", "\(difference)")
            #expect(difference["problem"]?.stringValue?.hasPrefix(problem) == true, "\(difference)")
            #expect(difference["remedy"] == "rebuild-projections", "\(difference)")
            #expect(difference["key"] == (problem.contains("2022-03-09") ? "kupiansk/2" : "kupiansk/1"), "\(difference)")
            #expect(daemon.stop() == 0)
            daemon.extraArguments = ["--rebuild-projections"]
            try daemon.start()
            daemon.extraArguments = []
            #expect(try daemon.client().call("verify")["derived"]?["intact"] == true)
            #expect(daemon.stop() == 0)
        }
    }

    @Test("a daemon upgrades a format 3 log, which kept no index of dates and showed a retracted incident's date, to format 6: the index made and the cities' dates folded again; a reader refuses it until then")
    func upgradesFormat3() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents([
            Self.report("a", "2022-03-05"), Self.report("b", "2022-03-01"), Self.report("c", "2022-03-20"),
            Self.outcome("c", "retracted"), Wire.report(incident: "m", city: "Melitopol", occurredAt: "2022-03-13"),
            Self.outcome("m", "retracted"),
        ])
        #expect(answer["ok"] == true, "\(answer)")
        let cities = try #require(try client.call("cities")["cities"])
        #expect(Self.kupiansk(in: cities)?["lastIncidentAt"] == "2022-03-05", "\(cities)")
        #expect(daemon.stop() == 0)

        // What an incidentd of format 3 left: no city-dates, projections of version 6 whose dates span every report.
        do {
            let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
            let meta = try environment.openDatabase("meta", create: false)
            let stored = try environment.openDatabase("cities", create: false)
            let dates = try environment.openDatabase("city-dates", create: false)
            try environment.write { txn in
                for (id, last) in [("kupiansk", "2022-03-20"), ("melitopol", "2022-03-13")] {
                    let document = try JSONReader().read(try #require(try txn.get(stored, key: id)))
                    var old = DerivedDataTests.setting(["lastIncidentAt"], to: .string(last), in: document)
                    if id == "melitopol" { old = DerivedDataTests.setting(["firstIncidentAt"], to: .string(last), in: old) }
                    try txn.put(stored, key: id, value: old.canonicalBytes())
                }
                try txn.drop(dates, delete: true)
                let mark = Array(try #require(try txn.get(meta, key: Array("projections".utf8))))
                try txn.put(meta, key: Array("projections".utf8), value: Array(mark[..<8]) + DerivedDataTests.bigEndian(6))
                try txn.put(meta, key: Array("format".utf8), value: Array("incidentd-log-3".utf8))
            }
        }
        let refused = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("format incidentd-log-3") && refused.stderr.contains("upgrade"), "\(refused.stderr)")

        try daemon.start()
        #expect(
            daemon.log.contains("the log was upgraded to incidentd-log-6, which keeps each city's incidents in an index of their dates and a list of those it does not date: rebuilding the projections"),
            "\(daemon.log)")
        let upgraded = try daemon.client()
        #expect(try upgraded.call("cities")["cities"] == cities)
        let melitopol = try upgraded.call("city", ["city": "Melitopol"])["city"]
        #expect(melitopol?["firstIncidentAt"] == .null && melitopol?["lastIncidentAt"] == .null, "\(String(describing: melitopol))")
        let verify = try upgraded.call("verify")
        #expect(verify["derived"]?["intact"] == true && verify["derived"]?["notCompared"] == nil, "\(verify)")
        // The index the upgrade made is the one the writer keeps: a retraction moves the dates to the next.
        #expect(try upgraded.appendEvents([Self.outcome("a", "retracted")])["ok"] == true)
        let city = try Self.kupiansk(upgraded).city
        #expect(city["firstIncidentAt"] == "2022-03-01" && city["lastIncidentAt"] == "2022-03-01", "\(city)")
        #expect(daemon.stop() == 0)
        let replay = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(Self.kupiansk(in: replay.json) == city, "\(replay.stdout)")
    }
}
