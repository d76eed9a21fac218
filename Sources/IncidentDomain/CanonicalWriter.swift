import StrictJSON

// Direct canonical encoders: each writes exactly the bytes `x.json.canonicalBytes()` gives, members in sorted
// key order, without building dictionaries and sorting their keys. The append path writes every event and its
// content digest this way; `CanonicalWriterTests` holds each one to the JSONValue form.

/// Where the canonical encoders write: an array, or a ``BoundedByteWriter`` over an array's storage, which the
/// append path writes an event's content into without an array's checks on each append.
protocol CanonicalOutput {
    /// The bytes written so far.
    var count: Int { get }
    mutating func append(_ byte: UInt8)
    /// `,"key":`, without the comma when `first`.
    mutating func key(_ key: StaticString, first: Bool)
    mutating func string(_ s: String)
    mutating func int(_ i: Int64)
    mutating func ascii(_ s: StaticString)
    /// A value without a direct encoder (a double, an outcome's corrections), in its canonical form.
    mutating func json(_ value: JSONValue)
}

extension CanonicalOutput {
    @inline(__always) mutating func key(_ key: StaticString) { self.key(key, first: false) }
}

extension Array: CanonicalOutput where Element == UInt8 {
    /// `,"key":` (without the comma when `first`), appended in one piece: appended a byte at a time, each byte
    /// would check the array's uniqueness and capacity again.
    @inline(__always) mutating func key(_ key: StaticString, first: Bool) {
        let count = key.utf8CodeUnitCount
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: count + 4) { member in
            var n = 0
            if !first {
                member[n] = UInt8(ascii: ",")
                n += 1
            }
            member[n] = UInt8(ascii: "\"")
            for i in 0..<count { member[n + 1 + i] = key.utf8Start[i] }
            member[n + 1 + count] = UInt8(ascii: "\"")
            member[n + 2 + count] = UInt8(ascii: ":")
            append(contentsOf: UnsafeBufferPointer(rebasing: member[..<(n + 3 + count)]))
        }
    }

    @inline(__always) mutating func string(_ s: String) { JSONValue.writeString(s, into: &self) }
    @inline(__always) mutating func int(_ i: Int64) { JSONValue.writeInteger(i, into: &self) }
    @inline(__always) mutating func ascii(_ s: StaticString) {
        append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }
    @inline(__always) mutating func json(_ value: JSONValue) { value.write(into: &self) }
}

extension BoundedByteWriter: CanonicalOutput {
    @inline(__always) mutating func key(_ key: StaticString, first: Bool) {
        if !first { append(UInt8(ascii: ",")) }
        append(UInt8(ascii: "\""))
        append(key)
        append(UInt8(ascii: "\""))
        append(UInt8(ascii: ":"))
    }

    @inline(__always) mutating func string(_ s: String) { appendJSONString(s) }
    @inline(__always) mutating func int(_ i: Int64) { appendInteger(i) }
    @inline(__always) mutating func ascii(_ s: StaticString) { append(s) }
    mutating func json(_ value: JSONValue) {
        var bytes: [UInt8] = []
        value.write(into: &bytes)
        bytes.withUnsafeBytes { append($0) }
    }
}

extension Source {
    public func writeCanonical(into out: inout [UInt8]) { writeCanonical(to: &out) }

    func writeCanonical<Out: CanonicalOutput>(to out: inout Out) {
        out.append(UInt8(ascii: "{"))
        var first = true
        if let method { out.key("method", first: first); out.string(method); first = false }
        out.key("name", first: first); out.string(name)
        if let publishedAt { out.key("publishedAt"); out.string(publishedAt) }
        if let sha256 { out.key("sha256"); out.string(sha256) }
        if let url { out.key("url"); out.string(url) }
        out.key("verification"); out.string(verification.rawValue)
        if let verifiedBy { out.key("verifiedBy"); out.string(verifiedBy) }
        out.append(UInt8(ascii: "}"))
    }

    /// The canonical array of `sources`.
    public static func writeCanonical(_ sources: [Source], into out: inout [UInt8]) { writeCanonical(sources, to: &out) }

    static func writeCanonical<Out: CanonicalOutput>(_ sources: [Source], to out: inout Out) {
        out.append(UInt8(ascii: "["))
        for (n, source) in sources.enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            source.writeCanonical(to: &out)
        }
        out.append(UInt8(ascii: "]"))
    }
}

extension PeopleRange {
    public func writeCanonical(into out: inout [UInt8]) { writeCanonical(to: &out) }

    func writeCanonical<Out: CanonicalOutput>(to out: inout Out) {
        out.append(UInt8(ascii: "{"))
        out.key("high", first: true); out.int(high)
        out.key("low"); out.int(low)
        out.append(UInt8(ascii: "}"))
    }
}

