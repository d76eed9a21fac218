#if canImport(Glibc)
import Glibc
#endif
import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON

/// What ``EventLog/recover(from:into:gazetteer:fillingFrom:expectedHeadHash:expectedHeadPosition:)`` made of a damaged log.
public struct RecoveryReport: Sendable, Hashable {
    /// The directory of the new log.
    public var directory: String
    /// The events copied: positions 1 through this, the damaged log's head, each proven by the hash chain.
    public var events: UInt64
    /// The hash of the last event, the head of the new log: the damaged log's recorded head, or the one given.
    public var headHash: String
    /// The incidents those events report.
    public var incidents: Int
    /// Event-id entries copied from the damaged log (when every page of its `event-ids` is sound, and the entry
    /// names its event).
    public var eventIdsCopied: UInt64
    /// Event-id entries made again from the events (``ProposedEvent/init(writingOut:)``), for the others.
    public var eventIdsRemade: UInt64
    /// The first damaged page the check of every page of the damaged log found, or why LMDB could not open it.
    public var sourceDamage: String?
    /// How many of the events came from the backups' files rather than the damaged log's.
    public var eventsFromBackups: UInt64
    /// Whether the head was the one given (`expectedHeadHash`): the log's own record of it could not be read, no
    /// stored event has the hash it records, or the one given comes later in the chain.
    public var headWasGiven: Bool
    /// Events stored past the head that go on from it (left out, the head having been given), and the hash of the
    /// last of them, which a recovery that takes them all is given.
    public var eventsPastHead: UInt64
    public var lastPastHeadHash: String?
    /// The head the log recorded (position, hash), when the hash given is that of a stored event on another
    /// chain, the log having been rewritten since that head was published: the new log ends at the hash given, and
    /// the recorded head's events from where the two chains part are not in it.
    public var recordedHeadLeftOut: UInt64?
    public var recordedHeadLeftOutHash: String?
    /// The position of the event whose hash was given (`expectedHeadHash`), when one was. When it is before
    /// ``events`` (a head published earlier than the one the log records), the events past it are in the new log
    /// proven only by the damaged log's own record of its head.
    public var givenHeadPosition: UInt64?
}

extension EventLog {
    /// The folder inside the destination where a recovery builds the new log, whose `data.mdb` moves into the
    /// destination only once it verifies: a recovery cut short leaves no `data.mdb` that a daemon could take for
    /// the log, and the next one clears the folder.
    static let recoveryFolder = ".incidentd-recovery"

    /// How many events each transaction of a recovery writes.
    static let recoveryEventsPerCommit = 10_000

