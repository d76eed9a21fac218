import IncidentLog
import IncidentProtocol
import NIOCore
import StrictJSON
import Synchronization

/// The connections that follow the log (`subscribe`), woken after every commit that stored events.
///
/// Nothing is kept in memory per follower but where it is: each one reads what it has not sent from the log
/// itself, on its own event loop, a page at a time and only while its client keeps reading. So a follower that
/// falls behind costs no memory and holds up no append; it catches up from the log when it reads again.
final class Followers: Sendable {
    /// What the hub holds of one follower: a wake-up not yet delivered, and the follower, on its event loop.
    final class Entry: Sendable {
        let wakePending = Atomic<Bool>(false)
        let follower: NIOLoopBound<LogFollower>

        init(_ follower: NIOLoopBound<LogFollower>) { self.follower = follower }

        /// Runs the follower's pump on its loop, once however many commits come before it runs.
        func wake() {
            guard !wakePending.exchange(true, ordering: .acquiringAndReleasing) else { return }
            follower.eventLoop.execute {
                self.wakePending.store(false, ordering: .releasing)
                self.follower.value.pump()
            }
        }
    }

    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])
    /// How many there are, read without the lock after every commit.
    private let count = Atomic<Int>(0)

    /// How many connections follow the log now.
    var following: Int { count.load(ordering: .relaxed) }

    func add(_ entry: Entry, for id: ObjectIdentifier) {
        entries.withLock { $0[id] = entry }
        count.add(1, ordering: .relaxed)
    }

    func remove(_ id: ObjectIdentifier) {
        if entries.withLock({ $0.removeValue(forKey: id) }) != nil { count.subtract(1, ordering: .relaxed) }
    }

    /// After a commit, on the writer thread: wakes every follower.
    func committed() {
        guard count.load(ordering: .relaxed) > 0 else { return }
        for entry in entries.withLock({ Array($0.values) }) { entry.wake() }
    }
}

/// One connection's `subscribe`: sends every event that matches its filter, from its position on, each as a line
/// `{"event":{…},"id":…,"ok":true}`, first those already stored and then each as it is committed. Confined to the
/// connection's event loop.
final class LogFollower {
    /// Events read per turn of the loop, and positions looked at at most, so that a follower catching up on a
    /// long log, or one whose filter matches little of it, holds up the loop's other connections no longer
    /// than a short query does (64 events are about 100 KB to copy; change 38 in BENCHMARKS.md).
    static let pageEvents = 64
    static let pageScan = 4_096

    private let log: EventLog
    private let requestId: JSONText
    private let filter: EventFilter
    private let context: ChannelHandlerContext
    /// Hands a page to the connection's channel and flushes it (``ConnectionHandler``'s writes, which count it).
    private let send: (ByteBuffer) -> Void
    /// Whether the socket has taken every page sent: a page goes out only then, so that a follower whose client
    /// does not read holds one page unwritten, counted against `max_unwritten_bytes`, however much the log holds.
    private let mayWrite: () -> Bool
    /// Told, on the loop, when the follow ends by itself (past a damaged event), with the answer that ends it: the
    /// connection no longer follows, and writes it.
    private let ended: (_ answer: [UInt8]) -> Void
    private var next: UInt64
    /// Set once the subscription's answer, and every answer before it, is written: no event may go out before.
    var started = false
    private var stopped = false
    /// A further page is already scheduled on the loop.
    private var scheduled = false

    init(
        log: EventLog, requestId: JSONText, from: UInt64, filter: EventFilter, context: ChannelHandlerContext,
        send: @escaping (ByteBuffer) -> Void, mayWrite: @escaping () -> Bool, ended: @escaping (_ answer: [UInt8]) -> Void
    ) {
        self.send = send
        self.mayWrite = mayWrite
        self.log = log
        self.requestId = requestId
        self.filter = filter
        self.context = context
        self.ended = ended
        next = max(from, 1)
    }

    func stop() { stopped = true }

    /// The lines of the next page. Without a filter they are made from the stored bytes as they are
    /// (``EventLog/eventLines(from:limit:id:)``): a few microseconds an event, where reading each into a JSON tree
    /// to match a filter costs several times that on the loop.
    private func readPage() throws -> (lines: [UInt8], next: UInt64, caughtUp: Bool) {
        if filter.cityId == nil && filter.type == nil && filter.incident == nil {
            let page = try log.eventLines(from: next, limit: Self.pageEvents, id: requestId)
            return (page.lines, page.next, page.caughtUp)
        }
        let page = try log.eventsToFollow(from: next, limit: Self.pageEvents, scanning: Self.pageScan, filter: filter)
        return (page.events.flatMap { Response.success(id: requestId, ["event": $0]) }, page.next, page.caughtUp)
    }

    /// Pumps on the next turn of the loop, once the socket took the last page: not from within the write that ended,
    /// which would send page after page in one turn (and as deep a stack).
    func pumpSoon() {
        guard started, !stopped, !scheduled else { return }
        scheduled = true
        let follower = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            follower.value.scheduled = false
            follower.value.pump()
        }
    }

    /// Sends the next page, if the client is reading, and schedules the one after it unless every stored event
    /// has been looked at (then a commit wakes it, see ``Followers``) or the client stopped reading (then the
    /// channel becoming writable again does).
    func pump() {
        guard started, !stopped, context.channel.isActive, context.channel.isWritable, mayWrite() else { return }
        let page: (lines: [UInt8], next: UInt64, caughtUp: Bool)
        do {
            page = try readPage()
        } catch {
            // The follow ends: past a damaged event (`log_damaged`, naming it) nothing would follow in log order.
            stopped = true
            ended(
                (error as? LogError)?.code == .damagedEvent
                    ? RequestExecutor.failure(id: requestId, error)
                    : Response.failure(id: requestId, ProtocolError(.internalError, "following the log failed: \(error)")))
            return
        }
        next = page.next
        if !page.lines.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: page.lines.count)
            buffer.writeBytes(page.lines)
            send(buffer)
        }
        if !page.caughtUp { pumpSoon() }
    }
}
