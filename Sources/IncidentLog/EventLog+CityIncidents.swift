import IncidentDomain
import LMDB
import StrictJSON

/// The entries of the incidents the cities do not date (``Keys/cityIncident(cityId:position:into:)``) of a segment's
/// folds, stretches of the log in order, gathered into flat tables and put in key order: the part of their write
/// that needs no transaction, so that it can run beside the write of the incidents.
///
/// No sort of the incidents: a fold meets them in the order they were reported, which is their order within a
/// city, so they are only grouped by city (counted, then placed), and the cities, a few hundred, sorted.
struct CityIncidentEntries: Sendable {
    /// Each city's id, once among all folds; a city's number is its place here.
    var cityIds: [[UInt8]] = []
    /// Of each incident, in the order the folds met them: the position of its report, and its id (bytes
    /// `idStarts[n]..<idStarts[n + 1]` of `ids`).
    var positions: [UInt64] = []
    var ids: [UInt8] = []
    var idStarts: [Int] = [0]
    /// The incidents' numbers in key order: by city, the cities in key order, then by report.
    var order: [Int32] = []
    /// The cities in key order, each with the end of its incidents in `order`.
    var runs: [(city: Int, end: Int)] = []

    init(_ folds: [StreamFold]) {
        var cityOfId: [[UInt8]: Int32] = [:]
        let total = folds.reduce(0) { $0 + $1.byReportCount }
        var cities: [Int32] = []
        cities.reserveCapacity(total)
        positions.reserveCapacity(total)
        idStarts.reserveCapacity(total + 1)
        for fold in folds {
            var cityOfText = [Int32](repeating: -1, count: fold.texts.strings.count)
            for text in fold.byReportCityIds {
                var city = cityOfText[Int(text)]
                if city < 0 {
                    let cityId = fold.texts.bytes.withBytes(text) { Array($0) }
                    if let known = cityOfId[cityId] {
                        city = known
                    } else {
                        city = Int32(cityIds.count)
                        cityOfId[cityId] = city
                        cityIds.append(cityId)
                    }
                    cityOfText[Int(text)] = city
                }
                cities.append(city)
            }
            positions.append(contentsOf: fold.byReportPositions)
            for i in 0..<fold.byReportCount {
                ids.append(contentsOf: fold.byReportId(i))
                idStarts.append(ids.count)
            }
        }
        var counts = [Int](repeating: 0, count: cityIds.count)
        for city in cities { counts[Int(city)] += 1 }
        let cityOrder = cityIds.indices.sorted { cityIds[$0].lexicographicallyPrecedes(cityIds[$1]) }
        var firsts = [Int](repeating: 0, count: cityIds.count)
        var placedSoFar = 0
        for city in cityOrder {
            firsts[city] = placedSoFar
            placedSoFar += counts[city]
            runs.append((city, placedSoFar))
        }
        order = [Int32](repeating: 0, count: total)
        for (n, city) in cities.enumerated() {
            order[firsts[Int(city)]] = Int32(n)
            firsts[Int(city)] += 1
        }
    }
}

extension EventLog {
    /// Writes the entries of the incidents the cities do not date of a segment, gathered and put in key order already
    /// (on another thread, while the incidents were written), in transactions of `entriesPerCommit`: with
    /// `MDB_APPEND` while `appending` (into a table that holds only dates, all of which sort before them).
    func writeCityIncidents(_ entries: CityIncidentEntries, appending: Bool, entriesPerCommit: Int) throws {
        let (cityIds, positions, ids, idStarts, order, runs) =
            (entries.cityIds, entries.positions, entries.ids, entries.idStarts, entries.order, entries.runs)
        var run = 0
        var start = 0
        while start < order.count {
            try stopIfAsked(during: "while rebuilding the projections, writing the cities' indexes of incidents")
            let end = min(start + entriesPerCommit, order.count)
            let firstRun = run
            // A write that fills the map is run again once the map has grown; these puts are the same each time.
            run = try environment.write { txn in
                let cursor = try txn.cursor(db.cityDates)
                var run = firstRun
                // The key of the run's city, whose last 8 bytes each entry sets to the position of its report.
                var key: [UInt8] = []
                func startKey() {
                    key.removeAll(keepingCapacity: true)
                    cityIds[runs[run].city].withUnsafeBytes { Keys.cityIncident(cityId: $0, position: 0, into: &key) }
                }
                startKey()
                try ids.withUnsafeBytes { ids in
                    for k in start..<end {
                        if runs[run].end <= k {
                            while runs[run].end <= k { run += 1 }
                            startKey()
                        }
                        let n = Int(order[k])
                        key.withUnsafeMutableBytes { $0.storeBytes(of: positions[n].bigEndian, toByteOffset: $0.count - 8, as: UInt64.self) }
                        let id = UnsafeRawBufferPointer(rebasing: ids[idStarts[n]..<idStarts[n + 1]])
                        try key.withUnsafeBytes { key in
                            do {
                                try cursor.put(key: key, value: id, flags: appending ? .append : [])
                            } catch let error as LMDBError where error.isKeyExist {
                                // Not after the last entry: only a damaged log has two reports at one position.
                                try cursor.put(key: key, value: id)
                            }
                        }
                    }
                }
                return run
            }
            start = end
        }
    }
}

