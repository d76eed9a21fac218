import Dispatch
import IncidentDomain
import LMDB
import StrictJSON
import Synchronization

extension EventLog {
    /// How many positions of the log `verify` folds the incidents of at a time, comparing each with its stored
    /// projection before it forgets them: what it holds meanwhile is about 230 bytes per incident reported there
    /// (7.5 MB at most).
    static let derivedCheckSegment: UInt64 = 1 << 15

    /// Compares the data derived from the events with the events (``DerivedDataReport``): `verify` does, once it
    /// has found the pages whole and the chain intact.
    ///
    /// Every event is read, in stretches of `stretch` positions on every core, and what the two indexes should
    /// hold of it is made again (its stream summary as the writer makes it, its id and position) and added to an
    /// order-free digest (``IndexDigest``). Meanwhile, on one of those workers and in one snapshot, `incident-streams`
    /// is folded by the rebuild's fold (``StreamFold``) into the projections, each incident compared byte for byte
    /// with its stored one as it is folded and the cities at the end, while each entry it folds goes into the
    /// digest the events' must equal; and `event-ids` is read into its digest. Where a digest differs, a second
    /// look, entry by entry, names the first entry that differs (only then, since it reads the events in the
    /// indexes' order).
    ///
    /// The derived data is read in that one snapshot. The events are read in transactions of their own (one per
    /// stretch, so that no thread ever waits for another while it holds a transaction, which would deadlock
    /// against a writer growing the map), begun a little before or after it: they read every position up to the
    /// head when this begins, and the snapshot reads any event appended since. Every transaction holds the same
    /// bytes at a position it has, since an event is never changed once appended (the chain's check in
    /// stretches rests on that too). The second look, when there is one, compares the indexes with the
    /// events of one newer snapshot, which still holds every entry the first found differing: entries are only
    /// ever added to the indexes, never changed.
    ///
    /// Projections are folded from the stream summaries, which only count once they agree with the events: when
    /// `incident-streams` differs, the projections are not compared. Nor are the cities when the log records
    /// that its projections were built with another gazetteer than this log's (names, regions and populations
    /// come from it).
    /// `checkpoint` is called before each stretch of events and each segment of the streams' fold; what it throws
    /// ends the comparison and is thrown.
    public func verifyDerivedData(stretch: Int = 1 << 16, checkpoint: @Sendable () throws -> Void = {}) throws -> DerivedDataReport {
        let firstHead = try environment.read { txn in
            let head = try Head.read(txn, db).position
            // A head past the last event is a damaged record (the chain's check names it): not a range to read.
            let last = try txn.cursor(db.events).last().flatMap { $0.key.count == 8 ? Keys.readPosition($0.key) : nil } ?? 0
            guard head <= last else {
                throw LogError(.corrupt, "the recorded head (position \(head)) is past the last event stored (\(last))")
            }
            return head
        }
        let size = UInt64(max(1, stretch))
        let stretches = stride(from: UInt64(1), through: firstHead, by: Int(size)).map { $0...min(firstHead, $0 + size - 1) }
        let snapshot = Mutex<Result<SnapshotComparison, any Error>?>(nil)
        let digests = Mutex([Result<IndexDigests, any Error>?](repeating: nil, count: stretches.count))
        DispatchQueue.concurrentPerform(iterations: stretches.count + 1) { i in
            if i == 0 {
                let result = Result { try compareInOneSnapshot(eventsReadThrough: firstHead, checkpoint: checkpoint) }
                snapshot.withLock { $0 = result }
            } else {
                let result = Result {
                    try checkpoint()
                    return try environment.read { txn in try digestEvents(stretches[i - 1], in: txn) }
                }
                digests.withLock { $0[i - 1] = result }
            }
        }
        guard let compared = try snapshot.withLock({ $0 })?.get() else {
            throw LogError(.corrupt, "the derived data was not compared")
        }
        var events = compared.eventsAppended
        for digest in digests.withLock({ $0 }) {
            guard let digest else { throw LogError(.corrupt, "a stretch of events was not read") }
            events.add(try digest.get())
        }
        var report = DerivedDataReport(position: compared.head)
        if let (position, problem) = events.unreadable {
            report.differences.append(
                DerivedDifference(
                    database: .incidentStreams, key: nil, position: position,
                    problem: "\(problem), so what the indexes and the projections hold of it cannot be made from it",
                    remedy: .recoverFromEvents))
            let reason = "event \(position) cannot be read"
            report.notCompared = [.eventIds, .incidents, .cities, .cityDates].map { DerivedDataReport.NotCompared(database: $0, reason: reason) }
            return report
        }

        let streamsAgree =
            compared.foldFailure == nil && compared.streams == events.streams && compared.streamEntries == compared.head
        if !streamsAgree {
            report.differences.append(
                try locateStreamDifference()
                    ?? DerivedDifference(
                        database: .incidentStreams, key: nil, position: nil,
                        problem: compared.foldFailure
                            ?? "its entries differ from those the events give (their digests differ), but a second look found none that does",
                        remedy: .recoverFromEvents))
            let reason = "they are folded from the stream summaries of incident-streams, which differ from the events"
            report.notCompared = [.incidents, .cities, .cityDates].map { DerivedDataReport.NotCompared(database: $0, reason: reason) }
        } else if let mark = compared.projectionsPastHead {
            // What incidentd refuses to start on (EventLog.checkFormat): the projections witness events since removed.
            report.differences.append(
                DerivedDifference(
                    database: .incidents, key: nil, position: nil,
                    problem: "the projections were built up to position \(mark), but the log ends at \(compared.head): events they counted are no longer in it (removed behind incidentd's back, or with the record of the head rewritten)",
                    remedy: .recoverFromEvents))
            let reason = "their mark is past the head, which incidentd refuses to start on"
            report.notCompared = [.cities, .cityDates].map { DerivedDataReport.NotCompared(database: $0, reason: reason) }
        } else if let reason = compared.projectionsNotCompared {
            report.notCompared = [.incidents, .cities, .cityDates].map { DerivedDataReport.NotCompared(database: $0, reason: reason) }
        } else {
            if let difference = compared.incidentDifference {
                report.differences.append(difference)
            } else if compared.incidentEntries != compared.incidentsFolded {
                report.differences.append(
                    try locateUnreportedIncident()
                        ?? DerivedDifference(
                            database: .incidents, key: nil, position: nil,
                            problem: "it holds \(compared.incidentEntries) incidents, and the events report \(compared.incidentsFolded)",
                            remedy: .rebuildProjections))
            }
            if let reason = compared.citiesNotCompared {
                report.notCompared.append(DerivedDataReport.NotCompared(database: .cities, reason: reason))
            } else if let difference = compared.cityDifference {
                report.differences.append(difference)
            }
            if compared.cityDates != compared.cityDatesFolded {
                report.differences.append(
                    try locateCityDateDifference()
                        ?? DerivedDifference(
                            database: .cityDates, key: nil, position: nil,
                            problem: "its entries differ from those the events give (their digests differ), but a second look found none that does",
                            remedy: .rebuildProjections))
            }
        }

        let eventIdsAgree = !compared.eventIdsMalformed && compared.eventIds == events.eventIds
            && compared.eventIdEntries == compared.head
        if !eventIdsAgree {
            report.differences.append(
                try locateEventIdDifference()
                    ?? DerivedDifference(
                        database: .eventIds, key: nil, position: nil,
                        problem: "its entries differ from those the events give (their digests differ), but a second look found none that does",
                        remedy: .recoverFromEvents))
        }
        let order = DerivedDifference.Database.allCases
        report.differences.sort { (order.firstIndex(of: $0.database) ?? 0) < (order.firstIndex(of: $1.database) ?? 0) }
        return report
    }

