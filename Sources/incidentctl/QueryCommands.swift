import ArgumentParser
import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import IncidentProtocol
import StrictJSON

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List events in log order.",
        discussion: """
            JSON output is one event per line, in the stored form (with position, hash and the rest of the \
            envelope). The table's summary of an event ends with its sources, each with what it says of itself: \
            sources: "Witness video" (verified, verified by …, method geolocation, URL, sha256 …).

            With --follow it goes on after the last stored event, printing each event that matches as soon as \
            it is committed, until interrupted (or --limit events have been shown). A follower that stops \
            reading holds up nobody: it catches up from the log when it reads again. If the daemon goes away \
            (a restart), it says so on stderr and goes on from the next position once the daemon is back; if it \
            cannot be reached when the command starts, the command exits 3, as every command does. With --city it \
            follows the city the spelling names when it starts, by that city's id, also after a restart on a \
            gazetteer that gives the spelling to another city.

            Before it goes on after a restart, it checks that the log is still the one it was following: that the \
            furthest position it knows of holds the event it saw there, by its chain hash. That position is the \
            last event shown, or, with a filter (the events it passes over count as seen), the head the daemon \
            reported if it lies further on: the command asks for it as it subscribes and whenever no line has come \
            for a while (a second, doubling to half a minute while nothing comes). A log replaced meanwhile, such as data.mdb restored from an older backup, whose new \
            events take positions already passed, ends the command with exit status 1 and log_replaced on stderr, \
            naming the position, the head it found, and from where to follow again (--from).

            Examples:
              incidentctl events
              incidentctl events --city Berdyansk --type response-observed
              incidentctl events --from 1000 --limit 50 --format json
              incidentctl events --follow --city Melitopol
            """)

    @Option(
        parsing: .unconditional, help: "First position to show (positions start at 1; 0 is taken as 1, as the protocol takes it).",
        transform: { try wholeNumber($0) })
    var from: Int = 1
    @Option(parsing: .unconditional, help: "How many events at most (0: all).", transform: { try wholeNumber($0) }) var limit: Int = 0
    @Option(help: "Only incidents in this city (any spelling).") var city: String?
    @Option(help: "Only events of this type.") var type: EventType?
    @Option(help: "Only this incident's events.") var incident: String?
    @Flag(help: "Keep printing events as they are committed.") var follow = false
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard from >= 0 else { throw ValidationError("--from: 0 or more (positions start at 1, and 0 is taken as 1)") }
        guard limit >= 0 else { throw ValidationError("--limit: 0 or more") }
        if let incident { try checkIncidentId(incident, option: "--incident") }
        if let city { try checkCityName(city, option: "--city") }
    }

    func run() throws {
        if follow { return try runFollowing() }
        var all: [JSONValue] = []
        let format = output.resolved
        // The position of the last event printed, for a failure part way (the daemon restarted, say) to say where
        // the output ends: cut at a line boundary, it reads as a whole one.
        var lastShown: Int64?
        do {
            try connection.connect().readEvents(filterMembers(), from: firstPosition, count: limit) { event in
                guard format == .json else { return all.append(event) }
                Printer.json(event)
                lastShown = event["position"]?.intValue ?? lastShown
            }
        } catch let failure as ClientFailure {
            guard let lastShown else { throw failure }
            throw failure.adding("; the output is incomplete: it ends after position \(lastShown); go on with --from \(lastShown + 1)")
        }
        if format == .table { Printer.events(all) }
    }

    /// The first position to show: --from, where 0, below the first position there is, means the first (1), as a
    /// `read` or `subscribe` from 0 does.
    private var firstPosition: Int64 { Int64(max(from, 1)) }

    /// The members of a `read` or `subscribe` that say which events to show.
    private func filterMembers() -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        if let city { body["city"] = .string(city) }
        if let type { body["type"] = .string(type.rawValue) }
        if let incident { body["incident"] = .string(incident) }
        return body
    }

    /// `subscribe`: the daemon sends what is stored from --from on, then each event as it is committed. When the
    /// daemon goes away (a restart), it says so on stderr and, once the daemon is back, checks that the log there is
    /// still the one it followed (``FollowedLog``) and follows again from the position after the last event shown:
    /// nothing shown twice, nothing left out. A log that was replaced meanwhile ends the command with `log_replaced`.
    private func runFollowing() throws {
        let format = output.resolved
        var next = firstPosition
        var shown = 0
        var retry = 0
        // Whether the daemon has answered a `subscribe` of this command.
        var followed = false
        var seen = FollowedLog()
        // The city of --city, by its exact id: resolved once, on the first connection, and sent as the filter on every
        // connection after it. Its spelling, sent again after a restart, could name another city: a gazetteer the
        // daemon came back with may give it to a city of its own (an exact id names its city before any spelling does).
        var cityId: String?
        // With a filter the daemon passes over events without sending them, so that the last event shown may lie far
        // behind the log's head: the head, asked for as it subscribes and when no line has come for a while, stands
        // for those. The wait doubles while nothing comes, to `longestIdleBeforeAskingForHead`.
        let asksForHead = city != nil || type != nil || incident != nil
        var idleBeforeAskingForHead = Self.idleBeforeAskingForHead
        // Written when no further line has arrived, so that a program reading through a pipe sees each event at
        // once, and a fast stream is not a write per event.
        let out = PendingOutput()
        if format == .table { out.bytes = Array((Printer.eventsHeader + "\n").utf8) }
        defer { out.write() }
        while limit == 0 || shown < limit {
            let client: SocketClient
            // The id of the `status` asked for on this connection and not answered yet.
            var headRequest: Int64?
            do {
                client = try connection.connect()
                var waitPastHead: String?
                if followed { try seen.confirm(on: client) } else { waitPastHead = try Self.waitPastHead(next, on: client) }
                var body = filterMembers()
                if let city {
                    if cityId == nil { cityId = try Self.cityId(of: city, on: client) }
                    body["city"] = .string(cityId ?? city)
                }
                body["from"] = .int(next)
                // Said once the daemon took the subscription: a refused one (an unknown city) is all there is to say.
                _ = try client.call(.subscribe, body)
                if let waitPastHead { Self.note(waitPastHead) }
                if asksForHead { headRequest = try client.send(.status) }
            } catch {
                // Unreachable from the start (no daemon, a mistyped socket, no permission) is exit 3 as for every
                // command; only a daemon that went away is waited for, also while it is back but full.
                guard let why = ClientFailure.unreachableReason(error) ?? ClientFailure.fullReason(error), followed
                else { throw error.naming(Self.following, insteadOf: [.status, .city, .read, .subscribe]) }
                if retry == 0 { Self.note("cannot follow (\(why)); trying again until incidentd is back") }
                retry += 1
                usleep(UInt32(min(retry, 8)) * 250_000)
                continue
            }
            if retry > 0 { Self.note("following again from position \(next)") }
            retry = 0
            followed = true
            do {
                while limit == 0 || shown < limit {
                    if !client.hasLineWaiting {
                        out.write()
                        if asksForHead, headRequest == nil, !client.awaitLine(milliseconds: idleBeforeAskingForHead) {
                            headRequest = try client.send(.status)
                            idleBeforeAskingForHead = min(2 * idleBeforeAskingForHead, Self.longestIdleBeforeAskingForHead)
                        }
                    }
                    // Events come when they are committed, which may be hours apart: no limit on the wait.
                    let line = try client.receiveLine(waitingAtMost: nil)
                    if format == .json, let event = Self.eventBytes(line), let position = Self.position(of: event),
                        position < Int64.max
                    {
                        idleBeforeAskingForHead = Self.idleBeforeAskingForHead
                        out.bytes += event
                        out.bytes.append(0x0A)
                        next = position + 1
                        seen.shown(position: position, line: line)
                    } else {
                        let answer = try SocketClient.answer(line, after: " after position \(next - 1)")
                        if let asked = headRequest, answer["id"]?.intValue == asked {
                            seen.headReported(answer)
                            headRequest = nil
                            continue
                        }
                        let response = try SocketClient.check(answer)
                        guard let event = response["event"], let position = event["position"]?.intValue, position < Int64.max
                        else { continue }
                        idleBeforeAskingForHead = Self.idleBeforeAskingForHead
                        switch format {
                        case .json: out.bytes += event.canonicalBytes() + [0x0A]
                        case .table: out.bytes += Array((Printer.eventLine(event) + "\n").utf8)
                        }
                        next = position + 1
                        seen.shown(position: position, line: line)
                    }
                    shown += 1
                }
            } catch {
                guard let why = ClientFailure.unreachableReason(error) else { throw error }
                out.write()
                Self.note("lost incidentd (\(why)); following again from position \(next) once it is back")
                retry = 1
            }
        }
    }

    /// What a follower's refusal for lack of a role says the user may not do, whichever of its requests was refused
    /// (it asks for the head, its city's id and an event to check before it subscribes).
    private static let following = "follow the log (events --follow, which subscribes)"

    /// How long a follower with a filter waits for a line before it asks for the log's head (milliseconds), and
    /// the longest it waits once that has doubled while nothing came.
    private static let idleBeforeAskingForHead: Int32 = 1_000
    private static let longestIdleBeforeAskingForHead: Int32 = 32_000

    /// Standard output not written yet.
    private final class PendingOutput {
        var bytes: [UInt8] = []

        func write() {
            guard !bytes.isEmpty else { return }
            Output.write(bytes)
            Output.flush()
            bytes.removeAll(keepingCapacity: true)
        }
    }

    /// What to say on standard error, once, when `from` lies past the event after the head, or nil: the command then
    /// waits silently until the log grows that far, which a mistyped --from would otherwise leave unexplained.
    private static func waitPastHead(_ from: Int64, on client: SocketClient) throws(ClientFailure) -> String? {
        let head = try client.call(.status)["position"]?.intValue ?? 0
        guard from > head + 1 else { return nil }
        return "the log holds \(head) event\(head == 1 ? "" : "s"); waiting for event \(from), which --from asks to start at"
    }

    /// The exact id of the city that `spelling` names on `client`'s daemon (its answer to `city`), or nil when the
    /// answer has none; an unknown city is refused as `subscribe` refuses it.
    private static func cityId(of spelling: String, on client: SocketClient) throws(ClientFailure) -> String? {
        try client.call(.city, ["city": .string(spelling)])["city"]?["cityId"]?.stringValue
    }

    private static func note(_ text: String) { Diagnostics.say(text) }

    /// The `position` of an event as the daemon wrote it: its one top-level member of that name (no member of
    /// `data`, `sources` or `recordedBy` has it).
    static func position(of event: ArraySlice<UInt8>) -> Int64? {
        let key = Array(#","position":"#.utf8)
        return event.withUnsafeBytes { bytes -> Int64? in
            guard let found = bytes.firstOffset(of: key) else { return nil }
            let digits = bytes[(found + key.count)...].prefix { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
            return Int64(String(decoding: digits, as: UTF8.self))
        }
    }

    /// The event of a line `{"event":…,"id":…,"ok":true}` as the daemon wrote it (canonical JSON, so the event
    /// ends where the last `,"id":` begins), without reading it into a tree; nil for any other line.
    static func eventBytes(_ line: [UInt8]) -> ArraySlice<UInt8>? {
        let prefix = Array(#"{"event":"#.utf8), suffix = Array(#","ok":true}"#.utf8), id = Array(#","id":"#.utf8)
        guard line.count > prefix.count + suffix.count, line.starts(with: prefix), line.suffix(suffix.count).elementsEqual(suffix)
        else { return nil }
        // The id comes last: the last `,"id":` is the top-level member's.
        var end: Int?
        line.withUnsafeBytes { bytes in
            var at = prefix.count
            while let found = bytes.firstOffset(of: id, from: at) {
                end = found
                at = found + 1
            }
        }
        return end.map { line[prefix.count..<$0] }
    }
}

struct IncidentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incident",
        abstract: "Show one incident: the report as corrected, where it stands, and its whole history.",
        discussion: """
            With --until-position, the incident as it stood once the log held the events up to that position \
            (a position events, incident or status printed): what was known of it then, before later responses, \
            corrections and outcomes.

            The table lists the incident's fields, then its history, then each event's sources: who said it, how \
            far verified, by whom and how, when published, its URL and the SHA-256 of its archived file.

            Examples:
              incidentctl incident kupiansk-2022-03-01-city-hall
              incidentctl incident kupiansk-2022-03-01-city-hall --until-position 2
            """)

    @Argument(help: "The incident id.") var id: String
    @Option(parsing: .unconditional, help: "Show the incident as it stood after this position.", transform: { try wholeNumber($0) })
    var untilPosition: UInt64?
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try checkIncidentId(id, option: "the incident id") }

    func run() throws {
        var body: [String: JSONValue] = ["incident": .string(id)]
        if let untilPosition { body["untilPosition"] = .int(Int64(clamping: untilPosition)) }
        let client = try connection.connect()
        let response = try client.call(.incident, body)
        if let untilPosition, let head = try client.call(.status)["position"]?.intValue, untilPosition > UInt64(clamping: head) {
            FileHandle.standardError.write(Data(
                "incidentctl: the log holds \(head) events; position \(untilPosition) is past its head, so this is the incident as it stands now\n".utf8))
        }
        let incident = response["incident"] ?? .null
        switch output.resolved {
        case .json: Printer.json(incident)
        case .table: Printer.incident(incident)
        }
    }
}

