import Gazetteer
import StrictJSON

/// Limits on free text and lists, so one event cannot swallow the log.
public enum Limits {
    public static let shortText = 200
    public static let location = 1_000
    public static let description = 10_000
    public static let url = 2_048
    public static let sources = 32
    public static let tags = 32
    public static let tag = 64
    public static let people: ClosedRange<Int64> = 0...100_000_000
}

/// Who said it: a source of an event, with its verification and, for archived evidence, the file's SHA-256.
public struct Source: Hashable, Sendable {
    public var name: String
    public var url: String?
    public var publishedAt: String?
    public var verifiedBy: String?
    public var method: String?
    public var verification: Verification
    public var sha256: String?

    public init(name: String, verification: Verification = .unverified) {
        self.name = name
        self.verification = verification
    }

    /// A source of an event proposed at `now`, checked by the rules a client's input must pass; or, for `nil`, of
    /// a stored one, read back as it was accepted when it was appended (a `publishedAt` with a space before the
    /// time, or one in what was then the future, say).
    init(json: JSONValue, path: String, proposedAt now: Timestamp?) throws(IncidentError) {
        var r = try FieldReader(json, path: path)
        name = try r.requiredString("name", maxLength: Limits.shortText)
        url = try r.string("url", maxLength: Limits.url)
        if let url, !Self.looksLikeURI(url) {
            throw IncidentError.invalid(r.name("url"), "expected an absolute URI such as https://…")
        }
        if let url, now != nil, Self.isScript(url) {
            throw IncidentError.invalid(
                r.name("url"),
                "a \(url.prefix { $0 != ":" }.lowercased()): URI is run or inlined by a browser, not fetched, so a map or page made from an export would run it: give the address the source was found at (https://…)")
        }
        publishedAt = try r.string("publishedAt", maxLength: 64)
        if now != nil { publishedAt = publishedAt.map(ParsedDate.normalizedProposed) }
        if let publishedAt, let now {
            guard let parsed = ParsedDate.parseProposed(publishedAt) else {
                throw IncidentError.invalid(
                    r.name("publishedAt"), ParsedDate.spaceForTProblem(publishedAt) ?? "expected an ISO 8601 date or date-time")
            }
            if parsed.liesInFuture(now: now) {
                throw IncidentError.invalid(r.name("publishedAt"), "\(publishedAt) lies in the future")
            }
        } else if let publishedAt, ParsedDate.parse(publishedAt) == nil {
            throw IncidentError.invalid(r.name("publishedAt"), "expected an ISO 8601 date or date-time")
        }
        verifiedBy = try r.string("verifiedBy", maxLength: Limits.shortText)
        method = try r.string("method", maxLength: Limits.shortText)
        verification = try r.enumValue("verification", Verification.self) ?? .unverified
        sha256 = try r.string("sha256", maxLength: 64)?.lowercased()
        if let sha256, !Self.isSHA256(sha256) {
            throw IncidentError.invalid(r.name("sha256"), "expected 64 hexadecimal digits")
        }
        try r.finish()
    }

    /// Whether `text` is a source's `sha256` as an event takes it: 64 hexadecimal digits, in either case (stored in
    /// lowercase). `incidentctl` checks `--source-sha256` by this same rule.
    public static func isSHA256(_ text: String) -> Bool {
        let digits = text.lowercased().utf8
        return digits.count == 64 && digits.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// Whether `url`, an absolute URI, is of a scheme a browser runs (`javascript:`, `vbscript:`) or inlines
    /// (`data:`) when it is followed: refused in a proposed source, since exports put the URLs in links.
    static func isScript(_ url: String) -> Bool {
        // Byte by byte, letters in either case: it runs on every source URL the intake decodes.
        scriptSchemes.contains { scheme in
            url.utf8.count >= scheme.utf8.count
                && zip(url.utf8, scheme.utf8).allSatisfy { $0 == $1 || ($0 | 0x20 == $1 && (97...122).contains($1)) }
        }
    }

    private static let scriptSchemes = ["javascript:", "vbscript:", "data:"]

    static func looksLikeURI(_ s: String) -> Bool {
        guard let colon = s.firstIndex(of: ":"), colon != s.startIndex else { return false }
        return s[..<colon].allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }
            && !s.contains(" ")
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["name": .string(name), "verification": .string(verification.rawValue)]
        if let url { o["url"] = .string(url) }
        if let publishedAt { o["publishedAt"] = .string(publishedAt) }
        if let verifiedBy { o["verifiedBy"] = .string(verifiedBy) }
        if let method { o["method"] = .string(method) }
        if let sha256 { o["sha256"] = .string(sha256) }
        return .object(o)
    }

