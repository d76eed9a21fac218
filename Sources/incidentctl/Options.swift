import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IncidentDomain
import IncidentProtocol
import StrictJSON

/// Where the daemon listens: `--socket`, then `$INCIDENTD_SOCKET` unless it is empty, then the default; and how long
/// to wait for it: `--timeout`, then `$INCIDENTCTL_TIMEOUT` unless it is empty, then the command's default.
struct ConnectionOptions: ParsableArguments {
    static let defaultSocket = "/run/incidentd/incidentd.sock"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The daemon's socket (default: $INCIDENTD_SOCKET if set and not empty, else \(defaultSocket)).",
            valueName: "path"))
    var socket: String?

    @Option(
        name: .long,
        parsing: .unconditional,
        help: ArgumentHelp(
            """
            The longest wait, in seconds, for each answer of the daemon; 0: no limit. Default: $INCIDENTCTL_TIMEOUT \
            if set and not empty, else \(Int(quickAnswer)), or no limit for verify, replay and backup, whose one \
            answer comes once the whole log is walked. Connecting waits at most \(Int(connecting)) (or --timeout) \
            seconds; events --follow waits for new events without limit.
            """,
            valueName: "seconds"),
        transform: { try Self.seconds($0) })
    var timeout: Double?

    /// Refuses --socket beside --data-dir (verify, replay), where the command reads the log itself and asks no
    /// daemon: the socket would be passed over without a word.
    func refuseSocket(besides dataDir: String?) throws {
        guard dataDir != nil, socket != nil else { return }
        throw ValidationError("--socket and --data-dir: give one; with --data-dir incidentctl reads the log itself and asks no daemon")
    }

    var socketPath: String {
        if let socket { return socket }
        if let environment = ProcessInfo.processInfo.environment["INCIDENTD_SOCKET"], !environment.isEmpty { return environment }
        return Self.defaultSocket
    }

    /// What a command waits for.
    enum Wait {
        /// Answers that come at once, however long the log: a query, a page of events, an append batch.
        case answer
        /// An answer that comes once the daemon has walked the whole log (verify, replay, backup): minutes on a
        /// large one, and nothing comes before it.
        case walk
    }

    /// The default wait for an answer that should come at once, in seconds. An answer takes milliseconds, and an
    /// append batch a group commit with its sync, which a busy disk can stretch to seconds; a daemon that lets a
    /// minute pass without answering is stopped (SIGSTOP, a debugger), wedged, or has lost its disk, and a
    /// script waiting on it had better hear so than hang.
    static let quickAnswer: Double = 60
    /// The longest wait for the daemon to take the connection: it takes connections as they come, so a full
    /// queue of them that does not move for this long is a daemon that does not serve.
    static let connecting: Double = 10

    /// Connects to the daemon, to wait for answers as `wait` says: at most ``quickAnswer`` seconds each for
    /// `.answer`, without limit for `.walk`, unless --timeout or $INCIDENTCTL_TIMEOUT says otherwise (0: no limit).
    func connect(_ wait: Wait = .answer) throws(ClientFailure) -> SocketClient {
        var limit: Double?
        var source: String
        if let timeout {
            (limit, source) = (timeout, "--timeout")
        } else if let environment = ProcessInfo.processInfo.environment["INCIDENTCTL_TIMEOUT"], !environment.isEmpty {
            do {
                limit = try Self.seconds(environment)
            } catch {
                throw .usage("INCIDENTCTL_TIMEOUT: \(error); set it to a number of seconds, or unset it")
            }
            source = "INCIDENTCTL_TIMEOUT"
        } else {
            limit = wait == .answer ? Self.quickAnswer : nil
            source = "the default; --timeout SECONDS or INCIDENTCTL_TIMEOUT sets another, 0 for none"
        }
        if limit == 0 { limit = nil }
        return try SocketClient(
            path: socketPath, connectLimit: min(limit ?? Self.connecting, Self.connecting), answerLimit: limit, limitSource: source)
    }

    /// The seconds `text` gives: a number of 0 or more, whole or with a fraction (0.5), up to a year.
    static func seconds(_ text: String) throws -> Double {
        if let value = Double(text), value < 0 { throw ValidationError("'\(text)' is less than 0: give a number of seconds, or 0 for no limit") }
        guard let value = Double(text), value.isFinite, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else {
            throw ValidationError("'\(text)' is not a number of seconds, such as 30 or 2.5 (0: no limit)")
        }
        guard value <= 366 * 86_400 else { throw ValidationError("'\(text)' seconds is more than a year; give 0 for no limit") }
        return value
    }
}

