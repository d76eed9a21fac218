#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON
import Synchronization

/// Projections seen through one write transaction: what this batch changed, over what is stored. A request
/// of several events that is refused halfway must leave no trace, so while one runs (``beginRequest(undoable:)``)
/// every change it makes is noted with the value it replaced, and ``discardRequest()`` puts those back. A
/// request of one event cannot be refused once its projection changes start (the rules were checked before),
/// so it keeps no undo log and its states are changed in place.
struct TransactionProjections: ProjectionStore {
    let txn: UnsafeWriteTransaction
    let db: Databases
    let committedCities: [String: CityState]
    /// Every state this batch changed (and, for the request running, is changing).
    var batchIncidents: [String: IncidentState] = [:]
    var batchCities: [String: CityState] = [:]
    /// States read from the log and not changed yet: read once per batch, not once per rule and once per fold.
    private var storedIncidents: [String: IncidentState] = [:]
    private var undoIncidents: [(String, IncidentState?)] = []
    private var undoCities: [(String, CityState?)] = []
    /// The `city-dates` entries (dates, and the cities' lists of the incidents they do not date) the request running
    /// changed, each with the value it had (nil: it had none), in order. The index is changed in the transaction at
    /// once, not at ``flush()``, so that a city's dates read from it see the batch's changes; a refused request's are
    /// put back from here.
    private var undoDates: [(key: [UInt8], value: [UInt8]?)] = []
    private var undoable = false
    /// Where a `city-dates` key and value are made, kept from one report to the next.
    private var dateKey: [UInt8] = []
    private var dateValue: [UInt8] = []

    init(txn: UnsafeWriteTransaction, db: Databases, committedCities: [String: CityState]) {
        self.txn = txn
        self.db = db
        self.committedCities = committedCities
    }

    mutating func incident(_ id: String) throws -> IncidentState? {
        if let s = batchIncidents[id] ?? storedIncidents[id] { return s }
        guard let raw = try txn.get(db.incidents, key: id) else { return nil }
        let state = try IncidentState(encoded: raw, of: id)
        storedIncidents[id] = state
        return state
    }

    mutating func takeIncident(_ id: String) throws -> IncidentState? {
        if !undoable, let s = batchIncidents.removeValue(forKey: id) { return s }
        if let s = storedIncidents.removeValue(forKey: id) { return s }
        return try incident(id)
    }

    mutating func city(_ id: String) throws -> CityState? {
        if let s = batchCities[id] ?? committedCities[id] { return s }
        guard let raw = try txn.get(db.cities, key: id) else { return nil }
        return try CityState(stored: raw, id: id)
    }

    mutating func takeCity(_ id: String) throws -> CityState? {
        if !undoable, let s = batchCities.removeValue(forKey: id) { return s }
        return try city(id)
    }

    mutating func updateCity(_ id: String, orNew make: () -> CityState, _ change: (inout CityState) throws -> Void) throws {
        // A request that may yet be refused keeps the city it replaces in its undo log, so it changes a copy.
        if !undoable, let index = batchCities.index(forKey: id) {
            try change(&batchCities.values[index])
            return
        }
        var city = try takeCity(id) ?? make()
        try change(&city)
        put(city)
    }

    /// Every city, for the suggestions of an unknown city's name; one whose stored document does not read back is
    /// left out (an append that names it is refused as ``city(_:)`` reads it), as the queries' suggestions leave it.
    mutating func allCities() throws -> [CityState] {
        var all: [String: CityState] = [:]
        try txn.forEach(db.cities) { key, value in
            let id = String(decoding: key, as: UTF8.self)
            all[id] = try? CityState(stored: value, id: id)
            return true
        }
        all.merge(batchCities) { $1 }
        return Array(all.values)
    }

