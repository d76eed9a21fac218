import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Reliability: many clients", .serialized)
struct ReliabilityManyClientsTests {
    @Test(
        "an open-file limit with room for fewer connections than max_connections: those past it are answered too_many_connections, and the daemon neither runs out of descriptors nor stops serving",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"))
    func descriptorLimitCapsConnections() throws {
        // The daemon keeps 64 descriptors and three an event loop (one a core) for its own files: this limit leaves
        // room for about 56 connections.
        let limit = 120 + 3 * ProcessInfo.processInfo.activeProcessorCount
        let daemon = try Daemon(descriptorLimit: limit)
        var warning = ""
        try waitFor("the warning that names the connections served") {
            warning = daemon.log.components(separatedBy: "\n").first { $0.contains("the open-file limit leaves room for") } ?? ""
            return !warning.isEmpty
        }
        let servedText = warning.components(separatedBy: "serving at most ").dropFirst().first?.prefix { $0.isNumber } ?? ""
        let served = try #require(Int(servedText), "\(warning)")
        #expect(served > 8 && served < limit, "\(warning)")
        #expect(warning.contains("fewer than max_connections (1024)"), "\(warning)")
        let first = try daemon.client()
        try waitFor("only this connection to be counted") { try first.status()["connections"] == 1 }
        var clients = [first]
        for _ in 1..<served { clients.append(try daemon.client()) }
        try waitFor("the daemon to accept all \(served) connections") {
            try first.status()["connections"]?.intValue == Int64(served)
        }
        // Twice as many again, each answered and closed, with no descriptor left behind (before the cap, the daemon
        // accepted until accept failed with EMFILE, then either crashed in libdispatch or spun on the listener).
        for _ in 0..<(2 * served) {
            let refused = try daemon.client()
            refused.setReceiveTimeout(10 * deadlineScale)
            let answer = try refused.receive()
            #expect(answer.errorCode == "too_many_connections", "\(answer.canonicalString())")
            #expect(answer["error"]?["message"]?.stringValue?.contains("\(served) connections (the open-file limit)") == true)
            #expect(refused.peerClosed(within: 10 * deadlineScale))
        }
        let client = clients[served / 2]
        #expect(try client.appendEvents([WireEvent.report(incident: "fd-limit-1", city: "Kupiansk")])["ok"]?.boolValue == true)
        for client in clients { #expect(try client.call("status")["connections"]?.intValue == Int64(served)) }
        // One leaves, and a newcomer gets in.
        clients.removeLast()
        try waitFor("the departure to be counted") { try first.status()["connections"]?.intValue == Int64(served - 1) }
        let newcomer = try daemon.client()
        #expect(try newcomer.call("status")["connections"]?.intValue == Int64(served))
        #expect(daemon.stop() == 0)
    }

    @Test(
        "an open-file limit that leaves no room for connections is refused at start (exit 78, naming the limit), before a data directory is made",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "needs prlimit (util-linux)"))
    func descriptorLimitTooLowIsRefused() throws {
        let root = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Under 20 descriptors the daemon ran out of them as it started: it crashed in libdispatch or spun on accept.
        for limit in [12, 20, 64] {
            let data = root + "/data-\(limit)"
            let run = try runCommand(
                "/usr/bin/prlimit",
                ["--nofile=\(limit):\(limit)", "--", Binaries.incidentd, "--data-dir", data, "--socket", root + "/sock"])
            #expect(run.status == 78, "limit \(limit): \(run)")
            #expect(run.stderr.contains("the open-file limit (\(limit)) leaves no room for connections"), "\(run.stderr)")
            #expect(!FileManager.default.fileExists(atPath: data), "limit \(limit): a data directory was made")
        }
    }

    @Test("incidentctl refused for max_connections says too_many_connections (exit 1) every time, never that it lost the connection (exit 3), whether its request was written before the daemon closed or after")
    func refusedClientSaysWhy() throws {
        let daemon = try startDaemon(config: "[daemon]\nmax_connections = 1\n")
        // The harness's readiness probe may still hold the one place for a moment: a holder is refused until it left.
        var holder = try daemon.client()
        try waitFor("a connection to hold the one place") {
            if (try? holder.call("status"))?["connections"] == 1 { return true }
            holder = try daemon.client()
            return false
        }
        for round in 0..<12 {
            let command = round % 2 == 0
                ? ["status"]
                : ["report", "--incident", "refused-\(round)", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-05"]
            let run = try daemon.ctl(command)
            #expect(run.status == 1, "\(command): \(run)")
            #expect(run.stderr.contains("too_many_connections"), "\(command): \(run.stderr)")
        }
        #expect(try holder.call("status")["position"] == 0, "nothing was stored")
        #expect(daemon.stop() == 0)
    }

    @Test("1,000 connections at once, half idle and half appending; the next one gets too_many_connections and is closed, never left hanging")
    func thousandConnections() throws {
        let maximum = 1000
        // The test holds 1,000 sockets itself; the daemon started after this inherits the raised limit too (and
        // raises its own soft limit to the hard one in any case).
        let limit = raiseOpenFileLimit(to: 4096)
        try #require(limit >= 2 * UInt64(maximum) + 200, "RLIMIT_NOFILE is \(limit): too low to hold \(maximum) connections on both ends")
        let daemon = try startDaemon(config: "[daemon]\nmax_connections = \(maximum)\n")
        let first = try daemon.client()
        // The harness's readiness probes may still be counted for a moment.
        try waitFor("only this connection to be counted") { try first.status()["connections"] == 1 }

        var clients = [first]
        for _ in 1..<maximum { clients.append(try daemon.client()) }
        // connect() returns once the kernel queued the connection; the daemon accepts them as fast as it can.
        try waitFor("the daemon to accept all \(maximum) connections", timeout: 30 * deadlineScale) {
            try first.status()["connections"]?.intValue == Int64(maximum)
        }
        let appending = Array(clients[0..<(maximum / 2)])
        let idle = Array(clients[(maximum / 2)...])

        // Three rounds: every appending connection sends one append, then every answer is read.
        for round in 1...3 {
            for (k, client) in appending.enumerated() {
                try client.send("append", ["id": .int(Int64(k)), "events": [WireEvent.report(incident: "many-\(round)-\(k)", city: WireEvent.citySpellings[k % 6])]])
            }
            for (k, client) in appending.enumerated() {
                let response = try client.receive()
                #expect(response.isOK && response["id"] == .int(Int64(k)), "\(response.canonicalString())")
            }
        }

        // One more: an error line and EOF, within a deadline.
        let refused = try daemon.client()
        refused.setReceiveTimeout(10 * deadlineScale)
        let answer = try refused.receive()
        #expect(answer.errorCode == "too_many_connections", "\(answer.canonicalString())")
        #expect(answer["error"]?["message"]?.stringValue?.contains("\(maximum)") == true)
        #expect(refused.peerClosed(within: 10 * deadlineScale), "the refused connection is closed")
        try waitFor("the refusal in the daemon's log", timeout: 10 * deadlineScale) {
            daemon.log.contains("refused 1 connection since the last such line: incidentd already serves \(maximum) connections, the most max_connections allows")
        }
        // Refused connections hold nothing in the daemon: 100 more, each answered and closed, leave its open
        // descriptors where they were.
        let descriptors = { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").count) ?? 0 }
        let before = descriptors()
        for _ in 0..<100 {
            let again = try daemon.client()
            again.setReceiveTimeout(10 * deadlineScale)
            #expect(try again.receive().errorCode == "too_many_connections")
            #expect(again.peerClosed(within: 10 * deadlineScale))
        }
        try waitFor("the daemon to close the refused connections", timeout: 10 * deadlineScale) { descriptors() <= before + 2 }
        #expect(daemon.log.components(separatedBy: "since the last such line").count == 2, "one line a minute at most")
        // Refusing did not disturb anybody: every idle connection is still served.
        for client in idle { #expect(try client.call("status")["connections"]?.intValue == Int64(maximum)) }

        // When one leaves, a newcomer gets in.
        clients.removeLast()
        let leaving = idle.last!
        shutdown(leaving.fd, Int32(SHUT_RDWR))
        try waitFor("a connection slot to free up", timeout: 20 * deadlineScale) {
            guard let newcomer = try? daemon.client() else { return false }
            newcomer.setReceiveTimeout(10 * deadlineScale)
            return (try? newcomer.call("status"))?.isOK == true
        }
        let status = try first.status()
        #expect(status["position"]?.intValue == Int64(3 * maximum / 2))
        try checkLogIntegrity(daemon, first)
        clients.removeAll()
        #expect(daemon.stop() == 0)
    }

    @Test("a client that sends many requests and never reads stalls only itself: the daemon stops reading from it, others get answers")
    func clientThatNeverReads() throws {
        let daemon = try Daemon()
        let stuck = try daemon.client()
        // Non-blocking, so that this test learns when the daemon stops reading instead of blocking in send().
        _ = fcntl(stuck.fd, F_SETFL, fcntl(stuck.fd, F_GETFL) | O_NONBLOCK)
        // Requests with large answers: `read` of up to 10,000 events, once there are some.
        let seed = try daemon.client()
        let events: [JSONValue] = (0..<200).map { WireEvent.report(incident: "seed-\($0)", description: String(repeating: "d", count: 400)) }
        #expect(try seed.call("append", ["events": .array(events)]).isOK)
        let request = Array(#"{"id":1,"op":"read","limit":10000}"#.utf8) + [0x0A]
        var batch: [UInt8] = []
        for _ in 0..<64 { batch += request }
        var sent = 0
        var blocked = false
        let cap = 256 << 20
        while sent < cap {
            let n = batch.withUnsafeBytes { send(stuck.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    // Full: but maybe the daemon is only slow. Give it a moment (bounded) to drain, else it has stopped.
                    var pfd = pollfd(fd: stuck.fd, events: Int16(POLLOUT), revents: 0)
                    if poll(&pfd, 1, Int32(2000 * deadlineScale)) == 0 {
                        blocked = true
                        break
                    }
                    continue
                }
                Issue.record("send: \(String(cString: strerror(errno)))")
                break
            }
            sent += n
        }
        #expect(blocked, "the daemon kept reading \(sent >> 20) MiB from a client that reads nothing")

        // Everybody else is served promptly: each answer well within a deadline (not a timing measure).
        let others = try (0..<4).map { _ in try daemon.client() }
        for client in others { client.setReceiveTimeout(10 * deadlineScale) }
        for round in 0..<25 {
            for (k, client) in others.enumerated() {
                if round % 5 == 0 {
                    let appended = try client.call("append", ["events": [WireEvent.report(incident: "other-\(round)-\(k)")]])
                    #expect(appended.isOK, "\(appended.canonicalString())")
                } else {
                    #expect(try client.call("status").isOK)
                }
            }
        }
        let rss = residentBytes(of: daemon.pid)
        if !underSanitizer { #expect(rss < 512 << 20, "the daemon holds \(rss >> 20) MiB for a client that reads nothing") }

        // The stuck client, once it reads, gets its answers in order.
        _ = fcntl(stuck.fd, F_SETFL, fcntl(stuck.fd, F_GETFL) & ~O_NONBLOCK)
        stuck.setReceiveTimeout(30 * deadlineScale)
        for _ in 0..<3 {
            let answer = try stuck.receive()
            #expect(answer.isOK && answer["id"] == 1 && answer["events"]?.arrayValue?.count == 200)
        }
        #expect(daemon.stop() == 0, "a client with unread answers does not keep the daemon from stopping")
    }
}
