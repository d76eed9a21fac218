import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON

// The rebuild's fold: the same arithmetic as `Projector.apply`, specialised for folding the whole log at once.
// Stored events are read straight from their canonical bytes, picking out only what the projections need
// (anything unexpected in an event sends that event through `RecordedEvent(json:)` instead); incidents live in
// compact records in one array, cities in fixed-size counters; the result is written in key order. The bench
// (`incidentbench`) and `RebuildTests` compare what it writes with what the daemon's incremental fold wrote.

/// Counts per case of an enumeration with at most 16 cases, without a dictionary.
struct CaseCounts: Equatable {
    private var storage: (Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    subscript(_ index: Int) -> Int64 {
        get { withUnsafeBytes(of: storage) { $0.load(fromByteOffset: index * 8, as: Int64.self) } }
        set { withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: newValue, toByteOffset: index * 8, as: Int64.self) } }
    }

    static func == (a: CaseCounts, b: CaseCounts) -> Bool {
        (0..<16).allSatisfy { a[$0] == b[$0] }
    }
}

/// One incident's projection while the log is folded.
struct FoldIncident {
    var incident: String
    var cityId: String
    var reportCity: String
    var reportCityId: String?
    var occurredAt: String
    var reportedAt: Int64
    var version: Int64 = 1
    var firstPosition: UInt64
    var lastPosition: UInt64
    var responseEvents: Int64 = 0
    var outcomeEvents: Int64 = 0
    var killed: Int64 = 0
    var injured: Int64 = 0
    var detained: Int64 = 0
    var reportParticipants: PeopleRange?
    var currentParticipants: PeopleRange?
    var responses = CaseCounts()
    var reportKind: IncidentKind
    var currentKind: IncidentKind
    var status: OutcomeStatus = .unknown
    var verification: Verification
    var verificationFromOutcome = false
    var precision: Precision
    var city: Int32

    init(_ state: IncidentState, city: Int32) {
        incident = state.incident
        cityId = state.cityId
        reportCity = state.report.city
        reportCityId = state.report.cityId
        occurredAt = state.occurredAt
        reportedAt = state.reportedAt.microseconds
        version = state.version
        firstPosition = state.firstPosition
        lastPosition = state.lastPosition
        responseEvents = state.responseEvents
        outcomeEvents = state.outcomeEvents
        killed = state.killed
        injured = state.injured
        detained = state.detained
        reportParticipants = state.report.participants
        currentParticipants = state.current.participants
        for (index, kind) in ResponseKind.allCases.enumerated() { responses[index] = state.responses[kind] ?? 0 }
        reportKind = state.report.kind
        currentKind = state.current.kind
        status = state.status
        verification = state.verification
        verificationFromOutcome = state.verificationFromOutcome
        precision = state.precision
        self.city = city
    }

    init(
        incident: String, cityId: String, reportCity: String, reportCityId: String?, occurredAt: String, reportedAt: Int64,
        position: UInt64, participants: PeopleRange?, kind: IncidentKind, verification: Verification, precision: Precision,
        city: Int32
    ) {
        self.incident = incident
        self.cityId = cityId
        self.reportCity = reportCity
        self.reportCityId = reportCityId
        self.occurredAt = occurredAt
        self.reportedAt = reportedAt
        firstPosition = position
        lastPosition = position
        reportParticipants = participants
        currentParticipants = participants
        reportKind = kind
        currentKind = kind
        self.verification = verification
        self.precision = precision
        self.city = city
    }

    /// The projection as the daemon keeps it (with the reduced report the stored form holds).
    var state: IncidentState {
        var responses: [ResponseKind: Int64] = [:]
        for (index, kind) in ResponseKind.allCases.enumerated() where self.responses[index] != 0 {
            responses[kind] = self.responses[index]
        }
        var state = IncidentState(
            incident: incident, cityId: cityId, occurredAt: occurredAt, precision: precision,
            reportedAt: Timestamp(microseconds: reportedAt),
            report: ReportData(
                city: reportCity, cityId: reportCityId, kind: reportKind, location: nil, coordinates: nil, description: nil,
                participants: reportParticipants, targets: nil, tags: []),
            current: ReportData(
                city: reportCity, cityId: reportCityId, kind: currentKind, location: nil, coordinates: nil, description: nil,
                participants: currentParticipants, targets: nil, tags: []),
            verification: verification, position: firstPosition)
        state.status = status
        state.verificationFromOutcome = verificationFromOutcome
        state.version = version
        state.lastPosition = lastPosition
        state.responseEvents = responseEvents
        state.outcomeEvents = outcomeEvents
        state.responses = responses
        state.killed = killed
        state.injured = injured
        state.detained = detained
        return state
    }
}

