import DataFilePages
import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `verify` checks every page of `data.mdb` before the hash chain: a page damaged on the disk (LMDB keeps no
/// checksums) is named, with its database, instead of `verify` answering intact (a page of an index or a
/// projection, which the chain never reads) or the daemon dying of it. Each test damages one page of a stopped
/// daemon's log with `pwrite`, as a failing disk would, and starts it again.
@Suite("Verify: damaged pages")
struct PageDamageTests {
    /// A log of `incidents` incidents, each reported, answered and given an outcome (three events), appended in
    /// `append` requests of `batch` events, by a daemon that is then stopped.
    static func storedLog(incidents: Int, batch: Int = 300) throws -> Daemon {
        let daemon = try Daemon()
        let client = try daemon.client()
        var events: [JSONValue] = []
        for n in 0..<incidents {
            let incident = "page-check-\(n)"
            events.append(
                WireEvent.report(
                    incident: incident, city: WireEvent.citySpellings[n % WireEvent.citySpellings.count],
                    description: "report \(n) of a log whose pages are checked"))
            events.append(WireEvent.response(incident: incident))
            events.append(WireEvent.outcome(incident: incident))
        }
        try client.appendEvents(events, inBatchesOf: batch)
        #expect(daemon.stop() == 0)
        return daemon
    }

    /// Overwrites page `page` of the log's data.mdb with bytes no page holds.
    static func damage(_ daemon: Daemon, page: Int, pageSize: Int) throws {
        try damage(at: daemon.dataDir + "/data.mdb", page: page, pageSize: pageSize)
    }

    /// Overwrites page `page` of the LMDB file at `path` with bytes no page holds.
    static func damage(at path: String, page: Int, pageSize: Int) throws {
        try overwrite(page: page, of: path, pageSize: pageSize, with: garbage(pageSize))
    }

    /// A leaf page in the middle of named database `name`.
    static func leaf(of name: String, in daemon: Daemon) throws -> (page: Int, pageSize: Int) {
        let map = try DataFileMap(daemon.dataDir)
        let record = try #require(map.named(name), "no database \(name)")
        let leaves = map.pages(record).leaves
        #expect(leaves.count > 2, "the premise: \(name) has several leaves")
        return (leaves[leaves.count / 2], map.pageSize)
    }

    /// Damages a leaf of `database`, starts the daemon, and checks that `verify` (the socket's and incidentctl's)
    /// names it, and that the daemon serves `status` and `city` afterwards.
    static func damagedLeafIsNamed(_ database: String) throws {
        let daemon = try storedLog(incidents: 500)
        let (page, pageSize) = try leaf(of: database, in: daemon)
        try daemon.start()
        let before = try daemon.client().call("verify")
        #expect(before["intact"]?.boolValue == true, "the premise: the log is intact before the damage: \(before)")
        let head = try daemon.client().call("status")["headHash"]
        #expect(daemon.stop() == 0)

        try damage(daemon, page: page, pageSize: pageSize)
        try daemon.start()
        defer { daemon.stop() }
        let client = try daemon.client()
        let answer = try client.call("verify")
        #expect(answer.isOK, "\(answer)")
        #expect(answer["intact"]?.boolValue == false, "\(answer)")
        #expect(answer["pageDamage"]?["page"]?.intValue == Int64(page), "\(answer)")
        #expect(answer["pageDamage"]?["database"]?.stringValue == database, "\(answer)")
        #expect(answer["problem"]?.stringValue?.contains("page \(page) of database \(database)") == true, "\(answer)")
        #expect(answer["headHash"] == nil && answer["checked"]?.intValue == 0, "the chain is not walked: \(answer)")

        let ctl = try daemon.ctl(["verify"])
        #expect(ctl.status == 1, "\(ctl)")
        #expect(ctl.stderr.contains("page_damaged: page \(page) of database \(database) of data.mdb is damaged"), "\(ctl.stderr)")
        #expect(ctl.stderr.contains("Restore data.mdb from a backup"), "\(ctl.stderr)")
        let json = try daemon.ctl(["verify", "--format", "json"])
        #expect(json.status == 1 && json.json?["pageDamage"]?["page"]?.intValue == Int64(page), "\(json)")

        // No backup of it is made: LMDB's compacting copy would read every page through the map.
        let destination = daemon.root + "/backup-of-damaged"
        let backup = try client.call("backup", ["path": .string(destination)])
        #expect(backup.errorCode == "page_damaged", "\(backup)")
        #expect(backup["error"]?["message"]?.stringValue?.contains("page \(page) of database \(database)") == true, "\(backup)")
        #expect(!FileManager.default.fileExists(atPath: destination), "nothing is left at the destination")
        let backupCommand = try daemon.ctl(["backup", destination])
        #expect(backupCommand.status == 1 && backupCommand.stderr.contains("page_damaged"), "\(backupCommand)")

        // The daemon serves on, from the pages that are whole, and says what it found in its log.
        let status = try client.call("status")
        #expect(status.isOK && status["headHash"] == head, "\(status)")
        #expect(try client.call("city", ["city": "Melitopol"]).isOK)
        #expect(daemon.child?.isRunning == true)
        try waitFor("the daemon's log to name the page") { daemon.log.contains("verify found a damaged page") && daemon.log.contains("page=\(page)") }
    }

    @Test("a damaged page of incident-streams, an index the hash chain never reads, is named by verify (which said intact before)")
    func damagedIndexPage() throws {
        try Self.damagedLeafIsNamed("incident-streams")
    }

    @Test("a damaged page of incidents, a projection, is named by verify")
    func damagedProjectionPage() throws {
        try Self.damagedLeafIsNamed("incidents")
    }

    @Test("a damaged page of events is named by verify, before the chain walk reaches it through LMDB")
    func damagedEventsPage() throws {
        try Self.damagedLeafIsNamed("events")
    }

    @Test("a damaged page that opening the log reads (of the main database, meta or cities) stops incidentd's start (exit 1), and replay and verify with --data-dir (exit 1, page_damaged), with a line naming the page and saying to restore, instead of a wrong answer, an LMDB error or a crash")
    func damageReadAtOpen() throws {
        for target in ["(main)", "meta", "cities"] {
            let daemon = try Self.storedLog(incidents: 30)
            let map = try DataFileMap(daemon.dataDir)
            let root = target == "(main)" ? map.main.root : try #require(map.named(target), "no database \(target)").root
            try Self.damage(daemon, page: Int(root), pageSize: map.pageSize)
            let refused = StorageOpenTests.refusedStart(daemon)
            #expect(refused?.status == 1 && refused?.signaled == false, "\(target): \(String(describing: refused)) \(daemon.log)")
            let named = target == "(main)" ? "page \(root) of the main database" : "page \(root) of database \(target)"
            #expect(daemon.log.contains(named) && daemon.log.contains("Restore data.mdb from a backup"), "\(target): \(daemon.log)")
            for command in ["replay", "verify"] {
                let run = try runCommand(Binaries.incidentctl, [command, "--data-dir", daemon.dataDir, "--format", "json"])
                #expect(run.status == 1, "\(target), \(command): \(run.status): \(run.stderr)")
                #expect(run.stderr.contains("page_damaged: " + named), "\(target), \(command): \(run.stderr)")
            }
        }
    }

    @Test("an intact log of thousands of events, written in hundreds of commits that freed pages, passes, also while appends go on")
    func intactWhileAppending() throws {
        // Batches of 15: hundreds of commits, each of which frees the pages the one before it rewrote.
        let daemon = try Self.storedLog(incidents: 1200, batch: 15)
        try daemon.start()
        defer { daemon.stop() }
        let first = try daemon.client().call("verify")
        #expect(first["intact"]?.boolValue == true && first["checked"]?.intValue == 3600, "\(first)")
        let free = first["pages"]?["free"]?.intValue ?? 0
        #expect(free > 0, "the premise: commits freed pages (\(first))")

        let stop = Guarded(false)
        let appended = Guarded(0)
        let socket = daemon.socketPath
        let appenders = (0..<2).map { connection in
            Thread {
                guard let client = try? RawClient(path: socket) else { return }
                var n = 0
                while !stop.withLock({ $0 }) {
                    n += 1
                    guard let answer = try? ReliabilityStorageTests.bulkAppend(client, tag: "during-\(connection)-\(n)", count: 5),
                        answer.isOK
                    else { return }
                    appended.withLock { $0 += 5 }
                }
            }
        }
        appenders.forEach { $0.start() }
        defer { stop.withLock { $0 = true } }
        try waitFor("appends under way") { appended.withLock { $0 } >= 50 }
        let client = try daemon.client()
        var checked = Set<Int64>()
        for _ in 0..<10 {
            let answer = try client.call("verify")
            #expect(answer["intact"]?.boolValue == true, "\(answer)")
            checked.insert(answer["checked"]?.intValue ?? 0)
        }
        let ctl = try daemon.ctl(["verify", "--format", "table"])
        #expect(ctl.status == 0, "\(ctl)")
        #expect(ctl.stdout.contains("pages in use"), "\(ctl.stdout)")
        stop.withLock { $0 = true }
        #expect(checked.count > 1, "the premise: appends landed between the checks (\(checked.sorted()))")
    }
}
