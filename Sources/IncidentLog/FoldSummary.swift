import IncidentDomain
import StrictJSON

/// The layout of a value in the `events` database:
///
///     hash (32 bytes) ‖ canonical JSON ‖ [fold summary ‖ summary length (UInt16, little-endian) ‖ 0x01]
///
/// The hash covers the canonical JSON alone, as SPEC §5 defines it. The fold summary (``FoldSummary``) is what
/// the projections need of the event, in binary, so that a rebuild reads a hundred bytes an event instead of
/// parsing about a kilobyte of JSON. Events stored before format `incidentd-log-2` have no summary; their value
/// ends with the JSON's closing `}`, which is never the summary's marker byte.
public enum StoredEventValue {
    public static let hashLength = 32
    static let summaryMarker: UInt8 = 0x01
    /// The length and the marker after a summary.
    static let trailerLength = 3

    /// The canonical JSON of a stored event (what its hash covers); empty when the value is too short to hold any.
    public static func canonical(_ value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: value[hashLength..<canonicalEnd(value)])
    }

    /// The fold summary of a stored event, or nil for an event stored without one (or whose trailer is damaged:
    /// the fold then reads its JSON).
    public static func summary(_ value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard let length = summaryLength(value) else { return nil }
        let end = value.count - trailerLength
        return UnsafeRawBufferPointer(rebasing: value[(end - length)..<end])
    }

    private static func summaryLength(_ value: UnsafeRawBufferPointer) -> Int? {
        let n = value.count
        guard n >= hashLength + 2 + trailerLength, value[n - 1] == summaryMarker else { return nil }
        let length = Int(value[n - 3]) | Int(value[n - 2]) << 8
        guard length > 0, n - trailerLength - length > hashLength + 1 else { return nil }
        return length
    }

    private static func canonicalEnd(_ value: UnsafeRawBufferPointer) -> Int {
        guard value.count > hashLength else { return min(value.count, hashLength) }
        guard let length = summaryLength(value) else { return value.count }
        return value.count - trailerLength - length
    }

    /// The stored value with its summary taken off (the form of events stored before summaries).
    public static func withoutSummary(_ value: [UInt8]) -> [UInt8] {
        value.withUnsafeBytes { raw in Array(value[..<canonicalEnd(raw)]) }
    }

    /// The stored value's hash and canonical JSON followed by `summary` (an event is re-summarised this way).
    public static func withSummary(_ value: [UInt8], _ summary: [UInt8]) -> [UInt8] {
        var out = withoutSummary(value)
        out += summary
        out.append(UInt8(truncatingIfNeeded: summary.count))
        out.append(UInt8(truncatingIfNeeded: summary.count >> 8))
        out.append(summaryMarker)
        return out
    }
}

/// What the projections need of one event, in binary, stored after the event's canonical JSON (see
/// ``StoredEventValue``). The writer makes it from the event it records; the rebuild reads it back into the
/// same ``StoredEventReader/ParsedEvent`` its JSON reader gives, so the two paths fold alike (`RebuildTests`
/// folds logs with and without summaries, and the bench compares the rebuild with the daemon's projections).
///
/// It is not covered by the hash chain: like the stored projections, it is derived data. `incidentctl replay`
/// folds the JSON itself, so comparing its document with `cities` checks the summaries too.
///
/// Layout (integers little-endian; a text is its length, UInt8 or UInt16 as noted, then its UTF-8 bytes):
///
///     type (0 report, 1 response, 2 outcome) · precision · flags · version (Int64)
///     incident (u8) · occurredAt (u8) · recordedAt (u8)
///     report:   sources mask · kind · city (u16) · [cityId (u16)] · [participants low, high (Int64 each)]
///     response: count · that many response kinds · [killed] · [injured] · [detained] (Int64 each)
///     outcome:  status · [verification] · [corrections, canonical JSON (u16)]
///
/// Enumerations are their index among `allCases` (`StoredEnumeration`).
enum FoldSummary {
    static let hasCityId: UInt8 = 1 << 0
    static let hasParticipants: UInt8 = 1 << 1
    static let hasKilled: UInt8 = 1 << 2
    static let hasInjured: UInt8 = 1 << 3
    static let hasDetained: UInt8 = 1 << 4
    static let hasVerification: UInt8 = 1 << 5
    static let hasCorrections: UInt8 = 1 << 6

