import Foundation
import IncidentLog
import StrictJSON
import Synchronization
import Testing

@Suite("Reliability: storage limits", .serialized)
struct ReliabilityStorageTests {
    /// An append of `count` new incidents, each with a long description, so the map fills in a few dozen appends.
    static func bulkAppend(_ client: RawClient, tag: String, count: Int) throws -> JSONValue {
        let filler = String(repeating: "All of this has to fit in the map. ", count: 40)
        let events = (0..<count).map { k in
            WireEvent.report(incident: "\(tag)-\(k)", city: WireEvent.citySpellings[k % WireEvent.citySpellings.count], description: filler)
        }
        return try client.call("append", ["events": .array(events)])
    }

    /// Appends batches of ten new incidents until one is refused: the events stored before it, and the refusal
    /// (`nil` when none came in `batches`). `afterEach` runs after every batch that was stored.
    static func fillUntilRefused(
        _ client: RawClient, tag: String, batches: Int = 400, afterEach: () throws -> Void = {}
    ) throws -> (appended: Int, refusal: JSONValue?) {
        var appended = 0
        for n in 0..<batches {
            let response = try bulkAppend(client, tag: "\(tag)-\(n)", count: 10)
            if !response.isOK { return (appended, response) }
            appended += 10
            try afterEach()
        }
        return (appended, nil)
    }

    /// After a first refusal, appends on until three in a row are refused with `code`, checking before each
    /// that no refused append stored anything. Space that earlier commits freed may still take an append now
    /// and then, so `appended` counts those. Returns whether three in a row were refused.
    static func appendUntilRefusedThrice(_ client: RawClient, code: String, appended: inout Int) throws -> Bool {
        var refusedInARow = 1
        for n in 0..<50 where refusedInARow < 3 {
            #expect(try client.status()["position"]?.intValue == Int64(appended), "a refused append stored nothing")
            let again = try bulkAppend(client, tag: "again-\(n)", count: 10)
            if again.isOK {
                appended += 10
                refusedInARow = 0
            } else {
                #expect(again.errorCode == code, "\(again)")
                refusedInARow += 1
            }
        }
        return refusedInARow == 3
    }

    @Test("at max_map_size, group commits of batches from several connections are refused with storage_full every time, wherever in the commit the map ran out (a report's city-dates entry, made while its projections are applied, or a later put), never internal_error; at each of several maximums in turn (QA pass 13, M3)")
    func fullMapRefusesEveryBatchAsStorageFull() throws {
        let daemon = try startDaemon(config: "[storage]\ninitial_map_size = \"1MiB\"\n", arguments: ["--max-map-size", "2MiB"])
        let socketPath = daemon.socketPath
        let codes = Mutex<[String: Int]>([:])
        let failures = Mutex<[String]>([])
        // Each maximum is one pass through the last free pages, where a commit can run out at any of its puts.
        for maximum in 2...9 {
            if maximum > 2 {
                daemon.extraArguments = daemon.extraArguments.map { $0 == "\(maximum - 1)MiB" ? "\(maximum)MiB" : $0 }
                try daemon.restart()
            }
            let group = DispatchGroup()
            for connection in 0..<3 {
                group.enter()
                Thread {
                    defer { group.leave() }
                    do {
                        let client = try RawClient(path: socketPath)
                        var refusals = 0
                        var acknowledged: [String] = []
                        // Batches of short reports, of responses and of outcomes for incidents already stored,
                        // pipelined three deep, until this connection has had 10 refusals. Ids and dates spread
                        // over their indexes, so a commit's puts land on many pages of each table.
                        for n in 0..<600 where refusals < 10 {
                            var sent: [[String]] = []
                            for k in 0..<3 {
                                let size = 1 + (n * 7 + k * 13 + connection * 5) % 30
                                var events: [JSONValue] = []
                                var reported: [String] = []
                                for e in 0..<size {
                                    if e % 3 != 0, let incident = acknowledged.randomElement() {
                                        events.append(e % 3 == 1 ? WireEvent.response(incident: incident) : WireEvent.outcome(incident: incident))
                                    } else {
                                        let incident = "full-\(UUID().uuidString.lowercased())"
                                        reported.append(incident)
                                        events.append(
                                            WireEvent.report(
                                                incident: incident,
                                                city: WireEvent.citySpellings[(e + n) % WireEvent.citySpellings.count],
                                                description: String(repeating: "x", count: Int.random(in: 1...200)),
                                                occurredAt: String(format: "2022-%02d-%02d", Int.random(in: 1...12), Int.random(in: 1...28))))
                                    }
                                }
                                try client.send("append", ["id": .int(Int64(k)), "events": .array(events)])
                                sent.append(reported)
                            }
                            for k in 0..<3 {
                                let answer = try client.receive()
                                let code = answer.isOK ? "ok" : answer.errorCode ?? "\(answer)"
                                codes.withLock { $0[code, default: 0] += 1 }
                                if answer.isOK { acknowledged += sent[k] } else { refusals += 1 }
                            }
                        }
                    } catch {
                        failures.withLock { $0.append("connection \(connection): \(error)") }
                    }
                }.start()
            }
            #expect(group.wait(timeout: .now() + 300) == .success, "the connections finished at \(maximum) MiB")
        }
        #expect(failures.withLock { $0 } == [])
        let seen = codes.withLock { $0 }
        #expect(seen.keys.sorted() == ["ok", "storage_full"], "answers by code: \(seen)")
        #expect((seen["storage_full"] ?? 0) >= 240, "answers by code: \(seen)")
        let client = try daemon.client()
        #expect(try checkLogIntegrity(daemon, client).count > 0)
        #expect(daemon.stop() == 0)
    }