    static func list(_ json: JSONValue?, path: String, proposedAt now: Timestamp?) throws(IncidentError) -> [Source] {
        guard let json, !json.isNull else { return [] }
        guard case .array(let elements) = json else {
            throw IncidentError.invalid(path, "expected an array, got \(json.typeName)")
        }
        guard elements.count <= Limits.sources else {
            throw IncidentError.invalid(path, "has \(elements.count) entries, the limit is \(Limits.sources)")
        }
        var result: [Source] = []
        for (n, element) in elements.enumerated() {
            result.append(try Source(json: element, path: "\(path)[\(n)]", proposedAt: now))
        }
        return result
    }
}

/// A count of people known as a range; an exact count has `low == high`.
public struct PeopleRange: Hashable, Sendable {
    public var low: Int64
    public var high: Int64

    public init(low: Int64, high: Int64) {
        self.low = low
        self.high = high
    }

    init(json: JSONValue, path: String) throws(IncidentError) {
        if let exact = json.intValue {
            guard Limits.people.contains(exact) else {
                throw IncidentError.invalid(path, "\(exact) is outside \(Limits.people.lowerBound)...\(Limits.people.upperBound)")
            }
            self.init(low: exact, high: exact)
            return
        }
        if let problem = json.outOfRange(Limits.people) { throw IncidentError.invalid(path, problem) }
        if case .double = json {
            throw IncidentError.invalid(
                path, "expected a whole number in \(Limits.people.lowerBound)...\(Limits.people.upperBound), or {low, high}")
        }
        var r = try FieldReader(json, path: path)
        guard let low = try r.integer("low", range: Limits.people) else { throw IncidentError.invalid(r.name("low"), "is required") }
        let high = try r.integer("high", range: Limits.people) ?? low
        try r.finish()
        guard low <= high else { throw IncidentError.invalid(path, "low (\(low)) is greater than high (\(high))") }
        self.init(low: low, high: high)
    }

    public var json: JSONValue { ["low": .int(low), "high": .int(high)] }
}

/// A point on the map, WGS 84.
public struct Coordinates: Hashable, Sendable {
    public var lat: Double
    public var lon: Double

    init(json: JSONValue, path: String) throws(IncidentError) {
        var r = try FieldReader(json, path: path)
        guard let lat = try r.number("lat", range: -90...90) else { throw IncidentError.invalid(r.name("lat"), "is required") }
        guard let lon = try r.number("lon", range: -180...180) else { throw IncidentError.invalid(r.name("lon"), "is required") }
        try r.finish()
        self.lat = lat
        self.lon = lon
    }

    public var json: JSONValue { ["lat": .double(lat), "lon": .double(lon)] }
}

/// The data of an `incident-reported` event.
public struct ReportData: Hashable, Sendable {
    /// The city as reported, any spelling.
    public var city: String
    /// The canonical city id, resolved by the daemon at append time and stored with the event. A proposal may
    /// name it (as `incidentctl export` writes each report out), and is then stored under it as given, whatever the
    /// gazetteer makes of `city` today (``Admission/admitCityId(_:allowNewCity:store:)``); it is no part of a
    /// proposal's content (``ProposedEvent/contentBytes``), which the daemon compares with the stored event's.
    public var cityId: String?
    public var kind: IncidentKind
    public var location: String?
    public var coordinates: Coordinates?
    public var description: String?
    public var participants: PeopleRange?
    public var targets: String?
    public var tags: [String]

