import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// `verify` compares the data derived from the events with the events: a value changed in place in an index or a
/// projection (LMDB keeps no checksums, and the hash chain covers the events alone) passes the page check and leaves
/// the chain intact, and `verify` must still name it, with what puts it right.
@Suite("Verify: the data derived from the events")
struct DerivedDataTests {
    static let kupiansk = "kupiansk-2022-03-01-city-hall"

    /// Changes the stored log of the stopped `daemon` with LMDB directly, as a bad disk could: `change` is given a
    /// write transaction and the named database.
    static func damage(
        _ daemon: Daemon, _ database: String, _ change: (borrowing WriteTransaction, Database) throws -> Void
    ) throws {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let db = try environment.openDatabase(database, create: false)
        try environment.write { txn in try change(txn, db) }
    }

    /// The `incident-streams` entry of the event at `position`: its key and value (`position ‖ summary`).
    static func streamEntry(_ daemon: Daemon, position: UInt64) throws -> (key: [UInt8], value: [UInt8]) {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let db = try environment.openDatabase("incident-streams", create: false)
        let found = try environment.read { txn -> (key: [UInt8], value: [UInt8])? in
            var found: (key: [UInt8], value: [UInt8])?
            try txn.forEach(db) { key, value in
                if value.count >= 8, bigEndian(value) == position { found = (Array(key), Array(value)) }
                return found == nil
            }
            return found
        }
        return try #require(found, "no incident-streams entry names position \(position)")
    }

