import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// The rebuild folds the incidents' streams in stretches, on several threads, and writes the incidents in several
/// commits; whatever the number of stretches and the size of a commit, the projections must come out byte for
/// byte as the daemon kept them event by event. `replay` runs the same
/// fold with limits, and must agree with the reference `Projector` for each of them.
@Suite("Rebuild and replay")
struct RebuildTests {
    static let cities = ["Kupiansk", "Melitopol", "Berdyansk"]
    static let kinds = ["demonstration", "blockade", "strike", "symbolic-act"]

    /// Reports of `incidents` incidents, each followed later by responses and outcomes, so that many events
    /// concern incidents reported chunks earlier; every tenth incident gets a correction, and some are retracted, some of those reinstated.
    static func events(incidents: Int) -> [JSONValue] {
        var events: [JSONValue] = []
        func id(_ n: Int) -> String { "\(cities[n % 3].lowercased())-2022-03-\(String(format: "%02d", 1 + n % 28))-rebuild-\(n)" }
        for n in 0..<incidents {
            // Some reports know only the month, which starts when 1 March does: a city's first incident then ties
            // between two texts, and the one reported first must win.
            let onlyMonth = n % 56 == 28
            events.append(.object([
                "type": .string("incident-reported"), "incident": .string(id(n)),
                "occurredAt": .string(onlyMonth ? "2022-03" : "2022-03-\(String(format: "%02d", 1 + n % 28))"),
                "precision": .string(onlyMonth ? "month" : "day"),
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
                // Every third of them retracts its incident, which leaves its city's sums (and comes back below).
                let status = ["dispersed", "ongoing", "retracted"][(n / 7) % 3]
                var data: [String: JSONValue] = ["status": .string(status), "verification": .string("verified")]
                if n % 10 == 0 { data["corrections"] = .object(["kind": .string("strike"), "participants": .object(["low": .int(5), "high": .int(9)])]) }
                if n % 10 == 5 { data["corrections"] = .object(["participants": .null, "location": .string("the market square")]) }
                if n % 30 == 21 { data["corrections"] = .object(["participants": .int(40)]) }
                events.append(.object(["type": .string("outcome-updated"), "incident": .string(id(n - 100)), "data": .object(data)]))
            }
            // Half the incidents retracted seven reports ago are reinstated, and count in their city's sums again.
            if n >= 107, n % 14 == 0, ((n - 7) / 7) % 3 == 2 {
                events.append(.object([
                    "type": .string("outcome-updated"), "incident": .string(id(n - 107)),
                    "data": .object(["status": .string("ongoing"), "verification": .string("disputed")]),
                ]))
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

    @Test("rebuilding in any number of stretches, segments and commits gives the daemon's projections byte for byte")
    func stretchedRebuild() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let events = Self.events(incidents: 900)
        try client.appendEvents(events, inBatchesOf: 200)
        #expect(try client.headPosition() == Int64(events.count))
        #expect(daemon.stop() == 0)

        let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
        // city-dates too: the dates and the cities' indexes of incidents the daemon wrote report by report.
        let projections = [
            try log.environment.openDatabase("incidents", create: false), try log.environment.openDatabase("cities", create: false),
            try log.environment.openDatabase("city-dates", create: false),
        ]
        let kept = try Self.digest(log.environment, projections)
        #expect(kept.count > 100_000)
        // One stretch, the default, a few, and more stretches than some have incidents (cities then span many
        // stretches, and their first and last incidents tie across them, since days repeat); one segment, and
        // segments of a few hundred positions, whose incidents fall between those written before.
        let sizes: [(stretches: Int?, perCommit: Int, segment: Int)] = [
            (1, 16_384, 1 << 20), (nil, 7, 1 << 20), (3, 40, 250), (97, 1, 1 << 20), (2_000, 16_384, 1 << 20), (nil, 16_384, 97),
        ]
        for (stretches, perCommit, segment) in sizes {
            let folded = try log.rebuildProjections(stretches: stretches, incidentsPerCommit: perCommit, segment: segment)
            #expect(folded == UInt64(events.count))
            let same = try Self.digest(log.environment, projections) == kept
            #expect(
                same,
                "the projections rebuilt in \(stretches.map(String.init) ?? "the default") stretches, \(perCommit) incidents a commit, segments of \(segment), differ")
        }
    }

    @Test("a rebuild that meets damaged stream summaries makes them again from the events, and still gives the daemon's projections")
    func damagedSummaries() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let events = Self.events(incidents: 200)
        try client.appendEvents(events, inBatchesOf: 100)
        #expect(daemon.stop() == 0)

        var options = EnvironmentOptions()
        options.maxDatabases = 8
        let names = ["incident-streams", "incidents", "cities"]
        let (streamsBefore, projectionsBefore) = try { () throws -> ([UInt8], [UInt8]) in
            let environment = try Environment(directory: daemon.dataDir, options: options)
            let dbs = try names.map { try environment.openDatabase($0, create: false) }
            let before = (try Self.digest(environment, [dbs[0]]), try Self.digest(environment, Array(dbs[1...])))
            // Damage three summaries: a report's type, a response cut short, a count past every limit.
            var entries: [(key: [UInt8], value: [UInt8])] = []
            try environment.read { txn in
                try txn.forEach(dbs[0]) { key, value in
                    entries.append((Array(key), Array(value)))
                    return true
                }
            }
            let report = try #require(entries.firstIndex { $0.value[8] == 1 })
            let response = try #require(entries.lastIndex { $0.value[8] == 2 })
            let counted = try #require(entries.firstIndex { $0.value[8] == 2 && $0.value[9] & 4 != 0 })
            try environment.write { txn in
                var changed = entries[report].value
                changed[8] = 9
                try txn.put(dbs[0], key: entries[report].key, value: changed)
                try txn.put(dbs[0], key: entries[response].key, value: Array(entries[response].value[0..<10]))
                changed = entries[counted].value
                for i in (changed.count - 8)..<changed.count { changed[i] = 0x7F }
                try txn.put(dbs[0], key: entries[counted].key, value: changed)
            }
            return before
        }()

        let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
        let dbs = try names.map { try log.environment.openDatabase($0, create: false) }
        #expect(try Self.digest(log.environment, [dbs[0]]) != streamsBefore)
        #expect(try log.rebuildProjections() == UInt64(events.count))
        #expect(try Self.digest(log.environment, [dbs[0]]) == streamsBefore, "the summaries were not made again as the writer made them")
        let same = try Self.digest(log.environment, Array(dbs[1...])) == projectionsBefore
        #expect(same, "the projections rebuilt after the summaries were made again differ from the daemon's")
    }

    /// What `replay` computed before it shared the rebuild's fold: each event decoded, then `Projector.apply`,
    /// with the limits applied as SPEC §3 states them.
    static func referenceReplay(_ events: [JSONValue], _ limit: ReplayLimit) throws -> [UInt8] {
        var projections = InMemoryProjections()
        let projector = Projector(gazetteer: .embedded)
        for document in events {
            guard case .object(var members) = document else { throw HarnessError("an event is not an object") }
            members["hash"] = nil
            let event = try RecordedEvent(json: .object(members))
            if let until = limit.untilPosition, event.position > until { break }
            if let asOf = limit.asOf, event.recordedAt > asOf { break }
            if let before = limit.occurredBefore {
                guard let occurred = ParsedDate.parse(event.occurredAt), occurred.start < before else { continue }
            }
            try projector.apply(event, to: &projections)
        }
        return projections.citiesDocument.canonicalBytes()
    }

    @Test("replay with every kind of limit gives what the reference projector gives")
    func replayLimits() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents(try Repository.articleEvents())
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        let generated = Self.events(incidents: 300)
        try client.appendEvents(generated, inBatchesOf: 97)
        let stored = try client.allEvents()
        let kept = try client.call("cities")["cities"] ?? .null
        #expect(kept.arrayValue?.count == 3)
        #expect(daemon.stop() == 0)
        let head = UInt64(stored.count)
        // Instants taken from the log itself: each append's recordedAt, and the days incidents occurred on.
        let recorded = Set(stored.compactMap { $0["recordedAt"]?.stringValue }).sorted().compactMap { ParsedDate.parse($0)?.start }
        #expect(recorded.count > 5)
        let middle = recorded[recorded.count / 2]
        var limits: [ReplayLimit] = [ReplayLimit()]
        for until in [UInt64(1), 7, head / 2, head - 1, head, head + 10] { limits.append(ReplayLimit(untilPosition: until)) }
        for asOf in [recorded[0], middle, Timestamp(microseconds: middle.microseconds - 1), recorded[recorded.count - 1]] {
            limits.append(ReplayLimit(asOf: asOf))
        }
        for day in ["2022-03-01", "2022-03-02", "2022-03-15", "2022-03-15T12:00Z", "2030-01-01"] {
            limits.append(ReplayLimit(occurredBefore: ParsedDate.parse(day)?.start))
        }
        limits.append(ReplayLimit(untilPosition: head * 3 / 4, asOf: middle, occurredBefore: ParsedDate.parse("2022-03-20")?.start))

        let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
        for limit in limits {
            let replayed = JSONValue.array(try log.replay(limit).map(\.json)).canonicalBytes()
            let reference = try Self.referenceReplay(stored, limit)
            let same = replayed == reference
            #expect(same, "replay differs from the reference projector for \(limit)")
        }
        // Unlimited, it is what the daemon kept.
        let same = JSONValue.array(try log.replay().map(\.json)).canonicalBytes() == kept.canonicalBytes()
        #expect(same, "replay differs from the daemon's cities")
    }
}
