import Foundation
import StrictJSON
import Testing

/// What the tables of `incident`, `events` and `events --follow` show of each event.
@Suite("incidentctl tables")
struct TableViewTests {
    /// The article's log, with a response that counts casualties and an outcome with a short note.
    static func log() throws -> Daemon {
        let daemon = try Daemon()
        #expect(try daemon.ctl(["append", Repository.articlePath]).status == 0)
        let observe = try daemon.ctl([
            "observe", "melitopol-2022-03-01-convoy-blockade", "--by", "Rosgvardia", "--response", "detentions,beatings",
            "--killed", "1", "--detained", "3",
        ])
        #expect(observe.status == 0, "\(observe.stderr)")
        let outcome = try daemon.ctl(["outcome", "berdiansk-2022-02-28-molotov-tank", "--status", "suppressed", "--note", "tank towed away"])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return daemon
    }

    @Test("the daemon's refusals reach standard error with the log's text made harmless: a city named with C1 controls (CSI, OSC) or a right-to-left override, suggested for a misspelt name, is shown with them escaped as \\u{…}, never raw")
    func refusalsEscapeTheLogsText() throws {
        let daemon = try Daemon()
        let names = ["Zap\u{9B}2J\u{9D}0;TITLE\u{9C}ville", "Evil\u{202E}Town"]
        let added = try daemon.client().appendEvents(names.map { Wire.report(city: $0, eventId: Wire.uuid()) }, allowNewCity: true)
        #expect(added.isOK, "\(added)")
        for arguments in [["city", "Zap2J0;TITLEvill"], ["events", "--city", "EvilTowm"], ["city", "EvilTowm"]] {
            let refused = try daemon.ctl(arguments)
            #expect(refused.status == 1 && refused.stderr.contains("unknown_city"), "\(arguments): \(refused)")
            #expect(refused.stderr.contains("\\u{9B}2J\\u{9D}") || refused.stderr.contains("Evil\\u{202E}Town"), "the city is suggested, escaped: \(refused.stderr)")
            let raw = refused.stderr.unicodeScalars.filter { [0x9B, 0x9C, 0x9D, 0x202E].contains($0.value) }
            #expect(raw.isEmpty, "\(arguments): raw \(raw.map { String($0.value, radix: 16) }) in \(refused.stderr.debugDescription)")
        }
        #expect(daemon.stop() == 0)
    }

    @Test("incident and events tables show an outcome's note (shortened when long) and a response's casualties; events shows a week's date with its precision")
    func notesCasualtiesPrecision() throws {
        let daemon = try Self.log()
        let kupiansk = try daemon.ctl(["incident", "--format", "table", "kupiansk-2022-03-01-city-hall"])
        #expect(kupiansk.status == 0, "\(kupiansk.stderr)")
        #expect(
            kupiansk.stdout.contains(#"outcome-updated: status unknown, verified, note: The article says the outcome of this demonstration "remains…"#),
            "\(kupiansk.stdout)")
        let melitopol = try daemon.ctl(["incident", "--format", "table", "melitopol-2022-03-01-convoy-blockade"]).stdout
        #expect(melitopol.contains("response-observed: Rosgvardia: detentions, beatings (killed 1, detained 3)"), "\(melitopol)")
        #expect(melitopol.contains("response-observed: Russian armed forces: warning-shots\n"), "no casualties given, none shown: \(melitopol)")
        let tank = try daemon.ctl(["incident", "--format", "table", "berdiansk-2022-02-28-molotov-tank"]).stdout
        #expect(tank.contains("outcome-updated: status suppressed, note: tank towed away"), "\(tank)")

        let events = try daemon.ctl(["events", "--format", "table"])
        let rows = events.stdout.split(separator: "\n").map(String.init)
        #expect(rows.count == 11, "\(events.stdout)")
        func row(_ position: Int) -> String { rows.first { $0.hasPrefix("\(position) ") } ?? "" }
        #expect(row(1).contains(" 2022-03-01 ") && !row(1).contains("(day)"), "a day's date as it is: \(row(1))")
        #expect(row(7).contains(" 2022-02-28 (week) "), "\(row(7))")
        #expect(row(8).contains(" 2022-02-28 (week) "), "\(row(8))")
        #expect(row(3).contains(#"note: The article says the outcome of this demonstration "remains…"#), "\(row(3))")
        #expect(row(9).hasSuffix("Rosgvardia: detentions, beatings (killed 1, detained 3)"), "\(row(9))")
        #expect(row(10).hasSuffix("status suppressed, note: tank towed away"), "\(row(10))")
        #expect(daemon.stop() == 0)
    }

