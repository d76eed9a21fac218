import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON
import Synchronization

extension EventLog {
    /// The head of the chain and the size of the log.
    public func status() throws -> LogStatus {
        let info = environment.info
        let readers = try environment.activeReaders()
        return try environment.read { txn in
            let head = try Head.read(txn, db)
            return LogStatus(
                position: head.position, headHash: ChainHash.hex(head.hash), lastRecordedAt: head.recordedAt,
                incidents: try txn.count(db.incidents), cities: try txn.count(db.cities), mapSize: info.mapSize,
                maxMapSize: options.maxMapSize, usedBytes: info.usedBytes, readers: readers)
        }
    }

    /// Runs `decode` on the stored event at `position`, and turns whatever it throws (JSON that does not parse, a
    /// rule the event breaks) into ``LogError/damagedEvent(at:_:)``: an event was validated when it was appended, so
    /// one that cannot be read now is damage to the stored log, whichever query meets it.
    static func readingStoredEvent<T>(at position: UInt64, _ decode: () throws -> T) throws -> T {
        do {
            return try decode()
        } catch {
            throw LogError.damagedEvent(at: position, (error as? LogError)?.message ?? "\(error)")
        }
    }

    /// The stored event at `position`, as printed (``eventDocument(_:)``) and as decoded, checked as it was when it was
    /// appended; ``LogError/damagedEvent(at:_:)`` when it cannot be read as an event.
    static func storedEvent(_ raw: UnsafeRawBufferPointer, at position: UInt64) throws -> (document: JSONValue, event: RecordedEvent) {
        try readingStoredEvent(at: position) {
            let document = try eventDocument(raw)
            let event = try RecordedEvent(json: document)
            guard event.position == position else { throw LogError(.corrupt, "it names position \(event.position)") }
            return (document, event)
        }
    }

    /// A stored event as printed: the stored document plus its `hash`.
    static func eventDocument(_ raw: UnsafeRawBufferPointer) throws -> JSONValue {
        guard raw.count > 32 else { throw LogError(.corrupt, "a stored event is shorter than its hash") }
        guard case .object(var members) = try JSONReader().read(UnsafeRawBufferPointer(rebasing: raw[32...])) else {
            throw LogError(.corrupt, "a stored event is not a JSON object")
        }
        members["hash"] = .string(ChainHash.hex(raw[0..<32]))
        return .object(members)
    }

