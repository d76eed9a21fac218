import Foundation
import StrictJSON
import Testing

/// A restart, clean or not, keeps every event, position and projection byte for byte, and the log goes on from
/// where it was with its hash chain intact.
@Suite("Restart")
struct RestartTests {
    /// What a client can see of the log, as bytes, to compare across a restart.
    struct Snapshot: Equatable, CustomStringConvertible {
        var events: String
        var cities: String
        var incidents: [String]
        var position: Int64
        var headHash: String
        var lastRecordedAt: String

        var description: String { "position \(position), head \(headHash)" }

        static func take(_ daemon: Daemon, incidents ids: [String]) throws -> Snapshot {
            let events = try daemon.ctl(["events", "--format", "json"])
            let cities = try daemon.ctl(["cities", "--format", "json"])
            #expect(events.status == 0 && cities.status == 0, "\(events.stderr) \(cities.stderr)")
            let incidents = try ids.map { id -> String in
                let result = try daemon.ctl(["incident", "--format", "json", id])
                #expect(result.status == 0, "\(result.stderr)")
                return result.stdout
            }
            let status = try daemon.client().call("status")
            return Snapshot(
                events: events.stdout, cities: cities.stdout, incidents: incidents,
                position: status["position"]?.intValue ?? -1, headHash: status["headHash"]?.stringValue ?? "",
                lastRecordedAt: status["lastRecordedAt"]?.stringValue ?? "")
        }
    }

    static let incidents = [
        "kupiansk-2022-03-01-city-hall", "melitopol-2022-03-01-convoy-blockade", "berdiansk-2022-02-28-city-council",
        "berdiansk-2022-02-28-molotov-tank",
    ]

    static func daemonWithArticle() throws -> Daemon {
        let daemon = try Daemon()
        let append = try daemon.ctl(["append", Repository.articlePath])
        #expect(append.status == 0, "\(append.stderr)")
        // A correction too, so that the projections carry more than the reports.
        let outcome = try daemon.ctl([
            "outcome", "kupiansk-2022-03-01-city-hall", "--status", "dispersed", "--correct", "participants=100-200",
        ])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        return daemon
    }

    /// After a restart: the same bytes, then an append at the next position that links to the old head.
    static func expectContinues(_ daemon: Daemon, from before: Snapshot) throws {
        let after = try Snapshot.take(daemon, incidents: incidents)
        #expect(after.position == 9)
        #expect(after.events == before.events, "events, byte for byte")
        #expect(after.cities == before.cities, "cities, byte for byte")
        #expect(after.incidents == before.incidents, "incidents, byte for byte")
        #expect(after == before)
        #expect(before.events.split(separator: "\n").count == 9)

        let client = try daemon.client()
        let next = try client.appendEvents([Wire.response(incident: "berdiansk-2022-02-28-city-council", detained: 2)])
        #expect(next["positions"] == [10], "\(next)")
        let tenth = try #require(try client.call("read", ["from": 10])["events"]?.arrayValue?.first)
        #expect(tenth["prevHash"]?.stringValue == before.headHash, "the chain goes on from the old head")
        let verify = try client.call("verify")
        #expect(verify["intact"] == true, "\(verify)")
        #expect(verify["checked"]?.intValue == 10)
        let ctlVerify = try daemon.ctl(["verify"])
        #expect(ctlVerify.status == 0, "\(ctlVerify.stderr)")
    }

    @Test("SIGTERM exits 0; after the restart every event, position and projection is byte-identical")
    func cleanRestart() throws {
        let daemon = try Self.daemonWithArticle()
        let before = try Snapshot.take(daemon, incidents: Self.incidents)
        #expect(daemon.stop() == 0, "SIGTERM exits 0: \(daemon.log)")
        try daemon.start()
        try Self.expectContinues(daemon, from: before)
        #expect(!daemon.log.contains("stale socket"), "a clean stop removed its socket: \(daemon.log)")
    }

    @Test("SIGKILL loses nothing acknowledged; after the restart everything is byte-identical")
    func crashRestart() throws {
        let daemon = try Self.daemonWithArticle()
        let before = try Snapshot.take(daemon, incidents: Self.incidents)
        daemon.crash()
        try daemon.start()
        try Self.expectContinues(daemon, from: before)
        // The journal says the stop before was not clean.
        #expect(daemon.log.contains("notice removed the stale socket \(daemon.socketPath), which nothing listened on"), "\(daemon.log)")
    }

    @Test("incidentctl replay --data-dir, read-only beside the running daemon, prints exactly what cities prints")
    func replayMatchesCities() throws {
        let daemon = try Self.daemonWithArticle()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(city: "Enerhodar", kind: "blockade", occurredAt: "2022-03-02", participants: (300, 1000))], allowNewCity: true).isOK)
        let cities = try daemon.ctl(["cities", "--format", "json"])
        let replay = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(replay.stdout == cities.stdout)
        #expect(cities.json?.arrayValue?.count == 4)
        // Replay stops early on request: after the article's first three events only Kupiansk is there.
        let early = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--until-position", "3", "--format", "json"])
        #expect(early.json?.arrayValue?.map { $0["cityId"] } == ["kupiansk"])
        // The daemon went on serving and writing while the replay read.
        #expect(try client.appendEvents([Wire.response(incident: "kupiansk-2022-03-01-city-hall")])["positions"] == [11])
        let after = try daemon.ctl(["cities", "--format", "json"])
        let replayAfter = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(replayAfter.stdout == after.stdout)
        #expect(after.stdout != cities.stdout)
    }

    @Test("replay through the socket (SPEC §3, §4): what replay --data-dir prints, with the same stops, for a reader who cannot read the files")
    func replayThroughTheSocket() throws {
        let daemon = try Self.daemonWithArticle()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(city: "Enerhodar", kind: "blockade", occurredAt: "2022-03-02", participants: (300, 1000))], allowNewCity: true).isOK)
        let recordedAt = try #require(client.call("read", ["from": 4, "limit": 1])["events"]?.arrayValue?.first?["recordedAt"]?.stringValue)
        for stops: [String] in [[], ["--until-position", "3"], ["--occurred-before", "2022-03-02"], ["--as-of", recordedAt], ["--as-of", "2000-01-01"]] {
            let direct = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir, "--format", "json"] + stops)
            let socket = try daemon.ctl(["replay", "--format", "json"] + stops)
            #expect(socket.status == 0, "\(stops): \(socket.stderr)")
            #expect(socket.stdout == direct.stdout, "\(stops)")
        }
        #expect(try daemon.ctl(["replay", "--format", "json"]).stdout == daemon.ctl(["cities", "--format", "json"]).stdout)
        #expect(try daemon.ctl(["replay", "--until-position", "3", "--format", "json"]).json?.arrayValue?.map { $0["cityId"] } == ["kupiansk"])
        #expect(try daemon.ctl(["replay", "--as-of", "2000-01-01", "--format", "json"]).json == [])

        // The protocol's own checks.
        #expect(try client.call("replay", ["asOf": "yesterday"]).errorCode == "invalid_request")
        #expect(try client.call("replay", ["untilPosition": -1]).errorCode == "invalid_request")
        #expect(try client.call("replay", ["since": 3]).errorCode == "invalid_request")
        let gazetteerWithoutDirectory = try daemon.ctl(["replay", "--gazetteer", "config/cities.toml"])
        #expect(gazetteerWithoutDirectory.status == 2, "\(gazetteerWithoutDirectory.stderr)")
        #expect(daemon.stop() == 0)
    }
}
