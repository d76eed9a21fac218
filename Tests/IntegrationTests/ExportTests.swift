import Foundation
import Gazetteer
import StrictJSON
import Testing

/// `incidentctl export` (SPEC §4): JSON lines that `append` takes back unchanged, ACLED's columns as CSV, GeoJSON.
@Suite("Export")
struct ExportTests {
    /// The article, and beside it what the article lacks: a report in a city the gazetteer does not know, one with
    /// its own coordinates and no id (the daemon makes it), live fire with a death, a correction, a retraction.
    static func storyLog() throws -> Daemon {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let extra: [JSONValue] = [
            Wire.report(incident: "enerhodar-2022-04-02-rally", city: "Enerhodar", occurredAt: "2022-04-02", participants: (300, 500), eventId: Wire.uuid()),
            Wire.setting(
                Wire.report(city: "Melitopol", kind: "strike", occurredAt: "2022-03", eventId: Wire.uuid(),
                    extraData: ["coordinates": ["lat": 46.8421, "lon": 35.3655], "location": "the bread factory, \"Khlib\""]),
                "precision", "month"),
            Wire.response(incident: "enerhodar-2022-04-02-rally", responses: ["live-fire", "detentions"], detained: 4, eventId: Wire.uuid()),
            Wire.setting(Wire.response(incident: "enerhodar-2022-04-02-rally", responses: ["beatings"], eventId: Wire.uuid()), "data.killed", 1),
            Wire.setting(
                Wire.outcome(incident: "enerhodar-2022-04-02-rally", status: "suppressed", eventId: Wire.uuid()),
                "data.corrections", ["participants": ["low": 400, "high": 600]]),
            Wire.outcome(incident: "berdiansk-2022-02-28-molotov-tank", status: "retracted", eventId: Wire.uuid()),
        ]
        let answer = try client.appendEvents(extra, allowNewCity: true)
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        return daemon
    }

