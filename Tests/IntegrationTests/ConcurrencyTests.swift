import Foundation
import StrictJSON
import Testing

/// Many connections appending at once, each pipelining its requests: every acknowledged event is in the log,
/// at a gap-free position, once, and the appends were grouped into fewer transactions than events.
@Suite("Concurrent appends")
struct ConcurrencyTests {
    static let connections = 32
    static let incidentsPerConnection = 10
    static let responsesPerIncident = 4
    static let window = 8

    /// One acknowledged event: where the daemon said it landed.
    struct Ack: Sendable {
        var position: Int64
        var incident: String
        var eventId: String
    }

    @Test("32 connections pipelining appends: every acknowledged event present, positions 1...N, group commit")
    func manyConnections() throws {
        let daemon = try Daemon()
        let socketPath = daemon.socketPath
        let acks = LockedList<Ack>()
        let failures = LockedList<String>()
        let connected = DispatchGroup()
        let done = DispatchGroup()
        let start = DispatchSemaphore(value: 0)

        for connection in 0..<Self.connections {
            connected.enter()
            done.enter()
            Thread {
                defer { done.leave() }
                let client: RawClient
                do {
                    client = try RawClient(path: socketPath)
                } catch {
                    failures.append("connection \(connection): \(error)")
                    connected.leave()
                    return
                }
                connected.leave()
                start.wait()
                // Requests: each incident's report alone, then its responses in one atomic batch, pipelined
                // up to `window` deep on this connection.
                var requests: [[JSONValue]] = []
                for n in 0..<Self.incidentsPerConnection {
                    let incident = "load-\(connection)-\(n)"
                    requests.append([Wire.report(incident: incident, city: ["Kupiansk", "Melitopol", "Berdiansk"][n % 3], eventId: Wire.uuid())])
                    requests.append((0..<Self.responsesPerIncident).map { r in
                        Wire.response(incident: incident, responses: [["warning-shots", "tear-gas", "detentions", "none"][r]], eventId: Wire.uuid())
                    })
                }
                do {
                    var sent = 0
                    var received = 0
                    while received < requests.count {
                        while sent < requests.count && sent - received < Self.window {
                            try client.send("append", ["id": .int(Int64(sent)), "events": .array(requests[sent])])
                            sent += 1
                        }
                        let response = try client.receive()
                        let request = requests[received]
                        guard response["id"]?.intValue == Int64(received) else {
                            failures.append("connection \(connection): response \(response) out of order, expected id \(received)")
                            return
                        }
                        received += 1
                        guard response.isOK, let positions = response["positions"]?.arrayValue?.compactMap(\.intValue),
                            let incidents = response["incidents"]?.arrayValue?.compactMap(\.stringValue),
                            positions.count == request.count, incidents.count == request.count
                        else {
                            failures.append("connection \(connection): \(response)")
                            continue
                        }
                        for (k, event) in request.enumerated() {
                            acks.append(Ack(position: positions[k], incident: incidents[k], eventId: event["eventId"]?.stringValue ?? ""))
                        }
                    }
                } catch {
                    failures.append("connection \(connection): \(error)")
                }
            }.start()
        }
        connected.wait()
        // Every connection is open at once before the first append goes out.
        let observer = try daemon.client()
        try waitFor("\(Self.connections + 1) connections") {
            (try observer.call("status")["connections"]?.intValue ?? 0) >= Int64(Self.connections + 1)
        }
        for _ in 0..<Self.connections { start.signal() }
        done.wait()
        #expect(failures.all.isEmpty, "\(failures.all.prefix(5))")

        let expected = Self.connections * Self.incidentsPerConnection * (1 + Self.responsesPerIncident)
        let acknowledged = acks.all
        #expect(acknowledged.count == expected)
        #expect(Set(acknowledged.map(\.position)).count == acknowledged.count, "no two acknowledgments share a position")

        let events = try observer.allEvents()
        #expect(events.count == acknowledged.count, "N equals the number of acknowledged events")
        #expect(events.map { $0["position"]?.intValue ?? 0 } == Array(1...Int64(events.count)), "positions are gap-free 1...N")
        let byPosition = Dictionary(events.map { ($0["position"]?.intValue ?? 0, $0) }) { a, _ in a }
        for ack in acknowledged {
            let event = byPosition[ack.position]
            #expect(event?["eventId"]?.stringValue == ack.eventId, "position \(ack.position) holds the acknowledged event")
            #expect(event?["incident"]?.stringValue == ack.incident)
        }
        #expect(Set(events.compactMap { $0["eventId"]?.stringValue }).count == events.count, "no event stored twice")
        // Each incident's stream: versions 1...5 in position order, the report first.
        let streams = Dictionary(grouping: events) { $0["incident"]?.stringValue ?? "" }
        #expect(streams.count == Self.connections * Self.incidentsPerConnection)
        for (incident, stream) in streams {
            #expect(stream.map { $0["version"]?.intValue ?? 0 } == Array(1...Int64(1 + Self.responsesPerIncident)), "\(incident)")
            #expect(stream.first?["type"]?.stringValue == "incident-reported", "\(incident)")
        }

        let verify = try observer.call("verify")
        #expect(verify["intact"] == true, "\(verify)")
        #expect(verify["derived"]?["intact"] == true, "\(verify)")
        #expect(verify["checked"]?.intValue == Int64(expected))
        let status = try observer.call("status")
        #expect(status["position"]?.intValue == Int64(expected))
        let commits = try #require(status["commits"])
        let transactions = try #require(commits["transactions"]?.intValue)
        #expect(commits["events"]?.intValue == Int64(expected))
        #expect(commits["requests"]?.intValue == Int64(Self.connections * Self.incidentsPerConnection * 2))
        #expect(transactions < Int64(Self.connections * Self.incidentsPerConnection * 2), "requests were grouped: \(commits)")
        #expect((commits["largestBatch"]?.intValue ?? 0) > 1, "\(commits)")
        // The projections add up: every city's incidents and responses.
        let cities = try #require(observer.call("cities")["cities"]?.arrayValue)
        let total = cities.reduce(Int64(0)) { $0 + ($1["incidents"]?["total"]?.intValue ?? 0) }
        #expect(total == Int64(Self.connections * Self.incidentsPerConnection))
        let detentions = cities.reduce(Int64(0)) { $0 + ($1["responses"]?["detentions"]?.intValue ?? 0) }
        #expect(detentions == Int64(Self.connections * Self.incidentsPerConnection))
    }

