import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `incidentctl append` loading files: batches that fit the daemon's line limit, a refusal that leaves exactly the
/// lines before its batch stored, and a summary that tells new events from those already stored.
@Suite("incidentctl append")
struct AppendCommandTests {
    /// `count` reports `PREFIX-0`… in order, each with an eventId and a description of `descriptionBytes` bytes
    /// (`longLine`'s of 20,000), `badLine`'s of an unknown kind.
    static func bulkLines(
        _ count: Int, descriptionBytes: Int, badLine: Int? = nil, longLine: Int? = nil, prefix: String = "bulk"
    ) -> [String] {
        (0..<count).map { n in
            Wire.report(
                incident: "\(prefix)-\(n)", city: "Melitopol", kind: n + 1 == badLine ? "strik" : "demonstration",
                eventId: String(format: "00000000-0000-4000-8000-%04d%08d", prefix.count, n),
                extraData: ["description": .string(String(repeating: "d", count: n + 1 == longLine ? 20_000 : descriptionBytes))]
            ).canonicalString()
        }
    }

    /// The incidents of the log, in position order.
    static func storedIncidents(_ daemon: Daemon) throws -> [String] {
        try daemon.client().allEvents().compactMap { $0["incident"]?.stringValue }
    }

    @Test("a file whose batch of 500 would pass the 1 MiB line limit goes in batches that fit, all of it, in the file's order")
    func batchesFitTheLineLimit() throws {
        let daemon = try Daemon()
        // 600 events of about 2.4 KB: 500 of them would be a request line of 1.2 MB.
        let lines = Self.bulkLines(600, descriptionBytes: 2_200)
        let appended = try daemon.ctl(["append", "-", "--format", "json"], stdin: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.json == ["events": 600, "new": 600, "alreadyStored": 0, "firstPosition": 1, "lastPosition": 600])
        #expect(try Self.storedIncidents(daemon) == (0..<600).map { "bulk-\($0)" })
        #expect(daemon.stop() == 0)
    }

    @Test("a daemon with a smaller max_line_bytes: batches are cut again to its limit; one event over it alone is refused by line, and nothing after it is sent")
    func smallerLineLimit() throws {
        let daemon = try startDaemon(config: "[daemon]\nmax_line_bytes = \"16KiB\"\n")
        let lines = Self.bulkLines(40, descriptionBytes: 1_000)
        let appended = try daemon.ctl(["append", "-", "--format", "json"], stdin: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(try Self.storedIncidents(daemon) == (0..<40).map { "bulk-\($0)" })

        // Line 3 is one event of 20 KB.
        let large = Self.bulkLines(5, descriptionBytes: 1_000, longLine: 3, prefix: "large")
        let refused = try daemon.ctl(["append", "-", "--batch-size", "2", "--format", "json"], stdin: large.joined(separator: "\n") + "\n")
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("line_too_long") && refused.stderr.contains("-:3"), "names the line: \(refused.stderr)")
        #expect(refused.stderr.contains("--from-line 3"), "says where to go on: \(refused.stderr)")
        #expect(refused.json?["new"]?.intValue == 2)
        #expect(refused.json?["refused"]?["code"]?.stringValue == "line_too_long", "the summary says what stopped it: \(refused.stdout)")
        #expect(try Self.storedIncidents(daemon).suffix(2) == ["large-0", "large-1"], "the lines before it, and none after")
        #expect(try daemon.client().headPosition() == 42)
        #expect(daemon.stop() == 0)
    }