/// One city's projection while the log is folded: `CityState` with counters instead of dictionaries.
struct FoldCity {
    var base: CityState
    var aliases: [String] = []
    var incidents: Int64 = 0
    var byKind = CaseCounts()
    var participantsLow: Int64 = 0
    var participantsHigh: Int64 = 0
    var responses = CaseCounts()
    var killed: Int64 = 0
    var injured: Int64 = 0
    var detained: Int64 = 0
    var outcomes = CaseCounts()
    var verification = CaseCounts()
    var openIncidents: Int64 = 0
    var firstIncidentAt: String?
    var firstStart: Int64 = 0
    var lastIncidentAt: String?
    var lastStart: Int64 = 0
    var lastPosition: UInt64 = 0

    init(_ city: CityState) {
        base = city
        aliases = city.aliasesSeen.sorted()
        incidents = city.incidents
        for (index, kind) in IncidentKind.allCases.enumerated() { byKind[index] = city.incidentsByKind[kind] ?? 0 }
        participantsLow = city.participantsLow
        participantsHigh = city.participantsHigh
        for (index, kind) in ResponseKind.allCases.enumerated() { responses[index] = city.responses[kind] ?? 0 }
        killed = city.killed
        injured = city.injured
        detained = city.detained
        for (index, status) in OutcomeStatus.allCases.enumerated() { outcomes[index] = city.outcomes[status] ?? 0 }
        for (index, v) in Verification.allCases.enumerated() { verification[index] = city.verification[v] ?? 0 }
        openIncidents = city.openIncidents
        firstIncidentAt = city.firstIncidentAt
        firstStart = city.firstIncidentAt.flatMap(ParsedDate.parse)?.start.microseconds ?? 0
        lastIncidentAt = city.lastIncidentAt
        lastStart = city.lastIncidentAt.flatMap(ParsedDate.parse)?.start.microseconds ?? 0
        lastPosition = city.lastPosition
    }

    /// `CityState.add(_:sign:)`.
    mutating func add(_ incident: FoldIncident, sign: Int64) {
        incidents += sign
        byKind[Int(IncidentKind.index(incident.currentKind))] += sign
        participantsLow += sign * (incident.currentParticipants?.low ?? 0)
        participantsHigh += sign * (incident.currentParticipants?.high ?? 0)
        for index in 0..<ResponseKind.storedCases.count where incident.responses[index] != 0 {
            responses[index] += sign * incident.responses[index]
        }
        killed += sign * incident.killed
        injured += sign * incident.injured
        detained += sign * incident.detained
        outcomes[Int(OutcomeStatus.index(incident.status))] += sign
        verification[Int(Verification.index(incident.verification))] += sign
        if incident.status.isOpen { openIncidents += sign }
    }

    var state: CityState {
        var city = base
        city.aliasesSeen = Set(aliases)
        city.incidents = incidents
        city.incidentsByKind = [:]
        for (index, kind) in IncidentKind.allCases.enumerated() where byKind[index] != 0 { city.incidentsByKind[kind] = byKind[index] }
        city.participantsLow = participantsLow
        city.participantsHigh = participantsHigh
        city.responses = [:]
        for (index, kind) in ResponseKind.allCases.enumerated() where responses[index] != 0 { city.responses[kind] = responses[index] }
        city.killed = killed
        city.injured = injured
        city.detained = detained
        city.outcomes = [:]
        for (index, status) in OutcomeStatus.allCases.enumerated() where outcomes[index] != 0 { city.outcomes[status] = outcomes[index] }
        city.verification = [:]
        for (index, v) in Verification.allCases.enumerated() where verification[index] != 0 { city.verification[v] = verification[index] }
        city.openIncidents = openIncidents
        city.firstIncidentAt = firstIncidentAt
        city.lastIncidentAt = lastIncidentAt
        city.lastPosition = lastPosition
        return city
    }
}

