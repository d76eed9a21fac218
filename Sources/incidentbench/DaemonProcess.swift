import Foundation
import Histogram
import StrictJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The real `incidentd`, started on a temporary socket and data directory.
final class DaemonProcess {
    let binary: String
    let dataDir: String
    let socketPath: String
    let logPath: String
    private let process: Process

    init(binary: String, root: String, extraArguments: [String] = []) throws {
        self.binary = binary
        dataDir = root + "/data"
        socketPath = root + "/incidentd.sock"
        logPath = root + "/incidentd.log"
        // Writable by its owner only whatever the umask: incidentd refuses a socket directory others may write.
        try FileManager.default.createDirectory(
            atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--data-dir", dataDir, "--socket", socketPath, "--log-level", "warning"] + extraArguments
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let deadline = monotonicNanos() + 30_000_000_000
        while true {
            if !process.isRunning {
                throw BenchError("incidentd exited with \(process.terminationStatus): \(self.log)")
            }
            if let fd = try? connectUnix(socketPath) {
                close(fd)
                break
            }
            if monotonicNanos() > deadline { throw BenchError("incidentd did not serve \(socketPath) within 30 s") }
            usleep(20_000)
        }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then waits; the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Peak and current memory of the daemon, from `/proc`.
    func memory() -> MemorySnapshot {
        MemorySnapshot(pid: pid)
    }

    /// Whether the daemon's event loop threads (`NIO-ELT-*`) run `SCHED_RR`.
    func eventLoopsAreRealtime() -> Bool {
        let policies = ProcStat.threads(of: pid).filter { $0.name.hasPrefix("NIO-ELT") }.map(\.policy)
        return !policies.isEmpty && policies.allSatisfy { $0 == 2 }
    }
}

/// One process's or thread's `stat` file (stat(5)): its name, CPU time and scheduling policy.
struct ProcStat {
    var name: String
    /// Fields 3 on: the ones after the name, which may hold spaces.
    private var fields: [Substring]

    init?(path: String) {
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8),
            let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
        else { return nil }
        name = String(stat[stat.index(after: open)..<close])
        fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 38 else { return nil }
    }

    /// Fields 14 and 15 (utime, stime), in seconds.
    var userSeconds: Double { (Double(fields[11]) ?? 0) / ProcStat.ticksPerSecond }
    var systemSeconds: Double { (Double(fields[12]) ?? 0) / ProcStat.ticksPerSecond }
    /// Field 41: 0 for `SCHED_OTHER`, 2 for `SCHED_RR`.
    var policy: Int { Int(fields[38]) ?? -1 }

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Every thread of `pid`.
    static func threads(of pid: Int32) -> [ProcStat] { tasks(of: pid).map(\.stat) }

    /// Every thread of `pid`, with its `/proc/PID/task/TID` directory.
    static func tasks(of pid: Int32) -> [(directory: String, stat: ProcStat)] {
        let tasks = "/proc/\(pid)/task"
        return ((try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []).compactMap { tid in
            ProcStat(path: "\(tasks)/\(tid)/stat").map { ("\(tasks)/\(tid)", $0) }
        }
    }
}

/// What `/proc/PID/status` and `/proc/PID/smaps_rollup` say, in bytes.
struct MemorySnapshot {
    var peakRSS = 0  // VmHWM
    var rss = 0  // VmRSS
    var privateClean = 0
    var privateDirty = 0
    var anonymous = 0
    var fileRSS = 0  // RssFile: pages of mapped files (the LMDB map) the process touched

    var privateTotal: Int { privateClean + privateDirty }

    init(pid: Int32) {
        func fields(_ path: String) -> [String: Int] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [:] }
            var result: [String: Int] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard parts.count >= 2, parts[0].hasSuffix(":"), let kb = Int(parts[1]) else { continue }
                result[String(parts[0].dropLast())] = kb * 1024
            }
            return result
        }
        let status = fields("/proc/\(pid)/status")
        let smaps = fields("/proc/\(pid)/smaps_rollup")
        peakRSS = status["VmHWM"] ?? 0
        rss = status["VmRSS"] ?? 0
        fileRSS = status["RssFile"] ?? 0
        privateClean = smaps["Private_Clean"] ?? 0
        privateDirty = smaps["Private_Dirty"] ?? 0
        anonymous = smaps["Anonymous"] ?? 0
    }
}

