#if canImport(Glibc)
import Glibc
#endif
import LMDB
import Synchronization

extension EventLog {
    /// Lets go of the pages of the memory-mapped log that this process has touched (`madvise(MADV_DONTNEED)`
    /// on the mapping of `data.mdb`). LMDB reads the log through a shared, read-only file mapping: every page a
    /// transaction reads stays mapped, and counts as this process's resident (and "private", since no other
    /// process maps it) memory, until the whole index has been counted. Dropping the mappings costs nothing to
    /// the data (the pages stay in the page cache; the next read maps them again with a minor fault), and keeps
    /// the daemon's footprint to what it touched since the last call. Runs inside a read transaction, so the
    /// map cannot be moved (resized) meanwhile. Returns the bytes of mapping it covered.
    @discardableResult
    public func releaseMappedPages() -> Int {
        (try? environment.read { _ in releaseMappedPagesInTransaction() }) ?? 0
    }

    /// ``releaseMappedPages()`` for a caller already inside a transaction (which keeps the map where it is):
    /// a fold over the whole log calls it as it goes, so that what it has read does not stay mapped.
    @discardableResult
    func releaseMappedPagesInTransaction() -> Int {
        #if os(Linux)
        guard let path = dataFilePath, let file = fopen("/proc/self/maps", "r") else { return 0 }
        defer { fclose(file) }
        var released = 0
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasSuffix(path + "\n") || text.hasSuffix(path) else { continue }
            let range = text.prefix(while: { $0 != " " }).split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start,
                let address = UnsafeMutableRawPointer(bitPattern: start)
            else { continue }
            if madvise(address, Int(end - start), MADV_DONTNEED) == 0 { released += Int(end - start) }
        }
        return released
        #else
        return 0
        #endif
    }

    /// The absolute path of `data.mdb`, as /proc/self/maps names it.
    var dataFilePath: String? {
        var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard realpath(options.directory + "/data.mdb", &resolved) != nil else { return nil }
        return String(decoding: resolved.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
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
