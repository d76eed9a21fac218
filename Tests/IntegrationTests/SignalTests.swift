import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The signals an operator may send besides SIGTERM: none ends the daemon.
@Suite("Signals")
struct SignalTests {
    @Test("a daemon whose stderr cannot be written (/dev/full) serves, answers SIGHUP and appends, and exits 0 on SIGTERM: log lines it cannot write are dropped, never fatal (QA pass 13, M2)")
    func unwritableStandardError() throws {
        let root = makeTemporaryDirectory("incidentd-stderr")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let full = open("/dev/full", O_WRONLY | O_CLOEXEC)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(full)
            close(null)
        }
        let socket = root + "/incidentd.sock"
        let child = try ChildProcess(
            Binaries.incidentd, ["--data-dir", root + "/data", "--socket", socket],
            environment: ProcessInfo.processInfo.environment, stdin: null, stdout: full, stderr: full)
        try waitFor("incidentd to serve") {
            guard child.isRunning else { throw HarnessError("incidentd exited with \(child.wait())") }
            return (try? RawClient(path: socket).status()) != nil
        }
        kill(child.pid, SIGHUP)
        let client = try RawClient(path: socket)
        #expect(try client.appendEvents([Wire.report(incident: "kupiansk-logless")]).isOK)
        #expect(try RawClient(path: socket).status()["position"]?.intValue == 1)
        kill(child.pid, SIGTERM)
        #expect(child.wait() == 0, "the stopping line is not written either")
    }

    @Test("SIGHUP is answered in the log (no reload: restart it), SIGUSR1 and SIGUSR2 are ignored, and the daemon keeps serving; SIGTERM then exits 0 and removes the socket")
    func hangupDoesNotStop() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        kill(daemon.pid, SIGHUP)
        try waitFor("the SIGHUP line") {
            daemon.log.contains(
                "notice SIGHUP: incidentd does not reload its configuration on SIGHUP; restart it (systemctl restart incidentd) for changes to take effect")
        }
        kill(daemon.pid, SIGUSR1)
        kill(daemon.pid, SIGUSR2)
        try waitFor("the SIGUSR1 and SIGUSR2 lines") {
            daemon.log.contains("notice SIGUSR1 ignored") && daemon.log.contains("notice SIGUSR2 ignored")
        }
        #expect(try client.call("status").isOK)
        #expect(try daemon.client().call("status").isOK)
        #expect(daemon.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
    }

    @Test(
        "a SIGABRT from another process (systemd's watchdog sends one) ends the daemon within seconds, by that signal, after the Swift runtime's crash report, which suspends every thread, the signal thread among them: it went on serving after its report, and the report waited 30 s for the signal thread, which took the runtime's SIGUSR1 as an operator's and logged it as ignored"
    )
    func abortEndsTheDaemon() throws {
        for reporting in ["yes", "no"] {
            let daemon = try Daemon(environment: ["SWIFT_BACKTRACE": "enable=\(reporting),interactive=no"])
            #expect(try daemon.client().call("status").isOK)
            let child = try #require(daemon.child)
            kill(daemon.pid, SIGABRT)
            try waitFor("the daemon to end (backtraces \(reporting))", timeout: 15) { !child.isRunning }
            #expect(child.wasSignaled && child.wait() == SIGABRT, "backtraces \(reporting): \(daemon.log)")
            let log = daemon.log
            #expect(log.contains("Program crashed: Aborted") == (reporting == "yes"), "backtraces \(reporting): \(log)")
            // A libdispatch worker blocks every signal the runtime could suspend it with, and may still be left out
            // of the report ("failed to suspend thread"): the runtime's limit, which does not hold the report up.
            #expect(!log.contains("SIGUSR1 ignored"), "backtraces \(reporting): \(log)")
        }
    }

    @Test("a SIGABRT from another process ends incidentctl, as it ends the daemon, where the runtime's crash report left it running: a follow (events --follow) that waits for the next event")
    func abortEndsTheClient() throws {
        let daemon = try Daemon()
        let output = open(daemon.root + "/follow.out", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(output)
            close(null)
        }
        let follow = try ChildProcess(
            Binaries.incidentctl, ["events", "--follow", "--socket", daemon.socketPath, "--format", "json"],
            environment: ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=yes,interactive=no"]) { _, extra in extra },
            stdin: null, stdout: output, stderr: output)
        try waitFor("the follow to connect") { try daemon.client().call("status")["followers"]?.intValue == 1 }
        kill(follow.pid, SIGABRT)
        try waitFor("incidentctl to end", timeout: 15) { !follow.isRunning }
        #expect(follow.wasSignaled && follow.wait() == SIGABRT)
        #expect(daemon.stop() == 0)
    }

    @Test("SIGTERM while a start rebuilds the projections (--rebuild-projections) stops incidentd at the next step of the rebuild, exit 0, saying so, without serving or READY=1; the next start serves the projections, complete and as the events make them")
    func stopDuringStartUpRebuild() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        try client.appendEvents(RebuildTests.events(incidents: 12_000), inBatchesOf: 1_000)
        let head = try client.headPosition()
        let cities = try client.call("cities")["cities"]
        #expect(cities?.arrayValue?.count == 3 && head > 25_000, "\(head) \(String(describing: cities))")
        #expect(daemon.stop() == 0)

        let notify = try NotifyListener(path: daemon.root + "/notify")
        let logPath = daemon.root + "/rebuild.log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(log)
            close(null)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        let child = try ChildProcess(
            Binaries.incidentd, ["--data-dir", daemon.dataDir, "--socket", daemon.socketPath, "--rebuild-projections"],
            environment: environment, stdin: null, stdout: log, stderr: log)
        defer {
            if child.isRunning { kill(child.pid, SIGKILL) }
            child.wait()
        }
        try waitFor("the rebuild to start") {
            !child.isRunning || (readFile(logPath) ?? "").contains("rebuilding the projections as asked")
        }
        kill(child.pid, SIGTERM)
        let signalled = Date()
        try waitFor("incidentd to stop", timeout: 30) { !child.isRunning }
        let took = Date().timeIntervalSince(signalled)
        let said = readFile(logPath) ?? ""
        #expect(child.wait() == 0, "\(said)")
        #expect(took < 10, "stopped \(took) s after SIGTERM: \(said)")
        #expect(!said.contains("notice serving"), "\(said)")
        #expect(said.contains("notice SIGTERM during start-up: stopping at the next step, without serving"), "\(said)")
        #expect(said.contains("notice stopped during start-up on SIGTERM, before serving: opening the log stopped "), "\(said)")
        var notifications: [String] = []
        while let message = notify.next(within: 0) { notifications.append(message) }
        #expect(!notifications.contains { $0.hasPrefix("READY=1") }, "\(notifications)")
        #expect(notifications.last?.hasPrefix("STOPPING=1\nSTATUS=stopped during start-up on SIGTERM") == true, "\(notifications)")

        try daemon.start()
        let again = try daemon.client()
        #expect(try again.headPosition() == head)
        #expect(try again.call("cities")["cities"] == cities)
        let verified = try daemon.ctl(["verify"])
        #expect(verified.status == 0, "the projections and summaries are those the events make: \(verified.stdout)\(verified.stderr)")
        #expect(daemon.stop() == 0)
    }
}
