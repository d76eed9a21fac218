import Foundation
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// A forger who rewrites the log from its last event back, recomputing every hash and the record of the head, or
/// who cuts its last events off, leaves a chain that verifies: only a head published before (`status`) tells. So
/// `verify --expect-head` must fail on such a log where plain `verify` calls it intact, through the daemon and with
/// `--data-dir` alike.
extension VerifyTests {
    /// A head as `status` published it.
    struct Published {
        var position: Int64
        var hash: String
        var argument: String { "\(position):\(hash)" }
    }

    /// The article's events, stored by a daemon that is then stopped, with the head published then and the head
    /// as it was at position 5.
    static func publishedArticle() throws -> (daemon: Daemon, head: Published, earlier: Published) {
        let daemon = try Daemon()
        let client = try daemon.client()
        let answer = try client.appendEvents(try Repository.articleEvents())
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        let status = try client.call("status")
        let head = Published(
            position: try #require(status["position"]?.intValue), hash: try #require(status["headHash"]?.stringValue))
        let fifth = try client.call("read", ["from": 5, "limit": 1])["events"]?.arrayValue?.first
        let earlier = Published(position: 5, hash: try #require(fifth?["hash"]?.stringValue))
        #expect(head.position == 8, "the premise: the article has 8 events")
        #expect(daemon.stop() == 0)
        return (daemon, head, earlier)
    }

    /// Writes `meta`'s record of the head (position ‖ hash ‖ last recordedAt, the time kept) and the projections'
    /// mark to `position`, as a forger who wants the log to look whole does.
    static func recordHead(_ daemon: Daemon, position: UInt64, hash: [UInt8], markingProjections: Bool = true) throws {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let meta = try environment.openDatabase("meta", create: false)
        try environment.write { txn in
            guard let stored = try txn.get(meta, key: Array("head".utf8)), stored.count == 48 else { throw HarnessError("no head record") }
            let recordedAt = Array(stored[40..<48])
            try txn.put(meta, key: Array("head".utf8), value: bigEndian(position) + hash + recordedAt)
            guard markingProjections else { return }
            guard let mark = try txn.get(meta, key: Array("projections".utf8)), mark.count == 16 else { throw HarnessError("no projection mark") }
            let version = Array(mark[8..<16])
            try txn.put(meta, key: Array("projections".utf8), value: bigEndian(position) + version)
        }
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) } }

    /// The stored hash of the event at `position`.
    static func storedHash(_ daemon: Daemon, position: UInt64) throws -> [UInt8] {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let events = try environment.openDatabase("events", create: false)
        return try environment.read { txn in
            guard let stored = try txn.get(events, key: bigEndian(position)) else { throw HarnessError("no event at \(position)") }
            return Array(stored[..<32])
        }
    }

    /// Case A: the head event rewritten (a sabotage made a blockade), its hash recomputed, and the record of the head
    /// made to match.
    static func rewriteHead(_ daemon: Daemon) throws {
        try forge(daemon, position: 8) { replacing(#""kind":"sabotage""#, with: #""kind":"blockade""#, in: $0) }
        try recordHead(daemon, position: 8, hash: try storedHash(daemon, position: 8))
    }

    /// Case B: the last event removed, with its entries of `event-ids` and `incident-streams`, and the record of the
    /// head set to the event before it.
    static func removeLastEvent(_ daemon: Daemon, markingProjections: Bool = true) throws {
        try tamper(daemon, position: 8) { _, _ in nil }
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let naming8 = bigEndian(8)
        for name in ["event-ids", "incident-streams"] {
            let database = try environment.openDatabase(name, create: false)
            try environment.write { txn in
                var keys: [[UInt8]] = []
                try txn.forEach(database) { key, value in
                    if value.starts(with: naming8) { keys.append(Array(key)) }
                    return true
                }
                #expect(!keys.isEmpty, "the premise: \(name) names event 8")
                for key in keys { _ = try txn.delete(database, key: key) }
            }
        }
        try recordHead(daemon, position: 7, hash: try storedHash(daemon, position: 7), markingProjections: markingProjections)
    }

    /// `incidentctl verify` with `arguments`, with `--data-dir` on the stopped daemon's directory, then through the
    /// daemon started on it (stopped again after).
    static func verifyBothWays(_ daemon: Daemon, _ arguments: [String]) throws -> [(way: String, run: CommandResult)] {
        let direct = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir] + arguments)
        try daemon.start()
        defer { daemon.stop() }
        let served = try daemon.ctl(["verify"] + arguments)
        return [("--data-dir", direct), ("through the daemon", served)]
    }

