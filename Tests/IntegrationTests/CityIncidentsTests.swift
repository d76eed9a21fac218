import Foundation
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// A city's incidents listed (`incidents`, `incidentctl incidents`) from its index in `city-dates`, and `read` with a
/// city filter answered from it: exactly the city's incidents, each with its latest status, after reports,
/// responses, outcomes, a retraction and a reinstatement; every incident once across pages; the index made by a
/// rebuild and by the upgrade of a format 4 or 5 log; verify naming an entry missing or added.
@Suite("A city's incidents")
struct CityIncidentsTests {
    static func report(_ incident: String, _ occurredAt: String, city: String = "Kupiansk", location: String? = nil) -> JSONValue {
        Wire.report(incident: incident, city: city, occurredAt: occurredAt, extraData: location.map { ["location": .string($0)] } ?? [:])
    }

    static func outcome(_ incident: String, _ status: String, corrections: [String: JSONValue]? = nil) -> JSONValue {
        var data: [String: JSONValue] = ["status": .string(status)]
        if let corrections { data["corrections"] = .object(corrections) }
        return ["type": "outcome-updated", "incident": .string(incident), "data": .object(data)]
    }

    /// Every incident of `city` an `incidents` request lists, with `status` (nil: none given), page by page of
    /// `limit`; each page must be accepted.
    static func listing(_ client: RawClient, _ city: String, status: [String]? = nil, limit: Int64 = 1000) throws -> [JSONValue] {
        var body: [String: JSONValue] = ["city": .string(city), "limit": .int(limit)]
        if let status { body["status"] = .array(status.map { .string($0) }) }
        var listed: [JSONValue] = []
        for _ in 0..<10_000 {
            let answer = try client.call("incidents", body)
            #expect(answer.isOK, "\(answer)")
            let page = try #require(answer["incidents"]?.arrayValue, "\(answer)")
            #expect(page.count <= Int(limit), "\(answer)")
            listed += page
            guard let next = answer["next"], next != .null else { return listed }
            body["from"] = next
        }
        Issue.record("the listing of \(city) did not end")
        return listed
    }

    /// The ids and latest statuses of `incidents`, in order.
    static func statuses(_ incidents: [JSONValue]) -> [String] {
        incidents.map { "\($0["incident"]?.stringValue ?? "?"):\($0["status"]?.stringValue ?? "?")" }
    }

