#if canImport(Glibc)
import Glibc
#endif
import LMDB

extension EventLog {
    /// Writes a consistent copy of the log into the directory at `path`, a new one this creates (mode 0750), so that no
    /// backup ever overwrites another: its `data.mdb` holds every event and projection as of one commit,
    /// compacted (no free pages, none of the space written ahead), created with the live file's mode (0600: the
    /// log is evidence and may name people), and is synced with its directory before
    /// the copy is opened read-only and its hash chain checked from position 1. The report names the head the
    /// copy ends in, which matches the live log's `status` at that position. Appends go on meanwhile, but the
    /// map cannot grow until the copy is written (``Environment/copy(to:compact:)``).
    ///
    /// A backup directory is a data directory: `incidentd --data-dir` serves it, `incidentctl replay --data-dir`
    /// reads it. A copy of a log that does not verify is kept, and the report says where its chain breaks.
    ///
    /// - Throws: ``LogError`` `.invalidDestination` when `path` is not absolute, exists, or cannot
    ///   be created, naming why; `.storageFull` when its file system fills up; `.io` for any other failure of
    ///   the copy. A backup that failed leaves nothing behind.
    public func backup(into path: String) throws -> BackupReport {
        let directory = Self.trimmingSlashes(path)
        guard directory.hasPrefix("/"), !directory.utf8.contains(0), directory.utf8.count < Int(PATH_MAX) else {
            throw LogError(.invalidDestination, "cannot back up into \(directory): give the absolute path of a new directory")
        }
        // LMDB's compacting copy reads every page of the log through the map, where a damaged one is a wrong copy or
        // a fault that kills the daemon.
        if let damage = try environment.checkPages().damage {
            throw LogError(
                .damagedPage,
                "\(damage) (of the live log's data.mdb); no backup was made, since the copy reads every page. Keep data.mdb as it is (copy it aside with incidentd stopped). \(EventLog.damageAdvice(database: damage.database?.name))")
        }
        // Measured before the copy: once a copy that did not fit is removed, the space it took is free again.
        let freeBefore = Self.freeBytes(at: Self.parent(of: directory))
        if mkdir(directory, 0o750) != 0 {
            let code = errno
            if code == ENOSPC || code == EDQUOT {
                throw LogError(
                    .storageFull,
                    "the file system holding \(directory) is full: the backup's directory could not be made there "
                        + "(\(freeBefore.map { "\($0) bytes free" } ?? "free space unknown")); no backup was made")
            }
            throw LogError(.invalidDestination, "cannot back up into \(directory): \(Self.whyNotCreated(code, directory))")
        }
        do {
            try environment.copy(to: directory, compact: true)
        } catch let error as LMDBError {
            Self.removeBackup(directory)
            if error.code == ENOSPC || error.code == EDQUOT { throw backupDidNotFit(directory, freeBefore: freeBefore) }
            throw LogError(.io, "the backup into \(directory) failed, and nothing was kept of it: \(error)")
        }
        let bytes = Self.fileSize(directory + "/data.mdb")
        // The chain is what the copy must prove; its indexes and projections are the live log's, which `verify`
        // compares with the events.
        let check = try EventLog(options: LogOptions(directory: directory, readOnly: true), gazetteer: gazetteer)
            .verify(checkingDerivedData: false)
        // Opening it made LMDB's lock file there, which the copy does not need.
        unlink(directory + "/lock.mdb")
        return BackupReport(directory: directory, bytes: bytes, check: check)
    }

    /// The refusal of a copy that ran out of room: what the file system had free before it, and what the copy
    /// could take (the log's pages in use; the compacted copy leaves out the free ones among them).
    private func backupDidNotFit(_ directory: String, freeBefore: Int?) -> LogError {
        let had = freeBefore.map { "it had \($0) bytes free before the copy" } ?? "how much it had free is unknown"
        return LogError(
            .storageFull,
            "the backup did not fit in the file system holding \(directory): \(had), and the copy of the log takes up "
                + "to \(environment.info.usedBytes) bytes (the pages the log has in use, less those free among them); no "
                + "backup was made, and what was copied was removed. Free space there, or back up into a larger file system")
    }

    /// Why `mkdir` of `directory` failed with `code`, in words.
    private static func whyNotCreated(_ code: Int32, _ directory: String) -> String {
        switch code {
        case EEXIST: return "it exists already; a backup goes into a new directory, so that none is ever overwritten"
        case ENOENT:
            // A file system that holds no directories a process makes (/proc, /sys) answers ENOENT too.
            let parent = Self.parent(of: directory)
            var info = stat()
            if stat(parent, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR {
                return "\(parent) is there, but its file system lets no directory be made in it (as /proc and /sys; mkdir said: \(String(cString: strerror(code)))); give a directory on a disk"
            }
            return "the directory it would go in, \(parent), does not exist"
        case ENOTDIR: return "a part of the path is not a directory"
        case EACCES, EPERM:
            return "incidentd (uid \(geteuid())) may not create a directory there"
        case EROFS:
            return "that file system is read-only to incidentd (under systemd, the unit may write only where ReadWritePaths= allows)"
        default: return String(cString: strerror(code))
        }
    }

    /// `path` without the slashes it ends in (but `/` itself), so that the files named under it read as one path.
    static func trimmingSlashes(_ path: String) -> String {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed
    }

    static func parent(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")), slash != path.utf8.startIndex else { return "/" }
        return String(path[..<slash])
    }

    private static func fileSize(_ path: String) -> Int {
        var status = stat()
        return stat(path, &status) == 0 ? Int(status.st_size) : 0
    }

    private static func removeBackup(_ directory: String) {
        unlink(directory + "/" + Environment.incompleteCopyName)
        unlink(directory + "/data.mdb")
        unlink(directory + "/lock.mdb")
        rmdir(directory)
    }
}
