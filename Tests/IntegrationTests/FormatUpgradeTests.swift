import Foundation
import Gazetteer
import IncidentLog
import LMDB
import StrictJSON
import Synchronization
import Testing

/// Format 1 kept each incident's stream under `incident id ‖ 0x00 ‖ version` in `streams`; format 2 keeps it
/// under `stream start ‖ version` in `incident-streams`. A daemon started on a format 1 log must upgrade it and
/// then answer exactly as before; a reader must refuse it with a message that says what to do.
@Suite("Format upgrade")
struct FormatUpgradeTests {
    /// Rewrites the log in `dataDir`, written by this daemon in format 2, as format 1 wrote it.
    static func downgradeToFormat1(_ dataDir: String) throws {
        var options = EnvironmentOptions()
        options.maxDatabases = 8
        let environment = try Environment(directory: dataDir, options: options)
        let events = try environment.openDatabase("events", create: false)
        let streams = try environment.openDatabase("incident-streams", create: false)
        let meta = try environment.openDatabase("meta", create: false)
        let old = try environment.openDatabase("streams", create: true)
        try environment.write { txn in
            var entries: [(key: [UInt8], value: [UInt8])] = []
            try txn.forEach(streams) { key, value in
                entries.append((Array(key), Array(value)))
                return true
            }
            for (key, value) in entries {
                let start = key[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                guard let stored = try txn.get(events, key: start) else { throw HarnessError("no event at \(start)") }
                let document = try JSONReader().read(UnsafeRawBufferPointer(rebasing: stored[32...]))
                guard let incident = document["incident"]?.stringValue else { throw HarnessError("event \(start) has no incident") }
                try txn.put(old, key: Array(incident.utf8) + [0] + Array(key[8..<16]), value: Array(value[0..<8]))
            }
            try txn.drop(streams, delete: true)
            try txn.put(meta, key: Array("format".utf8), value: Array("incidentd-log-1".utf8))
        }
    }

    /// Rewrites the log in `dataDir` as format 2 kept it: each `incident-streams` value the position alone. With
    /// `keepEvery`, every that many entries keep their summary, as an upgrade cut short by a crash leaves them.
    static func downgradeToFormat2(_ dataDir: String, keepEvery: Int? = nil) throws {
        var options = EnvironmentOptions()
        options.maxDatabases = 8
        let environment = try Environment(directory: dataDir, options: options)
        let streams = try environment.openDatabase("incident-streams", create: false)
        let meta = try environment.openDatabase("meta", create: false)
        try environment.write { txn in
            var entries: [(key: [UInt8], value: [UInt8])] = []
            try txn.forEach(streams) { key, value in
                entries.append((Array(key), Array(value)))
                return true
            }
            for (index, (key, value)) in entries.enumerated() where keepEvery.map({ index % $0 != 0 }) ?? true {
                try txn.put(streams, key: key, value: Array(value[0..<8]))
            }
            try txn.put(meta, key: Array("format".utf8), value: Array("incidentd-log-2".utf8))
        }
    }

    /// What the daemon answers about each incident, its document and its events, without the requests' ids.
    static func answers(_ client: RawClient, _ incidents: [String]) throws -> [JSONValue] {
        try incidents.flatMap { id in
            [
                try client.call("incident", ["incident": .string(id)]),
                try client.call("read", ["from": .int(1), "limit": .int(1000), "incident": .string(id)]),
            ]
        }.map { answer in
            guard case .object(var members) = answer else { return answer }
            members["id"] = nil
            return .object(members)
        }
    }

    @Test("a daemon upgrades a format 1 log and answers every incident as before; a reader refuses it until then")
    func upgradesFormat1() throws {
        let daemon = try Daemon()
        let events = RebuildTests.events(incidents: 400)
        let client = try daemon.client()
        try client.appendEvents(events, inBatchesOf: 100)
        let incidents = Set(events.compactMap { $0["incident"]?.stringValue }).sorted()
        let before = try Self.answers(client, incidents)
        #expect(before.allSatisfy { $0["ok"]?.boolValue == true })
        // Responses and outcomes came long after their reports, so the streams are interleaved in the log.
        #expect(before.contains { ($0["events"]?.arrayValue?.count ?? 0) >= 4 })
        let status = try client.call("status")
        #expect(daemon.stop() == 0)

        try Self.downgradeToFormat1(daemon.dataDir)
        #expect(throws: LogError.self) {
            _ = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
        }
        let refused = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("format incidentd-log-1"), "\(refused.stderr)")
        #expect(refused.stderr.contains("upgrade"), "\(refused.stderr)")

