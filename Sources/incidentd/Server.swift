import CShims
import Foundation
import IncidentLog
import IncidentProtocol
import Logging
import NIOCore
import NIOPosix
import SocketTrust
import StrictJSON
import Synchronization

/// The Unix-domain socket server: binds (or inherits from systemd) the socket, reads each client's peer
/// credentials, and gives every connection its own ``ConnectionHandler``.
final class Server: Sendable {
    let executor: RequestExecutor
    let intake: AppendIntake
    let configuration: DaemonConfiguration
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    /// Told by each loop of `group` as it ends a tick, for its connections' turns.
    let loopTicks: LoopTicks
    let refusedConnections = RefusedConnections()
    let unservedConnections = UnservedConnections()

    init(executor: RequestExecutor, intake: AppendIntake, configuration: DaemonConfiguration, logger: Logger) {
        self.executor = executor
        self.intake = intake
        self.configuration = configuration
        self.logger = logger
        let loopTicks = LoopTicks()
        self.loopTicks = loopTicks
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount), metricsDelegate: loopTicks)
    }

    /// Binds the socket and starts accepting. `inheritedDescriptor` is a listening socket from systemd. The socket
    /// file this daemon made is returned with the channel, so that the daemon removes it at its end only while it
    /// is still that file (nil when systemd made it).
    func start(inheritedDescriptor: Int32?) throws -> (channel: any Channel, socketFile: SocketFile?) {
        let executor = self.executor
        let intake = self.intake
        let configuration = self.configuration
        let logger = self.logger
        let refusedConnections = self.refusedConnections
        let unservedConnections = self.unservedConnections
        let loopTicks = self.loopTicks
        let bootstrap = ServerBootstrap(group: group)
            // Should `accept` fail for want of a descriptor all the same (another process's files count toward
            // ENFILE), the listener stops reading for a second rather than being woken again at once, forever.
            // SwiftNIO adds this handler only to the channels of its newer, async bind.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler(shouldForwardIOErrorCaught: true))
                    try channel.pipeline.syncOperations.addHandler(AcceptFailureLog(logger: logger))
                }
            }
            .childChannelOption(.autoRead, value: true)
            // A client that shuts down its side still gets the answers to what it sent (see ConnectionHandler).
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 << 10, high: 1 << 20))
            // Small reads, one per turn of the event loop: a client pipelining appends hands over a few at a
            // time, so a query on another connection of the same loop waits for a few decodes per busy connection, not for
            // hundreds (the default reads up to 4 × 64 KiB per connection per turn).
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 4096, maximum: 4096))
            .childChannelInitializer { channel in
                Server.initialize(
                    channel, executor: executor, intake: intake, configuration: configuration, logger: logger,
                    refusedConnections: refusedConnections, unservedConnections: unservedConnections, loopTicks: loopTicks)
            }
        if let fd = inheritedDescriptor {
            // SwiftNIO listens again on a socket it is given, with its default backlog, 128
            // (`ServerSocketChannel.init(socket:eventLoop:group:)`; its `.backlog` option only applies to a socket it
            // binds itself). Listening again with the most the kernel allows (net.core.somaxconn) gives back systemd's
            // default, which the shipped incidentd.socket keeps; a lower `Backlog=` is not kept, since no socket option
            // reads it.
            let channel = try Server.adopt(fd, into: bootstrap)
            listen(fd, Int32.max)
            return (channel, nil)
        }
        let path = configuration.socketPath
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try Server.makeSocketDirectory(directory) }
        try Server.checkSocketDirectory(directory.isEmpty ? FileManager.default.currentDirectoryPath : directory)
        try Server.removeStaleSocket(at: path)
        for removed in Server.removeStalePrivateDirectories(in: directory.isEmpty ? "." : directory) {
            logger.notice("removed \(absolutePath(removed)), left beside the socket by a daemon killed while it bound its socket")
        }
        let (fd, socketFile) = try Server.bindSocket(at: path, mode: configuration.socketMode)
        // Bound here rather than by SwiftNIO, which removes whatever socket file is at the path when it closes a
        // socket it bound itself (another daemon's, by then), and binds no path over 103 bytes.
        let channel = try Server.adopt(fd, into: bootstrap) { _ = socketFile.removeIfStillOurs() }
        // SwiftNIO listens again on a socket it is given, with its default backlog (128).
        listen(fd, Server.backlog)
        return (channel, socketFile)
    }

    /// The server channel SwiftNIO makes of the listening socket `fd`. Where SwiftNIO refuses it, `refused` runs
    /// and `fd` is closed unless SwiftNIO closed it: it does once its channel exists (`ServerBootstrap.bind0` closes
    /// the channel on a failure of the options, the initializer or the registration), and does not when making the
    /// channel fails (`ServerSocketChannel.init(socket:eventLoop:group:)` throws, on `listen` say, with the
    /// descriptor left open). Which it was shows in whether `fd` still refers to the same socket. `refused` runs
    /// while the socket is open either way, held by a second descriptor (see ``SocketFile``).
    static func adopt(_ fd: Int32, into bootstrap: ServerBootstrap, refused: () -> Void = {}) throws -> any Channel {
        let identity = socketIdentity(fd)
        let holder = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        defer { if holder >= 0 { close(holder) } }
        do {
            return try bootstrap.withBoundSocket(fd).wait()
        } catch {
            let stillOpen = identity != nil && socketIdentity(fd) == identity
            refused()
            if stillOpen { close(fd) }
            throw error
        }
    }

    /// The device and inode of the socket `fd` refers to, which no other open socket has.
    private static func socketIdentity(_ fd: Int32) -> [UInt64]? {
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return nil }
        return [UInt64(info.st_dev), UInt64(info.st_ino)]
    }

    /// Makes `directory`, and those above it that are missing, with mode 0755 whatever the umask: under umask 000
    /// they would be writable by anyone, who could then put a socket of their own in place of the daemon's. A
    /// directory that exists is left as it is. The mode is set through a descriptor opened without following a
    /// symbolic link, and only on a directory of this process's user: one put in place of the new directory by
    /// someone who may write its parent is refused, not given the mode.
    static func makeSocketDirectory(_ directory: String) throws {
        func refusal(_ code: Int32) -> any Error { cannotMake(directory, code) }
        var info = stat()
        if stat(directory, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw refusal(ENOTDIR) }
            return
        }
        guard errno == ENOENT else { throw refusal(errno) }
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != directory { try makeSocketDirectory(parent) }
        guard mkdir(directory, 0o755) == 0 else {
            // One made meanwhile by another process is that process's to set.
            if errno == EEXIST { return }
            throw refusal(errno)
        }
        let made = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard made >= 0 else {
            let code = errno
            throw DaemonConfiguration.Problem(
                description:
                    "\(directory) is no longer the directory incidentd made for the socket (\(String(cString: strerror(code)))); someone who may write \((directory as NSString).deletingLastPathComponent) replaced it: refusing to use it")
        }
        defer { close(made) }
        guard fstat(made, &info) == 0, info.st_uid == geteuid() else {
            throw DaemonConfiguration.Problem(
                description:
                    "\(directory) is no longer the directory incidentd made for the socket (it belongs to uid \(info.st_uid)); someone who may write \((directory as NSString).deletingLastPathComponent) replaced it: refusing to use it")
        }
        guard fchmod(made, 0o755) == 0 else { throw refusal(errno) }
    }

    /// Refuses a socket directory in which another user could put a socket of their own at the daemon's path, for
    /// its clients to send their requests to, now or while the daemon is stopped: one that its group or others may
    /// write (sticky or not: the sticky bit keeps them from replacing the daemon's socket, not from binding the name
    /// first), one that belongs to a user other than the daemon's or root, one below a directory such a user could
    /// rename it out of, or a path through a symbolic link of such a user. Every directory from `/` down is looked
    /// at, after the links of the path as given: /tmp (1777, root's) may lie above the socket's directory, not be it.
    static func checkSocketDirectory(_ directory: String) throws {
        let daemonUser = geteuid()
        // A directory that does not exist yet is made in the nearest one that does, which is checked as the
        // directories above a socket's are, and must let the daemon make it there.
        let existing: String
        let info: stat
        switch SocketDirectoryRules.nearestExisting(directory) {
        case .success(let found): (existing, info) = found
        case .failure(let failure) where failure.code == ENOENT: return
        case .failure(let failure): throw cannotMake(directory, failure.code)
        }
        let exists = existing == directory
        if !exists {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { throw cannotMake(directory, ENOTDIR) }
            guard faccessat(AT_FDCWD, existing, W_OK | X_OK, AT_EACCESS) == 0 else { throw cannotMake(directory, errno) }
        }
        if let fault = SocketDirectoryRules.fault(reaching: existing, isSocketDirectory: exists, trusting: daemonUser) {
            throw UnsafeSocketDirectory(
                description:
                    "the socket's directory \(directory): \(fault.path) (mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) \(fault.problem): they could put a socket of their own where incidentd's clients connect. Give a socket path in a directory that only root or incidentd's user (\(SocketDirectoryRules.describeUser(daemonUser))) may write, below directories that only they may write or that are sticky (as /tmp), such as /run/incidentd; for clients of other users to trust a daemon that is not root's, a directory of its user's must sit in one only root may write (as /run)")
        }
    }

    /// Why the socket's `directory` cannot be made: `code` is the `errno` of the step that failed.
    private static func cannotMake(_ directory: String, _ code: Int32) -> any Error {
        failure("cannot create the socket's directory \(directory): \(String(cString: strerror(code)))", code)
    }

    /// A failure to make or bind the socket, described by `description`, for `errno` `code`: one that lasts until
    /// the configuration changes (permission denied, a read-only file system: ``LogError/isLasting(_:)``) is an
    /// ``UnusableSocketPath``, for which the daemon exits 78 and systemd does not restart it; any other (a full disk,
    /// descriptors short) may pass, and is a start that failed (exit 1).
    static func failure(_ description: String, _ code: Int32) -> any Error {
        LogError.isLasting(code)
            ? UnusableSocketPath(description: description) : DaemonConfiguration.Problem(description: description)
    }


    /// Connections waiting to be accepted before the kernel refuses more.
    static let backlog: Int32 = 1024

    /// The address of the Unix socket at `path`, whose length ``DaemonConfiguration/checkSocketPath()`` checked.
    static func address(of path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw DaemonConfiguration.Problem(description: "socket path \(path) is too long for a Unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        return address
    }

    /// A Unix stream socket listening at `path` with `mode`, and the file it made there. It is bound in a
    /// directory of its own made beside `path` (mode 0700 from `mkdtemp`: nobody else can reach, replace or
    /// connect to what is in it), given its mode and made to listen there, and only then linked to `path`: at
    /// `path` it is never more open than `mode`, never a socket nobody answers, and never given its mode through a
    /// name that someone else could meanwhile have made a symbolic link. Linking, unlike renaming, fails where
    /// `path` exists by then (another daemon bound it since ``removeStaleSocket(at:)``), as `bind` itself would.
    /// Nothing here changes the process's umask, which every thread shares.
    static func bindSocket(at path: String, mode: mode_t) throws -> (descriptor: Int32, file: SocketFile) {
        func problem(_ what: String?, _ code: Int32) -> any Error {
            failure("cannot bind the socket \(path): \(what.map { "\($0): " } ?? "")\(String(cString: strerror(code)))", code)
        }
        let directory = (path as NSString).deletingLastPathComponent
        let (privatePath, privateDirectory) = try makePrivateDirectory(in: directory.isEmpty ? "." : directory, problem: problem)
        defer {
            // Removed while still locked: a daemon starting meanwhile leaves it alone until it is gone.
            unlinkat(privateDirectory, "s", 0)
            rmdir(privatePath)
            close(privateDirectory)
        }
        // Through /proc when the private directory's path leaves no room in sun_path for the name.
        let bindPath = privatePath.utf8.count + 2 <= DaemonConfiguration.maxSocketPathBytes
            ? privatePath + "/s" : "/proc/self/fd/\(privateDirectory)/s"
        var address = try address(of: bindPath)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw problem("socket", errno) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw problem(nil, code)
        }
        var info = stat()
        guard fchmodat(privateDirectory, "s", mode, 0) == 0, fstatat(privateDirectory, "s", &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            let code = errno
            close(fd)
            throw problem("setting its mode in \(privatePath)", code)
        }
        // Listening before it has its name: a second daemon checking the path finds it served, not stale.
        listen(fd, backlog)
        guard linkat(privateDirectory, "s", AT_FDCWD, path, 0) == 0 else {
            let code = errno
            close(fd)
            if code == EEXIST {
                throw DaemonConfiguration.Problem(
                    description: "cannot bind the socket \(path): another process made it meanwhile; refusing to replace it")
            }
            throw problem("link", code)
        }
        return (fd, SocketFile(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
    }

    /// Whether `name` is one ``bindSocket(at:mode:)`` gives its private directory: `.incidentd-` and the six letters or
    /// digits `mkdtemp` chose.
    static func isPrivateDirectoryName(_ name: String) -> Bool {
        let prefix = ".incidentd-"
        guard name.hasPrefix(prefix) else { return false }
        let suffix = name.utf8.dropFirst(prefix.utf8.count)
        return suffix.count == 6 && suffix.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
    }

    /// The names in the directory open at `fd` but `.` and `..`; nil when it cannot be read.
    private static func entries(of fd: Int32) -> [String]? {
        let listing = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard listing >= 0 else { return nil }
        guard let stream = fdopendir(listing) else {
            close(listing)
            return nil
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Removes the private directories that daemons killed while binding left in `directory` (beside the socket,
    /// see ``bindSocket(at:mode:)``), and returns their paths. Only a directory named as that makes them, itself and
    /// not a symbolic link to one, of this process's user, holding nothing or only the socket `s`, and not locked by a
    /// daemon binding in it now, is removed; anything else is left as it is, and nothing is followed through a link.
    static func removeStalePrivateDirectories(in directory: String) -> [String] {
        let parent = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parent >= 0 else { return [] }
        defer { close(parent) }
        var removed: [String] = []
        for name in entries(of: parent) ?? [] where isPrivateDirectoryName(name) {
            let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_uid == geteuid(), flock(fd, LOCK_EX | LOCK_NB) == 0,
                let inside = entries(of: fd), inside.isEmpty || inside == ["s"]
            else { continue }
            if !inside.isEmpty {
                var socketInfo = stat()
                guard fstatat(fd, "s", &socketInfo, AT_SYMLINK_NOFOLLOW) == 0, (socketInfo.st_mode & S_IFMT) == S_IFSOCK,
                    unlinkat(fd, "s", 0) == 0
                else { continue }
            }
            // Still the directory looked into under that name.
            var named = stat()
            guard fstatat(parent, name, &named, AT_SYMLINK_NOFOLLOW) == 0, named.st_dev == info.st_dev, named.st_ino == info.st_ino,
                unlinkat(parent, name, AT_REMOVEDIR) == 0
            else { continue }
            removed.append((directory as NSString).appendingPathComponent(name))
        }
        return removed
    }

    /// A new directory in `directory`, mode 0700, for ``bindSocket(at:mode:)`` to bind in, open and locked (`flock`)
    /// until it is removed: another daemon starting meanwhile removes only such directories it can lock
    /// (``removeStalePrivateDirectories(in:)``). One removed by such a daemon before it was locked, while it was
    /// still empty, is made again.
    private static func makePrivateDirectory(
        in directory: String, problem: (String?, Int32) -> any Error
    ) throws -> (path: String, descriptor: Int32) {
        var attempts = 0
        while true {
            attempts += 1
            var template = Array("\(directory)/.incidentd-XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { buffer in
                buffer.baseAddress.flatMap(mkdtemp).map { String(cString: $0) }
            }
            guard let privatePath = made else {
                throw problem("cannot make a private directory beside it to bind in", errno)
            }
            let fd = open(privatePath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if fd < 0 {
                let code = errno
                if code == ENOENT && attempts < 8 { continue }
                rmdir(privatePath)
                throw problem("cannot open \(privatePath)", code)
            }
            var held = stat()
            var named = stat()
            guard flock(fd, LOCK_EX) == 0, fstat(fd, &held) == 0 else {
                let code = errno
                close(fd)
                rmdir(privatePath)
                throw problem("cannot lock \(privatePath)", code)
            }
            if lstat(privatePath, &named) == 0 && named.st_dev == held.st_dev && named.st_ino == held.st_ino {
                return (privatePath, fd)
            }
            close(fd)
            if attempts >= 8 { throw problem("\(privatePath) was removed as soon as it was made, \(attempts) times", ENOENT) }
        }
    }

    /// Removes a socket file left by a daemon that died, but refuses to start beside one that still answers, and
    /// beside one it cannot tell: only a connection refused (nobody listens) makes the file stale. A socket this
    /// process may not connect to (EACCES: another user's, mode 0600) may well be served, and replacing it would
    /// send that daemon's clients here. What no restart mends (a file that is no socket, a stale socket or one it
    /// may not connect to for want of permission) is an ``UnusableSocketPath`` (exit 78); a served socket, or one
    /// whose backlog is full, may be gone by the next start (exit 1). Returns whether it removed one.
    @discardableResult
    static func removeStaleSocket(at path: String) throws -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else { return false }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw UnusableSocketPath(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        var address = try address(of: path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw DaemonConfiguration.Problem(
                description: "cannot check whether \(path) is served: socket: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        let code = errno
        if connected == 0 {
            throw DaemonConfiguration.Problem(description: "another daemon is serving \(path)")
        }
        switch code {
        case ECONNREFUSED:
            guard unlink(path) == 0 || errno == ENOENT else {
                let code = errno
                throw failure(
                    "\(path) is a stale socket (nothing listens on it; it belongs to \(SocketDirectoryRules.describeUser(info.st_uid))), but incidentd cannot remove it: \(String(cString: strerror(code))). Remove it, or give another socket path",
                    code)
            }
            return true
        case ENOENT:
            return false
        case EAGAIN:
            throw DaemonConfiguration.Problem(
                description:
                    "\(path) is a socket that a process listens on but accepts no connection from now (its backlog is full); refusing to replace it")
        default:
            throw failure(
                "\(path) is a socket that incidentd cannot connect to (\(String(cString: strerror(code)))), so it cannot tell whether another process serves it; refusing to replace it. If none does, remove it and start again",
                code)
        }
    }

    private static func initialize(
        _ channel: any Channel, executor: RequestExecutor, intake: AppendIntake, configuration: DaemonConfiguration,
        logger: Logger, refusedConnections: RefusedConnections, unservedConnections: UnservedConnections, loopTicks: LoopTicks
    ) -> EventLoopFuture<Void> {
        executor.activity.add(1, ordering: .relaxed)
        let count = executor.connections.wrappingAdd(1, ordering: .relaxed).newValue
        guard count <= configuration.maxConnections else {
            executor.connections.subtract(1, ordering: .relaxed)
            refusedConnections.note(
                "incidentd already serves \(configuration.maxConnections) connection\(configuration.maxConnections == 1 ? "" : "s"), the most \(configuration.maxConnectionsOrigin) allows",
                slots: executor.connectionSlots, logger: logger)
            let line = Response.failure(id: .null, ProtocolError(
                .tooManyConnections,
                "incidentd already serves \(configuration.maxConnections) connection\(configuration.maxConnections == 1 ? "" : "s") (\(configuration.maxConnectionsOrigin)); try again later"))
            // The initializer runs before the channel is registered, so nothing can be written yet (a write here
            // never completes, and the connection would hang unserved with its descriptor held): answer once active.
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RefusalHandler(line: line))
            }
        }
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let credentials: EventLoopFuture<incidentd_ucred> = provider.unsafeGetSocketOption(
            level: .socket, name: .init(rawValue: incidentd_so_peercred())
        ).flatMapErrorThrowing { error in throw UnreadCredentials(error: error) }
        let groups = PeerGroups.read(provider, on: channel.eventLoop)
        return credentials.and(groups).flatMap { cred, groups in
            let peer = PeerIdentity.resolve(uid: cred.uid, gid: cred.gid, pid: cred.pid, supplementaryGroups: groups)
            let role = executor.access.role(of: peer)
            if let refusal = Server.slotRefusal(
                for: peer, holding: role, count: count, configuration: configuration, slots: executor.connectionSlots)
            {
                executor.connections.subtract(1, ordering: .relaxed)
                refusedConnections.note(refusal.logged, slots: executor.connectionSlots, logger: logger)
                let line = Response.failure(id: .null, ProtocolError(.tooManyConnections, refusal.answer))
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RefusalHandler(line: line))
                }
            }
            return channel.eventLoop.makeCompletedFuture {
                let handler = ConnectionHandler(
                    executor: executor, intake: intake, turns: loopTicks.turns(for: channel.eventLoop), peer: peer, role: role,
                    maxPending: configuration.maxPendingPerConnection,
                    maxLineBytes: configuration.maxLineBytes, logger: logger)
                do {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(
                            LineFrameDecoder(maxLineBytes: configuration.maxLineBytes, budget: executor.unfinishedLines)))
                    try channel.pipeline.syncOperations.addHandler(handler)
                } catch {
                    handler.giveBackSlot()
                    throw error
                }
            }
        }.flatMapErrorThrowing { error in
            executor.connections.subtract(1, ordering: .relaxed)
            channel.close(promise: nil)
            unservedConnections.note(error, logger: logger)
            throw error
        }
    }
}

extension Server {
    /// Why a connection of `peer`, holding `role`, the `count`th the daemon serves, is refused though within
    /// `max_connections`: the last ``ConnectionSlots/reservedForAdmins(of:)`` of them are an admin's, and a uid may hold
    /// `max_connections_per_uid` (root and the daemon's own user any number). Nil when it is served, with a slot taken.
    static func slotRefusal(
        for peer: PeerIdentity, holding role: Role?, count: Int, configuration: DaemonConfiguration, slots: ConnectionSlots
    ) -> (answer: String, logged: String)? {
        let maximum = configuration.maxConnections
        let reserved = ConnectionSlots.reservedForAdmins(of: maximum)
        if role != .admin && count > maximum - reserved {
            let text = "incidentd already serves \(maximum - reserved) connections and keeps the other \(reserved) of \(configuration.maxConnectionsOrigin) (\(maximum)) for admins"
            return ("\(text); try again later", "\(peer.user) (uid \(peer.uid)) holds no admin role: \(text)")
        }
        let unlimited = peer.uid == 0 || peer.uid == getuid()
        guard !slots.take(peer, limit: unlimited ? .max : configuration.maxConnectionsPerUID) else { return nil }
        let limit = configuration.maxConnectionsPerUID
        let text = "\(peer.user) (uid \(peer.uid)) already holds \(limit) connection\(limit == 1 ? "" : "s"), the most max_connections_per_uid allows"
        return ("\(text); close one, or try again later", text)
    }
}

/// The peer credentials (`SO_PEERCRED`) of a connection could not be read: it is closed unserved, since its role
/// depends on them.
struct UnreadCredentials: Error, CustomStringConvertible {
    let error: any Error
    var description: String { "reading the peer's credentials (SO_PEERCRED) failed: \(error)" }
}

/// Connections closed before they were served, because their peer's credentials could not be read or their
/// handlers not added: a warning line at once, then at most one a minute, each saying how many since the last, so
/// that a client reconnecting in a loop does not flood the journal.
final class UnservedConnections: Sendable {
    private let throttle = Mutex(LineThrottle(interval: 60_000_000_000))

    func note(_ error: any Error, logger: Logger) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let closed = throttle.withLock({ $0.note(at: now) }) else { return }
        logger.warning(
            "closed \(closed) connection\(closed == 1 ? "" : "s") unserved since the last such line, the last because \(error is UnreadCredentials ? "" : "setting it up failed: ")\(error)")
    }
}

/// A socket directory that another user could put a socket of their own in (``Server/checkSocketDirectory(_:)``):
/// a configuration problem, for which the daemon exits with status 78 as for the others.
struct UnsafeSocketDirectory: Error, CustomStringConvertible {
    let description: String
}

/// A socket path the daemon cannot make or bind for a reason that lasts until the configuration changes: a socket
/// directory it may not make, a directory it may not write its socket in, a read-only file system
/// (``Server/failure(_:_:)``). A configuration problem, exit status 78, as an unsafe socket directory is.
struct UnusableSocketPath: Error, CustomStringConvertible {
    let description: String
}

/// Answers a connection over `max_connections` with one error line, then closes it; what the client sends is
/// dropped.
private final class RefusalHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let line: [UInt8]

    init(line: [UInt8]) { self.line = line }

    /// Added once the peer's credentials were read, the channel may be active already.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { answer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        answer(context: context)
        context.fireChannelActive()
    }

    private func answer(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: line.count)
        buffer.writeBytes(line)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Connections refused past `max_connections`, in the daemon's log: the first at once, then at most one line a
