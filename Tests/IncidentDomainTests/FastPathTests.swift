import Foundation
import Gazetteer
import IncidentDomain
import StrictJSON
import Testing

// The append path's shortcuts are held here to the general code they replace: the fast wire decoder to
// JSONReader + ProposedEvent(json:), the direct canonical writers to JSONValue.canonicalBytes(), and the stored
// incident projection to a round trip.

private let now = Timestamp(microseconds: 1_764_000_000_000_000)  // 2025-11-24

private struct Rng {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

private let texts: [String] = [
    "in front of the city hall", "Kup’yansk", "Мелітополь", "About 150 residents, some holding \"flags\".",
    "line one\nline two\ttabbed", " leading space", "trailing space ", "\u{00A0}nbsp around\u{00A0}", "é", "a\\b/c",
    "🇺🇦 emoji", "x",
    // Around the limits (200 scalars for a name, 1,000 for a location), in ASCII and in two-byte scalars.
    String(repeating: "a", count: 200), String(repeating: "b", count: 201), String(repeating: "é", count: 200),
    String(repeating: "é", count: 201), String(repeating: "é", count: 100) + String(repeating: "c", count: 100),
    String(repeating: "d", count: 1_000), String(repeating: "e", count: 1_001),
    // What needs attention, or is not ASCII, at each place in and around an eight-byte word.
    "1234567\"", "12345678\"9", "123456789\\", "ab\ncdefgh", "abcdefg\t", "1234567é", "12345678é", "é1234567",
    "123456789012345é", "1234567890123456é", "abcdefghijklmnopq",
]

/// A valid wire event of a random type with a random selection of its optional fields.
private func wireEvent(_ r: inout Rng) -> JSONValue {
    var o: [String: JSONValue] = [:]
    let type = r.pick(["incident-reported", "response-observed", "outcome-updated"])
    o["type"] = .string(type)
    if r.chance(70) { o["eventId"] = .string(r.chance(20) ? "3F2A5C1E-8B7D-4E6F-9A0B-1C2D3E4F5A6B" : "3f2a5c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b") }
    if type != "incident-reported" || r.chance(70) { o["incident"] = .string(r.pick(["kupiansk-2022-03-01-city-hall", "a", "x-1-2"])) }
    if type == "incident-reported" || r.chance(50) {
        o["occurredAt"] = .string(r.chance(5) ? "2022-03-01 14:30Z" : r.pick(["2022-03-01", "2022-03", "2022-03-01T14:30Z", "2022-03-01T14:30:15.123+02:00", " 2022-03-02 "]))
    }
    if r.chance(40) { o["precision"] = .string(r.pick(["day", "week", "month", "minute", "hour"])) }
    if r.chance(70) {
        o["sources"] = .array((0..<(1 + r.below(3))).map { _ in
            var s: [String: JSONValue] = ["name": .string(r.pick(texts))]
            if r.chance(50) { s["verification"] = .string(r.pick(["verified", "unverified", "disputed", "debunked"])) }
            if r.chance(30) { s["url"] = .string(r.pick(["https://example.org/a", "mailto:x@y", "no-scheme"])) }
            if r.chance(20) { s["publishedAt"] = .string(r.pick(["2022-03-01", "2022-13-01", "2022-03-01T14:30Z", "2022-03-01T14:30:15+02:00"])) }
            if r.chance(4) { s["publishedAt"] = .string(r.pick(["2099-01-01", "2022-03-01 14:30Z", "2025-11-24T16:06Z"])) }
            if r.chance(30) { s["verifiedBy"] = .string(r.pick(texts)) }
            if r.chance(30) { s["method"] = .string("video verification") }
            if r.chance(10) { s["sha256"] = .string(r.chance(50) ? String(repeating: "Ab", count: 32) : "abc") }
            return .object(s)
        })
    }
    if r.chance(10) { o["expectedVersion"] = .int(Int64(r.below(4))) }
    var d: [String: JSONValue] = [:]
    switch type {
    case "incident-reported":
        d["city"] = .string(r.pick(["Kup’yansk", "Melitopoli", "Berdyansk", " Kupiansk", "Nowhere"]))
        d["kind"] = .string(r.pick(["demonstration", "blockade", "symbolic-act", "riot"]))
        if r.chance(50) { d["location"] = .string(r.pick(texts)) }
        if r.chance(50) { d["description"] = .string(r.pick(texts)) }
        if r.chance(50) { d["targets"] = .string(r.pick(texts)) }
        if r.chance(50) {
            d["participants"] = r.pick([
                ["low": 150, "high": 150], ["low": 5], ["low": 10, "high": 5], 150, 0, -3, ["low": 1, "high": 2, "x": 3],
                ["low": 5.0, "high": 7], 2.5,
            ])
        }
        if r.chance(30) { d["tags"] = .array((0..<r.below(4)).map { _ in .string(r.pick(["convoy", "z-marking", " flag "])) }) }
        if r.chance(20) { d["coordinates"] = r.pick([["lat": 49.71, "lon": 37.6156], ["lat": 91, "lon": 0], ["lat": 1]]) }
        // The city id an export writes out, and ids of another form.
        if r.chance(20) {
            d["cityId"] = .string(r.pick(["kupiansk", "nova-kakhovka", "a--b", "Kupiansk", " kupiansk", "", "kup iansk", String(repeating: "a", count: 65)]))
        }
    case "response-observed":
        d["by"] = .string(r.pick(["Russian armed forces", "Rosgvardia"]))
        d["responses"] = .array((0..<(r.below(3))).map { _ in .string(r.pick(["tear-gas", "warning-shots", "detentions", "water", "none"])) })
        if r.chance(30) { d["detained"] = .int(Int64(r.below(40))) }
        if r.chance(20) { d["killed"] = r.pick([.int(1), .double(2.0), .int(-1)]) }
        if r.chance(20) { d["injured"] = .int(3) }
        if r.chance(50) { d["description"] = .string(r.pick(texts)) }
    default:
        d["status"] = .string(r.pick(["unknown", "ongoing", "dispersed", "suppressed", "won"]))
        if r.chance(50) { d["verification"] = .string(r.pick(["verified", "disputed"])) }
        if r.chance(30) { d["verifiedBy"] = .string(r.pick(texts)) }
        if r.chance(30) { d["method"] = .string("geolocation") }
        if r.chance(30) {
            d["corrections"] = r.pick([
                ["participants": ["low": 10, "high": 20]], ["kind": "blockade"], ["city": "Kupiansk"], [:],
                ["location": .null], ["tags": ["a", "b"]], ["participants": .null],
            ])
        }
        if r.chance(50) { d["note"] = .string(r.pick(texts)) }
    }
    o["data"] = .object(d)
    return .object(o)
}

/// One random change that usually makes the event invalid, or leaves it as it is.
private func mutate(_ event: JSONValue, _ r: inout Rng) -> JSONValue {
    guard case .object(var o) = event else { return event }
    let replacements: [JSONValue] = [.null, .int(1), .double(1.5), .string(""), .string("  "), .bool(true), .array([]), .object([:]), .string("\u{1}")]
    switch r.below(6) {
    case 0:
        if let key = o.keys.sorted().randomElement(using: &r) { o[key] = nil }
    case 1:
        if let key = o.keys.sorted().randomElement(using: &r) { o[key] = r.pick(replacements) }
    case 2:
        if case .object(var d)? = o["data"], let key = d.keys.sorted().randomElement(using: &r) {
            d[key] = r.chance(50) ? nil : r.pick(replacements)
            o["data"] = .object(d)
        }
    case 3:
        o[r.pick(["unknown", "recordedBy", "cityId", "position"])] = .string("x")
    case 4:
        if case .object(var d)? = o["data"] {
            d[r.pick(["cityId", "extra", "city"])] = .string("kupiansk")
            o["data"] = .object(d)
        }
    default:
        break
    }
    return .object(o)
}

extension Rng: RandomNumberGenerator {}

/// JSON text of `value` with random key order, random whitespace and random (valid) escapes.
private func serialize(_ value: JSONValue, _ r: inout Rng, into out: inout String) {
    func space() { if r.chance(15) { out += r.pick([" ", "\n", "\t", "  "]) } }
    switch value {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .int(let i): out += "\(i)"
    case .double(let d): out += r.chance(50) ? "\(d)" : (d == d.rounded() ? "\(Int64(d)).0" : "\(d)")
    case .string(let s): string(s, &r, &out)
    case .array(let a):
        out += "["
        for (n, e) in a.enumerated() {
            if n > 0 { out += "," }
            space(); serialize(e, &r, into: &out); space()
        }
        out += "]"
    case .object(let o):
        out += "{"
        var keys = o.keys.sorted()
        keys.shuffle(using: &r)
        for (n, k) in keys.enumerated() {
            if n > 0 { out += "," }
            space(); string(k, &r, &out, escapeSometimes: false); space(); out += ":"; space()
            serialize(o[k]!, &r, into: &out); space()
        }
        out += "}"
    }
}

private func string(_ s: String, _ r: inout Rng, _ out: inout String, escapeSometimes: Bool = true) {
    out += "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += r.chance(50) ? "\\n" : "\\u000a"
        case "\t": out += "\\t"
        case "/" where escapeSometimes && r.chance(50): out += "\\/"
        default:
            if scalar.value < 0x20 {
                out += "\\u00" + String(scalar.value, radix: 16).leftPad(2)
            } else if escapeSometimes && scalar.value > 0x7F && scalar.value < 0x10000 && r.chance(30) {
                out += "\\u" + String(scalar.value, radix: 16).leftPad(4)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    out += "\""
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}

/// The general path, as the daemon takes it: JSONReader, the request's members (the id as written), then each event.
private func slowDecode(_ bytes: [UInt8]) -> (id: JSONText, events: [ProposedEvent], allowNewCity: Bool)? {
    guard let (value, idBytes) = bytes.withUnsafeBytes({ try? JSONReader().read($0, locating: "id") }),
        case .object(var members) = value
    else { return nil }
    switch members.removeValue(forKey: "id") ?? .null {
    case .null, .int, .string, .double: break
    default: return nil
    }
    let id = idBytes.map { range in bytes.withUnsafeBytes { JSONText(validated: UnsafeRawBufferPointer(rebasing: $0[range])) } } ?? .null
    guard members.removeValue(forKey: "op") == .string("append") else { return nil }
    guard members.keys.allSatisfy({ ["events", "allowNewCity"].contains($0) }) else { return nil }
    guard case .array(let wire)? = members["events"], !wire.isEmpty, wire.count <= 10_000 else { return nil }
    var allow = false
    if let flag = members["allowNewCity"] {
        guard let b = flag.boolValue else { return nil }
        allow = b
    }
    var events: [ProposedEvent] = []
    for w in wire {
        guard let e = try? ProposedEvent(json: w, now: now) else { return nil }
        events.append(e)
    }
    return (id, events, allow)
}

@Suite("Append fast paths")
struct FastPathTests {
    @Test("the fast wire decoder accepts only what the general path accepts, and decodes it the same")
    func fastDecoderAgreesWithGeneralPath() throws {
        var r = Rng(state: 20_220_301)
        var fastAccepted = 0
        var slowAccepted = 0
        for n in 0..<9_000 {
            var events = [wireEvent(&r)]
            if r.chance(10) { events.append(wireEvent(&r)) }
            if n % 3 == 1 { events = events.map { mutate($0, &r) } }
            var request: [String: JSONValue] = ["op": "append", "events": .array(events)]
            request["id"] = r.pick([.int(Int64(n)), .string("req-\(n)"), .null, .double(1.5), .string("é/\"\(n)"), .double(2.5e15)])
            if r.chance(10) { request["allowNewCity"] = r.pick([.bool(true), .bool(false), .null]) }
            if r.chance(2) { request["op"] = "status" }
            if r.chance(2) { request["extra"] = 1 }
            var text = ""
            serialize(.object(request), &r, into: &text)
            if r.chance(3) { text = text.replacingOccurrences(of: "{\"type\"", with: "{\"type\":\"x\",\"type\"") }
            var bytes = Array(text.utf8)
            // Bytes no JSON text may hold where they land (a control character in a string) or that are not UTF-8.
            if r.chance(15), !bytes.isEmpty {
                let at = r.below(bytes.count)
                let byte = r.pick([0xFF, 0xC3, 0x80, 0xBF, 0xE2, 0xF0, 0x00, 0x1F, 0x7F] as [UInt8])
                if r.chance(50) { bytes.insert(byte, at: at) } else { bytes[at] = byte }
            }
            let slow = slowDecode(bytes)
            let shown = String(decoding: bytes, as: UTF8.self)
            let fast = bytes.withUnsafeMutableBytes { FastWireDecoder.decodeAppend(UnsafeRawBufferPointer($0), now: now) }
            if let fast {
                fastAccepted += 1
                let expected = try #require(slow, "the fast path accepted what the general path refuses: \(shown)")
                #expect(fast.id == expected.id, "\(shown)")
                #expect(fast.events == expected.events, "\(shown)")
                #expect(fast.allowNewCity == expected.allowNewCity, "\(shown)")
            }
            if slow != nil { slowAccepted += 1 }
            bytes.removeAll()
        }
        // The fast path must take the common case, not just be safe.
        #expect(slowAccepted > 1_000)
        #expect(Double(fastAccepted) > 0.9 * Double(slowAccepted), "fast \(fastAccepted) of \(slowAccepted)")
    }

    @Test("a number past its field's range, however large, is refused naming the field and the bound it passes; the fast decoder leaves it to the general path")
    func numbersPastTheirRange() throws {
        let huge = "123456789012345678901234567890"
        let report = #"{"type":"incident-reported","occurredAt":"2022-03-01","data":{"city":"Kupiansk","kind":"demonstration","participants":PEOPLE}}"#
        let response = #"{"type":"response-observed","incident":"k-1","expectedVersion":VERSION,"data":{"by":"x","responses":["none"],"killed":KILLED}}"#
        let cases: [(event: String, field: String, problem: String)] = [
            (response.replacingOccurrences(of: "VERSION", with: huge).replacingOccurrences(of: "KILLED", with: "1"),
             "expectedVersion", "it is larger than 2147483647, the most it may be"),
            (response.replacingOccurrences(of: "VERSION", with: "1").replacingOccurrences(of: "KILLED", with: "-" + huge),
             "data.killed", "it is smaller than 0, the least it may be"),
            (response.replacingOccurrences(of: "VERSION", with: "1").replacingOccurrences(of: "KILLED", with: "1e30"),
             "data.killed", "it is larger than 100000000, the most it may be"),
            (report.replacingOccurrences(of: "PEOPLE", with: huge), "data.participants", "it is larger than 100000000, the most it may be"),
            (report.replacingOccurrences(of: "PEOPLE", with: #"{"low":10,"high":\#(huge)}"#),
             "data.participants.high", "it is larger than 100000000, the most it may be"),
        ]
        for (event, field, problem) in cases {
            let line = Array(#"{"id":1,"op":"append","events":[\#(event)]}"#.utf8)
            #expect(line.withUnsafeBytes { FastWireDecoder.decodeAppend($0, now: now) } == nil, "\(event)")
            let json = try JSONReader().read(event)
            #expect {
                _ = try ProposedEvent(json: json, now: now)
            } throws: { error in
                guard let error = error as? IncidentError else { return false }
                return error.code == .invalidEvent && error.details["field"] == .string(field)
                    && error.message == "\(field): the number sent is out of range: \(problem)"
            }
        }
        // A number with a fraction is not a count of people either, whatever its form.
        let fraction = try JSONReader().read(report.replacingOccurrences(of: "PEOPLE", with: "2.5"))
        #expect {
            _ = try ProposedEvent(json: fraction, now: now)
        } throws: { error in
            (error as? IncidentError)?.message == "data.participants: expected a whole number in 0...100000000, or {low, high}"
        }
    }

    @Test("the direct canonical writers give the bytes of JSONValue.canonicalBytes()")
    func canonicalWritersAgree() throws {
        var r = Rng(state: 7)
        var checked = 0
        for n in 0..<3_000 {
            let wire = wireEvent(&r)
            guard let proposal = try? ProposedEvent(json: wire, now: now) else { continue }
            #expect(proposal.contentBytes == proposal.contentJSON.canonicalBytes())
            // Written into an array's storage, sometimes too small for it, and the parts where they lie.
            let parts = proposal.contentParts(capacity: r.chance(30) ? r.below(200) : 1_024)
            #expect(parts.content == proposal.contentBytes)
            // A report's cityId is no part of the content: the writer puts in the one the admission decides.
            #expect(Array(parts.content[parts.data]) == (proposal.contentJSON["data"] ?? .null).canonicalBytes())
            if proposal.cityId != nil { #expect(proposal.data.json.canonicalBytes() != Array(parts.content[parts.data])) }
            #expect(parts.data.lowerBound == 8 && parts.content.starts(with: Array("{\"data\":".utf8)))
            if proposal.sources.isEmpty {
                #expect(parts.sources == 0..<0)
            } else {
                #expect(Array(parts.content[parts.sources]) == JSONValue.array(proposal.sources.map(\.json)).canonicalBytes())
            }
            if case .reported(let report) = proposal.data {
                var city: [UInt8] = Array("{\"city\":".utf8)
                JSONValue.writeString(report.city, into: &city)
                #expect(Array(parts.content[parts.data.lowerBound..<parts.cityIdOffset]) == city)
            } else {
                #expect(parts.cityIdOffset == 0)
            }
            var data = proposal.data
            if case .reported(var report) = data, r.chance(80) {
                report.cityId = "kupiansk"
                data = .reported(report)
            }
            let event = RecordedEvent(
                position: UInt64(n + 1), eventId: "3f2a5c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b", incident: proposal.incident ?? "x",
                version: Int64(1 + n % 3), occurredAt: proposal.occurredAt ?? "2022-03-01", precision: proposal.precision ?? .day,
                recordedAt: Timestamp(microseconds: now.microseconds + Int64(n) * 1_234_567),
                recordedBy: Recorder(uid: UInt32(n), user: r.pick(["root", "analyst \"x\"", ""])), sources: proposal.sources,
                data: data, prevHash: String(repeating: "0f", count: 32))
            #expect(event.canonicalBytes() == event.json.canonicalBytes())
            checked += 1
        }
        #expect(checked > 500)
        // Text no client may send (control characters, as a stored event may hold after damage), long and short,
        // and negative and large integers: written into an array's storage as the JSONValue form writes them.
        let odd = ["\u{0}\u{1}\u{1F}\u{7F}\"\\\u{8}\u{C}\r", String(repeating: "é\u{2}\"", count: 700), "", "ok"]
        let wires: [JSONValue] = [
            ["type": "response-observed", "incident": "k1",
             "data": ["by": "x", "responses": ["tear-gas"], "killed": 100_000_000, "injured": 12]],
            ["type": "incident-reported", "occurredAt": "2022-03-01", "sources": [["name": "a", "verification": "verified"]],
             "data": ["city": "x", "kind": "strike", "participants": ["low": 0, "high": 10], "coordinates": ["lat": 49.71, "lon": -37.6]]],
            ["type": "outcome-updated", "incident": "k1", "data": ["status": "dispersed", "corrections": ["kind": "blockade"]]],
        ]
        for (n, text) in odd.enumerated() {
            for wire in wires {
                var proposal = try ProposedEvent(json: wire, now: now)
                proposal.incident = text
                proposal.occurredAt = n == 2 ? nil : text
                if !proposal.sources.isEmpty { proposal.sources[0].name = text; proposal.sources[0].method = text }
                switch proposal.data {
                case .responded(var response):
                    response.description = text
                    response.by = text
                    response.detained = -9_223_372_036_854_775_807 - 1
                    response.injured = Int64.max
                    proposal.data = .responded(response)
                case .reported(var report):
                    report.city = text
                    report.tags = [text, text]
                    proposal.data = .reported(report)
                case .outcome(var outcome):
                    outcome.note = text
                    proposal.data = .outcome(outcome)
                }
                for capacity in [0, 1, 100, 1_024, 10_000] {
                    #expect(proposal.contentParts(capacity: capacity).content == proposal.contentJSON.canonicalBytes())
                }
            }
        }
        for micros: Int64 in [0, 1, -1, 999_999, -1_000_001, 253_402_300_799_999_999, 1_764_000_000_123_456] {
            var out: [UInt8] = []
            Timestamp(microseconds: micros).writeISO8601(quoted: false, into: &out)
            #expect(String(decoding: out, as: UTF8.self) == Timestamp(microseconds: micros).description)
        }
    }

    @Test("an event id is normalized from its bytes as the plain rule says, on random and mutated ids")
    func eventIDsFromBytes() {
        // The rule as written: 36 bytes, dashes at 8, 13, 18 and 23, hexadecimal digits elsewhere, lowercased.
        func expected(_ bytes: [UInt8]) -> String? {
            guard bytes.count == 36 else { return nil }
            var out: [UInt8] = []
            for (i, b) in bytes.enumerated() {
                if [8, 13, 18, 23].contains(i) {
                    guard b == UInt8(ascii: "-") else { return nil }
                    out.append(b)
                } else if let digit = "0123456789abcdef".utf8.firstIndex(of: b) ?? "0123456789ABCDEF".utf8.firstIndex(of: b) {
                    out.append("0123456789abcdef".utf8[digit])
                } else {
                    return nil
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
        var r = Rng(state: 36)
        let valid = Array("3F2a5c1e-8b7d-4E6f-9a0b-1c2d3e4f5A6B".utf8)
        // Near-misses of each digit: letters past f, the bytes 0x20 away from a digit, dashes and controls.
        let odd: [UInt8] = Array("gGzZ`@/:-_ \u{10}\u{19}\u{0}".utf8) + [0x7F, 0x80, 0xC3, 0xFF, 0x0D, 0x46 | 0x80, 0x66 | 0x80]
        for _ in 0..<20_000 {
            var bytes = valid
            for _ in 0..<r.below(3) {
                let at = r.below(bytes.count)
                bytes[at] = r.chance(50) ? r.pick(odd) : r.pick(Array("0123456789abcdefABCDEF-".utf8))
            }
            if r.chance(5) { bytes.insert(r.pick(odd), at: r.below(bytes.count)) }
            if r.chance(5) { bytes.removeLast() }
            let got = bytes.withUnsafeBytes { EventID.normalize(utf8: $0) }
            #expect(got == expected(bytes), "\(bytes)")
        }
    }

    @Test("the stored incident projection reads back as it was written")
    func incidentStateRoundTrip() throws {
        let admission = Admission(gazetteer: .embedded)
        let projector = Projector(gazetteer: .embedded)
        var store = InMemoryProjections()
        let events: [JSONValue] = [
            ["type": "incident-reported", "incident": "k1", "occurredAt": "2022-03-01",
             "sources": [["name": "a", "verification": "verified"]],
             "data": ["city": "Kup’yansk", "kind": "demonstration", "participants": ["low": 150, "high": 150], "location": "square"]],
            ["type": "response-observed", "incident": "k1", "data": ["by": "x", "responses": ["tear-gas", "detentions"], "detained": 3]],
            ["type": "outcome-updated", "incident": "k1",
             "data": ["status": "dispersed", "verification": "disputed", "corrections": ["participants": ["low": 90], "kind": "blockade"]]],
            ["type": "incident-reported", "incident": "m1", "occurredAt": "2022-03", "data": ["city": "Melitopoli", "kind": "strike"]],
        ]
        for (n, json) in events.enumerated() {
            let proposal = try ProposedEvent(json: json, now: now)
            let admitted = try admission.admit(proposal, allowNewCity: false, recordedAt: now, store: &store)
            let event = RecordedEvent(
                position: UInt64(n + 1), eventId: EventID.random(), incident: admitted.incident, version: admitted.version,
                occurredAt: admitted.occurredAt, precision: admitted.precision, recordedAt: now,
                recordedBy: Recorder(uid: 0, user: "root"), sources: proposal.sources, data: admitted.data,
                prevHash: String(repeating: "0", count: 64))
            try projector.apply(event, to: &store)
        }
        for state in store.incidents.values {
            let decoded = try IncidentState(encoded: state.encoded(), incident: state.incident)
            #expect(decoded.json(report: state.report, current: state.current) == state.json)
            #expect(decoded.current.kind == state.current.kind && decoded.current.participants == state.current.participants)
            #expect(decoded.report.city == state.report.city && decoded.report.cityId == state.report.cityId)
            #expect(decoded.encoded() == state.encoded())
            var damaged = state.encoded()
            damaged.removeLast()
            #expect(throws: IncidentError.self) { try IncidentState(encoded: damaged, incident: state.incident) }
        }
        #expect(store.incidents["k1"]?.current.kind == .blockade)
        for city in store.cities.values {
            #expect(city.canonicalBytes() == city.json.canonicalBytes())
        }
        var empty = CityState(cityId: "x", name: "X", region: nil, population: nil)
        #expect(empty.canonicalBytes() == empty.json.canonicalBytes())
        empty.firstIncidentAt = "2022-03-01"
        empty.aliasesSeen = ["b", "a", "Ä"]
        #expect(empty.canonicalBytes() == empty.json.canonicalBytes())
    }

    @Test("stored integers take one byte per seven bits and read back, negative ones too; a cut one is refused")
    func storedIntegers() {
        let values: [Int64] = [0, 1, 127, 128, 16_383, 16_384, 1_646_128_800_000_001, .max, -1, .min]
        for value in values {
            var bytes: [UInt8] = []
            StoredInteger.append(value, to: &bytes)
            #expect(bytes.count == StoredInteger.size(value), "\(value)")
            var written = [UInt8](repeating: 0xAA, count: bytes.count)
            var end = 0
            written.withUnsafeMutableBytes { StoredInteger.write(value, to: $0, at: &end) }
            #expect(written == bytes && end == bytes.count, "\(value)")
            var offset = 0
            #expect(bytes.withUnsafeBytes { StoredInteger.read($0, at: &offset) } == value, "\(value)")
            #expect(offset == bytes.count)
            offset = 0
            let cut = Array(bytes.dropLast())
            #expect(cut.withUnsafeBytes { StoredInteger.read($0, at: &offset) } == nil, "\(value)")
        }
        #expect(StoredInteger.size(0) == 1 && StoredInteger.size(127) == 1 && StoredInteger.size(128) == 2)
        #expect(StoredInteger.size(-1) == 10)
    }
}