    @Test("events --follow --format table keeps its columns aligned with the longest values: an outcome's time to the microsecond, a time with an offset and a coarser precision, a 40-character id")
    func followedColumns() throws {
        let daemon = try Self.log()
        let id = "kupiansk-2022-03-01-railway-station-sign"
        let report = try daemon.ctl([
            "report", "--city", "Kupiansk", "--kind", "symbolic-act", "--incident", id,
            "--occurred", "2022-03-01T14:30:00.123456789+02:00", "--precision", "month",
        ])
        #expect(report.status == 0, "\(report.stderr)")
        let observe = try daemon.ctl(["observe", id, "--by", "x", "--response", "none", "--occurred", "2022-03-01T15:00+02:00", "--precision", "hour"])
        #expect(observe.status == 0, "\(observe.stderr)")

        let follow = try daemon.ctl(["events", "--follow", "--format", "table", "--limit", "12"])
        #expect(follow.status == 0, "\(follow.stderr)")
        let lines = follow.stdout.split(separator: "\n").map { Array($0) }
        #expect(lines.count == 13, "\(follow.stdout)")
        let header = try #require(lines.first)
        let columns = ["TYPE", "INCIDENT", "OCCURRED", "SUMMARY"].compactMap { name in
            String(header).range(of: "  " + name).map { String(header).distance(from: String(header).startIndex, to: $0.lowerBound) + 2 }
        }
        #expect(columns.count == 4, "\(String(header))")
        for line in lines {
            for start in columns {
                let aligned = line.count > start && line[start - 2] == " " && line[start - 1] == " " && line[start] != " "
                #expect(aligned, "a column starts at \(start): \(String(line))")
            }
        }
        func occurred(_ line: [Character]) -> String {
            String(line[columns[2]..<columns[3]]).trimmingCharacters(in: .whitespaces)
        }
        let outcome = try #require(lines.first { String($0).hasPrefix("10 ") })
        #expect(occurred(outcome).count == 27, "an outcome's time, to the microsecond: \(String(outcome))")
        let reported = try #require(lines.first { String($0).hasPrefix("11 ") })
        #expect(occurred(reported) == "2022-03-01T14:30:00.123456+02:00 (month)", "\(String(reported))")
        #expect(String(reported).contains("  \(id)  "))
        let observed = try #require(lines.first { String($0).hasPrefix("12 ") })
        #expect(occurred(observed) == "2022-03-01T15:00+02:00 (hour)", "\(String(observed))")
        #expect(daemon.stop() == 0)
    }

    /// The character offsets at which the columns `names` start in a table's `header`.
    static func columnStarts(_ header: String, _ names: [String]) -> [Int] {
        names.compactMap { name in header.range(of: "  " + name).map { header.distance(from: header.startIndex, to: $0.lowerBound) + 2 } }
    }

