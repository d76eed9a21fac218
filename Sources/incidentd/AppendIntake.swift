import Dispatch
import Foundation
import IncidentLog
import IncidentProtocol
import NIOCore
import Synchronization

/// Turns append lines into appends for the group committer on a thread of its own, in the order the lines
/// arrived, so that the event loops keep only the socket work and the queries.
///
/// Decoding an append and writing its canonical parts is most of an event loop's work under load (tens of
/// microseconds a line). Done on the loop, a busy loop makes a `city` query that lands on it wait behind every
/// append read before it; and on a machine whose cores are all busy, the loop waits for a core like everyone
/// else. Done here, the loops are idle most of the time and answer a query as soon as it arrives, while this
/// thread and the writer (both at a lower priority) take what the loops leave.
///
/// Every append handed here is carried out here, the general path included, so appends of one connection reach
/// the committer in the order they were sent; a line that turns out to be a query goes back to its loop. After
/// ``stop()`` (when the daemon drains on SIGTERM), lines are carried out on the caller's thread, in order.
final class AppendIntake: Sendable {
    /// One line, and where its answer goes.
    struct Item: Sendable {
        let line: ByteBuffer
        let sequence: UInt64
        let peer: PeerIdentity
        let role: Role?
        let target: AnswerMailbox.Target
        let mailbox: AnswerMailbox
    }

    private struct State: Sendable {
        var queue: [Item] = []
        var stopping = false
        var stopped = false
    }

    /// The intake thread's nice value, as the writer's: the event loops go first.
    static let nice: Int32 = 5

    private let executor: RequestExecutor
    private let state = Mutex(State())
    /// Requests the writer has answered, to be freed on this thread: freeing one (a dozen strings and arrays
    /// an event) is work neither the writer, the one serial stage, nor an event loop, which a query may be
    /// waiting on, should do. This thread made them, so while it waits for a core, it makes no new ones either.
    private let answered = Mutex<[AppendRequest]>([])
    private let wakeup = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)

    /// Starts the intake thread.
    init(executor: RequestExecutor) {
        self.executor = executor
        startBackgroundThread(named: "incidentd-intak", nice: AppendIntake.nice) { [self] in self.run() }
    }

    /// Whether `line` may be an append: everything that is not certainly something else comes here, so that no
    /// append of a connection can overtake an earlier one on the loop. Queries name their operation plainly
    /// and do not contain "append" or a `\u` escape (which could spell it).
    static func mayBeAppend(_ line: ByteBuffer) -> Bool {
        line.readableBytesView.withUnsafeBytes { bytes in
            guard bytes.count >= 6 else { return false }
            let a = UInt8(ascii: "a"), p = UInt8(ascii: "p"), e = UInt8(ascii: "e"), n = UInt8(ascii: "n")
            let d = UInt8(ascii: "d"), backslash = UInt8(ascii: "\\"), u = UInt8(ascii: "u")
            for i in 0..<(bytes.count - 1) {
                let byte = bytes[i]
                if byte == backslash && bytes[i + 1] == u { return true }
                if byte == a && i + 6 <= bytes.count && bytes[i + 1] == p && bytes[i + 2] == p && bytes[i + 3] == e
                    && bytes[i + 4] == n && bytes[i + 5] == d
                {
                    return true
                }
            }
            return false
        }
    }

    /// Queues `item`; false once the intake has stopped, and then the caller carries the line out itself
    /// (``process(_:)``).
    func submit(_ item: Item) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.queue.append(item)
            return true
        }
        if accepted { wakeup.signal() }
        return accepted
    }

    /// Carries out what is queued, then stops the thread; returns once it has.
    func stop() {
        let running = state.withLock { state -> Bool in
            state.stopping = true
            return !state.stopped
        }
        guard running else { return }
        wakeup.signal()
        exited.wait()
    }

    private func run() {
        // Every two lines (about 25 µs of this thread's work), the event loops get their chance at the CPU.
        var courtesy = YieldPoint(every: 2)
        while true {
            wakeup.wait()
            // Everything queued, round after round; a signal whose line an earlier round took only makes an
            // empty round.
            while true {
                let (items, done) = state.withLock { state -> ([Item], Bool) in
                    if state.queue.isEmpty {
                        if state.stopping { state.stopped = true }
                        return ([], state.stopping)
                    }
                    var items: [Item] = []
                    swap(&items, &state.queue)
                    return (items, false)
                }
                if done {
                    exited.signal()
                    return
                }
                freeAnswered(&courtesy)
                if items.isEmpty { break }
                for item in items {
                    courtesy.pass()
                    process(item)
                }
                // Activity for the heap's trim (``HeapTrimSchedule``), which must come after the lines this round
                // let go of, not a second after the last read while this thread, behind busier ones, still holds them.
                executor.activity.add(1, ordering: .relaxed)
            }
        }
    }

    /// Takes back a request the writer has answered; the first one since this thread last freed them wakes it.
    private func recycle(_ request: AppendRequest) {
        let first = answered.withLock { answered -> Bool in
            answered.append(request)
            return answered.count == 1
        }
        if first { wakeup.signal() }
    }

    /// Frees what ``recycle(_:)`` took back, a few requests at a time with the yield point in between: a group
    /// commit's worth (a few hundred, about 1 µs each) freed in one go would hold this core for a quarter of a
    /// millisecond or more, ahead of a loop that a query has just woken on it (BENCHMARKS.md, change 34).
    private func freeAnswered(_ courtesy: inout YieldPoint) {
        var requests: [AppendRequest] = []
        answered.withLock { swap(&requests, &$0) }
        while !requests.isEmpty {
            requests.removeLast(min(AppendIntake.freedPerUnit, requests.count))
            courtesy.pass()
        }
    }

    /// Answered requests freed per unit of the yield point: about half a decoded line's worth of work.
    static let freedPerUnit = 6

    /// Carries out one line: the fast path for a plain append, the general path for any other append or error,
    /// and a query on its loop.
    func process(_ item: Item) {
        let executor = self.executor
        let mailbox = item.mailbox
        let target = item.target
        let sequence = item.sequence
        let submitted = item.line.readableBytesView.withUnsafeBytes { bytes in
            executor.fastAppend(bytes, peer: item.peer, role: item.role) { [self] id, count, result, request in
                mailbox.post(AnswerMailbox.Delivery(target: target, sequence: sequence, id: id, count: count, result: result))
                recycle(request)
            }
        }
        if submitted { return }
        let peer = item.peer
        let role = item.role
        let reply: Reply
        switch item.line.readableBytesView.withUnsafeBytes({ Request.decode($0) }) {
        case .failure(let failure):
            reply = .now(Response.failure(id: failure.id, failure.error))
        case .success(let request) where request.operation != .append:
            // A query that only looked like an append (say, a city name sent with `\u` escapes): answered on its
            // loop like any other query, so that a long one never holds up the appends queued here, once the
            // requests before it have been answered, as a query the loop recognised would have been.
            mailbox.eventLoop.execute {
                target.handler.runOnceAnswered(before: sequence, context: target.context) { context in
                    let reply = executor.execute(request, peer: peer, role: role, on: mailbox.eventLoop, connection: context.channel)
                    target.handler.deliver(reply, sequence: sequence, context: context)
                }
            }
            return
        case .success(let request):
            reply = executor.execute(request, peer: peer, role: role, on: mailbox.eventLoop, connection: nil)
        }
        mailbox.eventLoop.execute {
            target.handler.deliver(reply, sequence: sequence, context: target.context)
        }
    }
}
