import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON

/// The rebuild's fold of one stretch of `incident-streams`: the incidents reported at positions in `reports`,
/// each folded whole from its entries (its events in version order, each a ``StreamSummary``), then encoded in
/// its stored form, and added to this stretch's part of its city.
///
/// Incidents are independent of each other, and a city is a sum over its incidents, so stretches are folded on
/// as many threads as there are cores and their cities added up afterwards in stretch order (see
/// ``StreamFold/merge(_:)``). No incident is looked up by its id: an incident's events come together.
struct StreamFold {
    let projector: Projector
    /// The incidents' ids back to back, and where each starts (`ids[idStarts[i]..<idStarts[i + 1]]`).
    var ids: [UInt8] = []
    var idStarts: [Int] = [0]
    /// Each incident's stored form (`IncidentState.encode(into:)`), back to back, in the same order.
    var records: [UInt8] = []
    var recordStarts: [Int] = [0]
    /// The `city-dates` entries of the incidents whose city counts them (``IncidentDate``), in the order they were
    /// reported: the keys back to back (`dateKeys[dateKeyStarts[i]..<dateKeyStarts[i + 1]]`), and their values
    /// (``Keys/cityDateValue(text:incident:into:)``).
    var dateKeys: [UInt8] = []
    var dateKeyStarts: [Int] = [0]
    var dateValues: [UInt8] = []
    var dateValueStarts: [Int] = [0]
    /// Of each incident its city does not date (a retracted one, or one whose date does not read), in the order
    /// they were reported: its number (its place in `ids`), its city id (a text) and the position of its report, its
    /// entry among those its city does not date (``Keys/cityIncident(cityId:position:into:)``).
    var byReportIncidents: [Int32] = []
    var byReportCityIds: [Int32] = []
    var byReportPositions: [UInt64] = []
    /// City names, city ids and dates, each once.
    var texts = TextTable()
    var cities: [FoldCity] = []
    var cityIndex: [String: Int32] = [:]
    /// How many events (stream entries) were folded.
    var events = 0
    /// Where a record is encoded before it is appended to `records`.
    private var scratch = [UInt8](repeating: 0, count: 512)
    /// Whether records are written straight from the fold (see `ProjectionFold.directEncodingHolds`); otherwise
    /// through `IncidentState`.
    let direct: Bool

    init(projector: Projector, direct: Bool) {
        self.projector = projector
        self.direct = direct
    }

    var incidentCount: Int { idStarts.count - 1 }

    /// The stored form of incident `i`.
    func record(_ i: Int) -> ArraySlice<UInt8> { records[recordStarts[i]..<recordStarts[i + 1]] }

    /// One incident while its stream is read: its record and its texts, still bytes of the summaries (valid while
    /// the transaction lasts).
    private struct Open {
        var state: FoldIncident
        var start: UInt64
        var id: UnsafeRawBufferPointer
        var city: UnsafeRawBufferPointer
        var cityId: UnsafeRawBufferPointer?
        var occurredAt: UnsafeRawBufferPointer
        var occurredStart: Int64?
    }

    /// Makes room for the incidents of about `events` events, so that the tables do not grow (and copy
    /// themselves) while they are folded.
    mutating func reserveCapacity(events: Int) {
        let incidents = events * 2 / 3
        ids.reserveCapacity(incidents * 48)
        idStarts.reserveCapacity(incidents + 1)
        records.reserveCapacity(incidents * 104)
        recordStarts.reserveCapacity(incidents + 1)
    }

    var dateCount: Int { dateKeyStarts.count - 1 }

    /// The `city-dates` entry `i`: its key and its value.
    func dateEntry(_ i: Int) -> (key: ArraySlice<UInt8>, value: ArraySlice<UInt8>) {
        (dateKeys[dateKeyStarts[i]..<dateKeyStarts[i + 1]], dateValues[dateValueStarts[i]..<dateValueStarts[i + 1]])
    }

    /// Lets go of the incidents' ids, stored forms and date entries (once written), keeping the cities.
    mutating func forgetIncidents() {
        ids = []
        idStarts = [0]
        records = []
        recordStarts = [0]
        dateKeys = []
        dateKeyStarts = [0]
        dateValues = []
        dateValueStarts = [0]
        byReportIncidents = []
        byReportCityIds = []
        byReportPositions = []
    }

    var byReportCount: Int { byReportIncidents.count }

    /// Appends to `key` the key of the entry `i` among the incidents their cities do not date; its value is the id,
    /// ``byReportId(_:)``.
    func byReportKey(_ i: Int, into key: inout [UInt8]) {
        texts.bytes.withBytes(byReportCityIds[i]) { Keys.cityIncident(cityId: $0, position: byReportPositions[i], into: &key) }
    }

