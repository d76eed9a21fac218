import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Starts `body` on a thread of its own for one of the daemon's background stages (the writer, the intake):
/// named `name` for the kernel (at most 15 bytes are kept), as `top -H`, `perf` and `/proc/PID/task/*/comm`
/// show it, and running at nice value `nice`, so that when the CPUs are contended the event loops go first.
public func startBackgroundThread(named name: String, nice: Int32, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        #if os(Linux)
        // Ordinary scheduling even if the process was started real-time (a systemd unit's CPUSchedulingPolicy):
        // only the event loops are meant to be. Pid 0 is the calling thread, as is the nice value of `who` 0.
        var ordinary = sched_param()
        _ = sched_setscheduler(0, Int32(SCHED_OTHER), &ordinary)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
        // Foundation's `Thread.name` does not reach the kernel here.
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if fd >= 0 {
            let bytes = Array(name.utf8.prefix(15))
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        #endif
        body()
    }
    thread.name = name
    thread.start()
}
