import StrictJSON

/// The current event schema version; stored in every event so old events stay readable as the schema grows.
public let currentEventSchema: Int64 = 1

/// How far in the future an `occurredAt` may lie before it is refused: clocks drift, and a date written in
/// Kyiv may already be tomorrow in UTC.
public enum ClockSkew {
    public static let dateTime: Int64 = 5 * 60 * 1_000_000
    public static let date: Int64 = 14 * 3600 * 1_000_000
}

extension ParsedDate {
    /// Whether the date lies further ahead of `now` than ``ClockSkew`` allows for its form: what a client may not
    /// send as `occurredAt` or as a source's `publishedAt`.
    public func liesInFuture(now: Timestamp) -> Bool {
        let skew = finestPrecision == .minute ? ClockSkew.dateTime : ClockSkew.date
        return start.microseconds > now.microseconds + skew
    }
}

/// An event as a client proposes it: the wire form of SPEC §2, validated, before the daemon adds the envelope.
public struct ProposedEvent: Hashable, Sendable {
    public var eventId: String?
    public var incident: String?
    public var occurredAt: String?
    public var precision: Precision?
    public var sources: [Source]
    public var data: EventData
    public var expectedVersion: Int64?

    public var type: EventType { data.type }

    /// The canonical city id a report names itself (`data.cityId`), which is stored as given; nil for the daemon to
    /// resolve `city` with the gazetteer.
    public var cityId: String? {
        if case .reported(let report) = data { return report.cityId }
        return nil
    }

    /// Validates one wire event. `now` bounds `occurredAt` and the sources' `publishedAt`.
    public init(json: JSONValue, now: Timestamp) throws(IncidentError) {
        var r = try FieldReader(json, path: "")
        guard let type = try r.enumValue("type", EventType.self) else {
            throw IncidentError.invalid("type", "is required; one of \(EventType.allowedList)")
        }
        if let id = try r.string("eventId", maxLength: 64) {
            guard let normalized = EventID.normalize(id) else {
                throw IncidentError.invalid("eventId", "expected a UUID such as 3f2a5c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b")
            }
            eventId = normalized
        }
        if let incident = try r.string("incident", maxLength: 128) {
            guard IncidentID.isValid(incident) else {
                throw IncidentError.invalid(
                    "incident", "\"\(incident.prefix(64))\" is not a valid id: lowercase letters, digits and '-', "
                        + "starting with a letter or digit, at most 128 characters")
            }
            self.incident = incident
        } else if type != .incidentReported {
            throw IncidentError.invalid("incident", "is required for \(type.rawValue)")
        }
        precision = try r.enumValue("precision", Precision.self)
        if let occurredAt = try r.string("occurredAt", maxLength: 64).map(ParsedDate.normalizedProposed) {
            guard let parsed = ParsedDate.parseProposed(occurredAt) else {
                throw IncidentError.invalid(
                    "occurredAt",
                    ParsedDate.spaceForTProblem(occurredAt)
                        ?? "\"\(occurredAt)\" is not an ISO 8601 date (2022-03-01) or date-time (2022-03-01T14:30Z)")
            }
            if parsed.liesInFuture(now: now) {
                throw IncidentError.invalid("occurredAt", "\(occurredAt) lies in the future")
            }
            if let precision, precision.isFiner(than: parsed.finestPrecision) {
                throw IncidentError.invalid(
                    "precision", "\(precision.rawValue) is finer than \"\(occurredAt)\" can express")
            }
            self.occurredAt = occurredAt
            if precision == nil { precision = parsed.finestPrecision == .minute ? .minute : parsed.finestPrecision }
        } else if type == .incidentReported {
            throw IncidentError.invalid("occurredAt", "is required for incident-reported")
        } else if precision != nil {
            throw IncidentError.invalid("precision", "is given without occurredAt")
        }
        sources = try Source.list(r.raw("sources"), path: "sources", proposedAt: now)
        expectedVersion = try r.integer("expectedVersion", range: 0...Int64(Int32.max))
        data = try EventData(type: type, json: r.raw("data"), stored: false)
        try r.finish()
    }

    /// The proposal that records `event` with every member the daemon fills in written out: its incident id, its
    /// time and precision, a report's `cityId`. What a client that names everything would have sent (what
    /// `incidentctl export` writes); the best an index of event ids made again from the events alone can know of
    /// what was sent, which the events do not keep.
    public init(writingOut event: RecordedEvent) {
        eventId = event.eventId
        incident = event.incident
        occurredAt = event.occurredAt
        precision = event.precision
        sources = event.sources
        data = event.data
    }

