#if canImport(Glibc)
import Glibc
#endif
import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON
import Synchronization

/// The named databases of the log's LMDB environment.
struct Databases: Sendable {
    /// position (big-endian UInt64) → 32-byte hash ‖ canonical event JSON
    let events: Database
    /// `incident-streams`: stream start ‖ version (both big-endian, ``Keys/stream(start:version:)``) → position
    /// (big-endian) ‖ ``StreamSummary`` of the event
    let streams: Database
    /// event id → position (big-endian) ‖ SHA-256 of the proposal's content
    let eventIds: Database
    /// incident id → ``IncidentState/encoded()``
    let incidents: Database
    /// city id → canonical JSON of ``CityState``
    let cities: Database
    /// `city-dates`: each city's index of the dates of the incidents it counts, from which its first and last
    /// incident dates are read: ``Keys/cityDate(cityId:start:position:into:)`` → the report's `occurredAt` as
    /// reported (``IncidentDate``) and the incident id (``Keys/cityDateValue(text:incident:into:)``); and after all
    /// of those, each city's list of the incidents it does not date (retracted, or whose date does not read):
    /// ``Keys/cityIncident(cityId:position:into:)`` → the incident id. Each incident reported in a city is in one
    /// of the two.
    let cityDates: Database
    /// `head` → position ‖ hash ‖ recordedAt; `format`; `projections` → position they are current through ‖
    /// their version; `gazetteer` → SHA-256 of what they read of the gazetteer they were built with
    let meta: Database
}

/// The incident log in LMDB: append-only events with a hash chain, the stream and event-id indexes, and the
/// projections, all changed together in one write transaction. Reads may come from any thread; writes come
/// only from the ``GroupCommitter``'s thread.
public final class EventLog: Sendable {
    /// Format 6 keeps each incident once in `city-dates`: a counted one among its city's dates, with its id, the
    /// others in its city's list of the incidents it does not date; format 5 kept each city's index of every
    /// incident reported in it beside the dates; format 4 adds
    /// `city-dates`, each city's index of the dates of the incidents it counts; format 3 stores each
    /// event's ``StreamSummary`` beside its position in `incident-streams`, which format 2 keys by where each
    /// incident starts. Older logs are upgraded at the first start of a daemon: format 1 (`streams`, keyed by
    /// incident id) by ``upgradeFromFormat1()``, format 2 by ``upgradeFromFormat2()``, formats 3 to 5 by
    /// ``upgradeCityDates()``, each to the next.
    public static let formatTag = "incidentd-log-6"
    static let format5Tag = "incidentd-log-5"
    static let format4Tag = "incidentd-log-4"
    static let format3Tag = "incidentd-log-3"
    static let format2Tag = "incidentd-log-2"
    static let format1Tag = "incidentd-log-1"
    /// The named databases an environment of the log may have open (``Databases``, seven, with room for an old
    /// format's).
    static let maxDatabases: UInt32 = 8
    /// Bumped whenever the projection documents change shape or what they count; a mismatch rebuilds them at
    /// start. Version 4 leaves retracted incidents out of a city's sums (``OutcomeStatus/countsInSums``); version 5
    /// counts the incidents its participant sums cover (`participants.counted`); version 6 corrects a report by
    /// ``ReportData/correction(_:)``, which reads the corrections alone, where the writer had dropped a correction
    /// of a report stored under older, looser rules that it still held whole; version 7 leaves retracted incidents
    /// out of a city's `firstIncidentAt` and `lastIncidentAt` too, read from `city-dates`, which it writes; version 8
    /// writes each city's index of incidents there too; version 9 writes each incident there once, a counted one's
    /// id beside its date (format 6); version 10 stores an incident without its id, which is its key, and without
    /// its report's city id where that is the incident's (``IncidentState/storedFormat`` 4).
    public static let projectionVersion: UInt64 = 10

    public let environment: Environment
    public let gazetteer: Gazetteer
    public let options: LogOptions
    let db: Databases
    let projector: Projector
    let gazetteerMemo: GazetteerMemo
    /// SHA-256 of ``Projector/gazetteerInput``: stored under `meta/gazetteer` with the projections a rebuild
    /// writes, and compared with the stored one when a writer opens the log.
    let gazetteerDigest: [UInt8]
    /// Each city's projection as its canonical JSON, as stored: what `city` answers, without a read transaction
    /// or a parse. The writer replaces a city's entry after the commit that changed it, before any of that
    /// commit's appends is acknowledged. One that did not read back as the log was opened is its `log_damaged`.
    let cityDocuments = Mutex<[String: Result<[UInt8], IncidentError>]>([:])
    private let openingRebuild = Mutex<UInt64?>(nil)
    private let lockDescriptor: Int32
    /// A writer's `flock` on `data.mdb` itself (``lockDataFile(directory:)``), or -1.
    let dataFileLockDescriptor: Int32
    /// The bytes the log held when it was opened and its maximum size (``LogOptions/maxMapSize``), when it held
    /// more: a log that grew under a larger maximum. It is served as it is, but takes no more appends
    /// (``sizeLimitRefusal()``) until the maximum is raised above what it holds. Fixed for the life of the
    /// process: such a log never shrinks, and one within its maximum has its map capped there.
    public let pastMaximumSize: (used: Int, maximum: Int)?

