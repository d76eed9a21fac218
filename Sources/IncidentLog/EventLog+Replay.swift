#if canImport(Glibc)
import Glibc
#endif
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
    ///
    /// Before the chain, every page of the data file is checked (``LMDB/Environment/checkPages()``), read with
    /// `pread` rather than through LMDB's map: LMDB keeps no checksums, and would follow a damaged page to a wrong
    /// answer, an error, or a fault that kills the process, where a damaged page of a database the chain does not
    /// read (the indexes, the projections) would leave the chain intact. A damaged page stops `verify` there: the
    /// report names it (``VerifyReport/pageDamage``), and the chain is not walked.
    ///
    /// When the chain is intact and `checkingDerivedData` is true, the indexes and the projections are then
    /// compared with the events (``verifyDerivedData(stretch:)``, ``VerifyReport/derived``).
    ///
    /// Each of `expectedHeads` (32-byte head hashes published earlier, `status`'s `headHash`) is looked for among the
    /// hashes the chain walk checks, at no extra read: ``VerifyReport/expectedHeads`` names the position of the event
    /// whose hash it is, which with the chain intact proves the log up to there is the one published.
    ///
    /// `checkpoint` is called before each stretch of the chain and of the derived data's comparison (a fraction of a
    /// second of work each); what it throws ends the walk and is thrown (the daemon, stopping, cuts a long one short).
    public func verify(
        stretch: Int = 1 << 16, checkingDerivedData: Bool = true, expectedHeads: [[UInt8]] = [],
        checkpoint: @Sendable () throws -> Void = {}
    ) throws -> VerifyReport {
        var report = try EventLog.verifyPagesAndChain(
            environment, events: db.events, meta: db.meta, stretch: stretch, expectedHeads: expectedHeads,
            checkpoint: checkpoint)
        if report.isIntact && checkingDerivedData {
            report.derived = try verifyDerivedData(stretch: stretch, checkpoint: checkpoint)
        }
        return report
    }

    /// The part of ``verify(stretch:checkingDerivedData:expectedHeads:checkpoint:)`` that no format of the log
    /// changed, and which a log of an older format gets too (``OlderFormatLog``): every page of `environment`'s data
    /// file, then the chain of `events` up to the head recorded in `meta`, with the heads expected looked for.
    /// With `pacing`, how far each of the two has got is told as it goes.
    static func verifyPagesAndChain(
        _ environment: Environment, events: Database, meta: Database, stretch: Int, expectedHeads: [[UInt8]],
        pacing: ProgressPacing? = nil, checkpoint: @Sendable () throws -> Void
    ) throws -> VerifyReport {
        let pages = try checkPages(environment, pacing: pacing)
        if let damage = pages.damage {
            return VerifyReport(
                checked: 0, headPosition: 0, headHash: "", problem: "\(damage)", pages: pages)
        }
        // The head, and the last stored key (any key that is not a position counts as past every position).
        let (head, lastPosition) = try environment.read { txn in
            let head = try Head.read(txn, meta: meta)
            let last = try txn.cursor(events).last().map { $0.key.count == 8 ? Keys.readPosition($0.key) ?? .max : .max } ?? 0
            return (head, last)
        }
        var report = VerifyReport(checked: 0, headPosition: head.position, headHash: ChainHash.hex(head.hash), pages: pages)
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
        let search = expectedHeads.isEmpty ? nil : ExpectedHeadSearch(expectedHeads)
        let outcomes = Mutex([Result<StretchOutcome, any Error>?](repeating: nil, count: stretches.count))
        // Once a stretch fails, the ones after it cannot change the answer and are not checked.
        let firstFailed = Atomic<Int>(.max)
        let checked = Atomic<UInt64>(0)
        DispatchQueue.concurrentPerform(iterations: stretches.count) { i in
            guard firstFailed.load(ordering: .relaxed) > i else { return }
            let outcome = Result {
                try checkpoint()
                return try verifyStretch(stretches[i], of: events, in: environment, lookingFor: search)
            }
            if case .success(.intact) = outcome {} else { firstFailed.min(i, ordering: .relaxed) }
            outcomes.withLock { $0[i] = outcome }
            let done = checked.add(UInt64(stretches[i].count), ordering: .relaxed).newValue
            pacing?.step { "checking the hash chain: \(done) of \(head.position) events checked" }
        }
        var previous = ChainHash.zero
        var broken = false
        walk: for outcome in outcomes.withLock({ $0 }) {
            guard let outcome else { break }
            switch try outcome.get() {
            case .bad(let position, let problem):
                report.checked = position - 1
                report.firstBadPosition = position
                report.problem = problem
                broken = true
                break walk
            case .intact(let last, let hash), .ended(let last, let hash):
                report.checked = last
                previous = hash
            }
            if case .success(.ended) = outcome { break walk }
        }
        // Events 1 through `checked` are the ones the chain proves: a hash found past a break proves nothing.
        if let search { report.expectedHeads = search.found(upTo: report.checked) }
        if broken { return report }
        if report.checked > head.position {
            // Every stored event chains, but the record of the head stops short of the last: the first past it is
            // the first that nothing but its own chain vouches for.
            report.firstBadPosition = head.position + 1
            report.problem =
                "the log holds events past its recorded head: the record of the head names position \(head.position), "
                + "but \(Positions.events(head.position + 1, through: report.checked)) \(report.checked == head.position + 1 ? "is" : "are") stored after it"
        } else if report.checked < head.position {
            report.firstBadPosition = report.checked + 1
            report.problem =
                "the recorded head (position \(head.position)) is past the last event stored (\(report.checked)): "
                + "\(Positions.events(report.checked + 1, through: head.position)) \(report.checked + 1 == head.position ? "is" : "are") missing"
        } else if previous != head.hash {
            report.firstBadPosition = head.position
            report.problem =
                "the record of the head names position \(head.position) with hash \(ChainHash.hex(head.hash)), "
                + "which is not the hash of event \(head.position) (\(ChainHash.hex(previous)))"
        }
        return report
    }

    /// Every page of `environment`'s data file checked, how far the check got told through `pacing`, if any.
    static func checkPages(_ environment: Environment, pacing: ProgressPacing?) throws -> PageCheckReport {
        guard let pacing else { return try environment.checkPages() }
        return try environment.checkPages { reached, total in
            pacing.step { "checking every page of the log: \(reached) of at most \(total) pages checked" }
        }
    }

    /// What ``verifyStretch(_:of:in:lookingFor:)`` found in its stretch of positions.
    enum StretchOutcome {
        /// The first position that does not match, and why.
        case bad(UInt64, String)
        /// Every position matched; the last one and its hash.
        case intact(last: UInt64, hash: [UInt8])
        /// The log ends inside the stretch, after `last` (0 for none), which matched; its hash.
        case ended(last: UInt64, hash: [UInt8])
    }

    /// Checks positions `range` of `events` (in a read transaction of their own) against the stored hash of the
    /// event before the first: each must be there, in turn, hash to its stored hash, and say its position and
    /// `prevHash` inside.
    private static func verifyStretch(
        _ range: ClosedRange<UInt64>, of events: Database, in environment: Environment, lookingFor search: ExpectedHeadSearch?
    ) throws -> StretchOutcome {
        try environment.read { txn in
            var previous = ChainHash.zero
            if range.lowerBound > 1 {
                // When the event before is missing or short, the stretch before names it, earlier than this one.
                guard let before = try txn.get(events, key: Keys.position(range.lowerBound - 1)), before.count > 32 else {
                    return .bad(range.lowerBound - 1, "position \(range.lowerBound - 1) is missing")
                }
                previous = Array(before[0..<32])
            }
            let cursor = try txn.cursor(events)
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
                guard StoredEventReader.envelopeMatchesInAnyForm(canonical, position: position, previous: previous) else {
                    return .bad(position, "position or prevHash inside the event do not match the chain")
                }
                search?.look(at: position, hash: computed)
                previous = computed
                expected += 1
                if expected <= range.upperBound { entry = try cursor.next() }
            }
            return .intact(last: range.upperBound, hash: previous)
        }
    }

    /// The head hashes `verify` was asked to find, and the position where each was found, filled in by the stretches
    /// of the chain as they are checked, in any order and on any thread.
    final class ExpectedHeadSearch: Sendable {
        private let hashes: [[UInt8]]
        /// The first 8 bytes of each hash, compared first, so that an event that has none of them costs a few loads.
        private let prefixes: [UInt64]
        private let positions: Mutex<[UInt64?]>

        /// The empty log's head (``ChainHash/zero``, at position 0), which `status` shows before the first append and
        /// every log holds, is found before any event is looked at.
        init(_ hashes: [[UInt8]]) {
            self.hashes = hashes
            prefixes = hashes.map(Self.prefix)
            positions = Mutex(hashes.map { $0 == ChainHash.zero ? 0 : nil })
        }

        private static func prefix(_ hash: [UInt8]) -> UInt64 {
            hash.withUnsafeBytes { $0.count >= 8 ? $0.loadUnaligned(as: UInt64.self) : 0 }
        }

        func look(at position: UInt64, hash: [UInt8]) {
            let prefix = Self.prefix(hash)
            for i in prefixes.indices where prefixes[i] == prefix && hashes[i] == hash {
                positions.withLock { found in found[i] = min(found[i] ?? .max, position) }
            }
        }

        /// Each hash, with the position of its event when that is at most `last`.
        func found(upTo last: UInt64) -> [ExpectedHead] {
            let positions = positions.withLock { $0 }
            return hashes.indices.map { i in
                ExpectedHead(hash: ChainHash.hex(hashes[i]), position: positions[i].flatMap { $0 <= last ? $0 : nil })
            }
        }
    }

    /// The projection of every city, by city id, folded afresh from the log alone and stopping where `limit`
    /// says: the document `cities` answers, computed without the stored projections. Reads only: LMDB readers
    /// never block the running daemon, and the running daemon never blocks them. The fold is the rebuild's
    /// (``ProjectionFold``), which the daemon's own projections are checked against. `checkpoint` is called before
    /// each block of events folded; what it throws ends the replay and is thrown.
    public func replay(_ limit: ReplayLimit = ReplayLimit(), checkpoint: () throws -> Void = {}) throws -> [CityState] {
        try environment.read { txn in
            let head = try Head.read(txn, db).position
            var fold = ProjectionFold(projector: projector)
            fold.reserveCapacity(events: Int(min(head, limit.untilPosition ?? head)))
            var blocks = FoldBuffers()
            let stop = FoldStop(
                untilPosition: limit.untilPosition ?? .max, recordedAfter: limit.asOf?.microseconds,
                occurredBefore: limit.occurredBefore?.microseconds)
            let cursor = try txn.cursor(db.events)
            _ = try foldEvents(cursor, from: try cursor.first(), stop: stop, into: &fold, blocks: &blocks, checkpoint: checkpoint)
            return fold.cityStates().sorted { $0.cityId < $1.cityId }
        }
    }

    /// The cores this process may run on.
    static var coreCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// How many incidents a rebuild writes per transaction.
    public static let rebuildIncidentsPerCommit = 16_384
    /// How many positions of the log a rebuild folds and writes the incidents of at a time: what it holds in
    /// memory is about 370 bytes per incident reported in them (about 220 MB for this many events at the
    /// bench's mix).
    public static let rebuildSegment = 1 << 20

    /// Drops the stored projections and folds every incident again from `incident-streams`, where each event's
    /// ``StreamSummary`` sits beside its position and each incident's events come together. The incidents
    /// reported in each `segment` positions of the log, in turn, are cut into `stretches` stretches by where they
    /// were reported (by default four per core), which are folded on every core at once (``StreamFold``); then
    /// the segment's incidents are written in key order, in transactions of `incidentsPerCommit` (LMDB keeps a
    /// transaction's dirty pages in a sorted list, which grows costly in one transaction of hundreds of
    /// thousands). Last, the cities, added up over every stretch in order, the projection mark and the digest of
    /// the gazetteer they were built with (``Projector/gazetteerInput``). A crash before that mark leaves none,
    /// so the next start rebuilds again. Returns the number of events folded.
    ///
    /// The events' JSON is not read: `replay` folds that (``ProjectionFold``), and the bench compares the two.
    ///
    /// A summary found damaged stops the fold; then every summary is made again from its event
    /// (``rederiveStreamSummaries()``) and the fold runs once more.
    @discardableResult
    public func rebuildProjections(
        stretches: Int? = nil, incidentsPerCommit: Int = EventLog.rebuildIncidentsPerCommit,
        segment: Int = EventLog.rebuildSegment
    ) throws -> UInt64 {
        do {
            return try rebuildFromSummaries(stretches: stretches, incidentsPerCommit: incidentsPerCommit, segment: segment)
        } catch let damage as StreamSummaryDamage {
            options.onSummaryDamage?("\(damage); making every stream summary again from its event")
            try rederiveStreamSummaries()
            do {
                return try rebuildFromSummaries(stretches: stretches, incidentsPerCommit: incidentsPerCommit, segment: segment)
            } catch let damage as StreamSummaryDamage {
                throw LogError(.corrupt, "\(damage), even when made again from its event")
            }
        }
    }

    private func rebuildFromSummaries(stretches: Int?, incidentsPerCommit: Int, segment: Int) throws -> UInt64 {
        try stopIfAsked(during: "before rebuilding the projections")
        // Until the projection mark, no commit needs to reach the disk as it returns: a crash before the mark
        // rebuilds again. Their meta pages are written without waiting, and all flushed before the mark's commit.
        let parts = try environment.withDeferredMetaSync {
            try dropAndFoldProjections(stretches: stretches, incidentsPerCommit: incidentsPerCommit, segment: segment)
        }
        let cities = StreamFold.merge(parts)
        try environment.write { txn in
            let handle = txn.unsafeHandle
            for city in cities {
                try handle.put(db.cities, key: city.cityId, value: city.canonicalBytes())
            }
            let head = try Head.read(txn, db)
            try txn.put(db.meta, key: Keys.projections, value: EventLog.projectionMarkValue(head.position))
            try txn.put(db.meta, key: Keys.gazetteer, value: gazetteerDigest)
        }
        try loadCityDocuments()
        return UInt64(parts.reduce(0) { $0 + $1.events })
    }

    /// The first part of a rebuild: drops the projections, then folds the log's streams a segment at a time and
    /// writes each segment's incidents and `city-dates` entries. Returns the folds, their incidents forgotten:
    /// their cities, to be added up.
    private func dropAndFoldProjections(stretches: Int?, incidentsPerCommit: Int, segment: Int) throws -> [StreamFold] {
        try environment.write { txn in
            try txn.drop(db.incidents, delete: false)
            try txn.drop(db.cities, delete: false)
            try txn.drop(db.cityDates, delete: false)
            try txn.delete(db.meta, key: Keys.projections)
            try txn.delete(db.meta, key: Keys.gazetteer)
        }
        let head = try environment.read { txn in try Head.read(txn, db).position }
        let direct = ProjectionFold.directEncodingHolds(projector: projector)
        let projector = self.projector
        let segment = UInt64(max(1, segment))
        // The stretches of every segment, in order, their incidents forgotten once written: their cities.
        var parts: [StreamFold] = []
        var start: UInt64 = 1
        var last = false
        while !last {
            try stopIfAsked(during: "while rebuilding the projections, at the incidents reported from position \(start) of \(head)")
            if head > 0 { options.onProgress?("rebuilding the projections: the incidents reported from position \(start) of \(head)") }
            // This segment holds the incidents reported at positions start..<end (the last, any after).
            last = head < start + segment
            let end = last ? head + 1 : start + segment
            let count = max(1, min(stretches ?? 4 * EventLog.coreCount, Int(min(end - start, 1 << 20))))
            // Stretch i holds those reported at positions bounds[i]..<bounds[i + 1] (the last one of the log, any
            // after).
            let bounds = (0...count).map { i in last && i == count ? .max : start + (end - start) * UInt64(i) / UInt64(count) }
            let folded = Mutex([Result<StreamFold, any Error>?](repeating: nil, count: count))
            DispatchQueue.concurrentPerform(iterations: count) { i in
                let part = Result { () throws -> StreamFold in
                    var fold = StreamFold(projector: projector, direct: direct)
                    fold.reserveCapacity(events: Int(min(bounds[i + 1], head + 1) - bounds[i]))
                    try environment.read { txn in try fold.fold(try txn.cursor(db.streams), reports: bounds[i]..<bounds[i + 1]) }
                    return fold
                }
                folded.withLock { $0[i] = part }
            }
            var folds: [StreamFold] = []
            for part in folded.withLock({ $0 }) {
                guard let part else { throw LogError(.corrupt, "a stretch of the rebuild was not folded") }
                folds.append(try part.get())
            }
            // The first segment's incidents go into the empty table in key order: appended. Later ones fall in
            // between.
            // The `city-dates` entries are gathered and put in order on another core while this one writes the
            // incidents.
            let entries = Mutex<(dates: CityDateEntries, cityIncidents: CityIncidentEntries)?>(nil)
            let gathering = DispatchGroup()
            DispatchQueue.global().async(group: gathering) { [folds] in
                let gathered = (CityDateEntries(folds), CityIncidentEntries(folds))
                entries.withLock { $0 = gathered }
            }
            do {
                try writeIncidents(folds, appending: start == 1, incidentsPerCommit: max(1, incidentsPerCommit))
            } catch {
                gathering.wait()
                throw error
            }
            gathering.wait()
            let (dates, cityIncidents) = entries.withLock { $0 } ?? (CityDateEntries(folds), CityIncidentEntries(folds))
            try writeCityDates(dates, appending: start == 1, entriesPerCommit: max(1, incidentsPerCommit))
            try writeCityIncidents(cityIncidents, appending: start == 1, entriesPerCommit: max(1, incidentsPerCommit))
            for var fold in folds {
                fold.forgetIncidents()
                parts.append(fold)
            }
            start = end
        }
        return parts
    }

    /// Writes the incidents of `folds` in key order, in transactions of `incidentsPerCommit`: with `MDB_APPEND`
    /// while `appending` (into an empty table). Their ids are gathered and split by first byte; the groups are
    /// sorted on worker threads while this one writes the groups before them.
    private func writeIncidents(_ folds: [StreamFold], appending: Bool, incidentsPerCommit: Int) throws {
        // Every id, stretch after stretch: incident `i` of stretch `k` is number `firsts[k] + i`.
        var firsts: [Int] = [0]
        var idBytes: [UInt8] = []
        var idStarts: [Int] = [0]
        idBytes.reserveCapacity(folds.reduce(0) { $0 + $1.ids.count })
        idStarts.reserveCapacity(folds.reduce(1) { $0 + $1.incidentCount })
        for fold in folds {
            let base = idBytes.count
            idBytes.append(contentsOf: fold.ids)
            for start in fold.idStarts.dropFirst() { idStarts.append(base + start) }
            firsts.append(idStarts.count - 1)
        }
        let total = idStarts.count - 1
        var stretchOf = [Int32](repeating: 0, count: total)
        for k in folds.indices {
            for n in firsts[k]..<firsts[k + 1] { stretchOf[n] = Int32(k) }
        }
        // By first byte (an empty id, which no valid incident has, first).
        var groups = [[Int32]](repeating: [], count: 257)
        for n in 0..<total {
            groups[idStarts[n + 1] > idStarts[n] ? Int(idBytes[idStarts[n]]) + 1 : 0].append(Int32(n))
        }
        groups.removeAll { $0.isEmpty }
        // Each group is sorted, then gathered in runs of `incidentsPerCommit`, each written in one transaction:
        // the writer starts on the first run while the rest are sorted and gathered.
        var firstRun: [Int] = [0]
        for group in groups { firstRun.append(firstRun[firstRun.count - 1] + (group.count + incidentsPerCommit - 1) / incidentsPerCommit) }
        let runs = SortedRuns(count: firstRun[firstRun.count - 1])
        let sorting = DispatchGroup()
        defer { sorting.wait() }
        for (g, group) in groups.enumerated() {
            DispatchQueue.global().async(group: sorting) { [idBytes, idStarts, stretchOf, firsts, firstRun] in
                let order = idBytes.withUnsafeBytes { ids in
                    idStarts.withUnsafeBufferPointer { starts in ByteTable.sortedNumbers(arena: ids, starts: starts, among: group) }
                }
                var start = 0
                var r = firstRun[g]
                while start < order.count {
                    let end = min(start + incidentsPerCommit, order.count)
                    var run = IncidentRun()
                    run.reserveCapacity(end - start)
                    for n in order[start..<end] {
                        let n = Int(n)
                        let k = Int(stretchOf[n])
                        run.append(
                            key: idBytes[idStarts[n]..<idStarts[n + 1]], record: folds[k].record(n - firsts[k]))
                    }
                    runs.put(run, at: r)
                    start = end
                    r += 1
                }
            }
        }
        for r in 0..<firstRun[firstRun.count - 1] {
            // The sorting workers are waited for (the `defer` above) however this ends.
            try stopIfAsked(during: "while rebuilding the projections, writing the incidents")
            let run = runs.take(r)
            // A write that fills the map is run again once the map has grown; these puts are the same each time.
            try environment.write { txn in
                // Through one cursor: each put past the last key skips LMDB's search from the root.
                let cursor = try txn.cursor(db.incidents)
                try run.forEach { key, record in
                    do {
                        try cursor.put(key: key, value: record, flags: appending ? .append : [])
                    } catch let error as LMDBError where error.isKeyExist {
                        // Two incidents under one id: only a damaged log has them; the later one stays.
                        try cursor.put(key: key, value: record)
                    }
                }
            }
        }
    }
}