    /// One put in `city-dates`, for each report whose date reads; a reinstatement deletes the incident's entry
    /// among those its city does not date, too.
    mutating func addIncidentDate(_ date: IncidentDate, reinstating: Bool) throws {
        if reinstating {
            let key = Keys.cityIncidentKey(cityId: date.cityId, position: date.position)
            guard let held = try txn.get(db.cityDates, key: key).map({ Array($0) }) else {
                throw IncidentDate.missing(date, among: "incidents it does not date")
            }
            if undoable { undoDates.append((key, held)) }
            try txn.delete(db.cityDates, key: key)
        }
        dateKey.removeAll(keepingCapacity: true)
        dateValue.removeAll(keepingCapacity: true)
        var (cityId, text, incident) = (date.cityId, date.text, date.incident)
        cityId.withUTF8 {
            Keys.cityDate(cityId: UnsafeRawBufferPointer($0), start: date.start.microseconds, position: date.position, into: &dateKey)
        }
        text.withUTF8 { text in
            incident.withUTF8 { Keys.cityDateValue(text: UnsafeRawBufferPointer(text), incident: UnsafeRawBufferPointer($0), into: &dateValue) }
        }
        // The key holds the report's own position, so no entry was there before (undone, it is deleted).
        if undoable { undoDates.append((dateKey, nil)) }
        try dateKey.withUnsafeBytes { key in
            try dateValue.withUnsafeBytes { try txn.put(db.cityDates, key: key, value: $0) }
        }
    }

    /// One put in `city-dates`, for a report whose date does not read: its entry among the incidents its city does
    /// not date.
    mutating func addCityIncident(cityId: String, position: UInt64, incident: String) throws {
        try putCityIncident(key: Keys.cityIncidentKey(cityId: cityId, position: position), incident: incident)
    }

    /// Deletes the incident's date from its city's dates, and lists it among the incidents the city does not date.
    mutating func removeIncidentDate(_ date: IncidentDate) throws {
        let key = Keys.cityDate(date)
        guard let held = try txn.get(db.cityDates, key: key).map({ Array($0) }) else { throw IncidentDate.missing(date) }
        if undoable { undoDates.append((key, held)) }
        try txn.delete(db.cityDates, key: key)
        try putCityIncident(key: Keys.cityIncidentKey(cityId: date.cityId, position: date.position), incident: date.incident)
    }

    private mutating func putCityIncident(key: [UInt8], incident: String) throws {
        // Keyed by the report's own position: no entry was there before (undone, it is deleted).
        if undoable { undoDates.append((key, nil)) }
        var incident = incident
        try key.withUnsafeBytes { key in
            try incident.withUTF8 { try txn.put(db.cityDates, key: key, value: UnsafeRawBufferPointer($0)) }
        }
    }

