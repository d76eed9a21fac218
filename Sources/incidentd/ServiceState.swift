import Synchronization

/// What systemd shows of the daemon while it serves (`STATUS=`): the log's head position, sent again when it
/// changed, at most every `interval` ticks of a timer, so that `systemctl status` stays current without any work on
/// the append path; and, once the daemon stops, nothing more of serving.
final class ServingStatus: Sendable {
    private struct State {
        var sent: UInt64
        var ticks = 0
        var stopped = false
    }

    private let state: Mutex<State>
    let interval: Int
    private let send: @Sendable (String) -> Void

    /// `position`: the one given with READY=1; `send` tells systemd (``incidentd_sd_notify``) what it is given.
    init(position: UInt64, interval: Int, send: @escaping @Sendable (String) -> Void) {
        state = Mutex(State(sent: position))
        self.interval = max(1, interval)
        self.send = send
    }

    static func text(position: UInt64) -> String { "serving at position \(position)" }

    /// One tick of the timer, with the head position now: sends the status text, and returns it, when the position
    /// changed and the last was sent at least `interval` ticks ago, and the daemon is not stopping; otherwise nil.
    @discardableResult
    func tick(position: UInt64) -> String? {
        state.withLock { state -> String? in
            state.ticks += 1
            guard !state.stopped, state.ticks >= interval, position != state.sent else { return nil }
            state.sent = position
            state.ticks = 0
            let text = Self.text(position: position)
            // Under the lock, so that a tick's text never goes out after ``stop(saying:)``'s.
            send("STATUS=\(text)")
            return text
        }
    }

    /// Sends STOPPING=1 with the status `text`, after which no tick sends anything: a tick under way has sent its
    /// text before.
    func stop(saying text: String) {
        state.withLock { state in
            state.stopped = true
            send("STOPPING=1\nSTATUS=\(text)")
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