extension EventLog {
    /// Writes the `city-dates` entries of a segment, gathered and sorted already (on another thread, while the
    /// incidents were written), in transactions of `entriesPerCommit`: with `MDB_APPEND` while `appending` (into an
    /// empty table).
    func writeCityDates(_ entries: CityDateEntries, appending: Bool, entriesPerCommit: Int) throws {
        let (keys, keyStarts, values, valueStarts, order) = (entries.keys, entries.keyStarts, entries.values, entries.valueStarts, entries.order)
        var start = 0
        while start < order.count {
            try stopIfAsked(during: "while rebuilding the projections, writing the cities' incident dates")
            let end = min(start + entriesPerCommit, order.count)
            // A write that fills the map is run again once the map has grown; these puts are the same each time.
            try environment.write { txn in
                let cursor = try txn.cursor(db.cityDates)
                try keys.withUnsafeBytes { keys in
                    try values.withUnsafeBytes { values in
                        for n in order[start..<end] {
                            let n = Int(n)
                            let key = UnsafeRawBufferPointer(rebasing: keys[keyStarts[n]..<keyStarts[n + 1]])
                            let value = UnsafeRawBufferPointer(rebasing: values[valueStarts[n]..<valueStarts[n + 1]])
                            do {
                                try cursor.put(key: key, value: value, flags: appending ? .append : [])
                            } catch let error as LMDBError where error.isKeyExist {
                                // Two reports at one position under one city: only a damaged log has them.
                                try cursor.put(key: key, value: value)
                            }
                        }
                    }
                }
            }
            start = end
        }
    }
}

