import ArgumentParser
import Foundation
import IncidentDomain
import IncidentProtocol
import StrictJSON

/// Sends one event and prints its incident and position.
private func appendOne(
    _ event: [String: JSONValue], control: AppendControlOptions, allowNewCity: Bool, connection: ConnectionOptions, output: OutputOptions
) throws {
    let client = try connection.connect()
    var body: [String: JSONValue] = ["events": .array([.object(event)])]
    if allowNewCity { body["allowNewCity"] = .bool(true) }
    try client.send(.append, body)
    let answer: JSONValue
    do {
        answer = try client.receive()
    } catch {
        guard let why = ClientFailure.unreachableReason(error) else { throw error }
        throw ClientFailure.unreachable(
            "\(why), after the event was sent: it may or may not be stored. " + unansweredAdvice(event, idGiven: control.eventId != nil))
    }
    let response = try SocketClient.check(answer)
    warnOfNewCities(response)
    let incident = response["incidents"]?.arrayValue?.first
    let position = response["positions"]?.arrayValue?.first
    switch output.resolved {
    case .json: Printer.json(["incident": incident ?? .null, "position": position ?? .null])
    case .table: Output.line("\(Printer.text(incident)) at position \(Printer.text(position))")
    }
}

/// Says on standard error which cities an append's reports made under names close to cities the log knows already
/// (the answer's `newCities`): a typo there makes a second city and splits the first one's figures.
func warnOfNewCities(_ response: JSONValue) {
    for made in response["newCities"]?.arrayValue ?? [] {
        let near = (made["near"]?.arrayValue ?? []).compactMap(\.stringValue)
        guard let closest = near.first else { continue }
        Diagnostics.say(
            "warning: \"\(Printer.text(made["city"]))\" made the new city \(Printer.text(made["cityId"])), its name close to "
                + near.joined(separator: " or ")
                + ", which this log knows already: if it is \(near.count == 1 ? "that city" : "one of them"), retract its incident (incidentctl outcome ID --status retracted) and report it again with --city \(closest)")
    }
}

/// Refuses, as bad usage, what no incident id can be (`[a-z0-9][a-z0-9-]{0,127}`, once trimmed of surrounding
/// whitespace as the daemon takes it: ``IncidentID/normalized(_:)``), which a report would have refused and a query
/// found no incident by; one that is an id once in lower case is shown that way.
func checkIncidentId(_ id: String, option: String) throws {
    guard IncidentID.normalized(id) == nil else { return }
    if let lower = IncidentID.normalized(id.lowercased()) {
        throw ValidationError("\(option): '\(id)' is not an incident id: incident ids are lower case; did you mean '\(lower)'?")
    }
    throw ValidationError(
        "\(option): '\(id.prefix(140))' is not an incident id: lowercase letters, digits and '-', starting with a letter or digit, at most 128 characters")
}

