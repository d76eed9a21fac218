import DataFilePages
import Foundation
import IncidentLog
import LMDB
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `incidentd --recover-from DIR`: a log whose indexes or projections are damaged is made again from its events,
/// which the hash chain proves, instead of being restored from a backup that lacks the events appended since.
@Suite("Recovery from a damaged log")
struct RecoveryTests {
    /// A stopped daemon's log of 400 incidents (three events each), plus a report and a response appended with
    /// event ids of their own, the response's time left to the daemon; and what the daemon answered about it.
    struct StoredLog {
        let daemon: Daemon
        let report: JSONValue
        let response: JSONValue
        /// The positions of `report` and `response`.
        let reportPosition: Int64
        let responsePosition: Int64
        let status: JSONValue
        let cities: String
    }

    static func storedLog() throws -> StoredLog {
        let daemon = try PageDamageTests.storedLog(incidents: 400)
        try daemon.start()
        let client = try daemon.client()
        let report = Wire.report(incident: "kept-through-recovery", city: "Melitopol", kind: "blockade", eventId: Wire.uuid())
        let response = Wire.response(incident: "kept-through-recovery", eventId: Wire.uuid())
        let appended = try client.appendEvents([report, response])
        let stored = appended["positions"]?.arrayValue?.compactMap { $0.intValue } ?? []
        let positions = try #require(stored.count == 2 ? stored : nil, "\(appended)")
        let status = try client.call("status")
        let cities = try daemon.ctl(["cities", "--format", "json"])
        #expect(cities.status == 0, "\(cities)")
        #expect(daemon.stop() == 0)
        return StoredLog(
            daemon: daemon, report: report, response: response, reportPosition: positions[0], responsePosition: positions[1],
            status: status, cities: cities.stdout)
    }

