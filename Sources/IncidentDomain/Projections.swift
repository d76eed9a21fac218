import Gazetteer
import StrictJSON

/// The per-incident projection: the report as reported and as corrected, where the incident stands, and the
/// counters the city projection sums. The full history (each response and outcome) is read from the incident's
/// stream when asked for, so this record stays small however long the stream grows.
///
/// The log stores it in a compact binary form (``encoded()``) that keeps of the report only what the fold needs
/// (the city, the kind and the participants, as reported and as corrected); the `incident` document takes the
/// report itself from the incident's first event (``json(report:current:)``).
public struct IncidentState: Hashable, Sendable {
    public var incident: String
    public var cityId: String
    public var occurredAt: String
    public var precision: Precision
    public var reportedAt: Timestamp
    public var report: ReportData
    public var current: ReportData
    public var status: OutcomeStatus = .unknown
    public var verification: Verification
    /// Whether ``verification`` came from an outcome rather than from the report's sources.
    public var verificationFromOutcome = false
    public var version: Int64 = 1
    public var firstPosition: UInt64
    public var lastPosition: UInt64
    public var responseEvents: Int64 = 0
    public var outcomeEvents: Int64 = 0
    public var responses = CaseCounts<ResponseKind>()
    public var killed: Int64 = 0
    public var injured: Int64 = 0
    public var detained: Int64 = 0

    /// A projection as the fold builds it: its report, as reported and as corrected, and where it starts.
    public init(
        incident: String, cityId: String, occurredAt: String, precision: Precision, reportedAt: Timestamp,
        report: ReportData, current: ReportData, verification: Verification, position: UInt64
    ) {
        self.incident = incident
        self.cityId = cityId
        self.occurredAt = occurredAt
        self.precision = precision
        self.reportedAt = reportedAt
        self.report = report
        self.current = current
        self.verification = verification
        firstPosition = position
        lastPosition = position
    }

    init(reported event: RecordedEvent, report: ReportData, cityId: String) {
        incident = event.incident
        self.cityId = cityId
        occurredAt = event.occurredAt
        precision = event.precision
        reportedAt = event.recordedAt
        self.report = report
        current = report
        verification = IncidentState.verification(of: event.sources)
        firstPosition = event.position
        lastPosition = event.position
    }

    /// The strongest claim the report's own sources make: debunked, then disputed, then verified.
    static func verification(of sources: [Source]) -> Verification {
        var seen: UInt8 = 0
        for source in sources {
            switch source.verification {
            case .debunked: seen |= 1
            case .disputed: seen |= 2
            case .verified: seen |= 4
            case .unverified: break
            }
        }
        return verification(seenMask: seen)
    }

    /// ``verification(of:)`` from a mask of what the sources claim: 1 debunked, 2 disputed, 4 verified.
    public static func verification(seenMask seen: UInt8) -> Verification {
        if seen & 1 != 0 { return .debunked }
        if seen & 2 != 0 { return .disputed }
        if seen & 4 != 0 { return .verified }
        return .unverified
    }

    public var json: JSONValue { json(report: report, current: current) }

    /// The document `incident` prints, with the report and its corrected form given (as read from the stream).
    public func json(report: ReportData, current: ReportData) -> JSONValue {
        var o: [String: JSONValue] = [
            "incident": .string(incident),
            "cityId": .string(cityId),
            "occurredAt": .string(occurredAt),
            "precision": .string(precision.rawValue),
            "reportedAt": .string(reportedAt.description),
            "report": report.json,
            "current": current.json,
            "status": .string(status.rawValue),
            "verification": .string(verification.rawValue),
            "verificationFromOutcome": .bool(verificationFromOutcome),
            "version": .int(version),
            "firstPosition": .int(Int64(firstPosition)),
            "lastPosition": .int(Int64(lastPosition)),
            "responseEvents": .int(responseEvents),
            "outcomeEvents": .int(outcomeEvents),
            "casualties": ["killed": .int(killed), "injured": .int(injured), "detained": .int(detained)],
        ]
        o["responses"] = .object(Dictionary(uniqueKeysWithValues: responses.nonZeroCases.map { ($0.0.rawValue, JSONValue.int($0.1)) }))
        return .object(o)
    }