/// Where a listing of a city's incidents (``EventLog/cityIncidents(cityId:statuses:after:limit:lookingAtMost:)``)
/// goes on from: after a counted incident, by its date's start and the position of its report (its entry among
/// the city's dates), or after a report among the city's incidents in the order they were reported (where the
/// retracted ones are listed). As text, `d` START `.` POSITION or `r` POSITION, the `next` of an `incidents` answer.
public enum CityIncidentsCursor: Sendable, Hashable {
    case counted(start: Int64, position: UInt64)
    case retracted(position: UInt64)

    public var text: String {
        switch self {
        case .counted(let start, let position): return "d\(start).\(position)"
        case .retracted(let position): return "r\(position)"
        }
    }

    /// The cursor `text` spells as ``text`` writes it; nil for any other text: no `+`, no leading zero, no `-0`,
    /// a minus only before a start.
    public init?(text: String) {
        let digits = text.utf8.dropFirst()
        let cursor: CityIncidentsCursor
        switch text.utf8.first {
        case UInt8(ascii: "d")?:
            let parts = String(decoding: digits, as: UTF8.self).split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 2, let start = Int64(parts[0]), let position = UInt64(parts[1]) else { return nil }
            cursor = .counted(start: start, position: position)
        case UInt8(ascii: "r")?:
            guard let position = UInt64(String(decoding: digits, as: UTF8.self)) else { return nil }
            cursor = .retracted(position: position)
        default:
            return nil
        }
        // Swift's integers read `+5` and `007` too, which the daemon never writes.
        guard cursor.text == text else { return nil }
        self = cursor
    }

    /// Why a listing of the incidents whose latest status is in `statuses` cannot have given this cursor, or nil
    /// when it can: its part of the listing is one those statuses leave out, and it would answer an empty, finished
    /// list.
    public func mismatch(statuses: Set<OutcomeStatus>) -> String? {
        switch self {
        case .counted where !statuses.contains(where: \.countsInSums):
            return "a cursor of the incidents a city counts (d…), which a listing whose status names only retracted never gives"
        case .retracted where !statuses.contains(.retracted):
            return "a cursor of the retracted incidents (r…), which only a listing whose status names retracted gives"
        default:
            return nil
        }
    }
}

/// A page of a city's incidents: one summary each, and where to go on from (nil once the listing is done).
public struct CityIncidentsPage: Sendable {
    public var incidents: [JSONValue]
    public var next: CityIncidentsCursor?
    /// How many entries of the city's indexes were looked at.
    public var lookedAt: Int
}

