import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `subscribe` and `incidentctl events --follow` (SPEC §4): the log from a position, then live.
@Suite("Subscribe")
struct SubscribeTests {
    /// The positions of the next `count` event lines on `client`, each checked to carry `id`; other lines (answers
    /// to requests sent meanwhile) are returned apart.
    static func events(_ client: RawClient, id: JSONValue, count: Int) throws -> (positions: [Int64], others: [JSONValue]) {
        var positions: [Int64] = []
        var others: [JSONValue] = []
        while positions.count < count {
            let line = try client.receive()
            guard let event = line["event"] else {
                others.append(line)
                continue
            }
            #expect(line["id"] == id && line.isOK, "\(line)")
            positions.append(event["position"]?.intValue ?? -1)
        }
        return (positions, others)
    }

    @Test("subscribe from a position: the stored events from there, then each event as it is committed, in order, each with the request's id; a request after it is answered between the events")
    func storedThenLive() throws {
        let daemon = try Daemon()
        let writer = try daemon.client()
        #expect(try writer.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let follower = try daemon.client()
        let id = try follower.send("subscribe", ["from": 3])
        #expect(try follower.receive() == ["id": id, "ok": true, "subscribed": true, "from": 3])
        // Each line is canonical JSON, the event exactly as `read` gives it.
        let stored = try writer.allEvents()
        for position in 3...8 {
            let line = try follower.receiveLine()
            let expected = JSONValue.object(["event": stored[position - 1], "id": id, "ok": true]).canonicalBytes()
            #expect(line == expected, "position \(position): \(String(decoding: line, as: UTF8.self))")
        }

        for n in 0..<3 {
            #expect(try writer.appendEvents([Wire.report(incident: "live-\(n)", city: "Melitopol")])["ok"]?.boolValue == true)
        }
        try follower.send("status", ["id": "status-after"])
        #expect(try writer.appendEvents([Wire.response(incident: "live-0")])["ok"]?.boolValue == true)
        let (live, others) = try Self.events(follower, id: id, count: 4)
        #expect(live == [9, 10, 11, 12])
        let status = try others.first ?? follower.receive()
        #expect(status["id"] == "status-after" && status["position"]?.intValue ?? 0 >= 11, "\(status)")

        let again = try follower.call("subscribe", ["id": "twice"])
        #expect(again.errorCode == "invalid_request", "\(again)")
        #expect(try daemon.client().call("subscribe", ["from": "x"]).errorCode == "invalid_request")
        #expect(try daemon.client().call("subscribe", ["city": "Atlantis"]).errorCode == "unknown_city")
        #expect(daemon.stop() == 0, "SIGTERM with a follower connected still drains and exits 0")
    }

