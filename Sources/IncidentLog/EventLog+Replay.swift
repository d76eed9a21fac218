import Dispatch
import IncidentDomain
import LMDB
import StrictJSON
import Synchronization

extension EventLog {
    /// Walks the hash chain from position 1 to the head and names the first position that does not match:
    /// a gap, bytes whose hash differs from the stored one, or a `prevHash` that is not its predecessor's hash.
    ///
    /// Each event's hash is checked against the hash stored with the event before it, so stretches of
    /// `stretch` positions are checked at once, on as many threads as the machine has cores; where the
    /// stored hashes all match, they are the chain that a walk from position 1 computes, and where one does
    /// not, the first such position is the one a walk would name. The last event is the one the snapshot
    /// holds at the start; events appended while it runs are left to the next `verify`.
    public func verify(stretch: Int = 1 << 16) throws -> VerifyReport {
        // The head, and the last stored key (any key that is not a position counts as past every position).
        let (head, lastPosition) = try environment.read { txn in
            let head = try Head.read(txn, db)
            let last = try txn.cursor(db.events).last().map { $0.key.count == 8 ? Keys.readPosition($0.key) ?? .max : .max } ?? 0
            return (head, last)
        }
        var report = VerifyReport(checked: 0, headPosition: head.position, headHash: ChainHash.hex(head.hash))
        // Up to the head in stretches checked at once; anything stored past the head, in one more stretch.
        var ranges: [ClosedRange<UInt64>] = []
        let size = UInt64(max(1, stretch))
        let end = min(lastPosition, head.position)
        var first: UInt64 = 1
        while first <= end {
            ranges.append(first...min(end, first + size - 1))
            first += size
        }
        if lastPosition > head.position { ranges.append((head.position + 1)...lastPosition) }
        let stretches = ranges
        let outcomes = Mutex([Result<StretchOutcome, any Error>?](repeating: nil, count: stretches.count))
        // Once a stretch fails, the ones after it cannot change the answer and are not checked.
        let firstFailed = Atomic<Int>(.max)
        DispatchQueue.concurrentPerform(iterations: stretches.count) { i in
            guard firstFailed.load(ordering: .relaxed) > i else { return }
            let outcome = Result { try verifyStretch(stretches[i]) }
            if case .success(.intact) = outcome {} else { firstFailed.min(i, ordering: .relaxed) }
            outcomes.withLock { $0[i] = outcome }
        }
        var previous = ChainHash.zero
        walk: for outcome in outcomes.withLock({ $0 }) {
            guard let outcome else { break }
            switch try outcome.get() {
            case .bad(let position, let problem):
                report.checked = position - 1
                report.firstBadPosition = position
                report.problem = problem
                return report
            case .intact(let last, let hash), .ended(let last, let hash):
                report.checked = last
                previous = hash
            }
            if case .success(.ended) = outcome { break walk }
        }
        if report.checked != head.position || previous != head.hash {
            report.firstBadPosition = report.checked + 1
            report.problem = "the recorded head (\(head.position)) does not match the last event (\(report.checked))"
        }
        return report
    }

    /// What ``verifyStretch(_:)`` found in its stretch of positions.
    enum StretchOutcome {
        /// The first position that does not match, and why.
        case bad(UInt64, String)
        /// Every position matched; the last one and its hash.
        case intact(last: UInt64, hash: [UInt8])
        /// The log ends inside the stretch, after `last` (0 for none), which matched; its hash.
        case ended(last: UInt64, hash: [UInt8])
    }

