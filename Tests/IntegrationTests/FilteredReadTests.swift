import Foundation
import StrictJSON
import Testing

/// A `read` filtered by `city` or `type` decides each event's match from its stored `type` and `incident` members,
/// and reads only the events it returns into a document: its answers are held here to an unfiltered `read`
/// filtered by the test, over a log of every event type, several cities (one restored through `cityId`, one
/// incident retracted and reported again elsewhere), stored events changed in place that still parse, and one that
/// does not.
@Suite("Filtered reads")
struct FilteredReadTests {
    /// The whole answer of paging through `read` with `filter` from position `from`, `limit` at a time: the events,
    /// or the first refusal.
    static func readAll(_ client: RawClient, _ filter: [String: JSONValue], from: Int64 = 1, limit: Int64) throws
        -> (events: [JSONValue], error: JSONValue?)
    {
        var events: [JSONValue] = []
        var from = from
        while true {
            var body = filter
            body["from"] = .int(from)
            body["limit"] = .int(limit)
            let answer = try client.call("read", body)
            guard answer.isOK else { return (events, answer["error"]) }
            let page = answer["events"]?.arrayValue ?? []
            if page.isEmpty { return (events, nil) }
            events += page
            guard let next = answer["next"]?.intValue, next > from else { throw HarnessError("read went back: \(answer)") }
            from = next
        }
    }

    static func positions(_ events: [JSONValue]) -> [Int64] { events.compactMap { $0["position"]?.intValue } }

    /// A log of the article's events, and more in one commit (so that each event's bytes are in data.mdb once): a
    /// city restored through `cityId` under two spellings, with a response and an outcome that retracts it; an
    /// incident reported in Kupiansk, retracted and reported again in Berdiansk; text with escapes.
    static func storedLog() throws -> Daemon {
        let daemon = try Daemon()
        var events = try Repository.articleEvents()
        events += [
            Wire.report(
                incident: "hola-1", city: "Hola Prystan", kind: "strike", extraData: ["cityId": "hola-prystan-khersonska"]),
            Wire.report(
                incident: "hola-2", city: "Гола Пристань", kind: "blockade",
                extraData: ["cityId": "hola-prystan-khersonska", "description": "\"quoted\"\tand escaped é"]),
            Wire.response(incident: "hola-1", description: "a \"quote\" and a \\ backslash"),
            Wire.outcome(incident: "hola-2", status: "retracted"),
            Wire.report(incident: "wrong-city", city: "Kupiansk", kind: "sabotage"),
            Wire.outcome(incident: "wrong-city", status: "retracted"),
            Wire.report(incident: "right-city", city: "Berdyansk", kind: "sabotage"),
            Wire.response(incident: "kupiansk-2022-03-01-city-hall", detained: 2),
            Wire.outcome(incident: "right-city", status: "objective-achieved"),
        ]
        let stored = try daemon.client().appendEvents(events, allowNewCity: true)
        #expect(stored.isOK && stored["positions"]?.arrayValue?.count == events.count, "\(stored)")
        return daemon
    }

    static let cities: [(spelling: String, id: String)] = [
        ("Kupiansk", "kupiansk"), ("Kup'yansk", "kupiansk"), ("Melitopoli", "melitopol"), ("Berdyansk", "berdiansk"),
        ("Hola Prystan", "hola-prystan-khersonska"), ("hola-prystan-khersonska", "hola-prystan-khersonska"),
    ]
    static let types: [String?] = [nil, "incident-reported", "response-observed", "outcome-updated"]

    /// The city of each incident of ``storedLog()``, from its report as stored (`data.cityId`).
    static func citiesOfIncidents(_ daemon: Daemon) throws -> [String: String] {
        var cityOf: [String: String] = [:]
        for event in try readAll(try daemon.client(), ["type": "incident-reported"], limit: 100).events {
            if let incident = event["incident"]?.stringValue, let city = event["data"]?["cityId"]?.stringValue { cityOf[incident] = city }
        }
        #expect(cityOf.count == 8 && cityOf["hola-2"] == "hola-prystan-khersonska" && cityOf["right-city"] == "berdiansk", "\(cityOf)")
        return cityOf
    }

