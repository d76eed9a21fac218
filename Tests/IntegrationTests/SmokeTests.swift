import Foundation
import StrictJSON
import Testing

@Suite("Smoke")
struct SmokeTests {
    @Test("the daemon starts, takes the article's events and answers status")
    func startsAndAppends() throws {
        let daemon = try Daemon()
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/article.jsonl").path
        let append = try daemon.ctl(["append", "--format", "json", example])
        #expect(append.status == 0, "\(append.stderr)")
        let status = try daemon.client().call("status")
        #expect(status.isOK)
        #expect(status["position"]?.intValue == append.json?["lastPosition"]?.intValue)
        #expect(daemon.stop() == 0)
    }

    @Test("recordedAt is the daemon's clock at the commit, in UTC with six fractional digits, and never earlier than the event before")
    func recordedAtIsTheCommitTime() throws {
        let daemon = try Daemon()
        let format = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/#
        var previous = ""
        for n in 0..<3 {
            let before = Date()
            #expect(try daemon.client().appendEvents([Wire.report(incident: "clock-\(n)", city: "Kupiansk")]).isOK)
            let after = Date()
            let event = try daemon.client().call("read", ["from": .int(Int64(n + 1)), "limit": .int(1)])["events"]?.arrayValue?.first
            let recordedAt = try #require(event?["recordedAt"]?.stringValue, "\(String(describing: event))")
            #expect(recordedAt.wholeMatch(of: format) != nil, "\(recordedAt)")
            let parser = ISO8601DateFormatter()
            parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let instant = try #require(parser.date(from: recordedAt))
            // The formatter keeps milliseconds: a millisecond of slack on either side.
            #expect(instant >= before.addingTimeInterval(-0.001) && instant <= after.addingTimeInterval(0.001), "\(recordedAt) outside \(before)…\(after)")
            #expect(recordedAt >= previous, "\(recordedAt) before \(previous)")
            previous = recordedAt
        }
        #expect(daemon.stop() == 0)
    }
}