    /// Read from the first entry of the city's range, and from its last: the first of those with the last one's start.
    /// Each date read must start where its key says: a text changed on the disk would otherwise become the city's.
    mutating func incidentDateSpan(of cityId: String) throws -> (first: String, last: String)? {
        var prefix = Array(cityId.utf8)
        prefix.append(0)
        let damaged = IncidentError.damagedProjection("city", ": \(cityId.prefix(128))'s index of incident dates does not read")
        // The date of an entry, when it reads and starts where its key says.
        func date(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> String {
            guard let start = Keys.readCityDate(key)?.start, let text = Keys.readCityDateValue(value)?.text,
                let parsed = ParsedDate.parse(String(decoding: text, as: UTF8.self)), parsed.start.microseconds == start
            else { throw damaged }
            return String(decoding: text, as: UTF8.self)
        }
        let cursor = try txn.cursor(db.cityDates)
        guard let (firstKey, firstValue) = try cursor.seek(atOrAfter: prefix), firstKey.starts(with: prefix) else { return nil }
        let first = try date(firstKey, firstValue)
        var end = prefix
        end[end.count - 1] = 1
        // The entry before the next city's first, or the last of all.
        let lastEntry = try cursor.seek(atOrAfter: end) != nil ? cursor.previous() : cursor.last()
        guard let (lastKey, _) = lastEntry, lastKey.starts(with: prefix), let last = Keys.readCityDate(lastKey) else { throw damaged }
        Keys.appendStart(last.start, to: &prefix)
        prefix.append(contentsOf: repeatElement(0, count: 8))
        guard let (earliestKey, earliestValue) = try cursor.seek(atOrAfter: prefix) else { throw damaged }
        return (first, try date(earliestKey, earliestValue))
    }

    mutating func put(_ incident: consuming IncidentState) {
        let id = incident.incident
        let previous = batchIncidents.updateValue(incident, forKey: id)
        if undoable { undoIncidents.append((id, previous)) }
    }

    mutating func put(_ city: consuming CityState) {
        let id = city.cityId
        let previous = batchCities.updateValue(city, forKey: id)
        if undoable { undoCities.append((id, previous)) }
    }

    mutating func reserveCapacity(_ events: Int) {
        batchIncidents.reserveCapacity(events)
        storedIncidents.reserveCapacity(events / 2)
    }

    /// A request starts; `undoable` when it may yet be refused after changing projections (several events).
    mutating func beginRequest(undoable: Bool) {
        self.undoable = undoable
    }

    mutating func acceptRequest() {
        undoIncidents.removeAll(keepingCapacity: true)
        undoCities.removeAll(keepingCapacity: true)
        undoDates.removeAll(keepingCapacity: true)
        undoable = false
    }

    mutating func discardRequest() throws {
        for (id, previous) in undoIncidents.reversed() { batchIncidents[id] = previous }
        for (id, previous) in undoCities.reversed() { batchCities[id] = previous }
        for (key, previous) in undoDates.reversed() {
            if let previous {
                try txn.put(db.cityDates, key: key, value: previous)
            } else {
                try txn.delete(db.cityDates, key: key)
            }
        }
        acceptRequest()
    }

    /// Writes every projection this batch changed, and returns the cities' new documents.
    @discardableResult
    mutating func flush() throws -> [String: [UInt8]] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(512)
        // Each state written where the dictionary keeps it: iterating the dictionary would copy every one.
        var index = batchIncidents.startIndex
        while index != batchIncidents.endIndex {
            try batchIncidents.values[index].store(in: txn, db, buffer: &buffer)
            batchIncidents.formIndex(after: &index)
        }
        var documents: [String: [UInt8]] = [:]
        for (id, state) in batchCities {
            let document = state.canonicalBytes()
            try txn.put(db.cities, key: id, value: document)
            documents[id] = document
        }
        return documents
    }
}

extension IncidentState {
    /// Writes the stored form under the incident's id. Mutating only so that it is called on the value where a
    /// dictionary keeps it (its `values` subscript's `_modify`), not on a copy; it changes nothing.
    fileprivate mutating func store(in txn: UnsafeWriteTransaction, _ db: Databases, buffer: inout [UInt8]) throws {
        buffer.removeAll(keepingCapacity: true)
        encode(into: &buffer)
        var key = incident
        try key.withUTF8 { key in
            try buffer.withUnsafeBytes { try txn.put(db.incidents, key: UnsafeRawBufferPointer(key), value: $0) }
        }
    }
}

/// One event ready to be written: its key, its stored bytes and its index entries.
struct StagedEvent {
    var position: UInt64
    var incident: String
    /// Where the event's incident starts: the position of its report, the first half of its stream key.
    var streamStart: UInt64
    var version: Int64
    var eventId: String
    var contentDigest: [UInt8]
    /// hash ‖ canonical JSON, as stored.
    var value: [UInt8]
    /// Where its `incident-streams` value (position ‖ ``StreamSummary``) is in the batch's buffer of them.
    var streamValue: Range<Int>
}

