#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// An LMDB environment: one memory-mapped data file holding up to
/// ``EnvironmentOptions/maxDatabases`` named databases, shared by threads
/// and processes.
///
/// It wraps an `MDB_env` (`mdb_env_create` + `mdb_env_open`), always opened
/// with `MDB_NOTLS` (read transactions are tied to transaction objects, not
/// threads) and, unless read-only, with LMDB's default durable commits:
/// `mdb_txn_commit` flushes to disk, so once ``write(_:)`` returns, the data is
/// on disk. The handle is closed (`mdb_env_close`) when the object is freed.
///
/// All access goes through ``read(_:)`` and ``write(_:)``, which run a
/// closure inside one transaction.
///
/// Rules:
/// * Open an environment only once per process (an LMDB rule: a second handle
///   on the same directory in one process breaks LMDB's file locks).
/// * Open databases at startup, before concurrent use.
/// * A transaction body must not start a ``write(_:)`` or
///   ``openDatabase(_:create:integerKeys:)`` (they throw `EDEADLK`). A
///   ``read(_:)`` inside a body is allowed but cannot grow or remap the map.
/// * Nothing read from the map (buffers, cursors, transactions) may outlive the
///   closure that produced it.
///
/// ## Why `@unchecked Sendable` is sound
/// * The `MDB_env` handle is safe to use from any thread: with `MDB_NOTLS`,
///   `mdb_txn_begin`, `mdb_env_info`, `mdb_env_stat`, `mdb_env_sync`,
///   `mdb_env_get_fd`, `mdb_env_copyfd2` and `mdb_reader_check` may be called
///   concurrently; LMDB serializes write transactions itself. `extendFile`
///   writes to the file only inside a write transaction of its own, so never
///   alongside a commit's writes.
/// * The one call that is not, `mdb_env_set_mapsize` (it remaps the file),
///   runs only under the gate's exclusive lock, while every transaction and
///   every map-reading call holds the same lock shared (see `TransactionGate`).
/// * `mdb_dbi_open`, which must not run in concurrent transactions, runs
///   under the gate's writer mutex.
/// * All stored properties are immutable after `init`, but for what `mappedRanges` holds, which only its
///   `Mutex` reads and writes, and `growing`, an `Atomic`.
public final class Environment: @unchecked Sendable {
    /// The directory holding `data.mdb` and `lock.mdb`.
    public let directory: String

    /// The options the environment was opened with.
    public let options: EnvironmentOptions

    /// The `MDB_env *`.
    private let handle: OpaquePointer

    /// Locks guarding transactions against remapping, and serializing writers.
    private let gate: TransactionGate
    /// Set while a write grows the map (``isGrowingMap``).
    private let growing = Atomic<Bool>(false)
    /// Where this process maps `data.mdb`, once ``releaseMappedPages()`` has looked it up; cleared whenever the
    /// file is mapped anew.
    private let mappedRanges = Mutex<[(start: UInt, length: Int)]?>(nil)

    /// Set by write operations that fail with `MDB_MAP_FULL` during the
    /// current `write` (guarded by the gate's writer mutex), so a body that
    /// catches or wraps the error still triggers growth.
    private let mapFullSeen: UnsafeMutablePointer<Bool>