    init(json: JSONValue, path: String, stored: Bool) throws(IncidentError) {
        var r = try FieldReader(json, path: path)
        city = try r.requiredString("city", maxLength: Limits.shortText)
        let cityId = try r.string("cityId", maxLength: 128)
        if !stored, let cityId, !Gazetteer.isValidId(cityId) {
            throw IncidentError.invalid(r.name("cityId"), Self.notACityId(cityId))
        }
        self.cityId = cityId
        guard let kind = try r.enumValue("kind", IncidentKind.self) else {
            throw IncidentError.invalid(r.name("kind"), "is required; one of \(IncidentKind.allowedList)")
        }
        self.kind = kind
        location = try r.string("location", maxLength: Limits.location)
        coordinates = try r.raw("coordinates").map { v throws(IncidentError) in try Coordinates(json: v, path: r.name("coordinates")) }
        description = try r.string("description", maxLength: Limits.description)
        participants = try r.raw("participants").map { v throws(IncidentError) in try PeopleRange(json: v, path: r.name("participants")) }
        targets = try r.string("targets", maxLength: Limits.location)
        tags = try r.stringArray("tags", maxCount: Limits.tags, maxLength: Limits.tag) ?? []
        try r.finish()
    }

    /// Why `text`, sent as a report's `cityId`, is refused: it is not of a city id's form.
    static func notACityId(_ text: String) -> String {
        "\"\(text.prefix(64))\" is not a city id: lowercase Latin letters, digits and '-', starting with a letter or "
            + "digit, at most \(Gazetteer.maxIdLength) characters (leave it out, and the daemon resolves city with the gazetteer)"
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["city": .string(city), "kind": .string(kind.rawValue)]
        if let cityId { o["cityId"] = .string(cityId) }
        if let location { o["location"] = .string(location) }
        if let coordinates { o["coordinates"] = coordinates.json }
        if let description { o["description"] = .string(description) }
        if let participants { o["participants"] = participants.json }
        if let targets { o["targets"] = .string(targets) }
        if !tags.isEmpty { o["tags"] = .array(tags.map { .string($0) }) }
        return .object(o)
    }

    /// The fields an `outcome-updated` may correct. The city is not among them: a report filed under the
    /// wrong city is retracted and reported again, so that each city's history stays simple to audit.
    public static let correctableFields: Set<String> = [
        "kind", "location", "coordinates", "description", "participants", "targets", "tags",
    ]

    /// Why an outcome may not correct `field` of a report, and what to do instead, for a field not among
    /// ``correctableFields``. The city and the date (`occurredAt` and `precision`, which are the report's envelope, not
    /// its data) are taken back by retracting the incident and reporting it again: a city's counts, and its first and
    /// last incident dates, are folded from each report as it came, and a correction could not take a date back out.
    public static func uncorrectable(_ field: String) -> String {
        switch field {
        case "city", "cityId":
            return "cannot be corrected; retract the incident and report it again"
        case "occurredAt", "precision":
            return "cannot be corrected: when an incident happened is its report's occurredAt and precision, which its city's first and last incident dates are made from. Retract the incident (an outcome with status retracted, its note saying why) and report it again with the right date"
        default:
            return "is not a correctable field; one of \(correctableFields.sorted().joined(separator: ", "))"
        }
    }

    /// This report with `corrections` applied: each field they correct takes the value they give it, read by
    /// ``correction(_:)``, and every other field stays as it is. What the corrections do never depends on the
    /// report's other fields, so a report stored under older, looser rules is corrected as one that passes
    /// today's. The live projections, the rebuild (through ``countedEffect(of:)``), replay and the `incident`
    /// document all correct a report through ``correction(_:)``, and so agree on every log.
    public func applying(_ corrections: [String: JSONValue]) -> ReportData {
        var applied = self
        switch ReportData.correction(corrections) {
        case .invalid: break
        case .counted(let effect): effect.apply(kind: &applied.kind, participants: &applied.participants)
        case .fields(let corrected):
            for key in corrections.keys { applied.take(key, from: corrected) }
        }
        return applied
    }

    /// Field `key` of `other` in place of this report's own.
    private mutating func take(_ key: String, from other: ReportData) {
        switch key {
        case "kind": kind = other.kind
        case "location": location = other.location
        case "coordinates": coordinates = other.coordinates
        case "description": description = other.description
        case "participants": participants = other.participants
        case "targets": targets = other.targets
        case "tags": tags = other.tags
        default: break
        }
    }