/// minute with how many were refused since the last (``LineThrottle``).
/// Says in the log, at most once a minute, that accepting a connection failed (for want of descriptors, most
/// likely), which ``AcceptBackoffHandler`` otherwise answers in silence by pausing the listener.
final class AcceptFailureLog: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let logger: Logger
    private var throttle = LineThrottle(interval: 60_000_000_000)

    init(logger: Logger) { self.logger = logger }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let failures = throttle.note(at: DispatchTime.now().uptimeNanoseconds) else { return }
        logger.error(
            "accepting a connection failed \(failures) time\(failures == 1 ? "" : "s") since the last such line (\(error)); incidentd waits a second before it accepts again. If it ran out of descriptors, raise LimitNOFILE (or ulimit -n)")
    }
}

final class RefusedConnections: Sendable {
    private let throttle = Mutex(LineThrottle(interval: 60_000_000_000))

    /// A connection was refused for `reason`; the line names the uid holding the most connections.
    func note(_ reason: @autoclosure () -> String, slots: ConnectionSlots, logger: Logger) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let refused = throttle.withLock({ $0.note(at: now) }) else { return }
        let most = slots.largestHolder().map { "; the most are held by \($0)" } ?? ""
        logger.warning(
            "refused \(refused) connection\(refused == 1 ? "" : "s") since the last such line: \(reason())\(most)")
    }
}

/// The socket file a daemon made, by device and inode as it was right after `bind`: at the daemon's end the path is
/// removed only while it still names that file. Another daemon may have put its own socket there meanwhile (after
/// this one's was removed by hand), and removing that would cut its clients off. The comparison holds only while
/// the listening socket is open: the bound socket keeps its file's inode allocated, removed or not, so that no
/// other file can have its number until it is closed.
struct SocketFile: Sendable, Equatable {
    let path: String
    let device: UInt64
    let inode: UInt64

    /// What ``removeIfStillOurs()`` found at the path.
    enum Removal: Sendable { case removed, missing, replaced }

    /// Removes the path if it still names this socket file, and leaves anything else there.
    func removeIfStillOurs() -> Removal {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .missing }
        guard (info.st_mode & S_IFMT) == S_IFSOCK, UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode else {
            return .replaced
        }
        return unlink(path) == 0 ? .removed : .missing
    }
}
