#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SocketTrust

extension Incidentd {
    /// The listening socket systemd passed (`LISTEN_FDS`, `LISTEN_PID`), if any: the first, descriptor 3, checked to
    /// be what incidentd serves, a listening Unix-domain stream socket (``checkInheritedSocket(_:)``), at a path
    /// that only root and incidentd's user could have put a socket at and that others may not connect to without
    /// the socket's group (``checkInheritedSocketPlace(_:)``). With more than one passed, a warning says that only
    /// the first is served.
    static func inheritedSocket(logger: Logger) throws -> Int32? {
        let env = ProcessInfo.processInfo.environment
        guard let pid = env["LISTEN_PID"].flatMap(Int32.init), pid == getpid(),
            let count = env["LISTEN_FDS"].flatMap(Int.init), count >= 1
        else { return nil }
        unsetenv("LISTEN_PID")
        unsetenv("LISTEN_FDS")
        unsetenv("LISTEN_FDNAMES")
        let first: Int32 = 3
        try checkInheritedSocket(first)
        try checkInheritedSocketPlace(first)
        if count > 1 {
            logger.warning(
                "systemd passed \(count) sockets (LISTEN_FDS=\(count)): incidentd serves only the first (fd \(first)) and leaves the others unused; give incidentd.socket one ListenStream=")
        }
        return first
    }

    /// A socket systemd passed that incidentd cannot serve: a configuration problem (exit status 78), since
    /// systemd passes the same one again at each restart.
    struct InheritedSocketRefused: Error, CustomStringConvertible {
        let description: String
    }

