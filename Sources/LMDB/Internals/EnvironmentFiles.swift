// The rule that `data.mdb` and `lock.mdb` be regular files of their own, never followed through a symbolic link.
//
// liblmdb opens both by path, following links, `lock.mdb` read-write and made if missing, and writes its header
// there; a writer writes `data.mdb`. A `lock.mdb` that leads to `/etc/shadow` in a directory someone else prepared
// would have root's `verify --data-dir` overwrite it. So each is looked at without following a link before
// liblmdb opens it, and the descriptors this module opens itself are opened with `O_NOFOLLOW` and checked with
// `fstat`. liblmdb's own open, by path, comes later: the directory must be one that nobody but its owner may
// write, which is for the callers to see to (the daemon refuses others, `incidentctl` runs as the owner).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The rule that the files of an environment (and any file opened to be written beside them, as a lock of the
/// caller's own) be regular files of their own, never followed through a symbolic link.
public enum EnvironmentFiles {
    /// Throws when `path` exists and is not a regular file, or has other names and is `written`; a missing one, or
    /// one that cannot be looked at (a directory this user may not search), is left to the open that follows.
    static func refuseUnsafe(path: String, written: Bool) throws(UnsafeEnvironmentFile) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if let problem = problem(info, written: written) { throw UnsafeEnvironmentFile(path: path, problem: problem) }
    }

    /// Throws when the open file `fd`, opened from `path` with `O_NOFOLLOW`, is not a regular file, or has other
    /// names and is `written`.
    static func refuseUnsafe(_ fd: Int32, path: String, written: Bool) throws(UnsafeEnvironmentFile) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return }
        if let problem = problem(info, written: written) { throw UnsafeEnvironmentFile(path: path, problem: problem) }
    }

    /// What is wrong with a file of `info` (from `lstat` or `fstat`) for this process to open, and to write when
    /// `written`, as a predicate; nil for a regular file (with one name, when `written`). Other names matter only
    /// to a file that is written: a reader's `data.mdb` may be a hard-linked copy.
    public static func problem(_ info: stat, written: Bool) -> String? {
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return info.st_nlink == 1 || !written
                ? nil : "has \(info.st_nlink) names (hard links), and what is written through one is written through the others"
        case S_IFLNK: return "is a symbolic link"
        case S_IFDIR: return "is a directory, not a regular file"
        default: return "is not a regular file (a device, a FIFO or a socket)"
        }
    }
}
