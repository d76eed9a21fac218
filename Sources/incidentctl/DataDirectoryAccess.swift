import Foundation
import SocketTrust

#if canImport(Glibc)
import Glibc
#endif

/// Who `verify --data-dir` and `replay --data-dir` read a data directory as.
///
/// Reading a log opens LMDB's `lock.mdb` read-write (its table of readers), made if missing, by path: whoever may
/// write the directory could put there a link that has the reader write a file of theirs (the LMDB module refuses
/// a link it finds, but liblmdb opens the path again after that look). So:
/// * a directory that its group or others may write is refused, whoever runs this;
/// * root reads a directory of another user's as that user: the whole process takes the owner's uid and primary
///   group (gid 65534 for a uid the user database does not know), with no supplementary groups, before anything
///   in it is opened, and can then write nothing the owner could not. Not the directory's group: root's `chown
///   USER DIR` leaves it root's, a group the owner need not be in;
/// * root reads a directory of its own only where nobody else could rename or replace it, or a directory above it
///   (``SocketDirectoryRules``);
/// * another user reads only a directory of theirs or root's: a directory of a third user's is refused (they may
///   run this as that user, or as root, which reads it as that user).
enum DataDirectoryAccess {
    /// Applies the rules above to `directory` for this process, taking the owner's identity where they say so.
    /// Throws the refusal `incidentctl` gives a data directory it cannot read (`permission_denied`, exit 1); a
    /// directory that cannot be looked at is left to opening the log, which says why.
    static func enter(_ directory: String) throws {
        var info = stat()
        guard stat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return }
        let user = geteuid()
        let owner = SocketDirectoryRules.describeUser(info.st_uid)
        let mode = SocketPathFault.octal(info.st_mode & 0o7777)
        let writers = [(0o020, "its group"), (0o002, "others")].filter { info.st_mode & mode_t($0.0) != 0 }.map(\.1)
        if !writers.isEmpty {
            throw refusal(
                "\(directory) (mode \(mode), owner \(owner)) may be written by \(writers.joined(separator: " and ")), who could put a link there that has this reader write a file of \(user == 0 ? "root's" : "yours") (LMDB opens lock.mdb read-write by path). Take their write permission (chmod go-w \(directory)) after checking what it holds, or read a copy in a directory only you may write")
        }
        if user == 0 && info.st_uid != 0 {
            try become(uid: info.st_uid, gid: primaryGroup(of: info.st_uid) ?? 65534, for: directory)
            return
        }
        if user == 0, let fault = SocketDirectoryRules.fault(reaching: directory, isSocketDirectory: true, trusting: 0) {
            throw refusal(
                "\(fault.path) (mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) \(fault.problem): they could replace \(directory), which root reads as itself, with a directory holding a link that has root write a file of theirs. Read a copy in a directory only root may write, or give \(directory) to the user who may replace it (chown), which root then reads it as")
        }
        if user != 0 && info.st_uid != 0 && info.st_uid != user {
            throw refusal(
                "\(directory) belongs to \(owner), who could put a link there that has this reader write a file of yours (LMDB opens lock.mdb read-write by path). Run this as \(owner) or as root (which reads it as its owner), or read a copy of your own")
        }
    }

    /// Makes the whole process `uid`, with group `gid` and no supplementary groups, for good: checked, so that a
    /// reader that could not give up root's powers reads nothing.
    private static func become(uid: uid_t, gid: gid_t, for directory: String) throws {
        guard setgroups(0, nil) == 0, setgid(gid) == 0, setuid(uid) == 0,
            getuid() == uid, geteuid() == uid, getgid() == gid, getegid() == gid, setuid(0) != 0
        else {
            throw refusal(
                "\(directory) belongs to \(SocketDirectoryRules.describeUser(uid)), as whom root reads it, and this process could not become that user (uid \(uid), gid \(gid)): \(String(cString: strerror(errno)))")
        }
    }

    /// The primary group the user database gives `uid`, or nil when it has no entry for it.
    private static func primaryGroup(of uid: uid_t) -> gid_t? {
        var entry = passwd()
        var buffer = [CChar](repeating: 0, count: 4096)
        var result: UnsafeMutablePointer<passwd>?
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return entry.pw_gid
    }

    private static func refusal(_ message: String) -> ClientFailure {
        .refused(code: "permission_denied", message: "cannot open the log: " + message)
    }
}