    public init(json: JSONValue) throws(IncidentError) {
        var r = try FieldReader(json, path: "incident")
        incident = try r.requiredString("incident", maxLength: 128)
        cityId = try r.requiredString("cityId", maxLength: 128)
        occurredAt = try r.requiredString("occurredAt", maxLength: 64)
        precision = try r.enumValue("precision", Precision.self) ?? .day
        reportedAt = ParsedDate.parse(try r.requiredString("reportedAt", maxLength: 64))?.start ?? Timestamp(microseconds: 0)
        report = try ReportData(json: r.raw("report") ?? .null, path: "incident.report", stored: true)
        current = try ReportData(json: r.raw("current") ?? .null, path: "incident.current", stored: true)
        status = try r.enumValue("status", OutcomeStatus.self) ?? .unknown
        verification = try r.enumValue("verification", Verification.self) ?? .unverified
        verificationFromOutcome = r.raw("verificationFromOutcome")?.boolValue ?? false
        version = try r.integer("version", range: 0...Int64.max) ?? 0
        firstPosition = UInt64(try r.integer("firstPosition", range: 0...Int64.max) ?? 0)
        lastPosition = UInt64(try r.integer("lastPosition", range: 0...Int64.max) ?? 0)
        responseEvents = try r.integer("responseEvents", range: 0...Int64.max) ?? 0
        outcomeEvents = try r.integer("outcomeEvents", range: 0...Int64.max) ?? 0
        if var c = try r.object("casualties") {
            killed = try c.integer("killed", range: 0...Int64.max) ?? 0
            injured = try c.integer("injured", range: 0...Int64.max) ?? 0
            detained = try c.integer("detained", range: 0...Int64.max) ?? 0
        }
        for (key, value) in r.raw("responses")?.objectValue ?? [:] {
            guard let kind = ResponseKind(rawValue: key), let n = value.intValue else { continue }
            guard n >= 0 else { throw IncidentError.invalid("incident.responses.\(key)", "is \(n), a count below zero") }
            responses[kind] = n
        }
        try r.finish()
    }

    // MARK: Stored form

    /// The stored form's version byte. (The JSON form of projection version 1 began with `{`; version 2 wrote its
    /// integers in 8 bytes each and its lengths in 4; version 3 held the incident id, which its key holds, and the
    /// report's city id again where it is the incident's.)
    public static let storedFormat: UInt8 = 4

