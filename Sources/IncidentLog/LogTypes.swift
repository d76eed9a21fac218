#if canImport(Glibc)
import Glibc
#endif
import IncidentDomain
import LMDB
import StrictJSON

/// Where and how big the log is.
public struct LogOptions: Sendable {
    public var directory: String
    public var initialMapSize: Int = 64 << 20
    /// Appends fail with `storage_full` once the map would have to grow past this.
    public var maxMapSize: Int = 64 << 30
    public var readOnly: Bool = false
    /// How much written space the group committer keeps past the log's last page in `data.mdb`, when it has
    /// nothing to commit, so that a small commit writes its pages into the file rather than past its end
    /// (``Environment/extendFile(headroom:step:)``); 0 lets the file grow with each commit instead.
    public var fileHeadroom: Int = 256 << 10
    /// The most events one group commit writes in one transaction.
    public var maxEventsPerCommit: Int = 8_192
    /// How many stream entries each transaction of an upgrade from format 1 or 2 writes (``EventLog``'s
    /// `upgradeFromFormat1` and `upgradeFromFormat2`); small enough for LMDB's list of dirty pages, large enough
    /// that a log of millions of events upgrades in seconds.
    public var upgradeEntriesPerCommit: Int = 100_000
    /// Told, in words, when a rebuild finds a stream summary damaged and makes them all again from the events.
    public var onSummaryDamage: (@Sendable (String) -> Void)?
    /// Told, in words, how the long work a log may need before it is served (an upgrade, a rebuild) is getting
    /// on: before each of its transactions or segments, so at least every few seconds. The daemon extends
    /// systemd's start timeout with it. A check that reads the whole log in one step (every page, the hash chain)
    /// tells how far it got once per `progressInterval` too.
    public var onProgress: (@Sendable (String) -> Void)?
    /// How often a long check at open tells ``onProgress`` how far it got: often enough that each message keeps
    /// a start timeout (systemd's 90 s) from running out, seldom enough for a journal.
    public var progressInterval: Duration = .seconds(10)
    /// Rebuild the projections when the log is opened, after making every stream summary again from its event,
    /// whether they are current or not (`incidentd --rebuild-projections`). A writer only.
    public var rebuildAtOpen = false
    /// Told, in one line, why the projections are rebuilt as the log is opened, before the rebuild starts: they
    /// are incomplete, of another version, or built with another gazetteer, or `rebuildAtOpen` asked.
    public var onRebuildAtOpen: (@Sendable (String) -> Void)?

    /// Asked, at each step of the work opening a log may need (an upgrade, a rebuild: before each of their
    /// transactions), whether to stop there: when it answers true, opening stops with ``WorkAtOpenStopped``,
    /// leaving the log as a crash at that point would, which the next open takes up (the daemon, on SIGTERM
    /// during start-up).
    public var shouldStop: (@Sendable () -> Bool)?

    public init(directory: String, readOnly: Bool = false) {
        self.directory = directory
        self.readOnly = readOnly
    }
}

/// Opening the log stopped between two steps of its work (``LogOptions/shouldStop``): every step before is
/// committed, and the next open of the log takes the work up from there (an upgrade where it stopped; a rebuild of
/// the projections, whose mark the rebuild removed first, again); a summary of the incident streams made again
/// from its event stays so.
public struct WorkAtOpenStopped: Error, Sendable, CustomStringConvertible {
    /// Where it stopped, in words: "before rebuilding the projections", "while ...".
    public let work: String

    public var description: String { "opening the log stopped \(work)" }
}

