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
}