extension EventLog {
    /// Writes a batch of appends in one transaction and returns each one's result, in order. A request that
    /// breaks a rule is refused alone; the others of the batch still land. Only the committer thread calls this.
    ///
    /// So is a request whose events meet a stored projection read back damaged as they are folded into it (a count
    /// that overflows, a city's document that does not read back): `log_damaged`, nothing of it stored. Its fold
    /// may have changed the batch's projections in place (a request of one event keeps no undo log), so the
    /// transaction is given up and the batch written again without it.
    func commit(_ batch: [AppendRequest], committedCities: inout [String: CityState]) -> [Result<AppendReceipt, AppendFailure>] {
        var attempt = commitOnce(batch, committedCities: &committedCities)
        var refused: [Int: AppendFailure] = [:]
        while true {
            switch attempt {
            case .success(let results) where refused.isEmpty:
                return results
            case .success(let results):
                var rest = results.makeIterator()
                return batch.indices.map { refused[$0].map { .failure($0) } ?? rest.next() ?? .failure(.storage("a request of the batch went unanswered")) }
            case .failure(let damaged):
                let remaining = batch.indices.filter { refused[$0] == nil }
                refused[remaining[damaged.request]] = .rejected(damaged.error, index: damaged.index)
                let rest = remaining.filter { refused[$0] == nil }.map { batch[$0] }
                attempt = rest.isEmpty ? .success([]) : commitOnce(rest, committedCities: &committedCities)
            }
        }
    }

    /// A request of a batch (`request`, its index there) whose event `index` met a stored projection read back
    /// damaged as it was folded: see ``commit(_:committedCities:)``.
    struct DamagedProjection: Error {
        var request: Int
        var index: Int
        var error: IncidentError
    }

