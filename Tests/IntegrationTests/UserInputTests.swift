import Foundation
import StrictJSON
import Testing

/// What a field team types and pastes, as QA pass 16 tried it: text that starts with a dash, ranges copied from a
/// table, a count corrected in its short form, a listing cut by --limit, a response of `none` that counts people,
/// a source URL a browser would run. Each either lands as meant or is refused saying why, and nothing else is stored.
@Suite("User input (QA pass 16)")
struct UserInputTests {
    static let article = "kupiansk-2022-03-01-city-hall"

    static func articleDaemon() throws -> Daemon {
        let daemon = try Daemon()
        let answer = try daemon.client().appendEvents(try Repository.articleEvents())
        #expect(answer.isOK, "\(answer)")
        return daemon
    }

    @Test("free text that starts with a dash is the option's value, in report, observe and outcome, and its source goes with it")
    func textStartingWithADash() throws {
        let daemon = try Self.articleDaemon()
        let report = try daemon.ctl([
            "report", "--city", "Melitopol", "--kind", "strike", "--occurred", "2022-03-02", "--incident", "dash-1",
            "--description", "- residents fled", "--location", "-", "--target", "-a convoy", "--tag", "-x",
            "--source", "-=Melitopol News=-", "--source-method", "- geolocation", "--verified-by", "-team",
            "--source-verification", "verified",
        ])
        #expect(report.status == 0, "\(report.stderr)")
        let observe = try daemon.ctl(["observe", "dash-1", "--by", "-unit 12", "--response", "warning-shots", "--description", "-- shots"])
        #expect(observe.status == 0, "\(observe.stderr)")
        let outcome = try daemon.ctl([
            "outcome", "dash-1", "--status", "ongoing", "--note", "-- see second video", "--verification", "verified",
            "--verified-by", "-desk", "--method", "-geo", "--source", "S",
        ])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let lines = try daemon.ctl(["events", "--incident", "dash-1", "--format", "json"]).stdout.split(separator: "\n")
        let events = try lines.map { try JSONReader().read(String($0)) }
        try #require(events.count == 3, "\(lines)")
        let data = events.map { $0["data"] ?? .null }
        #expect(data.first?["description"] == "- residents fled" && data.first?["location"] == "-", "\(data)")
        #expect(data.first?["targets"] == "-a convoy" && data.first?["tags"] == ["-x"], "\(data)")
        #expect(
            events.first?["sources"] == [
                ["name": "-=Melitopol News=-", "method": "- geolocation", "verifiedBy": "-team", "verification": "verified"]
            ], "\(events)")
        #expect(data[1]["by"] == "-unit 12" && data[1]["description"] == "-- shots", "\(data)")
        #expect(data[2]["note"] == "-- see second video" && data[2]["verifiedBy"] == "-desk" && data[2]["method"] == "-geo", "\(data)")
        // A value forgotten is still named so, not taken from the option after it.
        let forgotten = try daemon.ctl(["outcome", "dash-1", "--note", "--status", "ongoing"])
        #expect(forgotten.status == 2 && forgotten.stderr.contains("Missing value for '--note <note>'"), "\(forgotten.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("a participant count corrected as a plain number or as {low} shows as that count in the history, as in the projection; a range copied from a table, en dash and all, is taken back")
    func correctedCountsAndCopiedRanges() throws {
        let daemon = try Self.articleDaemon()
        let client = try daemon.client()
        for (corrected, shown) in [(JSONValue.int(300), "300"), (["low": 5], "5"), (["low": 40, "high": 60], "40–60")] {
            let outcome: JSONValue = [
                "type": "outcome-updated", "incident": .string(Self.article),
                "data": ["status": "unknown", "corrections": ["participants": corrected]],
            ]
            #expect(try client.appendEvents([outcome]).isOK)
            let table = try daemon.ctl(["incident", Self.article, "--format", "table"])
            #expect(table.status == 0 && table.stdout.contains("corrects participants to \(shown)\n"), "\(table.stdout)")
        }
        let copied = try daemon.ctl(["outcome", Self.article, "--status", "unknown", "--correct", "participants=300–500"])
        #expect(copied.status == 0, "\(copied.stderr)")
        let report = try daemon.ctl(["report", "--city", "Berdiansk", "--kind", "strike", "--occurred", "2022-03-02", "--participants", "200–400"])
        #expect(report.status == 0, "\(report.stderr)")
        let incident = try #require(try daemon.ctl(["incident", Self.article, "--format", "json"]).json)
        #expect(incident["current"]?["participants"] == ["low": 300, "high": 500], "\(incident)")
        let cities = try #require(try daemon.ctl(["city", "Berdiansk", "--format", "json"]).json)
        #expect(cities["participants"]?["high"] == 400, "\(cities)")
        #expect(daemon.stop() == 0)
    }