    /// ``eventDocument(_:)`` as canonical bytes, written onto `out` without a JSON tree: the stored bytes with
    /// `"hash"` put in its place among the sorted keys, right after `eventId` (the member before it). Nil when the
    /// stored bytes do not have the shape the writer gives them.
    static func appendEventDocument(_ raw: UnsafeRawBufferPointer, to out: inout [UInt8]) -> Bool {
        guard raw.count > 32 else { return false }
        let stored = UnsafeRawBufferPointer(rebasing: raw[32...])
        // `data` comes first, and holds no member named eventId (its members are validated), and a string never
        // holds an unescaped quote: the first `,"eventId":"` is the top-level member.
        let marker = Array(#","eventId":""#.utf8)
        guard stored.first == UInt8(ascii: "{"), let found = stored.firstOffset(of: marker),
            let closing = stored.firstOffset(of: [UInt8(ascii: "\"")], from: found + marker.count)
        else { return false }
        let insertAt = closing + 1
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: stored[0..<insertAt]))
        out.append(contentsOf: #","hash":""#.utf8)
        out.append(contentsOf: ChainHash.hex(raw[0..<32]).utf8)
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: stored[insertAt...]))
        return true
    }

    /// What a follower with no filter has not seen yet: the lines `{"event":…,"id":…,"ok":true}` of up to `limit`
    /// events from position `from` on, made from the stored bytes without a JSON tree (``appendEventDocument``);
    /// the number of events, the position to go on from, and whether that is past the head.
    ///
    /// The stored bytes are spliced unread, so each event's are first scanned for a byte below 0x20, which the
    /// canonical form never holds and which (a line feed) would break the framing of the lines. A damaged event
    /// ends the page before it; when it comes first, ``LogError/damagedEvent(at:_:)`` is thrown instead.
    public func eventLines(from: UInt64, limit: Int, id: JSONText) throws -> (lines: [UInt8], count: Int, next: UInt64, caughtUp: Bool) {
        let suffix = Array(",\"id\":".utf8) + id.bytes + Array(",\"ok\":true}\n".utf8)
        return try environment.read { txn in
            var lines: [UInt8] = []
            var count = 0
            var next = max(from, 1)
            let cursor = try txn.cursor(db.events)
            var entry = try cursor.seek(atOrAfter: Keys.position(next))
            while let (key, value) = entry, count < limit {
                guard let position = Keys.readPosition(key) else { break }
                if let damage = EventLog.controlByteDamage(value, at: position) {
                    if count > 0 { return (lines, count, position, false) }
                    throw damage
                }
                let start = lines.count
                lines.reserveCapacity(lines.count + value.count + 96)
                lines.append(contentsOf: #"{"event":"#.utf8)
                if !EventLog.appendEventDocument(value, to: &lines) {
                    do {
                        lines.append(contentsOf: try EventLog.storedEvent(value, at: position).document.canonicalBytes())
                    } catch let damage as LogError where damage.code == .damagedEvent && count > 0 {
                        lines.removeSubrange(start...)
                        return (lines, count, position, false)
                    }
                }
                lines.append(contentsOf: suffix)
                count += 1
                next = position + 1
                entry = try cursor.next()
            }
            return (lines, count, next, entry == nil)
        }
    }

    /// Up to `limit` events from position `from` on that match `filter`, and the position to continue from; fewer
    /// once the ones found hold `maxBytes` of stored events or more (at least one is found, whatever its size).
    /// ``LogError/damagedEvent(at:_:)`` when one of the events looked at cannot be read as an event.
    public func events(from: UInt64, limit: Int, maxBytes: Int = .max, filter: EventFilter = EventFilter()) throws
        -> (events: [JSONValue], next: UInt64)
    {
        if let cityId = filter.cityId, filter.incident == nil,
            let found = try cityEventsFromIndex(from: from, limit: limit, maxBytes: maxBytes, cityId: cityId, type: filter.type)
        {
            return found
        }
        let found = try eventsLookedAt(
            from: from, limit: limit, maxBytes: maxBytes, scanning: .max, filter: filter, endingBeforeDamage: false)
        return (found.events, found.next)
    }

    /// What a follower of the log (`subscribe`) has not seen yet: up to `limit` events from position `from` on that
    /// match `filter`, looking at no more than `scanning` positions, so that a call is short however few events
    /// match; the position to go on from, and whether every event stored so far has been looked at (`caughtUp`:
    /// nothing more until a commit adds some). An event that cannot be read as an event ends the events before it;
    /// when it comes first, ``LogError/damagedEvent(at:_:)`` is thrown instead.
    public func eventsToFollow(from: UInt64, limit: Int, scanning: Int, filter: EventFilter) throws
        -> (events: [JSONValue], next: UInt64, caughtUp: Bool)
    {
        try eventsLookedAt(from: from, limit: limit, maxBytes: .max, scanning: scanning, filter: filter, endingBeforeDamage: true)
    }

    /// ``eventsToFollow(from:limit:scanning:filter:)``; `endingBeforeDamage` false throws at a damaged event even
    /// after others were found (`read` answers whole or not at all).
    private func eventsLookedAt(
        from: UInt64, limit: Int, maxBytes: Int, scanning: Int, filter: EventFilter, endingBeforeDamage: Bool
    ) throws -> (events: [JSONValue], next: UInt64, caughtUp: Bool) {
        try environment.read { txn in
            var result: [JSONValue] = []
            var bytes = 0
            var next = max(from, 1)
            var cityOfIncident: [String: String] = [:]
            // The document of the event at `position`; nil when it is damaged and the events before it are returned.
            // Only parsed, as it is sent: checking every event against the rules too decoded each twice (an export
            // of 100,000 events took 5.7 and 6.4 s against 4.0 and 4.2 s); `incident`, `replay` and `verify` check them.
            func readDocument(_ raw: UnsafeRawBufferPointer, _ position: UInt64) throws -> JSONValue? {
                do {
                    return try EventLog.readingStoredEvent(at: position) { try EventLog.eventDocument(raw) }
                } catch let damage as LogError where damage.code == .damagedEvent && endingBeforeDamage && !result.isEmpty {
                    return nil
                }
            }
            if let incident = filter.incident {
                guard let raw = try txn.get(db.incidents, key: Array(incident.utf8)) else { return (result, next, true) }
                let start = try IncidentState(encoded: raw, incident: incident).firstPosition
                var caughtUp = true
                for position in try streamPositions(startingAt: start, txn) where position >= next {
                    if result.count >= limit || bytes >= maxBytes {
                        caughtUp = false
                        break
                    }
                    guard let raw = try txn.get(db.events, key: Keys.position(position)) else { continue }
                    guard let document = try readDocument(raw, position) else { return (result, position, false) }
                    if let type = filter.type, document["type"]?.stringValue != type.rawValue { continue }
                    result.append(document)
                    bytes += raw.count
                    next = position + 1
                }
                return (result, next, caughtUp)
            }
            let cursor = try txn.cursor(db.events)
            var entry = try cursor.seek(atOrAfter: Keys.position(next))
            var scanned = 0
            while let (key, value) = entry, result.count < limit, bytes < maxBytes, scanned < scanning {
                guard let position = Keys.readPosition(key) else { break }
                scanned += 1
                next = position + 1
                entry = try cursor.next()
                if filter.type != nil || filter.cityId != nil {
                    // The match is decided from the stored `type` and `incident` members, found by a check that
                    // accepts nothing the reader refuses and builds no document: only the events returned are read
                    // into one (a scan of 1,000,000 events for a city with none took about 24 s, now 4-6 s; change
                    // 55 in BENCHMARKS.md). An event the check leaves to the reader is read, and so reported as
                    // damaged when it is.
                    let stored = UnsafeRawBufferPointer(rebasing: value[min(32, value.count)...])
                    var document: JSONValue?
                    let typeMatches: Bool
                    let incident: String?
                    if value.count > 32, let members = JSONReader().check(stored, locating: "type", "incident") {
                        typeMatches = filter.type.map { EventLog.isString(stored, at: members.first, $0.rawValue) } ?? true
                        incident = typeMatches && filter.cityId != nil ? EventLog.string(stored, at: members.second) : nil
                    } else {
                        guard let read = try readDocument(value, position) else { return (result, position, false) }
                        document = read
                        typeMatches = filter.type.map { read["type"]?.stringValue == $0.rawValue } ?? true
                        incident = read["incident"]?.stringValue
                    }
                    if !typeMatches { continue }
                    if let cityId = filter.cityId {
                        guard let incident else { continue }
                        let city: String
                        if let known = cityOfIncident[incident] {
                            city = known
                        } else if let raw = try txn.get(db.incidents, key: Array(incident.utf8)) {
                            city = try IncidentState(encoded: raw, incident: incident).cityId
                            cityOfIncident[incident] = city
                        } else {
                            continue
                        }
                        if city != cityId { continue }
                    }
                    guard let found = try document ?? readDocument(value, position) else { return (result, position, false) }
                    result.append(found)
                    bytes += value.count
                } else {
                    guard let document = try readDocument(value, position) else { return (result, position, false) }
                    result.append(document)
                    bytes += value.count
                }
            }
            return (result, next, entry == nil)
        }
    }

    /// The string that is the JSON value at `range` of `bytes` (bytes ``JSONReader/check(_:locating:_:)`` accepted),
    /// as a ``JSONValue``'s `stringValue` gives it: nil when there is no value or it is not a string.
    static func string(_ bytes: UnsafeRawBufferPointer, at range: Range<Int>?) -> String? {
        guard let range else { return nil }
        let value = UnsafeRawBufferPointer(rebasing: bytes[range])
        if value.count >= 2, value.first == UInt8(ascii: "\""), value.firstOffset(of: [UInt8(ascii: "\\")]) == nil {
            return String(decoding: UnsafeRawBufferPointer(rebasing: value.dropFirst().dropLast()), as: UTF8.self)
        }
        return (try? JSONReader().read(value))?.stringValue
    }

    /// Whether the JSON value at `range` of `bytes` (bytes ``JSONReader/check(_:locating:_:)`` accepted) is the
    /// string `expected` as a ``JSONValue``'s `stringValue` would be.
    static func isString(_ bytes: UnsafeRawBufferPointer, at range: Range<Int>?, _ expected: String) -> Bool {
        guard let range else { return false }
        let value = UnsafeRawBufferPointer(rebasing: bytes[range])
        if value.count >= 2, value.first == UInt8(ascii: "\""), value.firstOffset(of: [UInt8(ascii: "\\")]) == nil {
            let text = UnsafeRawBufferPointer(rebasing: value.dropFirst().dropLast())
            // Bytes other than ASCII may still be `expected` as `String`s compare (by canonical equivalence).
            guard text.allSatisfy({ $0 < 0x80 }) else { return String(decoding: text, as: UTF8.self) == expected }
            return text.elementsEqual(expected.utf8)
        }
        return (try? JSONReader().read(value))?.stringValue == expected
    }

    /// ``LogError/damagedEvent(at:_:)`` when the canonical bytes of the stored event `raw` hold a byte below 0x20,
    /// which its canonical form never does; nil otherwise. What it costs is a pass over the bytes, eight at a time.
    static func controlByteDamage(_ raw: UnsafeRawBufferPointer, at position: UInt64) -> LogError? {
        guard raw.count > 32 else { return LogError.damagedEvent(at: position, "it is shorter than its hash") }
        guard let offset = UnsafeRawBufferPointer(rebasing: raw[32...]).firstControlByte() else { return nil }
        let byte = raw[32 + offset]
        let hex = String(byte, radix: 16, uppercase: true)
        return LogError.damagedEvent(
            at: position, "a raw control byte 0x\(hex.count == 1 ? "0" : "")\(hex) at byte \(offset) of its JSON, which is never stored unescaped")
    }

    /// The positions of an incident's events, in version order: the entries of `incident-streams` under the
    /// position of its report.
    private func streamPositions(startingAt start: UInt64, _ txn: borrowing ReadTransaction) throws -> [UInt64] {
        var positions: [UInt64] = []
        let cursor = try txn.cursor(db.streams)
        var entry = try cursor.seek(atOrAfter: Keys.stream(start: start, version: 1))
        while let (key, value) = entry, key.count == 16, Keys.readPosition(key) == start, let position = Keys.readPosition(value) {
            positions.append(position)
            entry = try cursor.next()
        }
        return positions
    }

    /// Whether an incident `id` has been reported: the check `read` and `subscribe` make of an `incident` filter.
    public func hasIncident(_ id: String) throws -> Bool {
        try environment.read { txn in try txn.get(db.incidents, key: Array(id.utf8)) != nil }
    }

    /// The projection of incident `id` as stored (its `version` is how many events it holds); nil when the log has
    /// no such incident.
    public func incidentState(_ id: String) throws -> IncidentState? {
        try environment.read { txn in
            try txn.get(db.incidents, key: Array(id.utf8)).map { try IncidentState(encoded: $0, of: id) }
        }
    }

    /// ``incidentDocument(of:through:)`` for incident `id`, its projection read in the same transaction; nil when
    /// the log has no such incident.
    public func incidentDocument(_ id: String, through position: UInt64? = nil) throws -> JSONValue? {
        guard let state = try incidentState(id) else { return nil }
        return try incidentDocument(of: state, through: position)
    }

    /// One incident: its projection, the report, its responses in order and its outcome history. `state` is its
    /// projection as ``incidentState(_:)`` read it, perhaps in an earlier transaction: the document is the incident
    /// as it stood then, its events up to `state.lastPosition` (events appended since are left to the next query).
    /// With `position`, the incident as it stood once the log held events 1...`position`: its events up to there,
    /// folded afresh when it changed since; nil when it was reported after.
    public func incidentDocument(of state: IncidentState, through position: UInt64? = nil) throws -> JSONValue? {
        let id = state.incident
        return try environment.read { txn in
            var state = state
            let changedSince = state.lastPosition > position ?? .max
            let limit = min(position ?? .max, state.lastPosition)
            guard state.firstPosition <= limit else { return nil }
            var past = InMemoryProjections()
            var reportEvent: JSONValue = .null
            var responses: [JSONValue] = []
            var outcomes: [JSONValue] = []
            // The report as reported and as corrected by the outcomes since, folded as the projection did.
            var report: ReportData?
            var current: ReportData?
            for position in try streamPositions(startingAt: state.firstPosition, txn) where position <= limit {
                guard let rawEvent = try txn.get(db.events, key: Keys.position(position)) else {
                    throw LogError(.corrupt, "event \(position) of incident \(id) is missing")
                }
                let (event, recorded) = try EventLog.storedEvent(rawEvent, at: position)
                if changedSince { try projector.apply(recorded, to: &past) }
                switch recorded.data {
                case .reported(let data):
                    report = data
                    current = data
                case .outcome(let outcome):
                    if let corrections = outcome.corrections { current = current?.applying(corrections) }
                case .responded: break
                }
                switch event["type"]?.stringValue {
                case EventType.incidentReported.rawValue?: reportEvent = event
                case EventType.responseObserved.rawValue?: responses.append(event)
                default: outcomes.append(event)
                }
            }
            guard let report, let current else {
                throw LogError(.corrupt, "the report of incident \(id) is missing from its stream")
            }
            if changedSince, let folded = past.incidents[id] { state = folded }
            var document = state.json(report: report, current: current).objectValue ?? [:]
            document["city"] = .string(try cityName(state.cityId, txn))
            document["reportEvent"] = reportEvent
            document["responseHistory"] = .array(responses)
            document["outcomeHistory"] = .array(outcomes)
            document["latestOutcome"] = outcomes.last ?? .null
            return .object(document)
        }
    }

    private func cityName(_ cityId: String, _ txn: borrowing ReadTransaction) throws -> String {
        guard let raw = try txn.get(db.cities, key: Array(cityId.utf8)) else { return cityId }
        return try CityState(stored: raw, id: cityId).name
    }

    /// The canonical id for any spelling: an exact city id first (of the gazetteer, or of the log: a city added with
    /// `allowNewCity` whose spelling a gazetteer changed since gives to another city), then the gazetteer's
    /// spellings, then the id a city added with `allowNewCity` has from its spelling (``Gazetteer/slug(_:)``; never a gazetteer
    /// city's, which only the gazetteer's spellings reach), then
    /// a spelling reported for a city of the log that the gazetteer does not know (one a report made through its
    /// `cityId`, as a restore does, whose id is no slug of it): as ``Admission/resolveCity(_:allowNewCity:store:)``
    /// files a report of that spelling (``Gazetteer/cities(spelled:among:)``), and refused as it refuses one when
    /// several such cities have it (``Admission/ambiguousCity(_:ids:field:)``).
    public func resolveCity(_ name: String) throws -> String? {
        if gazetteer.city(id: name) != nil || cityDocuments.withLock({ $0[name] != nil }) { return name }
        if let id = gazetteerMemo.resolve(name) { return id }
        // LMDB refuses empty and over-long keys (MDB_BAD_VALSIZE); no city id is either, so skip them.
        let slugged = Gazetteer.slugHoldingAll(name)
        // A slug finds only a city the gazetteer does not know, as in a report.
        let slug = slugged.flatMap { $0.holdsAll && gazetteer.city(id: $0.slug) == nil ? $0.slug : nil }
        let candidates = [name, slug].compactMap { $0 }
            .filter { !$0.isEmpty && $0.utf8.count <= environment.maxKeySize }
        let byId = try environment.read { txn -> String? in
            for id in candidates where try txn.get(db.cities, key: Array(id.utf8)) != nil { return id }
            return nil
        }
        if let byId { return byId }
        return try Admission.cityOfTheLog(spelled: name, among: citiesOutsideGazetteer(), in: gazetteer, field: nil)
    }

    /// The cities of the log that the gazetteer does not know (added with `allowNewCity`), as gazetteer entries
    /// with every spelling reported for them: to suggest them for a name that is not known.
    public func citiesOutsideGazetteer() -> [City] {
        let documents = cityDocuments.withLock { $0.filter { gazetteer.city(id: $0.key) == nil } }
        return documents.compactMap { id, document in try? CityState(stored: document.get(), id: id).gazetteerEntry }
    }

    /// The cities of the log that the gazetteer does not know (added with `allowNewCity`) of which a spelling (their
    /// id, their name, or one reported for them) now names another city of the gazetteer, by id: that spelling
    /// reaches the gazetteer's city, and only the exact id reaches the log's. With the spelling and the other city.
    public func citiesNamedByGazetteerSpellings() -> [(cityId: String, spelling: String, gazetteerCityId: String)] {
        citiesOutsideGazetteer().sorted { $0.id < $1.id }.compactMap { city in
            for spelling in [city.name, city.id] + city.aliases {
                if let other = gazetteer.resolve(spelling), other.id != city.id { return (city.id, spelling, other.id) }
            }
            return nil
        }
    }

    /// The stored city projections that do not read back (``CityState/init(stored:id:)``: changed on the disk), in id
    /// order, each as the message of the `log_damaged` that `city` answers for it: those found as the log was
    /// opened, for the daemon to say at its start, before a query or an append meets one.
    public func damagedCityProjections() -> [String] {
        cityDocuments.withLock { documents in
            documents.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }.compactMap { _, document in
                if case .failure(let error) = document { return error.message }
                return nil
            }
        }
    }

    /// The canonical JSON of one city's projection (``CityState/json``), or nil when no incident has been
    /// reported there. Served from memory: it reflects every acknowledged append.
    ///
    /// - Throws: `log_damaged` when the stored document did not read back as the log was opened
    ///   (``CityState/init(stored:id:)``).
    public func cityDocument(id: String) throws(IncidentError) -> [UInt8]? {
        try cityDocuments.withLock { $0[id] }?.get()
    }

    /// The projection of one city, or nil when no incident has been reported there.
    public func city(id: String) throws -> CityState? {
        try environment.read { txn in
            guard let raw = try txn.get(db.cities, key: Array(id.utf8)) else { return nil }
            return try CityState(stored: raw, id: id)
        }
    }

    /// Every city with at least one incident, sorted by id.
    public func cities() throws -> [CityState] {
        try environment.read { txn in
            var result: [CityState] = []
            let cursor = try txn.cursor(db.cities)
            var entry = try cursor.first()
            while let (key, value) = entry {
                result.append(try CityState(stored: value, id: String(decoding: key, as: UTF8.self)))
                entry = try cursor.next()
            }
            return result
        }
    }
}