    /// What ``compareInOneSnapshot(eventsReadThrough:)`` found, to be set against the events' digests.
    struct SnapshotComparison: Sendable {
        /// The head of the snapshot.
        var head: UInt64
        /// The digests of the events appended after the head the stretches read through.
        var eventsAppended = IndexDigests()
        /// The `incident-streams` entries the fold took, and how many entries the database holds.
        var streams = IndexDigest()
        var streamEntries = 0
        /// Why the fold of `incident-streams` stopped, if it did.
        var foldFailure: String?
        /// The first incident whose stored projection differs from its fold, in the order they were reported.
        var incidentDifference: DerivedDifference?
        var incidentsFolded = 0
        var incidentEntries = 0
        var cityDifference: DerivedDifference?
        var citiesNotCompared: String?
        /// The `city-dates` entries stored, and those the fold gives.
        var cityDates = IndexDigest()
        var cityDatesFolded = IndexDigest()
        /// Why the projections are not compared: their mark says they are not current, so that the daemon rebuilds
        /// them before it serves (a backup of an older incidentd's log, a rebuild cut short).
        var projectionsNotCompared: String?
        /// The position the projections' mark names when it is past the head: events they counted were removed.
        var projectionsPastHead: UInt64?
        /// The `event-ids` entries, whether any is not a position and a digest, and how many the database holds.
        var eventIds = IndexDigest()
        var eventIdsMalformed = false
        var eventIdEntries = 0
    }

