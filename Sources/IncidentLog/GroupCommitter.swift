import Dispatch
import Foundation
import IncidentDomain
import Synchronization

/// Group commit: appends from every connection queue here, and one dedicated thread writes whatever is waiting
/// in one LMDB write transaction, syncs it, and only then calls each append's completion. Throughput is bounded
/// by how many events fit in one sync, not by one sync per event; LMDB's single writer never crosses an `await`.
public final class GroupCommitter: Sendable {
    /// Counters for `status` and the benchmarks.
    public struct Statistics: Sendable, Hashable {
        public var commits: UInt64 = 0
        public var requests: UInt64 = 0
        public var events: UInt64 = 0
        public var largestBatch: Int = 0
        public var queued: Int = 0
    }

    public typealias Completion = @Sendable (Result<AppendReceipt, AppendFailure>) -> Void

    private struct Pending: Sendable {
        var request: AppendRequest
        var completion: Completion
    }

    private struct State: Sendable {
        var queue: [Pending] = []
        var stopping = false
        var statistics = Statistics()
    }

    private let log: EventLog
    private let state = Mutex(State())
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// Starts the writer thread.
    public init(log: EventLog) {
        self.log = log
        let thread = Thread { [self] in self.run() }
        thread.name = "incidentd-writer"
        thread.start()
    }

    /// Queues an append. `completion` runs on the writer thread once the append is durable or refused; it must
    /// be quick (hand the result to another thread).
    public func submit(_ request: AppendRequest, completion: @escaping Completion) {
        let accepted = state.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.queue.append(Pending(request: request, completion: completion))
            return true
        }
        if accepted {
            wakeup.signal()
        } else {
            completion(.failure(.shuttingDown))
        }
    }

    public var statistics: Statistics {
        state.withLock { s in
            var copy = s.statistics
            copy.queued = s.queue.count
            return copy
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

    private func run() {
        var committedCities: [String: CityState] = [:]
        let limit = log.options.maxEventsPerCommit
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
                    return (batch, state.stopping)
                }
                if batch.isEmpty {
                    if stopping {
                        finished.signal()
                        return
                    }
                    break
                }
                let results = log.commit(batch.map(\.request), committedCities: &committedCities)
                state.withLock { state in
                    state.statistics.commits += 1
                    state.statistics.requests += UInt64(batch.count)
                    for case .success(let receipt) in results { state.statistics.events += UInt64(receipt.positions.count) }
                    state.statistics.largestBatch = max(state.statistics.largestBatch, batch.count)
                }
                for (pending, result) in zip(batch, results) { pending.completion(result) }
            }
        }
    }
}