/// Why the log could not be opened or read: a stable code and a message naming the file or position at fault.
public struct LogError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case locked, notALog, corrupt, io, storageFull
        /// A backup's destination cannot be used (``EventLog/backup(into:)``).
        case invalidDestination
        /// A page of the log's data file is damaged (``LMDB/Environment/checkPages()``): the work that would have
        /// read it through LMDB (opening the log, a backup) was not done.
        case damagedPage
        /// This process may not open the log's files (a reader needs to write LMDB's `lock.mdb`, too).
        case accessDenied
        /// The data directory is missing and cannot be made where it is given (permission denied, a read-only
        /// file system, a path under `/proc`): only another path or other permissions mend that, not a retry.
        case uncreatableDirectory
        /// A stored event cannot be read as an event: its JSON does not parse, or it breaks a rule every event
        /// passed when it was appended (``EventLog/readingStoredEvent(at:_:)``). The query that met it was not
        /// answered; ``LogError/position`` names the event.
        case damagedEvent
        /// A reader was given a log of an older format (1 to 4), which a daemon upgrades at its first start and a
        /// reader cannot: only its pages, hash chain and head can be checked (``OlderFormatLog``).
        case olderFormat
    }

    public let code: Code
    public let message: String
    /// The position of the stored event at fault, for ``Code/damagedEvent``.
    public let position: UInt64?

    public init(_ code: Code, _ message: String, position: UInt64? = nil) {
        self.code = code
        self.message = message
        self.position = position
    }

    /// The stored event at `position` cannot be read as an event, for `reason`: the one wording of it, for every
    /// query that reads stored events (`log_damaged` on the wire).
    public static func damagedEvent(at position: UInt64, _ reason: String) -> LogError {
        LogError(
            .damagedEvent,
            "the stored event at position \(position) cannot be read as an event (\(reason)): the stored log is damaged. "
                + "Run incidentctl verify, which names the first damaged event; then make the log again from its events "
                + "with incidentd --recover-from, or restore a backup (README.md, on recovering a damaged log)",
            position: position)
    }

    /// Whether a failure with `errno` `code` to make, open or bind a file at a path stays until its configuration
    /// changes (who owns or may write the directory, a read-only file system, a path through a file or too many
    /// links or too long), so that a start that failed so would fail the same way at every restart: exit status 78,
    /// which systemd's `RestartPreventExitStatus=` does not restart. What may pass (a full disk, a failing one, memory
    /// or descriptors short) is not one of them.
    public static func isLasting(_ code: Int32) -> Bool {
        [EACCES, EPERM, EROFS, ENOTDIR, ELOOP, ENAMETOOLONG].contains(code)
    }

    public var description: String { message }
}

/// One client's append: its events are atomic, all land or none do.
public struct AppendRequest: Sendable {
    public var events: [ProposedEvent] {
        didSet { encoded = events.map(EncodedProposal.init) }
    }
    public var allowNewCity: Bool
    /// Whether a report's `cityId` may differ from the id the daemon gives its `city` (or make a new city that
    /// `allowNewCity` alone would not): a restore of another log's cities, which takes the admin role
    /// (``Admission/admitNamedCity(_:of:allowNewCity:restoresCities:store:)``).
    public var restoresCities: Bool
    public var recordedBy: Recorder
    /// Each event's canonical parts and content digest, made where the request is made (on the connection's
    /// event loop), so that the single writer thread only splices bytes.
    public private(set) var encoded: [EncodedProposal]

    public init(events: [ProposedEvent], allowNewCity: Bool, restoresCities: Bool = false, recordedBy: Recorder) {
        self.events = events
        self.allowNewCity = allowNewCity
        self.restoresCities = restoresCities
        self.recordedBy = recordedBy
        encoded = events.map(EncodedProposal.init)
    }

    /// SHA-256 of each event's ``ProposedEvent/contentBytes``, for the idempotency check.
    public var contentDigests: [[UInt8]] { encoded.map(\.contentDigest) }
}

/// A proposed event's parts in canonical form, and the digest of its content.
public struct EncodedProposal: Sendable {
    /// ``ProposedEvent/contentBytes``, which hold the parts the writer splices into the stored event.
    let content: [UInt8]
    /// Where the canonical `data` as proposed is in `content`: a report's without the `cityId` the daemon adds.
    /// It starts right after `{"data":`, the start of `content`.
    let data: Range<Int>
    /// For a report, where in `content` the `cityId` member goes (right after `city`); 0 otherwise.
    let cityIdOffset: Int
    /// Where the canonical `sources` array is in `content`; empty when the event has none.
    let sources: Range<Int>
    /// SHA-256 of ``ProposedEvent/contentBytes``.
    public let contentDigest: [UInt8]

