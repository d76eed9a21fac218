#if canImport(Glibc)
import Glibc
#endif
import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON

/// What ``EventLog/recover(from:into:gazetteer:)`` made of a log whose indexes or projections were damaged.
public struct RecoveryReport: Sendable, Hashable {
    /// The directory of the new log.
    public var directory: String
    /// The events copied: positions 1 through this, every one the damaged log held, each checked against the chain.
    public var events: UInt64
    /// The hash of the last event, the head of the new log: the damaged log's, as `status` showed it.
    public var headHash: String
    /// The incidents those events report.
    public var incidents: Int
    /// Event-id entries copied from the damaged log, and made again from the events (when its `event-ids` database
    /// was damaged, or an entry did not name its event); see ``ProposedEvent/init(writingOut:)``.
    public var eventIdsCopied: UInt64
    public var eventIdsRemade: UInt64
    /// The first damaged page the check of every page of the damaged log found, if it found one.
    public var sourceDamage: PageDamage?
    /// Whether the events' tree was damaged, so that they were looked for in every leaf page of the damaged log's
    /// file and of the backups given, and told apart by the hash chain from the head the log records.
    public var eventsFoundInPages = false
    /// How many of the events came from the backups' files rather than the damaged log's.
    public var eventsFromBackups: UInt64 = 0
    /// The head the damaged log's `meta` database records, when it could be read and is not the last event's
    /// position: events it acknowledged past the last one copied, or events stored past its head.
    public var sourceHeadMismatch: UInt64?
}

extension EventLog {
    /// The folder inside the destination where ``recover(from:into:gazetteer:)`` builds the new log, whose
    /// `data.mdb` moves into the destination only once it verifies: a recovery cut short leaves no `data.mdb`
    /// that a daemon could take for the log.
    static let recoveryFolder = ".incidentd-recovery"

    /// How many events each transaction of a recovery writes.
    static let recoveryEventsPerCommit = 10_000

    /// Makes a new log in `options.directory` from the events of the log in `source`, for a log whose events are
    /// sound but whose indexes or projections are damaged, so that a daemon refuses to open it or `verify` names
    /// a damaged page in them: restoring a backup would lose the events appended since it was made.
    ///
    /// The source is opened read-only, and only the pages that lead to its events are needed: they are checked
    /// first (``LMDB/Environment/checkPages(of:includingFreeList:)``), and each event is checked against the hash
    /// chain as it is copied, so the new log holds the same events at the same positions with the same hashes,
    /// or none is made. The incident streams are made again from the events; the event-id index is copied where
    /// its pages are sound and each entry names its event, and made again from the events otherwise; the
    /// projections are rebuilt. The new log is verified before its `data.mdb` is moved into `options.directory`.
    ///
    /// - Throws: ``LogError``: `.invalidDestination` when `options.directory` already holds a `data.mdb` or
    ///   cannot be made; `.damagedPage` when a page on the way to the events is damaged; `.corrupt` when an
    ///   event does not match the chain (naming its position) or the source holds no events; what opening a log
    ///   throws for a source that is not one. Nothing is left in `options.directory` but the folder it may have
    ///   made.
    public static func recover(
        from source: String, into options: LogOptions, gazetteer: Gazetteer, fillingFrom backups: [String] = []
    ) throws -> RecoveryReport {
        let destination = options.directory
        var info = stat()
        if lstat(destination + "/data.mdb", &info) == 0 {
            throw LogError(
                .invalidDestination,
                "\(destination) already holds a data.mdb; a recovery makes a new log, in a directory that holds none")
        }
        if mkdir(destination, 0o700) != 0 && errno != EEXIST {
            throw LogError(.invalidDestination, "cannot create \(destination): \(String(cString: strerror(errno)))")
        }
        let work = destination + "/" + recoveryFolder
        removeRecoveryFolder(work)
        var report: RecoveryReport
        do {
            let daemonLock = try lockOutDaemon(of: source)
            defer { if daemonLock >= 0 { close(daemonLock) } }
            let sourceEnvironment = try openSource(source)
            var workOptions = options
            workOptions.directory = work
            workOptions.readOnly = false
            workOptions.rebuildAtOpen = false
            report = try EventLog(options: workOptions, gazetteer: gazetteer)
                .rebuild(from: sourceEnvironment, directory: source, backups: backups)
            report.directory = destination
            guard rename(work + "/data.mdb", destination + "/data.mdb") == 0 else {
                throw LogError(.io, "cannot move the new log into \(destination): \(String(cString: strerror(errno)))")
            }
        } catch {
            removeRecoveryFolder(work)
            throw error
        }
        removeRecoveryFolder(work)
        try syncDirectory(destination)
        return report
    }