    @Test("an event id used twice in one batch for different events is named by the two lines, not by the daemon's indexes in the batch")
    func duplicateIdInABatchNamesItsLines() throws {
        let daemon = try Daemon()
        let eventId = "0191e5a4-6b1c-7d2e-8f3a-4b5c6d7e8f90"
        let report = { (incident: String) in
            #"{"type":"incident-reported","incident":"\#(incident)","eventId":"\#(eventId)","occurredAt":"2022-03-01","data":{"city":"Kupiansk","kind":"strike"}}"#
        }
        let lines = [
            #"{"type":"incident-reported","incident":"dup-0","occurredAt":"2022-03-01","data":{"city":"Kupiansk","kind":"strike"}}"#,
            report("dup-1"), report("dup-2"),
        ]
        let run = try daemon.ctl(["append", "-", "--batch-size", "4"], stdin: lines.joined(separator: "\n") + "\n")
        #expect(run.status == 1, "\(run)")
        #expect(
            run.stderr.contains("-:3: event id \(eventId) is used twice in this batch, on lines 2 and 3, for different events"),
            "\(run.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("server_busy: a batch the daemon had no room to read is sent again after a pause, until there is room; the load completes, in order")
    func busyDaemonIsRetried() throws {
        let daemon = try startDaemon(config: "[daemon]\nmax_line_bytes = \"64KiB\"\nmax_unfinished_bytes = \"100KiB\"\n")
        // Another client holds 60 KB of a line it has not finished, so a batch of about 50 KB finds no room.
        let holder = try daemon.client()
        try holder.write(Array((#"{"op":"status","id":""# + String(repeating: "h", count: 60_000)).utf8))
        let watcher = try daemon.client()
        try waitFor("the holder's line to be held") { (try watcher.call("status")["unfinishedLineBytes"]?.intValue ?? 0) >= 60_000 }

        let lines = Self.bulkLines(40, descriptionBytes: 1_000)
        let finished = DispatchSemaphore(value: 0)
        let results = LockedList<CommandResult>()
        let socket = daemon.socketPath
        DispatchQueue.global().async {
            if let result = try? runCommand(
                Binaries.incidentctl, ["append", "-", "--format", "json", "--socket", socket],
                stdin: lines.joined(separator: "\n") + "\n")
            {
                results.append(result)
            }
            finished.signal()
        }
        try waitFor("the daemon to drop the load's first batch") { daemon.log.contains("dropped 1 request line") }
        #expect(try watcher.headPosition() == 0, "nothing of the dropped batch was stored")
        try holder.write(Array(#""}"#.utf8) + [0x0A])
        #expect(try holder.receive().isOK)
        #expect(finished.wait(timeout: .now() + 60) == .success, "the load finished")
        let appended = try #require(results.all.first)
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.json?["new"]?.intValue == 40, "\(appended.stdout)")
        #expect(try Self.storedIncidents(daemon) == (0..<40).map { "bulk-\($0)" })
        #expect(daemon.stop() == 0)
    }

    @Test("a daemon that goes away during a load: append exits 3 saying which lines are stored, which were sent without an answer, and where to go on")
    func daemonStopsDuringLoad() throws {
        let daemon = try Daemon()
        // Without eventIds, as a file written by hand: sending such lines twice stores them twice.
        let lines = (0..<20_000).map { Wire.report(incident: "lost-\($0)", city: "Melitopol", kind: "strike").canonicalString() }
        let file = daemon.root + "/events.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let loaded = Guarded<CommandResult?>(nil)
        let socket = daemon.socketPath
        let loader = Thread {
            let result = try? runCommand(Binaries.incidentctl, ["append", file, "--batch-size", "10", "--format", "json", "--socket", socket])
            loaded.withLock { $0 = result }
        }
        loader.start()
        try waitFor("the load to be under way") { try daemon.client().headPosition() >= 200 }
        // Killed, so that no answer comes for the batch in flight (a daemon stopping answers it shutting_down).
        daemon.crash()
        try waitFor("the load to end", timeout: 30 * deadlineScale) { loaded.withLock { $0 != nil } }
        let result = try #require(loaded.withLock { $0 })
        #expect(result.status == 3, "\(result.stderr)")
        let acknowledged = try #require(result.json?["lastPosition"]?.intValue, "the summary of what was stored: \(result.stdout)")
        #expect(acknowledged < 20_000, "the daemon stopped before the end of the load")
        let next = acknowledged + 1
        #expect(result.stderr.contains("with \(acknowledged) of 20000 events acknowledged"), "\(result.stderr)")
        #expect(result.stderr.contains("The events before line \(next) are stored"), "\(result.stderr)")
        #expect(result.stderr.contains("lines \(next)–\(next + 9) were sent and may or may not be stored"), "\(result.stderr)")
        #expect(result.stderr.contains("go on with --from-line \(next)"), "\(result.stderr)")
        #expect(result.stderr.contains("incidentctl events --from \(next)"), "\(result.stderr)")
        try daemon.start()
        let stored = try daemon.client().headPosition()
        #expect(stored == acknowledged || stored == acknowledged + 10, "what was acknowledged, and the batch in flight or not")
        #expect(daemon.stop() == 0)
    }

    @Test("a refused line stops the load: the lines before its batch are stored, none after; --from-line goes on, in order")
    func refusalKeepsTheFileOrder() throws {
        let daemon = try Daemon()
        var lines = Self.bulkLines(1_000, descriptionBytes: 10, badLine: 250)
        let refused = try daemon.ctl(["append", "-", "--batch-size", "100", "--format", "table"], stdin: lines.joined(separator: "\n") + "\n")
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("invalid_event") && refused.stderr.contains("-:250"), "\(refused.stderr)")
        #expect(refused.stderr.contains("lines 201–300") && refused.stderr.contains("--from-line 201"), "\(refused.stderr)")
        #expect(refused.stdout.contains("appended 200 new events of 1000 at positions 1–200"), "\(refused.stdout)")
        #expect(try Self.storedIncidents(daemon) == (0..<200).map { "bulk-\($0)" })

        lines[249] = lines[249].replacingOccurrences(of: "\"strik\"", with: "\"strike\"")
        let file = daemon.root + "/fixed.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let resumed = try daemon.ctl(["append", "--from-line", "201", "--batch-size", "100", "--format", "json", file])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.json == ["events": 800, "new": 800, "alreadyStored": 0, "firstPosition": 201, "lastPosition": 1000])
        #expect(try Self.storedIncidents(daemon) == (0..<1_000).map { "bulk-\($0)" })

        // The whole file again: everything is already stored, and the summary says so.
        let again = try daemon.ctl(["append", "--batch-size", "300", "--format", "table", file])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(
            again.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                == "appended 0 new events of 1000; 1000 were already stored, at positions 1–1000")
        // The positions are those of the events as stored, whether stored now or before.
        let retried = try daemon.ctl(["append", "--from-line", "11", "--format", "json", file])
        #expect(retried.json == ["events": 990, "new": 0, "alreadyStored": 990, "firstPosition": 11, "lastPosition": 1000])
        let mixed = lines.prefix(2) + [Wire.report(incident: "bulk-new").canonicalString()]
        let some = try daemon.ctl(["append", "-", "--format", "json"], stdin: mixed.joined(separator: "\n") + "\n")
        #expect(some.json == ["events": 3, "new": 1, "alreadyStored": 2, "firstPosition": 1, "lastPosition": 1001])
        #expect(daemon.stop() == 0)
    }

    @Test("with a window above one, batches sent after a refused one are named if they were stored")
    func windowNamesWhatLandedAfter() throws {
        let daemon = try Daemon()
        let lines = Self.bulkLines(40, descriptionBytes: 10, badLine: 5)
        let refused = try daemon.ctl(["append", "-", "--batch-size", "10", "--window", "4"], stdin: lines.joined(separator: "\n") + "\n")
        #expect(refused.status == 1)
        let stored = try Self.storedIncidents(daemon)
        #expect(!stored.contains("bulk-4"), "the refused batch stores nothing")
        #expect(stored.count == 30, "\(stored.count) stored: every other batch was in flight")
        #expect(refused.stderr.contains("Lines 11–20, 21–30, 31–40, sent after it (--window), were stored"), "\(refused.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("an input that cannot be read, or is not events, says why; a refusal speaks of flags, not protocol members")
    func unreadableInput() throws {
        let daemon = try Daemon()
        let missing = try daemon.ctl(["append", daemon.root + "/missing.jsonl"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("missing.jsonl: No such file or directory"), "\(missing.stderr)")
        let directory = try daemon.ctl(["append", daemon.root])
        #expect(directory.status == 2)
        #expect(directory.stderr.contains("it is a directory"), "\(directory.stderr)")
        let city = try daemon.ctl(["append", "-"], stdin: Wire.report(city: "Kharkov").canonicalString() + "\n")
        #expect(city.status == 1)
        #expect(city.stderr.contains("give --allow-new-city") && !city.stderr.contains("set allowNewCity"), "\(city.stderr)")
        let array = try daemon.ctl(["append", "-"], stdin: "[1,2]\n")
        #expect(array.status == 2)
        #expect(array.stderr.contains("-:1: not an event"), "\(array.stderr)")
        #expect(try daemon.client().headPosition() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("a file that is not a regular one is read to its end, as standard input is: a named pipe, <(…), /dev/null (no events, as an empty file); a read that fails names the system's reason")
    func inputsThatAreNotRegularFiles() throws {
        let daemon = try Daemon()
        let lines = Self.bulkLines(3, descriptionBytes: 10, prefix: "fifo")
        let fifo = daemon.root + "/events.fifo"
        #expect(mkfifo(fifo, 0o600) == 0, "\(String(cString: strerror(errno)))")
        // The writer opens the pipe once incidentctl has it open for reading (until then an open that does not wait
        // fails, ENXIO), writes the events and closes it: incidentctl reads them to the end of the pipe.
        let written = Guarded<String?>(nil)
        let writer = Thread {
            let fd: Int32
            do {
                fd = try Self.openForWriting(fifo)
            } catch {
                written.withLock { $0 = "\(error)" }
                return
            }
            let bytes = Array((lines.joined(separator: "\n") + "\n").utf8)
            let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            written.withLock { $0 = count == bytes.count ? "written" : "wrote \(count) of \(bytes.count) bytes" }
        }
        writer.start()
        let fromPipe = try daemon.ctl(["append", "--format", "json", fifo])
        try waitFor("the writer to finish") { written.withLock { $0 != nil } }
        #expect(written.withLock { $0 } == "written")
        #expect(fromPipe.status == 0, "\(fromPipe.stderr)")
        #expect(fromPipe.json?["new"]?.intValue == 3, "\(fromPipe.stdout)")
        #expect(try Self.storedIncidents(daemon) == ["fifo-0", "fifo-1", "fifo-2"])

        // Process substitution gives a /dev/fd/N that is a pipe.
        let more = Self.bulkLines(2, descriptionBytes: 10, prefix: "substituted")
        let file = daemon.root + "/more.jsonl"
        try (more.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let substituted = try runCommand(
            "/bin/bash", ["-c", "\"$0\" append --format json <(cat \"$1\")", Binaries.incidentctl, file],
            environment: ["INCIDENTD_SOCKET": daemon.socketPath])
        #expect(substituted.status == 0, "\(substituted.stderr)")
        #expect(substituted.json?["new"]?.intValue == 2, "\(substituted.stdout)")
        #expect(try Self.storedIncidents(daemon) == ["fifo-0", "fifo-1", "fifo-2", "substituted-0", "substituted-1"])

        // A character device with nothing in it says what an empty file says.
        let empty = daemon.root + "/empty.jsonl"
        #expect(FileManager.default.createFile(atPath: empty, contents: nil))
        for format in ["json", "table"] {
            let fromEmptyFile = try daemon.ctl(["append", "--format", format, empty])
            let fromDevice = try daemon.ctl(["append", "--format", format, "/dev/null"])
            #expect(fromEmptyFile.status == 0, "\(fromEmptyFile.stderr)")
            #expect(fromDevice.status == fromEmptyFile.status, "\(fromDevice.stderr)")
            #expect(fromDevice.stdout == fromEmptyFile.stdout && fromDevice.stderr == fromEmptyFile.stderr, "\(fromDevice.stdout)\(fromDevice.stderr)")
        }
        #expect(try daemon.ctl(["append", "--format", "json", "/dev/null"]).json?["events"]?.intValue == 0)

        // A read that fails: the system's reason, not a guess at one. Read at offset 0, /proc/self/mem (incidentctl's
        // own memory, where nothing is mapped) gives EIO.
        let unreadable = try daemon.ctl(["append", "/proc/self/mem"])
        #expect(unreadable.status == 2, "\(unreadable.stderr)")
        #expect(unreadable.stderr.contains("cannot read /proc/self/mem: Input/output error"), "\(unreadable.stderr)")
        #expect(!unreadable.stderr.contains("permission"), "\(unreadable.stderr)")
        #expect(try daemon.client().headPosition() == 5)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a daemon stopped (SIGTERM) during a load, one to eight batches in flight: append exits 3 and names every batch in flight as stored, not stored (shutting_down) or maybe stored, which the log bears out",
        arguments: [1, 2, 4, 8])
    func daemonTerminatedDuringWindowedLoad(window: Int) throws {
        // With no time to serve the open connections on, the stop cuts the load at once, as it does one that runs past
        // drain_seconds.
        let daemon = try Daemon.configured("[daemon]\ndrain_seconds = 0\n")
        let total = 20_000
        let lines = Self.bulkLines(total, descriptionBytes: 10, prefix: "term")
        let file = daemon.root + "/events.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let loaded = Guarded<CommandResult?>(nil)
        let socket = daemon.socketPath
        let loader = Thread {
            let result = try? runCommand(
                Binaries.incidentctl, ["append", file, "--batch-size", "100", "--window", String(window), "--format", "json", "--socket", socket])
            loaded.withLock { $0 = result }
        }
        loader.start()
        let watcher = try daemon.client()
        try waitFor("the load to be under way") { try watcher.headPosition() >= 1_000 }
        #expect(daemon.stop() == 0)
        try waitFor("the load to end", timeout: 30 * deadlineScale) { loaded.withLock { $0 != nil } }
        let result = try #require(loaded.withLock { $0 })
        #expect(result.status == 3, "the daemon went away: \(result.stderr)")
        let said = result.stderr
        let acknowledged = try #require(result.json?["lastPosition"]?.intValue, "\(result.stdout)")
        #expect(acknowledged < total, "the daemon stopped before the end of the load")
        #expect(result.json?["lost"]?.stringValue != nil, "the summary says why it stopped: \(result.stdout)")
        let next = Int(acknowledged) + 1
        #expect(said.contains("The events before line \(next) are stored"), "\(said)")
        #expect(said.contains("go on with --from-line \(next)"), "\(said)")
        // Every batch sent after the last one acknowledged, up to the last line sent, is named.
        let lastSent = try #require(
            said.range(of: #"nothing after line (\d+) was sent"#, options: .regularExpression).flatMap { match in
                Int(said[match].split(separator: " ")[3])
            }, "\(said)")
        #expect(lastSent > next && lastSent - next < 100 * window && (lastSent - next + 1) % 100 == 0, "\(said)")
        let named = said.ranges(of: #/(\d+)–(\d+)/#).compactMap { match -> ClosedRange<Int>? in
            let bounds = said[match].split(separator: "–").compactMap { Int($0) }
            return bounds.count == 2 && bounds[0] <= bounds[1] ? bounds[0]...bounds[1] : nil
        }
        for first in stride(from: next, to: lastSent, by: 100) {
            #expect(named.contains { $0.contains(first) && $0.contains(first + 99) }, "the batch of lines \(first)–\(first + 99) is named: \(said)")
        }
        let unanswered = said.range(of: "may or may not be stored") != nil
        let notStored = said.range(of: "not stored (answered shutting_down)") != nil
        #expect(unanswered || notStored, "\(said)")

        try daemon.start()
        let stored = try Self.storedIncidents(daemon)
        #expect(Array(stored.prefix(Int(acknowledged))) == (0..<Int(acknowledged)).map { "term-\($0)" }, "what was acknowledged is stored")
        #expect(!stored.contains("term-\(lastSent)"), "nothing after line \(lastSent) was sent")
        if !unanswered {
            #expect(stored.count == Int(acknowledged), "the batches named not stored are not: \(said)")
        }
        #expect(daemon.stop() == 0)
    }

    /// What `runBounded` saw of an incidentctl run.
    struct BoundedRun {
        var result: CommandResult
        /// The most memory it was seen to hold (resident, in bytes).
        var largestResident: Int
        /// Why it was killed, when it did not exit on its own: it held more than the bound, or it ran past the deadline.
        var killed: String?
    }

    /// The resident memory of process `pid`, in bytes, or nil once it is gone.
    static func residentBytes(_ pid: pid_t) -> Int? {
        guard let statm = readFile("/proc/\(pid)/statm") else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Runs incidentctl with `arguments`, standard input from `stdin` (/dev/null unless given), and waits for it to
    /// exit on its own, watching its memory: one that holds more than `memoryBound`, or is still running at the
    /// deadline, is killed (and `killed` says why), so that the tests of endless input end without the bounds.
    static func runBounded(
        _ daemon: Daemon, _ arguments: [String], stdin: String = "/dev/null", memoryBound: Int = 512 << 20, deadline: Double = 60
    ) throws -> BoundedRun {
        ignoreBrokenPipes()
        let name = UUID().uuidString
        let outPath = daemon.root + "/\(name).out"
        let errPath = daemon.root + "/\(name).err"
        let input = open(stdin, O_RDONLY | O_CLOEXEC)
        let out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let err = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { [input, out, err].filter { $0 >= 0 }.forEach { close($0) } }
        guard input >= 0, out >= 0, err >= 0 else { throw HarnessError("cannot open the command's files: \(String(cString: strerror(errno)))") }
        var environment = ProcessInfo.processInfo.environment
        environment["INCIDENTD_SOCKET"] = daemon.socketPath
        let child = try ChildProcess(Binaries.incidentctl, arguments, environment: environment, stdin: input, stdout: out, stderr: err)
        var largest = 0
        var killed: String?
        do {
            try waitFor("incidentctl \(arguments.joined(separator: " ")) to exit", timeout: deadline) {
                if let resident = residentBytes(child.pid) {
                    largest = max(largest, resident)
                    if resident > memoryBound {
                        killed = "it held \(resident >> 20) MiB, more than \(memoryBound >> 20) MiB"
                        kill(child.pid, SIGKILL)
                    }
                }
                return !child.isRunning
            }
        } catch {
            killed = "\(error)"
            kill(child.pid, SIGKILL)
        }
        let status = child.wait()
        let result = CommandResult(status: status, stdout: readFile(outPath) ?? "", stderr: readFile(errPath) ?? "")
        return BoundedRun(result: result, largestResident: largest, killed: killed)
    }

    /// The named pipe `fifo` opened for writing, blocking, once incidentctl has opened it for reading (until then an
    /// open that does not wait fails, ENXIO).
    static func openForWriting(_ fifo: String) throws -> Int32 {
        var fd: Int32 = -1
        try waitFor("incidentctl to open the pipe") {
            fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            return fd >= 0
        }
        _ = fcntl(fd, F_SETFL, 0)
        return fd
    }

    /// A writer thread for the named pipe `fifo`: once incidentctl opens it for reading, it writes `head`, then
    /// `endless` again and again until `stop` is set or the pipe has no reader (EPIPE: incidentctl exited). `done`
    /// holds why it stopped.
    static func endlessWriter(_ fifo: String, head: String, endless: String) -> (stop: Guarded<Bool>, done: Guarded<String?>) {
        ignoreBrokenPipes()
        let stop = Guarded(false)
        let done = Guarded<String?>(nil)
        Thread {
            let fd: Int32
            do {
                fd = try Self.openForWriting(fifo)
            } catch {
                done.withLock { $0 = "\(error)" }
                return
            }
            defer { close(fd) }
            var chunk = Array(head.utf8)
            let repeated = Array(endless.utf8)
            var written = 0
            while !stop.current {
                let count = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                if count < 0 {
                    if errno == EINTR { continue }
                    done.withLock { $0 = "stopped by \(String(cString: strerror(errno))) after \(written) bytes" }
                    return
                }
                written += count
                chunk = count < chunk.count ? Array(chunk[count...]) : repeated
            }
            done.withLock { $0 = "stopped after \(written) bytes" }
        }.start()
        return (stop, done)
    }

    /// The most memory process `pid` has held resident since it started its program (VmHWM), in bytes, or nil once
    /// it is gone. Not `wait4`'s `ru_maxrss`: a child of `posix_spawn` runs in this process's memory until it executes
    /// its program, which then counts this process's peak as its own.
    static func peakResidentBytes(_ pid: pid_t) -> Int? {
        guard let status = readFile("/proc/\(pid)/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = line.split(separator: " ").compactMap({ Int($0) }).first
        else { return nil }
        return kilobytes * 1024
    }

    /// Runs `incidentctl append -` with `environment`, its standard input a pipe into which a writer thread writes
    /// `chunk` `times` times, then `last`, and closes it: what it said, with its peak resident memory as last seen
    /// before it exited (its high-water mark, looked at every few milliseconds). One still running after `deadline`
    /// seconds is killed.
    static func appendPiped(
        _ daemon: Daemon, _ chunk: [UInt8], times: Int, then last: String, environment: [String: String] = [:], deadline: Double = 120
    ) throws -> (result: CommandResult, peakResident: Int) {
        ignoreBrokenPipes()
        let name = UUID().uuidString
        let outPath = daemon.root + "/\(name).out"
        let errPath = daemon.root + "/\(name).err"
        let out = open(outPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let err = open(errPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { [out, err].filter { $0 >= 0 }.forEach { close($0) } }
        guard out >= 0, err >= 0 else { throw HarnessError("cannot open the command's files: \(String(cString: strerror(errno)))") }
        let input = try CloseOnExecPipe()
        let child: ChildProcess
        do {
            child = try ChildProcess(
                Binaries.incidentctl, ["append", "-"],
                environment: ProcessInfo.processInfo.environment.merging(environment.merging(["INCIDENTD_SOCKET": daemon.socketPath]) { a, _ in a }) { _, new in new },
                stdin: input.read, stdout: out, stderr: err)
        } catch {
            close(input.read)
            close(input.write)
            throw error
        }
        close(input.read)
        let written = Guarded(false)
        Thread {
            defer {
                close(input.write)
                written.withLock { $0 = true }
            }
            func writeAll(_ bytes: [UInt8]) -> Bool {
                var offset = 0
                while offset < bytes.count {
                    let count = bytes[offset...].withUnsafeBytes { Glibc.write(input.write, $0.baseAddress, $0.count) }
                    if count < 0 && errno == EINTR { continue }
                    // EPIPE: incidentctl exited before reading it all, which the caller's checks of its answer show.
                    if count <= 0 { return false }
                    offset += count
                }
                return true
            }
            for _ in 0..<times where !writeAll(chunk) { return }
            _ = writeAll(Array(last.utf8))
        }.start()
        var peak = 0
        do {
            try waitFor("incidentctl append - to exit", timeout: deadline * deadlineScale) {
                if let seen = Self.peakResidentBytes(child.pid) { peak = max(peak, seen) }
                return !child.isRunning
            }
        } catch {
            kill(child.pid, SIGKILL)
        }
        let status = child.wait()
        try waitFor("the writer to finish") { written.current }
        let result = CommandResult(status: status, stdout: readFile(outPath) ?? "", stderr: readFile(errPath) ?? "")
        return (result, peak)
    }

    @Test("standard input of 200 MiB of events of about 1 KB, or of 24 MiB of {} lines (8 million, as yes '{}' writes them), then a bad line: incidentctl keeps it in a temporary file, not in its memory (its peak resident memory stays under 64 MiB while it checks every line), refuses the last line, and sends nothing")
    func largeStandardInputIsNotHeld() throws {
        let daemon = try Daemon()
        let events = Self.bulkLines(1000, descriptionBytes: 900, prefix: "large")
        let chunk = Array((events.joined(separator: "\n") + "\n").utf8)
        let inputs: [(chunk: [UInt8], times: Int, badLine: Int)] = [
            (chunk, (200 << 20) / chunk.count + 1, ((200 << 20) / chunk.count + 1) * 1000 + 1),
            (Array(repeating: Array("{}\n".utf8), count: 1 << 20).flatMap { $0 }, 8, (8 << 20) + 1),
        ]
        for input in inputs {
            let size = input.chunk.count * input.times
            let (result, peak) = try Self.appendPiped(daemon, input.chunk, times: input.times, then: "[1,2]\n", environment: ["TMPDIR": daemon.root])
            #expect(result.status == 2, "\(result.stderr)")
            #expect(result.stderr.contains("-:\(input.badLine): not an event: a JSON object was expected"), "\(result.stderr)")
            #expect(peak < 64 << 20, "incidentctl held \(peak >> 20) MiB at its peak, reading \(size >> 20) MiB")
        }
        #expect(try daemon.client().headPosition() == 0)

        // Standard input redirected from a regular file is read where it lies, as the file itself is.
        let file = daemon.root + "/events.jsonl"
        try (events.prefix(3).joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let redirected = try Self.runBounded(daemon, ["append", "--format", "json", "-"], stdin: file)
        #expect(redirected.result.status == 0, "\(redirected.result.stderr)")
        #expect(redirected.result.json?["new"]?.intValue == 3, "\(redirected.result.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("standard input of 64 MiB of events, sent to the daemon: incidentctl gives the input's pages back as its batches are answered, as it does while it checks them (its peak resident memory stays under 48 MiB), where by the end of the load it held the whole input")
    func largeStandardInputIsNotHeldWhileSent() throws {
        let daemon = try Daemon()
        let events = Self.bulkLines(1000, descriptionBytes: 900, prefix: "sent")
        let chunk = Array((events.joined(separator: "\n") + "\n").utf8)
        // The same thousand events again and again: each later copy is acknowledged as stored already.
        let times = (64 << 20) / chunk.count + 1
        let (result, peak) = try Self.appendPiped(daemon, chunk, times: times, then: "", environment: ["TMPDIR": daemon.root])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try daemon.client().headPosition() == 1000)
        #expect(peak < 48 << 20, "incidentctl held \(peak >> 20) MiB at its peak, sending \((times * chunk.count) >> 20) MiB")
        #expect(daemon.stop() == 0)
    }

    @Test("a TMPDIR that cannot take standard input (one that is not there; a file system that fills up) is bad usage naming it and what to do; nothing is sent")
    func temporaryDirectoryThatCannotTakeTheInput() throws {
        let daemon = try Daemon()
        let events = Self.bulkLines(100, descriptionBytes: 900, prefix: "spool")
        let chunk = Array((events.joined(separator: "\n") + "\n").utf8)
        let missing = daemon.root + "/missing"
        let (unmade, _) = try Self.appendPiped(daemon, chunk, times: 1, then: "", environment: ["TMPDIR": missing])
        #expect(unmade.status == 2, "\(unmade.stderr)")
        #expect(
            unmade.stderr.contains("cannot read standard input: append keeps input that is not a regular file in a temporary file until every line is checked, and it cannot make one in \(missing) ($TMPDIR): No such file or directory; nothing was sent. Set TMPDIR to a directory"),
            "\(unmade.stderr)")
        #expect(unmade.stderr.contains("or give append the events as a regular file"), "\(unmade.stderr)")
        if SmallFileSystem.canMount {
            let disk = try SmallFileSystem(at: daemon.root + "/small", megabytes: 1)
            defer { disk.unmount() }
            let (full, _) = try Self.appendPiped(daemon, chunk, times: 40, then: "", environment: ["TMPDIR": disk.path])
            #expect(full.status == 2, "\(full.stderr)")
            #expect(
                full.stderr.contains("cannot read standard input: the temporary file it is kept in until every line is checked, in \(disk.path) ($TMPDIR), has no room for more than 1 MiB of it (No space left on device); nothing was sent. Set TMPDIR"),
                "\(full.stderr)")
        }
        #expect(try daemon.client().headPosition() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("a line that passes 64 MiB with no end (/dev/zero as a file or standard input, a named pipe that never ends its line, a regular file) is bad usage naming its line and the limit, as soon as it is that long: incidentctl exits on its own, its memory bounded, and sends nothing")
    func endlessLineIsRefused() throws {
        let daemon = try Daemon()
        for (arguments, stdin, place) in [(["append", "/dev/zero"], "/dev/null", "/dev/zero:1"), (["append", "-"], "/dev/zero", "-:1")] {
            let run = try Self.runBounded(daemon, arguments, stdin: stdin)
            #expect(run.killed == nil, "\(arguments) < \(stdin): \(run.killed ?? "")")
            #expect(run.result.status == 2, "\(arguments) < \(stdin): \(run.result.stderr)")
            #expect(run.result.stderr.contains("\(place): a line longer than 64 MiB, the longest request line any incidentd takes"), "\(run.result.stderr)")
            #expect(run.largestResident < 512 << 20)
        }

        // Two events, then a line that never ends: refused at line 3, the two not sent.
        let fifo = daemon.root + "/endless.fifo"
        #expect(mkfifo(fifo, 0o600) == 0, "\(String(cString: strerror(errno)))")
        let events = Self.bulkLines(3, descriptionBytes: 10, prefix: "endless")
        let endlessLine = try #require(events[2].range(of: "dddddddddd")).lowerBound
        let writer = Self.endlessWriter(
            fifo, head: events[0] + "\n" + events[1] + "\n" + String(events[2][..<endlessLine]), endless: String(repeating: "d", count: 1 << 16))
        let run = try Self.runBounded(daemon, ["append", fifo])
        writer.stop.withLock { $0 = true }
        try waitFor("the writer to stop") { writer.done.current != nil }
        #expect(run.killed == nil, "\(run.killed ?? "")")
        #expect(run.result.status == 2, "\(run.result.stderr)")
        #expect(run.result.stderr.contains("\(fifo):3: a line longer than 64 MiB"), "\(run.result.stderr)")
        #expect(run.largestResident < 512 << 20)

        // A regular file is mapped, not read into memory, but it gets the same bound: a line of 65 MiB of zeros.
        let sparse = daemon.root + "/zeros.jsonl"
        #expect(FileManager.default.createFile(atPath: sparse, contents: Data((events[0] + "\n").utf8)))
        #expect(truncate(sparse, off_t(65 << 20)) == 0, "\(String(cString: strerror(errno)))")
        let fromFile = try Self.runBounded(daemon, ["append", sparse])
        #expect(fromFile.killed == nil, "\(fromFile.killed ?? "")")
        #expect(fromFile.result.status == 2, "\(fromFile.result.stderr)")
        #expect(fromFile.result.stderr.contains("\(sparse):2: a line longer than 64 MiB"), "\(fromFile.result.stderr)")
        #expect(try daemon.client().headPosition() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("input that is not JSON lines (/dev/urandom as a file or standard input, a named pipe that goes on after a bad line) is refused at its first bad line as it is read, not after reading it all; nothing is sent")
    func badLineIsRefusedAsItIsRead() throws {
        let daemon = try Daemon()
        for (arguments, stdin, name) in [(["append", "/dev/urandom"], "/dev/null", "/dev/urandom"), (["append", "-"], "/dev/urandom", "-")] {
            let run = try Self.runBounded(daemon, arguments, stdin: stdin)
            #expect(run.killed == nil, "\(arguments) < \(stdin): \(run.killed ?? "")")
            #expect(run.result.status == 2, "\(arguments) < \(stdin): \(run.result.stderr)")
            // Line 1 unless it is blank (random bytes starting with a newline, a space or a tab): the first one
            // that is not, which random bytes make no JSON object of.
            let refusal = run.result.stderr
            let named = refusal.range(of: "incidentctl: \(name):").map { refusal[$0.upperBound...].prefix { $0.isNumber } } ?? ""
            #expect(Int(named).map { $0 >= 1 } == true, "\(refusal)")
            #expect(refusal.contains("\(name):\(named): not valid JSON") || refusal.contains("\(name):\(named): not an event"), "\(refusal)")
        }

        // An event, a line that is no event, then events without end: refused at line 2 while the writer writes on.
        let fifo = daemon.root + "/bad.fifo"
        #expect(mkfifo(fifo, 0o600) == 0, "\(String(cString: strerror(errno)))")
        let events = Self.bulkLines(2, descriptionBytes: 10, prefix: "bad")
        let writer = Self.endlessWriter(fifo, head: events[0] + "\n[1,2]\n", endless: events[1] + "\n")
        let run = try Self.runBounded(daemon, ["append", fifo])
        writer.stop.withLock { $0 = true }
        try waitFor("the writer to stop") { writer.done.current != nil }
        #expect(run.killed == nil, "\(run.killed ?? "")")
        #expect(run.result.status == 2, "\(run.result.stderr)")
        #expect(run.result.stderr.contains("\(fifo):2: not an event: a JSON object was expected"), "\(run.result.stderr)")
        #expect(try daemon.client().headPosition() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test("--from-line past the input's last line is bad usage saying how many lines it has; nothing is sent")
    func fromLinePastTheEnd() throws {
        let daemon = try Daemon()
        let lines = Self.bulkLines(9, descriptionBytes: 10)
        let file = daemon.root + "/nine.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        for from in ["100", "10"] {
            let past = try daemon.ctl(["append", "--from-line", from, file])
            #expect(past.status == 2, "\(past.stderr)")
            #expect(past.stderr.contains("--from-line \(from): \(file) has only 9 lines; nothing was sent"), "\(past.stderr)")
            #expect(past.stdout.isEmpty, "\(past.stdout)")
        }
        let stdin = try daemon.ctl(["append", "--from-line", "12", "-"], stdin: lines.joined(separator: "\n"))
        #expect(stdin.status == 2 && stdin.stderr.contains("--from-line 12: standard input has only 9 lines; nothing was sent"), "\(stdin.stderr)")
        let empty = try daemon.ctl(["append", "--from-line", "2", "-"], stdin: "")
        #expect(empty.status == 2 && empty.stderr.contains("--from-line 2: standard input is empty; nothing was sent"), "\(empty.stderr)")
        #expect(try daemon.client().headPosition() == 0)
        let last = try daemon.ctl(["append", "--from-line", "9", "--format", "json", file])
        #expect(last.status == 0 && last.json?["new"]?.intValue == 1, "the last line is within the file: \(last.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("a UTF-8 byte order mark at the start of a file or of standard input is skipped; anywhere else it is not JSON")
    func byteOrderMark() throws {
        let daemon = try Daemon()
        let lines = Self.bulkLines(3, descriptionBytes: 10)
        let file = daemon.root + "/bom.jsonl"
        try Data([0xEF, 0xBB, 0xBF] + Array((lines.joined(separator: "\n") + "\n").utf8)).write(to: URL(fileURLWithPath: file))
        let fromFile = try daemon.ctl(["append", "--format", "json", file])
        #expect(fromFile.status == 0, "\(fromFile.stderr)")
        #expect(fromFile.json?["new"]?.intValue == 3, "\(fromFile.stdout)")
        let more = Self.bulkLines(2, descriptionBytes: 10, prefix: "stdin")
        let fromStdin = try daemon.ctl(["append", "--format", "json", "-"], stdin: "\u{FEFF}" + more.joined(separator: "\n") + "\n")
        #expect(fromStdin.status == 0, "\(fromStdin.stderr)")
        #expect(fromStdin.json?["new"]?.intValue == 2, "\(fromStdin.stdout)")
        #expect(try Self.storedIncidents(daemon) == ["bulk-0", "bulk-1", "bulk-2", "stdin-0", "stdin-1"])

        let inside = try daemon.ctl(["append", "-"], stdin: more[0] + "\n\u{FEFF}" + more[1] + "\n")
        #expect(inside.status == 2, "\(inside.stderr)")
        #expect(inside.stderr.contains("-:2: not valid JSON"), "\(inside.stderr)")
        let twice = try daemon.ctl(["append", "-"], stdin: "\u{FEFF}\u{FEFF}" + more[0] + "\n")
        #expect(twice.status == 2 && twice.stderr.contains("-:1: not valid JSON"), "only one mark is skipped: \(twice.stderr)")
        #expect(try daemon.client().headPosition() == 5)
        #expect(daemon.stop() == 0)
    }
}