    /// The stored form: a version byte, the enumerations as their case indexes, the integers as
    /// ``StoredInteger``s (the last position as its distance from the first), then strings, each after its
    /// length: the city id, the city as reported, `occurredAt`, and the report's city id when it has one that is
    /// not the incident's (a flag says whether it has one, and whether it is the incident's). The incident id is
    /// not in it: the stored form is kept under it, and read back with it (``init(encoded:incident:)``).
    /// Deterministic: the same state always gives the same bytes.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(192 + 2 * cityId.utf8.count + report.city.utf8.count + occurredAt.utf8.count)
        encode(into: &out)
        return out
    }

    /// Zeros copied in as the room ``encode(into:)`` writes into: `append(contentsOf:)` of a `repeatElement`
    /// stores them one by one.
    private static let zeros = [UInt8](repeating: 0, count: 1024)

    public func encode(into out: inout [UInt8]) {
        // Written into room made for the most it can take (nine 10-byte integers and four for the participants,
        // ten response kinds, four texts each after a 10-byte length), then cut to what it took.
        let reportCityId = report.cityId == cityId ? nil : report.cityId
        let texts = cityId.utf8.count + report.city.utf8.count + occurredAt.utf8.count + (reportCityId?.utf8.count ?? 0)
        let room = 8 + 13 * 10 + 10 * 11 + 5 * 10 + texts
        let start = out.count
        if room <= IncidentState.zeros.count {
            IncidentState.zeros.withUnsafeBytes { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[..<room])) }
        } else {
            out.append(contentsOf: repeatElement(0, count: room))
        }
        let used = out.withUnsafeMutableBytes { raw -> Int in
            let out = UnsafeMutableRawBufferPointer(rebasing: raw[start...])
            var offset = 0
            @inline(__always) func byte(_ b: UInt8) {
                out[offset] = b
                offset += 1
            }
            @inline(__always) func int(_ v: Int64) { StoredInteger.write(v, to: out, at: &offset) }
            @inline(__always) func text(_ s: String) {
                var s = s
                s.withUTF8 { utf8 in
                    int(Int64(utf8.count))
                    UnsafeMutableRawBufferPointer(rebasing: out[offset..<offset + utf8.count]).copyMemory(
                        from: UnsafeRawBufferPointer(utf8))
                    offset += utf8.count
                }
            }
            byte(IncidentState.storedFormat)
            byte(Precision.index(precision))
            byte(OutcomeStatus.index(status))
            byte(Verification.index(verification))
            byte(IncidentKind.index(report.kind))
            byte(IncidentKind.index(current.kind))
            byte(
                (verificationFromOutcome ? 1 : 0) | (report.participants != nil ? 2 : 0) | (current.participants != nil ? 4 : 0)
                    | (report.cityId != nil ? 8 : 0) | (report.cityId != nil && reportCityId == nil ? 16 : 0))
            int(version)
            int(Int64(bitPattern: firstPosition))
            int(Int64(bitPattern: lastPosition &- firstPosition))
            int(responseEvents)
            int(outcomeEvents)
            int(killed)
            int(injured)
            int(detained)
            int(reportedAt.microseconds)
            if let range = report.participants {
                int(range.low)
                int(range.high)
            }
            if let range = current.participants {
                int(range.low)
                int(range.high)
            }
            byte(UInt8(responses.nonZero))
            responses.forEachNonZero { index, count in
                byte(UInt8(index))
                int(count)
            }
            text(cityId)
            text(report.city)
            text(occurredAt)
            if let reportCityId { text(reportCityId) }
            return offset
        }
        out.removeLast(room - used)
    }

    /// Reads back the stored form of incident `incident` (its id, the key it is stored under). The report and its
    /// corrected form come back with only the city, the city id, the kind and the participants: what the fold reads.
    public init(encoded bytes: UnsafeRawBufferPointer, incident: String) throws(IncidentError) {
        var offset = 0
        func damaged() -> IncidentError { IncidentError.damagedProjection("incident") }
        func byte() throws(IncidentError) -> UInt8 {
            guard offset < bytes.count else { throw damaged() }
            defer { offset += 1 }
            return bytes[offset]
        }
        func int() throws(IncidentError) -> Int64 {
            guard let value = StoredInteger.read(bytes, at: &offset) else { throw damaged() }
            return value
        }
        func text() throws(IncidentError) -> String {
            let count = Int(try int())
            guard count >= 0, count <= bytes.count - offset else { throw damaged() }
            defer { offset += count }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]), as: UTF8.self)
        }
        func enumeration<E: StoredEnumeration>(_: E.Type) throws(IncidentError) -> E {
            let i = Int(try byte())
            guard i < E.storedCases.count else { throw damaged() }
            return E.storedCases[i]
        }
        guard try byte() == IncidentState.storedFormat else { throw damaged() }
        precision = try enumeration(Precision.self)
        status = try enumeration(OutcomeStatus.self)
        verification = try enumeration(Verification.self)
        let reportKind = try enumeration(IncidentKind.self)
        let currentKind = try enumeration(IncidentKind.self)
        let flags = try byte()
        verificationFromOutcome = flags & 1 != 0
        version = try int()
        // Positions are 1...Int64.max (as every event's is), the last at or after the first.
        let first = try int()
        let span = try int()
        guard first > 0, span >= 0, span <= Int64.max - first else { throw damaged() }
        firstPosition = UInt64(first)
        lastPosition = UInt64(first + span)
        responseEvents = try int()
        outcomeEvents = try int()
        killed = try int()
        injured = try int()
        detained = try int()
        reportedAt = Timestamp(microseconds: try int())
        var reportParticipants: PeopleRange?
        var currentParticipants: PeopleRange?
        if flags & 2 != 0 {
            let low = try int()
            reportParticipants = PeopleRange(low: low, high: try int())
        }
        if flags & 4 != 0 {
            let low = try int()
            currentParticipants = PeopleRange(low: low, high: try int())
        }
        let kinds = Int(try byte())
        var counts = version | responseEvents | outcomeEvents | killed | injured | detained
        for _ in 0..<kinds {
            let index = Int(try byte())
            guard index < ResponseKind.storedCases.count else { throw damaged() }
            let count = try int()
            counts |= count
            responses[index] = count
        }
        counts |= (reportParticipants?.low ?? 0) | (reportParticipants?.high ?? 0)
        counts |= (currentParticipants?.low ?? 0) | (currentParticipants?.high ?? 0)
        // No fold makes a count below zero, so one is damage on the disk; or'ed together, one sign bit tells.
        guard counts >= 0 else { throw damaged() }
        self.incident = incident
        cityId = try text()
        let city = try text()
        occurredAt = try text()
        // Flag 16 (the report's city id is the incident's) only beside flag 8 (the report has one).
        guard flags & 16 == 0 || flags & 8 != 0 else { throw damaged() }
        let reportCityId = flags & 16 != 0 ? cityId : flags & 8 != 0 ? try text() : nil
        guard offset == bytes.count else { throw damaged() }
        report = ReportData(
            city: city, cityId: reportCityId, kind: reportKind, location: nil, coordinates: nil, description: nil,
            participants: reportParticipants, targets: nil, tags: [])
        current = ReportData(
            city: city, cityId: reportCityId, kind: currentKind, location: nil, coordinates: nil, description: nil,
            participants: currentParticipants, targets: nil, tags: [])
    }

    /// ``init(encoded:incident:)`` of the stored projection of incident `id`: its `log_damaged` names the incident
    /// (``IncidentError/damagedIncidentProjection(_:_:)``).
    public init(encoded bytes: UnsafeRawBufferPointer, of id: String) throws(IncidentError) {
        do {
            try self.init(encoded: bytes, incident: id)
        } catch {
            throw IncidentError.damagedIncidentProjection(id, "does not read back")
        }
    }

    public init(encoded bytes: [UInt8], incident: String) throws(IncidentError) {
        var result: Result<IncidentState, IncidentError> = .failure(IncidentError.invalid("incident", "empty"))
        bytes.withUnsafeBytes { raw in
            do throws(IncidentError) {
                result = .success(try IncidentState(encoded: raw, incident: incident))
            } catch {
                result = .failure(error)
            }
        }
        self = try result.get()
    }
}

/// How the stored incident projection writes an integer: unsigned LEB128 of its bit pattern, seven bits a byte,
/// low bits first, so that the small counts and positions most incidents have take one to three bytes (a
/// negative value takes ten).
public enum StoredInteger {
    /// How many bytes `value` takes.
    @inline(__always) public static func size(_ value: Int64) -> Int {
        let bits = 64 - UInt64(bitPattern: value).leadingZeroBitCount
        return bits == 0 ? 1 : (bits + 6) / 7
    }

