import Gazetteer
import IncidentDomain
import StrictJSON
import Testing

private let now = Timestamp(microseconds: 1_764_000_000_000_000)  // 2025-11-24

private func propose(_ json: JSONValue) throws -> ProposedEvent {
    try ProposedEvent(json: json, now: now)
}

private func field(of error: any Error) -> String? {
    (error as? IncidentError)?.details["field"]?.stringValue
}

private let report: JSONValue = [
    "type": "incident-reported", "occurredAt": "2022-03-01",
    "data": ["city": "Kup'yansk", "kind": "demonstration", "participants": ["low": 150, "high": 150]],
]

private func with(_ base: JSONValue, _ path: [String], _ value: JSONValue?) -> JSONValue {
    guard case .object(var o) = base, let first = path.first else { return value ?? .null }
    if path.count == 1 {
        o[first] = value
    } else {
        o[first] = with(o[first] ?? [:], Array(path.dropFirst()), value)
    }
    return .object(o)
}

@Suite("Event validation")
struct ValidationTests {
    @Test("a valid report is accepted and its precision follows occurredAt")
    func valid() throws {
        let event = try propose(report)
        #expect(event.type == .incidentReported)
        #expect(event.precision == .day)
        guard case .reported(let data) = event.data else { Issue.record("not a report"); return }
        #expect(data.participants == PeopleRange(low: 150, high: 150))
    }

    @Test(
        "each broken field is refused as invalid_event naming it",
        arguments: [
            (["type"], JSONValue.string("incident-deleted"), "type"),
            (["occurredAt"], "2022-02-30", "occurredAt"),
            (["occurredAt"], "yesterday", "occurredAt"),
            (["occurredAt"], "2099-01-01", "occurredAt"),
            (["occurredAt"], "2022-03-01 14:30Z", "occurredAt"),
            (["occurredAt"], "2022-03-01 14:30:15+02:00", "occurredAt"),
            (["precision"], "minute", "precision"),
            (["incident"], "../etc/passwd", "incident"),
            (["incident"], "Kupiansk.City", "incident"),
            (["eventId"], "not-a-uuid", "eventId"),
            (["recordedBy"], ["uid": 0], "recordedBy"),
            (["data", "kind"], "riot", "data.kind"),
            (["data", "kind"], nil, "data.kind"),
            (["data", "city"], nil, "data.city"),
            (["data", "city"], .string(String(repeating: "x", count: 100_000)), "data.city"),
            (["data", "cityId"], "Kupiansk", "data.cityId"),
            (["data", "cityId"], "kupiansk east", "data.cityId"),
            (["data", "participants"], ["low": 10, "high": 5], "data.participants"),
            (["data", "participants"], ["low": -1, "high": 5], "data.participants.low"),
            (["data", "participants"], ["low": 1.5, "high": 5], "data.participants.low"),
            (["data", "participants"], ["low": 1e30, "high": 5], "data.participants.low"),
            (["data", "coordinates"], ["lat": 91, "lon": 0], "data.coordinates.lat"),
            (["data", "colour"], "red", "data.colour"),
            (["sources"], [["verification": "verified"]], "sources[0].name"),
            (["sources"], [["name": "x", "sha256": "abc"]], "sources[0].sha256"),
            (["sources"], [["name": "x", "publishedAt": "2099-01-01"]], "sources[0].publishedAt"),
            (["sources"], [["name": "x"], ["name": "y", "publishedAt": "2025-11-24T16:06Z"]], "sources[1].publishedAt"),
            (["sources"], [["name": "x", "publishedAt": "2022-03-01 14:30Z"]], "sources[0].publishedAt"),
        ] as [([String], JSONValue?, String)])
    func refused(path: [String], value: JSONValue?, expectedField: String) {
        do {
            _ = try propose(with(report, path, value))
            Issue.record("accepted \(path) = \(String(describing: value))")
        } catch {
            #expect((error as? IncidentError)?.code == .invalidEvent)
            #expect(field(of: error) == expectedField, "\(error)")
        }
    }

