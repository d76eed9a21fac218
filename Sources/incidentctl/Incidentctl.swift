import ArgumentParser
import CShims
import Gazetteer
#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// `incidentctl`: the command-line client of incidentd.
@main
struct Incidentctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incidentctl",
        abstract: "Append to, query and check the incident log served by incidentd.",
        discussion: """
            Every command talks to the daemon over its Unix socket: --socket (before the command's name or after \
            it), else $INCIDENTD_SOCKET (unless it is empty), else \
            /run/incidentd/incidentd.sock. Queries print a table on a terminal and JSON otherwise (--format).

            A first session, on the log that `make run` starts with the article's incidents \
            (examples/article.jsonl): a new incident, not one of the article's, under an id of its own; how a \
            force answered it; the incident, its city, and the city's events.
              incidentctl report --city "Kup'yansk" --kind demonstration \\
                  --occurred 2022-03-06 --incident kupiansk-2022-03-06-market-square \\
                  --participants 200-300 --location "market square" \\
                  --source "local Telegram channel" --source-verification unverified
              incidentctl observe kupiansk-2022-03-06-market-square \\
                  --by "Russian armed forces" --response warning-shots,detentions
              incidentctl incident kupiansk-2022-03-06-market-square
              incidentctl city Kupyansk
              incidentctl events --city Kupiansk

            A daemon that does not serve (stopped with SIGSTOP, wedged, its queue of connections full) does not \
            hang a command: connecting gives up after 10 seconds, and waiting for each answer after 60 seconds, or \
            --timeout SECONDS (else $INCIDENTCTL_TIMEOUT; 0: no limit). verify, replay and backup, which answer once \
            they have walked the whole log, wait without limit unless given one, and events --follow waits for new \
            events without limit. A wait that runs out is exit status 3, naming the socket and the wait; an append, \
            report, observe or outcome then says which events were sent and may or may not be stored.

            Exit status: 0 success, 1 the daemon refused the request (the error code is on stderr; also a \
            check that failed, such as events --follow finding the log replaced: log_replaced; and output that \
            could not be written, a full disk say, which stderr names: the output is then incomplete), 2 bad \
            usage, 3 the daemon cannot be reached, or did not answer in time.
            """,
        version: "0.1.0",
        subcommands: [
            Report.self, Observe.self, Outcome.self, Append.self, Events.self, IncidentCommand.self, IncidentsCommand.self,
            CityCommand.self,
            Cities.self, Status.self, Verify.self, Backup.self, Replay.self, Export.self,
        ])

    static func main() {
        // A crash report, or a SIGABRT sent to it, ends the command rather than leaving it running.
        _ = incidentd_end_after_crash_report()
        let arguments = joiningDashedText(placingConnectionOptions(Array(CommandLine.arguments.dropFirst())))
        do {
            var command = try parseAsRoot(arguments)
            if command is Incidentctl {
                // No command at all: bad usage, which a script with an empty "$cmd" must not take for success.
                FileHandle.standardError.write(Data((helpMessage() + "\nincidentctl: give a command, such as incidentctl status\n").utf8))
                Glibc.exit(2)
            }
            try command.run()
            Output.flush()
        } catch let failure as ClientFailure {
            // What was printed before the failure comes first, and is no less checked.
            Output.flush()
            FileHandle.standardError.write(Data("incidentctl: \(failure)\n".utf8))
            Glibc.exit(failure.exitStatus)
        } catch let code as ExitCode {
            Output.flush()
            Glibc.exit(code.rawValue)
        } catch {
            Output.flush()
            let status = exitCode(for: error)
            if status == .success {
                exit(withError: error)
            }
            FileHandle.standardError.write(Data((withNearestCommand(fullMessage(for: error), arguments) + "\n").utf8))
            Glibc.exit(2)
        }
    }

    /// `arguments` with the `--socket` and `--timeout` given before the command's name moved after it, where the
    /// command takes them: `incidentctl --socket PATH status`, as other tools take their connection first. Anything
    /// else before the name (another option, one without its value), or no command after them, leaves the
    /// arguments as they are, for ArgumentParser to refuse.
    static func placingConnectionOptions(_ arguments: [String]) -> [String] {
        let options = ["--socket", "--timeout"]
        var moved: [String] = []
        var rest = arguments[...]
        while let first = rest.first {
            if options.contains(first), rest.count > 1 {
                moved += rest.prefix(2)
                rest = rest.dropFirst(2)
            } else if options.contains(where: { first.hasPrefix($0 + "=") }) {
                moved.append(first)
                rest = rest.dropFirst()
            } else {
                break
            }
        }
        let names = configuration.subcommands.map { $0._commandName }
        guard !moved.isEmpty, let name = rest.first, names.contains(name) else { return arguments }
        return [name] + moved + rest.dropFirst()
    }

    /// The options of report, observe and outcome whose value is free text, which may start with a dash: a bullet
    /// pasted from a message ("- residents fled"), a channel's name ("-=Melitopol News=-").
    static let textOptions: Set<String> = [
        "--city", "--location", "--description", "--target", "--tag", "--by", "--note", "--method", "--verified-by",
        "--source", "--source-method", "--source-verified-by",
    ]

    /// `arguments` with each free-text option and a value after it that starts with a dash joined into one
    /// (`--note=- see the video`), the form ArgumentParser takes such a value in: written apart, it takes the value
    /// for an option, or refuses it as none. A value that reads as a long option (`--note --status`: the note
    /// forgotten) is left apart, for ArgumentParser to say the value is missing; so is everything after `--`.
    static func joiningDashedText(_ arguments: [String]) -> [String] {
        var joined: [String] = []
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let argument = arguments[i]
            if argument == "--" {
                joined += arguments[i...]
                break
            }
            if textOptions.contains(argument), i + 1 < arguments.endIndex, arguments[i + 1].hasPrefix("-"),
                !looksLikeLongOption(arguments[i + 1])
            {
                joined.append(argument + "=" + arguments[i + 1])
                i += 2
                continue
            }
            joined.append(argument)
            i += 1
        }
        return joined
    }

    /// Whether `text` is written as a long option is: `--` and lowercase letters, digits and dashes.
    static func looksLikeLongOption(_ text: String) -> Bool {
        text.hasPrefix("--") && text.count > 2
            && text.utf8.dropFirst(2).allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 45 }
    }

    /// ArgumentParser's `message` for a refused command line, its first line saying so when the first argument is
    /// no command's name, and ending in "did you mean 'cities'?" when it is close to one: at most a third of its
    /// letters (and at least one) changed, added or removed.
    static func withNearestCommand(_ message: String, _ arguments: [String]) -> String {
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        guard let given = arguments.first, !given.hasPrefix("-"), !names.contains(given) else { return message }
        var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let bound = max(1, given.count / 3)
        let scored = names.compactMap { name in
            Gazetteer.levenshtein(Array(given.lowercased()), Array(name), bound: bound).map { (name: name, distance: $0) }
        }
        let nearest = scored.min { $0.distance < $1.distance }?.name
        lines[0] = "Error: Unexpected argument '\(given)': no command is called so" + (nearest.map { "; did you mean '\($0)'?" } ?? "")
        return lines.joined(separator: "\n")
    }
}