    /// Makes a new log in `options.directory` from the events of the damaged log in `source`, so that restoring a
    /// backup does not lose the events appended since it was made.
    ///
    /// Every leaf page of the source's `data.mdb`, and of each backup's in `backups`, is read straight from the
    /// file (``LMDB/LeafScan``), whole pages of the tree and older copies of pages alike, and the events are told
    /// apart by the hash chain, walked back from the head the source records in `meta` (or, when that cannot be
    /// read, `expectedHeadHash`): each position takes the one event whose bytes hash to what the event after it
    /// names (``SalvagedChain``). A stale copy, an event of a commit that failed, or one of another log cannot be
    /// taken, and damage to the pages that lead to the events does not matter. The events are then copied in
    /// order, each checked again against the chain, the incident streams are made from them, the event-id index
    /// is copied when all its pages are sound and each entry names its event (and made again otherwise), and the
    /// projections are rebuilt. The new log is verified, and must end at the head, before its `data.mdb` is linked
    /// into `options.directory`, which holds the daemon's lock (`incidentd.lock`) meanwhile.
    ///
    /// - Throws: ``LogError``: `.invalidDestination` when `options.directory` holds a `data.mdb` or cannot be
    ///   made; `.locked` when a daemon serves `source` or another recovery writes into `options.directory`;
    ///   `.damagedPage` when an event no whole page holds is needed, naming it and the positions no page holds;
    ///   `.corrupt` when the head cannot be known or does not match; what opening a log throws for a source that is
    ///   not one. A refused recovery removes the lock file it made in `options.directory`, and that directory when it
    ///   made it.
    ///
    /// `expectedHeadPosition`, the position published with `expectedHeadHash`, must be that of the event with that
    /// hash (`.corrupt` otherwise, nothing made).
    public static func recover(
        from source: String, into options: LogOptions, gazetteer: Gazetteer, fillingFrom backups: [String] = [],
        expectedHeadHash: [UInt8]? = nil, expectedHeadPosition: UInt64? = nil
    ) throws -> RecoveryReport {
        let destination = trimmingSlashes(options.directory)
        let source = trimmingSlashes(source)
        for backup in backups {
            var info = stat()
            guard stat(backup + "/data.mdb", &info) == 0 else {
                throw LogError(.notALog, "cannot read the backup in \(backup): \(String(cString: strerror(errno))) (\(backup)/data.mdb)")
            }
        }
        let created: Bool
        do {
            created = try makeDataDirectory(destination)
        } catch let error as LogError {
            throw LogError(.invalidDestination, error.message)
        }
        let lockPath = destination + "/incidentd.lock"
        let lockExisted = access(lockPath, F_OK) == 0
        let destinationLock: Int32
        do {
            destinationLock = try lock(directory: destination)
        } catch let error as LogError where error.code == .locked {
            throw LogError(.locked, "\(destination) is in use (by a daemon, or another recovery into it): \(error.message)")
        }
        defer { close(destinationLock) }
        do {
            return try recover(
                from: source, into: destination, options: options, gazetteer: gazetteer, fillingFrom: backups,
                expectedHeadHash: expectedHeadHash, expectedHeadPosition: expectedHeadPosition, created: created)
        } catch {
            // Unlinked while still held: a process that opened the file meanwhile finds it gone once it has the lock
            // (``lock(directory:)``), and takes a new one.
            if !lockExisted { unlink(lockPath) }
            if created { rmdir(destination) }
            throw error
        }
    }

    /// ``recover(from:into:gazetteer:fillingFrom:expectedHeadHash:expectedHeadPosition:)`` once `destination` is made and locked.
    private static func recover(
        from source: String, into destination: String, options: LogOptions, gazetteer: Gazetteer, fillingFrom backups: [String],
        expectedHeadHash: [UInt8]?, expectedHeadPosition: UInt64?, created: Bool
    ) throws -> RecoveryReport {
        var info = stat()
        if let real = realpath(destination, nil), let sourceReal = realpath(source, nil) {
            defer { free(real); free(sourceReal) }
            if strcmp(real, sourceReal) == 0 {
                throw LogError(
                    .invalidDestination,
                    "\(destination) is the damaged log's own directory; a recovery makes a new log, in another directory")
            }
        }
        if lstat(destination + "/data.mdb", &info) == 0 {
            throw LogError(
                .invalidDestination,
                "\(destination) already holds a data.mdb; a recovery makes a new log, in a directory that holds none")
        }
        let work = destination + "/" + recoveryFolder
        removeRecoveryFolder(work)
        var report: RecoveryReport
        do {
            let daemonLocks = try lockOutDaemon(of: source)
            defer { for fd in daemonLocks { close(fd) } }
            // A log LMDB cannot open (a meta page damaged, the file cut short) is read page by page alone, to the
            // head given, and without its event-id index.
            let sourceEnvironment: Environment?
            var openProblem: String?
            do {
                sourceEnvironment = try openSource(source)
            } catch let error as LogError where expectedHeadHash != nil && error.code != .notALog && error.code != .accessDenied {
                options.onProgress?("recovering the log: \(error.message); reading its pages without LMDB")
                sourceEnvironment = nil
                openProblem = error.message
            }
            var workOptions = options
            workOptions.directory = work
            workOptions.readOnly = false
            workOptions.rebuildAtOpen = false
            report = try EventLog(options: workOptions, gazetteer: gazetteer).rebuild(
                from: sourceEnvironment, directory: source, backups: backups, expectedHeadHash: expectedHeadHash,
                expectedHeadPosition: expectedHeadPosition)
            if let openProblem { report.sourceDamage = openProblem }
            report.directory = destination
            // A link, which never replaces a file, rather than a rename.
            guard link(work + "/data.mdb", destination + "/data.mdb") == 0 else {
                throw LogError(.io, "cannot move the new log into \(destination): \(String(cString: strerror(errno)))")
            }
        } catch {
            removeRecoveryFolder(work)
            throw error
        }
        removeRecoveryFolder(work)
        try syncDirectory(destination)
        if created { try syncDirectory(parent(of: destination)) }
        return report
    }