struct CityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "city",
        abstract: "Show one city's projection.",
        discussion: """
            Any spelling the gazetteer knows works: Kupiansk, Kupyansk, Kup'yansk, Куп'янськ, Купянск.

            Its incidents, one line each: incidentctl incidents --city NAME (--open for the open ones).

            Examples:
              incidentctl city "Berdyans'k"
              incidentctl incidents --city "Berdyans'k" --open
            """)

    @Argument(help: "The city, any spelling.") var name: String
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { try checkCityName(name, option: "the city name") }

    func run() throws {
        let response = try connection.connect().call(.city, ["city": .string(name)])
        let city = response["city"] ?? .null
        switch output.resolved {
        case .json: Printer.json(city)
        case .table: Printer.city(city)
        }
    }
}

struct IncidentsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incidents",
        abstract: "List one city's incidents, one line each: what is open in a city, say.",
        discussion: """
            --city is required: any spelling the gazetteer or the log knows (a city added with --allow-new-city \
            too), or the city's id. The incidents the city counts come first, by \
            the date they occurred (the start of their occurredAt; on a tie, the one reported first), with their \
            latest status; retracted incidents are listed only when asked for (--status retracted), after the \
            others, in the order they were reported. --open lists those whose latest status is unknown or \
            ongoing, the city's open incidents; --status, given once or more, those of the statuses named (open \
            among them). Each line gives the incident's id, when it occurred (as reported), its kind and location \
            (as corrected), latest status, verification, how many responses were observed, its version (how many \
            events it holds) and the position of its report; incidentctl incident ID shows one whole.

            JSON output is one incident per line, printed as each page comes; the table is printed once the list \
            has ended. The command asks the daemon for 1,000 incidents a page (fewer when --limit leaves fewer \
            to list) until the list ends or --limit incidents have been listed.

            A daemon that goes away part way (a restart, say) cuts the JSON output short: the command then says \
            on stderr that the output is incomplete, the incident it ends after, and how to go on: --from CURSOR \
            (and the --limit left, if one was given) with the same --city, --open or --status; it exits with the \
            failure's status (3: the daemon cannot be reached). --from takes such a cursor, the `next` of an \
            incidents answer (d… or r…), not an incident id: the listing goes on after where it ended, also when \
            incidents were appended or corrected meanwhile (as between any two pages, one whose status changed \
            may then be listed twice or not at all).

            Examples:
              incidentctl city Berdiansk
              incidentctl incidents --city Berdiansk --open
              incidentctl incidents --city Kupyansk --status retracted --status suppressed
              incidentctl incidents --city Melitopol --limit 20 --format json
              incidentctl incidents --city Melitopol --from d1646092800000000.1000
            """)

    @Option(help: "The city, any spelling (required).") var city: String
    @Flag(help: "Only the open incidents: latest status unknown or ongoing.") var open = false
    @Option(
        help: ArgumentHelp(
            "Only incidents whose latest status is this one (repeat for several): unknown, ongoing, dispersed, objective-achieved, suppressed, retracted, or open.",
            valueName: "status"))
    var status: [String] = []
    @Option(parsing: .unconditional, help: "How many incidents at most (0: all).", transform: { try wholeNumber($0) }) var limit: Int = 0
    @Option(
        help: ArgumentHelp(
            "Go on where a listing cut short ended: the cursor its message gave (d… or r…), with the same --city, --open or --status.",
            valueName: "cursor"))
    var from: String?
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    static let statusNames = ["unknown", "ongoing", "dispersed", "objective-achieved", "suppressed", "retracted", "open"]

    func validate() throws {
        try checkCityName(city, option: "--city")
        guard limit >= 0 else { throw ValidationError("--limit: 0 or more") }
        if open && !status.isEmpty { throw ValidationError("--open and --status: give one (--status open is --open)") }
        for name in status where !Self.statusNames.contains(name) {
            throw ValidationError("--status: \(name) is not a status; one of \(Self.statusNames.joined(separator: ", "))")
        }
        if let from, CityIncidentsCursor(text: from) == nil {
            throw ValidationError(
                "--from: \"\(from.prefix(64))\" is not the cursor of an incidents listing (d… or r…): give it as a listing cut short named it (go on with --from …)")
        }
    }

    func run() throws {
        let client = try connection.connect()
        var body: [String: JSONValue] = ["city": .string(city)]
        let statuses = open ? ["open"] : status
        if !statuses.isEmpty { body["status"] = .array(statuses.map { .string($0) }) }
        if let from { body["from"] = .string(from) }
        var listed: [JSONValue] = []
        let format = output.resolved
        // The id of the last incident printed, for a failure part way (the daemon restarted, say) to say where the
        // output ends: cut at a line boundary, it reads as a whole list. A page is printed whole once it has come,
        // so the `from` of the page asked for then is where the listing goes on.
        var lastShown: String?
        // Where the listing goes on when --limit stopped it before the city's last incident.
        var more: JSONValue?
        do {
            while limit == 0 || listed.count < limit {
                body["limit"] = .int(Int64(limit == 0 ? 1_000 : min(1_000, limit - listed.count)))
                let response = try client.call(.incidents, body)
                for incident in response["incidents"]?.arrayValue ?? [] {
                    listed.append(incident)
                    guard format == .json else { continue }
                    Printer.json(incident)
                    lastShown = Printer.text(incident["incident"])
                }
                guard let next = response["next"], next != .null else {
                    more = nil
                    break
                }
                body["from"] = next
                more = next
            }
        } catch {
            throw lastShown.map { error.adding(cutShort(after: $0, goingOnFrom: body["from"], listed: listed.count)) } ?? error
        }
        if format == .table { Printer.incidents(listed) }
        if let more {
            Output.flush()
            Diagnostics.say("--limit \(limit) reached, and more incidents follow: the next ones with --from \(Printer.text(more)) and the same \(sameFilter)")
        }
    }

    /// The options a listing that goes on must be given again.
    private var sameFilter: String { open ? "--city and --open" : status.isEmpty ? "--city" : "--city and --status" }

    /// What a listing cut short after incident `last` says, `listed` incidents into it: that the output is
    /// incomplete, where it ends, and the command that goes on from `next` (the `from` of the page it could not get).
    private func cutShort(after last: String, goingOnFrom next: JSONValue?, listed: Int) -> String {
        "; the output is incomplete: it ends after incident \(last); go on with --from \(Printer.text(next))"
            + (limit == 0 ? "" : " --limit \(limit - listed)") + " and the same \(sameFilter)"
    }
}