/// What to do about an event sent without an answer: send it again with its eventId, which was given or chosen for
/// it, and which the daemon stores once.
private func unansweredAdvice(_ event: [String: JSONValue], idGiven: Bool) -> String {
    let eventId = event["eventId"]?.stringValue ?? ""
    if idGiven {
        return "Once incidentd is back, send it again with the same --event-id \(eventId): it is never stored twice."
    }
    return "It was sent with the event id \(eventId): once incidentd is back, run the same command again with "
        + "--event-id \(eventId) added, and it is stored once, whether or not it was stored before."
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report a new incident.",
        discussion: """
            Prints the incident id (generated from the city, date and kind unless --incident is given) and the \
            event's position in the log. The city may be any spelling the gazetteer or the log knows (one an \
            earlier report added with --allow-new-city too); an unknown one is refused with suggestions unless \
            --allow-new-city is set. The incident is as verified as its sources \
            say: --source NAME --source-verification verified (or --verification verified); an outcome can \
            verify it later (`incidentctl outcome ID --verification V`).

            Each source's details (--source-url, --source-sha256, --source-method, --source-verification, \
            --verified-by) go with the --source written before them, up to the next --source; one before any \
            --source, or the same one twice for a source, is refused. Below, the hash is the repost's, and the \
            witness video has none:
              --source "Witness video" --source-verification unverified \\
              --source "Telegram repost" --source-sha256 HEX \\
                  --verified-by "our archive team"

            Example, a new blockade in Melitopol (not the article's of 1 March, which `make run` loads), whose \
            id is melitopol-2022-03-04-blockade:
              incidentctl report --city Melitopoli --kind blockade --occurred 2022-03-04 \\
                  --location "the road to Vasylivka" --participants 20-40 \\
                  --target "convoy of 5 fuel trucks" \\
                  --source "local Telegram channel" --source-verification unverified

            Kinds: \(IncidentKind.valueList).
            """)

    @Option(help: "The city, as reported (any spelling).") var city: String
    @Option(help: "What happened.") var kind: IncidentKind
    @Option(help: ArgumentHelp("When: \(TimeArgument.forms).", valueName: "date"), transform: TimeArgument.occurred)
    var occurred: String
    @Option(help: "How precisely --occurred is known (default: what it expresses).") var precision: Precision?
    @Option(help: "The incident id to use: lowercase letters, digits and '-'.") var incident: String?
    @Option(parsing: .unconditional, help: ArgumentHelp("How many took part: N, or LOW-HIGH.", valueName: "n|low-high")) var participants: String?
    @Option(help: "Where in the city, e.g. \"in front of the city hall\".") var location: String?
    @Option(help: "What happened, in a few sentences.") var description: String?
    @Option(name: .customLong("target"), help: "What the action was aimed at (repeatable).") var targets: [String] = []
    @Option(name: .customLong("tag"), help: "A free tag (repeatable).") var tags: [String] = []
    @Option(parsing: .unconditional, help: "Latitude, WGS 84 (south is negative).") var lat: Double?
    @Option(parsing: .unconditional, help: "Longitude, WGS 84 (west is negative).") var lon: Double?
    @Option(
        help: ArgumentHelp(
            "How far every --source is verified (as --source-verification after each; needs --source).", valueName: "status"))
    var verification: Verification?
    @Flag(help: "Accept a city the gazetteer does not know, storing a new canonical id.") var allowNewCity = false
    @OptionGroup var source: SourceOptions
    @OptionGroup var control: AppendControlOptions
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    /// --participants as a range: N or LOW-HIGH.
    static func participantRange(_ text: String) throws(ValidationError) -> (Int64, Int64) {
        try parseRange(text, option: "--participants", expected: "--participants: a whole number (150) or a range (100-200)")
    }

    func validate() throws {
        try checkCityName(city, option: "--city")
        if let verification {
            if source.details.sources.isEmpty {
                throw ValidationError(
                    "--verification sets how far each --source is verified, and no --source was given: add --source NAME (who said it), or report without --verification and verify the incident later with `incidentctl outcome ID --verification V`")
            }
            if let other = source.details.verifications.first(where: { $0 != verification }) {
                throw ValidationError(
                    "--verification \(verification.rawValue) sets how far every --source is verified, and --source-verification \(other.rawValue) says otherwise for one of them: give one of them")
            }
        }
        if (lat == nil) != (lon == nil) { throw ValidationError("--lat and --lon go together") }
        if let lat, !(-90...90).contains(lat) { throw ValidationError("--lat: a latitude from -90 to 90 (not \(lat))") }
        if let lon, !(-180...180).contains(lon) { throw ValidationError("--lon: a longitude from -180 to 180 (not \(lon))") }
        if let incident { try checkIncidentId(incident, option: "--incident") }
        if let participants { _ = try Self.participantRange(participants) }
    }

    func run() throws {
        var data: [String: JSONValue] = ["city": .string(city), "kind": .string(kind.rawValue)]
        if let location { data["location"] = .string(location) }
        if let description { data["description"] = .string(description) }
        if !targets.isEmpty { data["targets"] = .string(targets.joined(separator: "; ")) }
        if !tags.isEmpty { data["tags"] = .array(tags.map { .string($0) }) }
        if let lat, let lon { data["coordinates"] = ["lat": .double(lat), "lon": .double(lon)] }
        if let participants {
            let (low, high) = try Self.participantRange(participants)
            data["participants"] = ["low": .int(low), "high": .int(high)]
        }
        var event: [String: JSONValue] = ["type": "incident-reported", "occurredAt": .string(occurred), "data": .object(data)]
        if let precision { event["precision"] = .string(precision.rawValue) }
        if let incident { event["incident"] = .string(incident) }
        if let sources = try source.json(everySource: verification) { event["sources"] = sources }
        control.apply(to: &event)
        do {
            try appendOne(event, control: control, allowNewCity: allowNewCity, connection: connection, output: output)
        } catch ClientFailure.refused(code: "unknown_city", let message) {
            throw ClientFailure.refused(code: "unknown_city", message: ClientFailure.unknownCityForCommandLine(message))
        }
    }
}