    /// Takes the lock a daemon serving `source` holds (`incidentd.lock`), so that none serves it while it is read:
    /// the events one appended after the copy began would not be in the new log. Returns its descriptor, or -1
    /// where there is none to take (a backup's directory, which no daemon has served).
    private static func lockOutDaemon(of source: String) throws -> Int32 {
        let fd = open(source + "/incidentd.lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return -1 }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let busy = errno == EWOULDBLOCK
            close(fd)
            if busy {
                throw LogError(
                    .locked,
                    "incidentd is serving the log in \(source): stop it first, since what it appends while the events are copied would not be in the new log")
            }
            return -1
        }
        return fd
    }

    /// Opens the damaged log read-only, with the refusals opening a log gives (``openFailure(_:directory:readOnly:)``).
    private static func openSource(_ source: String) throws -> Environment {
        let environment: Environment
        do {
            try refuseEmptyDataFile(in: source)
            var envOptions = EnvironmentOptions()
            envOptions.maxDatabases = 8
            envOptions.readOnly = true
            environment = try Environment(directory: source, options: envOptions)
        } catch {
            throw openFailure(error, directory: source, readOnly: true)
        }
        return environment
    }

    /// Copies every event of `source` (the log in `directory`) into this new, empty log with its stream and
    /// event-id entries, then rebuilds the projections and verifies the whole. The events come from their tree when
    /// its pages are sound, and otherwise from the leaf pages of the files (``SalvagedChain``): the source's and
    /// each of `backups`'.
    private func rebuild(from source: Environment, directory: String, backups: [String]) throws -> RecoveryReport {
        let sourceDamage = try source.checkPages().damage
        let eventsDamage = try source.checkPages(of: ["events"], includingFreeList: false).damage
        let sourceIds = try Self.soundDatabase("event-ids", of: source)
        let sourceMeta = try Self.soundDatabase("meta", of: source)
        // Opened through the main database only when the way to the events is sound.
        var events: Database?
        if eventsDamage == nil {
            do {
                events = try source.openDatabase("events", create: false)
            } catch let error as LMDBError where error.isNotFound {
                throw LogError(.notALog, "\(directory) holds no incident log (no events database)")
            }
        }
        var copy = RecoveryCopy()
        var salvaged: SalvagedChain?
        try source.read { txn in
            let recordedHead = try sourceMeta.flatMap { try txn.get($0, key: Keys.head) }.flatMap { try? Head.decode($0) }
            if let eventsDamage {
                guard let recordedHead, recordedHead.position > 0 else {
                    throw LogError(
                        .damagedPage,
                        "\(eventsDamage), on the way to the events of the log in \(directory); and the head of its chain cannot be read, to tell its events from older copies of them. \(Self.restoreAdvice)")
                }
                options.onProgress?("recovering the log: \(eventsDamage); looking for its events in every page")
                let chain = try SalvagedChain(head: recordedHead, directories: [directory] + backups, damage: eventsDamage)
                salvaged = chain
                var position: UInt64 = 1
                while position <= recordedHead.position {
                    var chunk: [RecoveredEvent] = []
                    while position <= recordedHead.position && chunk.count < Self.recoveryEventsPerCommit {
                        try chain.value(at: position).withUnsafeBytes { value in
                            try Keys.position(position).withUnsafeBytes { key in
                                try copy.take(key: key, value: value, sourceIds: sourceIds, txn, into: &chunk)
                            }
                        }
                        position += 1
                    }
                    try writeRecovered(chunk, head: position > recordedHead.position ? copy.head : nil, progress: copy.head.position)
                }
                return
            }
            guard let events else { return }
            let cursor = try txn.cursor(events)
            var entry = try cursor.first()
            repeat {
                var chunk: [RecoveredEvent] = []
                while let (key, value) = entry, chunk.count < Self.recoveryEventsPerCommit {
                    try copy.take(key: key, value: value, sourceIds: sourceIds, txn, into: &chunk)
                    entry = try cursor.next()
                }
                try writeRecovered(chunk, head: entry == nil ? copy.head : nil, progress: copy.head.position)
            } while entry != nil
            if let recordedHead, recordedHead.position != copy.head.position {
                copy.sourceHeadMismatch = recordedHead.position
            }
        }
        guard copy.head.position > 0 else {
            throw LogError(.corrupt, "the log being recovered holds no events; there is nothing to recover")
        }
        options.onProgress?("recovering the log: rebuilding the projections of \(copy.head.position) events")
        _ = try rebuildProjections()
        let check = try verify()
        guard check.isIntact, check.headPosition == copy.head.position, check.headHash == ChainHash.hex(copy.head.hash) else {
            throw LogError(
                .corrupt,
                "the new log does not verify (\(check.problem ?? "its head is \(check.headPosition), not \(copy.head.position)")); it was not kept")
        }
        return RecoveryReport(
            directory: options.directory, events: copy.head.position, headHash: check.headHash,
            incidents: copy.streamStarts.count, eventIdsCopied: copy.eventIdsCopied, eventIdsRemade: copy.eventIdsRemade,
            sourceDamage: sourceDamage, eventsFoundInPages: salvaged != nil,
            eventsFromBackups: salvaged?.taken.dropFirst().reduce(0, +) ?? 0, sourceHeadMismatch: copy.sourceHeadMismatch)
    }

