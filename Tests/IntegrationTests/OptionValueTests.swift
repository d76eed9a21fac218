import Foundation
import IncidentDomain
import StrictJSON
import Testing

/// Option values that `incidentctl` checks itself, so that a mistyped one is bad usage (exit 2) saying what is
/// allowed, rather than a request sent and refused (exit 1).
@Suite("incidentctl option values")
struct OptionValueTests {
    static func values<E: CaseIterable & RawRepresentable>(_: E.Type) -> [String] where E.RawValue == String {
        E.allCases.map(\.rawValue)
    }

    @Test("a whole number past what its option takes (a position, a count) is bad usage echoing it whole and saying it is out of range; one that is no number says so")
    func numbersOutOfRange() throws {
        let big = "99999999999999999999999"
        let cases: [(arguments: [String], says: String)] = [
            (["events", "--from", big], "The value '\(big)' is invalid for '--from <from>': out of range: the most it takes is \(Int.max)"),
            (["events", "--limit", big], "The value '\(big)' is invalid for '--limit <limit>': out of range: the most it takes is \(Int.max)"),
            (["replay", "--until-position", big],
             "The value '\(big)' is invalid for '--until-position <until-position>': out of range: the most it takes is \(UInt64.max)"),
            (["incident", "k-1", "--until-position", big],
             "The value '\(big)' is invalid for '--until-position <until-position>': out of range: the most it takes is \(UInt64.max)"),
            (["events", "--from", "-\(big)"], "The value '-\(big)' is invalid for '--from <from>': out of range: the least it takes is \(Int.min)"),
            (["events", "--from", "12x"], "The value '12x' is invalid for '--from <from>': not a whole number"),
        ]
        for (arguments, says) in cases {
            // Refused before any connection is made.
            let run = try runCommand(Binaries.incidentctl, arguments + ["--socket", "/nonexistent/incidentd.sock"])
            #expect(run.status == 2 && run.stderr.contains(says), "\(arguments): \(run)")
        }
    }