    /// Reads the derived data in one snapshot: `incident-streams` folded into the projections, which are compared
    /// with the stored ones, and the digests of both indexes; and the events appended since `firstHead`.
    private func compareInOneSnapshot(eventsReadThrough firstHead: UInt64, checkpoint: () throws -> Void) throws -> SnapshotComparison {
        try environment.read { txn in
            var compared = SnapshotComparison(head: try Head.read(txn, db).position)
            if compared.head > firstHead {
                compared.eventsAppended = try digestEvents((firstHead + 1)...compared.head, in: txn)
            }
            let mark = try projectionMark(txn)
            if mark.0 != .max && mark.0 > compared.head {
                compared.projectionsPastHead = mark.0
            } else if mark.0 != compared.head || mark.1 != EventLog.projectionVersion {
                compared.projectionsNotCompared =
                    mark.0 == .max
                    ? "a rebuild of them did not finish, and incidentd rebuilds them at its next start"
                    : "they are marked as of position \(mark.0), version \(mark.1), not \(compared.head), version \(EventLog.projectionVersion), and incidentd rebuilds them at its next start"
            }
            try foldStreams(txn, into: &compared, checkpoint: checkpoint)
            compared.streamEntries = try txn.count(db.streams)
            compared.incidentEntries = try txn.count(db.incidents)
            try txn.forEach(db.cityDates) { key, value in
                compared.cityDates.add(IndexDigest.cityDateEntry(key: key, value: value))
                return true
            }
            try txn.forEach(db.eventIds) { key, value in
                guard value.count == 40, let position = Keys.readPosition(value) else {
                    compared.eventIdsMalformed = true
                    return true
                }
                compared.eventIds.add(IndexDigest.eventIdEntry(id: key, position: position))
                return true
            }
            compared.eventIdEntries = try txn.count(db.eventIds)
            return compared
        }
    }

    /// Folds `incident-streams` with the rebuild's fold, a segment of positions at a time: each segment's
    /// incidents compared with their stored projections, then forgotten; at the end, the cities.
    private func foldStreams(
        _ txn: borrowing ReadTransaction, into compared: inout SnapshotComparison, checkpoint: () throws -> Void
    ) throws {
        var fold = StreamFold(projector: projector, direct: ProjectionFold.directEncodingHolds(projector: projector))
        var entries = StreamEntryDigest()
        let cursor = try txn.cursor(db.streams)
        var start: UInt64 = 1
        do {
            while true {
                try checkpoint()
                let end = start &+ EventLog.derivedCheckSegment
                // The last segment takes any entry after the head too (none belongs there).
                let last = end > compared.head || end < start
                try fold.fold(cursor, reports: start..<(last ? .max : end), visiting: &entries)
                if compared.incidentDifference == nil { compared.incidentDifference = try firstIncidentDifference(fold, txn) }
                compared.incidentsFolded += fold.incidentCount
                for i in 0..<fold.dateCount {
                    let (key, value) = fold.dateEntry(i)
                    key.withUnsafeBytes { key in
                        value.withUnsafeBytes { compared.cityDatesFolded.add(IndexDigest.cityDateEntry(key: key, value: $0)) }
                    }
                }
                var key: [UInt8] = []
                for i in 0..<fold.byReportCount {
                    key.removeAll(keepingCapacity: true)
                    fold.byReportKey(i, into: &key)
                    key.withUnsafeBytes { key in
                        fold.byReportId(i).withUnsafeBytes { compared.cityDatesFolded.add(IndexDigest.cityDateEntry(key: key, value: $0)) }
                    }
                }
                fold.forgetIncidents()
                if last { break }
                start = end
            }
        } catch let error as LogError where error.code == .corrupt {
            compared.foldFailure = error.message
        } catch let damage as StreamSummaryDamage {
            compared.foldFailure = "\(damage)"
        }
        compared.streams = entries.digest
        guard compared.foldFailure == nil else { return }
        guard let builtWith = try txn.get(db.meta, key: Keys.gazetteer) else {
            compared.citiesNotCompared =
                "the log does not record which gazetteer its projections were built with (an older incidentd built them; a city's name, region and population come from it)"
            return
        }
        guard builtWith.elementsEqual(gazetteerDigest) else {
            compared.citiesNotCompared =
                "the log records that its projections were built with another gazetteer than the one the cities are compared with (a city's name, region and population come from it)"
            return
        }
        compared.cityDifference = try firstCityDifference(StreamFold.merge([fold]), txn)
    }

