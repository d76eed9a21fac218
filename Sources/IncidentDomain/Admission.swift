import Gazetteer
import StrictJSON
import Synchronization

/// What the rules decided for one proposed event: its stream, its version there, and its data with the
/// canonical city resolved.
public struct AdmittedEvent: Hashable, Sendable {
    public var incident: String
    public var version: Int64
    public var occurredAt: String
    public var precision: Precision
    public var data: EventData
    /// The position of the incident's report, for an event that follows it; nil for a report, which starts its
    /// incident.
    public var reportPosition: UInt64?
    /// For a report stored under a `cityId` it names, other than the daemon would have given it (a restore's):
    /// what the daemon made of its `city`, for the notice in the daemon's log. Nil otherwise.
    public var restoredCity: RestoredCity? = nil
    /// For a report that made a new city (`allowNewCity`) under a name close to a city's the gazetteer or the log
    /// knows already: that city, for the warning in the answer (a typo makes a second city otherwise unseen).
    public var newCity: NewCity? = nil
}

/// A city a report made with `allowNewCity`, under a name within a few letters of cities known already (the
/// suggestions an unknown city's name gets): perhaps a typo of one of them, which splits that city's figures in two
/// unless the report is retracted and made again. The append's answer names it (`newCities`).
public struct NewCity: Hashable, Sendable {
    /// The id the new city was made under.
    public var cityId: String
    /// The report's `city`, as reported.
    public var city: String
    /// The names of the known cities close to it, closest first.
    public var near: [String]

    public init(cityId: String, city: String, near: [String]) {
        self.cityId = cityId
        self.city = city
        self.near = near
    }
}

/// A report stored, by a peer that may restore cities (the admin role), under the `cityId` it names where the daemon
/// would have given it another, or where that id makes a new city the gazetteer spells another city with: what
/// the daemon's log says of it at append time, before its next start warns of the shadowed city.
public struct RestoredCity: Hashable, Sendable {
    /// The id the report named, which it was stored under.
    public var cityId: String
    /// The report's `city`, as reported.
    public var city: String
    /// The id the daemon gives `city` itself (the gazetteer's, or the log's), or nil when it would refuse it.
    public var resolvesTo: String?
    /// Whether `cityId` made a new city.
    public var madeCity: Bool
    /// For a new city, the gazetteer's city whose spelling its id is, if any: `name (id)`.
    public var gazetteerSpells: String?

    public init(cityId: String, city: String, resolvesTo: String?, madeCity: Bool, gazetteerSpells: String?) {
        self.cityId = cityId
        self.city = city
        self.resolvesTo = resolvesTo
        self.madeCity = madeCity
        self.gazetteerSpells = gazetteerSpells
    }

    /// `kupiansk-2 for "Kupiansk" (which the daemon resolves to kupiansk), a new city`, in a few words.
    public var summary: String {
        let city = "\"\(self.city.prefix(64))\""
        var text = "\(cityId) for \(city) (which the daemon resolves to \(resolvesTo ?? "no city"))"
        if madeCity { text += ", a new city" }
        if let gazetteerSpells { text += " whose id the gazetteer spells \(gazetteerSpells) with" }
        return text
    }
}

/// The rules of SPEC §2 that depend on what the log already holds: unknown incidents, existing incidents,
/// expected versions and unknown cities.
public struct Admission: Sendable {
    public let gazetteer: Gazetteer
    let memo: GazetteerMemo?

    public init(gazetteer: Gazetteer, memo: GazetteerMemo? = nil) {
        self.gazetteer = gazetteer
        self.memo = memo
    }