    /// ``applying(_:)`` by the round trip of this whole report through a merged JSON object. For a report that
    /// passes today's rules it gives what ``applying(_:)`` gives (CorrectionTests holds them together); for one
    /// that does not, it changes nothing, which is why ``applying(_:)`` does not take this way.
    package func applyingThroughJSON(_ corrections: [String: JSONValue]) -> ReportData {
        var merged = json.objectValue ?? [:]
        for (key, value) in corrections { merged[key] = value.isNull ? nil : value }
        return (try? ReportData(json: .object(merged), path: "data", stored: true)) ?? self
    }

    /// What ``applying(_:)`` does to the two fields the projections count by, whatever the report: the same
    /// reading of the corrections, ``correction(_:)``, so the rebuild (which folds these effects) and the live
    /// projections (which apply the corrections to the report they hold) count every incident alike.
    public static func countedEffect(of corrections: [String: JSONValue]) -> CountedCorrection {
        switch correction(corrections) {
        case .invalid: return CountedCorrection()
        case .counted(let effect): return effect
        case .fields(let corrected): return CountedCorrection(corrections, corrected: corrected)
        }
    }

    /// ``countedEffect(of:)`` by the round trip of a bare report through a merged JSON object, for every
    /// correction (``correction(_:)`` reads one of the kind or the participants alone directly).
    package static func countedEffectThroughJSON(of corrections: [String: JSONValue]) -> CountedCorrection {
        guard case .fields(let applied) = correctedBareReport(corrections) else { return CountedCorrection() }
        return CountedCorrection(corrections, corrected: applied)
    }

    /// What a set of corrections does to a report, read once from the corrections alone.
    public enum Correction: Hashable, Sendable {
        /// A field fails its rule, so the corrections change nothing.
        case invalid
        /// They correct the kind or the participants and nothing else.
        case counted(CountedCorrection)
        /// A bare report with every corrected field set as the corrections give it: ``applying(_:)`` takes the
        /// corrected fields from it.
        case fields(ReportData)
    }

    /// The one reading of `corrections` that ``applying(_:)`` and ``countedEffect(of:)`` share. The kind and the
    /// participants alone are read directly (as most corrections are); any other field through a bare report
    /// merged with the corrections, which checks each corrected field by the report's own rule and nothing of
    /// the report being corrected.
    public static func correction(_ corrections: [String: JSONValue]) -> Correction {
        switch countedOnly(corrections) {
        case .invalid: return .invalid
        case .counted(let effect): return .counted(effect)
        case .other: return correctedBareReport(corrections)
        }
    }

    private static func correctedBareReport(_ corrections: [String: JSONValue]) -> Correction {
        let bare = ReportData(
            city: "-", cityId: nil, kind: .other, location: nil, coordinates: nil, description: nil, participants: nil,
            targets: nil, tags: [])
        var merged = bare.json.objectValue ?? [:]
        for (key, value) in corrections { merged[key] = value.isNull ? nil : value }
        guard let applied = try? ReportData(json: .object(merged), path: "data", stored: true) else { return .invalid }
        return .fields(applied)
    }

    /// Corrections read without the round trip through a merged JSON object, when they correct the kind or the
    /// participants and nothing else (as most do).
    enum CountedOnly {
        /// They correct another field too: only the round trip reads them.
        case other
        /// A field fails its rule, so the merged report would be refused: they change nothing.
        case invalid
        case counted(CountedCorrection)
    }

    /// ``CountedOnly`` for `corrections`. Each field checks only itself (see ``correction(_:)``), so a
    /// correction of the kind or the participants is read here by the same rule as the report's own: the kind
    /// as ``FieldReader/enumValue(_:_:)`` reads it (null removes it, which the rule refuses), the participants
    /// by ``PeopleRange/init(json:path:)``, null removing them.
    static func countedOnly(_ corrections: [String: JSONValue]) -> CountedOnly {
        var effect = CountedCorrection()
        var invalid = false
        for (key, value) in corrections {
            switch key {
            case "kind":
                if case .string(let text) = value, let kind = IncidentKind(rawValue: text) {
                    effect.kind = kind
                } else {
                    invalid = true
                }
            case "participants":
                if value.isNull {
                    effect.participants = .removed
                } else if let range = try? PeopleRange(json: value, path: "data.participants") {
                    effect.participants = .set(range)
                } else {
                    invalid = true
                }
            default:
                return .other
            }
        }
        return invalid ? .invalid : .counted(effect)
    }