    @Test("the map grows by itself up to max_map_size; then appends fail with storage_full, reads keep working; a larger maximum lets appends continue")
    func growsThenFillsThenContinues() throws {
        let mib = 1 << 20
        // initial_map_size from the file, the maximum from the command line.
        let daemon = try startDaemon(config: "[storage]\ninitial_map_size = \"1MiB\"\nmax_map_size = \"64MiB\"\n", arguments: ["--max-map-size", "4MiB"])
        let client = try daemon.client()
        let first = try client.status()
        #expect(first["storage"]?["mapSize"]?.intValue == Int64(mib), "starts at initial_map_size: \(first)")
        #expect(first["storage"]?["maxMapSize"]?.intValue == Int64(4 * mib), "--max-map-size overrides the file")

        var sizes: [Int64] = [Int64(mib)]
        var (appended, full) = try Self.fillUntilRefused(client, tag: "fill") {
            let size = try client.status()["storage"]?["mapSize"]?.intValue ?? 0
            if size != sizes.last { sizes.append(size) }
        }
        guard let full else {
            Issue.record("4 MiB never filled up after \(appended) events")
            return
        }
        #expect(full.errorCode == "storage_full", "\(full)")
        #expect(full["error"]?["message"]?.stringValue?.contains("max_map_size") == true)
        // Grew in steps (1 → 2 → 4 MiB), never shrank, and reached the maximum exactly.
        #expect(sizes.count >= 3, "map sizes seen: \(sizes)")
        #expect(sizes == sizes.sorted(), "map sizes seen: \(sizes)")
        #expect(sizes.last == Int64(4 * mib), "map sizes seen: \(sizes)")

        // Nothing of a refused append is stored. Right at the limit an append may still fit now and then (pages
        // that an older reader held become free).
        #expect(try Self.appendUntilRefusedThrice(client, code: "storage_full", appended: &appended), "the log stays full")
        // Everything else still answers, on this and a new connection.
        let head = try client.status()
        #expect(head["position"]?.intValue == Int64(appended))
        for connection in [client, try daemon.client()] {
            let status = try connection.status()
            #expect(status["position"]?.intValue == Int64(appended))
            #expect(status["storage"]?["mapSize"]?.intValue == Int64(4 * mib))
            let read = try connection.call("read", ["from": .int(Int64(appended)), "limit": 5])
            #expect(read.isOK && read["events"]?.arrayValue?.first?["position"]?.intValue == Int64(appended), "\(read)")
            let incident = try connection.call("incident", ["incident": "fill-0-0"])
            #expect(incident.isOK && incident["incident"]?["version"] == 1, "\(incident)")
            let city = try connection.call("city", ["city": "Kup'yansk"])
            #expect(city.isOK && (city["city"]?["incidents"]?["total"]?.intValue ?? 0) > 0, "\(city)")
            #expect(try connection.call("cities").isOK)
        }
        try checkLogIntegrity(daemon, client)
        let headHash = head["headHash"]

        // A larger maximum and a restart: appends continue where the log stopped, and the chain runs through.
        daemon.extraArguments = daemon.extraArguments.map { $0 == "4MiB" ? "16MiB" : $0 }
        try daemon.restart()
        let after = try daemon.client()
        let restarted = try after.status()
        #expect(restarted["position"]?.intValue == Int64(appended))
        #expect(restarted["headHash"] == headHash)
        #expect(restarted["storage"]?["maxMapSize"]?.intValue == Int64(16 * mib))
        let resumed = try Self.bulkAppend(after, tag: "resumed", count: 10)
        #expect(resumed.isOK, "\(resumed)")
        #expect(resumed["positions"]?.arrayValue?.first?.intValue == Int64(appended + 1))
        for n in 0..<30 {
            let more = try Self.bulkAppend(after, tag: "more-\(n)", count: 10)
            #expect(more.isOK, "\(more)")
            if !more.isOK { break }
        }
        let grown = try after.status()
        #expect((grown["storage"]?["mapSize"]?.intValue ?? 0) > Int64(4 * mib), "the map grew past the old maximum: \(grown)")
        let events = try checkLogIntegrity(daemon, after)
        #expect(events.count == appended + 310)
        #expect(events[appended]["prevHash"] == headHash, "the first event after the restart links to the old head")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a full file system: appends fail with storage_full naming it, nothing refused is stored, reads go on and the daemon's log says so; with room again appends are stored and space ahead is written again, and a crash loses none of them",
        .enabled(if: SmallFileSystem.canMount, "needs root, to mount a small tmpfs"))
    func fileSystemFills() throws {
        let root = makeTemporaryDirectory()
        let disk = try SmallFileSystem(at: root + "/data", megabytes: 4)
        // The daemon's own removal of `root` cannot remove a mount point; this one comes after the unmount.
        defer {
            disk.unmount()
            try? FileManager.default.removeItem(atPath: root)
        }
        let daemon = try Daemon(root: root)
        let client = try daemon.client()
        var (appended, full) = try Self.fillUntilRefused(client, tag: "disk")
        guard let full else {
            Issue.record("a 4 MiB file system never filled up after \(appended) events")
            return
        }
        #expect(full.errorCode == "storage_full", "\(full)")
        let message = full["error"]?["message"]?.stringValue ?? ""
        #expect(message.contains("the file system holding \(daemon.dataDir) is full"), "\(full)")

        #expect(try Self.appendUntilRefusedThrice(client, code: "storage_full", appended: &appended), "the file system stays full")
        let status = try client.status()
        #expect(status["position"]?.intValue == Int64(appended))
        let failedCommits = Int(status["commits"]?["failed"]?.intValue ?? 0)
        #expect(failedCommits >= 3, "\(status)")
        let read = try client.call("read", ["from": .int(Int64(appended)), "limit": 5])
        #expect(read.isOK && read["events"]?.arrayValue?.first?["position"]?.intValue == Int64(appended), "\(read)")
        let city = try client.call("city", ["city": "Kup'yansk"])
        #expect(city.isOK && (city["city"]?["incidents"]?["total"]?.intValue ?? 0) > 0, "\(city)")
        try waitFor("the daemon's log to say that appends are not stored") {
            daemon.log.contains("appends are not being stored: the file system holding \(daemon.dataDir) is full")
        }
        let lines = daemon.log.components(separatedBy: "appends are not being stored").count - 1
        #expect(lines < failedCommits, "one line for a burst of failed commits, not one each: \(daemon.log)")

        // Room again: the next append is stored where the log stopped, and the log says so.
        try disk.resize(megabytes: 32)
        let resumed = try Self.bulkAppend(client, tag: "resumed", count: 10)
        #expect(resumed.isOK, "\(resumed)")
        #expect(resumed["positions"]?.arrayValue?.first?.intValue == Int64(appended + 1))
        appended += 10
        try waitFor("the daemon's log to say that appends are stored again") {
            daemon.log.contains("appends are stored again")
        }
        // The space written ahead in data.mdb, which the full file system stopped, is written again.
        let used = { try client.status()["storage"]?["usedBytes"]?.intValue ?? 0 }
        try waitFor("space written past the log's end again (data.mdb \(Self.dataFileSize(daemon)), used \(try used()))") {
            Self.dataFileSize(daemon) - (try used()) >= 128 << 10
        }
        daemon.crash()
        try daemon.start()
        let events = try checkLogIntegrity(daemon, try daemon.client())
        #expect(events.count == appended)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a meta page that cannot be written leaves LMDB refusing everything: the daemon says so and exits 74, for its service manager to start it again; the log then holds every acknowledged append and not the refused one",
        StorageFaults.required)
    func brokenStorageStopsTheDaemon() throws {
        let library = try #require(StorageFaults.library)
        let root = makeTemporaryDirectory()
        let flag = root + "/fail-meta-writes"
        let daemon = try Daemon(root: root, environment: ["LD_PRELOAD": library, "INCIDENTD_FAIL_META_WRITES": flag])
        let client = try daemon.client()
        let kept = try Self.bulkAppend(client, tag: "kept", count: 3)
        #expect(kept.isOK, "\(kept)")

        #expect(FileManager.default.createFile(atPath: flag, contents: nil))
        let refused = try Self.bulkAppend(client, tag: "refused", count: 2)
        #expect(refused.errorCode == "internal_error", "\(refused)")
        try waitFor("the daemon to stop by itself") { daemon.child?.isRunning == false }
        #expect(daemon.stop() == 74, "EX_IOERR, so that systemd's Restart=on-failure starts it again")
        #expect(daemon.log.contains("the storage refuses every transaction now"), "\(daemon.log)")

        try FileManager.default.removeItem(atPath: flag)
        try daemon.start()
        let after = try daemon.client()
        let events = try checkLogIntegrity(daemon, after)
        #expect(events.count == 3, "the acknowledged appends, and nothing of the refused one")
        #expect(try after.call("incident", ["incident": "refused-0"]).errorCode == "unknown_incident")
        let again = try Self.bulkAppend(after, tag: "refused", count: 2)
        #expect(again.isOK && again["positions"]?.arrayValue?.first?.intValue == 4, "\(again)")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a group commit that LMDB's commit itself refuses with MDB_MAP_FULL runs again in a grown map: each append of it is answered once, a retry keeps the first position, the chain runs through; at max_map_size its appends get storage_full and nothing of them is stored",
        StorageFaults.required)
    func commitFindsTheMapFull() throws {
        let library = try #require(StorageFaults.library)
        let mib: Int64 = 1 << 20
        let root = makeTemporaryDirectory("incidentd-rel")
        let mapFull = root + "/commit-map-full"
        let hold = root + "/hold-commits"
        let config = root + "/incidentd.toml"
        try "[storage]\ninitial_map_size = \"1MiB\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try Daemon(
            arguments: ["--config", config, "--max-map-size", "64MiB"], root: root,
            environment: ["LD_PRELOAD": library, "INCIDENTD_COMMIT_MAP_FULL": mapFull, "INCIDENTD_HOLD_COMMITS": hold])
        let client = try daemon.client()
        let keptId = Wire.uuid()
        let kept = try client.appendEvents([Wire.report(incident: "kupiansk-kept", eventId: keptId)])
        #expect(kept["positions"] == [1], "\(kept)")
        #expect(try client.status()["storage"]?["mapSize"]?.intValue == mib)