    /// ``commit(_:committedCities:)`` of the whole batch in one transaction, or the first request whose fold met a
    /// damaged projection, with nothing written.
    private func commitOnce(
        _ batch: [AppendRequest], committedCities: inout [String: CityState]
    ) -> Result<[Result<AppendReceipt, AppendFailure>], DamagedProjection> {
        let admission = Admission(gazetteer: gazetteer, memo: gazetteerMemo)
        var results: [Result<AppendReceipt, AppendFailure>] = []
        var newCities: [String: CityState] = [:]
        var cityDocuments: [String: [UInt8]] = [:]
        // A log that already holds more than its maximum (it grew under a larger one) is full: an append might still
        // fit in pages it has freed, but the maximum is a bound on what it holds, and is refused as at the maximum.
        if pastMaximumSize != nil {
            let failure = sizeLimitRefusal()
            return .success(batch.map { _ in .failure(failure) })
        }
        if let failure = dataFileReplacement() { return .success(batch.map { _ in .failure(failure) }) }
        do {
            try environment.write { txn in
                results.removeAll(keepingCapacity: true)
                let handle = txn.unsafeHandle
                var head = try Head.read(txn, db)
                let now = Timestamp.now()
                let recordedAt = Timestamp(microseconds: max(now.microseconds, head.recordedAt?.microseconds ?? 0))
                var recordedAtBytes: [UInt8] = []
                recordedAt.writeISO8601(quoted: true, into: &recordedAtBytes)
                var recordedByBytes: [UInt8] = []
                // Whose `recordedBy` the bytes hold: consecutive requests mostly come from the same user.
                var recordedByWritten: Recorder?
                var store = TransactionProjections(txn: handle, db: db, committedCities: committedCities)
                let events = batch.reduce(0) { $0 + $1.events.count }
                store.reserveCapacity(events)
                var staged: [StagedEvent] = []
                staged.reserveCapacity(events)
                var batchEventIds: [String: (position: UInt64, digest: [UInt8])] = [:]
                batchEventIds.reserveCapacity(events)
                var streamValues: [UInt8] = []
                streamValues.reserveCapacity(events * 96)

                // One cursor a database: the events go at the end, and an event id's or a stream's key mostly
                // falls on the page the lookup or put before it stood on, where a cursor skips the search from
                // the root.
                let eventIdsCursor = try handle.cursor(db.eventIds)

                // Every two requests (about 50 µs of this thread's work), and every two events put, the event
                // loops get their chance at the CPU.
                var courtesy = YieldPoint(every: 2)
                for (requestIndex, request) in batch.enumerated() {
                    courtesy.pass()
                    let mark = (head: head, staged: staged.count, streamValues: streamValues.count)
                    store.beginRequest(undoable: request.events.count > 1)
                    // Event ids this request of several events added to `batchEventIds`, with the index of the event
                    // that did: to name it when the request uses the id again for something else, and to take them
                    // back if the request is refused.
                    var requestEventIds: [String: Int] = [:]
                    var positions: [UInt64] = []
                    var incidents: [String] = []
                    var alreadyStored: [Int] = []
                    var receipt = AppendReceipt(positions: [], incidents: [])
                    // By uid and bytes: String's == takes two spellings of a name (NFC, NFD) for one.
                    let sameRecorder = recordedByWritten.map {
                        $0.uid == request.recordedBy.uid && Self.sameBytes($0.user, request.recordedBy.user)
                    }
                    if sameRecorder != true {
                        recordedByBytes.removeAll(keepingCapacity: true)
                        request.recordedBy.writeCanonical(into: &recordedByBytes)
                        recordedByWritten = request.recordedBy
                    }
                    // The ids the request's reports give by hand, which an id generated for one of its reports before
                    // them must not take.
                    let reserved: Set<String> =
                        request.events.count > 1 && request.events.contains { $0.type == .incidentReported && $0.incident == nil }
                        ? Set(request.events.lazy.filter { $0.type == .incidentReported }.compactMap(\.incident)) : []
                    do {
                        for (index, proposal) in request.events.enumerated() {
                            do {
                                let parts = request.encoded[index]
                                let digest = parts.contentDigest
                                if let eventId = proposal.eventId,
                                    let earlier = try batchEventIds[eventId] ?? storedEventId(eventId, eventIdsCursor)
                                {
                                    guard
                                        try Self.isRetry(
                                            proposal, digest: digest, storedDigest: earlier.digest,
                                            stored: { try storedEvent(position: earlier.position, staged: staged, handle) })
                                    else {
                                        // An earlier event of this request holds no position: the request is
                                        // refused whole, and the one it was given goes to the next event stored.
                                        if let first = requestEventIds[eventId] {
                                            throw IncidentError(
                                                .duplicateEventId,
                                                "event id \(eventId) is used twice in this request, by events \(first) and \(index), for different events",
                                                details: ["eventId": .string(eventId), "firstIndex": .int(Int64(first))])
                                        }
                                        throw IncidentError(
                                            .duplicateEventId,
                                            "event id \(eventId) was already used for a different event at position \(earlier.position)",
                                            details: ["eventId": .string(eventId), "position": .int(Int64(earlier.position))])
                                    }
                                    positions.append(earlier.position)
                                    incidents.append(try incidentOf(position: earlier.position, staged: staged, handle))
                                    alreadyStored.append(index)
                                    continue
                                }
                                let admitted = try admission.admit(
                                    proposal, allowNewCity: request.allowNewCity, restoresCities: request.restoresCities,
                                    recordedAt: recordedAt, reserved: reserved, store: &store)
                                if let restored = admitted.restoredCity { receipt.note(restored) }
                                if let made = admitted.newCity { receipt.note(made) }
                                let eventId = proposal.eventId ?? EventID.random()
                                // The stored value is the hash followed by the canonical bytes it covers.
                                var value: [UInt8] = []
                                value.reserveCapacity(32 + parts.data.count + parts.sources.count + 512)
                                value.append(contentsOf: ChainHash.zero)
                                let prevHash = EventLog.writeStored(
                                    into: &value, parts: parts, admitted: admitted, eventId: eventId,
                                    position: head.position + 1, previous: head.hash, recordedAt: recordedAtBytes,
                                    recordedBy: recordedByBytes)
                                let event = RecordedEvent(
                                    position: head.position + 1, eventId: eventId, incident: admitted.incident,
                                    version: admitted.version, occurredAt: admitted.occurredAt,
                                    precision: admitted.precision, recordedAt: recordedAt, recordedBy: request.recordedBy,
                                    sources: proposal.sources, data: admitted.data, prevHash: prevHash)
                                assert(Array(value[32...]) == event.canonicalBytes(), "the stored bytes are not the event's canonical form")
                                let hash = value.withUnsafeMutableBytes { raw in
                                    let hash = ChainHash.link(previous: head.hash, canonical: UnsafeRawBufferPointer(rebasing: raw[32...]))
                                    raw.copyBytes(from: hash)
                                    return hash
                                }
                                do {
                                    try projector.apply(event, to: &store)
                                } catch let error as IncidentError where error.code == .logDamaged {
                                    // The rules passed, so only damaged stored projections get here.
                                    throw DamagedProjection(request: requestIndex, index: index, error: error)
                                } catch let error as LMDBError {
                                    // A put of the projections the storage refused (a full map or file system) is
                                    // answered as any other put's.
                                    throw error
                                } catch {
                                    throw LogError(.corrupt, "the projections of event \(event.position) cannot be updated: \(error)")
                                }
                                // A report starts its incident's stream; a later event's stream starts at the
                                // report the admission found.
                                let streamStart = admitted.reportPosition ?? event.position
                                let streamValueStart = streamValues.count
                                withUnsafeBytes(of: event.position.bigEndian) { streamValues.append(contentsOf: $0) }
                                StreamSummary.append(event, to: &streamValues)
                                staged.append(
                                    StagedEvent(
                                        position: event.position, incident: event.incident, streamStart: streamStart,
                                        version: event.version, eventId: eventId, contentDigest: digest, value: value,
                                        streamValue: streamValueStart..<streamValues.count))
                                batchEventIds[eventId] = (event.position, digest)
                                if request.events.count > 1 { requestEventIds[eventId] = index }
                                head = Head(position: event.position, hash: hash, recordedAt: recordedAt)
                                positions.append(event.position)
                                incidents.append(event.incident)
                            } catch let error as IncidentError {
                                throw AppendFailure.rejected(error, index: index)
                            }
                        }
                        store.acceptRequest()
                        receipt.positions = positions
                        receipt.incidents = incidents
                        receipt.alreadyStored = alreadyStored
                        results.append(.success(receipt))
                    } catch let failure as AppendFailure {
                        head = mark.head
                        staged.removeLast(staged.count - mark.staged)
                        streamValues.removeLast(streamValues.count - mark.streamValues)
                        try store.discardRequest()
                        for eventId in requestEventIds.keys { batchEventIds.removeValue(forKey: eventId) }
                        results.append(.failure(failure))
                    }
                }

                var idValue = [UInt8](repeating: 0, count: 40)
                let eventsCursor = try handle.cursor(db.events)
                let streamsCursor = try handle.cursor(db.streams)
                for event in staged {
                    courtesy.pass()
                    try withUnsafeBytes(of: event.position.bigEndian) { key in
                        try event.value.withUnsafeBytes { try eventsCursor.put(key: key, value: $0, flags: .append) }
                    }
                    // The keys and values as raw bytes: the generic `ContiguousBytes` overloads cost more than
                    // the put.
                    let streamKey = (event.streamStart.bigEndian, UInt64(bitPattern: event.version).bigEndian)
                    try withUnsafeBytes(of: streamKey) { key in
                        assert(Array(key) == Keys.stream(start: event.streamStart, version: event.version))
                        try streamValues.withUnsafeBytes { values in
                            try streamsCursor.put(key: key, value: UnsafeRawBufferPointer(rebasing: values[event.streamValue]))
                        }
                    }
                    try idValue.withUnsafeMutableBytes { raw in
                        withUnsafeBytes(of: event.position.bigEndian) { raw.copyMemory(from: $0) }
                        UnsafeMutableRawBufferPointer(rebasing: raw[8...]).copyBytes(from: event.contentDigest)
                        var eventId = event.eventId
                        try eventId.withUTF8 { key in
                            try eventIdsCursor.put(key: UnsafeRawBufferPointer(key), value: UnsafeRawBufferPointer(raw), flags: .noOverwrite)
                        }
                    }
                }
                cityDocuments = try store.flush()
                if !staged.isEmpty {
                    try txn.put(db.meta, key: Keys.head, value: head.encoded)
                    try txn.put(db.meta, key: Keys.projections, value: EventLog.projectionMarkValue(head.position))
                }
                newCities = store.batchCities
            }
            committedCities.merge(newCities) { $1 }
            if !cityDocuments.isEmpty {
                self.cityDocuments.withLock { documents in
                    for (id, document) in cityDocuments { documents[id] = .success(document) }
                }
            }
            return .success(results)
        } catch let damaged as DamagedProjection {
            return .failure(damaged)
        } catch let error as LMDBError where error.isMapFull {
            let failure = sizeLimitRefusal()
            return .success(batch.map { _ in .failure(failure) })
        } catch let error as LMDBError {
            let failure = fileSystemFull(error) ?? .storage("\(error)")
            return .success(batch.map { _ in .failure(failure) })
        } catch {
            return .success(batch.map { _ in .failure(.storage("\(error)")) })
        }
    }

