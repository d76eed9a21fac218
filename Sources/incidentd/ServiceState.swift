import Synchronization

/// What systemd shows of the daemon while it serves (`STATUS=`): the log's head position, sent again when it
/// changed, at most every `interval` ticks of a timer, so that `systemctl status` stays current without any work on
/// the append path.
final class ServingStatus: Sendable {
    private struct State {
        var sent: UInt64
        var ticks = 0
    }

    private let state: Mutex<State>
    let interval: Int

    /// `position`: the one given with READY=1.
    init(position: UInt64, interval: Int) {
        state = Mutex(State(sent: position))
        self.interval = max(1, interval)
    }

    static func text(position: UInt64) -> String { "serving at position \(position)" }

    /// One tick of the timer, with the head position now: the status text to send, when it changed and the last
    /// was sent at least `interval` ticks ago; otherwise nil.
    func tick(position: UInt64) -> String? {
        state.withLock { state -> String? in
            state.ticks += 1
            guard state.ticks >= interval, position != state.sent else { return nil }
            state.sent = position
            state.ticks = 0
            return Self.text(position: position)
        }
    }
}

/// A stop asked for by signal, and whether it came before the daemon served: the start asks it between the steps
/// of opening the log, and once the log is open, and stops there, without serving or telling systemd it is ready;
/// once past that, a stop goes the usual way (``Incidentd/drainConnections(_:loops:within:interruptedBy:logger:)``).
final class StopRequest: Sendable {
    private enum Phase { case starting, serving }

    private let state = Mutex<(phase: Phase, signal: String?)>((.starting, nil))

    /// The first stop signal's name, once one came.
    var signal: String? { state.withLock { $0.signal } }

    /// Notes a stop signal; true when it is the first, and came during start-up.
    func note(_ signal: String) -> Bool {
        state.withLock { state in
            guard state.signal == nil else { return false }
            state.signal = signal
            return state.phase == .starting
        }
    }

    /// Moves to serving, unless a stop came first: then false, and the daemon stops without serving.
    func startServing() -> Bool {
        state.withLock { state in
            guard state.signal == nil else { return false }
            state.phase = .serving
            return true
        }
    }
}