/// How to print results.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: "table or json (default: table on a terminal, json otherwise).")
    var format: OutputFormat?

    var resolved: OutputFormat {
        format ?? (isatty(STDOUT_FILENO) == 1 ? .table : .json)
    }
}

/// The options describing sources that every write command shares. Who verified each source is added by
/// ``SourceOptions`` (`--verified-by`) or ``OutcomeSourceOptions`` (`--source-verified-by`), since `outcome`
/// needs `--verified-by` for who verified the outcome itself. Each detail goes with the `--source` written before it
/// (``SourceDetailPlacement``).
struct SourceDetailOptions: ParsableArguments {
    @Option(
        name: .customLong("source"),
        help: ArgumentHelp(
            "Who said it (repeatable). Its details (--source-url, --source-sha256, --source-method, --source-verification, and who verified it) follow it, before the next --source.",
            valueName: "name"))
    var sources: [String] = []

    @Option(name: .customLong("source-url"), help: ArgumentHelp("URL of the --source written before it.", valueName: "url"))
    var urls: [String] = []

    @Option(
        name: .customLong("source-method"),
        help: ArgumentHelp("How the --source written before it was verified, e.g. geolocation.", valueName: "method"))
    var methods: [String] = []

    @Option(
        name: .customLong("source-sha256"),
        help: ArgumentHelp("SHA-256 of the archived file of the --source written before it.", valueName: "hex"))
    var hashes: [String] = []

    @Option(
        name: .customLong("source-verification"),
        help: ArgumentHelp("How far the --source written before it is verified.", valueName: "status"))
    var verifications: [Verification] = []

    /// Which --source each detail was written after, in this process's command line; `verifiedBy` is what the
    /// command's option naming who verified a source (`verifiedByName`) parsed.
    func placement(verifiedBy: [String], named verifiedByName: String) throws(ValidationError) -> SourceDetailPlacement {
        let parsed: [String: [String]] = [
            SourceDetailPlacement.sourceOption: sources, "--source-url": urls, "--source-method": methods,
            "--source-sha256": hashes, "--source-verification": verifications.map(\.rawValue), verifiedByName: verifiedBy,
        ]
        let placement = try SourceDetailPlacement(
            arguments: Array(CommandLine.arguments.dropFirst()), detailOptions: Set(parsed.keys).subtracting([SourceDetailPlacement.sourceOption]),
            valueAlwaysTaken: SourceDetailPlacement.writeCommandsValueAlwaysTaken)
        try placement.check(parsed: parsed)
        return placement
    }

    func validate(verifiedBy: [String], named verifiedByName: String) throws {
        if sources.isEmpty,
            let given = [("--source-url", urls.count), (verifiedByName, verifiedBy.count), ("--source-method", methods.count),
                ("--source-sha256", hashes.count), ("--source-verification", verifications.count)].first(where: { $0.1 > 0 })?.0
        {
            throw ValidationError(
                "\(given) describes the --source written before it, and no --source was given: add --source NAME (who said it) before it, or leave \(given) out")
        }
        for hash in hashes where !Source.isSHA256(hash) {
            throw ValidationError(
                "--source-sha256: '\(hash)' is not a SHA-256: expected 64 hexadecimal digits, as sha256sum prints them (\(hash.utf8.count) characters given)")
        }
        _ = try placement(verifiedBy: verifiedBy, named: verifiedByName)
    }

    /// The sources as the event's `sources`, each with the details written after it; `everySource`, the verification
    /// of each source given none of its own (report's --verification).
    func json(verifiedBy: [String], named verifiedByName: String, everySource: Verification? = nil) throws -> JSONValue? {
        guard !sources.isEmpty else { return nil }
        let placement = try placement(verifiedBy: verifiedBy, named: verifiedByName)
        return .array(placement.sources.map { source in
            var o: [String: JSONValue] = ["name": .string(source.name)]
            for (option, member) in [("--source-url", "url"), (verifiedByName, "verifiedBy"), ("--source-method", "method"), ("--source-sha256", "sha256")] {
                if let value = source.details[option] { o[member] = .string(value) }
            }
            if let verification = source.details["--source-verification"] ?? everySource?.rawValue { o["verification"] = .string(verification) }
            return .object(o)
        })
    }
}

