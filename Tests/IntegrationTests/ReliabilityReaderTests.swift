import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Readers of other processes (`incidentctl replay`, `mdb_dump`, a backup script) that die inside a read
/// transaction leave their LMDB reader slot behind. Such a slot pins the snapshot it read: every page freed
/// since then stays allocated, so the data file grows with each commit until the slot is cleared.
@Suite("Reliability: stale readers", .serialized)
struct ReliabilityReaderTests {
    static func seed(_ client: RawClient, count: Int, tag: String) throws {
        let description = String(repeating: "Enough bytes to fill mdb_dump's pipe. ", count: 20)
        for start in stride(from: 0, to: count, by: 50) {
            let events: [JSONValue] = (start..<min(start + 50, count)).map { WireEvent.report(incident: "\(tag)-\($0)", description: description) }
            let response = try client.call("append", ["events": .array(events)])
            guard response.isOK else { throw HarnessError("seed append: \(response.canonicalString())") }
        }
    }

    @Test("a reader killed inside its transaction blocks no write, its slot is cleared while the daemon runs, and the file stops growing")
    func killedReaderWhileServing() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        try Self.seed(client, count: 200, tag: "seed")

        let reader = try StuckReader(dataDir: daemon.dataDir)
        let deadPid = reader.pid
        reader.kill()
        // Writes go on at once, with the dead reader's slot still in the table.
        client.setReceiveTimeout(10 * deadlineScale)
        for k in 0..<20 {
            let response = try client.call("append", ["events": [WireEvent.report(incident: "during-\(k)")]])
            #expect(response.isOK, "\(response.canonicalString())")
        }
        // The daemon clears the slot by itself, without a restart.
        try waitFor("the dead reader's slot to be cleared", timeout: 15 * deadlineScale) {
            try !readerTable(daemon.dataDir).contains { $0.pid == deadPid }
        }
        // Now 600 single-event commits reuse freed pages: about 60 KiB per commit (36 MiB) would stay pinned otherwise.
        let before = try client.status()["storage"]?["usedBytes"]?.intValue ?? 0
        for k in 0..<600 {
            let response = try client.call("append", ["events": [WireEvent.report(incident: "after-\(k)", description: "short")]])
            if !response.isOK {
                Issue.record("append \(k): \(response.canonicalString())")
                break
            }
        }
        let after = try client.status()["storage"]?["usedBytes"]?.intValue ?? 0
        #expect(after - before < 12 << 20, "600 appends grew the log from \(before >> 20) to \(after >> 20) MiB")
        try checkLogIntegrity(daemon, client)
        #expect(daemon.stop() == 0)
    }

    @Test("status counts the read transactions open now, of every process: a stuck reader shows, and once it dies and its slot is cleared, the count is back to none")
    func readersCountedAsTheyAre() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        try Self.seed(client, count: 200, tag: "seed")
        for _ in 0..<3 { #expect(try client.call("verify")["intact"] == true) }
        let readers = { try client.status()["storage"]?["readers"]?.intValue ?? -1 }
        #expect(try readers() == 0, "no reader now")

        let reader = try StuckReader(dataDir: daemon.dataDir)
        #expect(try readers() == 1, "mdb_dump's transaction")
        reader.kill()
        try waitFor("the dead reader's slot to be cleared and no reader counted (now \(try readers()))", timeout: 15 * deadlineScale) {
            try readers() == 0
        }
        #expect(daemon.stop() == 0)
    }

    @Test("a stale slot found at start is cleared at start (mdb_reader_check), while a live reader's slot stays")
    func staleSlotClearedAtStart() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        try Self.seed(client, count: 200, tag: "seed")
        #expect(daemon.stop() == 0)

        // A live reader keeps the environment open, so the lock file is not reset when the daemon opens it: only
        // mdb_reader_check can clear the dead one's slot.
        let live = try StuckReader(dataDir: daemon.dataDir)
        let dead = try StuckReader(dataDir: daemon.dataDir)
        let deadPid = dead.pid
        dead.kill()
        let stale = try readerTable(daemon.dataDir)
        #expect(stale.contains { $0.pid == deadPid }, "the killed reader left its slot: \(stale)")
        #expect(stale.contains { $0.pid == live.pid })

        try daemon.start()
        let table = try readerTable(daemon.dataDir)
        #expect(!table.contains { $0.pid == deadPid }, "the daemon cleared the stale slot at start: \(table)")
        #expect(table.contains { $0.pid == live.pid }, "and left the live reader's: \(table)")
        let after = try daemon.client()
        #expect(try after.call("append", ["events": [WireEvent.report(incident: "after-restart")]]).isOK)

        // The live reader dies too: its slot goes while the daemon runs.
        let livePid = live.pid
        live.kill()
        try waitFor("the second reader's slot to be cleared", timeout: 15 * deadlineScale) {
            try !readerTable(daemon.dataDir).contains { $0.pid == livePid }
        }
        try checkLogIntegrity(daemon, after)
        #expect(daemon.stop() == 0)
    }
}
