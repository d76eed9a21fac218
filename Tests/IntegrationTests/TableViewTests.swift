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
}