    /// Checks positions `range` (in a read transaction of their own) against the stored hash of the event
    /// before the first: each must be there, in turn, hash to its stored hash, and say its position and
    /// `prevHash` inside.
    private func verifyStretch(_ range: ClosedRange<UInt64>) throws -> StretchOutcome {
        try environment.read { txn in
            var previous = ChainHash.zero
            if range.lowerBound > 1 {
                // When the event before is missing or short, the stretch before names it, earlier than this one.
                guard let before = try txn.get(db.events, key: Keys.position(range.lowerBound - 1)), before.count > 32 else {
                    return .bad(range.lowerBound - 1, "position \(range.lowerBound - 1) is missing")
                }
                previous = Array(before[0..<32])
            }
            let cursor = try txn.cursor(db.events)
            var entry = try cursor.seek(atOrAfter: range.lowerBound)
            var expected = range.lowerBound
            while expected <= range.upperBound {
                guard let (key, value) = entry else { return .ended(last: expected - 1, hash: previous) }
                guard let position = Keys.readPosition(key), key.count == 8 else {
                    return .bad(expected, "a key that is not a position")
                }
                guard position == expected else { return .bad(expected, "position \(expected) is missing (next is \(position))") }
                guard value.count > 32 else { return .bad(position, "the stored event is truncated") }
                let canonical = UnsafeRawBufferPointer(rebasing: value[32...])
                let computed = ChainHash.link(previous: previous, canonical: canonical)
                guard computed.elementsEqual(value[0..<32]) else {
                    return .bad(position, "the stored bytes do not hash to the stored hash")
                }
                // The envelope read in place, in canonical member order; any other form is read whole.
                let envelopeMatches =
                    StoredEventReader.envelopeMatches(canonical, position: position, previous: previous)
                    ?? (try? JSONReader().read(canonical)).map {
                        $0["position"]?.intValue == Int64(position) && $0["prevHash"]?.stringValue == ChainHash.hex(previous)
                    } ?? false
                guard envelopeMatches else {
                    return .bad(position, "position or prevHash inside the event do not match the chain")
                }
                previous = computed
                expected += 1
                if expected <= range.upperBound { entry = try cursor.next() }
            }
            return .intact(last: range.upperBound, hash: previous)
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

    /// How many events a rebuild folds before it writes their incidents (while it folds the next ones).
    public static let rebuildChunk = 1 << 18
    /// How many incidents a rebuild writes per transaction.
    public static let rebuildIncidentsPerCommit = 16_384

    /// Drops the stored projections and folds every event again, `chunk` events at a time (what one chunk folds
    /// is kept in memory: about 300 bytes per incident), and writes each chunk's incidents, in key order, in
    /// transactions of `incidentsPerCommit`, while the next chunk is folded. Returns the number of events folded.
    ///
    /// The fold is ``ProjectionFold``: `Projector.apply`'s arithmetic on compact records, fed by
    /// ``StoredEventReader`` straight from the stored bytes, with `RecordedEvent(json:)` for any event not in
    /// the form it expects. Reading the events, the larger part of the work, goes on on a second thread (see
    /// ``StoredEventBlock``). A chunk's incidents are sorted and written on a worker while this thread folds the
    /// next chunk, which finds an incident of the chunk being written in that chunk's fold (``ChunkWrite``) and
    /// one of an earlier chunk in the database; chunks are written one at a time, in order. Writing in several
    /// transactions keeps each one's list of dirty pages short: LMDB keeps it sorted, and in one transaction of
    /// 600,000 incidents, inserting into it took a tenth of the rebuild. A crash between them leaves no
    /// projection mark, so the next start rebuilds again.
    @discardableResult
    public func rebuildProjections(
        chunk: Int = EventLog.rebuildChunk, incidentsPerCommit: Int = EventLog.rebuildIncidentsPerCommit
    ) throws -> UInt64 {
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
        var blocks = FoldBuffers()
        // The chunk a worker is writing (or last wrote), and the group to wait for it with.
        var writing: ChunkWrite?
        let written = DispatchGroup()
        defer { written.wait() }
        while !done {
            if headPosition >= next { fold.reserveCapacity(events: Int(min(UInt64(chunk), headPosition - next + 1))) }
            let previous = writing?.fold
            // A read transaction, so that the worker can write meanwhile. It sees every chunk before `previous`
            // (the one before this transaction began was written in full), and perhaps part of `previous`, whose
            // incidents are therefore looked up in its fold first.
            let (lastPosition, count, reachedEnd) = try environment.read { txn -> (UInt64, Int, Bool) in
                let handle = txn.unsafeHandle
                let db = self.db
                fold.stored = { id in
                    if let previous, let i = previous.ids.find(id, hash: previous.ids.hash(id)) { return previous.state(i) }
                    guard let raw = try handle.get(db.incidents, key: id) else { return nil }
                    return try IncidentState(encoded: raw)
                }
                defer { fold.stored = { _ in nil } }
                let cursor = try txn.cursor(db.events)
                return try foldEvents(
                    cursor, from: try cursor.seek(atOrAfter: Keys.position(next)), after: next - 1,
                    stop: FoldStop(maxEvents: chunk), into: &fold, blocks: &blocks)
            }
            written.wait()
            if let failure = writing?.failure { throw failure }
            // The first chunk goes into an empty table, in key order: appended. Later ones fall in between.
            let job = ChunkWrite(fold: fold, appending: writing == nil)
            fold.forgetIncidents()
            DispatchQueue.global().async(group: written) {
                job.run(log: self, direct: direct, incidentsPerCommit: incidentsPerCommit)
            }
            writing = job
            if reachedEnd {
                written.wait()
                if let failure = job.failure { throw failure }
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
            next = lastPosition + 1
            folded += UInt64(count)
        }
        try loadCityDocuments()
        return folded
    }

    /// Writes the incidents `fold` folded, in key order, in transactions of `incidentsPerCommit`: with
    /// `MDB_APPEND` while `appending` (into an empty table; the first key out of order ends it), otherwise with
    /// plain puts.
    func writeIncidents(of fold: ProjectionFold, appending: Bool, direct: Bool, incidentsPerCommit: Int) throws {
        let order = fold.incidentsInKeyOrder()
        // The direct encoding is checked again on this chunk's first incident.
        let encodeDirectly = direct && fold.firstIncidentEncodesDirectly
        var appending = appending
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
    }
}

/// One chunk of a rebuild on its way to the database: its fold, which a worker sorts and writes while the
/// rebuild's thread folds the next chunk, and the error that stopped the writing, if any.
///
/// `@unchecked Sendable`, and safe, because every access is ordered: the rebuild's thread makes it before
/// handing it to the worker (`DispatchQueue.async` orders the two); from then on both threads only read `fold`
/// (the next chunk's fold looks up incidents in it), and only the worker writes `failure`, which the rebuild's
/// thread reads after `DispatchGroup.wait()` has returned. The tables of `fold` are arrays the rebuild's own
/// fold shared copy-on-write when this one was made; its first change to them copies them.
final class ChunkWrite: @unchecked Sendable {
    let fold: ProjectionFold
    let appending: Bool
    private(set) var failure: (any Error)?

    init(fold: ProjectionFold, appending: Bool) {
        self.fold = fold
        self.appending = appending
    }

    func run(log: EventLog, direct: Bool, incidentsPerCommit: Int) {
        do {
            try log.writeIncidents(of: fold, appending: appending, direct: direct, incidentsPerCommit: incidentsPerCommit)
        } catch {
            failure = error
        }
    }
}
