import StrictJSON

/// A refusal by the domain rules: a stable machine-readable code, a message for people, and optional details
/// (the actual version of a stream, the suggested city names).
public struct IncidentError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A stable error code, as it appears on the wire. A struct, so that new codes never break callers.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidEvent = Code(rawValue: "invalid_event")
        public static let unknownIncident = Code(rawValue: "unknown_incident")
        public static let incidentExists = Code(rawValue: "incident_exists")
        public static let wrongExpectedVersion = Code(rawValue: "wrong_expected_version")
        public static let unknownCity = Code(rawValue: "unknown_city")
        public static let duplicateEventId = Code(rawValue: "duplicate_event_id")
        /// A projection the log keeps (an incident's or a city's) reads back damaged: its bytes changed on the disk.
        public static let logDamaged = Code(rawValue: "log_damaged")
        /// The peer's role does not allow what the event asks: a report's `cityId` that differs from the city its
        /// `city` resolves to, or makes a new city, is a restore's, which takes the admin role.
        public static let permissionDenied = Code(rawValue: "permission_denied")
    }

    public let code: Code
    public let message: String
    public let details: [String: JSONValue]

    public init(_ code: Code, _ message: String, details: [String: JSONValue] = [:]) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { "\(code): \(message)" }

    /// A `log_damaged` for the stored projection of `what` (`incident` or `city`), saying what is wrong (`problem`,
    /// starting with its own separator, or empty) and what makes it whole again.
    public static func damagedProjection(_ what: String, _ problem: String = "") -> IncidentError {
        IncidentError(
            .logDamaged,
            "the stored \(what) projection is damaged\(problem) (its bytes changed on the disk): run incidentctl verify, then start incidentd once with --rebuild-projections, which makes the projections again from the events")
    }

    /// ``damagedProjection(_:_:)`` of the stored projection of incident `id`, which the message names (`problem`
    /// says what is wrong with it, after "`id`'s") and `details.incident` too: for an append refused by it, whose
    /// request may name many incidents.
    public static func damagedIncidentProjection(_ id: String, _ problem: String) -> IncidentError {
        let named = String(id.prefix(128))
        let error = damagedProjection("incident", ": \(named)'s \(problem)")
        return IncidentError(error.code, error.message, details: ["incident": .string(named)])
    }

    /// An `invalid_event` naming the field at fault.
    public static func invalid(_ field: String, _ problem: String) -> IncidentError {
        IncidentError(.invalidEvent, "\(field): \(problem)", details: ["field": .string(field)])
    }
}
