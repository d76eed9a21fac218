import Dispatch
import Foundation
import IncidentDomain
import LMDB
import Synchronization

/// Group commit: appends from every connection queue here, and one dedicated thread writes whatever is waiting
/// in one LMDB write transaction, syncs it, and only then calls each append's completion. Throughput is bounded
/// by how many events fit in one sync, not by one sync per event; LMDB's single writer never crosses an `await`.
public final class GroupCommitter: Sendable {
    /// Counters for `status` and the benchmarks.
    public struct Statistics: Sendable, Hashable {
        /// Transactions written: commits that stored at least one event.
        public var commits: UInt64 = 0
        /// Appends answered by the writer, refused ones and retries of stored events included.
        public var requests: UInt64 = 0
        /// Events stored; an event sent again that was already stored is not one.
        public var events: UInt64 = 0
        /// The most appends one written transaction held.
        public var largestBatch: Int = 0
        public var queued: Int = 0
        /// Commits the storage refused as a whole (a full file system, a failing disk); nothing of them is stored.
        public var failedCommits: UInt64 = 0
    }

    /// What the writer tells its owner about the storage: a commit refused as a whole, and the first commit stored
    /// after such refusals. Delivered on the writer thread, so it must be quick.
    public enum StorageReport: Sendable {
        /// A commit of `requests` appends failed for the reason given; nothing of it was stored, and each append
        /// was answered with that failure.
        case commitFailed(String, requests: Int)
        /// A commit was stored after `failedCommits` in a row were not.
        case recovered(failedCommits: Int)
        /// A commit failed and left the storage refusing every transaction (``EventLog/storageIsBroken()``):
        /// nothing more can be stored or read until the process opens the log again. Reported once.
        case broken(String)
    }

    public typealias Completion = @Sendable (Result<AppendReceipt, AppendFailure>) -> Void
    /// A completion that is also handed the request back, so that the caller frees it on a thread of its own
    /// choosing (the daemon: the intake thread, which made it) rather than on the writer thread, the one serial
    /// stage.
    public typealias HandOff = @Sendable (Result<AppendReceipt, AppendFailure>, AppendRequest) -> Void

    private struct Pending: Sendable {
        var request: AppendRequest
        var completion: HandOff
    }

    private struct State: Sendable {
        var queue: [Pending] = []
        var stopping = false
        var statistics = Statistics()
        /// When the commit under way began, or `nil` while the writer is not committing.
        var committingSince: UInt64?
        /// Since when the first request in the queue has waited for the writer to take it.
        var waitingSince: UInt64 = 0
    }

    /// The writer thread's nice value, relative to the event loops.
    static let writerNice: Int32 = 5

    private let log: EventLog
    private let onStorageReport: (@Sendable (StorageReport) -> Void)?
    private let onCommitted: (@Sendable () -> Void)?
    private let state = Mutex(State())
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts the writer thread. `onStorageReport` hears of commits the storage refuses, of the recovery, and of a
    /// storage that broke for good; `onCommitted` of every commit that stored at least one event, once its appends
    /// are answered (on the writer thread: it must return at once), and not of one whose appends were all retries
    /// of stored events or refused.
    public init(
        log: EventLog, onStorageReport: (@Sendable (StorageReport) -> Void)? = nil, onCommitted: (@Sendable () -> Void)? = nil
    ) {
        self.log = log
        self.onStorageReport = onStorageReport
        self.onCommitted = onCommitted
        // The writer works in big batches and waits for the disk anyway; when the CPUs are contended, the event
        // loops (reading requests, answering queries) go first.
        startBackgroundThread(named: "incidentd-write", nice: GroupCommitter.writerNice) { [self] in self.run() }
    }

    /// Queues an append. `completion` runs on the writer thread once the append is durable or refused; it must
    /// be quick (hand the result to another thread).
    public func submit(_ request: AppendRequest, completion: @escaping Completion) {
        submit(request, handOff: { result, _ in completion(result) })
    }

    /// ``submit(_:completion:)`` with the request handed back to the completion.
    public func submit(_ request: AppendRequest, handOff: @escaping HandOff) {
        let accepted = state.withLock { state -> Bool in
            guard !state.stopping else { return false }
            if state.queue.isEmpty { state.waitingSince = DispatchTime.now().uptimeNanoseconds }
            state.queue.append(Pending(request: request, completion: handOff))
            return true
        }
        if accepted {
            wakeup.signal()
        } else {
            handOff(.failure(.shuttingDown), request)
        }
    }