    /// The first of the incidents `fold` holds whose stored projection differs from its fold, byte for byte.
    private func firstIncidentDifference(_ fold: StreamFold, _ txn: borrowing ReadTransaction) throws -> DerivedDifference? {
        let txn = txn.unsafeHandle
        for i in 0..<fold.incidentCount {
            let id = fold.ids[fold.idStarts[i]..<fold.idStarts[i + 1]]
            let stored = try id.withUnsafeBytes { try txn.get(db.incidents, key: $0) }
            let record = fold.record(i)
            if let stored, record.withUnsafeBytes({ ByteTable.equal($0, stored) }) { continue }
            let name = String(decoding: id, as: UTF8.self)
            let folded = try? record.withUnsafeBytes { try IncidentState(encoded: $0, incident: name) }
            let problem: String
            if let stored {
                do {
                    let state = try IncidentState(encoded: stored, incident: name)
                    problem = "its stored projection differs from the one the events give: "
                        + (folded.flatMap { firstDifference(stored: state.json, folded: $0.json) }
                            ?? "the stored bytes differ, though they read the same")
                } catch {
                    problem = "its stored projection cannot be read (\(error))"
                }
            } else {
                problem = "it has no stored projection, though the events report it"
            }
            return DerivedDifference(
                database: .incidents, key: name, position: folded?.firstPosition, problem: problem, remedy: .rebuildProjections)
        }
        return nil
    }

    /// The first city, in key order, whose stored projection differs from `folded`'s, is missing, or is one the
    /// events never report an incident in.
    private func firstCityDifference(_ folded: [CityState], _ txn: borrowing ReadTransaction) throws -> DerivedDifference? {
        var expected: [String: CityState] = [:]
        for city in folded { expected[city.cityId] = city }
        var stored: [String: [UInt8]] = [:]
        try txn.forEach(db.cities) { key, value in
            stored[String(decoding: key, as: UTF8.self)] = Array(value)
            return true
        }
        let ids = Set(expected.keys).union(stored.keys).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        for id in ids {
            let problem: String
            switch (stored[id], expected[id]) {
            case (let bytes?, let city?):
                let canonical = city.canonicalBytes()
                if bytes == canonical { continue }
                if let document = try? JSONReader().read(bytes) {
                    problem = "its stored projection differs from the one the events give: "
                        + (firstDifference(stored: document, folded: city.json)
                            ?? "the stored bytes are not the canonical form of the document the events give, though they read the same")
                } else {
                    problem = "its stored projection is not a JSON document"
                }
            case (nil, let city?):
                problem = "it has no stored projection, though the events report incidents in it (the last at position \(city.lastPosition))"
            case (_?, nil):
                problem = "it has a stored projection, though the events report no incident in it"
            case (nil, nil):
                continue
            }
            return DerivedDifference(database: .cities, key: id, position: nil, problem: problem, remedy: .rebuildProjections)
        }
        return nil
    }

    /// The digests of what the indexes should hold of the events at `range`, read with `txn`; an event that is
    /// missing or cannot be read ends the stretch, named in ``IndexDigests/unreadable``.
    private func digestEvents(_ range: ClosedRange<UInt64>, in txn: borrowing ReadTransaction) throws -> IndexDigests {
        var digests = IndexDigests()
        var summary: [UInt8] = []
        summary.reserveCapacity(512)
        let cursor = try txn.cursor(db.events)
        var entry = try cursor.seek(atOrAfter: range.lowerBound)
        var position = range.lowerBound
        while position <= range.upperBound {
            guard let (key, value) = entry, key.count == 8, Keys.readPosition(key) == position, value.count > 32 else {
                digests.unreadable = (position, "event \(position) is missing")
                return digests
            }
            summary.removeAll(keepingCapacity: true)
            do {
                var streamEntry = try StreamSummary.append(
                    ofStored: UnsafeRawBufferPointer(rebasing: value[32...]), at: position, to: &summary
                ) { eventId, incident, version in
                    digests.eventIds.add(IndexDigest.eventIdEntry(id: eventId, position: position))
                    return IndexDigest.streamEntry(incident: incident, version: version, position: position)
                }
                summary.withUnsafeBytes { streamEntry.combine(bytes: $0) }
                digests.streams.add(streamEntry)
            } catch let error as LogError {
                digests.unreadable = (position, error.message)
                return digests
            }
            position += 1
            if position <= range.upperBound { entry = try cursor.next() }
        }
        return digests
    }

    // MARK: The second look

