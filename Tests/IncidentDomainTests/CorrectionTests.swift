import IncidentDomain
import StrictJSON
import Testing

/// `ReportData.applying` and `countedEffect` read corrections of the kind and the participants directly; every
/// other correction goes through a merged JSON object. Both must answer as that round trip does.
@Suite struct CorrectionTests {
    private static let now = Timestamp(microseconds: 1_764_000_000_000_000)

    private static func report(_ data: JSONValue) throws -> ReportData {
        let event = try ProposedEvent(
            json: ["type": "incident-reported", "occurredAt": "2022-03-01", "data": data], now: now)
        guard case .reported(let report) = event.data else { throw CorrectionTestFailure() }
        return report
    }

    private struct CorrectionTestFailure: Error {}

    static let kinds: [JSONValue?] = [nil, "blockade", "strike", "no-such-kind", "Blockade", .null, 3, ["kind": "strike"]]
    static let participants: [JSONValue?] = [
        nil, .null, 40, 0, -1, 1_000_000_000_000, ["low": 90], ["low": 90, "high": 120], ["low": 120, "high": 90],
        ["high": 5], ["low": 5, "high": 6, "mid": 5], ["low": "5"], "many", 2.5, .array([]),
    ]
    static let others: [(String, JSONValue)?] = [nil, ("location", "Main square"), ("tags", .array(["x"])), ("location", .null)]

    /// Every combination of a kind, participants and another field, each possibly left out (never all three).
    static let combinations: [[String: JSONValue]] = kinds.flatMap { kind in
        participants.flatMap { people in
            others.compactMap { other -> [String: JSONValue]? in
                var corrections: [String: JSONValue] = [:]
                if let kind { corrections["kind"] = kind }
                if let people { corrections["participants"] = people }
                if let other { corrections[other.0] = other.1 }
                return corrections.isEmpty ? nil : corrections
            }
        }
    }

    @Test("the direct reading of kind and participants corrections gives what the JSON round trip gives")
    func directMatchesRoundTrip() throws {
        let reports = [
            try Self.report(["city": "Kup'yansk", "kind": "demonstration", "participants": ["low": 150, "high": 200]]),
            try Self.report(["city": "Kyiv", "kind": "strike", "location": "Maidan", "tags": ["a", "b"]]),
        ]
        var compared = 0
        for corrections in Self.combinations {
            #expect(
                ReportData.countedEffect(of: corrections) == ReportData.countedEffectThroughJSON(of: corrections),
                "\(corrections)")
            for report in reports {
                #expect(report.applying(corrections) == report.applyingThroughJSON(corrections), "\(corrections)")
                compared += 1
            }
        }
        #expect(compared > 700)
        // The cases that take the direct reading do change the report.
        let corrected = reports[0].applying(["kind": "blockade", "participants": ["low": 90]])
        #expect(corrected.kind == .blockade && corrected.participants == PeopleRange(low: 90, high: 90))
        #expect(reports[0].applying(["participants": .null]).participants == nil)
    }

    @Test("a report past today's rules is corrected as any other: applying gives the kind and participants countedEffect gives")
    func correctionOfAReportPastTodaysRules() throws {
        // As an earlier daemon may have stored them: a location past the limit, more tags than allowed.
        var pastRules = try Self.report(["city": "Kup'yansk", "kind": "demonstration", "participants": 150])
        pastRules.location = String(repeating: "x", count: Limits.location + 1)
        pastRules.tags = (0...Limits.tags).map { "tag-\($0)" }
        var compared = 0
        for corrections in Self.combinations {
            let effect = ReportData.countedEffect(of: corrections)
            let applied = pastRules.applying(corrections)
            #expect(applied.kind == effect.kind ?? pastRules.kind, "\(corrections)")
            switch effect.participants {
            case .unchanged: #expect(applied.participants == pastRules.participants, "\(corrections)")
            case .removed: #expect(applied.participants == nil, "\(corrections)")
            case .set(let range): #expect(applied.participants == range, "\(corrections)")
            }
            compared += 1
        }
        #expect(compared > 400)
        let corrected = pastRules.applying(["kind": "blockade", "location": "by the bridge"])
        #expect(corrected.kind == .blockade && corrected.location == "by the bridge")
        #expect(corrected.tags == pastRules.tags)
    }
}