    /// Takes the locks a daemon serving `source` holds (`incidentd.lock`, and the one on `data.mdb`, which holds
    /// when `incidentd.lock` was deleted under it), so that none serves it while it is read: the events one appended
    /// after the copy began would not be in the new log. Returns the descriptors that hold them: none where there is
    /// no such file (a backup's directory, which no daemon has served). A `data.mdb` that cannot be opened is left to
    /// opening the log to report.
    private static func lockOutDaemon(of source: String) throws -> [Int32] {
        var held: [Int32] = []
        do {
            for file in ["incidentd.lock", "data.mdb"] {
                let path = source + "/" + file
                switch exclusiveLock(path, openFlags: O_RDONLY) {
                case .held(let fd): held.append(fd)
                case .heldByAnother:
                    throw LogError(
                        .locked,
                        "incidentd is serving the log in \(source): stop it first, since what it appends while the events are copied would not be in the new log")
                case .openFailed(let code) where code == ENOENT || file == "data.mdb":
                    // No such file (a backup's directory, which no daemon has served); a data.mdb that cannot be
                    // opened is left to opening the log to report.
                    continue
                case let failed: throw failed.error(path)
                }
            }
        } catch {
            for fd in held { close(fd) }
            throw error
        }
        return held
    }

    /// Opens the damaged log read-only, with the refusals opening a log gives (``openFailure(_:directory:readOnly:)``).
    private static func openSource(_ source: String) throws -> Environment {
        do {
            try refuseEmptyDataFile(in: source)
            var envOptions = EnvironmentOptions()
            envOptions.maxDatabases = maxDatabases
            envOptions.readOnly = true
            return try Environment(directory: source, options: envOptions)
        } catch {
            throw openFailure(error, directory: source, readOnly: true)
        }
    }