    /// The first `incident-streams` entry, in key order, that is not what the events give, in a snapshot of its own;
    /// or, when every entry is, the first event that has none. A summary that differs is put right by a rebuild,
    /// which makes it again from the event the entry names; so the look goes on past one, and when a later entry
    /// names the wrong event or is missing, which only recovery puts right, the first difference takes that remedy
    /// and names that entry too.
    private func locateStreamDifference() throws -> DerivedDifference? {
        try environment.read { txn in
            let head = try Head.read(txn, db).position
            var named = PositionSet(through: head)
            var summary: [UInt8] = []
            var stream: (start: UInt64, incident: [UInt8])?
            var summaryDifference: DerivedDifference?
            func escalated(_ difference: DerivedDifference) -> DerivedDifference {
                guard var first = summaryDifference else { return difference }
                first.remedy = .recoverFromEvents
                first.problem += "; and entry \(difference.key ?? "of event \(difference.position ?? 0)"): \(difference.problem)"
                return first
            }
            let cursor = try txn.cursor(db.streams)
            var entry = try cursor.first()
            while let (key, value) = entry {
                guard key.count == 16, let start = Keys.readPosition(key),
                    let rawVersion = Keys.readPosition(UnsafeRawBufferPointer(rebasing: key[8...])), value.count >= 8,
                    let position = Keys.readPosition(value)
                else {
                    return escalated(
                        DerivedDifference(
                            database: .incidentStreams, key: nil, position: nil,
                            problem: "an entry of a \(key.count)-byte key and a \(value.count)-byte value is not a stream key and a position",
                            remedy: .recoverFromEvents))
                }
                let version = Int64(bitPattern: rawVersion)
                func differs(_ problem: String, remedy: DerivedDifference.Remedy = .recoverFromEvents) -> DerivedDifference {
                    let difference = DerivedDifference(
                        database: .incidentStreams, key: "\(start)/\(version)", position: position, problem: problem, remedy: remedy)
                    return remedy == .recoverFromEvents ? escalated(difference) : difference
                }
                let read: (incident: [UInt8], version: Int64)?
                do {
                    read = try storedEvent(at: position, through: head, in: txn.unsafeHandle, summary: &summary) { _, incident, version in
                        (Array(incident), version)
                    }
                } catch let error as LogError {
                    return differs("it names event \(position), and \(error.message)")
                }
                guard let event = read else { return differs("it names position \(position), which holds no event") }
                let described = "event \(position), version \(event.version) of incident \(String(decoding: event.incident, as: UTF8.self))"
                if version == 1 {
                    guard event.version == 1, position == start else {
                        return differs("as the first entry of the incident reported at position \(start), it should name that report, and names \(described)")
                    }
                    stream = (start, event.incident)
                } else if stream?.start != start || stream?.incident != event.incident || event.version != version {
                    return differs("it names \(described), which is not version \(version) of the incident reported at position \(start)")
                }
                if summaryDifference == nil, !UnsafeRawBufferPointer(rebasing: value[8...]).elementsEqual(summary) {
                    summaryDifference = differs(
                        "its summary of \(described) differs from the one the event gives", remedy: .rebuildProjections)
                }
                guard named.insert(position) else { return differs("it is a second entry for event \(position)") }
                entry = try cursor.next()
            }
            guard let missing = named.firstMissing else { return summaryDifference }
            var described = "event \(missing)"
            if let event = try unlessUnreadable({
                try storedEvent(at: missing, through: head, in: txn.unsafeHandle, summary: &summary) { _, incident, version in
                    (String(decoding: incident, as: UTF8.self), version)
                }
            }) {
                described += ", version \(event.1) of incident \(event.0),"
            }
            return escalated(
                DerivedDifference(
                    database: .incidentStreams, key: nil, position: missing, problem: "\(described) has no entry",
                    remedy: .recoverFromEvents))
        }
    }

    /// The first `event-ids` entry, in key order, that does not name the event with its id, in a snapshot of its own;
    /// or, when every entry does, the first event whose id has no entry.
    private func locateEventIdDifference() throws -> DerivedDifference? {
        try environment.read { txn in
            let head = try Head.read(txn, db).position
            let txn = txn.unsafeHandle
            var named = PositionSet(through: head)
            var scratch: [UInt8] = []
            var found: DerivedDifference?
            func eventId(at position: UInt64) throws -> [UInt8]? {
                try unlessUnreadable { try storedEvent(at: position, through: head, in: txn, summary: &scratch) { id, _, _ in Array(id) } }
            }
            try txn.forEach(db.eventIds) { key, value in
                let name = String(decoding: key, as: UTF8.self)
                guard value.count == 40, let position = Keys.readPosition(value) else {
                    found = DerivedDifference(
                        database: .eventIds, key: name, position: nil,
                        problem: "its value is \(value.count) bytes, not a position and a content digest (40)", remedy: .recoverFromEvents)
                    return false
                }
                guard let id = try eventId(at: position) else {
                    found = DerivedDifference(
                        database: .eventIds, key: name, position: position,
                        problem: "it names position \(position), which holds no event that can be read", remedy: .recoverFromEvents)
                    return false
                }
                guard key.elementsEqual(id) else {
                    found = DerivedDifference(
                        database: .eventIds, key: name, position: position,
                        problem: "it names event \(position), whose id is \(String(decoding: id, as: UTF8.self))", remedy: .recoverFromEvents)
                    return false
                }
                _ = named.insert(position)
                return true
            }
            if let found { return found }
            guard let missing = named.firstMissing else { return nil }
            return DerivedDifference(
                database: .eventIds, key: try eventId(at: missing).map { String(decoding: $0, as: UTF8.self) }, position: missing,
                problem: "event \(missing) has no entry under its id", remedy: .recoverFromEvents)
        }
    }

