import Dispatch
import Foundation
import IncidentDomain
import IncidentLog
import Synchronization

/// `incidentbench --decode-only`: what the daemon's intake thread does for each append line, in this process, on
/// one thread, with no socket, event loop or writer. The lines are those the 16-connection phase of a run of
/// 4 × `lines` events sends (`lines` of them, the 16 connections' interleaved), each as the line framer hands it
/// to the intake: the request without its newline. For each line, as `AppendIntake.process` and
/// `RequestExecutor.fastAppend` do: `Timestamp.now()`, ``FastWireDecoder/decodeAppend(_:now:)``, and the
/// ``AppendRequest`` made of its events (each event's canonical parts and content digest); then, a group commit's
/// worth at a time, the requests are freed, as the intake frees those the writer has answered.
///
/// Not included, being the daemon's own code: the role check, the queue of lines and the answered requests'
/// list (their locks and semaphores), the closures that carry the answer, the group committer's queue, and the
/// general path a line takes when the fast decoder refuses it. No line of the workload takes it: the mode
/// counts those that would and fails if there are any.
struct DecodeBench {
    let lines: Int
    let passes: Int
    let keys: EventFactory.Keys

    /// What one pass measured.
    struct Pass {
        var lines: Int
        /// CPU time of the thread that ran the loop, from `CLOCK_THREAD_CPUTIME_ID`.
        var threadNanos: UInt64

        var microsPerLine: Double { Double(threadNanos) / 1e3 / Double(max(lines, 1)) }
    }

    /// Request lines back to back in one buffer, each without its newline.
    struct Lines {
        var bytes: [UInt8] = []
        /// Line `i` is `bytes[ranges[i]]`.
        var ranges: [Range<Int>] = []
    }

    /// Requests freed together: about what the writer answers in one group commit with 16 × 32 appends in flight.
    static let freedTogether = 512

    func run() throws -> [Pass] {
        let made = Self.lines(count: lines, keys: keys)
        let recorder = Recorder(uid: getuid(), user: "incidentbench")
        let passes = max(1, self.passes)
        // On a thread of its own, which does nothing else, as the daemon's intake: `make bench-instructions` counts
        // that thread's instructions.
        let results = Mutex<[(refused: Int, nanos: UInt64)]>([])
        let finished = DispatchSemaphore(value: 0)
        startBackgroundThread(named: Self.threadName, nice: 0) {
            for _ in 0..<passes {
                let before = Self.threadCPUNanos()
                let refused = Self.intakeLoop(made, recorder: recorder)
                let nanos = Self.threadCPUNanos() - before
                results.withLock { $0.append((refused, nanos)) }
            }
            finished.signal()
        }
        finished.wait()
        return try results.withLock { results in
            try results.map { pass in
                guard pass.refused == 0 else {
                    throw BenchError("the fast decoder refused \(pass.refused) of \(made.ranges.count) lines; the daemon would take the general path for them")
                }
                return Pass(lines: made.ranges.count, threadNanos: pass.nanos)
            }
        }
    }

    /// The name of the thread that runs the loop, as `/proc/self/task/*/comm` gives it.
    static let threadName = "bench-intake"

    /// The 16-connection phase's lines in a run of 4 × `count` events, which sends `count` of them (at least 128),
    /// in the order they would arrive if the connections took turns.
    static func lines(count: Int, keys: EventFactory.Keys) -> Lines {
        let events = 4 * count
        let sizes = PhaseSizes(events: events)
        var run = RunScripts(events: events, keys: keys)
        run.skip(connections: 1, total: sizes.warmup)
        run.skip(connections: 1, total: sizes.sequential)
        run.skip(connections: 1, total: sizes.single)
        let scripts = run.next("p16x", connections: 16, total: sizes.sixteen)
        var lines = Lines()
        lines.bytes.reserveCapacity(scripts.reduce(0) { $0 + $1.bytes.count })
        lines.ranges.reserveCapacity(sizes.sixteen)
        let longest = scripts.map(\.count).max() ?? 0
        for n in 0..<longest {
            for script in scripts where n < script.count {
                let start = lines.bytes.count
                lines.bytes.append(contentsOf: script.bytes[script.offsets[n]..<(script.offsets[n + 1] - 1)])
                lines.ranges.append(start..<lines.bytes.count)
            }
        }
        return lines
    }

    /// The intake's work on every line of `lines`; the lines the fast decoder refused. `make bench-instructions`
    /// counts the instructions of the thread that runs it, and the setup is not done on that thread.
    @inline(never)
    static func intakeLoop(_ lines: Lines, recorder: Recorder) -> Int {
        var refused = 0
        var answered: [AppendRequest] = []
        answered.reserveCapacity(freedTogether)
        lines.bytes.withUnsafeBytes { bytes in
            for range in lines.ranges {
                guard let decoded = FastWireDecoder.decodeAppend(UnsafeRawBufferPointer(rebasing: bytes[range]), now: Timestamp.now())
                else {
                    refused += 1
                    continue
                }
                answered.append(AppendRequest(events: decoded.events, allowNewCity: decoded.allowNewCity, recordedBy: recorder))
                if answered.count == freedTogether { answered.removeAll(keepingCapacity: true) }
            }
        }
        answered.removeAll()
        return refused
    }

    static func threadCPUNanos() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