/// Parses "150" or "100-200", given to `option`; else a ValidationError that says `expected`, or, for a range whose
/// low end is above its high end, that it is.
func parseRange(_ text: String, option: String, expected: String) throws(ValidationError) -> (Int64, Int64) {
    // The tables print a range with an en dash (300–500), which may be copied back.
    let parts = text.split(omittingEmptySubsequences: false) { $0 == "-" || $0 == "–" }
    if parts.count == 1, let n = Int64(parts[0]), n >= 0 { return (n, n) }
    if parts.count == 2, let low = Int64(parts[0]), let high = Int64(parts[1]), low >= 0, high >= 0 {
        guard low <= high else {
            throw ValidationError("\(option): \(text) is a range whose low end (\(low)) is above its high end (\(high)): give LOW-HIGH, as \(high)-\(low)")
        }
        return (low, high)
    }
    throw ValidationError(expected)
}

struct Observe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record how a force responded to an incident.",
        discussion: """
            Example:
              incidentctl observe berdiansk-2022-02-28-city-council \\
                  --by "Russian armed forces" --response crowd-dispersal --detained 0

            Responses: \(ResponseKind.valueList). Without --occurred the response takes the incident's date.

            Each source's details (--source-url, --source-sha256, --source-method, --source-verification, \
            --verified-by) go with the --source written before them, up to the next --source, as in \
            --source "Witness video" --source-url https://example.org/v --source "Telegram repost".
            """)

    @Argument(help: "The incident id.") var incident: String
    @Option(
        name: .customLong("response"),
        help: ArgumentHelp(
            "What the force did, comma-separated (repeatable): \(ResponseKind.valueList).", valueName: "r[,r…]"),
        transform: ResponseKind.list)
    var responses: [[ResponseKind]]
    @Option(help: "The responding force, e.g. \"Russian armed forces\".") var by: String
    @Option(
        help: ArgumentHelp("When it happened (default: the incident's date): \(TimeArgument.forms).", valueName: "date"),
        transform: TimeArgument.occurred)
    var occurred: String?
    @Option(help: "How precisely --occurred is known (default: what it expresses).") var precision: Precision?
    @Option(parsing: .unconditional, help: "People killed.") var killed: Int?
    @Option(parsing: .unconditional, help: "People injured.") var injured: Int?
    @Option(parsing: .unconditional, help: "People detained.") var detained: Int?
    @Option(help: "What was seen.") var description: String?
    @OptionGroup var source: SourceOptions
    @OptionGroup var control: AppendControlOptions
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        try checkIncidentId(incident, option: "the incident id")
        for (flag, count) in [("--killed", killed), ("--injured", injured), ("--detained", detained)] {
            if let count, count < 0 { throw ValidationError("\(flag): a number of people, 0 or more (not \(count))") }
        }
        var seen: Set<ResponseKind> = []
        for kind in responses.joined() where !seen.insert(kind).inserted {
            throw ValidationError("--response: \(kind.rawValue) is given twice; name each response once")
        }
        if seen.count > 1, seen.contains(.none) {
            throw ValidationError("--response: none means the force was seen not to respond; give it alone, not beside another response")
        }
    }

    func run() throws {
        var data: [String: JSONValue] = ["by": .string(by), "responses": .array(responses.joined().map { .string($0.rawValue) })]
        if let killed { data["killed"] = .int(Int64(killed)) }
        if let injured { data["injured"] = .int(Int64(injured)) }
        if let detained { data["detained"] = .int(Int64(detained)) }
        if let description { data["description"] = .string(description) }
        var event: [String: JSONValue] = ["type": "response-observed", "incident": .string(incident), "data": .object(data)]
        if let occurred { event["occurredAt"] = .string(occurred) }
        if let precision { event["precision"] = .string(precision.rawValue) }
        if let sources = try source.json() { event["sources"] = sources }
        control.apply(to: &event)
        try appendOne(event, control: control, allowNewCity: false, connection: connection, output: output)
    }
}

