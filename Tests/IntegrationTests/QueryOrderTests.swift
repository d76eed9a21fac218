import Foundation
import StrictJSON
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What a query sees of the appends pipelined before it on its connection, and what a long query costs the
/// other connections of its event loop.
@Suite("Queries among appends")
struct QueryOrderTests {
    @Test("a query pipelined after an append on the same connection sees what the append stored, whichever path reads it")
    func queryAfterAppendSeesIt() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        func line(_ object: JSONValue) -> String { String(decoding: object.canonicalBytes(), as: UTF8.self) + "\n" }
        // Each round in one write: a report, then the incident, the head and the city asked for at once; the
        // last query spells its city with `\u` escapes, as a JSON encoder that writes ASCII only does, so that
        // the intake reads it before handing it back.
        let rounds = 25
        var text = ""
        for n in 0..<rounds {
            let id = Int64(n * 10)
            text += line(["id": .int(id), "op": "append", "events": [Wire.report(incident: "pipe-\(n)", city: "Berdiansk")]])
            text += line(["id": .int(id + 1), "op": "incident", "incident": .string("pipe-\(n)")])
            text += line(["id": .int(id + 2), "op": "status"])
            text += "{\"city\":\"\\u0411\\u0435\\u0440\\u0434\\u044f\\u043d\\u0441\\u044c\\u043a\",\"id\":\(id + 3),\"op\":\"city\"}\n"
        }
        try client.write(Array(text.utf8))
        for n in 0..<rounds {
            let appended = try client.receive()
            let position = try #require(appended["positions"]?.arrayValue?.first?.intValue, "\(appended)")
            let incident = try client.receive()
            #expect(incident.isOK && incident["incident"]?["incident"]?.stringValue == "pipe-\(n)", "round \(n): \(incident)")
            let status = try client.receive()
            #expect((status["position"]?.intValue ?? 0) >= position, "round \(n): status \(status) before its append at \(position)")
            let city = try client.receive()
            #expect(city["city"]?["incidents"]?["total"]?.intValue ?? 0 >= Int64(n + 1), "round \(n): \(city)")
        }
    }

    @Test("an incident of many long events is answered off the event loop: the loop's other connections are answered meanwhile")
    func longIncidentHoldsUpNoLoop() throws {
        let daemon = try Daemon()
        let writer = try daemon.client()
        #expect(try writer.appendEvents([Wire.report(incident: "long-one", city: "Melitopol")])["ok"]?.boolValue == true)
        let description = String(repeating: "a long account of what was seen. ", count: 300)
        let events = (0..<600).map { _ in Wire.response(incident: "long-one", description: description) }
        try writer.appendEvents(events, inBatchesOf: 60)

        // Connections are handed to the loops in turn, so one of the two after the asker shares its loop.
        let asker = try daemon.client()
        let others = try (0..<2).map { _ in try daemon.client() }
        let shared = RoundTrips(connections: others.count)
        try asker.send("incident", ["incident": "long-one"])
        let finished = DispatchSemaphore(value: 0)
        for (index, fd) in others.map(\.fd).enumerated() {
            Thread.detachNewThread {
                while !shared.answered.load(ordering: .sequentiallyConsistent) && Self.statusRoundTrip(fd) {
                    if !shared.answered.load(ordering: .sequentiallyConsistent) { shared.counts[index].increment() }
                }
                finished.signal()
            }
        }
        var byte: UInt8 = 0
        _ = recv(asker.fd, &byte, 1, Int32(MSG_PEEK))
        shared.answered.store(true, ordering: .sequentiallyConsistent)
        for _ in others { finished.wait() }
        let counts = shared.counts.map { $0.load() }
        #expect(counts.allSatisfy { $0 >= 5 }, "status round trips on each connection before the incident's first byte: \(counts)")
        let incident = try asker.receive()
        #expect(incident["incident"]?["responseHistory"]?.arrayValue?.count == 600, "the whole incident is answered")
    }

    /// Sends `status` on the connection `fd` and reads its one-line answer; false if either failed.
    static func statusRoundTrip(_ fd: Int32) -> Bool {
        let request = Array("{\"op\":\"status\"}\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            if buffer[n - 1] == 0x0A { return true }
        }
    }

    /// What the connections asking `status` while a long incident is built share with the test.
    final class RoundTrips: Sendable {
        /// The first byte of the incident's answer has arrived.
        let answered = Atomic<Bool>(false)
        /// Round trips completed on each connection before it did.
        let counts: [Counter]

        init(connections: Int) { counts = (0..<connections).map { _ in Counter() } }

        final class Counter: Sendable {
            let value = Atomic<Int>(0)
            func increment() { value.add(1, ordering: .relaxed) }
            func load() -> Int { value.load(ordering: .relaxed) }
        }
    }
}
