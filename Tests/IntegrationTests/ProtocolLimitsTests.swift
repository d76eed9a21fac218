import Foundation
import StrictJSON
import Testing

/// PROTOCOL.md's table of the limits on what an event holds, against the daemon: each limit is taken, one past it
/// is refused naming the field and the limit, so that the table and the code cannot drift apart.
@Suite("PROTOCOL.md's limits")
struct ProtocolLimitsTests {
    /// One row's field and its bound, as the table gives them.
    struct DocumentedLimit: CustomStringConvertible {
        var field: String
        var bound: Int

        var description: String { "\(field) (\(bound))" }
    }

    /// The rows of the table headed `| field | limit |`: every field named in backticks in the first column
    /// (outside parentheses), with the last number of the second.
    static func documentedLimits() throws -> [DocumentedLimit] {
        let text = try String(contentsOfFile: Repository.root + "/PROTOCOL.md", encoding: .utf8)
        let lines = text.components(separatedBy: "\n")
        let header = try #require(lines.firstIndex(of: "| field | limit |"), "PROTOCOL.md has the table of limits")
        var limits: [DocumentedLimit] = []
        for line in lines[(header + 2)...] {
            guard line.hasPrefix("|") else { break }
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(cells.count == 2, "\(line)")
            let named = cells[0].replacingOccurrences(of: #"\([^)]*\)"#, with: "", options: .regularExpression)
            let fields = named.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
            let number = try #require(
                cells[1].replacingOccurrences(of: ",", with: "").components(separatedBy: " ").compactMap { Int($0) }.last, "\(line)")
            try #require(!fields.isEmpty, "\(line)")
            limits += fields.map { DocumentedLimit(field: $0, bound: number) }
        }
        return limits
    }

    /// One `append` that puts `value` in a field, and what the daemon is to answer for one past the limit.
    struct Probe {
        var events: [JSONValue]
        var allowNewCity = false
        /// The `field` of the refusal; nil for one that names none.
        var field: String?
        var code = "invalid_event"
        /// The error the value at the limit gets for a reason of its own; nil when it is stored.
        var atLimitCode: String?
    }

    static let incident = "limits-probe"

    static func text(_ count: Int) -> String { String(repeating: "x", count: count) }

    static func report(_ data: [String: JSONValue] = [:], event: [String: JSONValue] = [:]) -> JSONValue {
        var body: [String: JSONValue] = ["city": "Kupiansk", "kind": "other"]
        body.merge(data) { $1 }
        var wire: [String: JSONValue] = ["type": "incident-reported", "occurredAt": "2022-03-01", "data": .object(body)]
        wire.merge(event) { $1 }
        return .object(wire)
    }

    static func response(_ data: [String: JSONValue], event: [String: JSONValue] = [:]) -> JSONValue {
        var body: [String: JSONValue] = ["by": "police", "responses": ["warning-shots"]]
        body.merge(data) { $1 }
        var wire: [String: JSONValue] = ["type": "response-observed", "incident": .string(incident), "data": .object(body)]
        wire.merge(event) { $1 }
        return .object(wire)
    }

    static func outcome(_ data: [String: JSONValue]) -> JSONValue {
        var body: [String: JSONValue] = ["status": "ongoing"]
        body.merge(data) { $1 }
        return ["type": "outcome-updated", "incident": .string(incident), "data": .object(body)]
    }

    static func source(_ source: [String: JSONValue]) -> JSONValue {
        var body: [String: JSONValue] = ["name": "a source"]
        body.merge(source) { $1 }
        return report(event: ["sources": [.object(body)]])
    }

