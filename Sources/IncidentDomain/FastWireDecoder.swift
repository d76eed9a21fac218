import Gazetteer
import StrictJSON

#if canImport(Glibc)
import Glibc
#endif

/// An `append` request line as the fast decoder reads it.
public struct FastAppendLine: Sendable {
    /// The request's `id` as the client wrote it, echoed in the response.
    public var id: JSONText
    public var events: [ProposedEvent]
    public var allowNewCity: Bool
}

/// Decodes the common request, `{"id":…,"op":"append","events":[…]}`, straight from its bytes into
/// ``ProposedEvent``s, without the ``JSONValue`` tree and the member dictionaries the general path builds (which
/// cost more than everything else an append does).
///
/// It accepts only what the general path (``JSONReader``, then ``ProposedEvent/init(json:now:)``) accepts, and
/// gives the same events for it: each field goes through the same rules, in the same helpers where they exist.
/// Anything it is not sure of — an error of any kind, an unknown or repeated member, an escaped key, a number
/// that is not a plain integer where one is expected — makes it answer `nil`, and the caller then takes the
/// general path, which also produces the exact error. `FastWireDecoderTests` holds the two paths to this.
public enum FastWireDecoder {
    /// The request line, or nil when it is not an append this decoder is sure of.
    public static func decodeAppend(_ line: UnsafeRawBufferPointer, now: Timestamp) -> FastAppendLine? {
        var s = JSONScanner(line)
        // Where strings with escapes are unescaped: most lines have none, so it is allocated only when one does.
        var buffer: [UInt8] = []
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        var id = JSONText.null
        var seen: UInt8 = 0
        var isAppend = false
        var events: [ProposedEvent] = []
        var allowNewCity = false
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "events") {
                guard seen & 1 == 0, s.consume(UInt8(ascii: "[")) else { return nil }
                seen |= 1
                if s.consume(UInt8(ascii: "]")) { return nil }  // no events: refused by the general path
                repeat {
                    guard events.count < 10_000, let event = decodeEvent(&s, &buffer, now: now) else { return nil }
                    events.append(event)
                } while s.consume(UInt8(ascii: ","))
                guard s.consume(UInt8(ascii: "]")) else { return nil }
            } else if equals(key, "id") {
                guard seen & 2 == 0 else { return nil }
                seen |= 2
                // Kept as its text stands in the line, once read as valid.
                let next = s.peek()
                let start = s.index
                switch next {
                case UInt8(ascii: "\"")?:
                    guard s.string(buffer: &buffer) != nil else { return nil }
                case UInt8(ascii: "n")?:
                    guard s.null() else { return nil }
                default:
                    guard s.number() != nil else { return nil }
                }
                id = JSONText(validated: UnsafeRawBufferPointer(rebasing: line[start..<s.index]))
            } else if equals(key, "op") {
                guard seen & 4 == 0, s.withStringBytes(buffer: &buffer, { equals($0, "append") ? true : nil }) != nil
                else { return nil }
                seen |= 4
                isAppend = true
            } else if equals(key, "allowNewCity") {
                guard seen & 8 == 0, case .bool(let flag)? = s.literal() else { return nil }
                seen |= 8
                allowNewCity = flag
            } else {
                return nil
            }
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), s.atEnd(), isAppend, seen & 1 != 0 else { return nil }
        return FastAppendLine(id: id, events: events, allowNewCity: allowNewCity)
    }

    // MARK: Events

    static func decodeEvent(_ s: inout JSONScanner, _ buffer: inout [UInt8], now: Timestamp) -> ProposedEvent? {
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        if s.consume(UInt8(ascii: "}")) { return nil }
        var seen: UInt16 = 0
        var type: EventType?
        var eventId: String?
        var incident: String?
        var occurredAt: String?
        var precision: Precision?
        var sources: [Source] = []
        var expectedVersion: Int64?
        var eventData: EventData?
        // `data` before `type`: its bytes, read once the type is known.
        var dataBeforeType: UnsafeRawBufferPointer?
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt16
            if equals(key, "type") {
                bit = 1
                if !s.null() {
                    guard let t = enumeration(&s, &buffer, EventType.self) else { return nil }
                    type = t
                }
            } else if equals(key, "eventId") {
                bit = 2
                if !s.null() {
                    guard let normalized = eventID(&s, &buffer) else { return nil }
                    eventId = normalized
                }
            } else if equals(key, "incident") {
                bit = 4
                if !s.null() {
                    guard let text = incidentID(&s, &buffer) else { return nil }
                    incident = text
                }
            } else if equals(key, "occurredAt") {
                bit = 8
                if !s.null() {
                    guard let text = text(&s, &buffer, maxLength: 64) else { return nil }
                    occurredAt = text
                }
            } else if equals(key, "precision") {
                bit = 16
                if !s.null() {
                    guard let p = enumeration(&s, &buffer, Precision.self) else { return nil }
                    precision = p
                }
            } else if equals(key, "sources") {
                bit = 32
                if !s.null() {
                    guard let list = decodeSources(&s, &buffer, now: now) else { return nil }
                    sources = list
                }
            } else if equals(key, "expectedVersion") {
                bit = 64
                if !s.null() {
                    guard let v = s.integer(), (0...Int64(Int32.max)).contains(v) else { return nil }
                    expectedVersion = v
                }
            } else if equals(key, "data") {
                bit = 128
                if !s.null() {
                    if let type {
                        guard let read = decodeData(&s, &buffer, type: type) else { return nil }
                        eventData = read
                    } else {
                        guard let raw = s.skipValue() else { return nil }
                        dataBeforeType = raw
                    }
                }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let type else { return nil }
        if incident == nil && type != .incidentReported { return nil }
        if let text = occurredAt {
            guard let parsed = ParsedDate.parseProposed(text), !parsed.liesInFuture(now: now) else { return nil }
            if let precision, precision.isFiner(than: parsed.finestPrecision) { return nil }
            if precision == nil { precision = parsed.finestPrecision == .minute ? .minute : parsed.finestPrecision }
        } else if type == .incidentReported || precision != nil {
            return nil
        }
        if let dataBeforeType {
            var d = JSONScanner(dataBeforeType)
            guard let read = decodeData(&d, &buffer, type: type), d.atEnd() else { return nil }
            eventData = read
        }
        guard let eventData else { return nil }
        return ProposedEvent(
            eventId: eventId, incident: incident, occurredAt: occurredAt, precision: precision, sources: sources,
            data: eventData, expectedVersion: expectedVersion)
    }

    /// An event's `data` as `type` has it.
    static func decodeData(_ s: inout JSONScanner, _ buffer: inout [UInt8], type: EventType) -> EventData? {
        switch type {
        case .incidentReported: decodeReport(&s, &buffer).map(EventData.reported)
        case .responseObserved: decodeResponse(&s, &buffer).map(EventData.responded)
        case .outcomeUpdated: decodeOutcome(&s, &buffer).map(EventData.outcome)
        }
    }

    static func decodeSources(_ s: inout JSONScanner, _ buffer: inout [UInt8], now: Timestamp) -> [Source]? {
        guard s.consume(UInt8(ascii: "[")) else { return nil }
        var sources: [Source] = []
        if s.consume(UInt8(ascii: "]")) { return sources }
        // Room for two at once: an event seldom names more, and often two, which would otherwise move the first.
        sources.reserveCapacity(2)
        repeat {
            guard sources.count < Limits.sources, let source = decodeSource(&s, &buffer, now: now) else { return nil }
            sources.append(source)
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "]")) else { return nil }
        return sources
    }

    static func decodeSource(_ s: inout JSONScanner, _ buffer: inout [UInt8], now: Timestamp) -> Source? {
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        if s.consume(UInt8(ascii: "}")) { return nil }
        var seen: UInt8 = 0
        var name: String?
        var source = Source(name: "")
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt8
            let isNull = s.null()
            if equals(key, "name") {
                bit = 1
                if !isNull { name = text(&s, &buffer, maxLength: Limits.shortText); guard name != nil else { return nil } }
            } else if equals(key, "url") {
                bit = 2
                if !isNull {
                    guard let url = text(&s, &buffer, maxLength: Limits.url), Source.looksLikeURI(url), !Source.isScript(url) else { return nil }
                    source.url = url
                }
            } else if equals(key, "publishedAt") {
                bit = 4
                if !isNull {
                    guard let at = text(&s, &buffer, maxLength: 64), let parsed = ParsedDate.parseProposed(at),
                        !parsed.liesInFuture(now: now)
                    else { return nil }
                    source.publishedAt = at
                }
            } else if equals(key, "verifiedBy") {
                bit = 8
                if !isNull {
                    guard let by = text(&s, &buffer, maxLength: Limits.shortText) else { return nil }
                    source.verifiedBy = by
                }
            } else if equals(key, "method") {
                bit = 16
                if !isNull {
                    guard let method = text(&s, &buffer, maxLength: Limits.shortText) else { return nil }
                    source.method = method
                }
            } else if equals(key, "verification") {
                bit = 32
                if !isNull {
                    guard let v = enumeration(&s, &buffer, Verification.self) else { return nil }
                    source.verification = v
                }
            } else if equals(key, "sha256") {
                bit = 64
                if !isNull {
                    guard let hash = text(&s, &buffer, maxLength: 64)?.lowercased(), hash.utf8.count == 64,
                        hash.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
                    else { return nil }
                    source.sha256 = hash
                }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let name else { return nil }
        source.name = name
        return source
    }

    // MARK: Data

    static func decodeReport(_ s: inout JSONScanner, _ buffer: inout [UInt8]) -> ReportData? {
        guard s.consume(UInt8(ascii: "{")) else { return nil }
        if s.consume(UInt8(ascii: "}")) { return nil }
        var seen: UInt16 = 0
        var city: String?
        var cityId: String?
        var kind: IncidentKind?
        var location: String?
        var coordinates: Coordinates?
        var description: String?
        var participants: PeopleRange?
        var targets: String?
        var tags: [String] = []
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt16
            let isNull = s.null()
            if equals(key, "city") {
                bit = 1
                if !isNull { city = text(&s, &buffer, maxLength: Limits.shortText); guard city != nil else { return nil } }
            } else if equals(key, "kind") {
                bit = 2
                if !isNull {
                    guard let k = enumeration(&s, &buffer, IncidentKind.self) else { return nil }
                    kind = k
                }
            } else if equals(key, "location") {
                bit = 4
                if !isNull { location = text(&s, &buffer, maxLength: Limits.location); guard location != nil else { return nil } }
            } else if equals(key, "description") {
                bit = 8
                if !isNull {
                    description = text(&s, &buffer, maxLength: Limits.description)
                    guard description != nil else { return nil }
                }
            } else if equals(key, "targets") {
                bit = 16
                if !isNull { targets = text(&s, &buffer, maxLength: Limits.location); guard targets != nil else { return nil } }
            } else if equals(key, "participants") {
                bit = 32
                if !isNull {
                    guard let range = decodePeople(&s) else { return nil }
                    participants = range
                }
            } else if equals(key, "tags") {
                bit = 64
                if !isNull {
                    guard s.consume(UInt8(ascii: "[")) else { return nil }
                    if !s.consume(UInt8(ascii: "]")) {
                        tags.reserveCapacity(4)
                        repeat {
                            guard tags.count < Limits.tags, let tag = text(&s, &buffer, maxLength: Limits.tag) else { return nil }
                            tags.append(tag)
                        } while s.consume(UInt8(ascii: ","))
                        guard s.consume(UInt8(ascii: "]")) else { return nil }
                    }
                }
            } else if equals(key, "coordinates") {
                bit = 128
                if !isNull {
                    guard let point = decodeCoordinates(&s) else { return nil }
                    coordinates = point
                }
            } else if equals(key, "cityId") {
                // The city id the report names itself (an export's), checked by ReportData's rule.
                bit = 256
                if !isNull {
                    guard let id = text(&s, &buffer, maxLength: 128), Gazetteer.isValidId(id) else { return nil }
                    cityId = id
                }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let city, let kind else { return nil }
        return ReportData(
            city: city, cityId: cityId, kind: kind, location: location, coordinates: coordinates, description: description,
            participants: participants, targets: targets, tags: tags)
    }

    static func decodePeople(_ s: inout JSONScanner) -> PeopleRange? {
        if s.peek() != UInt8(ascii: "{") {
            guard let exact = s.integer(), exact >= 0, Limits.people.contains(exact) else { return nil }
            return PeopleRange(low: exact, high: exact)
        }
        _ = s.consume(UInt8(ascii: "{"))
        if s.consume(UInt8(ascii: "}")) { return nil }
        var low: Int64?
        var high: Int64?
        var seen: UInt8 = 0
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt8
            let isNull = s.null()
            if equals(key, "low") {
                bit = 1
                if !isNull { low = s.integer(); guard let low, Limits.people.contains(low) else { return nil } }
            } else if equals(key, "high") {
                bit = 2
                if !isNull { high = s.integer(); guard let high, Limits.people.contains(high) else { return nil } }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let low else { return nil }
        let top = high ?? low
        guard low <= top else { return nil }
        return PeopleRange(low: low, high: top)
    }

    static func decodeCoordinates(_ s: inout JSONScanner) -> Coordinates? {
        guard s.consume(UInt8(ascii: "{")), !s.consume(UInt8(ascii: "}")) else { return nil }
        var lat: Double?
        var lon: Double?
        var seen: UInt8 = 0
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt8
            let isNull = s.null()
            if equals(key, "lat") {
                bit = 1
                if !isNull { lat = s.number()?.doubleValue; guard let lat, (-90...90).contains(lat) else { return nil } }
            } else if equals(key, "lon") {
                bit = 2
                if !isNull { lon = s.number()?.doubleValue; guard let lon, (-180...180).contains(lon) else { return nil } }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let lat, let lon else { return nil }
        return Coordinates(lat: lat, lon: lon)
    }

    static func decodeResponse(_ s: inout JSONScanner, _ buffer: inout [UInt8]) -> ResponseData? {
        guard s.consume(UInt8(ascii: "{")), !s.consume(UInt8(ascii: "}")) else { return nil }
        var seen: UInt8 = 0
        var by: String?
        var responses: [ResponseKind]?
        var killed: Int64?
        var injured: Int64?
        var detained: Int64?
        var description: String?
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt8
            let isNull = s.null()
            if equals(key, "by") {
                bit = 1
                if !isNull { by = text(&s, &buffer, maxLength: Limits.shortText); guard by != nil else { return nil } }
            } else if equals(key, "responses") {
                bit = 2
                if !isNull {
                    guard s.consume(UInt8(ascii: "[")), !s.consume(UInt8(ascii: "]")) else { return nil }
                    var list: [ResponseKind] = []
                    list.reserveCapacity(4)
                    repeat {
                        guard list.count < ResponseKind.allCases.count,
                            let kind = enumeration(&s, &buffer, ResponseKind.self), !list.contains(kind)
                        else { return nil }
                        list.append(kind)
                    } while s.consume(UInt8(ascii: ","))
                    // `none` beside another response is left to the reader, which refuses it with its reason.
                    guard s.consume(UInt8(ascii: "]")), list.count == 1 || !list.contains(.none) else { return nil }
                    responses = list
                }
            } else if equals(key, "killed") {
                bit = 4
                if !isNull { killed = s.integer(); guard let killed, Limits.people.contains(killed) else { return nil } }
            } else if equals(key, "injured") {
                bit = 8
                if !isNull { injured = s.integer(); guard let injured, Limits.people.contains(injured) else { return nil } }
            } else if equals(key, "detained") {
                bit = 16
                if !isNull { detained = s.integer(); guard let detained, Limits.people.contains(detained) else { return nil } }
            } else if equals(key, "description") {
                bit = 32
                if !isNull {
                    description = text(&s, &buffer, maxLength: Limits.description)
                    guard description != nil else { return nil }
                }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let by, let responses,
            ResponseData.casualtyOfNone(responses, killed: killed, injured: injured, detained: detained) == nil
        else { return nil }
        return ResponseData(
            by: by, responses: responses, killed: killed, injured: injured, detained: detained, description: description)
    }

    static func decodeOutcome(_ s: inout JSONScanner, _ buffer: inout [UInt8]) -> OutcomeData? {
        guard s.consume(UInt8(ascii: "{")), !s.consume(UInt8(ascii: "}")) else { return nil }
        var seen: UInt8 = 0
        var status: OutcomeStatus?
        var verification: Verification?
        var verifiedBy: String?
        var method: String?
        var corrections: [String: JSONValue]?
        var note: String?
        repeat {
            guard let key = s.key() else { return nil }
            let bit: UInt8
            let isNull = s.null()
            if equals(key, "status") {
                bit = 1
                if !isNull {
                    guard let v = enumeration(&s, &buffer, OutcomeStatus.self) else { return nil }
                    status = v
                }
            } else if equals(key, "verification") {
                bit = 2
                if !isNull {
                    guard let v = enumeration(&s, &buffer, Verification.self) else { return nil }
                    verification = v
                }
            } else if equals(key, "verifiedBy") {
                bit = 4
                if !isNull { verifiedBy = text(&s, &buffer, maxLength: Limits.shortText); guard verifiedBy != nil else { return nil } }
            } else if equals(key, "method") {
                bit = 8
                if !isNull { method = text(&s, &buffer, maxLength: Limits.shortText); guard method != nil else { return nil } }
            } else if equals(key, "note") {
                bit = 16
                if !isNull { note = text(&s, &buffer, maxLength: Limits.description); guard note != nil else { return nil } }
            } else if equals(key, "corrections") {
                bit = 32
                if !isNull {
                    // Rare, and free-form: read it as the general path does. It sits at depth 5 of the request
                    // (request, events, event, data, corrections), so it may nest 60 levels of its own.
                    guard let raw = s.skipValue(), let value = try? JSONReader(maxDepth: 60).read(raw),
                        let checked = try? ReportData.validateCorrections(value, path: "data.corrections")
                    else { return nil }
                    corrections = checked
                }
            } else {
                return nil
            }
            guard seen & bit == 0 else { return nil }
            seen |= bit
        } while s.consume(UInt8(ascii: ","))
        guard s.consume(UInt8(ascii: "}")), let status else { return nil }
        return OutcomeData(
            status: status, verification: verification, verifiedBy: verifiedBy, method: method, corrections: corrections,
            note: note)
    }

    // MARK: Helpers

    /// A text field as ``FieldReader/checkText(_:field:maxLength:allowEmpty:)`` takes it: no control characters
    /// but newline and tab, at most `maxLength` Unicode scalars, trimmed, not empty.
    static func text(_ s: inout JSONScanner, _ buffer: inout [UInt8], maxLength: Int) -> String? {
        s.withStringBytes(buffer: &buffer) { bytes, verbatim, ascii in
            verbatim ? checkedVerbatimText(bytes, ascii: ascii, maxLength: maxLength) : checkedText(bytes, maxLength: maxLength)
        }
    }

    /// ``checkedText(_:maxLength:)`` of a string that stood in the input without escapes, which the scanner found
    /// to hold no control character, and whether it is all ASCII: only its length, its UTF-8 and its ends are left
    /// to check.
    static func checkedVerbatimText(_ bytes: UnsafeRawBufferPointer, ascii: Bool, maxLength: Int) -> String? {
        let count = bytes.count
        guard count > 0 else { return nil }
        if count > maxLength {
            // More bytes than the limit: the scalars are counted, as the bytes less the continuation bytes.
            guard !ascii else { return nil }
            var continuation = 0
            for byte in bytes where byte & 0xC0 == 0x80 { continuation += 1 }
            guard count - continuation <= maxLength else { return nil }
        }
        guard let string = ascii ? String(decoding: bytes, as: UTF8.self) : JSONScanner.validString(bytes) else { return nil }
        return trimmed(string, bytes)
    }

    /// An `eventId` as the general path takes it: a text field, then ``EventID/normalize(_:)``. A UUID as it
    /// stands, which is what clients send, is ASCII without spaces or control characters: the text field's checks
    /// would give it back unchanged, so it is normalized from its bytes directly.
    static func eventID(_ s: inout JSONScanner, _ buffer: inout [UInt8]) -> String? {
        s.withStringBytes(buffer: &buffer) { bytes in
            EventID.normalize(utf8: bytes) ?? checkedText(bytes, maxLength: 64).flatMap(EventID.normalize)
        }
    }

    /// An `incident` as the general path takes it: a text field that ``IncidentID/isValid(_:)``. A valid id as it
    /// stands is ASCII without spaces or control characters, which the text field's checks would give back
    /// unchanged.
    static func incidentID(_ s: inout JSONScanner, _ buffer: inout [UInt8]) -> String? {
        s.withStringBytes(buffer: &buffer) { bytes in
            if IncidentID.isValid(utf8: bytes) { return String(decoding: bytes, as: UTF8.self) }
            guard let text = checkedText(bytes, maxLength: 128), IncidentID.isValid(text) else { return nil }
            return text
        }
    }

    static func checkedText(_ bytes: UnsafeRawBufferPointer, maxLength: Int) -> String? {
        let count = bytes.count
        guard count > 0 else { return nil }
        // A scalar takes one to four bytes: the scalars are counted (as the bytes less the UTF-8 continuation
        // bytes, 10xxxxxx) only when there are more bytes than the limit.
        let counting = count > maxLength
        var continuation = 0
        // The bytes ORed together: ASCII text, whose top bits stay clear, is valid UTF-8 as it stands.
        var union: UInt64 = 0
        var i = 0
        // Eight bytes at a time: no control characters.
        while i + 8 <= count {
            let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let ones: UInt64 = 0x0101_0101_0101_0101
            let highs: UInt64 = 0x8080_8080_8080_8080
            if (word &- ones &* 0x20) & ~word & highs != 0 { break }
            if counting { continuation += ((word & ~(word << 1)) & highs).nonzeroBitCount }
            union |= word
            i += 8
        }
        while i < count {
            let byte = bytes[i]
            if byte < 0x20 && byte != 0x0A && byte != 0x09 { return nil }
            if byte & 0xC0 == 0x80 { continuation += 1 }
            union |= UInt64(byte)
            i += 1
        }
        guard count - continuation <= maxLength else { return nil }
        let isASCII = union & 0x8080_8080_8080_8080 == 0
        guard let string = isASCII ? String(decoding: bytes, as: UTF8.self) : JSONScanner.validString(bytes) else { return nil }
        return trimmed(string, bytes)
    }

    /// `string`, whose UTF-8 is `bytes` (not empty), trimmed of whitespace; nil when nothing is left.
    @inline(__always) static func trimmed(_ string: String, _ bytes: UnsafeRawBufferPointer) -> String? {
        @inline(__always) func plain(_ b: UInt8) -> Bool { b < 0x80 && b != 0x20 && !(0x09...0x0D).contains(b) }
        if plain(bytes[0]) && plain(bytes[bytes.count - 1]) { return string }
        let trimmed = string.trimmingWhitespace()
        return trimmed.isEmpty ? nil : trimmed
    }

    /// The next string value as a case of `E`, as `E(rawValue:)` gives it.
    @inline(__always) static func enumeration<E: WireVocabulary>(_ s: inout JSONScanner, _ buffer: inout [UInt8], _: E.Type) -> E? {
        s.withStringBytes(buffer: &buffer) { bytes in E.named(utf8: bytes) }
    }

    @inline(__always) static func equals(_ key: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard key.count == name.utf8CodeUnitCount else { return false }
        let start = name.utf8Start
        for i in 0..<key.count where key[i] != start[i] { return false }
        return true
    }
}

/// An enumeration of the wire format's vocabulary, which the fast decoder reads from a string's bytes without
/// making a `String` of them.
protocol WireVocabulary: RawRepresentable, CaseIterable where RawValue == String {
    /// Each case, and its raw value's UTF-8.
    static var spellings: [(utf8: [UInt8], value: Self)] { get }
}

extension WireVocabulary {
    static func makeSpellings() -> [(utf8: [UInt8], value: Self)] { allCases.map { (Array($0.rawValue.utf8), $0) } }

    /// `Self(rawValue:)` of the UTF-8 bytes `bytes` (nil when they are not valid UTF-8). The raw values are ASCII,
    /// and String equality, which `init(rawValue:)` decides by, holds between ASCII strings only when their bytes
    /// are the same: ASCII bytes are compared as they are, anything else goes through a `String`.
    @inline(__always) static func named(utf8 bytes: UnsafeRawBufferPointer) -> Self? {
        guard let input = bytes.baseAddress else { return nil }
        for spelling in spellings where spelling.utf8.count == bytes.count {
            if spelling.utf8.withUnsafeBytes({ $0.baseAddress.map { memcmp($0, input, bytes.count) == 0 } ?? false }) {
                return spelling.value
            }
        }
        guard bytes.contains(where: { $0 >= 0x80 }) else { return nil }
        return JSONScanner.validString(bytes).flatMap(Self.init(rawValue:))
    }
}

extension EventType: WireVocabulary { static let spellings = makeSpellings() }
extension IncidentKind: WireVocabulary { static let spellings = makeSpellings() }
extension ResponseKind: WireVocabulary { static let spellings = makeSpellings() }
extension OutcomeStatus: WireVocabulary { static let spellings = makeSpellings() }
extension Verification: WireVocabulary { static let spellings = makeSpellings() }
extension Precision: WireVocabulary { static let spellings = makeSpellings() }

extension ProposedEvent {
    init(
        eventId: String?, incident: String?, occurredAt: String?, precision: Precision?, sources: [Source],
        data: EventData, expectedVersion: Int64?
    ) {
        self.eventId = eventId
        self.incident = incident
        self.occurredAt = occurredAt
        self.precision = precision
        self.sources = sources
        self.data = data
        self.expectedVersion = expectedVersion
    }
}

extension ReportData {
    public init(
        city: String, cityId: String?, kind: IncidentKind, location: String?, coordinates: Coordinates?,
        description: String?, participants: PeopleRange?, targets: String?, tags: [String]
    ) {
        self.city = city
        self.cityId = cityId
        self.kind = kind
        self.location = location
        self.coordinates = coordinates
        self.description = description
        self.participants = participants
        self.targets = targets
        self.tags = tags
    }
}

extension ResponseData {
    init(by: String, responses: [ResponseKind], killed: Int64?, injured: Int64?, detained: Int64?, description: String?) {
        self.by = by
        self.responses = responses
        self.killed = killed
        self.injured = injured
        self.detained = detained
        self.description = description
    }
}

extension OutcomeData {
    init(
        status: OutcomeStatus, verification: Verification?, verifiedBy: String?, method: String?,
        corrections: [String: JSONValue]?, note: String?
    ) {
        self.status = status
        self.verification = verification
        self.verifiedBy = verifiedBy
        self.method = method
        self.corrections = corrections
        self.note = note
    }
}

extension Coordinates {
    init(lat: Double, lon: Double) {
        self.lat = lat
        self.lon = lon
    }
}
