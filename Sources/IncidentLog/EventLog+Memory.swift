import LMDB
import Synchronization

extension EventLog {
    /// Lets go of the pages of the log this process has read (``Environment/releaseMappedPages()``), so that
    /// its footprint is what it touched since the last call, not all of the log it ever read. May be called
    /// inside a transaction: a fold over the whole log calls it as it goes. Returns the bytes of mapping covered.
    @discardableResult
    public func releaseMappedPages() -> Int {
        environment.releaseMappedPages()
    }
}

extension EventLog {
    /// Writes space ahead in `data.mdb` when less than ``LogOptions/fileHeadroom`` is left past the last page,
    /// half of it at a time. Returns the bytes written (none when the headroom is 0 or the log read-only).
    @discardableResult
    public func extendFileIfNeeded() throws -> Int {
        try environment.extendFile(headroom: options.fileHeadroom, step: max(options.fileHeadroom / 2, 4096))
    }
}

/// When a timer that calls ``EventLog/releaseMappedPages()`` should call it: on a tick when events were
/// committed since the last trim (appends touch the map the most), or once `ticksPerIdleTrim` ticks have gone
/// by without one (queries touch it too).
public final class MapTrimSchedule: Sendable {
    private let ticksPerIdleTrim: Int
    /// The committer's event count at the last trim, and the ticks since.
    private let last = Mutex((events: UInt64(0), ticks: 0))

    public init(ticksPerIdleTrim: Int) {
        self.ticksPerIdleTrim = ticksPerIdleTrim
    }

    /// One tick, with the committer's event count now.
    public func isDue(events: UInt64) -> Bool {
        last.withLock { last in
            last.ticks += 1
            guard events != last.events || last.ticks >= ticksPerIdleTrim else { return false }
            last = (events, 0)
            return true
        }
    }
}