    /// Decides the envelope of `event` against `store`, or refuses it with the rule it breaks. `reserved` holds the
    /// incident ids that reports later in the same request give by hand, which an id generated here must not take.
    /// `restoresCities` (the admin role's) lets a report's `cityId` differ from the id the daemon would give it
    /// (``admitNamedCity(_:of:allowNewCity:restoresCities:store:)``).
    public func admit(
        _ event: ProposedEvent, allowNewCity: Bool, restoresCities: Bool = false, recordedAt: Timestamp,
        reserved: Set<String> = [], store: inout some ProjectionStore
    ) throws -> AdmittedEvent {
        switch event.data {
        case .reported(var report):
            let cityId: String
            var restored: RestoredCity?
            var newCity: NewCity?
            if let named = report.cityId {
                (cityId, restored) = try admitNamedCity(
                    named, of: report.city, allowNewCity: allowNewCity, restoresCities: restoresCities, store: &store)
            } else {
                cityId = try resolveCity(report.city, allowNewCity: allowNewCity, store: &store)
                newCity = try madeCity(cityId, from: report.city, allowNewCity: allowNewCity, store: &store)
            }
            report.cityId = cityId
            let incident: String
            if let requested = event.incident {
                if let existing = try store.incident(requested) {
                    throw IncidentError(
                        .incidentExists, "incident \(requested) already exists (version \(existing.version))",
                        details: ["incident": .string(requested), "actualVersion": .int(existing.version)])
                }
                incident = requested
            } else {
                incident = try freshIncidentId(cityId: cityId, event: event, kind: report.kind, reserved: reserved, store: &store)
            }
            if let expected = event.expectedVersion, expected != 0 {
                throw wrongVersion(incident: incident, expected: expected, actual: 0)
            }
            guard let occurredAt = event.occurredAt, let precision = event.precision else {
                throw IncidentError.invalid("occurredAt", "is required for incident-reported")
            }
            return AdmittedEvent(
                incident: incident, version: 1, occurredAt: occurredAt, precision: precision, data: .reported(report),
                reportPosition: nil, restoredCity: restored, newCity: newCity)
        case .responded, .outcome:
            guard let incident = event.incident else { throw IncidentError.invalid("incident", "is required") }
            guard let state = try store.incident(incident) else {
                throw IncidentError(
                    .unknownIncident, "incident \(incident) was never reported; report it first",
                    details: ["incident": .string(incident)])
            }
            if let expected = event.expectedVersion, expected != state.version {
                throw wrongVersion(incident: incident, expected: expected, actual: state.version)
            }
            let occurredAt: String
            let precision: Precision
            if let given = event.occurredAt, let p = event.precision {
                occurredAt = given
                precision = p
            } else if case .responded = event.data {
                occurredAt = state.occurredAt
                precision = state.precision
            } else {
                occurredAt = recordedAt.description
                precision = .minute
            }
            return AdmittedEvent(
                incident: incident, version: state.version + 1, occurredAt: occurredAt, precision: precision,
                data: event.data, reportPosition: state.firstPosition)
        }
    }

    private func wrongVersion(incident: String, expected: Int64, actual: Int64) -> IncidentError {
        IncidentError(
            .wrongExpectedVersion, "incident \(incident) is at version \(actual), not \(expected)",
            details: ["incident": .string(incident), "expectedVersion": .int(expected), "actualVersion": .int(actual)])
    }

