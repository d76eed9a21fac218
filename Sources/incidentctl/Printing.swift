import Foundation
import IncidentDomain
import StrictJSON

/// Printing of query results as tables for people or JSON for programs.
enum Printer {
    static func json(_ value: JSONValue) {
        Output.line(value.canonicalString())
    }

    /// Left-aligned columns with a header row; every cell is ``visible(_:)`` first, so that no stored text can
    /// break a row or shift a column.
    static func table(_ header: [String], _ rows: [[String]]) {
        let rows = rows.map { $0.map(visible) }
        var widths = header.map(columns)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], columns(cell)) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : padded(cell, to: widths[i])
            }.joined(separator: "  ")
        }
        Output.line(line(header))
        for row in rows { Output.line(line(row)) }
    }

    /// A byte count for people: "1000 bytes", "808 KiB", "1.5 MiB" (one decimal, none when whole); the text of
    /// what is not a count.
    static func size(_ value: JSONValue?) -> String {
        guard let bytes = value?.intValue, bytes >= 1024 else {
            return value?.intValue.map { "\($0) bytes" } ?? text(value)
        }
        var amount = Double(bytes)
        var unit = "bytes"
        for next in ["KiB", "MiB", "GiB", "TiB"] where amount >= 1024 {
            amount /= 1024
            unit = next
        }
        let tenths = (amount * 10).rounded() / 10
        return tenths == tenths.rounded() ? "\(Int64(tenths)) \(unit)" : String(format: "%.1f \(unit)", tenths)
    }

    /// `key: value` lines, each value ``visible(_:)``.
    static func fields(_ pairs: [(String, String)]) {
        let width = pairs.map { columns($0.0) }.max() ?? 0
        for (key, value) in pairs {
            Output.line(padded(key + ":", to: width + 1) + " " + visible(value))
        }
    }

    /// `text` followed by spaces up to `width` terminal columns (``columns(_:)``, the widths' measure).
    static func padded(_ text: String, to width: Int) -> String {
        let count = columns(text)
        return count >= width ? text : text + String(repeating: " ", count: width - count)
    }

    /// How many columns of a terminal `text` takes once ``visible(_:)``: two for a character of the East Asian wide
    /// and fullwidth blocks (Chinese, Japanese, Korean) or an emoji shown as such, one for any other.
    static func columns(_ text: String) -> Int {
        text.reduce(0) { sum, character in
            guard let first = character.unicodeScalars.first, first.value >= 0x1100 else { return sum + 1 }
            return sum + (isWide(first) || character.unicodeScalars.contains { $0.properties.isEmojiPresentation } ? 2 : 1)
        }
    }

    private static func isWide(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xA000...0xA4CF,
            0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x20000...0x2FFFD,
            0x30000...0x3FFFD:
            return true
        default:
            return false
        }
    }

    /// `text` as a table shows it: nothing in it can end a line, move the cursor, reorder what follows or hide.
    /// A backslash is shown as `\\`; a line feed, carriage return and tab as `\n`, `\r` and `\t`; any other
    /// control character (C0, DEL, C1), line or paragraph separator, format character (bidirectional controls
    /// such as U+202E, zero-width spaces and joiners, the byte order mark) or other default-ignorable code point
    /// as `\u{202E}`; and so is a combining mark that opens the text, which would join the column's separator.
    /// JSON output is never escaped.
    static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 == "\\" || needsEscape($0) }) || startsWithMark(text) else { return text }
        var out = ""
        out.unicodeScalars.reserveCapacity(text.unicodeScalars.count + 8)
        for (offset, scalar) in text.unicodeScalars.enumerated() {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if needsEscape(scalar) || (offset == 0 && isMark(scalar)) {
                    out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: return true
        default: return scalar.properties.isDefaultIgnorableCodePoint
        }
    }

    private static func isMark(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }

    private static func startsWithMark(_ text: String) -> Bool { text.unicodeScalars.first.map(isMark) ?? false }

    static func text(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null?: return "-"
        case .string(let s)?: return s
        case .int(let i)?: return String(i)
        case .double(let d)?: return String(d)
        case .bool(let b)?: return b ? "yes" : "no"
        case let other?: return other.canonicalString()
        }
    }

    /// The non-zero counts of an object of counts: "tear-gas 1, warning-shots 2".
    static func counts(_ value: JSONValue?) -> String {
        let pairs = (value?.objectValue ?? [:]).compactMap { key, v -> (String, Int64)? in
            guard let n = v.intValue, n != 0 else { return nil }
            return (key, n)
        }.sorted { $0.0 < $1.0 }
        return pairs.isEmpty ? "-" : pairs.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
    }

    /// A count of participants in any form the wire takes: `{low, high}`, `{low}` (`high` left out is `low`), or a
    /// plain number for an exact count, as a correction may give it.
    static func range(_ value: JSONValue?) -> String {
        if let exact = value?.intValue { return String(exact) }
        guard let low = value?["low"]?.intValue else { return "-" }
        let high = value?["high"]?.intValue ?? low
        return low == high ? String(low) : "\(low)–\(high)"
    }

    /// One corrected field of an outcome with its new value, as the incident's history shows it: "participants
    /// to 300–500", "location to \"the square\"".
    static func correction(_ field: String, _ value: JSONValue) -> String {
        switch value {
        case .string(let s): return "\(field) to \"\(s)\""
        case .array(let items): return "\(field) to " + (items.isEmpty ? "none" : items.map { text($0) }.joined(separator: " / "))
        case let other where field == "participants": return "\(field) to \(range(other))"
        case let other: return "\(field) to \(text(other))"
        }
    }

    static func summary(ofEvent event: JSONValue) -> String {
        let data = event["data"]
        switch event["type"]?.stringValue {
        case "incident-reported":
            return "\(text(data?["kind"])) in \(text(data?["city"]))" + (data?["participants"].map { ", \(range($0)) people" } ?? "")
        case "response-observed":
            let responses = (data?["responses"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")
            let casualties = ["killed", "injured", "detained"].compactMap { key in data?[key]?.intValue.map { "\(key) \($0)" } }
            return "\(text(data?["by"])): \(responses)" + (casualties.isEmpty ? "" : " (\(casualties.joined(separator: ", ")))")
        default:
            var parts = ["status \(text(data?["status"]))"]
            if let v = data?["verification"]?.stringValue { parts.append(v) }
            if let c = data?["corrections"]?.objectValue {
                let corrected = c.filter { $0.value != .null }.sorted { $0.key < $1.key }
                if !corrected.isEmpty { parts.append("corrects " + corrected.map { correction($0.key, $0.value) }.joined(separator: ", ")) }
                let removed = c.filter { $0.value == .null }.keys.sorted()
                if !removed.isEmpty { parts.append("removes " + removed.joined(separator: ", ")) }
            }
            if let note = data?["note"]?.stringValue { parts.append("note: \(shortened(note))") }
            return parts.joined(separator: ", ")
        }
    }

    /// An event's sources as the `events` tables show them after its summary: `sources: "Witness video"
    /// (unverified), "Telegram repost" (verified, verified by X, method geolocation, https://…, sha256 ab12…)`, every
    /// detail given in full (a hash is compared whole); nil for an event without sources.
    static func sources(ofEvent event: JSONValue) -> String? {
        guard let sources = event["sources"]?.arrayValue, !sources.isEmpty else { return nil }
        return "sources: " + sources.map { source in
            let details = [
                source["verification"]?.stringValue, source["verifiedBy"]?.stringValue.map { "verified by \($0)" },
                source["method"]?.stringValue.map { "method \($0)" }, source["publishedAt"]?.stringValue.map { "published \($0)" },
                source["url"]?.stringValue, source["sha256"]?.stringValue.map { "sha256 \($0)" },
            ].compactMap { $0 }
            return "\"\(text(source["name"]))\"" + (details.isEmpty ? "" : " (\(details.joined(separator: ", ")))")
        }.joined(separator: ", ")
    }

    /// The rows of the `incident` table of sources: for each source of each event, its event's version and position
    /// and what the source says of itself, `-` for what it does not.
    static func sourceRows(_ events: [JSONValue]) -> [[String]] {
        events.flatMap { e in
            (e["sources"]?.arrayValue ?? []).map { source in
                [text(e["version"]), text(e["position"]), text(source["name"]), text(source["verification"]),
                 text(source["verifiedBy"]), text(source["method"]), text(source["publishedAt"]), text(source["url"]),
                 text(source["sha256"])]
            }
        }
    }

    /// `text` on one line, cut at `limit` characters with an ellipsis.
    static func shortened(_ text: String, to limit: Int = 60) -> String {
        let line = text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        return line.count <= limit ? line : line.prefix(limit - 1).trimmingCharacters(in: .whitespaces) + "…"
    }

    /// An event's `occurredAt`, followed by its precision when the text reads finer than it is known: a week or a
    /// month given as its first day, say, which would otherwise read as that day.
    /// Digits of a second's fraction past the microsecond, which the log does not read, are left out.
    static func occurred(_ event: JSONValue) -> String {
        guard let given = event["occurredAt"]?.stringValue else { return "-" }
        let text = toTheMicrosecond(given)
        guard let precision = event["precision"]?.stringValue, let finest = ParsedDate.parse(text)?.finestPrecision,
            precision != finest.rawValue
        else { return text }
        return "\(text) (\(precision))"
    }

    /// `text` without the digits of its fraction of a second past the sixth.
    private static func toTheMicrosecond(_ text: String) -> String {
        let utf8 = Array(text.utf8)
        guard let dot = utf8.firstIndex(of: UInt8(ascii: ".")) else { return text }
        let digits = utf8[(dot + 1)...].prefix { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }.count
        guard digits > 6 else { return text }
        return String(decoding: utf8[...(dot + 6)] + utf8[(dot + 1 + digits)...], as: UTF8.self)
    }

    static func events(_ events: [JSONValue]) {
        table(eventColumns, events.map(eventCells))
    }

    private static let eventColumns = ["POSITION", "TYPE", "INCIDENT", "OCCURRED", "SUMMARY"]

    private static func eventCells(_ e: JSONValue) -> [String] {
        [text(e["position"]), text(e["type"]), text(e["incident"]), occurred(e),
         [summary(ofEvent: e), sources(ofEvent: e)].compactMap { $0 }.joined(separator: "; ")]
    }

    /// For events printed as they come (`events --follow`): fixed columns, since the widths are not known ahead,
    /// each as wide as its longest value: a position up to Int64's largest, the longest type, and the longest
    /// `occurredAt` that ``occurred(_:)`` shows, a date-time to the microsecond with an offset and a precision
    /// coarser than it. An incident id may be longer than its column (up to 128 characters): the line goes on further.
    private static let followedWidths = [
        String(Int64.max).count,
        EventType.allCases.map(\.rawValue.count).max() ?? 0,
        40,
        "2022-03-01T14:30:00.000000+02:00 (month)".count,
    ]

    private static func followedLine(_ cells: [String]) -> String {
        cells.map(visible).enumerated().map { i, cell in
            i < followedWidths.count ? padded(cell, to: followedWidths[i]) : cell
        }.joined(separator: "  ")
    }

    static var eventsHeader: String { followedLine(eventColumns) }

    static func eventLine(_ event: JSONValue) -> String { followedLine(eventCells(event)) }

    static func city(_ c: JSONValue) {
        let casualties = c["casualties"]
        fields([
            ("city", "\(text(c["name"])) (\(text(c["cityId"])))"),
            ("region", text(c["region"])),
            ("population", text(c["population"])),
            ("spellings seen", (c["aliasesSeen"]?.arrayValue ?? []).map { text($0) }.joined(separator: ", ").nonEmpty ?? "-"),
            ("incidents", "\(text(c["incidents"]?["total"])) (\(counts(c["incidents"]?["byKind"])))"),
            ("open incidents", text(c["openIncidents"])),
            ("participants", participants(c)),
            ("responses", counts(c["responses"])),
            ("casualties", "killed \(text(casualties?["killed"])), injured \(text(casualties?["injured"])), detained \(text(casualties?["detained"]))"),
            ("outcomes", counts(c["outcomes"])),
            ("verification", counts(c["verification"])),
            ("first incident", text(c["firstIncidentAt"])),
            ("last incident", text(c["lastIncidentAt"])),
            ("last position", text(c["lastPosition"])),
        ])
    }

    /// A city's participant sums with how many of its incidents they cover: "150–300, from 2 of 3 incidents".
    private static func participants(_ c: JSONValue) -> String {
        let sums = range(c["participants"])
        guard let counted = c["participants"]?["counted"]?.intValue, let total = c["incidents"]?["total"]?.intValue else { return sums }
        if counted == 0 {
            return total == 0 ? "no count (no incidents counted)" : total == 1 ? "no count (its incident gives none)" : "no count (none of its \(total) incidents gives one)"
        }
        if counted == total { return "\(sums), from \(total == 1 ? "its incident" : "all \(total) incidents")" }
        return "\(sums), from \(counted) of \(total) incidents (\(total - counted == 1 ? "the other gives" : "the others give") no count)"
    }

    /// A city's incidents, one line each (an `incidents` answer's summaries).
    static func incidents(_ incidents: [JSONValue]) {
        guard !incidents.isEmpty else {
            Output.line("no incidents")
            return
        }
        table(
            ["INCIDENT", "OCCURRED", "KIND", "STATUS", "VERIFICATION", "RESPONSES", "VERSION", "POSITION", "LOCATION"],
            incidents.map { i in
                [
                    text(i["incident"]), text(i["occurredAt"]), text(i["kind"]), text(i["status"]), text(i["verification"]),
                    text(i["responseEvents"]), text(i["version"]), text(i["firstPosition"]), text(i["location"]),
                ]
            })
    }

    static func cities(_ cities: [JSONValue]) {
        table(
            ["CITY", "NAME", "REGION", "INCIDENTS", "OPEN", "PARTICIPANTS", "KILLED", "INJURED", "DETAINED", "LAST INCIDENT"],
            cities.map { c in
                [
                    text(c["cityId"]), text(c["name"]), text(c["region"]), text(c["incidents"]?["total"]),
                    text(c["openIncidents"]), c["participants"]?["counted"] == 0 ? "-" : range(c["participants"]),
                    text(c["casualties"]?["killed"]),
                    text(c["casualties"]?["injured"]), text(c["casualties"]?["detained"]), text(c["lastIncidentAt"]),
                ]
            })
    }

    static func incident(_ i: JSONValue) {
        let current = i["current"]
        fields([
            ("incident", text(i["incident"])),
            ("city", "\(text(i["city"])) (\(text(i["cityId"])))"),
            ("kind", text(current?["kind"])),
            ("occurred", "\(text(i["occurredAt"])) (\(text(i["precision"])))"),
            ("location", text(current?["location"])),
            ("participants", range(current?["participants"])),
            ("targets", text(current?["targets"])),
            ("description", text(current?["description"])),
            ("status", text(i["status"])),
            ("verification", text(i["verification"])),
            ("version", text(i["version"])),
            ("responses", counts(i["responses"])),
            ("casualties", "killed \(text(i["casualties"]?["killed"])), injured \(text(i["casualties"]?["injured"])), detained \(text(i["casualties"]?["detained"]))"),
        ])
        var history: [JSONValue] = []
        if let report = i["reportEvent"], !report.isNull { history.append(report) }
        history += i["responseHistory"]?.arrayValue ?? []
        history += i["outcomeHistory"]?.arrayValue ?? []
        history.sort { ($0["position"]?.intValue ?? 0) < ($1["position"]?.intValue ?? 0) }
        Output.line("")
        table(
            ["VERSION", "POSITION", "RECORDED", "BY", "EVENT"],
            history.map { e in
                [text(e["version"]), text(e["position"]), text(e["recordedAt"]), text(e["recordedBy"]?["user"]),
                 "\(text(e["type"])): \(summary(ofEvent: e))"]
            })
        let sources = sourceRows(history)
        guard !sources.isEmpty else { return }
        Output.line("")
        table(["VERSION", "POSITION", "SOURCE", "VERIFICATION", "VERIFIED BY", "METHOD", "PUBLISHED", "URL", "SHA256"], sources)
    }
}

extension String {
    /// The text, or nil when it is empty: for a table cell that shows "-" for nothing.
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
