// LMDB's lock file, `lock.mdb`, given its disk space before `mdb_env_open` maps it.
//
// `mdb_env_setup_locks` makes the file with `ftruncate`, which allocates no blocks, and then writes its header and
// its reader slots through a shared map of it: a store to a page whose block the file system cannot allocate (a full
// disk, a quota reached) is a SIGBUS, not an error, and the process dies inside LMDB, at start (the header) or later
// (the first read transaction to take a slot on a page never written before). So every block is allocated first,
// with `fallocate`, where a full disk is `ENOSPC`.
//
// LMDB derives the number of reader slots from the size of an existing lock file, and makes the file longer (to
// the size for `maxreaders`) only when no other process has it open. So a lock file is made exactly as long as
// LMDB would make it, which keeps the slots `maxReaders` asks for; one that exists keeps its size (other processes
// may have mapped it and counted their slots from it), unless it is shorter and no process has it open, when it is
// made as long as LMDB would make it then.
//
// `data.mdb` needs nothing of the kind: LMDB maps it read-only (this module never sets `MDB_WRITEMAP`) and writes it
// with `pwrite`, which reports a full disk as `ENOSPC`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

internal enum LockFile {
    /// The size `mdb_env_setup_locks` gives a lock file for `maxReaders` reader slots, and from which it counts the
    /// slots of an existing one: `(maxReaders - 1) * sizeof(MDB_reader) + sizeof(MDB_txninfo)`, laid out as liblmdb
    /// 0.9 lays them out with POSIX mutexes (its build on Linux): a reader slot (transaction id, process and thread)
    /// padded to a cache line of 64 bytes; the header of the table, whose body (two 32-bit words, the readers' mutex,
    /// the last transaction id and the count of slots used) and writers' mutex are each padded to a cache line,
    /// followed by the first slot. On x86-64 glibc, `64 * maxReaders + 128` bytes (32,768 for 510 readers).
    static func size(maxReaders: UInt32) -> Int {
        let cacheLine = 64
        func padded(_ bytes: Int) -> Int { (bytes + cacheLine - 1) / cacheLine * cacheLine }
        func aligned(_ offset: Int, _ alignment: Int) -> Int { (offset + alignment - 1) / alignment * alignment }
        // txnid_t is a size_t in liblmdb 0.9.
        let transactionID = MemoryLayout<Int>.size
        let mutex = MemoryLayout<pthread_mutex_t>.size
        let mutexAlignment = MemoryLayout<pthread_mutex_t>.alignment
        let slotBody = aligned(transactionID + MemoryLayout<pid_t>.size, MemoryLayout<pthread_t>.alignment)
            + MemoryLayout<pthread_t>.size
        let slot = padded(slotBody)
        var body = aligned(2 * MemoryLayout<UInt32>.size, mutexAlignment) + mutex
        body = aligned(body, transactionID) + transactionID + MemoryLayout<UInt32>.size
        body = aligned(body, max(mutexAlignment, transactionID))
        let header = padded(body) + padded(mutex) + slot
        return (Int(max(maxReaders, 1)) - 1) * slot + header
    }

    /// Makes `lock.mdb` in `directory` (with permissions `mode`, less the umask, as LMDB would) if it is not there,
    /// and allocates every block of it: of the size LMDB gives it for `maxReaders` slots (``size(maxReaders:)``) when
    /// it is new, empty, or shorter and no process has it open; of its own size otherwise.
    ///
    /// A lock file that cannot be opened for want of space, or whose blocks cannot be allocated, is thrown; one that
    /// cannot be opened otherwise (permission denied, a read-only file system) is left to `mdb_env_open`, which
    /// opens it the same way and reports it as it does (and does without it when the environment is read-only and
    /// the file system too). Where the file system cannot allocate ahead (`EOPNOTSUPP`), it is left as LMDB makes it.
    ///
    /// Call it before `mdb_env_open`, in a process that has not opened the environment: closing the descriptor drops
    /// every `fcntl` lock the process holds on the file, and LMDB's are such locks.
    ///
    /// It is opened without following a symbolic link, and made only where there is no entry at all: one that is
    /// not a regular file with one name is thrown (``UnsafeEnvironmentFile``), nothing written.
    static func allocate(directory: String, maxReaders: UInt32, mode: mode_t) throws {
        let path = directory + "/lock.mdb"
        let wanted = size(maxReaders: maxReaders)
        var fd: Int32 = -1
        while fd < 0 {
            fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            if fd >= 0 || errno == EINTR { continue }
            guard errno == ENOENT else { break }
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd < 0 && errno != EINTR && errno != EEXIST { break }
        }
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP { throw UnsafeEnvironmentFile(path: path, problem: "is a symbolic link") }
            guard code == ENOSPC || code == EDQUOT else { return }
            throw LockFileNotAllocated(path: path, size: wanted, code: code, function: "open")
        }
        defer { close(fd) }
        try EnvironmentFiles.refuseUnsafe(fd, path: path, written: true)
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw LockFileNotAllocated(path: path, size: wanted, code: errno, function: "fstat")
        }
        let length = Int(status.st_size) < wanted && !isOpenElsewhere(fd) ? wanted : Int(status.st_size)
        guard length > 0 else { return }
        while true {
            let code = lmdb_fallocate(fd, offset: 0, length: length)
            switch code {
            case 0, EOPNOTSUPP, ENOSYS: return
            case EINTR: continue
            default: throw LockFileNotAllocated(path: path, size: length, code: code, function: "fallocate")
            }
        }
    }

    /// Whether a process holds a lock on the first byte of the lock file `fd`, as every process that has the
    /// environment open does (LMDB's `mdb_env_excl_lock`); true when that cannot be told.
    private static func isOpenElsewhere(_ fd: Int32) -> Bool {
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 0
        lock.l_len = 1
        guard fcntl(fd, F_GETLK, &lock) == 0 else { return true }
        return lock.l_type != Int16(F_UNLCK)
    }
}