    @inline(__always) public static func append(_ value: Int64, to out: inout [UInt8]) {
        var v = UInt64(bitPattern: value)
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    /// Writes `value` at `offset` in `out`, which must have room for ``size(_:)`` bytes there.
    @inline(__always) public static func write(_ value: Int64, to out: UnsafeMutableRawBufferPointer, at offset: inout Int) {
        var v = UInt64(bitPattern: value)
        while v >= 0x80 {
            out[offset] = UInt8(truncatingIfNeeded: v) | 0x80
            offset += 1
            v >>= 7
        }
        out[offset] = UInt8(v)
        offset += 1
    }

    /// The integer at `offset`, moving past it; nil when the bytes end first or it is longer than ten bytes.
    @inline(__always) public static func read(_ bytes: UnsafeRawBufferPointer, at offset: inout Int) -> Int64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count, shift < 64 {
            let byte = bytes[offset]
            offset += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return Int64(bitPattern: value) }
            shift += 7
        }
        return nil
    }
}

/// An enumeration the stored incident projection keeps as its index among `allCases`.
public protocol StoredEnumeration: CaseIterable, Equatable, RawRepresentable where AllCases == [Self] {
    /// `allCases`, made once.
    static var storedCases: [Self] { get }
}

extension StoredEnumeration {
    /// The index of `value` among ``storedCases``: its tag, since `allCases`, synthesized, lists an enumeration's
    /// cases in the order they are declared, which is the order of their tags (each conformance below is so; a test
    /// compares the two for every case). No search of the cases, on the writer's and the rebuild's every record.
    @inline(__always) public static func index(_ value: Self) -> UInt8 {
        caseTag(value)
    }
}

extension Precision: StoredEnumeration { public static let storedCases = allCases }
extension OutcomeStatus: StoredEnumeration { public static let storedCases = allCases }
extension Verification: StoredEnumeration { public static let storedCases = allCases }
extension IncidentKind: StoredEnumeration { public static let storedCases = allCases }
extension ResponseKind: StoredEnumeration { public static let storedCases = allCases }

/// The per-city projection of SPEC §3.
public struct CityState: Hashable, Sendable {
    public var cityId: String
    public var name: String
    public var aliasesSeen: Set<String> = []
    public var region: String?
    public var population: Int64?
    public var incidents: Int64 = 0
    public var incidentsByKind = CaseCounts<IncidentKind>()
    public var participantsLow: Int64 = 0
    public var participantsHigh: Int64 = 0
    /// How many of the incidents counted give a number of participants: those the two sums cover.
    public var participantsCounted: Int64 = 0
    public var responses = CaseCounts<ResponseKind>()
    public var killed: Int64 = 0
    public var injured: Int64 = 0
    public var detained: Int64 = 0
    public var outcomes = CaseCounts<OutcomeStatus>()
    public var verification = CaseCounts<Verification>()
    public var openIncidents: Int64 = 0
    /// The dates of the incidents it counts that start earliest and latest, as reported (``IncidentDate``): a
    /// retracted incident's is left out, as it is of `incidents`; nil while it counts none.
    public var firstIncidentAt: String?
    public var lastIncidentAt: String?
    public var lastPosition: UInt64 = 0

    public init(cityId: String, name: String, region: String?, population: Int64?) {
        self.cityId = cityId
        self.name = name
        self.region = region
        self.population = population
    }

    /// The document `city` and `cities` print. Every enumeration is listed with its zeros, so the shape never
    /// depends on the data.
    public var json: JSONValue {
        func counts<E: StoredEnumeration & RawRepresentable>(_ d: CaseCounts<E>) -> JSONValue where E.RawValue == String {
            .object(Dictionary(uniqueKeysWithValues: E.allCases.map { ($0.rawValue, JSONValue.int(d[$0])) }))
        }
        var o: [String: JSONValue] = [
            "cityId": .string(cityId),
            "name": .string(name),
            "aliasesSeen": .array(aliasesSeen.sorted().map { .string($0) }),
            "incidents": ["total": .int(incidents), "byKind": counts(incidentsByKind)],
            "participants": ["low": .int(participantsLow), "high": .int(participantsHigh), "counted": .int(participantsCounted)],
            "responses": counts(responses),
            "casualties": ["killed": .int(killed), "injured": .int(injured), "detained": .int(detained)],
            "outcomes": counts(outcomes),
            "verification": counts(verification),
            "openIncidents": .int(openIncidents),
            "lastPosition": .int(Int64(lastPosition)),
        ]
        o["region"] = region.map { .string($0) } ?? .null
        o["population"] = population.map { .int($0) } ?? .null
        o["firstIncidentAt"] = firstIncidentAt.map { .string($0) } ?? .null
        o["lastIncidentAt"] = lastIncidentAt.map { .string($0) } ?? .null
        return .object(o)
    }