    /// For each field the table may name, the appends that put a value of a given size in it.
    static var probes: [String: (Int) -> [Probe]] {
        [
        "data.description": { n in
            [Probe(events: [report(["description": .string(text(n))])], field: "data.description"),
             Probe(events: [response(["description": .string(text(n))])], field: "data.description")]
        },
        "data.note": { n in [Probe(events: [outcome(["note": .string(text(n))])], field: "data.note")] },
        "data.location": { n in [Probe(events: [report(["location": .string(text(n))])], field: "data.location")] },
        "data.targets": { n in [Probe(events: [report(["targets": .string(text(n))])], field: "data.targets")] },
        // Surrounding spaces are no part of a city's name: a known one, as long as the limit.
        "data.city": { n in
            [Probe(events: [report(["city": .string("Kupiansk" + String(repeating: " ", count: n - 8))])], field: "data.city")]
        },
        // A city id the log does not know yet: a new city, as export | append --allow-new-city makes one.
        "data.cityId": { n in
            [Probe(events: [report(["cityId": .string(String(repeating: "c", count: n))])], allowNewCity: true, field: "data.cityId")]
        },
        "data.by": { n in [Probe(events: [response(["by": .string(text(n))])], field: "data.by")] },
        "data.verifiedBy": { n in [Probe(events: [outcome(["verifiedBy": .string(text(n))])], field: "data.verifiedBy")] },
        "data.method": { n in [Probe(events: [outcome(["method": .string(text(n))])], field: "data.method")] },
        "sources[].name": { n in [Probe(events: [source(["name": .string(text(n))])], field: "sources[0].name")] },
        "sources[].verifiedBy": { n in [Probe(events: [source(["verifiedBy": .string(text(n))])], field: "sources[0].verifiedBy")] },
        "sources[].method": { n in [Probe(events: [source(["method": .string(text(n))])], field: "sources[0].method")] },
        "sources[].url": { n in
            [Probe(events: [source(["url": .string("https://" + text(n - 8))])], field: "sources[0].url")]
        },
        "sources": { n in
            [Probe(events: [report(event: ["sources": .array((0..<n).map { ["name": .string("source \($0)")] })])], field: "sources")]
        },
        "data.tags": { n in [Probe(events: [report(["tags": .array((0..<n).map { .string("tag-\($0)") })])], field: "data.tags")] },
        "data.tags[]": { n in [Probe(events: [report(["tags": [.string(text(n))]])], field: "data.tags[0]")] },
        "data.participants": { n in
            [Probe(events: [report(["participants": .int(Int64(n))])], field: "data.participants"),
             Probe(events: [report(["participants": ["low": 1, "high": .int(Int64(n))]])], field: "data.participants.high")]
        },
        "data.killed": { n in [Probe(events: [response(["killed": .int(Int64(n))])], field: "data.killed")] },
        "data.injured": { n in [Probe(events: [response(["injured": .int(Int64(n))])], field: "data.injured")] },
        "data.detained": { n in [Probe(events: [response(["detained": .int(Int64(n))])], field: "data.detained")] },
        "data.coordinates.lat": { n in
            [Probe(events: [report(["coordinates": ["lat": .int(Int64(n)), "lon": 37]])], field: "data.coordinates.lat")]
        },
        "data.coordinates.lon": { n in
            [Probe(events: [report(["coordinates": ["lat": 49, "lon": .int(Int64(n))]])], field: "data.coordinates.lon")]
        },
        "incident": { n in
            [Probe(events: [report(event: ["incident": .string(String(repeating: "a", count: n))])], field: "incident")]
        },
        // The probe's incident is not at that version.
        "expectedVersion": { n in
            [Probe(events: [response([:], event: ["expectedVersion": .int(Int64(n))])], field: "expectedVersion", atLimitCode: "wrong_expected_version")]
        },
        "events": { n in
            [Probe(events: Array(repeating: outcome([:]), count: n), field: nil, code: "invalid_request")]
        },
        ]
    }

    @Test("every limit of PROTOCOL.md's table is the daemon's: a value at it is taken, one past it refused with the field and the limit")
    func limitsAreTheDaemons() throws {
        let limits = try Self.documentedLimits()
        #expect(Set(limits.map(\.field)) == Set(Self.probes.keys), "the table names the fields probed: \(limits)")
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Self.report(event: ["incident": .string(Self.incident)])]).isOK)
        for limit in limits {
            let probe = try #require(Self.probes[limit.field], "no probe for \(limit.field), which PROTOCOL.md documents")
            for (at, past) in zip(probe(limit.bound), probe(limit.bound + 1)) {
                let taken = try client.appendEvents(at.events, allowNewCity: at.allowNewCity)
                if let code = at.atLimitCode {
                    #expect(taken["error"]?["code"]?.stringValue == code, "\(limit) at the limit: \(taken)")
                } else {
                    #expect(taken.isOK, "\(limit) at the limit: \(taken)")
                }
                let refused = try client.appendEvents(past.events, allowNewCity: past.allowNewCity)
                let error = refused["error"]
                #expect(error?["code"]?.stringValue == past.code, "\(limit) past the limit: \(refused)")
                if let field = past.field { #expect(error?["field"]?.stringValue == field, "\(limit) past the limit: \(refused)") }
                #expect(error?["message"]?.stringValue?.contains(String(limit.bound)) == true, "\(limit) past the limit: \(refused)")
            }
        }
        #expect(daemon.stop() == 0)
    }
}