    /// Copies every event up to the head of `source` (the log in `directory`), found in its pages and in
    /// `backups`', into this new, empty log with its stream and event-id entries, then rebuilds the projections
    /// and verifies the whole.
    private func rebuild(
        from source: Environment?, directory: String, backups: [String], expectedHeadHash: [UInt8]?,
        expectedHeadPosition: UInt64?
    ) throws -> RecoveryReport {
        let sourceDamage = try source?.checkPages().damage
        let sourceIds = try source.flatMap { try Self.soundDatabase("event-ids", of: $0) }
        let sourceMeta = try source.flatMap { try Self.soundDatabase("meta", of: $0) }
        let (recordedHead, format, projectedThrough) = try source?.read { txn in
            (
                try sourceMeta.flatMap { try txn.get($0, key: Keys.head) }.flatMap { try? Head.decode($0) },
                try sourceMeta.flatMap { try txn.get($0, key: Keys.format) }.map { String(decoding: $0, as: UTF8.self) },
                try sourceMeta.flatMap { try txn.get($0, key: Keys.projections) }.flatMap { $0.count == 16 ? Keys.readPosition($0) : nil }
            )
        } ?? (nil, nil, nil)
        if let format, format != Self.formatTag, !Self.olderFormatTags.contains(format) {
            throw Self.unknownFormat(format, directory: directory)
        }
        if recordedHead == nil && expectedHeadHash == nil {
            throw LogError(
                .corrupt,
                "the head the log in \(directory) records cannot be read (its meta database is damaged), and the events cannot be told from older copies of them without it: give the head hash last published (incidentctl status's headHash) with --expect-head; nothing was made")
        }
        options.onProgress?("recovering the log: looking for its events in every leaf page")
        let chain: SalvagedChain
        do {
            chain = try SalvagedChain(
                recordedHead: recordedHead?.hash, givenHead: expectedHeadHash, directories: [directory] + backups,
                progress: options.onProgress)
        } catch let error as LogError {
            throw sourceDamage.map { LogError(error.code, "\($0); \(error.message)") } ?? error
        }
        if let expectedHeadPosition, let expectedHeadHash, let found = chain.givenHeadPosition, found != expectedHeadPosition {
            throw LogError(
                .corrupt,
                "the hash given, \(ChainHash.hex(expectedHeadHash)), is that of event \(found), not \(expectedHeadPosition): check the position published with it; nothing was made")
        }
        if let past = chain.eventsPastHead, expectedHeadHash == nil {
            let last = chain.head.position + past.count
            let files = ([directory] + backups).map { $0 + "/data.mdb" }.joined(separator: ", ")
            throw LogError(
                .corrupt,
                past.count == 1
                    ? "\(Positions.events(last, through: last)), stored in \(files), goes on from the head the log records (position \(chain.head.position)): an event a damaged record of the head lost, or one of a commit that failed before it was acknowledged. Give the head hash last published with --expect-head: \(ChainHash.hex(past.hash)) takes it, \(ChainHash.hex(chain.head.hash)) leaves it out; nothing was made"
                    : "\(Positions.events(chain.head.position + 1, through: last)), stored in \(files), go on from the head the log records (position \(chain.head.position)): events a damaged record of the head lost, or those of a commit that failed before it was acknowledged. Give the head hash last published with --expect-head: \(ChainHash.hex(past.hash)) takes them all, \(ChainHash.hex(chain.head.hash)) leaves them out; nothing was made")
        }
        // The projections witness events since removed (what incidentd refuses to start on): a recovery to the
        // recorded head would make a log without them that verifies. Only a head given says which is wanted.
        if let projectedThrough, projectedThrough != .max, projectedThrough > chain.head.position, expectedHeadHash == nil {
            throw LogError(
                .corrupt,
                "the projections of the log in \(directory) were built up to position \(projectedThrough), but its events end at \(chain.head.position): events they counted are no longer in it (removed behind incidentd's back, or with the record of the head rewritten). Give the head hash last published with --expect-head and a backup that holds those events with --fill-from; to make the log of the events that are left, give the hash of its last, \(ChainHash.hex(chain.head.hash)), with --expect-head; nothing was made")
        }
        var copy = RecoveryCopy()
        func copyEvents(storedEventId: (String) throws -> [UInt8]?) throws {
            var position: UInt64 = 1
            while position <= chain.head.position {
                var chunk: [RecoveredEvent] = []
                while position <= chain.head.position && chunk.count < Self.recoveryEventsPerCommit {
                    try copy.take(
                        position: position, value: try chain.value(at: position), storedEventId: storedEventId, into: &chunk)
                    position += 1
                }
                let last = position > chain.head.position ? chunk.last : nil
                try writeRecovered(chunk, head: try last.map { try copy.recordedHead(last: $0) })
            }
        }
        if let source, let sourceIds {
            try source.read { txn in try copyEvents { id in try txn.get(sourceIds, key: id).map { Array($0) } } }
        } else {
            try copyEvents { _ in nil }
        }
        options.onProgress?("recovering the log: rebuilding the projections of \(copy.head.position) events")
        _ = try rebuildProjections()
        let check = try verify()
        guard check.isIntact, check.headPosition == chain.head.position, check.headHash == ChainHash.hex(chain.head.hash)
        else {
            throw LogError(
                .corrupt,
                "the new log does not verify (\(check.problem ?? "its head is \(check.headPosition), not \(chain.head.position)")); it was not kept")
        }
        var report = RecoveryReport(
            directory: options.directory, events: chain.head.position, headHash: check.headHash,
            incidents: copy.streamStarts.count, eventIdsCopied: copy.eventIdsCopied, eventIdsRemade: copy.eventIdsRemade,
            sourceDamage: sourceDamage.map { "\($0)" }, eventsFromBackups: chain.taken.dropFirst().reduce(0, +),
            headWasGiven: chain.headWasGiven, eventsPastHead: chain.eventsPastHead?.count ?? 0,
            lastPastHeadHash: chain.eventsPastHead.map { ChainHash.hex($0.hash) })
        report.givenHeadPosition = chain.givenHeadPosition
        if let leftOut = chain.recordedHeadLeftOut {
            report.recordedHeadLeftOut = leftOut.position
            report.recordedHeadLeftOutHash = ChainHash.hex(leftOut.hash)
        }
        return report
    }

