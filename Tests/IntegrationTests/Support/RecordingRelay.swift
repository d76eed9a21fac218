import Foundation
import IncidentProtocol
import StrictJSON

#if canImport(Glibc)
import Glibc
#endif

/// A Unix socket in front of the daemon's that passes each connection on to it and back, byte for byte, and keeps
/// the lines it passed each way, so that a test can wait for a request a command sends by itself, or for the answer
/// the command got. When the daemon closes a connection the relay closes the client's; a client that connects while
/// the daemon is away is let in and at once disconnected, as by a daemon that stopped.
final class RecordingRelay: @unchecked Sendable {
    // Safe: `sentByClients`, `sentByDaemon`, `listening` and `open` are only touched under `lock`, and a descriptor
    // is shut down only under it, while it is known to be open.
    let path: String
    private let daemonSocket: String
    private let listener: Int32
    private let lock = NSLock()
    private var sentByClients: [JSONValue] = []
    private var sentByDaemon: [JSONValue] = []
    private var open: [Int32] = []
    private var listening = true

    init(path: String, daemonSocket: String) throws {
        self.path = path
        self.daemonSocket = daemonSocket
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var address = Self.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(listener)
            throw HarnessError("relay at \(path): \(reason)")
        }
        Thread { self.acceptConnections() }.start()
    }

    /// The requests clients sent through the relay so far, in order.
    var requests: [JSONValue] { lock.withLock { sentByClients } }

    /// The lines the daemon sent back through the relay so far, in order.
    var answers: [JSONValue] { lock.withLock { sentByDaemon } }

    /// Stops accepting and ends every connection passing through.
    func close() {
        lock.withLock {
            if listening { shutdown(listener, Int32(SHUT_RDWR)) }
            for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8).prefix($0.count - 1)) }
        return address
    }

    private func acceptConnections() {
        defer {
            lock.withLock {
                listening = false
                Glibc.close(listener)
            }
        }
        while true {
            // Every child the tests start closes the descriptors it inherits (ChildProcess): no need for accept4's
            // close-on-exec, which Glibc's module does not show.
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            let daemon = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = Self.address(daemonSocket)
            let connected = daemon >= 0 && withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(daemon, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            } == 0
            guard connected else {
                if daemon >= 0 { Glibc.close(daemon) }
                Glibc.close(client)
                continue
            }
            lock.withLock { open += [client, daemon] }
            let pair = ConnectionPair(client: client, daemon: daemon) { fds in
                self.lock.withLock { self.open.removeAll { fds.contains($0) } }
            }
            Thread { pair.pass(from: client, to: daemon) { line in self.lock.withLock { self.sentByClients.append(line) } } }.start()
            Thread { pair.pass(from: daemon, to: client) { line in self.lock.withLock { self.sentByDaemon.append(line) } } }.start()
        }
    }
}

/// One connection through the relay: the client's socket and the daemon's, closed when both directions are done.
private final class ConnectionPair: @unchecked Sendable {
    // Safe: `running` is only touched under `lock`.
    private let client: Int32
    private let daemon: Int32
    private let closed: @Sendable ([Int32]) -> Void
    private let lock = NSLock()
    private var running = 2

    init(client: Int32, daemon: Int32, closed: @escaping @Sendable ([Int32]) -> Void) {
        self.client = client
        self.daemon = daemon
        self.closed = closed
    }

    /// Copies what `source` receives to `destination` until either side ends, handing each whole line to `record`;
    /// then ends both.
    func pass(from source: Int32, to destination: Int32, record: (JSONValue) -> Void) {
        var framer = LineFramer(maxLineLength: 64 << 20)
        var buffer = [UInt8](repeating: 0, count: 65536)
        copying: while true {
            let count = buffer.withUnsafeMutableBytes { recv(source, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            var offset = 0
            while offset < count {
                let sent = buffer[offset..<count].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent < 0 && errno == EINTR { continue }
                if sent <= 0 { break copying }
                offset += sent
            }
            for frame in framer.feed(Array(buffer[0..<count])) {
                if case .line(let line) = frame, let value = try? JSONReader(maxDepth: 128).read(line) { record(value) }
            }
        }
        shutdown(client, Int32(SHUT_RDWR))
        shutdown(daemon, Int32(SHUT_RDWR))
        let last = lock.withLock {
            running -= 1
            return running == 0
        }
        guard last else { return }
        closed([client, daemon])
        Glibc.close(client)
        Glibc.close(daemon)
    }
}