/// The `city-dates` entries of a segment's folds, gathered back to back and put in key order: the part of their
/// write that needs no transaction, so that it can run beside the write of the incidents.
struct CityDateEntries: Sendable {
    var keys: [UInt8] = []
    var keyStarts: [Int] = [0]
    var values: [UInt8] = []
    var valueStarts: [Int] = [0]
    /// The entries' numbers in key order.
    var order: [Int32] = []

    init(_ folds: [StreamFold]) {
        keys.reserveCapacity(folds.reduce(0) { $0 + $1.dateKeys.count })
        keyStarts.reserveCapacity(folds.reduce(1) { $0 + $1.dateCount })
        for fold in folds {
            for i in 0..<fold.dateCount {
                let (key, value) = fold.dateEntry(i)
                keys.append(contentsOf: key)
                keyStarts.append(keys.count)
                values.append(contentsOf: value)
                valueStarts.append(values.count)
            }
        }
        order = keys.withUnsafeBytes { keys in
            keyStarts.withUnsafeBufferPointer { starts in ByteTable.sortedNumbers(arena: keys, starts: starts) }
        }
    }
}

/// Incidents in key order, on their way from the thread that gathered them to the one that writes them: their
/// ids and stored forms, each back to back.
struct IncidentRun: Sendable {
    private var keys: [UInt8] = []
    private var keyStarts: [Int] = [0]
    private var records: [UInt8] = []
    private var recordStarts: [Int] = [0]