    @Test("incidents --limit says where the listing goes on when more follow, and the command it names lists the rest; nothing is said when none do")
    func limitNamesTheNextPage() throws {
        let daemon = try Self.articleDaemon()
        let first = try daemon.ctl(["incidents", "--city", "Berdiansk", "--limit", "1", "--format", "json"])
        #expect(first.status == 0 && first.stdout.split(separator: "\n").count == 1, "\(first)")
        let note = try #require(
            first.stderr.firstRange(of: #/--from (\S+) and the same --city/#), "\(first.stderr)")
        #expect(first.stderr.hasPrefix("incidentctl: --limit 1 reached, and more incidents follow: the next ones with --from "))
        let cursor = String(first.stderr[note].split(separator: " ")[1])
        let rest = try daemon.ctl(["incidents", "--city", "Berdiansk", "--from", cursor, "--format", "json"])
        let all = try daemon.ctl(["incidents", "--city", "Berdiansk", "--format", "json"])
        #expect(rest.status == 0 && first.stdout + rest.stdout == all.stdout, "\(rest)")
        #expect(rest.stderr.isEmpty && all.stderr.isEmpty, "\(rest.stderr) \(all.stderr)")
        let exact = try daemon.ctl(["incidents", "--city", "Berdiansk", "--limit", "2", "--format", "json"])
        #expect(exact.stdout == all.stdout && exact.stderr.isEmpty, "\(exact)")
        #expect(daemon.stop() == 0)
    }

    @Test("a response of none that counts people killed, injured or detained is refused naming the count, by either decoder; none alone, or with zeros, is stored")
    func noneCountsNobody() throws {
        let daemon = try Self.articleDaemon()
        let client = try daemon.client()
        for field in ["killed", "injured", "detained"] {
            // With an eventId and a date the fast decoder takes the event; without, the general reader does.
            for extra: [String: JSONValue] in [[:], ["eventId": .string(Wire.uuid()), "occurredAt": "2022-03-01", "precision": "day"]] {
                var event: [String: JSONValue] = [
                    "type": "response-observed", "incident": .string(Self.article),
                    "data": .object(["by": "police", "responses": ["none"], field: 3]),
                ]
                event.merge(extra) { $1 }
                let answer = try client.appendEvents([.object(event)])
                #expect(answer.errorCode == "invalid_event", "\(answer)")
                let message = answer["error"]?["message"]?.stringValue ?? ""
                #expect(message.contains("data.\(field)") && message.contains("counts 3 \(field) in a response of none"), "\(message)")
            }
        }
        let command = try daemon.ctl(["observe", Self.article, "--by", "police", "--response", "none", "--detained", "5"])
        #expect(command.status == 1 && command.stderr.contains("invalid_event") && command.stderr.contains("detentions"), "\(command.stderr)")
        #expect(try client.headPosition() == 8, "nothing was stored")
        #expect(try daemon.ctl(["observe", Self.article, "--by", "police", "--response", "none"]).status == 0)
        #expect(try daemon.ctl(["observe", Self.article, "--by", "police", "--response", "none", "--killed", "0"]).status == 0)
        #expect(try daemon.ctl(["observe", Self.article, "--by", "police", "--response", "detentions", "--detained", "5"]).status == 0)
        #expect(try client.headPosition() == 11)
        #expect(daemon.stop() == 0)
    }

    @Test("a source URL of a scheme a browser runs or inlines (javascript:, vbscript:, data:) is refused naming the field, by either decoder; other schemes are stored")
    func scriptURLsAreRefused() throws {
        let daemon = try Self.articleDaemon()
        let client = try daemon.client()
        for url in ["javascript:alert(1)", "JavaScript:alert(1)", "vbscript:msgbox", "data:text/html,<script>x</script>"] {
            for extra: [String: JSONValue] in [[:], ["eventId": .string(Wire.uuid())]] {
                var event: [String: JSONValue] = [
                    "type": "incident-reported", "occurredAt": "2022-03-02", "precision": "day",
                    "sources": [["name": "T", "url": .string(url)]],
                    "data": ["city": "Melitopol", "kind": "strike"],
                ]
                event.merge(extra) { $1 }
                let answer = try client.appendEvents([.object(event)])
                #expect(answer.errorCode == "invalid_event", "\(url): \(answer)")
                let message = answer["error"]?["message"]?.stringValue ?? ""
                #expect(message.contains("sources[0].url") && message.contains("is run or inlined by a browser"), "\(message)")
            }
        }
        #expect(try client.headPosition() == 8, "nothing was stored")
        for url in ["https://example.org/v", "ipfs://bafy", "file:///archive/video.mp4"] {
            let report = try daemon.ctl(["report", "--city", "Melitopol", "--kind", "strike", "--occurred", "2022-03-02", "--source", "T", "--source-url", url])
            #expect(report.status == 0, "\(url): \(report.stderr)")
        }
        #expect(daemon.stop() == 0)
    }

    @Test("bad usage caught before anything is sent: backup into an empty path, and the output of events given to append, which names export")
    func usageCaughtBeforeSending() throws {
        let daemon = try Self.articleDaemon()
        let backup = try daemon.ctl(["backup", ""])
        #expect(backup.status == 2 && backup.stderr.contains("<dest>: empty"), "\(backup.stderr)")
        let events = try daemon.ctl(["events", "--limit", "2", "--format", "json"])
        let file = daemon.root + "/events.jsonl"
        try events.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        let append = try daemon.ctl(["append", file])
        #expect(append.status == 2, "\(append)")
        #expect(append.stderr.contains("events.jsonl:1: a stored event, as incidentctl events prints it") && append.stderr.contains("incidentctl export"), "\(append.stderr)")
        let export = try daemon.ctl(["export", "--format", "jsonl"])
        try export.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try daemon.ctl(["append", file]).status == 0, "what export writes is taken back")
        #expect(try daemon.client().headPosition() == 8)
        let status = try daemon.ctl(["status", "--format", "table"])
        #expect(status.stdout.contains("at most 1 append request in one\n"), "\(status.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("outcome without --status keeps the incident's: a correction, a verification or a note alone changes nothing else, and is refused if the incident changed after it was read; with nothing to record it is bad usage")
    func outcomeKeepsTheStatus() throws {
        let daemon = try Self.articleDaemon()
        #expect(try daemon.ctl(["outcome", Self.article, "--status", "dispersed"]).status == 0)
        let before = try #require(try daemon.ctl(["city", "Kupiansk", "--format", "json"]).json)
        let corrected = try daemon.ctl(["outcome", Self.article, "--correct", "participants=100-200", "--note", "second video"])
        #expect(corrected.status == 0, "\(corrected.stderr)")
        let verified = try daemon.ctl(["outcome", Self.article, "--verification", "verified", "--source", "S"])
        #expect(verified.status == 0, "\(verified.stderr)")
        let incident = try #require(try daemon.ctl(["incident", Self.article, "--format", "json"]).json)
        #expect(incident["status"] == "dispersed" && incident["current"]?["participants"] == ["low": 100, "high": 200], "\(incident)")
        #expect(incident["verification"] == "verified", "\(incident)")
        let after = try #require(try daemon.ctl(["city", "Kupiansk", "--format", "json"]).json)
        #expect(after["openIncidents"] == before["openIncidents"] && after["outcomes"] == before["outcomes"], "\(before) \(after)")
        // The version read is the version expected: one given by hand goes first, and a stale one is refused.
        let stale = try daemon.ctl(["outcome", Self.article, "--note", "late", "--expected-version", "2"])
        #expect(stale.status == 1 && stale.stderr.contains("wrong_expected_version"), "\(stale.stderr)")
        let nothing = try daemon.ctl(["outcome", Self.article])
        #expect(nothing.status == 2 && nothing.stderr.contains("nothing to record"), "\(nothing.stderr)")
        let unknown = try daemon.ctl(["outcome", "no-such-incident", "--note", "x"])
        #expect(unknown.status == 1 && unknown.stderr.contains("unknown_incident"), "\(unknown.stderr)")
        #expect(try daemon.client().headPosition() == 11)
        #expect(daemon.stop() == 0)
    }

    @Test("a report that makes a new city under a name close to a known one is stored and says so: newCities in the answer, a warning from report and append naming the city it may be; a city made already, or a name close to none, says nothing")
    func newCityCloseToAKnownOne() throws {
        let daemon = try Self.articleDaemon()
        let client = try daemon.client()
        let typo = try client.appendEvents([Wire.report(city: "Kupyanskk", kind: "strike", occurredAt: "2022-03-02")], allowNewCity: true)
        #expect(typo.isOK && typo["newCities"] == [["city": "Kupyanskk", "cityId": "kupyanskk", "near": ["Kupiansk"]]], "\(typo)")
        let again = try client.appendEvents([Wire.report(city: "Kupyanskk", kind: "blockade", occurredAt: "2022-03-02")], allowNewCity: true)
        #expect(again.isOK && again["newCities"] == nil, "\(again)")
        let far = try client.appendEvents([Wire.report(city: "Skadovsk", kind: "strike", occurredAt: "2022-03-02")], allowNewCity: true)
        #expect(far.isOK && far["newCities"] == nil, "\(far)")
        // Close to a city the log made, too.
        let nearLogCity = try client.appendEvents([Wire.report(city: "Skadovskk", kind: "strike", occurredAt: "2022-03-02")], allowNewCity: true)
        #expect(nearLogCity["newCities"]?.arrayValue?.first?["near"] == ["Skadovsk"], "\(nearLogCity)")
        let report = try daemon.ctl(["report", "--city", "Melitopoll", "--kind", "strike", "--occurred", "2022-03-02", "--allow-new-city"])
        #expect(report.status == 0, "\(report.stderr)")
        #expect(
            report.stderr.contains("incidentctl: warning: \"Melitopoll\" made the new city melitopoll, its name close to Melitopol, which this log knows already")
                && report.stderr.contains("--city Melitopol\n"), "\(report.stderr)")
        let file = daemon.root + "/typo.jsonl"
        try "{\"type\":\"incident-reported\",\"occurredAt\":\"2022-03-02\",\"data\":{\"city\":\"Berdianskk\",\"kind\":\"strike\"}}\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let append = try daemon.ctl(["append", "--allow-new-city", file])
        #expect(append.status == 0 && append.stderr.contains("made the new city berdianskk, its name close to Berdiansk"), "\(append.stderr)")
        let plain = try daemon.ctl(["report", "--city", "Nova Kakhovka", "--kind", "strike", "--occurred", "2022-03-02", "--allow-new-city"])
        #expect(plain.status == 0 && plain.stderr.isEmpty, "\(plain.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("verify and replay with --data-dir, which read the log themselves, refuse a --socket given beside it rather than pass it over")
    func socketBesideDataDir() throws {
        let daemon = try Self.articleDaemon()
        #expect(daemon.stop() == 0)
        for command in ["verify", "replay"] {
            let both = try daemon.ctl([command, "--data-dir", daemon.dataDir, "--socket", daemon.socketPath])
            #expect(both.status == 2 && both.stderr.contains("--socket and --data-dir: give one"), "\(command): \(both.stderr)")
            // The environment's socket is no choice made on this command line: it stays as it was.
            let alone = try daemon.ctl([command, "--data-dir", daemon.dataDir])
            #expect(alone.status == 0, "\(command): \(alone.stderr)")
        }
    }

    @Test("a city of the gazetteer no incident was reported in shows - for the spellings seen, as for every other field it has none of")
    func cityWithoutIncidents() throws {
        let daemon = try Daemon()
        let table = try daemon.ctl(["city", "Melitopol", "--format", "table"])
        #expect(table.status == 0 && table.stdout.contains("spellings seen"), "\(table)")
        let line = table.stdout.split(separator: "\n").first { $0.contains("spellings seen") } ?? ""
        #expect(line.hasSuffix(" -"), "\(table.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("incidentd --max-map-size is refused as storage.max_map_size is, exit 78, before anything is made")
    func maxMapSizeFlagRange() throws {
        let dir = makeTemporaryDirectory("incidentd-map-size")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for size in ["0", "1KiB", "100", "64KiB", "128TiB"] {
            // Under timeout(1): a daemon that took the size would serve, and not end by itself.
            let result = try runCommand(
                "/usr/bin/timeout", ["30", Binaries.incidentd, "--data-dir", dir + "/data", "--socket", dir + "/s.sock", "--max-map-size", size])
            #expect(result.status == 78, "\(size): \(result)")
            #expect(result.stderr.contains("--max-map-size: ") && result.stderr.contains("is outside 1048576...70368744177664"), "\(size): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/data"), "\(size): nothing is made")
        }
    }
}
