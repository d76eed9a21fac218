import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn` and reaped with `waitpid`.
///
/// Not `Foundation.Process`: on Linux it learns that a child ended when a socketpair end it leaves in the child
/// is closed, and it opens that socketpair without close-on-exec and closes the other descriptors of a new child
/// by a scan of the open ones at that moment. With tests spawning from many threads at once, one child's socket
/// leaks into another (a daemon that lives for the whole test) and `waitUntilExit` never returns. Here every
/// descriptor but 0, 1 and 2 is closed in the child (`closefrom`), pipes are close-on-exec, and the exit is
/// waited for by pid.
final class ChildProcess: @unchecked Sendable {
    // Safe: `status` is only touched under `lock`.
    let pid: pid_t
    private let lock = NSLock()
    private var status: Int32?

    /// Starts `path` with `arguments`; its standard descriptors are `stdin`, `stdout` and `stderr` of this process,
    /// and its descriptor 3 is `descriptor3` when given (a listening socket, as systemd passes one).
    init(
        _ path: String, _ arguments: [String], environment: [String: String], stdin: Int32, stdout: Int32, stderr: Int32,
        descriptor3: Int32? = nil
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        if let descriptor3 { posix_spawn_file_actions_adddup2(&actions, descriptor3, 3) }
        guard GNU.addCloseFrom(&actions, descriptor3 == nil ? 3 : 4) == 0 else { throw HarnessError("posix_spawn_file_actions_addclosefrom_np failed") }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A clean signal state: nothing blocked, every signal at its default (this thread may block some).
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard result == 0 else { throw HarnessError("posix_spawn \(path): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            _ = wait()
        }
    }

    /// Whether the child has not ended yet; reaps it if it has.
    var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return reap(blocking: false) == nil
    }

    /// Waits for the child to end: its exit status, or the number of the signal that ended it (as
    /// `Foundation.Process.terminationStatus`).
    @discardableResult
    func wait() -> Int32 {
        lock.lock()
        defer { lock.unlock() }
        return reap(blocking: true) ?? -1
    }

    /// Whether the child ended by a signal.
    var wasSignaled: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let status else { return false }
        return status & 0x7F != 0 && status & 0x7F != 0x7F
    }

    private func reap(blocking: Bool) -> Int32? {
        if status == nil {
            var raw: Int32 = 0
            var result: pid_t
            repeat {
                result = waitpid(pid, &raw, blocking ? 0 : WNOHANG)
            } while result == -1 && errno == EINTR
            if result == pid { status = raw }
            if result == -1 { status = 0x7F00 }  // ECHILD: somebody else reaped it; report exit status 127
        }
        guard let status else { return nil }
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : signal
    }
}

/// The GNU extensions this file needs, which Swift's Glibc module does not show (they need _GNU_SOURCE).
private enum GNU {
    static func symbol<T>(_ name: String, as type: T.Type) -> T {
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { fatalError("glibc has no \(name)") }
        return unsafeBitCast(address, to: type)
    }

    nonisolated(unsafe) static let addCloseFrom = symbol(
        "posix_spawn_file_actions_addclosefrom_np",
        as: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    nonisolated(unsafe) static let pipe2 = symbol(
        "pipe2", as: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
}

/// A pipe whose two ends are close-on-exec, so that no other child inherits them.
struct CloseOnExecPipe {
    let read: Int32
    let write: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard GNU.pipe2(&fds, O_CLOEXEC) == 0 else { throw HarnessError("pipe2: \(String(cString: strerror(errno)))") }
        read = fds[0]
        write = fds[1]
    }
}

/// The whole file at `path` as text, or nil if it cannot be opened. Not `String(contentsOfFile:)`: that stops
/// after 4 KiB of a /proc file, and under LeakSanitizer it leaks its buffer when it reads an empty file (a
/// daemon's log just after start).
func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    return String(decoding: readToEnd(fd), as: UTF8.self)
}

/// Reads a descriptor to its end, then closes it.
func readToEnd(_ fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[0..<n])
        } else if n == 0 || errno != EINTR {
            break
        }
    }
    close(fd)
    return data
}

/// A child that exits before reading its standard input must not take the tests down with SIGPIPE: writes to
/// its pipe fail with EPIPE instead.
func ignoreBrokenPipes() { _ = brokenPipesIgnored }
private let brokenPipesIgnored: Void = { signal(SIGPIPE, SIG_IGN) }()