    /// Opens (and for a writer creates) the log in `options.directory`. A writer takes an exclusive lock on
    /// `incidentd.lock` there, and one on `data.mdb` (which no one removes from a log in use), so a second daemon on
    /// the same directory refuses to start, even after `incidentd.lock` was deleted; it also clears stale
    /// reader slots, and rebuilds the projections if they lag behind the events, are of another version, or were
    /// built with a gazetteer whose cities differ from `gazetteer`'s (or with one the log does not record, before
    /// it recorded it), or if `options.rebuildAtOpen` asks for it; `options.onRebuildAtOpen` is told why.
    public init(options: LogOptions, gazetteer: Gazetteer) throws {
        self.options = options
        self.gazetteer = gazetteer
        projector = Projector(gazetteer: gazetteer)
        gazetteerMemo = GazetteerMemo(gazetteer: gazetteer)
        gazetteerDigest = ChainHash.digest(projector.gazetteerInput)
        try EventLog.refuseNonDirectory(options.directory)
        if options.readOnly {
            lockDescriptor = -1
        } else {
            _ = try EventLog.makeDataDirectory(options.directory)
            lockDescriptor = try EventLog.lock(directory: options.directory)
        }
        var envOptions = EnvironmentOptions()
        envOptions.maxDatabases = EventLog.maxDatabases
        envOptions.initialMapSize = min(options.initialMapSize, options.maxMapSize)
        envOptions.maxMapSize = options.maxMapSize
        envOptions.readOnly = options.readOnly
        var dataFileLock: Int32 = -1
        var dataFileIsNew = false
        do {
            try EventLog.refuseEmptyDataFile(in: options.directory)
            dataFileIsNew = !options.readOnly && access(options.directory + "/data.mdb", F_OK) != 0 && errno == ENOENT
            environment = try Environment(directory: options.directory, options: envOptions)
            // Before this process writes anything: opening LMDB's environment wrote nothing to an existing log.
            if !options.readOnly { dataFileLock = try EventLog.lockDataFile(directory: options.directory) }
            // The pages opening the log reads through the map, where a damaged one is a wrong answer or a fault; a
            // writer's first commit (the format tag) reads the free list too.
            if let damage = try environment.checkPages(of: EventLog.readAtOpen, includingFreeList: !options.readOnly).damage {
                throw LogError(
                    .damagedPage,
                    "\(damage) (a page of data.mdb that opening the log reads), and the log cannot be opened. \(EventLog.damageAdvice(database: damage.database?.name))")
            }
            let create = !options.readOnly
            let meta = try EventLog.openMeta(environment, create: create, directory: options.directory)
            if options.readOnly { try EventLog.refuseOtherFormat(environment, meta: meta, directory: options.directory) }
            db = Databases(
                events: try environment.openDatabase("events", create: create),
                streams: try environment.openDatabase("incident-streams", create: create),
                eventIds: try environment.openDatabase("event-ids", create: create),
                incidents: try environment.openDatabase("incidents", create: create),
                cities: try environment.openDatabase("cities", create: create),
                cityDates: try environment.openDatabase("city-dates", create: create),
                meta: meta)
        } catch {
            // Under incidentd.lock still, so that no other writer is making the file.
            if dataFileIsNew { EventLog.removeUnwrittenDataFile(in: options.directory) }
            if lockDescriptor >= 0 { close(lockDescriptor) }
            if dataFileLock >= 0 { close(dataFileLock) }
            throw EventLog.openFailure(error, directory: options.directory, readOnly: options.readOnly)
        }
        dataFileLockDescriptor = dataFileLock
        let usedAtOpen = environment.info.usedBytes
        pastMaximumSize = usedAtOpen > options.maxMapSize ? (usedAtOpen, options.maxMapSize) : nil
        if !options.readOnly {
            _ = try environment.readerCheck()
            try checkFormat()
        }
        try loadCityDocuments()
    }

    /// Opens the log's `meta` database, made (when `create`) only in a data file no commit has written yet. One that
    /// holds commits and does not name it is refused: the first commit to a log names it, so the file's main
    /// database's root is damaged (pointing at an older page, say), or the file is another program's, and a writer
    /// would make a new log there, over the events it holds.
    static func openMeta(_ environment: Environment, create: Bool, directory: String) throws -> Database {
        let commits = environment.info.lastTransactionID
        guard commits > 0 else { return try environment.openDatabase("meta", create: create) }
        do {
            return try environment.openDatabase("meta", create: false)
        } catch let error as LMDBError where error.isNotFound {
            throw LogError(
                .damagedPage,
                "\(directory)/data.mdb holds \(commits) commits, but its main database names none of the log's databases: its record of them is damaged (or the file is another program's), and the log cannot be opened. \(damageAdvice(database: PageDamage.Tree.main.name))")
        }
    }