    /// Checks every filter of a city and a type (and of a type alone) against the unfiltered read from `from`,
    /// filtered here (`cityOf`: ``citiesOfIncidents(_:)``), paging with several limits. Every read, filtered or not,
    /// refuses at `damagedAt` when it is given, except that a read of a city that reads the city's own events of its
    /// type from its index (PROTOCOL.md, `read`) does not meet the damaged event, `damaged` (its city and type), and
    /// may answer (unless it left the index for a scan, for an event of its city changed in place): then it must give
    /// the city's events before `damagedAt` as the others do, and its events after it are checked by a read from past
    /// the damage.
    static func expectFilteredReadsAgree(
        _ daemon: Daemon, _ cityOf: [String: String], from: Int64 = 1, damagedAt: Int64? = nil,
        damaged: (city: String, type: String)? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let client = try daemon.client()
        // A page of a read holds no event when the read meets the damage, so the events before it come one a page.
        let all = try readAll(client, [:], from: from, limit: damagedAt == nil ? 100 : 1)
        if let damagedAt {
            #expect(all.error?["code"] == "log_damaged" && all.error?["position"]?.intValue == damagedAt, "\(String(describing: all.error))", sourceLocation: sourceLocation)
        }
        let cityFilters: [(spelling: String, id: String)?] = [nil] + cities.map { $0 }
        for city in cityFilters {
            for type in types where city != nil || type != nil {
                var filter: [String: JSONValue] = [:]
                if let city { filter["city"] = .string(city.spelling) }
                if let type { filter["type"] = .string(type) }
                let expected = all.events.filter { event in
                    (type == nil || event["type"]?.stringValue == type)
                        && (city == nil || event["incident"]?.stringValue.flatMap { cityOf[$0] } == city?.id)
                }
                for limit: Int64 in [1, 2, 100] {
                    let found = try readAll(client, filter, from: from, limit: limit)
                    let meetsDamage = city == nil || (city?.id == damaged?.city && (type == nil || type == damaged?.type))
                    if let damagedAt, !meetsDamage, found.error == nil {
                        let before = found.events.filter { ($0["position"]?.intValue ?? 0) < damagedAt }
                        #expect(before == expected, "\(filter), limit \(limit): \(positions(found.events)) against \(positions(expected))", sourceLocation: sourceLocation)
                    } else if let damagedAt {
                        let prefix = expected.starts(with: found.events)
                        #expect(prefix, "\(filter), limit \(limit): \(positions(found.events)) against \(positions(expected))", sourceLocation: sourceLocation)
                        #expect(
                            found.error?["code"] == "log_damaged" && found.error?["position"]?.intValue == damagedAt,
                            "\(filter), limit \(limit): \(String(describing: found.error))", sourceLocation: sourceLocation)
                    } else {
                        let same = found.events == expected
                        #expect(same, "\(filter), limit \(limit): \(positions(found.events)) against \(positions(expected))", sourceLocation: sourceLocation)
                        #expect(found.error == nil, "\(filter), limit \(limit): \(String(describing: found.error))", sourceLocation: sourceLocation)
                    }
                }
            }
        }
    }

    @Test("read filtered by city and type answers as an unfiltered read filtered by the event's type and its incident's city, over every event type, restored and retracted cities, stored events changed in place that still parse, and a damaged one that is still reported log_damaged by every filter whose scan meets it")
    func filteredReadsAgreeWithUnfiltered() throws {
        let daemon = try Self.storedLog()
        let cityOf = try Self.citiesOfIncidents(daemon)
        try Self.expectFilteredReadsAgree(daemon, cityOf)
        #expect(daemon.stop() == 0)

        // Changed in place, still JSON: a response's type that no filter names, and the incident member of a
        // report renamed (its incident's later events are still of its city, its projection's).
        try DamagedEventTests.damage(daemon, after: #""type":"response-observed","version":2}"#, offset: 24, with: Array("x".utf8))
        try DamagedEventTests.damage(daemon, after: #""incident":"hola-2","occurredAt""#, offset: 8, with: Array("u".utf8))
        try daemon.start()
        let client = try daemon.client()
        let changed = try Self.readAll(client, [:], limit: 100).events
        #expect(changed.contains { $0["type"] == "response-observex" }, "a response's type was changed")
        #expect(changed.contains { $0["incidenu"] == "hola-2" }, "a report's incident member was renamed")
        try Self.expectFilteredReadsAgree(daemon, cityOf)
        #expect(daemon.stop() == 0)

        // Event 4 (Melitopol's report) made JSON that does not parse: every filtered read whose scan meets it is
        // log_damaged naming it, whether the event matches or not (a read of another city from its index meets it
        // not); from 5 on they agree again.
        try DamagedEventTests.damage(daemon, after: DamagedEventTests.descriptionText, offset: 5, with: [0x0A])
        try daemon.start()
        try Self.expectFilteredReadsAgree(daemon, cityOf, damagedAt: 4, damaged: ("melitopol", "incident-reported"))
        try Self.expectFilteredReadsAgree(daemon, cityOf, from: 5)
    }
}