    init(_ event: ProposedEvent) {
        // ProposedEvent.contentBytes, written once: the parts are where they lie in it.
        let parts = event.contentParts(capacity: Self.expectedContentBytes)
        assert(parts.content == event.contentBytes, "the content bytes made from parts differ from ProposedEvent.contentBytes")
        data = parts.data
        cityIdOffset = parts.cityIdOffset
        sources = parts.sources
        contentDigest = ChainHash.digest(parts.content)
        content = parts.content
    }

    /// Room reserved for an event's content: what nearly every event of the benchmark's workload (modelled on the
    /// article's) fits in, so that writing it seldom grows the array.
    static let expectedContentBytes = 1_024
}

/// What an acknowledged append returns: one position and one incident per proposed event, in order.
/// An idempotent retry returns the original positions.
public struct AppendReceipt: Sendable, Hashable {
    public var positions: [UInt64]
    public var incidents: [String]
    /// The indexes, in the request, of events that were already stored (sent again with the same `eventId` and
    /// content): their positions are where they were stored before, and nothing new was written for them.
    public var alreadyStored: [Int] = []
    /// The reports stored under a `cityId` other than the daemon would have given them (a restore's, see
    /// ``RestoredCity``): how many, and the first of each different kind, at most ``mostRestoredCitiesNamed``.
    public var restoredCityReports = 0
    public var restoredCities: [RestoredCity] = []
    /// The cities its reports made under names close to cities known already (``NewCity``), at most
    /// ``mostRestoredCitiesNamed``.
    public var newCities: [NewCity] = []

    /// The most kinds of ``restoredCities`` one receipt names.
    public static let mostRestoredCitiesNamed = 8

    /// Names `made`, if there is room.
    mutating func note(_ made: NewCity) {
        if newCities.count < Self.mostRestoredCitiesNamed { newCities.append(made) }
    }

    /// Counts `restored`, and names it if it is of a kind not named yet and there is room.
    mutating func note(_ restored: RestoredCity) {
        restoredCityReports += 1
        if restoredCities.count < Self.mostRestoredCitiesNamed && !restoredCities.contains(restored) {
            restoredCities.append(restored)
        }
    }
}

/// Why an append was refused. Nothing of a refused append is stored.
public enum AppendFailure: Error, Sendable {
    /// A domain rule refused the event at `index` of the request.
    case rejected(IncidentError, index: Int)
    /// The map is at its configured maximum, or the file system holding the log is full.
    case storageFull(String)
    /// The daemon is stopping and takes no new appends.
    case shuttingDown
    /// The storage failed; the message names the LMDB call.
    case storage(String)
}

/// The head of the chain and the size of the log, as `status` reports them.
public struct LogStatus: Sendable, Hashable {
    public var position: UInt64
    public var headHash: String
    public var lastRecordedAt: Timestamp?
    public var incidents: Int
    public var cities: Int
    public var mapSize: Int
    public var maxMapSize: Int
    public var usedBytes: Int
    /// Read transactions open on the log now, in every process.
    public var readers: Int
}

/// Positions of the log in words, as messages name them.
public enum Positions {
    /// Events `first` through `last`: "event 8" for one, "events 6–8" for several, "no events" when `last` is
    /// before `first`.
    public static func events(_ first: UInt64, through last: UInt64) -> String {
        words(first, through: last, one: "event", many: "events")
    }

    /// Positions `first` through `last`: "position 8", "positions 6–8", or "no positions".
    public static func positions(_ first: UInt64, through last: UInt64) -> String {
        words(first, through: last, one: "position", many: "positions")
    }

    private static func words(_ first: UInt64, through last: UInt64, one: String, many: String) -> String {
        if last < first { return "no \(many)" }
        return first == last ? "\(one) \(first)" : "\(many) \(first)–\(last)"
    }
}

/// What `verify` found: first the pages of the data file (``pages``), then, if they are whole, the hash chain, and
/// then, if it is intact, whether the data derived from the events agrees with them (``derived``).
public struct VerifyReport: Sendable, Hashable {
    /// The events whose chain was checked; 0 when a damaged page stopped `verify` before the chain.
    public var checked: UInt64
    /// The head the chain was checked against (0 and empty when a damaged page stopped `verify` first: the head is
    /// stored in a page too).
    public var headPosition: UInt64
    public var headHash: String
    /// The first position whose stored bytes or hash do not match the chain, and why.
    public var firstBadPosition: UInt64?
    public var problem: String?
    /// What the check of every page of the data file found (``LMDB/Environment/checkPages()``).
    public var pages: PageCheckReport?
    /// Whether the indexes and the projections agree with the events; nil when they were not compared (a damaged
    /// page or a broken chain stopped `verify` first, or the caller did not ask).
    public var derived: DerivedDataReport?
    /// The head hashes `verify` was asked to find in the chain, in the order asked, each with where it was found;
    /// empty when none was asked for or a damaged page stopped `verify` before the chain.
    public var expectedHeads: [ExpectedHead] = []