    /// The databases whose pages opening the log reads: the head, the format, the gazetteer's digest and the
    /// projection mark (`meta`), and every city's document (`cities`), besides the main database that names them.
    static let readAtOpen: Set<String> = ["meta", "cities"]

    /// What to do about a `data.mdb` that is not the log it should be (damaged, cut short, empty): the one wording
    /// of it, for the daemon's refusals and incidentctl's.
    public static let restoreAdvice =
        "Restore data.mdb from a backup that verifies (one that incidentctl backup made, see README.md): with incidentd stopped, put the backup's data.mdb in its place"

    /// What to do about a damaged page of the tree named `database` (``LMDB/PageDamage/Tree/name``): make a new log
    /// of every event the hash chain proves (`incidentd --recover-from`), which loses none appended since the last
    /// backup, with what that needs for such a page; or ``restoreAdvice``.
    public static func damageAdvice(database: String?) -> String {
        let needs: String
        switch database {
        case PageDamage.Tree.main.name?, "meta"?:
            needs = ", giving the head hash last published with --expect-head if it cannot read the log's own record of it"
        case "events"?:
            needs = ", giving the latest backups with --fill-from for the events the damaged pages held"
        default:
            needs = ""
        }
        return "Make a new log of every event the hash chain proves with incidentd --recover-from\(needs) (see README.md), "
            + "which loses none appended since the last backup; or: \(restoreAdvice)"
    }

    /// What opening the log in `directory` threw, as the ``LogError`` that says what is wrong with it and what to do.
    static func openFailure(_ error: any Error, directory: String, readOnly: Bool) -> any Error {
        switch error {
        case let damage as PageDamage:
            return LogError(
                .damagedPage,
                "\(damage) (a meta page of data.mdb), and the log cannot be opened. \(damageAdvice(database: PageDamage.Tree.main.name))")
        case let error as TruncatedDataFile:
            return LogError(
                .corrupt,
                "\(error.problem), and the log cannot be read from it. Make a new log of every event the hash chain "
                    + "proves with incidentd --recover-from, giving the head hash last published with --expect-head and "
                    + "the latest backups with --fill-from for the events past the cut (see README.md), which loses none "
                    + "appended since those backups; or: \(restoreAdvice)")
        case let error as UnsafeEnvironmentFile:
            return LogError(.accessDenied, "cannot open the log in \(directory): \(error)")
        case let error as LockFileNotAllocated:
            guard error.isOutOfSpace else {
                return LogError(.io, "cannot open the log in \(directory): \(error.problem)")
            }
            return fileSystemFullAtOpen(directory, error.problem)
        case let error as LMDBError where error.code == ENOSPC || error.code == EDQUOT:
            return fileSystemFullAtOpen(directory, "\(error)")
        case let error as LMDBError:
            if error.isNotFound {
                return LogError(.notALog, "\(directory) holds no incident log")
            }
            if readOnly && error.code == ENOENT {
                // Read-only, LMDB creates nothing: the directory, or its data.mdb, is not there.
                var info = stat()
                let missing = stat(directory, &info) != 0 && errno == ENOENT
                return LogError(
                    .notALog,
                    "cannot open the log in \(directory): "
                        + (missing ? "there is no such directory" : "it holds no incident log (no data.mdb)"))
            }
            if error.code == EACCES || error.code == EPERM {
                let needs = readOnly
                    ? "reading it needs read access to data.mdb and write access to lock.mdb (LMDB's table of readers) there, as incidentd's user has: run this as that user, or read it through the daemon (without --data-dir)"
                    : "incidentd's user must own it, or be able to read and write it and the files in it"
                let denied = deniedEntry(in: directory, readOnly: readOnly).map { "\($0); " } ?? ""
                return LogError(.accessDenied, "cannot open the log in \(directory): permission denied (uid \(geteuid())): \(denied)\(needs)")
            }
            return LogError(.io, "cannot open the log in \(directory): \(error)")
        default:
            return error
        }
    }