extension EventLog {
    /// Up to `limit` of city `cityId`'s incidents whose latest status is in `statuses`, after `cursor`, one summary
    /// each: first the incidents the city counts (every status but `retracted`), by the start of their
    /// `occurredAt` and then by report, read from the city's dates in `city-dates`; then, when `statuses` holds
    /// `retracted`, the retracted ones, in the order they were reported, from the city's list of the incidents it
    /// does not date (an incident whose date does not read, which no event a daemon accepted has, is listed only
    /// when it is retracted). No more than `budget` entries are looked at, so a request is short however few
    /// incidents match; `next` is nil once every incident has been looked at.
    public func cityIncidents(
        cityId: String, statuses: Set<OutcomeStatus>, after cursor: CityIncidentsCursor?, limit: Int, lookingAtMost budget: Int
    ) throws -> CityIncidentsPage {
        try environment.read { txn in
            var page = CityIncidentsPage(incidents: [], next: nil, lookedAt: 0)
            let indexPrefix = Keys.cityIncidentPrefix(cityId)
            var retractedFrom: UInt64 = 0
            switch cursor {
            case nil, .counted?:
                guard statuses.contains(where: \.countsInSums) else { break }
                var datePrefix = Array(cityId.utf8)
                datePrefix.append(0)
                var seek = datePrefix
                var last: (start: Int64, position: UInt64)?
                if case .counted(let start, let position)? = cursor {
                    Keys.appendStart(start, to: &seek)
                    seek.append(contentsOf: Keys.position(position))
                    last = (start, position)
                }
                let dates = try txn.cursor(db.cityDates)
                var entry = try dates.seek(atOrAfter: seek)
                if let (key, _) = entry, last != nil, key.elementsEqual(seek) { entry = try dates.next() }
                while let (key, value) = entry, key.starts(with: datePrefix) {
                    guard let (_, start, position) = Keys.readCityDate(key), let (_, id) = Keys.readCityDateValue(value) else {
                        throw IncidentError.damagedProjection("city", ": \(cityId.prefix(128))'s index of incident dates does not read")
                    }
                    if page.lookedAt >= budget || page.incidents.count >= limit {
                        page.next = last.map { .counted(start: $0.start, position: $0.position) } ?? cursor
                        return page
                    }
                    page.lookedAt += 1
                    last = (start, position)
                    let incident = try incidentState(named: id, txn)
                    guard incident.cityId == cityId, incident.firstPosition == position, incident.status.countsInSums else {
                        throw Self.misnamed(incident, cityId: cityId, position: position, among: "index of incident dates")
                    }
                    if statuses.contains(incident.status) { page.incidents.append(try summary(of: incident, txn)) }
                    entry = try dates.next()
                }
            case .retracted(let position)?:
                retractedFrom = position
            }
            guard statuses.contains(.retracted) else { return page }
            // The retracted incidents, which the dates do not hold, in the order they were reported, from the
            // city's list of the incidents it does not date. (Position 0 is before every report.)
            var seek = indexPrefix
            seek.append(contentsOf: Keys.position(retractedFrom))
            let index = try txn.cursor(db.cityDates)
            var entry = try index.seek(atOrAfter: seek)
            if let (key, _) = entry, key.elementsEqual(seek) { entry = try index.next() }
            var last = retractedFrom
            while let (key, value) = entry, key.starts(with: indexPrefix) {
                guard let (_, position) = Keys.readCityIncident(key) else {
                    throw IncidentError.damagedProjection("city", ": \(cityId.prefix(128))'s list of the incidents it does not date does not read")
                }
                if page.lookedAt >= budget || page.incidents.count >= limit {
                    page.next = .retracted(position: last)
                    return page
                }
                page.lookedAt += 1
                last = position
                let incident = try incidentState(named: value, txn)
                guard incident.cityId == cityId, incident.firstPosition == position,
                    !incident.status.countsInSums || ParsedDate.parse(incident.occurredAt) == nil
                else {
                    throw Self.misnamed(incident, cityId: cityId, position: position, among: "list of the incidents it does not date")
                }
                if incident.status == .retracted { page.incidents.append(try summary(of: incident, txn)) }
                entry = try index.next()
            }
            return page
        }
    }

    /// The `log_damaged` of an entry at report `position` in city `cityId`'s `list` that names `incident`, whose
    /// projection is of another city or report, or (a counted one among those the city does not date, or the other
    /// way round) belongs in the other list: the entry was changed on the disk.
    private static func misnamed(_ incident: IncidentState, cityId: String, position: UInt64, among list: String) -> IncidentError {
        IncidentError.damagedProjection(
            "city",
            ": \(cityId.prefix(128))'s \(list) names incident \(incident.incident.prefix(128)) for the report at position \(position), "
                + "where that incident was reported at position \(incident.firstPosition) in \(incident.cityId.prefix(128)), \(incident.status.rawValue)")
    }