    /// Opens (creating if needed) the environment in `directory`, which must exist.
    ///
    /// The corresponding C functions are `mdb_env_create`, `mdb_env_set_maxdbs`,
    /// `mdb_env_set_maxreaders`, `mdb_env_set_mapsize` and `mdb_env_open`.
    ///
    /// An existing environment keeps the map size stored in it, raised to
    /// ``EnvironmentOptions/initialMapSize`` if smaller, and lowered to
    /// ``EnvironmentOptions/maxMapSize`` if larger, when the pages in use
    /// (``info``'s `usedBytes`) fit in it. One that already holds more than the
    /// maximum keeps its stored size, so that writes that fit in it (a delete, a
    /// rewrite) still can be made; it grows no further. Whether to write to it at
    /// all is the caller's decision.
    ///
    /// Before any transaction reads a page, `data.mdb` is checked against the last
    /// page its meta page records: LMDB reads pages through a memory map, where a
    /// page past the end of a file that was cut short kills the process with
    /// `SIGBUS` instead of returning an error.
    ///
    /// LMDB's lock file, `lock.mdb`, is made (if missing) and every block of it allocated before LMDB maps it:
    /// LMDB writes its table of readers through that map, where a block a full file system cannot hold kills the
    /// process with `SIGBUS`. Its size is the one LMDB gives it for ``EnvironmentOptions/maxReaders``, so that the
    /// reader slots are those asked for; an existing one keeps its size, from which LMDB counts the slots.
    ///
    /// `data.mdb` and `lock.mdb` must be regular files, which no symbolic link leads to, with one name each where
    /// they are written (`data.mdb` of a read-only environment may have others): LMDB opens them by path,
    /// following links, and writes them.
    ///
    /// - Throws: ``UnsafeEnvironmentFile`` if `data.mdb` or `lock.mdb` is a symbolic link, not a regular file, or
    ///   has other names (nothing opened); ``LockFileNotAllocated`` if `lock.mdb` cannot be given its disk space (`ENOSPC` on a full file
    ///   system); ``TruncatedDataFile`` if `data.mdb` is shorter than pages in use
    ///   (pages past its end that are all free, never written by LMDB, are not
    ///   missing), or too short for LMDB's two meta pages; ``LMDBError``, e.g.
    ///   `ENOENT` if the directory does not exist, `EINVAL` (from
    ///   `mdb_env_set_mapsize`) if the map sizes are not positive or
    ///   `initialMapSize > maxMapSize`.
    public init(directory: String, options: EnvironmentOptions = EnvironmentOptions()) throws {
        guard options.initialMapSize > 0, options.maxMapSize >= options.initialMapSize else {
            throw LMDBError(code: EINVAL, function: "mdb_env_set_mapsize")
        }
        self.directory = directory
        self.options = options
        self.gate = try TransactionGate()

        let env = try lmdb_env_create()
        do {
            try lmdb_env_set_maxdbs(env, options.maxDatabases)
            try lmdb_env_set_maxreaders(env, options.maxReaders)
            var flags = _MDB_NOTLS
            if options.readOnly {
                // A reader adopts the size stored by the writer.
                flags |= _MDB_RDONLY
            } else if !fileExists(directory + "/data.mdb") {
                // New environment: start at the initial size. (An existing one
                // keeps its stored size, brought within the bounds below.)
                try lmdb_env_set_mapsize(env, options.initialMapSize)
            }
            // Before anything opens them: liblmdb follows a link, and writes what it opens.
            try EnvironmentFiles.refuseUnsafe(path: directory + "/data.mdb", written: !options.readOnly)
            try EnvironmentFiles.refuseUnsafe(path: directory + "/lock.mdb", written: true)
            try DataFile.checkMetaPages(path: directory + "/data.mdb", written: !options.readOnly)
            // LMDB writes lock.mdb through a map, where a block a full disk cannot hold is a SIGBUS.
            try LockFile.allocate(directory: directory, maxReaders: options.maxReaders, mode: options.fileMode)
            try Self.openEnvironment(env, directory: directory, flags: flags, mode: options.fileMode)
            // Before any transaction reads a page: a file cut short faults on the first read past its end.
            try DataFile.check(env, path: directory + "/data.mdb")
            if !options.readOnly {
                // No transaction exists yet, so resizing is safe here. A stored size above the maximum (the
                // environment grew under a larger one) comes down to it when what it holds fits: the maximum bounds
                // what it holds, whatever size it was left at. One that holds more keeps its size: brought down to
                // what it holds, it would have no room for any write, not even a delete (LMDB copies every page it
                // changes); it grows no further (`growMap`).
                let info = try lmdb_env_info(env)
                let page = max(info.pageSize, 4096)
                let ceiling = options.maxMapSize / page * page
                if info.mapSize < options.initialMapSize {
                    try lmdb_env_set_mapsize(env, options.initialMapSize)
                } else if info.mapSize > ceiling && info.usedBytes <= ceiling {
                    try lmdb_env_set_mapsize(env, ceiling)
                }
            }
        } catch {
            lmdb_env_close(env)
            throw error
        }
        self.handle = env
        self.mapFullSeen = .allocate(capacity: 1)
        self.mapFullSeen.initialize(to: false)
    }

    /// `mdb_env_open`, naming a `data.mdb` too short for LMDB's two meta pages as such, instead of "not an LMDB
    /// file" (`MDB_INVALID`).
    private static func openEnvironment(_ env: OpaquePointer, directory: String, flags: UInt32, mode: mode_t) throws {
        let invalid: LMDBError
        do throws(LMDBError) {
            try lmdb_env_open(env, directory, flags, mode)
            return
        } catch {
            guard error.code == _MDB_INVALID else { throw error }
            invalid = error
        }
        if let short = DataFile.tooShortForMetaPages(path: directory + "/data.mdb") { throw short }
        throw invalid
    }

    deinit {
        // No transaction can be active: each runs inside a method of `self`.
        lmdb_env_close(handle)
        mapFullSeen.deallocate()
    }

    /// Whether the environment was opened with `MDB_RDONLY`.
    public var isReadOnly: Bool { options.readOnly }

    // MARK: Databases