    /// Whether `a` and `b` hold the same UTF-8 bytes (String's == takes canonically equivalent spellings for one).
    static func sameBytes(_ a: String, _ b: String) -> Bool {
        var a = a
        var b = b
        return a.withUTF8 { a in
            b.withUTF8 { b in
                guard a.count == b.count else { return false }
                guard let pa = a.baseAddress, let pb = b.baseAddress else { return true }
                return memcmp(pa, pb, a.count) == 0
            }
        }
    }

    /// Appends the canonical bytes of the event being recorded (``RecordedEvent/canonicalBytes()``, members in
    /// sorted order) from the parts made on the event loop, and returns the `prevHash` it wrote.
    static func writeStored(
        into out: inout [UInt8], parts: EncodedProposal, admitted: AdmittedEvent, eventId: String, position: UInt64,
        previous: [UInt8], recordedAt: [UInt8], recordedBy: [UInt8]
    ) -> String {
        @inline(__always) func literal(_ text: StaticString) {
            out.append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        // `{"data":` and the data, as the content starts.
        if case .reported(let report) = admitted.data, let cityId = report.cityId, parts.cityIdOffset > 0 {
            out.append(contentsOf: parts.content[..<parts.cityIdOffset])
            literal(",\"cityId\":")
            JSONValue.writeString(cityId, into: &out)
            out.append(contentsOf: parts.content[parts.cityIdOffset..<parts.data.upperBound])
        } else {
            out.append(contentsOf: parts.content[..<parts.data.upperBound])
        }
        literal(",\"eventId\":")
        JSONValue.writeString(eventId, into: &out)
        literal(",\"incident\":")
        JSONValue.writeString(admitted.incident, into: &out)
        literal(",\"occurredAt\":")
        JSONValue.writeString(admitted.occurredAt, into: &out)
        literal(",\"position\":")
        JSONValue.writeInteger(Int64(position), into: &out)
        switch admitted.precision {
        case .minute: literal(",\"precision\":\"minute\",\"prevHash\":\"")
        case .hour: literal(",\"precision\":\"hour\",\"prevHash\":\"")
        case .day: literal(",\"precision\":\"day\",\"prevHash\":\"")
        case .week: literal(",\"precision\":\"week\",\"prevHash\":\"")
        case .month: literal(",\"precision\":\"month\",\"prevHash\":\"")
        }
        let prevHash = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2 * previous.count) { hex in
            let digits: StaticString = "0123456789abcdef"
            var i = 0
            for byte in previous {
                hex[i] = digits.utf8Start[Int(byte >> 4)]
                hex[i + 1] = digits.utf8Start[Int(byte & 0xF)]
                i += 2
            }
            out.append(contentsOf: hex)
            return String(decoding: hex, as: UTF8.self)
        }
        literal("\",\"recordedAt\":")
        out.append(contentsOf: recordedAt)
        literal(",\"recordedBy\":")
        out.append(contentsOf: recordedBy)
        literal(",\"schema\":")
        JSONValue.writeInteger(currentEventSchema, into: &out)
        if !parts.sources.isEmpty {
            literal(",\"sources\":")
            out.append(contentsOf: parts.content[parts.sources])
        }
        switch admitted.data.type {
        case .incidentReported: literal(",\"type\":\"incident-reported\",\"version\":")
        case .responseObserved: literal(",\"type\":\"response-observed\",\"version\":")
        case .outcomeUpdated: literal(",\"type\":\"outcome-updated\",\"version\":")
        }
        JSONValue.writeInteger(admitted.version, into: &out)
        out.append(UInt8(ascii: "}"))
        return prevHash
    }