    public var statistics: Statistics {
        state.withLock { s in
            var copy = s.statistics
            copy.queued = s.queue.count
            return copy
        }
    }

    /// For how many nanoseconds (of `DispatchTime`'s clock) the writer has had work without finishing any: the
    /// commit under way, or the oldest queued request while no commit is under way. 0 when it has nothing to do,
    /// and while a commit grows the map, which waits for every read of this process to end (a `verify` of a
    /// large log can take minutes). A liveness check (systemd's watchdog) reads it; a commit takes milliseconds.
    public func stalled(now: UInt64 = DispatchTime.now().uptimeNanoseconds) -> UInt64 {
        if log.environment.isGrowingMap { return 0 }
        return state.withLock { state in
            let since = state.committingSince ?? (state.queue.isEmpty ? now : state.waitingSince)
            return now > since ? now - since : 0
        }
    }

    /// Stops taking appends, writes everything already queued, and returns when the writer thread has ended.
    public func shutdown() {
        let first = state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        guard first else { return }
        wakeup.signal()
        finished.wait()
    }

    /// Commits of at most this many requests leave the writer idle often enough to write file space ahead
    /// (``EventLog/extendFileIfNeeded()``) without holding up a queue: one connection sending one append at a
    /// time. Under load the batches are larger and the file grows with the commits, as it would without it.
    static let smallBatch = 4

    private func run() {
        var committedCities: [String: CityState] = [:]
        let limit = log.options.maxEventsPerCommit
        var lastBatch = Int.max
        var extendingFile = log.options.fileHeadroom > 0
        var failedInARow = 0
        var broken = false
        while true {
            wakeup.wait()
            while true {
                let (batch, stopping) = state.withLock { state -> ([Pending], Bool) in
                    var events = 0
                    var take = 0
                    while take < state.queue.count {
                        let count = max(1, state.queue[take].request.events.count)
                        if take > 0 && events + count > limit { break }
                        events += count
                        take += 1
                    }
                    let batch = Array(state.queue.prefix(take))
                    state.queue.removeFirst(take)
                    if take > 0 { state.committingSince = DispatchTime.now().uptimeNanoseconds }
                    return (batch, state.stopping)
                }
                if batch.isEmpty {
                    if stopping {
                        finished.signal()
                        return
                    }
                    if extendingFile && lastBatch <= GroupCommitter.smallBatch {
                        lastBatch = Int.max
                        // A disk too full for the space ahead is one the next append reports on; stop trying
                        // until commits that failed are stored again (space was freed).
                        do { try log.extendFileIfNeeded() } catch { extendingFile = false }
                    }
                    break
                }
                lastBatch = batch.count
                let results = log.commit(batch.map(\.request), committedCities: &committedCities)
                let refusal = Self.storageRefusal(results)
                var stored = 0
                if refusal == nil {
                    for case .success(let receipt) in results { stored += receipt.positions.count - receipt.alreadyStored.count }
                }
                state.withLock { state in
                    state.committingSince = nil
                    if !state.queue.isEmpty { state.waitingSince = DispatchTime.now().uptimeNanoseconds }
                    if refusal != nil {
                        state.statistics.failedCommits += 1
                        return
                    }
                    state.statistics.requests += UInt64(batch.count)
                    // Only retries and refusals: LMDB commits a transaction that changed nothing without writing it.
                    guard stored > 0 else { return }
                    state.statistics.commits += 1
                    state.statistics.events += UInt64(stored)
                    state.statistics.largestBatch = max(state.statistics.largestBatch, batch.count)
                }
                for (pending, result) in zip(batch, results) { pending.completion(result, pending.request) }
                // A commit of retries and refusals alone has nothing new for the followers to read.
                if stored > 0 { onCommitted?() }
                if let refusal {
                    failedInARow += 1
                    if !broken && log.storageIsBroken() {
                        broken = true
                        onStorageReport?(.broken(refusal))
                    } else {
                        onStorageReport?(.commitFailed(refusal, requests: batch.count))
                    }
                } else if failedInARow > 0 {
                    onStorageReport?(.recovered(failedCommits: failedInARow))
                    failedInARow = 0
                    extendingFile = log.options.fileHeadroom > 0
                }
            }
        }
    }

    /// Why the storage refused a commit as a whole (every request then carries the same failure), or `nil`.
    private static func storageRefusal(_ results: [Result<AppendReceipt, AppendFailure>]) -> String? {
        switch results.first {
        case .failure(.storage(let message)), .failure(.storageFull(let message)): return message
        default: return nil
        }
    }
}