    @Test("appends pipelined on one connection land in the order sent, whichever decoder reads each, queries in between")
    func pipelinedOrder() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        func line(_ object: JSONValue) -> String { String(decoding: object.canonicalBytes(), as: UTF8.self) }
        // Each round: a report the fast decoder declines (an escaped member name, or the operation spelled with
        // an escape) and only the general one reads, then a response and an outcome for it that the fast decoder
        // reads, and two queries. The response and the outcome need the report before them.
        let rounds = 60
        var text = ""
        var appendIds: [Int64] = []
        var id: Int64 = 0
        for n in 0..<rounds {
            let incident = "order-\(n)"
            id += 1
            let report = line(["id": .int(id), "op": "append", "events": [Wire.report(incident: incident, city: ["Kupiansk", "Melitopol", "Berdiansk"][n % 3])]])
            text += n % 2 == 0
                ? report.replacingOccurrences(of: "\"incident\":", with: "\"\\u0069ncident\":")
                : report.replacingOccurrences(of: "\"op\":\"append\"", with: "\"op\":\"\\u0061ppend\"")
            text += "\n"
            appendIds.append(id)
            id += 1
            text += line(["id": .int(id), "op": "append", "events": [Wire.response(incident: incident, detained: 1)]]) + "\n"
            appendIds.append(id)
            id += 1
            text += line(["id": .int(id), "op": "append", "events": [Wire.outcome(incident: incident)]]) + "\n"
            appendIds.append(id)
            id += 1
            text += line(["id": .int(id), "op": "city", "city": "Kupiansk"]) + "\n"
            // A query that only looks like it could be an append (a `\u` escape): the intake hands it back.
            id += 1
            text += "{\"city\":\"\\u0411\\u0435\\u0440\\u0434\\u044f\\u043d\\u0441\\u044c\\u043a\",\"id\":\(id),\"op\":\"city\"}\n"
        }
        #expect(text.contains("\\u0069ncident") && text.contains("\\u0061ppend"), "the escapes are in the lines sent")
        try client.write(Array(text.utf8))

        var positions: [Int64: Int64] = [:]
        for expected in 1...id {
            let response = try client.receive()
            #expect(response["id"]?.intValue == expected, "answers come in request order: \(response)")
            #expect(response.isOK, "request \(expected): \(response)")
            if let position = response["positions"]?.arrayValue?.first?.intValue { positions[expected] = position }
        }
        let landed = appendIds.compactMap { positions[$0] }
        #expect(landed.count == appendIds.count, "every append acknowledged")
        #expect(landed == Array(1...Int64(appendIds.count)), "positions follow the order the appends were sent")
        let incident = try client.call("incident", ["incident": .string("order-\(rounds - 1)")])
        #expect(incident["incident"]?["version"]?.intValue == 3, "\(incident)")
    }
}