    @Test("a plain number of participants out of range is named as such, not as a number where an object was expected")
    func participantsNumberOutOfRange() {
        for value: JSONValue in [-3, 100_000_001] {
            do {
                _ = try propose(with(report, ["data", "participants"], value))
                Issue.record("accepted participants \(value)")
            } catch {
                #expect(field(of: error) == "data.participants", "\(error)")
                #expect("\(error)".contains("\(value.canonicalString()) is outside 0...100000000"), "\(error)")
            }
        }
    }

    @Test("responses and outcomes need an incident; corrections are checked against the report's rules")
    func otherTypes() throws {
        #expect(throws: IncidentError.self) {
            try propose(["type": "response-observed", "data": ["by": "x", "responses": ["tear-gas"]]])
        }
        #expect(throws: IncidentError.self) {
            try propose(["type": "response-observed", "incident": "a", "data": ["by": "x", "responses": ["hugs"]]])
        }
        #expect(throws: IncidentError.self) {
            try propose(["type": "outcome-updated", "incident": "a", "data": ["status": "dispersed", "corrections": ["city": "Paris"]]])
        }
        #expect(throws: IncidentError.self) {
            try propose(["type": "outcome-updated", "incident": "a", "data": ["status": "dispersed", "corrections": ["participants": ["low": 9, "high": 1]]]])
        }
        let outcome = try propose(["type": "outcome-updated", "incident": "a", "data": ["status": "dispersed", "corrections": ["participants": ["low": 100, "high": 200]]]])
        #expect(outcome.type == .outcomeUpdated)
    }

    @Test("a response of none beside another is refused naming responses; one stored before the rule still reads")
    func noneBesideOtherResponses() throws {
        let response: JSONValue = ["type": "response-observed", "incident": "a", "data": ["by": "Rosgvardia", "responses": ["none"]]]
        #expect(try propose(response).type == .responseObserved)
        for list: JSONValue in [["none", "tear-gas"], ["warning-shots", "none"]] {
            do {
                _ = try propose(with(response, ["data", "responses"], list))
                Issue.record("\(list) was accepted")
            } catch {
                #expect(field(of: error) == "data.responses")
                #expect((error as? IncidentError)?.message.contains("none beside another response") == true)
            }
        }
        let stored: JSONValue = [
            "position": 2, "eventId": "3f2a5c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6c", "type": "response-observed",
            "incident": "kupiansk-2022-03-01-demonstration", "version": 2, "occurredAt": "2022-03-01",
            "precision": "day", "recordedAt": "2025-11-24T00:00:00.000000Z", "recordedBy": ["uid": 0, "user": "root"],
            "schema": 1, "prevHash": .string(String(repeating: "0", count: 64)),
            "data": ["by": "Rosgvardia", "responses": ["none", "tear-gas"]],
        ]
        let event = try RecordedEvent(json: stored)
        #expect(event.json == stored, "read back as it was stored, byte for byte")
    }

    @Test("a control character in text is refused naming which and where; line breaks and tabs pass")
    func controlCharacters() throws {
        for (text, says) in [
            ("first line\r\nsecond", "data.description: contains a carriage return (\\r, U+000D) at character 11"),
            ("bell\u{07}", "data.description: contains the control character U+0007 at character 5; text may hold line breaks (\\n) and tabs, and no other character below U+0020"),
        ] {
            do {
                _ = try propose(with(report, ["data", "description"], .string(text)))
                Issue.record("accepted \(text.debugDescription)")
            } catch {
                #expect((error as? IncidentError)?.message.hasPrefix(says) == true, "\(error)")
            }
        }
        _ = try propose(with(report, ["data", "description"], "two\nlines\tand a tab"))
    }

    @Test("a date-time with a space before the time is refused on input, saying to write T")
    func dateTimeSeparator() throws {
        do {
            _ = try propose(with(report, ["occurredAt"], "2022-03-01 14:30Z"))
            Issue.record("a space before the time was accepted")
        } catch {
            #expect(
                (error as? IncidentError)?.message
                    == "occurredAt: \"2022-03-01 14:30Z\" is not ISO 8601: write T between the date and the time, as in 2022-03-01T14:30Z",
                "\(error)")
        }
        // The forms PROTOCOL.md documents still pass, on both fields.
        for date in ["2022-03-01T14:30Z", "2022-03-01T14:30:15.5+02:00", "2022-03-01", "2022-03"] {
            #expect(try propose(with(report, ["occurredAt"], .string(date))).occurredAt == date)
            let event = try propose(with(report, ["sources"], [["name": "x", "publishedAt": .string(date)]]))
            #expect(event.sources.first?.publishedAt == date)
        }
    }

    @Test("a t or z in lower case (RFC 3339 allows both) is taken and stored in capitals, on both fields")
    func lowercaseSeparatorAndZone() throws {
        for (sent, stored) in [
            ("2022-03-01t14:30z", "2022-03-01T14:30Z"), ("2022-03-01t14:30Z", "2022-03-01T14:30Z"),
            ("2022-03-01T14:30:15.5z", "2022-03-01T14:30:15.5Z"), ("2022-03-01t14:30+02:00", "2022-03-01T14:30+02:00"),
        ] {
            #expect(try propose(with(report, ["occurredAt"], .string(sent))).occurredAt == stored)
            let event = try propose(with(report, ["sources"], [["name": "x", "publishedAt": .string(sent)]]))
            #expect(event.sources.first?.publishedAt == stored)
        }
        // What earlier versions stored as sent still reads.
        #expect(ParsedDate.parse("2022-03-01t14:30z")?.start == ParsedDate.parse("2022-03-01T14:30Z")?.start)
    }

    @Test("a source published in the future is refused naming it, with the clock skew occurredAt allows")
    func futurePublishedAt() throws {
        do {
            _ = try propose(with(report, ["sources"], [["name": "x", "publishedAt": "2099-01-01"]]))
            Issue.record("a source published in the future was accepted")
        } catch {
            #expect((error as? IncidentError)?.message == "sources[0].publishedAt: 2099-01-01 lies in the future", "\(error)")
        }
        // 5 minutes for a date-time, 14 hours for a date.
        for publishedAt in ["2025-11-24T16:04Z", "2025-11-25"] {
            let event = try propose(with(report, ["sources"], [["name": "x", "publishedAt": .string(publishedAt)]]))
            #expect(event.sources.first?.publishedAt == publishedAt)
        }
    }

    @Test("a stored event is read back with what earlier versions accepted: a space before the time, a source published in the future")
    func storedDatesStayReadable() throws {
        // Dates that reached the log before these rules: reading them back (replay, rebuild, verify) must not
        // fail, so the parser for stored dates stays lenient.
        #expect(ParsedDate.parse("2022-03-01 14:30Z")?.start == ParsedDate.parse("2022-03-01T14:30Z")?.start)
        let stored: JSONValue = [
            "position": 1, "eventId": "3f2a5c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b", "type": "incident-reported",
            "incident": "kupiansk-2022-03-01-demonstration", "version": 1, "occurredAt": "2022-03-01 14:30Z",
            "precision": "minute", "recordedAt": "2025-11-24T00:00:00.000000Z", "recordedBy": ["uid": 0, "user": "root"],
            "schema": 1, "prevHash": .string(String(repeating: "0", count: 64)),
            "sources": [["name": "a", "publishedAt": "2099-01-01", "verification": "verified"], ["name": "b", "publishedAt": "2022-03-01 15:00Z", "verification": "unverified"]],
            "data": ["city": "Kup'yansk", "cityId": "kupiansk", "kind": "demonstration"],
        ]
        let event = try RecordedEvent(json: stored)
        #expect(event.occurredAt == "2022-03-01 14:30Z")
        #expect(event.sources.map(\.publishedAt) == ["2099-01-01", "2022-03-01 15:00Z"])
        #expect(event.json == stored, "read back as it was stored, byte for byte")
    }

    @Test("dates: ISO 8601 forms, offsets and impossible dates")
    func dates() {
        #expect(ParsedDate.parse("2022-03-01T12:00Z")?.start == ParsedDate.parse("2022-03-01T14:00+02:00")?.start)
        #expect(ParsedDate.parse("2024-02-29") != nil)
        #expect(ParsedDate.parse("2023-02-29") == nil)
        #expect(ParsedDate.parse("2022-03")?.finestPrecision == .month)
        #expect(ParsedDate.parse("2022-03-01T25:00Z") == nil)
        #expect(ParsedDate.parse("2022-03-01T12:00") == nil)
        #expect(Timestamp(microseconds: 0).description == "1970-01-01T00:00:00.000000Z")
        #expect(ParsedDate.parse(Timestamp(microseconds: 1_646_136_000_123_456).description)?.start.microseconds == 1_646_136_000_123_456)
    }
}