/// Asks `city` on its own connection, on its own thread, one request at a time, until told to stop: either
/// back to back (a reader that always has its next question) or paced at one a millisecond (a reader whose
/// question arrives while the daemon is busy with appends, which is the harder case on a saturated machine).
final class CityProber: Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let result = Mutex<(Histogram<UInt64>, String?)>((makeHistogram(), nil))
    private let finished = Mutex<Bool>(false)
    private let socketPath: String
    private let paced: Bool

    init(socketPath: String, paced: Bool) {
        self.socketPath = socketPath
        self.paced = paced
    }

    func start() {
        let thread = Thread { [self] in
            self.run()
        }
        thread.start()
    }

    private func run() {
        defer { finished.withLock { $0 = true } }
        // Measure the daemon's latency, not this thread's wait for a CPU behind the load generator (on Linux the
        // nice value of `who` 0 is the calling thread's).
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, -10)
        let names = ["Kupiansk", "Kup’yansk", "Melitopol", "Berdyansk", "Бердянськ"]
        do {
            let client = try SimpleClient(path: socketPath)
            var n = 0
            var local = makeHistogram()
            var error: String?
            var next = monotonicNanos()
            while !stopFlag.load(ordering: .relaxed) {
                n += 1
                let line = Array("{\"id\":\(n),\"op\":\"city\",\"city\":\"\(names[n % names.count])\"}\n".utf8)
                let t0 = monotonicNanos()
                let response = try client.call(line)
                let t1 = monotonicNanos()
                local.record(t1 - t0)
                if paced {
                    next += 1_000_000
                    if next > t1 { usleep(UInt32((next - t1) / 1_000)) } else { next = t1 }
                }
                if error == nil && !response.withUnsafeBytes({ PipelinedLoad.isOK($0) }) {
                    error = String(decoding: response, as: UTF8.self)
                }
            }
            let histogram = local
            let firstError = error
            result.withLock { $0 = (histogram, firstError) }
        } catch {
            let message = "\(error)"
            result.withLock { $0.1 = message }
        }
    }

    /// Stops the prober and returns what it measured.
    func stop() -> (Histogram<UInt64>, String?) {
        stopFlag.store(true, ordering: .relaxed)
        while !finished.withLock({ $0 }) { usleep(1_000) }
        return result.withLock { $0 }
    }
}

/// The daemon's CPU time and group commits, and the machine's pressure, at one moment; two of them make a
/// ``PhaseDiagnostics``.
struct PhaseProbe {
    var at = monotonicNanos()
    var cpuSeconds = 0.0
    var systemSeconds = 0.0
    /// CPU seconds (user + system) per thread name: the writer, the event loops.
    var threads: [String: Double] = [:]
    var commits: Int64 = 0
    var committedEvents: Int64 = 0
    /// `write_bytes` of /proc/PID/io: what the kernel counts the daemon as having dirtied. With large folios
    /// (ext4 on Linux 6.16 and later) it seems to count each folio a write touches in full: several times what
    /// goes to the disk.
    var diskBytes: Int64 = 0
    /// Bytes written to the block device the data directory is on, by every process (nil on tmpfs): on an
    /// otherwise idle machine, what the daemon's commits sent to the disk.
    var deviceBytes: Int64?
    var ioStallMicros: Int64 = 0
    var cpuStallMicros: Int64 = 0
    /// CPU seconds of this process: the load generator (and the `city` prober).
    var loadGeneratorSeconds = 0.0
    /// The machine's CPU time from /proc/stat, in clock ticks over all CPUs: in all, not idle, and stolen by
    /// the hypervisor.
    var machineTicks: (total: Double, busy: Double, steal: Double) = (0, 0, 0)

    /// A probe of `daemon`.
    init(_ daemon: DaemonProcess) {
        self.init(pid: daemon.pid, socketPath: daemon.socketPath, dataDir: daemon.dataDir)
    }

    init(pid: Int32, socketPath: String, dataDir: String? = nil) {
        deviceBytes = dataDir.flatMap(BlockDevice.init(holding:))?.bytesWritten()
        if let me = ProcStat(path: "/proc/self/stat") { loadGeneratorSeconds = me.userSeconds + me.systemSeconds }
        machineTicks = PhaseProbe.machineTicks()
        if let daemon = ProcStat(path: "/proc/\(pid)/stat") {
            cpuSeconds = daemon.userSeconds + daemon.systemSeconds
            systemSeconds = daemon.systemSeconds
        }
        for thread in ProcStat.threads(of: pid) {
            threads[thread.name.hasPrefix("NIO-ELT") ? "event loops" : thread.name, default: 0] +=
                thread.userSeconds + thread.systemSeconds
        }
        if let client = try? SimpleClient(path: socketPath),
            let line = try? client.call(Array("{\"id\":0,\"op\":\"status\"}\n".utf8)),
            let status = try? JSONReader().read(line)
        {
            commits = status["commits"]?["transactions"]?.intValue ?? 0
            committedEvents = status["commits"]?["events"]?.intValue ?? 0
        }
        if let io = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8),
            let line = io.split(separator: "\n").first(where: { $0.hasPrefix("write_bytes:") })
        {
            diskBytes = Int64(line.split(separator: " ").last ?? "") ?? 0
        }
        ioStallMicros = PhaseProbe.pressure("io")
        cpuStallMicros = PhaseProbe.pressure("cpu")
    }

    /// The `cpu` line of /proc/stat: all ticks, the ticks not idle (nor waiting for I/O), and the stolen ones.
    static func machineTicks() -> (total: Double, busy: Double, steal: Double) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return (0, 0, 0) }
        // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
        let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
        guard ticks.count == 8 else { return (0, 0, 0) }
        let total = ticks.reduce(0, +)
        return (total, total - ticks[3] - ticks[4], ticks[7])
    }

    /// `some total=` of /proc/pressure/KIND: microseconds in which some task stalled on it.
    static func pressure(_ kind: String) -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/pressure/\(kind)", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("some") }),
            let total = line.split(separator: " ").first(where: { $0.hasPrefix("total=") })
        else { return 0 }
        return Int64(total.dropFirst(6)) ?? 0
    }
}