    @Test("subscribe pipelined behind appends on the same connection: its answer comes after theirs, and its events after its answer")
    func pipelinedBehindAppends() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        for round in 0..<20 {
            var lines: [UInt8] = []
            for n in 0..<5 {
                let body: [String: JSONValue] = [
                    "id": .string("append-\(round)-\(n)"), "op": "append",
                    "events": [Wire.report(incident: "piped-\(round)-\(n)", city: "Kupiansk")],
                ]
                lines += JSONValue.object(body).canonicalBytes() + [0x0A]
            }
            let follower = try daemon.client()
            try follower.write(lines + JSONValue.object(["id": "follow", "op": "subscribe", "from": .int(Int64(round * 5 + 1))]).canonicalBytes() + [0x0A])
            for n in 0..<5 {
                let answer = try follower.receive()
                #expect(answer["id"] == .string("append-\(round)-\(n)") && answer.isOK, "\(answer)")
            }
            #expect(try follower.receive()["subscribed"] == true)
            #expect(try Self.events(follower, id: "follow", count: 5).positions == Array(Int64(round * 5 + 1)...Int64(round * 5 + 5)))
        }
        #expect(try client.headPosition() == 100)
        #expect(daemon.stop() == 0)
    }

    @Test("a follower that stops reading holds up no append, and catches up from the log, in order and without a gap, when it reads again")
    func slowFollower() throws {
        let daemon = try Daemon()
        let follower = try daemon.client()
        let id = try follower.send("subscribe")
        // A megabyte and more of events while it reads nothing: far past the socket's buffers.
        let writer = try daemon.client()
        for n in 0..<120 {
            #expect(try ReliabilityStorageTests.bulkAppend(writer, tag: "slow-\(n)", count: 10).isOK)
        }
        #expect(try writer.headPosition() == 1_200)
        #expect(try follower.receive()["subscribed"] == true)
        let (positions, others) = try Self.events(follower, id: id, count: 1_200)
        #expect(others.isEmpty)
        #expect(positions == Array(1...1_200))
        #expect(daemon.stop() == 0)
    }

    @Test("subscribe takes read's filters: a city in any spelling, a type, an incident, for stored and live events alike")
    func filters() throws {
        let daemon = try Daemon()
        let writer = try daemon.client()
        #expect(try writer.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let stored = try writer.allEvents()
        func expected(_ match: (JSONValue) -> Bool) -> [Int64] { stored.filter(match).compactMap { $0["position"]?.intValue } }
        let melitopol = Set(stored.filter { $0["data"]?["cityId"] == "melitopol" }.compactMap { $0["incident"]?.stringValue })

        let byCity = try daemon.client()
        let cityId = try byCity.send("subscribe", ["city": "Melitopoli"])
        _ = try byCity.receive()
        let byType = try daemon.client()
        let typeId = try byType.send("subscribe", ["type": "response-observed"])
        _ = try byType.receive()
        let byIncident = try daemon.client()
        let incidentId = try byIncident.send("subscribe", ["incident": "kupiansk-2022-03-01-city-hall", "from": 2])
        _ = try byIncident.receive()

        let cityStored = expected { melitopol.contains($0["incident"]?.stringValue ?? "") }
        let typeStored = expected { $0["type"] == "response-observed" }
        #expect(try Self.events(byCity, id: cityId, count: cityStored.count).positions == cityStored)
        #expect(try Self.events(byType, id: typeId, count: typeStored.count).positions == typeStored)
        #expect(try Self.events(byIncident, id: incidentId, count: 2).positions == [2, 3])

        // Live: a Kupiansk report (position 9), a response to it (10), a Melitopol report (11), and a response
        // to the city-hall incident (12).
        let more = [
            Wire.report(incident: "kupiansk-live", city: "Kupiansk"), Wire.response(incident: "kupiansk-live"),
            Wire.report(incident: "melitopol-live", city: "Melitopol"), Wire.response(incident: "kupiansk-2022-03-01-city-hall"),
        ]
        #expect(try writer.appendEvents(more)["positions"] == [9, 10, 11, 12])
        #expect(try Self.events(byCity, id: cityId, count: 1).positions == [11])
        #expect(try Self.events(byType, id: typeId, count: 2).positions == [10, 12])
        #expect(try Self.events(byIncident, id: incidentId, count: 1).positions == [12])
        #expect(daemon.stop() == 0)
    }

    /// `incidentctl events --follow --limit LIMIT` started on its own thread against `daemon`, once it holds the
    /// article, and subscribed (not only connected: a daemon lost before the first subscription is exit 3, as for
    /// any command); the command's result once it ends.
    private static func articleFollower(_ daemon: Daemon, limit: Int) throws -> Guarded<CommandResult?> {
        #expect(try daemon.client().appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let followed = Guarded<CommandResult?>(nil)
        let arguments = ["events", "--follow", "--format", "json", "--limit", String(limit), "--socket", daemon.socketPath]
        Thread {
            let result = try? runCommand(Binaries.incidentctl, arguments)
            followed.withLock { $0 = result }
        }.start()
        try waitFor("the follower to subscribe") { (try daemon.client().call("status")["followers"]?.intValue ?? 0) >= 1 }
        return followed
    }

    /// Waits for an ``articleFollower(_:limit:)`` to end, and checks that it showed events 1...`events` once each and
    /// said it lost the daemon after the article's eight and followed on from the ninth.
    private static func expectFollowedAcrossTheLoss(_ followed: Guarded<CommandResult?>, events: Int) throws {
        try waitFor("the follower to show \(events) events and stop", timeout: 30 * deadlineScale) { followed.withLock { $0 != nil } }
        let result = try #require(followed.withLock { $0 })
        #expect(result.status == 0, "\(result.stderr)")
        let lines = try result.stdout.split(separator: "\n").map { try JSONReader().read(String($0)) }
        #expect(lines.compactMap { $0["position"]?.intValue } == Array(1...Int64(events)))
        #expect(result.stderr.contains("lost incidentd") && result.stderr.contains("following again from position 9"), "\(result.stderr)")
    }

    @Test("incidentctl events --follow that lost the daemon waits on while the one back at its socket is full (too_many_connections), then follows on")
    func followWaitsWhileTheDaemonIsFull() throws {
        let daemon = try Daemon()
        let followed = try Self.articleFollower(daemon, limit: 10)
        #expect(daemon.stop() == 0)
        // In the daemon's place, a socket that refuses every connection as a daemon at max_connections does: the
        // follower is refused twice, so it came back after the first refusal.
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(daemon.socketPath.utf8).prefix($0.count - 1)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0 && listen(listener, 4) == 0, "\(String(cString: strerror(errno)))")
        let refusal = Array(
            (#"{"error":{"code":"too_many_connections","message":"incidentd already serves 1 connection (max_connections); try again later"},"id":null,"ok":false}"#
                + "\n").utf8)
        for round in 1...2 {
            var waiting = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            try #require(poll(&waiting, 1, Int32(20_000 * deadlineScale)) == 1, "refusal \(round): the follower did not come back")
            let connection = accept(listener, nil, nil)
            try #require(connection >= 0)
            _ = refusal.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(connection)
        }
        #expect(followed.withLock { $0 == nil }, "the follower is still waiting: \(String(describing: followed.withLock { $0 }))")
        unlink(daemon.socketPath)
        try daemon.start()
        #expect(try daemon.client().appendEvents([Wire.report(incident: "after-full-1", city: "Melitopol"), Wire.report(incident: "after-full-2", city: "Kupiansk")])["ok"]?.boolValue == true)
        try Self.expectFollowedAcrossTheLoss(followed, events: 10)
        #expect(daemon.stop() == 0)
    }

    @Test("incidentctl events --follow goes on across a restart of the daemon: it says so, and shows every event once")
    func followAcrossRestart() throws {
        let daemon = try Daemon()
        let followed = try Self.articleFollower(daemon, limit: 12)
        try daemon.restart()
        #expect(try daemon.client().appendEvents([Wire.report(incident: "after-restart-1", city: "Melitopol")])["ok"]?.boolValue == true)
        try waitFor("the follower to connect again") { (try daemon.client().call("status")["connections"]?.intValue ?? 0) >= 2 }
        let more = [Wire.response(incident: "after-restart-1"), Wire.report(incident: "after-restart-2", city: "Kupiansk"),
                    Wire.outcome(incident: "after-restart-2")]
        #expect(try daemon.client().appendEvents(more)["ok"]?.boolValue == true)
        try Self.expectFollowedAcrossTheLoss(followed, events: 12)
        #expect(daemon.stop() == 0)
    }

    @Test("incidentctl events --follow exits 3 naming the socket when incidentd cannot be reached as it starts: no socket there, or the socket a crashed daemon left")
    func followUnreachableAtStart() throws {
        let daemon = try Daemon()
        daemon.crash()
        #expect(FileManager.default.fileExists(atPath: daemon.socketPath), "the crash leaves the socket file behind")
        for socket in [daemon.root + "/no-such.sock", daemon.socketPath] {
            // Under a deadline: a follower that waits for a daemon is ended by `timeout` (status 124).
            let seconds = String(Int(10 * deadlineScale))
            let result = try runCommand("/usr/bin/timeout", [seconds, Binaries.incidentctl, "events", "--follow", "--socket", socket])
            #expect(result.status == 3, "\(socket): \(result.status) \(result.stderr)")
            #expect(result.stderr.contains("cannot reach incidentd at \(socket)"), "\(result.stderr)")
            #expect(!result.stderr.contains("trying again"), "\(result.stderr)")
        }
    }

    @Test("incidentctl events --follow prints the stored events and then those committed while it runs; --limit ends it")
    func commandLine() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let socket = daemon.socketPath
        let appender = Thread {
            // Once the follower has connected (two connections: this test's and the command's), two more events.
            _ = try? waitFor("the follower to connect") {
                (try RawClient(path: socket).call("status")["connections"]?.intValue ?? 0) >= 2
            }
            let client = try? RawClient(path: socket)
            _ = try? client?.appendEvents([Wire.report(incident: "followed-1", city: "Berdiansk"), Wire.response(incident: "followed-1")])
        }
        appender.start()
        let followed = try daemon.ctl(["events", "--follow", "--format", "json", "--limit", "10"])
        #expect(followed.status == 0, "\(followed.stderr)")
        let lines = try followed.stdout.split(separator: "\n").map { try JSONReader().read(String($0)) }
        #expect(lines.compactMap { $0["position"]?.intValue } == Array(1...10))
        #expect(lines.last?["incident"] == "followed-1")
        #expect(daemon.stop() == 0)
    }
}
