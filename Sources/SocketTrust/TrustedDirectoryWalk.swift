#if canImport(Glibc)
import Glibc
#endif

/// A directory opened by ``TrustedDirectoryWalk/open(_:trusting:)``: its descriptor, closed when this is released.
public final class OpenDirectory: Sendable {
    /// Opened with `O_RDONLY | O_DIRECTORY`: a start for `openat`, `mkdirat` and the like.
    public let descriptor: Int32
    /// The path it was reached by, every symbolic link on the way resolved.
    public let path: String

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close(descriptor) }
}

/// Why ``TrustedDirectoryWalk/open(_:trusting:)`` opened no directory.
public enum DirectoryWalkFailure: Error, Sendable {
    /// An entry on the way through which a user other than root and the trusted one could change where it leads.
    case untrusted(SocketPathFault)
    /// `path`, the entry the walk stopped at, could not be opened or read: `code` is the `errno`.
    case unreachable(path: String, code: Int32)
}

/// A walk to a directory that incidentd is to write in for a client, made so that nobody but root and incidentd's
/// user can change where it leads, neither before it nor while it goes on: from / down, each directory is opened
/// relative to the one before (`openat` with `O_DIRECTORY | O_NOFOLLOW`) and checked by what its descriptor says
/// (`fstat`), and a symbolic link is followed only when root or incidentd's user owns it. The rules are those of
/// ``SocketDirectoryRules/fault(reaching:isSocketDirectory:trusting:grantedByRoot:)`` for a directory to be made:
/// every directory reached belongs to root or incidentd's user, and none, the last among them, may be written by
/// others than its owner without the sticky bit (who could rename what is below it). The descriptor it gives is
/// the directory that passed them, wherever its path leads later.
public enum TrustedDirectoryWalk {
    /// The most symbolic links one walk follows, as the kernel's own limit (`ELOOP` past it).
    static let maxLinks = 40

    /// Opens `directory`, an absolute path, by the walk above, trusting root and `daemonUser`.
    public static func open(_ directory: String, trusting daemonUser: uid_t) -> Result<OpenDirectory, DirectoryWalkFailure> {
        func trusted(_ owner: uid_t) -> Bool { owner == 0 || owner == daemonUser }
        func joined(_ path: String, _ name: String) -> String { (path == "/" ? "" : path) + "/" + name }
        /// The fault of the directory open as `descriptor`, reached as `path`, if any.
        func fault(of descriptor: Int32, at path: String) -> DirectoryWalkFailure? {
            var info = stat()
            guard fstat(descriptor, &info) == 0 else { return .unreachable(path: path, code: errno) }
            let mode = info.st_mode & 0o7777
            if !trusted(info.st_uid) {
                return .untrusted(
                    SocketPathFault(path: path, mode: mode, owner: info.st_uid, problem: "belongs to a user other than root or incidentd's own user"))
            }
            if info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0 {
                return .untrusted(
                    SocketPathFault(
                        path: path, mode: mode, owner: info.st_uid,
                        problem: "may be written by others than its owner, without the sticky bit, who could rename what is below it"))
            }
            return nil
        }

        guard directory.hasPrefix("/") else { return .failure(.unreachable(path: directory, code: EINVAL)) }
        var current = Glibc.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard current >= 0 else { return .failure(.unreachable(path: "/", code: errno)) }
        var reached = "/"
        if let fault = fault(of: current, at: reached) {
            close(current)
            return .failure(fault)
        }
        // The names still to walk, the next one last.
        var pending = directory.split(separator: "/").reversed().map(String.init)
        var links = 0
        while let name = pending.popLast() {
            guard name != "." else { continue }
            let next = openat(current, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next >= 0 {
                close(current)
                current = next
                reached = name == ".." ? parent(of: reached) : joined(reached, name)
                if let fault = fault(of: current, at: reached) {
                    close(current)
                    return .failure(fault)
                }
                continue
            }
            let code = errno
            let entry = joined(reached, name)
            var info = stat()
            // A link: O_NOFOLLOW says ELOOP, or ENOTDIR with O_DIRECTORY.
            guard code == ELOOP || code == ENOTDIR, fstatat(current, name, &info, AT_SYMLINK_NOFOLLOW) == 0,
                info.st_mode & S_IFMT == S_IFLNK
            else {
                close(current)
                return .failure(.unreachable(path: entry, code: code))
            }
            guard trusted(info.st_uid) else {
                close(current)
                return .failure(
                    .untrusted(
                        SocketPathFault(
                            path: entry, mode: info.st_mode & 0o7777, owner: info.st_uid,
                            problem: "is a symbolic link another user may point elsewhere")))
            }
            links += 1
            guard links <= maxLinks, let target = readLink(name, in: current) else {
                close(current)
                return .failure(.unreachable(path: entry, code: links > maxLinks ? ELOOP : errno))
            }
            if target.hasPrefix("/") {
                let root = Glibc.open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                close(current)
                guard root >= 0 else { return .failure(.unreachable(path: "/", code: errno)) }
                current = root
                reached = "/"
            }
            pending.append(contentsOf: target.split(separator: "/").reversed().map(String.init))
        }
        return .success(OpenDirectory(descriptor: current, path: reached))
    }

    /// What the symbolic link `name` in the directory open as `directory` holds; nil when it cannot be read.
    static func readLink(_ name: String, in directory: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlinkat(directory, name, &buffer, buffer.count - 1)
        guard count >= 0 else { return nil }
        guard count < buffer.count - 1 else {
            errno = ENAMETOOLONG
            return nil
        }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The directory holding `path`, an absolute path with no link in it: "/" for "/" itself.
    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