    static func bigEndian(_ bytes: some Collection<UInt8>) -> UInt64 { bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) } }
    static func bigEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) } }

    /// `document` with the member at `path` set to `value`.
    static func setting(_ path: [String], to value: JSONValue, in document: JSONValue) -> JSONValue {
        guard let first = path.first, case .object(var members) = document else { return value }
        members[first] = setting(Array(path.dropFirst()), to: value, in: members[first] ?? .null)
        return .object(members)
    }

    /// What the log in `daemon`'s directory verifies as, read directly in stretches of several sizes, which must
    /// all agree; then what the daemon's `verify` answers, which must agree with them too. The daemon is left
    /// running.
    static func verify(_ daemon: Daemon) throws -> JSONValue {
        var reports: [VerifyReport] = []
        do {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
            for stretch in [1, 3, 1 << 16] { reports.append(try log.verify(stretch: stretch)) }
        }
        #expect(Set(reports).count == 1, "verify in stretches of 1, 3 and 65,536 events: \(reports)")
        try daemon.start()
        let answer = try daemon.client().call("verify")
        #expect(answer["derived"] == reports.last?.members["derived"], "the daemon: \(answer); directly: \(String(describing: reports.last))")
        return answer
    }

    /// The one difference a verify answer's derived data holds.
    static func onlyDifference(_ answer: JSONValue) throws -> JSONValue {
        #expect(answer.isOK && answer["intact"] == true, "the pages and the chain are intact: \(answer)")
        #expect(answer["derived"]?["intact"] == false, "\(answer)")
        let differences = answer["derived"]?["differences"]?.arrayValue ?? []
        #expect(differences.count == 1, "\(differences)")
        return try #require(differences.first, "no difference named: \(answer)")
    }

    /// `incidentctl verify` against the running daemon: exit 1, derived_data_differs naming `database` and `key`
    /// and the remedy's words; the same again with `--data-dir` once the daemon is stopped.
    static func expectCommandsRefuse(_ daemon: Daemon, database: String, key: String, remedy: String) throws {
        let socket = try daemon.ctl(["verify", "--format", "table"])
        #expect(daemon.stop() == 0)
        let direct = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "json"])
        for result in [socket, direct] {
            #expect(result.status == 1, "\(result.stdout) \(result.stderr)")
            #expect(result.stderr.contains("derived_data_differs: the pages and the hash chain are intact"), "\(result.stderr)")
            #expect(result.stderr.contains("\(database) \(key)"), "\(result.stderr)")
            #expect(result.stderr.contains(remedy), "\(result.stderr)")
        }
        #expect(socket.stdout.contains("intact: 8 events"), "\(socket.stdout)")
        #expect(direct.json?["derived"]?["intact"] == false, "\(direct.stdout)")
    }

    /// Starts the daemon once with `--rebuild-projections`, and checks that the log then verifies clean.
    static func expectRebuildMendsIt(_ daemon: Daemon, events: Int = 8) throws {
        daemon.extraArguments = ["--rebuild-projections"]
        try daemon.start()
        daemon.extraArguments = []
        #expect(daemon.stop() == 0)
        #expect(daemon.log.contains("making the stream summaries from the events: \(events) made, done"), "\(daemon.log)")
        let answer = try verify(daemon)
        #expect(answer["derived"]?["intact"] == true, "after --rebuild-projections: \(answer)")
        let command = try daemon.ctl(["verify", "--format", "table"])
        #expect(command.status == 0, "\(command.stdout) \(command.stderr)")
        #expect(command.stdout.contains("derived data agrees with events 1–\(events): incident-streams, event-ids, incidents, cities, city-dates"), "\(command.stdout)")
    }

    @Test("a log as appended verifies clean, its derived data too, through the socket and with --data-dir")
    func clean() throws {
        let daemon = try VerifyTests.storedArticle()
        let answer = try Self.verify(daemon)
        #expect(answer["intact"] == true, "\(answer)")
        #expect(answer["derived"] == ["intact": true, "position": 8, "differences": []], "\(answer)")
        let command = try daemon.ctl(["verify", "--format", "table"])
        #expect(command.status == 0, "\(command.stderr)")
        #expect(command.stdout.contains("derived data agrees with events 1–8: incident-streams, event-ids, incidents, cities, city-dates"), "\(command.stdout)")
        #expect(daemon.stop() == 0)
        let direct = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(direct.status == 0, "\(direct.stderr)")
        #expect(direct.json?["derived"]?["intact"] == true, "\(direct.stdout)")
    }

    @Test("a city's projection changed to another valid document is named, city answers the wrong figure until --rebuild-projections, which mends it")
    func cityProjection() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "cities") { txn, cities in
            let stored = try #require(try txn.get(cities, key: "kupiansk"))
            let document = Self.setting(["incidents", "total"], to: 2, in: try JSONReader().read(stored))
            try txn.put(cities, key: "kupiansk", value: document.canonicalBytes())
        }
        let answer = try Self.verify(daemon)
        let difference = try Self.onlyDifference(answer)
        #expect(difference["database"] == "cities" && difference["key"] == "kupiansk", "\(difference)")
        #expect(difference["remedy"] == "rebuild-projections", "\(difference)")
        #expect(difference["problem"]?.stringValue?.contains("incidents.total: stored 2, the events give 1") == true, "\(difference)")
        // What the damage does meanwhile: a wrong figure, without a word.
        #expect(try daemon.client().call("city", ["city": "Kupiansk"])["city"]?["incidents"]?["total"] == 2)
        try waitFor("the daemon's log to name the city") {
            daemon.log.contains("verify found derived data that differs from the events") && daemon.log.contains("key=kupiansk")
        }
        try Self.expectCommandsRefuse(daemon, database: "cities", key: "kupiansk", remedy: "start it once with --rebuild-projections")
        try Self.expectRebuildMendsIt(daemon)
        #expect(try daemon.client().call("city", ["city": "Kupiansk"])["city"]?["incidents"]?["total"] == 1)
    }

    @Test("an incident's projection changed to another valid record is named, with the member that differs")
    func incidentProjection() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "incidents") { txn, incidents in
            let stored = try #require(try txn.get(incidents, key: Self.kupiansk))
            var state = try IncidentState(encoded: stored, incident: Self.kupiansk)
            #expect(state.encoded().elementsEqual(stored), "the stored form reads back to the same bytes")
            state.injured += 5
            try txn.put(incidents, key: Self.kupiansk, value: state.encoded())
        }
        let answer = try Self.verify(daemon)
        let difference = try Self.onlyDifference(answer)
        #expect(difference["database"] == "incidents" && difference["key"] == .string(Self.kupiansk), "\(difference)")
        #expect(difference["position"] == 1 && difference["remedy"] == "rebuild-projections", "\(difference)")
        #expect(difference["problem"]?.stringValue?.contains("casualties.injured: stored 5, the events give 0") == true, "\(difference)")
        try Self.expectCommandsRefuse(daemon, database: "incidents", key: Self.kupiansk, remedy: "--rebuild-projections")
        try Self.expectRebuildMendsIt(daemon)
    }

    @Test("an incident's projection that no longer decodes (positions no event can have) is answered log_damaged by incident, naming the projection and the rebuild, where it was invalid_event; the daemon serves the rest, and --rebuild-projections mends it")
    func incidentProjectionUnreadable() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "incidents") { txn, incidents in
            var stored = try #require(try txn.get(incidents, key: Self.kupiansk)).map { $0 }
            // Seven bytes of format, enumerations and flags, the version (one byte), then the first position: made 0.
            #expect(stored[7] < 0x80 && stored[8] == 1, "the first position, 1, is one byte at offset 8: \(stored.prefix(10))")
            stored[8] = 0
            try txn.put(incidents, key: Self.kupiansk, value: stored)
        }
        try daemon.start()
        let answer = try daemon.client().call("incident", ["incident": .string(Self.kupiansk)])
        #expect(answer["error"]?["code"] == "log_damaged", "\(answer)")
        #expect(answer["error"]?["message"]?.stringValue?.contains("the stored incident projection is damaged") == true, "\(answer)")
        let command = try daemon.ctl(["incident", Self.kupiansk])
        #expect(command.status == 1 && command.stderr.contains("log_damaged: ") && command.stderr.contains("--rebuild-projections"), "\(command)")
        #expect(try daemon.client().call("status").isOK, "the daemon serves the rest")
        #expect(daemon.stop() == 0)
        try Self.expectRebuildMendsIt(daemon)
    }

    @Test("an append to an incident whose stored projection is damaged is log_damaged, naming the projection and the remedy, with nothing stored, and said in the daemon's log (one line a minute); appends to other incidents are stored")
    func appendToDamagedIncidentProjection() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "incidents") { txn, incidents in
            // Counts no sound log comes near, which overflow as a response or an outcome is folded into them.
            var state = try IncidentState(encoded: try #require(try txn.get(incidents, key: Self.kupiansk)), incident: Self.kupiansk)
            state.killed = .max
            state.outcomeEvents = .max
            try txn.put(incidents, key: Self.kupiansk, value: state.encoded())
        }
        try daemon.start()
        let client = try daemon.client()
        let response: JSONValue = [
            "type": "response-observed", "incident": .string(Self.kupiansk), "data": ["by": "police", "responses": ["live-fire"], "killed": 1],
        ]
        let outcome: JSONValue = ["type": "outcome-updated", "incident": .string(Self.kupiansk), "data": ["status": "dispersed"]]
        for event in [response, outcome] {
            let answer = try client.appendEvents([event])
            #expect(answer.errorCode == "log_damaged" && answer["error"]?["index"] == 0, "\(answer)")
            let message = answer["error"]?["message"]?.stringValue ?? ""
            #expect(message.hasPrefix("the stored incident projection is damaged: \(Self.kupiansk)'s counts overflow"), "\(message)")
            #expect(answer["error"]?["incident"] == .string(Self.kupiansk), "\(answer)")
            #expect(message.contains("run incidentctl verify, then start incidentd once with --rebuild-projections"), "\(message)")
            #expect(try client.headPosition() == 8, "nothing was stored")
        }
        let command = try daemon.ctl(["observe", Self.kupiansk, "--response", "live-fire", "--by", "police", "--killed", "1"])
        #expect(command.status == 1 && command.stderr.contains("log_damaged: the stored incident projection") && !command.stderr.contains("internal_error"), "\(command)")
        // Sent with an append to another incident (pipelined, mostly committed together), the damaged one is refused
        // alone, and no commit failed.
        try client.send("append", ["events": [outcome]])
        try client.send("append", ["events": [["type": "outcome-updated", "incident": "melitopol-2022-03-01-convoy-blockade", "data": ["status": "dispersed"]]]])
        #expect(try client.receive().errorCode == "log_damaged")
        let stored = try client.receive()
        #expect(stored["positions"] == [9], "\(stored)")
        let status = try client.call("status")
        #expect(status["commits"]?["failed"] == 0, "\(status)")
        // The operator learns of it from the journal too: the first refusal at once, the next ones counted in the next
        // line a minute later.
        let lines = daemon.log.split(separator: "\n").filter { $0.contains("error an append by ") }
        #expect(
            lines.count == 1 && lines[0].contains("(uid \(getuid()), pid \(getpid())) was refused: the stored incident projection is damaged")
                && lines[0].contains("--rebuild-projections"),
            "\(daemon.log)")
        #expect(daemon.stop() == 0)
        try Self.expectRebuildMendsIt(daemon, events: 9)
        #expect(try daemon.client().appendEvents([response])["positions"] == [10])
    }

    @Test("an append to an incident whose stored projection no longer decodes is log_damaged naming the incident (in the message and as error.incident) and the remedy incident gives, with nothing of it stored; an append to another incident sent with it is stored, and no commit fails")
    func appendToUnreadableIncidentProjection() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "incidents") { txn, incidents in
            var stored = try #require(try txn.get(incidents, key: Self.kupiansk)).map { $0 }
            // The first position, one byte at offset 8 (see incidentProjectionUnreadable), made 0.
            stored[8] = 0
            try txn.put(incidents, key: Self.kupiansk, value: stored)
        }
        try daemon.start()
        let client = try daemon.client()
        let query = try client.call("incident", ["incident": .string(Self.kupiansk)])
        #expect(query.errorCode == "log_damaged", "\(query)")
        let remedy = "run incidentctl verify, then start incidentd once with --rebuild-projections"
        let response: JSONValue = ["type": "response-observed", "incident": .string(Self.kupiansk), "data": ["by": "police", "responses": ["none"]]]
        let outcome: JSONValue = ["type": "outcome-updated", "incident": .string(Self.kupiansk), "data": ["status": "dispersed"]]
        for events in [[response], [outcome], [Wire.outcome(incident: "melitopol-2022-03-01-convoy-blockade", status: "ongoing"), response]] {
            let answer = try client.appendEvents(events)
            let message = answer["error"]?["message"]?.stringValue ?? ""
            #expect(answer.errorCode == "log_damaged" && answer["error"]?["index"] == .int(Int64(events.count - 1)), "\(answer)")
            #expect(answer["error"]?["incident"] == .string(Self.kupiansk), "\(answer)")
            #expect(message.contains("the stored incident projection is damaged: \(Self.kupiansk)'s does not read back"), "\(message)")
            #expect(message.contains(remedy) && query["error"]?["message"]?.stringValue?.contains(remedy) == true, "\(message)")
            #expect(try client.headPosition() == 8, "nothing was stored")
        }
        let command = try daemon.ctl(["outcome", Self.kupiansk, "--status", "dispersed"])
        #expect(command.status == 1 && command.stderr.contains("log_damaged: the stored incident projection is damaged: \(Self.kupiansk)'s"), "\(command)")
        // Pipelined with an append to another incident (mostly committed together): the damaged one is refused alone.
        try client.send("append", ["events": [response]])
        try client.send("append", ["events": [Wire.outcome(incident: "melitopol-2022-03-01-convoy-blockade")]])
        #expect(try client.receive().errorCode == "log_damaged")
        let stored = try client.receive()
        #expect(stored["positions"] == [9], "\(stored)")
        let status = try client.call("status")
        #expect(status["commits"]?["failed"] == 0, "\(status)")
        #expect(daemon.stop() == 0)
        try Self.expectRebuildMendsIt(daemon, events: 9)
        #expect(try daemon.client().appendEvents([response])["positions"] == [10])
    }

    @Test("a city's stored projection that does not read back is log_damaged for city, cities, incident and the appends that touch the city, naming the projection and the remedy, with nothing stored; other cities are served and appended to")
    func cityProjectionUnreadable() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "cities") { txn, cities in
            // Kupiansk's still JSON, with a member of the wrong type; Melitopol's no JSON at all.
            let stored = try JSONReader().read(try #require(try txn.get(cities, key: "kupiansk")))
            try txn.put(cities, key: "kupiansk", value: Self.setting(["name"], to: 2, in: stored).canonicalBytes())
            try txn.put(cities, key: "melitopol", value: Array(#"{"cityId":"#.utf8))
        }
        try daemon.start()
        // Said at the start, in the words of city's answer, before anyone asks.
        for city in ["kupiansk", "melitopol"] {
            #expect(daemon.log.contains("error the stored city projection is damaged: \(city)'s does not read back ("), "\(daemon.log)")
        }
        #expect(!daemon.log.contains("berdiansk's"), "\(daemon.log)")
        let client = try daemon.client()
        func expectDamaged(_ answer: JSONValue, city: String, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(answer.errorCode == "log_damaged", "\(answer)", sourceLocation: sourceLocation)
            let message = answer["error"]?["message"]?.stringValue ?? ""
            #expect(message.hasPrefix("the stored city projection is damaged: \(city)'s"), "\(message)", sourceLocation: sourceLocation)
            #expect(message.contains("run incidentctl verify, then start incidentd once with --rebuild-projections"), "\(message)", sourceLocation: sourceLocation)
        }
        // Each answer a line of JSON: the damaged document is not sent on as it stands.
        func call(_ op: String, _ body: [String: JSONValue] = [:]) throws -> JSONValue {
            try client.send(op, body)
            let line = try client.receiveLine()
            return (try? JSONReader(maxDepth: 128).read(line)) ?? .string("not JSON: \(String(decoding: line, as: UTF8.self))")
        }
        expectDamaged(try call("city", ["city": "Kupiansk"]), city: "kupiansk")
        expectDamaged(try call("city", ["city": "Melitopol"]), city: "melitopol")
        expectDamaged(try call("cities"), city: "kupiansk")
        expectDamaged(try call("incident", ["incident": .string(Self.kupiansk)]), city: "kupiansk")
        #expect(try client.call("city", ["city": "Berdiansk"])["city"]?["incidents"]?["total"] == 2)

        let appends: [(JSONValue, String)] = [
            (["type": "response-observed", "incident": .string(Self.kupiansk), "data": ["by": "police", "responses": ["none"]]], "kupiansk"),
            (["type": "outcome-updated", "incident": "melitopol-2022-03-01-convoy-blockade", "data": ["status": "dispersed"]], "melitopol"),
            (["type": "incident-reported", "occurredAt": "2022-03-05", "data": ["city": "Kupiansk", "kind": "strike"]], "kupiansk"),
        ]
        for (event, city) in appends {
            let answer = try client.appendEvents([event])
            expectDamaged(answer, city: city)
            #expect(answer["error"]?["index"] == 0, "\(answer)")
            #expect(try client.headPosition() == 8, "nothing was stored")
        }
        let command = try daemon.ctl(["city", "Kupiansk"])
        #expect(command.status == 1 && command.stderr.contains("log_damaged: the stored city projection is damaged"), "\(command)")
        #expect(try client.appendEvents([Wire.outcome(incident: "berdiansk-2022-02-28-city-council")])["positions"] == [9])
        let status = try client.call("status")
        #expect(status["commits"]?["failed"] == 0, "\(status)")
        #expect(daemon.stop() == 0)
        try Self.expectRebuildMendsIt(daemon, events: 9)
        #expect(try daemon.client().call("city", ["city": "Kupiansk"])["city"]?["name"] == "Kupiansk")
    }

    @Test("a count below zero in a stored city or incident projection is damage, refused as log_damaged by the queries and the appends that read it, naming the projection and the remedy; a damaged city projection found as the log is opened is logged at the start, naming the city")
    func negativeCountsAreDamage() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "cities") { txn, cities in
            let stored = try JSONReader().read(try #require(try txn.get(cities, key: "kupiansk")))
            try txn.put(cities, key: "kupiansk", value: Self.setting(["casualties", "detained"], to: -3, in: stored).canonicalBytes())
        }
        try Self.damage(daemon, "incidents") { txn, incidents in
            var state = try IncidentState(encoded: try #require(try txn.get(incidents, key: "melitopol-2022-03-01-convoy-blockade")), incident: "melitopol-2022-03-01-convoy-blockade")
            state.injured = -1
            try txn.put(incidents, key: "melitopol-2022-03-01-convoy-blockade", value: state.encoded())
        }
        try daemon.start()
        #expect(
            daemon.log.contains("the stored city projection is damaged: kupiansk's does not read back (city.casualties.detained: is -3, a count below zero)"),
            "\(daemon.log)")
        #expect(daemon.log.contains("--rebuild-projections"), "\(daemon.log)")
        #expect(!daemon.log.contains("melitopol's"), "\(daemon.log)")
        let client = try daemon.client()
        let city = try client.call("city", ["city": "Kupiansk"])
        #expect(city.errorCode == "log_damaged" && city["error"]?["message"]?.stringValue?.contains("kupiansk's") == true, "\(city)")
        let incident = try client.call("incident", ["incident": "melitopol-2022-03-01-convoy-blockade"])
        #expect(incident.errorCode == "log_damaged", "\(incident)")
        #expect(incident["error"]?["message"]?.stringValue?.hasPrefix("the stored incident projection is damaged") == true, "\(incident)")
        let appended = try client.appendEvents([Wire.outcome(incident: "melitopol-2022-03-01-convoy-blockade")])
        #expect(appended.errorCode == "log_damaged" && appended["error"]?["index"] == 0, "\(appended)")
        #expect(try client.headPosition() == 8, "nothing was stored")
        #expect(try client.call("city", ["city": "Berdiansk"])["city"]?["incidents"]?["total"] == 2)
        #expect(daemon.stop() == 0)
        try Self.expectRebuildMendsIt(daemon)
    }

    @Test("an incident-streams summary changed in place is named; the projections are not compared; --rebuild-projections makes it again from its event")
    func streamSummary() throws {
        let daemon = try VerifyTests.storedArticle()
        // Event 2, the Kupiansk response: `2 ‖ flags ‖ kinds ‖ (kind, UInt32 count)…`; its first kind counted twice.
        let entry = try Self.streamEntry(daemon, position: 2)
        #expect(entry.value[8] == 2 && entry.value[12] == 1, "\(entry.value)")
        try Self.damage(daemon, "incident-streams") { txn, streams in
            var value = entry.value
            value[12] = 2
            try txn.put(streams, key: entry.key, value: value)
        }
        let answer = try Self.verify(daemon)
        let difference = try Self.onlyDifference(answer)
        #expect(difference["database"] == "incident-streams" && difference["key"] == "1/2" && difference["position"] == 2, "\(difference)")
        #expect(difference["remedy"] == "rebuild-projections", "\(difference)")
        #expect(
            difference["problem"]?.stringValue
                == "its summary of event 2, version 2 of incident \(Self.kupiansk) differs from the one the event gives",
            "\(difference)")
        #expect(answer["derived"]?["notCompared"]?.arrayValue?.compactMap { $0["database"]?.stringValue } == ["incidents", "cities", "city-dates"], "\(answer)")
        try Self.expectCommandsRefuse(daemon, database: "incident-streams", key: "1/2", remedy: "--rebuild-projections")
        try Self.expectRebuildMendsIt(daemon)
    }

    @Test("an incident-streams entry that names another event, and one that is gone, are named, and the remedy, making the log again from its events, puts it right")
    func streamPosition() throws {
        let daemon = try VerifyTests.storedArticle()
        let entry = try Self.streamEntry(daemon, position: 2)
        try Self.damage(daemon, "incident-streams") { txn, streams in
            try txn.put(streams, key: entry.key, value: Self.bigEndian(5) + entry.value[8...])
        }
        let answer = try Self.verify(daemon)
        let difference = try Self.onlyDifference(answer)
        #expect(difference["database"] == "incident-streams" && difference["key"] == "1/2" && difference["position"] == 5, "\(difference)")
        #expect(difference["remedy"] == "recover-from-events", "\(difference)")
        #expect(
            difference["problem"]
                == "it names event 5, version 2 of incident melitopol-2022-03-01-convoy-blockade, which is not version 2 of the incident reported at position 1",
            "\(difference)")
        try Self.expectCommandsRefuse(daemon, database: "incident-streams", key: "1/2", remedy: "incidentd --recover-from")

        try Self.damage(daemon, "incident-streams") { txn, streams in _ = try txn.delete(streams, key: entry.key) }
        let gone = try Self.onlyDifference(try Self.verify(daemon))
        #expect(daemon.stop() == 0)
        #expect(gone["database"] == "incident-streams" && gone["position"] == 2 && gone["key"] == nil, "\(gone)")
        #expect(gone["problem"]?.stringValue == "event 2, version 2 of incident \(Self.kupiansk), has no entry", "\(gone)")
        #expect(gone["remedy"] == "recover-from-events", "\(gone)")
        try Self.expectRecoveryMendsIt(daemon)
    }

    /// The remedy `recover-from-events`: a log made again from the stopped daemon's events (`incidentd
    /// --recover-from`) has its indexes and projections agree with them, under the same head.
    static func expectRecoveryMendsIt(_ daemon: Daemon) throws {
        let root = makeTemporaryDirectory("incidentd-recovered")
        let run = try runCommand(Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", root + "/data"])
        #expect(run.status == 0, "\(run)")
        let recovered = try Daemon(root: root)
        defer { recovered.stop() }
        #expect(recovered.stop() == 0)
        let answer = try Self.verify(recovered)
        #expect(answer["intact"]?.boolValue == true && answer["derived"]?["intact"]?.boolValue == true, "\(answer)")
        try daemon.start()
        defer { daemon.stop() }
        #expect(try daemon.client().call("status")["headHash"] == answer["headHash"], "the same head")
    }

    @Test("an event-ids entry that names another position, one that is gone, and one too many are named, and the remedy, making the log again from its events, puts it right")
    func eventIds() throws {
        let daemon = try VerifyTests.storedArticle()
        let events = try Repository.articleEvents()
        let second = try #require(events[1]["eventId"]?.stringValue)
        let fifth = try #require(events[4]["eventId"]?.stringValue)
        var original: [UInt8] = []
        try Self.damage(daemon, "event-ids") { txn, ids in
            original = Array(try #require(try txn.get(ids, key: second)))
            #expect(Self.bigEndian(original) == 2)
            try txn.put(ids, key: second, value: Self.bigEndian(5) + original[8...])
        }
        let answer = try Self.verify(daemon)
        let difference = try Self.onlyDifference(answer)
        #expect(difference["database"] == "event-ids" && difference["key"] == .string(second) && difference["position"] == 5, "\(difference)")
        #expect(difference["problem"] == .string("it names event 5, whose id is \(fifth)"), "\(difference)")
        #expect(difference["remedy"] == "recover-from-events", "\(difference)")
        // The projections do not rest on event-ids: they are compared, and agree.
        #expect(answer["derived"]?["notCompared"] == nil, "\(answer)")
        try Self.expectCommandsRefuse(daemon, database: "event-ids", key: second, remedy: "incidentd --recover-from")

        try Self.damage(daemon, "event-ids") { txn, ids in _ = try txn.delete(ids, key: second) }
        let gone = try Self.onlyDifference(try Self.verify(daemon))
        #expect(daemon.stop() == 0)
        #expect(gone["database"] == "event-ids" && gone["key"] == .string(second) && gone["position"] == 2, "\(gone)")
        #expect(gone["problem"] == "event 2 has no entry under its id", "\(gone)")

        let stranger = "00000000-0000-4000-8000-000000000000"
        try Self.damage(daemon, "event-ids") { txn, ids in
            try txn.put(ids, key: second, value: original)
            try txn.put(ids, key: stranger, value: Self.bigEndian(3) + original[8...])
        }
        let extra = try Self.onlyDifference(try Self.verify(daemon))
        #expect(daemon.stop() == 0)
        #expect(extra["database"] == "event-ids" && extra["key"] == .string(stranger) && extra["position"] == 3, "\(extra)")
        #expect(extra["problem"]?.stringValue?.hasPrefix("it names event 3, whose id is ") == true, "\(extra)")
        try Self.expectRecoveryMendsIt(daemon)
    }

    @Test("an incident's whole stream moved under another start (a key changed in place): the digest of the entries, which leaves the key's start out, and the projections agree, and the report's own entry still names it")
    func streamMovedUnderAnotherStart() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "incident-streams") { txn, streams in
            var moved: [([UInt8], [UInt8])] = []
            try txn.forEach(streams) { key, value in
                if Self.bigEndian(key) == 1 { moved.append((Array(key), Array(value))) }
                return true
            }
            #expect(!moved.isEmpty)
            for (key, value) in moved {
                _ = try txn.delete(streams, key: key)
                try txn.put(streams, key: Self.bigEndian(999) + key[8...], value: value)
            }
        }
        let answer = try Self.verify(daemon)
        let difference = try Self.onlyDifference(answer)
        #expect(difference["database"] == "incident-streams", "\(difference)")
        #expect(difference["remedy"] == "recover-from-events", "\(difference)")
        #expect(daemon.stop() == 0)
        try Self.expectRecoveryMendsIt(daemon)
    }

    @Test("a stream summary changed in place and, later in key order, an entry gone: the first is named, with the remedy the second needs (a rebuild would not make the entry again)")
    func summaryThenMissingEntry() throws {
        let daemon = try VerifyTests.storedArticle()
        let summarised = try Self.streamEntry(daemon, position: 2)
        let gone = try Self.streamEntry(daemon, position: 8)
        #expect(summarised.key.lexicographicallyPrecedes(gone.key), "the premise: the changed summary comes first in key order")
        try Self.damage(daemon, "incident-streams") { txn, streams in
            var value = summarised.value
            value[value.count - 1] ^= 1
            try txn.put(streams, key: summarised.key, value: value)
            _ = try txn.delete(streams, key: gone.key)
        }
        let difference = try Self.onlyDifference(try Self.verify(daemon))
        #expect(difference["key"] == "1/2" && difference["remedy"] == "recover-from-events", "\(difference)")
        #expect(difference["problem"]?.stringValue?.contains("differs from the one the event gives; and entry") == true, "\(difference)")
        #expect(difference["problem"]?.stringValue?.contains("event 8") == true, "\(difference)")
        #expect(daemon.stop() == 0)
        try Self.expectRecoveryMendsIt(daemon)
    }

    @Test("projections whose mark says incidentd rebuilds them at its next start (a backup of an older version's log, a rebuild cut short) are not compared, and verify --data-dir passes")
    func staleProjectionMark() throws {
        let daemon = try VerifyTests.storedArticle()
        try Self.damage(daemon, "meta") { txn, meta in
            let mark = Array(try #require(try txn.get(meta, key: Array("projections".utf8))))
            #expect(mark.count == 16 && Self.bigEndian(mark) == 8, "the premise: projections current through 8")
            try txn.put(meta, key: Array("projections".utf8), value: Self.bigEndian(7) + mark[8...])
        }
        // A city's projection that differs: it would be named were it compared.
        try Self.damage(daemon, "cities") { txn, cities in
            let stored = try JSONReader().read(try #require(try txn.get(cities, key: "kupiansk")))
            let changed = Self.setting(["incidents", "total"], to: 99, in: stored)
            try txn.put(cities, key: "kupiansk", value: changed.canonicalBytes())
        }
        let run = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(run.status == 0, "\(run)")
        let notCompared = run.json?["derived"]?["notCompared"]?.arrayValue ?? []
        #expect(notCompared.compactMap { $0["database"]?.stringValue } == ["incidents", "cities", "city-dates"], "\(run.stdout)")
        #expect(notCompared.first?["reason"]?.stringValue?.contains("rebuilds them at its next start") == true, "\(run.stdout)")
    }

    @Test("an incident-streams summary and an event-ids entry damaged at once: each database named once, in order, each with its remedy")
    func severalAtOnce() throws {
        let daemon = try VerifyTests.storedArticle()
        let entry = try Self.streamEntry(daemon, position: 5)
        try Self.damage(daemon, "incident-streams") { txn, streams in
            var value = entry.value
            value[value.count - 1] ^= 1
            try txn.put(streams, key: entry.key, value: value)
        }
        try Self.damage(daemon, "event-ids") { txn, ids in
            let first = try #require(try Repository.articleEvents()[0]["eventId"]?.stringValue)
            _ = try txn.delete(ids, key: first)
        }
        let answer = try Self.verify(daemon)
        let differences = answer["derived"]?["differences"]?.arrayValue ?? []
        #expect(differences.compactMap { $0["database"]?.stringValue } == ["incident-streams", "event-ids"], "\(answer)")
        #expect(differences.compactMap { $0["remedy"]?.stringValue } == ["rebuild-projections", "recover-from-events"], "\(answer)")
        let command = try daemon.ctl(["verify"])
        #expect(command.status == 1)
        #expect(command.stderr.contains("To put incident-streams right, stop incidentd and start it once with --rebuild-projections"), "\(command.stderr)")
        #expect(command.stderr.contains("To put event-ids right, make the log again from its events"), "\(command.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("verify --data-dir compares the cities with the gazetteer the daemon ran on (--gazetteer), and with another says on stderr that it did not, without failing")
    func otherGazetteer() throws {
        let setup = try GazetteerChangeTests.Setup()
        try setup.edit("population = 148851", "population = 111")
        let daemon = try setup.daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents())["ok"] == true)
        #expect(daemon.stop() == 0)
        let compiledIn = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "table"])
        #expect(compiledIn.status == 0, "\(compiledIn.stderr)")
        #expect(compiledIn.stdout.contains("derived data agrees with events 1–8: incident-streams, event-ids, incidents, city-dates\n"), "\(compiledIn.stdout)")
        #expect(
            compiledIn.stderr.contains("incidentctl: cities not compared: the log records that its projections were built with another gazetteer")
                && compiledIn.stderr.contains("give --gazetteer the file the daemon runs on"),
            "\(compiledIn.stderr)")
        let json = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(json.json?["derived"]?["notCompared"]?.arrayValue?.first?["database"] == "cities", "\(json.stdout)")
        let same = try runCommand(
            Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--gazetteer", setup.gazetteer, "--format", "table"])
        #expect(same.status == 0 && same.stderr.isEmpty, "\(same.stderr)")
        #expect(same.stdout.contains("derived data agrees with events 1–8: incident-streams, event-ids, incidents, cities, city-dates"), "\(same.stdout)")
        let socket = try runCommand(Binaries.incidentctl, ["verify", "--gazetteer", setup.gazetteer, "--socket", daemon.socketPath])
        #expect(socket.status == 2, "--gazetteer without --data-dir is bad usage: \(socket.stderr)")
    }

    @Test("verify while appends land: the derived data of its snapshot agrees with the events every time")
    func whileAppending() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents())["ok"] == true)
        // One connection appends a report and three responses at a time, each acknowledged before the next, until
        // the checks are done; so incidents, cities and both indexes change while verify reads them.
        let stop = LockedData()
        let appended = LockedData()
        let socket = daemon.socketPath
        let appending = Thread {
            var rounds = 0
            if let writer = try? RawClient(path: socket) {
                while !stop.isSet {
                    let incident = "kupiansk-appended-\(rounds)"
                    var batch: [JSONValue] = [Wire.report(incident: incident, occurredAt: "2022-03-02")]
                    for _ in 0..<3 { batch.append(Wire.response(incident: incident, responses: ["detentions"], detained: 1)) }
                    guard (try? writer.call("append", ["events": .array(batch)]))?.isOK == true else { break }
                    rounds += 1
                }
            }
            appended.set(Data("\(rounds)".utf8))
        }
        appending.start()
        let checker = try daemon.client()
        var answers: [JSONValue] = []
        var heads: Set<Int64> = []
        while heads.count < 4 && answers.count < 500 {
            let answer = try checker.call("verify")
            answers.append(answer)
            heads.insert(answer["derived"]?["position"]?.intValue ?? 0)
        }
        stop.set(Data())
        try waitFor("the appends to stop") { appended.isSet }
        let rounds = Int(String(decoding: appended.get(), as: UTF8.self)) ?? 0
        #expect(rounds > 0, "appends landed meanwhile")
        for answer in answers {
            #expect(answer["intact"] == true && answer["derived"]?["intact"] == true, "\(answer)")
        }
        #expect(heads.count == 4, "the checks saw the log at several heads: \(heads.sorted())")
        let final = try checker.call("verify")
        #expect(final["derived"]?["position"]?.intValue == Int64(8 + 4 * rounds), "\(final)")
        #expect(final["derived"]?["intact"] == true, "\(final)")
        #expect(daemon.stop() == 0)
    }
}
