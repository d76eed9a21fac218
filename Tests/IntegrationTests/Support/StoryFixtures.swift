import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The repository, found from this file's path.
enum Repository {
    static let root: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    /// `examples/article.jsonl`: the article's eight events in three cities.
    static var articlePath: String { root + "/examples/article.jsonl" }

    /// The article's events, parsed, in file order.
    static func articleEvents() throws -> [JSONValue] {
        let text = try String(contentsOfFile: articlePath, encoding: .utf8)
        return try text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { try JSONReader().read(String($0)) }
    }
}

/// Wire events (SPEC §2) for tests, built field by field so each test states only what it cares about.
enum Wire {
    static func report(
        incident: String? = nil, city: String = "Kupiansk", kind: String = "demonstration",
        occurredAt: String = "2022-03-01", participants: (Int64, Int64)? = nil, eventId: String? = nil,
        expectedVersion: Int64? = nil, extraData: [String: JSONValue] = [:]
    ) -> JSONValue {
        var data: [String: JSONValue] = ["city": .string(city), "kind": .string(kind)]
        if let participants { data["participants"] = ["low": .int(participants.0), "high": .int(participants.1)] }
        data.merge(extraData) { _, new in new }
        var event: [String: JSONValue] = ["type": "incident-reported", "occurredAt": .string(occurredAt), "data": .object(data)]
        if let incident { event["incident"] = .string(incident) }
        if let eventId { event["eventId"] = .string(eventId) }
        if let expectedVersion { event["expectedVersion"] = .int(expectedVersion) }
        return .object(event)
    }

    static func response(
        incident: String, responses: [String] = ["warning-shots"], by: String = "Russian armed forces",
        detained: Int64? = nil, eventId: String? = nil, expectedVersion: Int64? = nil, description: String? = nil
    ) -> JSONValue {
        var data: [String: JSONValue] = ["by": .string(by), "responses": .array(responses.map { .string($0) })]
        if let detained { data["detained"] = .int(detained) }
        if let description { data["description"] = .string(description) }
        var event: [String: JSONValue] = ["type": "response-observed", "incident": .string(incident), "data": .object(data)]
        if let eventId { event["eventId"] = .string(eventId) }
        if let expectedVersion { event["expectedVersion"] = .int(expectedVersion) }
        return .object(event)
    }

    static func outcome(incident: String, status: String = "dispersed", eventId: String? = nil) -> JSONValue {
        var event: [String: JSONValue] = [
            "type": "outcome-updated", "incident": .string(incident), "data": ["status": .string(status)],
        ]
        if let eventId { event["eventId"] = .string(eventId) }
        return .object(event)
    }

    /// `event` with `key` set (or removed, for nil) at a dotted path such as `data.kind`.
    static func setting(_ event: JSONValue, _ path: String, _ value: JSONValue?) -> JSONValue {
        func set(_ node: JSONValue, _ keys: ArraySlice<Substring>) -> JSONValue {
            guard let key = keys.first, case .object(var members) = node else { return node }
            if keys.count == 1 {
                members[String(key)] = value
            } else {
                members[String(key)] = set(members[String(key)] ?? [:], keys.dropFirst())
            }
            return .object(members)
        }
        return set(event, path.split(separator: ".")[...])
    }

    static func uuid() -> String { UUID().uuidString.lowercased() }
}

extension RawClient {
    /// One `append` request, its response.
    func appendEvents(_ events: [JSONValue], allowNewCity: Bool? = nil) throws -> JSONValue {
        var body: [String: JSONValue] = ["events": .array(events)]
        if let allowNewCity { body["allowNewCity"] = .bool(allowNewCity) }
        return try call("append", body)
    }

    /// `events` in `append` requests of `batch` each, in order; every one must be accepted.
    func appendEvents(_ events: [JSONValue], inBatchesOf batch: Int) throws {
        for start in stride(from: 0, to: events.count, by: batch) {
            let answer = try appendEvents(Array(events[start..<min(start + batch, events.count)]))
            #expect(answer["ok"]?.boolValue == true, "\(answer)")
        }
    }

    /// The head position `status` reports.
    func headPosition() throws -> Int64 {
        let status = try call("status")
        guard let position = status["position"]?.intValue else { throw HarnessError("status without a position: \(status)") }
        return position
    }

    /// Every stored event, read page by page with the `read` operation.
    func allEvents(pageSize: Int64 = 1000) throws -> [JSONValue] {
        var events: [JSONValue] = []
        var from: Int64 = 1
        while true {
            let page = try call("read", ["from": .int(from), "limit": .int(pageSize)])
            guard page.isOK, let batch = page["events"]?.arrayValue, let next = page["next"]?.intValue else {
                throw HarnessError("read failed: \(page)")
            }
            events += batch
            if batch.isEmpty || next <= from { return events }
            from = next
        }
    }
}

extension Daemon {
    /// A daemon started with `--config` pointing at a file holding `toml`, in a fresh temporary directory.
    static func configured(_ toml: String, arguments: [String] = []) throws -> Daemon {
        let root = makeTemporaryDirectory()
        let path = root + "/incidentd.toml"
        try toml.write(toFile: path, atomically: true, encoding: .utf8)
        return try Daemon(arguments: ["--config", path] + arguments, root: root)
    }
}

/// The name of the user running the tests, as the daemon resolves it from the peer's uid.
func currentUserName() -> String {
    guard let entry = getpwuid(getuid()), let name = entry.pointee.pw_name else { return "uid:\(getuid())" }
    return String(cString: name)
}

/// A collection shared between threads, every access under one lock.
final class LockedList<Element>: @unchecked Sendable {
    // Safe: every access goes through `lock`.
    private let lock = NSLock()
    private var items: [Element] = []
    func append(_ item: Element) { lock.lock(); items.append(item); lock.unlock() }
    var all: [Element] { lock.lock(); defer { lock.unlock() }; return items }
}