    @Test("a participants range whose low end is above its high end is bad usage saying so and giving the range the right way round; one that is no range says what is")
    func participantsRangeBackwards() throws {
        let report = ["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01"]
        let cases: [(arguments: [String], says: String)] = [
            (report + ["--participants", "5-3"], "--participants: 5-3 is a range whose low end (5) is above its high end (3): give LOW-HIGH, as 3-5"),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "participants=200-100"],
             "--correct participants: 200-100 is a range whose low end (200) is above its high end (100): give LOW-HIGH, as 100-200"),
            (report + ["--participants", "many"], "--participants: a whole number (150) or a range (100-200)"),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "participants=many"], "--correct participants=N or LOW-HIGH"),
        ]
        for (arguments, says) in cases {
            let run = try runCommand(Binaries.incidentctl, arguments + ["--socket", "/nonexistent/incidentd.sock"])
            #expect(run.status == 2 && run.stderr.contains(says), "\(arguments): \(run)")
        }
    }

    @Test("a value outside an option's vocabulary is bad usage naming the option, the value and the values allowed, and nothing is sent")
    func vocabularies() throws {
        let daemon = try Daemon()
        #expect(try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01", "--incident", "k-1"]).status == 0)
        let report = ["report", "--city", "Kupiansk", "--occurred", "2022-03-02"]
        let cases: [(arguments: [String], says: String, allowed: [String])] = [
            (["events", "--type", "response"], "The value 'response' is invalid for '--type <type>'", Self.values(EventType.self)),
            (["events", "--follow", "--type", "response"], "The value 'response' is invalid for '--type <type>'", Self.values(EventType.self)),
            (report + ["--kind", "riot"], "The value 'riot' is invalid for '--kind <kind>'", Self.values(IncidentKind.self)),
            (report + ["--kind", "strike", "--precision", "fortnight"],
             "The value 'fortnight' is invalid for '--precision <precision>'", Self.values(Precision.self)),
            (report + ["--kind", "strike", "--source", "A", "--verification", "certain"],
             "The value 'certain' is invalid for '--verification <status>'", Self.values(Verification.self)),
            (report + ["--kind", "strike", "--source", "A", "--source-verification", "certain"],
             "The value 'certain' is invalid for '--source-verification <status>'", Self.values(Verification.self)),
            (["observe", "k-1", "--by", "x", "--response", "shooting"],
             "The value 'shooting' is invalid for '--response <r[,r…]>': 'shooting' is not a response", Self.values(ResponseKind.self)),
            (["observe", "k-1", "--by", "x", "--response", "warning-shots,shooting"],
             "The value 'warning-shots,shooting' is invalid for '--response <r[,r…]>': 'shooting' is not a response",
             Self.values(ResponseKind.self)),
            (["observe", "k-1", "--by", "x", "--response", "warning-shots", "--response", "tear-gas, shootings"],
             "The value 'tear-gas, shootings' is invalid for '--response <r[,r…]>': 'shootings' is not a response",
             Self.values(ResponseKind.self)),
            (["observe", "k-1", "--by", "x", "--response", ","], "The value ',' is invalid for '--response <r[,r…]>': no response given",
             Self.values(ResponseKind.self)),
            (["observe", "k-1", "--by", "x", "--response", "none", "--precision", "fortnight"],
             "The value 'fortnight' is invalid for '--precision <precision>'", Self.values(Precision.self)),
            (["observe", "k-1", "--by", "x", "--response", "none", "--source", "A", "--source-verification", "certain"],
             "The value 'certain' is invalid for '--source-verification <status>'", Self.values(Verification.self)),
            (["outcome", "k-1", "--status", "done"], "The value 'done' is invalid for '--status <status>'", Self.values(OutcomeStatus.self)),
            (["outcome", "k-1", "--status", "dispersed", "--verification", "certain"],
             "The value 'certain' is invalid for '--verification <status>'", Self.values(Verification.self)),
            (["outcome", "k-1", "--status", "dispersed", "--source", "A", "--source-verification", "certain"],
             "The value 'certain' is invalid for '--source-verification <status>'", Self.values(Verification.self)),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "kind=riot"],
             "The value 'kind=riot' is invalid for '--correct <field=value>': 'riot' is not a kind", Self.values(IncidentKind.self)),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "colour=red"],
             "The value 'colour=red' is invalid for '--correct <field=value>': 'colour' is not a field of the report that can be corrected",
             ReportData.correctableFields.sorted()),
            (["outcome", "k-1", "--status", "dispersed", "--remove", "colour"],
             "The value 'colour' is invalid for '--remove <field>': 'colour' is not a field of the report that can be corrected",
             ReportData.correctableFields.sorted()),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "city=Melitopol"],
             "The value 'city=Melitopol' is invalid for '--correct <field=value>': the city cannot be corrected; retract the incident and report it again",
             []),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "occurredAt=2022-03-02"],
             "The value 'occurredAt=2022-03-02' is invalid for '--correct <field=value>': when an incident happened cannot be corrected (outcome's --occurred dates the outcome, not the incident). Retract the incident (incidentctl outcome <incident> --status retracted --note \"wrong date\") and report it again with the right date (incidentctl report … --occurred DATE)",
             []),
            (["outcome", "k-1", "--status", "dispersed", "--remove", "precision"],
             "The value 'precision' is invalid for '--remove <field>': when an incident happened cannot be corrected", []),
            (["outcome", "k-1", "--status", "dispersed", "--remove", "kind"],
             "The value 'kind' is invalid for '--remove <field>': an incident always has a kind; correct it instead (--correct kind=K)", []),
            (["export", "--format", "xlsx"], "The value 'xlsx' is invalid for '--format <format>'", ["jsonl", "csv", "geojson"]),
            // Values the daemon would refuse as invalid_event, checked before anything is sent.
            (["observe", "k-1", "--by", "x", "--response", "tear-gas", "--response", "tear-gas"],
             "--response: tear-gas is given twice; name each response once", []),
            (["observe", "Bad ID", "--by", "x", "--response", "none"], "the incident id: 'Bad ID' is not an incident id", []),
            (["outcome", "Bad ID", "--status", "dispersed"], "the incident id: 'Bad ID' is not an incident id", []),
            (report + ["--kind", "strike", "--incident", "Bad_ID"], "--incident: 'Bad_ID' is not an incident id", []),
            // One in capitals, in every command that takes an incident id, the same way.
            (["observe", "K-1", "--by", "x", "--response", "none"],
             "the incident id: 'K-1' is not an incident id: incident ids are lower case; did you mean 'k-1'?", []),
            (["outcome", "K-1", "--status", "dispersed"],
             "the incident id: 'K-1' is not an incident id: incident ids are lower case; did you mean 'k-1'?", []),
            (report + ["--kind", "strike", "--incident", "K-2"],
             "--incident: 'K-2' is not an incident id: incident ids are lower case; did you mean 'k-2'?", []),
            (["incident", "K-1"], "the incident id: 'K-1' is not an incident id: incident ids are lower case; did you mean 'k-1'?", []),
            (["incident", "Bad ID"], "the incident id: 'Bad ID' is not an incident id: lowercase letters", []),
            (["events", "--incident", "K-1"], "--incident: 'K-1' is not an incident id: incident ids are lower case; did you mean 'k-1'?", []),
            (["events", "--follow", "--incident", "K-1"],
             "--incident: 'K-1' is not an incident id: incident ids are lower case; did you mean 'k-1'?", []),
            (report + ["--kind", "strike", "--event-id", "notauuid"], "--event-id: 'notauuid' is not a UUID", []),
            (["outcome", "k-1", "--status", "dispersed", "--event-id", "1234"], "--event-id: '1234' is not a UUID", []),
            (report + ["--kind", "strike", "--lat", "100", "--lon", "0"], "--lat: a latitude from -90 to 90 (not 100.0)", []),
            (report + ["--kind", "strike", "--lat", "10", "--lon", "-200"], "--lon: a longitude from -180 to 180 (not -200.0)", []),
            (["outcome", "k-1", "--status", "dispersed", "--correct", "coordinates=100,200"],
             "--correct coordinates=LAT,LON, a latitude from -90 to 90 and a longitude from -180 to 180", []),
        ]
        for (arguments, says, allowed) in cases {
            let usage = try daemon.ctl(arguments)
            #expect(usage.status == 2, "\(arguments): \(usage.status) \(usage.stderr)")
            #expect(usage.stderr.hasPrefix("Error: \(says)"), "\(arguments): \(usage.stderr)")
            // As argument-parser lists them: quoted in a sentence when they are few, else one to a line.
            for value in allowed {
                #expect(usage.stderr.contains("'\(value)'") || usage.stderr.contains("  - \(value)\n"), "\(arguments) lists \(value): \(usage.stderr)")
            }
            #expect(usage.stdout.isEmpty, "\(arguments): \(usage.stdout)")
        }
        #expect(try daemon.client().headPosition() == 1, "no bad value was sent")

        // Every value of each vocabulary is taken, and stored as it is spelled.
        for (n, kind) in IncidentKind.allCases.enumerated() {
            let reported = try daemon.ctl(
                report + ["--kind", kind.rawValue, "--incident", "kind-\(n)", "--precision", "week", "--source", "A",
                          "--verification", Verification.allCases[n % Verification.allCases.count].rawValue])
            #expect(reported.status == 0, "\(kind): \(reported.stderr)")
        }
        // `none` only alone: every other response in one event, then `none` in another.
        let responded = ResponseKind.allCases.filter { $0 != .none }
        for list in [responded, [.none]] {
            let observed = try daemon.ctl(
                ["observe", "k-1", "--by", "x", "--response", list.map(\.rawValue).joined(separator: ","), "--format", "json"])
            #expect(observed.status == 0, "\(observed.stderr)")
        }
        let responses = try daemon.ctl(["events", "--incident", "k-1", "--type", "response-observed", "--format", "json"]).stdout
            .split(separator: "\n").map { try JSONReader().read(String($0)) }
        #expect(responses.map { $0["data"]?["responses"] } == [responded, [.none]].map { .array($0.map { .string($0.rawValue) }) })
        for status in OutcomeStatus.allCases {
            let outcome = try daemon.ctl(["outcome", "k-1", "--status", status.rawValue, "--correct", "kind=symbolic-act"])
            #expect(outcome.status == 0, "\(status): \(outcome.stderr)")
        }
        #expect(try daemon.ctl(["incident", "k-1", "--format", "json"]).json?["current"]?["kind"] == "symbolic-act")

        func help(_ command: String) throws -> String {
            try runCommand(Binaries.incidentctl, [command, "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        let reportHelp = try help("report")
        #expect(reportHelp.contains("(values: \(IncidentKind.allCases.map(\.rawValue).joined(separator: ", ")))"), "\(reportHelp)")
        #expect(reportHelp.contains("(values: \(Precision.allCases.map(\.rawValue).joined(separator: ", ")))"))
        #expect(reportHelp.contains("(values: \(Verification.allCases.map(\.rawValue).joined(separator: ", ")))"))
        #expect(try help("observe").contains(ResponseKind.allCases.map(\.rawValue).joined(separator: ", ")))
        #expect(try help("outcome").contains("(values: \(OutcomeStatus.allCases.map(\.rawValue).joined(separator: ", ")))"))
        #expect(try help("events").contains("(values: \(EventType.allCases.map(\.rawValue).joined(separator: ", ")))"))
        #expect(daemon.stop() == 0)
    }

    @Test("a time without its zone, or not ISO 8601, is bad usage saying that a date-time needs a zone, with an example; the help says so too")
    func times() throws {
        let daemon = try Daemon()
        #expect(try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01", "--incident", "k-1"]).status == 0)
        let needsZone = "a date-time needs its zone, Z (UTC) or ±HH:MM, as in 2022-03-01T14:30Z or 2022-03-01T14:30+02:00"
        let notATime = "expected an ISO 8601 date (2022-03-01), month (2022-03) or date-time with its zone, Z or ±HH:MM (2022-03-01T14:30Z, 2022-03-01T14:30+02:00)"
        let cases: [(arguments: [String], option: String, value: String, says: String)] = [
            (["replay"], "--as-of <time>", "2026-12-06T19:22:03", needsZone),
            (["replay"], "--as-of <time>", "2026-12-06T19:22", needsZone),
            (["replay"], "--occurred-before <time>", "2022-03-01T14:30:00.5", needsZone),
            (["replay"], "--occurred-before <time>", "1 March 2022", notATime),
            (["replay", "--data-dir", daemon.dataDir], "--as-of <time>", "2026-12-06T19:22:03", needsZone),
            (["report", "--city", "Kupiansk", "--kind", "strike"], "--occurred <date>", "2022-03-01T14:30", needsZone),
            (["report", "--city", "Kupiansk", "--kind", "strike"], "--occurred <date>", "2022-03-01 14:30Z",
             #""2022-03-01 14:30Z" is not ISO 8601: write T between the date and the time, as in 2022-03-01T14:30Z"#),
            (["report", "--city", "Kupiansk", "--kind", "strike"], "--occurred <date>", "2022-02-30", "February has 28 days, not 30"),
            (["observe", "k-1", "--by", "x", "--response", "none"], "--occurred <date>", "2022-03-01T14:30", needsZone),
            (["outcome", "k-1", "--status", "dispersed"], "--occurred <date>", "2022-03-02T09:00", needsZone),
        ]
        for (arguments, option, value, says) in cases {
            let name = String(option.prefix { $0 != " " })
            let usage = try daemon.ctl(arguments + [name, value])
            #expect(usage.status == 2, "\(arguments) \(name) \(value): \(usage.status) \(usage.stderr)")
            #expect(usage.stderr.hasPrefix("Error: The value '\(value)' is invalid for '\(option)': \(says)\n"), "\(usage.stderr)")
            #expect(usage.stdout.isEmpty)
        }
        #expect(try daemon.client().headPosition() == 1, "nothing was sent")

        for time in ["2022-03-01T14:30Z", "2022-03-01T14:30:05.25+02:00", "2022-03-01", "2022-03"] {
            #expect(try daemon.ctl(["replay", "--as-of", "2999-01-01T00:00Z", "--occurred-before", time]).status == 0, "\(time)")
            #expect(try daemon.ctl(["observe", "k-1", "--by", "x", "--response", "none", "--occurred", time]).status == 0, "\(time)")
        }
        for command in ["report", "observe", "outcome", "replay"] {
            let help = try runCommand(Binaries.incidentctl, [command, "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            #expect(help.contains("a date-time with its zone, Z or ±HH:MM (2022-03-01T14:30Z)"), "\(command): \(help)")
        }
        #expect(daemon.stop() == 0)
    }

    @Test("a date of the right form that is no date says why: no 29 February in a year that is not a leap year, a year outside 1000 to 9999 (named), no month 13, a month's last day; for --occurred, --as-of and --occurred-before (QA pass 10)")
    func impossibleDates() throws {
        let daemon = try Daemon()
        let options: [(arguments: [String], option: String)] = [
            (["report", "--city", "Kupiansk", "--kind", "strike"], "--occurred <date>"),
            (["outcome", "k-1", "--status", "dispersed"], "--occurred <date>"),
            (["replay"], "--as-of <time>"),
            (["replay"], "--occurred-before <time>"),
        ]
        let cases: [(value: String, says: String)] = [
            ("2023-02-29", "2023 has no 29 February (it is not a leap year)"),
            ("2100-02-29", "2100 has no 29 February (it is not a leap year)"),
            ("2023-02-29T10:00Z", "2023 has no 29 February (it is not a leap year)"),
            ("2023-02-29T10:00", "2023 has no 29 February (it is not a leap year)"),
            ("0001-01-01", "year 0001 is outside the years a date may have, 1000 to 9999"),
            ("0999-12", "year 0999 is outside the years a date may have, 1000 to 9999"),
            ("10000-01-01", "year 10000 is outside the years a date may have, 1000 to 9999"),
            ("2022-13-01", "there is no month 13: months go from 01 to 12"),
            ("2022-00", "there is no month 00: months go from 01 to 12"),
            ("2022-04-31T12:00+02:00", "April has 30 days, not 31"),
            ("2022-03-00", "there is no day 00: days go from 01"),
        ]
        for (arguments, option) in options {
            let name = String(option.prefix { $0 != " " })
            for (value, says) in cases {
                let usage = try daemon.ctl(arguments + [name, value])
                #expect(usage.status == 2, "\(arguments) \(name) \(value): \(usage.status) \(usage.stderr)")
                #expect(usage.stderr.hasPrefix("Error: The value '\(value)' is invalid for '\(option)': \(says)\n"), "\(usage.stderr)")
            }
        }
        #expect(try daemon.client().headPosition() == 0, "nothing was sent")
        for leapDay in ["2024-02-29", "2000-02-29", "1000-01-01"] {
            #expect(try daemon.ctl(["replay", "--occurred-before", leapDay]).status == 0, "\(leapDay)")
        }
        #expect(daemon.stop() == 0)
    }
}
