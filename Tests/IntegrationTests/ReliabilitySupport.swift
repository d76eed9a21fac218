import Foundation
import IncidentProtocol
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Helpers of the reliability tests (issue 3). They only add to the harness in Support/Daemon.swift.

/// Starts a daemon with `toml` as its `incidentd.toml` (written into the daemon's own temporary root).
func startDaemon(config toml: String, arguments: [String] = []) throws -> Daemon {
    let root = makeTemporaryDirectory("incidentd-rel")
    let path = root + "/incidentd.toml"
    try toml.write(toFile: path, atomically: true, encoding: .utf8)
    return try Daemon(arguments: ["--config", path] + arguments, root: root)
}

/// Whether the suite runs under a sanitizer (`make sanitize` sets this); timing and memory bounds widen then.
let underSanitizer = ProcessInfo.processInfo.environment["INCIDENTD_SANITIZER"] != nil

/// Generous deadlines: the tests assert that nothing waits forever, not how fast things go.
let deadlineScale: Double = underSanitizer ? 4 : 1

/// Raises this process's soft limit on open files towards `wanted` (never above the hard limit) and returns the
/// soft limit now in effect. A daemon started afterwards inherits it.
@discardableResult
func raiseOpenFileLimit(to wanted: UInt64) -> UInt64 {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    if UInt64(limit.rlim_cur) < wanted {
        var raised = limit
        raised.rlim_cur = rlim_t(min(wanted, UInt64(limit.rlim_max)))
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
    }
    return UInt64(limit.rlim_cur)
}

/// A fresh lowercase UUID for `eventId`.
func newEventId() -> String { UUID().uuidString.lowercased() }

/// Wire events of SPEC §2, for appends.
enum WireEvent {
    static let citySpellings = ["Kupiansk", "Kup'yansk", "Melitopol", "Melitopoli", "Berdiansk", "Berdyans'k"]

    static func report(
        incident: String?, city: String = "Kupiansk", eventId: String = newEventId(), description: String? = nil,
        participants: JSONValue? = nil, occurredAt: String = "2022-03-01"
    ) -> JSONValue {
        var data: [String: JSONValue] = ["city": .string(city), "kind": "demonstration"]
        if let description { data["description"] = .string(description) }
        if let participants { data["participants"] = participants }
        var event: [String: JSONValue] = [
            "eventId": .string(eventId), "type": "incident-reported", "occurredAt": .string(occurredAt),
            "data": .object(data),
        ]
        if let incident { event["incident"] = .string(incident) }
        return .object(event)
    }

    static func response(incident: String, eventId: String = newEventId(), responses: [String] = ["warning-shots"]) -> JSONValue {
        [
            "eventId": .string(eventId), "type": "response-observed", "incident": .string(incident),
            "data": ["by": "Russian armed forces", "responses": .array(responses.map { .string($0) })],
        ]
    }

    static func outcome(incident: String, eventId: String = newEventId(), status: String = "dispersed") -> JSONValue {
        [
            "eventId": .string(eventId), "type": "outcome-updated", "incident": .string(incident),
            "data": ["status": .string(status)],
        ]
    }
}

extension RawClient {
    /// Changes how long `receive` waits before it fails (SO_RCVTIMEO).
    func setReceiveTimeout(_ seconds: Double) {
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Whether the peer has closed the connection: EOF (or a reset) within `timeout` seconds, with no bytes.
    func peerClosed(within timeout: Double) -> Bool {
        setReceiveTimeout(timeout)
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == ECONNRESET { return true }
            return false
        }
    }

    /// Every event of the log, position 1 to the head, through `read`.
    func allEvents() throws -> [JSONValue] {
        var events: [JSONValue] = []
        var from: Int64 = 1
        while true {
            let page = try call("read", ["from": .int(from), "limit": 10_000])
            guard page.isOK, let batch = page["events"]?.arrayValue else {
                throw HarnessError("read from \(from) failed: \(page.canonicalString())")
            }
            if batch.isEmpty { return events }
            events += batch
            from = page["next"]?.intValue ?? (from + Int64(batch.count))
        }
    }

    /// `status`, which must succeed.
    func status() throws -> JSONValue {
        let status = try call("status")
        guard status.isOK else { throw HarnessError("status failed: \(status.canonicalString())") }
        return status
    }
}

