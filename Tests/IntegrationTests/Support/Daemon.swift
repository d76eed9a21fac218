import Foundation
import IncidentProtocol
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where the built executables are: beside the test bundle, or `$INCIDENTD_BIN_DIR`.
enum Binaries {
    static let directory: String = {
        if let dir = ProcessInfo.processInfo.environment["INCIDENTD_BIN_DIR"] { return dir }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("incidentd").path) { return url.path }
        }
        return ".build/debug"
    }()

    static var incidentd: String { directory + "/incidentd" }
    static var incidentctl: String { directory + "/incidentctl" }
}

/// A fresh temporary directory, removed by `remove()`.
func makeTemporaryDirectory(_ label: String = "incidentd-test") -> String {
    var template = Array("/tmp/\(label)-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String in
        guard let result = mkdtemp(buffer.baseAddress!) else { return "/tmp/\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" }
        return String(cString: result)
    }
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` until it holds or `timeout` passes; never a bare sleep as synchronisation.
func waitFor(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(10_000)
    }
    throw HarnessError("timed out after \(timeout)s waiting for \(what)")
}

/// Waits until the `incidentctl` of `pid` waits for the daemon's answer: in poll, for at most its timeout (or, given
/// none, in the socket's read).
func waitForAnswerWait(of pid: pid_t) throws {
    try waitFor("the command to wait for its answer") {
        let waitingIn = readFile("/proc/\(pid)/wchan") ?? ""
        return waitingIn.contains("poll") || waitingIn.contains("unix_stream_read")
    }
}

/// The real `incidentd`, started on a temporary socket and data directory.
final class Daemon {
    let root: String
    let dataDir: String
    let socketPath: String
    let logPath: String
    var extraArguments: [String]
    /// Set in the daemon's environment on top of the test's own.
    var extraEnvironment: [String: String]
    /// The open-file limit (soft and hard) the daemon starts under, set by `prlimit`; the test's own when nil.
    var descriptorLimit: Int?
    /// The running (or last) daemon process; see ``ChildProcess`` for why it is not a `Foundation.Process`.
    private(set) var child: ChildProcess?

    /// Starts a daemon in a new temporary directory and waits until it serves.
    init(arguments: [String] = [], root: String? = nil, environment: [String: String] = [:], descriptorLimit: Int? = nil) throws {
        self.root = root ?? makeTemporaryDirectory()
        dataDir = self.root + "/data"
        socketPath = self.root + "/incidentd.sock"
        logPath = self.root + "/incidentd.log"
        extraArguments = arguments
        extraEnvironment = environment
        self.descriptorLimit = descriptorLimit
        try start()
    }

    deinit {
        if let child, child.isRunning {
            kill(child.pid, SIGKILL)
            child.wait()
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    var pid: Int32 { child?.pid ?? -1 }

    /// Starts the process (again) and waits until its socket accepts connections.
    func start() throws {
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(log)
            close(null)
        }
        guard log >= 0, null >= 0 else { throw HarnessError("cannot open \(logPath): \(String(cString: strerror(errno)))") }
        let command = [Binaries.incidentd, "--data-dir", dataDir, "--socket", socketPath] + extraArguments
        // prlimit sets the limit on itself and executes the daemon in its place: the process is the daemon's.
        let launched = descriptorLimit.map { ["/usr/bin/prlimit", "--nofile=\($0):\($0)", "--"] + command } ?? command
        let child = try ChildProcess(
            launched[0], Array(launched.dropFirst()),
            environment: ProcessInfo.processInfo.environment.merging(extraEnvironment) { _, extra in extra },
            stdin: null, stdout: log, stderr: log)
        self.child = child
        try waitFor("incidentd to serve \(socketPath)") {
            guard child.isRunning else {
                throw HarnessError("incidentd exited with \(child.wait()): \(self.log)")
            }
            return (try? RawClient(path: socketPath)) != nil
        }
    }

    /// The daemon's stderr so far.
    var log: String { readFile(logPath) ?? "" }

    /// SIGTERM, and the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard let child else { return 0 }
        if child.isRunning { kill(child.pid, SIGTERM) }
        return child.wait()
    }

    /// SIGKILL: no chance to clean up.
    func crash() {
        guard let child, child.isRunning else { return }
        kill(child.pid, SIGKILL)
        child.wait()
    }

    func restart() throws {
        stop()
        try start()
    }

    func client() throws -> RawClient { try RawClient(path: socketPath) }

    /// Runs `incidentctl` against this daemon.
    func ctl(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> CommandResult {
        try runCommand(Binaries.incidentctl, arguments, stdin: stdin,
                       environment: environment.merging(["INCIDENTD_SOCKET": socketPath]) { a, _ in a })
    }
}

/// What a finished command printed, and its exit status.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String

    var json: JSONValue? { try? JSONReader(maxDepth: 128).read(stdout.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

/// Runs a program to completion, feeding `stdin`.
func runCommand(_ path: String, _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> CommandResult {
    ignoreBrokenPipes()
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { _, new in new }
    let input = try CloseOnExecPipe()
    let out = try CloseOnExecPipe()
    let err = try CloseOnExecPipe()
    let child: ChildProcess
    do {
        child = try ChildProcess(path, arguments, environment: env, stdin: input.read, stdout: out.write, stderr: err.write)
    } catch {
        [input.read, input.write, out.read, out.write, err.read, err.write].forEach { close($0) }
        throw error
    }
    close(input.read)
    close(out.write)
    close(err.write)
    if let stdin {
        let bytes = Array(stdin.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(input.write, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
    }
    close(input.write)
    // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
    let errData = LockedData()
    let errDone = DispatchSemaphore(value: 0)
    Thread {
        errData.set(readToEnd(err.read))
        errDone.signal()
    }.start()
    let outData = readToEnd(out.read)
    errDone.wait()
    let status = child.wait()
    return CommandResult(
        status: status, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData.get(), as: UTF8.self))
}

final class LockedData: @unchecked Sendable {
    // Safe: every access goes through `lock`.
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data ?? Data() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return data != nil }
}

/// A raw JSON-lines client of the socket, for tests that must see the bytes.
final class RawClient {
    let fd: Int32
    private var framer = LineFramer(maxLineLength: 64 << 20)
    private var lines: [[UInt8]] = []
    private var nextId: Int64 = 1

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 {
            // No close(fd) here: `self` is fully initialized, so deinit runs when this throws and closes it. A
            // second close would close whatever another thread opened under the same number in between (a pipe
            // being handed to posix_spawn, another test's socket).
            let code = errno
            throw HarnessError("connect \(path): \(String(cString: strerror(code)))")
        }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HarnessError("send: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    func writeLine(_ text: String) throws { try write(Array((text + "\n").utf8)) }

    /// Sends a request object (an `id` is added unless present) and returns the id used.
    @discardableResult
    func send(_ op: String, _ body: [String: JSONValue] = [:]) throws -> JSONValue {
        var o = body
        let id = o["id"] ?? .int(nextId)
        nextId += 1
        o["id"] = id
        o["op"] = .string(op)
        try write(JSONValue.object(o).canonicalBytes() + [0x0A])
        return id
    }

    /// The next response line, parsed.
    func receive() throws -> JSONValue {
        try JSONReader(maxDepth: 128).read(try receiveLine())
    }

    /// The next response line as it came, without its newline.
    func receiveLine() throws -> [UInt8] {
        while lines.isEmpty {
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HarnessError("recv: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw HarnessError("the daemon closed the connection") }
            for frame in framer.feed(Array(buffer[0..<n])) {
                if case .line(let line) = frame { lines.append(line) }
            }
        }
        return lines.removeFirst()
    }

    /// One request, one response.
    func call(_ op: String, _ body: [String: JSONValue] = [:]) throws -> JSONValue {
        try send(op, body)
        return try receive()
    }
}

extension JSONValue {
    /// The error code of a failed response.
    var errorCode: String? { self["error"]?["code"]?.stringValue }
    var isOK: Bool { self["ok"]?.boolValue == true }
}
