import IncidentDomain
import Testing

/// A case's count sits at the case's index in `storedCases`, where the stored incident projection and the
/// rebuild's fold put it: the projections the writer keeps and those a rebuild makes must read the same slots.
@Suite struct CaseCountsTests {
    private static func slots<E: StoredEnumeration & RawRepresentable>(_: E.Type) -> [Int] {
        guard E.storedCases.count <= CaseCounts<E>.slots else { return [] }
        return E.storedCases.map { value in
            var counts = CaseCounts<E>()
            counts[value] = 7
            var found: [Int] = []
            counts.forEachNonZero { index, count in
                if count == 7 { found.append(index) }
            }
            return found.count == 1 ? found[0] : -1
        }
    }

    @Test("each case of every counted enumeration counts in the slot of its index among storedCases")
    func slotPerCase() {
        #expect(Self.slots(IncidentKind.self) == Array(IncidentKind.storedCases.indices))
        #expect(Self.slots(ResponseKind.self) == Array(ResponseKind.storedCases.indices))
        #expect(Self.slots(OutcomeStatus.self) == Array(OutcomeStatus.storedCases.indices))
        #expect(Self.slots(Verification.self) == Array(Verification.storedCases.indices))
        #expect(Self.slots(Precision.self) == Array(Precision.storedCases.indices))
    }

    @Test("each case of every stored enumeration has, as its index, its place among storedCases (the tag it is read by)")
    func indexIsPlace() {
        func places<E: StoredEnumeration>(_: E.Type) -> [Int] { E.storedCases.map { Int(E.index($0)) } }
        #expect(places(IncidentKind.self) == Array(IncidentKind.storedCases.indices))
        #expect(places(ResponseKind.self) == Array(ResponseKind.storedCases.indices))
        #expect(places(OutcomeStatus.self) == Array(OutcomeStatus.storedCases.indices))
        #expect(places(Verification.self) == Array(Verification.storedCases.indices))
        #expect(places(Precision.self) == Array(Precision.storedCases.indices))
    }

    @Test("a count put by index in a slot past the cases (from damaged bytes) is never handed out as a case")
    func slotsPastTheCases() {
        var counts = CaseCounts<ResponseKind>()
        counts[ResponseKind.storedCases.count + 2] = 5
        var visited: [Int] = []
        counts.forEachNonZero { index, _ in visited.append(index) }
        #expect(visited.isEmpty && counts.nonZero == 0 && counts.nonZeroCases.isEmpty)
    }

    @Test("adding and taking away leaves counts equal to ones never counted, and nonZeroCases lists cases in order")
    func addAndTakeAway() {
        var city = CaseCounts<ResponseKind>()
        var incident = CaseCounts<ResponseKind>()
        incident[.tearGas] = 2
        incident[.detentions] = 1
        city.add(incident, times: 1)
        #expect(city.nonZero == 2)
        #expect(city.nonZeroCases.map(\.0) == [.tearGas, .detentions])
        #expect(city[.tearGas] == 2 && city[.liveFire] == 0)
        city.add(incident, times: -1)
        #expect(city == CaseCounts<ResponseKind>())
        #expect(city.isEmpty)
    }
}