    /// The id of the incident of entry `i` among those their cities do not date.
    func byReportId(_ i: Int) -> ArraySlice<UInt8> { id(Int(byReportIncidents[i])) }

    /// The id of incident `i`.
    func id(_ i: Int) -> ArraySlice<UInt8> { ids[idStarts[i]..<idStarts[i + 1]] }

    /// Folds the streams of the incidents reported at positions in `reports`, read with `cursor`.
    mutating func fold(_ cursor: borrowing Cursor, reports: Range<UInt64>) throws {
        var ignoring = IgnoredStreamEntries()
        try fold(cursor, reports: reports, visiting: &ignoring)
    }

    /// Folds the streams of the incidents reported at positions in `reports`, read with `cursor`, and shows
    /// `visitor` each entry once its summary has been folded (`verify` compares them with the events).
    mutating func fold<Visitor: StreamEntryVisitor>(
        _ cursor: borrowing Cursor, reports: Range<UInt64>, visiting visitor: inout Visitor
    ) throws {
        var open: Open?
        var entry = try cursor.seek(atOrAfter: Keys.stream(start: reports.lowerBound, version: 0))
        while let (key, value) = entry {
            guard key.count == 16, let start = Keys.readPosition(key),
                let rawVersion = Keys.readPosition(UnsafeRawBufferPointer(rebasing: key[8...])), value.count > 8,
                let position = Keys.readPosition(value)
            else { throw LogError(.corrupt, "an incident-streams entry is damaged (\(key.count) + \(value.count) bytes)") }
            // Made again from its event, an entry keeps the position it names, so a position no event can have is
            // damage a rebuild cannot mend.
            guard (1...UInt64(Int64.max)).contains(position) else {
                throw LogError(.corrupt, "an incident-streams entry names position \(position), which no event can have")
            }
            if start >= reports.upperBound { break }
            // So is a version no event can have (events number their incident's stream from 1), which would make an
            // incident whose stored form does not read back.
            guard (1...UInt64(Int64.max)).contains(rawVersion) else {
                throw LogError(.corrupt, "an incident-streams entry has version \(rawVersion), which no event can have")
            }
            let version = Int64(rawVersion)
            var summary = StreamSummaryReader(value, at: 8, position: position)
            let type = try summary.byte()
            if version == 1 {
                guard type == StreamSummary.report else {
                    throw StreamSummaryDamage(position: position, problem: "starts an incident's stream but is not a report's")
                }
                // The key's start is where `incident` looks for the stream: the report's own position.
                guard start == position else {
                    throw LogError(
                        .corrupt, "the report at position \(position) starts an incident's stream under position \(start)")
                }
                if let finished = open { try close(finished) }
                let opened = try report(&summary, start: start, position: position)
                visitor.visit(
                    incident: opened.id, start: start, version: version, position: position,
                    summary: UnsafeRawBufferPointer(rebasing: value[8...]))
                open = opened
            } else {
                guard var incident = open, incident.start == start else {
                    throw LogError(.corrupt, "event \(position) is in the stream of an incident that was never reported")
                }
                // An incident's events are stored in position order, so an entry naming a position not after the
                // one before it names an event that is not this one (and would make an incident that ends before it
                // starts, whose stored form does not read back); made again from its event it names the same.
                guard position > incident.state.lastPosition else {
                    throw LogError(
                        .corrupt,
                        "an incident-streams entry names position \(position), not after the one before it in its stream "
                            + "(\(incident.state.lastPosition))")
                }
                switch type {
                case StreamSummary.response: try response(&summary, into: &incident.state)
                case StreamSummary.outcome: try outcome(&summary, into: &incident.state)
                default: throw StreamSummaryDamage(position: position, problem: "is a second report's in one incident's stream")
                }
                incident.state.version = version
                incident.state.lastPosition = position
                visitor.visit(
                    incident: incident.id, start: start, version: version, position: position,
                    summary: UnsafeRawBufferPointer(rebasing: value[8...]))
                open = incident
            }
            events += 1
            entry = try cursor.next()
        }
        if let finished = open { try close(finished) }
    }

