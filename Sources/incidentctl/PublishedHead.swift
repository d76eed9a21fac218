import ArgumentParser
import IncidentLog
import StrictJSON

/// A head of the log published earlier from `status`, given to `verify --expect-head` as `HASH` or `POSITION:HASH`:
/// the log must still hold the event whose hash it is, which proves every event up to it unchanged.
struct PublishedHead {
    /// The position published with the hash, if it was given: it tells a log shortened below the head from one
    /// rewritten at or before it. The hash alone decides whether the log holds the head.
    var position: UInt64?
    /// The hash, as lowercase hexadecimal (the form `verify` answers in).
    var hash: String

    init(_ argument: String) throws {
        do {
            let parsed = try PublishedHeadArgument(argument)
            position = parsed.position
            hash = ChainHash.hex(parsed.hash)
        } catch {
            throw ValidationError("--expect-head: \(error)")
        }
    }

    /// What `verify`'s answer says of this head: where the log holds it, or why it does not.
    struct Verdict {
        var head: PublishedHead
        /// The position of the event whose hash it is, when the chain checked has one.
        var foundAt: UInt64?
        /// Why the log is not as published up to this head; nil when it is.
        var problem: String?
        /// The chain was broken or not walked: a head not found there says nothing.
        var inconclusive: Bool

        /// The line of `verify`'s table output.
        var line: String {
            let named = head.position.map { "\($0):\(head.hash)" } ?? head.hash
            if foundAt == 0 && problem == nil {
                return "published head \(named): the empty log's, which every log holds"
            }
            if let foundAt {
                return "published head \(named): event \(foundAt); the log up to it is as published"
                    + (problem.map { " (\($0))" } ?? "")
            }
            if inconclusive {
                return "published head \(named): \(problem ?? "not found") (the chain breaks: see the error)"
            }
            return "NOT AS PUBLISHED: head \(named): \(problem ?? "not found"). Keep the log as it is: do not rebuild "
                + "the projections; make the log again from a backup with incidentd --recover-from DATA_DIR --data-dir NEW "
                + "--fill-from BACKUP --expect-head \(head.hash) (README.md)"
        }

        /// An element of `expectedHeads` in `verify --format json`: the answer's, with the position published.
        var json: JSONValue {
            var members: [String: JSONValue] = ["hash": .string(head.hash), "found": .bool(foundAt != nil)]
            if let foundAt { members["position"] = .int(Int64(clamping: foundAt)) }
            if let position = head.position { members["publishedPosition"] = .int(Int64(clamping: position)) }
            if let problem { members["problem"] = .string(problem) }
            return .object(members)
        }
    }

    /// The verdict on each of `heads` from `verify`'s `response`: the `expectedHeads` it answers (each hash with
    /// the position of its event, or none), read against the chain it checked in the same walk.
    static func verdicts(_ heads: [PublishedHead], in response: JSONValue) -> [Verdict] {
        let checked = response["checked"]?.intValue.map { UInt64(clamping: $0) } ?? 0
        let chainIntact = response["intact"]?.boolValue == true
        let answered = response["expectedHeads"]?.arrayValue
        return heads.map { head in
            guard let answered else {
                return Verdict(
                    head: head, foundAt: nil,
                    problem: chainIntact
                        ? "the answer does not say whether the log holds it (an incidentd older than this incidentctl?)"
                        : "not looked for: the chain was not walked",
                    inconclusive: !chainIntact)
            }
            let found = answered.first { $0["hash"]?.stringValue == head.hash }?["position"]?.intValue.map { UInt64(clamping: $0) }
            if let found {
                if let position = head.position, position != found {
                    return Verdict(
                        head: head, foundAt: found,
                        problem: (found == 0 ? "it is the empty log's head, at position 0" : "its hash is that of event \(found)")
                            + ", not \(position): check the position published with it",
                        inconclusive: false)
                }
                return Verdict(head: head, foundAt: found, problem: nil, inconclusive: false)
            }
            guard chainIntact else {
                return Verdict(
                    head: head, foundAt: nil,
                    problem: "not found: the chain proves \(Positions.events(1, through: checked)) before it breaks, and none has its hash",
                    inconclusive: true)
            }
            let problem: String
            if let position = head.position, position > checked {
                problem = "the log holds \(checked) events; the published head is at \(position): events were removed"
            } else if let position = head.position {
                problem = "no event of the chain (\(Positions.events(1, through: checked))) has its hash: event \(position) or one before it was rewritten"
            } else {
                problem = "no event of the chain (\(Positions.events(1, through: checked))) has its hash: the log was rewritten at or before the published "
                    + "head, or shortened below it (give POSITION:HASH, as status showed them, to tell which)"
            }
            return Verdict(head: head, foundAt: nil, problem: problem, inconclusive: false)
        }
    }

    /// What to do when the log does not hold a published head.
    static func advice(derivedDiffers: Bool) -> String {
        "The log is not the one published. Keep it as it is, with a copy of the data directory: do not start incidentd "
            + "with --rebuild-projections"
            + (derivedDiffers ? " (the projections, which differ from the events, may be all that is left of what it held)" : "")
            + ". Make the log again from the events a backup holds: stop incidentd and run incidentd --recover-from "
            + "DATA_DIR --data-dir NEW --fill-from BACKUP --expect-head HASH, with the head last published (see README.md). "
            + "If this log was made by export | append, it is a new log with a chain of its own, and heads published "
            + "from the old one do not apply to it: check those against the old log or a backup of it"
    }
}