    public init(json: JSONValue) throws(IncidentError) {
        // No fold makes a count below zero: one read back so is damage on the disk, refused naming where it is.
        func count(_ value: JSONValue?, _ path: String) throws(IncidentError) -> Int64 {
            guard let n = value?.intValue else { return 0 }
            guard n >= 0 else { throw IncidentError.invalid("city.\(path)", "is \(n), a count below zero") }
            return n
        }
        func counts<E: StoredEnumeration & RawRepresentable>(
            _ v: JSONValue?, _: E.Type, _ path: String
        ) throws(IncidentError) -> CaseCounts<E> where E.RawValue == String {
            var d = CaseCounts<E>()
            for (key, value) in v?.objectValue ?? [:] {
                if let e = E(rawValue: key), value.intValue != nil { d[e] = try count(value, "\(path).\(key)") }
            }
            return d
        }
        var r = try FieldReader(json, path: "city")
        cityId = try r.requiredString("cityId", maxLength: 128)
        name = try r.requiredString("name", maxLength: Limits.shortText)
        aliasesSeen = Set(try r.stringArray("aliasesSeen", maxCount: Int.max, maxLength: Limits.shortText) ?? [])
        region = try r.string("region", maxLength: 64)
        population = r.raw("population")?.intValue != nil ? try count(r.raw("population"), "population") : nil
        let incidentsJSON = r.raw("incidents")
        incidents = try count(incidentsJSON?["total"], "incidents.total")
        incidentsByKind = try counts(incidentsJSON?["byKind"], IncidentKind.self, "incidents.byKind")
        let participants = r.raw("participants")
        participantsLow = try count(participants?["low"], "participants.low")
        participantsHigh = try count(participants?["high"], "participants.high")
        participantsCounted = try count(participants?["counted"], "participants.counted")
        responses = try counts(r.raw("responses"), ResponseKind.self, "responses")
        let casualties = r.raw("casualties")
        killed = try count(casualties?["killed"], "casualties.killed")
        injured = try count(casualties?["injured"], "casualties.injured")
        detained = try count(casualties?["detained"], "casualties.detained")
        outcomes = try counts(r.raw("outcomes"), OutcomeStatus.self, "outcomes")
        verification = try counts(r.raw("verification"), Verification.self, "verification")
        openIncidents = try count(r.raw("openIncidents"), "openIncidents")
        firstIncidentAt = r.raw("firstIncidentAt")?.stringValue
        lastIncidentAt = r.raw("lastIncidentAt")?.stringValue
        lastPosition = UInt64(try r.integer("lastPosition", range: 0...Int64.max) ?? 0)
        try r.finish()
    }

    /// A city's projection as stored (its ``canonicalBytes()``), read back; `id` is the city it is stored under.
    ///
    /// - Throws: `log_damaged` (``IncidentError/damagedProjection(_:_:)``, naming the city and what does not read)
    ///   when the bytes are not such a document: they changed on the disk, and it is the log that is damaged, not
    ///   anything a client sent.
    public init(stored bytes: UnsafeRawBufferPointer, id: String) throws(IncidentError) {
        do {
            self = try CityState(json: JSONReader().read(bytes))
        } catch {
            let reason = (error as? IncidentError)?.message ?? "\(error)"
            throw IncidentError.damagedProjection("city", ": \(id.prefix(128))'s does not read back (\(reason))")
        }
    }

    /// ``init(stored:id:)`` of bytes in an array.
    public init(stored bytes: [UInt8], id: String) throws(IncidentError) {
        var result: Result<CityState, IncidentError> = .failure(IncidentError.damagedProjection("city"))
        bytes.withUnsafeBytes { raw in
            do throws(IncidentError) {
                result = .success(try CityState(stored: raw, id: id))
            } catch {
                result = .failure(error)
            }
        }
        self = try result.get()
    }

    /// The city as a gazetteer entry: its id, its name, and every spelling reported for it, to suggest it for a
    /// name that is not known.
    public var gazetteerEntry: City {
        City(id: cityId, name: name, aliases: aliasesSeen.sorted())
    }

    /// Adds (`sign` 1) or removes (`sign` -1) what one incident contributes to its city.
    ///
    /// - Throws: `log_damaged` naming this city when a sum overflows (``accumulate(_:_:times:in:of:)``), or when a
    ///   count is below zero once an incident is added: each event takes its incident away and adds it back, and
    ///   then no count of a sound city is below zero, so the city was read back with less than its incidents gave it.
    mutating func add(_ incident: IncidentState, sign: Int64) throws(IncidentError) {
        do {
            try addCounts(incident, sign: sign)
        } catch {
            throw IncidentError.damagedProjection("city", ": \(cityId.prefix(128))'s counts overflow as an incident is added to them")
        }
        if sign > 0 && hasCountBelowZero {
            throw IncidentError.damagedProjection(
                "city", ": \(cityId.prefix(128))'s counts fall below zero: it was read back with less than its incidents gave it")
        }
    }

    private var hasCountBelowZero: Bool {
        let scalars = incidents | participantsLow | participantsHigh | participantsCounted | killed | injured | detained | openIncidents
        return (scalars | outcomes.signBits | verification.signBits | incidentsByKind.signBits | responses.signBits) < 0
    }