    /// Refuses a descriptor `fd` that is not a listening Unix-domain stream socket, naming what it is: a TCP socket
    /// would be served with every connection closed unanswered (no peer credentials), a datagram socket fails in
    /// SwiftNIO, and a socket that is not listening (`Accept=yes` passes a connection) accepts nothing.
    static func checkInheritedSocket(_ fd: Int32) throws {
        let what = "the socket systemd passed (fd \(fd), LISTEN_FDS)"
        let needed = "incidentd serves a listening Unix-domain stream socket: incidentd.socket's ListenStream= with a path, and Accept=no"
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw InheritedSocketRefused(description: "\(what) is not open (\(String(cString: strerror(errno)))); \(needed)")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw InheritedSocketRefused(description: "\(what) is not a socket but \(describeFileType(info.st_mode)); \(needed)")
        }
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        let domain = option(SO_DOMAIN)
        let type = option(SO_TYPE)
        let listening = option(SO_ACCEPTCONN)
        guard domain == AF_UNIX, type == Int32(SOCK_STREAM.rawValue), listening == 1 else {
            let family: String
            switch domain {
            case AF_UNIX?: family = "Unix-domain"
            case AF_INET?: family = "IPv4"
            case AF_INET6?: family = "IPv6"
            case AF_NETLINK?: family = "netlink"
            case let other?: family = "address family \(other)"
            case nil: family = "unknown family"
            }
            let kind: String
            switch type {
            case Int32(SOCK_STREAM.rawValue)?: kind = domain == AF_INET || domain == AF_INET6 ? "stream (TCP)" : "stream"
            case Int32(SOCK_DGRAM.rawValue)?: kind = domain == AF_INET || domain == AF_INET6 ? "datagram (UDP)" : "datagram"
            case Int32(SOCK_SEQPACKET.rawValue)?: kind = "seqpacket"
            case let other?: kind = "type \(other)"
            case nil: kind = "unknown type"
            }
            let state = listening == 1 ? "listening" : listening == 0 ? "not listening" : "maybe listening"
            throw InheritedSocketRefused(description: "\(what) is a socket of family \(family), type \(kind), \(state); \(needed)")
        }
    }

    /// Refuses a listening Unix-domain socket `fd` from systemd that incidentd would not serve were it its own: the
    /// rules of the socket incidentd binds itself, applied to where systemd bound it. An abstract socket (`@name`)
    /// has no file, so no permissions: anyone on the host may connect to it. A socket file others may write
    /// (SocketMode= 0666, say) lets anyone connect, whatever the socket's group; one that belongs to a user other
    /// than root or incidentd's own user may be given such a mode by that user at any time. And its directory must
    /// be one that only root or incidentd's user could have put a socket in (``SocketDirectoryRules``, as
    /// ``Server/checkSocketDirectory(_:)``): the directory systemd makes for `ListenStream=` is root's, 0755 as
    /// `DirectoryMode=` gives it, until tmpfiles.d hands it to incidentd's user, and both are trusted.
    static func checkInheritedSocketPlace(_ fd: Int32) throws {
        let what = "the socket systemd passed (fd \(fd), LISTEN_FDS)"
        let unit = "incidentd.socket's ListenStream= must be a path in a directory that only root or incidentd's user (\(SocketDirectoryRules.describeUser(geteuid()))) may write, such as /run/incidentd/incidentd.sock"
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            throw InheritedSocketRefused(description: "\(what): its address cannot be read (getsockname: \(String(cString: strerror(errno)))); \(unit)")
        }
        // sun_path holds `length` less the family's bytes: a path ends at its first NUL (which it may include), an
        // abstract name begins with a NUL and runs to `length`.
        let familyBytes = MemoryLayout<sa_family_t>.size
        let bytes = withUnsafeBytes(of: &address.sun_path) { raw in Array(raw.prefix(max(0, Int(length) - familyBytes))) }
        guard let first = bytes.first else {
            throw InheritedSocketRefused(
                description: "\(what) has no address (an unnamed socket): no client can reach it; \(unit)")
        }
        guard first != 0 else {
            // Written as systemd writes it: "@" for the leading NUL; one bound with the whole of sun_path ends in NULs.
            let nameBytes = Array(bytes.dropFirst().reversed().drop { $0 == 0 }.reversed())
            let name = "@" + nameBytes.map { $0 == 0 ? "\\0" : String(decoding: [$0], as: UTF8.self) }.joined()
            throw InheritedSocketRefused(
                description:
                    "\(what) is an abstract socket (\(name)), which anyone on the host can connect to: no file, and so no file permissions, guard it (neither SocketMode= nor SocketGroup= applies); \(unit)")
        }
        let path = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw InheritedSocketRefused(
                description:
                    "\(what), bound at \(path): \(path) cannot be looked at (\(String(cString: strerror(errno)))), so incidentd cannot tell who may connect to it; \(unit)")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw InheritedSocketRefused(
                description:
                    "\(what), bound at \(path): \(path) is no longer a socket but \(describeFileType(info.st_mode)), so no client reaches the socket; \(unit)")
        }
        let mode = info.st_mode & 0o7777
        let modeText = SocketPathFault.octal(mode)
        guard mode & S_IWOTH == 0 else {
            throw InheritedSocketRefused(
                description:
                    "\(what), \(path), has mode \(modeText), which lets any user on the host connect to it (write permission for others), whatever its group: set SocketMode= in incidentd.socket to one without it, as the shipped 0660 (owner and group only; reaching the socket takes the group of SocketGroup=)")
        }
        guard info.st_uid == 0 || info.st_uid == geteuid() else {
            throw InheritedSocketRefused(
                description:
                    "\(what), \(path), belongs to \(SocketDirectoryRules.describeUser(info.st_uid)), a user other than root or incidentd's own user (\(SocketDirectoryRules.describeUser(geteuid()))), who may give it any mode at any time: set SocketUser= in incidentd.socket to incidentd's user (or leave it to root)")
        }
        let parent = (path as NSString).deletingLastPathComponent
        let directory = parent.isEmpty ? FileManager.default.currentDirectoryPath : parent
        if let fault = SocketDirectoryRules.fault(reaching: directory, isSocketDirectory: true, trusting: geteuid()) {
            throw InheritedSocketRefused(
                description:
                    "\(what), \(path): its directory \(directory): \(fault.path) (mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) \(fault.problem): they could put a socket of their own where incidentd's clients connect, while incidentd is stopped or in place of this one; \(unit), below directories that only they may write or that are sticky (as /tmp), with DirectoryMode= 0755 or stricter")
        }
    }

    /// What a file of mode `mode` is, in words.
    private static func describeFileType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFIFO: "a pipe"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFLNK: "a symbolic link"
        default: "a file of another type"
        }
    }
}
