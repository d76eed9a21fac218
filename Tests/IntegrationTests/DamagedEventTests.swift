import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A stored event whose bytes were changed in place on the disk: every query that reads it answers `log_damaged`,
/// naming its position and pointing to `verify`, and a follower's lines stay JSON lines.
@Suite("Damaged events")
struct DamagedEventTests {
    /// Event 4 of the article (a report from Melitopol) holds this in its description.
    static let descriptionText = "a few unarmed residents"
    /// Event 1 of the article: its participants, as stored.
    static let participantsText = #""high":150,"low":150},"tags""#

    /// The article's events, stored by a daemon that is then stopped, and the incident of event 4.
    static func storedArticle() throws -> (daemon: Daemon, incidentOfFour: String) {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        let four = try client.call("read", ["from": 4, "limit": 1])
        let incident = four["events"]?.arrayValue?.first?["incident"]?.stringValue ?? ""
        #expect(daemon.stop() == 0)
        return (daemon, incident)
    }

    /// Writes `bytes` into data.mdb, `offset` bytes after the first occurrence of `text`, in place (as `dd
    /// conv=notrunc` would), with the daemon stopped.
    static func damage(_ daemon: Daemon, after text: String, offset: Int, with bytes: [UInt8]) throws {
        let path = daemon.dataDir + "/data.mdb"
        guard let file = FileHandle(forUpdatingAtPath: path) else { throw HarnessError("cannot open \(path)") }
        defer { try? file.close() }
        let contents = try file.readToEnd() ?? Data()
        guard let found = contents.range(of: Data(text.utf8)) else { throw HarnessError("\(text) is not in \(path)") }
        try file.seek(toOffset: UInt64(found.lowerBound + offset))
        try file.write(contentsOf: Data(bytes))
        try file.synchronize()
    }

    /// A line feed inside event 4's description, where the canonical form has none.
    static func newlineInFour() throws -> (daemon: Daemon, incidentOfFour: String) {
        let stored = try storedArticle()
        try damage(stored.daemon, after: descriptionText, offset: 5, with: [0x0A])
        try stored.daemon.start()
        return stored
    }

    /// Event 1's participants made `low` 190 against `high` 150, which no append accepts.
    static func lowAboveHighInOne() throws -> Daemon {
        let stored = try storedArticle()
        try damage(stored.daemon, after: participantsText, offset: 18, with: Array("9".utf8))
        try stored.daemon.start()
        return stored.daemon
    }

