import Testing

@testable import incidentd

/// When the daemon gives the C heap's free memory back (`malloc_trim`).
@Suite("Heap trim schedule")
struct HeapTrimScheduleTests {
    @Test("the heap is trimmed once activity has stood still for quietTicks ticks after there was some, at most every busyTicks ticks while it never does, and never while nothing happens")
    func heapTrimSchedule() {
        let schedule = HeapTrimSchedule(quietTicks: 3, busyTicks: 10)
        #expect((1...20).map { _ in schedule.isDue(activity: 0) }.allSatisfy { !$0 }, "nothing happened")
        #expect(!schedule.isDue(activity: 5))
        #expect([schedule.isDue(activity: 5), schedule.isDue(activity: 5), schedule.isDue(activity: 5)] == [false, false, true])
        #expect((1...20).map { _ in schedule.isDue(activity: 5) }.allSatisfy { !$0 }, "trimmed once, then nothing happened")
        var activity: UInt64 = 5
        var due: [Int] = []
        for tick in 1...25 {
            activity += 1
            if schedule.isDue(activity: activity) { due.append(tick) }
        }
        #expect(due == [10, 20], "every busyTicks ticks while activity never stops")
    }
}