/// Checks what every test of this issue relies on after the fact: positions 1…head without gaps, the hash
/// chain intact from 1 to the head (`verify`), and the stored city projections byte for byte equal to a fresh
/// fold of the log (`incidentctl cities --format json` against `incidentctl replay --data-dir`).
/// Returns the events read.
@discardableResult
func checkLogIntegrity(_ daemon: Daemon, _ client: RawClient, sourceLocation: SourceLocation = #_sourceLocation) throws -> [JSONValue] {
    let events = try client.allEvents()
    let head = try client.status()["position"]?.intValue ?? -1
    #expect(Int64(events.count) == head, "the log holds \(events.count) events but its head is \(head)", sourceLocation: sourceLocation)
    for (index, event) in events.enumerated() where event["position"]?.intValue != Int64(index + 1) {
        Issue.record("position \(index + 1) holds \(event["position"]?.canonicalString() ?? "nothing"): a gap", sourceLocation: sourceLocation)
        break
    }
    let verify = try client.call("verify")
    #expect(verify.isOK && verify["intact"]?.boolValue == true, "verify: \(verify.canonicalString())", sourceLocation: sourceLocation)
    #expect(verify["checked"]?.intValue == head, "verify checked \(verify["checked"]?.canonicalString() ?? "?") of \(head)", sourceLocation: sourceLocation)
    #expect(verify["headPosition"]?.intValue == head, sourceLocation: sourceLocation)
    #expect(
        verify["derived"]?["intact"]?.boolValue == true && verify["derived"]?["position"]?.intValue == head,
        "the indexes and projections agree with the events: \(verify["derived"]?.canonicalString() ?? "not compared")",
        sourceLocation: sourceLocation)

    let stored = try daemon.ctl(["cities", "--format", "json"])
    let folded = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--format", "json"])
    #expect(stored.status == 0, "cities: \(stored.stderr)", sourceLocation: sourceLocation)
    #expect(folded.status == 0, "replay: \(folded.stderr)", sourceLocation: sourceLocation)
    #expect(!stored.stdout.isEmpty, sourceLocation: sourceLocation)
    #expect(stored.stdout == folded.stdout, "stored projections differ from a fresh fold of the log", sourceLocation: sourceLocation)
    return events
}

/// One row of LMDB's reader table, as `mdb_stat -r` prints it.
struct ReaderSlot: Hashable {
    var pid: Int32
    var txnid: String
}

/// The reader table of the environment in `dataDir`, read with `mdb_stat -r` (lmdb-utils; `make deps`).
/// `mdb_stat -r` only lists the slots: unlike `-rr` it does not clear stale ones.
func readerTable(_ dataDir: String) throws -> [ReaderSlot] {
    let result = try runCommand(mdbTool("mdb_stat"), ["-r", dataDir])
    // mdb_stat 0.9.24 exits 1 after printing the reader table (it returns fputs's result), so judge by the output.
    guard result.stdout.contains("Reader Table Status") else {
        throw HarnessError("mdb_stat -r \(dataDir) exited \(result.status): \(result.stdout) \(result.stderr)")
    }
    return result.stdout.split(separator: "\n").compactMap { line -> ReaderSlot? in
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count == 3, let pid = Int32(fields[0]) else { return nil }
        return ReaderSlot(pid: pid, txnid: String(fields[2]))
    }
}

/// The path of an lmdb-utils program.
func mdbTool(_ name: String) -> String {
    for directory in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
        return "\(directory)/\(name)"
    }
    return name
}

/// A process that holds a read transaction on the log in `dataDir` until it is killed: `mdb_dump -a` writing
/// into a pipe that nobody reads blocks, once the pipe is full, inside its read transaction.
final class StuckReader {
    let child: ChildProcess
    private let pipe: CloseOnExecPipe

    init(dataDir: String) throws {
        pipe = try CloseOnExecPipe()
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        do {
            child = try ChildProcess(
                mdbTool("mdb_dump"), ["-a", dataDir], environment: ProcessInfo.processInfo.environment,
                stdin: null, stdout: pipe.write, stderr: null)
        } catch {
            close(pipe.read)
            close(pipe.write)
            throw error
        }
        close(pipe.write)
        let child = self.child
        try waitFor("mdb_dump \(child.pid) to hold a read transaction", timeout: 20 * deadlineScale) {
            guard child.isRunning else { throw HarnessError("mdb_dump ended: the log is too small to fill the pipe") }
            return try readerTable(dataDir).contains { $0.pid == child.pid && $0.txnid != "-" }
        }
    }

    var pid: Int32 { child.pid }

    /// SIGKILL, so that its reader slot stays behind.
    func kill() {
        guard child.isRunning else { return }
        Glibc.kill(child.pid, SIGKILL)
        child.wait()
    }

    deinit {
        kill()
        close(pipe.read)
    }
}

/// The resident set size of a process, in bytes (0 when unknown).
func residentBytes(of pid: Int32) -> Int {
    statusBytes("VmRSS", of: pid)
}

