import Foundation
import IncidentDomain
import StrictJSON
import Testing

/// The examples of `incidentctl --help`, of each command's `--help` and of README's tour, tried on the log that
/// `make run` starts with (examples/article.jsonl): each incident they name is in it, or reported by an example
/// before, and the incidents they report are new ones, not the article's again.
@Suite("incidentctl help examples")
struct HelpExampleTests {
    /// Where each text comes from, and the text.
    static func texts() throws -> [(source: String, text: String)] {
        var texts = [(source: "incidentctl --help", text: try runCommand(Binaries.incidentctl, ["--help"]).stdout)]
        for command in CLITests.subcommands {
            texts.append(("incidentctl \(command) --help", try runCommand(Binaries.incidentctl, [command, "--help"]).stdout))
        }
        let readme = try String(contentsOfFile: Repository.root + "/README.md", encoding: .utf8)
        let tour = readme.components(separatedBy: "## A tour of incidentctl").dropFirst().first?
            .components(separatedBy: "\n## ").first
        texts.append(("README.md's tour of incidentctl", try #require(tour)))
        return texts
    }

    /// The example commands of `text`: each line that starts with `incidentctl`, with the lines a `\` at its end
    /// continues it on, as words.
    static func commands(_ text: String) -> [[String]] {
        var commands: [[String]] = []
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).makeIterator()
        while let line = lines.next() {
            guard line.trimmingCharacters(in: .whitespaces).hasPrefix("incidentctl ") else { continue }
            var command = String(line)
            while command.trimmingCharacters(in: .whitespaces).hasSuffix("\\"), let next = lines.next() {
                command += "\n" + next
            }
            commands.append(words(command))
        }
        return commands
    }

    /// The words of a POSIX shell command line: quotes and backslashes as the shell takes them; a comment, a pipe, a
    /// redirection or a list ends it.
    static func words(_ line: String) -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quote: Character?
        let characters = Array(line)
        var i = 0
        scan: while i < characters.count {
            let c = characters[i]
            if let open = quote {
                if c == open {
                    quote = nil
                } else if open == "\"", c == "\\", i + 1 < characters.count, "\"\\$`".contains(characters[i + 1]) {
                    i += 1
                    word.append(characters[i])
                } else {
                    word.append(c)
                }
            } else if c == "'" || c == "\"" {
                quote = c
                inWord = true
            } else if c == "\\", i + 1 < characters.count {
                i += 1
                if characters[i] != "\n" {
                    word.append(characters[i])
                    inWord = true
                }
            } else if c.isWhitespace {
                if inWord { words.append(word) }
                word = ""
                inWord = false
            } else if (c == "#" && !inWord) || "|;&<>".contains(c) {
                break scan
            } else {
                word.append(c)
                inWord = true
            }
            i += 1
        }
        if inWord { words.append(word) }
        return words
    }

    @Test("no example line of a help text breaks inside a quoted string (ArgumentParser wraps the discussion at 80 columns), so each can be copied (QA pass 12)")
    func exampleLinesStayWhole() throws {
        var texts = try Self.texts().filter { !$0.source.hasPrefix("README") }
        texts.append((source: "incidentd --help", text: try runCommand(Binaries.incidentd, ["--help"]).stdout))
        var examples = 0
        for (source, text) in texts {
            var continued = false
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                let example = continued || trimmed.hasPrefix("incidentctl ") || trimmed.hasPrefix("incidentd ") || trimmed.hasPrefix("--source ")
                if example {
                    examples += 1
                    #expect(line.filter { $0 == "\"" }.count % 2 == 0, "\(source): a quoted string broken at the end of: \(line)")
                }
                continued = example && trimmed.hasSuffix("\\")
            }
        }
        #expect(examples > 40)
    }

    @Test("the examples' incidents are the article's or reported by an example before them; the examples run; an example's report is not one of the article's incidents again")
    func examplesNameRealIncidents() throws {
        let daemon = try Daemon()
        let loaded = try daemon.ctl(["append", Repository.articlePath])
        #expect(loaded.status == 0, "\(loaded.stderr)")
        let articleIds = try Repository.articleEvents().filter { $0["type"] == "incident-reported" }.compactMap { $0["incident"]?.stringValue }
        let article = try articleIds.map { try #require(try daemon.ctl(["incident", "--format", "json", $0]).json) }
        let idPattern = try Regex(#"^[a-z0-9][a-z0-9-]{0,127}$"#)

        var reported = 0
        var named = 0
        for (source, text) in try Self.texts() {
            for words in Self.commands(text) where words.count >= 2 {
                let arguments = Array(words.dropFirst())
                switch arguments[0] {
                case "report":
                    let report = try daemon.ctl(arguments + ["--format", "json"])
                    #expect(report.status == 0, "\(source): \(words): \(report.stderr)")
                    guard let id = report.json?["incident"]?.stringValue else { continue }
                    reported += 1
                    let incident = try #require(try daemon.ctl(["incident", "--format", "json", id]).json)
                    for other in article where Self.sameIncident(incident, other) {
                        Issue.record("\(source): \(words) reports the article's \(other["incident"]?.stringValue ?? "?") again, as \(id)")
                    }
                case "incident", "observe", "outcome":
                    guard arguments.count >= 2, arguments[1].wholeMatch(of: idPattern) != nil else { continue }
                    named += 1
                    let run = try daemon.ctl(arguments + ["--format", "json"])
                    #expect(run.status == 0, "\(source): \(words): \(run.stderr)")
                case "events" where !arguments.contains("--follow"):
                    let run = try daemon.ctl(arguments + ["--format", "json"])
                    #expect(run.status == 0, "\(source): \(words): \(run.stderr)")
                default:
                    continue
                }
            }
            // Ids in the prose too: every one that follows `incidentctl incident|observe|outcome` is in the log now.
            let prose = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            for match in prose.matches(of: #/incidentctl (?:incident|observe|outcome) ([a-z0-9][a-z0-9-]*)/#) {
                let id = String(match.output.1)
                let incident = try daemon.ctl(["incident", "--format", "json", id])
                #expect(incident.status == 0, "\(source) names \(id), which is not in the log: \(incident.stderr)")
            }
        }
        #expect(reported >= 3, "the first session's, report's and README's reports")
        #expect(named >= 8)
        #expect(daemon.stop() == 0)
    }

    /// Whether two incident documents may be the same incident: one city, one kind, and times that overlap as far
    /// as their precision knows them (the article dates some incidents only to the week).
    static func sameIncident(_ a: JSONValue, _ b: JSONValue) -> Bool {
        guard a["cityId"] == b["cityId"], a["current"]?["kind"] == b["current"]?["kind"],
            let (aStart, aEnd) = span(a), let (bStart, bEnd) = span(b)
        else { return false }
        return aStart < bEnd && bStart < aEnd
    }

    /// The microseconds an incident document's `occurredAt` may lie in, at its precision.
    static func span(_ incident: JSONValue) -> (Int64, Int64)? {
        guard let start = incident["occurredAt"]?.stringValue.flatMap(ParsedDate.parse)?.start.microseconds else { return nil }
        let days: Int64 = switch incident["precision"]?.stringValue.flatMap(Precision.init(rawValue:)) {
        case .week?: 7
        case .month?: 31
        default: 1
        }
        return (start, start + days * 86_400_000_000)
    }
}