/// The projections of the part of the log folded so far.
struct ProjectionFold {
    let projector: Projector
    /// Where an incident's record is in `incidents`.
    var index: [String: Int32] = [:]
    var incidents: [FoldIncident] = []
    var cityIndex: [String: Int32] = [:]
    var cities: [FoldCity] = []
    /// Reads an incident folded by an earlier chunk (already written), or nil.
    var stored: (String) throws -> IncidentState? = { _ in nil }

    init(projector: Projector) {
        self.projector = projector
    }

    private mutating func city(_ id: String, reportedName: String) -> Int32 {
        if let i = cityIndex[id] { return i }
        let i = Int32(cities.count)
        cities.append(FoldCity(projector.newCity(id: id, reportedName: reportedName)))
        cityIndex[id] = i
        return i
    }

    private mutating func incident(_ id: String) throws -> Int32? {
        if let i = index[id] { return i }
        guard let state = try stored(id) else { return nil }
        let i = Int32(incidents.count)
        incidents.append(FoldIncident(state, city: city(state.cityId, reportedName: state.report.city)))
        index[id] = i
        return i
    }

    mutating func report(
        incident id: String, position: UInt64, occurredAt: String, precision: Precision, recordedAt: Int64,
        verificationMask: UInt8, city name: String, cityId reportCityId: String?, kind: IncidentKind, participants: PeopleRange?
    ) {
        let cityId = reportCityId ?? Gazetteer.slug(name) ?? "unknown"
        let c = city(cityId, reportedName: name)
        let state = FoldIncident(
            incident: id, cityId: cityId, reportCity: name, reportCityId: reportCityId, occurredAt: occurredAt,
            reportedAt: recordedAt, position: position, participants: participants, kind: kind,
            verification: IncidentState.verification(seenMask: verificationMask), precision: precision, city: c)
        let i: Int32
        if let existing = index[id] {
            i = existing
            incidents[Int(i)] = state
        } else {
            i = Int32(incidents.count)
            incidents.append(state)
            index[id] = i
        }
        cities[Int(c)].fold(report: name, state: incidents[Int(i)], occurredAt: occurredAt, position: position)
    }

    mutating func response(incident id: String, position: UInt64, version: Int64, kinds: [ResponseKind], killed: Int64?, injured: Int64?, detained: Int64?) throws {
        guard let i = try incident(id).map(Int.init) else { return }
        let c = Int(incidents[i].city)
        cities[c].add(incidents[i], sign: -1)
        incidents[i].responseEvents += 1
        for kind in kinds { incidents[i].responses[Int(ResponseKind.index(kind))] += 1 }
        incidents[i].killed += killed ?? 0
        incidents[i].injured += injured ?? 0
        incidents[i].detained += detained ?? 0
        finish(i, c, version: version, position: position)
    }

    mutating func outcome(
        incident id: String, position: UInt64, version: Int64, status: OutcomeStatus, verification: Verification?,
        corrections: [String: JSONValue]?
    ) throws {
        guard let i = try incident(id).map(Int.init) else { return }
        let c = Int(incidents[i].city)
        cities[c].add(incidents[i], sign: -1)
        incidents[i].outcomeEvents += 1
        incidents[i].status = status
        if let verification {
            incidents[i].verification = verification
            incidents[i].verificationFromOutcome = true
        }
        if let corrections {
            // As the projector corrects `current`: ReportData.applying on the report as the fold knows it.
            let current = ReportData(
                city: incidents[i].reportCity, cityId: incidents[i].reportCityId, kind: incidents[i].currentKind, location: nil,
                coordinates: nil, description: nil, participants: incidents[i].currentParticipants, targets: nil, tags: []
            ).applying(corrections)
            incidents[i].currentKind = current.kind
            incidents[i].currentParticipants = current.participants
        }
        finish(i, c, version: version, position: position)
    }

    private mutating func finish(_ i: Int, _ c: Int, version: Int64, position: UInt64) {
        incidents[i].version = version
        incidents[i].lastPosition = position
        cities[c].add(incidents[i], sign: 1)
        cities[c].lastPosition = position
    }

