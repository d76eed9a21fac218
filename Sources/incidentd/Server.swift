import CShims
import Foundation
import IncidentProtocol
import Logging
import NIOCore
import NIOPosix
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
    let refusedConnections = RefusedConnections()

    init(executor: RequestExecutor, intake: AppendIntake, configuration: DaemonConfiguration, logger: Logger) {
        self.executor = executor
        self.intake = intake
        self.configuration = configuration
        self.logger = logger
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, System.coreCount))
    }

    /// Binds the socket and starts accepting. `inheritedDescriptor` is a listening socket from systemd.
    func start(inheritedDescriptor: Int32?) throws -> any Channel {
        let executor = self.executor
        let intake = self.intake
        let configuration = self.configuration
        let logger = self.logger
        let refusedConnections = self.refusedConnections
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
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
                    refusedConnections: refusedConnections)
            }
        if let fd = inheritedDescriptor {
            return try bootstrap.withBoundSocket(fd).wait()
        }
        let path = configuration.socketPath
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        try Server.removeStaleSocket(at: path)
        // The socket is created with the final mode: no window in which it is more open than configured.
        let previousMask = umask(~configuration.socketMode & 0o777)
        defer { umask(previousMask) }
        let channel = try bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).wait()
        chmod(path, configuration.socketMode)
        return channel
    }

    /// Removes a socket file left by a daemon that died, but refuses to start beside one that still answers.
    static func removeStaleSocket(at path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw DaemonConfiguration.Problem(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw DaemonConfiguration.Problem(description: "socket path \(path) is too long for a Unix socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 {
            throw DaemonConfiguration.Problem(description: "another daemon is serving \(path)")
        }
        unlink(path)
    }

    private static func initialize(
        _ channel: any Channel, executor: RequestExecutor, intake: AppendIntake, configuration: DaemonConfiguration,
        logger: Logger, refusedConnections: RefusedConnections
    ) -> EventLoopFuture<Void> {
        executor.activity.add(1, ordering: .relaxed)
        let count = executor.connections.wrappingAdd(1, ordering: .relaxed).newValue
        guard count <= configuration.maxConnections else {
            executor.connections.subtract(1, ordering: .relaxed)
            refusedConnections.note(limit: configuration.maxConnections, logger: logger)
            let line = Response.failure(id: .null, ProtocolError(
                .tooManyConnections,
                "incidentd already serves \(configuration.maxConnections) connections (max_connections); try again later"))
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
            level: .socket, name: .init(rawValue: incidentd_so_peercred()))
        return credentials.flatMap { cred in
            let peer = PeerIdentity.resolve(uid: cred.uid, gid: cred.gid, pid: cred.pid)
            let role = executor.access.role(of: peer)
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    ByteToMessageHandler(
                        LineFrameDecoder(maxLineBytes: configuration.maxLineBytes, budget: executor.unfinishedLines)))
                try channel.pipeline.syncOperations.addHandler(
                    ConnectionHandler(
                        executor: executor, intake: intake, peer: peer, role: role,
                        maxPending: configuration.maxPendingPerConnection,
                        maxLineBytes: configuration.maxLineBytes, logger: logger))
            }
        }.flatMapErrorThrowing { error in
            executor.connections.subtract(1, ordering: .relaxed)
            channel.close(promise: nil)
            throw error
        }
    }
}

/// Answers a connection over `max_connections` with one error line, then closes it; what the client sends is
/// dropped.
private final class RefusalHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let line: [UInt8]

    init(line: [UInt8]) { self.line = line }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: line.count)
        buffer.writeBytes(line)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Connections refused past `max_connections`, in the daemon's log: the first at once, then at most one line a
/// minute with how many were refused since the last (``LineThrottle``).
final class RefusedConnections: Sendable {
    private let throttle = Mutex(LineThrottle(interval: 60_000_000_000))

    func note(limit: Int, logger: Logger) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let refused = throttle.withLock({ $0.note(at: now) }) else { return }
        logger.warning(
            "refused \(refused) connection\(refused == 1 ? "" : "s") since the last such line: incidentd already serves max_connections (\(limit))")
    }
}