        // One commit held under way, and four appends queued behind it in a known order: the next commit holds them.
        #expect(FileManager.default.createFile(atPath: hold, contents: nil))
        let first = try daemon.client()
        try first.send("append", ["events": [Wire.report(incident: "kupiansk-held")]])
        try waitFor("a commit to be held") { FileManager.default.fileExists(atPath: hold + ".held") }
        let newId = Wire.uuid()
        let requests: [[JSONValue]] = [
            [Wire.report(incident: "kupiansk-new", eventId: newId)],
            // The stored event sent again, as after a lost answer.
            [Wire.report(incident: "kupiansk-kept", eventId: keptId)],
            [Wire.report(incident: "kupiansk-pair"), Wire.response(incident: "kupiansk-pair", detained: 2)],
            // The first request's id on another event.
            [Wire.report(incident: "kupiansk-other", eventId: newId)],
        ]
        var clients: [RawClient] = []
        for (n, events) in requests.enumerated() {
            let connection = try daemon.client()
            try connection.send("append", ["events": .array(events)])
            clients.append(connection)
            try waitFor("\(n + 1) appends to queue") { try client.status()["commits"]?["queued"]?.intValue == Int64(n + 1) }
        }
        #expect(FileManager.default.createFile(atPath: mapFull, contents: nil))
        try FileManager.default.removeItem(atPath: hold)

