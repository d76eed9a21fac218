import IncidentProtocol
import StrictJSON

/// A position of the log and the chain hash of the event stored there. The hash covers every event before it, so a
/// log that holds the same hash at the same position holds the same events up to there.
struct LogPoint: Equatable {
    let position: Int64
    let hash: String
}

/// What `events --follow` knows of the log it follows, so that when it comes back after losing the daemon it can
/// tell that log from another one: `data.mdb` restored from an older backup, whose next events take positions the
/// command has already passed, or another data directory altogether.
struct FollowedLog {
    /// The last event shown, and the line it came in; its hash is read from the line only when it is needed.
    private var lastShown: (position: Int64, line: [UInt8])?
    /// The head that `status` reported on a connection that followed the log.
    private var reportedHead: LogPoint?

    mutating func shown(position: Int64, line: [UInt8]) {
        lastShown = (position, line)
    }

    /// Takes the head from an answer to `status`; a failed one, or the head of an empty log, tells nothing.
    mutating func headReported(_ answer: JSONValue) {
        guard answer["ok"]?.boolValue == true, let position = answer["position"]?.intValue, position > 0,
            let hash = answer["headHash"]?.stringValue, position > reportedHead?.position ?? 0
        else { return }
        reportedHead = LogPoint(position: position, hash: hash)
    }

    /// The last event shown, with its hash.
    var lastShownPoint: LogPoint? {
        guard let lastShown, let answer = try? JSONReader(maxDepth: 128).read(lastShown.line),
            let hash = answer["event"]?["hash"]?.stringValue
        else { return nil }
        return LogPoint(position: lastShown.position, hash: hash)
    }

    /// The furthest point known of the log: the last event shown, or the head reported if it lies further on (the
    /// events a filter passed over, or those not caught up with yet). Nil before anything was known of it.
    var anchor: LogPoint? {
        guard let reportedHead, reportedHead.position > lastShown?.position ?? 0 else { return lastShownPoint }
        return reportedHead
    }

    /// Checks on `client`'s connection, before following again, that the log served there still holds ``anchor``;
    /// throws `log_replaced`, naming what it found and what to do, when it does not.
    func confirm(on client: SocketClient) throws(ClientFailure) {
        guard let anchor else { return }
        let head = try client.call(.status)
        let headPosition = head["position"]?.intValue ?? 0
        let found = try Self.hash(at: anchor.position, on: client, head: head)
        guard found != anchor.hash else { return }

        var message: String
        let seenThere = anchor == lastShownPoint ? "which this command had printed" : "which incidentd had reported as its head"
        if headPosition < anchor.position {
            message =
                "the log incidentd serves now ends at position \(headPosition), before position \(anchor.position), "
                + "\(seenThere) (hash \(Self.short(anchor.hash))): "
        } else {
            message =
                "position \(anchor.position) of the log incidentd serves now holds another event "
                + "(hash \(Self.short(found))) than this command had seen there (hash \(Self.short(anchor.hash))); "
                + "the head is position \(headPosition): "
        }
        message +=
            "the log was replaced (restored from a backup, perhaps), and positions this command has passed hold, "
            + "or will hold, other events. It stops rather than leave them out or show them as if they followed "
            + "what it printed. "
        message += try advice(on: client, head: head)
        throw .refused(code: "log_replaced", message: message)
    }

    /// What to do next: from where to follow the log as it is now, after what check.
    private func advice(on client: SocketClient, head: JSONValue) throws(ClientFailure) -> String {
        let headPosition = head["position"]?.intValue ?? 0
        guard let shown = lastShownPoint else {
            return "It printed no event of that log: run it again to follow the log as it is now."
        }
        if shown.position <= headPosition, try Self.hash(at: shown.position, on: client, head: head) == shown.hash {
            return "What it printed, up to position \(shown.position), is in the log as printed: run it again "
                + "with --from \(shown.position + 1) to go on with the log as it is now."
        }
        let gone =
            shown.position > headPosition
            ? "Of the events it printed, those at positions past \(headPosition) are not in the log now, the last at \(shown.position). "
            : "The event it printed at position \(shown.position) is not in the log now. "
        guard min(shown.position - 1, headPosition) > 0 else {
            return gone + "Run it again with --from 1 to follow the log as it is now."
        }
        return gone
            + "Compare the events it printed before that with the log as it is now: the hash of an event vouches for "
            + "every event before it (incidentctl events --from P --limit 1 --format json, for a position P it "
            + "printed), then run it again with --from set to the position after the last one that matches."
    }

    /// The hash of the event at `position` in the log served on `client`, whose `status` answered `head`; nil when
    /// the log ends before it.
    private static func hash(
        at position: Int64, on client: SocketClient, head: JSONValue
    ) throws(ClientFailure) -> String? {
        let headPosition = head["position"]?.intValue ?? 0
        if position > headPosition { return nil }
        if position == headPosition { return head["headHash"]?.stringValue }
        let page = try client.call(.read, ["from": .int(position), "limit": 1])
        guard let event = page["events"]?.arrayValue?.first, event["position"]?.intValue == position else { return nil }
        return event["hash"]?.stringValue
    }

    private static func short(_ hash: String?) -> String {
        guard let hash else { return "none" }
        return hash.count > 16 ? String(hash.prefix(16)) + "…" : hash
    }
}
