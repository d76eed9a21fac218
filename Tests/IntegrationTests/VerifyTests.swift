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

    /// `tools/check-chain.py`, Python's standard library and nothing of incidentd's, on `events`.
    static func checkChain(_ events: String, expecting heads: [String] = []) throws -> CommandResult {
        try runCommand(
            "/usr/bin/env", ["python3", Repository.root + "/tools/check-chain.py"] + heads.flatMap { ["--expect-head", $0] },
            stdin: events)
    }

    @Test("the chain checks without incidentd: tools/check-chain.py, from PROTOCOL.md's rule alone, finds the head status publishes from what events serves (every kind of text and number), with that head, and names the first position of the served events changed, left out or re-chained, and a published head they do not hold")
    func checkedWithoutIncidentd() throws {
        let daemon = try Daemon()
        let texts = #"{"type":"incident-reported","occurredAt":"2022-03-02T10:15+02:00","precision":"minute","data":{"city":"Купянск","kind":"demonstration","location":"площа \"Соборна\" \\ back\\slash\ttab\nnew line \u007f\u2028","description":"עברית, 🇺🇦, é, 'quote', </script>","coordinates":{"lat":49.70,"lon":50.0},"participants":{"low":100,"high":2000},"tags":["a","b/c","ü"]},"sources":[{"name":"Telegram / канал","url":"https://t.me/x?a=1&b=2","verification":"unverified","sha256":"ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"}]}"#
        let numbers = #"{"type":"incident-reported","occurredAt":"2022-03-03","data":{"city":"Melitopol","kind":"blockade","coordinates":{"lat":-0.00001,"lon":1e-7}}}"#
        let articleLines = try String(contentsOfFile: Repository.articlePath, encoding: .utf8)
        let appended = try daemon.ctl(["append", "-"], stdin: articleLines + texts + "\n" + numbers + "\n")
        #expect(appended.status == 0, "\(appended)")
        let status = try daemon.client().call("status")
        let head = "\(status["position"]?.intValue ?? -1):\(status["headHash"]?.stringValue ?? "")"
        #expect(head.hasPrefix("10:"), "\(status)")
        let served = try daemon.ctl(["events", "--limit", "0", "--format", "json"])
        #expect(served.status == 0, "\(served)")
        var lines = served.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        try #require(lines.count == 10, "\(served)")
        let third = try JSONReader().read(lines[2])["hash"]?.stringValue ?? ""
        let checked = try Self.checkChain(served.stdout, expecting: [head, "3:" + third, "0:" + String(repeating: "0", count: 64)])
        #expect(checked.status == 0 && checked.stdout == head + "\n", "\(checked)")
        let changed = lines.enumerated().map { $0.offset == 8 ? $0.element.replacingOccurrences(of: "Соборна", with: "Соборнa") : $0.element }
        let changedRun = try Self.checkChain(changed.joined(separator: "\n") + "\n")
        #expect(changedRun.status == 1 && changedRun.stderr.contains("position 9: its bytes hash to "), "\(changedRun)")
        let leftOut = lines.enumerated().filter { $0.offset != 5 }.map(\.element)
        let leftOutRun = try Self.checkChain(leftOut.joined(separator: "\n") + "\n")
        #expect(leftOutRun.status == 1 && leftOutRun.stderr.contains("position 7 where 6 was next"), "\(leftOutRun)")
        // Position 7 claims another prevHash, its hash made to match it, chained from the true one before it.
        let sixth = try JSONReader().read(lines[5])["hash"]?.stringValue ?? ""
        let seventh = try #require(lines[6].range(of: #","hash":"[0-9a-f]{64}","#, options: .regularExpression))
        let relinked = lines[6].replacingCharacters(in: seventh, with: ",").replacingOccurrences(of: sixth, with: String(repeating: "0", count: 64))
        let relinkedHash = Array(relinked.utf8).withUnsafeBytes { ChainHash.link(previous: ChainHash.bytes(hex: sixth) ?? [], canonical: $0) }
        let claimed = lines.enumerated().map {
            $0.offset == 6
                ? relinked.replacingOccurrences(of: #","incident":"#, with: #","hash":"\#(relinkedHash.map { String(format: "%02x", $0) }.joined())","incident":"#)
                : $0.element
        }
        let claimedRun = try Self.checkChain(claimed.joined(separator: "\n") + "\n")
        #expect(claimedRun.status == 1 && claimedRun.stderr.contains("position 7: prevHash 0000"), "\(claimedRun)")
        let pastRun = try Self.checkChain(lines.prefix(7).joined(separator: "\n") + "\n", expecting: [head])
        #expect(pastRun.status == 1 && pastRun.stderr.contains("the published head at position 10 is past the last event read, 7"), "\(pastRun)")

        // Rewritten in the store by a careful forger, every prevHash and hash from position 5 on made to match:
        // the chain holds, and only the published head shows the rewrite.
        #expect(daemon.stop() == 0)
        for position in UInt64(5)...10 {
            try Self.tamper(daemon, position: position) { stored, previous in
                var text = String(decoding: stored[32...], as: UTF8.self)
                if position == 5 { text = text.replacingOccurrences(of: "\"day\"", with: "\"dAy\"") }
                let link = try! #require(text.range(of: #"(?<="prevHash":")[0-9a-f]{64}"#, options: .regularExpression))
                text.replaceSubrange(link, with: previous.map { String(format: "%02x", $0) }.joined())
                let canonical = Array(text.utf8)
                return canonical.withUnsafeBytes { ChainHash.link(previous: previous, canonical: $0) } + canonical
            }
        }
        try daemon.start()
        let forged = try daemon.ctl(["events", "--limit", "0", "--format", "json"])
        lines = forged.stdout.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        #expect(lines.count == 10, "\(forged)")
        let alone = try Self.checkChain(forged.stdout)
        #expect(alone.status == 0 && alone.stdout != head + "\n", "\(alone)")
        let againstHead = try Self.checkChain(forged.stdout, expecting: [head])
        #expect(againstHead.status == 1 && againstHead.stderr.contains("position 10: hash "), "\(againstHead)")
        #expect(againstHead.stderr.contains("not the one published for it"), "\(againstHead)")
        #expect(daemon.stop() == 0)
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