    /// Opens a database handle, creating the database if asked.
    ///
    /// Call this at startup, before other threads use the environment; the
    /// handle then stays valid for the environment's lifetime. Runs its own
    /// transaction: a write transaction (committed) in a writable environment;
    /// in a read-only one, a read transaction (committed, so the handle becomes
    /// shared), and `create` is ignored.
    ///
    /// The corresponding C function is `mdb_dbi_open`.
    ///
    /// - Parameters:
    ///   - name: The database name, or `nil` for the unnamed (main) database.
    ///   - create: Create the database if missing (`MDB_CREATE`).
    ///   - integerKeys: Keys are native-endian `UInt32` or `UInt` (`MDB_INTEGERKEY`).
    ///     Leave `false` for big-endian `UInt64` keys: they already sort correctly.
    /// - Throws: ``LMDBError``: `MDB_NOTFOUND` if it does not exist and
    ///   `create` is false or the environment is read-only; `MDB_DBS_FULL`
    ///   past ``EnvironmentOptions/maxDatabases``.
    public func openDatabase(_ name: String?, create: Bool, integerKeys: Bool = false) throws -> Database {
        try refuseNestedWriter(function: "mdb_dbi_open")
        var flags: UInt32 = integerKeys ? _MDB_INTEGERKEY : 0
        if !options.readOnly {
            if create { flags |= _MDB_CREATE }
            return try write { txn in Database(rawValue: try lmdb_dbi_open(txn.handle, name, flags)) }
        }
        return try gate.withWriterLock { () throws -> Database in
            try withTransaction { () throws(LMDBError) -> OpaquePointer in
                try lmdb_txn_begin(handle, readOnly: true)
            } run: { txn in
                let dbi: UInt32
                do {
                    dbi = try lmdb_dbi_open(txn, name, flags)
                } catch {
                    lmdb_txn_abort(txn)
                    throw error
                }
                try lmdb_txn_commit(txn)  // frees txn on failure too
                return Database(rawValue: dbi)
            }
        }
    }

    // MARK: Transactions

    /// Runs `body` in a read-only transaction: a consistent snapshot, not
    /// blocked by writers and not blocking them.
    ///
    /// Buffers and cursors obtained from the transaction point into the
    /// memory map and are valid only inside `body`; copy out what you need to
    /// keep. If another process grew the map (`MDB_MAP_RESIZED`), the new size
    /// is adopted and the transaction begun again. Any number of threads may
    /// read at once, up to ``EnvironmentOptions/maxReaders`` across processes.
    ///
    /// The corresponding C functions are `mdb_txn_begin` (with `MDB_RDONLY`)
    /// and `mdb_txn_abort`.
    public func read<T>(_ body: (borrowing ReadTransaction) throws -> T) throws -> T {
        try withTransaction { () throws(LMDBError) -> OpaquePointer in
            try lmdb_txn_begin(handle, readOnly: true)
        } run: { txn in
            defer { lmdb_txn_abort(txn) }
            return try body(ReadTransaction(handle: txn))
        }
    }

    /// Runs `body` in a write transaction and commits it durably.
    ///
    /// * If `body` returns, the transaction is committed (`mdb_txn_commit`,
    ///   which flushes to disk): when `write` returns, the changes are durable.
    /// * If `body` throws, the transaction is aborted and the error rethrown.
    /// * If the map fills up (`MDB_MAP_FULL` from any operation in `body`, even
    ///   one whose error `body` caught or wrapped, or from the commit), the
    ///   transaction is aborted; if reader slots of dead processes were holding
    ///   freed pages, they are cleared (`mdb_reader_check`) and `body` runs
    ///   again; otherwise the map is doubled (capped at
    ///   ``EnvironmentOptions/maxMapSize``) and **`body` runs again from
    ///   scratch**. So `body` must be re-runnable: no external side effects it
    ///   cannot repeat; compute them from its return value instead. At the
    ///   ceiling, the map-full error is thrown (``LMDBError/isMapFull``).
    /// * On `MDB_MAP_RESIZED` (another process grew the map) the new size is
    ///   adopted and the transaction begun again.
    ///
    /// Writers are serialized: one `write` at a time per process (and LMDB
    /// serializes across processes). Readers are never blocked, except
    /// briefly while the map is resized.
    ///
    /// The corresponding C functions are `mdb_txn_begin`, `mdb_txn_commit`
    /// and `mdb_txn_abort`.
    ///
    /// - Throws: ``LMDBError`` or whatever `body` throws. `EDEADLK` if called
    ///   from inside a transaction body on this environment.
    public func write<T>(_ body: (borrowing WriteTransaction) throws -> T) throws -> T {
        try refuseNestedWriter(function: "mdb_txn_begin")
        return try gate.withWriterLock { () throws -> T in
            var readersChecked = false
            while true {
                mapFullSeen.pointee = false
                do {
                    return try withTransaction { () throws(LMDBError) -> OpaquePointer in
                        try lmdb_txn_begin(handle, readOnly: false)
                    } run: { txn in
                        let result: T
                        do {
                            result = try body(WriteTransaction(handle: txn, mapFullSeen: mapFullSeen))
                        } catch {
                            lmdb_txn_abort(txn)
                            throw error
                        }
                        do throws(LMDBError) {
                            try lmdb_txn_commit(txn)  // frees txn on failure too
                        } catch {
                            if error.isMapFull { mapFullSeen.pointee = true }
                            throw error
                        }
                        return result
                    }
                } catch {
                    let mapFull = mapFullSeen.pointee || (error as? LMDBError)?.isMapFull == true
                    guard mapFull else { throw error }
                    // A reader that died inside a transaction pins every page freed since its snapshot; clearing
                    // its slot makes them reusable, so try that once before growing the map.
                    if !readersChecked && !gate.threadHoldsShared {
                        readersChecked = true
                        let cleared = try gate.withShared { () throws(LMDBError) -> Int32 in try lmdb_reader_check(handle) }
                        if cleared > 0 { continue }
                    }
                    // At the ceiling the map-full error is what the caller gets, also when `body` wrapped it.
                    guard try growMap() else {
                        throw (error as? LMDBError)?.isMapFull == true ? error : LMDBError(code: LMDBError.Code.mapFull.rawValue, function: "mdb_put")
                    }
                }
            }
        }
    }

