import Dispatch
import Foundation
import IncidentProtocol
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Reliability: answers built and not written", .serialized)
struct UnwrittenAnswersTests {
    /// Stores `count` reports of about 9 KB each: a `read` of them all answers about `count` × 9 KB.
    static func storeWideEvents(_ client: RawClient, count: Int, prefix: String = "wide") throws {
        let description = String(repeating: "d", count: 9_000)
        for part in 0..<(count / 50) {
            let events = (0..<50).map { WireEvent.report(incident: "\(prefix)-\(part)-\($0)", description: description) }
            let appended = try client.call("append", ["events": .array(events)])
            try #require(appended.isOK, "\(appended.canonicalString().prefix(300))")
        }
    }

    /// A client that sends `reads` reads of the whole log at once and never reads an answer.
    static func nonReader(_ daemon: Daemon, reads: Int) throws -> RawClient {
        let client = try daemon.client()
        var lines: [UInt8] = []
        for id in 1...reads { lines += Array(#"{"id":\#(id),"op":"read","limit":10000}"#.utf8) + [0x0A] }
        try client.write(lines)
        return client
    }

    /// Whether `client`'s socket has something to read within `timeout` seconds.
    static func hasAnswer(_ client: RawClient, within timeout: Double) -> Bool {
        var ready = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
        return poll(&ready, 1, Int32(timeout * 1000)) == 1
    }

    @Test(
        "sixty clients that each ask for reads of 3 MB and read nothing make the daemon hold about max_unwritten_bytes (16 MiB here), not one answer each; status counts it; a client that reads gets the whole log meanwhile, in smaller pages"
    )
    func unwrittenAnswersAreBounded() throws {
        let daemon = try Daemon.configured("[daemon]\nmax_unwritten_bytes = \"16MiB\"\n")
        let client = try daemon.client()
        try Self.storeWideEvents(client, count: 300)
        // After one such answer was made and written, as every later one is.
        let whole = try client.call("read", ["limit": 10_000])
        try #require(whole["events"]?.arrayValue?.count == 300)
        let answerBytes = whole.canonicalBytes().count
        let baseline = residentBytes(of: daemon.pid)

        var hogs = try (0..<60).map { _ in try Self.nonReader(daemon, reads: 4) }
        for hog in hogs { try #require(Self.hasAnswer(hog, within: 60 * deadlineScale), "a hog's first answer never came") }
        // Every hog has been answered once, and each of them reads no more.
        let grown = residentBytes(of: daemon.pid) - baseline
        let held = try client.status()["unwrittenAnswerBytes"]?.intValue
        #expect(
            (held ?? .max) <= (16 << 20) + 60 * (64 << 10) + 2 * answerBytes,
            "the daemon holds \(held.map { "\($0 >> 20) MiB" } ?? "an unknown amount") of answers unwritten")
        if !underSanitizer {
            #expect(
                grown < 64 << 20,
                "the daemon grew by \(grown >> 20) MiB for 60 clients that read none of their answers of \(answerBytes >> 20) MiB")
        }

        // A client that reads is never held up for good: it gets every event, in pages of what room there is.
        let started = Date()
        let events = try client.allEvents()
        #expect(events.count == 300)
        #expect(Date().timeIntervalSince(started) < 30 * deadlineScale)
        #expect(try client.status().isOK)

        // Once the hogs go, what they held is given back.
        hogs.removeAll()
        try waitFor("the closed hogs' answers to be given back", timeout: 20 * deadlineScale) {
            try client.status()["unwrittenAnswerBytes"]?.intValue == 0
        }
        #expect(daemon.stop() == 0)
    }
}
