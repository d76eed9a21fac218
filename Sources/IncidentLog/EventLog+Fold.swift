import Dispatch
import IncidentDomain
import LMDB
import StrictJSON

/// Where a fold over the log stops, and what it leaves out (see ``EventLog/foldEvents(_:from:after:stop:into:blocks:)``).
struct FoldStop {
    /// At most this many events are taken from the log.
    var maxEvents = Int.max
    /// No event after this position is taken.
    var untilPosition = UInt64.max
    /// In microseconds: the fold ends at the first event recorded after this instant (what was known then;
    /// `recordedAt` never decreases along the log).
    var recordedAfter: Int64?
    /// In microseconds: events that occurred at or after this instant (or whose `occurredAt` is not a date)
    /// are left out.
    var occurredBefore: Int64?
}

/// The two blocks a fold reads events into, kept from one fold (or chunk) to the next.
struct FoldBuffers {
    var current = StoredEventBlock(capacity: 4096)
    var upcoming = StoredEventBlock(capacity: 4096)
}

extension EventLog {
    /// Folds the events from `first` on (the entry `cursor` stands at, after position `previous`) into `fold`, in
    /// position order, until the end of the log or until `stop` says. Reading the events, the larger part of the
    /// work, goes on on a second thread meanwhile, and on this one once it has folded a block (see
    /// ``StoredEventBlock``). An event the fast reader does not take (escapes, a damaged or unexpected form) is
    /// decoded by `RecordedEvent(json:)`; one that cannot be read as an event is ``LogError/damagedEvent(at:_:)``,
    /// naming its position and what is wrong with it.
    ///
    /// Returns the position of the last event taken (`previous` if none), how many were taken, and whether the
    /// end of the log was reached (rather than `maxEvents`, `untilPosition` or `recordedAfter`).
    func foldEvents(
        _ cursor: borrowing Cursor, from first: Cursor.Entry?, after previous: UInt64 = 0, stop: FoldStop,
        into fold: inout ProjectionFold, blocks: inout FoldBuffers, checkpoint: () throws -> Void = {}
    ) throws -> (lastPosition: UInt64, count: Int, reachedEnd: Bool) {
        var entry = first
        var count = 0
        var lastPosition = previous
        var passedUntil = false
        var stopped = false
        var blocksFolded = 0
        let reading = DispatchGroup()
        defer { reading.wait() }
        func take(into block: StoredEventBlock) throws {
            block.removeAll()
            while let (key, value) = entry, count < stop.maxEvents, !block.isFull {
                guard let position = Keys.readPosition(key) else {
                    throw LogError(.corrupt, "a damaged event after position \(lastPosition)")
                }
                guard value.count > 32 else { throw LogError.damagedEvent(at: position, "it is shorter than its hash") }
                if position > stop.untilPosition {
                    passedUntil = true
                    return
                }
                block.append(UnsafeRawBufferPointer(rebasing: value[32...]), position: position)
                lastPosition = position
                count += 1
                entry = try cursor.next()
            }
        }
        try take(into: blocks.current)
        blocks.current.parseUnclaimed()
        while blocks.current.count > 0 && !stopped {
            try checkpoint()
            try take(into: blocks.upcoming)
            let upcoming = blocks.upcoming
            DispatchQueue.global().async(group: reading) { upcoming.parseUnclaimed() }
            for i in 0..<blocks.current.count {
                let (position, canonical, parsed) = blocks.current[i]
                if let parsed {
                    var decided = true
                    if let limit = stop.recordedAfter {
                        if let recordedAt = fold.timestamp(parsed.recordedAt) {
                            if recordedAt > limit {
                                stopped = true
                                break
                            }
                        } else {
                            decided = false
                        }
                    }
                    if decided, let before = stop.occurredBefore {
                        guard let occurred = ParsedDate.parse(utf8: parsed.occurredAt), occurred.start.microseconds < before
                        else { continue }
                    }
                    if decided, try EventLog.readingStoredEvent(at: position, { try StoredEventReader.apply(parsed, to: &fold) }) {
                        continue
                    }
                }
                let event = try EventLog.readingStoredEvent(at: position) {
                    let event = try RecordedEvent(json: JSONReader().read(canonical))
                    guard event.position == position else { throw LogError(.corrupt, "it names position \(event.position)") }
                    return event
                }
                if let limit = stop.recordedAfter, event.recordedAt.microseconds > limit {
                    stopped = true
                    break
                }
                if let before = stop.occurredBefore {
                    guard let occurred = ParsedDate.parse(event.occurredAt), occurred.start.microseconds < before else { continue }
                }
                try EventLog.readingStoredEvent(at: position) { try fold.apply(event) }
            }
            blocks.upcoming.parseUnclaimed()
            reading.wait()
            swap(&blocks.current, &blocks.upcoming)
            // Every 64 blocks (about 300 MB of log), what has been read is let go of, not kept mapped: a fold of
            // the whole log otherwise ends with all of it resident in this process (1.9 GB at 1M events).
            blocksFolded += 1
            if blocksFolded % 64 == 0 { releaseMappedPages() }
        }
        return (lastPosition, count, entry == nil && !passedUntil && !stopped)
    }
}
