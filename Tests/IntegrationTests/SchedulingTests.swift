import Foundation
import IncidentLog
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Which scheduling policy each of the daemon's threads runs under: by default all ordinary; with
/// `loop_scheduling = "realtime"` the event loops real-time when allowed (a `city` query under full append
/// load is answered at once, not after another thread's time slice), the writer, the intake and the log
/// walkers never.
@Suite("Thread scheduling")
struct SchedulingTests {
    /// `SCHED_OTHER` and `SCHED_RR`, as `/proc/PID/task/TID/stat` reports them.
    static let ordinary = 0
    static let roundRobin = 2

    /// Each thread of `pid` by kernel name, with its scheduling policy (field 41 of its `stat`).
    static func policies(of pid: Int32) throws -> [(name: String, policy: Int)] {
        let taskDirectory = "/proc/\(pid)/task"
        return try FileManager.default.contentsOfDirectory(atPath: taskDirectory).compactMap { tid in
            guard let stat = readFile("\(taskDirectory)/\(tid)/stat"),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")")
            else { return nil }
            let name = String(stat[stat.index(after: open)..<close])
            // After the name come the fields from 3 (state) on: the policy, field 41, is the 39th of them.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 38, let policy = Int(fields[38]) else {
                throw HarnessError("cannot read the policy of thread \(tid) from: \(stat)")
            }
            return (name, policy)
        }
    }

    static func loops(_ threads: [(name: String, policy: Int)]) -> [(name: String, policy: Int)] {
        threads.filter { $0.name.hasPrefix("NIO-ELT") }
    }

    @Test("loop_scheduling = \"realtime\": the event loops run SCHED_RR when allowed; the writer, the intake and the log walkers never do")
    func realtimeLoops() throws {
        let daemon = try Daemon.configured("[daemon]\nloop_scheduling = \"realtime\"\n")
        defer { daemon.stop() }
        // Each thread names itself once it runs, which may come after the socket first answers.
        var threads: [(name: String, policy: Int)] = []
        try waitFor("the writer and the intake threads to be named") {
            threads = try Self.policies(of: daemon.pid)
            return ["incidentd-write", "incidentd-intak"].allSatisfy { name in threads.contains { $0.name == name } }
        }
        let loops = Self.loops(threads)
        #expect(!loops.isEmpty, "no event loop thread among \(threads.map(\.name))")
        for name in ["incidentd-write", "incidentd-intak"] {
            let thread = threads.first { $0.name == name }
            #expect(thread?.policy == Self.ordinary, "\(name): \(String(describing: thread))")
        }
        for thread in threads where !thread.name.hasPrefix("NIO-ELT") {
            #expect(thread.policy == Self.ordinary, "\(thread.name) must not run real-time")
        }
        let refused = daemon.log.contains("event loops keep ordinary scheduling")
        if geteuid() == 0 {
            #expect(!refused, "root may use SCHED_RR: \(daemon.log)")
            for loop in loops { #expect(loop.policy == Self.roundRobin, "\(loop.name) runs policy \(loop.policy)") }
        } else {
            // Without CAP_SYS_NICE or an RLIMIT_RTPRIO the kernel refuses; the daemon says so and serves.
            for loop in loops { #expect(loop.policy == (refused ? Self.ordinary : Self.roundRobin)) }
        }
        // Queries on the loops, and `read` and `verify` on the log walkers, are all answered.
        let client = try daemon.client()
        for op in ["status", "cities", "verify", "read"] {
            let answer = try client.call(op)
            #expect(answer["ok"]?.boolValue == true, "\(op): \(answer)")
        }
    }

    @Test("by default every thread keeps ordinary scheduling")
    func normalLoops() throws {
        let daemon = try Daemon()
        defer { daemon.stop() }
        let threads = try Self.policies(of: daemon.pid)
        #expect(!Self.loops(threads).isEmpty)
        for thread in threads { #expect(thread.policy == Self.ordinary, "\(thread.name) runs policy \(thread.policy)") }
        #expect(!daemon.log.contains("event loops keep ordinary scheduling"))
    }

    @Test("an unknown loop_scheduling is refused, naming the file, the key and the choices")
    func unknownPolicy() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let config = root + "/incidentd.toml"
        try "[daemon]\nloop_scheduling = \"fast\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try runCommand(
            Binaries.incidentd, ["--config", config, "--data-dir", root + "/data", "--socket", root + "/s.sock"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("\(config): daemon.loop_scheduling: one of realtime, normal"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: root + "/data/data.mdb"))
    }

    @Test("a yield point gives the CPU away once every interval, counting on across rounds")
    func yieldPointInterval() {
        var calls = 0
        var point = YieldPoint(every: 3) { calls += 1 }
        for _ in 0..<2 { point.pass() }
        #expect(calls == 0, "no yield before the third unit")
        point.pass()
        #expect(calls == 1)
        for _ in 0..<7 { point.pass() }
        #expect(calls == 3, "ten units, one yield after every third")
        var every = YieldPoint(every: 1) { calls += 1 }
        every.pass()
        every.pass()
        #expect(calls == 5)
    }
}
