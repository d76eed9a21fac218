#if canImport(Glibc)
import Glibc
#endif
import LMDB

extension EventLog {
    /// Below this many free bytes, a commit that failed to write is taken for a full file system.
    static let nearlyFull = 1 << 20

    /// The refusal for a commit that failed because the file system holding the log is full, or `nil` when
    /// `error` says something else.
    ///
    /// LMDB reports a write that ran out of space as `ENOSPC` (or `EDQUOT`), but a write that fit only in part
    /// as `EIO`, the same code as a failing disk; so an `EIO` counts as a full file system only when the file
    /// system has (almost) nothing left. The message names the directory and what is free, so that an operator
    /// knows what to do: nothing else is wrong, and appends are stored again once there is room.
    func fileSystemFull(_ error: LMDBError) -> AppendFailure? {
        guard [ENOSPC, EDQUOT, EIO].contains(error.code) else { return nil }
        let free = Self.freeBytes(at: options.directory)
        if error.code == EIO, free.map({ $0 >= Self.nearlyFull }) ?? true { return nil }
        let left = free.map { "\($0) bytes free" } ?? "free space unknown"
        return .storageFull(
            "the file system holding \(options.directory) is full (\(left)); nothing was stored, and appends are "
                + "stored again once space is freed there")
    }

    /// The refusal of an append for want of room under the log's maximum size: at the maximum (LMDB's map is full
    /// and may not grow), or past it from the start (``pastMaximumSize``). Both say what the log holds and the
    /// maximum, and what to do.
    func sizeLimitRefusal() -> AppendFailure {
        let used = environment.info.usedBytes
        let maximum = options.maxMapSize
        if used > maximum {
            return .storageFull(
                "the log in \(options.directory) already holds \(used) bytes, more than its maximum size "
                    + "(max_map_size, \(maximum) bytes); nothing was stored: raise max_map_size above \(used) bytes and "
                    + "restart incidentd to append again (reads go on meanwhile)")
        }
        return .storageFull(
            "the log in \(options.directory) has reached its maximum size (max_map_size, \(maximum) bytes); nothing "
                + "was stored: raise max_map_size and restart incidentd to append again (reads go on meanwhile)")
    }

    /// The refusal of an append while `data.mdb` is no longer the file this process opened (moved, removed or
    /// replaced, as by a restore while the daemon ran), or `nil`. LMDB would write on into the file it holds open:
    /// not the log the next start reads, or, removed, a file that goes when the process ends. So nothing is stored
    /// until the daemon is restarted on the file that is there now, and meanwhile the one it holds can be copied.
    func dataFileReplacement() -> AppendFailure? {
        guard dataFileLockDescriptor >= 0 else { return nil }
        var held = stat()
        var named = stat()
        guard fstat(dataFileLockDescriptor, &held) == 0 else { return nil }
        let path = options.directory + "/data.mdb"
        let copy = "/proc/\(getpid())/fd/\(dataFileLockDescriptor)"
        let found = stat(path, &named) == 0
        // Only a path that names nothing now counts: another failure (a directory made unreadable, EIO) says
        // nothing of the file, and the commit itself reports what is wrong.
        let gone = !found && (errno == ENOENT || errno == ENOTDIR)
        if held.st_nlink == 0 || gone {
            return .storage(
                "\(path) was moved or removed while incidentd ran. The log is in the file incidentd still holds open: "
                    + "before stopping incidentd, put it back (cp \(copy) \(path), or move it back), then restart incidentd")
        }
        guard found, named.st_dev != held.st_dev || named.st_ino != held.st_ino else { return nil }
        return .storage(
            "\(path) was replaced while incidentd ran (a restore must wait until incidentd is stopped), and incidentd "
                + "writes into the file it opened. Restart incidentd to serve the one now there; "
                + "the events appended before are in the file it held (\(copy) until it stops), kept only if it was moved, not removed")
    }

    /// Whether the environment refuses every transaction from now on (``LMDBError/isPanic``), which a failed
    /// write of a meta page leaves behind: the commit that failed reports the write's own error, and only the
    /// next transaction says `MDB_PANIC`. Asked after a commit fails; a process in that state can neither store
    /// nor read anything until it opens the log again.
    public func storageIsBroken() -> Bool {
        do {
            try environment.read { _ in }
            return false
        } catch let error as LMDBError {
            return error.isPanic
        } catch {
            return false
        }
    }

    /// What the file system holding `path` has free for this process (root may use the blocks kept back for it).
    static func freeBytes(at path: String) -> Int? {
        var space = statvfs()
        guard statvfs(path, &space) == 0 else { return nil }
        let blocks = geteuid() == 0 ? space.f_bfree : space.f_bavail
        let (bytes, overflow) = UInt64(blocks).multipliedReportingOverflow(by: UInt64(space.f_frsize))
        return overflow ? Int.max : Int(clamping: bytes)
    }
}
