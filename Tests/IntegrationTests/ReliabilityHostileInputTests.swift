import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One malformed request line and the error code it must get.
struct HostileCase: CustomStringConvertible {
    var name: String
    var line: [UInt8]
    var code: String
    /// The `id` the response must echo; nil when the line is too broken for the id to be read.
    var id: JSONValue?

    var description: String { name }
}

/// The hostile-input corpus: every line is refused with an error code, nothing is stored.
enum HostileCorpus {
    static let report = #"{"type":"incident-reported","occurredAt":"2022-03-01","data":{"city":"Kupiansk","kind":"demonstration"}}"#

    static func append(_ id: Int, _ events: String, extra: String = "") -> [UInt8] {
        Array(#"{"id":\#(id),"op":"append","events":[\#(events)]\#(extra)}"#.utf8)
    }

    /// A report with `data` members replaced (`"participants":-5`, …).
    static func reportWith(data: String, envelope: String = "") -> String {
        #"{"type":"incident-reported","occurredAt":"2022-03-01"\#(envelope),"data":{"city":"Kupiansk","kind":"demonstration"\#(data)}}"#
    }

    static func report(occurredAt: String) -> String {
        #"{"type":"incident-reported","occurredAt":"\#(occurredAt)","data":{"city":"Kupiansk","kind":"demonstration"}}"#
    }

    static func report(incident: String) -> String {
        #"{"type":"incident-reported","incident":"\#(incident)","occurredAt":"2022-03-01","data":{"city":"Kupiansk","kind":"demonstration"}}"#
    }

    static func tomorrow() -> String {
        let date = Date().addingTimeInterval(2 * 86_400)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }

    static var cases: [HostileCase] {
        var cases: [HostileCase] = []
        func add(_ name: String, _ line: [UInt8], _ code: String, id: JSONValue? = nil) {
            cases.append(HostileCase(name: name, line: line, code: code, id: id))
        }
        func add(_ name: String, _ text: String, _ code: String, id: JSONValue? = nil) {
            add(name, Array(text.utf8), code, id: id)
        }
        let n = { (k: Int) -> JSONValue in .int(Int64(k)) }

        // Not JSON at all, or not quite.
        add("empty line", "", "invalid_json")
        add("plain text", "hello daemon", "invalid_json")
        add("truncated object", #"{"id":1,"op":"status""#, "invalid_json")
        add("trailing garbage", #"{"id":1,"op":"status"} x"#, "invalid_json")
        add("two objects on one line", #"{"id":1,"op":"status"}{"id":2,"op":"status"}"#, "invalid_json")
        add("single quotes", "{'id':1,'op':'status'}", "invalid_json")
        add("trailing comma", #"{"id":1,"op":"status",}"#, "invalid_json")
        add("comment", #"{"id":1,"op":"status"} // hi"#, "invalid_json")
        add("NaN", #"{"id":NaN,"op":"status"}"#, "invalid_json")
        add("leading zero", #"{"id":01,"op":"status"}"#, "invalid_json")
        add("duplicate key", #"{"id":1,"op":"status","op":"append"}"#, "invalid_json")
        add("bad escape", #"{"id":1,"op":"st\atus"}"#, "invalid_json")
        add("lone surrogate escape", #"{"id":1,"op":"status","x":"\ud800"}"#, "invalid_json")
        add("unescaped tab in a string", "{\"id\":1,\"op\":\"sta\ttus\"}", "invalid_json")

        // Invalid UTF-8, in keys, values and events.
        add("invalid UTF-8 byte", Array(#"{"id":1,"op":""#.utf8) + [0xFF] + Array(#""}"#.utf8), "invalid_json")
        add("overlong encoding of /", Array(#"{"id":1,"op":"status","x":""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8), "invalid_json")
        add("UTF-8 encoded surrogate", Array(#"{"id":1,"op":"status","x":""#.utf8) + [0xED, 0xA0, 0x80] + Array(#""}"#.utf8), "invalid_json")
        add("truncated sequence", Array(#"{"id":1,"op":"status","x":""#.utf8) + [0xE2, 0x82] + Array(#""}"#.utf8), "invalid_json")
        add("invalid UTF-8 in a city",
            Array(#"{"id":1,"op":"append","events":[{"type":"incident-reported","occurredAt":"2022-03-01","data":{"city":"Kupi"#.utf8)
                + [0xC3, 0x28] + Array(#"nsk","kind":"demonstration"}}]}"#.utf8), "invalid_json")
        add("invalid UTF-8 in a key", Array(#"{"id":1,"#.utf8) + [0x22, 0xFE, 0x22] + Array(#":1,"op":"status"}"#.utf8), "invalid_json")

        // Embedded NULs.
        add("NUL after the object", Array(#"{"id":1,"op":"status"}"#.utf8) + [0], "invalid_json")
        add("NUL inside a string", Array(#"{"id":1,"op":"sta"#.utf8) + [0] + Array(#"tus"}"#.utf8), "invalid_json")
        add("NUL line", [0, 0, 0, 0], "invalid_json")
        add("escaped NUL in a city", append(2, reportWith(data: "").replacingOccurrences(of: "Kupiansk", with: #"Kupi\u0000ansk"#)), "invalid_event", id: n(2))
        add("escaped NUL in an incident id", append(3, report(incident: #"kupiansk\u0000x"#)), "invalid_event", id: n(3))

        // Not an object.
        add("top-level array", #"[{"id":1,"op":"status"}]"#, "invalid_request")
        add("top-level string", #""status""#, "invalid_request")
        add("top-level number", "42", "invalid_request")
        add("top-level null", "null", "invalid_request")
        add("top-level true", "true", "invalid_request")

        // Unknown operations and fields, wrong types of the envelope.
        add("unknown operation", #"{"id":4,"op":"drop-everything"}"#, "unknown_operation", id: n(4))
        add("operation of the wrong case", #"{"id":5,"op":"APPEND","events":[]}"#, "unknown_operation", id: n(5))
        add("operation as a number", #"{"id":6,"op":7}"#, "invalid_request", id: n(6))
        add("missing operation", #"{"id":7}"#, "invalid_request", id: n(7))
        add("unknown request field", #"{"id":8,"op":"status","verbose":true}"#, "invalid_request", id: n(8))
        add("recordedBy from the client", append(9, report, extra: #","recordedBy":"root""#), "invalid_request", id: n(9))
        add("id as an object", #"{"id":{"a":1},"op":"status"}"#, "invalid_request")
        add("id as an array", #"{"id":[1],"op":"status"}"#, "invalid_request")
        add("unknown event field", append(10, reportWith(data: "", envelope: #","position":1"#)), "invalid_event", id: n(10))
        add("hash from the client", append(11, reportWith(data: "", envelope: #","hash":"00""#)), "invalid_event", id: n(11))
        add("unknown data field", append(12, reportWith(data: #","evil":true"#)), "invalid_event", id: n(12))
        add("cityId not of a city id's form", append(13, reportWith(data: #","cityId":"Kupiansk""#)), "invalid_event", id: n(13))
        add("unknown event type", append(14, #"{"type":"incident-deleted","incident":"x"}"#), "invalid_event", id: n(14))
        add("event as a string", append(15, #""incident-reported""#), "invalid_event", id: n(15))
        add("events not an array", #"{"id":16,"op":"append","events":{"type":"incident-reported"}}"#, "invalid_request", id: n(16))
        add("no events", #"{"id":17,"op":"append","events":[]}"#, "invalid_request", id: n(17))
        add("allowNewCity as a string", append(18, report, extra: #","allowNewCity":"yes""#), "invalid_request", id: n(18))

        // Nesting far past the limit: arrays, objects, and inside an event.
        add("100,000-deep arrays", Array(String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).map { $0.asciiValue! }, "invalid_json")
        add("100,000-deep objects", Array((String(repeating: #"{"":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_000)).utf8), "invalid_json")
        add("100,000 unclosed brackets", Array(String(repeating: "[", count: 100_000).utf8), "invalid_json")
        add("deep nesting inside an event",
            append(19, reportWith(data: #","tags":"# + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))), "invalid_json")
        add("nesting within the limit but wrong shape", append(20, reportWith(data: #","tags":[[["x"]]]"#)), "invalid_event", id: n(20))

        // Numbers beyond any integer type, and out of Double's range.
        add("participants beyond Int64", append(21, reportWith(data: #","participants":123456789012345678901234567890"#)), "invalid_event", id: n(21))
        add("participants beyond UInt64", append(22, reportWith(data: #","participants":{"low":18446744073709551616,"high":18446744073709551617}"#)), "invalid_event", id: n(22))
        add("participants as 1e30", append(23, reportWith(data: #","participants":{"low":1e30}"#)), "invalid_event", id: n(23))
        add("participants as 1e400", append(24, reportWith(data: #","participants":1e400"#)), "invalid_json")
        add("participants as -1e400", append(25, reportWith(data: #","participants":-1e400"#)), "invalid_json")
        add("a 10,000-digit number", append(26, reportWith(data: #","participants":"# + String(repeating: "9", count: 10_000))), "invalid_json")
        add("id beyond Double", #"{"id":1e999,"op":"status"}"#, "invalid_json")
        add("read from beyond Int64", #"{"id":27,"op":"read","from":99999999999999999999}"#, "invalid_request", id: n(27))
        add("read with a negative from", #"{"id":28,"op":"read","from":-1}"#, "invalid_request", id: n(28))
        add("read with limit 0", #"{"id":29,"op":"read","limit":0}"#, "invalid_request", id: n(29))
        add("read with a huge limit", #"{"id":30,"op":"read","limit":4294967296}"#, "invalid_request", id: n(30))
        add("read with a fractional limit", #"{"id":31,"op":"read","limit":2.5}"#, "invalid_request", id: n(31))
        add("killed beyond Int64", append(32, #"{"type":"response-observed","incident":"kupiansk-x","data":{"by":"x","responses":["none"],"killed":9223372036854775808}}"#), "invalid_event", id: n(32))
        add("expectedVersion beyond Int32", append(33, reportWith(data: "", envelope: #","expectedVersion":4294967296"#)), "invalid_event", id: n(33))
        add("latitude out of range", append(34, reportWith(data: #","coordinates":{"lat":91,"lon":0}"#)), "invalid_event", id: n(34))

        // Negative and inverted participant counts.
        add("negative participants", append(35, reportWith(data: #","participants":-5"#)), "invalid_event", id: n(35))
        add("negative low", append(36, reportWith(data: #","participants":{"low":-1,"high":3}"#)), "invalid_event", id: n(36))
        add("inverted range", append(37, reportWith(data: #","participants":{"low":10,"high":5}"#)), "invalid_event", id: n(37))
        add("fractional participants", append(38, reportWith(data: #","participants":2.5"#)), "invalid_event", id: n(38))
        add("participants as a string", append(39, reportWith(data: #","participants":"150""#)), "invalid_event", id: n(39))
        add("negative killed", append(40, #"{"type":"response-observed","incident":"kupiansk-x","data":{"by":"x","responses":["none"],"killed":-1}}"#), "invalid_event", id: n(40))

        // Dates in the future, impossible or malformed.
        add("a date in 2999", append(41, report(occurredAt: "2999-01-01")), "invalid_event", id: n(41))
        add("the day after tomorrow", append(42, report(occurredAt: tomorrow())), "invalid_event", id: n(42))
        add("a date-time an hour ahead", append(43, report(occurredAt: Self.isoMinute(Date().addingTimeInterval(3600)))), "invalid_event", id: n(43))
        add("30 February", append(44, report(occurredAt: "2022-02-30")), "invalid_event", id: n(44))
        add("month 13", append(45, report(occurredAt: "2022-13-01")), "invalid_event", id: n(45))
        add("a word for a date", append(46, report(occurredAt: "yesterday")), "invalid_event", id: n(46))
        add("year 99999", append(47, report(occurredAt: "99999-01-01")), "invalid_event", id: n(47))
        add("offset +99:00", append(48, report(occurredAt: "2022-03-01T12:00+99:00")), "invalid_event", id: n(48))

        // Incident ids that could escape anything path-like, or are not ids at all.
        for (k, id) in ["a/b", "../../etc/passwd", "kupiansk.2022", ".", "..", "/", "a\\\\b", "Kupiansk", "-leading-dash", "tab\\tinside", "", String(repeating: "a", count: 129), "ку"].enumerated() {
            add("incident id \(id.prefix(20))", append(50 + k, report(incident: id)), "invalid_event", id: n(50 + k))
        }
        add("incident query with a slash", #"{"id":70,"op":"incident","incident":"../../etc/passwd"}"#, "unknown_incident", id: n(70))
        add("incident query with a dot", #"{"id":71,"op":"incident","incident":"."}"#, "unknown_incident", id: n(71))
        add("incident query without an id", #"{"id":72,"op":"incident"}"#, "invalid_request", id: n(72))

        // Oversized text, in every field that takes text.
        let huge = String(repeating: "K", count: 100_000)
        add("a 100,000-character city", append(73, reportWith(data: "").replacingOccurrences(of: "Kupiansk", with: huge)), "invalid_event", id: n(73))
        add("a 100,000-character city query", #"{"id":74,"op":"city","city":"\#(huge)"}"#, "unknown_city", id: n(74))
        add("a 100,000-character city filter", #"{"id":75,"op":"read","city":"\#(huge)"}"#, "unknown_city", id: n(75))
        add("an empty city query", #"{"id":76,"op":"city","city":""}"#, "unknown_city", id: n(76))
        add("an empty city filter", #"{"id":77,"op":"read","city":""}"#, "unknown_city", id: n(77))
        add("a 100,000-character description", append(78, reportWith(data: #","description":"\#(huge)""#)), "invalid_event", id: n(78))
        add("a 100,000-character source", append(79, reportWith(data: "", envelope: #","sources":[{"name":"\#(huge)"}]"#)), "invalid_event", id: n(79))
        add("a 100,000-character event id", append(80, reportWith(data: "", envelope: #","eventId":"\#(huge)""#)), "invalid_event", id: n(80))
        add("a 100,000-character operation", #"{"id":81,"op":"\#(huge)"}"#, "unknown_operation", id: n(81))
        add("a 100,000-character field name", #"{"id":82,"op":"status","\#(huge)":1}"#, "invalid_request", id: n(82))
        add("a 100,000-character id", #"{"id":"\#(huge)","op":"nope"}"#, "unknown_operation", id: .string(huge))
        add("100 tags", append(83, reportWith(data: #","tags":["# + Array(repeating: #""t""#, count: 100).joined(separator: ",") + "]")), "invalid_event", id: n(83))
        add("1,000 sources", append(84, reportWith(data: "", envelope: #","sources":["# + Array(repeating: #"{"name":"s"}"#, count: 1000).joined(separator: ",") + "]")), "invalid_event", id: n(84))
        add("30,000 unknown fields", Array(("{\"id\":85,\"op\":\"status\"," + (0..<30_000).map { "\"f\($0)\":0" }.joined(separator: ",") + "}").utf8), "invalid_request", id: n(85))

        // Huge arrays of events: past the per-append limit, and within it with every event bad.
        add("10,001 events", append(86, Array(repeating: "{}", count: 10_001).joined(separator: ",")), "invalid_request", id: n(86))
        add("10,000 empty events", append(87, Array(repeating: "{}", count: 10_000).joined(separator: ",")), "invalid_event", id: n(87))
        add("3,000 good events and one bad", append(88, Array(repeating: report, count: 3_000).joined(separator: ",") + ",{}"), "invalid_event", id: n(88))

        // Rules of the log: refused inside the write transaction, nothing stored.
        add("an unknown city", append(89, reportWith(data: "").replacingOccurrences(of: "Kupiansk", with: "Atlantis")), "unknown_city", id: n(89))
        add("a new city that gives no id", append(90, reportWith(data: "").replacingOccurrences(of: "Kupiansk", with: "!!!"), extra: #","allowNewCity":true"#), "invalid_event", id: n(90))
        add("a response to an unknown incident", append(91, #"{"type":"response-observed","incident":"kupiansk-never","data":{"by":"x","responses":["none"]}}"#), "unknown_incident", id: n(91))
        add("the same event id twice with different content", append(92, [
            reportWith(data: "", envelope: #","eventId":"11111111-2222-4333-8444-555555555555""#),
            reportWith(data: #","description":"other""#, envelope: #","eventId":"11111111-2222-4333-8444-555555555555""#),
        ].joined(separator: ",")), "duplicate_event_id", id: n(92))
        add("a good report, then a response to an unknown incident", append(93, report + "," + #"{"type":"response-observed","incident":"nowhere","data":{"by":"x","responses":["none"]}}"#), "unknown_incident", id: n(93))
        return cases
    }

    static func isoMinute(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        return String(format: "%04d-%02d-%02dT%02d:%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!)
    }
}

@Suite("Reliability: hostile input", .serialized)
struct ReliabilityHostileInputTests {
    static let config = "[daemon]\nmax_line_bytes = \"512KiB\"\n"

    /// Loads the article so that refusals are checked against a log that holds something.
    static func seeded(_ daemon: Daemon) throws -> JSONValue {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/article.jsonl").path
        let loaded = try daemon.ctl(["append", "--format", "json", example])
        #expect(loaded.status == 0, "\(loaded.stderr)")
        return try daemon.client().status()
    }

    @Test("every line of the corpus gets its error code; the connection, other connections and the daemon keep serving; nothing is stored")
    func corpusOneByOne() throws {
        let daemon = try startDaemon(config: Self.config)
        let before = try Self.seeded(daemon)
        let cities = try daemon.ctl(["cities", "--format", "json"]).stdout
        let client = try daemon.client()
        let bystander = try daemon.client()
        for entry in HostileCorpus.cases {
            try client.write(entry.line + [0x0A])
            let response = try client.receive()
            #expect(response["ok"] == false, "\(entry): \(response.canonicalString().prefix(300))")
            #expect(response.errorCode == entry.code, "\(entry): \(response.canonicalString().prefix(300))")
            #expect(response["error"]?["message"]?.stringValue?.isEmpty == false, "\(entry): a message for people")
            if let id = entry.id { #expect(response["id"] == id, "\(entry): the id is echoed") }
            // The same connection keeps serving, and so does another one.
            #expect(try client.call("status")["position"] == before["position"], "\(entry): nothing stored")
            #expect(try bystander.call("status").isOK, "\(entry): another connection")
        }
        let after = try client.status()
        #expect(after["position"] == before["position"])
        #expect(after["headHash"] == before["headHash"])
        #expect(try daemon.ctl(["cities", "--format", "json"]).stdout == cities, "the projections did not change")
        try checkLogIntegrity(daemon, client)
        #expect(try daemon.client().status().isOK, "a new connection is served")
        #expect(daemon.stop() == 0, "the daemon stops cleanly: \(daemon.log.suffix(500))")
    }

    @Test("the whole corpus pipelined in one write: one answer per line, in order")
    func corpusPipelined() throws {
        let daemon = try startDaemon(config: Self.config)
        let client = try daemon.client()
        let cases = HostileCorpus.cases
        var bytes: [UInt8] = []
        for entry in cases { bytes += entry.line + [0x0A] }
        bytes += Array("{\"id\":\"last\",\"op\":\"status\"}\n".utf8)
        // Write from another thread: the daemon reads at its own pace while this one reads the answers.
        let socket = client.fd
        let payload = bytes
        let writer = Thread {
            var offset = 0
            while offset < payload.count {
                let n = payload[offset...].withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { if errno == EINTR { continue }; return }
                offset += n
            }
        }
        writer.start()
        for entry in cases {
            let response = try client.receive()
            #expect(response.errorCode == entry.code, "\(entry): \(response.canonicalString().prefix(300))")
            if let id = entry.id { #expect(response["id"] == id, "\(entry): in order") }
        }
        let last = try client.receive()
        #expect(last.isOK && last["id"] == "last", "\(last.canonicalString().prefix(300))")
        #expect(last["position"] == 0, "nothing stored")
        #expect(daemon.stop() == 0)
    }

    @Test("lines over max_line_bytes: refused whether they arrive whole or streamed, never buffered, and the connection goes on")
    func overLongLines() throws {
        let limit = 1024
        let daemon = try startDaemon(config: "[daemon]\nmax_line_bytes = \(limit)\n")
        let client = try daemon.client()
        func status(padding: Int, id: Int) -> [UInt8] {
            // {"id":N,"op":"status"} with spaces inside the object, to exactly the length wanted.
            let head = Array(#"{"id":\#(id),"op":"status""#.utf8)
            return head + Array(repeating: 0x20, count: padding - head.count - 1) + [UInt8(ascii: "}")]
        }
        // Exactly at the limit: served. One byte over, arriving in a single write with its newline: refused.
        try client.write(status(padding: limit, id: 1) + [0x0A])
        #expect(try client.receive()["id"] == 1)
        try client.write(status(padding: limit + 1, id: 2) + [0x0A])
        let refused = try client.receive()
        #expect(refused.errorCode == "line_too_long", "\(refused.canonicalString())")
        #expect(refused["error"]?["limit"]?.intValue == Int64(limit))
        // Over-long lines between good ones, in one write: answers in order.
        try client.write(status(padding: 100, id: 3) + [0x0A] + status(padding: 5000, id: 4) + [0x0A] + status(padding: 100, id: 5) + [0x0A])
        #expect(try client.receive()["id"] == 3)
        #expect(try client.receive().errorCode == "line_too_long")
        #expect(try client.receive()["id"] == 5)

        // 64 MiB without a newline, streamed: dropped as it arrives, so the daemon's memory stays flat.
        let rssBefore = residentBytes(of: daemon.pid)
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 1 << 20)
        for _ in 0..<64 { try client.write(chunk) }
        try client.write([0x0A] + status(padding: 50, id: 6) + [0x0A])
        let streamed = try client.receive()
        #expect(streamed.errorCode == "line_too_long")
        #expect(try client.receive()["id"] == 6)
        let rssAfter = residentBytes(of: daemon.pid)
        if !underSanitizer {
            #expect(rssAfter - rssBefore < 32 << 20, "the daemon grew from \(rssBefore >> 20) to \(rssAfter >> 20) MiB")
        }
        // Another client was never affected, and a last line without its newline is still answered.
        let other = try daemon.client()
        #expect(try other.call("status").isOK)
        try other.write(Array(#"{"id":"tail","op":"status"}"#.utf8))
        shutdown(other.fd, Int32(SHUT_WR))
        #expect(try other.receive()["id"] == "tail")
        #expect(try client.status()["position"] == 0)
        #expect(daemon.stop() == 0)
    }
}

@Suite("Reliability: half-closed clients")
struct ReliabilityHalfCloseTests {
    @Test("a client that sends its requests and shuts down its side (socat at the end of its input) gets every answer, then EOF")
    func answersAfterShutdown() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        var bytes: [UInt8] = []
        for k in 1...20 {
            let events: JSONValue = [WireEvent.report(incident: "half-\(k)")]
            bytes += JSONValue.object(["id": .int(Int64(k)), "op": "append", "events": events]).canonicalBytes() + [0x0A]
        }
        bytes += Array(#"{"id":21,"op":"status"}"#.utf8)  // the last one without its newline
        try client.write(bytes)
        shutdown(client.fd, Int32(SHUT_WR))
        for k in 1...20 {
            let response = try client.receive()
            #expect(response.isOK && response["id"] == .int(Int64(k)), "\(response.canonicalString())")
        }
        let last = try client.receive()
        #expect(last.isOK && last["id"] == 21, "\(last.canonicalString())")
        #expect(client.peerClosed(within: 10 * deadlineScale), "the daemon closes the connection once everything is answered")
        let probe = try daemon.client()
        try waitFor("the daemon to count only the probe connection") { try probe.status()["connections"] == 1 }
    }
}
