#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

extension Incidentd {
    /// The listening socket systemd passed (`LISTEN_FDS`, `LISTEN_PID`), if any: the first, descriptor 3, checked to
    /// be what incidentd serves, a listening Unix-domain stream socket (``checkInheritedSocket(_:)``). With more
    /// than one passed, a warning says that only the first is served.
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
