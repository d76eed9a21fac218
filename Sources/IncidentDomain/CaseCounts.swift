/// A count for each case of one of the vocabulary's enumerations (at most 16 cases), kept in case order in one
/// SIMD vector: what a city counts by kind, response, outcome and verification, and an incident by response.
/// Read, written and added to another without hashing, and without a dictionary to allocate; a case never counted
/// reads as zero, so two counts are equal exactly when every case's count is.
public struct CaseCounts<Case: StoredEnumeration & RawRepresentable>: Hashable, Sendable {
    /// How many cases it has room for.
    public static var slots: Int { 16 }

    private var storage = SIMD16<Int64>()

    public init() {}

    /// The count of the case at `index` in `allCases` (the stored order).
    @inline(__always) public subscript(_ index: Int) -> Int64 {
        get { storage[index] }
        set { storage[index] = newValue }
    }

    @inline(__always) public subscript(_ value: Case) -> Int64 {
        get { storage[Int(caseTag(value))] }
        set { storage[Int(caseTag(value))] = newValue }
    }

    /// Adds `sign` times `other`, case by case.
    @inline(__always) public mutating func add(_ other: CaseCounts, times sign: Int64) {
        storage &+= other.storage &* sign
    }

    /// Whether every count is zero.
    public var isEmpty: Bool { storage == SIMD16() }

    /// The counts of every case added up (wrapping: a sound projection's are far from overflowing).
    public var total: Int64 { storage.wrappedSum() }

    /// Every count or'ed together: below zero when some count is, which no fold of a sound log makes.
    @inline(__always) public var signBits: Int64 {
        let s = storage
        return (s[0] | s[1] | s[2] | s[3]) | (s[4] | s[5] | s[6] | s[7]) | (s[8] | s[9] | s[10] | s[11])
            | (s[12] | s[13] | s[14] | s[15])
    }

    /// How many cases have a count other than zero.
    public var nonZero: Int {
        withUnsafeBytes(of: storage) { raw in
            var n = 0
            for index in 0..<Case.storedCases.count where raw.load(fromByteOffset: index * 8, as: Int64.self) != 0 { n += 1 }
            return n
        }
    }

    /// Calls `body` with each case index whose count is not zero, and the count, in index order. Only the slots of
    /// cases are read: a count put past them by index (from damaged bytes, say) is never handed out as a case.
    @inline(__always) public func forEachNonZero(_ body: (Int, Int64) throws -> Void) rethrows {
        try withUnsafeBytes(of: storage) { raw in
            for index in 0..<Case.storedCases.count {
                let count = raw.load(fromByteOffset: index * 8, as: Int64.self)
                if count != 0 { try body(index, count) }
            }
        }
    }

    /// The cases whose count is not zero, with their counts, in case order.
    public var nonZeroCases: [(Case, Int64)] {
        var cases: [(Case, Int64)] = []
        forEachNonZero { index, count in cases.append((Case.storedCases[index], count)) }
        return cases
    }
}
