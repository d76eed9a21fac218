import Foundation
import Gazetteer
import IncidentLog
import LMDB
import StrictJSON
import Testing

/// `verify` is how a team proves the log was not rewritten: whatever is changed in the stored events, by
/// hand and behind the daemon's back, it names the first position that no longer matches the chain.
@Suite("Verify")
struct VerifyTests {
    /// The article's events, stored by a daemon that is then stopped.
    static func storedArticle() throws -> Daemon {
        let daemon = try Daemon()
        let answer = try daemon.client().appendEvents(try Repository.articleEvents())
        #expect(answer["ok"]?.boolValue == true, "\(answer)")
        #expect(daemon.stop() == 0)
        return daemon
    }

    /// Changes the stored event at `position` (its 32-byte hash, then its canonical JSON) with LMDB directly,
    /// as someone with the data directory could. `change` is handed those bytes and the stored hash of the event
    /// before it (the hash a forger chains from), and returns nil to delete the event.
    static func tamper(_ daemon: Daemon, position: UInt64, _ change: (_ stored: [UInt8], _ previousHash: [UInt8]) -> [UInt8]?) throws {
        let environment = try Environment(directory: daemon.dataDir, options: EnvironmentOptions(maxDatabases: 8))
        let events = try environment.openDatabase("events", create: false)
        func key(_ position: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: position >> (56 - 8 * UInt64($0))) } }
        try environment.write { txn in
            guard let stored = try txn.get(events, key: key(position)) else { throw HarnessError("no event at \(position)") }
            let previous = try txn.get(events, key: key(position - 1)).map { Array($0[..<32]) } ?? ChainHash.zero
            if let changed = change(Array(stored), previous) {
                try txn.put(events, key: key(position), value: changed)
            } else {
                _ = try txn.delete(events, key: key(position))
            }
        }
    }

    /// Rewrites the event at `position` the way a careful forger would: `change` edits its stored bytes, and its
    /// hash is made to match them, chained from the stored hash of the event before it.
    static func forge(_ daemon: Daemon, position: UInt64, _ change: ([UInt8]) -> [UInt8]) throws {
        try tamper(daemon, position: position) { stored, previous in
            let canonical = Array(change(stored)[32...])
            return canonical.withUnsafeBytes { ChainHash.link(previous: previous, canonical: $0) } + canonical
        }
    }

    /// The stored bytes with the first occurrence of `old` in the canonical JSON replaced by `new` (same length).
    static func replacing(_ old: String, with new: String, in stored: [UInt8]) -> [UInt8] {
        let text = String(decoding: stored[32...], as: UTF8.self)
        precondition(old.utf8.count == new.utf8.count && text.contains(old), "\(old) is not in the event")
        return Array(stored[..<32]) + Array(text.replacingOccurrences(of: old, with: new).utf8)
    }

    /// The daemon's `verify`; first, the log is verified directly in stretches of every size from one event to
    /// the whole log, which must all name the same position for the same reason (each stretch is checked on its
    /// own, against the stored hash before it).
    static func verify(_ daemon: Daemon) throws -> JSONValue {
        var reports: [Int: VerifyReport] = [:]
        do {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir, readOnly: true), gazetteer: .embedded)
            for stretch in [1, 2, 3, 5, 1 << 16] { reports[stretch] = try log.verify(stretch: stretch) }
        }
        let whole = reports[1 << 16]
        for (stretch, report) in reports.sorted(by: { $0.key < $1.key }) {
            #expect(report == whole, "verify in stretches of \(stretch): \(report), whole: \(String(describing: whole))")
        }
        try daemon.start()
        defer { daemon.stop() }
        let answer = try daemon.client().call("verify")
        #expect(answer["firstBadPosition"]?.intValue.map(UInt64.init) == whole?.firstBadPosition, "\(answer)")
        #expect(answer["checked"]?.intValue.map(UInt64.init) == whole?.checked, "\(answer)")
        return answer
    }

    @Test("an intact log verifies, up to its head")
    func intact() throws {
        let daemon = try Self.storedArticle()
        let report = try Self.verify(daemon)
        #expect(report["intact"]?.boolValue == true, "\(report)")
        #expect(report["checked"]?.intValue == 8)
        #expect(report["headPosition"]?.intValue == 8)
    }

    @Test("a changed byte in an event's text is named at its position")
    func changedText() throws {
        let daemon = try Self.storedArticle()
        try Self.tamper(daemon, position: 5) { stored, _ in Self.replacing("\"day\"", with: "\"dAy\"", in: stored) }
        let report = try Self.verify(daemon)
        #expect(report["intact"]?.boolValue == false, "\(report)")
        #expect(report["firstBadPosition"]?.intValue == 5, "\(report)")
        #expect(report["problem"]?.stringValue?.contains("do not hash to the stored hash") == true, "\(report)")
        #expect(report["checked"]?.intValue == 4)
    }

    @Test("an event rewritten with a hash that matches its new bytes breaks the link to the next one")
    func rewrittenWithItsHash() throws {
        let daemon = try Self.storedArticle()
        try Self.forge(daemon, position: 5) { Self.replacing("\"day\"", with: "\"dAy\"", in: $0) }
        let report = try Self.verify(daemon)
        #expect(report["intact"]?.boolValue == false, "\(report)")
        #expect(report["firstBadPosition"]?.intValue == 6, "\(report)")
        #expect(report["checked"]?.intValue == 5)
    }

    @Test("a prevHash or position changed inside an event, with its hash made to match, is named")
    func changedEnvelope() throws {
        let daemon = try Self.storedArticle()
        // The stored position, changed from 3 to 9, with the hash recomputed over the changed bytes.
        try Self.forge(daemon, position: 3) { Self.replacing("\"position\":3,", with: "\"position\":9,", in: $0) }
        let report = try Self.verify(daemon)
        #expect(report["firstBadPosition"]?.intValue == 3, "\(report)")
        #expect(report["problem"]?.stringValue?.contains("position or prevHash") == true, "\(report)")
    }

    @Test("a removed event is named as missing")
    func removed() throws {
        let daemon = try Self.storedArticle()
        try Self.tamper(daemon, position: 6) { _, _ in nil }
        let report = try Self.verify(daemon)
        #expect(report["intact"]?.boolValue == false, "\(report)")
        #expect(report["firstBadPosition"]?.intValue == 6, "\(report)")
        #expect(report["problem"]?.stringValue == "position 6 is missing (next is 7)", "\(report)")
    }
}
