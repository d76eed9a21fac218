import Gazetteer
import IncidentDomain
import StrictJSON

/// What the projections need of one event, stored after its position in the event's `incident-streams` entry
/// (log format 3): `position ‖ summary`. A rebuild walks `incident-streams` in key order, where each incident's
/// events come together in version order, and folds every incident from these summaries alone, without reading
/// the events' JSON or looking an incident up by its id (see ``StreamFold``).
///
/// The summary is derived from the event in the same write transaction, as the projections are; the hash chain
/// covers the event's canonical JSON, not this. `replay` folds the JSON itself, so the two can be compared
/// (the bench does, on every run).
///
/// Layout, integers little-endian:
/// - report: `1`, precision, kind, sources' verification mask, flags (1 participants, 2 city id, 4 the start of
///   `occurredAt` known), recordedAt (µs), [start of occurredAt (µs)], [participants low, high], then texts as
///   `UInt16 length ‖ UTF-8`: incident, city, [city id], occurredAt;
/// - response: `2`, flags (1 killed, 2 injured, 4 detained), how many response kinds, then `(index, UInt32
///   count)` for each, then [killed], [injured], [detained] as Int64;
/// - outcome: `3`, status, verification (255 for none), flags (what its corrections do to the two report fields
///   the projections count by, ``ReportData/countedEffect(of:)``: 1 the kind corrected, 2 the participants
///   removed, 4 the participants corrected), [kind], [participants low, high].
enum StreamSummary {
    static let report: UInt8 = 1
    static let response: UInt8 = 2
    static let outcome: UInt8 = 3

    /// Appends the summary of `event`, as the writer records it.
    static func append(_ event: RecordedEvent, to out: inout [UInt8]) {
        switch event.data {
        case .reported(let report):
            var mask: UInt8 = 0
            for source in event.sources { mask |= StoredEventReader.mask(source.verification) }
            var incident = event.incident
            var city = report.city
            var occurredAt = event.occurredAt
            incident.withUTF8 { incident in
                city.withUTF8 { city in
                    occurredAt.withUTF8 { occurredAt in
                        func write(_ cityId: UnsafeRawBufferPointer?) {
                            appendReport(
                                to: &out, incident: UnsafeRawBufferPointer(incident), city: UnsafeRawBufferPointer(city),
                                cityId: cityId, occurredAt: UnsafeRawBufferPointer(occurredAt), precision: event.precision,
                                recordedAt: event.recordedAt.microseconds, sourcesMask: mask, kind: report.kind,
                                participants: report.participants)
                        }
                        if var cityId = report.cityId {
                            cityId.withUTF8 { write(UnsafeRawBufferPointer($0)) }
                        } else {
                            write(nil)
                        }
                    }
                }
            }
        case .responded(let response):
            var kinds = CaseCounts<ResponseKind>()
            for kind in response.responses { kinds[Int(ResponseKind.index(kind))] += 1 }
            appendResponse(to: &out, kinds: kinds, killed: response.killed, injured: response.injured, detained: response.detained)
        case .outcome(let outcome):
            appendOutcome(
                to: &out, status: outcome.status, verification: outcome.verification, corrections: outcome.corrections)
        }
    }

    /// Appends the summary of an event as ``StoredEventReader/parse(_:)`` read it from its stored bytes; false
    /// (and nothing appended) when one of its texts is not valid UTF-8 or its recorded time is not a time, which
    /// the caller then decodes whole.
    static func append(_ event: StoredEventReader.ParsedEvent, to out: inout [UInt8]) -> Bool {
        switch event.data {
        case .report(let report):
            guard isValidUTF8(report.city), report.cityId.map(isValidUTF8) ?? true, isValidUTF8(event.occurredAt),
                let recordedAt = ParsedDate.parse(utf8: event.recordedAt)?.start.microseconds
            else { return false }
            appendReport(
                to: &out, incident: event.incident, city: report.city, cityId: report.cityId, occurredAt: event.occurredAt,
                precision: event.precision, recordedAt: recordedAt, sourcesMask: event.sourcesMask, kind: report.kind,
                participants: report.participants)
        case .response(let response):
            appendResponse(
                to: &out, kinds: response.kinds, killed: response.killed, injured: response.injured, detained: response.detained)
        case .outcome(let outcome):
            appendOutcome(to: &out, status: outcome.status, verification: outcome.verification, corrections: outcome.corrections)
        }
        return true
    }

