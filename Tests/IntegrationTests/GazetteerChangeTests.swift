import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// The projections take a city's name, region and population from the gazetteer when its first incident is
/// folded. After the gazetteer changes (its file edited, or another daemon version's embedded one), a restart
/// must leave `city` and `cities` exactly what `replay` computes with the new gazetteer: the daemon rebuilds the
/// projections by itself, saying why in its log, and only then; it never rebuilds for a gazetteer that did not
/// change.
@Suite("Gazetteer change")
struct GazetteerChangeTests {
    static let changedLine = "the gazetteer changed since the projections were built: rebuilding them"

    /// A daemon's directory with `gz.toml` (a copy of config/cities.toml) and a settings file that names it.
    struct Setup {
        let root = makeTemporaryDirectory("incidentd-gazetteer")
        var gazetteer: String { root + "/gz.toml" }
        var config: String { root + "/incidentd.toml" }

        init() throws {
            let original = try String(contentsOfFile: Repository.root + "/config/cities.toml", encoding: .utf8)
            try original.write(toFile: gazetteer, atomically: true, encoding: .utf8)
            try "[gazetteer]\nfile = \"\(gazetteer)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        }

        /// Starts a daemon on the settings file (and so on gz.toml).
        func daemon() throws -> Daemon { try Daemon(arguments: ["--config", config], root: root) }

        /// Replaces `old`, which gz.toml must hold once, by `new`.
        func edit(_ old: String, _ new: String) throws {
            let text = try String(contentsOfFile: gazetteer, encoding: .utf8)
            #expect(text.components(separatedBy: old).count == 2, "gz.toml holds \"\(old)\" once")
            try text.replacingOccurrences(of: old, with: new).write(toFile: gazetteer, atomically: true, encoding: .utf8)
        }
    }

    /// `incidentctl` run with `arguments`, which must succeed; its output.
    static func ctl(_ daemon: Daemon, _ arguments: [String]) throws -> String {
        let result = try daemon.ctl(arguments)
        #expect(result.status == 0, "incidentctl \(arguments.joined(separator: " ")): \(result.stderr)")
        return result.stdout
    }

    /// `incidentctl replay --data-dir` of the daemon's log, with `gazetteer` (none: the compiled-in one).
    static func replay(_ daemon: Daemon, gazetteer: String?) throws -> String {
        let result = try runCommand(
            Binaries.incidentctl,
            ["replay", "--data-dir", daemon.dataDir, "--format", "json"] + (gazetteer.map { ["--gazetteer", $0] } ?? []))
        #expect(result.status == 0, "\(result.stderr)")
        return result.stdout
    }

    /// `cities` must be `replay`'s document byte for byte.
    static func expectCitiesAreReplay(_ daemon: Daemon, gazetteer: String?, _ comment: Comment) throws {
        let cities = try ctl(daemon, ["cities", "--format", "json"])
        let replayed = try replay(daemon, gazetteer: gazetteer)
        #expect(cities == replayed, "\(comment): cities\n\(cities)\nreplay\n\(replayed)")
    }

    /// A city's projection as `incidentctl city` prints it.
    static func city(_ daemon: Daemon, _ name: String) throws -> JSONValue {
        try JSONReader().read(try ctl(daemon, ["city", "--format", "json", name]))
    }

    /// How many times this start of the daemon rebuilt its projections.
    static func rebuilds(_ daemon: Daemon) -> Int {
        daemon.log.components(separatedBy: "rebuilt projections").count - 1
    }

    @Test("after an edit of a population and a region in the gazetteer file, a restart rebuilds: city and cities are replay's with the edited file, for a city with incidents and one without, before and after new events")
    func editedFile() throws {
        let setup = try Setup()
        let daemon = try setup.daemon()
        _ = try Self.ctl(daemon, ["report", "--city", "Melitopol", "--kind", "demonstration", "--occurred", "2022-03-05", "--incident", "melitopol-rally"])
        #expect(try Self.city(daemon, "Melitopol")["population"]?.intValue == 148851)
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "before the edit")
        #expect(daemon.stop() == 0)

