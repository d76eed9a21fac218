import Gazetteer
import IncidentDomain
@testable import IncidentLog
import StrictJSON
import Testing

/// An appended response or outcome always comes after every event of its incident (positions are given out in
/// order, and the report comes first). One read back from LMDB that does not, because its position was changed
/// on the disk, is damage: folded, it made an incident whose last position is before its first, which the
/// stored form (the last position as its distance from the first) cannot hold, so it did not read back. (Found by
/// the stored-form fuzz target, `make fuzz-stored`: a report at position 9 and a response to it at position 5.)
@Suite struct EventOrderTests {
    static let projector = Projector(gazetteer: .embedded)

    static func report(_ position: UInt64) throws -> RecordedEvent {
        try StoredEvents.event(position, version: 1, type: "incident-reported", data: ["city": "Kupiansk", "cityId": "kupiansk", "kind": "demonstration"])
    }

    static func response(_ position: UInt64) throws -> RecordedEvent {
        try StoredEvents.event(position, version: 2, type: "response-observed", data: ["by": "police", "responses": ["tear-gas"]])
    }

    static func outcome(_ position: UInt64) throws -> RecordedEvent {
        try StoredEvents.event(position, version: 2, type: "outcome-updated", data: ["status": "dispersed"])
    }

    @Test("replay's fold refuses a response or outcome at or before its incident's last event, by either reader; what it folds stores and reads back")
    func foldRefusesEventsOutOfOrder() throws {
        let laterEvents: [(UInt64) throws -> RecordedEvent] = [Self.response, Self.outcome]
        for later in laterEvents {
            for position: UInt64 in [5, 9] {
                // The general reader (RecordedEvent), and the fast one (the canonical bytes).
                var general = ProjectionFold(projector: Self.projector)
                try general.apply(try Self.report(9))
                #expect(throws: LogError(.corrupt, "it names position \(position), not after its incident's event at position 9")) {
                    try general.apply(try later(position))
                }
                var fast = ProjectionFold(projector: Self.projector)
                for (n, event) in [try Self.report(9), try later(position)].enumerated() {
                    let bytes = event.canonicalBytes()
                    try bytes.withUnsafeBytes { raw in
                        let parsed = try #require(StoredEventReader.parse(raw))
                        if n == 0 {
                            #expect(try StoredEventReader.apply(parsed, to: &fast))
                        } else {
                            #expect(throws: LogError.self) { try StoredEventReader.apply(parsed, to: &fast) }
                        }
                    }
                }
                for fold in [general, fast] {
                    let state = fold.state(0)
                    #expect(state.firstPosition == 9 && state.lastPosition == 9)
                    #expect(try IncidentState(encoded: state.encoded(), incident: state.incident) == state, "it survives its stored form")
                }
            }
            var sound = ProjectionFold(projector: Self.projector)
            try sound.apply(try Self.report(9))
            try sound.apply(try later(10))
            #expect(try IncidentState(encoded: sound.state(0).encoded(), incident: sound.state(0).incident).lastPosition == 10)
        }
    }
}