/// The resident anonymous memory of a process (its heap and stacks, not mapped files), in bytes (0 when unknown).
func anonymousBytes(of pid: Int32) -> Int {
    statusBytes("RssAnon", of: pid)
}

/// A size in kB that /proc/PID/status lists under `field`, in bytes.
private func statusBytes(_ field: String, of pid: Int32) -> Int {
    guard let status = readFile("/proc/\(pid)/status") else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
        let kib = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kib * 1024
    }
    return 0
}

/// Bytes of `pid`'s mapping of a file named `data.mdb` that are resident in it (`Rss` in /proc/PID/smaps).
func residentLogMapBytes(of pid: Int32) -> Int {
    // Read to the end by hand: Foundation stops early on a /proc file, whose size reads as 0.
    let fd = open("/proc/\(pid)/smaps", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 0 }
    let smaps = String(decoding: readToEnd(fd), as: UTF8.self)
    var inLog = false
    var total = 0
    for line in smaps.split(separator: "\n") {
        guard let field = line.split(separator: " ").first else { continue }
        if !field.hasSuffix(":") {
            // A mapping's header: `start-end perms offset dev inode [path]`; the lines after it (`Key: value`)
            // describe it.
            inLog = line.hasSuffix("/data.mdb")
        } else if inLog && field == "Rss:" {
            total += (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
        }
    }
    return total
}

/// A counter and a list shared between threads.
final class Guarded<Value>: @unchecked Sendable {
    // Safe: every access goes through `lock`.
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }

    var current: Value { withLock { $0 } }
}

/// The power cut of the fault library (`Tests/FaultInjection/storage_faults.c`) for a daemon rooted in `root`:
/// its flag file, and the image of `data.mdb` it leaves as the disk held it when the power failed.
struct PowerCut {
    let flag: String
    let image: String

    init(root: String) {
        flag = root + "/power-cut"
        image = root + "/data-after-power-cut.mdb"
    }

    /// What the daemon's environment needs for the library to track its writes.
    func environment(library: String) -> [String: String] {
        ["LD_PRELOAD": library, "INCIDENTD_POWER_CUT": flag, "INCIDENTD_POWER_CUT_IMAGE": image]
    }

    /// The power fails at the `point`-th durability point (a sync, or an `O_DSYNC` write) from the next one on;
    /// `seed` decides which sectors written since the last sync the disk kept.
    func arm(point: Int, seed: Int) throws {
        try "\(point) \(seed)\n".write(toFile: flag, atomically: true, encoding: .utf8)
    }

    /// The library's line about the cut in `log`, if the power failed.
    static func report(in log: String) -> String? {
        log.split(separator: "\n").first { $0.contains("storage_faults: power cut at durability point") }.map(String.init)
    }

    /// The number of sectors written since the last sync that the disk lost, from the library's `report`.
    static func sectorsLost(_ report: String) -> Int? {
        report.split(separator: ":").last?.split(separator: " ").first.flatMap { Int($0) }
    }

    /// After the power failed: disarms, and puts what the disk held in place of the daemon's `data.mdb`.
    func restoreDisk(dataDir: String) throws {
        try? FileManager.default.removeItem(atPath: flag)
        guard rename(image, dataDir + "/data.mdb") == 0 else {
            throw HarnessError("no image of the disk at \(image): \(String(cString: strerror(errno)))")
        }
    }

    /// Starts `daemon` (with `arguments`) with the power set to fail at its `point`-th durability point, waits
    /// until it has, and puts the disk it left in place; the daemon is then stopped, its arguments and
    /// environment as before. Returns the library's report.
    func startUntilItFails(_ daemon: Daemon, library: String, point: Int, seed: Int, arguments: [String]) throws -> String {
        let (savedArguments, savedEnvironment) = (daemon.extraArguments, daemon.extraEnvironment)
        defer { (daemon.extraArguments, daemon.extraEnvironment) = (savedArguments, savedEnvironment) }
        try arm(point: point, seed: seed)
        daemon.extraArguments = savedArguments + arguments
        daemon.extraEnvironment = savedEnvironment.merging(environment(library: library)) { _, new in new }
        // It loses power before it serves, so starting it fails.
        #expect(throws: (any Error).self) { try daemon.start() }
        try waitFor("the power to fail at durability point \(point)", timeout: 60 * deadlineScale) { daemon.child?.isRunning == false }
        guard let report = Self.report(in: daemon.log), daemon.child?.wasSignaled == true else {
            throw HarnessError("the daemon stopped without the power failing: \(daemon.log)")
        }
        try restoreDisk(dataDir: daemon.dataDir)
        return report
    }
}