    /// Folds one event as decoded by `RecordedEvent(json:)`.
    mutating func apply(_ event: RecordedEvent) throws {
        switch event.data {
        case .reported(let report):
            var mask: UInt8 = 0
            for source in event.sources { mask |= StoredEventReader.mask(source.verification) }
            self.report(
                incident: event.incident, position: event.position, occurredAt: event.occurredAt, precision: event.precision,
                recordedAt: event.recordedAt.microseconds, verificationMask: mask, city: report.city, cityId: report.cityId,
                kind: report.kind, participants: report.participants)
        case .responded(let response):
            try self.response(
                incident: event.incident, position: event.position, version: event.version, kinds: response.responses,
                killed: response.killed, injured: response.injured, detained: response.detained)
        case .outcome(let outcome):
            try self.outcome(
                incident: event.incident, position: event.position, version: event.version, status: outcome.status,
                verification: outcome.verification, corrections: outcome.corrections)
        }
    }
}

extension FoldCity {
    /// The city side of a report (`Projector.apply`).
    mutating func fold(report name: String, state: FoldIncident, occurredAt: String, position: UInt64) {
        if !aliases.contains(name) { aliases.append(name) }
        add(state, sign: 1)
        if let parsed = ParsedDate.parse(occurredAt) {
            let start = parsed.start.microseconds
            if firstIncidentAt == nil || start < firstStart {
                firstIncidentAt = occurredAt
                firstStart = start
            }
            if lastIncidentAt == nil || start > lastStart {
                lastIncidentAt = occurredAt
                lastStart = start
            }
        }
        lastPosition = position
    }
}

/// Reads the fields the projections need straight from a stored event's canonical bytes.
enum StoredEventReader {
    static func mask(_ v: Verification) -> UInt8 {
        switch v {
        case .debunked: return 1
        case .disputed: return 2
        case .verified: return 4
        case .unverified: return 0
        }
    }

    @inline(__always) static func equals(_ key: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard key.count == name.utf8CodeUnitCount else { return false }
        let start = name.utf8Start
        for i in 0..<key.count where key[i] != start[i] { return false }
        return true
    }

    /// A string without escapes, as a `String` (stored events were validated when they were appended); nil
    /// when it has escapes, and the event is then read the slow way.
    @inline(__always) static func text(_ s: inout JSONScanner) -> String? {
        guard let raw = s.rawString() else { return nil }
        return String(decoding: raw, as: UTF8.self)
    }

    /// A string that is one of `E`'s raw values.
    @inline(__always) static func enumeration<E: RawRepresentable & CaseIterable>(_ s: inout JSONScanner, _: E.Type) -> E?
    where E.RawValue == String {
        guard let raw = s.rawString() else { return nil }
        return E(rawValue: String(decoding: raw, as: UTF8.self))
    }