struct Cities: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every city an incident was ever reported in, with its figures.",
        discussion: """
            A city stays listed once an incident was reported there, even when every incident of it was \
            retracted: it then counts 0 incidents. Cities of the gazetteer with no \
            report are not listed.

            The JSON form is the very document `incidentctl replay` computes from the log alone, so the two can \
            be compared byte for byte.

            Examples:
              incidentctl cities
              cmp <(incidentctl cities --format json) \\
                  <(incidentctl replay --data-dir /var/lib/incidentd)
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let response = try connection.connect().call(.cities)
        let cities = response["cities"] ?? .array([])
        switch output.resolved {
        case .json: Printer.json(cities)
        case .table: Printer.cities(cities.arrayValue ?? [])
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the head of the log (position and hash) and the daemon's state.",
        discussion: """
            Publish the head position and hash: anyone can later check with `incidentctl verify --expect-head \
            POSITION:HASH` that the log up to that point was not rewritten, nor shortened below it.

            Example:
              incidentctl status --format json
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let response = try connection.connect().document(.status)
        switch output.resolved {
        case .json: Printer.json(response)
        case .table:
            let storage = response["storage"]
            let commits = response["commits"]
            Printer.fields([
                ("position", Printer.text(response["position"])),
                ("head hash", Printer.text(response["headHash"])),
                ("last recorded", Printer.text(response["lastRecordedAt"])),
                ("incidents", Printer.text(response["incidents"])),
                ("cities", Printer.text(response["cities"])),
                ("data directory", Printer.text(storage?["dataDir"])),
                ("storage", "\(Printer.size(storage?["usedBytes"])) used, map \(Printer.size(storage?["mapSize"])) of at most \(Printer.size(storage?["maxMapSize"]))"),
                ("connections", Printer.text(response["connections"])
                    + ((response["followers"]?.intValue ?? 0) > 0 ? ", \(Printer.text(response["followers"])) following the log" : "")),
                ("group commits", "\(counted(commits?["transactions"], "transaction")), \(counted(commits?["events"], "event")), at most \(counted(commits?["largestBatch"], "append request")) in one"
                    + ((commits?["failed"]?.intValue ?? 0) > 0 ? "; \(Printer.text(commits?["failed"])) refused by the storage (see the daemon's log)" : "")),
                ("daemon", "incidentd \(Printer.text(response["version"])), protocol \(Printer.text(response["protocol"])), since \(Printer.text(response["startedAt"]))"),
            ])
        }
    }

    /// A count and what it counts, in the singular for one: "1 transaction", "8 events".
    private func counted(_ value: JSONValue?, _ noun: String) -> String {
        "\(Printer.text(value)) \(noun)\(value?.intValue == 1 ? "" : "s")"
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every page of the log's data file, walk the hash chain from position 1 to the head, then compare the indexes and projections with the events (admin role, or --data-dir).",
        discussion: """
            First the structure of every page of data.mdb, read as the file holds it (LMDB keeps no checksums, and \
            a damaged page of an index or a projection leaves the chain intact); then the chain. Exits 1 naming the \
            first damaged page and its database (page_damaged: the chain is then not walked), or the first \
            position that does not match (chain_broken).

            Then, the chain intact, the data derived from the events is compared with them: each \
            event's entry in incident-streams and its summary, each event's id in event-ids, and the incidents and \
            cities projections, folded again from the events as a rebuild folds them. LMDB keeps no checksums, so a \
            value's bytes changed in place there (a bad disk) pass the page check, and `city` or `incident` would \
            answer wrong figures without a word. Exits 1 (derived_data_differs) naming, for each database that \
            differs, the first entry that does, and what puts it right. Data that differs can also mean that \
            events were rewritten or removed outside incidentd: before putting it right, check the log against \
            the head last published (--expect-head) and keep a copy of the data directory, since what puts it \
            right makes it again from the events. For the projections and the stream \
            summaries, stop incidentd and start it once with --rebuild-projections; for an entry of \
            incident-streams or event-ids that names the wrong event, or is missing, make the log again from its \
            events with incidentd --recover-from (README.md), which makes both indexes again from the events the \
            chain proves, or restore a backup that verifies (the events are intact either way). Projections that \
            incidentd is to rebuild at its next start (a backup of an older version's log, a rebuild cut short) are \
            not compared. Exits 0 when every \
            page is whole, the chain intact and the derived data agrees with the events.

            The chain alone cannot tell a log rewritten from its last event back, with every hash recomputed and \
            the record of the head made to match, or one cut short: it checks the events against the head the \
            log records. --expect-head gives a head published earlier (status's position and headHash, as \
            POSITION:HASH, or the hash alone, as incidentd --expect-head takes it), as many times as there are \
            heads to check. The hash is looked for among the hashes the chain walk checks, in the same walk, so \
            it costs nothing more however long the log. Found, the log up to that event is exactly the one \
            published. Not found, verify exits 1 (head_mismatch): the log was rewritten at or before that \
            position, or, when the position given is past the head, events were removed. Keep the log as it is, \
            with a copy, and do not rebuild the projections; make it again from a backup (incidentd \
            --recover-from DIR --fill-from BACKUP --expect-head HASH, see README.md).

            Through the daemon's socket by default. With --data-dir it checks a data directory itself, read-only: \
            a backup before it is restored, or a log whose daemon is stopped or will not start. Of a log of an \
            older format (a backup taken before incidentd was last upgraded), it checks what every format has, as \
            for any log: the pages, the hash chain and --expect-head; its indexes and projections are not \
            compared (a line on stderr names the format), and the log is left as it is. That needs read \
            access to data.mdb and write access to LMDB's lock.mdb beside it, which LMDB creates if it is missing \
            (owned by whoever runs the command: remove it before a daemon running as another user serves the \
            directory). A city's name, region and population come from the gazetteer: give --gazetteer the file \
            the daemon runs on, or the cities are not compared (a line on stderr says so).

            Examples:
              incidentctl verify && incidentctl status --format json
              incidentctl status    # publish its position and head hash
              incidentctl verify --expect-head POSITION:HASH   # later, the head published
              incidentctl verify --data-dir /var/lib/incidentd/backups/2026-12-06 \\
                  --gazetteer /etc/incidentd/cities.toml
            """)

    @Option(help: ArgumentHelp("Check this data directory directly instead of asking the daemon.", valueName: "dir"))
    var dataDir: String?
    @Option(help: ArgumentHelp("With --data-dir: the gazetteer file the daemon runs on, to compare the cities (default: the compiled-in one).", valueName: "file"))
    var gazetteer: String?
    // The value that follows is taken whatever it looks like: -1:HASH is a head to refuse as such, not an option.
    @Option(
        parsing: .unconditionalSingleValue,
        help: ArgumentHelp(
            "A head published earlier from status, as HASH or POSITION:HASH: the log must hold it (repeat for several).",
            valueName: "head"))
    var expectHead: [String] = []
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if gazetteer != nil && dataDir == nil {
            throw ValidationError("--gazetteer goes with --data-dir: through the socket the daemon compares with its own gazetteer")
        }
        try connection.refuseSocket(besides: dataDir)
        for argument in expectHead { _ = try PublishedHead(argument) }
        if Set(try expectHead.map { try PublishedHead($0).hash }).count > Self.mostExpectedHeads {
            throw ValidationError("--expect-head: at most \(Self.mostExpectedHeads) different heads at once")
        }
    }

    /// The most heads one `verify` looks for (the daemon's limit on `expectHeads`).
    static let mostExpectedHeads = 64

    func run() throws {
        let published = try expectHead.map { try PublishedHead($0) }
        var hashes: [String] = []
        for head in published where !hashes.contains(head.hash) { hashes.append(head.hash) }
        var response: JSONValue
        if let dataDir {
            let cities = try gazetteer.map { try Gazetteer(contentsOfFile: $0) } ?? Gazetteer.embedded
            let expected = hashes.compactMap { ChainHash.bytes(hashHex: $0) }
            let log = try openDirectly(dataDir) { try VerifiableLog.open(directory: $0, gazetteer: cities) }
            response = .object(try log.verify(expectedHeads: expected).members)
        } else {
            response = try connection.connect(.walk).document(.verify, hashes.isEmpty ? [:] : ["expectHeads": .array(hashes.map { .string($0) })])
        }
        let verdicts = PublishedHead.verdicts(published, in: response)
        if var members = response.objectValue, !published.isEmpty, members["expectedHeads"] != nil {
            members["expectedHeads"] = .array(verdicts.map(\.json))
            response = .object(members)
        }
        let derived = response["derived"]
        switch output.resolved {
        case .json: Printer.json(response)
        case .table:
            if response["intact"]?.boolValue == true {
                let pages = response["pages"].map { ", \(Printer.text($0["inUse"])) pages in use and \(Printer.text($0["free"])) free" } ?? ""
                Output.line("intact: \(Printer.text(response["checked"])) events\(pages), head \(Printer.text(response["headHash"]))")
            }
            for verdict in verdicts { Output.line(verdict.line) }
            if derived?["intact"]?.boolValue == true {
                let compared = DerivedDifference.Database.allCases.map(\.rawValue).filter { name in
                    !(derived?["notCompared"]?.arrayValue ?? []).contains { $0["database"]?.stringValue == name }
                }
                let through = UInt64(clamping: derived?["position"]?.intValue ?? 0)
                if !compared.isEmpty {
                    Output.line("derived data agrees with \(Positions.events(1, through: through)): \(compared.joined(separator: ", "))")
                }
            }
        }
        // One line for the databases left out for the same reason (every one of them, for a log of an older format).
        var skippedFor: [(reason: String, databases: [String])] = []
        for skipped in derived?["notCompared"]?.arrayValue ?? [] where derived?["intact"]?.boolValue == true {
            let reason = Printer.text(skipped["reason"])
            let database = Printer.text(skipped["database"])
            if let same = skippedFor.firstIndex(where: { $0.reason == reason }) {
                skippedFor[same].databases.append(database)
            } else {
                skippedFor.append((reason, [database]))
            }
        }
        for (reason, databases) in skippedFor {
            let advice = dataDir != nil && databases == ["cities"] ? "; give --gazetteer the file the daemon runs on" : ""
            Diagnostics.say("\(databases.joined(separator: ", ")) not compared: \(reason)\(advice)")
        }
        if response["intact"]?.boolValue != true {
            throw Self.failure(response, ofBackupCopy: false)
        }
        let mismatches = verdicts.compactMap(\.problem)
        if !mismatches.isEmpty {
            let derivedDiffers = derived.map { $0["intact"]?.boolValue != true } ?? false
            // A hash found at another position than the one given: the log holds that head; the position is wrong.
            let notHeld = verdicts.contains { $0.problem != nil && $0.foundAt == nil }
            throw ClientFailure.refused(
                code: "head_mismatch",
                message: mismatches.joined(separator: "; ") + ". "
                    + (notHeld
                        ? PublishedHead.advice(derivedDiffers: derivedDiffers)
                        : "The chain proves the log up to that event is the one published; only the position given with the hash differs"))
        }
        if let derived, derived["intact"]?.boolValue != true {
            throw Self.derivedFailure(derived)
        }
    }

    /// What a `verify` that found the log (or a backup's copy of it) not intact says: its damaged page, or where its
    /// chain breaks.
    static func failure(_ response: JSONValue, ofBackupCopy copy: Bool) -> ClientFailure {
        if let damage = response["pageDamage"] {
            let database = damage["database"].map { " of database \(Printer.text($0))" } ?? ""
            let page = "page \(Printer.text(damage["page"]))\(database)"
            return ClientFailure.refused(
                code: "page_damaged",
                message: copy
                    ? "the copy was kept, but \(page) of its data.mdb is damaged: \(Printer.text(damage["problem"])); its hash chain was not walked. Run incidentctl verify on the live log"
                    : "\(page) of data.mdb is damaged: \(Printer.text(damage["problem"])); the hash chain was not walked. \(EventLog.damageAdvice(database: damage["database"]?.stringValue))")
        }
        return ClientFailure.refused(
            code: "chain_broken",
            message: (copy ? "the copy was kept, but its chain breaks at " : "")
                + "position \(Printer.text(response["firstBadPosition"])): \(Printer.text(response["problem"])). "
                + (copy ? "Run incidentctl verify on the live log" : Self.chainRemedy))
    }

    /// What to do about a broken chain (README.md, on `--recover-from`).
    static let chainRemedy =
        "Keep data.mdb as it is (the events past the break are evidence too). Make a new log of the events the chain "
        + "proves: stop incidentd and run incidentd --recover-from DATA_DIR --data-dir NEW --fill-from BACKUP "
        + "--expect-head HASH, with the latest backups and the head hash last published (see README.md); or: "
        + EventLog.restoreAdvice

    /// What a `verify` whose evidence is intact, but whose indexes or projections differ from the events, says: the
    /// first entry that differs in each database, and what puts each right.
    static func derivedFailure(_ derived: JSONValue) -> ClientFailure {
        let differences = derived["differences"]?.arrayValue ?? []
        let named = differences.map { difference in
            let key = difference["key"].map { " \(Printer.text($0))" } ?? ""
            let position = difference["position"].map { " (event \(Printer.text($0)))" } ?? ""
            return "\(Printer.text(difference["database"]))\(key)\(position): \(Printer.text(difference["problem"]))"
        }
        let skipped = (derived["notCompared"]?.arrayValue ?? []).map {
            "\(Printer.text($0["database"])) not compared: \(Printer.text($0["reason"]))"
        }
        var remedies: [String] = []
        for remedy in [DerivedDifference.Remedy.rebuildProjections, .recoverFromEvents] {
            let databases = differences.filter { $0["remedy"]?.stringValue == remedy.rawValue }.map { Printer.text($0["database"]) }
            guard !databases.isEmpty else { continue }
            let which = Array(Set(databases)).sorted().joined(separator: " and ")
            switch remedy {
            case .rebuildProjections:
                remedies.append(
                    "To put \(which) right, stop incidentd and start it once with --rebuild-projections: it makes every stream summary again from its event, then folds the projections again from them.")
            case .recoverFromEvents:
                remedies.append(
                    "To put \(which) right, make the log again from its events: stop incidentd and run incidentd --recover-from with the data directory (see README.md), which makes both indexes again from the events the hash chain proves; or: \(EventLog.restoreAdvice).")
            }
        }
        return ClientFailure.refused(
            code: "derived_data_differs",
            message: "the pages and the hash chain are intact, but data derived from the events differs from them. "
                + (named + skipped).joined(separator: "; ") + ". " + (remedies.isEmpty ? "" : "\(derivedWarning) ")
                + remedies.joined(separator: " "))
    }

    /// Said before any remedy for derived data that differs: both remedies make it again from the events, and fold
    /// away what may be the last witness of events rewritten or removed.
    static let derivedWarning =
        "Derived data that differs can also mean that events were rewritten or removed outside incidentd, and it may "
        + "then be all that is left of what the log held: before putting it right, check the log against the head "
        + "last published (incidentctl verify --expect-head HASH) and keep a copy of the data directory."
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the log into a new directory, consistent and checked (admin role).",
        discussion: """
            The daemon creates DEST (a new directory: no backup ever overwrites another) and writes there a \
            compacted copy of the log as of one commit, synced to disk, then checks the copy's hash chain from \
            position 1 and prints the head it ends in. Appends go on meanwhile. The daemon writes the copy, so \
            DEST must be where it may write (under systemd: its state directory, or a path added with \
            ReadWritePaths=). A relative DEST is taken from the current directory.

            Root and incidentd's own user may give any DEST; any other admin only a new directory directly \
            in daemon.backup_dir (by default backups in the data directory: /var/lib/incidentd/backups), \
            else permission_denied. Either way DEST is refused (invalid_request, naming the entry) when a \
            directory on the way belongs to a user other than root or incidentd's own user, or others may write it \
            without the sticky bit, or a symbolic link on the way is another user's: whoever could change the \
            way could lead the backup elsewhere. A refused backup makes nothing.

            DEST is a data directory: `incidentd --data-dir DEST` serves it, `incidentctl replay --data-dir \
            DEST` reads it. To restore, stop the daemon and put DEST/data.mdb in place of its data directory's.

            Example:
              incidentctl backup /var/lib/incidentd/backups/$(date +%F)
            """)

    @Argument(help: ArgumentHelp("The new directory to write the copy into.", valueName: "dest")) var destination: String
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        // Joined to the working directory, an empty path would name it, and be refused as a directory that exists.
        if destination.isEmpty { throw ValidationError("<dest>: empty: give the new directory to write the copy into") }
    }

    func run() throws {
        let path = destination.hasPrefix("/") ? destination : FileManager.default.currentDirectoryPath + "/" + destination
        let client = try connection.connect(.walk)
        let response: JSONValue
        do {
            response = try client.document(.backup, ["path": .string(path)])
        } catch {
            guard let why = ClientFailure.unreachableReason(error) else { throw error }
            throw ClientFailure.unreachable(
                "\(why), after the backup was asked for: \(path) may hold nothing, a copy cut short "
                    + "(data.mdb.incomplete) or a whole one, and `incidentctl verify --data-dir \(path)` tells which; "
                    + "to be sure of a backup, make it again into a new directory")
        }
        switch output.resolved {
        case .json: Printer.json(response)
        case .table:
            let mebibytes = Double(response["bytes"]?.intValue ?? 0) / 1_048_576
            let copied =
                "\(Positions.positions(1, through: UInt64(clamping: response["headPosition"]?.intValue ?? 0))) into \(Printer.text(response["path"])) "
                + "(\(String(format: "%.1f", mebibytes)) MiB in \(Printer.text(response["seconds"])) s)"
            if response["intact"]?.boolValue == true {
                Output.line("backed up " + copied)
                Output.line("the copy verifies: head \(Printer.text(response["headHash"]))")
            } else {
                Output.line("copied " + copied + ", but the copy does not verify: it is no good backup (why on stderr)")
            }
        }
        if response["intact"]?.boolValue != true {
            throw Verify.failure(response, ofBackupCopy: true)
        }
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold the log into the city projections afresh, from the events alone.",
        discussion: """
            Prints the same document as `incidentctl cities`, computed from the events alone rather than from the \
            projections the daemon keeps, so the two can be compared directly; and it can stop early, to show what \
            was known, or what had happened, at a given time.

            Through the daemon's socket by default (the reader role, the daemon's gazetteer). With --data-dir it \
            reads the LMDB log directly instead, read-only (readers never block the running daemon); that needs \
            read access to data.mdb and write access to LMDB's lock.mdb beside it (as for verify --data-dir), and \
            --gazetteer names the gazetteer to fold with: a city's \
            name, region and population come from it, so give the file the daemon runs on (replay says on stderr \
            when the daemon built its projections with another one).

            A date without a time means its first instant: --as-of 2026-12-06 is what was known at midnight UTC. \
            A date-time needs its zone, Z (UTC) or ±HH:MM: 2026-12-06T19:22Z, 2026-12-06T21:22+02:00.

            Examples:
              incidentctl replay
              incidentctl replay --until-position 5
              incidentctl replay --as-of 2026-11-25T12:00Z
              incidentctl replay --occurred-before 2022-03-02
              incidentctl replay --data-dir /var/lib/incidentd \\
                  --gazetteer /etc/incidentd/cities.toml
            """)

    @Option(help: ArgumentHelp("Read this data directory directly instead of asking the daemon.", valueName: "dir"))
    var dataDir: String?
    @Option(parsing: .unconditional, help: "Stop after this position.", transform: { try wholeNumber($0) }) var untilPosition: UInt64?
    @Option(
        help: ArgumentHelp("Only what had been recorded by this time: \(TimeArgument.forms).", valueName: "time"),
        transform: TimeArgument.bound)
    var asOf: String?
    @Option(
        help: ArgumentHelp("Only what had happened before this time: \(TimeArgument.forms).", valueName: "time"),
        transform: TimeArgument.bound)
    var occurredBefore: String?
    @Option(help: ArgumentHelp("With --data-dir: the gazetteer file for city names (default: the compiled-in one).", valueName: "file"))
    var gazetteer: String?
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if gazetteer != nil && dataDir == nil {
            throw ValidationError("--gazetteer goes with --data-dir: through the socket the daemon folds with its own gazetteer")
        }
        try connection.refuseSocket(besides: dataDir)
    }

    func run() throws {
        let document: JSONValue
        if let dataDir {
            document = try replayDirectly(dataDir)
        } else {
            var body: [String: JSONValue] = [:]
            if let untilPosition { body["untilPosition"] = .int(Int64(clamping: untilPosition)) }
            if let asOf { body["asOf"] = .string(asOf) }
            if let occurredBefore { body["occurredBefore"] = .string(occurredBefore) }
            document = try connection.connect(.walk).call(.replay, body)["cities"] ?? .array([])
        }
        switch output.resolved {
        case .json: Printer.json(document)
        case .table: Printer.cities(document.arrayValue ?? [])
        }
    }

    private func replayDirectly(_ dataDir: String) throws -> JSONValue {
        let cities = try gazetteer.map { try Gazetteer(contentsOfFile: $0) } ?? Gazetteer.embedded
        let log = try openDirectly(dataDir, gazetteer: cities)
        // Names, regions and populations come from the gazetteer: with another than the daemon's, the two differ.
        if (try? log.projectionsBuiltWithThisGazetteer()) == false {
            FileHandle.standardError.write(Data((
                "incidentctl: the daemon built the projections in \(dataDir) with another gazetteer than this replay's ("
                    + (gazetteer ?? "the compiled-in one")
                    + "), so cities may differ from this; give --gazetteer the file the daemon runs on\n").utf8))
        }
        let limit = ReplayLimit(
            untilPosition: untilPosition, asOf: asOf.flatMap(ParsedDate.parse)?.start,
            occurredBefore: occurredBefore.flatMap(ParsedDate.parse)?.start)
        do {
            return JSONValue.array(try log.replay(limit).map(\.json))
        } catch let error as LogError where error.code == .damagedEvent {
            // As the daemon answers it, so that both ways of replaying tell damage apart from bad usage.
            throw ClientFailure.refused(code: "log_damaged", message: error.message)
        }
    }
}