    private mutating func report(_ s: inout StreamSummaryReader, start: UInt64, position: UInt64) throws -> Open {
        let precision = try s.enumeration(CaseIndex.precisions)
        let kind = try s.enumeration(CaseIndex.kinds)
        let sourcesMask = try s.byte()
        let flags = try s.byte()
        let recordedAt = try s.int()
        let occurredStart = flags & 4 != 0 ? try s.int() : nil
        var participants: PeopleRange?
        if flags & 1 != 0 { participants = try s.people() }
        let id = try s.text()
        let city = try s.text()
        let cityId = flags & 2 != 0 ? try s.text() : nil
        let occurredAt = try s.text()
        // An incident id is 1 to 128 bytes (SPEC §2); the texts are UTF-8, as the writer had them.
        guard !id.isEmpty, id.count <= 128, isValidUTF8(id), isValidUTF8(occurredAt), let name = texts.intern(city),
            let effectiveCityId = cityIdText(cityId, name: name)
        else { throw StreamSummaryDamage(position: position, problem: "has a text that is not one an event can have") }
        let c = self.city(effectiveCityId, reportedName: name)
        let state = FoldIncident(
            cityId: effectiveCityId, reportCity: name, reportCityId: cityId == nil ? -1 : effectiveCityId, occurredAt: -1,
            reportedAt: recordedAt, position: position, participants: participants, kind: kind,
            verification: IncidentState.verification(seenMask: sourcesMask), precision: precision, city: c)
        return Open(state: state, start: start, id: id, city: city, cityId: cityId, occurredAt: occurredAt, occurredStart: occurredStart)
    }

    /// The text of a report's city id: the one it carries, or the slug of its city's name (`name`, a text).
    private mutating func cityIdText(_ cityId: UnsafeRawBufferPointer?, name: Int32) -> Int32? {
        guard let cityId else { return texts.slug(of: name) }
        return texts.intern(cityId)
    }

    private mutating func city(_ id: Int32, reportedName: Int32) -> Int32 {
        FoldCity.find(id, reportedName: reportedName, texts: &texts, cities: &cities, index: &cityIndex, projector: projector)
    }

    private func response(_ s: inout StreamSummaryReader, into x: inout FoldIncident) throws {
        let flags = try s.byte()
        let listed = Int(try s.byte())
        var kinds = CaseCounts<ResponseKind>()
        for _ in 0..<listed {
            let index = Int(try s.byte())
            let count = try s.uint32()
            guard index < ResponseKind.storedCases.count, count <= CaseCounts<ResponseKind>.slots else { throw s.damaged }
            kinds[index] = Int64(count)
        }
        x.responseEvents += 1
        x.responses.add(kinds, times: 1)
        if flags & 1 != 0 { x.killed += try s.count() }
        if flags & 2 != 0 { x.injured += try s.count() }
        if flags & 4 != 0 { x.detained += try s.count() }
    }

    private func outcome(_ s: inout StreamSummaryReader, into x: inout FoldIncident) throws {
        let status = try s.enumeration(CaseIndex.statuses)
        let rawVerification = try s.byte()
        let corrections = try s.byte()
        x.outcomeEvents += 1
        x.status = status
        if rawVerification != 255 {
            guard Int(rawVerification) < CaseIndex.verifications.count else { throw s.damaged }
            x.verification = CaseIndex.verifications[Int(rawVerification)]
            x.verificationFromOutcome = true
        }
        if corrections & 1 != 0 { x.currentKind = try s.enumeration(CaseIndex.kinds) }
        if corrections & 2 != 0 { x.currentParticipants = nil }
        if corrections & 4 != 0 { x.currentParticipants = try s.people() }
    }

    /// Adds a folded incident to its city and appends its id, its stored form, and its `city-dates` entry when its
    /// city counts it.
    private mutating func close(_ incident: Open) throws {
        let x = incident.state
        let c = Int(x.city)
        if !cities[c].aliases.contains(x.reportCity) { cities[c].aliases.append(x.reportCity) }
        cities[c].add(x, sign: 1)
        let dated = x.status.countsInSums ? incident.occurredStart : nil
        if let start = dated, cities[c].takesIncident(startingAt: start, position: x.firstPosition) {
            cities[c].noteIncident(startingAt: start, position: x.firstPosition, date: try dateText(incident.occurredAt))
        }
        cities[c].lastPosition = max(cities[c].lastPosition, x.lastPosition)

        if dated == nil {
            byReportIncidents.append(Int32(incidentCount))
            byReportCityIds.append(x.cityId)
            byReportPositions.append(x.firstPosition)
        }
        ids.append(contentsOf: incident.id)
        idStarts.append(ids.count)
        // The city id is the report's own, or (rarely: a report without one) the slug of its name.
        let slug = incident.cityId == nil ? texts.bytes.withBytes(x.cityId) { Array($0) } : []
        slug.withUnsafeBytes { slug in
            let cityId = incident.cityId ?? slug
            if let start = dated {
                Keys.cityDate(cityId: cityId, start: start, position: x.firstPosition, into: &dateKeys)
                dateKeyStarts.append(dateKeys.count)
                Keys.cityDateValue(text: incident.occurredAt, incident: incident.id, into: &dateValues)
                dateValueStarts.append(dateValues.count)
            }
            if direct {
                // Written once into the scratch buffer, grown and written again only when it was too small.
                while true {
                    let written = scratch.withUnsafeMutableBytes { raw -> Int? in
                        var out = StoredForm(raw)
                        out.write(x, cityId: cityId, city: incident.city, occurredAt: incident.occurredAt, reportCityId: incident.cityId)
                        return out.overflowed ? nil : out.offset
                    }
                    if let written {
                        records.append(contentsOf: scratch[..<written])
                        break
                    }
                    scratch = [UInt8](repeating: 0, count: 2 * scratch.count)
                }
            } else {
                func string(_ bytes: UnsafeRawBufferPointer) -> String { String(decoding: bytes, as: UTF8.self) }
                x.state(
                    id: string(incident.id), cityId: string(cityId), city: string(incident.city),
                    occurredAt: string(incident.occurredAt), reportCityId: incident.cityId.map(string)
                ).encode(into: &records)
            }
            recordStarts.append(records.count)
        }
    }