    /// The stored projection of the incident whose id is `id`.
    private func incidentState(named id: UnsafeRawBufferPointer, _ txn: borrowing ReadTransaction) throws -> IncidentState {
        let name = String(decoding: id, as: UTF8.self)
        // No incident id is empty or longer than a key can be (LMDB refuses to look those up).
        guard (1...511).contains(id.count), let raw = try txn.get(db.incidents, key: id) else {
            throw IncidentError.damagedProjection(
                "city", ": the incident \(id.isEmpty ? "(an empty id)" : String(name.prefix(128))) its city lists has no stored projection")
        }
        return try IncidentState(encoded: raw, of: name)
    }

    /// One incident of a listing: what it is, when and where (its location as its outcomes corrected it), how it
    /// stands and where its report is.
    private func summary(of incident: IncidentState, _ txn: borrowing ReadTransaction) throws -> JSONValue {
        var current: ReportData?
        // The report, and the outcomes that may correct it (the responses, which correct nothing, left unread).
        var positions = [incident.firstPosition]
        if incident.outcomeEvents > 0 {
            let streams = try txn.cursor(db.streams)
            var entry = try streams.seek(atOrAfter: Keys.stream(start: incident.firstPosition, version: 2))
            while let (key, value) = entry, key.count == 16, Keys.readPosition(key) == incident.firstPosition, value.count > 8 {
                if value[8] == StreamSummary.outcome, let position = Keys.readPosition(value) { positions.append(position) }
                entry = try streams.next()
            }
        }
        for position in positions {
            guard let raw = try txn.get(db.events, key: Keys.position(position)) else {
                throw LogError(.corrupt, "event \(position) of incident \(incident.incident) is missing")
            }
            switch try EventLog.storedEvent(raw, at: position).event.data {
            case .reported(let report): current = report
            case .outcome(let outcome):
                if let corrections = outcome.corrections { current = current?.applying(corrections) }
            case .responded: break
            }
        }
        return [
            "incident": .string(incident.incident),
            "kind": .string(incident.current.kind.rawValue),
            "occurredAt": .string(incident.occurredAt),
            "location": current?.location.map { .string($0) } ?? .null,
            "status": .string(incident.status.rawValue),
            "verification": .string(incident.verification.rawValue),
            "responseEvents": .int(incident.responseEvents),
            "version": .int(incident.version),
            "firstPosition": .int(Int64(incident.firstPosition)),
            "lastPosition": .int(Int64(incident.lastPosition)),
        ]
    }
}

