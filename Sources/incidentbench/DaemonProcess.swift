import Foundation
import Histogram
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
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
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

/// Asks `city` one request at a time on its own connection, on its own thread, until told to stop.
final class CityProber: Sendable {
    private let stopFlag = Atomic<Bool>(false)
    private let result = Mutex<(Histogram<UInt64>, String?)>((makeHistogram(), nil))
    private let finished = Mutex<Bool>(false)
    private let socketPath: String

    init(socketPath: String) {
        self.socketPath = socketPath
    }

    func start() {
        let thread = Thread { [self] in
            self.run()
        }
        thread.start()
    }

    private func run() {
        defer { finished.withLock { $0 = true } }
        let names = ["Kupiansk", "Kup’yansk", "Melitopol", "Berdyansk", "Бердянськ"]
        do {
            let client = try SimpleClient(path: socketPath)
            var n = 0
            var local = makeHistogram()
            var error: String?
            while !stopFlag.load(ordering: .relaxed) {
                n += 1
                let line = Array("{\"id\":\(n),\"op\":\"city\",\"city\":\"\(names[n % names.count])\"}\n".utf8)
                let t0 = monotonicNanos()
                let response = try client.call(line)
                local.record(monotonicNanos() - t0)
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
