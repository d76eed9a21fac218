import Dispatch
import Foundation
import Gazetteer
import IncidentDomain
import IncidentLog
import StrictJSON
import Synchronization

/// `incidentbench --commit-only`: the group committer alone, in this process, on a log of its own, with no
/// socket, event loop or intake in the way. Appends like the 16-connection phase's are decoded beforehand, and
/// the committer is kept `window` appends ahead. What is measured is the writer thread's own CPU time per append,
/// from `/proc/self/task/TID/schedstat` (nanoseconds the thread ran, kernel time included), and what the disk
/// received. The ceiling of the one serial stage, and a way to compare two versions of the append path.
struct CommitBench {
    let events: Int
    let window: Int
    let passes: Int
    let workDir: String
    let keys: EventFactory.Keys

    /// What one pass measured.
    struct Pass {
        var appends: Int
        var seconds: Double
        var writerNanos: UInt64
        var commits: UInt64
        /// What the disk the log is on received over the pass, from every process (nil on tmpfs).
        var deviceBytes: Int64?

        var kibPerAppend: Double? { deviceBytes.map { Double($0) / 1024 / Double(max(appends, 1)) } }

        var writerMicrosPerAppend: Double { Double(writerNanos) / 1e3 / Double(max(appends, 1)) }
        var perSecond: Double { Double(appends) / seconds }
    }

    func run() throws -> [Pass] {
        var template = Array("\(workDir)/incidentbench-commit-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("cannot create a directory in \(workDir)")
        }
        let root = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let log = try EventLog(options: LogOptions(directory: root), gazetteer: .embedded)
        let committer = GroupCommitter(log: log)
        defer { committer.shutdown() }
        // The writer thread names itself once it runs, which may be a moment after the committer is made.
        let deadline = monotonicNanos() + 5_000_000_000
        var found = Self.thread(named: "incidentd-write")
        while found == nil && monotonicNanos() < deadline {
            usleep(1_000)
            found = Self.thread(named: "incidentd-write")
        }
        guard let writer = found else {
            throw BenchError("the committer's writer thread (incidentd-write) is not in /proc/self/task")
        }
        let connections = 16
        let eventsPerDay = max(500, events / 1_200)
        var factories = (0..<connections).map { c in
            EventFactory(
                prefix: "c\(c)", seed: 0xC0_2022_0301 &+ UInt64(c), keys: keys, firstEvent: c, stride: connections,
                eventsPerDay: eventsPerDay)
        }
        let recorder = Recorder(uid: getuid(), user: "incidentbench")
        var passes: [Pass] = []
        let perPass = max(connections, events / passesCount)
        for _ in 0..<passesCount {
            // Decoded before the clock starts, in the order 16 connections would interleave them.
            var requests: [AppendRequest] = []
            requests.reserveCapacity(perPass)
            let now = Timestamp.now()
            for n in 0..<perPass {
                let line = factories[n % connections].next()
                let event = try ProposedEvent(json: JSONReader().read(line), now: now)
                requests.append(AppendRequest(events: [event], allowNewCity: false, recordedBy: recorder))
            }
            let inFlight = DispatchSemaphore(value: window)
            let done = DispatchGroup()
            let failures = Mutex<[String]>([])
            let commitsBefore = committer.statistics.commits
            let writerBefore = Self.runNanos(writer)
            let device = BlockDevice(holding: root)
            let deviceBefore = device?.bytesWritten()
            let start = monotonicNanos()
            for request in requests {
                inFlight.wait()
                done.enter()
                committer.submit(request) { result in
                    if case .failure(let failure) = result { failures.withLock { $0.append("\(failure)") } }
                    inFlight.signal()
                    done.leave()
                }
            }
            done.wait()
            let seconds = Double(monotonicNanos() - start) / 1e9
            if let failure = failures.withLock({ $0.first }) { throw BenchError("an append was refused: \(failure)") }
            let deviceAfter = device?.bytesWritten()
            passes.append(Pass(
                appends: perPass, seconds: seconds, writerNanos: Self.runNanos(writer) - writerBefore,
                commits: committer.statistics.commits - commitsBefore,
                deviceBytes: deviceBefore.flatMap { before in deviceAfter.map { $0 - before } }))
        }
        let appended = passes.reduce(0) { $0 + $1.appends }
        let position = try log.status().position
        guard position == UInt64(appended) else {
            throw BenchError("the log is at position \(position) after \(appended) acknowledged appends")
        }
        return passes
    }

    private var passesCount: Int { max(1, passes) }

    /// The `/proc/PID/task/TID` directory of this process's thread called `name`.
    static func thread(named name: String) -> String? {
        ProcStat.tasks(of: getpid()).first { $0.stat.name == name }?.directory
    }

    /// The first field of `schedstat`: nanoseconds the thread has run.
    static func runNanos(_ task: String) -> UInt64 {
        let text = (try? String(contentsOfFile: "\(task)/schedstat", encoding: .utf8)) ?? ""
        return text.split(separator: " ").first.flatMap { UInt64($0) } ?? 0
    }
}