    /// What `directory` holds besides the lock file a recovery takes there (the daemon's own, `incidentd.lock`).
    static func leftovers(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0 != "incidentd.lock" }.sorted()
    }

    /// Runs `incidentd --recover-from source --data-dir destination`.
    static func recover(_ source: String, into destination: String) throws -> CommandResult {
        try runCommand(Binaries.incidentd, ["--recover-from", source, "--data-dir", destination, "--log-level", "warning"])
    }

    /// Damages a page of `database` (a leaf in its middle, or its root when it has no more), recovers the log into a
    /// new directory, and checks that a daemon serves there the same events, head and cities, takes retries as
    /// retries, and appends on.
    static func recoversFromDamage(in database: String) throws {
        let log = try Self.storedLog()
        let map = try DataFileMap(log.daemon.dataDir)
        let record = try #require(map.named(database), "no database \(database)")
        let leaves = map.pages(record).leaves
        let page = leaves.count > 2 ? leaves[leaves.count / 2] : Int(record.root)
        try PageDamageTests.damage(log.daemon, page: page, pageSize: map.pageSize)

        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try recover(log.daemon.dataDir, into: target + "/data")
        let head = try #require(log.status["position"]?.intValue)
        #expect(run.status == 0, "\(database): \(run)")
        #expect(run.stdout.contains("recovered \(head) events"), "\(database): \(run.stdout)")
        #expect(run.stdout.contains("page \(page) of database \(database)"), "the damage found is named: \(run.stdout)")
        let left = try Self.leftovers(target + "/data")
        #expect(left == ["data.mdb"], "\(database): only the new data.mdb is left: \(left)")

        let recovered = try Daemon(root: target)
        defer { recovered.stop() }
        let client = try recovered.client()
        let status = try client.call("status")
        #expect(status["position"] == log.status["position"] && status["headHash"] == log.status["headHash"], "\(status)")
        // The time the last event was recorded, which the next append's may not precede.
        #expect(status["lastRecordedAt"] == log.status["lastRecordedAt"] && status["lastRecordedAt"]?.stringValue != nil, "\(status)")
        let verify = try client.call("verify")
        #expect(verify["intact"]?.boolValue == true && verify["checked"]?.intValue == head, "\(verify)")
        let cities = try recovered.ctl(["cities", "--format", "json"])
        #expect(cities.stdout == log.cities, "\(database): the projections are made again as they were")

        // The retry of an event sent with everything written out is the event it retries, whatever became of the
        // index of event ids.
        let retry = try client.appendEvents([log.report])
        #expect(retry["positions"] == [.int(log.reportPosition)] && retry["alreadyStored"] == [0], "\(database): \(retry)")
        let retriedResponse = try client.appendEvents([log.response])
        if database == "event-ids" {
            // The index was made again from the events, which do not keep that the response's time was left out: the
            // retry is refused, naming where the event is, and nothing is stored twice.
            #expect(retriedResponse.errorCode == "duplicate_event_id", "\(retriedResponse)")
            #expect(retriedResponse["error"]?["position"]?.intValue == log.responsePosition, "\(retriedResponse)")
            #expect(run.stdout.contains("made again from the events"), "\(run.stdout)")
        } else {
            #expect(retriedResponse["positions"] == [.int(log.responsePosition)], "\(database): \(retriedResponse)")
        }
        let next = try client.appendEvents([Wire.outcome(incident: "kept-through-recovery")])
        #expect(next["positions"] == [.int(head + 1)], "\(database): \(next)")
    }

    @Test("a SIGINT (Ctrl-C) ends a recovery at once, as it would any command, making nothing; a recovery into the same directory then makes the log")
    func interruptedRecovery() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents([Wire.report(incident: "before-the-interruption")]).isOK)
        #expect(daemon.stop() == 0)
        let target = daemon.root + "/recovered"
        // The signal waits, blocked, from before incidentd runs (a blocked signal stays pending through exec): it
        // reaches incidentd whenever incidentd lets it, and without the wait on anything else.
        let interrupted = try runCommand(
            "/usr/bin/python3",
            [
                "-c",
                "import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT]); os.kill(os.getpid(), signal.SIGINT); os.execv(sys.argv[1], sys.argv[1:])",
                Binaries.incidentd, "--recover-from", daemon.dataDir, "--data-dir", target, "--log-level", "warning",
            ])
        #expect(interrupted.status == SIGINT, "ended by SIGINT: \(interrupted)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data.mdb"), "\(interrupted)")
        let recovered = try Self.recover(daemon.dataDir, into: target)
        #expect(recovered.status == 0, "\(recovered)")
        #expect(FileManager.default.fileExists(atPath: target + "/data.mdb"))
    }

    @Test("a damaged page of incidents (a projection) is recovered from the events: same head, same cities, retries kept")
    func damagedIncidents() throws {
        try Self.recoversFromDamage(in: "incidents")
    }

    @Test("a damaged page of incident-streams (an index) is recovered from the events")
    func damagedStreams() throws {
        try Self.recoversFromDamage(in: "incident-streams")
    }

    @Test("a damaged page of event-ids is recovered, the index made again from the events: a retry that writes out every member is still that event")
    func damagedEventIds() throws {
        try Self.recoversFromDamage(in: "event-ids")
    }

    @Test("a damaged page of cities, which stops incidentd's start, is recovered from the events")
    func damagedCities() throws {
        try Self.recoversFromDamage(in: "cities")
    }

    /// The events' leaf pages in the log's tree, each with the positions it holds.
    static func eventLeaves(_ daemon: Daemon) throws -> (leaves: [(page: Int, positions: [Int64])], pageSize: Int) {
        let map = try DataFileMap(daemon.dataDir)
        let leaves = map.pages(try #require(map.named("events"))).leaves.map { page in
            (page, map.nodes(page).map { node in node.key.reduce(0 as Int64) { $0 << 8 | Int64($1) } })
        }
        return (leaves, map.pageSize)
    }

    @Test("with every leaf of events up to a backup damaged, the events are found page by page in the log and the backup (--fill-from), proven by the chain from the recorded head, and the log is made again whole")
    func damagedEventsFilledFromBackup() throws {
        let log = try Self.storedLog()
        try log.daemon.start()
        let backup = log.daemon.root + "/backup"
        let made = try log.daemon.ctl(["backup", backup])
        #expect(made.status == 0, "\(made)")
        let client = try log.daemon.client()
        let more = (0..<60).map { Wire.outcome(incident: "page-check-\($0)", status: "ongoing") }
        #expect(try client.appendEvents(more).isOK)
        let status = try client.call("status")
        let head = try #require(status["position"]?.intValue)
        #expect(log.daemon.stop() == 0)

        // Every leaf that holds only events the backup holds too.
        let backedUp = try #require(log.status["position"]?.intValue)
        let (leaves, pageSize) = try Self.eventLeaves(log.daemon)
        let damaged = leaves.filter { $0.positions.allSatisfy { $0 <= backedUp } }
        #expect(damaged.count > 3, "the premise: several leaves to damage")
        for leaf in damaged { try PageDamageTests.damage(log.daemon, page: leaf.page, pageSize: pageSize) }

        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let alone = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(alone.status == 1, "\(alone)")
        #expect(alone.stderr.contains("in no page of \(log.daemon.dataDir)/data.mdb as the chain names it"), "\(alone.stderr)")
        #expect(alone.stderr.contains("--fill-from"), "\(alone.stderr)")

        let run = try runCommand(
            Binaries.incidentd,
            ["--recover-from", log.daemon.dataDir, "--fill-from", backup, "--data-dir", target + "/data", "--log-level", "warning"])
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("recovered \(head) events"), "\(run.stdout)")
        let fromBackups = run.stdout.components(separatedBy: "in the backups given: ").last?.prefix { $0.isNumber }
        #expect(fromBackups.flatMap { Int($0) }.map { $0 > 0 } == true, "some came from the backup: \(run.stdout)")

        let recovered = try Daemon(root: target)
        defer { recovered.stop() }
        let answer = try recovered.client().call("verify")
        #expect(answer["intact"]?.boolValue == true && answer["headHash"] == status["headHash"], "\(answer) against \(status)")
        #expect(answer["checked"]?.intValue == head, "\(answer)")
    }

    @Test("with every leaf of events damaged and no backup, the last event no page holds whole is named, and nothing is made")
    func damagedEventsAlone() throws {
        let log = try Self.storedLog()
        let (leaves, pageSize) = try Self.eventLeaves(log.daemon)
        for leaf in leaves { try PageDamageTests.damage(log.daemon, page: leaf.page, pageSize: pageSize) }
        let before = try Data(contentsOf: URL(fileURLWithPath: log.daemon.dataDir + "/data.mdb"))

        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try Self.recover(log.daemon.dataDir, into: target)
        let head = try #require(log.status["position"]?.intValue)
        #expect(run.status == 1, "\(run)")
        // The last commit wrote its events once, on the last leaf: no older copy of that page holds them, and the
        // head's event is in no page.
        #expect(run.stderr.contains("has the recorded head's hash"), "\(run.stderr)")
        #expect(head > 0)
        #expect(run.stderr.contains("of database events"), "the damage is named: \(run.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: target)
        #expect(left.isEmpty, "nothing is left at the destination, not even the lock: \(left)")
        let after = try Data(contentsOf: URL(fileURLWithPath: log.daemon.dataDir + "/data.mdb"))
        #expect(after == before, "the source is unchanged")
    }

    /// Backs the stopped daemon's log up (`incidentctl backup`, the daemon started for it) into `root/name`.
    static func backUp(_ daemon: Daemon, as name: String) throws -> String {
        try daemon.start()
        let backup = daemon.root + "/" + name
        let made = try daemon.ctl(["backup", backup])
        #expect(made.status == 0, "\(made)")
        #expect(daemon.stop() == 0)
        return backup
    }

    @Test("an event whose bytes were changed in place (its page whole) is named as in no whole page; a backup that holds it makes the log whole again")
    func changedEvent() throws {
        let log = try Self.storedLog()
        let backup = try Self.backUp(log.daemon, as: "backup")
        let path = log.daemon.dataDir + "/data.mdb"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        // One letter of one report's description, in a leaf of events (the projections hold it too): the page is
        // whole, the chain is not.
        let map = try DataFileMap(log.daemon.dataDir)
        let needle = Data("report 123 of a log".utf8)
        let events = try #require(map.named("events"))
        var found: [Range<Data.Index>] = []
        for page in 2..<(bytes.count / map.pageSize) {
            if let range = bytes.range(of: needle, in: (page * map.pageSize)..<((page + 1) * map.pageSize)) { found.append(range) }
        }
        let inTree = Set(map.pages(events).leaves)
        #expect(found.count(where: { inTree.contains($0.lowerBound / map.pageSize) }) == 1, "the premise: one leaf of events holds it")
        // Every copy in the file, the events' leaf and any older copy of it alike.
        for range in found { bytes[range.lowerBound] = UInt8(ascii: "R") }
        try bytes.write(to: URL(fileURLWithPath: path))

        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try Self.recover(log.daemon.dataDir, into: target)
        #expect(run.status == 1, "\(run)")
        // Incident 123 is reported by event 3 × 123 + 1.
        #expect(run.stderr.contains("event 370 of the 1202 the log holds is in no page"), "\(run.stderr)")
        let left = try FileManager.default.contentsOfDirectory(atPath: target)
        #expect(left.isEmpty, "nothing is left at the destination, not even the lock: \(left)")

        let filled = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--fill-from", backup, "--data-dir", target, "--log-level", "warning"])
        #expect(filled.status == 0, "\(filled)")
        #expect(filled.stdout.contains("in the backups given: 1\n"), "only event 370 came from the backup: \(filled.stdout)")
        let recovered = try Daemon(root: makeTemporaryDirectory("incidentd-recovered"))
        #expect(recovered.stop() == 0)
        try FileManager.default.removeItem(atPath: recovered.dataDir)
        try FileManager.default.moveItem(atPath: target, toPath: recovered.dataDir)
        try recovered.start()
        defer { recovered.stop() }
        let verify = try recovered.client().call("verify")
        #expect(verify["intact"]?.boolValue == true && verify["headHash"] == log.status["headHash"], "\(verify)")
    }

    @Test("a backup of a log that went another way (restored, then other events appended) is given first: none of its other events is taken, and the head is the log's")
    func divergedBackup() throws {
        let log = try Self.storedLog()
        let backup = try Self.backUp(log.daemon, as: "backup")
        // The log goes on from the backup.
        try log.daemon.start()
        let more = (0..<90).map { Wire.outcome(incident: "page-check-\($0)", status: "ongoing") }
        #expect(try log.daemon.client().appendEvents(more).isOK)
        let status = try log.daemon.client().call("status")
        #expect(log.daemon.stop() == 0)
        // Another log goes on from the same backup, with other events at the same positions.
        let other = try Daemon(root: makeTemporaryDirectory("incidentd-diverged"))
        #expect(other.stop() == 0)
        try FileManager.default.removeItem(atPath: other.dataDir + "/data.mdb")
        try FileManager.default.copyItem(atPath: backup + "/data.mdb", toPath: other.dataDir + "/data.mdb")
        try other.start()
        let others = (0..<90).map { Wire.outcome(incident: "page-check-\($0)", status: "dispersed") }
        #expect(try other.client().appendEvents(others).isOK)
        // Stopped first: backUp starts it, and a second start of a daemon that serves kills the first (its
        // ChildProcess let go) while the new one may already be refused the lock the first still holds.
        #expect(other.stop() == 0)
        let diverged = try Self.backUp(other, as: "diverged")

        // The leaves of the log that hold only events past the backup's, but not the head's, are damaged: those
        // events were written once, in one commit, so no older page holds them, and the diverged backup holds other
        // events at their positions, which hash to nothing the chain names.
        let backedUp = try #require(log.status["position"]?.intValue)
        let head = try #require(status["position"]?.intValue)
        let (leaves, pageSize) = try Self.eventLeaves(log.daemon)
        let damaged = leaves.filter { leaf in leaf.positions.allSatisfy { $0 > backedUp && $0 < head } }
        #expect(damaged.count >= 2, "the premise: leaves of only the events past the backup")
        for leaf in damaged { try PageDamageTests.damage(log.daemon, page: leaf.page, pageSize: pageSize) }
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try runCommand(
            Binaries.incidentd,
            ["--recover-from", log.daemon.dataDir, "--fill-from", diverged, "--data-dir", target + "/data", "--log-level", "warning"])
        #expect(run.status == 1, "\(run)")
        let lastDamaged = damaged.flatMap(\.positions).max() ?? 0
        #expect(run.stderr.contains("event \(lastDamaged) of the \(head) the log holds is in no page of"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "the destination it made is removed")
    }

    @Test("a record of the head whose position was changed in place: the head is found by its hash, and the log recovered whole")
    func damagedHeadPosition() throws {
        let log = try Self.storedLog()
        let map = try DataFileMap(log.daemon.dataDir)
        let meta = try #require(map.named("meta"))
        let page = Int(meta.root)
        let node = try #require(map.nodes(page).first { $0.key == Array("head".utf8) }, "the premise: meta's root holds the head")
        #expect(node.size == 48)
        // Position 2^62, big-endian, where the head's position is.
        try overwrite(page: page, of: log.daemon.dataDir + "/data.mdb", pageSize: map.pageSize, offset: Int(node.value), with: [0x40] + [UInt8](repeating: 0, count: 7))
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("head: position 1202, hash \(log.status["headHash"]?.stringValue ?? "?")"), "\(run.stdout)")
    }

    @Test("a destination that holds a data.mdb is refused, and left as it is")
    func destinationHoldsLog() throws {
        let log = try Self.storedLog()
        let other = try Daemon()
        #expect(other.stop() == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: other.dataDir + "/data.mdb"))
        let run = try Self.recover(log.daemon.dataDir, into: other.dataDir)
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("already holds a data.mdb"), "\(run.stderr)")
        let after = try Data(contentsOf: URL(fileURLWithPath: other.dataDir + "/data.mdb"))
        #expect(after == before, "the destination's log is unchanged")
        let itself = try Self.recover(log.daemon.dataDir, into: log.daemon.dataDir)
        #expect(itself.status == 1 && itself.stderr.contains("is the damaged log's own directory"), "\(itself)")
        let slashed = try Self.recover(log.daemon.dataDir + "/", into: log.daemon.dataDir + "//")
        #expect(slashed.status == 1 && slashed.stderr.contains("is the damaged log's own directory"), "\(slashed)")
        let noBackup = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--fill-from", "/nonexistent-backup", "--data-dir", other.root + "/new"])
        #expect(noBackup.status == 1 && noBackup.stderr.contains("cannot read the backup in /nonexistent-backup"), "\(noBackup)")
    }

    @Test("a log that a daemon is serving is refused, since what it appends during the copy would be missing, also once its incidentd.lock was deleted; once stopped, it is recovered")
    func servedLog() throws {
        let log = try Self.storedLog()
        try log.daemon.start()
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let refused = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(refused.status == 1 && refused.stderr.contains("incidentd is serving the log"), "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "the destination it made is removed")
        // Its incidentd.lock deleted, the daemon still holds data.mdb.
        #expect(unlink(log.daemon.dataDir + "/incidentd.lock") == 0)
        let unlocked = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(unlocked.status == 1 && unlocked.stderr.contains("incidentd is serving the log"), "\(unlocked)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "the destination it made is removed")
        #expect(log.daemon.stop() == 0)
        let run = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(run.status == 0, "\(run)")
    }

    @Test("a destination another recovery (or a daemon) holds is refused; one a recovery was killed in is cleared and used")
    func destinationInUse() throws {
        let log = try Self.storedLog()
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let lock = open(target + "/incidentd.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0)
        let refused = try Self.recover(log.daemon.dataDir, into: target)
        #expect(refused.status == 1 && refused.stderr.contains("is in use"), "\(refused)")
        close(lock)

        // What a recovery killed midway leaves: its folder, with a data.mdb that was never verified.
        let work = target + "/.incidentd-recovery"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false)
        #expect(FileManager.default.createFile(atPath: work + "/data.mdb", contents: Data(repeating: 7, count: 8192)))
        let run = try Self.recover(log.daemon.dataDir, into: target)
        #expect(run.status == 0, "\(run)")
        #expect(try Self.leftovers(target) == ["data.mdb"])
    }

    @Test("a log whose meta page LMDB refuses is recovered page by page to the head given with --expect-head, and refused without it")
    func damagedMetaPage() throws {
        let log = try Self.storedLog()
        let map = try DataFileMap(log.daemon.dataDir)
        // Meta page 1, whichever LMDB would take: LMDB refuses a file either of whose meta pages does not read as one.
        try PageDamageTests.damage(log.daemon, page: 1, pageSize: map.pageSize)
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let refused = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(refused.status == 1, "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "the destination it made is removed")

        let mistyped = try runCommand(
            Binaries.incidentd,
            ["--recover-from", log.daemon.dataDir, "--expect-head", String(repeating: "ab", count: 32), "--data-dir", target + "/data"])
        #expect(mistyped.status == 1 && mistyped.stderr.contains("the hash may be mistyped or another log's"), "\(mistyped)")
        // The empty log's head, which verify takes, stands for no published head here.
        for zero in [String(repeating: "0", count: 64), "0:" + String(repeating: "0", count: 64)] {
            let empty = try runCommand(
                Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", zero, "--data-dir", target + "/data"])
            #expect(empty.status != 0 && empty.stderr.contains("--expect-head: the zero hash is the head of the empty log"), "\(empty)")
            #expect(!FileManager.default.fileExists(atPath: target + "/data"), "nothing is made")
        }
        let head = try #require(log.status["headHash"]?.stringValue)
        let run = try runCommand(
            Binaries.incidentd,
            ["--recover-from", log.daemon.dataDir, "--expect-head", head.uppercased(), "--data-dir", target + "/data", "--log-level", "warning"])
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("hash \(head) (the one given"), "\(run.stdout)")
        let recovered = try Daemon(root: target)
        defer { recovered.stop() }
        let verify = try recovered.client().call("verify")
        #expect(verify["intact"]?.boolValue == true && verify["headHash"]?.stringValue == head, "\(verify)")
        #expect(try recovered.ctl(["cities", "--format", "json"]).stdout == log.cities)
    }

    @Test("a data.mdb cut short, which LMDB will not open, is recovered page by page to the head given, the events past the cut taken from a backup")
    func cutShort() throws {
        let log = try Self.storedLog()
        let backup = try Self.backUp(log.daemon, as: "backup")
        let path = log.daemon.dataDir + "/data.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(truncate(path, off_t(size / 2)) == 0)
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let refused = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(refused.status == 1 && refused.stderr.contains("--expect-head"), "\(refused)")
        let head = try #require(log.status["headHash"]?.stringValue)
        let run = try runCommand(
            Binaries.incidentd,
            ["--recover-from", log.daemon.dataDir, "--expect-head", head, "--fill-from", backup, "--data-dir", target + "/data",
             "--log-level", "warning"])
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("the damaged log: "), "why LMDB would not open it is said: \(run.stdout)")
        let recovered = try Daemon(root: target)
        defer { recovered.stop() }
        let verify = try recovered.client().call("verify")
        #expect(verify["intact"]?.boolValue == true && verify["headHash"]?.stringValue == head, "\(verify)")
    }

    @Test("a hash given with --expect-head must be that of an event of the chain: a head published earlier is, another is refused")
    func expectedHeadChecked() throws {
        let log = try Self.storedLog()
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let wrong = String(repeating: "ab", count: 32)
        let refused = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", wrong, "--data-dir", target + "/data"])
        #expect(refused.status == 1 && refused.stderr.contains("is that of no event of the chain"), "\(refused)")
        let bad = try runCommand(Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", "xyz"])
        #expect(bad.status == 64 && bad.stderr.contains("--expect-head: xyz is not a head"), "\(bad)")

        try log.daemon.start()
        let page = try log.daemon.client().call("read", ["from": 100, "limit": 1])
        let earlier = try #require(page["events"]?.arrayValue?.first?["hash"]?.stringValue, "\(page)")
        #expect(log.daemon.stop() == 0)
        // As incidentctl verify --expect-head takes it too: with its position, which must be that of its event.
        let misplaced = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", "99:\(earlier)", "--data-dir", target + "/data"])
        #expect(misplaced.status == 1 && misplaced.stderr.contains("is that of event 100, not 99"), "\(misplaced)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "nothing was made")
        let run = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", "100:\(earlier)", "--data-dir", target + "/data"])
        #expect(run.status == 0 && run.stdout.contains("as the log recorded it"), "\(run)")
    }

    /// The hash of the event at `position` of the stopped daemon's log (the daemon started for it, and stopped).
    static func hash(at position: Int64, of daemon: Daemon) throws -> String {
        try daemon.start()
        let page = try daemon.client().call("read", ["from": .int(position), "limit": 1])
        #expect(daemon.stop() == 0)
        return try #require(page["events"]?.arrayValue?.first?["hash"]?.stringValue, "\(page)")
    }

    @Test("events stored past the head the log records, going on from it (a record of the head that lost the last commits), stop the recovery naming both choices; --expect-head takes either")
    func eventsPastTheRecordedHead() throws {
        let log = try Self.storedLog()
        let head = try #require(log.status["position"]?.intValue)
        let earlier = try Self.hash(at: 1000, of: log.daemon)
        // The record of the head set back to position 1000, as if it had lost the commits after it.
        let environment = try Environment(directory: log.daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let meta = try environment.openDatabase("meta", create: false)
        try environment.write { txn in
            let stored = Array(try #require(try txn.get(meta, key: Array("head".utf8))))
            let position = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(1000) >> (56 - 8 * UInt64($0))) }
            try txn.put(meta, key: Array("head".utf8), value: position + (try #require(ChainHash.bytes(hex: earlier))) + stored[40...])
        }
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let refused = try Self.recover(log.daemon.dataDir, into: target + "/data")
        #expect(refused.status == 1, "\(refused)")
        let latest = try #require(log.status["headHash"]?.stringValue)
        #expect(refused.stderr.contains("events 1001–\(head)"), "\(refused.stderr)")
        #expect(refused.stderr.contains("\(latest) takes them all, \(earlier) leaves them out"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "the destination it made is removed")

        let all = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", latest, "--data-dir", target + "/all"])
        #expect(all.status == 0 && all.stdout.contains("recovered \(head) events"), "\(all)")
        let some = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", earlier, "--data-dir", target + "/some"])
        #expect(some.status == 0 && some.stdout.contains("recovered 1000 events"), "\(some)")
        #expect(some.stdout.contains("NOT IN IT: events 1001–\(head)") && some.stdout.contains("--expect-head \(latest)"), "\(some.stdout)")
    }

    @Test("with the record of the head unreadable, an old head given (one published long ago) recovers to it, and says which events go on past it and the hash that takes them")
    func oldHeadGiven() throws {
        let log = try Self.storedLog()
        let head = try #require(log.status["position"]?.intValue)
        let old = try Self.hash(at: 8, of: log.daemon)
        let map = try DataFileMap(log.daemon.dataDir)
        try PageDamageTests.damage(log.daemon, page: 1, pageSize: map.pageSize)
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try runCommand(
            Binaries.incidentd, ["--recover-from", log.daemon.dataDir, "--expect-head", old, "--data-dir", target + "/data"])
        #expect(run.status == 0 && run.stdout.contains("recovered 8 events"), "\(run)")
        let latest = try #require(log.status["headHash"]?.stringValue)
        #expect(run.stdout.contains("NOT IN IT: events 9–\(head)") && run.stdout.contains("--expect-head \(latest)"), "\(run.stdout)")
    }

    @Test("a source that is not a log is named, and the destination left as it was: removed when the recovery made it, empty when it was")
    func notALog() throws {
        let target = makeTemporaryDirectory("incidentd-recovered")
        defer { try? FileManager.default.removeItem(atPath: target) }
        let run = try Self.recover(target + "/nowhere", into: target + "/data")
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("there is no such directory"), "\(run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: target + "/data"), "the destination it made is removed")

        try FileManager.default.createDirectory(atPath: target + "/empty", withIntermediateDirectories: false)
        let intoEmpty = try Self.recover(target + "/nowhere", into: target + "/empty")
        #expect(intoEmpty.status == 1, "\(intoEmpty)")
        let left = try FileManager.default.contentsOfDirectory(atPath: target + "/empty")
        #expect(left.isEmpty, "nothing is left in a destination that was there, not even the lock: \(left)")
    }
}