extension Coordinates {
    public func writeCanonical(into out: inout [UInt8]) { writeCanonical(to: &out) }

    func writeCanonical<Out: CanonicalOutput>(to out: inout Out) {
        out.append(UInt8(ascii: "{"))
        out.key("lat", first: true); out.json(.double(lat))
        out.key("lon"); out.json(.double(lon))
        out.append(UInt8(ascii: "}"))
    }
}

extension ReportData {
    public func writeCanonical(into out: inout [UInt8]) {
        var cityEnd = 0
        writeCanonical(to: &out, cityEnd: &cityEnd)
    }

    /// The canonical bytes, noting in `cityEnd` where the `city` member ends in `out`: where `,"cityId":…`
    /// goes when the daemon adds the canonical city to a report sent without it.
    public func writeCanonical(into out: inout [UInt8], cityEnd: inout Int) { writeCanonical(to: &out, cityEnd: &cityEnd) }

    /// The canonical bytes; without `cityId` when not `withCityId`, as a proposal's content leaves it out.
    func writeCanonical<Out: CanonicalOutput>(to out: inout Out, cityEnd: inout Int, withCityId: Bool = true) {
        out.append(UInt8(ascii: "{"))
        out.key("city", first: true); out.string(city)
        cityEnd = out.count
        if withCityId, let cityId { out.key("cityId"); out.string(cityId) }
        if let coordinates { out.key("coordinates"); coordinates.writeCanonical(to: &out) }
        if let description { out.key("description"); out.string(description) }
        out.key("kind"); out.string(kind.rawValue)
        if let location { out.key("location"); out.string(location) }
        if let participants { out.key("participants"); participants.writeCanonical(to: &out) }
        if !tags.isEmpty {
            out.key("tags")
            out.append(UInt8(ascii: "["))
            for (n, tag) in tags.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                out.string(tag)
            }
            out.append(UInt8(ascii: "]"))
        }
        if let targets { out.key("targets"); out.string(targets) }
        out.append(UInt8(ascii: "}"))
    }
}

extension ResponseData {
    public func writeCanonical(into out: inout [UInt8]) { writeCanonical(to: &out) }

    func writeCanonical<Out: CanonicalOutput>(to out: inout Out) {
        out.append(UInt8(ascii: "{"))
        out.key("by", first: true); out.string(by)
        if let description { out.key("description"); out.string(description) }
        if let detained { out.key("detained"); out.int(detained) }
        if let injured { out.key("injured"); out.int(injured) }
        if let killed { out.key("killed"); out.int(killed) }
        out.key("responses")
        out.append(UInt8(ascii: "["))
        for (n, kind) in responses.enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            out.string(kind.rawValue)
        }
        out.append(UInt8(ascii: "]"))
        out.append(UInt8(ascii: "}"))
    }
}

extension OutcomeData {
    public func writeCanonical(into out: inout [UInt8]) { writeCanonical(to: &out) }

    func writeCanonical<Out: CanonicalOutput>(to out: inout Out) {
        out.append(UInt8(ascii: "{"))
        var first = true
        if let corrections { out.key("corrections", first: true); out.json(.object(corrections)); first = false }
        if let method { out.key("method", first: first); out.string(method); first = false }
        if let note { out.key("note", first: first); out.string(note); first = false }
        out.key("status", first: first); out.string(status.rawValue)
        if let verification { out.key("verification"); out.string(verification.rawValue) }
        if let verifiedBy { out.key("verifiedBy"); out.string(verifiedBy) }
        out.append(UInt8(ascii: "}"))
    }
}

extension EventData {
    public func writeCanonical(into out: inout [UInt8]) { writeCanonical(to: &out) }

    func writeCanonical<Out: CanonicalOutput>(to out: inout Out) {
        switch self {
        case .reported(let d): var cityEnd = 0; d.writeCanonical(to: &out, cityEnd: &cityEnd)
        case .responded(let d): d.writeCanonical(to: &out)
        case .outcome(let d): d.writeCanonical(to: &out)
        }
    }
}

extension Recorder {
    public func writeCanonical(into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        out.key("uid", first: true); out.int(Int64(uid))
        out.key("user"); out.string(user)
        out.append(UInt8(ascii: "}"))
    }
}

extension ProposedEvent {
    /// ``contentBytes``, written directly.
    public func writeContent(into out: inout [UInt8]) {
        var parts = ContentParts.Offsets()
        writeContent(to: &out, &parts)
    }