    /// Writes one transaction of a recovery: `chunk`'s events and their index entries, and the head after the last.
    private func writeRecovered(_ chunk: [RecoveredEvent], head: Head?, progress copied: UInt64) throws {
        try environment.write { w in
            for event in chunk {
                try w.put(db.events, key: event.position, value: event.value, flags: .append)
                try w.put(db.streams, key: event.streamKey, value: event.streamValue)
                try w.put(db.eventIds, key: event.eventId, value: event.eventIdValue, flags: .noOverwrite)
            }
            if let head { try w.put(db.meta, key: Keys.head, value: head.encoded) }
        }
        if head != nil || copied % 100_000 < UInt64(chunk.count) {
            options.onProgress?("recovering the log: \(copied) events copied")
        }
    }

    /// The named database of `environment` when the pages that lead to it and hold it are sound; nil when they are
    /// not, or it is not there.
    private static func soundDatabase(_ name: String, of environment: Environment) throws -> Database? {
        guard try environment.checkPages(of: [name], includingFreeList: false).damage == nil else { return nil }
        do {
            return try environment.openDatabase(name, create: false)
        } catch let error as LMDBError where error.isNotFound {
            return nil
        }
    }

    /// Removes what a recovery made in its folder, and the folder.
    private static func removeRecoveryFolder(_ work: String) {
        for file in ["data.mdb", "lock.mdb", "incidentd.lock"] { unlink(work + "/" + file) }
        rmdir(work)
    }

    private static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LogError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LogError(.io, "cannot sync \(path): \(String(cString: strerror(errno)))") }
    }
}

/// One event of a recovery, ready to be written with its index entries.
private struct RecoveredEvent {
    var position: UInt64
    /// hash ‖ canonical JSON, as the damaged log stored it.
    var value: [UInt8]
    var streamKey: [UInt8]
    /// position ‖ ``StreamSummary``.
    var streamValue: [UInt8]
    var eventId: String
    /// position ‖ content digest.
    var eventIdValue: [UInt8]
}