    /// Whether every head hash asked for is that of an event of the chain checked.
    public var holdsExpectedHeads: Bool { expectedHeads.allSatisfy { $0.position != nil } }

    /// The damaged page that stopped `verify` before it read the chain through LMDB, if one did.
    public var pageDamage: PageDamage? { pages?.damage }

    /// Whether the evidence is whole: every page, and the hash chain. Derived data that differs from the events
    /// does not change it (see ``derived``).
    public var isIntact: Bool { firstBadPosition == nil && pageDamage == nil }

    /// The members of `verify`'s answer (PROTOCOL.md), as the daemon sends them and `incidentctl verify --data-dir`
    /// prints them.
    public var members: [String: JSONValue] {
        var members: [String: JSONValue] = ["intact": .bool(isIntact), "checked": .int(Int64(checked))]
        if let damage = pageDamage {
            // The head is stored in a page too, and is not read past a damaged one.
            var described: [String: JSONValue] = ["page": .int(Int64(damage.page)), "problem": .string(damage.problem)]
            if let database = damage.database { described["database"] = .string(database.name) }
            members["pageDamage"] = .object(described)
        } else {
            members["headPosition"] = .int(Int64(headPosition))
            members["headHash"] = .string(headHash)
            if let pages {
                members["pages"] = ["inUse": .int(Int64(pages.pagesInUse)), "free": .int(Int64(pages.freePages))]
            }
        }
        if let firstBadPosition { members["firstBadPosition"] = .int(Int64(firstBadPosition)) }
        if let problem { members["problem"] = .string(problem) }
        if let derived { members["derived"] = derived.json }
        if !expectedHeads.isEmpty { members["expectedHeads"] = .array(expectedHeads.map(\.json)) }
        return members
    }
}

/// A head hash published earlier (`status`'s `headHash`) that `verify` was asked to find, and the event of the chain
/// that has it. Found in a chain that verifies, it proves the log up to that position is the one published; not
/// found, the log was rewritten at or before the published head, or shortened below it.
public struct ExpectedHead: Sendable, Hashable {
    /// The hash, as lowercase hexadecimal.
    public var hash: String
    /// The position of the event whose stored hash it is, among the events the chain proves; nil when none has it.
    public var position: UInt64?

    public init(hash: String, position: UInt64?) {
        self.hash = hash
        self.position = position
    }

    /// An element of the `expectedHeads` member of `verify`'s answer (PROTOCOL.md).
    public var json: JSONValue {
        var members: [String: JSONValue] = ["hash": .string(hash), "found": .bool(position != nil)]
        if let position { members["position"] = .int(Int64(position)) }
        return .object(members)
    }
}

/// What `verify` found when it compared the data derived from the events with the events themselves, in one
/// snapshot of the log: the `incident-streams` index (each event's entry and its ``StreamSummary``), the
/// `event-ids` index, and the projections (`incidents`, `cities`), which the rebuild's fold makes again from the
/// events. LMDB keeps no checksums, and the hash chain covers the events alone, so bytes of these changed in place
/// would otherwise give wrong answers without a word.
public struct DerivedDataReport: Sendable, Hashable {
    /// The events the derived data was compared with: positions 1 through this one, the head of the snapshot.
    public var position: UInt64
    /// What differs: the first difference found in each database that has one, in the order of
    /// ``DerivedDifference/Database``.
    public var differences: [DerivedDifference]
    /// The databases that were not compared, and why.
    public var notCompared: [NotCompared]

    public init(position: UInt64, differences: [DerivedDifference] = [], notCompared: [NotCompared] = []) {
        self.position = position
        self.differences = differences
        self.notCompared = notCompared
    }