    private mutating func addCounts(_ incident: IncidentState, sign: Int64) throws(IncidentError) {
        outcomes[incident.status] &+= sign
        verification[incident.verification] &+= sign
        if incident.status.countsInSums {
            try accumulate(&incidents, 1, times: sign, in: "city")
            incidentsByKind[incident.current.kind] &+= sign
            try accumulate(&participantsLow, incident.current.participants?.low ?? 0, times: sign, in: "city")
            try accumulate(&participantsHigh, incident.current.participants?.high ?? 0, times: sign, in: "city")
            if incident.current.participants != nil { try accumulate(&participantsCounted, 1, times: sign, in: "city") }
            responses.add(incident.responses, times: sign)
            try accumulate(&killed, incident.killed, times: sign, in: "city")
            try accumulate(&injured, incident.injured, times: sign, in: "city")
            try accumulate(&detained, incident.detained, times: sign, in: "city")
            if incident.status.isOpen { try accumulate(&openIncidents, 1, times: sign, in: "city") }
        }
    }
}

/// Adds `sign` times `amount` to `total`. The counts of a sound log are nowhere near overflowing, so a sum that
/// overflows was made from stored projections read back damaged (a city's or incident's count changed on disk).
///
/// - Throws: ``IncidentError`` naming `what` (`incident` or `city`) as damaged, and the incident `id` when given;
///   `total` is left as it was.
@inline(__always) func accumulate(
    _ total: inout Int64, _ amount: Int64, times sign: Int64 = 1, in what: String, of id: String? = nil
) throws(IncidentError) {
    let (change, productOverflow) = amount.multipliedReportingOverflow(by: sign)
    let (sum, sumOverflow) = total.addingReportingOverflow(change)
    guard !productOverflow, !sumOverflow else {
        if let id { throw IncidentError.damagedIncidentProjection(id, "counts overflow as an event is folded into them") }
        throw IncidentError.damagedProjection(what, ": a count it keeps overflows")
    }
    total = sum
}

/// One counted incident's date in its city's index of dates, from which the city's `firstIncidentAt` and
/// `lastIncidentAt` are read: the incident's `occurredAt` as reported, where its date starts, and the position of
/// its report. An incident is in the index while its latest status counts it (``OutcomeStatus/countsInSums``):
/// a retraction takes it out, an outcome with another status puts it back. (Its date cannot be corrected, so it
/// is its report's for good.)
///
/// The index is ordered by ``start``, then by ``position``. A city's first incident date is the text of the first
/// entry; its last, the text of the earliest-reported entry among those whose date starts latest. So between
/// counted incidents whose dates start at the same instant (`2022-03` and `2022-03-01`), the one reported first
/// gives the city's text, for the first date and for the last alike.
public struct IncidentDate: Hashable, Sendable {
    public var cityId: String
    public var start: Timestamp
    /// The position of the incident's report.
    public var position: UInt64
    /// The report's `occurredAt`, as it was reported.
    public var text: String
    /// The incident's id.
    public var incident: String

    public init(cityId: String, start: Timestamp, position: UInt64, text: String, incident: String) {
        self.cityId = cityId
        self.start = start
        self.position = position
        self.text = text
        self.incident = incident
    }

    /// The date of incident `state` in its city's index; nil when its `occurredAt` is not a date (no event a
    /// daemon accepted has such a one), which no city's dates count.
    public init?(of state: IncidentState) {
        guard let parsed = ParsedDate.parse(state.occurredAt) else { return nil }
        self.init(
            cityId: state.cityId, start: parsed.start, position: state.firstPosition, text: state.occurredAt, incident: state.incident)
    }

    /// The first and last dates of `dates`, one city's (see ``IncidentDate``); nil when there are none.
    public static func span(of dates: some Sequence<IncidentDate>) -> (first: String, last: String)? {
        var first: IncidentDate?
        var last: IncidentDate?
        for date in dates {
            if first.map({ (date.start, date.position) < ($0.start, $0.position) }) ?? true { first = date }
            if last.map({ date.start > $0.start || (date.start == $0.start && date.position < $0.position) }) ?? true {
                last = date
            }
        }
        guard let first, let last else { return nil }
        return (first.text, last.text)
    }
}

