import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What `incidentctl` does when its standard output cannot be written (README, exit statuses): a full disk is
/// exit status 1 with the cause on stderr, never success with the output cut short and never a crash; a reader
/// that stops reading ends it quietly.
@Suite("Output failures")
struct OutputFailureTests {
    /// A command's end: its exit status (or the signal that ended it) and what it said on stderr.
    struct Ending {
        var status: Int32
        var signaled: Bool
        var stderr: String
    }

    /// Runs incidentctl against `daemon` with `stdout` as its standard output, waiting for it to end up to a
    /// deadline (then killed, which the test reports). With `shellPrefix`, `/bin/sh -c` runs that first, then incidentctl.
    static func run(
        _ daemon: Daemon, _ arguments: [String], stdout: Int32, shellPrefix: String? = nil,
        whileRunning: (ChildProcess) throws -> Void = { _ in }
    ) throws -> Ending {
        let err = try CloseOnExecPipe()
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(null) }
        var environment = ProcessInfo.processInfo.environment
        environment["INCIDENTD_SOCKET"] = daemon.socketPath
        let (path, argv) = shellPrefix.map { ("/bin/sh", ["-c", $0 + #"; exec "$0" "$@""#, Binaries.incidentctl] + arguments) }
            ?? (Binaries.incidentctl, arguments)
        let child: ChildProcess
        do {
            child = try ChildProcess(path, argv, environment: environment, stdin: null, stdout: stdout, stderr: err.write)
        } catch {
            close(err.read)
            close(err.write)
            throw error
        }
        close(err.write)
        let stderr = LockedData()
        let done = DispatchSemaphore(value: 0)
        Thread {
            stderr.set(readToEnd(err.read))
            done.signal()
        }.start()
        try whileRunning(child)
        do {
            try waitFor("incidentctl \(arguments.joined(separator: " ")) to end", timeout: 60) { !child.isRunning }
        } catch {
            kill(child.pid, SIGKILL)
            child.wait()
            done.wait()
            throw error
        }
        done.wait()
        return Ending(status: child.wait(), signaled: child.wasSignaled, stderr: String(decoding: stderr.get(), as: UTF8.self))
    }

    /// A daemon whose log holds `count` reports in Melitopol.
    static func log(of count: Int) throws -> Daemon {
        let daemon = try Daemon()
        let events = (0..<count).map { _ in Wire.report(city: "Melitopol", occurredAt: "2022-03-01", eventId: Wire.uuid()) }
        try daemon.client().appendEvents(events, inBatchesOf: 500)
        return daemon
    }

    @Test("Every query with its output on /dev/full says it cannot write the output, names the cause and exits 1; none exits 0, none traps")
    func fullDevice() throws {
        let daemon = try Self.log(of: 3)
        let full = open("/dev/full", O_WRONLY | O_CLOEXEC)
        #expect(full >= 0)
        defer { close(full) }
        let commands: [[String]] = [
            ["events", "--limit", "0", "--format", "json"], ["events", "--limit", "5", "--format", "table"],
            ["events", "--follow", "--format", "json"],
            ["cities", "--format", "json"], ["cities", "--format", "table"], ["city", "Melitopol", "--format", "table"],
            ["replay", "--format", "json"], ["replay", "--data-dir", daemon.dataDir, "--format", "json"],
            ["verify", "--format", "json"], ["verify", "--format", "table"], ["status", "--format", "json"],
            ["status", "--format", "table"],
            ["incidents", "--city", "Melitopol", "--format", "json"], ["incidents", "--city", "Melitopol", "--format", "table"],
            ["incidents", "--city", "Kupiansk", "--format", "table"],
            ["export", "--format", "jsonl"], ["export", "--format", "csv"], ["export", "--format", "geojson"],
        ]
        for command in commands {
            let ending = try Self.run(daemon, command, stdout: full)
            #expect(!ending.signaled && ending.status == 1, "\(command): \(ending)")
            #expect(
                ending.stderr == "incidentctl: cannot write the output: No space left on device; the output is incomplete\n",
                "\(command): \(ending)")
        }
    }

    @Test("A reader that stops reading (incidentctl events | head -1) ends the command quietly: by SIGPIPE, or with SIGPIPE ignored exit status 1, and nothing on stderr either way")
    func readerGone() throws {
        let daemon = try Self.log(of: 3_000)
        for ignoringSIGPIPE in [false, true] {
            let pipe = try CloseOnExecPipe()
            var readEnd: Int32? = pipe.read
            defer { if let readEnd { close(readEnd) } }
            let ending = try Self.run(
                daemon, ["events", "--limit", "0", "--format", "json"], stdout: pipe.write,
                shellPrefix: ignoringSIGPIPE ? "trap '' PIPE" : nil
            ) { _ in
                close(pipe.write)
                // One line, as `head -1` takes, then the reader goes.
                var byte: UInt8 = 0
                while Glibc.read(pipe.read, &byte, 1) == 1, byte != 0x0A {}
                #expect(byte == 0x0A)
                close(pipe.read)
                readEnd = nil
            }
            #expect(ending.stderr == "", "SIGPIPE ignored: \(ignoringSIGPIPE): \(ending)")
            if ignoringSIGPIPE {
                #expect(!ending.signaled && ending.status == 1, "\(ending)")
            } else {
                #expect(ending.signaled && ending.status == SIGPIPE, "\(ending)")
            }
        }
    }
}