    /// The id a report naming its `cityId` is stored under (``admitCityId(_:allowNewCity:store:)``), and, where it
    /// is not the one the daemon gives `city` itself (``resolveCity(_:allowNewCity:store:)``, under the same
    /// `allowNewCity`) or makes a new city whose id the gazetteer spells another city with, what the daemon made of
    /// it. Only a restore may do that (`restoresCities`, the admin role's): a `cityId` that agrees stores what the
    /// report without it would, but one that disagrees files the report in a city its `city` does not name, or makes
    /// a city that `allowNewCity` alone refuses (a second Kupiansk, an id the gazetteer spells Kupiansk with), which
    /// a reporter is refused, `permission_denied` naming `data.cityId` and what `city` resolves to.
    public func admitNamedCity(
        _ named: String, of city: String, allowNewCity: Bool, restoresCities: Bool, store: inout some ProjectionStore
    ) throws -> (cityId: String, restored: RestoredCity?) {
        let isNew = try gazetteer.city(id: named) == nil && store.city(named) == nil
        let cityId = try admitCityId(named, allowNewCity: allowNewCity, store: &store)
        var refusal: IncidentError?
        let own: String?
        do {
            own = try resolveCity(city, allowNewCity: allowNewCity, store: &store)
        } catch let error as IncidentError {
            own = nil
            refusal = error
        }
        let spelled = isNew ? gazetteer.resolve(cityId).map { "\($0.name) (\($0.id))" } : nil
        if own.map({ Self.sameBytes($0, cityId) }) == true && spelled == nil { return (cityId, nil) }
        guard restoresCities else {
            let resolution =
                own.map { "\"\(city.prefix(64))\" resolves to \($0)" }
                ?? "\"\(city.prefix(64))\" resolves to no city (\(refusal?.message ?? "refused"))"
            throw IncidentError(
                .permissionDenied,
                "data.cityId: \"\(cityId)\" is not the city the daemon files this report in: \(resolution)"
                    + (isNew ? ", and \(cityId) would be a new city" : "")
                    + ". Storing a report under a cityId of its own, as restoring another log's cities does (incidentctl export | incidentctl append), takes the admin role; "
                    + (own.map { "send cityId \($0), or leave it out" } ?? "leave cityId out, and write the city as the gazetteer does"),
                details: [
                    "field": "data.cityId", "cityId": .string(cityId), "city": .string(String(city.prefix(200))),
                    "resolvesTo": own.map { .string($0) } ?? .null, "requiredRole": "admin",
                ])
        }
        return (cityId, RestoredCity(cityId: cityId, city: city, resolvesTo: own, madeCity: isNew, gazetteerSpells: spelled))
    }

    /// Byte for byte: String's == takes two spellings of a text (NFC, NFD) for one, and ids are compared as stored.
    private static func sameBytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// The canonical id a report names itself (`data.cityId`, of a city id's form), which it is stored under as
    /// given: an export appended to another log (or to its own again) keeps each report's city, whatever the
    /// gazetteer now makes of its `city`, which is not resolved. It must name a city the gazetteer or the log
    /// knows, or, with `allowNewCity`, have the form of an id the daemon makes for a new city (``resolveCity``'s
    /// slug: Latin letters and digits in words joined by single dashes), else it is `unknown_city` or
    /// `invalid_event` naming `data.cityId`. A new city may take an id the gazetteer spells another city with, as
    /// one added with `allowNewCity` before a gazetteer took its spelling holds it: that is the log being copied.
    public func admitCityId(_ id: String, allowNewCity: Bool, store: inout some ProjectionStore) throws -> String {
        if gazetteer.city(id: id) != nil { return id }
        if try store.city(id) != nil { return id }
        guard allowNewCity else {
            let others = try store.allCities().filter { gazetteer.city(id: $0.cityId) == nil }.map(\.gazetteerEntry)
            let suggestions = gazetteer.suggestions(for: id, alsoAmong: others)
            let hint = suggestions.isEmpty ? "" : "; did you mean \(suggestions.joined(separator: ", "))?"
            throw IncidentError(
                .unknownCity,
                "data.cityId: neither the gazetteer nor the log knows the city id \"\(id)\"\(hint) (set allowNewCity to add a new city)",
                details: [
                    "field": "data.cityId", "city": .string(id), "suggestions": .array(suggestions.map { .string($0) }),
                ])
        }
        guard Gazetteer.slug(id) == id else {
            throw IncidentError.invalid(
                "data.cityId",
                "\"\(id)\" is no id of a new city: a new city's id is Latin letters and digits in words joined by single '-' (as \(Gazetteer.slug(id) ?? "kupiansk"))")
        }
        return id
    }

