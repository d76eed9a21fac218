#if canImport(Glibc)
import Glibc
#endif
import Histogram

/// Nanoseconds on the monotonic clock.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A connected Unix-domain stream socket.
func connectUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    if result != 0 {
        let code = errno
        close(fd)
        throw BenchError("connect \(path): \(String(cString: strerror(code)))")
    }
    return fd
}

/// A latency histogram in nanoseconds, 1 µs to 100 s, three significant digits.
func makeHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(lowestDiscernibleValue: 1_000, highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
}

/// What one load phase measured.
struct PhaseResult {
    var requests: Int
    var seconds: Double
    var latency: Histogram<UInt64>
    var firstError: String?
    /// What the daemon and the machine did meanwhile.
    var diagnostics: PhaseDiagnostics?

    var perSecond: Double { Double(requests) / seconds }
}

/// Drives many connections from one thread with `poll`: each connection keeps up to `window` requests in
/// flight, pipelined, and takes the next from its script as each response arrives. A response must say
/// `"ok":true`; latency is from the moment a request is handed to the socket to the moment its response line
/// is read. The client does as little as possible (pre-built lines, newline scanning) so that the daemon,
/// not the load generator, is what is measured on this two-core machine.
final class PipelinedLoad {
    private final class Connection {
        let fd: Int32
        let script: RequestScript
        var nextLine = 0
        var sendCursor = 0
        var acked = 0
        var sentAt: [UInt64]
        var partial: [UInt8] = []

        init(fd: Int32, script: RequestScript) {
            self.fd = fd
            self.script = script
            sentAt = [UInt64](repeating: 0, count: script.count)
        }

        var done: Bool { acked == script.count }
    }

    private let connections: [Connection]
    private let window: Int

    init(socketPath: String, scripts: [RequestScript], window: Int) throws {
        var connections: [Connection] = []
        for script in scripts {
            let fd = try connectUnix(socketPath)
            var size: Int32 = 1 << 20
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            connections.append(Connection(fd: fd, script: script))
        }
        self.connections = connections
        self.window = window
    }

    deinit {
        for c in connections { close(c.fd) }
    }

    func run() throws -> PhaseResult {
        var histogram = makeHistogram()
        var firstError: String?
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        var pollfds = connections.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let total = connections.reduce(0) { $0 + $1.script.count }
        var completed = 0
        let start = monotonicNanos()
        while completed < total {
            let now = monotonicNanos()
            for (i, c) in connections.enumerated() {
                // Admit requests up to the window, then push out whatever the socket takes.
                while c.nextLine < c.script.count && c.nextLine - c.acked < window {
                    c.sentAt[c.nextLine] = now
                    c.nextLine += 1
                }
                let end = c.script.offsets[c.nextLine]
                if c.sendCursor < end {
                    let n = c.script.bytes.withUnsafeBytes { raw in
                        send(c.fd, raw.baseAddress! + c.sendCursor, end - c.sendCursor, Int32(MSG_NOSIGNAL))
                    }
                    if n > 0 {
                        c.sendCursor += n
                    } else if n < 0 && errno != EAGAIN && errno != EINTR {
                        throw BenchError("send: \(String(cString: strerror(errno)))")
                    }
                }
                pollfds[i].events = Int16(POLLIN) | (c.sendCursor < end ? Int16(POLLOUT) : 0)
            }
            let ready = poll(&pollfds, nfds_t(pollfds.count), 10_000)
            if ready == 0 { throw BenchError("no response for 10 s (\(completed) of \(total) done)") }
            if ready < 0 {
                if errno == EINTR { continue }
                throw BenchError("poll: \(String(cString: strerror(errno)))")
            }
            for (i, c) in connections.enumerated() where pollfds[i].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                while true {
                    let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                    if n < 0 {
                        if errno == EAGAIN || errno == EINTR { break }
                        throw BenchError("recv: \(String(cString: strerror(errno)))")
                    }
                    if n == 0 { throw BenchError("the daemon closed a connection (\(completed) of \(total) done)") }
                    let received = monotonicNanos()
                    buffer.withUnsafeBytes { raw in
                        var lineStart = 0
                        for k in 0..<n where raw[k] == 0x0A {
                            let ok: Bool
                            if c.partial.isEmpty {
                                ok = Self.isOK(UnsafeRawBufferPointer(rebasing: raw[lineStart..<k]))
                            } else {
                                c.partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[lineStart..<k]))
                                ok = c.partial.withUnsafeBytes { Self.isOK($0) }
                            }
                            if !ok && firstError == nil {
                                firstError = c.partial.isEmpty
                                    ? String(decoding: UnsafeRawBufferPointer(rebasing: raw[lineStart..<k]), as: UTF8.self)
                                    : String(decoding: c.partial, as: UTF8.self)
                            }
                            c.partial.removeAll(keepingCapacity: true)
                            histogram.record(received &- c.sentAt[c.acked])
                            c.acked += 1
                            completed += 1
                            lineStart = k + 1
                        }
                        if lineStart < n { c.partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[lineStart..<n])) }
                    }
                    if n < buffer.count { break }
                }
            }
        }
        let seconds = Double(monotonicNanos() - start) / 1e9
        return PhaseResult(requests: total, seconds: seconds, latency: histogram, firstError: firstError)
    }

    /// Whether a response line reports success: canonical responses carry `"ok":true`.
    static func isOK(_ line: UnsafeRawBufferPointer) -> Bool {
        let needle: [UInt8] = Array("\"ok\":true".utf8)
        guard line.count >= needle.count else { return false }
        var i = 0
        while i + needle.count <= line.count {
            if line[i] == needle[0] {
                var k = 1
                while k < needle.count && line[i + k] == needle[k] { k += 1 }
                if k == needle.count { return true }
            }
            i += 1
        }
        return false
    }
}

/// One blocking connection sending one request at a time.
final class SimpleClient {
    let fd: Int32
    private var pending: [UInt8] = []
    private var buffer = [UInt8](repeating: 0, count: 64 << 10)

    init(path: String) throws {
        fd = try connectUnix(path)
    }

    deinit { close(fd) }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError("send: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    /// The next response line, without its newline.
    func receiveLine() throws -> [UInt8] {
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                return line
            }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw BenchError("recv: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw BenchError("the daemon closed the connection") }
            pending.append(contentsOf: buffer[0..<n])
        }
    }

    func call(_ line: [UInt8]) throws -> [UInt8] {
        try line.withUnsafeBytes { try send($0) }
        return try receiveLine()
    }

    /// Sends each line of `script` and waits for its answer before the next: one request at a time.
    func runSequential(_ script: RequestScript) throws -> PhaseResult {
        var histogram = makeHistogram()
        var firstError: String?
        let start = monotonicNanos()
        for i in 0..<script.count {
            let t0 = monotonicNanos()
            try script.bytes.withUnsafeBytes { raw in
                try send(UnsafeRawBufferPointer(rebasing: raw[script.offsets[i]..<script.offsets[i + 1]]))
            }
            let line = try receiveLine()
            histogram.record(monotonicNanos() - t0)
            if firstError == nil && !line.withUnsafeBytes({ PipelinedLoad.isOK($0) }) {
                firstError = String(decoding: line, as: UTF8.self)
            }
        }
        return PhaseResult(
            requests: script.count, seconds: Double(monotonicNanos() - start) / 1e9, latency: histogram, firstError: firstError)
    }
}