    /// Whether `proposal`, whose content digest is `digest`, is the event stored under its id (whose content digest
    /// is `storedDigest`, and which `stored` reads) sent again: the same content, and, for a report that names its
    /// `cityId`, the one stored. A content digest leaves the `cityId` out (a report is sent without it, or with it
    /// as `incidentctl export` writes it), so the stored event is read to compare it.
    static func isRetry(
        _ proposal: ProposedEvent, digest: [UInt8], storedDigest: [UInt8], stored: () throws -> RecordedEvent
    ) rethrows -> Bool {
        if digest == storedDigest {
            guard let cityId = proposal.cityId else { return true }
            return sameBytes(try stored().cityId ?? "", cityId)
        }
        return try isRetryWithFilledIn(proposal, storedDigest: storedDigest, stored: stored)
    }

    /// Whether `proposal`, whose content differs from that of the event stored under its id, is that event sent
    /// again with what the daemon filled in when it stored it written out: the incident id it made for a report,
    /// or the time it gave a response or outcome sent without one (and a report's `cityId`, which the content
    /// leaves out). That is how `incidentctl export` writes them, so that appending an export to its own log is a
    /// retry. Asked only when the digests differ.
    static func isRetryWithFilledIn(_ proposal: ProposedEvent, storedDigest: [UInt8], stored: () throws -> RecordedEvent) rethrows -> Bool {
        var bare = proposal
        switch proposal.type {
        case .incidentReported:
            guard proposal.incident != nil else { return false }
            bare.incident = nil
        case .responseObserved, .outcomeUpdated:
            guard proposal.occurredAt != nil else { return false }
            bare.occurredAt = nil
            bare.precision = nil
        }
        guard ChainHash.digest(bare.contentBytes) == storedDigest else { return false }
        let event = try stored()
        return event.incident == proposal.incident && event.occurredAt == proposal.occurredAt && event.precision == proposal.precision
            && proposal.cityId.map { sameBytes(event.cityId ?? "", $0) } != false
    }