    /// The canonical bytes of what was proposed, less `eventId`, `expectedVersion` and a report's `cityId`: two
    /// proposals with the same `eventId` are the same event when these bytes are equal and, where both name a
    /// `cityId`, the same one. A report's `cityId` is left out so that a report sent with the id the daemon
    /// resolved for it (as `incidentctl export` writes it) has the content it was first sent with, and so that an
    /// event's content is the same whether it was stored from a proposal that named its city id or not.
    public var contentBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1024)
        writeContent(into: &out)
        return out
    }

    /// ``contentBytes`` built the slow way, from ``EventData/json``: what ``writeContent(into:)`` must equal.
    public var contentJSON: JSONValue {
        var data = data
        if case .reported(var report) = data {
            report.cityId = nil
            data = .reported(report)
        }
        var o: [String: JSONValue] = ["type": .string(type.rawValue), "data": data.json]
        if let incident { o["incident"] = .string(incident) }
        if let occurredAt { o["occurredAt"] = .string(occurredAt) }
        if let precision { o["precision"] = .string(precision.rawValue) }
        if !sources.isEmpty { o["sources"] = .array(sources.map(\.json)) }
        return .object(o)
    }
}

extension Precision {
    private var rank: Int {
        switch self {
        case .minute: return 0
        case .hour: return 1
        case .day: return 2
        case .week: return 3
        case .month: return 4
        }
    }

    func isFiner(than other: Precision) -> Bool { rank < other.rank }
}

/// Who recorded an event: taken from the socket's peer credentials, never from the request.
public struct Recorder: Hashable, Sendable {
    public var uid: UInt32
    public var user: String

    public init(uid: UInt32, user: String) {
        self.uid = uid
        self.user = user
    }

    public var json: JSONValue { ["uid": .int(Int64(uid)), "user": .string(user)] }
}

/// An event as stored in the log: the proposal plus the envelope the daemon fills.
public struct RecordedEvent: Hashable, Sendable {
    public var position: UInt64
    public var eventId: String
    public var incident: String
    public var version: Int64
    public var occurredAt: String
    public var precision: Precision
    public var recordedAt: Timestamp
    public var recordedBy: Recorder
    public var sources: [Source]
    public var data: EventData
    public var schema: Int64
    /// Hex SHA-256 of the previous event (64 zeros for position 1).
    public var prevHash: String

    public var type: EventType { data.type }

    public init(
        position: UInt64, eventId: String, incident: String, version: Int64, occurredAt: String, precision: Precision,
        recordedAt: Timestamp, recordedBy: Recorder, sources: [Source], data: EventData, prevHash: String
    ) {
        self.position = position
        self.eventId = eventId
        self.incident = incident
        self.version = version
        self.occurredAt = occurredAt
        self.precision = precision
        self.recordedAt = recordedAt
        self.recordedBy = recordedBy
        self.sources = sources
        self.data = data
        self.schema = currentEventSchema
        self.prevHash = prevHash
    }

    /// Reads a stored event back. Stored events were validated when appended; this checks their shape again
    /// so that a damaged record is named rather than misread.
    public init(json: JSONValue) throws(IncidentError) {
        var r = try FieldReader(json, path: "")
        guard let type = try r.enumValue("type", EventType.self) else { throw IncidentError.invalid("type", "is required") }
        guard let position = try r.integer("position", range: 1...Int64.max) else {
            throw IncidentError.invalid("position", "is required")
        }
        self.position = UInt64(position)
        eventId = try r.requiredString("eventId", maxLength: 64)
        incident = try r.requiredString("incident", maxLength: 128)
        version = try r.integer("version", range: 1...Int64.max) ?? 0
        occurredAt = try r.requiredString("occurredAt", maxLength: 64)
        precision = try r.enumValue("precision", Precision.self) ?? .day
        let recordedAt = try r.requiredString("recordedAt", maxLength: 64)
        guard let parsed = ParsedDate.parse(recordedAt) else { throw IncidentError.invalid("recordedAt", "is not a date") }
        self.recordedAt = parsed.start
        var by = try FieldReader(r.raw("recordedBy") ?? .null, path: "recordedBy")
        recordedBy = Recorder(
            uid: UInt32(try by.integer("uid", range: 0...Int64(UInt32.max)) ?? 0),
            user: try by.string("user", maxLength: 256, allowEmpty: true) ?? "")
        sources = try Source.list(r.raw("sources"), path: "sources", proposedAt: nil)
        schema = try r.integer("schema", range: 1...Int64.max) ?? 1
        prevHash = try r.requiredString("prevHash", maxLength: 64)
        data = try EventData(type: type, json: r.raw("data"), stored: true)
        _ = r.raw("hash")
        try r.finish()
    }

