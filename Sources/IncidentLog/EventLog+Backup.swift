#if canImport(Glibc)
import Glibc
#endif
import LMDB

/// Where a backup goes: a new directory `name`, made in the directory open as `parent`, which the caller has already
/// found fit (reached so that nobody it does not trust could change where it leads). Every file of the backup is
/// made relative to these descriptors, never by a path that could lead elsewhere meanwhile.
public struct BackupDestination: Sendable {
    /// A descriptor of the directory the backup's is made in, opened with `O_DIRECTORY`; borrowed, not closed.
    public let parent: Int32
    /// The new directory's name in `parent`: one path component.
    public let name: String
    /// The path asked for, which names the backup in answers and messages.
    public let path: String

    public init(parent: Int32, name: String, path: String) {
        self.parent = parent
        self.name = name
        self.path = path
    }
}

extension EventLog {
    /// Writes a consistent copy of the log into `destination`, a new directory this creates (mode 0750), so that no
    /// backup ever overwrites another: its `data.mdb` holds every event and projection as of one commit,
    /// compacted (no free pages, none of the space written ahead), created with the live file's mode (0600: the
    /// log is evidence and may name people), and is synced with its directory before
    /// the copy is opened read-only and its hash chain checked from position 1. The report names the head the
    /// copy ends in, which matches the live log's `status` at that position. Appends go on meanwhile, but the
    /// map cannot grow until the copy is written (``Environment/copy(intoDirectory:compact:)``).
    ///
    /// The directory is made with `mkdirat` in `destination.parent`, opened with `O_NOFOLLOW`, and every file in it
    /// is made, checked and removed relative to its descriptor (the check opens the copy through
    /// `/proc/self/fd`): a symbolic link put anywhere on the path meanwhile changes nothing of where it goes.
    ///
    /// A backup directory is a data directory: `incidentd --data-dir` serves it, `incidentctl replay --data-dir`
    /// reads it. A copy of a log that does not verify is kept, and the report says where its chain breaks.
    ///
    /// - Throws: ``LogError`` `.invalidDestination` when the directory exists or cannot be created, naming why;
    ///   `.storageFull` when its file system fills up; `.io` for any other failure of the copy. A backup that
    ///   failed leaves nothing behind.
    public func backup(into destination: BackupDestination) throws -> BackupReport {
        let directory = destination.path
        // LMDB's compacting copy reads every page of the log through the map, where a damaged one is a wrong copy or
        // a fault that kills the daemon.
        if let damage = try environment.checkPages().damage {
            throw LogError(
                .damagedPage,
                "\(damage) (of the live log's data.mdb); no backup was made, since the copy reads every page. Keep data.mdb as it is (copy it aside with incidentd stopped). \(EventLog.damageAdvice(database: damage.database?.name))")
        }
        // Measured before the copy: once a copy that did not fit is removed, the space it took is free again.
        let freeBefore = Self.freeBytes(in: destination.parent)
        if mkdirat(destination.parent, destination.name, 0o750) != 0 {
            let code = errno
            if code == ENOSPC || code == EDQUOT {
                throw LogError(
                    .storageFull,
                    "the file system holding \(directory) is full: the backup's directory could not be made there "
                        + "(\(freeBefore.map { "\($0) bytes free" } ?? "free space unknown")); no backup was made")
            }
            throw LogError(.invalidDestination, "cannot back up into \(directory): \(Self.whyNotCreated(code, destination))")
        }
        let made = openat(destination.parent, destination.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        var madeInfo = stat()
        guard made >= 0, fstat(made, &madeInfo) == 0, madeInfo.st_uid == geteuid() else {
            let code = errno
            if made >= 0 {
                close(made)
            } else {
                // Empty: only just made.
                unlinkat(destination.parent, destination.name, AT_REMOVEDIR)
            }
            throw LogError(
                .io,
                "the backup into \(directory) failed: the directory just made there could not be opened as incidentd's own "
                    + "(\(made >= 0 ? "another user's took its place" : String(cString: strerror(code)))); no backup was made")
        }
        defer { close(made) }
        do {
            try environment.copy(intoDirectory: made, compact: true)
            try Environment.syncDirectory(destination.parent)
        } catch let error as LMDBError {
            Self.removeBackup(made, madeInfo, destination)
            if error.code == ENOSPC || error.code == EDQUOT { throw backupDidNotFit(directory, freeBefore: freeBefore) }
            throw LogError(.io, "the backup into \(directory) failed, and nothing was kept of it: \(error)")
        }
        var copied = stat()
        let bytes = fstatat(made, "data.mdb", &copied, AT_SYMLINK_NOFOLLOW) == 0 ? Int(copied.st_size) : 0
        // The chain is what the copy must prove; its indexes and projections are the live log's, which `verify`
        // compares with the events. Opened through the descriptor: LMDB opens its files by path.
        let byDescriptor = "/proc/self/fd/\(made)"
        var reached = stat()
        guard stat(byDescriptor, &reached) == 0, reached.st_dev == madeInfo.st_dev, reached.st_ino == madeInfo.st_ino else {
            throw LogError(
                .io,
                "the backup into \(directory) was written, but cannot be checked: incidentd opens the copy through "
                    + "\(byDescriptor), and /proc is not mounted (or not as this process's). Check it with incidentctl verify --data-dir \(directory)")
        }
        let check: VerifyReport
        do {
            check = try EventLog(options: LogOptions(directory: byDescriptor, readOnly: true), gazetteer: gazetteer)
                .verify(checkingDerivedData: false)
        } catch let error as LogError {
            throw LogError(error.code, error.message.replacing(byDescriptor, with: directory), position: error.position)
        }
        // Opening it made LMDB's lock file there, which the copy does not need.
        unlinkat(made, "lock.mdb", 0)
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

    /// Why `mkdirat` of `destination` failed with `code`, in words.
    private static func whyNotCreated(_ code: Int32, _ destination: BackupDestination) -> String {
        switch code {
        case EEXIST: return "it exists already; a backup goes into a new directory, so that none is ever overwritten"
        case ENOENT:
            var info = stat()
            if fstat(destination.parent, &info) == 0 && info.st_nlink == 0 {
                return "the directory it would go in, \(parent(of: destination.path)), was removed meanwhile"
            }
            // A file system that holds no directories a process makes (/proc, /sys) answers ENOENT in a directory
            // that is there.
            return "\(parent(of: destination.path)) is there, but its file system lets no directory be made in it (as /proc and /sys; mkdir said: \(String(cString: strerror(code)))); give a directory on a disk"
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

    /// What the file system holding the directory open as `descriptor` has free for this process (root may use the
    /// blocks kept back for it).
    private static func freeBytes(in descriptor: Int32) -> Int? {
        var space = statvfs()
        guard fstatvfs(descriptor, &space) == 0 else { return nil }
        let blocks = geteuid() == 0 ? space.f_bfree : space.f_bavail
        let (bytes, overflow) = UInt64(blocks).multipliedReportingOverflow(by: UInt64(space.f_frsize))
        return overflow ? Int.max : Int(clamping: bytes)
    }

    /// Removes what a failed backup made in the directory open as `made` (of `info`), and the directory itself when
    /// `destination` still names it.
    private static func removeBackup(_ made: Int32, _ info: stat, _ destination: BackupDestination) {
        for name in [Environment.incompleteCopyName, "data.mdb", "lock.mdb"] { unlinkat(made, name, 0) }
        var named = stat()
        guard fstatat(destination.parent, destination.name, &named, AT_SYMLINK_NOFOLLOW) == 0,
            named.st_dev == info.st_dev && named.st_ino == info.st_ino
        else { return }
        unlinkat(destination.parent, destination.name, AT_REMOVEDIR)
    }
}
