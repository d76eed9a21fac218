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
                guard let document = try? JSONReader().read(canonical),
                    document["position"]?.intValue == Int64(position),
                    document["prevHash"]?.stringValue == ChainHash.hex(previous)
                else { return fail(position, "position or prevHash inside the event do not match the chain") }
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

    /// Folds the log into fresh projections, stopping where `limit` says. Reads only: LMDB readers never block the
    /// running daemon, and the running daemon never blocks them.
    public func replay(_ limit: ReplayLimit = ReplayLimit()) throws -> InMemoryProjections {
        try environment.read { txn in
            var projections = InMemoryProjections()
            let cursor = try txn.cursor(db.events)
            var entry = try cursor.first()
            while let (key, value) = entry {
                entry = try cursor.next()
                guard let position = Keys.readPosition(key), value.count > 32 else { continue }
                if let until = limit.untilPosition, position > until { break }
                let event = try RecordedEvent(json: JSONReader().read(UnsafeRawBufferPointer(rebasing: value[32...])))
                if let asOf = limit.asOf, event.recordedAt > asOf { break }
                if let before = limit.occurredBefore {
                    guard let occurred = ParsedDate.parse(event.occurredAt), occurred.start < before else { continue }
                }
                try projector.apply(event, to: &projections)
            }
            return projections
        }
    }

    /// Drops the stored projections and folds every event again, in transactions of `chunk` events (what one
    /// transaction folds is kept in memory: about 300 bytes per incident). Returns the number of events folded.
    ///
    /// The fold is ``ProjectionFold``: `Projector.apply`'s arithmetic on compact records, fed by
    /// ``StoredEventReader`` straight from the stored bytes, with `RecordedEvent(json:)` for any event not in
    /// the form it expects.
    @discardableResult
    public func rebuildProjections(chunk: Int = 1 << 20) throws -> UInt64 {
        try environment.write { txn in
            try txn.drop(db.incidents, delete: false)
            try txn.drop(db.cities, delete: false)
            try txn.delete(db.meta, key: Keys.projections)
        }
        var fold = ProjectionFold(projector: projector)
        let direct = ProjectionFold.directEncodingHolds(projector: projector)
        var next: UInt64 = 1
        var folded: UInt64 = 0
        var done = false
        var empty = true
        while !done {
            // A write that fills the map (in its body or at commit) is run again once the map has grown: each run
            // folds the chunk from the state the fold was in before it, and what the chunk advanced is taken
            // only from the run that committed.
            let chunkStart = fold
            let (lastPosition, count, reachedEnd) = try environment.write { txn -> (UInt64, Int, Bool) in
                fold = chunkStart
                let handle = txn.unsafeHandle
                let db = self.db
                fold.stored = { id in
                    guard let raw = try handle.get(db.incidents, key: id) else { return nil }
                    return try IncidentState(encoded: raw)
                }
                defer { fold.stored = { _ in nil } }
                let cursor = try txn.cursor(db.events)
                var entry = try cursor.seek(atOrAfter: Keys.position(next))
                var count = 0
                var lastPosition = next - 1
                while let (key, value) = entry, count < chunk {
                    guard let position = Keys.readPosition(key), value.count > 32 else {
                        throw LogError(.corrupt, "a damaged event after position \(lastPosition)")
                    }
                    let canonical = UnsafeRawBufferPointer(rebasing: value[32...])
                    if try !StoredEventReader.fold(canonical, into: &fold) {
                        try fold.apply(RecordedEvent(json: JSONReader().read(canonical)))
                    }
                    lastPosition = position
                    count += 1
                    entry = try cursor.next()
                }
                let reachedEnd = entry == nil
                // Appending while the table was empty before; an `.append` out of order fails, and then the rest goes
                // in with plain puts. The direct encoding is checked again on this chunk's first incident.
                var appending = empty
                try fold.write(direct: direct && fold.firstIncidentEncodesDirectly) { key, count in
                    if appending {
                        do {
                            return try handle.reserve(db.incidents, key: key, count: count, flags: .append)
                        } catch let error as LMDBError where error.isKeyExist {
                            appending = false
                        }
                    }
                    return try handle.reserve(db.incidents, key: key, count: count)
                }
                fold.forgetIncidents()
                if reachedEnd {
                    for city in fold.cities {
                        try handle.put(db.cities, key: city.base.cityId, value: city.state(fold.texts).canonicalBytes())
                    }
                    let head = try Head.read(txn, db)
                    try txn.put(db.meta, key: Keys.projections, value: EventLog.projectionMarkValue(head.position))
                }
                return (lastPosition, count, reachedEnd)
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