/// The log in data directory `dataDir`, opened read-only (``openDirectly(_:_:)``).
func openDirectly(_ dataDir: String, gazetteer: Gazetteer = .embedded) throws -> EventLog {
    try openDirectly(dataDir) { try EventLog(options: LogOptions(directory: $0, readOnly: true), gazetteer: gazetteer) }
}

/// The log in data directory `dataDir`, opened read-only by `open`, which is given the path to open it by. A damaged
/// one is refused (exit 1: `page_damaged`, or `log_damaged` for a file cut short or a log that cannot be read;
/// `permission_denied` for files this user may not open; `storage_full` for a file system with no room for LMDB's
/// `lock.mdb`), and so is one of an older format that `open` does not read (`older_format`, exit 1); a directory
/// that holds none, or one that cannot be opened otherwise, is bad usage (exit 2) naming it and why. It is read as
/// its owner when root runs this, and one that others than its owner may write is refused (``DataDirectoryAccess``).
func openDirectly<Log>(_ dataDir: String, _ open: (String) throws -> Log) throws -> Log {
    let resolved = try DataDirectoryAccess.enter(dataDir)
    do {
        return try open(resolved)
    } catch let error as LogError where error.code == .olderFormat {
        throw ClientFailure.refused(code: "older_format", message: error.message)
    } catch let error as LogError where error.code == .damagedPage {
        throw ClientFailure.refused(code: "page_damaged", message: error.message)
    } catch let error as LogError where error.code == .corrupt {
        throw ClientFailure.refused(code: "log_damaged", message: error.message)
    } catch let error as LogError where error.code == .accessDenied {
        throw ClientFailure.refused(code: "permission_denied", message: error.message)
    } catch let error as LogError where error.code == .storageFull {
        throw ClientFailure.refused(code: "storage_full", message: error.message)
    } catch let error as LogError {
        // It names the directory and why.
        throw ClientFailure.usage(error.message)
    } catch {
        throw ClientFailure.usage("cannot open the log in \(dataDir): \(error)")
    }
}

/// Refuses, as bad usage naming `option`, a city name that is empty or only whitespace: no spelling of any city, which
/// the daemon would answer `unknown_city` with nothing to suggest.
func checkCityName(_ name: String, option: String) throws {
    guard name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return }
    throw ValidationError(
        "\(option): \(name.isEmpty ? "empty" : "only whitespace"): give a city, in any spelling, as in incidentctl city Kupiansk")
}
