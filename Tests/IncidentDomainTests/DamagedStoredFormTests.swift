import Gazetteer
import IncidentDomain
import StrictJSON
import Testing

/// The stored projections are read back from LMDB, where a flipped byte or a hand edit may have changed them: a
/// damaged one is refused with an error, and what is accepted renders as the daemon sends it, without trapping.
/// (Found by the stored-form fuzz target, `make fuzz-stored`.)
@Suite struct DamagedStoredFormTests {
    /// An incident's stored form, written field by field as `IncidentState.encode(into:)` does, with the positions
    /// given: the first position and the distance from it to the last.
    private static func storedIncident(firstPosition: Int64, span: Int64) -> [UInt8] {
        var out: [UInt8] = [IncidentState.storedFormat, 0, 0, 0, 0, 0, 0]
        for value in [1, firstPosition, span, 0, 0, 0, 0, 0, 0] { StoredInteger.append(value, to: &out) }
        out.append(0)
        for text in ["kupiansk", "Kupiansk", "2022-03-01"] {
            StoredInteger.append(Int64(text.utf8.count), to: &out)
            out.append(contentsOf: text.utf8)
        }
        return out
    }

    @Test("a stored incident whose positions no event can have is refused; one with valid positions renders")
    func incidentPositions() throws {
        let valid = try IncidentState(encoded: Self.storedIncident(firstPosition: 5, span: 3), incident: "k1")
        #expect(valid.firstPosition == 5 && valid.lastPosition == 8)
        #expect(valid.json["lastPosition"] == .int(8))
        let damaged: [(Int64, Int64)] = [(0, 0), (-1, 0), (Int64.min, 0), (5, -1), (5, Int64.max - 4), (Int64.max, 1)]
        for (first, span) in damaged {
            let error = #expect(throws: IncidentError.self, "first \(first), span \(span)") {
                try IncidentState(encoded: Self.storedIncident(firstPosition: first, span: span), incident: "k1")
            }
            #expect(error?.code == .logDamaged && error?.message.contains("--rebuild-projections") == true, "\(String(describing: error))")
        }
        #expect(try IncidentState(encoded: Self.storedIncident(firstPosition: Int64.max - 1, span: 1), incident: "k1").lastPosition == UInt64(Int64.max))
    }

    @Test("the stored form holds neither the incident id (its key) nor the report's city id where it is the incident's, and reads back whole under its id; one whose report city id is another keeps it; a flag of the incident's city id without one of a report's city id is damage")
    func storedFormLeavesOutWhatItsKeyHolds() throws {
        let projector = Projector(gazetteer: .embedded)
        // A report's city id becomes the incident's; one that differs (no fold makes it) is kept all the same.
        for (reportCityId, differing) in [("kupiansk", nil), (nil, nil), ("kupiansk", "kupiansk-district")] as [(String?, String?)] {
            var data: [String: JSONValue] = ["city": "Kupiansk", "kind": "demonstration"]
            if let reportCityId { data["cityId"] = .string(reportCityId) }
            var store = InMemoryProjections()
            try projector.apply(try Self.event(1, version: 1, type: "incident-reported", data: .object(data)), to: &store)
            var state = try #require(store.incidents["k1"])
            #expect(state.report.cityId == reportCityId && state.cityId == "kupiansk")
            if let differing { (state.report.cityId, state.current.cityId) = (differing, differing) }
            let stored = state.encoded()
            func occurrences(_ text: String) -> Int {
                let needle = Array(text.utf8)
                return (0...(stored.count - needle.count)).filter { stored[$0..<($0 + needle.count)].elementsEqual(needle) }.count
            }
            #expect(occurrences("k1") == 0, "\(stored)")
            // The incident's city id once; the report's again only where it is another.
            #expect(occurrences("kupiansk") == (differing == nil ? 1 : 2), "\(stored)")
            #expect(try IncidentState(encoded: stored, incident: "k1") == state)
            #expect(try IncidentState(encoded: stored, incident: "k2").incident == "k2")
        }
        // Flags are the seventh byte: 16 (the report's city id is the incident's) without 8 (the report has one).
        var stored = Self.storedIncident(firstPosition: 5, span: 3)
        stored[6] = 16
        let error = #expect(throws: IncidentError.self) { try IncidentState(encoded: stored, incident: "k1") }
        #expect(error?.code == .logDamaged, "\(String(describing: error))")
        stored[6] = 0
        #expect(try IncidentState(encoded: stored, incident: "k1").report.cityId == nil)
    }

    @Test("a stored city whose lastPosition is negative is refused, where reading it trapped")
    func cityNegativeLastPosition() throws {
        var city = CityState(cityId: "kupiansk", name: "Kupiansk", region: "UA-63", population: 26262)
        city.lastPosition = 4
        var json = city.json.objectValue ?? [:]
        #expect(try CityState(json: .object(json)) == city)
        json["lastPosition"] = -1
        #expect(throws: IncidentError.self) { try CityState(json: .object(json)) }
    }

    @Test("a count below zero in a stored city (incidents, participants, responses, casualties, outcomes, verification, open incidents, population) is refused as damage naming the member; zero and above read back")
    func cityNegativeCounts() throws {
        var city = CityState(cityId: "kupiansk", name: "Kupiansk", region: "UA-63", population: 26262)
        city.incidents = 1
        city.killed = 2
        let json = city.json
        #expect(try CityState(stored: json.canonicalBytes(), id: "kupiansk") == city)
        let paths: [[String]] = [
            ["incidents", "total"], ["incidents", "byKind", "strike"], ["participants", "low"], ["participants", "high"],
            ["participants", "counted"], ["responses", "tear-gas"], ["casualties", "killed"], ["casualties", "injured"],
            ["casualties", "detained"], ["outcomes", "unknown"], ["verification", "verified"], ["openIncidents"], ["population"],
        ]
        for path in paths {
            let damaged = Self.setting(path, to: -1, in: json)
            let error = #expect(throws: IncidentError.self, "\(path)") { try CityState(stored: damaged.canonicalBytes(), id: "kupiansk") }
            #expect(error?.code == .logDamaged, "\(path): \(String(describing: error))")
            #expect(
                error?.message.hasPrefix("the stored city projection is damaged: kupiansk's does not read back (city.\(path.joined(separator: ".")): is -1, a count below zero)") == true,
                "\(String(describing: error))")
            #expect(try CityState(stored: Self.setting(path, to: 0, in: json).canonicalBytes(), id: "kupiansk").cityId == "kupiansk")
        }
    }

    @Test("a count below zero in a stored incident (its version, events, casualties, responses, participants as reported or corrected) is refused as damage")
    func incidentNegativeCounts() throws {
        let projector = Projector(gazetteer: .embedded)
        let report = try Self.event(
            1, version: 1, type: "incident-reported",
            data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration", "participants": ["low": 10, "high": 20]])
        var store = InMemoryProjections()
        try projector.apply(report, to: &store)
        let sound = try #require(store.incidents["k1"])
        #expect(try IncidentState(encoded: sound.encoded(), incident: "k1") == IncidentState(encoded: sound.encoded(), incident: "k1"))
        let damages: [(String, (inout IncidentState) -> Void)] = [
            ("version", { $0.version = -1 }), ("responseEvents", { $0.responseEvents = -1 }),
            ("outcomeEvents", { $0.outcomeEvents = -1 }), ("killed", { $0.killed = -1 }), ("injured", { $0.injured = -1 }),
            ("detained", { $0.detained = .min }), ("responses", { $0.responses[.tearGas] = -2 }),
            ("reported participants", { $0.report.participants = PeopleRange(low: -1, high: 20) }),
            ("corrected participants", { $0.current.participants = PeopleRange(low: 10, high: -20) }),
        ]
        for (what, damage) in damages {
            var state = sound
            damage(&state)
            let error = #expect(throws: IncidentError.self, "\(what)") { try IncidentState(encoded: state.encoded(), incident: "k1") }
            #expect(error?.code == .logDamaged && error?.message.hasPrefix("the stored incident projection is damaged") == true, "\(what): \(String(describing: error))")
        }
    }

    private static func setting(_ path: [String], to value: JSONValue, in document: JSONValue) -> JSONValue {
        guard let first = path.first, case .object(var members) = document else { return value }
        members[first] = setting(Array(path.dropFirst()), to: value, in: members[first] ?? .null)
        return .object(members)
    }

    private static func event(_ position: Int64, version: Int64, type: String, data: JSONValue) throws -> RecordedEvent {
        try RecordedEvent(json: [
            "position": .int(position), "eventId": .string("00000000-0000-4000-8000-00000000000\(position)"),
            "type": .string(type), "incident": "k1", "version": .int(version), "occurredAt": "2022-03-01",
            "precision": "day", "recordedAt": "2026-11-25T12:00:00.000000Z", "recordedBy": ["uid": 0, "user": "root"],
            "data": data, "schema": 1, "prevHash": .string(String(repeating: "0", count: 64)),
        ])
    }

    @Test("folding an event into stored projections whose counts are damaged to overflow throws, where it trapped")
    func countsThatOverflow() throws {
        let projector = Projector(gazetteer: .embedded)
        let report = try Self.event(
            1, version: 1, type: "incident-reported", data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration"])
        let response = try Self.event(2, version: 2, type: "response-observed", data: ["by": "police", "responses": ["tear-gas"], "killed": 1])
        let outcome = try Self.event(2, version: 2, type: "outcome-updated", data: ["status": "dispersed"])
        var sound = InMemoryProjections()
        try projector.apply(report, to: &sound)
        try projector.apply(response, to: &sound)
        #expect(sound.incidents["k1"]?.killed == 1 && sound.cities["kupiansk"]?.killed == 1)

        let damagedIncidents: [(String, (inout IncidentState) -> Void)] = [
            ("killed", { $0.killed = .max }), ("responseEvents", { $0.responseEvents = .max }),
            ("outcomeEvents", { $0.outcomeEvents = .max }), ("killed below", { $0.killed = .min }),
            ("participants", { $0.current.participants = PeopleRange(low: .min, high: .max) }),
            ("responses", { $0.responses[.tearGas] = .max }),
        ]
        for (what, damage) in damagedIncidents {
            var store = InMemoryProjections()
            try projector.apply(report, to: &store)
            if var state = store.incidents["k1"] {
                damage(&state)
                // A count below zero is refused as it is read back (incidentNegativeCounts); folded all the same, it
                // throws too.
                store.incidents["k1"] = (try? IncidentState(encoded: state.encoded(), incident: "k1")) ?? state
            }
            let event = what == "outcomeEvents" ? outcome : response
            let error = #expect(throws: IncidentError.self, "\(what)") { try projector.apply(event, to: &store) }
            #expect(error?.code == .logDamaged, "\(what): \(String(describing: error))")
        }

        var store = InMemoryProjections()
        try projector.apply(report, to: &store)
        store.cities["kupiansk"]?.killed = .max
        let cityError = #expect(throws: IncidentError.self, "the city's killed") { try projector.apply(response, to: &store) }
        #expect(cityError?.code == .logDamaged)
        #expect(cityError?.message.hasPrefix("the stored city projection is damaged: kupiansk's counts overflow") == true, "\(String(describing: cityError))")
    }

    @Test("folding an event into a stored city whose counts were read back lower than its incidents gave it throws log_damaged naming the city, where the city was stored with counts below zero (casualties, responses, outcomes, verification, kinds)")
    func countsFoldedBelowZero() throws {
        let projector = Projector(gazetteer: .embedded)
        let report = try Self.event(
            1, version: 1, type: "incident-reported", data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration"])
        let response = try Self.event(2, version: 2, type: "response-observed", data: ["by": "police", "responses": ["tear-gas"], "killed": 1])
        let outcome = try Self.event(3, version: 3, type: "outcome-updated", data: ["status": "retracted", "verification": "debunked"])
        let damages: [(String, (inout CityState) -> Void)] = [
            ("killed", { $0.killed = 0 }), ("incidents", { $0.incidents = 0 }), ("tear gas", { $0.responses[.tearGas] = 0 }),
            ("kind", { $0.incidentsByKind[.demonstration] = 0 }), ("outcome", { $0.outcomes[.unknown] = 0 }),
            ("verification", { $0.verification[.unverified] = 0 }),
        ]
        for (what, damage) in damages {
            var store = InMemoryProjections()
            try projector.apply(report, to: &store)
            try projector.apply(response, to: &store)
            var sound = store
            #expect(throws: Never.self, "\(what): the premise, a sound city takes the outcome") { try projector.apply(outcome, to: &sound) }
            if var city = store.cities["kupiansk"] {
                damage(&city)
                store.cities["kupiansk"] = city
            }
            let error = #expect(throws: IncidentError.self, "\(what)") { try projector.apply(outcome, to: &store) }
            #expect(
                error?.code == .logDamaged && error?.message.contains("kupiansk's counts fall below zero: it was read back with less than its incidents gave it") == true,
                "\(what): \(String(describing: error))")
        }
    }

    @Test("folding an event into a stored incident damaged to a last position at or past the event's throws log_damaged, where it stored an incident that ends before it starts and does not read back")
    func positionsPastTheEvent() throws {
        let projector = Projector(gazetteer: .embedded)
        let report = try Self.event(
            1, version: 1, type: "incident-reported", data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration"])
        let response = try Self.event(5, version: 2, type: "response-observed", data: ["by": "police", "responses": ["tear-gas"]])
        let outcome = try Self.event(5, version: 2, type: "outcome-updated", data: ["status": "dispersed"])
        for event in [response, outcome] {
            // Read back as reported at 9 (or at 1 and last changed at 5): the event at 5 does not come after it.
            for (first, last): (UInt64, UInt64) in [(9, 9), (1, 5), (1, 9)] {
                var store = InMemoryProjections()
                try projector.apply(report, to: &store)
                if var state = store.incidents["k1"] {
                    state.firstPosition = first
                    state.lastPosition = last
                    store.incidents["k1"] = try IncidentState(encoded: state.encoded(), incident: "k1")
                }
                let error = #expect(throws: IncidentError.self, "\(event.type) after \(first)...\(last)") { try projector.apply(event, to: &store) }
                #expect(
                    error?.code == .logDamaged && error?.message.contains("k1's names position \(last), not before event 5") == true,
                    "\(String(describing: error))")
                #expect(store.incidents["k1"].map { (try? IncidentState(encoded: $0.encoded(), incident: "k1")) == $0 } == true)
            }
            var store = InMemoryProjections()
            try projector.apply(report, to: &store)
            try projector.apply(event, to: &store)
            #expect(store.incidents["k1"].flatMap { try? IncidentState(encoded: $0.encoded(), incident: "k1") }?.lastPosition == 5)
        }
    }
}