        #expect(try first.receive()["positions"] == [2])
        let answers = try clients.map { try $0.receive() }
        #expect(!FileManager.default.fileExists(atPath: mapFull), "the commit of the four found the map full")
        #expect(answers[0]["positions"] == [3], "\(answers[0])")
        #expect(answers[1]["positions"] == [1] && answers[1]["incidents"] == ["kupiansk-kept"], "\(answers[1])")
        #expect(answers[2]["positions"] == [4, 5], "\(answers[2])")
        #expect(answers[3].errorCode == "duplicate_event_id" && answers[3]["error"]?["position"] == 3, "\(answers[3])")
        let status = try client.status()
        #expect(status["storage"]?["mapSize"]?.intValue == 2 * mib, "the map grew once: \(status)")
        #expect(status["commits"]?["failed"] == 0, "no commit was refused as a whole: \(status)")
        #expect(status["commits"]?["largestBatch"] == 4, "\(status)")
        let events = try checkLogIntegrity(daemon, client)
        #expect(events.map { $0["incident"] } == ["kupiansk-kept", "kupiansk-held", "kupiansk-new", "kupiansk-pair", "kupiansk-pair"])
        #expect(Set(events.compactMap { $0["eventId"]?.stringValue }).count == 5, "each event stored once")

        // At the maximum the map cannot grow: the appends of the commit are refused, and nothing of them is stored.
        daemon.extraArguments = ["--config", config, "--max-map-size", "1MiB"]
        try daemon.restart()
        let again = try daemon.client()
        let restarted = try again.status()
        #expect(restarted["storage"]?["mapSize"]?.intValue == mib && restarted["storage"]?["maxMapSize"]?.intValue == mib, "\(restarted)")
        #expect(FileManager.default.createFile(atPath: mapFull, contents: nil))
        let refused = try again.call("append", ["events": [Wire.report(incident: "kupiansk-refused")]])
        #expect(!FileManager.default.fileExists(atPath: mapFull))
        #expect(refused.errorCode == "storage_full", "\(refused)")
        #expect(refused["error"]?["message"]?.stringValue?.contains("max_map_size") == true, "\(refused)")
        #expect(try again.status()["position"] == 5)
        #expect(try again.call("incident", ["incident": "kupiansk-refused"]).errorCode == "unknown_incident")
        let stored = try again.call("append", ["events": [Wire.report(incident: "kupiansk-refused")]])
        #expect(stored["positions"] == [6], "\(stored)")
        #expect(try checkLogIntegrity(daemon, again).count == 6)
        #expect(daemon.stop() == 0)
    }

    static func dataFileSize(_ daemon: Daemon) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: daemon.dataDir + "/data.mdb"))?[.size] as? Int64) ?? -1
    }

    @Test("data.mdb moved, removed or replaced under a running daemon: every append is refused, naming what happened and how to put the log back, where it was acknowledged into a file the next start does not read; reads go on; put back and restarted, the daemon serves every acknowledged event")
    func dataFileReplacedWhileServing() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        let file = daemon.dataDir + "/data.mdb"
        let moved = daemon.dataDir + "/data.moved"
        func refusal(_ tag: String) throws -> String {
            let answer = try client.appendEvents([Wire.report(incident: tag, city: "Kupiansk")])
            #expect(!answer.isOK, "\(tag): \(answer)")
            return answer["error"]?["message"]?.stringValue ?? ""
        }
        // A restore while the daemon runs: the file moved away and a copy put in its place.
        #expect(rename(file, moved) == 0)
        try FileManager.default.copyItem(atPath: moved, toPath: file)
        let replaced = try refusal("after-replace")
        #expect(replaced.contains("\(file) was replaced while incidentd ran") && replaced.contains("Restart incidentd"), "\(replaced)")
        // Removed: the log is only in the file the daemon holds, which the message says how to copy back.
        #expect(unlink(file) == 0)
        let removed = try refusal("after-remove")
        #expect(removed.contains("\(file) was moved or removed while incidentd ran"), "\(removed)")
        let copy = try #require(removed.firstMatch(of: #/cp (/proc/\d+/fd/\d+) /#)).1
        #expect(try client.call("status")["position"]?.intValue == 8, "reads go on")
        // As cp does: the bytes the link leads to (FileManager would copy the link itself).
        let run = try runCommand("/bin/cp", [String(copy), file])
        #expect(run.status == 0, "\(run)")
        try FileManager.default.removeItem(atPath: moved)
        #expect(daemon.stop() == 0)
        try daemon.start()
        #expect(try daemon.client().headPosition() == 8)
        #expect(try daemon.client().appendEvents([Wire.report(incident: "after-restart", city: "Kupiansk")]).isOK)
        #expect(daemon.stop() == 0)
    }

    @Test("appends one at a time leave storage.file_headroom of written space past the log's end; the log survives a crash with it; 0 turns it off")
    func fileHeadroom() throws {
        let mib: Int64 = 1 << 20
        for headroom in [2 * mib, 0] {
            let daemon = try startDaemon(config: "[storage]\nfile_headroom = \(headroom)\n")
            let client = try daemon.client()
            let used = { try client.status()["storage"]?["usedBytes"]?.intValue ?? 0 }
            // 60 appends of 10 incidents, one at a time: about 1 MB of log.
            for n in 0..<60 {
                let response = try Self.bulkAppend(client, tag: "room-\(n)", count: 10)
                #expect(response.isOK, "\(response)")
            }
            if headroom > 0 {
                try waitFor("\(headroom / 2) bytes written past the log's end (data.mdb \(Self.dataFileSize(daemon)), used \(try used()))") {
                    Self.dataFileSize(daemon) - (try used()) >= headroom / 2
                }
            } else {
                #expect(Self.dataFileSize(daemon) == (try used()), "no space written ahead")
            }
            #expect(Self.dataFileSize(daemon) - (try used()) <= headroom + mib, "no more than the headroom and a step")
            daemon.crash()
            try daemon.start()
            let again = try daemon.client()
            #expect(try again.status()["position"]?.intValue == 600)
            let verify = try again.call("verify")
            #expect(verify["intact"] == true && verify["checked"]?.intValue == 600, "\(verify)")
            #expect(try again.allEvents().count == 600)
            #expect(try Self.bulkAppend(again, tag: "after", count: 10).isOK)
            #expect(daemon.stop() == 0)
        }
    }

    @Test("the log's pages the daemon read are let go again: its mapping of data.mdb does not stay resident")
    func mappedPagesReleased() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        // About 3,000 events of more than a kilobyte, then all of them read back: megabytes of the log mapped.
        for n in 0..<30 {
            let response = try Self.bulkAppend(client, tag: "map-\(n)", count: 100)
            #expect(response.isOK, "\(response)")
        }
        #expect(try client.allEvents().count == 3_000)
        try waitFor("the daemon to let go of its mapping of data.mdb (now \(residentLogMapBytes(of: daemon.pid) >> 10) KiB)", timeout: 10 * deadlineScale) {
            residentLogMapBytes(of: daemon.pid) < 256 << 10
        }
        #expect(daemon.stop() == 0)
    }

    @Test("the map trimmer trims on each tick that follows commits, and otherwise once every ticksPerIdleTrim ticks")
    func mapTrimSchedule() {
        let schedule = MapTrimSchedule(ticksPerIdleTrim: 10)
        #expect((1...9).map { _ in schedule.isDue(events: 0) } == Array(repeating: false, count: 9))
        #expect(schedule.isDue(events: 0), "the tenth idle tick trims")
        #expect(schedule.isDue(events: 250), "a tick after a commit trims")
        #expect(schedule.isDue(events: 500))
        #expect(!schedule.isDue(events: 500), "nothing committed since the last trim")
        #expect((1...8).map { _ in schedule.isDue(events: 500) } == Array(repeating: false, count: 8))
        #expect(schedule.isDue(events: 500), "ten ticks since the last trim")
    }
}

