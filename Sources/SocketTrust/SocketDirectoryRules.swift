import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// An entry on the way to a socket through which a user other than root or incidentd's own user could put a socket
/// of their own where incidentd's clients connect: a directory they own or may write, or a symbolic link they may
/// point elsewhere.
public struct SocketPathFault: Sendable, Equatable {
    /// The entry at fault, as reached: a prefix of the path as given for a symbolic link, else a resolved directory.
    public let path: String
    /// Its permission bits (`st_mode & 0o7777`).
    public let mode: mode_t
    /// Its owner.
    public let owner: uid_t
    /// Why it lets another user in, as a predicate of `path`: "belongs to a user other than root or incidentd's own
    /// user".
    public let problem: String

    /// `mode` as four octal digits, as chmod takes it.
    public var modeText: String { Self.octal(mode) }

    /// Permission bits `mode` as four octal digits, as chmod takes them ("0660").
    public static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// The rules by which a socket's directory is one that only root and incidentd's user could have put a socket in:
/// incidentd serves only where they hold, and incidentctl trusts a process of another user serving a socket only
/// where they hold for that user. Both apply these, so that the two cannot drift apart.
public enum SocketDirectoryRules {
    /// The first entry on the way to `directory`, an existing directory, through which a user other than root and
    /// `daemonUser` could put a socket of their own in it, or nil when there is none: from / down, a symbolic link on
    /// the path as given that is not theirs; a directory it resolves to that is not theirs; one above it that others
    /// than its owner may write without the sticky bit (who could rename what is below it); and, when
    /// `isSocketDirectory` (rather than the nearest existing directory above one still to be made), `directory`
    /// itself if its group or others may write it, sticky or not.
    ///
    /// `grantedByRoot` (incidentctl's use) asks in addition that an entry of `daemonUser`'s other than root sit in a
    /// directory that only its owner may write: anyone may make a directory in one that others may write, sticky or
    /// not (as /tmp), and then owning it does not make `daemonUser` incidentd's.
    public static func fault(
        reaching directory: String, isSocketDirectory: Bool, trusting daemonUser: uid_t, grantedByRoot: Bool = false
    ) -> SocketPathFault? {
        func trusted(_ owner: uid_t) -> Bool { owner == 0 || owner == daemonUser }
        func fault(_ path: String, _ info: stat, _ problem: String) -> SocketPathFault {
            SocketPathFault(path: path, mode: info.st_mode & 0o7777, owner: info.st_uid, problem: problem)
        }
        /// Who besides its owner may write a directory of mode `mode`: "its group", "others", both, or none.
        func writers(_ mode: mode_t) -> [String] {
            [(0o020, "its group"), (0o002, "others")].filter { mode & mode_t($0.0) != 0 }.map(\.1)
        }
        /// The fault of `container`, when `entry` in it is `daemonUser`'s and others may write `container`.
        func ungranted(_ entry: String, _ info: stat, in container: String, _ containerInfo: stat) -> SocketPathFault? {
            guard grantedByRoot, info.st_uid != 0, info.st_uid == daemonUser, !writers(containerInfo.st_mode).isEmpty
            else { return nil }
            let sticky = containerInfo.st_mode & S_ISVTX != 0 ? ", sticky or not" : ""
            return fault(
                container, containerInfo,
                "may be written by \(writers(containerInfo.st_mode).joined(separator: " and "))\(sticky), where anyone could have made \(entry), which belongs to \(describeUser(info.st_uid)): owning it does not make that user incidentd's")
        }
        var info = stat()
        var containerInfo = stat()
        // The links of the path as given: each belongs to root or the daemon's user, who alone may point it elsewhere.
        var prefix = directory.hasPrefix("/") ? "" : FileManager.default.currentDirectoryPath
        for component in directory.split(separator: "/") where component != "." {
            let container = prefix.isEmpty ? "/" : prefix
            prefix += "/" + component
            if lstat(prefix, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK {
                if !trusted(info.st_uid) {
                    return fault(prefix, info, "is a symbolic link another user may point elsewhere")
                }
                if stat(container, &containerInfo) == 0, let fault = ungranted(prefix, info, in: container, containerInfo) {
                    return fault
                }
            }
        }
        // The directories it leads to, from / down, none of which another user may rename or replace.
        guard let resolved = realpath(directory, nil) else { return nil }
        let real = String(cString: resolved)
        free(resolved)
        var path = ""
        var above: (path: String, info: stat)?
        let components = real.split(separator: "/")
        for (index, component) in ([""] + components.map(String.init)).enumerated() {
            path = index == 0 ? "/" : (path == "/" ? "" : path) + "/" + component
            guard lstat(path, &info) == 0 else { continue }
            let isLast = isSocketDirectory && index == components.count
            let writers = writers(info.st_mode)
            if !trusted(info.st_uid) {
                return fault(path, info, "belongs to a user other than root or incidentd's own user")
            }
            if let above, let fault = ungranted(path, info, in: above.path, above.info) {
                return fault
            }
            if isLast && !writers.isEmpty {
                let sticky = info.st_mode & S_ISVTX != 0 ? ", sticky or not" : ""
                return fault(path, info, "may be written by \(writers.joined(separator: " and "))\(sticky)")
            }
            if !isLast && !writers.isEmpty && info.st_mode & S_ISVTX == 0 {
                return fault(path, info, "may be written by others than its owner, without the sticky bit, who could rename what is below it")
            }
            above = (path, info)
        }
        return nil
    }

    /// A user's name and uid ("incidentd (uid 990)"), or the uid alone when the user database has no name for it.
    public static func describeUser(_ uid: uid_t) -> String {
        guard let user = user(uid) else { return "uid \(uid)" }
        return "\(user.name) (uid \(uid))"
    }

    /// `directory` when it exists, else the nearest directory above it that does (a relative path ends at the working
    /// directory), with what `stat` says of it; the `errno` of a `stat` that failed otherwise than for a missing
    /// entry, or ENOENT when nothing on the way exists. A directory not made yet is checked by where it will be made.
    public static func nearestExisting(_ directory: String) -> Result<(path: String, info: stat), NearestExistingFailure> {
        var info = stat()
        var existing = directory
        while stat(existing, &info) != 0 {
            guard errno == ENOENT else { return .failure(NearestExistingFailure(code: errno)) }
            let parent = (existing as NSString).deletingLastPathComponent
            guard !parent.isEmpty else {
                existing = FileManager.default.currentDirectoryPath
                continue
            }
            guard parent != existing else { return .failure(NearestExistingFailure(code: ENOENT)) }
            existing = parent
        }
        return .success((existing, info))
    }

    /// The name and primary group the user database gives `uid`, or nil when it has no entry for it.
    public static func user(_ uid: uid_t) -> (name: String, primaryGroup: gid_t)? {
        var entry = passwd()
        var buffer = [CChar](repeating: 0, count: 4096)
        var result: UnsafeMutablePointer<passwd>?
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return nil
        }
        return (String(cString: name), entry.pw_gid)
    }
}

/// Why ``SocketDirectoryRules/nearestExisting(_:)`` found no directory: the `errno` of the `stat` that failed.
public struct NearestExistingFailure: Error {
    public let code: Int32
}