    /// Runs `body`, whose writes (``write(_:)``) need not each be durable when it returns: their commits flush their
    /// pages but write the meta page that makes each the current state without waiting for the disk
    /// (`MDB_NOMETASYNC`), which saves a synchronous write a commit. The next commit's flush takes that meta page
    /// along, and when `body` returns, everything is flushed (`mdb_env_sync`): what `body` committed is durable
    /// when this returns.
    ///
    /// A crash meanwhile may undo `body`'s last commit, but never leaves the database damaged: LMDB flushes every
    /// page a meta page points to before it writes that meta page, and reuses no page of the states of the last two
    /// commits. For work that is redone whole when it did not finish, such as derived data with a mark written
    /// last. Every write of this process meanwhile, on any thread, commits so: call it only where no other write
    /// needs to be durable as soon as it returns (while a store opens, say).
    ///
    /// The corresponding C functions are `mdb_env_set_flags`, set and cleared while no transaction of this process
    /// is open (as the map is resized), and `mdb_env_sync`.
    ///
    /// - Throws: ``LMDBError`` or whatever `body` throws. `EDEADLK` if called from inside a transaction body on
    ///   this environment.
    public func withDeferredMetaSync<T>(_ body: () throws -> T) throws -> T {
        try refuseNestedWriter(function: "mdb_env_set_flags")
        try setMetaSyncDeferred(true)
        let result: T
        do {
            result = try body()
        } catch {
            // The next commit flushes the meta pages written meanwhile before its own. (`mdb_env_set_flags` fails
            // only for a flag LMDB does not let change at any time, which this one is not.)
            try? setMetaSyncDeferred(false)
            throw error
        }
        try setMetaSyncDeferred(false)
        try sync(force: true)
        return result
    }

    /// Sets or clears `MDB_NOMETASYNC` while no transaction of this process is open.
    private func setMetaSyncDeferred(_ deferred: Bool) throws(LMDBError) {
        try gate.withExclusive { () throws(LMDBError) in try lmdb_env_set_flags(handle, _MDB_NOMETASYNC, on: deferred) }
    }

    /// Whether commits write their meta page without waiting for the disk (inside ``withDeferredMetaSync(_:)``).
    public var defersMetaSync: Bool {
        ((try? gate.withShared { () throws(LMDBError) -> UInt32 in try lmdb_env_get_flags(handle) }) ?? 0) & _MDB_NOMETASYNC != 0
    }

    /// Begins a transaction under the shared gate, retrying on `MDB_MAP_RESIZED`
    /// (adopting the size another process set) and, once, on `MDB_READERS_FULL`
    /// after clearing stale reader slots. `run` ends the transaction.
    private func withTransaction<T>(
        begin: () throws(LMDBError) -> OpaquePointer,
        run: (OpaquePointer) throws -> T
    ) throws -> T {
        // Inside another transaction on this thread, the shared lock cannot be
        // dropped, so the map cannot be remapped here.
        let nested = gate.threadHoldsShared
        var remapsLeft = 8
        var readerChecked = false
        while true {
            gate.enterShared()
            let txn: OpaquePointer
            do throws(LMDBError) {
                txn = try begin()
            } catch {
                gate.leaveShared()
                if error.isMapResized && !nested && remapsLeft > 0 {
                    remapsLeft -= 1
                    try gate.withExclusive { () throws(LMDBError) in try remap(size: 0) }
                    continue
                }
                if error.isReadersFull && !readerChecked {
                    readerChecked = true
                    if try lmdb_reader_check(handle) > 0 { continue }
                }
                throw error
            }
            defer { gate.leaveShared() }
            return try run(txn)
        }
    }

    /// Whether a write is growing the map: waiting for every other transaction of this process to end (a long
    /// read can take a while), then remapping. A write that takes long for that reason is not stuck.
    public var isGrowingMap: Bool { growing.load(ordering: .relaxed) }