    @Test("incidents lists exactly a city's incidents by date with their latest statuses, through reports, responses, outcomes, a retraction and a reinstatement; a rebuild lists the same")
    func listsCityIncidents() throws {
        let daemon = try Daemon()
        var client = try daemon.client()
        // Each step: the events appended, then Kupiansk's incidents (id:status) as listed by default, with status
        // open, and with status retracted.
        let steps: [(events: [JSONValue], counted: [String], open: [String], retracted: [String])] = [
            ([Self.report("a", "2022-03-05", location: "market square"), Self.report("b", "2022-03-01"), Self.report("c", "2022-03-20")],
             ["b:unknown", "a:unknown", "c:unknown"], ["b:unknown", "a:unknown", "c:unknown"], []),
            // Another city's incident is not Kupiansk's; a month that starts when b's day does comes after it.
            ([Self.report("m", "2022-03-02", city: "Melitopol"), Self.report("d", "2022-03")],
             ["b:unknown", "d:unknown", "a:unknown", "c:unknown"], ["b:unknown", "d:unknown", "a:unknown", "c:unknown"], []),
            ([Wire.response(incident: "a"), Self.outcome("c", "dispersed")],
             ["b:unknown", "d:unknown", "a:unknown", "c:dispersed"], ["b:unknown", "d:unknown", "a:unknown"], []),
            ([Self.outcome("a", "ongoing", corrections: ["location": "city hall"])],
             ["b:unknown", "d:unknown", "a:ongoing", "c:dispersed"], ["b:unknown", "d:unknown", "a:ongoing"], []),
            ([Self.outcome("b", "retracted")], ["d:unknown", "a:ongoing", "c:dispersed"], ["d:unknown", "a:ongoing"], ["b:retracted"]),
            ([Self.outcome("d", "retracted"), Self.outcome("c", "retracted")], ["a:ongoing"], ["a:ongoing"], ["b:retracted", "c:retracted", "d:retracted"]),
            // Reinstated: b is listed by its date again.
            ([Self.outcome("b", "suppressed")], ["b:suppressed", "a:ongoing"], ["a:ongoing"], ["c:retracted", "d:retracted"]),
        ]
        for (n, step) in steps.enumerated() {
            let answer = try client.appendEvents(step.events)
            #expect(answer["ok"] == true, "step \(n): \(answer)")
            #expect(Self.statuses(try Self.listing(client, "Kupiansk")) == step.counted, "step \(n)")
            #expect(Self.statuses(try Self.listing(client, "Kupyansk", status: ["open"])) == step.open, "step \(n)")
            #expect(Self.statuses(try Self.listing(client, "Куп'янськ", status: ["retracted"])) == step.retracted, "step \(n)")
            // Every status named lists the counted ones, then the retracted ones.
            let all = try Self.listing(client, "kupiansk", status: ["open", "dispersed", "suppressed", "objective-achieved", "retracted"])
            #expect(Self.statuses(all) == step.counted + step.retracted, "step \(n)")
            #expect(Self.statuses(try Self.listing(client, "Melitopol")) == (n == 0 ? [] : ["m:unknown"]), "step \(n)")
        }
        // What a summary holds.
        let summaries = try Self.listing(client, "Kupiansk", status: ["ongoing"])
        #expect(
            summaries == [[
                "incident": "a", "kind": "demonstration", "occurredAt": "2022-03-05", "location": "city hall", "status": "ongoing",
                "verification": "unverified", "responseEvents": 1, "version": 3, "firstPosition": 1, "lastPosition": 8,
            ]], "\(summaries)")
        #expect(try Self.listing(client, "Kupiansk", status: ["suppressed"]).first?["location"] == .null)
        // A city of the gazetteer with no incident lists none.
        #expect(try Self.listing(client, "Berdiansk").isEmpty)

        // Made again by a rebuild, the index lists the same, and verify compares it.
        let before = try Self.listing(client, "Kupiansk", status: ["open", "dispersed", "suppressed", "retracted"])
        #expect(daemon.stop() == 0)
        daemon.extraArguments = ["--rebuild-projections"]
        try daemon.start()
        daemon.extraArguments = []
        client = try daemon.client()
        #expect(try Self.listing(client, "Kupiansk", status: ["open", "dispersed", "suppressed", "retracted"]) == before)
        let verify = try client.call("verify")
        #expect(verify["derived"]?["intact"] == true, "\(verify)")

