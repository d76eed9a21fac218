import NIOCore
import NIOPosix
import Synchronization

/// Shares one event loop among its connections, so that none of them holds up the loop's sockets: a newcomer's
/// accept and first request, and the other connections' reads, wait at most a slice of the loop's time, whatever
/// the others have sent.
///
/// SwiftNIO's loop looks at its sockets, handles what is ready on them, then runs its tasks for as long as any are
/// due, before it looks at its sockets again. A connection that pipelines requests hands over hundreds in one read,
/// and the answers of its walks of the log come back as tasks, each of which ran what waited behind it: with dozens
/// of such connections (readers pipelining `read` and `cities`, and reading their answers), a loop ran seconds of
/// tasks between two looks at its sockets, and a fresh connection's `status` waited for it (QA pass 10a, F3).
///
/// So a connection runs at most ``requestsPerTurn`` requests a turn (of one read, or a turn given here; appends, which
/// it only hands on to the intake, are not counted), and begins no turn once the loop has run requests for ``slice``
/// since it last looked at its sockets; what is left waits in its backlog, and the connection waits here for its
/// next turn. Turns are given in the order asked for, once the
/// loop has looked at its sockets again, for as long as the slice lasts: first to the connections that have run
/// nothing yet of what they last read (a newcomer's first request, found after the slice of a busy loop was over),
/// then to those that ran a turn and have more left.
final class LoopTurns: Sendable {
    /// Requests a connection runs in one turn at most: of one read, or one turn given by ``round()``.
    static let requestsPerTurn = 16
    /// How long a loop runs requests after it looked at its sockets, before it looks again.
    static let slice = TimeAmount.milliseconds(5)
    /// How long a round due waits, at least, before it looks whether the loop has looked at its sockets: long
    /// enough that the loop finds no task due and goes to look.
    static let pause = TimeAmount.microseconds(50)

    /// A connection waiting for a turn.
    struct Waiting {
        let handler: ConnectionHandler
        let context: ChannelHandlerContext
    }

    private struct State {
        /// The loop's ticks ended: each is followed by a look at its sockets.
        var ticks: UInt64 = 0
        /// The tick whose slice runs, and when it began (at the first request the loop ran in it).
        var slicedTick: UInt64 = .max
        var sliceStart = NIODeadline.uptimeNanoseconds(0)
        /// Connections that have run nothing of their last read yet, and those that ran a turn and have more.
        var fresh = CircularBuffer<Waiting>()
        var waiting = CircularBuffer<Waiting>()
        /// A round is scheduled, to run once the loop has ended this tick.
        var roundAfterTick: UInt64?
    }

    let eventLoop: any EventLoop
    private let state: NIOLoopBoundBox<State>

    /// Made on `eventLoop`'s thread.
    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        state = NIOLoopBoundBox(State(), eventLoop: eventLoop)
    }

    /// The loop ended a tick, and looks at its sockets next. On the loop's thread.
    func tickEnded() {
        state.value.ticks &+= 1
    }

    /// Whether the loop may run another request before it looks at its sockets again: the slice of the tick under way
    /// is not over yet.
    func mayRun() -> Bool {
        let now = NIODeadline.now()
        return state.withValue { state in
            if state.slicedTick != state.ticks {
                state.slicedTick = state.ticks
                state.sliceStart = now
                return true
            }
            return now - state.sliceStart < Self.slice
        }
    }

    /// `handler` has requests left that it may not run now: it gets a turn once the loop has looked at its sockets,
    /// before those that ran a turn already if it ran nothing of its last read (`fresh`).
    func enlist(_ handler: ConnectionHandler, context: ChannelHandlerContext, fresh: Bool) {
        let schedule = state.withValue { state -> Bool in
            if fresh {
                state.fresh.append(Waiting(handler: handler, context: context))
            } else {
                state.waiting.append(Waiting(handler: handler, context: context))
            }
            guard state.roundAfterTick == nil else { return false }
            state.roundAfterTick = state.ticks
            return true
        }
        if schedule { scheduleRound() }
    }

    /// A task a little later, not an immediate one, which the loop would run before it looks at its sockets.
    private func scheduleRound() {
        eventLoop.scheduleTask(in: Self.pause) { self.round() }
    }

    /// Gives the waiting connections their turns, in order, for as long as the slice lasts; those that still have
    /// requests left wait for a turn again, behind the others. Not before the loop has looked at its sockets since
    /// the round was asked for.
    private func round() {
        let due = state.withValue { state -> Bool? in
            guard let after = state.roundAfterTick else { return nil }
            guard state.ticks != after else { return false }
            state.roundAfterTick = nil
            return true
        }
        switch due {
        case nil: return
        case false?: scheduleRound()
        case true?:
            while mayRun(), let next = state.withValue({ $0.fresh.popFirst() ?? $0.waiting.popFirst() }) {
                next.handler.takeTurn(context: next.context)
            }
            let more = state.withValue { state -> Bool in
                guard !state.fresh.isEmpty || !state.waiting.isEmpty, state.roundAfterTick == nil else { return false }
                state.roundAfterTick = state.ticks
                return true
            }
            if more { scheduleRound() }
        }
    }
}

/// The ``LoopTurns`` of every event loop of the daemon's group, which it tells when a loop has ended a tick: the
/// group's metrics delegate, which SwiftNIO calls on the loop's thread after each tick, its only word of when a loop
/// goes to look at its sockets.
final class LoopTicks: NIOEventLoopMetricsDelegate, Sendable {
    private let turns = Mutex<[ObjectIdentifier: LoopTurns]>([:])

    func processedTick(info: NIOEventLoopTickInfo) {
        turns.withLock { $0[info.eventLoopID] }?.tickEnded()
    }

    /// The turns of `eventLoop`, made on first use; called on that loop.
    func turns(for eventLoop: any EventLoop) -> LoopTurns {
        turns.withLock { turns in
            let key = ObjectIdentifier(eventLoop)
            if let existing = turns[key] { return existing }
            let made = LoopTurns(eventLoop: eventLoop)
            turns[key] = made
            return made
        }
    }
}
