import IncidentDomain
import StrictJSON

/// Where and how big the log is.
public struct LogOptions: Sendable {
    public var directory: String
    public var initialMapSize: Int = 64 << 20
    /// Appends fail with `storage_full` once the map would have to grow past this.
    public var maxMapSize: Int = 64 << 30
    public var readOnly: Bool = false
    /// The most events one group commit writes in one transaction.
    public var maxEventsPerCommit: Int = 8_192

    public init(directory: String, readOnly: Bool = false) {
        self.directory = directory
        self.readOnly = readOnly
    }
}

/// Why the log could not be opened or read: a stable code and a message naming the file or position at fault.
public struct LogError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case locked, notALog, corrupt, io, storageFull
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// One client's append: its events are atomic, all land or none do.
public struct AppendRequest: Sendable {
    public var events: [ProposedEvent] {
        didSet { contentDigests = AppendRequest.digests(events) }
    }
    public var allowNewCity: Bool
    public var recordedBy: Recorder
    /// SHA-256 of each event's ``ProposedEvent/contentBytes``, for the idempotency check. Computed where the
    /// request is made (on the connection's event loop), not on the single writer thread.
    public private(set) var contentDigests: [[UInt8]]

    public init(events: [ProposedEvent], allowNewCity: Bool, recordedBy: Recorder) {
        self.events = events
        self.allowNewCity = allowNewCity
        self.recordedBy = recordedBy
        contentDigests = AppendRequest.digests(events)
    }

    private static func digests(_ events: [ProposedEvent]) -> [[UInt8]] {
        var content: [UInt8] = []
        content.reserveCapacity(2048)
        return events.map { event in
            content.removeAll(keepingCapacity: true)
            event.writeContent(into: &content)
            return ChainHash.digest(content)
        }
    }
}

/// What an acknowledged append returns: one position and one incident per proposed event, in order.
/// An idempotent retry returns the original positions.
public struct AppendReceipt: Sendable, Hashable {
    public var positions: [UInt64]
    public var incidents: [String]
}

/// Why an append was refused. Nothing of a refused append is stored.
public enum AppendFailure: Error, Sendable {
    /// A domain rule refused the event at `index` of the request.
    case rejected(IncidentError, index: Int)
    /// The map is at its configured maximum.
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
    public var readers: UInt32
}

/// What `verify` found.
public struct VerifyReport: Sendable, Hashable {
    public var checked: UInt64
    public var headPosition: UInt64
    public var headHash: String
    /// The first position whose stored bytes or hash do not match the chain, and why.
    public var firstBadPosition: UInt64?
    public var problem: String?

    public var isIntact: Bool { firstBadPosition == nil }
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