        try daemon.start()
        let upgraded = try daemon.client()
        #expect(try Self.answers(upgraded, incidents) == before)
        #expect(try upgraded.call("status")["headHash"] == status["headHash"])
        #expect(try upgraded.call("verify")["ok"]?.boolValue == true)
        let next = try upgraded.appendEvents([
            .object([
                "type": .string("response-observed"), "incident": .string(incidents[0]),
                "data": .object(["by": .string("occupation police"), "responses": .array([.string("detentions")])]),
            ])
        ])
        #expect(next["ok"]?.boolValue == true, "\(next)")
        let stream = try upgraded.call("read", ["from": .int(1), "limit": .int(1000), "incident": .string(incidents[0])])
        #expect(stream["events"]?.arrayValue?.count == (before[1]["events"]?.arrayValue?.count ?? 0) + 1)
        #expect(daemon.stop() == 0)

        do {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
            #expect(throws: LMDBError.self) { _ = try log.environment.openDatabase("streams", create: false) }
        }

        let after = try { () throws -> [JSONValue] in
            try daemon.start()
            defer { daemon.stop() }
            return try Self.answers(daemon.client(), incidents)
        }()

        // A copy cut short by a crash leaves part of incident-streams behind, and the format still at 1: the next
        // start must clear it and copy again. Here the part left behind also holds an entry no copy would make.
        try Self.downgradeToFormat1(daemon.dataDir)
        let stray = [UInt8](repeating: 0, count: 8) + [0, 0, 0, 0, 0, 0, 0, 1]
        do {
            var options = EnvironmentOptions()
            options.maxDatabases = 8
            let environment = try Environment(directory: daemon.dataDir, options: options)
            let partial = try environment.openDatabase("incident-streams", create: true)
            try environment.write { txn in try txn.put(partial, key: stray, value: [UInt8](repeating: 0xFF, count: 8)) }
        }
        try daemon.start()
        #expect(try Self.answers(daemon.client(), incidents) == after)
        #expect(daemon.stop() == 0)
        do {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
            let streams = try log.environment.openDatabase("incident-streams", create: false)
            #expect(try log.environment.read { txn in try txn.get(streams, key: stray) == nil })
        }