extension EventLog {
    /// ``events(from:limit:maxBytes:filter:)`` of a `filter` on a city (and perhaps a type), read from the city's
    /// entries in `city-dates` (its dates and its list of the incidents it does not date, which together hold each
    /// incident reported in it once): the streams of its incidents merged in position order, from `from` on. The
    /// incidents reported from `from` on are read in the order they were reported, until those left can only add
    /// events past the `limit` found; each reported before `from` is looked up too, since its later events may come
    /// after it. Nil when those outnumber the events from `from` on, which a scan of the log then reads for less.
    func cityEventsFromIndex(from: UInt64, limit: Int, maxBytes: Int, cityId: String, type: EventType?) throws
        -> (events: [JSONValue], next: UInt64)?
    {
        let wanted: UInt8? = type.map {
            switch $0 {
            case .incidentReported: StreamSummary.report
            case .responseObserved: StreamSummary.response
            case .outcomeUpdated: StreamSummary.outcome
            }
        }
        return try environment.read { txn -> (events: [JSONValue], next: UInt64)? in
            let from = max(from, 1)
            let head = try Head.read(txn, db).position
            guard from <= head, limit > 0 else { return ([], from) }
            let eventsFrom = head - from + 1
            // The `limit` first positions found, the greatest on top.
            var found = GreatestOnTop()
            // The positions of the city's reports, read in the order they were reported.
            var starts: [UInt64] = []
            var reportedBefore: UInt64 = 0
            func note(_ start: UInt64) -> Bool {
                starts.append(start)
                if start < from { reportedBefore += 1 }
                return reportedBefore <= eventsFrom
            }
            let index = try txn.cursor(db.cityDates)
            var datePrefix = Array(cityId.utf8)
            datePrefix.append(0)
            var entry = try index.seek(atOrAfter: datePrefix)
            while let (key, _) = entry, key.starts(with: datePrefix) {
                guard let (_, _, start) = Keys.readCityDate(key) else {
                    throw IncidentError.damagedProjection("city", ": \(cityId.prefix(128))'s index of incident dates does not read")
                }
                guard note(start) else { return nil }
                entry = try index.next()
            }
            let prefix = Keys.cityIncidentPrefix(cityId)
            entry = try index.seek(atOrAfter: prefix)
            while let (key, _) = entry, key.starts(with: prefix) {
                guard let (_, start) = Keys.readCityIncident(key) else {
                    throw IncidentError.damagedProjection("city", ": \(cityId.prefix(128))'s list of the incidents it does not date does not read")
                }
                guard note(start) else { return nil }
                entry = try index.next()
            }
            // Every incident reported in the city is in one of the two parts, once; one missing (an entry deleted
            // on the disk) would leave its events out, so a count that is not the city's is left to the scan.
            // Sorted, each once (an entry in both parts, damage, would read its events twice).
            starts.sort()
            var kept = 0
            for start in starts where kept == 0 || start != starts[kept - 1] {
                starts[kept] = start
                kept += 1
            }
            starts.removeLast(starts.count - kept)
            var reported: Int64 = 0
            if let stored = try txn.get(db.cities, key: Array(cityId.utf8)) {
                guard let city = try? CityState(stored: stored, id: cityId) else { return nil }
                reported = city.outcomes.total
            }
            guard reported == Int64(starts.count) else { return nil }
            let streams = try txn.cursor(db.streams)
            for start in starts {
                if found.count >= limit, let greatest = found.top, start > greatest { break }
                var stream = try streams.seek(atOrAfter: Keys.stream(start: start, version: 1))
                while let (streamKey, value) = stream, streamKey.count == 16, Keys.readPosition(streamKey) == start,
                    value.count > 8, let position = Keys.readPosition(value)
                {
                    stream = try streams.next()
                    if position < from || (wanted != nil && value[8] != wanted) { continue }
                    if found.count < limit {
                        found.push(position)
                    } else if let greatest = found.top, position < greatest {
                        found.replaceTop(with: position)
                    } else {
                        // Its later events come later still.
                        break
                    }
                }
            }
            let complete = found.count < limit
            var events: [JSONValue] = []
            var bytes = 0
            var next = max(from, head + 1)
            var cityOfIncident: [String: String] = [:]
            for position in found.sorted() {
                if bytes >= maxBytes { return (events, next) }
                guard let raw = try txn.get(db.events, key: Keys.position(position)) else { continue }
                let document = try EventLog.readingStoredEvent(at: position) { try EventLog.eventDocument(raw) }
                // The event as stored must be the one its summary stands for, of this type and of an incident of
                // this city, as a scan decides it. One changed in place (damage the hash chain shows) is left to
                // the scan, which answers as it always did.
                guard let incident = document["incident"]?.stringValue, type.map({ document["type"]?.stringValue == $0.rawValue }) ?? true
                else { return nil }
                if cityOfIncident[incident] == nil {
                    guard let state = try txn.get(db.incidents, key: Array(incident.utf8)) else { return nil }
                    cityOfIncident[incident] = try IncidentState(encoded: state, incident: incident).cityId
                }
                guard cityOfIncident[incident] == cityId else { return nil }
                events.append(document)
                bytes += raw.count
                next = position + 1
            }
            if complete { next = max(from, head + 1) }
            return (events, next)
        }
    }
}

/// Positions kept as a binary heap, the greatest on top: the `limit` smallest of those a merge finds.
struct GreatestOnTop {
    private var heap: [UInt64] = []

    var count: Int { heap.count }
    var top: UInt64? { heap.first }

    mutating func push(_ value: UInt64) {
        heap.append(value)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[parent] < heap[child] else { break }
            heap.swapAt(parent, child)
            child = parent
        }
    }

    /// Puts `value`, smaller than the top, in the top's place.
    mutating func replaceTop(with value: UInt64) {
        heap[0] = value
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var largest = parent
            if left < heap.count, heap[left] > heap[largest] { largest = left }
            if right < heap.count, heap[right] > heap[largest] { largest = right }
            if largest == parent { return }
            heap.swapAt(parent, largest)
            parent = largest
        }
    }

    func sorted() -> [UInt64] { heap.sorted() }
}
