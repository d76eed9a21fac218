import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every error code of SPEC §2 and of the protocol, through the raw socket: the code, the field it names, nothing
/// stored, and the connection still serving afterwards.
@Suite("Error codes")
struct ErrorCodeTests {
    /// Sends an append that must be refused with `code`; checks that nothing was stored and that the same connection
    /// still answers. Returns the error object.
    @discardableResult
    static func expectRefusal(
        _ client: RawClient, _ events: [JSONValue], allowNewCity: Bool? = nil, code: String, field: String? = nil,
        mentions: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> JSONValue {
        let before = try client.headPosition()
        let response = try client.appendEvents(events, allowNewCity: allowNewCity)
        #expect(response["ok"] == false, "\(response)", sourceLocation: sourceLocation)
        #expect(response.errorCode == code, "\(response)", sourceLocation: sourceLocation)
        #expect(response["positions"] == nil, sourceLocation: sourceLocation)
        let message = response["error"]?["message"]?.stringValue ?? ""
        if let field {
            #expect(response["error"]?["field"]?.stringValue == field, "\(response)", sourceLocation: sourceLocation)
            #expect(message.contains(field), "the message names \(field): \(message)", sourceLocation: sourceLocation)
        }
        for text in mentions {
            #expect(message.contains(text), "the message mentions \(text): \(message)", sourceLocation: sourceLocation)
        }
        #expect(try client.headPosition() == before, "nothing was stored", sourceLocation: sourceLocation)
        return response["error"] ?? .null
    }

    @Test("unknown_incident: a response or outcome for an incident never reported")
    func unknownIncident() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "kupiansk-known")]).isOK)
        let error = try Self.expectRefusal(
            client, [Wire.response(incident: "kupiansk-never-reported")], code: "unknown_incident",
            mentions: ["kupiansk-never-reported"])
        #expect(error["incident"]?.stringValue == "kupiansk-never-reported")
        try Self.expectRefusal(client, [Wire.outcome(incident: "kupiansk-never-reported")], code: "unknown_incident")
        // The query side says the same.
        #expect(try client.call("incident", ["incident": "kupiansk-never-reported"]).errorCode == "unknown_incident")
        #expect(try client.call("incident", ["incident": "kupiansk-known"]).isOK)
        // So do read and subscribe filtered by an incident the log does not know (as they do for a city), rather
        // than an empty list that looks like an incident without events.
        for incident in ["kupiansk-never-reported", "Not An Id!"] {
            let read = try client.call("read", ["incident": .string(incident)])
            #expect(read.errorCode == "unknown_incident", "\(read)")
            #expect(read["error"]?["incident"]?.stringValue == incident, "\(read)")
            #expect(read["error"]?["message"]?.stringValue?.contains(incident) == true, "\(read)")
        }
        let follower = try daemon.client()
        let subscribed = try follower.call("subscribe", ["incident": "kupiansk-never-reported"])
        #expect(subscribed.errorCode == "unknown_incident", "\(subscribed)")
        #expect(try follower.call("status").isOK, "the refused subscription left the connection serving requests")
        let known = try client.call("read", ["incident": "kupiansk-known"])
        #expect(known["events"]?.arrayValue?.count == 1, "\(known)")
    }

    @Test("an incident id is looked up as an append stores it, trimmed of surrounding whitespace: incident, read, subscribe and incidentctl find the incident by the spelling the append took")
    func incidentIdTrimmedOnLookup() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let stored = try client.appendEvents([Wire.report(incident: " lead1\t")])
        #expect(stored["incidents"] == ["lead1"], "the append trims the id: \(stored)")
        #expect(try client.appendEvents([Wire.response(incident: "lead1 ")]).isOK)

        let answer = try client.call("incident", ["incident": " lead1"])
        #expect(answer.isOK && answer["incident"]?["incident"] == "lead1", "\(answer)")
        let read = try client.call("read", ["incident": "\nlead1 "])
        #expect(read["events"]?.arrayValue?.map { $0["position"] } == [1, 2], "\(read)")
        let follower = try daemon.client()
        let subscribed = try follower.call("subscribe", ["incident": " lead1 ", "type": "response-observed"])
        #expect(subscribed["subscribed"] == true, "\(subscribed)")
        if subscribed.isOK { #expect(try follower.receive()["event"]?["position"] == 2) }
        // What no append would take stays unknown.
        #expect(try client.call("incident", ["incident": " Lead1"]).errorCode == "unknown_incident")

        for arguments in [
            ["incident", " lead1"], ["events", "--incident", "lead1 "], ["observe", " lead1", "--response", "none", "--by", "police"],
            ["outcome", "lead1\t", "--status", "dispersed"],
        ] {
            let command = try daemon.ctl(arguments + ["--format", "json"])
            #expect(command.status == 0, "\(arguments): \(command.stderr)")
        }
        #expect(try client.call("incident", ["incident": "lead1"])["incident"]?["version"] == 4)
        let upper = try daemon.ctl(["incident", " Lead1"])
        #expect(upper.status == 2 && upper.stderr.contains("did you mean 'lead1'?"), "\(upper)")
    }

    @Test("incident_exists: a second report under an existing incident id")
    func incidentExists() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "melitopol-blockade", city: "Melitopol", kind: "blockade")]).isOK)
        #expect(try client.appendEvents([Wire.response(incident: "melitopol-blockade")]).isOK)
        let error = try Self.expectRefusal(
            client, [Wire.report(incident: "melitopol-blockade", city: "Melitopol", kind: "demonstration")],
            code: "incident_exists", mentions: ["melitopol-blockade"])
        #expect(error["actualVersion"]?.intValue == 2)
    }

    @Test("reports without an id, a thousand and more of one city, date and kind, each get an id of their own: -2 to -999, then random digits, never one taken")
    func generatedIdsPastTheThousandth() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        // One request of many (whose ids are made against the batch), then requests of a few, against the stored log.
        let first = try client.appendEvents(Array(repeating: Wire.report(city: "Melitopol", kind: "strike"), count: 990))
        var incidents = first["incidents"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(incidents.count == 990, "\(first)")
        for _ in 0..<6 {
            let more = try client.appendEvents(Array(repeating: Wire.report(city: "Melitopol", kind: "strike"), count: 3))
            incidents += more["incidents"]?.arrayValue?.compactMap(\.stringValue) ?? []
        }
        let base = "melitopol-2022-03-01-strike"
        #expect(incidents.count == 1008 && Set(incidents).count == 1008, "every report an incident of its own")
        #expect(Array(incidents.prefix(999)) == [base] + (2...999).map { "\(base)-\($0)" }, "\(incidents.prefix(3))")
        for id in incidents.dropFirst(999) {
            #expect(id.count == base.count + 9 && id.hasPrefix(base + "-") && id.dropFirst(base.count + 1).allSatisfy(\.isHexDigit), "\(id)")
        }
        let city = try client.call("city", ["city": "Melitopol"])
        #expect(city["city"]?["incidents"]?["total"] == 1008, "\(city)")
        let last = try #require(incidents.last)
        #expect(try client.call("incident", ["incident": .string(last)])["incident"]?["version"] == 1)
        let verify = try client.call("verify")
        #expect(verify["intact"] == true && verify["derived"]?["intact"] == true, "\(verify)")
    }

    @Test("an id generated for a report never takes one that a later report of the same request gives by hand")
    func generatedIdsLeaveThoseGivenLater() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let base = "kupiansk-2022-05-05-strike"
        let generated = Wire.report(city: "Kupiansk", kind: "strike", occurredAt: "2022-05-05")
        let given = Wire.report(incident: "\(base)-2", city: "Kupiansk", kind: "strike", occurredAt: "2022-05-05")
        let answer = try client.appendEvents([generated, generated, given])
        #expect(answer["incidents"] == [.string(base), .string("\(base)-3"), .string("\(base)-2")], "\(answer)")
        // Past the ones in turn too.
        let later = try client.appendEvents([generated, Wire.report(incident: "\(base)-4", city: "Kupiansk", kind: "strike", occurredAt: "2022-05-05")])
        #expect(later["incidents"] == [.string("\(base)-5"), .string("\(base)-4")], "\(later)")
    }

    @Test("wrong_expected_version names the actual version; equal versions pass")
    func wrongExpectedVersion() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "berdiansk-1", city: "Berdiansk", expectedVersion: 0)]).isOK)
        let error = try Self.expectRefusal(
            client, [Wire.response(incident: "berdiansk-1", expectedVersion: 3)], code: "wrong_expected_version",
            mentions: ["berdiansk-1"])
        #expect(error["actualVersion"]?.intValue == 1)
        #expect(error["expectedVersion"]?.intValue == 3)
        let ok = try client.appendEvents([Wire.response(incident: "berdiansk-1", expectedVersion: 1)])
        #expect(ok.isOK, "\(ok)")
        try Self.expectRefusal(client, [Wire.response(incident: "berdiansk-1", expectedVersion: 1)], code: "wrong_expected_version")
        // A report expects a stream that does not exist yet: version 0.
        let fresh = try Self.expectRefusal(
            client, [Wire.report(incident: "berdiansk-2", city: "Berdiansk", expectedVersion: 1)], code: "wrong_expected_version")
        #expect(fresh["actualVersion"]?.intValue == 0)
    }

    @Test("unknown_city with the closest known names as suggestions, on append and on query")
    func unknownCity() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let error = try Self.expectRefusal(
            client, [Wire.report(city: "Melitopl")], code: "unknown_city", mentions: ["Melitopl", "Melitopol", "allowNewCity"])
        #expect(error["suggestions"]?.arrayValue?.first == "Melitopol", "\(error)")
        let kupiansk = try Self.expectRefusal(client, [Wire.report(city: "Kupyanks")], code: "unknown_city")
        #expect(kupiansk["suggestions"]?.arrayValue?.contains("Kupiansk") == true, "\(kupiansk)")
        let query = try client.call("city", ["city": "Berdyanks"])
        #expect(query.errorCode == "unknown_city")
        #expect(query["error"]?["suggestions"]?.arrayValue?.contains("Berdiansk") == true, "\(query)")
        // allowNewCity must be a boolean, and false is the same as leaving it out.
        #expect(try client.appendEvents([Wire.report(city: "Melitopl")], allowNewCity: false).errorCode == "unknown_city")
        let notBool = try client.call("append", ["events": [Wire.report(city: "Melitopl")], "allowNewCity": "yes"])
        #expect(notBool.errorCode == "invalid_request")
        #expect(try client.headPosition() == 0)
    }

    @Test("a new city whose id would pass 64 characters is refused, so that two names differing past them never make one city")
    func newCityNameTooLongForAnId() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let stem = "Selyshche-imeni-" + String(repeating: "Tarasa-Hryhorovycha-Shevchenka-", count: 3)
        for name in [stem + "Pivnichne", stem + "Pivdenne"] {
            try Self.expectRefusal(
                client, [Wire.report(city: name)], allowNewCity: true, code: "invalid_event", field: "data.city",
                mentions: ["too long", "shorter spelling"])
        }
        // One that fits is a city; a query by a name too long for an id does not land on it.
        #expect(try client.appendEvents([Wire.report(incident: "fits-1", city: "Selyshche imeni Tarasa")], allowNewCity: true).isOK)
        #expect(try client.call("city", ["city": "Selyshche imeni Tarasa"]).isOK)
        #expect(try client.call("city", ["city": .string(stem + "Pivnichne")]).errorCode == "unknown_city")
        #expect(daemon.stop() == 0)
    }

    @Test("unknown_city suggests the cities a report added with allowNewCity too, by any spelling reported, on append and on query, across a restart")
    func unknownCitySuggestsCitiesOfTheLog() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "kharkiv-1", city: "Kharkiv")], allowNewCity: true).isOK)
        #expect(try client.appendEvents([Wire.report(incident: "kharkiv-2", city: "kharkiv")], allowNewCity: true)["incidents"] == ["kharkiv-2"])
        let refused = try Self.expectRefusal(client, [Wire.report(city: "Kharkov")], code: "unknown_city", mentions: ["Kharkiv?"])
        #expect(refused["suggestions"] == ["Kharkiv"], "\(refused)")
        // Pipelined right behind the report that adds it, so often in the same group commit.
        let pipelined = try daemon.client()
        try pipelined.send("append", ["id": 1, "events": [Wire.report(incident: "odesa-1", city: "Odesa")], "allowNewCity": true])
        try pipelined.send("append", ["id": 2, "events": [Wire.report(city: "Odessa")]])
        #expect(try pipelined.receive().isOK)
        #expect(try pipelined.receive()["error"]?["suggestions"] == ["Odesa"])

        try daemon.restart()
        let query = try daemon.client().call("city", ["city": "Kharkov"])
        #expect(query.errorCode == "unknown_city")
        #expect(query["error"]?["suggestions"] == ["Kharkiv"], "\(query)")
        #expect(daemon.stop() == 0)
    }

    @Test("allowNewCity stores a new canonical cityId, and the city is queryable by it")
    func allowNewCity() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let response = try client.appendEvents(
            [Wire.report(city: "Nova Kakhovka", kind: "demonstration", occurredAt: "2022-03-20", participants: (500, 2000))],
            allowNewCity: true)
        #expect(response.isOK, "\(response)")
        #expect(response["positions"] == [1])
        #expect(response["incidents"] == ["nova-kakhovka-2022-03-20-demonstration"], "the id is generated from city, date and kind")
        let stored = try #require(try client.allEvents().first)
        #expect(stored["data"]?["city"]?.stringValue == "Nova Kakhovka", "the city as reported")
        #expect(stored["data"]?["cityId"]?.stringValue == "nova-kakhovka", "the canonical id stored in the event")
        let city = try client.call("city", ["city": "Nova Kakhovka"])
        #expect(city.isOK, "\(city)")
        #expect(city["city"]?["cityId"]?.stringValue == "nova-kakhovka")
        #expect(city["city"]?["name"]?.stringValue == "Nova Kakhovka")
        #expect(city["city"]?["region"] == .null)
        #expect(city["city"]?["population"] == .null)
        #expect(city["city"]?["incidents"]?["total"]?.intValue == 1)
        #expect(city["city"]?["participants"] == ["low": 500, "high": 2000, "counted": 1])
        #expect(try client.call("cities")["cities"]?.arrayValue?.map { $0["cityId"] } == ["nova-kakhovka"])
        // A known city given with allowNewCity still resolves to its gazetteer id.
        let known = try client.appendEvents([Wire.report(city: "Kup'yansk")], allowNewCity: true)
        #expect(known.isOK)
        let event = try #require(try client.allEvents().last)
        #expect(event["data"]?["cityId"]?.stringValue == "kupiansk")
    }

    /// One invalid event and the field its refusal must name.
    struct InvalidCase: CustomStringConvertible, Sendable {
        var description: String
        var event: JSONValue
        var field: String
        var mentions: [String] = []
    }

    static var invalidCases: [InvalidCase] {
        let report = Wire.report(incident: "kupiansk-bad", participants: (10, 20))
        let response = Wire.response(incident: "kupiansk-ok")
        let nextYear = Calendar(identifier: .gregorian).component(.year, from: Date()) + 1
        return [
            InvalidCase(description: "missing data.kind", event: Wire.setting(report, "data.kind", nil), field: "data.kind", mentions: ["required"]),
            InvalidCase(description: "missing data.city", event: Wire.setting(report, "data.city", nil), field: "data.city"),
            InvalidCase(description: "missing occurredAt", event: Wire.setting(report, "occurredAt", nil), field: "occurredAt"),
            InvalidCase(description: "missing type", event: Wire.setting(report, "type", nil), field: "type"),
            InvalidCase(description: "missing data", event: Wire.setting(report, "data", nil), field: "data"),
            InvalidCase(description: "unknown kind", event: Wire.setting(report, "data.kind", "riot"), field: "data.kind", mentions: ["riot", "demonstration"]),
            InvalidCase(description: "unknown type", event: Wire.setting(report, "type", "incident-deleted"), field: "type"),
            InvalidCase(description: "unknown precision", event: Wire.setting(report, "precision", "century"), field: "precision"),
            InvalidCase(description: "kind not a string", event: Wire.setting(report, "data.kind", 3), field: "data.kind"),
            InvalidCase(description: "date not ISO 8601", event: Wire.setting(report, "occurredAt", "01/03/2022"), field: "occurredAt", mentions: ["ISO 8601"]),
            InvalidCase(description: "impossible date", event: Wire.setting(report, "occurredAt", "2022-02-30"), field: "occurredAt"),
            InvalidCase(description: "date in the future", event: Wire.setting(report, "occurredAt", .string("\(nextYear)-06-01")), field: "occurredAt", mentions: ["future"]),
            InvalidCase(description: "date-time in the future", event: Wire.setting(report, "occurredAt", .string("\(nextYear)-06-01T12:00Z")), field: "occurredAt", mentions: ["future"]),
            InvalidCase(description: "a space instead of T", event: Wire.setting(report, "occurredAt", "2022-03-01 14:30Z"), field: "occurredAt", mentions: ["2022-03-01 14:30Z", "T"]),
            InvalidCase(description: "source published in the future", event: Wire.setting(report, "sources", [["name": "x", "publishedAt": .string("\(nextYear)-06-01")]]), field: "sources[0].publishedAt", mentions: ["future"]),
            InvalidCase(description: "source published at a date-time in the future", event: Wire.setting(report, "sources", [["name": "x"], ["name": "y", "publishedAt": .string("\(nextYear)-06-01T12:00Z")]]), field: "sources[1].publishedAt", mentions: ["future"]),
            InvalidCase(description: "source published with a space instead of T", event: Wire.setting(report, "sources", [["name": "x", "publishedAt": "2022-03-01 14:30Z"]]), field: "sources[0].publishedAt", mentions: ["T"]),
            InvalidCase(description: "precision finer than the date", event: Wire.setting(Wire.setting(report, "occurredAt", "2022-03"), "precision", "day"), field: "precision"),
            InvalidCase(description: "unknown field", event: Wire.setting(report, "weather", "rain"), field: "weather", mentions: ["unknown field"]),
            InvalidCase(description: "unknown data field", event: Wire.setting(report, "data.mood", "angry"), field: "data.mood", mentions: ["unknown field"]),
            InvalidCase(description: "inverted participants", event: Wire.setting(report, "data.participants", ["low": 200, "high": 100]), field: "data.participants", mentions: ["200", "100"]),
            InvalidCase(description: "negative participants", event: Wire.setting(report, "data.participants", ["low": -5, "high": 10]), field: "data.participants.low"),
            InvalidCase(description: "recordedBy from the client", event: Wire.setting(report, "recordedBy", ["uid": 0, "user": "root"]), field: "recordedBy", mentions: ["unknown field"]),
            InvalidCase(description: "position from the client", event: Wire.setting(report, "position", 1), field: "position"),
            InvalidCase(description: "cityId not of a city id's form", event: Wire.setting(report, "data.cityId", "Kupiansk"), field: "data.cityId"),
            InvalidCase(description: "bad incident id", event: Wire.setting(report, "incident", "Kupiansk City Hall!"), field: "incident"),
            InvalidCase(description: "eventId not a UUID", event: Wire.setting(report, "eventId", "event-1"), field: "eventId"),
            InvalidCase(description: "negative expectedVersion", event: Wire.setting(report, "expectedVersion", -1), field: "expectedVersion"),
            InvalidCase(description: "coordinates out of range", event: Wire.setting(report, "data.coordinates", ["lat": 91.0, "lon": 37.0]), field: "data.coordinates.lat"),
            InvalidCase(description: "empty city", event: Wire.setting(report, "data.city", "  "), field: "data.city", mentions: ["empty"]),
            InvalidCase(description: "source without verification value", event: Wire.setting(report, "sources", [["name": "x", "verification": "probably"]]), field: "sources[0].verification"),
            InvalidCase(description: "source without name", event: Wire.setting(report, "sources", [["verification": "verified"]]), field: "sources[0].name"),
            InvalidCase(description: "unknown response", event: Wire.setting(response, "data.responses", ["tear gas"]), field: "data.responses[0]", mentions: ["tear-gas"]),
            InvalidCase(description: "no responses", event: Wire.setting(response, "data.responses", []), field: "data.responses"),
            InvalidCase(description: "none beside another response", event: Wire.setting(response, "data.responses", ["tear-gas", "none"]), field: "data.responses", mentions: ["none beside another response"]),
            InvalidCase(description: "response without by", event: Wire.setting(response, "data.by", nil), field: "data.by"),
            InvalidCase(description: "response without incident", event: Wire.setting(response, "incident", nil), field: "incident"),
            InvalidCase(description: "negative detained", event: Wire.setting(response, "data.detained", -1), field: "data.detained"),
            InvalidCase(description: "unknown outcome status", event: Wire.setting(Wire.outcome(incident: "kupiansk-ok"), "data.status", "won"), field: "data.status"),
            InvalidCase(description: "unknown verification", event: Wire.setting(Wire.outcome(incident: "kupiansk-ok"), "data.verification", "sure"), field: "data.verification"),
            InvalidCase(description: "correcting the city", event: Wire.setting(Wire.outcome(incident: "kupiansk-ok"), "data.corrections", ["city": "Melitopol"]), field: "data.corrections.city"),
            InvalidCase(
                description: "correcting the date", event: Wire.setting(Wire.outcome(incident: "kupiansk-ok"), "data.corrections", ["occurredAt": "2022-03-02", "precision": "day"]),
                field: "data.corrections.occurredAt",
                mentions: ["cannot be corrected", "Retract the incident (an outcome with status retracted", "report it again with the right date"]),
            InvalidCase(
                description: "correcting the precision", event: Wire.setting(Wire.outcome(incident: "kupiansk-ok"), "data.corrections", ["precision": "week"]),
                field: "data.corrections.precision", mentions: ["Retract the incident", "report it again with the right date"]),
            InvalidCase(description: "correcting with inverted participants", event: Wire.setting(Wire.outcome(incident: "kupiansk-ok"), "data.corrections", ["participants": ["low": 9, "high": 1]]), field: "data.corrections.participants"),
            InvalidCase(description: "an event that is not an object", event: "incident-reported", field: "event"),
        ]
    }

    @Test("invalid_event names the field: missing, unknown enum values, bad or future dates, unknown fields, ranges")
    func invalidEvent() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "kupiansk-ok")]).isOK)
        for invalid in Self.invalidCases {
            let error = try Self.expectRefusal(client, [invalid.event], code: "invalid_event", field: invalid.field, mentions: invalid.mentions)
            #expect(error["index"]?.intValue == 0, "\(invalid)")
        }
        #expect(try client.headPosition() == 1)
        #expect(try client.appendEvents([Wire.response(incident: "kupiansk-ok")]).isOK, "the connection still serves appends")
    }

    @Test("duplicate_event_id: an eventId reused for different content")
    func duplicateEventId() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let id = Wire.uuid()
        #expect(try client.appendEvents([Wire.report(incident: "melitopol-1", city: "Melitopol", eventId: id)]).isOK)
        let error = try Self.expectRefusal(
            client, [Wire.report(incident: "melitopol-2", city: "Melitopol", eventId: id)], code: "duplicate_event_id", mentions: [id])
        #expect(error["eventId"]?.stringValue == id)
        #expect(error["position"]?.intValue == 1, "names where the id was first used")
    }

    @Test("an append of three events where the third is invalid stores none of them")
    func atomicity() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "kupiansk-before")]).isOK)
        let good = [Wire.report(incident: "kupiansk-a"), Wire.response(incident: "kupiansk-a")]
        // Refused by validation before it reaches the log.
        let invalid = try Self.expectRefusal(
            client, good + [Wire.setting(Wire.report(incident: "kupiansk-b"), "data.kind", "riot")], code: "invalid_event",
            field: "data.kind")
        #expect(invalid["index"]?.intValue == 2)
        let message = invalid["message"]?.stringValue ?? ""
        #expect(message.hasPrefix("event 2:"), "\(invalid)")
        // Refused by a rule of the log, inside the write transaction.
        let unknown = try Self.expectRefusal(client, good + [Wire.response(incident: "kupiansk-nowhere")], code: "unknown_incident")
        #expect(unknown["index"]?.intValue == 2)
        let exists = try Self.expectRefusal(
            client, good + [Wire.report(incident: "kupiansk-a", kind: "strike")], code: "incident_exists")
        #expect(exists["index"]?.intValue == 2)
        let version = try Self.expectRefusal(
            client, good + [Wire.response(incident: "kupiansk-a", expectedVersion: 1)], code: "wrong_expected_version")
        #expect(version["index"]?.intValue == 2)
        #expect(version["actualVersion"]?.intValue == 2, "the version the batch itself had reached")
        #expect(try client.call("incident", ["incident": "kupiansk-a"]).errorCode == "unknown_incident", "the first event did not land")
        #expect(try client.call("city", ["city": "Kupiansk"])["city"]?["incidents"]?["total"]?.intValue == 1)
        // The same good events land afterwards, at the next positions: the refusals left no gap.
        let landed = try client.appendEvents(good)
        #expect(landed["positions"] == [2, 3])
        #expect(try client.allEvents().map { $0["position"]?.intValue } == [1, 2, 3])
    }

    @Test("invalid_json, invalid_request and unknown_operation, and the connection keeps serving")
    func protocolErrors() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let cases: [(line: String, code: String, id: JSONValue, mentions: String?)] = [
            (#"{"id":1,"op":"status""#, "invalid_json", .null, nil),
            ("this is not json", "invalid_json", .null, nil),
            (#"{"id":2,"op":"status",}"#, "invalid_json", .null, nil),
            ("[1,2,3]", "invalid_request", .null, nil),
            (#"{"id":3}"#, "invalid_request", 3, "op"),
            (#"{"id":[1],"op":"status"}"#, "invalid_request", .null, "id"),
            (#"{"id":4,"op":"status","verbose":true}"#, "invalid_request", 4, "verbose"),
            (#"{"id":5,"op":"append","events":"all of them"}"#, "invalid_request", 5, "events"),
            (#"{"id":6,"op":"append","events":[]}"#, "invalid_request", 6, "events"),
            (#"{"id":7,"op":"append"}"#, "invalid_request", 7, "events"),
            (#"{"id":8,"op":"append","events":[],"recordedBy":{"uid":0,"user":"root"}}"#, "invalid_request", 8, "recordedBy"),
            (#"{"id":9,"op":"read","limit":0}"#, "invalid_request", 9, "limit"),
            (#"{"id":10,"op":"read","type":"incident-deleted"}"#, "invalid_request", 10, "type"),
            (#"{"id":11,"op":"incident"}"#, "invalid_request", 11, "incident"),
            (#"{"id":"twelve","op":"drop"}"#, "unknown_operation", "twelve", "drop"),
            (#"{"id":13,"op":7}"#, "invalid_request", 13, "op"),
            (#"{"id":14,"op":null}"#, "invalid_request", 14, "op"),
            (#"{"id":15,"op":["status"]}"#, "invalid_request", 15, "op"),
            (#"{"id":16,"op":{"name":"append"},"events":[]}"#, "invalid_request", 16, "op"),
        ]
        for (line, code, id, mentions) in cases {
            try client.writeLine(line)
            let response = try client.receive()
            #expect(response["ok"] == false, "\(line)")
            #expect(response.errorCode == code, "\(line) → \(response)")
            #expect(response["id"] == id, "\(line) → \(response)")
            if let mentions {
                #expect(response["error"]?["message"]?.stringValue?.contains(mentions) == true, "\(line) → \(response)")
            }
            let status = try client.call("status")
            #expect(status.isOK, "the connection still serves after \(line)")
        }
        // Bytes that are not UTF-8.
        try client.write([0x7B, 0xFF, 0xFE, 0x7D, 0x0A])
        #expect(try client.receive().errorCode == "invalid_json")
        // A line ending in CR LF is one request.
        try client.write(Array(#"{"id":"crlf","op":"status"}"#.utf8) + [0x0D, 0x0A])
        #expect(try client.receive()["id"] == "crlf")
        #expect(try client.headPosition() == 0, "nothing was stored")
        // Appends written in pieces of 97 bytes, two lines sharing a piece and the newline of one alone in its
        // own write: each is one request, answered once and stored once.
        let pieces: JSONValue = ["id": "pieces", "op": "append", "events": [Wire.report(incident: "kupiansk-2022-03-05-pieces")]]
        let second: JSONValue = ["id": "second", "op": "append", "events": [Wire.report(incident: "kupiansk-2022-03-05-second")]]
        let bytes = pieces.canonicalBytes() + [0x0A] + second.canonicalBytes()
        for start in stride(from: 0, to: bytes.count, by: 97) {
            try client.write(Array(bytes[start..<min(start + 97, bytes.count)]))
        }
        try client.write([0x0A])
        let first = try client.receive()
        #expect(first.isOK && first["id"] == "pieces", "\(first)")
        let next = try client.receive()
        #expect(next.isOK && next["id"] == "second", "\(next)")
        #expect(try client.headPosition() == 2, "both stored, once each")
    }

    @Test("a number too large for any integer (past Int64) is refused naming the field and saying it is out of range, in an event and in a query")
    func numbersPastInt64() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "kupiansk-ok")]).isOK)
        let huge = "123456789012345678901234567890"
        let response = #"{"type":"response-observed","incident":"kupiansk-ok","data":{"by":"x","responses":["none"]}}"#
        let cases: [(line: String, code: String, message: String)] = [
            (#"{"id":1,"op":"append","events":[\#(response.replacingOccurrences(of: #""type""#, with: #""expectedVersion":\#(huge),"type""#))]}"#,
             "invalid_event", "expectedVersion: the number sent is out of range: it is larger than 2147483647, the most it may be"),
            (#"{"id":2,"op":"append","events":[\#(Wire.report(incident: "kupiansk-huge").canonicalString().replacingOccurrences(of: #""kind""#, with: #""participants":\#(huge),"kind""#))]}"#,
             "invalid_event", "data.participants: the number sent is out of range: it is larger than 100000000, the most it may be"),
            (#"{"id":3,"op":"read","from":\#(huge)}"#,
             "invalid_request", "from: the number sent is out of range: it is larger than 9223372036854775807, the most it may be"),
            (#"{"id":4,"op":"read","from":1,"limit":-\#(huge)}"#,
             "invalid_request", "limit: the number sent is out of range: it is smaller than 1, the least it may be"),
            (#"{"id":5,"op":"incident","incident":"kupiansk-ok","untilPosition":\#(huge)}"#,
             "invalid_request", "untilPosition: the number sent is out of range: it is larger than 9223372036854775807, the most it may be"),
            (#"{"id":6,"op":"subscribe","from":9223372036854775808}"#,
             "invalid_request", "from: the number sent is out of range: it is larger than 9223372036854775807, the most it may be"),
        ]
        for (line, code, message) in cases {
            try client.writeLine(line)
            let answer = try client.receive()
            #expect(answer.errorCode == code, "\(line) → \(answer)")
            #expect(answer["error"]?["message"]?.stringValue == message, "\(line) → \(answer)")
        }
        #expect(try client.headPosition() == 1, "nothing was stored")
        #expect(daemon.stop() == 0)
    }

    /// The value of the top-level member `id` of a response line, as its bytes stand in the line.
    static func idText(_ line: [UInt8]) -> String? {
        line.withUnsafeBytes { bytes -> String? in
            var s = JSONScanner(bytes)
            guard s.consume(UInt8(ascii: "{")) else { return nil }
            repeat {
                guard let key = s.key() else { return nil }
                let isId = key.elementsEqual("id".utf8)
                guard let value = s.skipValue() else { return nil }
                if isId { return String(decoding: value, as: UTF8.self) }
            } while s.consume(UInt8(ascii: ","))
            return nil
        }
    }

    @Test("the id comes back as the client wrote it: numbers of any size and form, strings with their escapes, on every path")
    func idEchoedVerbatim() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let report = Wire.report(incident: "kupiansk-ids").canonicalString()
        let invalid = Wire.setting(Wire.report(incident: "kupiansk-ids-2"), "data.kind", "riot").canonicalString()
        let cases: [(id: String, rest: String)] = [
            // Appends: the fast path, the general path's refusal, the general path (an escaped key).
            ("12345678901234567890124", #""op":"append","events":[\#(report)]"#),
            ("2.0e1", #""op":"append","events":[\#(invalid)]"#),
            ("0.1E+02", #""op":"append","\u0065vents":[\#(Wire.report(incident: "kupiansk-ids-3").canonicalString())]"#),
            // Queries: through Response.success, the stored city document with the id spliced in, a decoding
            // failure, a string with escapes.
            ("12345678901234567890123", #""op":"status""#),
            ("1E2", #""op":"status""#),
            ("-0", #""op":"cities""#),
            ("1.50", #""op":"city","city":"Kupiansk""#),
            ("9007199254740993", #""op":"read","limit":1"#),
            ("-12345678901234567890.5e-3", #""op":"drop""#),
            (#""caf\u00e9 \/ 7""#, #""op":"status""#),
        ]
        for (id, rest) in cases {
            let line = "{\"id\":\(id),\(rest)}"
            try client.writeLine(line)
            let response = try client.receiveLine()
            #expect(Self.idText(response) == id, "\(line) → \(String(decoding: response, as: UTF8.self))")
            #expect(try JSONReader().read(response)["ok"] != nil, "\(line)")
        }
        #expect(try client.headPosition() == 2, "the two good appends were stored")

        // A subscription's answer and every event line after it carry the id as sent.
        let follower = try daemon.client()
        try follower.writeLine(#"{"id":98765432109876543210,"op":"subscribe","from":1}"#)
        // Its answer and the two events, each line made from the event's stored bytes.
        for _ in 0..<3 {
            let line = try follower.receiveLine()
            #expect(Self.idText(line) == "98765432109876543210", "\(String(decoding: line, as: UTF8.self))")
        }
        let filtered = try daemon.client()
        try filtered.writeLine(#"{"id":1E400,"op":"subscribe","from":1,"type":"incident-reported"}"#)
        #expect(try filtered.receive().errorCode == "invalid_json", "a number outside a double's range is still refused")
        try filtered.writeLine(#"{"id":7.000,"op":"subscribe","from":1,"type":"incident-reported"}"#)
        // Its answer and the two reports.
        for _ in 0..<3 {
            let line = try filtered.receiveLine()
            #expect(Self.idText(line) == "7.000", "\(String(decoding: line, as: UTF8.self))")
        }
    }

    @Test("line_too_long under a configured daemon.max_line_bytes; the same connection and others keep serving")
    func lineTooLongConfigured() throws {
        let daemon = try Daemon.configured("[daemon]\nmax_line_bytes = 2048\n")
        let client = try daemon.client()
        let other = try daemon.client()
        let long = #"{"id":1,"op":"status","padding":""# + String(repeating: "x", count: 5000) + #""}"#
        // The over-long line and a good request behind it in one write: two answers, in order.
        try client.write(Array((long + "\n" + #"{"id":2,"op":"status"}"# + "\n").utf8))
        let refused = try client.receive()
        #expect(refused.errorCode == "line_too_long", "\(refused)")
        #expect(refused["error"]?["limit"]?.intValue == 2048)
        #expect(refused["id"] == .null)
        #expect(refused["error"]?["message"]?.stringValue?.contains("2048") == true)
        let next = try client.receive()
        #expect(next.isOK && next["id"] == 2, "\(next)")
        // An over-long line that arrives in small pieces is dropped as it streams.
        let bytes = Array((long + "\n").utf8)
        for start in stride(from: 0, to: bytes.count, by: 700) {
            try client.write(Array(bytes[start..<min(start + 700, bytes.count)]))
        }
        #expect(try client.receive().errorCode == "line_too_long")
        #expect(try other.call("status").isOK, "another connection is unaffected")
        // A line just under the limit is served.
        let description = String(repeating: "d", count: 1500)
        let fits = try client.appendEvents([Wire.report(extraData: ["description": .string(description)])])
        #expect(fits.isOK, "\(fits)")
        #expect(try client.headPosition() == 1)
        // A line of exactly the limit is served, ended by \n or by \r\n (the \r is not part of the line); one byte
        // more is refused either way.
        func status(padTo bytes: Int) -> String {
            let bare = #"{"id":3,"op":"status","padding":""}"#
            return #"{"id":3,"op":"status","padding":""# + String(repeating: "p", count: bytes - bare.utf8.count) + #""}"#
        }
        for ending in ["\n", "\r\n"] {
            try client.write(Array((status(padTo: 2048) + ending).utf8))
            let exact = try client.receive()
            #expect(exact.errorCode == "invalid_request" || exact.isOK, "a line of exactly 2048 bytes ended by \(ending.debugDescription): \(exact)")
            #expect(exact.errorCode != "line_too_long")
            try client.write(Array((status(padTo: 2049) + ending).utf8))
            #expect(try client.receive().errorCode == "line_too_long", "2049 bytes ended by \(ending.debugDescription)")
        }
        // A last line without its newline, one byte over and sent in pieces, then the end of the client's input: held
        // in case a \r came, it is still refused, and nothing of it is run.
        let last = try daemon.client()
        let over = Wire.report(incident: "one-byte-over", extraData: ["description": .string(String(repeating: "o", count: 1500))])
        var line = JSONValue.object(["id": 9, "op": "append", "events": [over]]).canonicalString()
        line += String(repeating: " ", count: max(0, 2049 - line.utf8.count))
        let overBytes = Array(line.utf8)
        #expect(overBytes.count == 2049)
        try last.write(Array(overBytes[..<1000]))
        try last.write(Array(overBytes[1000...]))
        shutdown(last.fd, Int32(SHUT_WR))
        #expect(try last.receive().errorCode == "line_too_long")
        #expect(try client.headPosition() == 1, "nothing of the over-long line was stored")
    }

    @Test("server_busy: the unfinished lines of all connections are bounded by daemon.max_unfinished_bytes")
    func unfinishedLinesAreBounded() throws {
        let daemon = try Daemon.configured("[daemon]\nmax_line_bytes = 65536\nmax_unfinished_bytes = 102400\n")
        let watcher = try daemon.client()
        func held() throws -> Int64 {
            let status = try watcher.call("status")
            return try #require(status["unfinishedLineBytes"]?.intValue, "\(status)")
        }
        // A status request whose string id is long, sent in two parts.
        func start(_ id: String, _ length: Int) -> [UInt8] {
            Array((#"{"op":"status","id":"\#(id)"# + String(repeating: "x", count: length)).utf8)
        }
        func answered(_ response: JSONValue, _ id: String) -> Bool {
            response.isOK && response["id"]?.stringValue?.hasPrefix(id + "xxx") == true
        }
        let end = Array(#""}"#.utf8) + [0x0A]

        let first = try daemon.client()
        try first.write(start("first", 60_000))
        try waitFor("the first unfinished line to be held") { try held() >= 60_000 }
        // A second unfinished line that would take the total past 100 KiB is dropped, and said so at once.
        let second = try daemon.client()
        try second.write(start("second", 50_000))
        let refused = try second.receive()
        #expect(refused.errorCode == "server_busy", "\(refused)")
        #expect(refused["id"] == .null)
        #expect(refused["error"]?["limit"]?.intValue == 102_400)
        #expect(refused["error"]?["message"]?.stringValue?.contains("max_unfinished_bytes") == true, "\(refused)")
        // The first line is whole and served; the rest of the dropped one is dropped too, and the next request on
        // that connection is served.
        try first.write(end)
        let firstAnswer = try first.receive()
        #expect(answered(firstAnswer, "first"), "\(firstAnswer.errorCode ?? "ok")")
        try second.write(Array(String(repeating: "x", count: 10_000).utf8) + end + Array(#"{"id":2,"op":"status"}"#.utf8) + [0x0A])
        let next = try second.receive()
        #expect(next.isOK && next["id"] == 2, "\(next)")
        try waitFor("every unfinished line to be let go") { try held() == 0 }
        // With the budget free again, the same line goes through.
        try second.write(start("again", 50_000) + end)
        let again = try second.receive()
        #expect(answered(again, "again"), "\(again.errorCode ?? "ok")")
        // A connection closed in the middle of a line gives its part back.
        do {
            let leaving = try daemon.client()
            try leaving.write(start("leaving", 30_000))
            try waitFor("the leaving line to be held") { try held() >= 30_000 }
        }
        try waitFor("the closed connection's line to be let go") { try held() == 0 }
    }

    @Test("line_too_long at the default limit of 1 MiB")
    func lineTooLongDefault() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let huge = #"{"id":1,"op":"status","padding":""# + String(repeating: "y", count: (1 << 20) + 16) + #""}"#
        try client.writeLine(huge)
        let refused = try client.receive()
        #expect(refused.errorCode == "line_too_long", "\(refused)")
        #expect(refused["error"]?["limit"]?.intValue == 1 << 20)
        #expect(try client.call("status").isOK)
    }

    @Test("the socket is created with mode 0660")
    func socketMode() throws {
        let daemon = try Daemon()
        var info = stat()
        #expect(lstat(daemon.socketPath, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK, "a socket")
        #expect(info.st_mode & 0o7777 == 0o660, "mode \(String(info.st_mode & 0o7777, radix: 8))")
    }
}
