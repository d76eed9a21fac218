import Synchronization

/// Passes on how far a long check has got, at most once per interval: the check says so after each small step
/// (a run of pages, a stretch of the chain, on any thread), and ``LogOptions/onProgress`` hears of it every few
/// seconds, not every few milliseconds.
final class ProgressPacing: Sendable {
    private let interval: Duration
    private let report: @Sendable (String) -> Void
    private let clock = ContinuousClock()
    /// When the last report was passed on; the pacing's start before the first.
    private let last: Mutex<ContinuousClock.Instant>

    init(interval: Duration, report: @escaping @Sendable (String) -> Void) {
        self.interval = interval
        self.report = report
        last = Mutex(clock.now)
    }

    /// Passes `status()` on if `interval` has gone by since the last report (or the start); it is made only then.
    func step(_ status: () -> String) {
        let now = clock.now
        let due = last.withLock { last in
            guard now - last >= interval else { return false }
            last = now
            return true
        }
        if due { report(status()) }
    }
}