/// A recovery's walk of the damaged log's events: the chain so far and where each incident starts.
private struct RecoveryCopy {
    /// The last event copied; position 0 before the first.
    var head = Head.empty
    /// Where each incident's stream starts: the position of its report.
    var streamStarts: [String: UInt64] = [:]
    var eventIdsCopied: UInt64 = 0
    var eventIdsRemade: UInt64 = 0
    var sourceHeadMismatch: UInt64?

    /// Checks the stored event at `key` against the chain, and adds it to `chunk` with its index entries.
    mutating func take(
        key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
        sourceIds: Database?, _ txn: borrowing ReadTransaction, into chunk: inout [RecoveredEvent]
    ) throws {
        let expected = head.position + 1
        guard key.count == 8, let position = Keys.readPosition(key) else {
            throw broken(expected, "a key that is not a position is stored among the events")
        }
        guard position == expected else { throw broken(expected, "it is missing (the next stored is \(position))") }
        guard value.count > 32 else { throw broken(position, "the stored event is truncated") }
        let canonical = UnsafeRawBufferPointer(rebasing: value[32...])
        let hash = ChainHash.link(previous: head.hash, canonical: canonical)
        guard hash.elementsEqual(value[0..<32]) else { throw broken(position, "its bytes do not hash to its stored hash") }
        let event: RecordedEvent
        do {
            event = try RecordedEvent(json: JSONReader().read(canonical))
        } catch {
            throw broken(position, "it does not read as an event (\(error))")
        }
        guard event.position == position, event.prevHash == ChainHash.hex(head.hash) else {
            throw broken(position, "the position or prevHash inside it do not match the chain")
        }
        let start: UInt64
        if event.version == 1 {
            start = position
            streamStarts[event.incident] = position
        } else if let reported = streamStarts[event.incident] {
            start = reported
        } else {
            throw broken(position, "it concerns \(event.incident), which no event before it reports")
        }
        var streamValue = Keys.position(position)
        StreamSummary.append(event, to: &streamValue)
        var eventIdValue: [UInt8]
        if let ids = sourceIds, let stored = try txn.get(ids, key: event.eventId), stored.count == 40,
            Keys.readPosition(stored) == position
        {
            eventIdValue = Array(stored)
            eventIdsCopied += 1
        } else {
            eventIdValue = Keys.position(position) + ChainHash.digest(ProposedEvent(writingOut: event).contentBytes)
            eventIdsRemade += 1
        }
        chunk.append(
            RecoveredEvent(
                position: position, value: Array(value), streamKey: Keys.stream(start: start, version: event.version),
                streamValue: streamValue, eventId: event.eventId, eventIdValue: eventIdValue))
        head = Head(position: position, hash: hash, recordedAt: event.recordedAt)
    }

    private func broken(_ position: UInt64, _ problem: String) -> LogError {
        LogError(
            .corrupt,
            "event \(position) of the log being recovered does not match its hash chain: \(problem). A recovery copies only events the chain proves, and made nothing. \(EventLog.restoreAdvice)")
    }
}

/// The events of a log whose events tree is damaged, found in the leaf pages of data files (``LMDB/LeafScan``): the
/// log's own, where the pages that are whole, and older copies of pages LMDB wrote anew, still hold them; and
/// backups'. A page scan cannot tell current pages from stale ones, nor events a commit that failed wrote, so the
/// hash chain tells them apart: walked back from the head the log recorded, each position takes the one event
/// whose hash is the one the event after it names (the head's, for the last), and that hashes to it.
private struct SalvagedChain {
    /// One value found under a position, in the file of `scans[source]`.
    private struct Candidate {
        var position: UInt64
        /// The first eight bytes of the hash stored with it, to pass over most of the others without a read.
        var hashPrefix: UInt64
        var source: Int
        var location: LeafScan.Location
    }

    private let scans: [LeafScan]
    /// Where each position's event is, from position 1.
    private var chosen: [(source: Int, location: LeafScan.Location)] = []
    /// How many of the events came from each file, in the order of the directories.
    private(set) var taken: [UInt64]

