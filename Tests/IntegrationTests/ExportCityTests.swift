import Foundation
import StrictJSON
import Testing

/// A report keeps the `cityId` it was stored with (SPEC §2) through `export --format jsonl | append`: the export
/// writes it, and `append` stores it as given, so that a log moved to another daemon does not have its reports
/// resolved again by that daemon's gazetteer.
@Suite("Export keeps cities")
struct ExportCityTests {
    /// The gazetteer's own Nova Kakhovka, added after a log made a city of that name with allowNewCity: it takes
    /// spellings the log's reports used, and the spelling that is the log's city's id.
    static let officialNovaKakhovka = """

        [[city]]
        id = "nova-kakhovka-official"
        name = "Nova Kakhovka"
        region = "UA-65"
        population = 45069
        aliases = ["Nova Kakhovka", "Nova-Kakhovka", "Нова Каховка"]

        """

    /// The members a log fills for itself: the rest of an event must be the same in a copy.
    static func content(_ event: JSONValue) -> JSONValue {
        guard case .object(let members) = event else { return event }
        return .object(members.filter { !["recordedAt", "recordedBy", "prevHash", "hash"].contains($0.key) })
    }

    @Test("export | append into an empty log on the same, newer gazetteer keeps every report in its city (one a gazetteer added since spells otherwise): the same events and byte-identical cities, which verify, replay, a restart and a rebuild agree with; the export appended again to either log is all alreadyStored")
    func exportAppendKeepsCities() throws {
        let source = try GazetteerChangeTests.Setup()
        let daemon = try source.daemon()
        // Reported before the gazetteer knew the city: a new city, nova-kakhovka, under every spelling.
        let spellings = ["Nova Kakhovka", "Nova-Kakhovka", "NOVA  KAKHOVKA", "Нова Каховка"]
        var events: [JSONValue] = spellings.enumerated().map { n, spelling in
            Wire.report(city: spelling, occurredAt: "2022-03-0\(n + 1)", participants: (100, Int64(200 + n)), eventId: Wire.uuid())
        }
        events += [
            Wire.response(incident: "nova-kakhovka-2022-03-01-demonstration", responses: ["detentions"], detained: 3, eventId: Wire.uuid()),
            Wire.outcome(incident: "nova-kakhovka-2022-03-02-demonstration", status: "suppressed", eventId: Wire.uuid()),
            Wire.report(city: "Kupyansk", occurredAt: "2022-03-01", eventId: Wire.uuid()),
        ]
        let first = try daemon.client().appendEvents(events, allowNewCity: true)
        #expect(first.isOK, "\(first)")
        #expect(try GazetteerChangeTests.city(daemon, "nova-kakhovka")["incidents"]?["total"]?.intValue == 4)
        #expect(daemon.stop() == 0)

        // The gazetteer gains its own Nova Kakhovka; reports since go to it, and the exact id still names the old.
        let text = try String(contentsOfFile: source.gazetteer, encoding: .utf8) + Self.officialNovaKakhovka
        try text.write(toFile: source.gazetteer, atomically: true, encoding: .utf8)
        try daemon.start()
        let later = try daemon.client().appendEvents([
            Wire.report(city: "Nova Kakhovka", kind: "strike", occurredAt: "2022-03-10", eventId: Wire.uuid()),
            Wire.report(city: "nova-kakhovka", kind: "strike", occurredAt: "2022-03-11", eventId: Wire.uuid()),
        ])
        #expect(later["incidents"] == ["nova-kakhovka-official-2022-03-10-strike", "nova-kakhovka-2022-03-11-strike"], "\(later)")
        let original = try daemon.client().allEvents()
        #expect(original.count == 9)
        let cities = try GazetteerChangeTests.ctl(daemon, ["cities", "--format", "json"])

        // Each report is exported with the city it is stored in.
        let exported = try daemon.ctl(["export"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let lines = try exported.stdout.split(separator: "\n").map { try JSONReader().read(String($0)) }
        #expect(lines.count == original.count)
        for (line, event) in zip(lines, original) where event["type"] == "incident-reported" {
            #expect(line["data"]?["cityId"] != nil && line["data"]?["cityId"] == event["data"]?["cityId"], "\(line)")
        }

        // Into an empty log of a daemon on the same gazetteer: the same events in the same cities.
        let target = try GazetteerChangeTests.Setup()
        try text.write(toFile: target.gazetteer, atomically: true, encoding: .utf8)
        let copy = try target.daemon()
        let appended = try copy.ctl(["append", "--allow-new-city", "--format", "json", "-"], stdin: exported.stdout)
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.json?["new"] == 9 && appended.json?["alreadyStored"] == 0, "\(appended.stdout)")
        #expect(try copy.client().allEvents().map(Self.content) == original.map(Self.content))
        #expect(try GazetteerChangeTests.ctl(copy, ["cities", "--format", "json"]) == cities)
        let old = try GazetteerChangeTests.city(copy, "nova-kakhovka")
        #expect(old["incidents"]?["total"]?.intValue == 5, "\(old)")
        #expect(old["aliasesSeen"] == ["NOVA  KAKHOVKA", "Nova Kakhovka", "Nova-Kakhovka", "nova-kakhovka", "Нова Каховка"], "\(old)")
        #expect(try GazetteerChangeTests.city(copy, "Nova Kakhovka")["incidents"]?["total"]?.intValue == 1)
        // The copy's projections are what its events give: verify's check of them, a replay, and after a restart.
        let verified = try copy.ctl(["verify"])
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
        try GazetteerChangeTests.expectCitiesAreReplay(copy, gazetteer: target.gazetteer, "the copy")
        #expect(copy.stop() == 0)
        try copy.start()
        #expect(GazetteerChangeTests.rebuilds(copy) == 0, "\(copy.log)")
        // As the log it came from, the copy holds a city whose id the gazetteer spells its own with, and says so.
        #expect(
            copy.log.contains("the gazetteer's city nova-kakhovka-official now takes the spelling \"Nova Kakhovka\" of the city nova-kakhovka,"),
            "\(copy.log)")
        copy.stop()
        copy.extraArguments = ["--config", target.config, "--rebuild-projections"]
        try copy.start()
        #expect(GazetteerChangeTests.rebuilds(copy) == 1, "\(copy.log)")
        #expect(try GazetteerChangeTests.ctl(copy, ["cities", "--format", "json"]) == cities, "rebuilt from the events alone")
        #expect(try GazetteerChangeTests.ctl(copy, ["cities", "--format", "json"]) == cities)

        // The export appended again, to its own log and to the copy: nothing new.
        for log in [daemon, copy] {
            let again = try log.ctl(["append", "--allow-new-city", "--format", "json", "-"], stdin: exported.stdout)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.json?["new"] == 0 && again.json?["alreadyStored"] == 9, "\(again.stdout)")
            #expect(try log.client().headPosition() == 9)
        }
        #expect(copy.stop() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("a city a restore made through cityId (an id that is no slug of its spellings) is found by every spelling its reports used, on the log it came from and on the copy export | append makes, after a restart and a rebuild; a report of that spelling goes there, with or without allowNewCity; a spelling the gazetteer knows still names the gazetteer's city")
    func restoredCityIsFoundByItsSpellings() throws {
        let daemon = try Daemon()
        func report(_ city: String, _ cityId: String?, day: Int) -> JSONValue {
            Wire.report(city: city, kind: "strike", occurredAt: "2022-03-0\(day)", eventId: Wire.uuid(), extraData: cityId.map { ["cityId": .string($0)] } ?? [:])
        }
        // As root (the admin role): a city of the log's own id, under two spellings; and a second Kupiansk.
        let restored = try daemon.client().appendEvents(
            [report("Hola Prystan", "hola-prystan-khersonska", day: 1), report("Гола Пристань", "hola-prystan-khersonska", day: 2),
             report("Kupiansk", "kupiansk-2", day: 3), report("Kupiansk East", nil, day: 4)],
            allowNewCity: true)
        #expect(restored.isOK, "\(restored)")
        let exported = try daemon.ctl(["export"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let copy = try Daemon()
        let appended = try copy.ctl(["append", "--allow-new-city", "--format", "json", "-"], stdin: exported.stdout)
        #expect(appended.status == 0 && appended.json?["new"] == 4, "\(appended.stdout)\(appended.stderr)")

        func expectSpellings(_ log: Daemon, _ when: String) throws {
            for spelling in ["Hola Prystan", "HOLA  PRYSTAN", "гола пристань", "hola-prystan-khersonska"] {
                let found = try log.ctl(["city", "--format", "json", spelling])
                #expect(found.status == 0, "\(when): \(spelling): \(found.stderr)")
                #expect(found.json?["cityId"] == "hola-prystan-khersonska", "\(when): \(spelling): \(found.stdout)")
            }
            // The gazetteer's spelling is the gazetteer's city; the second Kupiansk is reached by its id alone.
            #expect(try GazetteerChangeTests.city(log, "Kupiansk")["cityId"] == "kupiansk", "\(when)")
            #expect(try GazetteerChangeTests.city(log, "kupiansk-2")["cityId"] == "kupiansk-2", "\(when)")
            #expect(try GazetteerChangeTests.city(log, "Kupiansk East")["cityId"] == "kupiansk-east", "\(when)")
            let events = try log.ctl(["events", "--format", "json", "--city", "Hola Prystan"])
            #expect(events.status == 0 && events.stdout.contains("hola-prystan-khersonska-2022-03-02-strike"), "\(when): \(events.stdout)\(events.stderr)")
        }
        try expectSpellings(daemon, "the log it came from")
        try expectSpellings(copy, "the copy")
        copy.stop()
        try copy.start()
        try expectSpellings(copy, "the copy, restarted")
        copy.stop()
        copy.extraArguments = ["--rebuild-projections"]
        try copy.start()
        #expect(GazetteerChangeTests.rebuilds(copy) == 1, "\(copy.log)")
        try expectSpellings(copy, "the copy, rebuilt")

        // A report of a spelling of the restored city goes there, as the query finds it: no second city is made.
        let later = try copy.client().appendEvents([report("Hola Prystan", nil, day: 5)])
        #expect(later["incidents"] == ["hola-prystan-khersonska-2022-03-05-strike"], "\(later)")
        let allowed = try copy.client().appendEvents([report("hola prystan", nil, day: 6)], allowNewCity: true)
        #expect(allowed["incidents"] == ["hola-prystan-khersonska-2022-03-06-strike"], "\(allowed)")
        #expect(try copy.client().call("cities")["cities"]?.arrayValue?.count == 3)
        #expect(copy.stop() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("a spelling that two restored cities were reported under (two cityIds, one city spelling) names neither alone: city, events --city and a report of it (with allowNewCity too) are unknown_city naming both ids, where the one whose id sorts first was taken silently; each is reached by its id, and a report giving its cityId is filed there")
    func spellingOfTwoRestoredCitiesIsAmbiguous() throws {
        let daemon = try Daemon()
        func report(_ cityId: String?, day: Int) -> JSONValue {
            Wire.report(
                city: "Nova Kakhovka Raion", kind: "strike", occurredAt: "2022-03-0\(day)", eventId: Wire.uuid(),
                extraData: cityId.map { ["cityId": .string($0)] } ?? [:])
        }
        let restored = try daemon.client().appendEvents([report("nk-raion", day: 1), report("nk-raion-2", day: 2)], allowNewCity: true)
        #expect(restored.isOK, "\(restored)")
        let says = "\"Nova Kakhovka Raion\" is a spelling of 2 cities of this log, nk-raion, nk-raion-2, and names none of them alone"
        let query = try daemon.client().call("city", ["city": "nova kakhovka raion"])
        #expect(query.errorCode == "unknown_city" && query["error"]?["suggestions"] == ["nk-raion", "nk-raion-2"], "\(query)")
        #expect(query["error"]?["message"]?.stringValue?.contains("is a spelling of 2 cities of this log, nk-raion, nk-raion-2") == true, "\(query)")
        let events = try daemon.ctl(["events", "--city", "Nova Kakhovka Raion"])
        #expect(events.status == 1 && events.stderr.contains("unknown_city") && events.stderr.contains("nk-raion, nk-raion-2"), "\(events)")
        for allowNewCity in [false, true] {
            let refused = try daemon.client().appendEvents([report(nil, day: 3)], allowNewCity: allowNewCity)
            #expect(refused.errorCode == "unknown_city" && refused["error"]?["field"] == "data.city", "\(refused)")
            #expect(refused["error"]?["message"]?.stringValue?.hasPrefix(says) == true, "\(refused)")
        }
        for id in ["nk-raion", "nk-raion-2"] {
            #expect(try GazetteerChangeTests.city(daemon, id)["cityId"] == .string(id))
        }
        let filed = try daemon.client().appendEvents([report("nk-raion-2", day: 4)])
        #expect(filed["incidents"] == ["nk-raion-2-2022-03-04-strike"], "\(filed)")
        #expect(try daemon.client().call("cities")["cities"]?.arrayValue?.count == 2)
        #expect(daemon.stop() == 0)
    }

    @Test("a spelling the gazetteer refuses (\"Melitopol?\", \"Berdiansk.\") is unknown_city before and after its city has incidents, in city, events --city and a report, and is never added to the city's spellings, where once the city had an incident its slug reached it; a city added with allowNewCity is still found by its slug")
    func gazetteerCityIsNotFoundBySlug() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        func takenWrongly(_ name: String) throws -> [String] {
            var taken: [String] = []
            let city = try client.call("city", ["city": .string(name)])
            if city.errorCode != "unknown_city" { taken.append("city: \(city)") }
            let events = try daemon.ctl(["events", "--city", name])
            if !(events.status == 1 && events.stderr.contains("unknown_city")) { taken.append("events --city: \(events)") }
            let report = try client.appendEvents([Wire.report(city: name, occurredAt: "2022-03-09", eventId: Wire.uuid())])
            if report.errorCode != "unknown_city" { taken.append("report: \(report)") }
            return taken
        }
        let names = ["Melitopol?", "Berdiansk.", "Kupiansk!"]
        for name in names {
            let wrong = try takenWrongly(name)
            #expect(wrong.isEmpty, "\(name) on an empty log: \(wrong)")
        }
        let reports = ["Melitopol", "Berdiansk", "Kupiansk"].map { Wire.report(city: $0, occurredAt: "2022-03-01", eventId: Wire.uuid()) }
        #expect(try client.appendEvents(reports).isOK)
        for name in names {
            let wrong = try takenWrongly(name)
            #expect(wrong.isEmpty, "\(name) once its city has an incident: \(wrong)")
        }
        for id in ["melitopol", "berdiansk", "kupiansk"] {
            let city = try GazetteerChangeTests.city(daemon, id)
            #expect(city["incidents"]?["total"] == 1, "\(id): \(city)")
            let spellings = city["aliasesSeen"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(!spellings.contains { names.contains($0) }, "\(id): \(spellings)")
        }
        let added = try client.appendEvents([Wire.report(city: "Hola Prystan", occurredAt: "2022-03-02", eventId: Wire.uuid())], allowNewCity: true)
        #expect(added.isOK, "\(added)")
        let bySlug = try client.call("city", ["city": "Hola Prystan!"])
        #expect(bySlug["city"]?["cityId"] == "hola-prystan", "\(bySlug)")
        #expect(daemon.stop() == 0)
    }

    @Test("append stores a report's cityId as given, over the gazetteer's reading of city; one not of an id's form is invalid_event naming data.cityId, an unknown one unknown_city naming it (with allowNewCity a new city, if of the form of a new city's id); a retry compares it with the stored one")
    func appendTakesCityId() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        func report(_ cityId: String, city: String = "Melitopol", eventId: String? = nil, day: Int = 1) -> JSONValue {
            Wire.report(city: city, occurredAt: "2022-03-0\(day)", eventId: eventId, extraData: ["cityId": .string(cityId)])
        }
        // Not of a city id's form, with or without allowNewCity: invalid_event, naming the field.
        for bad in ["Kupiansk", "kup iansk", "-kupiansk", String(repeating: "a", count: 65)] {
            for allow in [false, true] {
                let refused = try client.appendEvents([report(bad)], allowNewCity: allow)
                #expect(refused.errorCode == "invalid_event" && refused["error"]?["field"] == "data.cityId", "\(bad): \(refused)")
            }
        }
        // A city neither the gazetteer nor the log knows: unknown_city naming the field, with suggestions.
        let unknown = try client.appendEvents([report("kupiansks")])
        #expect(unknown.errorCode == "unknown_city" && unknown["error"]?["field"] == "data.cityId", "\(unknown)")
        #expect(unknown["error"]?["message"]?.stringValue?.hasPrefix("data.cityId: ") == true, "\(unknown)")
        #expect(unknown["error"]?["suggestions"] == ["Kupiansk"], "\(unknown)")
        // With allowNewCity, a new city, if its id is of the form the daemon makes.
        let notMade = try client.appendEvents([report("kupiansk--east")], allowNewCity: true)
        #expect(notMade.errorCode == "invalid_event" && notMade["error"]?["field"] == "data.cityId", "\(notMade)")
        #expect(try client.headPosition() == 0)
        let made = try client.appendEvents([report("kupiansk-east", city: "Kupiansk East")], allowNewCity: true)
        #expect(made["incidents"] == ["kupiansk-east-2022-03-01-demonstration"], "\(made)")
        #expect(try client.call("city", ["city": "kupiansk-east"])["city"]?["name"] == "Kupiansk East")

        // The id wins over the gazetteer's reading of the spelling, which is kept as reported.
        let eventId = Wire.uuid()
        let stored = try client.appendEvents([report("kupiansk", city: "Melitopol", eventId: eventId, day: 2)])
        #expect(stored["incidents"] == ["kupiansk-2022-03-02-demonstration"], "\(stored)")
        let kupiansk = try client.call("city", ["city": "kupiansk"])["city"]
        #expect(kupiansk?["incidents"]?["total"] == 1 && kupiansk?["aliasesSeen"] == ["Melitopol"], "\(String(describing: kupiansk))")
        #expect(try client.call("city", ["city": "melitopol"])["city"]?["incidents"]?["total"] == 0)

        // A retry: with the stored id, or without one, it is the stored event; with another id it is not.
        var sent = report("kupiansk", city: "Melitopol", eventId: eventId, day: 2)
        #expect(try client.appendEvents([sent])["alreadyStored"] == [0])
        sent = Wire.setting(sent, "incident", "kupiansk-2022-03-02-demonstration")
        #expect(try client.appendEvents([sent])["alreadyStored"] == [0])
        #expect(try client.appendEvents([Wire.setting(sent, "data.cityId", nil)])["alreadyStored"] == [0])
        let other = try client.appendEvents([Wire.setting(sent, "data.cityId", "melitopol")])
        #expect(other.errorCode == "duplicate_event_id", "\(other)")
        #expect(try client.headPosition() == 2)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a reporter's cityId must be the one the daemon gives the report's city: one naming another city, or making a city of its own (a second Kupiansk, an id the gazetteer spells Kupiansk with), is permission_denied naming data.cityId, what city resolves to and the admin role, with nothing stored; an agreeing one is stored as without it",
        .enabled(if: ThrowawayUser.canCreate, "needs root, useradd and runuser or setpriv to create a throwaway user"))
    func reporterRestoresNoCities() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon.configured("[access.reporters]\nusers = [\"\(user.name)\"]\n")
        try AccessTests.admit(user, to: daemon)
        func line(_ city: String, _ cityId: String, day: Int = 3) -> String {
            Wire.report(city: city, kind: "other", occurredAt: "2022-03-0\(day)", extraData: ["cityId": .string(cityId)]).canonicalString() + "\n"
        }
        func append(_ text: String) throws -> CommandResult {
            try user.ctl(["append", "--allow-new-city", "--format", "json", "-"], socket: daemon.socketPath, stdin: text)
        }
        // QA's cases: a second Kupiansk, a city "zzz" for Melitopol, a copy of Kupiansk under its gazetteer spelling
        // kupyansk, and Melitopol's report filed under Kupiansk.
        let refusals: [(city: String, cityId: String, resolvesTo: String)] = [
            ("Kupiansk", "kupiansk-2", "kupiansk"), ("Melitopol", "zzz", "melitopol"), ("Kupiansk", "kupyansk", "kupiansk"),
            ("Kupyansk", "kupyansk", "kupiansk"), ("Melitopol", "kupiansk", "melitopol"),
        ]
        for (city, cityId, resolvesTo) in refusals {
            let refused = try append(line(city, cityId))
            #expect(refused.status == 1, "\(city) \(cityId): \(refused.stdout)\(refused.stderr)")
            #expect(refused.stderr.contains("permission_denied: -:1: data.cityId: \"\(cityId)\""), "\(refused.stderr)")
            #expect(refused.stderr.contains("\"\(city)\" resolves to \(resolvesTo)"), "\(refused.stderr)")
            #expect(refused.stderr.contains("takes the admin role"), "\(refused.stderr)")
            #expect(refused.stderr.contains("it was not stored. Nothing was stored"), "\(refused.stderr)")
        }
        // A refused report among agreeing ones: the batch is refused whole.
        let mixed = try append(line("Kupiansk", "kupiansk", day: 1) + line("Kupiansk", "kupiansk-2", day: 2))
        #expect(mixed.status == 1 && mixed.stderr.contains("permission_denied: -:2: data.cityId"), "\(mixed.stderr)")
        let client = try daemon.client()
        #expect(try client.headPosition() == 0)
        for id in ["kupiansk-2", "zzz", "kupyansk"] {
            #expect(try client.call("city", ["city": .string(id)])["city"]?["cityId"] != .string(id), "no city \(id) was made")
        }
        #expect(try client.call("cities")["cities"] == [])

        // Agreeing cityIds, as an export of a log on the same gazetteer writes them: stored as without them, a new
        // city the daemon makes from city itself included.
        let agreeing = line("Kupiansk", "kupiansk", day: 1) + line("Kup'yansk", "kupiansk", day: 2)
            + line("Nova Kakhovka", "nova-kakhovka", day: 3) + line("nova kakhovka", "nova-kakhovka", day: 4)
        let appended = try append(agreeing)
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.json?["new"] == 4, "\(appended.stdout)")
        #expect(try client.call("city", ["city": "kupiansk"])["city"]?["incidents"]?["total"] == 2)
        #expect(try client.call("city", ["city": "nova-kakhovka"])["city"]?["incidents"]?["total"] == 2)
        // Its own log exported and appended again by the reporter: every event already stored.
        let exported = try daemon.ctl(["export"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let again = try append(exported.stdout)
        #expect(again.status == 0 && again.json?["alreadyStored"] == 4, "\(again.stdout)\(again.stderr)")
        #expect(try client.headPosition() == 4)
        #expect(!daemon.log.contains("under the cityId it names"), "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }

    @Test("an admin (root) still restores a report under a cityId of its own, and the daemon's log says so at append time, naming the cityId and what the daemon makes of city")
    func adminRestoreIsLogged() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        func report(_ city: String, _ cityId: String, day: Int) -> JSONValue {
            Wire.report(city: city, kind: "other", occurredAt: "2022-03-0\(day)", extraData: ["cityId": .string(cityId)])
        }
        let made = try client.appendEvents([report("Kupiansk", "kupyansk", day: 1)], allowNewCity: true)
        #expect(made["incidents"] == ["kupyansk-2022-03-01-other"], "\(made)")
        #expect(
            daemon.log.contains(
                "stored 1 report under the cityId it names where the daemon would have filed it otherwise, as a restore of another log's cities does (the admin role's): kupyansk for \"Kupiansk\" (which the daemon resolves to kupiansk), a new city whose id the gazetteer spells Kupiansk (kupiansk) with"),
            "\(daemon.log)")
        let filed = try client.appendEvents([report("Melitopol", "kupiansk", day: 2), report("Melitopol", "kupiansk", day: 3)])
        #expect(filed["incidents"] == ["kupiansk-2022-03-02-other", "kupiansk-2022-03-03-other"], "\(filed)")
        #expect(try client.call("city", ["city": "kupiansk"])["city"]?["aliasesSeen"] == ["Melitopol"])
        #expect(
            daemon.log.contains("stored 2 reports under the cityId it names") && daemon.log.contains("kupiansk for \"Melitopol\" (which the daemon resolves to melitopol)"),
            "\(daemon.log)")
        // One that agrees is not a restore: nothing said.
        let before = daemon.log
        #expect(try client.appendEvents([report("Kupiansk", "kupiansk", day: 4)])["positions"] == [4])
        #expect(daemon.log == before, "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }
}
