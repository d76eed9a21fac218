#if canImport(Glibc)
import Glibc
#endif

/// Hands the CPU to any other runnable thread every few units of work, on the daemon's long-running stages (the
/// writer and the intake), so that an event loop woken meanwhile, say by a `city` query, runs within tens of
/// microseconds instead of after this thread's time slice.
///
/// A woken thread does not preempt a running one of the same class before the running one has used its slice;
/// a nice value only changes how the CPU is shared over time. With both cores busy, a paced `city` query waited
/// 2.7–3.5 ms at p99 behind the writer and the intake (BENCHMARKS.md, change 16). `sched_yield` with nothing
/// else runnable returns at once, so the cost without contention is one system call per `interval` units.
public struct YieldPoint {
    /// Units of work between two yields.
    public let interval: Int
    private var count = 0
    private let yield: () -> Void

    /// A yield point that calls `sched_yield` (or `yield`, for tests) once every `interval` calls of ``pass()``.
    public init(every interval: Int, yield: @escaping () -> Void = { _ = sched_yield() }) {
        precondition(interval > 0, "a yield interval must be positive")
        self.interval = interval
        self.yield = yield
    }

    /// Counts one unit of work, and yields after every `interval` of them.
    @inline(__always) public mutating func pass() {
        count += 1
        if count == interval {
            count = 0
            yield()
        }
    }
}