    /// The canonical id of a reported city name, or `unknown_city` with suggestions. A city an earlier report
    /// added with `allowNewCity` is known from then on under its canonical id, which names it before any spelling
    /// of the gazetteer does (a gazetteer changed since may have made it another city's alias), and by the
    /// spelling it was made from, whose slug its id is; a gazetteer city only by the gazetteer's spellings (and its
    /// id), so that a name the gazetteer refuses ("Melitopol?") is refused however many incidents the city has. A city of the log that the gazetteer does not know is also
    /// known by every spelling reported for it (its `aliasesSeen`), which reaches a city made through a report's
    /// `cityId` (a restore's) whose id is no slug of its spellings; those come after the gazetteer's spellings and
    /// the slugs, so they only name what nothing else does (``Gazetteer/cities(spelled:among:)``); a spelling of
    /// several such cities names none of them (``ambiguousCity(_:ids:field:)``). Only a name that is no such
    /// spelling makes a new city.
    public func resolveCity(_ name: String, allowNewCity: Bool, store: inout some ProjectionStore) throws -> String {
        if let resolved = memo != nil ? memo?.resolve(name) : gazetteer.resolve(name)?.id {
            // A city id is of the form of an incident id, which is checked without normalising.
            guard resolved != name, IncidentID.isValid(name), try store.city(name) != nil else { return resolved }
            return name
        }
        let slugged = Gazetteer.slugHoldingAll(name)
        // Only a city the gazetteer does not know is found by its slug: a gazetteer city is found by the gazetteer's
        // spellings alone, whether or not the log holds incidents of it.
        if let slugged, slugged.holdsAll, gazetteer.city(id: slugged.slug) == nil, try store.city(slugged.slug) != nil {
            return slugged.slug
        }
        let others = try store.allCities().filter { gazetteer.city(id: $0.cityId) == nil }.map(\.gazetteerEntry)
        if let spelled = try Self.cityOfTheLog(spelled: name, among: others, in: gazetteer, field: "data.city") { return spelled }
        // Cut to an id's length, two names that differ only past it would be one city.
        guard slugged?.holdsAll ?? true else {
            throw IncidentError.invalid(
                "data.city",
                "\"\(name.prefix(64))…\" is too long to name a city the gazetteer does not know: its id, in Latin letters and digits, would pass \(Gazetteer.maxIdLength) characters; use a shorter spelling")
        }
        if allowNewCity {
            guard let slug = slugged?.slug else {
                throw IncidentError.invalid("data.city", "\"\(name.prefix(64))\" gives no usable id for a new city")
            }
            // An id names its city before any spelling does: one the gazetteer spells another city with would take
            // that spelling from it.
            if let other = gazetteer.resolve(slug) {
                throw IncidentError.invalid(
                    "data.city",
                    "\"\(name.prefix(64))\" would make the new city \(slug), which is how the gazetteer spells \(other.name) (\(other.id)): write the city as the gazetteer does, or give a new city a name of its own")
            }
            return slug
        }
        let suggestions = gazetteer.suggestions(for: name, alsoAmong: others)
        let hint = suggestions.isEmpty ? "" : "; did you mean \(suggestions.joined(separator: ", "))?"
        throw IncidentError(
            .unknownCity,
            "the gazetteer does not know the city \"\(name.prefix(64))\"\(hint) (set allowNewCity to add a new city)",
            details: ["city": .string(String(name.prefix(200))), "suggestions": .array(suggestions.map { .string($0) })])
    }

    /// The city `cityId`, which `resolveCity` gave the reported name `city`, as a ``NewCity`` when it is one this report
    /// makes (neither the gazetteer nor the log has it) under a name close to the names of cities known already; nil
    /// otherwise. Looked for only as a city is made, which is rare.
    func madeCity(_ cityId: String, from city: String, allowNewCity: Bool, store: inout some ProjectionStore) throws -> NewCity? {
        guard allowNewCity, gazetteer.city(id: cityId) == nil, try store.city(cityId) == nil else { return nil }
        let others = try store.allCities().filter { gazetteer.city(id: $0.cityId) == nil }.map(\.gazetteerEntry)
        let near = gazetteer.suggestions(for: city, alsoAmong: others)
        return near.isEmpty ? nil : NewCity(cityId: cityId, city: city, near: near)
    }

