import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `incidentctl` bounds its waits: for the daemon to take the connection (a queue of connections that does not move),
/// and for each answer (a daemon stopped with SIGSTOP, or wedged). A wait that runs out is exit status 3, naming the
/// socket and the wait.
@Suite("incidentctl timeouts")
struct TimeoutTests {
    /// What a timed run of incidentctl said, and how long it took.
    struct TimedRun {
        var result: CommandResult
        var seconds: Double
        /// Set when it was still running at the deadline, and killed.
        var killed: Bool
    }

    /// Runs incidentctl with `arguments` and `environment` on top of the test's own, killing it if it is still running
    /// after `deadline` seconds (a command that waits without limit must not hang the tests).
    static func run(_ arguments: [String], environment: [String: String] = [:], deadline: Double = 30) throws -> TimedRun {
        let root = makeTemporaryDirectory("incidentctl-timeout")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let out = open(root + "/out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let err = open(root + "/err", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { [null, out, err].filter { $0 >= 0 }.forEach { close($0) } }
        guard null >= 0, out >= 0, err >= 0 else { throw HarnessError("cannot open the command's files: \(String(cString: strerror(errno)))") }
        var merged = ProcessInfo.processInfo.environment
        merged.removeValue(forKey: "INCIDENTCTL_TIMEOUT")
        merged.merge(environment) { _, new in new }
        let started = ContinuousClock.now
        let child = try ChildProcess(Binaries.incidentctl, arguments, environment: merged, stdin: null, stdout: out, stderr: err)
        var killed = false
        do {
            try waitFor("incidentctl \(arguments.joined(separator: " ")) to exit", timeout: deadline) { !child.isRunning }
        } catch {
            killed = true
            kill(child.pid, SIGKILL)
        }
        let status = child.wait()
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return TimedRun(
            result: CommandResult(status: status, stdout: readFile(root + "/out") ?? "", stderr: readFile(root + "/err") ?? ""),
            seconds: seconds, killed: killed)
    }

    @Test("a daemon stopped with SIGSTOP: queries, a report and an append (its answer, or the daemon taking a batch larger than the socket holds) give up after --timeout or INCIDENTCTL_TIMEOUT with exit status 3, naming the socket and the wait; the append and the report say that what was sent may or may not be stored; continued, the daemon serves on")
    func stoppedDaemon() throws {
        let daemon = try Daemon()
        let socket = daemon.socketPath
        let file = daemon.root + "/events.jsonl"
        let lines = AppendCommandTests.bulkLines(3, descriptionBytes: 10, prefix: "stopped")
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        #expect(kill(daemon.pid, SIGSTOP) == 0)
        defer { kill(daemon.pid, SIGCONT) }

        let queries: [(arguments: [String], environment: [String: String], limit: String)] = [
            (["status", "--timeout", "1"], [:], "1 second (--timeout)"),
            (["cities"], ["INCIDENTCTL_TIMEOUT": "1.5"], "1.5 seconds (INCIDENTCTL_TIMEOUT)"),
            (["events", "--timeout", "1"], ["INCIDENTCTL_TIMEOUT": "100"], "1 second (--timeout)"),
            (["incident", "stopped-0", "--timeout", "1"], [:], "1 second (--timeout)"),
        ]
        for query in queries {
            let run = try Self.run(query.arguments + ["--socket", socket], environment: query.environment)
            #expect(!run.killed && run.result.status == 3, "\(query.arguments): \(run.result.stderr)")
            #expect(run.seconds >= 1 && run.seconds < 10 * deadlineScale, "\(query.arguments) took \(run.seconds) s")
            #expect(
                run.result.stderr.contains("incidentd at \(socket) did not answer within \(query.limit): it may be stopped, wedged or overloaded"),
                "\(query.arguments): \(run.result.stderr)")
        }

        let append = try Self.run(["append", file, "--timeout", "1", "--socket", socket])
        #expect(!append.killed && append.result.status == 3, "\(append.result.stderr)")
        #expect(
            append.result.stderr.contains(
                "incidentd at \(socket) did not answer within 1 second (--timeout): it may be stopped, wedged or overloaded, with 0 of 3 events acknowledged. Nothing before line 1 was sent; lines 1–3 were sent and may or may not be stored"),
            "\(append.result.stderr)")
        // A batch of about 1 MB, more than the socket holds unread: the wait is for the daemon to take it.
        let large = daemon.root + "/large.jsonl"
        let largeLines = AppendCommandTests.bulkLines(400, descriptionBytes: 2_000, prefix: "large")
        try (largeLines.joined(separator: "\n") + "\n").write(toFile: large, atomically: true, encoding: .utf8)
        let unread = try Self.run(["append", large, "--timeout", "1", "--socket", socket])
        #expect(!unread.killed && unread.result.status == 3, "\(unread.result.stderr)")
        #expect(
            unread.result.stderr.contains(
                "incidentd at \(socket) did not take the request within 1 second (--timeout): it may be stopped, wedged or overloaded, with 0 of 400 events acknowledged. Nothing before line 1 was sent; lines 1–400 were sent and may or may not be stored"),
            "\(unread.result.stderr)")
        let report = try Self.run([
            "report", "--city", "Melitopol", "--kind", "strike", "--occurred", "2022-03-05", "--event-id", "00000000-0000-4000-8000-000000000001",
            "--timeout", "1", "--socket", socket,
        ])
        #expect(!report.killed && report.result.status == 3, "\(report.result.stderr)")
        #expect(
            report.result.stderr.contains("did not answer within 1 second (--timeout): it may be stopped, wedged or overloaded, after the event was sent: it may or may not be stored"),
            "\(report.result.stderr)")

        #expect(kill(daemon.pid, SIGCONT) == 0)
        let status = try Self.run(["status", "--timeout", "10", "--socket", socket])
        #expect(status.result.status == 0, "\(status.result.stderr)")
        #expect(daemon.stop() == 0)
    }

    /// A listening socket at `path` that never takes a connection, its queue of `backlog` waiting ones.
    static func listener(at path: String, backlog: Int32) throws -> Int32 {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            close(fd)
            throw HarnessError("bind or listen \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    @Test("a listener that takes no connections, its queue full: incidentctl gives up connecting after --timeout, and after 10 seconds by default, verify's too, exit status 3 naming the socket; one whose queue has room but that never answers: after --timeout")
    func listenerThatTakesNoConnections() throws {
        let root = makeTemporaryDirectory("incidentctl-listener")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let full = root + "/full.sock"
        let listening = try Self.listener(at: full, backlog: 0)
        defer { close(listening) }
        // A queue of no connections holds one: this one fills it.
        let waiting = try RawClient(path: full)
        defer { withExtendedLifetime(waiting) {} }

        let bounded = try Self.run(["status", "--timeout", "1", "--socket", full])
        #expect(!bounded.killed && bounded.result.status == 3, "\(bounded.result.stderr)")
        #expect(bounded.seconds >= 1 && bounded.seconds < 10, "took \(bounded.seconds) s")
        #expect(
            bounded.result.stderr.contains(
                "incidentd at \(full) did not take the connection within 1 second: the queue of connections waiting for it to take them is full (it may be stopped, wedged or overloaded); nothing was sent"),
            "\(bounded.result.stderr)")
        // A limit below what SO_SNDTIMEO counts (a microsecond) is still a limit, not none.
        let tiny = try Self.run(["status", "--timeout", "0.0000001", "--socket", full], deadline: 10)
        #expect(!tiny.killed && tiny.result.status == 3, "\(tiny.result.stderr)")
        #expect(tiny.result.stderr.contains("did not take the connection within"), "\(tiny.result.stderr)")
        // No limit on verify's answer, but connecting is bounded all the same.
        let byDefault = try Self.run(["verify", "--socket", full])
        #expect(!byDefault.killed && byDefault.result.status == 3, "\(byDefault.result.stderr)")
        #expect(byDefault.seconds >= 10 && byDefault.seconds < 20 * deadlineScale, "took \(byDefault.seconds) s")
        #expect(byDefault.result.stderr.contains("did not take the connection within 10 seconds"), "\(byDefault.result.stderr)")

        let silent = root + "/silent.sock"
        let room = try Self.listener(at: silent, backlog: 16)
        defer { close(room) }
        let unanswered = try Self.run(["city", "Melitopol", "--timeout", "0.5", "--socket", silent])
        #expect(!unanswered.killed && unanswered.result.status == 3, "\(unanswered.result.stderr)")
        #expect(unanswered.seconds >= 0.5 && unanswered.seconds < 10, "took \(unanswered.seconds) s")
        #expect(unanswered.result.stderr.contains("incidentd at \(silent) did not answer within 0.5 seconds (--timeout)"), "\(unanswered.result.stderr)")
    }

    @Test("--timeout and INCIDENTCTL_TIMEOUT that are not a number of seconds are bad usage saying what they take")
    func badTimeouts() throws {
        for (value, said) in [("abc", "'abc' is not a number of seconds, such as 30 or 2.5 (0: no limit)"), ("-1", "'-1' is less than 0"), ("1e3", "'1e3' is not a number of seconds")] {
            let option = try Self.run(["status", "--timeout", value, "--socket", "/nonexistent/incidentd.sock"])
            #expect(option.result.status == 2, "\(value): \(option.result.stderr)")
            #expect(option.result.stderr.contains(said), "\(value): \(option.result.stderr)")
            let environment = try Self.run(["status", "--socket", "/nonexistent/incidentd.sock"], environment: ["INCIDENTCTL_TIMEOUT": value])
            #expect(environment.result.status == 2, "\(value): \(environment.result.stderr)")
            #expect(environment.result.stderr.contains("INCIDENTCTL_TIMEOUT: \(said)"), "\(value): \(environment.result.stderr)")
        }
    }
}