@Suite("Admission and projections")
struct ProjectionTests {
    let admission = Admission(gazetteer: .embedded)
    let projector = Projector(gazetteer: .embedded)

    func record(
        _ json: JSONValue, _ store: inout InMemoryProjections, position: UInt64, allowNewCity: Bool = false, restoresCities: Bool = false
    ) throws -> RecordedEvent {
        let proposal = try propose(json)
        let admitted = try admission.admit(
            proposal, allowNewCity: allowNewCity, restoresCities: restoresCities, recordedAt: now, store: &store)
        let event = RecordedEvent(
            position: position, eventId: EventID.random(), incident: admitted.incident, version: admitted.version,
            occurredAt: admitted.occurredAt, precision: admitted.precision, recordedAt: now,
            recordedBy: Recorder(uid: 0, user: "root"), sources: proposal.sources, data: admitted.data,
            prevHash: String(repeating: "0", count: 64))
        try projector.apply(event, to: &store)
        return event
    }

    @Test("a report, a response and a correction fold into the city and the incident")
    func fold() throws {
        var store = InMemoryProjections()
        let first = try record(report, &store, position: 1)
        #expect(first.incident == "kupiansk-2022-03-01-demonstration")
        #expect(first.cityId == "kupiansk")
        _ = try record(["type": "response-observed", "incident": .string(first.incident),
                        "data": ["by": "Russian armed forces", "responses": ["warning-shots", "tear-gas"], "detained": 2]], &store, position: 2)
        _ = try record(["type": "outcome-updated", "incident": .string(first.incident),
                        "data": ["status": "dispersed", "verification": "verified", "corrections": ["participants": ["low": 100, "high": 200]]]], &store, position: 3)
        let city = try #require(store.cities["kupiansk"])
        #expect(city.incidents == 1)
        #expect(city.participantsLow == 100 && city.participantsHigh == 200)
        #expect(city.responses[.tearGas] == 1 && city.detained == 2)
        #expect(city.outcomes[.dispersed] == 1 && city.outcomes[.unknown] == 0)
        #expect(city.openIncidents == 0)
        #expect(city.verification[.verified] == 1)
        #expect(city.lastPosition == 3)
        let incident = try #require(store.incidents[first.incident])
        #expect(incident.version == 3)
        #expect(incident.report.participants == PeopleRange(low: 150, high: 150))
        #expect(incident.current.participants == PeopleRange(low: 100, high: 200))
        // Stored forms read back to the same state.
        #expect(try CityState(json: city.json) == city)
        #expect(try IncidentState(json: incident.json) == incident)
    }