        // Restarted on the same gazetteer: nothing to rebuild.
        try daemon.start()
        #expect(Self.rebuilds(daemon) == 0, "\(daemon.log)")
        #expect(!daemon.log.contains("rebuilding"), "\(daemon.log)")
        #expect(daemon.stop() == 0)

        try setup.edit("population = 148851", "population = 111")
        try setup.edit("region = \"UA-23\"          # Zaporizhzhia oblast\n# State Statistics Service of Ukraine, estimate as of 1 January 2022 (pre-war): 148,851", "region = \"UA-99\"\n# 148,851")
        try setup.edit("population = 107928", "population = 222")
        try daemon.start()
        #expect(daemon.log.contains(Self.changedLine), "\(daemon.log)")
        #expect(Self.rebuilds(daemon) == 1, "\(daemon.log)")
        let melitopol = try Self.city(daemon, "Melitopol")
        #expect(melitopol["population"]?.intValue == 111, "\(melitopol)")
        #expect(melitopol["region"]?.stringValue == "UA-99", "\(melitopol)")
        #expect(melitopol["incidents"]?["total"]?.intValue == 1)
        // Berdiansk has no incident yet: its empty projection, from the gazetteer now loaded.
        #expect(try Self.city(daemon, "Berdiansk")["population"]?.intValue == 222)
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after the edit")
        #expect(try Self.replay(daemon, gazetteer: nil) != Self.replay(daemon, gazetteer: setup.gazetteer), "the edit shows in a replay")
        // A replay with another gazetteer than the daemon's says so; with the daemon's, it says nothing.
        let compiledIn = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(compiledIn.stderr.contains("with another gazetteer than this replay's (the compiled-in one)"), "\(compiledIn.stderr)")
        let same = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--gazetteer", setup.gazetteer])
        #expect(same.status == 0 && same.stderr.isEmpty, "\(same.stderr)")

        // New events, in the city with an incident and in the one without.
        _ = try Self.ctl(daemon, ["observe", "melitopol-rally", "--response", "detentions", "--by", "Russian armed forces", "--detained", "3"])
        _ = try Self.ctl(daemon, ["report", "--city", "Berdyansk", "--kind", "strike", "--occurred", "2022-03-06"])
        #expect(try Self.city(daemon, "Melitopol")["population"]?.intValue == 111)
        #expect(try Self.city(daemon, "Berdiansk")["population"]?.intValue == 222)
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after new events")
        #expect(daemon.stop() == 0)

        // And once rebuilt, not again.
        try daemon.start()
        #expect(Self.rebuilds(daemon) == 0, "\(daemon.log)")
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after another restart")
        #expect(daemon.stop() == 0)
    }

    @Test("a daemon whose compiled-in gazetteer differs from the one the projections were built with rebuilds them, and again when it is changed back")
    func embeddedGazetteerChanges() throws {
        let setup = try Setup()
        try setup.edit("name = \"Kupiansk\"", "name = \"Kupiansk (Kharkiv oblast)\"")
        try setup.edit("population = 26262", "population = 27000")
        // The projections built with an edited copy, as by a version of incidentd whose gazetteer differed.
        let daemon = try setup.daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        #expect(try Self.city(daemon, "Kupiansk")["name"]?.stringValue == "Kupiansk (Kharkiv oblast)")
        #expect(daemon.stop() == 0)

        // This version's own.
        daemon.extraArguments = []
        try daemon.start()
        #expect(daemon.log.contains(Self.changedLine), "\(daemon.log)")
        #expect(Self.rebuilds(daemon) == 1, "\(daemon.log)")
        #expect(try Self.city(daemon, "Kupiansk")["name"]?.stringValue == "Kupiansk")
        try Self.expectCitiesAreReplay(daemon, gazetteer: nil, "on the compiled-in gazetteer")
        #expect(daemon.stop() == 0)

        daemon.extraArguments = ["--config", setup.config]
        try daemon.start()
        #expect(Self.rebuilds(daemon) == 1, "\(daemon.log)")
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "back on the edited file")
        #expect(daemon.stop() == 0)

