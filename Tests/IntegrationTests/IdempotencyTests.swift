import Foundation
import StrictJSON
import Testing

/// Idempotent retries by `eventId` and optimistic concurrency by `expectedVersion` (SPEC §2).
@Suite("Idempotency and expected versions")
struct IdempotencyTests {
    @Test("a retry with the same eventId and content returns the original position and stores nothing new")
    func idempotentRetry() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let reportId = Wire.uuid()
        let responseId = Wire.uuid()
        // No incident id: the daemon generates it, and the retry must get the same one back.
        let report = Wire.report(city: "Melitopoli", kind: "blockade", eventId: reportId)
        let first = try client.appendEvents([report])
        #expect(first["positions"] == [1])
        #expect(first["incidents"] == ["melitopol-2022-03-01-blockade"])
        #expect(first["alreadyStored"] == nil, "only when some were: \(first)")
        let response = Wire.response(incident: "melitopol-2022-03-01-blockade", eventId: responseId, expectedVersion: 1)
        #expect(try client.appendEvents([response])["positions"] == [2])
        let head = try client.call("status")["headHash"]

        // The acknowledgment was lost; the client sends everything again, on another connection.
        let retryClient = try daemon.client()
        let retry = try retryClient.appendEvents([report])
        #expect(retry.isOK, "\(retry)")
        #expect(retry["positions"] == [1])
        #expect(retry["incidents"] == ["melitopol-2022-03-01-blockade"])
        #expect(retry["alreadyStored"] == [0])
        // The response's expectedVersion no longer holds, but it is the same event: still the original position.
        let retriedResponse = try retryClient.appendEvents([response])
        #expect(retriedResponse.isOK, "\(retriedResponse)")
        #expect(retriedResponse["positions"] == [2])
        // The same UUID in upper case is the same eventId.
        let upper = Wire.report(city: "Melitopoli", kind: "blockade", eventId: reportId.uppercased())
        #expect(try retryClient.appendEvents([upper])["positions"] == [1])
        // A batch mixing a retried event and a new one: the old position and a new one.
        let mixed = try retryClient.appendEvents([report, Wire.outcome(incident: "melitopol-2022-03-01-blockade")])
        #expect(mixed["positions"] == [1, 3])
        #expect(mixed["alreadyStored"] == [0])