    /// ``contentBytes``, and where in them lie the parts of the stored event that the writer splices from them.
    /// Written into `capacity` bytes on the stack (at most 1,024, which Swift always allocates there) and copied into
    /// an array of their size; when the content is longer, it is written again, into an array of exactly its size.
    public func contentParts(capacity: Int = 1_024) -> ContentParts {
        var parts = ContentParts.Offsets()
        // `Array(unsafeUninitializedCapacity:)` is not specialized by the standard library: it looks the array's
        // storage class up at run time, more instructions than copying the content once from the stack.
        var needed = 0
        var content = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: min(max(capacity, 0), 1_024)) { scratch in
            var out = BoundedByteWriter(scratch)
            writeContent(to: &out, &parts)
            needed = out.count
            return out.fits ? Array(UnsafeBufferPointer(rebasing: scratch[..<out.count])) : []
        }
        if content.count != needed {
            content = [UInt8](unsafeUninitializedCapacity: needed) { memory, initialized in
                var out = BoundedByteWriter(memory)
                writeContent(to: &out, &parts)
                // The same event writes the same bytes: anything else would be stored as its content.
                precondition(out.count == needed, "an event's content was written with two lengths")
                initialized = out.count
            }
        }
        return ContentParts(
            content: content, data: parts.dataStart..<parts.dataEnd, cityIdOffset: parts.cityEnd,
            sources: parts.sourcesStart..<parts.sourcesEnd)
    }

    func writeContent<Out: CanonicalOutput>(to out: inout Out, _ parts: inout ContentParts.Offsets) {
        out.append(UInt8(ascii: "{"))
        out.key("data", first: true)
        parts.dataStart = out.count
        switch data {
        // A report's cityId, when the proposal names it, is compared apart from the content (the stored event
        // holds the one the daemon resolved, or this one) and put in where the writer puts a resolved one.
        case .reported(let d): d.writeCanonical(to: &out, cityEnd: &parts.cityEnd, withCityId: false)
        case .responded(let d): d.writeCanonical(to: &out)
        case .outcome(let d): d.writeCanonical(to: &out)
        }
        parts.dataEnd = out.count
        if let incident { out.key("incident"); out.string(incident) }
        if let occurredAt { out.key("occurredAt"); out.string(occurredAt) }
        if let precision { out.key("precision"); out.string(precision.rawValue) }
        if !sources.isEmpty {
            out.key("sources")
            parts.sourcesStart = out.count
            Source.writeCanonical(sources, to: &out)
            parts.sourcesEnd = out.count
        }
        out.key("type"); out.string(type.rawValue)
        out.append(UInt8(ascii: "}"))
    }
}

/// A proposed event's ``ProposedEvent/contentBytes`` and where the parts the writer splices into the stored event
/// lie in them.
public struct ContentParts: Sendable {
    /// ``ProposedEvent/contentBytes``: `{"data":…`, then the other members in canonical order.
    public var content: [UInt8]
    /// The canonical `data` as proposed: a report's without `cityId`, which the daemon adds (the one it resolved, or
    /// the one the proposal names). It starts right after `{"data":`, the start of `content`.
    public var data: Range<Int>
    /// For a report, where in `content` the `cityId` member goes (right after `city`); 0 otherwise.
    public var cityIdOffset: Int
    /// The canonical `sources` array; empty (`0..<0`) when the event has none.
    public var sources: Range<Int>

    struct Offsets {
        var dataStart = 0
        var dataEnd = 0
        var cityEnd = 0
        var sourcesStart = 0
        var sourcesEnd = 0
    }
}

extension RecordedEvent {
    /// The canonical bytes of ``json``: what the hash chain covers.
    public func canonicalBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        writeCanonical(into: &out)
        return out
    }

    public func writeCanonical(into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        out.key("data", first: true); data.writeCanonical(into: &out)
        out.key("eventId"); out.string(eventId)
        out.key("incident"); out.string(incident)
        out.key("occurredAt"); out.string(occurredAt)
        out.key("position"); out.int(Int64(position))
        out.key("precision"); out.string(precision.rawValue)
        out.key("prevHash"); out.string(prevHash)
        out.key("recordedAt"); recordedAt.writeISO8601(quoted: true, into: &out)
        out.key("recordedBy"); recordedBy.writeCanonical(into: &out)
        out.key("schema"); out.int(schema)
        if !sources.isEmpty { out.key("sources"); Source.writeCanonical(sources, into: &out) }
        out.key("type"); out.string(type.rawValue)
        out.key("version"); out.int(version)
        out.append(UInt8(ascii: "}"))
    }
}