        // An operator who still asks for a rebuild after a change gets one, not two.
        try setup.edit("population = 27000", "population = 28000")
        daemon.extraArguments = ["--config", setup.config, "--rebuild-projections"]
        try daemon.start()
        #expect(Self.rebuilds(daemon) == 1, "\(daemon.log)")
        #expect(daemon.log.contains("rebuilding the projections as asked"), "\(daemon.log)")
        #expect(try Self.city(daemon, "Kupiansk")["population"]?.intValue == 28000)
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "rebuilt as asked")
        #expect(daemon.stop() == 0)
    }

    @Test("a spelling added to the gazetteer costs no rebuild and is understood at once; a city added under the id of one a report added with allowNewCity rebuilds, and the city takes the gazetteer's name, region and population")
    func addedAliasAndCity() throws {
        let setup = try Setup()
        let daemon = try setup.daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(city: "Enerhodar", kind: "blockade", occurredAt: "2022-03-02")], allowNewCity: true).isOK)
        #expect(try client.appendEvents([Wire.report(city: "Melitopol", occurredAt: "2022-03-05")]).isOK)
        #expect(try Self.city(daemon, "Enerhodar")["region"] == .null)
        #expect(daemon.stop() == 0)

        try setup.edit("\"Мелитополь\",                          # Russian", "\"Мелитополь\", \"Melitopolis\",")
        try daemon.start()
        #expect(Self.rebuilds(daemon) == 0, "a spelling changes no projection: \(daemon.log)")
        #expect(try Self.city(daemon, "Melitopolis")["cityId"]?.stringValue == "melitopol")
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after a spelling was added")
        #expect(daemon.stop() == 0)

        let text = try String(contentsOfFile: setup.gazetteer, encoding: .utf8)
        try (text + """

            [[city]]
            id = "enerhodar"
            name = "Enerhodar"
            aliases = ["Energodar", "Енергодар", "Энергодар"]
            region = "UA-23"
            population = 52887

            """).write(toFile: setup.gazetteer, atomically: true, encoding: .utf8)
        try daemon.start()
        #expect(daemon.log.contains(Self.changedLine), "\(daemon.log)")
        let enerhodar = try Self.city(daemon, "Энергодар")
        #expect(enerhodar["cityId"]?.stringValue == "enerhodar")
        #expect(enerhodar["region"]?.stringValue == "UA-23", "\(enerhodar)")
        #expect(enerhodar["population"]?.intValue == 52887, "\(enerhodar)")
        #expect(enerhodar["aliasesSeen"] == ["Enerhodar"], "what was reported stays as it was")
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after a city was added")
        // The report keeps the cityId it was stored with.
        let events = try daemon.client().call("read", ["from": 1, "limit": 10])
        #expect(events["events"]?.arrayValue?.first?["data"]?["cityId"]?.stringValue == "enerhodar")
        #expect(daemon.stop() == 0)
    }

    @Test("a city added with allowNewCity whose spelling a gazetteer added since gives to a city of its own: its exact id still names it (city, read, a report), the spelling names the gazetteer's city, and the daemon warns at start naming both ids")
    func newCityShadowedByTheGazetteer() throws {
        let setup = try Setup()
        let daemon = try setup.daemon()
        for day in 1...5 {
            _ = try Self.ctl(
                daemon, ["report", "--allow-new-city", "--city", "Testtown", "--kind", "demonstration", "--occurred", "2022-03-0\(day)"])
        }
        #expect(try Self.city(daemon, "Testtown")["cityId"]?.stringValue == "testtown")
        _ = try Self.ctl(daemon, ["report", "--allow-new-city", "--city", "New Burg", "--kind", "strike", "--occurred", "2022-03-01"])
        #expect(try Self.city(daemon, "New Burg")["cityId"]?.stringValue == "new-burg")
        #expect(!daemon.log.contains("testtown"), "\(daemon.log)")
        #expect(daemon.stop() == 0)

        let text = try String(contentsOfFile: setup.gazetteer, encoding: .utf8)
        try (text + """

            [[city]]
            id = "testtown-official"
            name = "Testtown"
            aliases = ["Testtown", "Test Town"]

            [[city]]
            id = "newburg-official"
            name = "Newburg"
            aliases = ["new-burg"]

            """).write(toFile: setup.gazetteer, atomically: true, encoding: .utf8)
        try daemon.start()
        // A spelling that is the log's city's own id: that exact id still names it, and the warning says so.
        let idWarning = daemon.log.split(separator: "\n").filter { $0.contains(" warning ") && $0.contains("new-burg") }
        #expect(
            idWarning.count == 1 && idWarning.first?.contains("exactly \"new-burg\" names new-burg, any other way of writing it (another case, say) names newburg-official") == true,
            "\(daemon.log)")
        #expect(try Self.city(daemon, "new-burg")["cityId"]?.stringValue == "new-burg")
        #expect(try Self.city(daemon, "NEW-BURG")["cityId"]?.stringValue == "newburg-official")
        let warning = daemon.log.split(separator: "\n").filter { $0.contains(" warning ") && $0.contains("testtown") }
        #expect(warning.count == 1, "\(daemon.log)")
        #expect(
            warning.first?.contains("the gazetteer's city testtown-official now takes the spelling \"Testtown\" of the city testtown,") == true,
            "\(daemon.log)")
        #expect(warning.first?.contains("cityId=testtown gazetteerCityId=testtown-official") == true, "\(daemon.log)")

        // The exact id: the old city, with its five incidents.
        let old = try Self.city(daemon, "testtown")
        #expect(old["cityId"]?.stringValue == "testtown", "\(old)")
        #expect(old["incidents"]?["total"]?.intValue == 5, "\(old)")
        let client = try daemon.client()
        let read = try client.call("read", ["city": "testtown", "limit": 100])
        #expect(read["events"]?.arrayValue?.count == 5, "\(read)")
        let listed = try daemon.ctl(["events", "--city", "testtown", "--format", "json"])
        #expect(listed.status == 0 && listed.stdout.components(separatedBy: "\"cityId\":\"testtown\"").count == 6, "\(listed.stdout)\(listed.stderr)")
        // Any spelling: the gazetteer's city.
        for spelling in ["Testtown", "Test Town", "TESTTOWN", "testtown-official"] {
            #expect(try Self.city(daemon, spelling)["cityId"]?.stringValue == "testtown-official", "\(spelling)")
        }
        #expect(try client.call("read", ["city": "Testtown", "limit": 100])["events"]?.arrayValue?.count == 0)

        // A report names its city as a query does.
        #expect(try client.appendEvents([Wire.report(city: "testtown", occurredAt: "2022-03-06")])["incidents"] == ["testtown-2022-03-06-demonstration"])
        #expect(try client.appendEvents([Wire.report(city: "Test Town", occurredAt: "2022-03-06")])["incidents"] == ["testtown-official-2022-03-06-demonstration"])
        #expect(try Self.city(daemon, "testtown")["incidents"]?["total"]?.intValue == 6)
        #expect(try Self.city(daemon, "Testtown")["incidents"]?["total"]?.intValue == 1)
        try Self.expectCitiesAreReplay(daemon, gazetteer: setup.gazetteer, "after the gazetteer took the spelling")
        #expect(daemon.stop() == 0)
    }

    @Test("events --follow --city stays on the city its spelling named when it started, by that city's id, after a restart on a gazetteer that gives the spelling to another city: the events reported under the exact id are shown, those of the gazetteer's city not")
    func followKeepsItsCityAcrossAGazetteerThatTakesTheSpelling() throws {
        let setup = try Setup()
        let daemon = try setup.daemon()
        func report(_ city: String, day: Int) throws {
            let arguments = ["report", "--allow-new-city", "--city", city, "--kind", "strike", "--occurred", "2022-03-0\(day)", "--format", "json"]
            #expect(try Self.ctl(daemon, arguments).contains("\"position\":\(day)"), "\(arguments)")
        }
        try report("Testtown", day: 1)
        // Three events, then it ends by itself: with the city kept, 1, 3 and 5; with the spelling sent again, 1, 2, 4.
        let follower = try BackgroundFollower(
            socket: daemon.socketPath, directory: daemon.root, arguments: ["--city", "Testtown", "--limit", "3"])
        try waitFor("the follower to print position 1") { follower.positions == [1] }
        #expect(daemon.stop() == 0)

        let text = try String(contentsOfFile: setup.gazetteer, encoding: .utf8)
        try (text + """

            [[city]]
            id = "testtown-official"
            name = "Testtown"
            aliases = ["Testtown", "Test Town"]

            """).write(toFile: setup.gazetteer, atomically: true, encoding: .utf8)
        try daemon.start()
        try report("Testtown", day: 2)
        try report("testtown", day: 3)
        try report("Test Town", day: 4)
        try report("testtown", day: 5)
        let cities = try daemon.client().allEvents().map { $0["data"]?["cityId"]?.stringValue ?? "" }
        #expect(cities == ["testtown", "testtown-official", "testtown", "testtown-official", "testtown"], "\(cities)")

        let status = try follower.exitStatus(within: 30 * deadlineScale)
        #expect(status == 0, "\(follower.stderr)")
        #expect(follower.positions == [1, 3, 5], "\(follower.output)")
        #expect(follower.output.components(separatedBy: "\"cityId\":\"testtown\"").count == 4, "\(follower.output)")
        #expect(follower.stderr.contains("following again from position 2"), "\(follower.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("a new city whose id would be a spelling the gazetteer gives another city is refused naming that city, and nothing is stored")
    func newCityIdTakingAGazetteerSpelling() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents([Wire.report(city: "Kupyansk.")], allowNewCity: true)
        #expect(answer.errorCode == "invalid_event", "\(answer)")
        #expect(
            answer["error"]?["message"]?.stringValue?.contains("\"Kupyansk.\" would make the new city kupyansk, which is how the gazetteer spells Kupiansk (kupiansk)") == true,
            "\(answer)")
        #expect(try client.headPosition() == 0)
        // A name of its own is still a new city; the gazetteer's spelling still its city.
        #expect(try client.appendEvents([Wire.report(city: "Kupyansk Outskirts")], allowNewCity: true)["incidents"] == ["kupyansk-outskirts-2022-03-01-demonstration"])
        #expect(try client.appendEvents([Wire.report(city: "kupyansk", occurredAt: "2022-03-02")])["incidents"] == ["kupiansk-2022-03-02-demonstration"])
    }

    @Test("what the log records of its gazetteer changes with every change of the gazetteer that changes a replay, and not with a spelling, coordinates or a GeoNames id")
    func recordedInputCoversTheFold() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        #expect(try client.appendEvents([Wire.report(city: "Enerhodar", kind: "blockade", occurredAt: "2022-03-02")], allowNewCity: true).isOK)
        #expect(daemon.stop() == 0)
        let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)

        func changed(_ change: (inout [City]) -> Void) throws -> Gazetteer {
            var cities = Gazetteer.embedded.cities
            change(&cities)
            return try Gazetteer(cities: cities)
        }
        func replaced(_ id: String, _ edit: (City) -> City) throws -> Gazetteer {
            try changed { cities in cities = cities.map { $0.id == id ? edit($0) : $0 } }
        }
        func city(_ c: City, name: String? = nil, aliases: [String]? = nil, region: String?? = nil, population: Int?? = nil,
                  latitude: Double?? = nil, longitude: Double?? = nil, geonamesId: Int?? = nil) -> City {
            City(
                id: c.id, name: name ?? c.name, aliases: aliases ?? c.aliases, region: region ?? c.region,
                population: population ?? c.population, latitude: latitude ?? c.latitude, longitude: longitude ?? c.longitude,
                geonamesId: geonamesId ?? c.geonamesId)
        }
        let changes: [(String, Gazetteer, changesReplay: Bool, changesInput: Bool)] = [
            ("a population", try replaced("melitopol") { city($0, population: 111) }, true, true),
            ("a population removed", try replaced("melitopol") { city($0, population: .some(nil)) }, true, true),
            ("a region", try replaced("melitopol") { city($0, region: "UA-99") }, true, true),
            ("a name", try replaced("melitopol") { city($0, name: "Melitopol'") }, true, true),
            ("a spelling", try replaced("melitopol") { city($0, aliases: $0.aliases + ["Melitopolis"]) }, false, false),
            ("coordinates", try replaced("melitopol") { city($0, latitude: 46.85, longitude: 35.37) }, false, false),
            ("a GeoNames id", try replaced("melitopol") { city($0, geonamesId: .some(nil)) }, false, false),
            ("a city a report added", try changed { $0.append(City(id: "enerhodar", name: "Enerhodar", region: "UA-23")) }, true, true),
            ("a city without incidents", try changed { $0.append(City(id: "tokmak", name: "Tokmak", population: 29_000)) }, false, true),
            ("a city removed", try changed { $0.removeAll { $0.id == "berdiansk" } }, true, true),
        ]
        let replayed = JSONValue.array(try log.replay().map(\.json)).canonicalBytes()
        let input = Projector(gazetteer: .embedded).gazetteerInput
        for (what, gazetteer, changesReplay, changesInput) in changes {
            let other = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: gazetteer)
            let replayDiffers = JSONValue.array(try other.replay().map(\.json)).canonicalBytes() != replayed
            let inputDiffers = Projector(gazetteer: gazetteer).gazetteerInput != input
            #expect(replayDiffers == changesReplay, "\(what): the replay \(replayDiffers ? "changed" : "stayed")")
            #expect(inputDiffers == changesInput, "\(what): the recorded input \(inputDiffers ? "changed" : "stayed")")
            #expect(!replayDiffers || inputDiffers, "\(what) changes a replay but not what the log records of its gazetteer")
        }
    }

    @Test("a log whose projections were built before the log recorded their gazetteer is rebuilt once, to the same bytes, and then not again")
    func logWithoutDigest() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        let cities = try Self.ctl(daemon, ["cities", "--format", "json"])
        #expect(daemon.stop() == 0)
        // As an incidentd before the gazetteer was recorded left it.
        do {
            var options = EnvironmentOptions()
            options.maxDatabases = 8
            let environment = try Environment(directory: daemon.dataDir, options: options)
            let meta = try environment.openDatabase("meta", create: false)
            try environment.write { txn in _ = try txn.delete(meta, key: Array("gazetteer".utf8)) }
        }

        try daemon.start()
        #expect(daemon.log.contains("the log does not record which gazetteer its projections were built with"), "\(daemon.log)")
        #expect(Self.rebuilds(daemon) == 1, "\(daemon.log)")
        #expect(try Self.ctl(daemon, ["cities", "--format", "json"]) == cities)
        #expect(daemon.stop() == 0)

        try daemon.start()
        #expect(Self.rebuilds(daemon) == 0, "\(daemon.log)")
        #expect(!daemon.log.contains("rebuilding"), "\(daemon.log)")
        #expect(try Self.ctl(daemon, ["cities", "--format", "json"]) == cities)
        #expect(daemon.stop() == 0)
    }
}
