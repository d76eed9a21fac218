import Dispatch
import StrictJSON
import Synchronization

/// A block of stored events on their way through a fold of the log (the rebuild, `replay`): the position and the
/// canonical bytes of each, and what ``StoredEventReader/parse(_:)`` read of each. The next block is read on a second thread,
/// and on the fold's own once it has folded the current one, while the fold (which must go in position order)
/// goes on.
///
/// `@unchecked Sendable`, and safe, because every access is ordered: the fold's thread fills `events`, `positions`
/// and `count` before it hands the block to the worker (`DispatchQueue.async` orders the two); the two threads then
/// write only the `parsed` entries of the stripes each claimed from the atomic `claimed`, so never the same
/// entry; and the fold's thread reads `parsed` only after `DispatchGroup.wait()` has returned, which orders the
/// worker's writes before it. The bytes the entries point to are pages of the map, which stay mapped and
/// unchanged while the fold's transaction lasts (a fold writes no events).
final class StoredEventBlock: @unchecked Sendable {
    /// Events per stripe a thread claims at a time.
    static let stripe = 256

    let capacity: Int
    private(set) var count = 0
    private let events: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>
    private let positions: UnsafeMutableBufferPointer<UInt64>
    private let parsed: UnsafeMutableBufferPointer<StoredEventReader.ParsedEvent?>
    private let claimed = Atomic<Int>(0)

    init(capacity: Int) {
        self.capacity = capacity
        events = .allocate(capacity: capacity)
        events.initialize(repeating: UnsafeRawBufferPointer(start: nil, count: 0))
        positions = .allocate(capacity: capacity)
        positions.initialize(repeating: 0)
        parsed = .allocate(capacity: capacity)
        parsed.initialize(repeating: nil)
    }

    deinit {
        parsed.deinitialize().deallocate()
        positions.deinitialize().deallocate()
        events.deinitialize().deallocate()
    }

    var isFull: Bool { count == capacity }

    /// Empties the block for the next events.
    func removeAll() {
        for i in 0..<count { parsed[i] = nil }
        count = 0
        claimed.store(0, ordering: .relaxed)
    }

    func append(_ canonical: UnsafeRawBufferPointer, position: UInt64) {
        events[count] = canonical
        positions[count] = position
        count += 1
    }

    /// The position and canonical bytes of event `i`, and what was read of it (nil: not in the form the fast reader
    /// expects).
    subscript(i: Int) -> (position: UInt64, canonical: UnsafeRawBufferPointer, parsed: StoredEventReader.ParsedEvent?) {
        (positions[i], events[i], parsed[i])
    }

    /// Reads stripes of events that no thread has claimed yet, until none are left.
    func parseUnclaimed() {
        while true {
            let start = claimed.wrappingAdd(Self.stripe, ordering: .relaxed).oldValue
            if start >= count { return }
            for i in start..<min(start + Self.stripe, count) {
                // A raw control byte is damage the fast reader would pass over inside a string, and a position other
                // than its key's is damage it would fold as stated (out of order, even before its incident's report):
                // such an event is left to the slow reader, which names it.
                guard events[i].firstControlByte() == nil, let event = StoredEventReader.parse(events[i]),
                    event.position == positions[i]
                else {
                    parsed[i] = nil
                    continue
                }
                parsed[i] = event
            }
        }
    }
}