    private mutating func dateText(_ bytes: UnsafeRawBufferPointer) throws -> Int32 {
        guard let text = texts.intern(bytes) else { throw LogError(.corrupt, "an incident's occurredAt is not UTF-8") }
        return text
    }

    /// The cities of `parts`, folded from consecutive stretches of the log in order, added up as one fold of the
    /// whole would have made them: counts summed; the name of a city the gazetteer does not know from the earliest
    /// stretch that has it; the first and last incident dates by ``IncidentDate``'s order.
    static func merge(_ parts: [StreamFold]) -> [CityState] {
        var texts = TextTable()
        var order: [String] = []
        var merged: [String: FoldCity] = [:]
        for part in parts {
            for city in part.cities {
                let id = city.base.cityId
                func text(_ t: Int32) -> Int32 { t >= 0 ? texts.intern(part.texts[t]) : -1 }
                guard var total = merged[id] else {
                    var first = city
                    first.aliases = city.aliases.map(text)
                    first.firstIncidentAt = text(city.firstIncidentAt)
                    first.lastIncidentAt = text(city.lastIncidentAt)
                    merged[id] = first
                    order.append(id)
                    continue
                }
                for alias in city.aliases.map(text) where !total.aliases.contains(alias) { total.aliases.append(alias) }
                total.incidents += city.incidents
                total.byKind.add(city.byKind, times: 1)
                total.participantsLow += city.participantsLow
                total.participantsHigh += city.participantsHigh
                total.participantsCounted += city.participantsCounted
                total.responses.add(city.responses, times: 1)
                total.killed += city.killed
                total.injured += city.injured
                total.detained += city.detained
                total.outcomes.add(city.outcomes, times: 1)
                total.verification.add(city.verification, times: 1)
                total.openIncidents += city.openIncidents
                if city.firstIncidentAt >= 0 {
                    total.noteFirst(startingAt: city.firstStart, position: city.firstDatePosition, date: text(city.firstIncidentAt))
                }
                if city.lastIncidentAt >= 0 {
                    total.noteLast(startingAt: city.lastStart, position: city.lastDatePosition, date: text(city.lastIncidentAt))
                }
                total.lastPosition = max(total.lastPosition, city.lastPosition)
                merged[id] = total
            }
        }
        return order.compactMap { merged[$0]?.state(texts) }
    }
}

/// Shown each `incident-streams` entry that ``StreamFold`` folds: the incident it belongs to (its id as the
/// report's summary holds it), its key, the position it names and its ``StreamSummary``, all bytes of the
/// transaction's pages.
protocol StreamEntryVisitor {
    mutating func visit(
        incident: UnsafeRawBufferPointer, start: UInt64, version: Int64, position: UInt64, summary: UnsafeRawBufferPointer)
}

/// The rebuild's visitor, which looks at nothing.
struct IgnoredStreamEntries: StreamEntryVisitor {
    /// Never read. It gives each fold's visitor a stack slot of its own: the values of an empty struct all share one
    /// address, so the `inout` accesses of folds running on several threads at once (the rebuild's stretches) were
    /// accesses to one place, which ThreadSanitizer reports as a race.
    private let slot: UInt8 = 0

    @inline(__always) func visit(
        incident: UnsafeRawBufferPointer, start: UInt64, version: Int64, position: UInt64, summary: UnsafeRawBufferPointer
    ) {}
}