    /// Checks a `corrections` object against the report's own field rules.
    static func validateCorrections(_ json: JSONValue, path: String) throws(IncidentError) -> [String: JSONValue] {
        guard case .object(let corrections) = json else {
            throw IncidentError.invalid(path, "expected an object, got \(json.typeName)")
        }
        guard !corrections.isEmpty else { throw IncidentError.invalid(path, "must correct at least one field") }
        for key in corrections.keys.sorted() where !correctableFields.contains(key) {
            throw IncidentError.invalid("\(path).\(key.prefix(64))", uncorrectable(key))
        }
        var probe: [String: JSONValue] = ["city": "probe", "kind": "other"]
        for (key, value) in corrections where !value.isNull { probe[key] = value }
        if corrections["kind"]?.isNull == true { throw IncidentError.invalid("\(path).kind", "cannot be removed") }
        do {
            _ = try ReportData(json: .object(probe), path: path, stored: false)
        }
        return corrections
    }
}

/// What an outcome's corrections do to a report's kind and participants (see ``ReportData/countedEffect(of:)``).
public struct CountedCorrection: Hashable, Sendable {
    /// What happens to the participants.
    public enum Participants: Hashable, Sendable {
        case unchanged
        case removed
        case set(PeopleRange)
    }

    /// The corrected kind; nil leaves it.
    public var kind: IncidentKind?
    public var participants: Participants = .unchanged

    public init(kind: IncidentKind? = nil, participants: Participants = .unchanged) {
        self.kind = kind
        self.participants = participants
    }

    /// What `corrections` do to the kind and the participants, given `corrected`, a report with them applied.
    init(_ corrections: [String: JSONValue], corrected: ReportData) {
        if corrections["kind"] != nil { kind = corrected.kind }
        if let given = corrections["participants"] {
            participants = given.isNull ? .removed : corrected.participants.map { .set($0) } ?? .removed
        }
    }

    /// Applies the effect to a kind and participants.
    public func apply(kind: inout IncidentKind, participants: inout PeopleRange?) {
        if let corrected = self.kind { kind = corrected }
        switch self.participants {
        case .unchanged: break
        case .removed: participants = nil
        case .set(let range): participants = range
        }
    }
}

/// The data of a `response-observed` event.
public struct ResponseData: Hashable, Sendable {
    public var by: String
    public var responses: [ResponseKind]
    public var killed: Int64?
    public var injured: Int64?
    public var detained: Int64?
    public var description: String?

    /// `stored` reads an event the log already holds: one stored before `none` was refused beside another response
    /// is read as it was stored.
    init(json: JSONValue, path: String, stored: Bool) throws(IncidentError) {
        var r = try FieldReader(json, path: path)
        by = try r.requiredString("by", maxLength: Limits.shortText)
        guard let list = try r.array("responses", maxCount: ResponseKind.allCases.count) else {
            throw IncidentError.invalid(r.name("responses"), "is required; one or more of \(ResponseKind.allowedList)")
        }
        guard !list.isEmpty else { throw IncidentError.invalid(r.name("responses"), "must name at least one response") }
        var responses: [ResponseKind] = []
        for (n, element) in list.enumerated() {
            guard case .string(let s) = element, let kind = ResponseKind(rawValue: s) else {
                throw IncidentError.invalid(
                    "\(r.name("responses"))[\(n)]",
                    "unknown value \(element.canonicalString().prefix(64)); expected one of \(ResponseKind.allowedList)")
            }
            if responses.contains(kind) { throw IncidentError.invalid("\(r.name("responses"))[\(n)]", "\(s) is listed twice") }
            responses.append(kind)
        }
        if !stored, responses.count > 1, responses.contains(.none) {
            throw IncidentError.invalid(r.name("responses"), Self.noneBesideOthers)
        }
        self.responses = responses
        killed = try r.integer("killed", range: Limits.people)
        injured = try r.integer("injured", range: Limits.people)
        detained = try r.integer("detained", range: Limits.people)
        if !stored, let (field, count) = Self.casualtyOfNone(responses, killed: killed, injured: injured, detained: detained) {
            throw IncidentError.invalid(r.name(field), Self.casualtiesOfNone(field, count))
        }
        description = try r.string("description", maxLength: Limits.description)
        try r.finish()
    }