    /// Appends the summary of `event`, then its length and the marker, to its stored value `out`; appends nothing
    /// when a text is too long for the layout (the fold then reads that event's JSON).
    static func append(_ event: RecordedEvent, recordedAt: [UInt8], to out: inout [UInt8]) {
        let start = out.count
        var flags: UInt8 = 0
        var ok = true
        func byte(_ b: UInt8) { out.append(b) }
        func int(_ v: Int64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func shortText(_ utf8: some Collection<UInt8>) {
            guard utf8.count <= Int(UInt8.max) else { return ok = false }
            out.append(UInt8(utf8.count))
            out.append(contentsOf: utf8)
        }
        func text(_ utf8: some Collection<UInt8>) {
            guard utf8.count <= Int(UInt16.max) else { return ok = false }
            out.append(UInt8(truncatingIfNeeded: utf8.count))
            out.append(UInt8(truncatingIfNeeded: utf8.count >> 8))
            out.append(contentsOf: utf8)
        }
        let type: UInt8
        switch event.data {
        case .reported: type = 0
        case .responded: type = 1
        case .outcome: type = 2
        }
        byte(type)
        byte(Precision.index(event.precision))
        let flagsAt = out.count
        byte(0)
        int(event.version)
        shortText(event.incident.utf8)
        shortText(event.occurredAt.utf8)
        // The recorded time as the JSON holds it, without its quotes.
        shortText(recordedAt.dropFirst().dropLast())
        switch event.data {
        case .reported(let report):
            var mask: UInt8 = 0
            for source in event.sources { mask |= StoredEventReader.mask(source.verification) }
            byte(mask)
            byte(IncidentKind.index(report.kind))
            text(report.city.utf8)
            if let cityId = report.cityId {
                flags |= hasCityId
                text(cityId.utf8)
            }
            if let participants = report.participants {
                flags |= hasParticipants
                int(participants.low)
                int(participants.high)
            }
        case .responded(let response):
            guard response.responses.count <= Int(UInt8.max) else {
                ok = false
                break
            }
            byte(UInt8(response.responses.count))
            for kind in response.responses { byte(ResponseKind.index(kind)) }
            func amount(_ value: Int64?, _ flag: UInt8) {
                guard let value else { return }
                flags |= flag
                int(value)
            }
            amount(response.killed, hasKilled)
            amount(response.injured, hasInjured)
            amount(response.detained, hasDetained)
        case .outcome(let outcome):
            byte(OutcomeStatus.index(outcome.status))
            if let verification = outcome.verification {
                flags |= hasVerification
                byte(Verification.index(verification))
            }
            if let corrections = outcome.corrections {
                flags |= hasCorrections
                text(JSONValue.object(corrections).canonicalBytes())
            }
        }
        let length = out.count - start
        guard ok, length <= Int(UInt16.max) else {
            out.removeLast(length)
            return
        }
        out[flagsAt] = flags
        out.append(UInt8(truncatingIfNeeded: length))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(StoredEventValue.summaryMarker)
    }

    /// Reads a summary back into what the fold takes; nil when it is damaged (the fold then reads the JSON, and a
    /// damaged event fails there, named).
    static func parse(_ bytes: UnsafeRawBufferPointer, position: UInt64) -> StoredEventReader.ParsedEvent? {
        var r = Reader(bytes: bytes)
        guard let type = r.byte(), let precision = r.enumeration(Precision.storedCases), let flags = r.byte(),
            let version = r.int(), let incident = r.shortText(), incident.count <= 128, isValidUTF8(incident),
            let occurredAt = r.shortText(), let recordedAt = r.shortText()
        else { return nil }
        let data: StoredEventReader.ParsedEvent.Data
        var mask: UInt8 = 0
        switch type {
        case 0:
            guard let sources = r.byte(), let kind = r.enumeration(IncidentKind.storedCases), let city = r.text() else {
                return nil
            }
            mask = sources
            var cityId: UnsafeRawBufferPointer?
            if flags & hasCityId != 0 {
                guard let id = r.text() else { return nil }
                cityId = id
            }
            var participants: PeopleRange?
            if flags & hasParticipants != 0 {
                guard let low = r.int(), let high = r.int() else { return nil }
                participants = PeopleRange(low: low, high: high)
            }
            data = .report(.init(city: city, cityId: cityId, kind: kind, participants: participants))
        case 1:
            guard let count = r.byte() else { return nil }
            var kinds = CaseCounts()
            for _ in 0..<count {
                guard let index = r.byte(), Int(index) < ResponseKind.storedCases.count else { return nil }
                kinds[Int(index)] += 1
            }
            var fields = StoredEventReader.ResponseFields(kinds: kinds, killed: nil, injured: nil, detained: nil)
            if flags & hasKilled != 0 {
                guard let value = r.int() else { return nil }
                fields.killed = value
            }
            if flags & hasInjured != 0 {
                guard let value = r.int() else { return nil }
                fields.injured = value
            }
            if flags & hasDetained != 0 {
                guard let value = r.int() else { return nil }
                fields.detained = value
            }
            data = .response(fields)
        case 2:
            guard let status = r.enumeration(OutcomeStatus.storedCases) else { return nil }
            var verification: Verification?
            if flags & hasVerification != 0 {
                guard let v = r.enumeration(Verification.storedCases) else { return nil }
                verification = v
            }
            var corrections: [String: JSONValue]?
            if flags & hasCorrections != 0 {
                guard let raw = r.text(), case .object(let members)? = try? JSONReader().read(raw) else { return nil }
                corrections = members
            }
            data = .outcome(.init(status: status, verification: verification, corrections: corrections))
        default:
            return nil
        }
        guard r.index == bytes.count else { return nil }
        return StoredEventReader.ParsedEvent(
            data: data, version: version, position: position, incident: incident, precision: precision,
            occurredAt: occurredAt, recordedAt: recordedAt, sourcesMask: mask)
    }

    /// Reads a summary front to back; every read is bounds-checked.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        mutating func byte() -> UInt8? {
            guard index < bytes.count else { return nil }
            defer { index += 1 }
            return bytes[index]
        }

        mutating func int() -> Int64? {
            guard index + 8 <= bytes.count else { return nil }
            defer { index += 8 }
            return Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: Int64.self))
        }

        mutating func enumeration<E>(_ cases: [E]) -> E? {
            guard let i = byte(), Int(i) < cases.count else { return nil }
            return cases[Int(i)]
        }

        mutating func shortText() -> UnsafeRawBufferPointer? {
            guard let count = byte() else { return nil }
            return take(Int(count))
        }

        mutating func text() -> UnsafeRawBufferPointer? {
            guard let low = byte(), let high = byte() else { return nil }
            return take(Int(low) | Int(high) << 8)
        }

        private mutating func take(_ count: Int) -> UnsafeRawBufferPointer? {
            guard index + count <= bytes.count else { return nil }
            defer { index += count }
            return UnsafeRawBufferPointer(rebasing: bytes[index..<index + count])
        }
    }
}