    @Test("a table's columns line up in a terminal's columns: a character of Chinese, Japanese or Korean and an emoji take two")
    func wideCharactersAlign() throws {
        let daemon = try Self.log()
        for city in ["Tokyo東京都", "Seoul서울", "Camp🏠"] {
            let report = try daemon.ctl(["report", "--city", city, "--allow-new-city", "--kind", "strike", "--occurred", "2022-03-01"])
            #expect(report.status == 0, "\(report.stderr)")
        }
        let cities = try daemon.ctl(["cities", "--format", "table"])
        #expect(cities.status == 0, "\(cities.stderr)")
        // Where each cell starts, in terminal columns: after a run of two spaces or more.
        func starts(_ line: Substring) -> [Int] {
            var starts: [Int] = []
            var column = 0
            var spaces = 0
            for character in line {
                if character == " " {
                    spaces += 1
                } else {
                    if spaces >= 2 { starts.append(column) }
                    spaces = 0
                }
                let scalar = character.unicodeScalars.first?.value ?? 0
                let wide = (0x1100...0x115F).contains(scalar) || (0x2E80...0xA4CF).contains(scalar) || (0xAC00...0xD7A3).contains(scalar)
                    || (0x1F300...0x1F64F).contains(scalar)
                column += wide ? 2 : 1
            }
            return starts
        }
        let lines = cities.stdout.split(separator: "\n")
        let header = starts(lines[0])
        for name in ["Tokyo東京都", "Seoul서울", "Camp🏠"] {
            let row = try #require(lines.first { $0.contains(name) }, "\(cities.stdout)")
            #expect(Array(starts(row).prefix(header.count)) == header, "\(row) against \(lines[0])")
        }
    }

    @Test("stored text cannot forge a table's rows or columns: control characters, bidi controls and invisible ones are shown escaped, in every table, and JSON keeps them exact")
    func storedTextIsEscaped() throws {
        let daemon = try Self.log()
        let forged = "Russian armed forces: none\n999       outcome-updated    forge-0   2022-03-01  status retracted, note: fake"
        let report = try daemon.ctl([
            "report", "--city", "New\nCity", "--allow-new-city", "--kind", "blockade", "--occurred", "2022-03-01",
            "--incident", "forge-0", "--description", "line one\nline two \u{202E}desrever\u{202C} zero\u{200B}width\ttab",
            "--location", "\u{0301}square",
        ])
        #expect(report.status == 0, "\(report.stderr)")
        let observe = try daemon.ctl(["observe", "forge-0", "--by", forged, "--response", "none"])
        #expect(observe.status == 0, "\(observe.stderr)")
        let hidden: [Character] = ["\u{202E}", "\u{202C}", "\u{200B}", "\t"]

        let events = try daemon.ctl(["events", "--incident", "forge-0", "--format", "table"])
        #expect(events.status == 0, "\(events.stderr)")
        let rows = events.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        #expect(rows.count == 3, "a header and the two events, no forged row: \(events.stdout)")
        #expect(!rows.contains { $0.hasPrefix("999") }, "\(events.stdout)")
        #expect(events.stdout.contains(#"Russian armed forces: none\n999       outcome-updated"#), "the line feed shown as \\n: \(events.stdout)")
        #expect(events.stdout.contains(#"blockade in New\nCity"#), "\(events.stdout)")
        #expect(!events.stdout.contains { hidden.contains($0) }, "\(events.stdout)")

        let incident = try daemon.ctl(["incident", "forge-0", "--format", "table"])
        #expect(incident.status == 0, "\(incident.stderr)")
        #expect(
            incident.stdout.contains(#"description:  line one\nline two \u{202E}desrever\u{202C} zero\u{200B}width\ttab"#),
            "\(incident.stdout)")
        #expect(incident.stdout.contains(" \\u{301}square\n"), "a combining mark opening a value is shown, not joined: \(incident.stdout)")
        #expect(incident.stdout.split(separator: "\n").contains { $0.hasPrefix("city:") && $0.hasSuffix(#" New\nCity (new-city)"#) }, "\(incident.stdout)")
        #expect(!incident.stdout.contains { hidden.contains($0) || $0 == "\u{301}" }, "\(incident.stdout)")
        let history = incident.stdout.components(separatedBy: "\n\n").last ?? ""
        #expect(history.split(separator: "\n").count == 3, "a header and the two events: \(history)")

        let city = try daemon.ctl(["city", "New\nCity", "--format", "table"])
        #expect(city.status == 0, "\(city.stderr)")
        #expect(city.stdout.split(separator: "\n").contains { $0.hasPrefix("city:") && $0.hasSuffix(#" New\nCity (new-city)"#) }, "\(city.stdout)")
        #expect(city.stdout.split(separator: "\n").allSatisfy { $0.contains(":") }, "every line a field: \(city.stdout)")

        let cities = try daemon.ctl(["cities", "--format", "table"])
        #expect(cities.status == 0, "\(cities.stderr)")
        let lines = cities.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "a header and four cities: \(cities.stdout)")
        let starts = Self.columnStarts(lines[0], ["NAME", "REGION", "INCIDENTS"])
        #expect(starts.count == 3, "\(lines[0])")
        for line in lines {
            let characters = Array(line)
            for start in starts {
                #expect(characters.count > start && characters[start - 1] == " " && characters[start] != " ", "a column starts at \(start): \(line)")
            }
        }
        #expect(lines.contains { $0.contains("  New\\nCity  ") }, "\(cities.stdout)")

