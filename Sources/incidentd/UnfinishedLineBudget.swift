import Dispatch
import Logging
import Synchronization

/// The bytes of unfinished request lines that the daemon holds across all its connections, bounded by
/// `daemon.max_unfinished_bytes`. Each connection may hold a line of up to `max_line_bytes` until its newline
/// arrives; without a shared bound, a thousand connections that each send most of a megabyte and stop would hold a
/// gigabyte. A connection whose line would pass the bound has that line dropped (answered `server_busy`), and no
/// one else is held up.
final class UnfinishedLineBudget: Sendable {
    let limit: Int
    private let held = Atomic<Int>(0)
    private let refusals = Mutex(LineThrottle(interval: 60_000_000_000))

    init(limit: Int) {
        self.limit = limit
    }

    /// What all connections hold now.
    var heldBytes: Int { held.load(ordering: .relaxed) }

    /// Takes `bytes` more of the budget; takes nothing and returns false when that would pass the limit. Never
    /// over the limit for a moment, so that a connection that fits is not refused because another's did not.
    func take(_ bytes: Int) -> Bool {
        var current = held.load(ordering: .relaxed)
        while current + bytes <= limit {
            let (exchanged, found) = held.compareExchange(
                expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = found
        }
        return false
    }

    func give(_ bytes: Int) {
        held.wrappingSubtract(bytes, ordering: .relaxed)
    }

    /// Logs a dropped line: the first at once, then at most one line a minute with a count.
    func noteRefusal(logger: Logger) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let refused = refusals.withLock({ $0.note(at: now) }) else { return }
        logger.warning(
            "dropped \(refused) request line\(refused == 1 ? "" : "s") since the last such line: unfinished lines across all connections reached max_unfinished_bytes (\(describeSize(limit)))")
    }
}