    /// The id of the one city among `others` (the log's cities that `gazetteer` does not know) reported under the
    /// spelling `name` (``Gazetteer/cities(spelled:among:)``), or nil when none was; refused
    /// (``ambiguousCity(_:ids:field:)``, naming `field`) when several were. The rule reports and queries share.
    public static func cityOfTheLog(
        spelled name: String, among others: [City], in gazetteer: Gazetteer, field: String?
    ) throws(IncidentError) -> String? {
        let spelled = gazetteer.cities(spelled: name, among: others)
        guard spelled.count <= 1 else { throw ambiguousCity(name, ids: spelled.map(\.id), field: field) }
        return spelled.first?.id
    }

    /// The refusal of a spelling that several cities of the log were reported under (cities a restore made
    /// through `cityId`, whose ids are no slugs of it), `ids`: it names none of them alone, so the report or query
    /// must give the id of the one meant. `unknown_city`, with the ids as the suggestions.
    public static func ambiguousCity(_ name: String, ids: [String], field: String?) -> IncidentError {
        var details: [String: JSONValue] = ["city": .string(String(name.prefix(200))), "suggestions": .array(ids.map { .string($0) })]
        if let field { details["field"] = .string(field) }
        return IncidentError(
            .unknownCity,
            "\"\(name.prefix(64))\" is a spelling of \(ids.count) cities of this log, \(ids.joined(separator: ", ")), and names none of them alone: give the id of the one meant\(field == nil ? "" : " (as data.cityId, or as the city)")",
            details: details)
    }

    private func freshIncidentId(
        cityId: String, event: ProposedEvent, kind: IncidentKind, reserved: Set<String>, store: inout some ProjectionStore
    ) throws -> String {
        let date = String((event.occurredAt ?? "").prefix(10))
        let base = String("\(cityId.prefix(80))-\(date)-\(kind.rawValue)".prefix(120))
        func isFree(_ id: String) throws -> Bool { try !reserved.contains(id) && store.incident(id) == nil }
        func isFree(_ n: Int) throws -> Bool { try isFree(n == 1 ? base : "\(base)-\(n)") }
        if try isFree(1) { return base }
        if try isFree(2) { return "\(base)-2" }
        // The suffixes are taken in turn, so the first free one is found by bisection, between a taken one (`low`)
        // and a free one (`high`): ten look-ups rather than up to a thousand. Where ids were also given by hand out
        // of turn, the one found may not be the lowest free, but it is free.
        if try isFree(999) {
            var low = 2
            var high = 999
            while high - low > 1 {
                let middle = (low + high) / 2
                if try isFree(middle) { high = middle } else { low = middle }
            }
            return "\(base)-\(high)"
        }
        // Past the 999th, eight random hex digits, each draw checked too: 32 bits make a second draw all but
        // unheard of, and a taken id is never handed out.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<64 {
            let digits = String(generator.next() as UInt32, radix: 16)
            let candidate = "\(base)-\(String(repeating: "0", count: 8 - digits.count))\(digits)"
            if try isFree(candidate) { return candidate }
        }
        throw IncidentError.invalid(
            "incident", "no free id was found for a report of \(cityId) on \(date) of kind \(kind.rawValue); give one")
    }
}

/// The gazetteer's answers for the spellings seen so far: normalising a name (case, apostrophes, diacritics)
/// costs far more than looking the raw spelling up, and a log sees the same few spellings again and again.
/// Bounded, shared between threads.
public final class GazetteerMemo: Sendable {
    public let gazetteer: Gazetteer
    private let answers = Mutex<[String: String?]>([:])
    private let limit: Int

    public init(gazetteer: Gazetteer, limit: Int = 4096) {
        self.gazetteer = gazetteer
        self.limit = limit
    }

    /// The canonical id `gazetteer.resolve(name)` gives, or nil.
    public func resolve(_ name: String) -> String? {
        if let known = answers.withLock({ $0[name] }) { return known }
        let id = gazetteer.resolve(name)?.id
        answers.withLock { answers in
            if answers.count < limit { answers[name] = .some(id) }
        }
        return id
    }
}