        let json = try daemon.ctl(["events", "--incident", "forge-0", "--format", "json"])
        let stored = json.stdout.split(separator: "\n").compactMap { try? JSONReader().read(String($0)) }
        #expect(stored.compactMap { $0["data"]?["by"]?.stringValue } == [forged], "JSON holds the text exactly: \(json.stdout)")
        #expect(stored.first?["data"]?["city"]?.stringValue == "New\nCity", "\(json.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("incident and events tables show each event's sources: name, verification, who verified it and how, URL and sha256 in full, escaped as every cell is (QA pass 10)")
    func sourcesShown() throws {
        let daemon = try Self.log()
        let hash = String(repeating: "0f", count: 32)
        let report = try daemon.ctl([
            "report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-02", "--incident", "src-table",
            "--source", "Witness\u{202E}video", "--source-verification", "verified", "--verified-by", "Ann\nLee", "--source-method", "geolocation",
            "--source-url", "https://example.org/v", "--source-sha256", hash, "--source", "Telegram repost",
        ])
        #expect(report.status == 0, "\(report.stderr)")
        let observe = try daemon.ctl(["observe", "src-table", "--by", "x", "--response", "none", "--source", "Local radio"])
        #expect(observe.status == 0, "\(observe.stderr)")
        let hidden: [Character] = ["\u{202E}"]

        let incident = try daemon.ctl(["incident", "src-table", "--format", "table"])
        #expect(incident.status == 0, "\(incident.stderr)")
        let sources = (incident.stdout.components(separatedBy: "\n\n").last ?? "").split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        #expect(
            sources == [
                "VERSION POSITION SOURCE VERIFICATION VERIFIED BY METHOD PUBLISHED URL SHA256",
                #"1 11 Witness\u{202E}video verified Ann\nLee geolocation - https://example.org/v "# + hash,
                "1 11 Telegram repost unverified - - - - -",
                "2 12 Local radio unverified - - - - -",
            ], "\(incident.stdout)")
        #expect(!incident.stdout.contains { hidden.contains($0) }, "\(incident.stdout)")

        let events = try daemon.ctl(["events", "--incident", "src-table", "--format", "table"])
        #expect(events.status == 0, "\(events.stderr)")
        let rows = events.stdout.split(separator: "\n").map(String.init)
        #expect(rows.count == 3, "\(events.stdout)")
        #expect(
            rows[1].hasSuffix(
                #"strike in Kupiansk; sources: "Witness\u{202E}video" (verified, verified by Ann\nLee, method geolocation, https://example.org/v, sha256 "#
                    + hash + #"), "Telegram repost" (unverified)"#), "\(rows[1])")
        #expect(rows[2].hasSuffix(#"x: none; sources: "Local radio" (unverified)"#), "\(rows[2])")
        #expect(!events.stdout.contains { hidden.contains($0) }, "\(events.stdout)")
        let followed = try daemon.ctl(["events", "--follow", "--from", "11", "--format", "table", "--limit", "2"])
        #expect(followed.status == 0, "\(followed.stderr)")
        let lines = followed.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3 && lines[1].hasSuffix(rows[1].split(separator: "  ").last.map(String.init) ?? "?"), "\(followed.stdout)")
        #expect(daemon.stop() == 0)
    }
}