    @Test("a head event rewritten, its hash and the record of the head made to match, passes plain verify as intact but fails verify --expect-head with the head published before")
    func rewrittenHeadFailsAgainstThePublishedHead() throws {
        let (daemon, head, earlier) = try Self.publishedArticle()
        try Self.rewriteHead(daemon)
        for (way, run) in try Self.verifyBothWays(daemon, ["--format", "json"]) {
            #expect(run.json?["intact"]?.boolValue == true, "\(way): the premise: the chain alone cannot tell: \(run.stdout) \(run.stderr)")
            #expect(run.stderr.contains("derived_data_differs"), "\(way): \(run.stderr)")
            // The remedy warns before it tells to rebuild.
            #expect(run.stderr.contains("incidentctl verify --expect-head HASH") && run.stderr.contains("keep a copy of the data directory"), "\(way): \(run.stderr)")
        }
        for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", head.argument, "--format", "table"]) {
            #expect(run.status == 1, "\(way): \(run)")
            #expect(run.stderr.contains("head_mismatch") && run.stderr.contains("event 8 or one before it was rewritten"), "\(way): \(run.stderr)")
            #expect(run.stderr.contains("--fill-from BACKUP --expect-head"), "\(way): \(run.stderr)")
            // A log made again by export | append is a new chain: the message says the old heads do not apply to it.
            #expect(run.stderr.contains("made by export | append, it is a new log with a chain of its own"), "\(way): \(run.stderr)")
            #expect(run.stdout.contains("NOT AS PUBLISHED") && run.stdout.contains("do not rebuild"), "\(way): \(run.stdout)")
        }
        // The hash alone, as incidentd --expect-head takes it; the older head still holds.
        for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", head.hash, "--expect-head", earlier.hash, "--format", "json"]) {
            #expect(run.status == 1 && run.stderr.contains("head_mismatch"), "\(way): \(run)")
            let found = run.json?["expectedHeads"]?.arrayValue ?? []
            #expect(found.map { $0["found"]?.boolValue } == [false, true], "\(way): \(run.stdout)")
            #expect(found.last?["position"]?.intValue == 5, "\(way): \(run.stdout)")
        }
        #expect(daemon.log.contains("verify found no event of the chain with a head hash published earlier") && daemon.log.contains("hash=\(head.hash)"), "\(daemon.log)")
    }

    @Test("a log cut short by its last event, with its index entries and the record of the head made to match, fails verify --expect-head, saying events were removed when the position is given")
    func shortenedLogFailsAgainstThePublishedHead() throws {
        let (daemon, head, _) = try Self.publishedArticle()
        try Self.removeLastEvent(daemon)
        for (way, run) in try Self.verifyBothWays(daemon, ["--format", "json"]) {
            #expect(run.json?["intact"]?.boolValue == true && run.json?["checked"]?.intValue == 7, "\(way): the premise: \(run.stdout) \(run.stderr)")
        }
        for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", head.argument, "--format", "json"]) {
            #expect(run.status == 1, "\(way): \(run)")
            #expect(run.stderr.contains("head_mismatch: the log holds 7 events; the published head is at 8: events were removed"), "\(way): \(run.stderr)")
            let verdict = run.json?["expectedHeads"]?.arrayValue?.first
            #expect(verdict?["found"]?.boolValue == false && verdict?["publishedPosition"]?.intValue == 8, "\(way): \(run.stdout)")
        }
        for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", head.hash]) {
            #expect(run.status == 1 && run.stderr.contains("rewritten at or before the published head, or shortened below it"), "\(way): \(run)")
        }
    }

    @Test("a log cut short whose projections still count the removed event: the daemon refuses to start rather than rebuild them away, saying what to do; --rebuild-projections accepts the log as it is")
    func shortenedLogWithItsProjectionsRefusesToStart() throws {
        let (daemon, head, _) = try Self.publishedArticle()
        try Self.removeLastEvent(daemon, markingProjections: false)
        // Of an older projection version too, which a start would otherwise rebuild for that reason alone.
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let meta = try environment.openDatabase("meta", create: false)
        try environment.write { txn in
            guard let mark = try txn.get(meta, key: Array("projections".utf8)), mark.count == 16 else { throw HarnessError("no projection mark") }
            try txn.put(meta, key: Array("projections".utf8), value: Array(mark[..<8]) + Self.bigEndian(1))
        }
        #expect(throws: HarnessError.self) { try daemon.start() }
        #expect(daemon.log.contains("the projections were built up to position 8, but the log ends at 7"), "\(daemon.log)")
        #expect(daemon.log.contains("--expect-head POSITION:HASH"), "\(daemon.log)")
        let checked = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--expect-head", head.argument])
        #expect(checked.status == 1 && checked.stderr.contains("events were removed"), "\(checked)")
        // Without a published head, verify and a recovery say so too, rather than pass or make a log without them.
        let plain = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir])
        #expect(plain.status == 1 && plain.stderr.contains("the projections were built up to position 8, but the log ends at 7"), "\(plain)")
        let new = daemon.root + "/new"
        let recovery = try runCommand(Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", new, "--log-level", "warning"])
        #expect(recovery.status == 1 && recovery.stderr.contains("were built up to position 8, but its events end at 7"), "\(recovery)")
        #expect(!FileManager.default.fileExists(atPath: new))
        let lastLeft = ChainHash.hex(try Self.storedHash(daemon, position: 7))
        let accepted = try runCommand(
            Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", new, "--expect-head", lastLeft, "--log-level", "warning"])
        #expect(accepted.status == 0 && accepted.stdout.contains("recovered 7 events"), "\(accepted)")

        daemon.extraArguments = ["--rebuild-projections"]
        try daemon.start()
        daemon.extraArguments = []
        #expect(try daemon.client().call("status")["position"]?.intValue == 7)
        #expect(daemon.stop() == 0)
    }

    @Test("a log whose last event was cut off with its index entries left in place (only the record of the head made to match): --rebuild-projections deletes the entries of the event no longer there and starts, and the event appended again with its id is stored at that position")
    func cutTailKeepingItsIndexEntriesIsAcceptedByTheRebuild() throws {
        let (daemon, _, _) = try Self.publishedArticle()
        try daemon.start()
        let eighth = try daemon.client().call("read", ["from": 8, "limit": 1])["events"]?.arrayValue?.first
        let eventId = try #require(eighth?["eventId"]?.stringValue)
        #expect(daemon.stop() == 0)
        try Self.tamper(daemon, position: 8) { _, _ in nil }
        try Self.recordHead(daemon, position: 7, hash: try Self.storedHash(daemon, position: 7), markingProjections: false)

        #expect(throws: HarnessError.self) { try daemon.start() }
        #expect(daemon.log.contains("start incidentd once with --rebuild-projections, which deletes the index entries"), "\(daemon.log)")
        daemon.extraArguments = ["--rebuild-projections"]
        try daemon.start()
        daemon.extraArguments = []
        #expect(daemon.log.contains("deleted 2 index entries (incident-streams, event-ids) of events past the head, position 7"), "\(daemon.log)")
        let client = try daemon.client()
        #expect(try client.call("status")["position"]?.intValue == 7)
        guard case .object(var event) = try Repository.articleEvents()[7] else { throw HarnessError("the article's event 8 is not an object") }
        event["eventId"] = .string(eventId)
        let again = try client.appendEvents([.object(event)])
        #expect(again.isOK && again["positions"]?.arrayValue?.first?.intValue == 8, "\(again)")
        #expect(try client.call("status")["position"]?.intValue == 8)
        #expect(daemon.stop() == 0)
        let verified = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir])
        #expect(verified.status == 0, "the chain and every index and projection as the events give them: \(verified)")
    }

    @Test("a log rewritten at its head is made again from a backup to the head published: recovery takes the hash given over the head the log records, says it left that one out, and the new log passes verify --expect-head")
    func rewrittenHeadRecoveredToThePublishedHead() throws {
        let (daemon, head, _) = try Self.publishedArticle()
        try daemon.start()
        let backup = daemon.root + "/nightly"
        #expect(try daemon.client().call("backup", ["path": .string(backup)]).isOK)
        #expect(daemon.stop() == 0)
        try Self.rewriteHead(daemon)
        let forged = ChainHash.hex(try Self.storedHash(daemon, position: 8))

        let new = daemon.root + "/new"
        let run = try runCommand(
            Binaries.incidentd,
            ["--recover-from", daemon.dataDir, "--data-dir", new, "--fill-from", backup, "--expect-head", head.hash, "--log-level", "warning"])
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("head: position 8, hash \(head.hash) (the one given)"), "\(run.stdout)")
        #expect(run.stdout.contains("NOT IN IT: the head the damaged log records, position 8, hash \(forged), is on another chain"), "\(run.stdout)")
        let verified = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", new, "--expect-head", head.argument])
        #expect(verified.status == 0, "the log up to the published head, exactly: \(verified)")
    }

    @Test("a record of the head behind the stored events is named at the first event past it, saying the log holds events past its recorded head, never at a position past the last event")
    func headRecordBehindTheEvents() throws {
        let (daemon, _, _) = try Self.publishedArticle()
        try Self.recordHead(daemon, position: 5, hash: try Self.storedHash(daemon, position: 5))
        let direct = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(direct.status == 1 && direct.stderr.contains("chain_broken"), "\(direct)")
        #expect(direct.json?["firstBadPosition"]?.intValue == 6 && direct.json?["checked"]?.intValue == 8, "\(direct.stdout)")
        #expect(
            direct.stderr.contains(
                "position 6: the log holds events past its recorded head: the record of the head names position 5, but events 6–8 are stored after it"),
            "\(direct.stderr)")
        #expect(!direct.stderr.contains("position 9"), "\(direct.stderr)")
        // One event past it.
        try Self.recordHead(daemon, position: 7, hash: try Self.storedHash(daemon, position: 7))
        let one = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir])
        #expect(one.status == 1 && one.stderr.contains("position 8: the log holds events past its recorded head: the record of the head names position 7, but event 8 is stored after it"), "\(one)")
    }

    @Test("one event stored past the head the log records is named as event 8, not as events 8–8, by a recovery refused without --expect-head and by one that leaves it out")
    func oneEventPastTheRecordedHeadIsNamedAlone() throws {
        let (daemon, head, _) = try Self.publishedArticle()
        let seventh = ChainHash.hex(try Self.storedHash(daemon, position: 7))
        try Self.recordHead(daemon, position: 7, hash: ChainHash.bytes(hex: seventh) ?? [])
        let new = daemon.root + "/new"
        let refused = try runCommand(Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", new, "--log-level", "warning"])
        #expect(refused.status == 1, "\(refused)")
        #expect(
            refused.stderr.contains("event 8, stored in \(daemon.dataDir)/data.mdb, goes on from the head the log records (position 7)")
                && refused.stderr.contains("\(head.hash) takes it, \(seventh) leaves it out"),
            "\(refused.stderr)")
        let run = try runCommand(
            Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", new, "--expect-head", "7:\(seventh)", "--log-level", "warning"])
        #expect(run.status == 0, "\(run)")
        #expect(
            run.stdout.contains("NOT IN IT: event 8, stored in the files read, goes on from the head given; it is an acknowledged event")
                && run.stdout.contains("To take it, recover again with --expect-head \(head.hash)"),
            "\(run.stdout)")
        #expect(!(refused.stderr + run.stdout).contains("8–8"))
        let verified = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", new, "--format", "table"])
        #expect(verified.status == 0 && verified.stdout.contains("derived data agrees with events 1–7"), "\(verified)")
    }

    @Test("a recovery to a head published earlier than the one the log records keeps the events past it, and says how many and that only the log's own record of its head proves them")
    func recoveryToAnEarlierHeadSaysWhatItKept() throws {
        let (daemon, head, earlier) = try Self.publishedArticle()
        let new = daemon.root + "/new"
        let run = try runCommand(
            Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", new, "--expect-head", earlier.argument, "--log-level", "warning"])
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("head: position 8, hash \(head.hash), as the log recorded it"), "\(run.stdout)")
        #expect(
            run.stdout.contains(
                "KEPT: 3 events past the head given (position 5), events 6–8: the hash given proves the log up to event 5; those are proven only by the damaged log's own record of its head"),
            "\(run.stdout)")
        // To the head the log records, nothing is said to be kept.
        let again = daemon.root + "/again"
        let latest = try runCommand(
            Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", again, "--expect-head", head.argument, "--log-level", "warning"])
        #expect(latest.status == 0 && !latest.stdout.contains("KEPT"), "\(latest)")
    }

    @Test("an untouched log passes verify --expect-head with its current head and with a head published earlier, by position and hash or by hash alone")
    func untouchedLogHoldsItsPublishedHeads() throws {
        let (daemon, head, earlier) = try Self.publishedArticle()
        let arguments = ["--expect-head", head.argument, "--expect-head", earlier.hash.uppercased(), "--expect-head", earlier.argument]
        for (way, run) in try Self.verifyBothWays(daemon, arguments + ["--format", "json"]) {
            #expect(run.status == 0, "\(way): \(run)")
            let found = run.json?["expectedHeads"]?.arrayValue ?? []
            #expect(found.map { $0["position"]?.intValue } == [8, 5, 5], "\(way): \(run.stdout)")
        }
        for (way, run) in try Self.verifyBothWays(daemon, arguments + ["--format", "table"]) {
            #expect(run.status == 0, "\(way): \(run)")
            #expect(run.stdout.contains("published head \(head.argument): event 8; the log up to it is as published"), "\(way): \(run.stdout)")
        }
        // The hash of event 5 given with position 4 (a slip in copying it): the log holds it, the position is wrong.
        for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", "4:\(earlier.hash)", "--format", "table"]) {
            #expect(run.status == 1 && run.stderr.contains("its hash is that of event 5, not 4"), "\(way): \(run)")
            #expect(run.stderr.contains("only the position given with the hash differs") && !run.stderr.contains("Keep it as it is"), "\(way): \(run.stderr)")
            #expect(run.stdout.contains("event 5; the log up to it is as published") && !run.stdout.contains("NOT AS PUBLISHED"), "\(way): \(run.stdout)")
        }
    }

    @Test("the empty log's head, as status shows it (position 0, the zero hash), is held by the empty log and by every other, given as 0:HASH or by hash alone; given with another position, the position is named as wrong")
    func emptyLogHeadIsHeld() throws {
        let zero = String(repeating: "0", count: 64)
        let empty = try Daemon()
        let status = try empty.client().call("status")
        #expect(status["position"]?.intValue == 0 && status["headHash"]?.stringValue == zero, "the premise: \(status)")
        #expect(empty.stop() == 0)
        let (article, _, _) = try Self.publishedArticle()
        for (log, daemon) in [("empty", empty), ("article", article)] {
            for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", "0:\(zero)", "--expect-head", zero, "--format", "json"]) {
                #expect(run.status == 0, "\(log), \(way): \(run)")
                let found = run.json?["expectedHeads"]?.arrayValue ?? []
                #expect(found.map { $0["position"]?.intValue } == [0, 0], "\(log), \(way): \(run.stdout)")
            }
            for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", "0:\(zero)", "--format", "table"]) {
                #expect(run.status == 0, "\(log), \(way): \(run)")
                #expect(run.stdout.contains("published head 0:\(zero): the empty log's, which every log holds"), "\(log), \(way): \(run.stdout)")
            }
            for (way, run) in try Self.verifyBothWays(daemon, ["--expect-head", "5:\(zero)"]) {
                #expect(run.status == 1 && run.stderr.contains("it is the empty log's head, at position 0, not 5"), "\(log), \(way): \(run)")
            }
        }
    }

    @Test("a malformed --expect-head is bad usage (exit 2) naming it; the daemon refuses a malformed expectHeads")
    func malformedPublishedHead() throws {
        let daemon = try Daemon()
        for argument in ["abc", "0:" + String(repeating: "ab", count: 32), "x:" + String(repeating: "ab", count: 32), String(repeating: "g", count: 64)] {
            let run = try daemon.ctl(["verify", "--expect-head", argument])
            #expect(run.status == 2 && run.stderr.contains("--expect-head"), "\(argument): \(run)")
        }
        // A position below 1 or past the largest is named, with the option, whether or not it looks like an option.
        let hash = String(repeating: "ab", count: 32)
        for (position, says) in [("-1", "-1 is not a position (a whole number from 1)"), ("0", "0 is not a position (a whole number from 1)"),
                                 ("99999999999999999999999", "99999999999999999999999 is out of range: positions go up to 18446744073709551615")] {
            let run = try daemon.ctl(["verify", "--expect-head", "\(position):\(hash)"])
            #expect(run.status == 2 && run.stderr.contains("--expect-head: \(says)"), "\(position): \(run)")
            let recovery = try runCommand(
                Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", daemon.root + "/new", "--expect-head", "\(position):\(hash)"])
            #expect(recovery.status == 64 && recovery.stderr.contains("--expect-head: \(says)"), "\(position): \(recovery)")
        }
        let refused = try daemon.client().call("verify", ["expectHeads": .array([.string("abc")])])
        #expect(refused["error"]?["code"]?.stringValue == "invalid_request", "\(refused)")
        #expect(try daemon.ctl(["status", "--help"]).stdout.contains("verify --expect-head"))
    }

    @Test("a broken chain is logged by the daemon at error, with its position, and its message says how to recover")
    func brokenChainLoggedWithRemedy() throws {
        let daemon = try Self.storedArticle()
        try Self.tamper(daemon, position: 5) { stored, _ in Self.replacing("\"day\"", with: "\"dAy\"", in: stored) }
        try daemon.start()
        defer { daemon.stop() }
        let run = try daemon.ctl(["verify"])
        #expect(run.status == 1 && run.stderr.contains("chain_broken"), "\(run)")
        #expect(run.stderr.contains("incidentd --recover-from") && run.stderr.contains("--expect-head"), "\(run.stderr)")
        try waitFor("the daemon's log to name the break") {
            daemon.log.split(separator: "\n").contains { line in
                line.contains("verify found the hash chain broken") && line.contains("position=5")
                    && (line.contains(" error ") || line.hasPrefix("<3>"))
            }
        }
    }
}
