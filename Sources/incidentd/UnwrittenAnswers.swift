import Synchronization

/// The answers the daemon has built and handed to its connections but their sockets have not taken yet, across all
/// connections, bounded by `daemon.max_unwritten_bytes`.
///
/// Each connection stops running requests once its channel holds more than the write buffer's high-water mark, but
/// one answer can be megabytes long (a `read` of 8 MiB, `cities`, the `incident` of a long history), and a reader may
/// hold a thousand connections that each ask for one and read nothing. So the writes of at least
/// ``countedWriteBytes`` count against the limit until written: past it, a `read` answers in smaller pages
/// (``readPageBytes(atMost:)``), and a connection with a counted write still unwritten starts no request until the
/// total falls or its own write is taken; one whose writes are all taken goes on.
final class UnwrittenAnswers: Sendable {
    /// `daemon.max_unwritten_bytes`.
    let limit: Int
    private let held = Atomic<Int>(0)

    /// A write to a connection of this many bytes or more is counted (one of fewer, a query's answer or a batch of
    /// appends' answers, is not: the high-water mark bounds those per connection, and a write counted costs a promise).
    static let countedWriteBytes = 16 << 10
    /// The least a `read` may put in a page however full the budget is: always at least one event.
    static let smallestReadPage = 64 << 10

    init(limit: Int) {
        self.limit = limit
    }

    /// The bytes of counted writes not written yet, all connections together.
    var heldBytes: Int { held.load(ordering: .relaxed) }

    var isOver: Bool { held.load(ordering: .relaxed) >= limit }

    func add(_ bytes: Int) { held.wrappingAdd(bytes, ordering: .relaxed) }

    func remove(_ bytes: Int) { held.wrappingSubtract(bytes, ordering: .relaxed) }

    /// How many bytes of events a `read` may answer with now: `most` while the budget has that much room, what room
    /// it has once it has less, and ``smallestReadPage`` once it has none.
    func readPageBytes(atMost most: Int) -> Int {
        max(Self.smallestReadPage, min(most, limit - heldBytes))
    }
}
