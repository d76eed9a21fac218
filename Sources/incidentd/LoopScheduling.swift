#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// How the event loops ask the kernel for a CPU (`daemon.loop_scheduling`).
///
/// When both cores are busy, a loop woken by a query waits for the CPU behind the writer, the intake and
/// whatever else runs (the writer and the intake yield every two units of work, but a yield hands the CPU only
/// to a thread queued on the same core): `city` p99 under full append load is 0.7–1.6 ms on 2 cores. A
/// real-time loop preempts at once, and the same query's p99 falls to 0.2–0.4 ms (BENCHMARKS.md). The cost:
/// every wake-up of a loop now preempts the writer or the intake, the daemon's kernel time per append about
/// doubles, and appends per second fall by a quarter to two fifths. And whatever a client makes a loop do
/// (framing lines, refusing bad ones) then runs ahead of every ordinary thread on the machine, the writer
/// included, up to the kernel's real-time limit (`sched_rt_runtime_us`, 95% of each second). So real-time
/// loops are for machines whose socket only trusted clients reach, and they are asked for, not the default.
/// Whatever grows with the log runs elsewhere at ordinary priority either way (the writer, the intake,
/// ``RequestExecutor/logWalkers``).
enum LoopScheduling: String, Sendable, CaseIterable {
    /// `SCHED_RR` at priority 1, the lowest real-time priority, when the daemon may (root, `CAP_SYS_NICE`, or
    /// under systemd `RestrictRealtime=no` with `LimitRTPRIO=1`); ordinary scheduling, with a notice in the
    /// log, otherwise.
    case realtime
    /// Ordinary scheduling, like every other process: the default.
    case normal

    /// Applies this policy to every loop of `group`, from each loop's own thread. Returns why it could not,
    /// or `nil`.
    func apply(to group: MultiThreadedEventLoopGroup) -> String? {
        guard self == .realtime else { return nil }
        var refusal: String?
        for loop in group.makeIterator() {
            do {
                if let error = try loop.submit({ LoopScheduling.makeCallingThreadRealtime() }).wait() { refusal = error }
            } catch {
                refusal = "\(error)"
            }
        }
        return refusal
    }

    /// Makes the calling thread `SCHED_RR` at priority 1 (on Linux, pid 0 names the calling thread); the reason
    /// if the kernel refuses.
    static func makeCallingThreadRealtime() -> String? {
        #if os(Linux)
        var parameters = sched_param()
        parameters.sched_priority = 1
        if sched_setscheduler(0, Int32(SCHED_RR), &parameters) != 0 {
            return String(cString: strerror(errno))
        }
        #endif
        return nil
    }
}