struct PhaseDiagnostics {
    /// Daemon CPU time (user + system) per acknowledged append, in microseconds.
    var cpuMicrosPerAppend: Double
    /// Of it, in the kernel.
    var systemMicrosPerAppend: Double
    /// Per thread name.
    var threadMicrosPerAppend: [String: Double]
    /// Appends per group commit.
    var appendsPerCommit: Double
    /// Bytes dirtied per append, as /proc/PID/io counts them.
    var diskBytesPerAppend: Double
    /// Bytes the disk received per append (nil on tmpfs).
    var deviceBytesPerAppend: Double?
    /// Share of the phase in which some task on the machine waited for I/O, and for a CPU.
    var ioPressure: Double
    var cpuPressure: Double
    /// The load generator's CPU time per append, in microseconds.
    var loadGeneratorMicrosPerAppend: Double
    /// Share of the machine's CPU time (all CPUs) that was busy, and that the hypervisor took.
    var machineBusy: Double
    var machineSteal: Double

    init(from a: PhaseProbe, to b: PhaseProbe, appends: Int) {
        loadGeneratorMicrosPerAppend = (b.loadGeneratorSeconds - a.loadGeneratorSeconds) * 1e6 / Double(max(appends, 1))
        let ticks = max(b.machineTicks.total - a.machineTicks.total, 1)
        machineBusy = (b.machineTicks.busy - a.machineTicks.busy) / ticks
        machineSteal = (b.machineTicks.steal - a.machineTicks.steal) / ticks
        let elapsed = Double(b.at - a.at) / 1e3
        cpuMicrosPerAppend = (b.cpuSeconds - a.cpuSeconds) * 1e6 / Double(max(appends, 1))
        systemMicrosPerAppend = (b.systemSeconds - a.systemSeconds) * 1e6 / Double(max(appends, 1))
        threadMicrosPerAppend = b.threads.mapValues { _ in 0 }
        for (name, seconds) in b.threads {
            threadMicrosPerAppend[name] = (seconds - (a.threads[name] ?? 0)) * 1e6 / Double(max(appends, 1))
        }
        appendsPerCommit = Double(b.committedEvents - a.committedEvents) / Double(max(b.commits - a.commits, 1))
        diskBytesPerAppend = Double(b.diskBytes - a.diskBytes) / Double(max(appends, 1))
        if let before = a.deviceBytes, let after = b.deviceBytes {
            deviceBytesPerAppend = Double(after - before) / Double(max(appends, 1))
        }
        ioPressure = Double(b.ioStallMicros - a.ioStallMicros) / elapsed
        cpuPressure = Double(b.cpuStallMicros - a.cpuStallMicros) / elapsed
    }

    var summary: String {
        let busiest = threadMicrosPerAppend.filter { $0.value >= 0.5 }.sorted { $0.value > $1.value }
            .map { String(format: "%@ %.1f", $0.key, $0.value) }.joined(separator: ", ")
        return String(
            format: "daemon CPU %.1f µs/append (kernel %.1f; %@), load generator %.1f µs/append, %.0f appends/commit, %@ (%.1f KiB dirtied as /proc/PID/io counts it), machine CPUs %.0f%% busy (%.0f%% stolen), I/O pressure %.0f%%, CPU pressure %.0f%%",
            cpuMicrosPerAppend, systemMicrosPerAppend, busiest, loadGeneratorMicrosPerAppend, appendsPerCommit,
            deviceBytesPerAppend.map { String(format: "%.1f KiB to the disk/append", $0 / 1024) } ?? "no disk",
            diskBytesPerAppend / 1024, 100 * machineBusy, 100 * machineSteal, 100 * ioPressure, 100 * cpuPressure)
    }
}

/// The block device a directory is on, as sysfs shows it.
struct BlockDevice {
    /// `/sys/dev/block/MAJOR:MINOR/stat`.
    let statPath: String

    /// The device `path` is on; nil when it is on none (tmpfs) or sysfs does not show it.
    init?(holding path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        let dev = UInt64(info.st_dev)
        // glibc's encoding of dev_t (`gnu_dev_major`, `gnu_dev_minor`, which Swift does not import).
        let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~UInt64(0xFFF))
        let minor = (dev & 0xFF) | ((dev >> 12) & ~UInt64(0xFF))
        let statPath = "/sys/dev/block/\(major):\(minor)/stat"
        guard major != 0, FileManager.default.fileExists(atPath: statPath) else { return nil }
        self.statPath = statPath
    }

    /// The seventh field of `stat`: 512-byte sectors written, by every process.
    func bytesWritten() -> Int64? {
        guard let text = try? String(contentsOfFile: statPath, encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 6, let sectors = Int64(fields[6]) else { return nil }
        return sectors * 512
    }
}