        // Again, in transactions of a few entries each, so that the copy resumes across them mid-stream.
        try Self.downgradeToFormat1(daemon.dataDir)
        do {
            var options = LogOptions(directory: daemon.dataDir)
            options.upgradeEntriesPerCommit = 7
            _ = try EventLog(options: options, gazetteer: .embedded)
        }
        try daemon.start()
        #expect(try Self.answers(daemon.client(), incidents) == after)
        #expect(daemon.stop() == 0)
    }

    @Test("a daemon upgrades a format 2 log to the summaries the writer makes, also after an upgrade cut short")
    func upgradesFormat2() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents(try Repository.articleEvents())
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        let events = RebuildTests.events(incidents: 300)
        try client.appendEvents(events, inBatchesOf: 100)
        let incidents = Set(events.compactMap { $0["incident"]?.stringValue }).sorted()
        let before = try Self.answers(client, incidents)
        let cities = try client.call("cities")["cities"]
        #expect(daemon.stop() == 0)

        func databases(_ environment: Environment) throws -> [Database] {
            try ["incident-streams", "incidents", "cities"].map { try environment.openDatabase($0, create: false) }
        }
        // Read with LMDB alone, since a reader of the log refuses format 2.
        func stored() throws -> [UInt8] {
            var options = EnvironmentOptions()
            options.maxDatabases = 8
            options.readOnly = true
            let environment = try Environment(directory: daemon.dataDir, options: options)
            return try RebuildTests.digest(environment, try databases(environment))
        }
        let written = try stored()

        for keepEvery in [nil, 3] {
            try Self.downgradeToFormat2(daemon.dataDir, keepEvery: keepEvery)
            #expect(try stored() != written)
            let refused = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("format incidentd-log-2"), "\(refused.stderr)")
            do {
                var options = LogOptions(directory: daemon.dataDir)
                options.upgradeEntriesPerCommit = 7
                let log = try EventLog(options: options, gazetteer: .embedded)
                // The summaries made from the stored events are the ones the writer made when it stored them.
                let same = try RebuildTests.digest(log.environment, try databases(log.environment)) == written
                #expect(same, "the upgraded incident-streams differ from what the writer stored")
                try log.rebuildProjections(stretches: 5)
            }
            #expect(try stored() == written)
            try daemon.start()
            let upgraded = try daemon.client()
            #expect(try Self.answers(upgraded, incidents) == before)
            #expect(try upgraded.call("cities")["cities"] == cities)
            #expect(daemon.stop() == 0)
        }
    }

    /// Progress messages heard while opening the log in `dataDir` with `options`.
    static func progressHeard(_ dataDir: String, interval: Duration, rebuild: Bool = false) throws -> [String] {
        let heard = Mutex<[String]>([])
        var options = LogOptions(directory: dataDir)
        options.progressInterval = interval
        options.rebuildAtOpen = rebuild
        options.onProgress = { message in heard.withLock { $0.append(message) } }
        _ = try EventLog(options: options, gazetteer: .embedded)
        return heard.withLock { $0 }
    }

    @Test("the checks of every page and of the hash chain that an upgrade or a rebuild starts with tell how far they got, once per progressInterval, so that a start on a large log keeps extending its timeout")
    func longChecksTellHowFarTheyGot() throws {
        let daemon = try Daemon()
        let answer = try daemon.client().appendEvents(RebuildTests.events(incidents: 600))
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        let head = try #require(answer["positions"]?.arrayValue?.count)
        #expect(daemon.stop() == 0)
        try OlderFormatVerifyTests.downgrade(daemon, toFormat: 5)

        // Every run of pages read, and every stretch of the chain, reports when the interval is nothing.
        let upgrade = try Self.progressHeard(daemon.dataDir, interval: .zero)
        // The pages first, then the chain; then the rebuild the upgrade ends with checks the pages again.
        let chainAt = try #require(upgrade.firstIndex(of: "checking the hash chain: \(head) of \(head) events checked"), "\(upgrade)")
        let pages = upgrade[..<chainAt].filter { $0.hasPrefix("checking every page of the log: ") }
        #expect(pages.count >= 3, "\(upgrade)")
        let reached = pages.compactMap { Int($0.split(separator: " ")[6]) }
        #expect(reached.count == pages.count && reached == reached.sorted() && reached.first ?? 0 < reached.last ?? 0, "\(pages)")

        // A rebuild checks the pages first, and says so; in a few milliseconds, which 10 seconds do not report.
        let rebuild = try Self.progressHeard(daemon.dataDir, interval: .seconds(10), rebuild: true)
        #expect(rebuild.first == "checking every page of the log before the rebuild of its projections", "\(rebuild)")
        #expect(!rebuild.contains { $0.contains(" pages checked") }, "\(rebuild)")
        let paced = try Self.progressHeard(daemon.dataDir, interval: .zero, rebuild: true)
        #expect(paced.filter { $0.hasPrefix("checking every page of the log: ") }.count >= 3, "\(paced)")
    }
}
