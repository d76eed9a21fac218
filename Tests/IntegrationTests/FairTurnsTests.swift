import Foundation
import StrictJSON
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Connections that pipeline requests as fast as the daemon answers them share its event loops: a newcomer's simple
/// request is answered promptly while they go on, and every one of them is answered meanwhile (QA pass 10a, F3).
@Suite("Fair turns")
struct FairTurnsTests {
    static let flooders = 48
    /// Requests each flooding connection sends at once, before it reads their answers.
    static let depth = 128
    /// How long a newcomer's `status` may wait: a loaded machine's seconds, where without turns it waited for
    /// seconds of the flooders' requests between two looks of the loop at its sockets.
    static let deadline = 3 * deadlineScale

    /// The answers each flooding connection has read, and whether they are to stop.
    final class Flood: Sendable {
        let answered: Mutex<[Int]>
        let failures = Mutex<[String]>([])
        let stopping = Atomic<Bool>(false)

        init(connections: Int) { answered = Mutex([Int](repeating: 0, count: connections)) }

        var counts: [Int] { answered.withLock { $0 } }
    }

    /// Sends `batch` (`depth` request lines) on a connection of its own and reads their `depth` answers, again and
    /// again, until `flood` is stopping; counts the answers as they come.
    static func pipeline(_ batch: [UInt8], socket: String, index: Int, flood: Flood) {
        do {
            let client = try RawClient(path: socket)
            client.setReceiveTimeout(60 * deadlineScale)
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while !flood.stopping.load(ordering: .relaxed) {
                try client.write(batch)
                var left = depth
                while left > 0 {
                    let n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
                    if n < 0 && errno == EINTR { continue }
                    guard n > 0 else { throw HarnessError("recv: \(n == 0 ? "the daemon closed the connection" : String(cString: strerror(errno)))") }
                    let lines = buffer[0..<n].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                    left -= lines
                    flood.answered.withLock { $0[index] += lines }
                }
            }
        } catch {
            flood.failures.withLock { $0.append("flooder \(index): \(error)") }
        }
    }

    @Test("while 48 connections pipeline cities and read requests as fast as they are answered, a fresh connection's status is answered within 3 s, five times over, and each of the 48 is answered meanwhile")
    func newcomerAnsweredDuringFlood() throws {
        let daemon = try Daemon()
        let watcher = try daemon.client()
        #expect(try watcher.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let socket = daemon.socketPath
        let flood = Flood(connections: Self.flooders)
        // Half ask for the cities, answered on the event loop; half alternate them with reads of the log, answered by
        // the log walkers, each of which let its connection run more as its answer came back.
        let cities = Array(#"{"op":"cities"}"#.utf8) + [0x0A]
        let read = Array(#"{"op":"read","limit":50}"#.utf8) + [0x0A]
        let done = DispatchGroup()
        for index in 0..<Self.flooders {
            let batch = (0..<Self.depth).flatMap { index % 2 == 1 && $0 % 2 == 1 ? read : cities }
            done.enter()
            Thread {
                defer { done.leave() }
                Self.pipeline(batch, socket: socket, index: index, flood: flood)
            }.start()
        }
        defer {
            flood.stopping.store(true, ordering: .relaxed)
            _ = done.wait(timeout: .now() + 120 * deadlineScale)
        }
        // Each has sent its first batch once it has an answer.
        try waitFor("every flooding connection to be answered", timeout: 120 * deadlineScale) {
            flood.failures.withLock { $0.isEmpty } ? flood.counts.allSatisfy { $0 > 0 } : true
        }
        #expect(flood.failures.withLock { $0 } == [])

        let floodAnswered = flood.counts
        var waits: [Double] = []
        for _ in 0..<5 {
            // The flood goes on between two newcomers: another batch answered.
            let before = flood.counts.reduce(0, +)
            try waitFor("the flood to go on", timeout: 120 * deadlineScale) { flood.counts.reduce(0, +) >= before + Self.depth }
            let start = Date()
            let newcomer = try daemon.client()
            newcomer.setReceiveTimeout(Self.deadline * 4)
            let answer = Result { try newcomer.call("status") }
            let waited = Date().timeIntervalSince(start)
            waits.append(waited)
            #expect((try? answer.get())?.isOK == true, "a fresh connection's status, after \(waited) s: \(answer)")
            #expect(waited < Self.deadline, "a fresh connection's status waited \(waited) s during the flood")
        }
        let counts = flood.counts
        let starved = (0..<Self.flooders).filter { counts[$0] <= floodAnswered[$0] }
        #expect(starved == [], "flooders answered nothing while the newcomers came: \(starved); answers \(counts)")
        #expect(flood.failures.withLock { $0 } == [])
        print("newcomers' status waits (s): \(waits.map { String(format: "%.3f", $0) }); answers per flooder: \(counts.min() ?? 0)-\(counts.max() ?? 0)")
        flood.stopping.store(true, ordering: .relaxed)
        #expect(done.wait(timeout: .now() + 120 * deadlineScale) == .success, "the flooders did not finish their last batches")
        #expect(daemon.stop() == 0)
    }
}
