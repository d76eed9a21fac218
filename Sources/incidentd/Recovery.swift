import ArgumentParser
import Gazetteer
import IncidentLog
import Logging

extension Incidentd {
    /// `incidentd --recover-from DIR`: makes a new log in the data directory from the events of the damaged log in
    /// `source` (``EventLog/recover(from:into:gazetteer:fillingFrom:expectedHeadHash:expectedHeadPosition:)``), says
    /// what it made on standard output, and returns; exits 1 with the reason when no log was made.
    static func recover(
        from source: String, fillingFrom backups: [String], expectedHead: PublishedHeadArgument?, _ settings: DaemonConfiguration,
        gazetteer: Gazetteer, logger: Logger
    ) throws {
        var options = settings.logOptions
        options.onProgress = { status in logger.info("\(status)") }
        let report: RecoveryReport
        do {
            report = try EventLog.recover(
                from: source, into: options, gazetteer: gazetteer, fillingFrom: backups,
                expectedHeadHash: expectedHead?.hash, expectedHeadPosition: expectedHead?.position)
        } catch {
            logger.critical("cannot recover the log in \(source): \(error)")
            throw ExitCode(1)
        }
        var lines = [
            "recovered \(report.events) events (\(report.incidents) incidents) from \(source) into \(report.directory)/data.mdb; it verifies",
            "head: position \(report.events), hash \(report.headHash)"
                + (report.headWasGiven ? " (the one given)" : ", as the log recorded it"),
        ]
        if let position = report.recordedHeadLeftOut, let hash = report.recordedHeadLeftOutHash {
            lines.append(
                "NOT IN IT: the head the damaged log records, position \(position), hash \(hash), is on another chain than the hash given: "
                    + "the log was rewritten since that hash was published. The new log ends at the hash given; the recorded head's events "
                    + "from where the two chains part are left out (keep the damaged log as it is: it is the evidence of the rewrite)")
        }
        if let given = report.givenHeadPosition, given < report.events {
            let kept = report.events - given
            let one = kept == 1
            lines.append(
                "KEPT: \(kept) event\(one ? "" : "s") past the head given (position \(given)), \(Positions.events(given + 1, through: report.events)): "
                    + "the hash given proves the log up to event \(given); \(one ? "that one is" : "those are") proven only by the damaged log's own "
                    + "record of its head, which whoever could rewrite \(one ? "it" : "them") could rewrite as well. Check \(one ? "it" : "them") against "
                    + "a head published since (incidentctl verify --data-dir \(report.directory) --expect-head POSITION:HASH)")
        }
        if report.eventsPastHead > 0, let last = report.lastPastHeadHash {
            let one = report.eventsPastHead == 1
            lines.append(
                "NOT IN IT: \(Positions.events(report.events + 1, through: report.events + report.eventsPastHead)), stored in the files read, "
                    + (one ? "goes on from the head given; it is an acknowledged event" : "go on from the head given; they are acknowledged events")
                    + " unless a commit failed before it was acknowledged. To take \(one ? "it" : "them"), recover again with --expect-head \(last)")
        }
        if let damage = report.sourceDamage {
            lines.append("the damaged log: \(damage)")
        }
        if !backups.isEmpty {
            lines.append(
                "events found in the damaged log's pages: \(report.events - report.eventsFromBackups); in the backups given: \(report.eventsFromBackups)")
        }
        if report.eventIdsRemade > 0 {
            lines.append(
                "event ids: \(report.eventIdsCopied) copied, \(report.eventIdsRemade) made again from the events, which do not keep what "
                    + "a client left out for incidentd to fill in: a retry of one of those that leaves out its incident id, time "
                    + "or precision is refused as duplicate_event_id, naming the event's position")
        }
        lines.append(
            "To serve it: with incidentd stopped, put \(report.directory)/data.mdb in place of the damaged log's data.mdb (as for a restore, README.md), then start incidentd")
        print(lines.joined(separator: "\n"))
    }
}