    @Test("export --format jsonl gives every event as append takes it: appended to an empty log, the same events at the same positions and the same cities; appended to its own log, nothing new")
    func jsonLinesRoundTrip() throws {
        let daemon = try Self.storyLog()
        let exported = try daemon.ctl(["export"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let lines = exported.stdout.split(separator: "\n")
        let original = try daemon.client().allEvents()
        #expect(lines.count == original.count && original.count == 14)
        #expect(exported.stderr.contains("exported positions 1–14, head \(Printer.hash(original.last))"), "\(exported.stderr)")
        for line in lines {
            let event = try JSONReader().read(String(line))
            for key in ["position", "version", "recordedAt", "recordedBy", "schema", "prevHash", "hash"] {
                #expect(event[key] == nil, "\(key) in \(line)")
            }
            #expect(event["eventId"]?.stringValue != nil)
        }
        // Each report with the city it is stored in, which append stores as given.
        for (line, stored) in zip(lines, original) {
            let event = try JSONReader().read(String(line))
            #expect(event["data"]?["cityId"] == stored["data"]?["cityId"], "\(line)")
        }

        // Into an empty log: the same events, the same positions, the same cities.
        let other = try Daemon()
        let appended = try other.ctl(["append", "--allow-new-city", "-"], stdin: exported.stdout)
        #expect(appended.status == 0, "\(appended.stderr)")
        let copied = try other.client().allEvents()
        let envelope: Set<String> = ["recordedAt", "recordedBy", "prevHash", "hash"]
        func content(_ event: JSONValue) -> JSONValue {
            guard case .object(let members) = event else { return event }
            return .object(members.filter { !envelope.contains($0.key) })
        }
        #expect(copied.map(content) == original.map(content))
        #expect(try other.ctl(["cities", "--format", "json"]).stdout == (try daemon.ctl(["cities", "--format", "json"])).stdout)

        // Into its own log: every event is already there, with the same content.
        let again = try daemon.ctl(["append", "--allow-new-city", "-"], stdin: exported.stdout)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.json?["new"] == 0 && again.json?["alreadyStored"] == 14, "\(again.stdout)")
        #expect(try daemon.client().headPosition() == 14)
        #expect(other.stop() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("export --format csv has ACLED's columns, a row per incident in report order: the event and sub-event types, actors, place and fatalities; a retracted incident only with --include-retracted")
    func acledColumns() throws {
        let daemon = try Self.storyLog()
        let withoutRetracted = try daemon.ctl(["export", "--format", "csv"])
        #expect(withoutRetracted.status == 0 && withoutRetracted.stderr.contains("1 retracted incident left out (--include-retracted keeps them)"), "\(withoutRetracted.stderr)")
        let kept = try CSV.parse(withoutRetracted.stdout).dropFirst().compactMap(\.first)
        #expect(kept.count == 5 && !kept.contains("berdiansk-2022-02-28-molotov-tank"), "\(kept)")
        let exported = try daemon.ctl(["export", "--format", "csv", "--include-retracted"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let rows = try CSV.parse(exported.stdout)
        let header = try #require(rows.first)
        #expect(header == [
            "event_id_cnty", "event_date", "time_precision", "event_type", "sub_event_type", "actor1", "actor2", "location",
            "latitude", "longitude", "geo_precision", "source", "notes", "fatalities", "timestamp",
        ])
        let records = rows.dropFirst().map { Dictionary(uniqueKeysWithValues: zip(header, $0)) }
        #expect(records.count == 6)
        #expect(records.allSatisfy { $0.count == header.count })
        let incidents = records.compactMap { $0["event_id_cnty"] }
        #expect(incidents.first == "kupiansk-2022-03-01-city-hall")
        #expect(incidents.contains("enerhodar-2022-04-02-rally"))
        let byId = Dictionary(uniqueKeysWithValues: records.map { ($0["event_id_cnty"] ?? "", $0) })
        let kupiansk = Gazetteer.embedded.city(id: "kupiansk")

        let cityHall = try #require(byId["kupiansk-2022-03-01-city-hall"])
        #expect(cityHall["event_date"] == "2022-03-01" && cityHall["time_precision"] == "1")
        #expect(cityHall["event_type"] == "Protests" && cityHall["sub_event_type"] == "Protest with intervention")
        #expect(cityHall["actor1"] == "Protesters (Ukraine)" && cityHall["actor2"] == "Russian armed forces")
        // Placed at its town's coordinates: ACLED's geo_precision 1 ("a particular town, and coordinates are available for that town").
        #expect(cityHall["location"] == "Kupiansk" && cityHall["geo_precision"] == "1")
        #expect(cityHall["latitude"].flatMap(Double.init) == kupiansk?.latitude)
        #expect(cityHall["longitude"].flatMap(Double.init) == kupiansk?.longitude)
        #expect(cityHall["source"] == "Les Révélateurs de France Télévisions")
        #expect(cityHall["notes"]?.contains("Response by Russian armed forces: warning-shots, tear-gas, crowd-dispersal.") == true)
        #expect(cityHall["fatalities"] == "0" && Int(cityHall["timestamp"] ?? "").map { $0 > 1_700_000_000 } == true)

        #expect(byId["berdiansk-2022-02-28-city-council"]?["sub_event_type"] == "Peaceful protest")
        #expect(byId["berdiansk-2022-02-28-city-council"]?["time_precision"] == "2")
        #expect(byId["berdiansk-2022-02-28-molotov-tank"]?["event_type"] == "Strategic developments")
        let rally = try #require(byId["enerhodar-2022-04-02-rally"])
        #expect(rally["sub_event_type"] == "Excessive force against protesters" && rally["fatalities"] == "1")
        #expect(rally["location"] == "Enerhodar" && rally["latitude"] == "" && rally["geo_precision"] == "")
        #expect(rally["actor1"] == "Protesters", "no country is known for a city the gazetteer does not hold")
        let strike = try #require(records.first { $0["location"] == "Melitopol" && $0["event_id_cnty"] != "melitopol-2022-03-01-convoy-blockade" })
        #expect(strike["time_precision"] == "3" && strike["geo_precision"] == "1" && strike["latitude"] == "46.84210")
        #expect(strike["event_date"] == "2022-03-01", "ACLED's event_date is a whole date: a month's first day, with time_precision 3")
        #expect(strike["notes"]?.contains("the bread factory, \"Khlib\"") == true, "quotes and commas survive the quoting")
        #expect(daemon.stop() == 0)
    }

    @Test("export --format geojson is a FeatureCollection with a point per incident at its own or its city's coordinates, and none where neither is known; a retracted incident only with --include-retracted")
    func geoJSON() throws {
        let daemon = try Self.storyLog()
        let withoutRetracted = try JSONReader().read(try daemon.ctl(["export", "--format", "geojson"]).stdout)
        let kept = withoutRetracted["features"]?.arrayValue?.compactMap { $0["properties"]?["incident"]?.stringValue } ?? []
        #expect(kept.count == 5 && !kept.contains("berdiansk-2022-02-28-molotov-tank"), "\(kept)")
        #expect(try daemon.ctl(["export", "--include-retracted"]).status == 2, "the JSON lines hold every event")
        let exported = try daemon.ctl(["export", "--format", "geojson", "--include-retracted"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let collection = try JSONReader().read(exported.stdout)
        #expect(collection["type"] == "FeatureCollection")
        let features = collection["features"]?.arrayValue ?? []
        #expect(features.count == 6)
        #expect(features.allSatisfy { $0["type"] == "Feature" })
        let byId = Dictionary(uniqueKeysWithValues: features.map { ($0["properties"]?["incident"]?.stringValue ?? "", $0) })
        let melitopol = try #require(Gazetteer.embedded.city(id: "melitopol"))
        let blockade = byId["melitopol-2022-03-01-convoy-blockade"]
        #expect(blockade?["geometry"]?["type"] == "Point")
        #expect(blockade?["geometry"]?["coordinates"]?.arrayValue?.compactMap(\.doubleValue) == [melitopol.longitude, melitopol.latitude].compactMap { $0 })
        #expect(blockade?["properties"]?["geoPrecision"]?.intValue == 1)
        #expect(blockade?["properties"]?["coordinatesFrom"] == "city")
        #expect(blockade?["properties"]?["acledSubEventType"] == "Protest with intervention")
        let strike = features.first { $0["properties"]?["kind"] == "strike" }
        #expect(strike?["geometry"]?["coordinates"]?.arrayValue?.compactMap(\.doubleValue) == [35.3655, 46.8421])
        #expect(strike?["properties"]?["geoPrecision"]?.intValue == 1)
        #expect(strike?["properties"]?["coordinatesFrom"] == "report")
        let rally = byId["enerhodar-2022-04-02-rally"]
        #expect(rally?["geometry"] == .null)
        #expect(rally?["properties"]?["participants"] == ["high": 600, "low": 400], "the report as corrected")
        #expect(rally?["properties"]?["status"] == "suppressed")
        #expect(byId["berdiansk-2022-02-28-molotov-tank"]?["properties"]?["status"] == "retracted")
        #expect(daemon.stop() == 0)
    }

    @Test("export --format csv writes a latitude or longitude of -0.0, or a negative one that rounds to zero, as 0.00000, without a sign; other negative ones keep theirs")
    func negativeZeroCoordinates() throws {
        let daemon = try Daemon()
        for (incident, lat, lon) in [("zero-1", "-0.0", "-0.000001"), ("zero-2", "0.0", "-0.0"), ("zero-3", "-0.000004", "-0.12")] {
            let report = try daemon.ctl([
                "report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-05", "--incident", incident,
                "--lat", lat, "--lon", lon,
            ])
            #expect(report.status == 0, "\(incident): \(report.stderr)")
        }
        let stored = try #require(try daemon.ctl(["incident", "--format", "json", "zero-1"]).json)
        #expect(stored["current"]?["coordinates"]?["lat"]?.doubleValue?.sign == .minus, "the daemon keeps -0.0: \(stored)")
        let exported = try daemon.ctl(["export", "--format", "csv"])
        #expect(exported.status == 0, "\(exported.stderr)")
        let rows = try CSV.parse(exported.stdout)
        let header = try #require(rows.first)
        let byId = Dictionary(uniqueKeysWithValues: rows.dropFirst().map { row in
            let record = Dictionary(uniqueKeysWithValues: zip(header, row))
            return (record["event_id_cnty"] ?? "", record)
        })
        #expect(byId["zero-1"]?["latitude"] == "0.00000" && byId["zero-1"]?["longitude"] == "0.00000", "\(exported.stdout)")
        #expect(byId["zero-2"]?["latitude"] == "0.00000" && byId["zero-2"]?["longitude"] == "0.00000", "\(exported.stdout)")
        #expect(byId["zero-3"]?["latitude"] == "0.00000" && byId["zero-3"]?["longitude"] == "-0.12000", "\(exported.stdout)")
        #expect(!exported.stdout.contains("-0.00000"), "\(exported.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("export --format csv puts a ' before a text cell a spreadsheet would run as a formula, never before a number; --csv-raw-text writes them as they are; each part of the notes ends as a sentence, with one full stop")
    func formulasInCSV() throws {
        let daemon = try Daemon()
        let hyperlink = #"=HYPERLINK("http://evil.example","click")"#
        let reports: [[String]] = [
            ["--incident", "formula-1", "--source", hyperlink, "--description", "=1+2", "--lat", "-33.7", "--lon", "-0.12"],
            ["--incident", "formula-2", "--source", "+SUM(A1:A9)", "--source", "Kyiv Independent", "--description=-2+3"],
            ["--incident", "formula-3", "--source", "@cmd", "--description", "looks plain", "--location", "=far"],
            // The daemon trims a tab and refuses a carriage return at the start of a text, so no cell begins with one.
            ["--incident", "formula-4", "--source", "Suspilne", "--description", "a plain note"],
            ["--incident", "sentences", "--source", "Suspilne", "--description", "Who fired first?", "--location", "by the bridge."],
        ]
        for arguments in reports {
            let report = try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-05"] + arguments)
            #expect(report.status == 0, "\(arguments): \(report.stderr)")
        }
        let observe = try daemon.ctl(["observe", "formula-1", "--by=-Rosgvardia", "--response", "detentions", "--killed", "0"])
        #expect(observe.status == 0, "\(observe.stderr)")

        func rows(_ arguments: [String]) throws -> [String: [String: String]] {
            let exported = try daemon.ctl(["export", "--format", "csv"] + arguments)
            #expect(exported.status == 0, "\(exported.stderr)")
            let rows = try CSV.parse(exported.stdout)
            let header = try #require(rows.first)
            return Dictionary(uniqueKeysWithValues: rows.dropFirst().map { row in
                let record = Dictionary(uniqueKeysWithValues: zip(header, row))
                return (record["event_id_cnty"] ?? "", record)
            })
        }
        let guarded = try rows([])
        #expect(guarded["formula-1"]?["source"] == "'" + hyperlink)
        #expect(guarded["formula-1"]?["notes"]?.hasPrefix("'=1+2. Response by -Rosgvardia: detentions. Outcome: ") == true, "\(guarded)")
        #expect(guarded["formula-1"]?["actor2"] == "'-Rosgvardia")
        #expect(guarded["formula-1"]?["latitude"] == "-33.70000" && guarded["formula-1"]?["longitude"] == "-0.12000", "numbers as they are")
        #expect(guarded["formula-2"]?["source"] == "'+SUM(A1:A9); Kyiv Independent")
        #expect(guarded["formula-2"]?["notes"]?.hasPrefix("'-2+3") == true)
        #expect(guarded["formula-3"]?["source"] == "'@cmd")
        #expect(guarded["formula-3"]?["notes"]?.hasPrefix("Location: =far.") == true, "only the first character counts")
        #expect(guarded["formula-3"]?["notes"]?.hasPrefix("Location: =far. looks plain. Outcome: ") == true, "\(guarded)")
        #expect(guarded["sentences"]?["notes"]?.hasPrefix("Location: by the bridge. Who fired first? Outcome: ") == true, "\(guarded)")
        #expect(guarded["formula-4"]?["source"] == "Suspilne")
        #expect(guarded["formula-4"]?["notes"]?.hasPrefix("a plain note") == true)
        #expect(guarded["formula-1"]?["location"] == "Kupiansk")

        let raw = try rows(["--csv-raw-text"])
        #expect(raw["formula-1"]?["source"] == hyperlink)
        #expect(raw["formula-1"]?["notes"]?.hasPrefix("=1+2") == true)
        #expect(raw["formula-1"]?["actor2"] == "-Rosgvardia")
        #expect(raw["formula-2"]?["source"] == "+SUM(A1:A9); Kyiv Independent")
        #expect(raw["formula-3"]?["source"] == "@cmd")

        for format in ["jsonl", "geojson"] {
            let usage = try daemon.ctl(["export", "--format", format, "--csv-raw-text"])
            #expect(usage.status == 2 && usage.stderr.contains("--csv-raw-text goes with --format csv"), "\(usage.stderr)")
        }
        let help = try daemon.ctl(["export", "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains("A text cell of the CSV that begins with =, +, -, @, a tab or a carriage return"), "\(help)")
        #expect(help.contains("--csv-raw-text writes text cells unchanged"))
        #expect(daemon.stop() == 0)
    }

    @Test("an incident asked for untilPosition is as it stood then, as a log of those events alone projects it; one reported later is unknown then")
    func incidentUntilPosition() throws {
        let daemon = try Self.storyLog()
        let client = try daemon.client()
        let events = try client.allEvents()
        let rally = "enerhodar-2022-04-02-rally"
        let rallyPositions = events.filter { $0["incident"]?.stringValue == rally }.compactMap { $0["position"]?.intValue }
        #expect(rallyPositions.count == 4, "a report, two responses, an outcome with a correction")
        let beforeOutcome = rallyPositions[2]
        let now = try client.call("incident", ["incident": .string(rally)])["incident"]
        let atHead = try client.call("incident", ["incident": .string(rally), "untilPosition": .int(Int64(events.count))])["incident"]
        #expect(atHead == now, "at the head, the incident as it stands")
        let then = try client.call("incident", ["incident": .string(rally), "untilPosition": .int(beforeOutcome)])["incident"]
        #expect(then?["lastPosition"]?.intValue == beforeOutcome && then?["version"]?.intValue == 3, "\(String(describing: then))")
        #expect(then?["outcomeHistory"] == .array([]) && then?["latestOutcome"] == .null)
        #expect(now?["current"]?["participants"]?["low"]?.intValue == 400)
        #expect(then?["current"]?["participants"]?["low"]?.intValue == 300, "the correction came after")

        // What a log of the events up to there alone says of the incident.
        let exported = try daemon.ctl(["export"])
        let upTo = exported.stdout.split(separator: "\n").prefix(Int(beforeOutcome)).joined(separator: "\n") + "\n"
        let other = try Daemon()
        #expect(try other.ctl(["append", "--allow-new-city", "-"], stdin: upTo).status == 0)
        let alone = try other.client().call("incident", ["incident": .string(rally)])["incident"]
        for key in ["report", "current", "status", "verification", "version", "firstPosition", "lastPosition", "responses", "casualties", "cityId"] {
            #expect(then?[key] == alone?[key], "\(key): \(String(describing: then?[key])) against \(String(describing: alone?[key]))")
        }

        let later = try client.call("incident", ["incident": .string(rally), "untilPosition": .int(rallyPositions[0] - 1)])
        #expect(later["error"]?["code"]?.stringValue == "unknown_incident", "\(later)")
        #expect(later["error"]?["message"]?.stringValue?.contains("was reported after position \(rallyPositions[0] - 1)") == true, "\(later)")
        let bad = try client.call("incident", ["incident": .string(rally), "untilPosition": .int(-1)])
        #expect(bad["error"]?["code"]?.stringValue == "invalid_request", "\(bad)")
        let past = try daemon.ctl(["incident", rally, "--until-position", "1000", "--format", "json"])
        #expect(past.status == 0 && past.stderr.contains("the log holds \(events.count) events; position 1000 is past its head"), "\(past)")
        let within = try daemon.ctl(["incident", rally, "--until-position", "\(beforeOutcome)", "--format", "json"])
        #expect(within.status == 0 && within.stderr.isEmpty, "\(within)")
    }

    @Test("export of an empty log: no events, the CSV header alone, an empty FeatureCollection")
    func emptyLog() throws {
        let daemon = try Daemon()
        let jsonl = try daemon.ctl(["export"])
        #expect(jsonl.status == 0 && jsonl.stdout.isEmpty, "\(jsonl.stdout) \(jsonl.stderr)")
        #expect(jsonl.stderr.contains("the log is empty"), "\(jsonl.stderr)")
        let csv = try daemon.ctl(["export", "--format", "csv"])
        #expect(try CSV.parse(csv.stdout).count == 1)
        let geojson = try daemon.ctl(["export", "--format", "geojson"])
        #expect(try JSONReader().read(geojson.stdout) == ["type": "FeatureCollection", "features": []])
        #expect(daemon.stop() == 0)
    }

    @Test("export --format csv or geojson warns on stderr when the daemon runs on another gazetteer than the export's, whose cities then have no coordinates; with --gazetteer the daemon's file, no warning and the coordinates are there")
    func otherGazetteerIsNamed() throws {
        let root = makeTemporaryDirectory("incidentd-export-gazetteer")
        let gazetteer = root + "/g.toml"
        let config = root + "/incidentd.toml"
        let city = """

            [[city]]
            id = "testograd"
            name = "Testograd"
            aliases = ["Testograd"]
            region = "UA-23"
            population = 12345
            lat = 47.1
            lon = 35.2

            """
        try (Gazetteer.embeddedTOML + city).write(toFile: gazetteer, atomically: true, encoding: .utf8)
        try "[gazetteer]\nfile = \"\(gazetteer)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try Daemon(arguments: ["--config", config], root: root)
        #expect(try daemon.ctl(["append", Repository.articlePath]).status == 0)
        let report = try daemon.ctl(["report", "--city", "Testograd", "--kind", "demonstration", "--occurred", "2022-03-05", "--incident", "testograd-1"])
        #expect(report.status == 0, "\(report.stderr)")
        let warning = "incidentd runs on another gazetteer than this export's (the compiled-in one): 1 of its cities with incidents (testograd) is not as this one has them"

        for format in ["csv", "geojson"] {
            let exported = try daemon.ctl(["export", "--format", format])
            #expect(exported.status == 0, "\(exported.stderr)")
            #expect(exported.stderr.contains(warning), "\(format): \(exported.stderr)")
            #expect(exported.stderr.contains("give --gazetteer the file the daemon runs on"), "\(exported.stderr)")
        }
        let csv = try CSV.parse(try daemon.ctl(["export", "--format", "csv"]).stdout)
        let header = try #require(csv.first)
        let row = try #require(csv.first { $0.first == "testograd-1" }.map { Dictionary(uniqueKeysWithValues: zip(header, $0)) })
        #expect(row["latitude"] == "" && row["geo_precision"] == "", "the compiled-in gazetteer has no Testograd: \(row)")

        let matching = try daemon.ctl(["export", "--format", "csv", "--gazetteer", gazetteer])
        #expect(matching.status == 0, "\(matching.stderr)")
        #expect(!matching.stderr.contains("another gazetteer"), "\(matching.stderr)")
        let placed = try CSV.parse(matching.stdout)
        let placedRow = try #require(placed.first { $0.first == "testograd-1" }.map { Dictionary(uniqueKeysWithValues: zip(header, $0)) })
        #expect(placedRow["latitude"] == "47.10000" && placedRow["longitude"] == "35.20000" && placedRow["geo_precision"] == "1", "\(placedRow)")
        let jsonl = try daemon.ctl(["export"])
        #expect(jsonl.status == 0 && !jsonl.stderr.contains("another gazetteer"), "the JSON lines read no gazetteer: \(jsonl.stderr)")
        #expect(daemon.stop() == 0)

        // A daemon on the compiled-in gazetteer, with a city added by allowNewCity: nothing to warn of.
        let plain = try Self.storyLog()
        let exported = try plain.ctl(["export", "--format", "csv"])
        #expect(exported.status == 0 && !exported.stderr.contains("another gazetteer"), "\(exported.stderr)")
        #expect(plain.stop() == 0)
    }
}

private enum Printer {
    static func hash(_ event: JSONValue?) -> String { event?["hash"]?.stringValue ?? "?" }
}

/// RFC 4180 CSV, as a spreadsheet reads it: fields in double quotes may hold commas, quotes (doubled) and line breaks.
enum CSV {
    static func parse(_ text: String) throws -> [[String]] {
        var rows: [[String]] = []
        var row: [String] = []
        var field = ""
        var quoted = false
        var characters = text.makeIterator()
        var pending: Character? = nil
        while let c = pending ?? characters.next() {
            pending = nil
            if quoted {
                if c == "\"" {
                    let next = characters.next()
                    if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                } else {
                    field.append(c)
                }
            } else if c == "\"" && field.isEmpty {
                quoted = true
            } else if c == "," {
                row.append(field)
                field = ""
            } else if c == "\n" {
                row.append(field)
                rows.append(row)
                row = []
                field = ""
            } else {
                field.append(c)
            }
        }
        guard !quoted else { throw HarnessError("an unterminated quoted field") }
        if !field.isEmpty || !row.isEmpty { rows.append(row + [field]) }
        return rows
    }
}