extension Timestamp {
    /// ``description`` (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), appended as bytes, optionally in quotes.
    public func writeISO8601(quoted: Bool, into out: inout [UInt8]) {
        let seconds = microseconds >= 0 ? microseconds / 1_000_000 : (microseconds - 999_999) / 1_000_000
        let micros = microseconds - seconds * 1_000_000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (y, m, d) = Timestamp.civil(fromDays: days)
        guard (0...9999).contains(y) else {
            // Outside four-digit years the padding rules of `description` apply; take the slow road.
            if quoted { out.append(UInt8(ascii: "\"")) }
            out.append(contentsOf: slowDescription.utf8)
            if quoted { out.append(UInt8(ascii: "\"")) }
            return
        }
        @inline(__always) func digits(_ value: Int64, _ width: Int, _ out: inout [UInt8]) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(v / divisor))
                v %= divisor
                divisor /= 10
            }
        }
        if quoted { out.append(UInt8(ascii: "\"")) }
        digits(y, 4, &out); out.append(UInt8(ascii: "-"))
        digits(m, 2, &out); out.append(UInt8(ascii: "-"))
        digits(d, 2, &out); out.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2, &out); out.append(UInt8(ascii: ":"))
        digits(secondOfDay % 3600 / 60, 2, &out); out.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2, &out); out.append(UInt8(ascii: "."))
        digits(micros, 6, &out); out.append(UInt8(ascii: "Z"))
        if quoted { out.append(UInt8(ascii: "\"")) }
    }
}

extension CityState {
    /// The canonical bytes of ``json``, written directly: the `city` document as stored and as served.
    public func canonicalBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        writeCanonical(into: &out)
        return out
    }

    public func writeCanonical(into out: inout [UInt8]) {
        func counts<E: StoredEnumeration & RawRepresentable>(_ d: CaseCounts<E>, _ sortedCases: [E], _ out: inout [UInt8])
        where E.RawValue == String {
            out.append(UInt8(ascii: "{"))
            for (n, e) in sortedCases.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                out.string(e.rawValue)
                out.append(UInt8(ascii: ":"))
                out.int(d[e])
            }
            out.append(UInt8(ascii: "}"))
        }
        func optionalString(_ s: String?, _ out: inout [UInt8]) {
            if let s { out.string(s) } else { out.ascii("null") }
        }
        out.append(UInt8(ascii: "{"))
        out.key("aliasesSeen", first: true)
        out.append(UInt8(ascii: "["))
        for (n, alias) in aliasesSeen.sorted().enumerated() {
            if n > 0 { out.append(UInt8(ascii: ",")) }
            out.string(alias)
        }
        out.append(UInt8(ascii: "]"))
        out.key("casualties")
        out.append(UInt8(ascii: "{"))
        out.key("detained", first: true); out.int(detained)
        out.key("injured"); out.int(injured)
        out.key("killed"); out.int(killed)
        out.append(UInt8(ascii: "}"))
        out.key("cityId"); out.string(cityId)
        out.key("firstIncidentAt"); optionalString(firstIncidentAt, &out)
        out.key("incidents")
        out.append(UInt8(ascii: "{"))
        out.key("byKind", first: true); counts(incidentsByKind, SortedCases.kinds, &out)
        out.key("total"); out.int(incidents)
        out.append(UInt8(ascii: "}"))
        out.key("lastIncidentAt"); optionalString(lastIncidentAt, &out)
        out.key("lastPosition"); out.int(Int64(lastPosition))
        out.key("name"); out.string(name)
        out.key("openIncidents"); out.int(openIncidents)
        out.key("outcomes"); counts(outcomes, SortedCases.statuses, &out)
        out.key("participants")
        out.append(UInt8(ascii: "{"))
        out.key("counted", first: true); out.int(participantsCounted)
        out.key("high"); out.int(participantsHigh)
        out.key("low"); out.int(participantsLow)
        out.append(UInt8(ascii: "}"))
        out.key("population")
        if let population { out.int(population) } else { out.ascii("null") }
        out.key("region"); optionalString(region, &out)
        out.key("responses"); counts(responses, SortedCases.responses, &out)
        out.key("verification"); counts(verification, SortedCases.verifications, &out)
        out.append(UInt8(ascii: "}"))
    }
}

/// Each enumeration's cases in canonical key order (by the UTF-8 bytes of their raw values).
enum SortedCases {
    static func sorted<E: RawRepresentable & CaseIterable>(_: E.Type) -> [E] where E.RawValue == String {
        E.allCases.sorted { $0.rawValue.utf8.lexicographicallyPrecedes($1.rawValue.utf8) }
    }

    static let kinds = sorted(IncidentKind.self)
    static let statuses = sorted(OutcomeStatus.self)
    static let responses = sorted(ResponseKind.self)
    static let verifications = sorted(Verification.self)
}
