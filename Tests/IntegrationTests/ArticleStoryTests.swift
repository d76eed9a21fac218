import Foundation
import IncidentLog
import LMDB
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The article's story end to end: its events go in through `incidentctl append`, and the projections come back
/// field by field, then a correction that shows in the projection while the history keeps both values.
@Suite("The article's story")
struct ArticleStoryTests {
    static func counts(_ values: [String: Int64], of all: [String]) -> JSONValue {
        .object(Dictionary(uniqueKeysWithValues: all.map { ($0, JSONValue.int(values[$0] ?? 0)) }))
    }

    static let kinds = ["demonstration", "blockade", "sabotage", "confrontation", "symbolic-act", "strike", "other"]
    static let responseKinds = [
        "none", "warning-shots", "tear-gas", "crowd-dispersal", "detentions", "beatings", "live-fire", "abductions",
        "accommodation", "other",
    ]
    static let statuses = ["unknown", "ongoing", "dispersed", "objective-achieved", "suppressed", "retracted"]
    static let verifications = ["unverified", "verified", "disputed", "debunked"]

    static func city(
        id: String, name: String, aliases: [String], region: String, population: Int64, byKind: [String: Int64],
        participants: (low: Int64, high: Int64, counted: Int64), responses: [String: Int64], outcomes: [String: Int64],
        verification: [String: Int64], open: Int64, first: String, last: String, lastPosition: Int64
    ) -> [String: JSONValue] {
        [
            "cityId": .string(id),
            "name": .string(name),
            "aliasesSeen": .array(aliases.map { .string($0) }),
            "region": .string(region),
            "population": .int(population),
            "incidents": ["total": .int(byKind.values.reduce(0, +)), "byKind": counts(byKind, of: kinds)],
            "participants": ["low": .int(participants.low), "high": .int(participants.high), "counted": .int(participants.counted)],
            "responses": counts(responses, of: responseKinds),
            "casualties": ["killed": 0, "injured": 0, "detained": 0],
            "outcomes": counts(outcomes, of: statuses),
            "verification": counts(verification, of: verifications),
            "openIncidents": .int(open),
            "firstIncidentAt": .string(first),
            "lastIncidentAt": .string(last),
            "lastPosition": .int(lastPosition),
        ]
    }

    /// The three cities as the article's eight events leave them, from the gazetteer and the article.
    static let expectedCities: [String: [String: JSONValue]] = [
        "berdiansk": city(
            id: "berdiansk", name: "Berdiansk", aliases: ["Berdyans’k"], region: "UA-23", population: 107_928,
            byKind: ["demonstration": 1, "sabotage": 1], participants: (0, 0, 0), responses: [:],
            outcomes: ["unknown": 2], verification: ["unverified": 2], open: 2, first: "2022-02-28",
            last: "2022-02-28", lastPosition: 8),
        "kupiansk": city(
            id: "kupiansk", name: "Kupiansk", aliases: ["Kup’yansk"], region: "UA-63", population: 26_262,
            byKind: ["demonstration": 1], participants: (150, 150, 1),
            responses: ["warning-shots": 1, "tear-gas": 1, "crowd-dispersal": 1], outcomes: ["unknown": 1],
            verification: ["verified": 1], open: 1, first: "2022-03-01", last: "2022-03-01", lastPosition: 3),
        "melitopol": city(
            id: "melitopol", name: "Melitopol", aliases: ["Melitopoli"], region: "UA-23", population: 148_851,
            byKind: ["blockade": 1], participants: (0, 0, 0), responses: ["warning-shots": 1], outcomes: ["unknown": 1],
            verification: ["verified": 1], open: 1, first: "2022-03-01", last: "2022-03-01", lastPosition: 6),
    ]

    /// Compares a document with the expected fields one by one, and their set of keys.
    static func expectFields(
        _ actual: JSONValue?, _ expected: [String: JSONValue], _ label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let members = actual?.objectValue else {
            Issue.record("\(label): expected an object, got \(String(describing: actual))", sourceLocation: sourceLocation)
            return
        }
        #expect(Set(members.keys) == Set(expected.keys), "\(label): fields", sourceLocation: sourceLocation)
        for key in expected.keys.sorted() {
            #expect(members[key] == expected[key], "\(label).\(key)", sourceLocation: sourceLocation)
        }
    }