/// Where projections are kept while events are folded: LMDB inside the append's transaction for the daemon,
/// plain dictionaries for a replay.
public protocol ProjectionStore {
    mutating func incident(_ id: String) throws -> IncidentState?
    mutating func city(_ id: String) throws -> CityState?
    /// Keeps `incident`, taking it over: a store holds the caller's copy rather than a copy of it.
    mutating func put(_ incident: consuming IncidentState) throws
    mutating func put(_ city: consuming CityState) throws
    /// A state that will be changed and put back: a store may hand over its own copy, so that the change
    /// does not copy the state's collections.
    mutating func takeIncident(_ id: String) throws -> IncidentState?
    mutating func takeCity(_ id: String) throws -> CityState?
    /// Changes the city `id`, made with `make` when the store has none. A store may change its own copy in place
    /// rather than hand it over and take it back.
    mutating func updateCity(_ id: String, orNew make: () -> CityState, _ change: (inout CityState) throws -> Void) throws
    /// Every city with a projection. Asked only when a reported name is unknown, to suggest the nearest.
    mutating func allCities() throws -> [CityState]
    /// Adds a counted incident's date to its city's index of dates (``IncidentDate``): once for each report whose
    /// date reads, and again when an outcome reinstates a retracted incident (`reinstating`). A store that lists a
    /// city's incidents lists each either by its date or among those the city does not date
    /// (``addCityIncident(cityId:position:incident:)``), so a reinstatement moves it from there.
    mutating func addIncidentDate(_ date: IncidentDate, reinstating: Bool) throws
    /// Takes an incident's date out of its city's index, when an outcome retracts it; a store that lists a city's
    /// incidents lists it among those the city does not date.
    ///
    /// - Throws: `log_damaged` (``IncidentError/damagedProjection(_:_:)``) when the index does not hold it: it was
    ///   added when the incident was reported or reinstated, so the index was changed on the disk.
    mutating func removeIncidentDate(_ date: IncidentDate) throws
    /// The first and last dates of the city `cityId`'s index (``IncidentDate/span(of:)``); nil when it holds none.
    /// Asked only when an outcome retracts or reinstates an incident; a report compares its date with the city's.
    mutating func incidentDateSpan(of cityId: String) throws -> (first: String, last: String)?
    /// Adds a reported incident whose date does not read (no event a daemon accepted has one), `incident` reported
    /// at `position`, to city `cityId`'s list of the incidents it does not date, where it stays (its date never
    /// changes, nor its city).
    mutating func addCityIncident(cityId: String, position: UInt64, incident: String) throws
}

extension ProjectionStore {
    /// A store that lists no city's incidents (one folded in memory, which finds them among its incidents) keeps
    /// nothing.
    public mutating func addCityIncident(cityId: String, position: UInt64, incident: String) throws {}

    public mutating func takeIncident(_ id: String) throws -> IncidentState? { try incident(id) }
    public mutating func takeCity(_ id: String) throws -> CityState? { try city(id) }

    public mutating func updateCity(
        _ id: String, orNew make: () -> CityState, _ change: (inout CityState) throws -> Void
    ) throws {
        var city = try takeCity(id) ?? make()
        try change(&city)
        try put(city)
    }
}

/// Projections kept in memory: what a replay folds into.
public struct InMemoryProjections: ProjectionStore, Sendable {
    public var incidents: [String: IncidentState] = [:]
    public var cities: [String: CityState] = [:]
    /// Each city's index of dates (``IncidentDate``), by city id, in no order.
    public var incidentDates: [String: [IncidentDate]] = [:]

    public init() {}

    public mutating func incident(_ id: String) -> IncidentState? { incidents[id] }
    public mutating func city(_ id: String) -> CityState? { cities[id] }
    public mutating func put(_ incident: consuming IncidentState) { incidents[incident.incident] = incident }
    public mutating func put(_ city: consuming CityState) { cities[city.cityId] = city }
    public mutating func allCities() -> [CityState] { Array(cities.values) }

    public mutating func addIncidentDate(_ date: IncidentDate, reinstating: Bool) {
        incidentDates[date.cityId, default: []].removeAll { $0.start == date.start && $0.position == date.position }
        incidentDates[date.cityId, default: []].append(date)
    }

    public mutating func removeIncidentDate(_ date: IncidentDate) throws(IncidentError) {
        let held = incidentDates[date.cityId]?.firstIndex { $0.start == date.start && $0.position == date.position }
        guard let held else { throw IncidentDate.missing(date) }
        incidentDates[date.cityId]?.remove(at: held)
    }

    public mutating func incidentDateSpan(of cityId: String) -> (first: String, last: String)? {
        IncidentDate.span(of: incidentDates[cityId] ?? [])
    }

    /// The document `cities` prints: every city, sorted by id.
    public var citiesDocument: JSONValue {
        .array(cities.keys.sorted().compactMap { cities[$0]?.json })
    }
}

extension IncidentDate {
    /// The `log_damaged` of a city's index of dates that does not hold `date`, which it should.
    public static func missing(_ date: IncidentDate) -> IncidentError {
        missing(date, among: "incident dates")
    }

    /// The `log_damaged` of a city's index, the index of its `list` (its "incident dates", or the "incidents it
    /// does not date"), that does not hold incident `date`'s entry, which it should.
    public static func missing(_ date: IncidentDate, among list: String) -> IncidentError {
        IncidentError.damagedProjection(
            "city",
            ": \(date.cityId.prefix(128))'s index of \(list) has no entry for the report at position \(date.position) (\(date.text.prefix(64)))")
    }
}

/// Folds events into projections. Deterministic: the same events in the same order give the same state.
public struct Projector: Sendable {
    public let gazetteer: Gazetteer

    public init(gazetteer: Gazetteer) {
        self.gazetteer = gazetteer
    }

