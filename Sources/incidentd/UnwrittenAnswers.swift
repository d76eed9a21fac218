import Dispatch
import Logging
import NIOCore
import Synchronization

/// The answers the daemon has built and handed to its connections but their sockets have not taken yet, across all
/// connections, and what it does about clients that do not take them.
///
/// Each connection stops running requests once its channel holds more than the write buffer's high-water mark, but
/// one answer can be megabytes long (a `read` of 8 MiB, `cities`, the `incident` of a long history), and a reader may
/// hold a thousand connections that each ask for one and read nothing. So the writes of at least
/// ``countedWriteBytes`` count against `daemon.max_unwritten_bytes` until written: past it, a `read` answers in
/// smaller pages (``readPageBytes(atMost:)``) and a connection with a counted write still unwritten starts no request
/// until the total falls or its own write is taken; one whose writes are all taken goes on. And a connection whose
/// socket has taken no byte of what waits for it for `daemon.write_timeout_seconds` is closed (``stallLimit``), which
/// gives its answers' memory back: so a client that keeps reading, however slowly, waits at worst that long.
final class UnwrittenAnswers: Sendable {
    /// `daemon.max_unwritten_bytes`.
    let limit: Int
    /// `daemon.write_timeout_seconds`; nil when 0, which turns the close of a stalled connection off.
    let writeTimeout: TimeAmount?
    private let held = Atomic<Int>(0)
    /// Set as the daemon stops: see ``stallLimit``.
    private let stopping = Atomic<Bool>(false)
    private let stallLines = Mutex(LineThrottle(interval: 60_000_000_000))

    /// A write to a connection of this many bytes or more is counted (one of fewer, a query's answer or a batch of
    /// appends' answers, is not: the high-water mark bounds those per connection, and a write counted costs a promise).
    static let countedWriteBytes = 16 << 10
    /// A connection looks whether what it handed its channel waits there each time it has handed this many bytes
    /// more, small writes included: unread small answers stay below the high-water mark, where the channel never
    /// turns unwritable to start the watch, and a connection may hold up to the mark of them.
    static let lookAfterBytes = 64 << 10
    /// The least a `read` may put in a page however full the budget is: always at least one event.
    static let smallestReadPage = 64 << 10
    /// During the daemon's stop, how long a socket may take no byte before its connection is closed, unless
    /// `write_timeout_seconds` is shorter.
    static let stallLimitWhileStopping = TimeAmount.seconds(2)

    init(limit: Int, writeTimeoutSeconds: Int) {
        self.limit = limit
        writeTimeout = writeTimeoutSeconds > 0 ? .seconds(Int64(writeTimeoutSeconds)) : nil
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

    /// How long a connection's socket may take no byte of what waits for it before the connection is closed: the
    /// write timeout, and, once the daemon is stopping, ``stallLimitWhileStopping`` if that is shorter, so that the
    /// drain does not wait `drain_seconds` for a client that reads nothing. Nil when the timeout is off.
    var stallLimit: TimeAmount? {
        guard let writeTimeout else { return nil }
        return stopping.load(ordering: .relaxed) ? min(writeTimeout, Self.stallLimitWhileStopping) : writeTimeout
    }

    /// How often a connection with output waiting looks whether its socket took any of it.
    var checkInterval: TimeAmount {
        min(.milliseconds(500), TimeAmount.nanoseconds((writeTimeout ?? .seconds(2)).nanoseconds / 4))
    }

    /// The daemon stops: stalled connections are given ``stallLimitWhileStopping`` at most from now on.
    func beginStop() {
        stopping.store(true, ordering: .relaxed)
    }

    /// Logs how many connections were closed for taking no byte since the last line that said so, if any: at the
    /// stop, after which no later line would count them.
    func noteUnloggedStalledCloses(logger: Logger) {
        let unlogged = stallLines.withLock { $0.takeUnreported() }
        guard unlogged > 0 else { return }
        logger.warning(
            "closed \(unlogged) more connection\(unlogged == 1 ? "" : "s") whose socket took no byte of the answers waiting for it, since the last such line")
    }

    /// Logs a connection closed for taking no byte: the first at once, then at most one line a minute, naming the
    /// last and counting the others since the line before.
    func noteStalledClose(peer: PeerIdentity, waiting: Int, idle: TimeAmount, logger: Logger) {
        let now = DispatchTime.now().uptimeNanoseconds
        guard let closed = stallLines.withLock({ $0.note(at: now) }) else { return }
        let others =
            closed > 1 ? " (and \(closed - 1) other connection\(closed == 2 ? "" : "s") so since the last such line)" : ""
        logger.warning(
            "closed the connection of \(peer.user) (uid \(peer.uid), pid \(peer.pid)): its socket took no byte of the \(describeSize(waiting)) of answers waiting for it for \(idle.nanoseconds / 1_000_000_000) s (\(stopping.load(ordering: .relaxed) ? "the daemon is stopping" : "daemon.write_timeout_seconds"))\(others)",
            metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
    }
}