    /// The stored form without `hash`; its canonical bytes are what the hash chain covers.
    public var json: JSONValue {
        var o: [String: JSONValue] = [
            "position": .int(Int64(position)),
            "eventId": .string(eventId),
            "type": .string(type.rawValue),
            "incident": .string(incident),
            "version": .int(version),
            "occurredAt": .string(occurredAt),
            "precision": .string(precision.rawValue),
            "recordedAt": .string(recordedAt.description),
            "recordedBy": recordedBy.json,
            "data": data.json,
            "schema": .int(schema),
            "prevHash": .string(prevHash),
        ]
        if !sources.isEmpty { o["sources"] = .array(sources.map(\.json)) }
        return .object(o)
    }

    public var cityId: String? {
        if case .reported(let report) = data { return report.cityId }
        return nil
    }
}

/// Incident ids: `[a-z0-9][a-z0-9-]{0,127}`.
public enum IncidentID {
    /// The incident id an append stores for `text`, the `incident` member as a client wrote it: the text field as
    /// every one is taken (``FieldReader/checkText(_:field:maxLength:allowEmpty:)``: trimmed of surrounding
    /// whitespace), when that is a valid id; nil when an append would refuse it. Queries look an incident up by
    /// it, so that the spelling an append took finds the incident it stored.
    public static func normalized(_ text: String) -> String? {
        guard let id = try? FieldReader.checkText(text, field: "incident", maxLength: 128), isValid(id) else { return nil }
        return id
    }

    public static func isValid(_ id: String) -> Bool {
        var id = id
        return id.withUTF8 { isValid(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// Whether the UTF-8 bytes `bytes` are a valid incident id.
    public static func isValid(utf8 bytes: UnsafeRawBufferPointer) -> Bool {
        guard let first = bytes.first, bytes.count <= 128, isLowerAlnum(first) else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    static func isLowerAlnum(_ b: UInt8) -> Bool { (48...57).contains(b) || (97...122).contains(b) }
}

/// Event ids: UUIDs in lowercase canonical form.
public enum EventID {
    /// The canonical lowercase form of a UUID string, or nil if it is not one.
    public static func normalize(_ text: String) -> String? {
        var text = text
        return text.withUTF8 { normalize(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// ``normalize(_:)`` of the UTF-8 bytes `bytes`.
    public static func normalize(utf8 bytes: UnsafeRawBufferPointer) -> String? {
        guard bytes.count == 36 else { return nil }
        // Bit i set: byte i is a dash.
        let dashes: UInt64 = 1 << 8 | 1 << 13 | 1 << 18 | 1 << 23
        for i in 0..<36 {
            let b = bytes[i]
            if dashes >> UInt64(i) & 1 != 0 {
                guard b == UInt8(ascii: "-") else { return nil }
            } else {
                // A digit, or a letter a-f in either case (setting 0x20 lowers A-F and changes no digit).
                guard b &- UInt8(ascii: "0") < 10 || (b | 0x20) &- UInt8(ascii: "a") < 6 else { return nil }
            }
        }
        // Every byte now is a digit, a dash or a letter, and setting 0x20 changes only an uppercase letter.
        return String(unsafeUninitializedCapacity: 36) { out in
            for i in 0..<36 { out[i] = bytes[i] | 0x20 }
            return 36
        }
    }

    /// A fresh time-ordered (version 7, RFC 9562) UUID: 48 bits of Unix milliseconds, then 74 random bits.
    /// Ids made one after another sort together, so the event-id index grows at its end instead of touching a
    /// random page of it for every event.
    public static func random() -> String {
        var g = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        let millis = UInt64(max(0, Timestamp.now().microseconds / 1000))
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: millis >> (40 - 8 * UInt64(i))) }
        bytes[6] = (bytes[6] & 0x0F) | 0x70
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