    /// Applies one stored event. Events must come in position order, and each incident's report first.
    public func apply(_ event: RecordedEvent, to store: inout some ProjectionStore) throws {
        switch event.data {
        case .reported(let report):
            let cityId = report.cityId ?? Gazetteer.slug(report.city) ?? "unknown"
            let state = IncidentState(reported: event, report: report, cityId: cityId)
            let date = IncidentDate(of: state)
            if let date {
                try store.addIncidentDate(date, reinstating: false)
            } else {
                try store.addCityIncident(cityId: cityId, position: event.position, incident: state.incident)
            }
            try store.updateCity(cityId, orNew: { newCity(id: cityId, reportedName: report.city) }) { city in
                city.aliasesSeen.insert(report.city)
                try city.add(state, sign: 1)
                // Reported after every incident the city counts, it takes their place only with a date that starts
                // earlier or later (``IncidentDate``: a tie keeps the one reported first).
                if let date {
                    if city.firstIncidentAt.flatMap(ParsedDate.parse).map({ date.start < $0.start }) ?? true {
                        city.firstIncidentAt = date.text
                    }
                    if city.lastIncidentAt.flatMap(ParsedDate.parse).map({ date.start > $0.start }) ?? true {
                        city.lastIncidentAt = date.text
                    }
                }
                city.lastPosition = event.position
            }
            try store.put(state)
        case .responded(let response):
            guard var state = try store.takeIncident(event.incident) else { return }
            try follows(state, event)
            let id = state.incident
            try store.updateCity(state.cityId, orNew: { newCity(id: state.cityId, reportedName: state.report.city) }) { city in
                try city.add(state, sign: -1)
                try accumulate(&state.responseEvents, 1, in: "incident", of: id)
                for kind in response.responses { try accumulate(&state.responses[kind], 1, in: "incident", of: id) }
                try accumulate(&state.killed, response.killed ?? 0, in: "incident", of: id)
                try accumulate(&state.injured, response.injured ?? 0, in: "incident", of: id)
                try accumulate(&state.detained, response.detained ?? 0, in: "incident", of: id)
                try finish(&state, &city, event)
            }
            try store.put(state)
        case .outcome(let outcome):
            guard var state = try store.takeIncident(event.incident) else { return }
            try follows(state, event)
            let id = state.incident
            // A retraction takes the incident's date out of its city's dates, a reinstatement puts it back; either
            // may move the city's first and last dates.
            var dates: (first: String, last: String)??
            if state.status.countsInSums != outcome.status.countsInSums, let date = IncidentDate(of: state) {
                if outcome.status.countsInSums {
                    try store.addIncidentDate(date, reinstating: true)
                } else {
                    try store.removeIncidentDate(date)
                }
                dates = .some(try store.incidentDateSpan(of: state.cityId))
            }
            try store.updateCity(state.cityId, orNew: { newCity(id: state.cityId, reportedName: state.report.city) }) { city in
                if let dates {
                    city.firstIncidentAt = dates?.first
                    city.lastIncidentAt = dates?.last
                }
                try city.add(state, sign: -1)
                try accumulate(&state.outcomeEvents, 1, in: "incident", of: id)
                state.status = outcome.status
                if let v = outcome.verification {
                    state.verification = v
                    state.verificationFromOutcome = true
                }
                if let corrections = outcome.corrections { state.current = state.current.applying(corrections) }
                try finish(&state, &city, event)
            }
            try store.put(state)
        }
    }

    /// Refuses a response or outcome that is not after every event `state` has folded: an appended event always is
    /// (positions are given out in order, after the incident's report), so the projection, read back with a later
    /// position than the log has reached, is damaged; folded, the event would make an incident that ends before
    /// it starts, whose stored form does not read back.
    private func follows(_ state: IncidentState, _ event: RecordedEvent) throws(IncidentError) {
        guard event.position > state.lastPosition else {
            throw IncidentError.damagedProjection(
                "incident", ": \(state.incident.prefix(128))'s names position \(state.lastPosition), not before event \(event.position)")
        }
    }

    private func finish(_ state: inout IncidentState, _ city: inout CityState, _ event: RecordedEvent) throws(IncidentError) {
        state.version = event.version
        state.lastPosition = event.position
        try city.add(state, sign: 1)
        city.lastPosition = event.position
    }

    /// The projection of a city before its first incident: the gazetteer's name, region and population, or
    /// the name as reported for a city the gazetteer does not know.
    public func newCity(id: String, reportedName: String) -> CityState {
        if let known = gazetteer.city(id: id) {
            return CityState(cityId: id, name: known.name, region: known.region, population: known.population.map(Int64.init))
        }
        return CityState(cityId: id, name: reportedName, region: nil, population: nil)
    }

    /// All that the projections read of the gazetteer, as bytes: each city's id, name, region and population
    /// (what ``newCity(id:reportedName:)`` takes), in id order, as canonical JSON. Two gazetteers that give the
    /// same bytes fold every log into the same projections; the log keeps a digest of them beside its
    /// projections and rebuilds the projections when a daemon starts with a gazetteer that gives other bytes.
    /// Aliases, coordinates and GeoNames ids are left out: a report's spelling is resolved into the `cityId` it
    /// stores when it is appended, and nothing folded reads them, so adding a spelling costs no rebuild.
    /// Whatever else of the gazetteer the fold comes to read must be added here.
    public var gazetteerInput: [UInt8] {
        JSONValue.array(
            gazetteer.cities.map { city in
                .object([
                    "id": .string(city.id), "name": .string(city.name),
                    "region": city.region.map { .string($0) } ?? .null,
                    "population": city.population.map { .int(Int64($0)) } ?? .null,
                ])
            }
        ).canonicalBytes()
    }
}