    /// The first `city-dates` entry, in key order, that differs from those the events give (one they do not give, one
    /// with another date or incident, or one they give that is missing), dates and the cities' lists of the incidents
    /// they do not date alike, in a snapshot of its own: `incident-streams` folded again, a segment at a time, keeping only the entries.
    private func locateCityDateDifference() throws -> DerivedDifference? {
        try environment.read { txn in
            let head = try Head.read(txn, db).position
            var fold = StreamFold(projector: projector, direct: ProjectionFold.directEncodingHolds(projector: projector))
            var expected: [(key: [UInt8], value: [UInt8])] = []
            let streams = try txn.cursor(db.streams)
            var start: UInt64 = 1
            while true {
                let end = start &+ EventLog.derivedCheckSegment
                let last = end > head || end < start
                try fold.fold(streams, reports: start..<(last ? .max : end))
                for i in 0..<fold.dateCount {
                    let (key, value) = fold.dateEntry(i)
                    expected.append((Array(key), Array(value)))
                }
                for i in 0..<fold.byReportCount {
                    var key: [UInt8] = []
                    fold.byReportKey(i, into: &key)
                    expected.append((key, Array(fold.byReportId(i))))
                }
                fold.forgetIncidents()
                if last { break }
                start = end
            }
            expected.sort { $0.key.lexicographicallyPrecedes($1.key) }
            func named(_ key: some Collection<UInt8>) -> (key: String, position: UInt64?) {
                let bytes = Array(key)
                return bytes.withUnsafeBytes { raw in
                    if let (cityId, position) = Keys.readCityIncident(raw) {
                        return ("\(String(decoding: cityId, as: UTF8.self))/\(position)", position)
                    }
                    guard let (cityId, _, position) = Keys.readCityDate(raw) else {
                        return (ChainHash.hex(bytes), nil)
                    }
                    return ("\(String(decoding: cityId, as: UTF8.self))/\(position)", position)
                }
            }
            func difference(_ key: some Collection<UInt8>, _ problem: String) -> DerivedDifference {
                let (name, position) = named(key)
                return DerivedDifference(database: .cityDates, key: name, position: position, problem: problem, remedy: .rebuildProjections)
            }
            func isIncidentEntry(_ key: some Collection<UInt8>) -> Bool { key.first == Keys.cityIncidentMark }
            /// An entry's value as a message names it: an incident id, or a date and the incident it is of.
            func described(_ value: some Collection<UInt8>, incidentEntry: Bool) -> String {
                let bytes = Array(value)
                if incidentEntry { return String(decoding: bytes, as: UTF8.self) }
                return bytes.withUnsafeBytes { raw in
                    guard let (text, incident) = Keys.readCityDateValue(raw) else {
                        return "\(String(decoding: bytes, as: UTF8.self)) (no incident id after the date)"
                    }
                    return "\(String(decoding: text, as: UTF8.self)) of incident \(String(decoding: incident, as: UTF8.self))"
                }
            }
            func missing(_ entry: (key: [UInt8], value: [UInt8])) -> DerivedDifference {
                let incidentEntry = isIncidentEntry(entry.key)
                let value = described(entry.value, incidentEntry: incidentEntry)
                return difference(
                    entry.key,
                    incidentEntry
                        ? "its city's list of the incidents it does not date has no entry for the report at this position (incident \(value)), which the events give: retracted, or without a date"
                        : "it has no entry for the report at this position (\(value)), which its city counts")
            }
            var next = 0
            var found: DerivedDifference?
            try txn.forEach(db.cityDates) { key, value in
                let incidentEntry = isIncidentEntry(key)
                let text = described(value, incidentEntry: incidentEntry)
                guard incidentEntry ? Keys.readCityIncident(key) != nil : Keys.readCityDate(key) != nil else {
                    found = difference(
                        key,
                        incidentEntry
                            ? "its key of \(key.count) bytes is not 0xFF, a city id and the position of a report"
                            : "its key of \(key.count) bytes is not a city id, the start of a date and the position of a report")
                    return false
                }
                if next < expected.count, expected[next].key.lexicographicallyPrecedes(key) {
                    found = missing(expected[next])
                    return false
                }
                guard next < expected.count, expected[next].key.elementsEqual(key) else {
                    found = difference(
                        key,
                        incidentEntry
                            ? "its city's list of the incidents it does not date holds incident \(text) at this position, where the events report none in the city that it does not date"
                            : "it holds the date \(text) at this position, which is not an incident its city counts (retracted, or not reported there)")
                    return false
                }
                guard expected[next].value.elementsEqual(value) else {
                    let given = described(expected[next].value, incidentEntry: incidentEntry)
                    found = difference(
                        key,
                        incidentEntry
                            ? "its city's list of the incidents it does not date holds incident \(text) at this position, where the events report \(given)"
                            : "it holds the date \(text) at this position, where the events give \(given)")
                    return false
                }
                next += 1
                return true
            }
            if let found { return found }
            guard next < expected.count else { return nil }
            return missing(expected[next])
        }
    }