        // The command line: a table with a line per incident, JSON a line each.
        let table = try daemon.ctl(["incidents", "--city", "Kupyansk", "--open", "--format", "table"])
        #expect(table.status == 0, "\(table.stderr)")
        #expect(table.stdout.split(separator: "\n").count == 2 && table.stdout.contains("city hall"), "\(table.stdout)")
        let json = try daemon.ctl(["incidents", "--city", "Kupyansk", "--status", "retracted", "--status", "suppressed", "--format", "json"])
        #expect(json.status == 0, "\(json.stderr)")
        let lines = try json.stdout.split(separator: "\n").map { try JSONReader().read(String($0)) }
        #expect(Self.statuses(lines) == ["b:suppressed", "c:retracted", "d:retracted"], "\(json.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("paging through a city's incidents, with any limit and status, gives every incident once, in the order of one page")
    func pagingGivesEveryIncidentOnce() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        var events: [JSONValue] = []
        for i in 0..<40 {
            // Dates out of report order, some equal.
            events.append(Self.report("k\(i)", "2022-0\(1 + (i * 7) % 9)-1\(i % 3)"))
            if i % 4 == 0 { events.append(Self.report("z\(i)", "2022-02-02", city: "Melitopol")) }
        }
        for i in stride(from: 0, to: 40, by: 3) { events.append(Self.outcome("k\(i)", i % 2 == 0 ? "retracted" : "dispersed")) }
        #expect(try client.appendEvents(events)["ok"] == true)
        let statuses = ["open", "dispersed", "retracted"]
        let whole = try Self.listing(client, "Kupiansk", status: statuses)
        #expect(whole.count == 40 && Set(whole.compactMap { $0["incident"] }).count == 40, "\(Self.statuses(whole))")
        for limit: Int64 in [1, 2, 3, 7, 39, 40] {
            #expect(try Self.listing(client, "Kupiansk", status: statuses, limit: limit) == whole, "limit \(limit)")
            #expect(try Self.listing(client, "Kupiansk", limit: limit) == whole.filter { $0["status"] != "retracted" }, "limit \(limit)")
            #expect(try Self.listing(client, "Kupiansk", status: ["retracted"], limit: limit) == whole.filter { $0["status"] == "retracted" })
        }
        // The counted ones by date, then by report.
        let counted = whole.filter { $0["status"] != "retracted" }
        let keys = counted.map { ($0["occurredAt"]?.stringValue ?? "", $0["firstPosition"]?.intValue ?? 0) }
        #expect(keys.indices.dropFirst().allSatisfy { keys[$0 - 1] <= keys[$0] }, "\(keys)")
        // The command line pages too.
        let listed = try daemon.ctl(["incidents", "--city", "Kupiansk", "--status", "open", "--status", "dispersed", "--status", "retracted", "--format", "json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(try listed.stdout.split(separator: "\n").map { try JSONReader().read(String($0)) } == whole)
        let limited = try daemon.ctl(["incidents", "--city", "Kupiansk", "--limit", "5", "--format", "json"])
        #expect(limited.stdout.split(separator: "\n").count == 5, "\(limited.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("incidents of a city neither the gazetteer nor the log knows is unknown_city naming it; without a city, or with a status or cursor that is none, invalid_request; the command line says so; a refused request leaves no entry in the index")
    func refusals() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Self.report("a", "2022-03-05")])["ok"] == true)
        let unknown = try client.call("incidents", ["city": "Atlantis"])
        #expect(unknown["error"]?["code"] == "unknown_city", "\(unknown)")
        #expect(unknown["error"]?["message"]?.stringValue?.contains("Atlantis") == true, "\(unknown)")
        for (body, named) in [
            ([:], "city"), (["city": "Kupiansk", "status": ["closed"]], "status[0]"), (["city": "Kupiansk", "status": []], "status"),
            (["city": "Kupiansk", "from": "x7"], "from"), (["city": "Kupiansk", "limit": 1001], "limit"),
        ] as [([String: JSONValue], String)] {
            let answer = try client.call("incidents", body)
            #expect(answer["error"]?["code"] == "invalid_request", "\(body): \(answer)")
            #expect(answer["error"]?["message"]?.stringValue?.hasPrefix(named + ":") == true, "\(body): \(answer)")
        }
        // Without a city: any spelling of a city the log added works too, as for city.
        for op in ["incidents", "city"] {
            let answer = try client.call(op, [:])
            #expect(answer["error"]?["message"] == "city: is required, any spelling the gazetteer or the log knows, or a city id", "\(answer)")
        }
        // A request refused after its report was folded leaves no entry of it in the city's index.
        let refused = try client.appendEvents([Self.report("x", "2022-03-07"), Wire.response(incident: "nobody")])
        #expect(refused["error"]?["code"] == "unknown_incident", "\(refused)")
        #expect(Self.statuses(try Self.listing(client, "Kupiansk", status: ["open", "retracted"])) == ["a:unknown"])
        #expect(try client.call("read", ["city": "Kupiansk"])["events"]?.arrayValue?.count == 1)
        #expect(try client.call("verify")["derived"]?["intact"] == true)
        #expect(try client.appendEvents([Self.report("x", "2022-03-07")])["ok"] == true)
        #expect(Self.statuses(try Self.listing(client, "Kupiansk", status: ["open", "retracted"])) == ["a:unknown", "x:unknown"])
        let command = try daemon.ctl(["incidents", "--city", "Atlantis"])
        #expect(command.status == 1 && command.stderr.contains("unknown_city") && command.stderr.contains("Atlantis"), "\(command.stderr)")
        let noCity = try daemon.ctl(["incidents", "--open"])
        #expect(noCity.status == 2 && noCity.stderr.contains("--city"), "\(noCity.stderr)")
        let badStatus = try daemon.ctl(["incidents", "--city", "Kupiansk", "--status", "closed"])
        #expect(badStatus.status == 2 && badStatus.stderr.contains("closed"), "\(badStatus.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("the incidents cursor: from null is the first page; a cursor of the part the status leaves out, or one the daemon does not write (signs, leading zeros), is invalid_request naming from; the command line refuses them too; cursors before 1970 page")
    func cursorsAsWritten() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(
            try client.appendEvents([
                Self.report("a", "1965-04-01"), Self.report("b", "2022-03-05"), Self.report("c", "2022-03-06"), Self.report("d", "2022-03-07"),
                Self.outcome("c", "retracted"), Self.outcome("d", "retracted"),
            ])["ok"] == true)
        // null, what next is at the end, asks for the first page, as no from does.
        for status: JSONValue? in [nil, ["retracted"], ["open", "retracted"]] {
            var body: [String: JSONValue] = ["city": "Kupiansk", "limit": 2]
            if let status { body["status"] = status }
            let first = try client.call("incidents", body)
            body["from"] = .null
            let fromNull = try client.call("incidents", body)
            #expect(first.isOK && fromNull["incidents"] == first["incidents"] && fromNull["next"] == first["next"], "\(body): \(fromNull)")
        }
        // A start before 1970 is written with a minus, and pages on.
        let firstPage = try client.call("incidents", ["city": "Kupiansk", "limit": 1])
        let negative = try #require(firstPage["next"]?.stringValue, "\(firstPage)")
        #expect(negative.hasPrefix("d-"), "\(negative)")
        let secondPage = try client.call("incidents", ["city": "Kupiansk", "limit": 1, "from": .string(negative)])
        #expect(Self.statuses(secondPage["incidents"]?.arrayValue ?? []) == ["b:unknown"], "\(secondPage)")
        // The other part's cursors: the retracted part's r… without retracted, the counted part's d… with retracted only.
        let retractedCursor = try #require(
            try client.call("incidents", ["city": "Kupiansk", "status": ["open", "retracted"], "limit": 3])["next"]?.stringValue)
        #expect(retractedCursor == "r3", "\(retractedCursor)")
        for (body, why) in [
            (["city": "Kupiansk", "from": .string(retractedCursor)], "a cursor of the retracted incidents (r…)"),
            (["city": "Kupiansk", "status": ["open", "suppressed"], "from": "r1"], "a cursor of the retracted incidents (r…)"),
            (["city": "Kupiansk", "status": "retracted", "from": .string(negative)], "a cursor of the incidents a city counts (d…)"),
            (["city": "Kupiansk", "status": ["retracted"], "from": "d5.3"], "a cursor of the incidents a city counts (d…)"),
        ] as [([String: JSONValue], String)] {
            let answer = try client.call("incidents", body)
            #expect(answer["error"]?["code"] == "invalid_request", "\(body): \(answer)")
            #expect(answer["error"]?["message"]?.stringValue?.hasPrefix("from: \(why)") == true, "\(body): \(answer)")
        }
        // Both parts' cursors are taken when status names both.
        for from in [negative, retractedCursor] {
            #expect(try client.call("incidents", ["city": "Kupiansk", "status": ["open", "retracted"], "from": .string(from)]).isOK)
        }
        // Only what the daemon writes.
        for from in ["d+5.+3", "d+5.3", "d5.+3", "d05.3", "d5.03", "d-0.3", "d5.-3", "r+3", "r-3", "r03", "d 5.3", "d5.3 ", "r", "d5", "d.3", "D5.3", "r3.0"] {
            let answer = try client.call("incidents", ["city": "Kupiansk", "status": ["open", "retracted"], "from": .string(from)])
            #expect(answer["error"]?["code"] == "invalid_request", "\(from): \(answer)")
            #expect(answer["error"]?["message"]?.stringValue?.hasPrefix("from: expected the \"next\"") == true, "\(from): \(answer)")
        }
        #expect(try client.call("incidents", ["city": "Kupiansk", "from": "d5.3"]).isOK)
        // The command line: a cursor of no listing is bad usage, one of the other part the daemon's refusal.
        let signed = try daemon.ctl(["incidents", "--city", "Kupiansk", "--from", "d+5.+3"])
        #expect(signed.status == 2 && signed.stderr.contains("--from") && signed.stderr.contains("d+5.+3"), "\(signed.stderr)")
        let otherPart = try daemon.ctl(["incidents", "--city", "Kupiansk", "--open", "--from", retractedCursor])
        #expect(otherPart.status == 1 && otherPart.stderr.contains("invalid_request") && otherPart.stderr.contains("from: a cursor of the retracted"), "\(otherPart.stderr)")
        let resumed = try daemon.ctl(["incidents", "--city", "Kupiansk", "--from", negative, "--format", "json"])
        #expect(resumed.status == 0 && resumed.stdout.split(separator: "\n").count == 1 && resumed.stdout.contains("\"b\""), "\(resumed)")
        #expect(daemon.stop() == 0)
    }

    /// `city-dates` entries of the cities' lists of the incidents they do not date, in key order.
    static func indexEntries(_ daemon: Daemon) throws -> [(key: [UInt8], value: [UInt8])] {
        try entries(daemon).filter { $0.key.first == 0xFF }
    }

    /// Every `city-dates` entry, in key order.
    static func entries(_ daemon: Daemon) throws -> [(key: [UInt8], value: [UInt8])] {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let db = try environment.openDatabase("city-dates", create: false)
        return try environment.read { txn in
            var entries: [(key: [UInt8], value: [UInt8])] = []
            try txn.forEach(db) { key, value in
                entries.append((Array(key), Array(value)))
                return true
            }
            return entries
        }
    }

    @Test("verify names an entry of a city's list of the incidents it does not date that is missing, added or changed, with the rebuild as its remedy, which mends it")
    func verifyNamesIndexDamage() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([
            Self.report("a", "2022-03-05"), Self.report("b", "2022-03-09"), Self.report("c", "2022-03-11"),
            Self.outcome("b", "retracted"), Self.outcome("a", "retracted"),
        ])["ok"] == true)
        #expect(daemon.stop() == 0)
        let entries = try Self.indexEntries(daemon)
        let kupiansk = [0xFF] + Array("kupiansk".utf8) + [0]
        #expect(entries.map(\.key) == [kupiansk + DerivedDataTests.bigEndian(1), kupiansk + DerivedDataTests.bigEndian(2)], "\(entries)")
        #expect(entries.map(\.value) == [Array("a".utf8), Array("b".utf8)])
        let damages: [(key: String, problem: String, (borrowing WriteTransaction, Database) throws -> Void)] = [
            ("kupiansk/2", "its city's list of the incidents it does not date has no entry for the report at this position (incident b)",
             { txn, db in _ = try txn.delete(db, key: entries[1].key) }),
            // c, counted, is listed by its date.
            ("kupiansk/3", "its city's list of the incidents it does not date holds incident c at this position, where the events report none in the city that it does not date",
             { txn, db in try txn.put(db, key: kupiansk + DerivedDataTests.bigEndian(3), value: Array("c".utf8)) }),
            ("kupiansk/1", "its city's list of the incidents it does not date holds incident b at this position, where the events report a",
             { txn, db in try txn.put(db, key: entries[0].key, value: Array("b".utf8)) }),
        ]
        for (key, problem, damage) in damages {
            try DerivedDataTests.damage(daemon, "city-dates", damage)
            let verified = try DerivedDataTests.verify(daemon)
            let difference = try DerivedDataTests.onlyDifference(verified)
            #expect(difference["database"] == "city-dates", "\(difference)")
            #expect(difference["problem"]?.stringValue?.hasPrefix(problem) == true, "\(difference)")
            #expect(difference["remedy"] == "rebuild-projections", "\(difference)")
            #expect(difference["key"] == .string(key), "\(difference)")
            #expect(daemon.stop() == 0)
            daemon.extraArguments = ["--rebuild-projections"]
            try daemon.start()
            daemon.extraArguments = []
            #expect(try daemon.client().call("verify")["derived"]?["intact"] == true)
            #expect(daemon.stop() == 0)
            #expect(try Self.indexEntries(daemon).map(\.key) == entries.map(\.key))
        }
    }

    @Test("an entry of city-dates that names another city's incident, one whose id is empty, or one deleted: incidents answers log_damaged naming the entry, not another incident or internal_error; read with the city falls back to the scan and gives every event of the city; a date text changed is refused, not made the city's (QA pass 15, M1, L1, L2, L3)")
    func damagedEntriesAreNotTrusted() throws {
        let daemon = try Daemon()
        var client = try daemon.client()
        #expect(try client.appendEvents([
            Self.report("a", "2022-03-05"), Self.report("b", "2022-03-09"), Self.report("m", "2022-03-13", city: "Melitopol"),
            Self.outcome("b", "retracted"), Wire.response(incident: "a"),
        ])["ok"] == true)
        let events = try #require(client.call("read", ["city": "Kupiansk"])["events"]?.arrayValue)
        #expect(events.count == 4, "\(events)")
        #expect(daemon.stop() == 0)
        // a's date (position 1) and b's entry among those Kupiansk does not date (position 2).
        let dates = Array("kupiansk".utf8) + [0]
        let kupiansk = [0xFF] + dates
        let aKey = try #require(try Self.entries(daemon).first { $0.key.starts(with: dates) }?.key)
        let bKey = kupiansk + DerivedDataTests.bigEndian(2)
        let aValue = Array("2022-03-05".utf8) + [0] + Array("a".utf8)
        let damages: [(key: [UInt8], value: [UInt8]?, status: [String], problem: String)] = [
            (aKey, Array("2022-03-05".utf8) + [0] + Array("m".utf8), ["open"],
             "kupiansk's index of incident dates names incident m for the report at position 1, where that incident was reported at position 3 in melitopol, unknown"),
            (bKey, Array("m".utf8), ["retracted"],
             "kupiansk's list of the incidents it does not date names incident m for the report at position 2, where that incident was reported at position 3 in melitopol, unknown"),
            (bKey, Array("a".utf8), ["retracted"],
             "kupiansk's list of the incidents it does not date names incident a for the report at position 2, where that incident was reported at position 1 in kupiansk, unknown"),
            (aKey, Array("2022-03-05".utf8) + [0], ["open"], "the incident (an empty id) its city lists has no stored projection"),
            (aKey, nil, ["open"], ""),
        ]
        for (key, value, status, problem) in damages {
            try DerivedDataTests.damage(daemon, "city-dates") { txn, db in
                if let value { try txn.put(db, key: key, value: value) } else { _ = try txn.delete(db, key: key) }
            }
            try daemon.start()
            client = try daemon.client()
            let answer = try client.call("incidents", ["city": "Kupiansk", "status": .array(status.map { .string($0) })])
            if value == nil {
                // Left out of the listing (verify names it), but not out of read, which counts the city's entries.
                #expect(answer.isOK && answer["incidents"] == [], "\(answer)")
            } else {
                #expect(answer["error"]?["code"] == "log_damaged", "\(answer)")
                #expect(answer["error"]?["message"]?.stringValue?.contains(problem) == true, "\(answer)")
            }
            #expect(try client.call("read", ["city": "Kupiansk"])["events"]?.arrayValue == events, "\(String(describing: value))")
            #expect(daemon.stop() == 0)
            try DerivedDataTests.damage(daemon, "city-dates") { txn, db in
                try txn.put(db, key: key, value: key == aKey ? aValue : Array("b".utf8))
            }
        }
        // A date text changed on the disk (L3): the next reinstatement in the city, which reads the city's first and
        // last dates, is refused, where the text became the city's firstIncidentAt.
        try DerivedDataTests.damage(daemon, "city-dates") { txn, db in
            try txn.put(db, key: aKey, value: Array("2021-01-01".utf8) + [0] + Array("a".utf8))
        }
        try daemon.start()
        client = try daemon.client()
        let city = try client.call("city", ["city": "Kupiansk"])["city"]
        let reinstated = try client.appendEvents([Self.outcome("b", "dispersed")])
        #expect(reinstated["error"]?["code"] == "log_damaged", "\(reinstated)")
        #expect(reinstated["error"]?["message"]?.stringValue?.contains("kupiansk's index of incident dates does not read") == true, "\(reinstated)")
        #expect(try client.call("city", ["city": "Kupiansk"])["city"] == city)
        #expect(city?["firstIncidentAt"] == "2022-03-05", "\(String(describing: city))")
        #expect(daemon.stop() == 0)
        try DerivedDataTests.damage(daemon, "city-dates") { txn, db in try txn.put(db, key: aKey, value: aValue) }
        try daemon.start()
        client = try daemon.client()
        #expect(try client.appendEvents([Self.outcome("b", "dispersed")])["ok"] == true)
        #expect(try client.call("verify")["derived"]?["intact"] == true)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a daemon upgrades a log of format 4, which kept no index of a city's incidents, or of format 5, which kept it beside the dates, to format 6: the index made, the listing and events by city right; a reader refuses it until then",
        arguments: [4, 5])
    func upgradesOlderCityIndexes(format: Int) throws {
        let daemon = try Daemon()
        var client = try daemon.client()
        #expect(try client.appendEvents([
            Self.report("a", "2022-03-05"), Self.report("b", "2022-03-01"), Wire.response(incident: "a"),
            Self.report("m", "2022-03-13", city: "Melitopol"), Self.outcome("b", "retracted"),
        ])["ok"] == true)
        let listed = try Self.listing(client, "Kupiansk", status: ["open", "retracted"])
        #expect(Self.statuses(listed) == ["a:unknown", "b:retracted"])
        let kupianskEvents = try client.call("read", ["city": "Kupiansk"])["events"]
        #expect(kupianskEvents?.arrayValue?.count == 4, "\(String(describing: kupianskEvents))")
        #expect(daemon.stop() == 0)

        // Only b, retracted, is not dated.
        let kupiansk = [0xFF] + Array("kupiansk".utf8) + [0]
        #expect(try Self.indexEntries(daemon).map(\.key) == [kupiansk + DerivedDataTests.bigEndian(2)])
        // What an incidentd of format 4 left: city-dates without the indexes of incidents, projections of version 7;
        // of format 5: every incident in its city's index, after the dates, projections of version 8.
        try OlderFormatVerifyTests.downgrade(daemon, toFormat: format)
        let melitopol = [0xFF] + Array("melitopol".utf8) + [0]
        #expect(
            try Self.indexEntries(daemon).map(\.key)
                == (format == 4 ? [] : [1, 2].map { kupiansk + DerivedDataTests.bigEndian($0) } + [melitopol + DerivedDataTests.bigEndian(4)]))
        let refused = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("format incidentd-log-\(format)") && refused.stderr.contains("upgrade"), "\(refused.stderr)")

        try daemon.start()
        #expect(
            daemon.log.contains("the log was upgraded to incidentd-log-6, which keeps each city's incidents in an index of their dates and a list of those it does not date: rebuilding the projections"),
            "\(daemon.log)")
        client = try daemon.client()
        #expect(try Self.listing(client, "Kupiansk", status: ["open", "retracted"]) == listed)
        #expect(try client.call("read", ["city": "Kupiansk"])["events"] == kupianskEvents)
        let verify = try client.call("verify")
        #expect(verify["derived"]?["intact"] == true && verify["derived"]?["notCompared"] == nil, "\(verify)")
        // The index the upgrade made is the one the writer keeps.
        #expect(try client.appendEvents([Self.report("c", "2022-03-02")])["ok"] == true)
        #expect(Self.statuses(try Self.listing(client, "Kupiansk")) == ["c:unknown", "a:unknown"])
        #expect(daemon.stop() == 0)
        #expect(try Self.indexEntries(daemon).map(\.key) == [kupiansk + DerivedDataTests.bigEndian(2)])
    }

    @Test("read with a city filter, answered from the city's index, gives the events a scan of the whole log filtered by the incidents' cities gives, from any position, with any limit and type")
    func eventsByCityMatchTheScan() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let cities = ["Kupiansk", "Melitopol", "Berdiansk", "Kherson"]
        var events: [JSONValue] = []
        // Incidents in four cities, Kherson's only at the start; responses and outcomes long after their reports.
        for i in 0..<60 {
            let city = i < 6 ? "Kherson" : cities[i % 3]
            events.append(Self.report("i\(i)", "2022-03-0\(1 + i % 9)", city: city))
            if i >= 5 { events.append(Wire.response(incident: "i\(i - 5)")) }
            if i % 7 == 0 && i > 20 { events.append(Self.outcome("i\(i / 3)", i % 2 == 0 ? "retracted" : "dispersed")) }
        }
        // Kherson, which the gazetteer does not know, a city of the log's own.
        #expect(try client.appendEvents(events, allowNewCity: true)["ok"] == true)
        let stored = try client.allEvents()
        var cityOf: [String: String] = [:]
        for event in stored where event["type"] == "incident-reported" {
            cityOf[event["incident"]?.stringValue ?? ""] = event["data"]?["city"]?.stringValue
        }
        let head = Int64(stored.count)
        for city in cities {
            for type in [nil, "incident-reported", "response-observed", "outcome-updated"] as [String?] {
                let expected = stored.filter { cityOf[$0["incident"]?.stringValue ?? ""] == city && (type == nil || $0["type"]?.stringValue == type) }
                for from: Int64 in [0, 1, 7, 40, 100, head, head + 1, head + 5] {
                    for limit: Int64 in [1, 3, 10_000] {
                        var body: [String: JSONValue] = ["city": .string(city), "from": .int(from), "limit": .int(limit)]
                        if let type { body["type"] = .string(type) }
                        let answer = try client.call("read", body)
                        let page = try #require(answer["events"]?.arrayValue, "\(answer)")
                        let wanted = Array(expected.filter { ($0["position"]?.intValue ?? 0) >= from }.prefix(Int(limit)))
                        #expect(page == wanted, "\(city) \(type ?? "any") from \(from) limit \(limit)")
                        // `next` as a scan gives it: after the last event returned, or past the head.
                        let next = page.count == limit ? (page.last?["position"]?.intValue ?? 0) + 1 : max(from, head + 1)
                        #expect(answer["next"] == .int(next), "\(city) \(type ?? "any") from \(from) limit \(limit): \(answer["next"] ?? .null)")
                    }
                }
            }
            // The command line, every page.
            let command = try daemon.ctl(["events", "--city", city, "--format", "json"])
            #expect(command.status == 0, "\(command.stderr)")
            let lines = try command.stdout.split(separator: "\n").map { try JSONReader().read(String($0)) }
            #expect(lines == stored.filter { cityOf[$0["incident"]?.stringValue ?? ""] == city }, "\(city)")
        }
        #expect(daemon.stop() == 0)
    }
}