struct Outcome: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Update where an incident stands: its status, its verification, or corrections to the report.",
        discussion: """
            Nothing is ever changed in place: the outcome is a new event, the projections show the corrected \
            values, and `incidentctl incident ID` shows the whole history.

            Examples:
              incidentctl outcome melitopol-2022-03-01-convoy-blockade \\
                  --status objective-achieved --verification verified \\
                  --verified-by "Les Révélateurs" --method geolocation
              incidentctl outcome kupiansk-2022-03-01-city-hall \\
                  --correct participants=100-200 --note "second video shows a larger crowd"
              incidentctl outcome berdiansk-2022-02-28-molotov-tank --status retracted \\
                  --note "the video was filmed in another town"

            Statuses: \(OutcomeStatus.valueList). Without --status the incident keeps the one it has: a \
            correction, a verification or a note alone changes nothing else (the outcome is refused, \
            wrong_expected_version, if another event reaches the incident between the reading and the append).
            Correctable fields: kind, location, coordinates (--correct coordinates=LAT,LON), description, \
            participants (N or LOW-HIGH), targets, tags (comma-separated, tags=a,b; or a JSON array of strings, \
            each a tag exactly, for tags with commas in them: tags='["Kupiansk, market","night"]'); all of them but \
            kind can be removed (--remove location), and the history keeps what they were.

            The outcome's sources: each one's details (--source-url, --source-sha256, --source-method, \
            --source-verification, --source-verified-by) go with the --source written before them, up to the \
            next --source.
            """)

    @Argument(help: "The incident id.") var incident: String
    @Option(
        help: ArgumentHelp(
            "Where the incident stands now (default: where it stands: read first, and the outcome refused if the incident changes before it is stored).",
            valueName: "status"))
    var status: OutcomeStatus?
    @Option(
        help: ArgumentHelp(
            "How far the incident itself is verified from this outcome on (how far this outcome's sources are: --source-verification).",
            valueName: "status"))
    var verification: Verification?
    @Option(
        name: .customLong("verified-by"),
        help: "Who verified the incident itself (with --verification). Who verified a --source is --source-verified-by here (--verified-by in report and observe).")
    var verifiedBy: String?
    @Option(help: "How the incident was verified, e.g. geolocation (with --verification).") var method: String?
    @Option(help: "Why, in a sentence.") var note: String?
    @Option(name: .customLong("correct"), help: ArgumentHelp("A corrected report field (repeatable).", valueName: "field=value"))
    var corrections: [String] = []
    @Option(
        name: .customLong("remove"),
        help: ArgumentHelp("A report field the incident no longer has, e.g. a location that was wrong (repeatable).", valueName: "field"))
    var removals: [String] = []
    @Option(
        help: ArgumentHelp("When it was established (default: now): \(TimeArgument.forms).", valueName: "date"),
        transform: TimeArgument.occurred)
    var occurred: String?
    @OptionGroup var source: OutcomeSourceOptions
    @OptionGroup var control: AppendControlOptions
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func correctionsJSON() throws -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        for item in corrections {
            guard let eq = item.firstIndex(of: "=") else { throw ValidationError("--correct \(item): expected field=value") }
            let field = String(item[..<eq])
            let value = String(item[item.index(after: eq)...])
            try Self.checkCorrectable(field, option: "--correct <field=value>", given: item)
            if result[field] != nil {
                throw ValidationError("--correct: \(field) is given twice; correct each field once")
            }
            switch field {
            case "kind":
                do {
                    result[field] = .string(try IncidentKind.named(value, as: "a kind").rawValue)
                } catch let error as ValidationError {
                    throw ValidationError("The value '\(item)' is invalid for '--correct <field=value>': \(error.message)")
                }
            case "participants":
                let (low, high) = try parseRange(value, option: "--correct participants", expected: "--correct participants=N or LOW-HIGH")
                result[field] = ["low": .int(low), "high": .int(high)]
            case "tags":
                result[field] = .array(try Self.tags(value).map { .string($0) })
            case "coordinates":
                let parts = value.split(separator: ",", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
                guard parts.count == 2, let lat = parts[0], let lon = parts[1], (-90...90).contains(lat), (-180...180).contains(lon)
                else {
                    throw ValidationError(
                        "--correct coordinates=LAT,LON, a latitude from -90 to 90 and a longitude from -180 to 180, e.g. coordinates=46.8489,35.3675 (south and west are negative)")
                }
                result[field] = ["lat": .double(lat), "lon": .double(lon)]
            default:
                result[field] = .string(value)
            }
        }
        var removed: Set<String> = []
        for field in removals {
            try Self.checkCorrectable(field, option: "--remove <field>", given: field)
            if field == "kind" {
                throw ValidationError(
                    "The value 'kind' is invalid for '--remove <field>': an incident always has a kind; correct it instead (--correct kind=K)")
            }
            guard removed.insert(field).inserted else {
                throw ValidationError("--remove: \(field) is given twice; remove each field once")
            }
            guard result[field] == nil else { throw ValidationError("--remove \(field): --correct gives it a value too") }
            result[field] = .null
        }
        return result
    }

    func validate() throws {
        try checkIncidentId(incident, option: "the incident id")
        if verification == nil, let given = verifiedBy != nil ? "--verified-by" : method != nil ? "--method" : nil {
            // `report` takes --verified-by for its sources (as SPEC's `--source ...` does); here it is the incident's.
            let sourceFlag = given == "--verified-by" ? "who verified a --source is --source-verified-by" : "how a --source was verified is --source-method"
            let forSources = source.details.sources.isEmpty ? "" : "; \(sourceFlag) for an outcome"
            throw ValidationError(
                "\(given) says who verified the incident or how, and goes with --verification: add --verification V (\(Verification.valueList)), or leave \(given) out\(forSources)")
        }
        if status == nil && verification == nil && note == nil && corrections.isEmpty && removals.isEmpty {
            throw ValidationError(
                "nothing to record: give --status, --verification, --correct, --remove or --note (an outcome without --status keeps the incident's)")
        }
        _ = try correctionsJSON()
    }

    /// The tags of `--correct tags=VALUE`: a JSON array of strings, each a tag exactly (`["a,b","c"]`), for a tag
    /// with a comma in it; else the comma-separated tags, empty ones left out.
    static func tags(_ value: String) throws -> [String] {
        guard value.hasPrefix("[") else { return value.split(separator: ",").map(String.init) }
        let example = #"tags=["a,b","c"]"#
        let parsed: JSONValue
        do {
            parsed = try JSONReader().read(value)
        } catch {
            throw ValidationError(
                "--correct tags=\(value): a value that starts with '[' is read as a JSON array of strings, as \(example), and this one is not JSON (\(error)); a tag that starts with '[' goes inside one: tags=[\"[draft]\"]")
        }
        let tags = parsed.arrayValue?.compactMap(\.stringValue)
        guard let tags, tags.count == parsed.arrayValue?.count else {
            throw ValidationError("--correct tags=\(value): a JSON array of strings, each a tag, as \(example)")
        }
        return tags
    }

    /// Refuses, naming `option` and the value `given`, a field that an outcome may not correct.
    private static func checkCorrectable(_ field: String, option: String, given: String) throws {
        guard !ReportData.correctableFields.contains(field) else { return }
        let why: String
        switch field {
        case "city":
            why = "the city cannot be corrected; retract the incident and report it again"
        case "occurredAt", "precision":
            why = "when an incident happened cannot be corrected (outcome's --occurred dates the outcome, not the incident). "
                + "Retract the incident (incidentctl outcome <incident> --status retracted --note \"wrong date\") and report it "
                + "again with the right date (incidentctl report … --occurred DATE)"
        default:
            why = "'\(field)' is not a field of the report that can be corrected. Please provide one of the following:\n"
                + ReportData.correctableFields.sorted().map { "  - \($0)" }.joined(separator: "\n")
        }
        throw ValidationError("The value '\(given)' is invalid for '\(option)': \(why)")
    }

    func run() throws {
        var data: [String: JSONValue] = [:]
        // Without --status, the incident's own, at the version read: an outcome stored after another event changed it
        // would put back what that event changed.
        var readAt: Int64?
        if let status {
            data["status"] = .string(status.rawValue)
        } else {
            let answer = try connection.connect().call(.incident, ["incident": .string(incident)])
            guard let status = answer["incident"]?["status"]?.stringValue, let version = answer["incident"]?["version"]?.intValue else {
                throw ClientFailure.protocolViolation("the incident answer has no status or version: \(answer.canonicalString().prefix(200))")
            }
            data["status"] = .string(status)
            readAt = version
        }
        if let verification { data["verification"] = .string(verification.rawValue) }
        if let verifiedBy { data["verifiedBy"] = .string(verifiedBy) }
        if let method { data["method"] = .string(method) }
        if let note { data["note"] = .string(note) }
        let corrections = try correctionsJSON()
        if !corrections.isEmpty { data["corrections"] = .object(corrections) }
        var event: [String: JSONValue] = ["type": "outcome-updated", "incident": .string(incident), "data": .object(data)]
        if let occurred { event["occurredAt"] = .string(occurred) }
        if let sources = try source.json() { event["sources"] = sources }
        control.apply(to: &event)
        if event["expectedVersion"] == nil, let readAt { event["expectedVersion"] = .int(readAt) }
        try appendOne(event, control: control, allowNewCity: false, connection: connection, output: output)
    }
}

extension ClientFailure {
    /// The daemon's `unknown_city` message worded for the command line: the daemon names the protocol's member
    /// (allowNewCity), where the commands take a flag.
    static func unknownCityForCommandLine(_ message: String) -> String {
        let hint = "give --allow-new-city to add a new city"
        var text = message.replacingOccurrences(of: "set allowNewCity to add a new city", with: hint)
        if !text.contains("--allow-new-city") { text += " (\(hint))" }
        return text
    }
}