    /// The first count of people killed, injured or detained above 0 in a response whose responses are `none` alone,
    /// which a proposed response may not hold (the fast decoder leaves such a one to this reader, which names it).
    static func casualtyOfNone(
        _ responses: [ResponseKind], killed: Int64?, injured: Int64?, detained: Int64?
    ) -> (field: String, count: Int64)? {
        guard responses.count == 1, responses[0] == .none else { return nil }
        if let killed, killed > 0 { return ("killed", killed) }
        if let injured, injured > 0 { return ("injured", injured) }
        if let detained, detained > 0 { return ("detained", detained) }
        return nil
    }

    /// Why a response of `none` that counts `count` people `field` (killed, injured, detained) is refused.
    static func casualtiesOfNone(_ field: String, _ count: Int64) -> String {
        "counts \(count) \(field) in a response of none; none means the force was seen not to respond: name what it did (\(field == "detained" ? "detentions" : "live-fire, beatings"), …), or leave the count out"
    }

    /// Why a `responses` list naming `none` and another response is refused.
    static let noneBesideOthers =
        "lists none beside another response; none means the force was seen not to respond, so send it alone"

    public var json: JSONValue {
        var o: [String: JSONValue] = ["by": .string(by), "responses": .array(responses.map { .string($0.rawValue) })]
        if let killed { o["killed"] = .int(killed) }
        if let injured { o["injured"] = .int(injured) }
        if let detained { o["detained"] = .int(detained) }
        if let description { o["description"] = .string(description) }
        return .object(o)
    }
}

/// The data of an `outcome-updated` event: a new status, a verification, or corrections to the report.
public struct OutcomeData: Hashable, Sendable {
    public var status: OutcomeStatus
    public var verification: Verification?
    public var verifiedBy: String?
    public var method: String?
    public var corrections: [String: JSONValue]?
    public var note: String?

    init(json: JSONValue, path: String) throws(IncidentError) {
        var r = try FieldReader(json, path: path)
        guard let status = try r.enumValue("status", OutcomeStatus.self) else {
            throw IncidentError.invalid(r.name("status"), "is required; one of \(OutcomeStatus.allowedList)")
        }
        self.status = status
        verification = try r.enumValue("verification", Verification.self)
        verifiedBy = try r.string("verifiedBy", maxLength: Limits.shortText)
        method = try r.string("method", maxLength: Limits.shortText)
        corrections = try r.raw("corrections").map { v throws(IncidentError) in
            try ReportData.validateCorrections(v, path: r.name("corrections"))
        }
        note = try r.string("note", maxLength: Limits.description)
        try r.finish()
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["status": .string(status.rawValue)]
        if let verification { o["verification"] = .string(verification.rawValue) }
        if let verifiedBy { o["verifiedBy"] = .string(verifiedBy) }
        if let method { o["method"] = .string(method) }
        if let corrections { o["corrections"] = .object(corrections) }
        if let note { o["note"] = .string(note) }
        return .object(o)
    }
}

/// The typed data of an event, one case per event type.
public enum EventData: Hashable, Sendable {
    case reported(ReportData)
    case responded(ResponseData)
    case outcome(OutcomeData)

    public var type: EventType {
        switch self {
        case .reported: return .incidentReported
        case .responded: return .responseObserved
        case .outcome: return .outcomeUpdated
        }
    }

    init(type: EventType, json: JSONValue?, stored: Bool) throws(IncidentError) {
        guard let json else { throw IncidentError.invalid("data", "is required") }
        switch type {
        case .incidentReported: self = .reported(try ReportData(json: json, path: "data", stored: stored))
        case .responseObserved: self = .responded(try ResponseData(json: json, path: "data", stored: stored))
        case .outcomeUpdated: self = .outcome(try OutcomeData(json: json, path: "data"))
        }
    }

    public var json: JSONValue {
        switch self {
        case .reported(let d): return d.json
        case .responded(let d): return d.json
        case .outcome(let d): return d.json
        }
    }
}