    /// Checks an answer is `log_damaged` naming `position`, saying what to run.
    static func expectLogDamaged(_ answer: JSONValue, position: Int64, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(answer.errorCode == "log_damaged", "\(what): \(answer)", sourceLocation: sourceLocation)
        #expect(answer["error"]?["position"]?.intValue == position, "\(what): \(answer)", sourceLocation: sourceLocation)
        let message = answer["error"]?["message"]?.stringValue ?? ""
        #expect(
            message.contains("position \(position)") && message.contains("incidentctl verify") && message.contains("--recover-from"),
            "\(what): \(message)", sourceLocation: sourceLocation)
    }

    /// Checks a command exited 1 with `log_damaged` naming `position`.
    static func expectLogDamaged(_ result: CommandResult, position: Int64, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 1, "\(what): \(result.status) \(result.stderr)", sourceLocation: sourceLocation)
        #expect(
            result.stderr.contains("log_damaged: ") && result.stderr.contains("position \(position)")
                && result.stderr.contains("incidentctl verify"),
            "\(what): \(result.stderr)", sourceLocation: sourceLocation)
    }

    @Test("subscribe over an event with a raw line feed: the events before it, then one log_damaged line naming it, every line JSON; the follow ends and the connection goes on answering")
    func subscribeOverNewline() throws {
        let (daemon, _) = try Self.newlineInFour()
        for from: Int64 in [1, 4] {
            let client = try daemon.client()
            try client.send("subscribe", ["id": 20, "from": .int(from)])
            var lines: [JSONValue] = []
            while lines.last?.errorCode == nil {
                let line = try client.receiveLine()
                lines.append(try JSONReader(maxDepth: 128).read(line))
            }
            #expect(lines.first?["subscribed"]?.boolValue == true, "\(lines)")
            let positions = lines.dropFirst().dropLast().compactMap { $0["event"]?["position"]?.intValue }
            #expect(positions == Array(from..<4), "the events before it, whole: \(positions)")
            Self.expectLogDamaged(lines.last ?? .null, position: 4, "subscribe from \(from)")
            #expect(lines.last?["id"]?.intValue == 20)
            // The follow ended: the next line is the answer to this status, not event 5.
            let status = try client.call("status", ["id": 21])
            #expect(status["id"]?.intValue == 21 && status["position"]?.intValue == 8, "\(status)")
        }
        // A filtered follow reads each event into a tree: the same answer.
        let client = try daemon.client()
        try client.send("subscribe", ["id": 30, "from": 1, "type": "incident-reported"])
        var last = try client.receive()
        while last.errorCode == nil { last = try client.receive() }
        Self.expectLogDamaged(last, position: 4, "subscribe with a filter")
        #expect(daemon.stop() == 0)
    }

    @Test("a follow that ended on log_damaged is no longer counted among status's followers; the connection answers on (a second subscribe still refused), and one whose client closed its side is closed once answered")
    func followEndedOnDamageIsNoLongerCounted() throws {
        let (daemon, _) = try Self.newlineInFour()
        let watcher = try daemon.client()
        let follower = try daemon.client()
        try follower.send("subscribe", ["id": 40, "from": 1])
        var last = try follower.receive()
        while last.errorCode == nil { last = try follower.receive() }
        Self.expectLogDamaged(last, position: 4, "subscribe from 1")
        // The connection is open and answers, but follows nothing: the answer above was written after it stopped.
        #expect(try watcher.status()["followers"]?.intValue == 0, "the ended follow is no longer counted")
        #expect(try follower.call("status", ["id": 41])["followers"]?.intValue == 0)
        // Following again takes another connection, as before.
        let again = try follower.call("subscribe", ["id": 42, "from": 5])
        #expect(again.errorCode == "invalid_request" && again["error"]?["message"]?.stringValue?.contains("open another") == true, "\(again)")
        let other = try daemon.client()
        #expect(try other.call("subscribe", ["id": 43, "from": 5])["subscribed"]?.boolValue == true)
        #expect(try other.receive()["event"]?["position"]?.intValue == 5)
        #expect(try watcher.status()["followers"]?.intValue == 1)

        // A client that closed its side after subscribing: once the follow ends, nothing more comes, so it is closed.
        let closing = try daemon.client()
        try closing.send("subscribe", ["id": 50, "from": 1])
        shutdown(closing.fd, Int32(SHUT_WR))
        last = try closing.receive()
        while last.errorCode == nil { last = try closing.receive() }
        Self.expectLogDamaged(last, position: 4, "subscribe from 1, its side closed")
        #expect(closing.peerClosed(within: 20 * deadlineScale), "the connection is closed once its follow ended")
        try waitFor("the closed connection to be gone") { try watcher.status()["connections"]?.intValue == 3 }
        #expect(try watcher.status()["followers"]?.intValue == 1)
        #expect(daemon.stop() == 0)
    }

    @Test("events --follow over a damaged event prints the events before it, then exits 1 with log_damaged naming it")
    func followOverNewline() throws {
        let (daemon, _) = try Self.newlineInFour()
        let follow = try daemon.ctl(["events", "--follow", "--from", "1", "--format", "json"])
        Self.expectLogDamaged(follow, position: 4, "events --follow")
        let printed = follow.stdout.split(separator: "\n").map { try? JSONReader().read(Array($0.utf8)) }
        #expect(printed.map { $0?["position"]?.intValue } == [1, 2, 3], "\(follow.stdout)")
        #expect(daemon.stop() == 0)
    }

    @Test("read, events, incident, replay and export over an event with a raw line feed answer log_damaged naming position 4")
    func queriesOverNewline() throws {
        let (daemon, incident) = try Self.newlineInFour()
        let client = try daemon.client()
        Self.expectLogDamaged(try client.call("read", ["from": 1]), position: 4, "read from 1")
        Self.expectLogDamaged(try client.call("read", ["from": 4, "limit": 1]), position: 4, "read of 4")
        #expect(try client.call("read", ["from": 1, "limit": 3])["events"]?.arrayValue?.count == 3, "the events before it are read")
        Self.expectLogDamaged(try client.call("incident", ["incident": .string(incident)]), position: 4, "incident")
        Self.expectLogDamaged(try client.call("replay"), position: 4, "replay")
        Self.expectLogDamaged(try daemon.ctl(["events", "--from", "4", "--format", "json"]), position: 4, "events --from 4")
        Self.expectLogDamaged(try daemon.ctl(["export", "--format", "csv"]), position: 4, "export --format csv")
        #expect(daemon.stop() == 0)
    }

    @Test("read, incident, replay and export over an event that breaks a rule (participants low above high) answer log_damaged naming position 1, not invalid_event")
    func queriesOverLowAboveHigh() throws {
        let daemon = try Self.lowAboveHighInOne()
        let client = try daemon.client()
        // Well-formed JSON is sent as it is stored, as subscribe sends it; what decodes the event refuses it.
        let read = try client.call("read", ["from": 1, "limit": 1])
        #expect(read.isOK && read["events"]?.arrayValue?.first?["data"]?["participants"]?["low"]?.intValue == 190, "\(read)")
        Self.expectLogDamaged(
            try client.call("incident", ["incident": "kupiansk-2022-03-01-city-hall"]), position: 1, "incident")
        Self.expectLogDamaged(try client.call("replay"), position: 1, "replay")
        Self.expectLogDamaged(try daemon.ctl(["export", "--format", "csv"]), position: 1, "export --format csv")
        // The JSON lines are what append takes back: an event append would refuse is not archived as whole.
        Self.expectLogDamaged(try daemon.ctl(["export"]), position: 1, "export")
        Self.expectLogDamaged(try daemon.ctl(["incident", "kupiansk-2022-03-01-city-hall"]), position: 1, "incidentctl incident")
        #expect(daemon.stop() == 0)
    }

    @Test("replay over an event whose stored position was changed (event 5, a response, naming 7 or 3) answers log_damaged naming position 5, where it folded the event as if stored there and answered the cities")
    func replayOverMovedEvent() throws {
        for stated in ["7", "3"] {
            let stored = try Self.storedArticle()
            let daemon = stored.daemon
            // Event 5 (the response to event 4's report): its position, stated in its canonical bytes.
            try Self.damage(daemon, after: #""occurredAt":"2022-03-01","position":5,"#, offset: 37, with: Array(stated.utf8))
            try daemon.start()
            let client = try daemon.client()
            let read = try client.call("read", ["from": 5, "limit": 1])
            #expect(read["events"]?.arrayValue?.first?["position"]?.intValue == Int64(stated), "the damage is in place: \(read)")
            Self.expectLogDamaged(try client.call("replay"), position: 5, "replay, event 5 naming \(stated)")
            Self.expectLogDamaged(try client.call("replay", ["untilPosition": 6]), position: 5, "replay until 6, event 5 naming \(stated)")
            #expect(try client.call("replay", ["untilPosition": 4]).isOK, "the events before it replay")
            #expect(daemon.stop() == 0)
        }
    }

    @Test("events --follow --from past the event after the head says on stderr what it waits for, and prints on stdout the event alone once it comes")
    func followPastHead() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        let head = try client.headPosition()
        let waiting = LockedData()
        let socket = daemon.socketPath
        let follow = Thread {
            let result = try? runCommand(
                Binaries.incidentctl, ["events", "--follow", "--from", "\(head + 2)", "--limit", "1", "--format", "json"],
                environment: ["INCIDENTD_SOCKET": socket])
            waiting.set(Data(((result?.stderr ?? "not run") + "\u{0}" + (result?.stdout ?? "")).utf8))
        }
        follow.start()
        try waitFor("the follower to subscribe") { try client.call("status")["followers"]?.intValue == 1 }
        #expect(try client.appendEvents([Wire.outcome(incident: "kupiansk-2022-03-01-city-hall")]).isOK)
        #expect(try client.appendEvents([Wire.outcome(incident: "kupiansk-2022-03-01-city-hall")]).isOK)
        try waitFor("the follower to print event \(head + 2)", timeout: 30) { waiting.isSet }
        let parts = String(decoding: waiting.get(), as: UTF8.self).split(separator: "\u{0}", omittingEmptySubsequences: false)
        #expect(
            parts.first?.contains("the log holds \(head) events; waiting for event \(head + 2)") == true, "\(parts)")
        let printed = String(parts.last ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect((try? JSONReader().read(Array(printed.utf8)))?["position"]?.intValue == head + 2, "stdout holds the event alone: \(parts)")
        #expect(daemon.stop() == 0)
    }

    @Test("events --follow --from past the head with a city the gazetteer does not know says only that (unknown_city, exit 1), not that it waits")
    func followPastHeadUnknownCity() throws {
        let daemon = try Daemon()
        let run = try daemon.ctl(["events", "--follow", "--from", "100", "--city", "Nowhere"])
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("unknown_city") && !run.stderr.contains("waiting for event"), "\(run.stderr)")
        #expect(daemon.stop() == 0)
    }
}
