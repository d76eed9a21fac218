import Dispatch
import IncidentLog
import Logging
import Synchronization

/// Tells the operator, in the daemon's log, when the storage refuses commits and when it takes them again.
///
/// Every client whose append is refused gets the reason in its answer, but nobody else would learn of it: a full
/// file system or a failing disk shows in the journal as soon as it starts. While it lasts, a busy daemon fails
/// hundreds of commits a second; after the first, one line per ``interval`` says how many more failed. A commit
/// stored between failures (small ones fit on a nearly full file system) is said once after a failure that was,
/// and does not start the interval again: the journal gets at most two lines per interval however they alternate.
///
/// A storage that refuses every transaction from then on (LMDB's `MDB_PANIC`) is beyond this process: it says
/// so and calls `onBroken`, and the daemon stops with ``exitStatus`` so that its service manager starts it again.
final class StorageTroubleLog: Sendable {
    private struct State {
        var failedCommits = LineThrottle(interval: StorageTroubleLog.interval)
        var unreportedRequests = 0
        /// A failure was logged since the last line that said appends are stored again.
        var failureLogged = false
        var broken = false
    }

    /// The daemon's exit status after the storage broke: `EX_IOERR`.
    static let exitStatus: Int32 = 74

    /// At most one line per this many nanoseconds while commits keep failing.
    static let interval: UInt64 = 10_000_000_000

    private let logger: Logger
    private let onBroken: @Sendable () -> Void
    private let state = Mutex(State())

    init(logger: Logger, onBroken: @escaping @Sendable () -> Void) {
        self.logger = logger
        self.onBroken = onBroken
    }

    /// Whether the storage broke beyond repair in this process.
    var isBroken: Bool { state.withLock { $0.broken } }

    /// Logs what `report` says, if it is due.
    func report(_ report: GroupCommitter.StorageReport) {
        self.report(report, at: DispatchTime.now().uptimeNanoseconds)
    }

    /// Logs what `report` says, if it is due at `time`, in nanoseconds of `DispatchTime`'s clock.
    func report(_ report: GroupCommitter.StorageReport, at time: UInt64) {
        switch report {
        case .commitFailed(let reason, let requests):
            let line = state.withLock { state -> (commits: Int, requests: Int)? in
                state.unreportedRequests += requests
                guard let commits = state.failedCommits.note(at: time) else { return nil }
                defer { state.unreportedRequests = 0 }
                state.failureLogged = true
                return (commits, state.unreportedRequests)
            }
            guard let line else { return }
            logger.error(
                "appends are not being stored: \(reason)",
                metadata: ["failedCommits": "\(line.commits)", "refusedAppends": "\(line.requests)"])
        case .recovered(let failedCommits):
            let due = state.withLock { state in
                defer { state.failureLogged = false }
                return state.failureLogged
            }
            guard due else { return }
            logger.notice("appends are stored again", metadata: ["failedCommits": "\(failedCommits)"])
        case .broken(let reason):
            state.withLock { $0.broken = true }
            logger.critical(
                "the storage refuses every transaction now (LMDB: MDB_PANIC), after \(reason); stopping, to be started again: acknowledged appends are safe, the refused ones were not stored")
            onBroken()
        }
    }
}
