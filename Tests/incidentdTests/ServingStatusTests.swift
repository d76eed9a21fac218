import Synchronization
import Testing

@testable import incidentd

/// systemd's STATUS= while the daemon serves: current, and sent no more than the timer's interval allows.
@Suite("Serving status")
struct ServingStatusTests {
    @Test("the position is sent when it changed and the last was sent at least the interval ago, at the first tick due after a quiet spell; never when it stays")
    func sentWhenChangedAtMostEveryInterval() {
        let sent = Mutex<[String]>([])
        let status = ServingStatus(position: 7, interval: 3) { message in sent.withLock { $0.append(message) } }
        #expect(status.tick(position: 9) == nil)
        #expect(status.tick(position: 10) == nil)
        #expect(status.tick(position: 12) == "serving at position 12")
        #expect(status.tick(position: 13) == nil)
        #expect(status.tick(position: 13) == nil)
        #expect(status.tick(position: 13) == "serving at position 13")
        for _ in 0..<10 { #expect(status.tick(position: 13) == nil) }
        #expect(status.tick(position: 14) == "serving at position 14")
        #expect(
            sent.withLock { $0 } == ["STATUS=serving at position 12", "STATUS=serving at position 13", "STATUS=serving at position 14"])
    }

    @Test("once stopping, STOPPING=1 goes out with its status, and no tick sends serving after it")
    func nothingOfServingAfterTheStop() {
        let sent = Mutex<[String]>([])
        let status = ServingStatus(position: 7, interval: 1) { message in sent.withLock { $0.append(message) } }
        #expect(status.tick(position: 8) == "serving at position 8")
        status.stop(saying: "stopping: answering what the open connections sent")
        for position in UInt64(9)...12 { #expect(status.tick(position: position) == nil) }
        #expect(sent.withLock { $0 } == ["STATUS=serving at position 8", "STOPPING=1\nSTATUS=stopping: answering what the open connections sent"])
    }
}
