/// How an incident reads in the codebook of ACLED (Armed Conflict Location & Event Data), whose columns
/// `incidentctl export --format csv` writes, so that the log's incidents can sit beside ACLED's own data.
///
/// A civil action (a demonstration, blockade, strike or symbolic act) is one of ACLED's `Protests`: a
/// `Peaceful protest` when no force intervened (no response, `none` or `accommodation`), an `Excessive force
/// against protesters` when a force opened fire on them (`live-fire`) or killed any of them, and a `Protest with
/// intervention` for any other response (warning shots, tear gas, dispersal, detentions, beatings, abductions).
/// A confrontation is a `Riots` / `Violent demonstration`; sabotage and anything else a `Strategic developments`
/// / `Other`, which ACLED's analysts would code by hand.
public enum ACLED {
    /// ACLED's `event_type` and `sub_event_type` for an incident of `kind`, with every response observed and the
    /// number killed.
    public static func classify(kind: IncidentKind, responses: Set<ResponseKind>, killed: Int64) -> (eventType: String, subEventType: String) {
        switch kind {
        case .demonstration, .blockade, .strike, .symbolicAct:
            if responses.contains(.liveFire) || killed > 0 { return ("Protests", "Excessive force against protesters") }
            if !responses.subtracting([.none, .accommodation]).isEmpty { return ("Protests", "Protest with intervention") }
            return ("Protests", "Peaceful protest")
        case .confrontation:
            return ("Riots", "Violent demonstration")
        case .sabotage, .other:
            return ("Strategic developments", "Other")
        }
    }

    /// ACLED's `event_date`, always a whole date: the date of an event's `occurredAt` as written (its own day,
    /// wherever its offset puts it in UTC), or the first day of a month given alone (`time_precision` 3 says so).
    public static func eventDate(occurredAt: String) -> String {
        let date = String(occurredAt.prefix(10))
        return date.utf8.count == 7 ? date + "-01" : date
    }

    /// ACLED's `time_precision`: 1 when the day is known, 2 the week, 3 the month.
    public static func timePrecision(_ precision: Precision) -> Int {
        switch precision {
        case .minute, .hour, .day: return 1
        case .week: return 2
        case .month: return 3
        }
    }

    /// ACLED's `actor1` for the civilians of an incident of `kind` in `country` (a name, or nil when not known).
    public static func civilianActor(kind: IncidentKind, country: String?) -> String {
        let who: String
        switch kind {
        case .demonstration, .blockade, .strike, .symbolicAct: who = "Protesters"
        case .confrontation: who = "Rioters"
        case .sabotage, .other: who = "Civilians"
        }
        return country.map { "\(who) (\($0))" } ?? who
    }

    /// ACLED's `geo_precision` of an event placed in a named town, at the town's coordinates or at its own: 1. ACLED
    /// keeps 2 for "a part of a region" or "near a town" and 3 for a larger region; a report names its city.
    public static let geoPrecisionOfTown = 1

    /// ACLED's columns, in the order `incidentctl export --format csv` writes them.
    public static let columns = [
        "event_id_cnty", "event_date", "time_precision", "event_type", "sub_event_type", "actor1", "actor2", "location",
        "latitude", "longitude", "geo_precision", "source", "notes", "fatalities", "timestamp",
    ]
}
