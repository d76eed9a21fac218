// The few libc calls the module needs besides LMDB: the locks that make
// `mdb_env_set_mapsize` safe, a thread-local word, and a file-existence test.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#else
#error("Unsupported platform")
#endif

/// Whether `path` names an existing file (`access(path, F_OK)`).
internal func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}

/// The locks of one `Environment`.
///
/// * `rwlock` — held **shared** by every transaction (and every call that
///   touches the map: info, copy, sync) for its whole lifetime, and
///   **exclusive** while `mdb_env_set_mapsize` runs, which LMDB requires to be
///   called only when no transaction is active in the process.
///   On glibc it prefers writers, so a resize is not starved by a steady
///   stream of readers; since a thread never takes it shared twice (see
///   `threadState`), writer preference cannot deadlock a nested reader.
/// * `writerMutex` — serializes `write` calls (and `mdb_dbi_open`, which must
///   not run in concurrent transactions) before they take the shared lock, so
///   at most one thread at a time holds the rwlock while waiting on LMDB's
///   own writer lock, and at most one thread at a time grows the map.
/// * `threadKey` — a per-thread word: bit 0 = this thread is inside `write`,
///   the other bits count how deep this thread is inside gated sections. It lets
///   nested transactions on one thread reuse the outer shared hold instead
///   of re-locking, and turns would-be self-deadlocks into errors.
internal final class TransactionGate {
    private let rwlock: UnsafeMutablePointer<pthread_rwlock_t>
    private let writerMutex: UnsafeMutablePointer<pthread_mutex_t>
    private var threadKey: pthread_key_t

    init() throws(LMDBError) {
        rwlock = .allocate(capacity: 1)
        writerMutex = .allocate(capacity: 1)
        threadKey = pthread_key_t()

        var attributes = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attributes)
        #if canImport(Glibc)
        pthread_rwlockattr_setkind_np(&attributes, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        #endif
        let rc1 = pthread_rwlock_init(rwlock, &attributes)
        pthread_rwlockattr_destroy(&attributes)
        let rc2 = pthread_mutex_init(writerMutex, nil)
        let rc3 = pthread_key_create(&threadKey, nil)
        if rc1 != 0 || rc2 != 0 || rc3 != 0 {
            if rc1 == 0 { pthread_rwlock_destroy(rwlock) }
            if rc2 == 0 { pthread_mutex_destroy(writerMutex) }
            if rc3 == 0 { pthread_key_delete(threadKey) }
            rwlock.deallocate()
            writerMutex.deallocate()
            if rc1 != 0 { throw LMDBError(code: rc1, function: "pthread_rwlock_init") }
            if rc2 != 0 { throw LMDBError(code: rc2, function: "pthread_mutex_init") }
            throw LMDBError(code: rc3, function: "pthread_key_create")
        }
    }

    deinit {
        pthread_rwlock_destroy(rwlock)
        pthread_mutex_destroy(writerMutex)
        pthread_key_delete(threadKey)
        rwlock.deallocate()
        writerMutex.deallocate()
    }

    // MARK: Per-thread state

    private static let writingBit = 1
    private static let depthUnit = 2

    @inline(__always)
    private var threadState: Int {
        get { Int(bitPattern: pthread_getspecific(threadKey)) }
        set { pthread_setspecific(threadKey, UnsafeRawPointer(bitPattern: newValue)) }
    }

    /// Whether the calling thread is already inside a gated section
    /// (a transaction body, or info/copy/sync) of this environment.
    var threadHoldsShared: Bool { threadState >= Self.depthUnit }

    /// Whether the calling thread is inside `write` on this environment.
    var threadIsWriting: Bool { threadState & Self.writingBit != 0 }

    // MARK: Shared (transaction) side

    /// Enters a gated section; takes the shared lock unless this thread already holds it.
    @inline(__always)
    func enterShared() {
        let state = threadState
        if state < Self.depthUnit {
            pthread_rwlock_rdlock(rwlock)
        }
        threadState = state + Self.depthUnit
    }

    /// Leaves a gated section entered with `enterShared`.
    @inline(__always)
    func leaveShared() {
        let state = threadState - Self.depthUnit
        threadState = state
        if state < Self.depthUnit {
            pthread_rwlock_unlock(rwlock)
        }
    }

    /// Runs `body` inside a gated section.
    @inline(__always)
    func withShared<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        enterShared()
        defer { leaveShared() }
        return try body()
    }

    // MARK: Exclusive (resize) side

    /// Runs `body` while no transaction of this process is active.
    /// The caller must not hold the shared lock (check `threadHoldsShared`).
    func withExclusive<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_rwlock_wrlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }

    // MARK: Writers

    /// Runs `body` as this process's only writer, with the thread marked as writing.
    /// The caller must check `threadIsWriting` first (the mutex is not recursive).
    func withWriterLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(writerMutex)
        threadState |= Self.writingBit
        defer {
            threadState &= ~Self.writingBit
            pthread_mutex_unlock(writerMutex)
        }
        return try body()
    }
}
