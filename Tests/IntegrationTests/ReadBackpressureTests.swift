import Dispatch
import Foundation
import IncidentProtocol
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Reliability: a reader that does not read its answers", .serialized)
struct ReadBackpressureTests {
    /// Events of the log the hog reads, each with a description of `descriptionLength` characters: a `read` of all
    /// of them answers about three megabytes.
    static let stored = 300
    static let descriptionLength = 9_000
    /// The hog's `read`s sent at once, in one read of the daemon's (4 KiB at most).
    static let batch = 90
    /// Then a few more, while the first wait.
    static let later = 10

    @Test(
        "a client that pipelines reads of the whole log and never reads their answers holds up nobody's read or status, the daemon holds a few answers' worth of memory for it, and once it reads it gets every answer, in order"
    )
    func hogThatNeverReads() throws {
        let daemon = try Daemon()
        let seed = try daemon.client()
        let description = String(repeating: "d", count: Self.descriptionLength)
        for part in 0..<(Self.stored / 50) {
            let events = (0..<50).map { WireEvent.report(incident: "big-\(part)-\($0)", description: description) }
            let appended = try seed.call("append", ["events": .array(events)])
            try #require(appended.isOK, "\(appended.canonicalString().prefix(300))")
        }
        try seed.send("read", ["id": 0, "limit": 10_000])
        let answerBytes = try seed.receiveLine().count
        try #require(answerBytes > Self.stored * Self.descriptionLength)
        // After one such answer was made and written, as every later one is.
        let baseline = residentBytes(of: daemon.pid)

        let peak = Guarded(baseline)
        let sampling = Guarded(true)
        let sampled = DispatchSemaphore(value: 0)
        let pid = daemon.pid
        DispatchQueue.global().async {
            while sampling.withLock({ $0 }) {
                let rss = residentBytes(of: pid)
                peak.withLock { $0 = max($0, rss) }
                usleep(10_000)
            }
            sampled.signal()
        }

        let hog = try daemon.client()
        var nextId = 1
        func sendBatch(_ count: Int) throws {
            var lines: [UInt8] = []
            for _ in 0..<count {
                lines += Array(#"{"id":\#(nextId),"op":"read","limit":10000}"#.utf8) + [0x0A]
                nextId += 1
            }
            try #require(lines.count <= 4096)
            try hog.write(lines)
        }
        try sendBatch(Self.batch)
        // Its first answer coming means the daemon has read the batch: the queries below come after all of it.
        var readable = pollfd(fd: hog.fd, events: Int16(POLLIN), revents: 0)
        try #require(poll(&readable, 1, Int32(60_000 * deadlineScale)) == 1, "no answer for the hog at all")

        let other = try daemon.client()
        // Long enough for a daemon without the bound to answer at last, so that its time is reported.
        other.setReceiveTimeout(300)
        let bound = 2 * deadlineScale
        for round in 0..<2 {
            if round > 0 { try sendBatch(Self.later) }
            for op in ["read", "status"] {
                let started = Date()
                let answer = try other.call(op, op == "read" ? ["from": 1, "limit": 1] : [:])
                let seconds = Date().timeIntervalSince(started)
                #expect(answer.isOK, "\(answer.canonicalString().prefix(300))")
                #expect(
                    seconds < bound,
                    "\(op) took \(String(format: "%.1f", seconds)) s with \(nextId - 1) reads of \(answerBytes >> 20) MiB each pipelined by a client that reads nothing"
                )
            }
        }
        // As long again as the hog's first answer took, several times over, with its other requests unread: the
        // daemon makes no more of its answers meanwhile.
        for _ in 0..<4 {
            try other.send("read", ["limit": 10_000])
            var whole = 0
            try Self.receiveLines(other, count: 1) { length, _ in whole = length }
            #expect(whole > Self.stored * Self.descriptionLength)
        }
        sampling.withLock { $0 = false }
        sampled.wait()
        let grown = peak.withLock { $0 } - baseline
        if !underSanitizer {
            #expect(
                grown < 16 * answerBytes,
                "the daemon grew by \(grown >> 20) MiB (answers of \(answerBytes >> 20) MiB each) for a client that reads nothing"
            )
        }

        hog.setReceiveTimeout(120 * deadlineScale)
        var id = 1
        try Self.receiveLines(hog, count: nextId - 1) { length, tail in
            let ending = Array(#"],"id":\#(id),"next":\#(Self.stored + 1),"ok":true}"#.utf8)
            #expect(
                length == answerBytes - 1 + String(id).utf8.count && tail.suffix(ending.count).elementsEqual(ending),
                "answer \(id) of the hog: \(length) bytes ending \(String(decoding: tail, as: UTF8.self))")
            id += 1
        }
        #expect(daemon.stop() == 0)
    }

    /// Reads `count` lines from `client`'s socket (nothing was read from it yet), handing `check` the length of each
    /// and its last bytes: the answers of the hog are too many and too long to be framed and kept whole.
    @discardableResult
    static func receiveLines(_ client: RawClient, count: Int, _ check: (_ length: Int, _ tail: [UInt8]) -> Void) throws -> Int {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var length = 0
        var tail: [UInt8] = []
        var received = 0
        while received < count {
            let n = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw HarnessError("the hog's answer \(received + 1) did not come: \(n < 0 ? String(cString: strerror(errno)) : "closed")") }
            var start = 0
            while start < n {
                let newline = buffer[start..<n].firstIndex(of: 0x0A)
                let end = newline ?? n
                length += end - start
                tail = Array((tail + buffer[max(start, end - 80)..<end]).suffix(80))
                start = end + 1
                if newline != nil {
                    check(length, tail)
                    received += 1
                    length = 0
                    tail = []
                }
            }
        }
        return received
    }

    @Test("a read stops adding events once they pass 8 MiB, whatever its limit: next follows the last one, and reading on from next gives every event once, in order, with or without a filter")
    func readAnswersAreBounded() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let description = String(repeating: "d", count: 9_000)
        let stored = 1_000
        for part in 0..<(stored / 50) {
            let events = (0..<50).map { WireEvent.report(incident: "wide-\(part)-\($0)", description: description) }
            let appended = try client.call("append", ["events": .array(events)])
            try #require(appended.isOK, "\(appended.canonicalString().prefix(300))")
        }
        for filter: [String: JSONValue] in [[:], ["type": "incident-reported"]] {
            var from: Int64 = 1
            var positions: [Int64] = []
            var pages = 0
            while true {
                var body = filter
                body["from"] = .int(from)
                body["limit"] = 10_000
                let page = try client.call("read", body)
                try #require(page.isOK, "\(page.canonicalString().prefix(300))")
                let events = page["events"]?.arrayValue ?? []
                if events.isEmpty { break }
                pages += 1
                let bytes = events.reduce(0) { $0 + $1.canonicalBytes().count }
                #expect(bytes < (8 << 20) + (8 << 20) / 50, "page \(pages) holds \(events.count) events, \(bytes) bytes")
                let last = try #require(events.last?["position"]?.intValue)
                #expect(page["next"]?.intValue == last + 1)
                positions += events.compactMap { $0["position"]?.intValue }
                from = last + 1
            }
            #expect(pages >= 2, "\(filter): \(stored) events of about 9 KB came in \(pages) page(s)")
            #expect(positions == Array(1...Int64(stored)), "\(filter)")
        }
        #expect(daemon.stop() == 0)
    }
}