    /// Grows the map after `MDB_MAP_FULL`. Returns false if it is at
    /// `maxMapSize` or this thread is inside another transaction (and so
    /// cannot wait for the exclusive lock). Caller holds the writer lock.
    private func growMap() throws(LMDBError) -> Bool {
        guard !gate.threadHoldsShared else { return false }
        growing.store(true, ordering: .relaxed)
        defer { growing.store(false, ordering: .relaxed) }
        return try gate.withExclusive { () throws(LMDBError) -> Bool in
            let info = try lmdb_env_info(handle)
            let page = max(info.pageSize, 4096)
            let ceiling = options.maxMapSize / page * page
            let current = info.mapSize
            guard current < ceiling else { return false }
            var target = current > ceiling / 2 ? ceiling : current * 2
            target = min((target + page - 1) / page * page, ceiling)
            guard target > current else { return false }
            try remap(size: target)
            return true
        }
    }

    /// `mdb_env_set_mapsize` on the open environment, which maps the file anew, perhaps elsewhere. Runs under
    /// the gate's exclusive lock.
    private func remap(size: Int) throws(LMDBError) {
        mappedRanges.withLock { $0 = nil }
        try lmdb_env_set_mapsize(handle, size)
    }

    private func refuseNestedWriter(function: String) throws(LMDBError) {
        if gate.threadHoldsShared || gate.threadIsWriting {
            throw LMDBError(code: EDEADLK, function: function)
        }
    }

    // MARK: Maintenance

    /// Clears reader slots left by dead processes and returns how many were cleared.
    ///
    /// The corresponding C function is `mdb_reader_check`.
    @discardableResult
    public func readerCheck() throws -> Int32 {
        try gate.withShared { () throws(LMDBError) -> Int32 in try lmdb_reader_check(handle) }
    }

    /// The read transactions open now on the environment, in every process (this one's and others', a slot of a
    /// process that died inside one included until ``readerCheck()`` clears it). Unlike
    /// ``EnvironmentInfo/readersUsed``, the most slots ever in use at once, it comes back down as they end.
    ///
    /// The corresponding C function is `mdb_reader_list`.
    public func activeReaders() throws -> Int {
        try gate.withShared { () throws(LMDBError) -> Int in try lmdb_active_readers(handle) }
    }

    /// The current size of this process's memory map, in bytes.
    ///
    /// The corresponding C function is `mdb_env_info` (`me_mapsize`).
    public var mapSize: Int { info.mapSize }

    /// Size and usage figures for the environment.
    ///
    /// The corresponding C functions are `mdb_env_info` and `mdb_env_stat`
    /// (which cannot fail on an open environment; zeros are returned if they do).
    public var info: EnvironmentInfo {
        gate.withShared {
            (try? lmdb_env_info(handle))
                ?? EnvironmentInfo(mapSize: 0, lastPageNumber: 0, lastTransactionID: 0,
                                   maxReaders: 0, readersUsed: 0, pageSize: 0)
        }
    }

    /// Lets go of this process's mapping of every page of the map it has read (`madvise(MADV_DONTNEED)` over
    /// the mapping of `data.mdb`, looked up in `/proc/self/maps` the first time and again after each remap),
    /// and returns the bytes of address space covered; 0 elsewhere than on Linux.
    ///
    /// Every page a transaction reads stays mapped until then, and counts as this process's resident memory
    /// (as private memory, while no other process maps it). The map is a shared file mapping, so nothing is
    /// lost: the pages stay in the page cache, and the next read of one maps it again with a minor fault. Safe
    /// alongside running transactions, and inside one: the map cannot move meanwhile, since it is remapped only
    /// under the exclusive side of the gate.
    @discardableResult
    public func releaseMappedPages() -> Int {
        #if os(Linux)
        gate.withShared { () -> Int in
            let ranges = mappedRanges.withLock { cached in
                if cached == nil { cached = ownMapping() }
                return cached ?? []
            }
            var released = 0
            for range in ranges {
                guard let address = UnsafeMutableRawPointer(bitPattern: range.start),
                    madvise(address, range.length, MADV_DONTNEED) == 0
                else { continue }
                released += range.length
            }
            return released
        }
        #else
        return 0
        #endif
    }

    /// The address range of this environment's map, as `/proc/self/maps` lists it: the mapping of `data.mdb`
    /// that holds a record of the main database (another environment of this process on the same file maps it
    /// elsewhere, and may remap it without this one knowing). `nil` while the main database is empty.
    private func ownMapping() -> [(start: UInt, length: Int)]? {
        let mainDatabase = Database(rawValue: 1)  // MAIN_DBI
        guard let probe = try? read({ txn in try txn.cursor(mainDatabase).first().map { UInt(bitPattern: $0.key.baseAddress) } })
        else { return nil }
        let own = Self.mappings(of: directory + "/data.mdb").filter { probe >= $0.start && probe - $0.start < UInt($0.length) }
        return own.isEmpty ? nil : own
    }

