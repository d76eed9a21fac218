import Foundation
import StrictJSON
import Testing

/// `incidentctl` as a user meets it: exit statuses of SPEC §4, where the socket comes from, output formats,
/// help with examples, and the write commands.
@Suite("incidentctl")
struct CLITests {
    static let subcommands = ["report", "observe", "outcome", "append", "events", "incident", "incidents", "city", "cities", "status", "verify", "replay", "backup", "export"]

    @Test("a negative number is a value, not a flag: coordinates south and west are stored")
    func negativeNumbers() throws {
        let daemon = try Daemon()
        let reported = try daemon.ctl([
            "report", "--city", "Kupiansk", "--kind", "other", "--occurred", "2022-03-01", "--incident", "south-west",
            "--lat", "-33.7", "--lon", "-0.12", "--format", "json",
        ])
        #expect(reported.status == 0, "\(reported.stderr)")
        let incident = try #require(try daemon.ctl(["incident", "--format", "json", "south-west"]).json)
        #expect(incident["reportEvent"]?["data"]?["coordinates"] == ["lat": -33.7, "lon": -0.12])
        #expect(daemon.stop() == 0)
    }

    @Test("exit status 0 ok, 1 refused naming the code, 2 bad usage, 3 daemon unreachable")
    func exitStatuses() throws {
        let daemon = try Daemon()
        let ok = try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--incident", "kupiansk-1"])
        #expect(ok.status == 0, "\(ok.stderr)")

        for (arguments, code) in [
            (["report", "--city", "Melitopl", "--kind", "blockade", "--occurred", "2022-03-01"], "unknown_city"),
            (["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2999-01-01"], "invalid_event"),
            (["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-02", "--incident", "kupiansk-1"], "incident_exists"),
            (["observe", "nowhere-1", "--response", "none", "--by", "x"], "unknown_incident"),
            (["outcome", "nowhere-1", "--status", "dispersed"], "unknown_incident"),
            (["incident", "nowhere-1"], "unknown_incident"),
            (["city", "Atlantis"], "unknown_city"),
            (["events", "--city", "Atlantis"], "unknown_city"),
            (["events", "--incident", "nowhere-1"], "unknown_incident"),
        ] {
            let refused = try daemon.ctl(arguments)
            #expect(refused.status == 1, "\(arguments): \(refused.stderr)")
            #expect(refused.stderr.contains(code), "\(arguments) names \(code): \(refused.stderr)")
            #expect(refused.stdout.isEmpty, "\(arguments): \(refused.stdout)")
        }
        let unknownCity = try daemon.ctl(["report", "--city", "Melitopl", "--kind", "blockade", "--occurred", "2022-03-01"]).stderr
        #expect(unknownCity.contains("Melitopol"), "the suggestion reaches the user")
        // The flag the user can give, not the protocol's field.
        #expect(unknownCity.contains("(give --allow-new-city to add a new city)"), "\(unknownCity)")
        #expect(!unknownCity.contains("allowNewCity"), "\(unknownCity)")

        for arguments in [
            ["report", "--kind", "demonstration", "--occurred", "2022-03-01"],
            ["report", "--city", "Kupiansk", "--kind", "riot", "--occurred", "2022-03-01"],
            ["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--participants", "many"],
            ["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--participants", "200-100"],
            ["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--lat", "49.7"],
            ["observe", "kupiansk-1", "--by", "x"],
            ["outcome", "kupiansk-1", "--status", "dispersed", "--correct", "participants"],
            ["events", "--from", "-1"],
            ["observe", "kupiansk-1", "--by", "x", "--response", "none", "--killed", "-1"],
            ["observe", "kupiansk-1", "--by", "x", "--response", "none,tear-gas"],
            ["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--participants", "-5"],
            ["cities", "--format", "yaml"],
            ["append", "/nonexistent/events.jsonl"],
            ["no-such-command"],
        ] {
            let usage = try daemon.ctl(arguments)
            #expect(usage.status == 2, "\(arguments): \(usage.status) \(usage.stderr)")
            #expect(!usage.stderr.isEmpty, "\(arguments) explains itself")
        }
        let badFile = try daemon.ctl(["append", "-"], stdin: "{\"type\":\n")
        #expect(badFile.status == 2, "a file that is not JSON lines is bad usage: \(badFile.stderr)")
        #expect(try daemon.client().headPosition() == 1, "no refusal or bad usage stored anything")

        let missing = daemon.root + "/no-such.sock"
        for arguments in [["status"], ["cities"], ["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-02"]] {
            let unreachable = try daemon.ctl(arguments + ["--socket", missing])
            #expect(unreachable.status == 3, "\(arguments): \(unreachable.stderr)")
            #expect(unreachable.stderr.contains(missing), "names the socket: \(unreachable.stderr)")
        }
        // There, but no socket: said as such, not as a daemon that is not running.
        let file = daemon.root + "/afile"
        #expect(FileManager.default.createFile(atPath: file, contents: nil))
        for (path, what) in [(file, "a file"), (daemon.root, "a directory")] {
            let notSocket = try daemon.ctl(["status", "--socket", path])
            #expect(notSocket.status == 3, "\(path): \(notSocket.stderr)")
            #expect(
                notSocket.stderr.contains("cannot reach incidentd at \(path): it is \(what), not a socket; set --socket or INCIDENTD_SOCKET"),
                "\(notSocket.stderr)")
            #expect(!notSocket.stderr.contains("Connection refused"), "\(notSocket.stderr)")
        }
        daemon.stop()
        #expect(try daemon.ctl(["status"]).status == 3, "a stopped daemon is unreachable")
    }

    @Test("events --from 0 is taken as 1, as the protocol's read and subscribe take from 0: events and events --follow start at position 1; a negative --from is bad usage")
    func fromZero() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        let fromOne = try daemon.ctl(["events", "--format", "json", "--from", "1"])
        #expect(fromOne.status == 0 && fromOne.stdout.split(separator: "\n").count == 8, "\(fromOne.stdout)\(fromOne.stderr)")
        for arguments in [["events"], ["events", "--follow", "--limit", "8"]] {
            let fromZero = try daemon.ctl(arguments + ["--format", "json", "--from", "0"])
            #expect(fromZero.status == 0, "\(arguments): \(fromZero.stderr)")
            #expect(fromZero.stdout == fromOne.stdout, "\(arguments): \(fromZero.stdout)")
            #expect(fromZero.stderr.isEmpty, "\(arguments): \(fromZero.stderr)")
        }
        let negative = try daemon.ctl(["events", "--from", "-1"])
        #expect(negative.status == 2 && negative.stderr.contains("--from: 0 or more (positions start at 1, and 0 is taken as 1)"), "\(negative.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("--socket beats $INCIDENTD_SOCKET, which beats the default")
    func socketPrecedence() throws {
        let daemon = try Daemon()
        let missing = daemon.root + "/elsewhere.sock"
        let flagWins = try daemon.ctl(["status", "--socket", daemon.socketPath], environment: ["INCIDENTD_SOCKET": missing])
        #expect(flagWins.status == 0, "\(flagWins.stderr)")
        let flagWinsAgain = try daemon.ctl(["status", "--socket", missing], environment: ["INCIDENTD_SOCKET": daemon.socketPath])
        #expect(flagWinsAgain.status == 3)
        let environment = try daemon.ctl(["status"], environment: ["INCIDENTD_SOCKET": daemon.socketPath])
        #expect(environment.status == 0)
        let environmentMissing = try daemon.ctl(["status"], environment: ["INCIDENTD_SOCKET": missing])
        #expect(environmentMissing.status == 3)
        #expect(environmentMissing.stderr.contains(missing))

        // Set but empty is as if unset: the default socket, not the empty path.
        let empty = try daemon.ctl(["status"], environment: ["INCIDENTD_SOCKET": ""])
        #expect(
            empty.status == 0 || empty.stderr.hasPrefix("incidentctl: cannot reach incidentd at /run/incidentd/incidentd.sock: "),
            "\(empty.status) \(empty.stderr)")
        let help = try runCommand(Binaries.incidentctl, ["status", "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains("(default: $INCIDENTD_SOCKET if set and not empty, else /run/incidentd/incidentd.sock)"), "\(help)")
    }

    @Test("--socket and --timeout given before the command's name are the command's, in either form; anything else there is still refused")
    func connectionOptionsBeforeTheCommand() throws {
        let daemon = try Daemon()
        let missing = daemon.root + "/elsewhere.sock"
        let before = try daemon.ctl(["--socket", daemon.socketPath, "status"], environment: ["INCIDENTD_SOCKET": missing])
        #expect(before.status == 0 && before.json?["position"] != nil, "\(before.stderr)")
        let both = try daemon.ctl(["--timeout", "5", "--socket=\(daemon.socketPath)", "cities", "--format", "json"], environment: ["INCIDENTD_SOCKET": missing])
        #expect(both.status == 0 && both.json?.arrayValue != nil, "\(both.stderr)")
        // Taken, not passed over: the socket named before the command is the one it tries.
        let elsewhere = try daemon.ctl(["--socket", missing, "status"])
        #expect(elsewhere.status == 3 && elsewhere.stderr.contains(missing), "\(elsewhere.stderr)")
        for refused in [["--socket", daemon.socketPath], ["--socket"], ["--format", "json", "status"], ["--socket", daemon.socketPath, "--format", "json", "status"]] {
            let result = try daemon.ctl(refused)
            #expect(result.status == 2 && result.stderr.contains("Unknown option"), "\(refused): \(result.stderr)")
        }
    }

    @Test("--format json prints JSON, --format table a table, and JSON is the default off a terminal")
    func formats() throws {
        let daemon = try Daemon()
        #expect(try daemon.ctl(["append", Repository.articlePath]).status == 0)

        let statusJSON = try daemon.ctl(["status", "--format", "json"])
        #expect(statusJSON.json?["position"]?.intValue == 8)
        #expect(statusJSON.json?["headHash"]?.stringValue?.utf8.count == 64)
        let statusTable = try daemon.ctl(["status", "--format", "table"])
        #expect(statusTable.json == nil)
        #expect(statusTable.stdout.contains("position:") && statusTable.stdout.contains("head hash:"), "\(statusTable.stdout)")
        let statusDefault = try daemon.ctl(["status"])
        #expect(statusDefault.json?["position"]?.intValue == 8, "JSON when stdout is not a terminal")

        let citiesTable = try daemon.ctl(["cities", "--format", "table"])
        let lines = citiesTable.stdout.split(separator: "\n")
        #expect(lines.count == 4, "\(citiesTable.stdout)")
        #expect(lines.first?.hasPrefix("CITY") == true)
        #expect(lines.dropFirst().map { $0.split(separator: " ").first } == ["berdiansk", "kupiansk", "melitopol"])
        #expect(lines.dropFirst().map { $0.split(separator: " ")[5] } == ["-", "150", "-"], "no count known is not 0: \(citiesTable.stdout)")

        let cityTable = try daemon.ctl(["city", "--format", "table", "Куп'янськ"])
        #expect(cityTable.stdout.contains("Kupiansk (kupiansk)"), "\(cityTable.stdout)")
        #expect(cityTable.stdout.contains("UA-63") && cityTable.stdout.contains("26262"))
        #expect(cityTable.stdout.contains("participants:   150, from its incident\n"), "the sums say what they cover: \(cityTable.stdout)")
        let noCount = try daemon.ctl(["city", "--format", "table", "Berdiansk"]).stdout
        #expect(noCount.contains("participants:   no count (none of its 2 incidents gives one)\n"), "rather than 0: \(noCount)")

        let incidentTable = try daemon.ctl(["incident", "--format", "table", "melitopol-2022-03-01-convoy-blockade"])
        #expect(incidentTable.stdout.contains("blockade") && incidentTable.stdout.contains("VERSION"), "\(incidentTable.stdout)")

        let eventsJSON = try daemon.ctl(["events", "--format", "json"])
        let eventLines = eventsJSON.stdout.split(separator: "\n")
        #expect(eventLines.count == 8, "one JSON object per line")
        for line in eventLines { #expect((try? JSONReader().read(String(line)))?["hash"] != nil) }
        let eventsTable = try daemon.ctl(["events", "--format", "table", "--city", "Berdyansk"])
        #expect(eventsTable.stdout.split(separator: "\n").count == 3, "\(eventsTable.stdout)")
        #expect(eventsTable.stdout.hasPrefix("POSITION"))
        let filtered = try daemon.ctl(["events", "--format", "json", "--type", "response-observed"])
        #expect(filtered.stdout.split(separator: "\n").compactMap { try? JSONReader().read(String($0))["position"]?.intValue } == [2, 5])
        let limited = try daemon.ctl(["events", "--format", "json", "--from", "4", "--limit", "2"])
        #expect(limited.stdout.split(separator: "\n").compactMap { try? JSONReader().read(String($0))["position"]?.intValue } == [4, 5])

        let verifyTable = try daemon.ctl(["verify", "--format", "table"])
        #expect(verifyTable.status == 0)
        #expect(verifyTable.stdout.contains("intact: 8 events"), "\(verifyTable.stdout)")
        let verifyJSON = try daemon.ctl(["verify", "--format", "json"])
        #expect(verifyJSON.json?["intact"] == true)
    }

    @Test("--help of every subcommand exits 0 and shows an example")
    func help() throws {
        for subcommand in Self.subcommands {
            let help = try runCommand(Binaries.incidentctl, [subcommand, "--help"])
            #expect(help.status == 0, "\(subcommand) --help: \(help.stderr)")
            #expect(help.stdout.contains("Example"), "\(subcommand) --help shows an example")
            #expect(help.stdout.contains("incidentctl \(subcommand) "), "\(subcommand) --help shows a command line")
            // A line of the source's text that lost its `\` leaves a run of spaces inside a sentence.
            let runs = help.stdout.split(separator: "\n").filter { $0.trimmingCharacters(in: .whitespaces).contains("    ") }
            #expect(runs.filter { !$0.hasPrefix("  ") }.isEmpty, "\(subcommand) --help: \(runs)")
        }
        let top = try runCommand(Binaries.incidentctl, ["--help"])
        #expect(top.status == 0)
        for subcommand in Self.subcommands { #expect(top.stdout.contains(subcommand)) }
    }

    @Test("incidentctl with no command is bad usage (exit 2, the help on stderr); a command mistyped is refused with the nearest command's name; incidentd --help states its exit statuses (QA pass 12)")
    func noOrMistypedCommand() throws {
        let bare = try runCommand(Binaries.incidentctl, [])
        #expect(bare.status == 2, "\(bare)")
        #expect(bare.stdout.isEmpty, "\(bare.stdout)")
        #expect(bare.stderr.contains("USAGE: incidentctl") && bare.stderr.contains("give a command, such as incidentctl status"), "\(bare.stderr)")
        for (typed, meant) in [("citties", "cities"), ("verfy", "verify"), ("Status", "status"), ("exprot", "export")] {
            let mistyped = try runCommand(Binaries.incidentctl, [typed, "--format", "json"])
            #expect(mistyped.status == 2, "\(typed): \(mistyped)")
            #expect(mistyped.stderr.contains("Unexpected argument '\(typed)': no command is called so; did you mean '\(meant)'?"), "\(typed): \(mistyped.stderr)")
        }
        let far = try runCommand(Binaries.incidentctl, ["frobnicate"])
        #expect(far.status == 2 && !far.stderr.contains("did you mean"), "\(far.stderr)")
        let daemonHelp = try runCommand(Binaries.incidentd, ["--help"])
        #expect(daemonHelp.status == 0)
        let statuses = daemonHelp.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for status in ["Exit status: 0 stopped by SIGTERM", "1 a failure a restart may get past", "64 a command line", "74 the disk failed", "78 a setting"] {
            #expect(statuses.contains(status), "\(status): \(daemonHelp.stdout)")
        }
    }

    @Test("a verification without a --source, or two that disagree, is bad usage that says what to do, and stores nothing; the help says what each verification flag sets")
    func verificationFlags() throws {
        let daemon = try Daemon()
        let report = ["report", "--city", "Kupiansk", "--kind", "other", "--occurred", "2022-03-01"]
        for (arguments, says) in [
            (report + ["--verification", "verified", "--incident", "src-3"],
             "--verification sets how far each --source is verified, and no --source was given: add --source NAME"),
            (report + ["--source-verification", "verified", "--incident", "src-4"],
             "--source-verification describes the --source written before it, and no --source was given: add --source NAME"),
            (report + ["--source", "A", "--verification", "verified", "--source-verification", "disputed", "--incident", "src-5"],
             "--verification verified sets how far every --source is verified, and --source-verification disputed says otherwise for one of them: give one of them"),
            (report + ["--source", "A", "--source", "B", "--source", "C", "--source-verification", "verified", "--source-verification", "debunked", "--incident", "src-5"],
             "--source-verification given twice for --source 'C' ('verified' and 'debunked')"),
        ] {
            let usage = try daemon.ctl(arguments)
            #expect(usage.status == 2, "\(arguments): \(usage.status) \(usage.stderr)")
            #expect(usage.stderr.contains(says), "\(arguments): \(usage.stderr)")
            #expect(usage.stdout.isEmpty, "\(arguments): \(usage.stdout)")
        }
        #expect(try daemon.client().headPosition() == 0, "bad usage stored nothing")

        let verified = try daemon.ctl(report + ["--source", "A", "--source", "B", "--verification", "verified", "--incident", "src-6"])
        #expect(verified.status == 0, "\(verified.stderr)")
        let same = try daemon.ctl(
            report + ["--source", "C", "--verification", "disputed", "--source-verification", "disputed", "--incident", "src-7"])
        #expect(same.status == 0, "the same status twice is no conflict: \(same.stderr)")
        let each = try daemon.ctl(
            report + ["--source", "D", "--source-verification", "verified", "--source", "E", "--source-verification", "debunked", "--incident", "src-8"])
        #expect(each.status == 0, "one for each source: \(each.stderr)")
        for (incident, sources) in [
            ("src-6", [["name": "A", "verification": "verified"], ["name": "B", "verification": "verified"]] as JSONValue),
            ("src-7", [["name": "C", "verification": "disputed"]]),
            ("src-8", [["name": "D", "verification": "verified"], ["name": "E", "verification": "debunked"]]),
        ] {
            let stored = try #require(try daemon.ctl(["incident", "--format", "json", incident]).json)
            #expect(stored["reportEvent"]?["sources"] == sources, "\(stored)")
        }
        for (incident, sources, verification) in [
            ("src-6", [["name": "A", "verification": "verified"], ["name": "B", "verification": "verified"]] as JSONValue, "verified"),
            ("src-7", [["name": "C", "verification": "disputed"]], "disputed"),
        ] {
            let stored = try #require(try daemon.ctl(["incident", "--format", "json", incident]).json)
            #expect(stored["reportEvent"]?["sources"] == sources, "\(stored)")
            #expect(stored["verification"]?.stringValue == verification, "\(stored)")
        }

        for arguments in [
            ["observe", "src-6", "--by", "x", "--response", "none", "--source-verification", "verified"],
            ["outcome", "src-6", "--status", "dispersed", "--source-verification", "verified"],
        ] {
            let usage = try daemon.ctl(arguments)
            #expect(usage.status == 2, "\(arguments): \(usage.stderr)")
            #expect(usage.stderr.contains("no --source was given: add --source NAME"), "\(arguments): \(usage.stderr)")
        }
        // An outcome's own --verification is the incident's, and needs no source.
        let outcome = try daemon.ctl(["outcome", "src-7", "--status", "dispersed", "--verification", "verified"])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(try daemon.ctl(["incident", "--format", "json", "src-7"]).json?["verification"] == "verified")
        #expect(try daemon.client().headPosition() == 4)

        func help(_ command: String) throws -> String {
            try runCommand(Binaries.incidentctl, [command, "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        let reportHelp = try help("report")
        #expect(reportHelp.contains("--verification <status> How far every --source is verified"))
        #expect(reportHelp.contains("(as --source-verification after each; needs --source)"))
        #expect(reportHelp.contains("--source-verification <status> How far the --source written before it is verified"))
        #expect(try help("observe").contains("--source-verification <status> How far the --source written before it is verified"))
        let outcomeHelp = try help("outcome")
        #expect(outcomeHelp.contains("--verification <status> How far the incident itself is verified from this outcome on"))
        #expect(outcomeHelp.contains("--source-verification <status> How far the --source written before it is verified"))
        #expect(daemon.stop() == 0)
    }

    @Test("a --source-url, --verified-by, --source-method or --source-sha256 with no --source, or two for one source, is bad usage naming it")
    func sourceDetailCounts() throws {
        let report = ["report", "--city", "Kupiansk", "--kind", "other", "--occurred", "2022-03-01", "--socket", "/nonexistent.sock"]
        for (arguments, says) in [
            (["--source-url", "https://example.org/1"],
             "--source-url describes the --source written before it, and no --source was given: add --source NAME (who said it) before it"),
            (["--source", "A", "--verified-by", "B", "--verified-by", "C"], "--verified-by given twice for --source 'A' ('B' and 'C')"),
            (["--source", "A", "--source", "B", "--source-method", "m", "--source-method", "m", "--source-method", "m"],
             "--source-method given twice for --source 'B'"),
        ] {
            let usage = try runCommand(Binaries.incidentctl, report + arguments)
            #expect(usage.status == 2, "\(arguments): \(usage.stderr)")
            #expect(usage.stderr.contains(says), "\(arguments): \(usage.stderr)")
        }
        let outcome = try runCommand(
            Binaries.incidentctl, ["outcome", "x", "--status", "unknown", "--source-verified-by", "B", "--socket", "/nonexistent.sock"])
        #expect(outcome.status == 2)
        #expect(
            outcome.stderr.contains("--source-verified-by describes the --source written before it, and no --source was given"),
            "\(outcome.stderr)")
    }

    @Test("--source-sha256 is bad usage (exit 2, naming the option) exactly where the daemon refuses a source's sha256 as invalid_event, and stored in lower case where it takes it")
    func sourceSHA256IsCheckedAsTheDaemonDoes() throws {
        let daemon = try Daemon()
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        let candidates = [
            hex, hex.uppercased(), "abc", String(hex.dropLast()), hex + "0", String(hex.dropLast()) + "g", String(hex.dropLast()) + " ",
            " " + String(hex.dropFirst()), String(hex.dropLast()) + "\u{FF41}",
        ]
        for (n, hash) in candidates.enumerated() {
            let source: JSONValue = ["name": "archive", "verification": "unverified", "sha256": .string(hash)]
            let wire = Wire.setting(Wire.report(incident: "wire-\(n)"), "sources", [source])
            let answer = try daemon.client().appendEvents([wire])
            let daemonTakes = answer.isOK
            #expect(daemonTakes || answer.errorCode == "invalid_event", "\(hash): \(answer)")
            let run = try daemon.ctl([
                "report", "--city", "Kupiansk", "--kind", "other", "--occurred", "2022-03-01", "--incident", "cli-\(n)",
                "--source", "archive", "--source-sha256", hash, "--format", "json",
            ])
            if daemonTakes {
                #expect(run.status == 0, "\(hash): the daemon takes it: \(run.stderr)")
                let stored = try daemon.ctl(["events", "--incident", "cli-\(n)", "--format", "json"]).json
                #expect(stored?["sources"]?.arrayValue?.first?["sha256"]?.stringValue == hash.lowercased(), "\(hash): \(String(describing: stored))")
            } else {
                #expect(run.status == 2, "\(hash): the daemon refuses it: \(run.status) \(run.stderr)")
                #expect(run.stderr.contains("--source-sha256: '\(hash)' is not a SHA-256: expected 64 hexadecimal digits"), "\(hash): \(run.stderr)")
            }
        }
        #expect(try daemon.ctl(["status", "--format", "json"]).json?["position"]?.intValue == 4, "two taken each way")
        #expect(daemon.stop() == 0)
    }

    @Test("report and observe given outcome's --source-verified-by are bad usage that names --verified-by; each command's help says which option is whose")
    func sourceVerifierOptionNamedEachWay() throws {
        let common = ["--source", "A", "--source-verified-by", "B", "--socket", "/nonexistent.sock"]
        for arguments in [
            ["report", "--city", "Kupiansk", "--kind", "other", "--occurred", "2022-03-01"] + common,
            ["observe", "k-1", "--by", "x", "--response", "none"] + common,
        ] {
            let usage = try runCommand(Binaries.incidentctl, arguments)
            #expect(usage.status == 2, "\(arguments): \(usage)")
            #expect(
                usage.stderr.contains("--source-verified-by is outcome's name for who verified a --source; here it is --verified-by"),
                "\(arguments): \(usage.stderr)")
        }
        func help(_ command: String) throws -> String {
            try runCommand(Binaries.incidentctl, [command, "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        for command in ["report", "observe"] {
            let text = try help(command)
            #expect(text.contains("--verified-by <who> Who verified the --source written before it. outcome calls this --source-verified-by, its own --verified-by being who verified the incident."), "\(command): \(text)")
            #expect(!text.contains("--source-verified-by <who>"), "\(command): \(text)")
        }
        let outcome = try help("outcome")
        #expect(outcome.contains("--verified-by <verified-by> Who verified the incident itself (with --verification). Who verified a --source is --source-verified-by here (--verified-by in report and observe)."), "\(outcome)")
        #expect(outcome.contains("--source-verified-by <who> Who verified the --source written before it; report and observe call this --verified-by, which here is who verified the incident."), "\(outcome)")
    }

    @Test("a socket path that is empty is bad usage; one through a file says a part of it is not a directory; a gazetteer that is a directory says so")
    func pathsThatCannotBe() throws {
        let root = makeTemporaryDirectory("incidentd-paths")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "not a directory".write(toFile: root + "/file", atomically: true, encoding: .utf8)
        let empty = try runCommand(Binaries.incidentctl, ["status", "--socket", ""])
        #expect(empty.status == 2 && empty.stderr.contains("--socket: the socket path is empty"), "\(empty)")
        let through = try runCommand(Binaries.incidentctl, ["status", "--socket", root + "/file/sock"])
        #expect(
            through.status == 3 && through.stderr.contains("a part of the path before the socket is not a directory"), "\(through)")
        #expect(mkdir(root + "/log", 0o700) == 0)
        let replay = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", root + "/log", "--gazetteer", root])
        #expect(replay.status != 0 && replay.stderr.contains("\(root): is a directory, not a gazetteer file"), "\(replay)")
    }

    @Test("replay or verify --data-dir that holds no log says so once, naming the directory and why: a file given for the directory, or on the way to it, is no directory, and a data.mdb given is in the directory to give")
    func replayWithoutLog() throws {
        let root = makeTemporaryDirectory("incidentd-replay")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "not a directory".write(toFile: root + "/file", atomically: true, encoding: .utf8)
        #expect(mkdir(root + "/log", 0o700) == 0)
        try "not read".write(toFile: root + "/log/data.mdb", atomically: true, encoding: .utf8)
        #expect(mkdir(root + "/odd", 0o700) == 0 && mkdir(root + "/odd/data.mdb", 0o700) == 0)
        for (dir, says) in [
            (root + "/missing", "cannot open the log in \(root)/missing: there is no such directory"),
            (root, "cannot open the log in \(root): it holds no incident log (no data.mdb)"),
            (root + "/file",
             "cannot open the log in \(root)/file: it is a file, not a directory; give the directory that holds the log's data.mdb"),
            (root + "/file/data",
             "cannot open the log in \(root)/file/data: \(root)/file is a file, not a directory; give the directory that holds the log's data.mdb"),
            (root + "/log/data.mdb",
             "cannot open the log in \(root)/log/data.mdb: it is a log's data file, not its directory: the data directory is the one that holds it, \(root)/log"),
            ("", "the data directory path is empty; give the directory that holds the log's data.mdb"),
            (root + "/odd", "cannot open the log in \(root)/odd: \(root)/odd/data.mdb is not a file (a log's data.mdb is one)"),
        ] {
            for command in ["replay", "verify"] {
                let run = try runCommand(Binaries.incidentctl, [command, "--data-dir", dir])
                #expect(run.status == 2, "\(command) \(dir): \(run.stderr)")
                #expect(run.stderr == "incidentctl: \(says)\n", "\(command) \(dir)")
                #expect(run.stdout.isEmpty)
            }
        }
    }

    @Test(
        "report, observe and outcome whose daemon goes away after the event was sent: exit 3, saying it may or may not be stored and naming the event id it was sent with (the --event-id given, or one chosen for it); the same command run again with that --event-id stores the event once",
        StorageFaults.required)
    func writeWithoutAnswer() throws {
        let library = try #require(StorageFaults.library)
        let root = makeTemporaryDirectory()
        let stall = root + "/stall-syncs"
        let daemon = try Daemon(root: root, environment: ["LD_PRELOAD": library, "INCIDENTD_STALL_SYNCS": stall])
        #expect(try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01", "--incident", "k-1"]).status == 0)
        let givenId = "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"
        let cases: [(arguments: [String], given: String?)] = [
            (["report", "--city", "Kup'yansk", "--kind", "strike", "--occurred", "2022-03-02"], nil),
            (["observe", "k-1", "--response", "detentions", "--by", "Rosgvardia"], nil),
            (["outcome", "k-1", "--status", "suppressed", "--event-id", givenId], givenId),
        ]
        for (arguments, given) in cases {
            let before = try daemon.client().headPosition()
            // Every commit waits in fdatasync: the event is sent, and no answer comes before the daemon is killed.
            #expect(FileManager.default.createFile(atPath: stall, contents: nil))
            let out = daemon.root + "/out", err = daemon.root + "/err"
            let stdout = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644), stderr = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
            let command = try ChildProcess(
                Binaries.incidentctl, arguments + ["--socket", daemon.socketPath], environment: ProcessInfo.processInfo.environment,
                stdin: null, stdout: stdout, stderr: stderr)
            [stdout, stderr, null].forEach { close($0) }
            try waitForAnswerWait(of: command.pid)
            daemon.crash()
            try FileManager.default.removeItem(atPath: stall)
            #expect(command.wait() == 3, "\(arguments)")
            let said = readFile(err) ?? ""
            #expect(said.contains("after the event was sent: it may or may not be stored"), "\(said)")
            #expect(readFile(out) == "")
            let eventId: String
            if let given {
                #expect(said.contains("send it again with the same --event-id \(given): it is never stored twice"), "\(said)")
                eventId = given
            } else {
                let pattern = try Regex("It was sent with the event id ([0-9a-f-]{36}): once incidentd is back, run the same command again with --event-id ([0-9a-f-]{36}) added")
                let match = try #require(said.firstMatch(of: pattern), "\(said)")
                let named = try #require(match.output[1].substring), again = try #require(match.output[2].substring)
                #expect(named == again)
                eventId = String(named)
            }
            try daemon.start()
            // Run again as told: stored once, whether or not the first was stored before the daemon died.
            let retry = try daemon.ctl(arguments + (given == nil ? ["--event-id", eventId] : []))
            #expect(retry.status == 0, "\(arguments): \(retry.stderr)")
            #expect(try daemon.client().headPosition() == before + 1, "\(arguments)")
            if arguments[0] == "report" {
                #expect(retry.stdout.contains(#""incident":"kupiansk-2022-03-02-strike""#), "no second incident (-2): \(retry.stdout)")
            }
        }
        #expect(daemon.stop() == 0)
    }

    @Test("outcome --correct coordinates=LAT,LON corrects where the incident was (a geolocation), south and west negative; a malformed pair is bad usage")
    func correctCoordinates() throws {
        let daemon = try Daemon()
        let report = try daemon.ctl(["report", "--city", "Melitopol", "--kind", "blockade", "--occurred", "2022-03-01", "--incident", "placed"])
        #expect(report.status == 0, "\(report.stderr)")
        let outcome = try daemon.ctl([
            "outcome", "placed", "--status", "unknown", "--verification", "verified", "--method", "geolocation",
            "--correct", "coordinates=46.8421,35.3655",
        ])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let incident = try #require(try daemon.ctl(["incident", "--format", "json", "placed"]).json)
        #expect(incident["current"]?["coordinates"] == ["lat": 46.8421, "lon": 35.3655], "\(incident)")
        #expect(try daemon.ctl(["outcome", "placed", "--status", "unknown", "--correct", "coordinates=-33.7,-0.12"]).status == 0)
        #expect(try daemon.ctl(["incident", "--format", "json", "placed"]).json?["current"]?["coordinates"] == ["lat": -33.7, "lon": -0.12])
        for value in ["coordinates=46.8", "coordinates=north,east", "coordinates=1,2,3"] {
            let usage = try daemon.ctl(["outcome", "placed", "--status", "unknown", "--correct", value])
            #expect(usage.status == 2 && usage.stderr.contains("coordinates=LAT,LON"), "\(value): \(usage.stderr)")
        }
        #expect(try daemon.client().headPosition() == 3)
        #expect(try daemon.ctl(["outcome", "--help"]).stdout.contains("coordinates=LAT,LON"))
        #expect(daemon.stop() == 0)
    }

    @Test("report prints the incident id and position; observe and outcome add to the incident")
    func writeCommands() throws {
        let daemon = try Daemon()
        let report = try daemon.ctl([
            "report", "--city", "Melitopoli", "--kind", "blockade", "--occurred", "2022-03-01", "--participants", "5-30",
            "--location", "Bohdana Khmelnytskoho Avenue", "--target", "convoy of 12 military vehicles", "--target", "a tank",
            "--tag", "convoy", "--lat", "46.8489", "--lon", "35.3675", "--description", "residents stopped a convoy",
            "--source", "Les Révélateurs de France Télévisions", "--source-url", "https://example.org/video",
            "--verified-by", "Les Révélateurs", "--source-verification", "verified", "--format", "table",
        ])
        #expect(report.status == 0, "\(report.stderr)")
        #expect(report.stdout == "melitopol-2022-03-01-blockade at position 1\n")

        let named = try daemon.ctl([
            "report", "--city", "Berdyans'k", "--kind", "demonstration", "--occurred", "2022-02-28T10:15+02:00",
            "--incident", "berdiansk-go-home", "--participants", "40", "--format", "json",
        ])
        #expect(named.json == ["incident": "berdiansk-go-home", "position": 2])

        let observe = try daemon.ctl([
            "observe", "melitopol-2022-03-01-blockade", "--response", "warning-shots", "--response", "detentions,beatings",
            "--by", "Russian armed forces", "--killed", "0", "--injured", "2", "--detained", "3", "--format", "table",
        ])
        #expect(observe.status == 0, "\(observe.stderr)")
        #expect(observe.stdout == "melitopol-2022-03-01-blockade at position 3\n")

        let outcome = try daemon.ctl([
            "outcome", "melitopol-2022-03-01-blockade", "--status", "objective-achieved", "--verification", "verified",
            "--verified-by", "Les Révélateurs", "--method", "geolocation", "--note", "the convoy turned back",
            "--correct", "participants=20-50", "--correct", "location=city centre", "--format", "json",
        ])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.json == ["incident": "melitopol-2022-03-01-blockade", "position": 4])

        let incident = try #require(try daemon.ctl(["incident", "--format", "json", "melitopol-2022-03-01-blockade"]).json)
        let reported = incident["reportEvent"]
        #expect(reported?["data"]?["city"]?.stringValue == "Melitopoli")
        #expect(reported?["data"]?["cityId"]?.stringValue == "melitopol")
        #expect(reported?["data"]?["participants"] == ["low": 5, "high": 30])
        #expect(reported?["data"]?["targets"]?.stringValue == "convoy of 12 military vehicles; a tank")
        #expect(reported?["data"]?["tags"] == ["convoy"])
        #expect(reported?["data"]?["coordinates"] == ["lat": 46.8489, "lon": 35.3675])
        #expect(reported?["precision"]?.stringValue == "day")
        #expect(reported?["sources"] == [[
            "name": "Les Révélateurs de France Télévisions", "url": "https://example.org/video",
            "verifiedBy": "Les Révélateurs", "verification": "verified",
        ]])
        let response = incident["responseHistory"]?.arrayValue?.first
        #expect(response?["data"] == [
            "by": "Russian armed forces", "responses": ["warning-shots", "detentions", "beatings"], "killed": 0, "injured": 2,
            "detained": 3,
        ])
        #expect(incident["latestOutcome"]?["data"] == [
            "status": "objective-achieved", "verification": "verified", "verifiedBy": "Les Révélateurs",
            "method": "geolocation", "note": "the convoy turned back",
            "corrections": ["participants": ["low": 20, "high": 50], "location": "city centre"],
        ])
        #expect(incident["status"]?.stringValue == "objective-achieved")
        #expect(incident["verification"]?.stringValue == "verified")
        #expect(incident["current"]?["participants"] == ["low": 20, "high": 50])
        #expect(incident["current"]?["location"]?.stringValue == "city centre")
        #expect(incident["casualties"] == ["killed": 0, "injured": 2, "detained": 3])
        let city = try #require(try daemon.ctl(["city", "--format", "json", "Melitopol"]).json)
        #expect(city["openIncidents"]?.intValue == 0)
        #expect(city["outcomes"]?["objective-achieved"]?.intValue == 1)
        #expect(city["participants"] == ["low": 20, "high": 50, "counted": 1])

        // append from standard input, atomic per batch: a refused line names itself and its batch stores nothing.
        let lines = [
            Wire.report(incident: "kupiansk-batch-1").canonicalString(),
            "# a comment",
            "",
            Wire.response(incident: "kupiansk-batch-1").canonicalString(),
            Wire.response(incident: "kupiansk-nowhere").canonicalString(),
        ].joined(separator: "\n")
        let refused = try daemon.ctl(["append", "-", "--format", "json"], stdin: lines + "\n")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("unknown_incident") && refused.stderr.contains("-:5: incident kupiansk-nowhere"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("event 2"), "the line named, not the event's index in its batch: \(refused.stderr)")
        #expect(refused.json?["events"]?.intValue == 0)
        let small = try daemon.ctl(["append", "-", "--batch-size", "1", "--format", "json"], stdin: lines + "\n")
        #expect(small.status == 1, "the last batch of one is refused")
        #expect(small.json?["refused"]?["code"]?.stringValue == "unknown_incident", "the summary says what stopped it: \(small.stdout)")
        var stored = small.json?.objectValue
        stored?.removeValue(forKey: "refused")
        #expect(stored.map(JSONValue.object) == ["events": 2, "new": 2, "alreadyStored": 0, "firstPosition": 5, "lastPosition": 6])
    }

    @Test("outcome --correct or --remove given twice for one field is bad usage naming the field and the option, as a repeated --response is; nothing is stored")
    func repeatedCorrection() throws {
        let daemon = try Daemon()
        let report = try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--incident", "kupiansk-1"])
        #expect(report.status == 0, "\(report.stderr)")
        for corrections in [["participants=5", "participants=6"], ["location=the square", "tags=a", "location=the station"]] {
            let twice = try daemon.ctl(["outcome", "kupiansk-1", "--status", "unknown"] + corrections.flatMap { ["--correct", $0] })
            #expect(twice.status == 2, "\(corrections): \(twice.stderr)")
            let field = corrections[0].prefix { $0 != "=" }
            #expect(twice.stderr.contains("--correct: \(field) is given twice; correct each field once"), "\(twice.stderr)")
        }
        for removals in [["tags", "tags"], ["location", "tags", "location"]] {
            let twice = try daemon.ctl(["outcome", "kupiansk-1", "--status", "unknown"] + removals.flatMap { ["--remove", $0] })
            #expect(twice.status == 2, "\(removals): \(twice.stderr)")
            #expect(twice.stderr.contains("Error: --remove: \(removals[0]) is given twice; remove each field once"), "\(twice.stderr)")
            #expect(!twice.stderr.contains("--correct gives it a value"), "no --correct was given: \(twice.stderr)")
        }
        #expect(try daemon.client().headPosition() == 1, "nothing was sent")
        let once = try daemon.ctl(["outcome", "kupiansk-1", "--status", "unknown", "--correct", "participants=6", "--correct", "location=x"])
        #expect(once.status == 0, "\(once.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("outcome --verified-by or --method without --verification is bad usage that says so; with it, both are stored")
    func verifiedByNeedsVerification() throws {
        let daemon = try Daemon()
        let report = try daemon.ctl(["report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--incident", "kupiansk-1"])
        #expect(report.status == 0, "\(report.stderr)")
        for (arguments, flag) in [
            (["--verified-by", "Les Révélateurs"], "--verified-by"), (["--method", "geolocation"], "--method"),
            (["--verified-by", "Les Révélateurs", "--method", "geolocation"], "--verified-by"),
        ] {
            let alone = try daemon.ctl(["outcome", "kupiansk-1", "--status", "unknown"] + arguments)
            #expect(alone.status == 2, "\(arguments): \(alone.stderr)")
            #expect(alone.stderr.contains("\(flag) says who verified the incident or how, and goes with --verification"), "\(alone.stderr)")
            #expect(!alone.stderr.contains("--source-"), "no --source was given: \(alone.stderr)")
        }
        // With a --source, as `report` takes --verified-by for its sources: the outcome's flag for them is named.
        let withSource = try daemon.ctl(["outcome", "kupiansk-1", "--status", "unknown", "--source", "Les Révélateurs", "--verified-by", "AFP"])
        #expect(withSource.status == 2, "\(withSource.stderr)")
        #expect(withSource.stderr.contains("who verified a --source is --source-verified-by for an outcome"), "\(withSource.stderr)")
        #expect(try daemon.client().headPosition() == 1, "nothing was sent")
        let verified = try daemon.ctl([
            "outcome", "kupiansk-1", "--status", "unknown", "--verification", "verified", "--verified-by", "Les Révélateurs",
            "--method", "geolocation", "--format", "json",
        ])
        #expect(verified.status == 0, "\(verified.stderr)")
        let incident = try daemon.ctl(["incident", "kupiansk-1", "--format", "json"]).json
        #expect(incident?["verification"]?.stringValue == "verified", "\(String(describing: incident))")
        #expect(daemon.stop() == 0)
    }

    @Test("--correct tags= takes a JSON array of strings, each a tag exactly, so a tag with a comma survives a correction; the comma-separated form still splits; an array that is not one of strings is bad usage (QA pass 10)")
    func correctTagsExactly() throws {
        let daemon = try Daemon()
        let report = try daemon.ctl([
            "report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--incident", "tags-1",
            "--tag", "Kupiansk, market", "--tag", "night",
        ])
        #expect(report.status == 0, "\(report.stderr)")
        func tags() throws -> JSONValue? { try daemon.ctl(["incident", "tags-1", "--format", "json"]).json?["current"]?["tags"] }
        #expect(try tags() == ["Kupiansk, market", "night"])

        let exact = try daemon.ctl(["outcome", "tags-1", "--status", "unknown", "--correct", #"tags=["Kupiansk, market","night","flags"]"#])
        #expect(exact.status == 0, "\(exact.stderr)")
        #expect(try tags() == ["Kupiansk, market", "night", "flags"])
        let split = try daemon.ctl(["outcome", "tags-1", "--status", "unknown", "--correct", "tags=a,b"])
        #expect(split.status == 0, "\(split.stderr)")
        #expect(try tags() == ["a", "b"])

        for (value, says) in [
            (#"tags=["a",1]"#, #"--correct tags=["a",1]: a JSON array of strings, each a tag, as tags=["a,b","c"]"#),
            ("tags=[draft", #"is read as a JSON array of strings, as tags=["a,b","c"], and this one is not JSON"#),
        ] {
            let usage = try daemon.ctl(["outcome", "tags-1", "--status", "unknown", "--correct", value])
            #expect(usage.status == 2 && usage.stderr.contains(says), "\(value): \(usage.status) \(usage.stderr)")
        }
        #expect(try tags() == ["a", "b"], "bad usage stored nothing")
        let help = try runCommand(Binaries.incidentctl, ["outcome", "--help"]).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(help.contains(#"or a JSON array of strings, each a tag exactly, for tags with commas in them: tags='["Kupiansk, market","night"]'"#), "\(help)")
        #expect(daemon.stop() == 0)
    }

    @Test("an empty or blank city name is bad usage naming the argument, as an empty incident id is, where the daemon answered unknown_city (QA pass 10)")
    func blankCityName() throws {
        let daemon = try Daemon()
        for (arguments, says) in [
            (["city", ""], "the city name: empty: give a city, in any spelling"),
            (["city", "   "], "the city name: only whitespace: give a city, in any spelling"),
            (["city", "\t"], "the city name: only whitespace"),
            (["events", "--city", ""], "--city: empty: give a city, in any spelling"),
            (["events", "--follow", "--city", " "], "--city: only whitespace"),
            (["report", "--city", "", "--kind", "strike", "--occurred", "2022-03-01"], "--city: empty: give a city"),
            (["report", "--city", "  ", "--kind", "strike", "--occurred", "2022-03-01", "--allow-new-city"], "--city: only whitespace"),
        ] {
            let usage = try daemon.ctl(arguments)
            #expect(usage.status == 2 && usage.stderr.contains(says), "\(arguments): \(usage.status) \(usage.stderr)")
        }
        #expect(try daemon.ctl(["city", "Kupiansk"]).status != 2, "a name is the daemon's to look up")
        #expect(daemon.stop() == 0)
    }
}
