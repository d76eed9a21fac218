import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The rules by which a file incidentd reads its settings from (its configuration, its gazetteer) is one that only
/// root and incidentd's user could have written: whoever may write the configuration decides who may write to the
/// log. The same rules as a socket's directory's (``SocketDirectoryRules``) hold for the directories on the way to
/// it, which nobody else may rename or replace.
public enum TrustedFileRules {
    /// The first entry on the way to `file` through which a user other than root and `daemonUser` could have written
    /// what it holds, or nil when there is none: a symbolic link to it that is not theirs, a directory on the way
    /// (to the path as given, and to the file it resolves to) that others may rename or replace
    /// (``SocketDirectoryRules/fault(reaching:isSocketDirectory:trusting:grantedByRoot:)``), the file itself when
    /// it belongs to another user or its group or others may write it. A file that does not exist is no fault:
    /// reading it says so.
    public static func fault(reading file: String, trusting daemonUser: uid_t) -> SocketPathFault? {
        func trusted(_ owner: uid_t) -> Bool { owner == 0 || owner == daemonUser }
        func fault(_ path: String, _ info: stat, _ problem: String) -> SocketPathFault {
            SocketPathFault(path: path, mode: info.st_mode & 0o7777, owner: info.st_uid, problem: problem)
        }
        var info = stat()
        if lstat(file, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK, !trusted(info.st_uid) {
            return fault(file, info, "is a symbolic link another user may point elsewhere")
        }
        if let found = SocketDirectoryRules.fault(reaching: directory(of: file), isSocketDirectory: false, trusting: daemonUser) {
            return found
        }
        guard let resolved = realpath(file, nil) else { return nil }
        let real = String(cString: resolved)
        free(resolved)
        if let found = SocketDirectoryRules.fault(reaching: directory(of: real), isSocketDirectory: false, trusting: daemonUser) {
            return found
        }
        guard stat(real, &info) == 0 else { return nil }
        if !trusted(info.st_uid) {
            return fault(real, info, "belongs to a user other than root or incidentd's own user")
        }
        let writers = [(0o020, "its group"), (0o002, "others")].filter { info.st_mode & mode_t($0.0) != 0 }.map(\.1)
        if !writers.isEmpty {
            return fault(real, info, "may be written by \(writers.joined(separator: " and "))")
        }
        return nil
    }

    /// The directory holding `path`: "." for a bare name, "/" for one in /.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
