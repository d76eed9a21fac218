import DataFilePages
import Foundation
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// A backup taken before incidentd was last upgraded holds a log of an older format, which only a daemon upgrades,
/// in place. `incidentctl verify --data-dir` still checks what no format changed (the pages, the hash chain, the heads
/// published) and says so of the rest, leaving `data.mdb` as it is; the other readers refuse it with exit 1 and
/// advice that never has the operator upgrade a backup or a damaged log in place.
@Suite("Verify: logs of older formats")
struct OlderFormatVerifyTests {
    /// Rewrites the log of the stopped `daemon` as an incidentd of `format` (1, 3, 4 or 5) left it: format 5 with
    /// `city-dates` of its shape and projections of version 8, format 4 likewise with version 7
    /// (``downgradeCityDates(_:_:toFormat:)``); format 3 without `city-dates`, version 6; format 1 without them
    /// either, its streams kept in `streams` by incident id.
    static func downgrade(_ daemon: Daemon, toFormat format: Int) throws {
        do {
            let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
            let meta = try environment.openDatabase("meta", create: false)
            let dates = try environment.openDatabase("city-dates", create: false)
            try environment.write { txn in
                if format >= 4 {
                    try downgradeCityDates(txn, dates, toFormat: format)
                } else {
                    try txn.drop(dates, delete: true)
                }
                let mark = Array(try #require(try txn.get(meta, key: Array("projections".utf8))))
                let version: UInt64 = [5: 8, 4: 7][format] ?? 6
                try txn.put(meta, key: Array("projections".utf8), value: Array(mark[..<8]) + DerivedDataTests.bigEndian(version))
                try txn.put(meta, key: Array("format".utf8), value: Array("incidentd-log-\(format)".utf8))
            }
        }
        if format == 1 { try FormatUpgradeTests.downgradeToFormat1(daemon.dataDir) }
    }

    /// Rewrites `city-dates`, as format 6 keeps it (each incident once: a counted one's date with its id, the others
    /// in their city's list after all of the dates), as format `format` kept it: format 5, each date's value the date
    /// alone and every incident in its city's index after the dates; format 4, the dates alone.
    static func downgradeCityDates(_ txn: borrowing WriteTransaction, _ dates: Database, toFormat format: Int) throws {
        var entries: [(key: [UInt8], value: [UInt8])] = []
        try txn.forEach(dates) { key, value in
            entries.append((Array(key), Array(value)))
            return true
        }
        #expect(entries.contains { $0.key.first != 0xFF }, "the premise: the log has a counted incident")
        for (key, value) in entries {
            if key.first == 0xFF {
                if format == 4 { _ = try txn.delete(dates, key: key) }
                continue
            }
            let separator = try #require(value.firstIndex(of: 0), "a date's value of format 6 is the date, a 0 byte and the incident id")
            try txn.put(dates, key: key, value: Array(value[..<separator]))
            if format == 5 {
                // 0xFF, the city id, a 0 byte and the report's position: the key's first and last bytes.
                let cityIncident = [0xFF] + key[..<(key.count - 16)] + key[(key.count - 8)...]
                try txn.put(dates, key: cityIncident, value: Array(value[(separator + 1)...]))
            }
        }
    }

    /// The stored bytes of the log's data file.
    static func dataFile(_ daemon: Daemon) throws -> Data {
        try #require(FileManager.default.contents(atPath: daemon.dataDir + "/data.mdb"))
    }

    static func verify(_ daemon: Daemon, _ arguments: [String] = []) throws -> CommandResult {
        try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir] + arguments)
    }

    /// What `replay --data-dir` says of a log of an older format: it refuses it (exit 1), and its advice checks the
    /// log first and makes a copy of the current format, never has incidentd upgrade a backup in place.
    static func expectReplayRefused(_ daemon: Daemon, format: Int, _ context: String) throws {
        let replay = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.dataDir])
        #expect(replay.status == 1, "\(context): \(replay)")
        let message = replay.stderr
        #expect(message.hasPrefix("incidentctl: older_format: \(daemon.dataDir) holds log format incidentd-log-\(format)"), "\(context): \(message)")
        #expect(message.contains("incidentctl verify --data-dir \(daemon.dataDir): do that first"), "\(context): \(message)")
        #expect(message.contains("incidentd --recover-from \(daemon.dataDir) --data-dir NEW_DIR, which leaves \(daemon.dataDir) as it is"), "\(context): \(message)")
        #expect(message.contains("only if it is the live log") && !message.contains("start incidentd on it once"), "\(context): \(message)")
    }

    @Test("verify --data-dir of a log of format 5, 4, 3 or 1 checks its pages, its chain and --expect-head (exit 0, or 1 for a head it does not hold), reports its indexes and projections not compared naming the format, and leaves data.mdb byte for byte as it was; replay --data-dir refuses it with exit 1 and advice to check it and copy it")
    func olderFormatsVerify() throws {
        for format in [5, 4, 3, 1] {
            let daemon = try VerifyTests.storedArticle()
            let current = try Self.verify(daemon, ["--format", "json"])
            let head = try #require(current.json?["headHash"]?.stringValue, "\(current)")
            try Self.downgrade(daemon, toFormat: format)
            let stored = try Self.dataFile(daemon)
            let tag = "incidentd-log-\(format)"

            let json = try Self.verify(daemon, ["--format", "json", "--expect-head", "8:" + head])
            #expect(json.status == 0, "\(tag): \(json)")
            let answer = try #require(json.json, "\(tag): \(json)")
            #expect(answer["intact"] == true && answer["checked"] == 8 && answer["headHash"]?.stringValue == head, "\(tag): \(answer)")
            let expected = answer["expectedHeads"]?.arrayValue?.first
            #expect(expected?["found"] == true && expected?["position"] == 8, "\(tag): \(answer)")
            #expect(answer["derived"]?["intact"] == true && answer["derived"]?["differences"] == [], "\(tag): \(answer)")
            let notCompared = answer["derived"]?["notCompared"]?.arrayValue ?? []
            #expect(
                notCompared.compactMap { $0["database"]?.stringValue } == ["incident-streams", "event-ids", "incidents", "cities", "city-dates"],
                "\(tag): \(answer)")
            #expect(
                notCompared.allSatisfy { $0["reason"]?.stringValue?.hasPrefix("log format \(tag): its indexes and projections are compared once incidentd has upgraded it") == true },
                "\(tag): \(answer)")

            let table = try Self.verify(daemon, ["--format", "table"])
            #expect(table.status == 0, "\(tag): \(table)")
            #expect(table.stdout.hasPrefix("intact: 8 events") && !table.stdout.contains("derived data agrees"), "\(tag): \(table.stdout)")
            #expect(
                table.stderr == "incidentctl: incident-streams, event-ids, incidents, cities, city-dates not compared: log format \(tag): its indexes and projections are compared once incidentd has upgraded it to incidentd-log-6\n",
                "\(tag): \(table.stderr)")

            // A head the log does not hold fails as for a log of the current format.
            let other = String(repeating: "0", count: 63) + "1"
            let mismatch = try Self.verify(daemon, ["--expect-head", "8:" + other, "--format", "table"])
            #expect(mismatch.status == 1 && mismatch.stderr.contains("head_mismatch: "), "\(tag): \(mismatch)")
            #expect(mismatch.stdout.contains("NOT AS PUBLISHED: head 8:\(other): no event of the chain (events 1–8) has its hash"), "\(tag): \(mismatch)")

            try Self.expectReplayRefused(daemon, format: format, tag)
            #expect(try Self.dataFile(daemon) == stored, "\(tag): reading it changed data.mdb")

            if format == 4 {
                // The copy the advice names: a log of the current format, every event and the head kept, and the old
                // one left as it is.
                let copy = daemon.root + "/recovered"
                let recovered = try runCommand(Binaries.incidentd, ["--recover-from", daemon.dataDir, "--data-dir", copy, "--log-level", "warning"])
                #expect(recovered.status == 0, "\(recovered)")
                #expect(try Self.dataFile(daemon) == stored, "incidentd --recover-from changed data.mdb")
                let checked = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", copy, "--expect-head", "8:" + head, "--format", "json"])
                #expect(checked.status == 0 && checked.json?["derived"]?["notCompared"] == nil, "\(checked)")
            }
        }
    }

    /// The stopped article log as an incidentd of format 4 left it, with event 5 changed in place so that its chain
    /// breaks there, and the bytes of its data file.
    static func format4LogBrokenAtFive() throws -> (Daemon, Data) {
        let daemon = try VerifyTests.storedArticle()
        try downgrade(daemon, toFormat: 4)
        try VerifyTests.tamper(daemon, position: 5) { stored, _ in VerifyTests.replacing("\"day\"", with: "\"dAy\"", in: stored) }
        return (daemon, try dataFile(daemon))
    }

    @Test("verify --data-dir of a log of format 4 whose event changed names the break (chain_broken, exit 1, the advice to keep data.mdb) and leaves data.mdb as it is; replay --data-dir refuses it with exit 1")
    func olderFormatChainBroken() throws {
        let (daemon, stored) = try Self.format4LogBrokenAtFive()

        let json = try Self.verify(daemon, ["--format", "json"])
        #expect(json.status == 1, "\(json)")
        #expect(json.json?["intact"] == false && json.json?["firstBadPosition"] == 5 && json.json?["checked"] == 4, "\(json)")
        #expect(json.json?["derived"] == nil, "\(json)")
        let table = try Self.verify(daemon, ["--format", "table"])
        #expect(table.status == 1, "\(table)")
        #expect(table.stderr.contains("chain_broken: position 5: the stored bytes do not hash to the stored hash"), "\(table.stderr)")
        #expect(table.stderr.contains("Keep data.mdb as it is (the events past the break are evidence too)"), "\(table.stderr)")
        #expect(!table.stderr.contains("not compared"), "\(table.stderr)")

        try Self.expectReplayRefused(daemon, format: 4, "a broken chain")
        #expect(try Self.dataFile(daemon) == stored, "reading it changed data.mdb")
    }

    @Test("incidentd does not upgrade a log of format 4 whose chain breaks: its start is refused (exit 1) naming the position, and data.mdb is left as it was, still of format 4")
    func upgradeRefusedOnBrokenChain() throws {
        let (daemon, stored) = try Self.format4LogBrokenAtFive()

        let refused = StorageOpenTests.refusedStart(daemon)
        #expect(refused?.status == 1 && refused?.signaled == false, "\(String(describing: refused)) \(daemon.log)")
        #expect(daemon.log.contains("checking every page and the hash chain of the log (incidentd-log-4) before its upgrade"), "\(daemon.log)")
        #expect(daemon.log.contains("(format incidentd-log-4) breaks at position 5"), "\(daemon.log)")
        #expect(daemon.log.contains("keep data.mdb as it is"), "\(daemon.log)")
        #expect(try Self.dataFile(daemon) == stored, "the refused start changed data.mdb")
        let json = try Self.verify(daemon, ["--format", "json"])
        #expect(json.json?["firstBadPosition"] == 5, "\(json)")
    }

    @Test("verify --data-dir of a log of format 4 with a damaged page of events names the page (page_damaged, exit 1) with the advice to make a new log")
    func olderFormatPageDamaged() throws {
        let daemon = try PageDamageTests.storedLog(incidents: 500)
        try Self.downgrade(daemon, toFormat: 4)
        let (page, pageSize) = try PageDamageTests.leaf(of: "events", in: daemon)
        try PageDamageTests.damage(daemon, page: page, pageSize: pageSize)
        let stored = try Self.dataFile(daemon)

        let run = try Self.verify(daemon, ["--format", "table"])
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("page_damaged: page \(page) of database events of data.mdb is damaged"), "\(run.stderr)")
        #expect(run.stderr.contains("incidentd --recover-from, giving the latest backups with --fill-from"), "\(run.stderr)")
        #expect(!run.stderr.contains("upgrade"), "\(run.stderr)")
        #expect(try Self.dataFile(daemon) == stored, "reading it changed data.mdb")
    }
}
