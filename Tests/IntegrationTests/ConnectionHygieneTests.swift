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