    /// The first stored incident projection, in key order, of an incident the events do not report where it says,
    /// in a snapshot of its own.
    private func locateUnreportedIncident() throws -> DerivedDifference? {
        try environment.read { txn in
            let head = try Head.read(txn, db).position
            let txn = txn.unsafeHandle
            var scratch: [UInt8] = []
            var found: DerivedDifference?
            try txn.forEach(db.incidents) { key, value in
                let name = String(decoding: key, as: UTF8.self)
                let state: IncidentState
                do {
                    state = try IncidentState(encoded: value, incident: name)
                } catch {
                    found = DerivedDifference(
                        database: .incidents, key: name, position: nil, problem: "its stored projection cannot be read (\(error))",
                        remedy: .rebuildProjections)
                    return false
                }
                let position = state.firstPosition
                let report = try unlessUnreadable {
                    try storedEvent(at: position, through: head, in: txn, summary: &scratch) { _, incident, version in
                        (String(decoding: incident, as: UTF8.self), version)
                    }
                }
                guard let report, report.0 == name, report.1 == 1 else {
                    found = DerivedDifference(
                        database: .incidents, key: name, position: position,
                        problem: "the events do not report it where its stored projection says (position \(position))",
                        remedy: .rebuildProjections)
                    return false
                }
                return true
            }
            return found
        }
    }
}

extension EventLog {
    /// Reads the event stored at `position`, one of the `head` the log holds, the fast way
    /// (``StreamSummary/append(ofStored:at:to:_:)``), makes `summary` anew from it, and gives `body` its id, incident
    /// and version; nil when no event is stored there.
    ///
    /// - Throws: ``LogError`` `.corrupt` when the stored event cannot be read as one; what `body` throws.
    fileprivate func storedEvent<R>(
        at position: UInt64, through head: UInt64, in txn: UnsafeReadTransaction, summary: inout [UInt8],
        _ body: (_ eventId: UnsafeRawBufferPointer, _ incident: UnsafeRawBufferPointer, _ version: Int64) throws -> R
    ) throws -> R? {
        guard position >= 1, position <= head, let stored = try txn.get(db.events, key: Keys.position(position)), stored.count > 32
        else { return nil }
        summary.removeAll(keepingCapacity: true)
        return try StreamSummary.append(ofStored: UnsafeRawBufferPointer(rebasing: stored[32...]), at: position, to: &summary, body)
    }

    /// What `read` gives, or nil when it throws a ``LogError`` (an event that cannot be read as one); an error of
    /// LMDB's still ends the look.
    fileprivate func unlessUnreadable<R>(_ read: () throws -> R?) throws -> R? {
        do {
            return try read()
        } catch is LogError {
            return nil
        }
    }
}

