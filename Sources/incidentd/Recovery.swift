import ArgumentParser
import Gazetteer
import IncidentLog
import Logging

extension Incidentd {
    /// `incidentd --recover-from DIR`: makes a new log in the data directory from the events of the damaged log in
    /// `source` (``EventLog/recover(from:into:gazetteer:)``), says what it made on standard output, and returns;
    /// exits 1 with the reason when no log was made.
    static func recover(from source: String, fillingFrom backups: [String], _ settings: DaemonConfiguration, logger: Logger) throws {
        var options = LogOptions(directory: settings.dataDirectory)
        options.initialMapSize = settings.initialMapSize
        options.maxMapSize = settings.maxMapSize
        options.onProgress = { status in logger.info("\(status)") }
        let report: RecoveryReport
        do {
            let gazetteer = try settings.gazetteerPath.map { try Gazetteer(contentsOfFile: $0) } ?? Gazetteer.embedded
            report = try EventLog.recover(from: source, into: options, gazetteer: gazetteer, fillingFrom: backups)
        } catch {
            logger.critical("cannot recover the log in \(source): \(error)")
            throw ExitCode(1)
        }
        var lines = [
            "recovered \(report.events) events (\(report.incidents) incidents) from \(source) into \(report.directory)/data.mdb; it verifies",
            "head: position \(report.events), hash \(report.headHash)",
        ]
        if let damage = report.sourceDamage {
            lines.append("the damaged log: \(damage)")
        }
        if report.eventsFoundInPages {
            lines.append(
                "its events were found page by page and proven by the hash chain from its recorded head: "
                    + "\(report.events - report.eventsFromBackups) in its own file, \(report.eventsFromBackups) in the backups given")
        }
        if report.eventIdsRemade > 0 {
            lines.append(
                "event ids: \(report.eventIdsCopied) copied, \(report.eventIdsRemade) made again from the events, which do not keep what "
                    + "a client left out for incidentd to fill in: a retry of one of those that leaves out its incident id or time "
                    + "is refused as duplicate_event_id, naming the event's position")
        }
        if let head = report.sourceHeadMismatch {
            lines.append(
                head > report.events
                    ? "WARNING: the damaged log's head names position \(head), but its events end at \(report.events): positions \(report.events + 1) to \(head) are not in it"
                    : "WARNING: the damaged log's head names position \(head), but it holds events up to \(report.events), which the chain proves")
        }
        lines.append(
            "To serve it: with incidentd stopped, put \(report.directory)/data.mdb in place of the damaged log's data.mdb (as for a restore, README.md), then start incidentd")
        print(lines.joined(separator: "\n"))
    }
}
