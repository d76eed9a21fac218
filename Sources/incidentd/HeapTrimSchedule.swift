import Synchronization

/// When to give the C heap's free memory back to the system (`malloc_trim`): glibc returns what is freed at the top
/// of its heap by itself, but keeps for good what a burst (a thousand connections each holding part of a line, a
/// hundred appends pipelined on each of two hundred) freed below memory still in use, so that a daemon would stay at
/// the footprint of its busiest minute for months. Due once activity (connections opened, reads of requests, the
/// intake's rounds of lines) has stood still for `quietTicks` ticks after there was some, or every `busyTicks` ticks
/// while it never does; never while nothing at all happens.
final class HeapTrimSchedule: Sendable {
    private let quietTicks: Int
    private let busyTicks: Int
    /// The activity count seen last, the ticks it has stood still, whether there was any since the last trim, and the
    /// ticks since the first such.
    private let state = Mutex((activity: UInt64(0), quiet: 0, dirty: false, dirtyTicks: 0))

    init(quietTicks: Int, busyTicks: Int) {
        self.quietTicks = quietTicks
        self.busyTicks = busyTicks
    }

    /// One tick, with the activity count now.
    func isDue(activity: UInt64) -> Bool {
        state.withLock { state in
            if activity != state.activity {
                state.activity = activity
                state.quiet = 0
                state.dirty = true
            } else {
                state.quiet += 1
            }
            guard state.dirty else { return false }
            state.dirtyTicks += 1
            guard state.quiet >= quietTicks || state.dirtyTicks >= busyTicks else { return false }
            state.dirty = false
            state.dirtyTicks = 0
            return true
        }
    }
}