/// The first place where two documents differ, as `path: stored X, the events give Y`; nil when they are equal.
func firstDifference(stored: JSONValue, folded: JSONValue, at path: String = "") -> String? {
    func shown(_ value: JSONValue) -> String {
        let text = value.canonicalString()
        return text.count > 80 ? String(text.prefix(77)) + "…" : text
    }
    switch (stored, folded) {
    case (.object(let a), .object(let b)):
        for key in Set(a.keys).union(b.keys).sorted() {
            let inner = path.isEmpty ? key : "\(path).\(key)"
            switch (a[key], b[key]) {
            case (let x?, let y?):
                if let difference = firstDifference(stored: x, folded: y, at: inner) { return difference }
            case (nil, let y?):
                return "\(inner): stored none, the events give \(shown(y))"
            case (let x?, nil):
                return "\(inner): stored \(shown(x)), the events give none"
            case (nil, nil):
                continue
            }
        }
        return nil
    case (.array(let a), .array(let b)) where a.count == b.count:
        for (i, (x, y)) in zip(a, b).enumerated() {
            if let difference = firstDifference(stored: x, folded: y, at: "\(path)[\(i)]") { return difference }
        }
        return nil
    default:
        return stored == folded ? nil : "\(path.isEmpty ? "the document" : path): stored \(shown(stored)), the events give \(shown(folded))"
    }
}

/// An order-free digest of a set of index entries: how many, and the sum of their hashes (SipHash with this
/// process's seed, `Hasher`), so that the entries the events give, read on several threads, and those an index
/// holds, read in its key order, can be compared. Two sets that differ have equal digests by chance once in about
/// 2⁶⁴.
struct IndexDigest: Equatable, Sendable {
    private(set) var count = 0
    private var sum: UInt64 = 0

    /// The hash of an `incident-streams` entry, before its summary is combined into it: the incident it belongs to
    /// (its id), its version and the position it names.
    static func streamEntry(incident: UnsafeRawBufferPointer, version: Int64, position: UInt64) -> Hasher {
        var hasher = Hasher()
        hasher.combine(incident.count)
        hasher.combine(bytes: incident)
        hasher.combine(version)
        hasher.combine(position)
        return hasher
    }

    /// The hash of a `city-dates` entry: its key and its value.
    static func cityDateEntry(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Hasher {
        var hasher = Hasher()
        hasher.combine(key.count)
        hasher.combine(bytes: key)
        hasher.combine(value.count)
        hasher.combine(bytes: value)
        return hasher
    }

    /// The hash of an `event-ids` entry: the id, and the position it names.
    static func eventIdEntry(id: UnsafeRawBufferPointer, position: UInt64) -> Hasher {
        var hasher = Hasher()
        hasher.combine(id.count)
        hasher.combine(bytes: id)
        hasher.combine(position)
        return hasher
    }

    mutating func add(_ entry: Hasher) {
        count += 1
        sum &+= UInt64(bitPattern: Int64(entry.finalize()))
    }

    mutating func add(_ other: IndexDigest) {
        count += other.count
        sum &+= other.sum
    }
}

/// The digests of what the two indexes should hold of a stretch of events.
struct IndexDigests: Sendable {
    var streams = IndexDigest()
    var eventIds = IndexDigest()
    /// The first event that is missing or cannot be read, and why; the stretch ends there.
    var unreadable: (position: UInt64, problem: String)?

    mutating func add(_ other: IndexDigests) {
        streams.add(other.streams)
        eventIds.add(other.eventIds)
        if let theirs = other.unreadable, unreadable.map({ theirs.position < $0.position }) ?? true { unreadable = theirs }
    }
}

/// The digest of the `incident-streams` entries a ``StreamFold`` takes.
struct StreamEntryDigest: StreamEntryVisitor {
    private(set) var digest = IndexDigest()

    mutating func visit(
        incident: UnsafeRawBufferPointer, start: UInt64, version: Int64, position: UInt64, summary: UnsafeRawBufferPointer
    ) {
        var entry = IndexDigest.streamEntry(incident: incident, version: version, position: position)
        entry.combine(bytes: summary)
        digest.add(entry)
    }
}

/// Which of the positions 1 through a head an index names: a bit each (125 KB per million events).
struct PositionSet {
    let head: UInt64
    private var words: [UInt64]

    init(through head: UInt64) {
        self.head = head
        words = [UInt64](repeating: 0, count: Int(head / 64) + 1)
    }

    /// Adds `position` (1 through the head); false if it was there already.
    mutating func insert(_ position: UInt64) -> Bool {
        guard position >= 1, position <= head else { return false }
        let (word, bit) = (Int(position / 64), position % 64)
        defer { words[word] |= 1 << bit }
        return words[word] & (1 << bit) == 0
    }

    /// The first of the positions 1 through the head that is not in the set.
    var firstMissing: UInt64? {
        for (index, word) in words.enumerated() where word != .max {
            for bit in 0..<UInt64(64) where word & (1 << bit) == 0 {
                let position = UInt64(index) * 64 + bit
                if position == 0 { continue }
                return position <= head ? position : nil
            }
        }
        return nil
    }
}