/// "not at all", "once", "twice" or "3 times": how often an option was given.
func timesGiven(_ count: Int) -> String {
    switch count {
    case 0: return "not at all"
    case 1: return "once"
    case 2: return "twice"
    default: return "\(count) times"
    }
}

/// Options describing the sources of a `report` or an `observe`.
struct SourceOptions: ParsableArguments {
    @OptionGroup var details: SourceDetailOptions

    @Option(
        name: .customLong("verified-by"),
        help: ArgumentHelp(
            "Who verified the --source written before it. outcome calls this --source-verified-by, its own --verified-by being who verified the incident.",
            valueName: "who"))
    var verifiedBy: [String] = []

    /// `outcome`'s name for ``verifiedBy``, taken only to say which to use here.
    @Option(name: .customLong("source-verified-by"), help: .hidden)
    var outcomeSpelling: [String] = []

    func validate() throws {
        if !outcomeSpelling.isEmpty {
            throw ValidationError(
                "--source-verified-by is outcome's name for who verified a --source; here it is --verified-by: give --verified-by WHO after the --source it goes with")
        }
        try details.validate(verifiedBy: verifiedBy, named: "--verified-by")
    }

    func json(everySource: Verification? = nil) throws -> JSONValue? {
        try details.json(verifiedBy: verifiedBy, named: "--verified-by", everySource: everySource)
    }
}

/// Options describing the sources of an `outcome`, whose own `--verified-by` names who verified the outcome.
struct OutcomeSourceOptions: ParsableArguments {
    @OptionGroup var details: SourceDetailOptions

    @Option(
        name: .customLong("source-verified-by"),
        help: ArgumentHelp(
            "Who verified the --source written before it; report and observe call this --verified-by, which here is who verified the incident.",
            valueName: "who"))
    var verifiedBy: [String] = []

    func validate() throws { try details.validate(verifiedBy: verifiedBy, named: "--source-verified-by") }

    func json() throws -> JSONValue? { try details.json(verifiedBy: verifiedBy, named: "--source-verified-by") }
}

/// Idempotency and concurrency control for one appended event.
struct AppendControlOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "A UUID: retrying with the same id never stores the event twice (default: a new one, named if no answer comes).",
            valueName: "uuid"))
    var eventId: String?

    @Option(
        name: .long, parsing: .unconditional,
        help: ArgumentHelp("Refuse unless the incident is at this version (optimistic concurrency).", valueName: "n"))
    var expectedVersion: Int?

    func validate() throws {
        if let eventId, EventID.normalize(eventId) == nil {
            throw ValidationError("--event-id: '\(eventId)' is not a UUID (such as \(EventID.random()))")
        }
    }

    /// Sets the event's `eventId`, the one given or a new one, so that sending the event again (after an answer that
    /// never came) can never store it twice; and its `expectedVersion`, if given.
    func apply(to event: inout [String: JSONValue]) {
        event["eventId"] = .string(eventId ?? EventID.random())
        if let expectedVersion { event["expectedVersion"] = .int(Int64(expectedVersion)) }
    }
}

/// The value of a whole-number option (a position, a count), or why it is not one. ArgumentParser names the option
/// and echoes the value given whole; this says what is wrong with it: a number past what the option takes is out of
/// range, not just invalid.
func wholeNumber<Number: FixedWidthInteger>(_ text: String, _ type: Number.Type = Number.self) throws -> Number {
    if let value = Number(text) { return value }
    let unsigned = text.hasPrefix("-") ? text.dropFirst() : Substring(text)
    let digits = !unsigned.isEmpty && unsigned.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
    guard digits else { throw ValidationError("not a whole number") }
    throw ValidationError(
        text.hasPrefix("-") ? "out of range: the least it takes is \(Number.min)" : "out of range: the most it takes is \(Number.max)")
}
