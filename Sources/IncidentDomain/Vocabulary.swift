/// What kind of event a stored event is; the `type` field on the wire.
public enum EventType: String, Sendable, CaseIterable, Hashable {
    case incidentReported = "incident-reported"
    case responseObserved = "response-observed"
    case outcomeUpdated = "outcome-updated"

    public func hash(into hasher: inout Hasher) { hasher.combine(caseTag(self)) }
}

/// The kinds of civilian action the log records.
public enum IncidentKind: String, Sendable, CaseIterable, Hashable {
    case demonstration, blockade, sabotage, confrontation
    case symbolicAct = "symbolic-act"
    case strike, other

    public func hash(into hasher: inout Hasher) { hasher.combine(caseTag(self)) }
}

/// How a force responded to an incident.
public enum ResponseKind: String, Sendable, CaseIterable, Hashable {
    case none
    case warningShots = "warning-shots"
    case tearGas = "tear-gas"
    case crowdDispersal = "crowd-dispersal"
    case detentions, beatings
    case liveFire = "live-fire"
    case abductions, accommodation, other

    public func hash(into hasher: inout Hasher) { hasher.combine(caseTag(self)) }
}

/// Where an incident stands, as last reported.
public enum OutcomeStatus: String, Sendable, CaseIterable, Hashable {
    case unknown, ongoing, dispersed
    case objectiveAchieved = "objective-achieved"
    case suppressed, retracted

    /// Whether the incident still counts as open (`unknown` or `ongoing`).
    public var isOpen: Bool { self == .unknown || self == .ongoing }
    /// Whether an incident whose latest status this is counts in its city's totals, sums and open incidents. A
    /// retracted one was withdrawn by those who reported it (how a report of the wrong city, or one that proved
    /// false, is taken back): only `outcomes` and `verification` still count it.
    public var countsInSums: Bool { self != .retracted }

    public func hash(into hasher: inout Hasher) { hasher.combine(caseTag(self)) }
}

/// How well a claim or a source has been checked.
public enum Verification: String, Sendable, CaseIterable, Hashable {
    case unverified, verified, disputed, debunked

    public func hash(into hasher: inout Hasher) { hasher.combine(caseTag(self)) }
}

/// How precisely `occurredAt` is known, as ACLED's time_precision.
public enum Precision: String, Sendable, CaseIterable, Hashable {
    case minute, hour, day, week, month

    public func hash(into hasher: inout Hasher) { hasher.combine(caseTag(self)) }
}

extension RawRepresentable where RawValue == String, Self: CaseIterable {
    /// Every accepted spelling, for error messages.
    static var allowedList: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// The tag of a case of an enumeration without payloads (its position in the declaration), which the
/// vocabulary's enumerations hash by. The standard library's default for an enumeration with raw values hashes
/// the raw string instead, and these key the counters of every projection the writer updates: a string hash per
/// lookup, on the one serial stage.
@inline(__always) func caseTag<E: RawRepresentable>(_ value: E) -> UInt8 {
    // Traps unless the enumeration is one byte, which every enumeration of fewer than 256 cases without
    // payloads is.
    unsafeBitCast(value, to: UInt8.self)
}