    /// Appends the summary of the stored event `canonical`, which the log holds at `position`, as the writer made
    /// it, and calls `body` with the event's id, incident and version (bytes valid during the call): read the fast
    /// way (``StoredEventReader/parse(_:)``), or decoded whole when that does not take it.
    ///
    /// - Throws: ``LogError`` `.corrupt` naming the position when the event cannot be read as an event, or says
    ///   it is at another position; whatever `body` throws.
    static func append<R>(
        ofStored canonical: UnsafeRawBufferPointer, at position: UInt64, to out: inout [UInt8],
        _ body: (_ eventId: UnsafeRawBufferPointer, _ incident: UnsafeRawBufferPointer, _ version: Int64) throws -> R
    ) throws -> R {
        if let parsed = StoredEventReader.parse(canonical), parsed.position == position, append(parsed, to: &out) {
            return try body(parsed.eventId, parsed.incident, parsed.version)
        }
        let event: RecordedEvent
        do {
            event = try RecordedEvent(json: JSONReader().read(canonical))
        } catch {
            throw LogError(.corrupt, "event \(position) cannot be read as an event: \(error)")
        }
        guard event.position == position else {
            throw LogError(.corrupt, "event \(position) says it is at position \(event.position)")
        }
        append(event, to: &out)
        var eventId = event.eventId
        var incident = event.incident
        return try eventId.withUTF8 { eventId in
            try incident.withUTF8 { incident in
                try body(UnsafeRawBufferPointer(eventId), UnsafeRawBufferPointer(incident), event.version)
            }
        }
    }

    private static func appendReport(
        to out: inout [UInt8], incident: UnsafeRawBufferPointer, city: UnsafeRawBufferPointer, cityId: UnsafeRawBufferPointer?,
        occurredAt: UnsafeRawBufferPointer, precision: Precision, recordedAt: Int64, sourcesMask: UInt8, kind: IncidentKind,
        participants: PeopleRange?
    ) {
        let start = ParsedDate.parse(utf8: occurredAt)?.start.microseconds
        out.append(report)
        out.append(UInt8(truncatingIfNeeded: CaseIndex.of(precision)))
        out.append(UInt8(truncatingIfNeeded: CaseIndex.of(kind)))
        out.append(sourcesMask)
        out.append((participants != nil ? 1 : 0) | (cityId != nil ? 2 : 0) | (start != nil ? 4 : 0))
        appendInt(recordedAt, to: &out)
        if let start { appendInt(start, to: &out) }
        if let participants {
            appendInt(participants.low, to: &out)
            appendInt(participants.high, to: &out)
        }
        appendText(incident, to: &out)
        appendText(city, to: &out)
        if let cityId { appendText(cityId, to: &out) }
        appendText(occurredAt, to: &out)
    }

    private static func appendResponse(to out: inout [UInt8], kinds: CaseCounts<ResponseKind>, killed: Int64?, injured: Int64?, detained: Int64?) {
        out.append(response)
        out.append((killed != nil ? 1 : 0) | (injured != nil ? 2 : 0) | (detained != nil ? 4 : 0))
        out.append(UInt8(truncatingIfNeeded: kinds.nonZero))
        kinds.forEachNonZero { index, count in
            out.append(UInt8(truncatingIfNeeded: index))
            withUnsafeBytes(of: UInt32(truncatingIfNeeded: count).littleEndian) { out.append(contentsOf: $0) }
        }
        for value in [killed, injured, detained] {
            if let value { appendInt(value, to: &out) }
        }
    }