    /// Writes one transaction of a recovery: `chunk`'s events and their index entries, and `head` after the last.
    private func writeRecovered(_ chunk: [RecoveredEvent], head: Head?) throws {
        try environment.write { w in
            for event in chunk {
                try w.put(db.events, key: event.position, value: event.value, flags: .append)
                try w.put(db.streams, key: event.streamKey, value: event.streamValue)
                try w.put(db.eventIds, key: event.eventId, value: event.eventIdValue, flags: .noOverwrite)
            }
            if let head { try w.put(db.meta, key: Keys.head, value: head.encoded) }
        }
        let copied = chunk.last?.position ?? 0
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
        do {
            try Environment.syncPath(path)
        } catch {
            throw LogError(.io, "cannot sync \(path): \(error)")
        }
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

/// A recovery's copy of the events in order: the chain so far, and where each incident starts.
private struct RecoveryCopy {
    /// The last event copied; position 0 before the first.
    var head = Head.empty
    /// Where each incident's stream starts: the position of its report.
    var streamStarts: [String: UInt64] = [:]
    var eventIdsCopied: UInt64 = 0
    var eventIdsRemade: UInt64 = 0

    /// Checks the stored event `value` at `position`, the one after the last taken, against the chain, and adds it
    /// to `chunk` with its index entries.
    /// `storedEventId` gives the damaged log's event-id entry of an event id, where it can be read.
    mutating func take(
        position: UInt64, value: [UInt8], storedEventId: (String) throws -> [UInt8]?, into chunk: inout [RecoveredEvent]
    ) throws {
        guard value.count > 32 else { throw Self.broken(position, "the stored event is truncated") }
        try value.withUnsafeBytes { value in
            try take(position: position, value: value, storedEventId: storedEventId, into: &chunk)
        }
    }

    private mutating func take(
        position: UInt64, value: UnsafeRawBufferPointer, storedEventId: (String) throws -> [UInt8]?,
        into chunk: inout [RecoveredEvent]
    ) throws {
        let canonical = UnsafeRawBufferPointer(rebasing: value[32...])
        let hash = ChainHash.link(previous: head.hash, canonical: canonical)
        guard hash.elementsEqual(value[0..<32]) else { throw Self.broken(position, "its bytes do not hash to its stored hash") }
        guard StoredEventReader.envelopeMatchesInAnyForm(canonical, position: position, previous: head.hash) else {
            throw Self.broken(position, "the position or prevHash inside it do not match the chain")
        }
        var streamValue = Keys.position(position)
        let (eventId, incident, version): (String, String, Int64)
        do {
            (eventId, incident, version) = try StreamSummary.append(ofStored: canonical, at: position, to: &streamValue) {
                (String(decoding: $0, as: UTF8.self), String(decoding: $1, as: UTF8.self), $2)
            }
        } catch let error as LogError {
            throw Self.broken(position, "it does not read as an event (\(error.message))")
        }
        let start: UInt64
        if version == 1 {
            start = position
            streamStarts[incident] = position
        } else if let reported = streamStarts[incident] {
            start = reported
        } else {
            throw Self.broken(position, "it concerns \(incident), which no event before it reports")
        }
        var eventIdValue: [UInt8]
        if let stored = try storedEventId(eventId), stored.count == 40,
            stored.withUnsafeBytes({ Keys.readPosition($0) }) == position
        {
            eventIdValue = stored
            eventIdsCopied += 1
        } else {
            eventIdValue = Keys.position(position) + ChainHash.digest(ProposedEvent(writingOut: try Self.decode(canonical, position)).contentBytes)
            eventIdsRemade += 1
        }
        chunk.append(
            RecoveredEvent(
                position: position, value: Array(value), streamKey: Keys.stream(start: start, version: version),
                streamValue: streamValue, eventId: eventId, eventIdValue: eventIdValue))
        // The time of the last event is read when the head is written (``recordedHead(last:)``).
        head = Head(position: position, hash: hash, recordedAt: nil)
    }

    /// The head after `last`, the stored value of the last event taken, with the time it was recorded, which the
    /// daemon's next append may not precede.
    func recordedHead(last: RecoveredEvent) throws -> Head {
        let event = try last.value.withUnsafeBytes { try Self.decode(UnsafeRawBufferPointer(rebasing: $0[32...]), last.position) }
        return Head(position: head.position, hash: head.hash, recordedAt: event.recordedAt)
    }

    /// The canonical event stored at `position` decoded whole; only the chain has been checked of it.
    private static func decode(_ canonical: UnsafeRawBufferPointer, _ position: UInt64) throws -> RecordedEvent {
        do {
            return try RecordedEvent(json: JSONReader().read(canonical))
        } catch {
            throw Self.broken(position, "it does not read as an event (\(error))")
        }
    }

    private static func broken(_ position: UInt64, _ problem: String) -> LogError {
        LogError(
            .corrupt,
            "event \(position) of the log being recovered does not match its hash chain: \(problem). A recovery copies only events the chain proves, and made nothing. \(EventLog.restoreAdvice)")
    }
}

/// The events of a damaged log, found in the leaf pages of data files (``LMDB/LeafScan``): the log's own, in the
/// pages that are whole, and in older copies of pages LMDB wrote anew, and backups'. A page scan cannot tell current
/// pages from stale ones, an event of a commit that failed, or one of another log, so the hash chain tells them
/// apart: walked back from the head, each position takes the one event stored with the hash that the event after
/// it names (the head's own, for the last), and whose bytes hash to it.
private struct SalvagedChain {
    /// One value found under a position, in the file of `scans[source]`.
    private struct Candidate {
        var position: UInt64
        /// The first eight bytes of the hash stored with it, to pass over most of the others without a read.
        var hashPrefix: UInt64
        var source: Int
        var location: LeafScan.Location
    }

    /// The last event: its position and hash.
    let head: (position: UInt64, hash: [UInt8])
    /// Whether the head is the one given: the recorded one unknown or no stored event's, the given one later, or
    /// the given one on another chain (``recordedHeadLeftOut``).
    let headWasGiven: Bool
    /// The recorded head, when the hash given is a stored event's on another chain: the log was rewritten.
    let recordedHeadLeftOut: (position: UInt64, hash: [UInt8])?
    /// The position of the event whose hash was given, when one was.
    let givenHeadPosition: UInt64?
    /// Events stored past the head that go on from it, one after another: how many, and the last one's hash. Those
    /// a damaged record of the head lost, or those of a commit that failed before it was acknowledged.
    private(set) var eventsPastHead: (count: UInt64, hash: [UInt8])?
    private let scans: [LeafScan]
    /// Where each position's event is, from position 1.
    private let chosen: [(source: Int, location: LeafScan.Location)]
    /// How many of the events came from each file, in the order of the directories.
    let taken: [UInt64]

    /// Finds the events of positions 1 through the head in the data files of `directories` (the damaged log's
    /// first, whose events are preferred). The head is the stored event with the hash the log records, or else with
    /// the hash given; a hash given beside a recorded one must be that of an event of the chain found.
    ///
    /// - Throws: ``LogError``: `.damagedPage` naming the last position whose event no file holds whole, and every
    ///   stretch of positions no file holds at all; `.corrupt` when no stored event has the head's hash, or the
    ///   hash given is not in the chain; `.notALog` for a directory whose data file cannot be read.
    /// `progress` is told, in words, as each file is read and every 100,000 positions of the walk.
    init(
        recordedHead: [UInt8]?, givenHead: [UInt8]?, directories: [String], progress: (@Sendable (String) -> Void)?
    ) throws {
        scans = try directories.map { directory in
            do {
                return try LeafScan(directory: directory)
            } catch {
                throw LogError(.notALog, "cannot read the pages of \(directory)/data.mdb: \(error)")
            }
        }
        var candidates: [Candidate] = []
        for (source, scan) in scans.enumerated() {
            let before = candidates.count
            try scan.forEachEntry { key, value, location in
                if key.count == 8, let position = Keys.readPosition(key), position >= 1, value.count > 33,
                    value[32] == UInt8(ascii: "{")
                {
                    candidates.append(
                        Candidate(
                            position: position, hashPrefix: value.loadUnaligned(as: UInt64.self), source: source,
                            location: location))
                }
                return true
            }
            progress?("recovering the log: \(candidates.count - before) entries that may be events found in \(scan.path)")
        }
        let files = directories.map { $0 + "/data.mdb" }.joined(separator: ", ")
        let scans = scans
        func stored(_ candidate: Candidate) -> [UInt8]? { scans[candidate.source].value(candidate.location) }
        // The position of the stored event with `hash`: its position is in it, and no other bytes hash to it.
        func position(of hash: [UInt8]) -> UInt64? {
            let prefix = hash.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            return candidates.first {
                $0.hashPrefix == prefix && stored($0).map { Self.previousHash(of: $0, hashing: hash) != nil } == true
            }?.position
        }
        // The later of the two heads found, when both are: the walk back from it must pass through the other.
        let recordedAt = recordedHead.flatMap { hash in position(of: hash).map { (position: $0, hash: hash) } }
        let givenAt = givenHead.flatMap { hash in position(of: hash).map { (position: $0, hash: hash) } }
        givenHeadPosition = givenAt?.position
        let other: [UInt8]?
        var start: (position: UInt64, hash: [UInt8])
        var startWasGiven: Bool
        switch (recordedAt, givenAt) {
        case let (recorded?, given?):
            (start, startWasGiven, other) =
                given.position > recorded.position ? (given, true, recorded.hash) : (recorded, false, given.hash)
        case let (recorded?, nil):
            (start, startWasGiven, other) = (recorded, false, givenHead)
        case let (nil, given?):
            (start, startWasGiven, other) = (given, true, nil)
        case (nil, nil):
            let hashes = [recordedHead.map { "the recorded head's hash \(ChainHash.hex($0))" }, givenHead.map { "the hash given, \(ChainHash.hex($0))" }]
            throw LogError(
                .corrupt,
                "no event stored in \(files) has \(hashes.compactMap { $0 }.joined(separator: ", nor ")): "
                    + (givenHead == nil
                        ? "the record of the head may be damaged, or its event in no page that is whole. Give the head hash last published (incidentctl status's headHash) with --expect-head"
                        : "the hash may be mistyped or another log's, or its event in no page that is whole. Check it against the head last published (incidentctl status's headHash)")
                    + ", or give a backup that holds that event with --fill-from DIR; nothing was made")
        }
        // Tried from the last of each position's: the damaged log's own file first, then the backups in the order given.
        candidates.sort { $0.position != $1.position ? $0.position < $1.position : $0.source > $1.source }

        // Walks back from `head` to position 1, taking at each position the event whose bytes hash to what the one
        // after it names; says whether `other` was among them.
        func walk(from head: (position: UInt64, hash: [UInt8]), passingThrough other: [UInt8]?) throws -> (
            backwards: [(source: Int, location: LeafScan.Location)], taken: [UInt64], otherFound: Bool
        ) {
            var taken = Array(repeating: UInt64(0), count: directories.count)
            var otherFound = other == nil || other == head.hash
            var backwards: [(source: Int, location: LeafScan.Location)] = []
            // A chain of n events needs n entries: no more is reserved than were found, whatever a position says.
            backwards.reserveCapacity(min(Int(clamping: head.position), candidates.count))
            var expected = head.hash
            var index = candidates.count - 1
            for position in (1...head.position).reversed() {
                while index >= 0 && candidates[index].position > position { index -= 1 }
                let prefix = expected.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                var previous: [UInt8]?
                var i = index
                while i >= 0 && candidates[i].position == position && previous == nil {
                    let candidate = candidates[i]
                    i -= 1
                    guard candidate.hashPrefix == prefix, let bytes = stored(candidate) else { continue }
                    previous = Self.previousHash(of: bytes, hashing: expected)
                    if previous != nil {
                        backwards.append((candidate.source, candidate.location))
                        taken[candidate.source] += 1
                    }
                }
                guard let previous else { throw Self.missing(position, head: head, candidates: candidates, files: files) }
                expected = previous
                if !otherFound && previous == other { otherFound = true }
                if position % 100_000 == 0 { progress?("recovering the log: \(Positions.events(position, through: head.position)) proven by the chain") }
            }
            guard expected == ChainHash.zero else {
                throw LogError(.corrupt, "event 1 found in \(files) does not start a chain (its prevHash is not zero); nothing was made")
            }
            return (backwards, taken, otherFound)
        }
        var (backwards, taken, otherFound) = try walk(from: start, passingThrough: other)
        // A hash given that is a stored event's, on another chain than the recorded head's: the log was rewritten
        // since that head was published. The head published wins; the recorded one's events past the fork are
        // left out, and the report says so.
        if !otherFound, let recorded = recordedAt, let given = givenAt {
            if !startWasGiven { (backwards, taken, _) = try walk(from: given, passingThrough: nil) }
            (start, startWasGiven, otherFound) = (given, true, true)
            recordedHeadLeftOut = recorded
        } else {
            recordedHeadLeftOut = nil
        }
        (head, headWasGiven) = (start, startWasGiven)
        if !otherFound, let other {
            throw LogError(
                .corrupt,
                headWasGiven
                    ? "the head the log records, \(ChainHash.hex(other)), is that of no event of the chain that ends at the hash given (position \(head.position), \(ChainHash.hex(head.hash))); nothing was made"
                    : "the hash given, \(ChainHash.hex(other)), is that of no event of the chain that ends at the head the log records (position \(head.position), \(ChainHash.hex(head.hash))): the log may have been rewritten or cut short since that hash was published (incidentctl verify --expect-head says which), or the hash is mistyped or another log's. Give a backup that holds its event with --fill-from; nothing was made")
        }
        chosen = backwards.reversed()
        self.taken = taken
        // Events stored past the head that go on from it, one after another.
        var past: (count: UInt64, hash: [UInt8]) = (0, head.hash)
        // The first candidate past the head, by bisection (the candidates are in position order).
        var low = 0
        var high = candidates.count
        while low < high {
            let middle = (low + high) / 2
            if candidates[middle].position > head.position { high = middle } else { low = middle + 1 }
        }
        var next = low
        while next < candidates.count, candidates[next].position == head.position + past.count + 1 {
            let at = candidates[next].position
            var following: Set<[UInt8]> = []
            while next < candidates.count && candidates[next].position == at {
                if let bytes = stored(candidates[next]), bytes.count > 32,
                    Self.previousHash(of: bytes, hashing: Array(bytes[0..<32])) == past.hash
                {
                    following.insert(Array(bytes[0..<32]))
                }
                next += 1
            }
            // None goes on, or two do (a fork): the chain past the head ends before them.
            guard following.count == 1, let hash = following.first else { break }
            past = (past.count + 1, hash)
        }
        eventsPastHead = past.count > 0 ? past : nil
    }

    /// The stored bytes (hash ‖ canonical JSON) of the event at `position`, read again from its file.
    func value(at position: UInt64) throws -> [UInt8] {
        let (source, location) = chosen[Int(position) - 1]
        guard let bytes = scans[source].value(location) else {
            throw LogError(.io, "cannot read event \(position) again from \(scans[source].path)")
        }
        return bytes
    }

    /// Why the walk stopped at `position`: an event no file holds whole, with every stretch of positions up to the
    /// head that no file holds at all, so that one choice of backups can cover them.
    private static func missing(
        _ position: UInt64, head: (position: UInt64, hash: [UInt8]), candidates: [Candidate], files: String
    ) -> LogError {
        var gaps: [ClosedRange<UInt64>] = []
        var next: UInt64 = 1
        for candidate in candidates where candidate.position <= head.position {
            if candidate.position > next { gaps.append(next...(candidate.position - 1)) }
            next = max(next, candidate.position + 1)
        }
        if next <= head.position { gaps.append(next...head.position) }
        let described = gaps.prefix(8).map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)–\($0.upperBound)" }
        return LogError(
            .damagedPage,
            "event \(position) of the \(head.position) the log holds is in no page of \(files) as the chain names it (a page whole, holding bytes that hash to what the event after it names), so the events up to it cannot be proven"
                + (gaps.isEmpty ? "" : " (positions no page holds at all: \(described.joined(separator: ", "))\(gaps.count > 8 ? ", …" : ""))")
                + ". Give a backup that holds it with --fill-from DIR; or: \(EventLog.restoreAdvice)")
    }

    /// The `prevHash` of the stored event `bytes`, when its stored hash is `hash` and its bytes hash to it from
    /// that `prevHash`.
    private static func previousHash(of bytes: [UInt8], hashing hash: [UInt8]) -> [UInt8]? {
        guard bytes.count > 32, bytes[0..<32].elementsEqual(hash) else { return nil }
        return bytes.withUnsafeBytes { raw -> [UInt8]? in
            let canonical = UnsafeRawBufferPointer(rebasing: raw[32...])
            guard let previous = StoredEventReader.statedPreviousHash(canonical), previous.count == 32,
                ChainHash.link(previous: previous, canonical: canonical) == hash
            else { return nil }
            return previous
        }
    }
}