        let status = try client.call("status")
        #expect(status["position"]?.intValue == 3)
        let events = try client.allEvents()
        #expect(events.map { $0["position"]?.intValue } == [1, 2, 3])
        #expect(events.filter { $0["eventId"]?.stringValue == reportId }.count == 1)
        #expect(events.filter { $0["eventId"]?.stringValue == responseId }.count == 1)
        #expect(events[1]["prevHash"] == events[0]["hash"])
        #expect(head == events[1]["hash"])
        let incident = try client.call("incident", ["incident": "melitopol-2022-03-01-blockade"])["incident"]
        #expect(incident?["version"]?.intValue == 3)
        #expect(incident?["responseHistory"]?.arrayValue?.count == 1)
    }

    @Test("a date sent with t and z in lower case is stored in capitals, and the same event sent again either way is a retry")
    func lowercaseDateRetried() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let eventId = Wire.uuid()
        let lower = Wire.report(incident: "lower-case-date", occurredAt: "2022-05-01t10:00z", eventId: eventId)
        #expect(try client.appendEvents([lower])["positions"] == [1])
        let stored = try client.call("read", ["from": 1, "limit": 1])["events"]?.arrayValue?.first
        #expect(stored?["occurredAt"] == "2022-05-01T10:00Z", "\(String(describing: stored))")
        let upper = Wire.report(incident: "lower-case-date", occurredAt: "2022-05-01T10:00Z", eventId: eventId)
        for retry in [lower, upper] {
            let answer = try client.appendEvents([retry])
            #expect(answer["positions"] == [1] && answer["alreadyStored"] == [0], "\(answer)")
        }
        #expect(try client.call("city", ["city": "Kupiansk"])["city"]?["lastIncidentAt"] == "2022-05-01T10:00Z")
    }

    @Test("the same eventId with different content is duplicate_event_id, and nothing is stored")
    func differentContent() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let id = Wire.uuid()
        #expect(try client.appendEvents([Wire.report(incident: "berdiansk-go-home", city: "Berdiansk", eventId: id)])["positions"] == [1])
        for changed in [
            Wire.report(incident: "berdiansk-go-home", city: "Berdiansk", participants: (10, 10), eventId: id),
            Wire.report(incident: "berdiansk-go-home", city: "Berdyansk", eventId: id),
            Wire.response(incident: "berdiansk-go-home", eventId: id),
        ] {
            let refused = try client.appendEvents([changed])
            #expect(refused.errorCode == "duplicate_event_id", "\(refused)")
            #expect(refused["error"]?["position"]?.intValue == 1)
            #expect(refused["error"]?["eventId"]?.stringValue == id)
        }
        #expect(try client.headPosition() == 1)
    }

    @Test("a retry that writes out what the daemon filled in (the incident id it made, a response's time) is the same event; one that names another is duplicate_event_id")
    func retryWithFilledIn() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let reportId = Wire.uuid()
        let responseId = Wire.uuid()
        let outcomeId = Wire.uuid()
        let report = Wire.report(city: "Berdiansk", kind: "strike", eventId: reportId)
        #expect(try client.appendEvents([report])["incidents"] == ["berdiansk-2022-03-01-strike"])
        let response = Wire.response(incident: "berdiansk-2022-03-01-strike", eventId: responseId)
        let outcome = Wire.outcome(incident: "berdiansk-2022-03-01-strike", eventId: outcomeId)
        #expect(try client.appendEvents([response, outcome])["positions"] == [2, 3])
        let stored = try client.allEvents()
        #expect(stored[1]["occurredAt"] == "2022-03-01" && stored[1]["precision"] == "day", "a response takes its report's time")

        let named = Wire.setting(report, "incident", "berdiansk-2022-03-01-strike")
        let timed = Wire.setting(Wire.setting(response, "occurredAt", "2022-03-01"), "precision", "day")
        let outcomeTimed = Wire.setting(Wire.setting(outcome, "occurredAt", stored[2]["occurredAt"]), "precision", stored[2]["precision"])
        let again = try client.appendEvents([named, timed, outcomeTimed])
        #expect(again["positions"] == [1, 2, 3], "\(again)")

        for different in [
            Wire.setting(report, "incident", "berdiansk-2022-03-01-other"),
            Wire.setting(Wire.setting(response, "occurredAt", "2022-03-02"), "precision", "day"),
            Wire.setting(Wire.setting(response, "occurredAt", "2022-03"), "precision", "month"),
        ] {
            #expect(try client.appendEvents([different]).errorCode == "duplicate_event_id", "\(different)")
        }
        #expect(try client.headPosition() == 3)
        #expect(daemon.stop() == 0)
    }

    @Test("within one batch: a repeated identical event lands once, a repeated id with other content refuses the batch")
    func withinOneBatch() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        let id = Wire.uuid()
        let report = Wire.report(incident: "kupiansk-twice", eventId: id)
        let twice = try client.appendEvents([report, report])
        #expect(twice.isOK, "\(twice)")
        #expect(twice["positions"] == [1, 1])
        #expect(try client.headPosition() == 1)

        let other = Wire.uuid()
        let conflicting = try client.appendEvents([
            Wire.report(incident: "kupiansk-conflict", eventId: other),
            Wire.report(incident: "kupiansk-conflict-2", eventId: other),
        ])
        #expect(conflicting.errorCode == "duplicate_event_id", "\(conflicting)")
        #expect(conflicting["error"]?["index"]?.intValue == 1)
        #expect(try client.headPosition() == 1, "the batch is atomic: its first event did not land either")
        // The earlier use is in the same refused request, so no position holds it: the refusal names the two
        // events of the request, not the position the first would have taken (and which another event takes next).
        #expect(conflicting["error"]?["firstIndex"]?.intValue == 0, "\(conflicting)")
        #expect(conflicting["error"]?["position"] == nil, "\(conflicting)")
        #expect(conflicting["error"]?["eventId"]?.stringValue == other)
        let message = conflicting["error"]?["message"]?.stringValue ?? ""
        #expect(message.contains("used twice in this request") && message.contains("events 0 and 1"), "\(message)")
        #expect(!message.contains("position"), "\(message)")
        // Further apart, behind an event of its own: the indexes are the request's.
        let third = Wire.uuid()
        let apart = try client.appendEvents([
            Wire.report(incident: "kupiansk-apart", eventId: third), Wire.response(incident: "kupiansk-apart"),
            Wire.response(incident: "kupiansk-apart", eventId: third),
        ])
        #expect(apart.errorCode == "duplicate_event_id", "\(apart)")
        #expect(apart["error"]?["index"]?.intValue == 2 && apart["error"]?["firstIndex"]?.intValue == 0, "\(apart)")
        #expect(apart["error"]?["message"]?.stringValue?.contains("events 0 and 2") == true, "\(apart)")
        #expect(apart["error"]?["position"] == nil, "\(apart)")
        #expect(try client.headPosition() == 1)
        #expect(try client.call("incident", ["incident": "kupiansk-conflict"]).errorCode == "unknown_incident")
        // The eventId was not consumed by the refused batch.
        #expect(try client.appendEvents([Wire.report(incident: "kupiansk-conflict-2", eventId: other)])["positions"] == [2])

        // The same event twice with another between them, as a retry is treated: one event, its position twice.
        // A response whose expectedVersion held when it was first used is still the same event the second time.
        let response = Wire.response(incident: "kupiansk-conflict-2", eventId: Wire.uuid(), expectedVersion: 1)
        let repeated = try client.appendEvents([response, Wire.outcome(incident: "kupiansk-conflict-2"), response])
        #expect(repeated.isOK, "\(repeated)")
        #expect(repeated["positions"] == [3, 4, 3])
        #expect(try client.headPosition() == 4)
        #expect(try client.call("incident", ["incident": "kupiansk-conflict-2"])["incident"]?["version"]?.intValue == 3)
    }

    @Test("a retried report through incidentctl --event-id prints the original position")
    func cliRetry() throws {
        let daemon = try Daemon()
        let id = Wire.uuid()
        let arguments = [
            "report", "--city", "Berdyans'k", "--kind", "sabotage", "--occurred", "2022-02-28", "--precision", "week",
            "--event-id", id, "--format", "json",
        ]
        let first = try daemon.ctl(arguments)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.json == ["incident": "berdiansk-2022-02-28-sabotage", "position": 1])
        let again = try daemon.ctl(arguments)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout == first.stdout)
        #expect(try daemon.client().headPosition() == 1)
    }

    @Test("expectedVersion: equal succeeds, otherwise wrong_expected_version with the actual version")
    func expectedVersion() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents([Wire.report(incident: "melitopol-standoff", city: "Melitopol", expectedVersion: 0)]).isOK)
        for version in Int64(1)...4 {
            let ok = try client.appendEvents([Wire.response(incident: "melitopol-standoff", expectedVersion: version)])
            #expect(ok.isOK, "version \(version): \(ok)")
            for stale in [version, version + 2, 0] {
                let refused = try client.appendEvents([Wire.response(incident: "melitopol-standoff", expectedVersion: stale)])
                #expect(refused.errorCode == "wrong_expected_version")
                #expect(refused["error"]?["actualVersion"]?.intValue == version + 1)
                #expect(refused["error"]?["expectedVersion"]?.intValue == stale)
            }
        }
        #expect(try client.headPosition() == 5)
        // Through incidentctl: exit 1 naming the code.
        let stale = try daemon.ctl(["observe", "melitopol-standoff", "--response", "none", "--by", "x", "--expected-version", "2"])
        #expect(stale.status == 1)
        #expect(stale.stderr.contains("wrong_expected_version"), "\(stale.stderr)")
        let fresh = try daemon.ctl(["observe", "melitopol-standoff", "--response", "none", "--by", "x", "--expected-version", "5"])
        #expect(fresh.status == 0, "\(fresh.stderr)")
    }

    @Test("two clients racing on the same expectedVersion: exactly one wins each time")
    func racingClients() throws {
        let daemon = try Daemon()
        let rounds = 20
        let setup = try daemon.client()
        let reports = (0..<rounds).map { Wire.report(incident: "kupiansk-race-\($0)") }
        #expect(try setup.appendEvents(reports).isOK)
        let results = LockedList<(round: Int, racer: Int, response: JSONValue)>()
        let failures = LockedList<String>()
        let done = DispatchGroup()
        let start = DispatchSemaphore(value: 0)
        let socketPath = daemon.socketPath
        for racer in 0..<2 {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    let client = try RawClient(path: socketPath)
                    start.wait()
                    // Both racers pipeline every round at once, each event expecting version 1.
                    for round in 0..<rounds {
                        try client.send("append", ["events": [Wire.response(
                            incident: "kupiansk-race-\(round)", by: "racer \(racer)", expectedVersion: 1)]])
                    }
                    for round in 0..<rounds { results.append((round, racer, try client.receive())) }
                } catch {
                    failures.append("racer \(racer): \(error)")
                }
            }.start()
        }
        start.signal()
        start.signal()
        done.wait()
        #expect(failures.all.isEmpty, "\(failures.all)")
        for round in 0..<rounds {
            let answers = results.all.filter { $0.round == round }
            #expect(answers.count == 2)
            let winners = answers.filter { $0.response.isOK }
            let losers = answers.filter { $0.response.errorCode == "wrong_expected_version" }
            #expect(winners.count == 1 && losers.count == 1, "round \(round): \(answers.map(\.response))")
            #expect(losers.first?.response["error"]?["actualVersion"]?.intValue == 2)
            let incident = try setup.call("incident", ["incident": .string("kupiansk-race-\(round)")])["incident"]
            #expect(incident?["version"]?.intValue == 2)
            let by = incident?["responseHistory"]?.arrayValue?.first?["data"]?["by"]?.stringValue
            #expect(by == winners.first.map { "racer \($0.racer)" }, "the stored response is the winner's")
        }
        #expect(try setup.headPosition() == Int64(2 * rounds))
    }

    /// LMDB's last transaction id in `dataDir`, as `mdb_stat -e` prints it.
    static func lastTransactionID(_ dataDir: String) throws -> Int {
        let result = try runCommand(mdbTool("mdb_stat"), ["-e", dataDir])
        let line = try #require(result.stdout.split(separator: "\n").first { $0.contains("Last transaction ID:") }, "\(result.stdout)\(result.stderr)")
        return try #require(Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? ""), "\(line)")
    }

    @Test("status counts the events stored and the transactions written: the article appended three times to an empty log is 8 events in 1 transaction, of 3 appends; the retries write no transaction")
    func retriesAreNotCommits() throws {
        let daemon = try Daemon()
        let first = try daemon.ctl(["append", Repository.articlePath])
        #expect(first.status == 0, "\(first.stderr)")
        let written = try Self.lastTransactionID(daemon.dataDir)
        for _ in 0..<2 {
            _ = try daemon.ctl(["append", Repository.articlePath])
        }
        #expect(try Self.lastTransactionID(daemon.dataDir) == written, "the retries wrote no transaction")
        let status = try daemon.client().call("status")
        #expect(status["position"]?.intValue == 8)
        let commits = try #require(status["commits"])
        #expect(commits["transactions"]?.intValue == 1, "\(commits)")
        #expect(commits["events"]?.intValue == 8, "\(commits)")
        #expect(commits["requests"]?.intValue == 3, "\(commits)")
        #expect(commits["largestBatch"]?.intValue == 1, "\(commits)")
        let shown = try daemon.ctl(["status", "--format", "table"])
        // What largestBatch counts is said: requests, not the events of one (QA pass 12).
        #expect(shown.stdout.contains("1 transaction, 8 events, at most 1 append request in one"), "\(shown.stdout)")
        // Sizes in the table for people; the JSON keeps the bytes.
        #expect(shown.stdout.contains(" KiB used, map ") || shown.stdout.contains(" MiB used, map "), "\(shown.stdout)")
        #expect(status["storage"]?["usedBytes"]?.intValue ?? 0 > 1024, "\(status)")
        #expect(daemon.stop() == 0)
    }
}
