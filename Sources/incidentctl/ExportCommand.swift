import ArgumentParser
import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import IncidentProtocol
import StrictJSON

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the log out as JSON lines that append takes back, ACLED-style CSV, or GeoJSON.",
        discussion: """
            Exports the log as it stands when the command starts, positions 1 to the head (printed on stderr \
            with the head's hash), on standard output:
              jsonl    every event in log order, in the wire form append takes: the daemon's envelope \
            (position, version, recordedAt, recordedBy, schema, hashes) left out. Each event keeps its eventId, \
            so appending the file again stores nothing twice, and each report its cityId, the city the daemon \
            resolved it to, which append stores as given: appended to an empty log (with --allow-new-city when \
            the log has cities the gazetteer does not know), the file gives the same events at the same \
            positions in the same cities, on the same gazetteer or a newer one that spells them otherwise. \
            That makes a new log, not the old one moved: the daemon stores each event anew, with a hash chain of \
            its own (heads published from the old log do not verify against it: verify --expect-head says \
            head_mismatch), the time of the import as recordedAt and whoever ran it as recordedBy, so replay \
            --as-of a time before the import finds nothing. To move the log itself, with its chain and who \
            recorded what and when, copy it: incidentctl backup DEST, then incidentd --data-dir DEST.
              csv      one row per incident, in the order they were reported, with ACLED's columns \
            (event_id_cnty, event_date, time_precision, event_type, sub_event_type, actor1, actor2, location, \
            latitude, longitude, geo_precision, source, notes, fatalities, timestamp) and the report as \
            corrected. A demonstration met with warning shots or tear gas is a "Protest with intervention", \
            one met with live fire an "Excessive force against protesters".
              geojson  a FeatureCollection with a point per incident (the report's coordinates, else its \
            city's from the gazetteer, as coordinatesFrom says) and what the incident document says of it.

            An incident whose latest status is retracted (withdrawn by those who reported it, as a report of \
            the wrong city is) has no row in the CSV and no feature in the GeoJSON, as it counts in no city's \
            sums; --include-retracted keeps them, with their status. The JSON lines hold every event, always.

            A text cell of the CSV that begins with =, +, -, @, a tab or a carriage return (a source's name or a \
            description from an untrusted channel, say) is written with a ' before it, as OWASP advises, so that \
            a spreadsheet (Excel, LibreOffice) shows it rather than running it as a formula; the numeric columns \
            (\(numericColumns.sorted().joined(separator: ", "))) are written as they are. --csv-raw-text writes \
            text cells unchanged, for tools that are not spreadsheets.

            ACLED's geo_precision is 1 wherever there are coordinates: an incident is reported in a named \
            town, and is placed at the report's own coordinates or at that town's, which is ACLED's 1 ("the \
            town is named and coordinates are available for it"); 2 and 3 are for a part of a region or a \
            region, which a report never names.

            A city's coordinates come from the gazetteer --gazetteer names, the compiled-in one unless it is \
            given: give the file the daemon runs on (gazetteer.file in incidentd.toml). The daemon does not send \
            its gazetteer, but when the cities it knows with incidents are not the export's (a city of the \
            daemon's gazetteer that the export's does not know, or another name, region or population), the CSV \
            and GeoJSON exports warn on stderr. An incident in a city that no gazetteer places (one a report added \
            with --allow-new-city) and without coordinates of its own has none: empty latitude and longitude in \
            the CSV, a null geometry in the GeoJSON.

            A daemon that goes away part way (a restart, say) cuts the export short: it then says on stderr that \
            the output is incomplete, after which position (jsonl) or how many incidents (csv, geojson) of which \
            head, and to run it again, and exits with the failure's status (3: the daemon cannot be reached), \
            never 0 and never with the "exported positions" line.

            Examples:
              incidentctl export > log.jsonl
              # the same events in a new log of another daemon (a chain of its own):
              incidentctl append --socket /run/other.sock --allow-new-city log.jsonl
              incidentctl export --format csv > incidents.csv
              incidentctl export --format geojson > incidents.geojson
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case jsonl, csv, geojson
    }

    @Option(help: "jsonl, csv or geojson.") var format: Format = .jsonl
    @Flag(help: "With --format csv: write text cells as they are, without the ' before one a spreadsheet would run as a formula.")
    var csvRawText = false
    @Flag(help: "With --format csv or geojson: keep the incidents whose latest status is retracted, which are left out.")
    var includeRetracted = false
    @Option(
        help: ArgumentHelp(
            "Gazetteer file for city coordinates, the daemon's own (default: the compiled-in one; a warning says when the daemon's differs).",
            valueName: "file"))
    var gazetteer: String?
    @OptionGroup var connection: ConnectionOptions

    /// ACLED's columns that hold numbers, which may begin with a minus sign and are never formulas.
    static let numericColumns: Set<String> = ["time_precision", "latitude", "longitude", "geo_precision", "fatalities", "timestamp"]

    func validate() throws {
        if csvRawText && format != .csv { throw ValidationError("--csv-raw-text goes with --format csv") }
        if includeRetracted && format == .jsonl {
            throw ValidationError("--include-retracted goes with --format csv or geojson; the JSON lines hold every event")
        }
    }

    /// The members of a stored event that the daemon fills, which `append` refuses.
    static let envelope: Set<String> = ["position", "version", "recordedAt", "recordedBy", "schema", "prevHash", "hash"]

    func run() throws {
        let cities = try gazetteer.map { try Gazetteer(contentsOfFile: $0) } ?? Gazetteer.embedded
        let client = try connection.connect()
        let status = try Self.head(client)
        let head = status["position"]?.intValue ?? 0
        if format != .jsonl, let warning = try Self.otherGazetteer(client, than: cities, named: gazetteer) {
            Diagnostics.say(warning)
        }
        var retracted = 0
        func leftOut(_ document: JSONValue) -> Bool {
            guard !includeRetracted, document["status"]?.stringValue == OutcomeStatus.retracted.rawValue else { return false }
            retracted += 1
            return true
        }
        // Where the export stands, for a failure part way (the daemon restarted, say) to say so: a JSON-lines
        // export cut at a line boundary reads as a whole one.
        var lastWritten: Int64 = 0
        var incidentsWritten = 0
        var damaged = false
        do {
            switch format {
            case .jsonl:
                try client.readEvents([:], from: 1, through: head) { event in
                    // `read` sends a stored event whose JSON still parses as it is; what is archived must be what
                    // append takes back, so each is checked as it was when it was appended.
                    do {
                        _ = try RecordedEvent(json: event)
                    } catch {
                        damaged = true
                        Output.flush()
                        let position = event["position"]?.intValue.map(UInt64.init) ?? 0
                        throw ClientFailure.refused(
                            code: "log_damaged",
                            message: LogError.damagedEvent(at: position, "\(error)").message
                                + "; the events before it were written out, the export is not whole")
                    }
                    Output.write(Self.wireForm(of: event).canonicalString() + "\n")
                    lastWritten = event["position"]?.intValue ?? lastWritten
                }
            case .csv:
                Output.write(ACLED.columns.joined(separator: ",") + "\n")
                let guarded = ACLED.columns.map { !csvRawText && !Self.numericColumns.contains($0) }
                try Self.incidents(client, through: head) { document in
                    if leftOut(document) { return }
                    let fields = zip(IncidentRow(document, cities: cities).acledFields, guarded).map { field, guarded in
                        Self.csvField(guarded ? Self.notAFormula(field) : field)
                    }
                    Output.write(fields.joined(separator: ",") + "\n")
                    incidentsWritten += 1
                }
            case .geojson:
                Output.write(#"{"type":"FeatureCollection","features":["#)
                var first = true
                try Self.incidents(client, through: head) { document in
                    if leftOut(document) { return }
                    Output.write((first ? "\n" : ",\n") + IncidentRow(document, cities: cities).feature.canonicalString())
                    first = false
                    incidentsWritten += 1
                }
                Output.write("\n]}\n")
            }
        } catch let failure as ClientFailure where !damaged {
            Output.flush()
            let hash = Printer.text(status["headHash"])
            let reached = format == .jsonl
                ? (lastWritten == 0 ? "before its first event" : "after position \(lastWritten)") + " of \(head) (head \(hash))"
                : "after \(incidentsWritten) incident\(incidentsWritten == 1 ? "" : "s") of the log through position \(head) (head \(hash))"
            throw failure.adding(
                "; the export is cut short \(reached): the output is incomplete; run the export again"
                    + (format == .jsonl ? " (append passes over the events it already stored)" : ""))
        }
        Output.flush()
        var said = head == 0 ? "the log is empty" : "exported \(Positions.positions(1, through: UInt64(clamping: head))), head \(Printer.text(status["headHash"]))"
        if retracted > 0 {
            said += "; \(retracted) retracted incident\(retracted == 1 ? "" : "s") left out (--include-retracted keeps them)"
        }
        FileHandle.standardError.write(Data("incidentctl: \(said)\n".utf8))
    }

    /// The answer to `status`, the export's first request; a refusal for lack of a role names the export, which is
    /// what the user asked for, rather than `status`.
    static func head(_ client: SocketClient) throws(ClientFailure) -> JSONValue {
        do {
            return try client.call(.status)
        } catch {
            throw error.naming("export", insteadOf: [.status])
        }
    }

    /// Why the coordinates may be wrong, when the daemon runs on another gazetteer than `cities` (the file `file`,
    /// else the compiled-in one); nil when they agree. The protocol gives neither the daemon's gazetteer nor its
    /// coordinates, but `cities` gives each city's name, region and population as the daemon's gazetteer has them
    /// (none for a city added with allowNewCity): a city that `cities` does not know but the daemon's gazetteer
    /// does, or one they describe differently, shows another gazetteer, as the digest of names, regions and
    /// populations that the log keeps beside its projections shows it to `replay --data-dir`.
    static func otherGazetteer(_ client: SocketClient, than cities: Gazetteer, named file: String?) throws -> String? {
        let documents = try client.call(.cities)["cities"]?.arrayValue ?? []
        var differing: [String] = []
        for document in documents {
            guard let id = document["cityId"]?.stringValue else { continue }
            let region = document["region"]?.stringValue
            let population = document["population"]?.intValue
            if let known = cities.city(id: id) {
                let same = known.name == document["name"]?.stringValue && known.region == region
                    && known.population.map(Int64.init) == population
                if !same { differing.append(id) }
            } else if region != nil || population != nil {
                differing.append(id)
            }
        }
        guard !differing.isEmpty else { return nil }
        let named = differing.prefix(3).joined(separator: ", ") + (differing.count > 3 ? ", …" : "")
        return "incidentd runs on another gazetteer than this export's (\(file ?? "the compiled-in one")): "
            + "\(differing.count) of its cities with incidents (\(named)) \(differing.count == 1 ? "is" : "are") not as this one has them, "
            + "so their incidents' coordinates are this one's, or none where it does not know the city; give --gazetteer "
            + "the file the daemon runs on"
    }

    /// A stored event as `append` takes it: without the envelope, and with a report's `cityId`, which `append`
    /// stores as given, so that the events keep their cities in a log whose gazetteer resolves the spellings
    /// otherwise (one that gave a spelling of a city added with allowNewCity to a city of its own).
    static func wireForm(of event: JSONValue) -> JSONValue {
        guard case .object(var members) = event else { return event }
        for key in envelope { members.removeValue(forKey: key) }
        return .object(members)
    }

    /// Calls `each` with the document of every incident reported at positions 1...`head`, in the order they
    /// were reported; the documents are asked for a hundred at a time, pipelined.
    static func incidents(_ client: SocketClient, through head: Int64, _ each: (JSONValue) throws -> Void) throws {
        var pending: [String] = []
        func drain() throws {
            // As the incident stood at the head: a correction appended since the export began is not in it.
            for id in pending { try client.send(.incident, ["incident": .string(id), "untilPosition": .int(head)]) }
            for _ in pending {
                let document = try SocketClient.check(try client.receive())
                try each(document["incident"] ?? .null)
            }
            pending.removeAll(keepingCapacity: true)
        }
        try client.readEvents(["type": "incident-reported"], from: 1, through: head) { report in
            guard let id = report["incident"]?.stringValue else { return }
            pending.append(id)
            if pending.count == 100 { try drain() }
        }
        try drain()
    }

    /// `text` with a ' before it when a spreadsheet would take it for a formula (OWASP's advice on CSV injection).
    static func notAFormula(_ text: String) -> String {
        guard let first = text.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) else { return text }
        return "'" + text
    }

    /// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
    static func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// What the exports say of one incident, read from its document (`incident` in PROTOCOL.md).
struct IncidentRow {
    let document: JSONValue
    let current: JSONValue?
    let kind: IncidentKind?
    let responses: Set<ResponseKind>
    let killed: Int64
    /// Latitude and longitude: the report's own coordinates, else its city's.
    let place: (latitude: Double, longitude: Double, fromReport: Bool)?
    let country: String?

    init(_ document: JSONValue, cities: Gazetteer) {
        self.document = document
        current = document["current"]
        kind = current?["kind"]?.stringValue.flatMap(IncidentKind.init(rawValue:))
        responses = Set((document["responses"]?.objectValue ?? [:]).compactMap { name, count in
            (count.intValue ?? 0) > 0 ? ResponseKind(rawValue: name) : nil
        })
        killed = document["casualties"]?["killed"]?.intValue ?? 0
        let city = document["cityId"]?.stringValue.flatMap { cities.city(id: $0) }
        if let lat = current?["coordinates"]?["lat"]?.doubleValue, let lon = current?["coordinates"]?["lon"]?.doubleValue {
            place = (lat, lon, true)
        } else if let lat = city?.latitude, let lon = city?.longitude {
            place = (lat, lon, false)
        } else {
            place = nil
        }
        country = city?.region.flatMap { region in
            region.split(separator: "-").first.flatMap { Locale(identifier: "en_US").localizedString(forRegionCode: String($0)) }
        }
    }

    private var classification: (eventType: String, subEventType: String) {
        kind.map { ACLED.classify(kind: $0, responses: responses, killed: killed) } ?? ("", "")
    }

    /// The forces that responded, in the order first seen.
    private var forces: [String] {
        var seen: [String] = []
        for event in document["responseHistory"]?.arrayValue ?? [] {
            if let by = event["data"]?["by"]?.stringValue, !seen.contains(by) { seen.append(by) }
        }
        return seen
    }

    /// Every event of the incident: its report, responses and outcomes.
    private var history: [JSONValue] {
        [document["reportEvent"]].compactMap { $0 } + (document["responseHistory"]?.arrayValue ?? [])
            + (document["outcomeHistory"]?.arrayValue ?? [])
    }

    private var sourceNames: [String] {
        var seen: [String] = []
        for event in history {
            for source in event["sources"]?.arrayValue ?? [] {
                if let name = source["name"]?.stringValue, !seen.contains(name) { seen.append(name) }
            }
        }
        return seen
    }

    /// The location, description, responses, outcome and verification, each a sentence.
    private var notes: String {
        var parts: [String] = []
        if let location = current?["location"]?.stringValue { parts.append("Location: \(location)") }
        if let description = current?["description"]?.stringValue { parts.append(description) }
        for event in document["responseHistory"]?.arrayValue ?? [] {
            let kinds = (event["data"]?["responses"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
            parts.append("Response by \(Printer.text(event["data"]?["by"])): \(kinds)")
        }
        if let status = document["status"]?.stringValue { parts.append("Outcome: \(status)") }
        if let verification = document["verification"]?.stringValue { parts.append("Verification: \(verification)") }
        return parts.map(Self.sentence).joined(separator: " ")
    }

    /// `text` ending as a sentence does: with a full stop added unless it ends in one, a question or exclamation
    /// mark or an ellipsis, before any closing quotation marks or brackets.
    private static func sentence(_ text: String) -> String {
        let closing: Set<Character> = ["\"", "'", "”", "’", "»", ")", "]"]
        if let last = text.reversed().first(where: { !closing.contains($0) }), ".!?…".contains(last) { return text }
        return text + "."
    }

    /// Seconds since 1970 of the incident's last event, as ACLED's `timestamp` (the time of the last change).
    private var lastChange: String {
        let latest = history.compactMap { $0["recordedAt"]?.stringValue.flatMap(ParsedDate.parse) }.map(\.start.microseconds).max()
        return latest.map { String($0 / 1_000_000) } ?? ""
    }

    /// A coordinate to five decimals; -0.0, and a negative one that rounds to zero, as 0.00000, without a sign.
    private static func coordinate(_ value: Double) -> String {
        let text = String(format: "%.5f", value)
        return text == "-0.00000" ? "0.00000" : text
    }

    /// The row of ACLED's columns (``ACLED/columns``).
    var acledFields: [String] {
        let precision = document["precision"]?.stringValue.flatMap(Precision.init(rawValue:))
            ?? document["reportEvent"]?["precision"]?.stringValue.flatMap(Precision.init(rawValue:)) ?? .day
        let (eventType, subEventType) = classification
        return [
            document["incident"]?.stringValue ?? "",
            ACLED.eventDate(occurredAt: document["occurredAt"]?.stringValue ?? ""),
            String(ACLED.timePrecision(precision)),
            eventType,
            subEventType,
            kind.map { ACLED.civilianActor(kind: $0, country: country) } ?? "",
            forces.first ?? "",
            document["city"]?.stringValue ?? "",
            place.map { Self.coordinate($0.latitude) } ?? "",
            place.map { Self.coordinate($0.longitude) } ?? "",
            place.map { _ in String(ACLED.geoPrecisionOfTown) } ?? "",
            sourceNames.joined(separator: "; "),
            notes,
            String(killed),
            lastChange,
        ]
    }

    /// A GeoJSON feature: a point (or no geometry, when neither the report nor its city has coordinates) and
    /// what the incident document says of it.
    var feature: JSONValue {
        var properties: [String: JSONValue] = [
            "incident": document["incident"] ?? .null,
            "city": document["city"] ?? .null,
            "cityId": document["cityId"] ?? .null,
            "kind": current?["kind"] ?? .null,
            "occurredAt": document["occurredAt"] ?? .null,
            "status": document["status"] ?? .null,
            "verification": document["verification"] ?? .null,
            "participants": current?["participants"] ?? .null,
            "responses": document["responses"] ?? .null,
            "casualties": document["casualties"] ?? .null,
            "forces": .array(forces.map(JSONValue.string)),
            "sources": .array(sourceNames.map(JSONValue.string)),
            "lastPosition": document["lastPosition"] ?? .null,
            "acledEventType": .string(classification.eventType),
            "acledSubEventType": .string(classification.subEventType),
        ]
        if let location = current?["location"] { properties["location"] = location }
        if let description = current?["description"] { properties["description"] = description }
        if let place {
            properties["geoPrecision"] = .int(Int64(ACLED.geoPrecisionOfTown))
            properties["coordinatesFrom"] = place.fromReport ? "report" : "city"
        }
        let geometry: JSONValue = place.map { .object(["type": "Point", "coordinates": [.double($0.longitude), .double($0.latitude)]]) } ?? .null
        return .object(["type": "Feature", "geometry": geometry, "properties": .object(properties)])
    }
}