    @Test("rules: unknown incident, existing incident, expected version, unknown city with suggestions")
    func rules() throws {
        var store = InMemoryProjections()
        let first = try record(with(report, ["incident"], "k1"), &store, position: 1)
        func code(_ json: JSONValue) -> IncidentError.Code? {
            do {
                _ = try record(json, &store, position: 99)
                return nil
            } catch {
                return (error as? IncidentError)?.code
            }
        }
        #expect(code(["type": "response-observed", "incident": "nope", "data": ["by": "x", "responses": ["none"]]]) == .unknownIncident)
        #expect(code(with(report, ["incident"], .string(first.incident))) == .incidentExists)
        #expect(code(["type": "outcome-updated", "incident": "k1", "expectedVersion": 5, "data": ["status": "ongoing"]]) == .wrongExpectedVersion)
        #expect(code(with(report, ["data", "city"], "Melitopl")) == .unknownCity)
        do {
            _ = try admission.resolveCity("Melitopl", allowNewCity: false, store: &store)
        } catch let error as IncidentError {
            #expect(error.details["suggestions"] == ["Melitopol"])
        }
        let added = try record(with(with(report, ["data", "city"], "Nova Kakhovka"), ["incident"], "nk1"), &store, position: 2, allowNewCity: true)
        #expect(added.cityId == "nova-kakhovka")
        // Once in the log, the new city is known without allowNewCity.
        let again = try record(with(with(report, ["data", "city"], "nova kakhovka"), ["incident"], "nk2"), &store, position: 3)
        #expect(again.cityId == "nova-kakhovka")
        // A report that names the cityId the daemon gives its city is stored as without it, by anyone.
        let agreeing = try record(with(with(with(report, ["data", "city"], "Nova-Kakhovka"), ["data", "cityId"], "nova-kakhovka"), ["incident"], "nk4"), &store, position: 4)
        #expect(agreeing.cityId == "nova-kakhovka")
        // One that names another is a restore's (restoresCities, the admin role's): permission_denied naming the
        // field and the city the daemon resolves; with it, it is stored under it, whatever the gazetteer makes of its city.
        let melitopol = with(with(with(report, ["data", "city"], "Melitopol"), ["data", "cityId"], "nova-kakhovka"), ["incident"], "nk3")
        do {
            _ = try record(melitopol, &store, position: 5)
            Issue.record("a cityId other than the daemon's resolution was taken without restoresCities")
        } catch let error as IncidentError {
            #expect(error.code == .permissionDenied && error.details["field"] == "data.cityId" && error.details["resolvesTo"] == "melitopol", "\(error)")
        }
        let named = try record(melitopol, &store, position: 5, restoresCities: true)
        #expect(named.cityId == "nova-kakhovka")
        #expect(code(with(report, ["data", "cityId"], "atlantis")) == .unknownCity)
        do {
            _ = try record(with(with(report, ["data", "cityId"], "atlantis"), ["incident"], "a1"), &store, position: 6, allowNewCity: true)
            Issue.record("a new city other than the daemon's resolution was made without restoresCities")
        } catch let error as IncidentError {
            #expect(error.code == .permissionDenied && error.details["field"] == "data.cityId", "\(error)")
        }
        let made = try record(with(with(report, ["data", "cityId"], "atlantis"), ["incident"], "a1"), &store, position: 6, allowNewCity: true, restoresCities: true)
        #expect(made.cityId == "atlantis")
        do {
            _ = try record(with(report, ["data", "cityId"], "new--city"), &store, position: 7, allowNewCity: true, restoresCities: true)
            Issue.record("a new city's id of another form than the daemon makes was taken")
        } catch {
            #expect(field(of: error) == "data.cityId", "\(error)")
        }
    }

    @Test("folding the same events twice gives byte-identical documents")
    func deterministic() throws {
        func build() throws -> [UInt8] {
            var store = InMemoryProjections()
            _ = try record(with(report, ["incident"], "a"), &store, position: 1)
            _ = try record(with(with(report, ["incident"], "b"), ["data", "city"], "Мелітополь"), &store, position: 2)
            return store.citiesDocument.canonicalBytes()
        }
        #expect(try build() == build())
    }
}
