import IncidentDomain
import StrictJSON

/// Events of one incident, `k1`, as the log stores them, for the tests that fold them.
enum StoredEvents {
    /// Event `version` of `k1`, at `position`, of `type`, holding `data`.
    static func event(_ position: UInt64, version: Int64, type: String, data: JSONValue) throws -> RecordedEvent {
        try RecordedEvent(json: [
            "position": .int(Int64(position)), "eventId": .string("00000000-0000-4000-8000-00000000000\(version)"),
            "type": .string(type), "incident": "k1", "version": .int(version), "occurredAt": "2022-03-01",
            "precision": "day", "recordedAt": "2026-11-25T12:00:00.000000Z", "recordedBy": ["uid": 0, "user": "root"],
            "data": data, "schema": 1, "prevHash": .string(String(repeating: "0", count: 64)),
        ])
    }
}