/// A tmpfs of a few megabytes mounted on a directory, for a log to run out of space. Needs root; the caller
/// unmounts it (a `defer` keeps it mounted until the daemon on it is done).
final class SmallFileSystem {
    let path: String
    private var mounted = false

    /// Whether this process may mount one: tried once, on a directory of its own.
    static let canMount: Bool = {
        guard getuid() == 0 else { return false }
        let probe = makeTemporaryDirectory("incidentd-mount-probe")
        defer { try? FileManager.default.removeItem(atPath: probe) }
        guard let disk = try? SmallFileSystem(at: probe, megabytes: 1) else { return false }
        disk.unmount()
        return true
    }()

    init(at path: String, megabytes: Int) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Self.mount(["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", path])
        mounted = true
    }

    /// Changes the size in place; what is stored stays.
    func resize(megabytes: Int) throws {
        try Self.mount(["-o", "remount,size=\(megabytes)m", path])
    }

    /// Detaches it at once, even with a process still holding files there (a failed test's daemon).
    func unmount() {
        guard mounted else { return }
        _ = try? runCommand("/bin/umount", ["-l", path])
        mounted = false
    }

    private static func mount(_ arguments: [String]) throws {
        let result = try runCommand("/bin/mount", arguments)
        guard result.status == 0 else { throw HarnessError("mount \(arguments.joined(separator: " ")): \(result.stderr)") }
    }
}

