import Gazetteer
import LMDB

/// A log of an older format (`incidentd-log-1` to `incidentd-log-5`), opened read-only for what `verify` checks that
/// no format changed: every page of `data.mdb`, the hash chain of `events` and the head `meta` records. A backup
/// taken before the last upgrade is such a log. Its derived data is not read: those formats lack some of it
/// (`incident-streams` in format 1, `city-dates` before format 4) or keep it in an older shape (`city-dates` before
/// format 6), and the log has this version's once a daemon has upgraded it, at its start, which no reader does.
public final class OlderFormatLog: Sendable {
    /// The format tag the log records, as `incidentd-log-4`.
    public let format: String
    let environment: Environment
    let events: Database
    let meta: Database

    /// Opens the log in `directory` read-only, with the refusals opening any log gives
    /// (``EventLog/openFailure(_:directory:readOnly:)``), and the pages opening it reads checked first. Throws
    /// ``LogError`` (`.notALog`) when it records no older format.
    public init(directory: String) throws {
        try EventLog.refuseNonDirectory(directory)
        do {
            try EventLog.refuseEmptyDataFile(in: directory)
            var options = EnvironmentOptions()
            options.maxDatabases = EventLog.maxDatabases
            options.readOnly = true
            environment = try Environment(directory: directory, options: options)
            if let damage = try environment.checkPages(of: ["meta"], includingFreeList: false).damage {
                throw LogError(
                    .damagedPage,
                    "\(damage) (a page of data.mdb that opening the log reads), and the log cannot be opened. \(EventLog.damageAdvice(database: damage.database?.name))")
            }
            meta = try EventLog.openMeta(environment, create: false, directory: directory)
            let found = try EventLog.storedFormat(environment, meta: meta)
            guard let found, EventLog.olderFormatTags.contains(found) else {
                throw LogError(.notALog, "\(directory) holds log format \(found ?? "(none)"), not one of an older version")
            }
            format = found
            events = try environment.openDatabase("events", create: false)
        } catch {
            throw EventLog.openFailure(error, directory: directory, readOnly: true)
        }
    }

    /// ``EventLog/verify(stretch:checkingDerivedData:expectedHeads:checkpoint:)`` of what every format has: the
    /// pages, the chain and the heads expected, found or not, as for a log of the current format. With those intact,
    /// its ``VerifyReport/derived`` names every database derived from the events as not compared, for its format.
    public func verify(
        stretch: Int = 1 << 16, expectedHeads: [[UInt8]] = [], checkpoint: @Sendable () throws -> Void = {}
    ) throws -> VerifyReport {
        var report = try EventLog.verifyPagesAndChain(
            environment, events: events, meta: meta, stretch: stretch, expectedHeads: expectedHeads, checkpoint: checkpoint)
        if report.isIntact {
            let reason =
                "log format \(format): its indexes and projections are compared once incidentd has upgraded it to \(EventLog.formatTag)"
            report.derived = DerivedDataReport(
                position: report.headPosition,
                notCompared: DerivedDifference.Database.allCases.map { DerivedDataReport.NotCompared(database: $0, reason: reason) })
        }
        return report
    }
}

/// A data directory opened read-only to be verified (`incidentctl verify --data-dir`): the log itself when it is of
/// the current format, or what an older one shares with it.
public enum VerifiableLog: Sendable {
    /// A log of this version's format, verified whole.
    case current(EventLog)
    /// A log of an older format, of which the pages, the chain and the heads are verified.
    case older(OlderFormatLog)

    /// Opens the log in `directory` read-only as ``EventLog`` does, or, when that finds an older format
    /// (``LogError/Code/olderFormat``), as an ``OlderFormatLog``.
    public static func open(directory: String, gazetteer: Gazetteer) throws -> VerifiableLog {
        do {
            return .current(try EventLog(options: LogOptions(directory: directory, readOnly: true), gazetteer: gazetteer))
        } catch let error as LogError where error.code == .olderFormat {
            return .older(try OlderFormatLog(directory: directory))
        }
    }

    /// The log's `verify`, each one's own, looking for `expectedHeads`.
    public func verify(expectedHeads: [[UInt8]] = []) throws -> VerifyReport {
        switch self {
        case .current(let log): try log.verify(expectedHeads: expectedHeads)
        case .older(let log): try log.verify(expectedHeads: expectedHeads)
        }
    }
}