    /// Folds the event in `bytes` (canonical JSON) into `fold`; false when the event is not in the expected
    /// form, and nothing was folded.
    /// The type and version of a canonical event, read from its end: `…,"type":"T","version":N}`.
    static func tail(_ bytes: UnsafeRawBufferPointer) -> (type: EventType, version: Int64)? {
        var i = bytes.count - 1
        guard i > 40, bytes[i] == UInt8(ascii: "}") else { return nil }
        i -= 1
        var version: Int64 = 0
        var scale: Int64 = 1
        while i > 0, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") {
            guard scale <= 100_000_000_000_000_000 else { return nil }
            version += Int64(bytes[i] - UInt8(ascii: "0")) * scale
            scale *= 10
            i -= 1
        }
        guard scale > 1 else { return nil }
        let end = i + 1  // where the digits start
        for (type, suffix) in tails {
            let n = suffix.count
            guard end >= n else { continue }
            var matches = true
            for k in 0..<n where bytes[end - n + k] != suffix[k] {
                matches = false
                break
            }
            if matches { return (type, version) }
        }
        return nil
    }

    static let tails: [(EventType, [UInt8])] = EventType.allCases.map {
        ($0, Array(",\"type\":\"\($0.rawValue)\",\"version\":".utf8))
    }

    /// One of `E`'s raw values, compared as bytes.
    @inline(__always) static func match<E>(_ raw: UnsafeRawBufferPointer, _ cases: [(E, [UInt8])]) -> E? {
        for (value, bytes) in cases where bytes.count == raw.count {
            var equal = true
            for k in 0..<raw.count where raw[k] != bytes[k] {
                equal = false
                break
            }
            if equal { return value }
        }
        return nil
    }

    static func cases<E: RawRepresentable & CaseIterable>(_: E.Type) -> [(E, [UInt8])] where E.RawValue == String {
        E.allCases.map { ($0, Array($0.rawValue.utf8)) }
    }

    static let precisions = cases(Precision.self)
    static let kinds = cases(IncidentKind.self)
    static let responseKinds = cases(ResponseKind.self)
    static let statuses = cases(OutcomeStatus.self)
    static let verifications = cases(Verification.self)

    /// Folds the event in `bytes` (canonical JSON) into `fold`; false when the event is not in the expected
    /// form, and nothing was folded.
    static func fold(_ bytes: UnsafeRawBufferPointer, into fold: inout ProjectionFold, buffer: inout [UInt8]) throws -> Bool {
        guard let (type, version) = tail(bytes) else { return false }
        var s = JSONScanner(bytes)
        // Canonical order: data first, then the envelope.
        guard s.consume(UInt8(ascii: "{")), let dataKey = s.key(), equals(dataKey, "data") else { return false }
        var report: (city: String, cityId: String?, kind: IncidentKind, participants: PeopleRange?)?
        var response: (kinds: [ResponseKind], killed: Int64?, injured: Int64?, detained: Int64?)?
        var outcome: (status: OutcomeStatus, verification: Verification?, corrections: [String: JSONValue]?)?
        switch type {
        case .incidentReported: report = reportFields(&s, &buffer); guard report != nil else { return false }
        case .responseObserved: response = responseFields(&s, &buffer); guard response != nil else { return false }
        case .outcomeUpdated: outcome = outcomeFields(&s, &buffer); guard outcome != nil else { return false }
        }
        let isReport = type == .incidentReported
        // The envelope, member by member in canonical order.
        guard s.literal(",\"eventId\":"), s.rawString() != nil, s.literal(",\"incident\":"),
            let incident = StoredEventReader.text(&s), s.literal(",\"occurredAt\":"), let occurredAt = s.rawString(),
            s.literal(",\"position\":"), let position = s.integer(), position > 0, s.literal(",\"precision\":"),
            let rawPrecision = s.rawString(), let precision = match(rawPrecision, precisions), s.literal(",\"prevHash\":"),
            s.rawString() != nil, s.literal(",\"recordedAt\":"), let rawRecordedAt = s.rawString(),
            s.literal(",\"recordedBy\":"), s.skipValue() != nil, s.literal(",\"schema\":"), s.integer() != nil
        else { return false }
        var mask: UInt8 = 0
        if s.literal(",\"sources\":") {
            if isReport {
                guard let m = sourcesMask(&s, &buffer) else { return false }
                mask = m
            } else {
                guard s.skipValue() != nil else { return false }
            }
        }
        // The type and version were read from the end: check they are all that is left.
        guard s.literal(",\"type\":"), s.rawString() != nil, s.literal(",\"version\":"), s.integer() == version,
            s.literal("}"), s.index == bytes.count
        else { return false }
        switch type {
        case .incidentReported:
            guard let report, let recordedAt = ParsedDate.parse(utf8: rawRecordedAt) else { return false }
            fold.report(
                incident: incident, position: UInt64(position), occurredAt: String(decoding: occurredAt, as: UTF8.self),
                precision: precision, recordedAt: recordedAt.start.microseconds, verificationMask: mask, city: report.city,
                cityId: report.cityId, kind: report.kind, participants: report.participants)
        case .responseObserved:
            guard let response else { return false }
            try fold.response(
                incident: incident, position: UInt64(position), version: version, kinds: response.kinds,
                killed: response.killed, injured: response.injured, detained: response.detained)
        case .outcomeUpdated:
            guard let outcome else { return false }
            try fold.outcome(
                incident: incident, position: UInt64(position), version: version, status: outcome.status,
                verification: outcome.verification, corrections: outcome.corrections)
        }
        return true
    }

    static func sourcesMask(_ s: inout JSONScanner, _ buffer: inout [UInt8]) -> UInt8? {
        guard s.consume(UInt8(ascii: "[")) else { return nil }
        var mask: UInt8 = 0
        if s.consume(UInt8(ascii: "]")) { return 0 }
        repeat {
            guard s.consume(UInt8(ascii: "{")) else { return nil }
            var verification: Verification = .unverified
            repeat {
                guard let key = s.key() else { return nil }
                if equals(key, "verification") {
                    guard let raw = s.rawString(), let v = match(raw, verifications) else { return nil }
                    verification = v
                } else {
                    guard s.skipValue() != nil else { return nil }
                }
            } while s.consume(UInt8(ascii: ","))
            guard s.consume(UInt8(ascii: "}")) else { return nil }
            mask |= Self.mask(verification)
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "]")) else { return nil }
        return mask
    }

    static func reportFields(_ s: inout JSONScanner, _ buffer: inout [UInt8])
        -> (city: String, cityId: String?, kind: IncidentKind, participants: PeopleRange?)?
    {
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        var city: String?
        var cityId: String?
        var kind: IncidentKind?
        var participants: PeopleRange?
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "city") {
                guard let text = StoredEventReader.text(&s) else { return nil }
                city = text
            } else if equals(key, "cityId") {
                guard let text = StoredEventReader.text(&s) else { return nil }
                cityId = text
            } else if equals(key, "kind") {
                guard let raw = s.rawString(), let k = match(raw, kinds) else { return nil }
                kind = k
            } else if equals(key, "participants") {
                // Stored canonically: {"high":…,"low":…}.
                guard s.consume(UInt8(ascii: "{")), let k1 = s.key(), equals(k1, "high"), let high = s.integer(),
                    s.consume(UInt8(ascii: ",")), let k2 = s.key(), equals(k2, "low"), let low = s.integer(),
                    s.consume(UInt8(ascii: "}"))
                else { return nil }
                participants = PeopleRange(low: low, high: high)
            } else {
                guard s.skipValue() != nil else { return nil }
            }
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let city, let kind else { return nil }
        return (city, cityId, kind, participants)
    }

    static func responseFields(_ s: inout JSONScanner, _ buffer: inout [UInt8])
        -> (kinds: [ResponseKind], killed: Int64?, injured: Int64?, detained: Int64?)?
    {
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        var kinds: [ResponseKind]?
        var killed: Int64?
        var injured: Int64?
        var detained: Int64?
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "responses") {
                guard s.consume(UInt8(ascii: "[")) else { return nil }
                var list: [ResponseKind] = []
                if !s.consume(UInt8(ascii: "]")) {
                    repeat {
                        guard let raw = s.rawString(), let kind = match(raw, responseKinds) else { return nil }
                        list.append(kind)
                    } while s.consume(UInt8(ascii: ","))
                    guard s.consume(UInt8(ascii: "]")) else { return nil }
                }
                kinds = list
            } else if equals(key, "killed") {
                guard let n = s.integer() else { return nil }
                killed = n
            } else if equals(key, "injured") {
                guard let n = s.integer() else { return nil }
                injured = n
            } else if equals(key, "detained") {
                guard let n = s.integer() else { return nil }
                detained = n
            } else {
                guard s.skipValue() != nil else { return nil }
            }
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let kinds else { return nil }
        return (kinds, killed, injured, detained)
    }

    static func outcomeFields(_ s: inout JSONScanner, _ buffer: inout [UInt8])
        -> (status: OutcomeStatus, verification: Verification?, corrections: [String: JSONValue]?)?
    {
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        var status: OutcomeStatus?
        var verification: Verification?
        var corrections: [String: JSONValue]?
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "status") {
                guard let raw = s.rawString(), let v = match(raw, statuses) else { return nil }
                status = v
            } else if equals(key, "verification") {
                guard let raw = s.rawString(), let v = match(raw, verifications) else { return nil }
                verification = v
            } else if equals(key, "corrections") {
                guard let raw = s.skipValue(), case .object(let members)? = try? JSONReader().read(raw) else { return nil }
                corrections = members
            } else {
                guard s.skipValue() != nil else { return nil }
            }
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let status else { return nil }
        return (status, verification, corrections)
    }
}