    static let kupiansk = "kupiansk-2022-03-01-city-hall"

    /// Starts a daemon and appends the article through `incidentctl append`.
    static func daemonWithArticle() throws -> Daemon {
        let daemon = try Daemon()
        let append = try daemon.ctl(["append", "--format", "json", Repository.articlePath])
        #expect(append.status == 0, "incidentctl append: \(append.stderr)")
        #expect(append.json == ["events": 8, "new": 8, "alreadyStored": 0, "firstPosition": 1, "lastPosition": 8])
        return daemon
    }

    @Test("incidentctl append stores the article; cities and city show each city field by field")
    func citiesFieldByField() throws {
        let daemon = try Self.daemonWithArticle()
        let cities = try daemon.ctl(["cities", "--format", "json"])
        #expect(cities.status == 0, "\(cities.stderr)")
        let list = try #require(cities.json?.arrayValue)
        #expect(list.map { $0["cityId"]?.stringValue } == ["berdiansk", "kupiansk", "melitopol"])
        for document in list {
            let id = try #require(document["cityId"]?.stringValue)
            Self.expectFields(document, try #require(Self.expectedCities[id]), id)
        }
        // `city` gives the same document as `cities`, under the canonical name and every spelling users type.
        let kupiansk = try #require(list.first { $0["cityId"]?.stringValue == "kupiansk" })
        for spelling in ["Kupiansk", "Kupyansk", "Kup'yansk", "Kup’yansk", "Куп'янськ", "Купянск", "KUPIANSK", "kupiansk"] {
            let city = try daemon.ctl(["city", "--format", "json", spelling])
            #expect(city.status == 0, "city \(spelling): \(city.stderr)")
            #expect(city.json == kupiansk, "city \(spelling)")
        }
        for (spelling, id) in [("Meritopoli", "melitopol"), ("Мелітополь", "melitopol"), ("Berdyansk", "berdiansk"), ("Бердянск", "berdiansk")] {
            let city = try daemon.ctl(["city", "--format", "json", spelling])
            #expect(city.json?["cityId"]?.stringValue == id, "city \(spelling)")
            #expect(city.json == list.first { $0["cityId"]?.stringValue == id }, "city \(spelling)")
        }
        // The raw socket serves the very same documents.
        let client = try daemon.client()
        let raw = try client.call("cities")
        #expect(raw["cities"] == cities.json)
        #expect(try client.call("city", ["city": "Куп’янськ"])["city"] == kupiansk)
        let status = try client.call("status")
        #expect(status["position"]?.intValue == 8)
        #expect(status["incidents"]?.intValue == 4)
        #expect(status["cities"]?.intValue == 3)
    }

    @Test("incident shows the report, the responses in order, the outcome history and where it stands")
    func incidentDocument() throws {
        let daemon = try Self.daemonWithArticle()
        let article = try Repository.articleEvents()
        let result = try daemon.ctl(["incident", "--format", "json", Self.kupiansk])
        #expect(result.status == 0, "\(result.stderr)")
        let incident = try #require(result.json)

        var expectedReport = try #require(article[0]["data"]?.objectValue)
        expectedReport["cityId"] = "kupiansk"
        #expect(incident["incident"]?.stringValue == Self.kupiansk)
        #expect(incident["cityId"]?.stringValue == "kupiansk")
        #expect(incident["city"]?.stringValue == "Kupiansk")
        #expect(incident["occurredAt"]?.stringValue == "2022-03-01")
        #expect(incident["precision"]?.stringValue == "day")
        #expect(incident["report"] == .object(expectedReport))
        #expect(incident["current"] == .object(expectedReport), "no correction yet: current is the report")
        #expect(incident["status"]?.stringValue == "unknown")
        #expect(incident["verification"]?.stringValue == "verified")
        #expect(incident["version"]?.intValue == 3)
        #expect(incident["firstPosition"]?.intValue == 1)
        #expect(incident["lastPosition"]?.intValue == 3)
        #expect(incident["responses"] == ["warning-shots": 1, "tear-gas": 1, "crowd-dispersal": 1])
        #expect(incident["casualties"] == ["killed": 0, "injured": 0, "detained": 0])

        // The history: the stored events themselves, with the envelope the daemon filled.
        let reportEvent = try #require(incident["reportEvent"])
        let responses = try #require(incident["responseHistory"]?.arrayValue)
        let outcomes = try #require(incident["outcomeHistory"]?.arrayValue)
        #expect(responses.count == 1)
        #expect(outcomes.count == 1)
        #expect(incident["latestOutcome"] == outcomes.last)
        let history = [reportEvent] + responses + outcomes
        #expect(history.map { $0["position"]?.intValue } == [1, 2, 3])
        #expect(history.map { $0["version"]?.intValue } == [1, 2, 3])
        #expect(history.map { $0["type"]?.stringValue } == ["incident-reported", "response-observed", "outcome-updated"])
        #expect(reportEvent["data"] == .object(expectedReport))
        #expect(responses[0]["data"] == article[1]["data"])
        #expect(outcomes[0]["data"] == article[2]["data"])
        #expect(responses[0]["sources"] == article[1]["sources"])
        for (n, event) in history.enumerated() {
            #expect(event["incident"]?.stringValue == Self.kupiansk)
            #expect(event["schema"]?.intValue == 1)
            #expect(event["recordedBy"] == ["uid": .int(Int64(getuid())), "user": .string(currentUserName())])
            #expect(event["hash"]?.stringValue?.utf8.count == 64)
            if let id = article[n]["eventId"] { #expect(event["eventId"] == id, "the client's eventId is kept") }
            #expect(event["eventId"]?.stringValue?.utf8.count == 36)
            if n > 0 { #expect(event["prevHash"] == history[n - 1]["hash"], "the chain links \(n) to \(n - 1)") }
        }
        #expect(reportEvent["prevHash"]?.stringValue == String(repeating: "0", count: 64))

        // A Berdiansk incident: reported only, so still open and unverified; week precision is kept.
        let berdiansk = try daemon.client().call("incident", ["incident": "berdiansk-2022-02-28-molotov-tank"])["incident"]
        #expect(berdiansk?["status"]?.stringValue == "unknown")
        #expect(berdiansk?["verification"]?.stringValue == "unverified")
        #expect(berdiansk?["precision"]?.stringValue == "week")
        #expect(berdiansk?["version"]?.intValue == 1)
        #expect(berdiansk?["responseHistory"] == [])
        #expect(berdiansk?["outcomeHistory"] == [])
        #expect(berdiansk?["latestOutcome"] == .null)
    }

    /// A report of the article's convoy-blockade day filed under the wrong city, with a response that killed three:
    /// what Melitopol shows while it stands, as `expectedCities` plus it.
    static func melitopolWithWrongReport(lastPosition: Int64) throws -> [String: JSONValue] {
        var expected = try #require(Self.expectedCities["melitopol"])
        expected["aliasesSeen"] = ["Melitopol", "Melitopoli"]
        expected["incidents"] = ["total": 2, "byKind": Self.counts(["blockade": 1, "demonstration": 1], of: Self.kinds)]
        expected["participants"] = ["low": 800, "high": 800, "counted": 1]
        expected["responses"] = Self.counts(["warning-shots": 1, "live-fire": 1], of: Self.responseKinds)
        expected["casualties"] = ["killed": 3, "injured": 0, "detained": 0]
        expected["outcomes"] = Self.counts(["unknown": 2], of: Self.statuses)
        expected["verification"] = Self.counts(["verified": 1, "unverified": 1], of: Self.verifications)
        expected["openIncidents"] = 2
        expected["lastIncidentAt"] = "2022-03-13"
        expected["lastPosition"] = .int(lastPosition)
        return expected
    }

    /// Melitopol once the wrong report is retracted and debunked: its status and verification are counted, nothing
    /// else of it, its date included: the city's last incident is the article's again.
    static func melitopolRetracted(lastPosition: Int64) throws -> [String: JSONValue] {
        var expected = try #require(Self.expectedCities["melitopol"])
        expected["aliasesSeen"] = ["Melitopol", "Melitopoli"]
        expected["outcomes"] = Self.counts(["unknown": 1, "retracted": 1], of: Self.statuses)
        expected["verification"] = Self.counts(["verified": 1, "debunked": 1], of: Self.verifications)
        expected["lastPosition"] = .int(lastPosition)
        return expected
    }

    static let wrong = "wrong-city-2022-03-13"
    /// The commands that report the wrong city's incident and the response that killed three.
    static let wrongReport = [
        ["report", "--city", "Melitopol", "--kind", "demonstration", "--occurred", "2022-03-13", "--participants", "800", "--incident", wrong],
        ["observe", wrong, "--response", "live-fire", "--by", "Russian armed forces", "--killed", "3"],
    ]

    /// Runs each of `commands` with incidentctl, each of which must succeed.
    static func run(_ daemon: Daemon, _ commands: [[String]]) throws {
        for arguments in commands {
            let run = try daemon.ctl(arguments)
            #expect(run.status == 0, "\(arguments): \(run.stderr)")
        }
    }

    @Test("a retracted incident leaves its city's totals, sums, open incidents and first and last incident dates, counted only by its status and verification; an outcome that reinstates it counts it again; replay agrees")
    func retraction() throws {
        let daemon = try Self.daemonWithArticle()
        let wrong = Self.wrong
        try Self.run(daemon, Self.wrongReport)
        Self.expectFields(
            try daemon.ctl(["city", "--format", "json", "Melitopol"]).json, try Self.melitopolWithWrongReport(lastPosition: 10),
            "melitopol with the wrong report")

        let retract = try daemon.ctl(["outcome", wrong, "--status", "retracted", "--verification", "debunked", "--note", "wrong city"])
        #expect(retract.status == 0, "\(retract.stderr)")
        Self.expectFields(
            try daemon.ctl(["city", "--format", "json", "Melitopol"]).json, try Self.melitopolRetracted(lastPosition: 11),
            "melitopol after the retraction")
        let incident = try #require(try daemon.ctl(["incident", "--format", "json", wrong]).json)
        #expect(incident["casualties"]?["killed"] == 3 && incident["status"] == "retracted", "the incident keeps its history: \(incident)")

        // Retracted by mistake: an outcome that sets another status counts it again, as it stands.
        let reinstate = try daemon.ctl(["outcome", wrong, "--status", "ongoing", "--verification", "unverified"])
        #expect(reinstate.status == 0, "\(reinstate.stderr)")
        var reinstated = try Self.melitopolWithWrongReport(lastPosition: 12)
        reinstated["outcomes"] = Self.counts(["unknown": 1, "ongoing": 1], of: Self.statuses)
        Self.expectFields(try daemon.ctl(["city", "--format", "json", "Melitopol"]).json, reinstated, "melitopol reinstated")

        let again = try daemon.ctl(["outcome", wrong, "--status", "retracted", "--verification", "debunked"])
        #expect(again.status == 0, "\(again.stderr)")
        let cities = try daemon.ctl(["cities", "--format", "json"])
        let replay = try daemon.ctl(["replay", "--format", "json"])
        #expect(cities.status == 0 && replay.status == 0 && cities.stdout == replay.stdout, "replay folds as the daemon does:\n\(cities.stdout)\n\(replay.stdout)")
        let before = try daemon.ctl(["replay", "--format", "json", "--until-position", "12"]).json?.arrayValue
        let melitopol = before?.first { $0["cityId"] == "melitopol" }
        Self.expectFields(melitopol, reinstated, "replay up to the reinstatement")

        // A city whose only incident is retracted counts none, and gives no participant count, rather than 0.
        try Self.run(daemon, [
            ["report", "--city", "Enerhodar", "--allow-new-city", "--kind", "strike", "--occurred", "2022-04-02", "--participants", "40", "--incident", "enerhodar-strike"],
            ["outcome", "enerhodar-strike", "--status", "retracted"],
        ])
        let onlyRetracted = try daemon.ctl(["city", "--format", "table", "Enerhodar"]).stdout
        #expect(onlyRetracted.contains("participants:   no count (no incidents counted)\n"), "\(onlyRetracted)")
        // Nor a first or last incident date.
        let enerhodar = try daemon.ctl(["city", "--format", "json", "Enerhodar"]).json
        #expect(enerhodar?["firstIncidentAt"] == .null && enerhodar?["lastIncidentAt"] == .null, "\(String(describing: enerhodar))")
    }

    @Test("projections an incidentd before version 4 built, which counted retracted incidents in the sums and not the incidents with a participant count, are rebuilt at the next start")
    func retractionRebuild() throws {
        let daemon = try Self.daemonWithArticle()
        try Self.run(daemon, Self.wrongReport + [["outcome", Self.wrong, "--status", "retracted", "--verification", "debunked"]])
        #expect(daemon.stop() == 0)
        // What version 3 stored: the retracted incident in every sum, and the mark of version 3.
        var old = try Self.melitopolWithWrongReport(lastPosition: 11)
        old["outcomes"] = Self.counts(["unknown": 1, "retracted": 1], of: Self.statuses)
        old["verification"] = Self.counts(["verified": 1, "debunked": 1], of: Self.verifications)
        old["openIncidents"] = 1
        old["participants"] = ["low": 800, "high": 800]
        try DerivedDataTests.damage(daemon, "cities") { txn, cities in
            try txn.put(cities, key: "melitopol", value: JSONValue.object(old).canonicalBytes())
        }
        try DerivedDataTests.damage(daemon, "meta") { txn, meta in
            let mark = Array(try #require(try txn.get(meta, key: Array("projections".utf8))))
            #expect(
                mark.count == 16 && DerivedDataTests.bigEndian(mark[8...]) == EventLog.projectionVersion,
                "the premise: projections of this daemon's version")
            try txn.put(meta, key: Array("projections".utf8), value: Array(mark[..<8]) + DerivedDataTests.bigEndian(3))
        }
        try daemon.start()
        #expect(
            daemon.log.contains("the projections are of version 3, this incidentd writes version \(EventLog.projectionVersion): rebuilding them"),
            "\(daemon.log)")
        Self.expectFields(
            try daemon.ctl(["city", "--format", "json", "Melitopol"]).json, try Self.melitopolRetracted(lastPosition: 11),
            "melitopol rebuilt")
    }

    @Test("a correction shows in the projections while the incident's history keeps both values; a field removed likewise")
    func correction() throws {
        let daemon = try Self.daemonWithArticle()
        let observe = try daemon.ctl([
            "observe", Self.kupiansk, "--response", "detentions,beatings", "--by", "Russian National Guard",
            "--detained", "4", "--format", "json",
        ])
        #expect(observe.status == 0, "\(observe.stderr)")
        #expect(observe.json == ["incident": .string(Self.kupiansk), "position": 9])
        let outcome = try daemon.ctl([
            "outcome", Self.kupiansk, "--status", "dispersed", "--correct", "participants=100-200",
            "--note", "a second video shows a larger crowd", "--format", "json",
        ])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.json == ["incident": .string(Self.kupiansk), "position": 10])

        let incident = try #require(try daemon.ctl(["incident", "--format", "json", Self.kupiansk]).json)
        #expect(incident["report"]?["participants"] == ["low": 150, "high": 150], "the report as reported")
        #expect(incident["current"]?["participants"] == ["low": 100, "high": 200], "the report as corrected")
        #expect(incident["current"]?["location"] == incident["report"]?["location"], "uncorrected fields stay")
        #expect(incident["status"]?.stringValue == "dispersed")
        #expect(incident["verification"]?.stringValue == "verified", "an outcome without verification keeps it")
        #expect(incident["version"]?.intValue == 5)
        #expect(incident["casualties"] == ["killed": 0, "injured": 0, "detained": 4])
        let responses = try #require(incident["responseHistory"]?.arrayValue)
        #expect(responses.map { $0["position"]?.intValue } == [2, 9], "responses in order")
        #expect(responses.last?["data"]?["responses"] == ["detentions", "beatings"])
        #expect(responses.last?["occurredAt"]?.stringValue == "2022-03-01", "a response takes the incident's date")
        let outcomes = try #require(incident["outcomeHistory"]?.arrayValue)
        #expect(outcomes.map { $0["position"]?.intValue } == [3, 10])
        #expect(outcomes.map { $0["data"]?["status"]?.stringValue } == ["unknown", "dispersed"])
        #expect(outcomes.last?["data"]?["corrections"] == ["participants": ["low": 100, "high": 200]])
        #expect(incident["latestOutcome"] == outcomes.last)
        let table = try daemon.ctl(["incident", "--format", "table", Self.kupiansk]).stdout
        #expect(table.contains("150 people"), "the history's table shows the value as reported: \(table)")
        #expect(table.contains("corrects participants to 100–200"), "and the corrected one: \(table)")

        var expected = try #require(Self.expectedCities["kupiansk"])
        expected["participants"] = ["low": 100, "high": 200, "counted": 1]
        expected["responses"] = Self.counts(
            ["warning-shots": 1, "tear-gas": 1, "crowd-dispersal": 1, "detentions": 1, "beatings": 1], of: Self.responseKinds)
        expected["casualties"] = ["killed": 0, "injured": 0, "detained": 4]
        expected["outcomes"] = Self.counts(["dispersed": 1], of: Self.statuses)
        expected["openIncidents"] = 0
        expected["lastPosition"] = 10
        let city = try daemon.ctl(["city", "--format", "json", "Kup'yansk"])
        Self.expectFields(city.json, expected, "kupiansk after the correction")
        // The other cities did not move.
        let melitopol = try daemon.ctl(["city", "--format", "json", "Melitopol"])
        Self.expectFields(melitopol.json, try #require(Self.expectedCities["melitopol"]), "melitopol")

        // The log itself still holds the original report, unchanged.
        let first = try daemon.client().call("read", ["from": 1, "limit": 1])["events"]?.arrayValue?.first
        #expect(first?["data"]?["participants"] == ["low": 150, "high": 150])

        // A field removed: gone from the incident as it stands, kept in the report and the history.
        let removed = try daemon.ctl(["outcome", Self.kupiansk, "--status", "dispersed", "--remove", "location", "--format", "json"])
        #expect(removed.status == 0, "\(removed.stderr)")
        let afterRemoval = try #require(try daemon.ctl(["incident", "--format", "json", Self.kupiansk]).json)
        #expect(afterRemoval["current"]?["location"] == nil, "\(afterRemoval)")
        #expect(afterRemoval["report"]?["location"] == incident["report"]?["location"])
        let removalTable = try daemon.ctl(["incident", "--format", "table", Self.kupiansk]).stdout
        #expect(removalTable.contains("status dispersed, removes location"), "\(removalTable)")
        #expect(!removalTable.contains("corrects location"), "a removal is no correction: \(removalTable)")
        let both = try daemon.ctl(["outcome", Self.kupiansk, "--status", "dispersed", "--remove", "location", "--correct", "location=x"])
        #expect(both.status == 2, "\(both.stderr)")
        let kind = try daemon.ctl(["outcome", Self.kupiansk, "--status", "dispersed", "--remove", "kind"])
        #expect(kind.status == 2 && kind.stderr.contains("an incident always has a kind"), "an incident keeps its kind: \(kind.stderr)")

        // The count removed, then given to an incident reported without one: the sums say which incidents they cover.
        func participants(_ city: String) throws -> JSONValue? {
            try daemon.ctl(["city", "--format", "json", city]).json?["participants"]
        }
        let noCount = try daemon.ctl(["outcome", Self.kupiansk, "--status", "dispersed", "--remove", "participants"])
        #expect(noCount.status == 0, "\(noCount.stderr)")
        #expect(try participants("Kupiansk") == ["low": 0, "high": 0, "counted": 0])
        let given = try daemon.ctl([
            "outcome", "melitopol-2022-03-01-convoy-blockade", "--status", "ongoing", "--correct", "participants=12-20",
        ])
        #expect(given.status == 0, "\(given.stderr)")
        #expect(try participants("Melitopol") == ["low": 12, "high": 20, "counted": 1])
        let correctedAndRemoved = try daemon.ctl([
            "outcome", "melitopol-2022-03-01-convoy-blockade", "--status", "ongoing", "--correct", "participants=12-30",
            "--remove", "tags", "--remove", "location",
        ])
        #expect(correctedAndRemoved.status == 0, "\(correctedAndRemoved.stderr)")
        let events = try daemon.ctl(["events", "--format", "table", "--incident", "melitopol-2022-03-01-convoy-blockade"]).stdout
        #expect(events.contains("status ongoing, corrects participants to 12–30, removes location, tags"), "\(events)")
        #expect(
            try daemon.ctl(["cities", "--format", "json"]).stdout == daemon.ctl(["replay", "--format", "json"]).stdout,
            "replay folds the corrections as the daemon does")
    }
}