    /// Finds the events of positions 1 through `head`'s in the data files of `directories` (the damaged log's
    /// first).
    ///
    /// - Throws: ``LogError`` `.damagedPage` naming the last position that no file holds whole (with `damage`,
    ///   what made the walk necessary), or `.notALog` for a directory whose data file cannot be read.
    init(head: Head, directories: [String], damage: PageDamage) throws {
        scans = try directories.map { directory in
            do {
                return try LeafScan(directory: directory)
            } catch {
                throw LogError(.notALog, "cannot read the pages of \(directory)/data.mdb: \(error)")
            }
        }
        taken = Array(repeating: 0, count: directories.count)
        var candidates: [Candidate] = []
        for (source, scan) in scans.enumerated() {
            try scan.forEachEntry { key, value, location in
                if key.count == 8, let position = Keys.readPosition(key), position >= 1, position <= head.position,
                    value.count > 33, value[32] == UInt8(ascii: "{")
                {
                    candidates.append(
                        Candidate(
                            position: position, hashPrefix: value.loadUnaligned(as: UInt64.self), source: source,
                            location: location))
                }
                return true
            }
        }
        // The walk below tries each position's candidates from the last: the damaged log's own file first, then the
        // backups in the order given.
        candidates.sort { $0.position != $1.position ? $0.position < $1.position : $0.source > $1.source }
        var expected = head.hash
        var index = candidates.count - 1
        var position = head.position
        var backwards: [(source: Int, location: LeafScan.Location)] = []
        backwards.reserveCapacity(Int(head.position))
        while position >= 1 {
            while index >= 0 && candidates[index].position > position { index -= 1 }
            let prefix = expected.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            var previous: [UInt8]?
            var i = index
            while i >= 0 && candidates[i].position == position && previous == nil {
                let candidate = candidates[i]
                i -= 1
                guard candidate.hashPrefix == prefix, let bytes = scans[candidate.source].value(candidate.location) else {
                    continue
                }
                previous = Self.previousHash(of: bytes, hashing: expected)
                if previous != nil {
                    backwards.append((candidate.source, candidate.location))
                    taken[candidate.source] += 1
                }
            }
            guard let previous else {
                let files = directories.map { $0 + "/data.mdb" }.joined(separator: ", ")
                throw LogError(
                    .damagedPage,
                    "\(damage), among the events; event \(position) of the \(head.position) the log holds is in no page of \(files) "
                        + "that is whole, so the events up to it cannot be proven. Give a backup that holds it with --fill-from DIR; or: \(EventLog.restoreAdvice)")
            }
            expected = previous
            position -= 1
        }
        guard expected == ChainHash.zero else {
            throw LogError(.corrupt, "event 1 found in the pages does not start a chain (its prevHash is not zero)")
        }
        chosen = backwards.reversed()
    }

    /// The stored bytes (hash ‖ canonical JSON) of the event at `position`, read again from its file.
    func value(at position: UInt64) throws -> [UInt8] {
        let (source, location) = chosen[Int(position) - 1]
        guard let bytes = scans[source].value(location) else {
            throw LogError(.io, "cannot read event \(position) again from \(scans[source].path)")
        }
        return bytes
    }

    /// The `prevHash` of the stored event `bytes`, when its stored hash is `hash` and its bytes hash to it from
    /// that `prevHash`.
    private static func previousHash(of bytes: [UInt8], hashing hash: [UInt8]) -> [UInt8]? {
        guard bytes.count > 32, bytes[0..<32].elementsEqual(hash) else { return nil }
        return bytes.withUnsafeBytes { raw -> [UInt8]? in
            let canonical = UnsafeRawBufferPointer(rebasing: raw[32...])
            guard let text = (try? JSONReader().read(canonical))?["prevHash"]?.stringValue,
                let previous = ChainHash.bytes(hex: text), previous.count == 32,
                ChainHash.link(previous: previous, canonical: canonical) == hash
            else { return nil }
            return previous
        }
    }
}
