import Testing

@testable import incidentd

/// The throttle of the log lines that repeat (refused connections, dropped lines, unserved connections).
@Suite("Line throttle")
struct LineThrottleTests {
    @Test("the first event makes a line at once, later ones within the interval none, and the first after it one counting them all")
    func oneLineAnInterval() {
        var throttle = LineThrottle(interval: 100)
        #expect(throttle.note(at: 1_000) == 1)
        #expect(throttle.note(at: 1_050) == nil)
        #expect(throttle.note(at: 1_099) == nil)
        #expect(throttle.note(at: 1_100) == 3)
        #expect(throttle.note(at: 1_150) == nil)
    }

    @Test("a time read before the last line's and noted after it (two threads) falls within that line's interval, where the subtraction wrapped round and made a second line at once")
    func timeBeforeTheLastLine() {
        var throttle = LineThrottle(interval: 100)
        #expect(throttle.note(at: 1_000) == 1)
        #expect(throttle.note(at: 990) == nil)
        #expect(throttle.note(at: 1_100) == 2)
    }
}