    private static func appendOutcome(
        to out: inout [UInt8], status: OutcomeStatus, verification: Verification?, corrections: [String: JSONValue]?
    ) {
        let effect = corrections.map(ReportData.countedEffect(of:)) ?? CountedCorrection()
        out.append(outcome)
        out.append(UInt8(truncatingIfNeeded: CaseIndex.of(status)))
        out.append(verification.map { UInt8(truncatingIfNeeded: CaseIndex.of($0)) } ?? 255)
        var flags: UInt8 = effect.kind != nil ? 1 : 0
        switch effect.participants {
        case .unchanged: break
        case .removed: flags |= 2
        case .set: flags |= 4
        }
        out.append(flags)
        if let kind = effect.kind { out.append(UInt8(truncatingIfNeeded: CaseIndex.of(kind))) }
        if case .set(let range) = effect.participants {
            appendInt(range.low, to: &out)
            appendInt(range.high, to: &out)
        }
    }

    @inline(__always) private static func appendInt(_ value: Int64, to out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    /// Texts are at most an incident id (128 bytes) or a short text of the domain; a longer one is cut at
    /// 65,535 bytes, which no stored event has.
    @inline(__always) private static func appendText(_ text: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let count = min(text.count, Int(UInt16.max))
        withUnsafeBytes(of: UInt16(count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: text[..<count]))
    }
}

/// Reads a ``StreamSummary`` in place, every read bounds-checked and every count within the domain's limits: a
/// damaged summary is an error naming its event, never a read past its end or a sum that overflows.
struct StreamSummaryReader {
    let bytes: UnsafeRawBufferPointer
    let position: UInt64
    var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, at offset: Int, position: UInt64) {
        self.bytes = bytes
        self.offset = offset
        self.position = position
    }

    var damaged: StreamSummaryDamage { StreamSummaryDamage(position: position, problem: "is damaged") }

    @inline(__always) mutating func byte() throws -> UInt8 {
        guard offset < bytes.count else { throw damaged }
        defer { offset += 1 }
        return bytes[offset]
    }

    @inline(__always) mutating func int() throws -> Int64 {
        guard offset + 8 <= bytes.count else { throw damaged }
        defer { offset += 8 }
        return Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self))
    }

    @inline(__always) mutating func uint32() throws -> Int {
        guard offset + 4 <= bytes.count else { throw damaged }
        defer { offset += 4 }
        return Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    @inline(__always) mutating func bytes(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, offset + count <= bytes.count else { throw damaged }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count])
    }

    @inline(__always) mutating func text() throws -> UnsafeRawBufferPointer {
        guard offset + 2 <= bytes.count else { throw damaged }
        let count = Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        offset += 2
        return try self.bytes(count)
    }

    /// A count of people, within the domain's limits (so that no sum of them overflows).
    @inline(__always) mutating func count() throws -> Int64 {
        let n = try int()
        guard Limits.people.contains(n) else { throw damaged }
        return n
    }

    /// A range of people, as a report or a correction gives it.
    @inline(__always) mutating func people() throws -> PeopleRange {
        let low = try count()
        let high = try count()
        guard low <= high else { throw damaged }
        return PeopleRange(low: low, high: high)
    }

    /// One of `cases`, by its stored index.
    @inline(__always) mutating func enumeration<E>(_ cases: [E]) throws -> E {
        let index = Int(try byte())
        guard index < cases.count else { throw damaged }
        return cases[index]
    }
}

/// A stream summary that cannot be what the writer made of its event. Summaries are derived from the events,
/// which the hash chain covers, so a rebuild that meets one makes every summary again from its event
/// (``EventLog/rederiveStreamSummaries()``) and folds again.
struct StreamSummaryDamage: Error, CustomStringConvertible {
    let position: UInt64
    let problem: String

    var description: String { "the stream summary of event \(position) \(problem)" }
}
