/// One log line for a run of like events: the first at once, then at most one per ``interval``, each saying how
/// many came since the line before. So a flood shows in the log without flooding it. A value type: keep it
/// where a lock guards it.
struct LineThrottle: Sendable {
    /// Nanoseconds, on the clock of the times given to ``note(at:)``.
    let interval: UInt64
    private var lastLine: UInt64?
    private var unreported = 0

    init(interval: UInt64) {
        self.interval = interval
    }

    /// Counts one event at `now` (nanoseconds): when a line is due, returns how many events it reports, this one
    /// included; otherwise nil. A time before the last line's (read on another thread before that line's, and
    /// noted after it) falls within its interval.
    mutating func note(at now: UInt64) -> Int? {
        unreported += 1
        if let lastLine, now < lastLine || now - lastLine < interval { return nil }
        lastLine = now
        defer { unreported = 0 }
        return unreported
    }

    /// The events counted since the last line, which no line has reported yet; counted as reported from now.
    mutating func takeUnreported() -> Int {
        defer { unreported = 0 }
        return unreported
    }
}
