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
/// * another user reads only a directory of theirs or root's: a directory of a third user's is refused (they may
///   run this as that user, or as root, which reads it as that user);
/// * the path is read where nobody but root and the reader (root: the directory's owner) could rename or replace
///   the directory, a directory above it, or a link on the way to it (``SocketDirectoryRules``), and the log is
///   opened by the path it resolves to, with no link in it: LMDB's later open by path meets what was checked.
enum DataDirectoryAccess {
    /// Applies the rules above to `directory` for this process, taking the owner's identity where they say so, and
    /// gives the path to open the log by: `directory` resolved. Throws the refusal `incidentctl` gives a data
    /// directory it cannot read (`permission_denied`, exit 1); a directory that cannot be looked at is left to
    /// opening the log, which says why.
    static func enter(_ directory: String) throws -> String {
        guard let resolving = realpath(directory, nil) else { return directory }
        let resolved = String(cString: resolving)
        free(resolving)
        var info = stat()
        guard stat(resolved, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else { return directory }
        let user = geteuid()
        let owner = SocketDirectoryRules.describeUser(info.st_uid)
        let mode = SocketPathFault.octal(info.st_mode & 0o7777)
        let writers = [(0o020, "its group"), (0o002, "others")].filter { info.st_mode & mode_t($0.0) != 0 }.map(\.1)
        if !writers.isEmpty {
            throw refusal(
                "\(directory) (mode \(mode), owner \(owner)) may be written by \(writers.joined(separator: " and ")), who could put a link there that has this reader write a file of \(user == 0 ? "root's" : "yours") (LMDB opens lock.mdb read-write by path). Take their write permission (chmod go-w \(directory)) after checking what it holds, or read a copy in a directory only you may write")
        }
        if user != 0 && info.st_uid != 0 && info.st_uid != user {
            throw refusal(
                "\(directory) belongs to \(owner), who could put a link there that has this reader write a file of yours (LMDB opens lock.mdb read-write by path). Run this as \(owner) or as root (which reads it as its owner), or read a copy of your own")
        }
        let reader = user == 0 ? info.st_uid : user
        for path in [directory, resolved] {
            guard let fault = SocketDirectoryRules.fault(reaching: path, isSocketDirectory: true, trusting: reader) else { continue }
            let whose = reader == 0 ? "root" : SocketDirectoryRules.describeUser(reader)
            throw refusal(
                "\(fault.path) (mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) \(fault.problem): they could replace \(directory), or what leads to it, with a directory holding a link through which this reader, as \(whose), would write a file that \(whose) may write. Read a copy in a directory that only \(whose) may write, on a path only they may change")
        }
        if user == 0 && info.st_uid != 0 {
            try become(uid: info.st_uid, gid: SocketDirectoryRules.user(info.st_uid)?.primaryGroup ?? 65534, for: directory)
        }
        return resolved
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

    private static func refusal(_ message: String) -> ClientFailure {
        .refused(code: "permission_denied", message: "cannot open the log: " + message)
    }
}