    private func storedEventId(_ eventId: String, _ cursor: borrowing Cursor) throws -> (position: UInt64, digest: [UInt8])? {
        var key = eventId
        guard let raw = try key.withUTF8({ try cursor.seek(exactly: UnsafeRawBufferPointer($0)) })?.value, raw.count == 40,
            let position = Keys.readPosition(raw)
        else { return nil }
        return (position, Array(raw[8..<40]))
    }

    private func incidentOf(position: UInt64, staged: [StagedEvent], _ txn: UnsafeWriteTransaction) throws -> String {
        if let event = staged.first(where: { $0.position == position }) { return event.incident }
        return try storedEvent(position: position, staged: staged, txn).incident
    }

    private func storedEvent(position: UInt64, staged: [StagedEvent], _ txn: UnsafeWriteTransaction) throws -> RecordedEvent {
        if let event = staged.first(where: { $0.position == position }), event.value.count > 32 {
            return try event.value.withUnsafeBytes { raw in
                try RecordedEvent(json: JSONReader().read(UnsafeRawBufferPointer(rebasing: raw[32...])))
            }
        }
        guard let raw = try txn.get(db.events, key: Keys.position(position)), raw.count > 32 else {
            throw LogError(.corrupt, "event \(position) named by the event-id index is missing")
        }
        return try RecordedEvent(json: JSONReader().read(UnsafeRawBufferPointer(rebasing: raw[32...])))
    }
}
