import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a daemon that runs for months must not keep of connections that have gone: followers, work, descriptors.
@Suite("Connection hygiene")
struct ConnectionHygieneTests {
    @Test("at --log-level debug, a connection is logged as it opens, with its peer and role, and as it closes, with how many requests it sent")
    func connectionsLoggedAtDebug() throws {
        let daemon = try Daemon(arguments: ["--log-level", "debug"])
        do {
            let client = try daemon.client()
            _ = try client.call("status")
            _ = try client.call("cities")
        }
        let peer = "(uid \(getuid()), pid \(getpid()))"
        try waitFor("the connection's close in the daemon's log") { daemon.log.contains("\(peer) closed after 2 requests") }
        #expect(daemon.log.contains("\(peer), holding the "), "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }

    @Test("a connection closed with a subscribe among its unanswered requests leaves no follower behind, while a live one keeps following")
    func noFollowerOfAClosedConnection() throws {
        let daemon = try Daemon()
        let watcher = try daemon.client()
        #expect(try watcher.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let live = try daemon.client()
        let followId = try live.send("subscribe", ["from": 1])
        #expect(try live.receive()["subscribed"] == true)
        let stored = try watcher.call("status")["position"]?.intValue ?? 0
        #expect(try SubscribeTests.events(live, id: followId, count: Int(stored)).positions == Array(1...stored))
        #expect(try watcher.call("status")["followers"] == 1)

        // Closed at once, unread: the daemon's first answer fails to be written, and the connection closes while the
        // lines after it, the subscribe among them, are still being handed on.
        let lines = Array(String(repeating: #"{"id":1,"op":"status"}"# + "\n", count: 4).utf8)
            + Array((#"{"id":2,"op":"subscribe","from":1}"# + "\n").utf8)
        for _ in 0..<500 {
            let gone = try daemon.client()
            try gone.write(lines)
        }
        try waitFor("the closed connections and their followers to be gone") {
            let status = try watcher.call("status")
            return status["connections"] == 2 && status["followers"] == 1
        }

        #expect(try watcher.appendEvents([Wire.report(incident: "after-the-churn", city: "Melitopol")])["ok"]?.boolValue == true)
        #expect(try SubscribeTests.events(live, id: followId, count: 1).positions == [stored + 1])
        #expect(daemon.stop() == 0)
    }

    /// Sends `request` lines on `client` (made non-blocking) until the daemon stops reading them: the socket takes
    /// nothing more for two seconds. How many bytes it took.
    static func pipelineUntilUnread(_ request: String, on client: RawClient) -> Int {
        _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) | O_NONBLOCK)
        let batch = Array(repeating: Array((request + "\n").utf8), count: 256).flatMap { $0 }
        var sent = 0
        while sent < 64 << 20 {
            let n = batch.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                sent += n
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                var writable = pollfd(fd: client.fd, events: Int16(POLLOUT), revents: 0)
                if poll(&writable, 1, Int32(2000 * deadlineScale)) == 0 { break }
            } else if errno != EINTR {
                Issue.record("send: \(String(cString: strerror(errno)))")
                break
            }
        }
        return sent
    }

    /// The requests begun and the lines read and not run, from the debug lines of connections closed with lines read
    /// and not run.
    static func closedWithLinesNotRun(in log: String) -> [(begun: Int, readNotRun: Int)] {
        log.split(separator: "\n").filter { $0.contains("more read and not run") }.compactMap { line in
            let words = line.split(separator: " ")
            guard let after = words.firstIndex(of: "after"), after + 1 < words.count, let begun = Int(words[after + 1]),
                let more = words.firstIndex(of: "more"), more > 0, let notRun = Int(words[more - 1].drop { $0 == "(" })
            else { return nil }
            return (begun, notRun)
        }
    }

    @Test("clients that pipelined thousands of requests, read none of the answers and closed: the daemon reads no more of what they sent, runs none of what it had read and not begun, and answers another client's status within its deadline")
    func goneClientsRequestsAreNeitherReadNorRun() throws {
        let daemon = try Daemon(arguments: ["--log-level", "debug"])
        let watcher = try daemon.client()
        watcher.setReceiveTimeout(10 * deadlineScale)
        let request = #"{"op":"status"}"#
        var sentLines: [Int] = []
        do {
            let gone = try (0..<4).map { _ in try daemon.client() }
            sentLines = gone.map { Self.pipelineUntilUnread(request, on: $0) / (request.utf8.count + 1) }
        }
        // All four closed with their answers unread, their sockets full of requests the daemon had not read.
        let answered = try watcher.call("status")
        #expect(answered.isOK, "\(answered)")
        try waitFor("the four connections' close in the daemon's log") { Self.closedWithLinesNotRun(in: daemon.log).count == 4 }
        let fewestSent = sentLines.min() ?? 0
        for (begun, readNotRun) in Self.closedWithLinesNotRun(in: daemon.log) {
            // What was read and not run: the lines of a read or two (4 KiB each), not the socket's thousands.
            #expect(readNotRun <= 1024, "\(readNotRun) lines read and not run, of a client that sent \(sentLines)")
            #expect(begun + readNotRun + 4096 < fewestSent, "\(begun) run and \(readNotRun) read of \(sentLines) sent")
        }
        #expect(daemon.log.split(separator: "\n").filter { $0.contains("its client had gone") }.count == 4)
        try waitFor("the connections to be gone") { try watcher.call("status")["connections"] == 1 }
        #expect(daemon.stop() == 0)
    }

    @Test("appends the daemon had begun when their client closed without reading are stored, each whole; those it had not begun are not")
    func goneClientsBegunAppendsAreStoredWhole() throws {
        let daemon = try Daemon.configured("[daemon]\nlog_level = \"debug\"\nmax_pending_per_connection = 4\n")
        let watcher = try daemon.client()
        let batches = 120
        let size = 5
        var lines: [UInt8] = []
        for batch in 0..<batches {
            let events = (0..<size).map {
                WireEvent.report(incident: "gone-\(batch)-\($0)", description: String(repeating: "d", count: 2000))
            }
            lines += JSONValue.object(["op": "append", "events": .array(events)]).canonicalBytes() + [0x0A]
        }
        var sent = 0
        do {
            let gone = try daemon.client()
            _ = fcntl(gone.fd, F_SETFL, fcntl(gone.fd, F_GETFL) | O_NONBLOCK)
            func fill() {
                while sent < lines.count {
                    let n = lines[sent...].withUnsafeBytes { send(gone.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { return }
                    sent += n
                }
            }
            // The daemon is storing the first appends (four at a time) when the client, its socket full again, closes.
            fill()
            try waitFor("the first appends to be stored") { try watcher.call("status")["position"]?.intValue ?? 0 > 0 }
            fill()
            #expect(sent < lines.count, "the socket took all \(lines.count) bytes")
        }
        let sentLines = lines[..<sent].count { $0 == 0x0A }
        func begun(_ line: Substring) -> Int? {
            let words = line.split(separator: " ")
            return words.firstIndex(of: "after").flatMap { $0 + 1 < words.count ? Int(words[$0 + 1]) : nil }
        }
        // The daemon's probe of its socket at the start closed after no request; the client's, after some.
        try waitFor("the client's connection's close in the daemon's log") {
            daemon.log.split(separator: "\n").contains { $0.contains("closed after") && begun($0) ?? 0 > 0 }
        }
        let closing = try #require(daemon.log.split(separator: "\n").first { $0.contains("closed after") && begun($0) ?? 0 > 0 })
        let begunAppends = try #require(begun(closing))
        // What the socket held when the client closed, more than a read's worth, was not carried out.
        #expect(begunAppends + 2 < sentLines, "\(sentLines) requests sent whole: \(closing)")
        try waitFor("the writer to have answered every append begun") {
            try watcher.call("status")["commits"]?["requests"]?.intValue ?? 0 >= Int64(begunAppends)
        }
        var stored: [Int: Int] = [:]
        for event in try watcher.allEvents() {
            guard let parts = event["incident"]?.stringValue?.split(separator: "-"), parts.count == 3, let batch = Int(parts[1])
            else { continue }
            stored[batch, default: 0] += 1
        }
        #expect(stored.values.allSatisfy { $0 == size }, "a batch stored in part: \(stored.filter { $0.value != size })")
        #expect(stored.keys.sorted() == Array(0..<begunAppends), "stored \(stored.keys.sorted()): \(closing)")
        #expect(daemon.stop() == 0)
    }

    @Test("the log walkers skip what a connection that has closed left waiting for them: of fifty backups sent and abandoned, few are written")
    func noWorkForAClosedConnection() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let parent = daemon.root + "/b"
        #expect(mkdir(parent, 0o700) == 0)
        let abandoned = 50
        var lines: [UInt8] = []
        for n in 0..<abandoned {
            lines += JSONValue.object(["id": .int(Int64(n)), "op": "backup", "path": .string("\(parent)/a\(n)")]).canonicalBytes() + [0x0A]
        }
        // In one read of the daemon's (4 KiB at most), so that every one is queued before the first is answered.
        try #require(lines.count <= 4096)
        do {
            let gone = try daemon.client()
            try gone.write(lines)
        }
        try waitFor("the abandoned connection to be gone") { try client.call("status")["connections"] == 1 }
        // The walkers take their work in order: once this backup is answered, each abandoned one was written or skipped
        // (but one the other walker may still be writing).
        let last = try client.call("backup", ["path": .string(parent + "/last")])
        #expect(last["intact"] == true, "\(last)")
        let written = try FileManager.default.contentsOfDirectory(atPath: parent).filter { $0.hasPrefix("a") }.count
        #expect(written < abandoned / 2, "\(written) of the \(abandoned) abandoned backups were written")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "the heap a burst of connections used is given back once they have gone: the daemon's anonymous memory comes back down",
        .disabled(if: underSanitizer, "a sanitizer's allocator replaces glibc's, whose free memory malloc_trim gives back"))
    func heapGivenBack() throws {
        let daemon = try Daemon()
        let watcher = try daemon.client()
        let baseline = anonymousBytes(of: daemon.pid)
        let burst = 500
        let held = 60_000
        raiseOpenFileLimit(to: UInt64(burst) + 1024)
        // Each an unfinished line of 60 kB that the daemon holds until the connection goes: 30 MB in all, in buffers below
        // glibc's mmap threshold, so on its heap.
        var clients: [RawClient] = []
        let partial = Array(#"{"id":1,"op":"append","events":["#.utf8) + [UInt8](repeating: UInt8(ascii: " "), count: held)
        for _ in 0..<burst {
            let client = try daemon.client()
            try client.write(partial)
            clients.append(client)
        }
        try waitFor("the daemon to hold every unfinished line") {
            (try watcher.call("status")["unfinishedLineBytes"]?.intValue ?? 0) >= Int64(burst * held)
        }
        let peak = anonymousBytes(of: daemon.pid)
        clients.removeAll()
        try waitFor("the burst's connections to be gone") { try watcher.call("status")["connections"] == 1 }
        // Only /proc from here on: a request is activity, and the heap is trimmed once activity stops.
        try waitFor("the heap to come back down from \(peak >> 20) MiB (baseline \(baseline >> 20) MiB)") {
            anonymousBytes(of: daemon.pid) < baseline + (peak - baseline) / 3
        }
        #expect(daemon.stop() == 0)
    }
}