    /// Which of `directory`, its `data.mdb` and its `lock.mdb` this process may not use as opening the log needs
    /// (the directory searched, and written where `lock.mdb` is still to be made; `data.mdb` read, or read and
    /// written; `lock.mdb` read and written), with its owner and mode, as "DIR/data.mdb belongs to uid 0 (root),
    /// mode 0600": a restore that copied `data.mdb` as root leaves it so. Nil when each may be used, or is not there.
    static func deniedEntry(in directory: String, readOnly: Bool) -> String? {
        let lock = directory + "/lock.mdb"
        var info = stat()
        let entries = [
            (directory, lstat(lock, &info) == 0 ? X_OK : X_OK | W_OK),
            (directory + "/data.mdb", readOnly ? R_OK : R_OK | W_OK), (lock, R_OK | W_OK),
        ]
        for (path, needed) in entries {
            guard lstat(path, &info) == 0, faccessat(AT_FDCWD, path, needed, AT_EACCESS) != 0 else { continue }
            var entry = passwd()
            var found: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: 4096)
            let owner =
                getpwuid_r(info.st_uid, &entry, &buffer, buffer.count, &found) == 0 && found != nil
                ? " (\(String(cString: entry.pw_name)))" : ""
            return "\(path) belongs to uid \(info.st_uid)\(owner), mode 0\(String(info.st_mode & 0o7777, radix: 8))"
        }
        return nil
    }

    /// The refusal to open the log in `directory` for want of space on its file system, where `what` failed: it says
    /// what is free, and to free space and try again, since nothing else is wrong.
    static func fileSystemFullAtOpen(_ directory: String, _ what: String) -> LogError {
        let left = freeBytes(at: directory).map { "\($0) bytes free" } ?? "free space unknown"
        return LogError(
            .storageFull,
            "cannot open the log in \(directory): the file system holding it is full (\(left)): \(what). Free space there and try again")
    }

    /// Refuses a data directory path that is empty, or that names, or leads through, something other than a
    /// directory (the log's `data.mdb` itself, say), saying what it is: LMDB says only "Not a directory", and a
    /// daemon would fail on its lock file. A path that leads nowhere is left to opening the log.
    static func refuseNonDirectory(_ directory: String) throws {
        guard !directory.isEmpty else {
            throw LogError(.notALog, "the data directory path is empty; give the directory that holds the log's data.mdb")
        }
        var path = trimmingSlashes(directory)
        var info = stat()
        while stat(path, &info) != 0 {
            let code = errno
            let above = parent(of: path)
            guard code == ENOTDIR, above != path else { return }
            path = above
        }
        let type = info.st_mode & S_IFMT
        guard type != S_IFDIR else {
            // LMDB would read a directory named data.mdb as a damaged data file, and advise a recovery.
            let dataFile = (path == "/" ? "" : path) + "/data.mdb"
            var dataInfo = stat()
            if stat(dataFile, &dataInfo) == 0, (dataInfo.st_mode & S_IFMT) != S_IFREG {
                throw LogError(.notALog, "cannot open the log in \(directory): \(dataFile) is not a file (a log's data.mdb is one)")
            }
            return
        }
        let what: String
        switch type {
        case S_IFREG: what = "a file"
        case S_IFSOCK: what = "a socket"
        case S_IFIFO: what = "a named pipe"
        case S_IFCHR, S_IFBLK: what = "a device"
        default: what = "a special file"
        }
        let subject = path == trimmingSlashes(directory) ? "it" : path
        let problem: String
        if type == S_IFREG && (path == "data.mdb" || path.hasSuffix("/data.mdb")) {
            let holder = path == "data.mdb" ? "." : parent(of: path)
            problem = "\(subject) is a log's data file, not its directory: the data directory is the one that holds it, \(holder)"
        } else {
            problem = "\(subject) is \(what), not a directory; give the directory that holds the log's data.mdb"
        }
        throw LogError(.notALog, "cannot open the log in \(directory): \(problem)")
    }

    /// Refuses a `data.mdb` that is there but empty, before LMDB sees it: LMDB would take it for a new environment,
    /// and a daemon would start a new chain at position 1 where a log was (a copy that failed as it began, during a
    /// restore, leaves just that); read-only, LMDB would fail with `EBADF`, after creating `lock.mdb`. So is a
    /// backup's directory holding only the copy cut short (``Environment/incompleteCopyName``). A directory with
    /// no `data.mdb` otherwise is a new log, for a daemon.
    static func refuseEmptyDataFile(in directory: String) throws {
        let path = directory + "/data.mdb"
        var info = stat()
        guard stat(path, &info) == 0 else {
            guard errno == ENOENT, stat(directory + "/" + Environment.incompleteCopyName, &info) == 0 else { return }
            throw LogError(
                .corrupt,
                "\(directory) holds only \(Environment.incompleteCopyName), a backup cut short before it was whole (the daemon stopped during the copy): it is no log. Remove the directory and back up again; to start a new log there instead, remove \(Environment.incompleteCopyName)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG, info.st_size == 0 else { return }
        throw LogError(
            .corrupt,
            "\(path) is empty, and an empty data.mdb is not a log: a copy or a restore that did not finish leaves one. "
                + "\(restoreAdvice); or, if this is meant to be a new log, delete data.mdb, and incidentd starts one there")
    }

    /// Removes the `data.mdb` in `directory` that this writer's open of a new log made, when it is shorter than the two
    /// meta pages LMDB writes first, in one write, when it makes the file (a full disk stopped that write): no commit
    /// can be in it, and left there it would be refused at the next start as a log cut short or empty, after space
    /// was freed. A longer one (LMDB wrote its meta pages, and the open failed later) stays: it is a log.
    static func removeUnwrittenDataFile(in directory: String) {
        let path = directory + "/data.mdb"
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
            Int(info.st_size) < 2 * Int(sysconf(Int32(_SC_PAGESIZE)))
        else { return }
        unlink(path)
    }

    /// Reads every stored city document into ``cityDocuments``; one that does not read back as a city's
    /// projection is kept as the `log_damaged` that `city` answers for it.
    func loadCityDocuments() throws {
        let documents = try environment.read { txn in
            var documents: [String: Result<[UInt8], IncidentError>] = [:]
            try txn.forEach(db.cities) { key, value in
                let id = String(decoding: key, as: UTF8.self)
                do throws(IncidentError) {
                    _ = try CityState(stored: value, id: id)
                    documents[id] = .success(Array(value))
                } catch {
                    documents[id] = .failure(error)
                }
                return true
            }
            return documents
        }
        cityDocuments.withLock { $0 = documents }
    }

    deinit {
        if lockDescriptor >= 0 { close(lockDescriptor) }
        if dataFileLockDescriptor >= 0 { close(dataFileLockDescriptor) }
    }

    /// How many events the rebuild of the projections made as the log was opened folded; nil when the
    /// projections were current and kept.
    public var eventsRebuiltAtOpen: UInt64? { openingRebuild.withLock { $0 } }

    /// Whether the stored projections were last built with a gazetteer that gives them what this log's gives
    /// (``Projector/gazetteerInput``); nil when the log does not record it (an older incidentd built them). A
    /// `replay` with another gazetteer computes other cities than the daemon's.
    public func projectionsBuiltWithThisGazetteer() throws -> Bool? {
        try environment.read { txn in try txn.get(db.meta, key: Keys.gazetteer).map { $0.elementsEqual(gazetteerDigest) } }
    }

    /// Takes `directory/incidentd.lock` (made if missing) and returns its descriptor, which holds the lock until it
    /// is closed. A lock file unlinked between this process's `open` and its `flock` (a refused recovery removes the one
    /// it made) no longer guards the path: it is let go, and the path's file taken instead.
    static func lock(directory: String) throws -> Int32 {
        let path = directory + "/incidentd.lock"
        while true {
            let fd: Int32
            switch exclusiveLock(path, openFlags: O_RDWR | O_CREAT) {
            case .held(let held): fd = held
            case .heldByAnother:
                throw LogError(.locked, "cannot lock \(path): another incidentd\(holderNote(path)) is already using it")
            case let failed: throw failed.error(path)
            }
            var held = stat()
            var named = stat()
            if fstat(fd, &held) == 0, stat(path, &named) == 0, held.st_dev == named.st_dev, held.st_ino == named.st_ino {
                return fd
            }
            close(fd)
        }
    }

    /// What ``exclusiveLock(_:openFlags:)`` came to.
    enum LockAttempt {
        /// The lock is held through this descriptor, until it is closed.
        case held(Int32)
        /// Another open file holds it.
        case heldByAnother
        /// The file could not be opened, for `errno`.
        case openFailed(Int32)
        /// The file could not be locked, for `errno` (not that another holds the lock).
        case lockFailed(Int32)
        /// The path is not a regular file with one name (``LMDB/EnvironmentFiles``' rule): `problem` says what it is.
        case unsafe(String)

        /// The error for an attempt that neither holds the lock nor found it held, on `path`.
        func error(_ path: String) -> LogError {
            switch self {
            case .openFailed(let code) where LogError.isLasting(code):
                // Permission denied on an existing data directory, a read-only one: no restart mends that.
                LogError(
                    .accessDenied,
                    "cannot open \(path): \(String(cString: strerror(code))) (uid \(geteuid())); incidentd's user must own the data directory \(EventLog.parent(of: path)), or be able to write it and the files in it, on a file system mounted read-write")
            case .openFailed(let code): LogError(.io, "cannot open \(path): \(String(cString: strerror(code)))")
            case .lockFailed(let code): LogError(.io, "cannot lock \(path): \(String(cString: strerror(code)))")
            case .unsafe(let problem):
                LogError(
                    .accessDenied,
                    "\(path) \(problem); incidentd's files must be regular files of their own, opened without following a link: it is not opened, so that nothing it leads to is written. Remove it if the directory is yours, or give a data directory that nobody but its owner may write")
            case .held, .heldByAnother: LogError(.io, "cannot lock \(path)")
            }
        }
    }

    /// Takes an exclusive `flock` on `directory/data.mdb` and returns the descriptor that holds it. `incidentd.lock`
    /// can be deleted while its daemon runs, and the next daemon would take a new file's lock; `data.mdb` is the log
    /// itself. LMDB locks only `lock.mdb` (with `fcntl`), and readers (`verify --data-dir`, `replay --data-dir`,
    /// backups) take no lock on `data.mdb`, so this stops only a second writer.
    static func lockDataFile(directory: String) throws -> Int32 {
        let path = directory + "/data.mdb"
        switch exclusiveLock(path, openFlags: O_RDONLY) {
        case .held(let fd): return fd
        case .heldByAnother:
            throw LogError(
                .locked,
                "cannot lock \(path): another incidentd\(holderNote(path)) is already using it, and holds its lock on data.mdb (its incidentd.lock was deleted or replaced since it started)")
        case let failed: throw failed.error(path)
        }
    }

    /// Opens `path` (with `openFlags`, close-on-exec, mode 0600 if made) and takes an exclusive `flock` on it
    /// without waiting. A symbolic link is not followed, and what is not a regular file with one name is not
    /// locked (``LockAttempt/unsafe(_:)``): root's recovery reads a directory another user may have prepared.
    static func exclusiveLock(_ path: String, openFlags: Int32) -> LockAttempt {
        let fd = open(path, openFlags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return errno == ELOOP ? .unsafe("is a symbolic link") : .openFailed(errno) }
        var info = stat()
        if fstat(fd, &info) == 0, let problem = EnvironmentFiles.problem(info, written: openFlags & O_ACCMODE != O_RDONLY) {
            close(fd)
            return .unsafe(problem)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            return code == EWOULDBLOCK ? .heldByAnother : .lockFailed(code)
        }
        return .held(fd)
    }

    /// " (process PID)" for the holder of the `flock` on `path`, when `/proc/locks` tells it; "" otherwise.
    static func holderNote(_ path: String) -> String {
        flockHolder(of: path).map { " (process \($0))" } ?? ""
    }

    /// The process that holds a `flock` on `path`, from `/proc/locks`; nil when it cannot be told.
    static func flockHolder(of path: String) -> Int32? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let fd = open("/proc/locks", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        let locks = String(decoding: bytes, as: UTF8.self)
        let device = UInt64(info.st_dev)
        // glibc's gnu_dev_major and gnu_dev_minor, which /proc/locks prints in hexadecimal.
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
        let file = String(major, radix: 16) + ":" + String(minor, radix: 16) + ":" + String(info.st_ino)
        for line in locks.split(separator: "\n") {
            // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK", fields[3] == "WRITE" else { continue }
            let parts = fields[5].split(separator: ":")
            guard parts.count == 3, let lockMajor = UInt64(parts[0], radix: 16), let lockMinor = UInt64(parts[1], radix: 16)
            else { continue }
            if "\(String(lockMajor, radix: 16)):\(String(lockMinor, radix: 16)):\(parts[2])" == file { return Int32(fields[4]) }
        }
        return nil
    }

    private func checkFormat() throws {
        let found = try environment.write { txn -> String? in
            if let tag = try txn.get(db.meta, key: Keys.format) { return String(decoding: tag, as: UTF8.self) }
            try txn.put(db.meta, key: Keys.format, value: Array(EventLog.formatTag.utf8))
            return nil
        }
        // Whether the log was upgraded from format 5 or before, which needs the rebuild that makes `city-dates`.
        let upgraded = found != nil && found != EventLog.formatTag
        switch found {
        case nil, EventLog.formatTag?: break
        case EventLog.format1Tag?:
            try refuseDamageBeforeUpgrade(from: EventLog.format1Tag)
            try upgradeFromFormat1()
            try upgradeFromFormat2()
            try upgradeCityDates()
        case EventLog.format2Tag?:
            try refuseDamageBeforeUpgrade(from: EventLog.format2Tag)
            try upgradeFromFormat2()
            try upgradeCityDates()
        case EventLog.format3Tag?, EventLog.format4Tag?, EventLog.format5Tag?:
            try refuseDamageBeforeUpgrade(from: found ?? "")
            try upgradeCityDates()
        case let other?:
            throw EventLog.unknownFormat(other, directory: options.directory)
        }
        // The one read an unchanged log costs: its head, its projection mark and the gazetteer's digest.
        let (head, projected, builtWith) = try environment.read { txn in
            (try Head.read(txn, db).position, try projectionMark(txn), try txn.get(db.meta, key: Keys.gazetteer).map { Array($0) })
        }
        // Before any other reason to rebuild (a newer projection version, say): one would fold the witness away.
        if !options.rebuildAtOpen && projected.0 != .max && projected.0 > head {
            throw LogError(
                .corrupt,
                "the projections were built up to position \(projected.0), but the log ends at \(head): events they counted are no longer in it, removed behind incidentd's back or with the record of the head rewritten. incidentd does not rebuild them, since they are the witness of what was there. Keep the data directory as it is (copy it aside), check the log against the head you last published (incidentctl verify --data-dir \(options.directory) --expect-head POSITION:HASH), and recover the events from a backup (incidentd --recover-from with --fill-from and --expect-head, see README.md); to accept the log as it is, start incidentd once with --rebuild-projections, which deletes the index entries of the events no longer in it and folds the projections again from the events that are")
        }
        let reason: String
        if options.rebuildAtOpen {
            reason = "rebuilding the projections as asked, every stream summary made again from its event first"
        } else if upgraded {
            reason = "the log was upgraded to \(EventLog.formatTag), which keeps each city's incidents in an index of their dates and a list of those it does not date: rebuilding the projections, which makes them"
        } else if projected.0 == .max {
            reason = "the projections are incomplete (a rebuild did not finish): rebuilding them"
        } else if projected.1 != EventLog.projectionVersion {
            reason = "the projections are of version \(projected.1), this incidentd writes version \(EventLog.projectionVersion): rebuilding them"
        } else if projected.0 != head {
            reason = "the projections stop at position \(projected.0) of \(head): rebuilding them"
        } else if builtWith == nil {
            reason = "the log does not record which gazetteer its projections were built with (an older incidentd built them): rebuilding them"
        } else if builtWith != gazetteerDigest {
            reason = "the gazetteer changed since the projections were built: rebuilding them"
        } else {
            return
        }
        // A new log is given its (empty) projections, their mark and the gazetteer's digest without a word.
        let told = head > 0 || options.rebuildAtOpen
        if head > 0 { try refuseDamagedPages(before: "the rebuild of its projections") }
        if told { options.onRebuildAtOpen?(reason) }
        if options.rebuildAtOpen {
            let deleted = try deleteEntriesPastHead(head)
            if deleted > 0 {
                options.onProgress?("deleted \(deleted) index entries (incident-streams, event-ids) of events past the head, position \(head), no longer in the log")
            }
            try rederiveStreamSummaries()
        }
        let folded = try rebuildProjections()
        if told { openingRebuild.withLock { $0 = folded } }
    }

    /// Throws ``WorkAtOpenStopped`` when ``LogOptions/shouldStop`` asks to stop: called between two steps of
    /// `work`, where nothing of a transaction is under way.
    func stopIfAsked(during work: String) throws {
        if options.shouldStop?() == true { throw WorkAtOpenStopped(work: work) }
    }

    /// Every page checked before work at open that reads every event or stream through the map (an upgrade, a
    /// rebuild), where a damaged one is a wrong result or a fault.
    /// Before the upgrade of a log of an older format, which writes into its data file: every page, and the hash
    /// chain. A log whose chain breaks was changed behind incidentd's back, and the free pages an upgrade would write
    /// over may still hold what was there before; it is left as it is, for `verify --data-dir` to report and
    /// `--recover-from` to copy what the chain proves. Read once, at the upgrade: no later start reads the chain.
    private func refuseDamageBeforeUpgrade(from format: String) throws {
        options.onProgress?("checking every page and the hash chain of the log (\(format)) before its upgrade to \(EventLog.formatTag)")
        let report = try EventLog.verifyPagesAndChain(
            environment, events: db.events, meta: db.meta, stretch: 1 << 16, expectedHeads: [], pacing: progressPacing()
        ) { [self] in try stopIfAsked(during: "before the upgrade of its format, checking its hash chain") }
        if let damage = report.pageDamage { throw Self.pageDamage(damage, foundBefore: "the upgrade of its format") }
        if let position = report.firstBadPosition {
            throw LogError(
                .corrupt,
                "the hash chain of the log in \(options.directory) (format \(format)) breaks at position \(position): \(report.problem ?? "it does not match"). "
                    + "incidentd does not upgrade it to \(EventLog.formatTag), which would write into data.mdb: keep data.mdb as it is (the events past "
                    + "the break are evidence too, and so may be the free pages an upgrade would write over). Check it with incidentctl verify "
                    + "--data-dir \(options.directory), and make a new log of the events the chain proves with incidentd --recover-from "
                    + "\(options.directory) --data-dir NEW --fill-from BACKUP --expect-head HASH (see README.md); or: \(EventLog.restoreAdvice)")
        }
    }

    private func refuseDamagedPages(before work: String) throws {
        options.onProgress?("checking every page of the log before \(work)")
        let pages = try EventLog.checkPages(environment, pacing: progressPacing())
        if let damage = pages.damage { throw Self.pageDamage(damage, foundBefore: work) }
    }

    /// How a check at open that reads the whole log tells ``LogOptions/onProgress`` how far it got; nil when
    /// nothing listens.
    private func progressPacing() -> ProgressPacing? {
        options.onProgress.map { ProgressPacing(interval: options.progressInterval, report: $0) }
    }

    /// The refusal to open a log whose page `damage` was found before `work`, which would have read it through LMDB.
    private static func pageDamage(_ damage: PageDamage, foundBefore work: String) -> LogError {
        LogError(
            .damagedPage,
            "\(damage), found before \(work), which would read it through LMDB; the log cannot be opened. \(EventLog.damageAdvice(database: damage.database?.name))")
    }

    /// Makes the data directory `path` (mode 0700) and the directories above it that are missing (0755 less the
    /// umask, as `mkdir -p`); true when it made `path`, false when it was there.
    static func makeDataDirectory(_ path: String) throws -> Bool {
        // 0, or the errno of the mkdir that failed.
        func make(_ path: String, mode: mode_t) -> Int32 {
            if mkdir(path, mode) == 0 { return 0 }
            let parent = EventLog.parent(of: path)
            guard errno == ENOENT, parent != path else { return errno }
            let made = make(parent, mode: 0o755)
            guard made == 0 || made == EEXIST else { return made }
            return mkdir(path, mode) == 0 ? 0 : errno
        }
        let code = make(trimmingSlashes(path), mode: 0o700)
        if code == EEXIST {
            // mkdir finds a symbolic link there and does not follow it: one that leads nowhere (to a directory
            // not made yet, or removed) is no directory, and the lock file could not be made in it.
            var info = stat()
            var linkInfo = stat()
            if stat(path, &info) != 0, lstat(trimmingSlashes(path), &linkInfo) == 0, (linkInfo.st_mode & S_IFMT) == S_IFLNK {
                let missing = errno
                var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let length = readlink(trimmingSlashes(path), &target, target.count - 1)
                let leadsTo = length >= 0
                    ? " to \(String(decoding: target.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self))" : ""
                throw LogError(
                    .uncreatableDirectory,
                    "cannot create data directory \(path): it is a symbolic link\(leadsTo), which leads to no directory (\(String(cString: strerror(missing)))); make the directory it points to, or give the data directory itself")
            }
        }
        guard code == 0 || code == EEXIST else {
            // What may pass (a full disk, a failing one, memory short) is an I/O error; anything else stays.
            let passing = [ENOSPC, EDQUOT, EIO, ENOMEM].contains(code)
            throw LogError(
                passing ? .io : .uncreatableDirectory, "cannot create data directory \(path): \(String(cString: strerror(code)))")
        }
        return code == 0
    }

    /// A reader cannot upgrade a log; it names the format it found and what to do instead of failing later on a
    /// database that format does not have.
    private static func refuseOtherFormat(_ environment: Environment, meta: Database, directory: String) throws {
        guard let found = try storedFormat(environment, meta: meta), found != formatTag else { return }
        if olderFormatTags.contains(found) { throw olderFormat(found, directory: directory) }
        throw unknownFormat(found, directory: directory)
    }

    /// The format tags of the older logs a daemon upgrades (``checkFormat()``), of which a reader checks only what
    /// no format changed (``OlderFormatLog``).
    static let olderFormatTags: Set<String> = [format1Tag, format2Tag, format3Tag, format4Tag, format5Tag]

    /// The format the log records under `meta/format`; nil in a log no writer has tagged yet.
    static func storedFormat(_ environment: Environment, meta: Database) throws -> String? {
        try environment.read { txn in
            try txn.get(meta, key: Keys.format).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    /// A reader's refusal of a log of an older format, `found`: what reads it, and how to make a copy of the current
    /// format that leaves it as it is (a backup, a log whose chain may be broken), since a daemon started on it
    /// upgrades it in place.
    static func olderFormat(_ found: String, directory: String) -> LogError {
        LogError(
            .olderFormat,
            "\(directory) holds log format \(found), of which this version checks only the pages, the hash chain and the "
                + "head (incidentctl verify --data-dir \(directory): do that first). To read it, make a copy of the current "
                + "format in a new directory with incidentd --recover-from \(directory) --data-dir NEW_DIR, which leaves "
                + "\(directory) as it is; start incidentd on \(directory) itself, which upgrades it to \(formatTag) in "
                + "place, only if it is the live log")
    }

    /// A log of a format this version neither reads nor upgrades.
    static func unknownFormat(_ found: String, directory: String) -> LogError {
        LogError(.notALog, "\(directory) holds log format \(found), this version reads \(formatTag)")
    }

    /// The position the projections are current through and their version (`.max` and 0 when a rebuild of them did
    /// not finish, or there is no mark).
    func projectionMark(_ txn: borrowing ReadTransaction) throws -> (UInt64, UInt64) {
        guard let raw = try txn.get(db.meta, key: Keys.projections), raw.count == 16,
            let through = Keys.readPosition(raw), let version = Keys.readPosition(UnsafeRawBufferPointer(rebasing: raw[8...]))
        else { return (UInt64.max, 0) }
        return (through, version)
    }

    static func projectionMarkValue(_ position: UInt64) -> [UInt8] {
        Keys.position(position) + Keys.position(projectionVersion)
    }
}

/// The head of the chain as stored under `meta/head`: position, hash and the last recordedAt.
struct Head: Sendable {
    var position: UInt64
    var hash: [UInt8]
    var recordedAt: Timestamp?

    static let empty = Head(position: 0, hash: ChainHash.zero, recordedAt: nil)

    static func read(_ txn: borrowing ReadTransaction, _ db: Databases) throws -> Head {
        try read(txn, meta: db.meta)
    }

    static func read(_ txn: borrowing ReadTransaction, meta: Database) throws -> Head {
        guard let raw = try txn.get(meta, key: Keys.head) else { return .empty }
        return try decode(raw)
    }

    static func read(_ txn: borrowing WriteTransaction, _ db: Databases) throws -> Head {
        guard let raw = try txn.get(db.meta, key: Keys.head) else { return .empty }
        return try decode(raw)
    }

    static func decode(_ raw: UnsafeRawBufferPointer) throws -> Head {
        guard raw.count == 48, let position = Keys.readPosition(raw),
            let micros = Keys.readPosition(UnsafeRawBufferPointer(rebasing: raw[40..<48]))
        else { throw LogError(.corrupt, "the stored head of the chain is damaged") }
        return Head(
            position: position, hash: Array(raw[8..<40]), recordedAt: Timestamp(microseconds: Int64(bitPattern: micros)))
    }

    var encoded: [UInt8] {
        Keys.position(position) + hash + Keys.position(UInt64(bitPattern: recordedAt?.microseconds ?? 0))
    }
}
