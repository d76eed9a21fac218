import IncidentDomain
import LMDB
import StrictJSON

extension EventLog {
    /// Walks the hash chain from position 1 to the head and names the first position that does not match:
    /// a gap, bytes whose hash differs from the stored one, or a `prevHash` that is not its predecessor's hash.
    public func verify() throws -> VerifyReport {
        try environment.read { txn in
            let head = try Head.read(txn, db)
            var report = VerifyReport(checked: 0, headPosition: head.position, headHash: ChainHash.hex(head.hash))
            var previous = ChainHash.zero
            var expected: UInt64 = 1
            let cursor = try txn.cursor(db.events)
            var entry = try cursor.first()
            func fail(_ position: UInt64, _ problem: String) -> VerifyReport {
                report.firstBadPosition = position
                report.problem = problem
                return report
            }
            while let (key, value) = entry {
                guard let position = Keys.readPosition(key), key.count == 8 else {
                    return fail(expected, "a key that is not a position")
                }
                guard position == expected else { return fail(expected, "position \(expected) is missing (next is \(position))") }
                guard value.count > 32 else { return fail(position, "the stored event is truncated") }
                let canonical = UnsafeRawBufferPointer(rebasing: value[32...])
                let computed = ChainHash.link(previous: previous, canonical: canonical)
                guard computed.elementsEqual(value[0..<32]) else {
                    return fail(position, "the stored bytes do not hash to the stored hash")
                }
                // The envelope read in place, in canonical member order; any other form is read whole.
                let envelopeMatches =
                    StoredEventReader.envelopeMatches(canonical, position: position, previous: previous)
                    ?? (try? JSONReader().read(canonical)).map {
                        $0["position"]?.intValue == Int64(position) && $0["prevHash"]?.stringValue == ChainHash.hex(previous)
                    } ?? false
                guard envelopeMatches else {
                    return fail(position, "position or prevHash inside the event do not match the chain")
                }
                previous = computed
                report.checked = position
                expected += 1
                entry = try cursor.next()
            }
            if report.checked != head.position || previous != head.hash {
                return fail(report.checked + 1, "the recorded head (\(head.position)) does not match the last event (\(report.checked))")
            }
            return report
        }
    }

    /// The projection of every city, by city id, folded afresh from the log alone and stopping where `limit`
    /// says: the document `cities` answers, computed without the stored projections. Reads only: LMDB readers
    /// never block the running daemon, and the running daemon never blocks them. The fold is the rebuild's
    /// (``ProjectionFold``), which the daemon's own projections are checked against.
    public func replay(_ limit: ReplayLimit = ReplayLimit()) throws -> [CityState] {
        try environment.read { txn in
            let head = try Head.read(txn, db).position
            var fold = ProjectionFold(projector: projector)
            fold.reserveCapacity(events: Int(min(head, limit.untilPosition ?? head)))
            var blocks = FoldBuffers()
            let stop = FoldStop(
                untilPosition: limit.untilPosition ?? .max, recordedAfter: limit.asOf?.microseconds,
                occurredBefore: limit.occurredBefore?.microseconds)
            let cursor = try txn.cursor(db.events)
            _ = try foldEvents(cursor, from: try cursor.first(), stop: stop, into: &fold, blocks: &blocks)
            return fold.cities.map { $0.state(fold.texts) }.sorted { $0.cityId < $1.cityId }
        }
    }

    /// Drops the stored projections and folds every event again, `chunk` events at a time (what one chunk folds
    /// is kept in memory: about 300 bytes per incident), then writes each chunk's incidents, in key order, in
    /// transactions of `incidentsPerCommit`. Returns the number of events folded.
    ///
    /// The fold is ``ProjectionFold``: `Projector.apply`'s arithmetic on compact records, fed by
    /// ``StoredEventReader`` straight from the stored bytes, with `RecordedEvent(json:)` for any event not in
    /// the form it expects. Reading the events, the larger part of the work, goes on on a second thread (see
    /// ``StoredEventBlock``). Writing in several transactions keeps each one's list of dirty pages short:
    /// LMDB keeps it sorted, and in one transaction of 600,000 incidents, inserting into it took a tenth of
    /// the rebuild. A crash between them leaves no projection mark, so the next start rebuilds again.
    @discardableResult
    public func rebuildProjections(chunk: Int = 1 << 20, incidentsPerCommit: Int = 16_384) throws -> UInt64 {
        try environment.write { txn in
            try txn.drop(db.incidents, delete: false)
            try txn.drop(db.cities, delete: false)
            try txn.delete(db.meta, key: Keys.projections)
        }
        let headPosition = try environment.read { txn in try Head.read(txn, db).position }
        var fold = ProjectionFold(projector: projector)
        let direct = ProjectionFold.directEncodingHolds(projector: projector)
        var next: UInt64 = 1
        var folded: UInt64 = 0
        var done = false
        var empty = true
        var blocks = FoldBuffers()
        while !done {
            if headPosition >= next { fold.reserveCapacity(events: Int(min(UInt64(chunk), headPosition - next + 1))) }
            // The fold only reads, but in a write transaction, whose handle reads back the incidents of earlier
            // chunks. It writes nothing, so it is never run again for a full map (which would fold the chunk twice).
            let (lastPosition, count, reachedEnd) = try environment.write { txn -> (UInt64, Int, Bool) in
                let handle = txn.unsafeHandle
                let db = self.db
                fold.stored = { id in
                    guard let raw = try handle.get(db.incidents, key: id) else { return nil }
                    return try IncidentState(encoded: raw)
                }
                defer { fold.stored = { _ in nil } }
                let cursor = try txn.cursor(db.events)
                return try foldEvents(
                    cursor, from: try cursor.seek(atOrAfter: Keys.position(next)), after: next - 1,
                    stop: FoldStop(maxEvents: chunk), into: &fold, blocks: &blocks)
            }
            // Appending while the table was empty before this chunk; an `.append` out of order fails, and then the
            // rest goes in with plain puts. The direct encoding is checked again on this chunk's first incident.
            let order = fold.incidentsInKeyOrder()
            let encodeDirectly = direct && fold.firstIncidentEncodesDirectly
            var appending = empty
            var start = 0
            while start < order.count {
                let end = min(start + incidentsPerCommit, order.count)
                // A write that fills the map is run again once the map has grown; these puts are the same each time.
                appending = try environment.write { txn -> Bool in
                    let handle = txn.unsafeHandle
                    let db = self.db
                    var appendingHere = appending
                    try fold.write(order[start..<end], direct: encodeDirectly) { key, count in
                        if appendingHere {
                            do {
                                return try handle.reserve(db.incidents, key: key, count: count, flags: .append)
                            } catch let error as LMDBError where error.isKeyExist {
                                appendingHere = false
                            }
                        }
                        return try handle.reserve(db.incidents, key: key, count: count)
                    }
                    return appendingHere
                }
                start = end
            }
            fold.forgetIncidents()
            if reachedEnd {
                try environment.write { txn in
                    let handle = txn.unsafeHandle
                    for city in fold.cities {
                        try handle.put(db.cities, key: city.base.cityId, value: city.state(fold.texts).canonicalBytes())
                    }
                    let head = try Head.read(txn, db)
                    try txn.put(db.meta, key: Keys.projections, value: EventLog.projectionMarkValue(head.position))
                }
            }
            done = reachedEnd
            empty = false
            next = lastPosition + 1
            folded += UInt64(count)
        }
        try loadCityDocuments()
        return folded
    }
}