/// `Tests/FaultInjection/storage_faults.c`, built once with the Swift toolchain's clang beside the binaries under
/// test, to be preloaded into the daemon: while a flag file exists, LMDB's meta-page writes fail with EIO
/// (`INCIDENTD_FAIL_META_WRITES`), `fdatasync` waits (`INCIDENTD_STALL_SYNCS`), or commits wait
/// (`INCIDENTD_HOLD_COMMITS`); a flag file makes the next commit fail with `MDB_MAP_FULL` (`INCIDENTD_COMMIT_MAP_FULL`).
enum StorageFaults {
    /// For the tests that preload it: they run where it could be built.
    static var required: ConditionTrait {
        .enabled(if: library != nil, "needs the Swift toolchain's clang, to build the fault-injection library")
    }

    static let library: String? = build("storage_faults")

    /// `Tests/FaultInjection/NAME.c` built as `libNAME.so` beside the binaries under test, or nil where it cannot be.
    static func build(_ name: String) -> String? {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FaultInjection/\(name).c").path
        guard FileManager.default.fileExists(atPath: source), let clang = findClang() else { return nil }
        let output = Binaries.directory + "/lib\(name).so"
        guard let built = try? runCommand(clang, ["-shared", "-fPIC", "-O1", "-o", output, source, "-ldl"]),
            built.status == 0
        else { return nil }
        return output
    }

    /// `clang` on the PATH, or beside the `swift` that is.
    private static func findClang() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":").map(String.init) {
            let clang = directory + "/clang"
            if FileManager.default.isExecutableFile(atPath: clang) { return clang }
            let swift = URL(fileURLWithPath: directory + "/swift")
            guard FileManager.default.isExecutableFile(atPath: swift.path) else { continue }
            let beside = swift.resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("clang").path
            if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        }
        return nil
    }
}

/// `Tests/FaultInjection/socket_faults.c`, built like ``StorageFaults``: preloaded into the daemon, it creates a
/// file while a Unix socket is bound (`INCIDENTD_CREATE_DURING_BIND`), or puts a symbolic link in place of a socket
/// or directory just made (`INCIDENTD_SWAP_PATH`, `INCIDENTD_SWAP_TARGET`).
enum SocketFaults {
    static var required: ConditionTrait {
        .enabled(if: library != nil, "needs the Swift toolchain's clang, to build the fault-injection library")
    }

    static let library: String? = StorageFaults.build("socket_faults")
}
