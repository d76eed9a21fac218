import Testing

@testable import incidentd

/// systemd's STATUS= while the daemon serves: current, and sent no more than the timer's interval allows.
@Suite("Serving status")
struct ServingStatusTests {
    @Test("the position is sent when it changed and the last was sent at least the interval ago, at the first tick due after a quiet spell; never when it stays")
    func sentWhenChangedAtMostEveryInterval() {
        let status = ServingStatus(position: 7, interval: 3)
        #expect(status.tick(position: 9) == nil)
        #expect(status.tick(position: 10) == nil)
        #expect(status.tick(position: 12) == "serving at position 12")
        #expect(status.tick(position: 13) == nil)
        #expect(status.tick(position: 13) == nil)
        #expect(status.tick(position: 13) == "serving at position 13")
        for _ in 0..<10 { #expect(status.tick(position: 13) == nil) }
        #expect(status.tick(position: 14) == "serving at position 14")
    }
}