    /// The address ranges at which this process maps `path`, as `/proc/self/maps` lists them.
    private static func mappings(of path: String) -> [(start: UInt, length: Int)] {
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard realpath(path, &resolved) != nil, let file = fopen("/proc/self/maps", "r") else { return [] }
        defer { fclose(file) }
        let suffix = " " + String(decoding: resolved.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var ranges: [(start: UInt, length: Int)] = []
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            var text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasSuffix("\n") { text.removeLast() }
            guard text.hasSuffix(suffix) else { continue }
            let bounds = text.prefix(while: { $0 != " " }).split(separator: "-")
            guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16), end > start
            else { continue }
            ranges.append((start, Int(end - start)))
        }
        return ranges
    }

    /// Writes zeros past the end of `data.mdb` until at least `headroom` bytes follow the last page LMDB uses,
    /// at most `step` bytes (rounded up to whole pages) per call, and syncs them. Returns the bytes written: 0
    /// when the headroom is already there, or the environment is read-only.
    ///
    /// On a file system that allocates blocks as they are written (ext4), a commit whose pages go past the end
    /// of the file makes `fdatasync` write the file's new size and blocks as well as the pages; into space
    /// already written, it writes only the pages. Space written ahead, at a moment when no commit waits, takes
    /// that cost off the commits. LMDB never reads past its last page and sizes its map from its own meta page,
    /// not from the file's length, so the zeros are only disk space, and a copy (`copy(to:compact:)`) leaves
    /// them out.
    ///
    /// Runs inside a write transaction that it aborts, so no commit of this or any other process writes to the
    /// file meanwhile (LMDB writes pages only when a write transaction commits).
    ///
    /// The corresponding C functions are `mdb_env_get_fd` and `mdb_env_info`, with `fstat`, `pwrite` and
    /// `fdatasync` on the file.
    ///
    /// - Throws: ``LMDBError`` with the `errno` of the failed call (`ENOSPC` when the disk is full: the zeros
    ///   written before it stay, and harm nothing); `EDEADLK` inside a transaction body.
    @discardableResult
    public func extendFile(headroom: Int, step: Int) throws -> Int {
        guard !options.readOnly, headroom > 0, step > 0 else { return 0 }
        try refuseNestedWriter(function: "mdb_txn_begin")
        return try gate.withWriterLock { () throws -> Int in
            try withTransaction { () throws(LMDBError) -> OpaquePointer in
                try lmdb_txn_begin(handle, readOnly: false)
            } run: { txn in
                defer { lmdb_txn_abort(txn) }
                let fd = try lmdb_env_get_fd(handle)
                let info = try lmdb_env_info(handle)
                let size = try FileFormat.size(of: fd)
                guard size - info.usedBytes < headroom else { return 0 }
                let page = max(info.pageSize, 4096)
                let length = (step + page - 1) / page * page
                let written = try Self.writeZeros(fd: fd, at: size, length: length)
                guard fdatasync(fd) == 0 else { throw LMDBError(code: errno, function: "fdatasync") }
                return written
            }
        }
    }

    /// `length` zero bytes written at `offset` of the file `fd`; returns `length`.
    private static func writeZeros(fd: Int32, at offset: Int, length: Int) throws(LMDBError) -> Int {
        let chunk = min(length, 256 << 10)
        guard let zeros = calloc(chunk, 1) else { throw LMDBError(code: ENOMEM, function: "calloc") }
        defer { free(zeros) }
        var written = 0
        while written < length {
            let n = pwrite(fd, zeros, min(chunk, length - written), off_t(offset + written))
            if n < 0 {
                if errno == EINTR { continue }
                throw LMDBError(code: errno, function: "pwrite")
            }
            written += n
        }
        return written
    }

    /// Checks the structure of every page of the latest snapshot, reading the file with `pread` and never
    /// through the map, so that a damaged page is reported instead of crashing the process or misleading a read.
    ///
    /// LMDB keeps no checksums, and reads and follows whatever a page says. This walks the free list, the main
    /// database and every named database from their roots, inside a read transaction (whose pages no writer
    /// reuses meanwhile; writers go on), and checks each page: that it bears its own number; that it is a branch
    /// page above the bottom level of its tree and a leaf at it; that its free space, its nodes and their keys
    /// and data lie within it, its nodes filling their space without gap or overlap; that its keys are in order,
    /// and within the bounds its parent gives them, by the byte order of LMDB's default comparator (or the
    /// integer or reversed order the database's flags ask for); that every page it points to is a page of the
    /// snapshot within the file, and none is reached twice; that each overflow run starts with an overflow page
    /// with pages enough for its data. The counts in each database's record (`MDB_db`: depth, branch, leaf and
    /// overflow pages, entries) must be what its tree holds; the records of the free list must name free pages
    /// only, once each; and every page up to the last must be either in use or free.
    ///
    /// Damage that keeps to this format is not seen: a value's bytes changed in place (the caller's own checks,
    /// such as a hash chain, find those), or a page replaced by an older version of itself. A database whose keys
    /// a custom comparator orders (`mdb_set_compare`, which this module never calls) would be reported as out of
    /// order; one of sorted duplicates (`MDB_DUPSORT`, which this module never makes) is not read and is named in
    /// ``PageCheckReport/skippedDatabases``.
    ///
    /// The corresponding C functions are `mdb_txn_begin`, `mdb_txn_id`, `mdb_env_get_fd` and `mdb_env_info`,
    /// with `pread` and `fstat` on the file.
    ///
    /// - Returns: The report, whose ``PageCheckReport/damage`` names the first problem found.
    /// - Throws: ``LMDBError`` if a transaction cannot begin or the file cannot be examined.
    public func checkPages() throws -> PageCheckReport {
        try checkPages(only: nil)
    }

    /// What a long ``checkPages(progress:)`` is told as it goes: the pages of the snapshot reached so far (the meta
    /// pages included), and the pages up to its last, which bound them.
    public typealias PageCheckProgress = (_ pagesReached: Int, _ pagesInSnapshot: Int) -> Void

    /// ``checkPages()``, calling `progress` after each run of pages read (at most 256 KiB): a check of a large
    /// file reads it all, and its caller can say how far it got, or rate-limit that, from here.
    public func checkPages(progress: PageCheckProgress) throws -> PageCheckReport {
        // The walk that keeps it ends before this returns.
        try withoutActuallyEscaping(progress) { try checkPages(only: nil, progress: $0) }
    }

    /// ``checkPages()`` of the main database and the named databases `databases` only (and of the free list, which
    /// a write transaction reads, if `includingFreeList`): the pages that opening those databases and reading them
    /// reaches, not whether every page is in use or free. For a check before a program opens its databases, which
    /// reads the main database's pages through the map.
    public func checkPages(of databases: Set<String>, includingFreeList: Bool) throws -> PageCheckReport {
        try checkPages(only: PageWalk.Selection(databases: databases, freeList: includingFreeList))
    }

    private func checkPages(only databases: PageWalk.Selection?, progress: PageCheckProgress? = nil) throws -> PageCheckReport {
        let pageSize = try gate.withShared { () throws(LMDBError) -> Int in try lmdb_env_info(handle).pageSize }
        let fd = try lmdb_env_get_fd(handle)
        var transactionID = 0
        // A writer overwrites the meta page of a snapshot two commits later; then begin again on a newer one.
        for _ in 0..<8 {
            let report = try read { txn throws(LMDBError) -> PageCheckReport? in
                transactionID = txn.id
                return try PageWalk.check(
                    fd: fd, pageSize: pageSize, transactionID: UInt64(bitPattern: Int64(txn.id)), only: databases, progress: progress)
            }
            if let report { return report }
        }
        return PageCheckReport(
            transactionID: transactionID, pageSize: pageSize, lastPageNumber: 0, pagesInUse: 0, freePages: 0,
            databases: [], skippedDatabases: [],
            damage: PageDamage(
                database: nil, page: 0,
                problem: "neither meta page (0 and 1) reads as the meta page of the snapshot LMDB reads, transaction \(transactionID)"))
    }

    /// The largest key size LMDB accepts, in bytes (511 by default).
    ///
    /// The corresponding C function is `mdb_env_get_maxkeysize`.
    public var maxKeySize: Int { lmdb_env_get_maxkeysize(handle) }

    /// Writes a consistent copy of the environment into `directory`, which must
    /// exist and hold no `data.mdb` (for backups), and syncs it: the file, the
    /// directory, and the directory's entry in its parent (a directory just made
    /// for the copy) are on the disk when this returns. Runs a read transaction
    /// for the whole copy: writers continue, but the map cannot grow until it
    /// finishes.
    ///
    /// `directory` is opened once, and the copy made in what it named then:
    /// see ``copy(intoDirectory:compact:)``, which this calls.
    ///
    /// - Parameter compact: Omit free pages and renumber pages (`MDB_CP_COMPACT`):
    ///   smaller output, more CPU.
    /// - Throws: ``LMDBError``; `EDEADLK` inside a ``write(_:)`` body (the copy takes
    ///   LMDB's writer lock); `EEXIST` when `directory` holds a `data.mdb`. A copy that fails leaves what it wrote, as ``incompleteCopyName``.
    public func copy(to directory: String, compact: Bool) throws {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw LMDBError(code: errno, function: "open") }
        defer { close(descriptor) }
        try copy(intoDirectory: descriptor, compact: compact)
        try Self.syncPath(Self.parent(of: directory))
    }

    /// Writes a consistent copy of the environment into the directory open as
    /// `directory` (a descriptor opened with `O_DIRECTORY`), which must hold no
    /// `data.mdb`, and syncs the file and the directory; the directory's entry in
    /// its parent is the caller's to sync (``syncDirectory(_:)``). Every name is
    /// made relative to the descriptor and never follows a symbolic link, so the
    /// copy goes where the descriptor leads, whatever the path that led there
    /// leads to meanwhile. Runs a read transaction for the whole copy: writers
    /// continue, but the map cannot grow until it finishes.
    ///
    /// The copy's `data.mdb` is created with the permissions of the environment's
    /// own (0600 unless ``EnvironmentOptions/fileMode`` or a `chmod` said
    /// otherwise), whatever the umask: it holds everything the environment holds.
    /// (`mdb_env_copy2` would create it 0666 less the umask.)
    ///
    /// It is written as ``incompleteCopyName`` and linked as `data.mdb` once whole
    /// and synced: a copy cut short, by a crash even, leaves no `data.mdb` that
    /// could be taken for a whole one.
    ///
    /// The corresponding C functions are `openat` (with `O_EXCL`, `O_NOFOLLOW`, and
    /// `O_DIRECT` where the file system takes it, as `mdb_env_copy2` does), `fchmod`,
    /// `mdb_env_copyfd2`, `fsync`, then `linkat` (or `renameat`) and `unlinkat`.
    ///
    /// - Parameter compact: Omit free pages and renumber pages (`MDB_CP_COMPACT`):
    ///   smaller output, more CPU.
    /// - Throws: ``LMDBError``; `EDEADLK` inside a ``write(_:)`` body (the copy takes
    ///   LMDB's writer lock); `EEXIST` when the directory holds a `data.mdb`. A copy that fails leaves what it wrote, as ``incompleteCopyName``.
    public func copy(intoDirectory directory: Int32, compact: Bool) throws {
        var existing = stat()
        if fstatat(directory, "data.mdb", &existing, AT_SYMLINK_NOFOLLOW) == 0 { throw LMDBError(code: EEXIST, function: "open") }
        if gate.threadIsWriting { throw LMDBError(code: EDEADLK, function: "mdb_env_copyfd2") }
        try gate.withShared { () throws(LMDBError) in
            var live = stat()
            guard fstat(try lmdb_env_get_fd(handle), &live) == 0 else { throw LMDBError(code: errno, function: "fstat") }
            let mode = live.st_mode & 0o777
            let fd = openat(directory, Self.incompleteCopyName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            guard fd >= 0 else { throw LMDBError(code: errno, function: "open") }
            var closed = false
            defer { if !closed { close(fd) } }
            // The umask may have taken bits off; it never adds any, so the file was never more open than this.
            guard fchmod(fd, mode) == 0 else { throw LMDBError(code: errno, function: "fchmod") }
            // As mdb_env_copy2: past the page cache where the file system allows it (LMDB aligns its buffers to
            // the OS page), so that a large copy does not push the live log's pages out of memory.
            let info = try lmdb_env_info(handle)
            if lmdb_o_direct != 0 && info.pageSize >= Int(sysconf(Int32(_SC_PAGESIZE))) {
                let flags = fcntl(fd, F_GETFL)
                if flags != -1 { _ = fcntl(fd, F_SETFL, flags | lmdb_o_direct) }
            }
            try lmdb_env_copyfd2(handle, fd, compact ? _MDB_CP_COMPACT : 0)
            guard fsync(fd) == 0 else { throw LMDBError(code: errno, function: "fsync") }
            closed = true
            guard close(fd) == 0 else { throw LMDBError(code: errno, function: "close") }
        }
        // A link, which fails rather than replace a data.mdb put there meanwhile; a rename where the file system
        // has no links.
        if linkat(directory, Self.incompleteCopyName, directory, "data.mdb", 0) == 0 {
            unlinkat(directory, Self.incompleteCopyName, 0)
        } else if errno == EPERM || errno == EOPNOTSUPP {
            guard renameat(directory, Self.incompleteCopyName, directory, "data.mdb") == 0 else {
                throw LMDBError(code: errno, function: "rename")
            }
        } else {
            throw LMDBError(code: errno, function: "link")
        }
        try Self.syncDirectory(directory)
    }

    /// `fsync` of the directory open as `directory`, once an entry was made in it, so that the entry is on the disk.
    ///
    /// The corresponding C function is `fsync`.
    public static func syncDirectory(_ directory: Int32) throws(LMDBError) {
        guard fsync(directory) == 0 else { throw LMDBError(code: errno, function: "fsync") }
    }

    /// The name ``copy(to:compact:)`` writes a copy under until it is whole.
    public static let incompleteCopyName = "data.mdb.incomplete"

    /// The directory holding `path` ("." for a bare name).
    private static func parent(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return slash == path.utf8.startIndex ? "/" : String(path[..<slash])
    }

    /// `fsync` of the file or directory at `path`: of a directory once a data file was moved or linked into it,
    /// so that its entry is on the disk too.
    ///
    /// The corresponding C functions are `open` and `fsync`.
    public static func syncPath(_ path: String) throws(LMDBError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LMDBError(code: errno, function: "open") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw LMDBError(code: errno, function: "fsync") }
    }

    /// Flushes the data buffers to disk. Commits already do this; use it only
    /// after changing sync behaviour. Fails with `EACCES` when read-only.
    ///
    /// The corresponding C function is `mdb_env_sync`.
    ///
    /// - Parameter force: Force a synchronous flush.
    public func sync(force: Bool) throws {
        try gate.withShared { () throws(LMDBError) in try lmdb_env_sync(handle, force: force) }
    }
}