    /// Whether everything compared agrees with the events.
    public var isIntact: Bool { differences.isEmpty }

    /// A database left out of the comparison, and why.
    public struct NotCompared: Sendable, Hashable {
        public var database: DerivedDifference.Database
        public var reason: String

        public init(database: DerivedDifference.Database, reason: String) {
            self.database = database
            self.reason = reason
        }
    }

    /// The `derived` member of `verify`'s answer (PROTOCOL.md).
    public var json: JSONValue {
        var members: [String: JSONValue] = [
            "intact": .bool(isIntact), "position": .int(Int64(position)), "differences": .array(differences.map(\.json)),
        ]
        if !notCompared.isEmpty {
            members["notCompared"] = .array(
                notCompared.map { .object(["database": .string($0.database.rawValue), "reason": .string($0.reason)]) })
        }
        return .object(members)
    }
}

/// One database whose stored data differs from what the events give: the first entry found that differs, and what
/// puts it right.
public struct DerivedDifference: Sendable, Hashable {
    /// The databases derived from the events, in the order `verify` reports them.
    public enum Database: String, Sendable, Hashable, CaseIterable {
        case incidentStreams = "incident-streams"
        case eventIds = "event-ids"
        case incidents
        case cities
        case cityDates = "city-dates"
    }

    /// What makes the database agree with the events again.
    public enum Remedy: String, Sendable, Hashable {
        /// `incidentd --rebuild-projections`: every stream summary made again from its event, then the projections
        /// folded again.
        case rebuildProjections = "rebuild-projections"
        /// `incidentd --recover-from`: a new log made from the events the hash chain proves, with both indexes made
        /// again from them (``EventLog/recover(from:into:gazetteer:fillingFrom:expectedHeadHash:expectedHeadPosition:)``); or restore a
        /// backup that verifies (``EventLog/restoreAdvice``).
        case recoverFromEvents = "recover-from-events"
    }

    public var database: Database
    /// The entry that differs, as text: an incident id, a city id, an event id, for `incident-streams` the stream
    /// key as `START/VERSION` (the position of the incident's report, and the version), or for `city-dates` (a date
    /// or an entry of a city's list of the incidents it does not date) the entry's city and the position of its
    /// report as `CITY/POSITION`. Nil when the difference is an entry that is missing and has no key to name.
    public var key: String?
    /// The event the entry is about, when there is one.
    public var position: UInt64?
    public var problem: String
    public var remedy: Remedy

    public init(database: Database, key: String?, position: UInt64?, problem: String, remedy: Remedy) {
        self.database = database
        self.key = key
        self.position = position
        self.problem = problem
        self.remedy = remedy
    }

    /// An entry of `differences` in `verify`'s answer (PROTOCOL.md).
    public var json: JSONValue {
        var members: [String: JSONValue] = [
            "database": .string(database.rawValue), "problem": .string(problem), "remedy": .string(remedy.rawValue),
        ]
        if let key { members["key"] = .string(key) }
        if let position { members["position"] = .int(Int64(position)) }
        return .object(members)
    }
}

/// What ``EventLog/backup(into:)`` wrote: the directory, the size of its `data.mdb`, and what a check of the
/// copy's hash chain from position 1 found, which names the head the copy ends in.
public struct BackupReport: Sendable, Hashable {
    public var directory: String
    public var bytes: Int
    public var check: VerifyReport
}

/// Which events `read` returns.
public struct EventFilter: Sendable {
    public var cityId: String?
    public var type: EventType?
    public var incident: String?

    public init(cityId: String? = nil, type: EventType? = nil, incident: String? = nil) {
        self.cityId = cityId
        self.type = type
        self.incident = incident
    }
}

/// Where a replay stops.
public struct ReplayLimit: Sendable {
    public var untilPosition: UInt64?
    /// Only events recorded at or before this instant: what was known then.
    public var asOf: Timestamp?
    /// Only events that had occurred by this instant (`occurredAt` strictly before it).
    public var occurredBefore: Timestamp?

    public init(untilPosition: UInt64? = nil, asOf: Timestamp? = nil, occurredBefore: Timestamp? = nil) {
        self.untilPosition = untilPosition
        self.asOf = asOf
        self.occurredBefore = occurredBefore
    }
}
