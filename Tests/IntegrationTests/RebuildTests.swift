import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// The rebuild folds the log in chunks and writes each chunk's incidents in several commits; whatever the sizes,
/// the projections must come out byte for byte as the daemon kept them event by event. `replay` runs the same
/// fold with limits, and must agree with the reference `Projector` for each of them.
@Suite("Rebuild and replay")
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
            let same = try Self.digest(log.environment, projections) == kept
            #expect(same, "the projections rebuilt in chunks of \(chunk) events, \(perCommit) incidents a commit, differ")
        }
    }

    /// Stores the generated events with a daemon, then stops it; returns the daemon, how many events it holds and
    /// a digest of the projections it kept.
    static func storedLog(incidents: Int) throws -> (Daemon, Int, [UInt8]) {
        let daemon = try Daemon()
        let client = try daemon.client()
        let events = Self.events(incidents: incidents)
        for start in stride(from: 0, to: events.count, by: 200) {
            let answer = try client.appendEvents(Array(events[start..<min(start + 200, events.count)]))
            #expect(answer["ok"]?.boolValue == true, "\(answer)")
        }
        #expect(daemon.stop() == 0)
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let kept = try digest(
            environment, [try environment.openDatabase("incidents", create: false), try environment.openDatabase("cities", create: false)])
        return (daemon, events.count, kept)
    }

    /// Rewrites every stored event with LMDB directly: `change` gets its position and stored value and returns
    /// the new value.
    static func rewriteEvents(_ daemon: Daemon, _ change: (UInt64, [UInt8]) -> [UInt8]) throws {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let events = try environment.openDatabase("events", create: false)
        try environment.write { txn in
            var changed: [([UInt8], [UInt8])] = []
            try txn.forEach(events) { key, value in
                var position: UInt64 = 0
                for byte in key { position = position << 8 | UInt64(byte) }
                changed.append((Array(key), change(position, Array(value))))
                return true
            }
            for (key, value) in changed { try txn.put(events, key: key, value: value) }
        }
    }

    static func rebuiltDigest(_ daemon: Daemon) throws -> (UInt64, [UInt8], String) {
        let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
        let folded = try log.rebuildProjections()
        let projections = [
            try log.environment.openDatabase("incidents", create: false), try log.environment.openDatabase("cities", create: false),
        ]
        let meta = try log.environment.openDatabase("meta", create: false)
        let format = try log.environment.read { txn in
            try txn.get(meta, key: Array("format".utf8)).map { String(decoding: $0, as: UTF8.self) }
        }
        return (folded, try digest(log.environment, projections), format ?? "")
    }

    @Test("events without fold summaries (a log of format 1), or with damaged ones, rebuild from their JSON alike")
    func rebuildWithoutSummaries() throws {
        let (daemon, count, kept) = try Self.storedLog(incidents: 400)
        var summaries = 0
        try Self.rewriteEvents(daemon) { position, value in
            if value.withUnsafeBytes({ StoredEventValue.summary($0) }) != nil { summaries += 1 }
            switch position % 3 {
            case 0: return StoredEventValue.withoutSummary(value)
            case 1: return StoredEventValue.withSummary(value, [9, 0, 0])  // a type no summary has
            default: return value
            }
        }
        #expect(summaries == count, "every event the daemon stored carries a fold summary")
        // As a daemon of format 1 left it.
        do {
            let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
            let meta = try environment.openDatabase("meta", create: false)
            try environment.write { txn in try txn.put(meta, key: Array("format".utf8), value: Array("incidentd-log-1".utf8)) }
        }

        let (folded, rebuilt, format) = try Self.rebuiltDigest(daemon)
        #expect(folded == UInt64(count))
        let same = rebuilt == kept
        #expect(same, "the projections rebuilt from JSON and summaries mixed differ from the daemon's")
        #expect(format == EventLog.formatTag)
    }

    @Test("the rebuild reads the fold summaries, and replay the JSON")
    func rebuildReadsSummaries() throws {
        let (daemon, count, kept) = try Self.storedLog(incidents: 50)
        func replay() throws -> [UInt8] {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
            return JSONValue.array(try log.replay().map(\.json)).canonicalBytes()
        }
        let replayed = try replay()
        // The last event is a response, so its incident's version is the one it carries; its summary's version
        // (bytes 3..<11) is set to 99.
        try Self.rewriteEvents(daemon) { position, value in
            guard position == UInt64(count), let summary = value.withUnsafeBytes({ StoredEventValue.summary($0).map(Array.init) }) else { return value }
            #expect(summary[0] == 1, "the last event is a response")
            var changed = summary
            withUnsafeBytes(of: Int64(99).littleEndian) { changed.replaceSubrange(3..<11, with: $0) }
            return StoredEventValue.withSummary(value, changed)
        }
        let (_, rebuilt, _) = try Self.rebuiltDigest(daemon)
        let differs = rebuilt != kept
        #expect(differs, "a changed summary does not change the rebuilt projections")
        let replayedAlike = try replay() == replayed
        #expect(replayedAlike, "replay read a summary")
        // The summary is derived data: the hash chain covers the JSON, which is unchanged.
        let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
        #expect(try log.verify().firstBadPosition == nil)
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
        var answer = try client.appendEvents(try Repository.articleEvents())
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        let generated = Self.events(incidents: 300)
        for start in stride(from: 0, to: generated.count, by: 97) {
            answer = try client.appendEvents(Array(generated[start..<min(start + 97, generated.count)]))
            #expect(answer["ok"]?.boolValue == true, "\(answer)")
        }
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
