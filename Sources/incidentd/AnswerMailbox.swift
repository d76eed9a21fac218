import IncidentLog
import NIOCore
import StrictJSON
import Synchronization

/// Where the writer thread leaves the answers to a group commit's appends for one event loop. The first answer
/// of a batch schedules one task on the loop; that task writes every answer that has arrived by then to its
/// connection and flushes each connection once, instead of one task, one write and one `writev` per answer.
final class AnswerMailbox: Sendable {

    /// A connection an answer goes to. The handler and its context are reached only on the connection's event
    /// loop, which `NIOLoopBound` checks on every access; the writer and intake threads merely carry it.
    struct Target: Sendable {
        private let bound: NIOLoopBound<(handler: ConnectionHandler, context: ChannelHandlerContext)>

        /// Made on the connection's event loop.
        init(handler: ConnectionHandler, context: ChannelHandlerContext) {
            bound = NIOLoopBound((handler, context), eventLoop: context.eventLoop)
        }

        var handler: ConnectionHandler { bound.value.handler }
        var context: ChannelHandlerContext { bound.value.context }
    }

    struct Delivery: Sendable {
        let target: Target
        let sequence: UInt64
        let id: JSONText
        let count: Int
        let result: Result<AppendReceipt, AppendFailure>
    }

    let eventLoop: any EventLoop
    private let state = Mutex<(pending: [Delivery], scheduled: Bool)>(([], false))

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Called on the writer thread.
    func post(_ delivery: Delivery) {
        let schedule = state.withLock { state -> Bool in
            state.pending.append(delivery)
            if state.scheduled { return false }
            state.scheduled = true
            return true
        }
        if schedule {
            eventLoop.execute { self.drain() }
        }
    }

    /// Returns once every answer posted so far has been written: task after task on the loop, since a drain
    /// writes at most ``answersPerTurn`` answers and queues the rest behind. For the daemon's stop, after the
    /// last append was answered by the writer.
    func waitUntilWritten() {
        repeat {
            try? eventLoop.submit {}.wait()
        } while state.withLock({ !$0.pending.isEmpty || $0.scheduled })
    }

    /// At most this many answers per task, so that other connections' reads (a query) get a turn in between.
    static let answersPerTurn = 64

    private func drain() {
        let (batch, more) = state.withLock { state -> ([Delivery], Bool) in
            if state.pending.count <= AnswerMailbox.answersPerTurn {
                state.scheduled = false
                defer { state.pending = [] }
                return (state.pending, false)
            }
            let first = Array(state.pending.prefix(AnswerMailbox.answersPerTurn))
            state.pending.removeFirst(AnswerMailbox.answersPerTurn)
            return (first, true)
        }
        var touched: [Target] = []
        for delivery in batch {
            let handler = delivery.target.handler
            handler.answer(
                delivery.sequence, RequestExecutor.appendResponse(id: delivery.id, count: delivery.count, delivery.result),
                context: delivery.target.context)
            if !handler.awaitingFlush {
                handler.awaitingFlush = true
                touched.append(delivery.target)
            }
        }
        for target in touched {
            target.handler.awaitingFlush = false
            target.handler.finishAnswers(context: target.context)
        }
        if more {
            // Still scheduled: the rest in a task a little later, not an immediate one, which the loop would run in
            // the same turn; so the loop looks at its sockets (a query) first.
            eventLoop.scheduleTask(in: AnswerMailbox.pause) { self.drain() }
        }
    }

    /// How long the rest of a drain waits, at least, for the loop to look at its sockets.
    static let pause = TimeAmount.microseconds(20)
}

extension RequestExecutor {
    /// The mailbox of `eventLoop`, made on first use.
    func mailbox(for eventLoop: any EventLoop) -> AnswerMailbox {
        mailboxes.withLock { boxes in
            let key = ObjectIdentifier(eventLoop)
            if let box = boxes[key] { return box }
            let box = AnswerMailbox(eventLoop: eventLoop)
            boxes[key] = box
            return box
        }
    }
}