    mutating func reserveCapacity(_ incidents: Int) {
        keys.reserveCapacity(incidents * 48)
        keyStarts.reserveCapacity(incidents + 1)
        records.reserveCapacity(incidents * 128)
        recordStarts.reserveCapacity(incidents + 1)
    }

    mutating func append(key: ArraySlice<UInt8>, record: ArraySlice<UInt8>) {
        keys.append(contentsOf: key)
        keyStarts.append(keys.count)
        records.append(contentsOf: record)
        recordStarts.append(records.count)
    }

    /// Calls `body` with each incident's id and stored form, in order.
    func forEach(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) rethrows {
        try keys.withUnsafeBytes { keys in
            try records.withUnsafeBytes { records in
                for i in 0..<keyStarts.count - 1 {
                    try body(
                        UnsafeRawBufferPointer(rebasing: keys[keyStarts[i]..<keyStarts[i + 1]]),
                        UnsafeRawBufferPointer(rebasing: records[recordStarts[i]..<recordStarts[i + 1]]))
                }
            }
        }
    }
}

/// The runs of a rebuild's incidents, handed from the threads that sort and gather them to the one that writes
/// them, in order.
final class SortedRuns: Sendable {
    private let runs: Mutex<[IncidentRun]>
    /// Signalled once for each run, when it is gathered.
    private let ready: [DispatchSemaphore]

    init(count: Int) {
        runs = Mutex([IncidentRun](repeating: IncidentRun(), count: count))
        ready = (0..<count).map { _ in DispatchSemaphore(value: 0) }
    }

    func put(_ run: IncidentRun, at r: Int) {
        runs.withLock { $0[r] = run }
        ready[r].signal()
    }

    /// Run `r`, once it is gathered (taken once).
    func take(_ r: Int) -> IncidentRun {
        ready[r].wait()
        return runs.withLock { runs in
            defer { runs[r] = IncidentRun() }
            return runs[r]
        }
    }
}
