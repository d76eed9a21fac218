#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON

// The fold of `replay` (and of `verify`'s reading of the envelope): the same arithmetic as `Projector.apply`,
// specialised for folding the whole log at once. (The rebuild folds each incident from its stream's summaries
// instead, in `StreamFold`, with this file's records and stored form.) Stored events are read straight from their canonical bytes, picking out only what the projections need
// (anything unexpected in an event sends that event through `RecordedEvent(json:)` instead). No `String` is made
// per event: incident ids live in a byte table (one arena, an open-addressing index), texts that repeat (city
// names and ids, dates) are interned once, and incidents are plain records without references, updated in place.
// The bench (`incidentbench`) compares the cities it folds with the ones the rebuild wrote.

/// Byte strings numbered densely in the order they were first added, with an open-addressing hash index to find
/// a string's number from its bytes. `replay`'s fold keys its incidents by their id bytes with it, and interns
/// texts.
struct ByteTable {
    /// The strings back to back: string `i` is `arena[starts[i]..<starts[i + 1]]`.
    private(set) var arena: [UInt8] = []
    private(set) var starts: [Int] = [0]
    /// Each string's hash, to grow the index without reading the strings again.
    private var hashes: [UInt64] = []
    /// The index: 0 for a free slot, otherwise the string's number + 1 in the low 32 bits and the top 32 bits
    /// of its hash in the high ones. At most half full.
    private var slots: [UInt64] = Array(repeating: 0, count: 256)

    /// Mixed into every hash, chosen afresh for each table, so that ids crafted to collide in one process do not
    /// collide in another.
    private let seed = UInt64.random(in: .min ... .max)

    /// How many strings it holds (fewer than 2³¹).
    var count: Int { hashes.count }

    /// A fast, well-mixed 64-bit hash of `bytes`, seeded per table. It is only an index: equal hashes are
    /// always confirmed byte for byte.
    @inline(__always) func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let n = bytes.count
        var h: UInt64 = seed ^ UInt64(truncatingIfNeeded: n)
        var i = 0
        while i + 8 <= n {
            h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 31
            i += 8
        }
        if i < n {
            var word: UInt64 = 0
            var shift: UInt64 = 0
            while i < n {
                word |= UInt64(bytes[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ word) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 31
        }
        h = (h ^ (h >> 33)) &* 0xC4CE_B9FE_1A85_EC53
        return h ^ (h >> 33)
    }

    @inline(__always) static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return a.count == 0 }
        return memcmp(pa, pb, a.count) == 0
    }

    /// The number of the string `bytes` (whose ``hash(_:)`` is `hash`), if it was added.
    @inline(__always) func find(_ bytes: UnsafeRawBufferPointer, hash: UInt64) -> Int32? {
        arena.withUnsafeBytes { arena in
            starts.withUnsafeBufferPointer { starts in
                slots.withUnsafeBufferPointer { slots in
                    let mask = slots.count - 1
                    let tag = hash >> 32
                    var slot = Int(truncatingIfNeeded: hash) & mask
                    while true {
                        let entry = slots[slot]
                        if entry == 0 { return nil }
                        if entry >> 32 == tag {
                            let i = Int(entry & 0xFFFF_FFFF) - 1
                            if ByteTable.equal(UnsafeRawBufferPointer(rebasing: arena[starts[i]..<starts[i + 1]]), bytes) {
                                return Int32(i)
                            }
                        }
                        slot = (slot + 1) & mask
                    }
                }
            }
        }
    }

    /// Adds `bytes`, which must not be in the table yet, and returns its number.
    @inline(__always) mutating func add(_ bytes: UnsafeRawBufferPointer, hash: UInt64) -> Int32 {
        if (count + 1) * 2 > slots.count { grow() }
        let i = count
        arena.append(contentsOf: bytes)
        starts.append(arena.count)
        hashes.append(hash)
        place(i, hash)
        return Int32(i)
    }

    /// The bytes of string `i`, for `body`.
    @inline(__always) func withBytes<R>(_ i: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try arena.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[starts[Int(i)]..<starts[Int(i) + 1]])) }
    }

    private mutating func place(_ i: Int, _ hash: UInt64) {
        slots.withUnsafeMutableBufferPointer { slots in
            let mask = slots.count - 1
            var slot = Int(truncatingIfNeeded: hash) & mask
            while slots[slot] != 0 { slot = (slot + 1) & mask }
            slots[slot] = (hash >> 32) << 32 | UInt64(i + 1)
        }
    }

    private mutating func grow() {
        rehash(slotCount: slots.count * 2)
    }

    /// A new, empty index of `slotCount` slots, with every string placed in it again.
    private mutating func rehash(slotCount: Int) {
        slots = Array(repeating: 0, count: slotCount)
        for (i, hash) in hashes.enumerated() { place(i, hash) }
    }

    /// Makes room for `count` strings in all (their bytes are reserved at 48 each), the index included.
    mutating func reserveCapacity(_ count: Int) {
        arena.reserveCapacity(count * 48)
        starts.reserveCapacity(count + 1)
        hashes.reserveCapacity(count)
        var size = slots.count
        while size < count * 2 { size *= 2 }
        if size > slots.count { rehash(slotCount: size) }
    }

    /// Forgets every string, keeping the memory.
    mutating func removeAll() {
        arena.removeAll(keepingCapacity: true)
        starts.removeAll(keepingCapacity: true)
        starts.append(0)
        hashes.removeAll(keepingCapacity: true)
        slots.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }

    /// One string while the table is sorted: the 8 bytes at the depth being compared (big-endian, padded with
    /// zeros), where the string is, and its number.
    private struct SortEntry {
        var chunk: UInt64
        var start: Int
        var length: Int32
        var number: Int32
    }

    /// The numbers of the strings `arena[starts[i]..<starts[i + 1]]`, `i` below `starts.count - 1` (or only those
    /// numbered in `among`), in byte order (`memcmp`, a prefix first): an MSD radix sort, on 8-byte digits (each
    /// loaded once per string) and within a digit byte by byte, so that long shared prefixes cost a counting pass
    /// per byte rather than a `memcmp` per comparison. (The rebuild sorts its incidents' ids with it.)
    static func sortedNumbers(arena: UnsafeRawBufferPointer, starts: UnsafeBufferPointer<Int>, among: [Int32]? = nil) -> [Int32] {
        let count = among?.count ?? starts.count - 1
        guard count > 0 else { return [] }
        var entries: [SortEntry] = []
        entries.reserveCapacity(count)
        for k in 0..<count {
            let i = among.map { Int($0[k]) } ?? k
            entries.append(SortEntry(chunk: 0, start: starts[i], length: Int32(starts[i + 1] - starts[i]), number: Int32(i)))
        }
        var scratch = entries
        entries.withUnsafeMutableBufferPointer { entries in
            scratch.withUnsafeMutableBufferPointer { scratch in
                guard let base = arena.baseAddress else { return }
                ByteTable.sort(entries, scratch, base, depth: 0)
            }
        }
        return entries.map(\.number)
    }

    /// Sorts strings that agree on their first `depth` bytes: loads their digit at `depth`, sorts by it.
    private static func sort(
        _ e: UnsafeMutableBufferPointer<SortEntry>, _ scratch: UnsafeMutableBufferPointer<SortEntry>, _ base: UnsafeRawPointer,
        depth: Int
    ) {
        guard e.count > 1 else { return }
        for k in e.indices {
            let from = e[k].start + depth
            let n = Int(e[k].length) - depth
            if n >= 8 {
                e[k].chunk = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: from, as: UInt64.self))
            } else {
                var word: UInt64 = 0
                var j = 0
                while j < n {
                    word |= UInt64(base.load(fromByteOffset: from + j, as: UInt8.self)) << UInt64(56 - 8 * j)
                    j += 1
                }
                e[k].chunk = word
            }
        }
        radix(e, scratch, base, depth: depth, byte: 0)
    }

    /// Sorts strings whose digits at `depth` agree on their first `byte` bytes, by the rest of the digit, then
    /// each run of equal digits by what follows.
    private static func radix(
        _ e: UnsafeMutableBufferPointer<SortEntry>, _ scratch: UnsafeMutableBufferPointer<SortEntry>, _ base: UnsafeRawPointer,
        depth: Int, byte: Int
    ) {
        if e.count <= 128 {
            // Few enough to compare: by digit, then the runs of equal digits.
            var e = e
            e.sort { $0.chunk < $1.chunk }
            var lo = 0
            while lo < e.count {
                var hi = lo + 1
                while hi < e.count, e[hi].chunk == e[lo].chunk { hi += 1 }
                if hi - lo > 1 {
                    run(UnsafeMutableBufferPointer(rebasing: e[lo..<hi]), UnsafeMutableBufferPointer(rebasing: scratch[lo..<hi]), base, depth: depth)
                }
                lo = hi
            }
            return
        }
        // The first byte of the digit (from `byte` on) where they differ; counts[b + 1] is how many have `b` there.
        // (The counts are on the heap, so that deep prefixes do not pile up stack.)
        var byte = byte
        var counts = [Int](repeating: 0, count: 257)
        var shift: UInt64 = 0
        while true {
            if byte == 8 { return run(e, scratch, base, depth: depth) }
            shift = UInt64(56 - 8 * byte)
            for b in counts.indices { counts[b] = 0 }
            for k in e.indices { counts[Int(truncatingIfNeeded: (e[k].chunk >> shift) & 0xFF) + 1] += 1 }
            if counts[Int(truncatingIfNeeded: (e[0].chunk >> shift) & 0xFF) + 1] != e.count { break }
            byte += 1
        }
        // counts[b] becomes where bucket b starts, then (once filled) where it ends.
        for b in 1...256 { counts[b] += counts[b - 1] }
        for k in e.indices {
            let b = Int(truncatingIfNeeded: (e[k].chunk >> shift) & 0xFF)
            scratch[counts[b]] = e[k]
            counts[b] += 1
        }
        _ = e.update(fromContentsOf: scratch[0..<e.count])
        var start = 0
        for b in 0..<256 {
            let end = counts[b]
            if end - start > 1 {
                radix(
                    UnsafeMutableBufferPointer(rebasing: e[start..<end]), UnsafeMutableBufferPointer(rebasing: scratch[start..<end]),
                    base, depth: depth, byte: byte + 1)
            }
            start = end
        }
    }

    /// Sorts strings with equal digits at `depth`: those that end within the digit come first, shortest first
    /// (each is a prefix of the longer ones); the others are told apart by the next digit.
    private static func run(
        _ e: UnsafeMutableBufferPointer<SortEntry>, _ scratch: UnsafeMutableBufferPointer<SortEntry>, _ base: UnsafeRawPointer,
        depth: Int
    ) {
        var ended = 0
        for k in e.indices where Int(e[k].length) <= depth + 8 {
            e.swapAt(ended, k)
            ended += 1
        }
        var ends = UnsafeMutableBufferPointer(rebasing: e[0..<ended])
        ends.sort { $0.length < $1.length }
        sort(
            UnsafeMutableBufferPointer(rebasing: e[ended...]), UnsafeMutableBufferPointer(rebasing: scratch[ended...]), base,
            depth: depth + 8)
    }
}

/// Texts that repeat across events (city names, city ids, dates), each kept once as a `String` and numbered,
/// with what the fold has worked out about each. Only valid UTF-8 is interned, so a text's bytes are exactly its
/// `String`'s UTF-8.
struct TextTable {
    private(set) var bytes = ByteTable()
    private(set) var strings: [String] = []
    /// By text: the city (index in `ProjectionFold.cities`) whose id it is, or -1 when not yet looked up.
    var city: [Int32] = []
    /// By text: the text of `Gazetteer.slug(text) ?? "unknown"`, or -1 when not yet worked out.
    var slug: [Int32] = []
    /// By text: `ParsedDate.parse(text)?.start` in microseconds, once worked out.
    var dateStart: [Int64?] = []
    var dateParsed: [Bool] = []

    /// The number of the text `utf8`, interning it; nil when it is not valid UTF-8.
    @inline(__always) mutating func intern(_ utf8: UnsafeRawBufferPointer) -> Int32? {
        let hash = bytes.hash(utf8)
        if let i = bytes.find(utf8, hash: hash) { return i }
        guard let string = JSONScanner.validString(utf8) else { return nil }
        return add(utf8, hash: hash, string)
    }

    mutating func intern(_ string: String) -> Int32 {
        var copy = string
        return copy.withUTF8 { utf8 in
            let utf8 = UnsafeRawBufferPointer(utf8)
            let hash = bytes.hash(utf8)
            return bytes.find(utf8, hash: hash) ?? add(utf8, hash: hash, string)
        }
    }

    private mutating func add(_ utf8: UnsafeRawBufferPointer, hash: UInt64, _ string: String) -> Int32 {
        strings.append(string)
        city.append(-1)
        slug.append(-1)
        dateStart.append(nil)
        dateParsed.append(false)
        return bytes.add(utf8, hash: hash)
    }

    /// The start of the date text `i`, in microseconds, if it is a date.
    @inline(__always) mutating func start(ofDate i: Int32) -> Int64? {
        if !dateParsed[Int(i)] {
            dateStart[Int(i)] = ParsedDate.parse(strings[Int(i)])?.start.microseconds
            dateParsed[Int(i)] = true
        }
        return dateStart[Int(i)]
    }

    subscript(_ i: Int32) -> String { strings[Int(i)] }

    /// The city id of a report that has none: the slug of its city's name (the text `name`), or "unknown".
    mutating func slug(of name: Int32) -> Int32 {
        let known = slug[Int(name)]
        if known >= 0 { return known }
        let text = intern(Gazetteer.slug(self[name]) ?? "unknown")
        slug[Int(name)] = text
        return text
    }
}

/// The stored case indexes of the enumerations the fold counts by (`StoredEnumeration.index`, without the
/// call across modules).
enum CaseIndex {
    static let precisions = Precision.storedCases
    static let statuses = OutcomeStatus.storedCases
    static let verifications = Verification.storedCases
    static let kinds = IncidentKind.storedCases

    /// The index of `value` among its enumeration's stored cases (``StoredEnumeration/index(_:)``).
    @inline(__always) static func of<E: StoredEnumeration>(_ value: E) -> Int { Int(E.index(value)) }
}

/// The raw values of an enumeration's cases (in `allCases` order, which is the stored order), as fixed-width
/// words to compare a raw value with, without touching an array per case.
struct RawCases<E: Sendable>: Sendable {
    /// A raw value of up to 32 bytes, padded with zeros.
    struct Key: Equatable, Sendable {
        var count: Int
        var words: SIMD4<UInt64>
    }

    let values: [E]
    let keys: [Key]

    init(_ cases: [(E, [UInt8])]) {
        values = cases.map(\.0)
        keys = cases.map { $0.1.withUnsafeBytes { RawCases.key($0) } ?? Key(count: -1, words: .zero) }
    }

    /// `bytes` as a key; nil when longer than 32 bytes.
    @inline(__always) static func key(_ bytes: UnsafeRawBufferPointer) -> Key? {
        guard bytes.count <= 32 else { return nil }
        var words = SIMD4<UInt64>.zero
        var i = 0
        while i + 8 <= bytes.count {
            words[i >> 3] = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        var last: UInt64 = 0
        var shift: UInt64 = 0
        while i < bytes.count {
            last |= UInt64(bytes[i]) << shift
            shift += 8
            i += 1
        }
        if shift > 0 { words[(bytes.count - 1) >> 3] = last }
        return Key(count: bytes.count, words: words)
    }

    /// Where `raw` is among the raw values.
    @inline(__always) func index(of raw: UnsafeRawBufferPointer) -> Int? {
        guard let key = RawCases.key(raw) else { return nil }
        return keys.withUnsafeBufferPointer { keys in
            for index in keys.indices where keys[index] == key { return index }
            return nil
        }
    }
}

/// Whether `bytes` are valid UTF-8 (ASCII checked eight bytes at a time).
@inline(__always) func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = bytes.count
    while i + 8 <= n {
        if bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 {
            return JSONScanner.validString(bytes) != nil
        }
        i += 8
    }
    while i < n {
        if bytes[i] >= 0x80 { return JSONScanner.validString(bytes) != nil }
        i += 1
    }
    return true
}

/// One incident's projection while the log is folded: a plain record (no references), so that it is updated in
/// place and copied as bytes. Its id is its number in `ProjectionFold.ids`; its texts are numbers in
/// `ProjectionFold.texts`.
struct FoldIncident {
    var cityId: Int32
    var reportCity: Int32
    /// -1 when the report had no city id.
    var reportCityId: Int32
    var occurredAt: Int32
    var city: Int32
    var reportedAt: Int64
    var version: Int64 = 1
    var firstPosition: UInt64
    var lastPosition: UInt64
    var responseEvents: Int64 = 0
    var outcomeEvents: Int64 = 0
    var killed: Int64 = 0
    var injured: Int64 = 0
    var detained: Int64 = 0
    var reportParticipants: PeopleRange?
    var currentParticipants: PeopleRange?
    var responses = CaseCounts<ResponseKind>()
    var reportKind: IncidentKind
    var currentKind: IncidentKind
    var status: OutcomeStatus = .unknown
    var verification: Verification
    var verificationFromOutcome = false
    var precision: Precision

    init(
        cityId: Int32, reportCity: Int32, reportCityId: Int32, occurredAt: Int32, reportedAt: Int64, position: UInt64,
        participants: PeopleRange?, kind: IncidentKind, verification: Verification, precision: Precision, city: Int32
    ) {
        self.cityId = cityId
        self.reportCity = reportCity
        self.reportCityId = reportCityId
        self.occurredAt = occurredAt
        self.reportedAt = reportedAt
        firstPosition = position
        lastPosition = position
        reportParticipants = participants
        currentParticipants = participants
        reportKind = kind
        currentKind = kind
        self.verification = verification
        self.precision = precision
        self.city = city
    }
}

extension FoldIncident {
    /// The projection as the daemon keeps it (with the reduced report the stored form holds), given its texts.
    func state(id: String, cityId: String, city: String, occurredAt: String, reportCityId: String?) -> IncidentState {
        var state = IncidentState(
            incident: id, cityId: cityId, occurredAt: occurredAt, precision: precision,
            reportedAt: Timestamp(microseconds: reportedAt),
            report: ReportData(
                city: city, cityId: reportCityId, kind: reportKind, location: nil, coordinates: nil,
                description: nil, participants: reportParticipants, targets: nil, tags: []),
            current: ReportData(
                city: city, cityId: reportCityId, kind: currentKind, location: nil, coordinates: nil,
                description: nil, participants: currentParticipants, targets: nil, tags: []),
            verification: verification, position: firstPosition)
        state.status = status
        state.verificationFromOutcome = verificationFromOutcome
        state.version = version
        state.lastPosition = lastPosition
        state.responseEvents = responseEvents
        state.outcomeEvents = outcomeEvents
        state.responses = responses
        state.killed = killed
        state.injured = injured
        state.detained = detained
        return state
    }
}

/// One city's projection while the log is folded: `CityState` with counters instead of dictionaries, and texts
/// as numbers in `ProjectionFold.texts`.
struct FoldCity {
    var base: CityState
    /// The names it was reported under (texts), each once.
    var aliases: [Int32] = []
    var incidents: Int64 = 0
    var byKind = CaseCounts<IncidentKind>()
    var participantsLow: Int64 = 0
    var participantsHigh: Int64 = 0
    var participantsCounted: Int64 = 0
    var responses = CaseCounts<ResponseKind>()
    var killed: Int64 = 0
    var injured: Int64 = 0
    var detained: Int64 = 0
    var outcomes = CaseCounts<OutcomeStatus>()
    var verification = CaseCounts<Verification>()
    var openIncidents: Int64 = 0
    /// The dates of the incidents it counts that come first and last in ``IncidentDate``'s order: a text (-1 for
    /// none yet), its start and the position of its report.
    var firstIncidentAt: Int32 = -1
    var firstStart: Int64 = 0
    var firstDatePosition: UInt64 = 0
    var lastIncidentAt: Int32 = -1
    var lastStart: Int64 = 0
    var lastDatePosition: UInt64 = 0
    var lastPosition: UInt64 = 0

    /// A city before its first incident (as `Projector.newCity` makes it).
    init(_ city: CityState) {
        base = city
    }

    /// Where in `cities` the city whose id is the text `id` is, made on first sight (named `reportedName`, a
    /// text, if the gazetteer does not know it); `index` finds a city by its id.
    @inline(__always) static func find(
        _ id: Int32, reportedName: Int32, texts: inout TextTable, cities: inout [FoldCity], index: inout [String: Int32],
        projector: Projector
    ) -> Int32 {
        let known = texts.city[Int(id)]
        if known >= 0 { return known }
        let cityId = texts[id]
        let c: Int32
        if let existing = index[cityId] {
            c = existing
        } else {
            c = Int32(cities.count)
            cities.append(FoldCity(projector.newCity(id: cityId, reportedName: texts[reportedName])))
            index[cityId] = c
        }
        texts.city[Int(id)] = c
        return c
    }

    /// `CityState.add(_:sign:)`.
    @inline(__always) mutating func add(_ incident: FoldIncident, sign: Int64) {
        outcomes[Int(CaseIndex.of(incident.status))] += sign
        verification[Int(CaseIndex.of(incident.verification))] += sign
        guard incident.status.countsInSums else { return }
        incidents += sign
        byKind[Int(CaseIndex.of(incident.currentKind))] += sign
        participantsLow += sign * (incident.currentParticipants?.low ?? 0)
        participantsHigh += sign * (incident.currentParticipants?.high ?? 0)
        if incident.currentParticipants != nil { participantsCounted += sign }
        responses.add(incident.responses, times: sign)
        killed += sign * incident.killed
        injured += sign * incident.injured
        detained += sign * incident.detained
        if incident.status.isOpen { openIncidents += sign }
    }

    /// The city side of a report (`Projector.apply`): `name` is a text. (Its date is taken once the fold ends,
    /// when it is known whether the incident is counted: see ``ProjectionFold/cityStates()``.)
    @inline(__always) mutating func fold(report name: Int32, state: FoldIncident, position: UInt64) {
        if !aliases.contains(name) { aliases.append(name) }
        add(state, sign: 1)
        lastPosition = position
    }

    /// Whether a counted incident whose date starts at `start`, reported at `position`, would be the city's first or
    /// last (see ``noteIncident(startingAt:position:date:)``), so that its date's text is looked up only then.
    @inline(__always) func takesIncident(startingAt start: Int64, position: UInt64) -> Bool {
        firstIncidentAt < 0 || (start, position) < (firstStart, firstDatePosition) || lastIncidentAt < 0 || start > lastStart
            || (start == lastStart && position < lastDatePosition)
    }

    /// Takes a counted incident whose date starts at `start` (`date`, a text), reported at `position`, as the city's
    /// first or last if it comes before or after those it has in ``IncidentDate``'s order: by start, and between equal
    /// starts, the one reported first, for the first and the last alike.
    @inline(__always) mutating func noteIncident(startingAt start: Int64, position: UInt64, date: Int32) {
        noteFirst(startingAt: start, position: position, date: date)
        noteLast(startingAt: start, position: position, date: date)
    }

    @inline(__always) mutating func noteFirst(startingAt start: Int64, position: UInt64, date: Int32) {
        if firstIncidentAt < 0 || (start, position) < (firstStart, firstDatePosition) {
            firstIncidentAt = date
            firstStart = start
            firstDatePosition = position
        }
    }

    @inline(__always) mutating func noteLast(startingAt start: Int64, position: UInt64, date: Int32) {
        if lastIncidentAt < 0 || start > lastStart || (start == lastStart && position < lastDatePosition) {
            lastIncidentAt = date
            lastStart = start
            lastDatePosition = position
        }
    }

    /// The projection as the daemon keeps it.
    func state(_ texts: TextTable) -> CityState {
        var city = base
        city.aliasesSeen = Set(aliases.map { texts[$0] })
        city.incidents = incidents
        city.incidentsByKind = byKind
        city.participantsLow = participantsLow
        city.participantsHigh = participantsHigh
        city.participantsCounted = participantsCounted
        city.responses = responses
        city.killed = killed
        city.injured = injured
        city.detained = detained
        city.outcomes = outcomes
        city.verification = verification
        city.openIncidents = openIncidents
        city.firstIncidentAt = firstIncidentAt >= 0 ? texts[firstIncidentAt] : nil
        city.lastIncidentAt = lastIncidentAt >= 0 ? texts[lastIncidentAt] : nil
        city.lastPosition = lastPosition
        return city
    }
}

/// The projections of the part of the log folded so far.
struct ProjectionFold {
    let projector: Projector
    /// The ids of the incidents folded in this chunk: id number `i` is `incidents[i]`'s.
    var ids = ByteTable()
    var incidents: [FoldIncident] = []
    var texts = TextTable()
    var cityIndex: [String: Int32] = [:]
    var cities: [FoldCity] = []
    /// Reads an incident folded by an earlier chunk (already written), or nil.
    var stored: (UnsafeRawBufferPointer) throws -> IncidentState? = { _ in nil }
    /// The last day ``timestamp(_:)`` worked out: its `YYYY-MM-DD` bytes and its start in microseconds.
    private var lastDay: (UInt64, UInt16, Int64)?

    init(projector: Projector) {
        self.projector = projector
    }

    /// `ParsedDate.parse(utf8: raw)?.start` in microseconds: fast for the canonical recorded time
    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, whose day's start is worked out once per day.
    @inline(__always) mutating func timestamp(_ raw: UnsafeRawBufferPointer) -> Int64? {
        guard raw.count == 27, raw[10] == UInt8(ascii: "T"), raw[13] == UInt8(ascii: ":"), raw[16] == UInt8(ascii: ":"),
            raw[19] == UInt8(ascii: "."), raw[26] == UInt8(ascii: "Z")
        else { return ParsedDate.parse(utf8: raw)?.start.microseconds }
        let day = raw.loadUnaligned(as: UInt64.self)
        let day2 = raw.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
        let dayStart: Int64
        if let last = lastDay, last.0 == day, last.1 == day2 {
            dayStart = last.2
        } else {
            guard let start = ParsedDate.parse(utf8: UnsafeRawBufferPointer(rebasing: raw[0..<10]))?.start.microseconds else {
                return nil  // not a valid day, so not a valid time either
            }
            lastDay = (day, day2, start)
            dayStart = start
        }
        func digits(_ at: Int, _ count: Int) -> Int64? {
            var value: Int64 = 0
            for k in at..<at + count {
                let digit = raw[k] &- UInt8(ascii: "0")
                guard digit <= 9 else { return nil }
                value = value * 10 + Int64(digit)
            }
            return value
        }
        guard let hour = digits(11, 2), hour < 24, let minute = digits(14, 2), minute < 60, let second = digits(17, 2),
            second < 60, let micros = digits(20, 6)
        else { return nil }
        return dayStart + ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros
    }

    @inline(__always) private mutating func city(_ id: Int32, reportedName: Int32) -> Int32 {
        FoldCity.find(id, reportedName: reportedName, texts: &texts, cities: &cities, index: &cityIndex, projector: projector)
    }

    @inline(__always) private mutating func slug(of name: Int32) -> Int32 { texts.slug(of: name) }

    /// Where the incident `id` is in `incidents`: folded in this chunk, or read back from what an earlier chunk
    /// wrote; nil for an incident that was never reported.
    @inline(__always) private mutating func incident(_ id: UnsafeRawBufferPointer) throws -> Int? {
        let hash = ids.hash(id)
        if let i = ids.find(id, hash: hash) { return Int(i) }
        guard isValidUTF8(id), let state = try stored(id) else { return nil }
        let reportCity = texts.intern(state.report.city)
        let cityId = texts.intern(state.cityId)
        var incident = FoldIncident(
            cityId: cityId, reportCity: reportCity, reportCityId: state.report.cityId.map { texts.intern($0) } ?? -1,
            occurredAt: texts.intern(state.occurredAt), reportedAt: state.reportedAt.microseconds,
            position: state.firstPosition, participants: state.report.participants, kind: state.report.kind,
            verification: state.verification, precision: state.precision, city: city(cityId, reportedName: reportCity))
        incident.version = state.version
        incident.lastPosition = state.lastPosition
        incident.responseEvents = state.responseEvents
        incident.outcomeEvents = state.outcomeEvents
        incident.killed = state.killed
        incident.injured = state.injured
        incident.detained = state.detained
        incident.currentParticipants = state.current.participants
        incident.responses = state.responses
        incident.currentKind = state.current.kind
        incident.status = state.status
        incident.verificationFromOutcome = state.verificationFromOutcome
        incidents.append(incident)
        return Int(ids.add(id, hash: hash))
    }

    /// Folds a report. `id` must be valid UTF-8; `occurredAt`, `name` and `reportCityId` (-1 for none) are texts.
    mutating func report(
        incident id: UnsafeRawBufferPointer, position: UInt64, occurredAt: Int32, precision: Precision, recordedAt: Int64,
        verificationMask: UInt8, city name: Int32, cityId reportCityId: Int32, kind: IncidentKind, participants: PeopleRange?
    ) {
        let cityId = reportCityId >= 0 ? reportCityId : slug(of: name)
        let c = city(cityId, reportedName: name)
        let state = FoldIncident(
            cityId: cityId, reportCity: name, reportCityId: reportCityId, occurredAt: occurredAt, reportedAt: recordedAt,
            position: position, participants: participants, kind: kind,
            verification: IncidentState.verification(seenMask: verificationMask), precision: precision, city: c)
        let hash = ids.hash(id)
        if let existing = ids.find(id, hash: hash) {
            incidents[Int(existing)] = state
        } else {
            _ = ids.add(id, hash: hash)
            incidents.append(state)
        }
        cities[Int(c)].fold(report: name, state: state, position: position)
    }

    /// The cities folded so far, each with the first and last dates of the incidents it counts now (a retraction
    /// folded after a report takes its date away, a reinstatement gives it back), taken from every incident once
    /// the events are folded.
    mutating func cityStates() -> [CityState] {
        var dated = cities
        for i in incidents.indices where incidents[i].status.countsInSums {
            let x = incidents[i]
            guard let start = texts.start(ofDate: x.occurredAt) else { continue }
            dated[Int(x.city)].noteIncident(startingAt: start, position: x.firstPosition, date: x.occurredAt)
        }
        return dated.map { $0.state(texts) }
    }

    /// Folds a response; `kinds` counts the response kinds it lists, by their index in `ResponseKind.storedCases`.
    mutating func response(
        incident id: UnsafeRawBufferPointer, position: UInt64, version: Int64, kinds: CaseCounts<ResponseKind>, killed: Int64?,
        injured: Int64?, detained: Int64?
    ) throws {
        guard let i = try incident(id) else { return }
        try follows(i, position)
        let c = Int(incidents[i].city)
        cities[c].add(incidents[i], sign: -1)
        incidents[i].responseEvents += 1
        incidents[i].responses.add(kinds, times: 1)
        incidents[i].killed += killed ?? 0
        incidents[i].injured += injured ?? 0
        incidents[i].detained += detained ?? 0
        finish(i, c, version: version, position: position)
    }

    mutating func outcome(
        incident id: UnsafeRawBufferPointer, position: UInt64, version: Int64, status: OutcomeStatus, verification: Verification?,
        corrections: [String: JSONValue]?
    ) throws {
        guard let i = try incident(id) else { return }
        try follows(i, position)
        let c = Int(incidents[i].city)
        cities[c].add(incidents[i], sign: -1)
        incidents[i].outcomeEvents += 1
        incidents[i].status = status
        if let verification {
            incidents[i].verification = verification
            incidents[i].verificationFromOutcome = true
        }
        if let corrections {
            // What ReportData.applying, which the projector corrects `current` with, does to the counted fields.
            var kind = incidents[i].currentKind
            var participants = incidents[i].currentParticipants
            ReportData.countedEffect(of: corrections).apply(kind: &kind, participants: &participants)
            incidents[i].currentKind = kind
            incidents[i].currentParticipants = participants
        }
        finish(i, c, version: version, position: position)
    }

    /// Refuses a response or outcome at `position` that is not after every event incident `i` has: every appended
    /// event is (the log gives out positions in order, and an incident's report comes first), so one that is not
    /// names a position it was never stored at, and folded it would make an incident that ends before it starts,
    /// whose stored form does not read back. (`foldEvents` reads it as the stored event at its key that is
    /// damaged.)
    @inline(__always) private func follows(_ i: Int, _ position: UInt64) throws {
        let last = incidents[i].lastPosition
        guard position > last else {
            throw LogError(.corrupt, "it names position \(position), not after its incident's event at position \(last)")
        }
    }

    @inline(__always) private mutating func finish(_ i: Int, _ c: Int, version: Int64, position: UInt64) {
        incidents[i].version = version
        incidents[i].lastPosition = position
        cities[c].add(incidents[i], sign: 1)
        cities[c].lastPosition = position
    }

    /// Folds one event as decoded by `RecordedEvent(json:)`.
    mutating func apply(_ event: RecordedEvent) throws {
        var id = event.incident
        try id.withUTF8 { utf8 in
            let id = UnsafeRawBufferPointer(utf8)
            switch event.data {
            case .reported(let report):
                var mask: UInt8 = 0
                for source in event.sources { mask |= StoredEventReader.mask(source.verification) }
                self.report(
                    incident: id, position: event.position, occurredAt: texts.intern(event.occurredAt), precision: event.precision,
                    recordedAt: event.recordedAt.microseconds, verificationMask: mask, city: texts.intern(report.city),
                    cityId: report.cityId.map { texts.intern($0) } ?? -1, kind: report.kind, participants: report.participants)
            case .responded(let response):
                var kinds = CaseCounts<ResponseKind>()
                for kind in response.responses { kinds[Int(ResponseKind.index(kind))] += 1 }
                try self.response(
                    incident: id, position: event.position, version: event.version, kinds: kinds, killed: response.killed,
                    injured: response.injured, detained: response.detained)
            case .outcome(let outcome):
                try self.outcome(
                    incident: id, position: event.position, version: event.version, status: outcome.status,
                    verification: outcome.verification, corrections: outcome.corrections)
            }
        }
    }

    // MARK: Writing

    /// Makes room for the incidents of a chunk of `events` events (at most one each), so that the tables do not
    /// grow (and copy themselves) while the chunk is folded.
    mutating func reserveCapacity(events: Int) {
        incidents.reserveCapacity(events)
        ids.reserveCapacity(events)
    }

    /// Incident `i`'s projection as the daemon keeps it (with the reduced report the stored form holds).
    func state(_ i: Int32) -> IncidentState {
        let x = incidents[Int(i)]
        return x.state(
            id: ids.withBytes(i) { String(decoding: $0, as: UTF8.self) }, cityId: texts[x.cityId], city: texts[x.reportCity],
            occurredAt: texts[x.occurredAt], reportCityId: x.reportCityId >= 0 ? texts[x.reportCityId] : nil)
    }

    /// Incident `i` in the stored form, written straight from its record; nil if that went wrong.
    func encoded(_ i: Int32) -> [UInt8]? {
        let x = incidents[Int(i)]
        let cityId = texts.bytes.withBytes(x.cityId) { Array($0) }
        let city = texts.bytes.withBytes(x.reportCity) { Array($0) }
        let occurredAt = texts.bytes.withBytes(x.occurredAt) { Array($0) }
        let reportCityId = x.reportCityId >= 0 ? texts.bytes.withBytes(x.reportCityId) { Array($0) } : nil
        return cityId.withUnsafeBytes { cityId in
            city.withUnsafeBytes { city in
                occurredAt.withUnsafeBytes { occurredAt in
                    (reportCityId ?? []).withUnsafeBytes { raw in
                        let reportCityId = reportCityId == nil ? nil : raw
                        let count = StoredForm.count(x, cityId: cityId, city: city, occurredAt: occurredAt, reportCityId: reportCityId)
                        var bytes = [UInt8](repeating: 0, count: count)
                        let complete = bytes.withUnsafeMutableBytes { buffer in
                            var out = StoredForm(buffer)
                            out.write(x, cityId: cityId, city: city, occurredAt: occurredAt, reportCityId: reportCityId)
                            return out.complete
                        }
                        return complete ? bytes : nil
                    }
                }
            }
        }
    }

    /// Whether ``StoredForm`` writes exactly what `IncidentState.encode(into:)` does, tried on an incident
    /// with every optional part present (and without them). When it does not (the stored form changed), the
    /// rebuild writes through `IncidentState` instead.
    static func directEncodingHolds(projector: Projector) -> Bool {
        let kinds = IncidentKind.allCases
        let full = IncidentState(
            incident: "kyiv-2022-03-01-é-1", cityId: "kyiv", occurredAt: "2022-03-01T10:00Z", precision: .minute,
            reportedAt: Timestamp(microseconds: 1_646_128_800_000_001),
            report: ReportData(
                city: "Київ", cityId: "kyiv", kind: kinds[0], location: nil, coordinates: nil, description: nil,
                participants: PeopleRange(low: 10, high: 20), targets: nil, tags: []),
            current: ReportData(
                city: "Київ", cityId: "kyiv", kind: kinds[kinds.count - 1], location: nil, coordinates: nil, description: nil,
                participants: PeopleRange(low: 30, high: 40), targets: nil, tags: []),
            verification: .disputed, position: 7)
        var state = full
        state.status = OutcomeStatus.allCases[OutcomeStatus.allCases.count - 1]
        state.verificationFromOutcome = true
        state.version = 4
        state.lastPosition = 90
        state.responseEvents = 2
        state.outcomeEvents = 1
        state.responses[1] = 2
        state.responses[ResponseKind.storedCases.count - 1] = 1
        state.killed = 1
        state.injured = 2
        state.detained = 3
        var bare = IncidentState(
            incident: "x", cityId: "unknown", occurredAt: "2022-03", precision: .month, reportedAt: Timestamp(microseconds: 0),
            report: ReportData(
                city: "X", cityId: nil, kind: kinds[0], location: nil, coordinates: nil, description: nil, participants: nil,
                targets: nil, tags: []),
            current: ReportData(
                city: "X", cityId: nil, kind: kinds[0], location: nil, coordinates: nil, description: nil, participants: nil,
                targets: nil, tags: []),
            verification: .unverified, position: 1)
        bare.version = 1
        for sample in [state, bare] {
            var fold = ProjectionFold(projector: projector)
            fold.stored = { _ in sample }
            var id = sample.incident
            guard let i = (try? id.withUTF8 { try fold.incident(UnsafeRawBufferPointer($0)) }) ?? nil,
                let direct = fold.encoded(Int32(i)), direct == sample.encoded(), fold.state(Int32(i)).encoded() == direct
            else { return false }
        }
        return true
    }
}

/// Writes an incident record in the stored form of `IncidentState.encode(into:)` (a version byte, the
/// enumerations as case indexes, ``StoredInteger``s, then texts after their lengths) into a buffer of exactly
/// ``count(_:cityId:city:occurredAt:reportCityId:)`` bytes, never past its end. Without a buffer it only
/// counts, which is how ``count(_:cityId:city:occurredAt:reportCityId:)`` works: one description of the form.
struct StoredForm {
    /// The version byte `IncidentState.encode(into:)` starts with.
    static let format: UInt8 = IncidentState.storedFormat

    let out: UnsafeMutableRawBufferPointer?
    var offset = 0
    var overflowed = false

    init(_ out: UnsafeMutableRawBufferPointer?) {
        self.out = out
    }

    /// Whether exactly the whole buffer was written.
    var complete: Bool { !overflowed && offset == out?.count }

    static func count(
        _ x: FoldIncident, cityId: UnsafeRawBufferPointer, city: UnsafeRawBufferPointer, occurredAt: UnsafeRawBufferPointer,
        reportCityId: UnsafeRawBufferPointer?
    ) -> Int {
        var counter = StoredForm(nil)
        counter.write(x, cityId: cityId, city: city, occurredAt: occurredAt, reportCityId: reportCityId)
        return counter.offset
    }

    @inline(__always) mutating func byte(_ value: UInt8) {
        if let out {
            guard offset < out.count else { return overflowed = true }
            out.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
        }
        offset += 1
    }

    @inline(__always) mutating func int(_ value: Int64) {
        guard let out else { return offset += StoredInteger.size(value) }
        guard offset + StoredInteger.size(value) <= out.count else { return overflowed = true }
        StoredInteger.write(value, to: out, at: &offset)
    }

    @inline(__always) mutating func text(_ bytes: UnsafeRawBufferPointer) {
        int(Int64(bytes.count))
        if let out {
            guard offset + bytes.count <= out.count else { return overflowed = true }
            if let source = bytes.baseAddress, let target = out.baseAddress {
                (target + offset).copyMemory(from: source, byteCount: bytes.count)
            }
        }
        offset += bytes.count
    }

    /// Writes incident `x`, of city `cityId`, reported in `city` (its report's city id `reportCityId`, when it gave
    /// one) on `occurredAt`.
    mutating func write(
        _ x: FoldIncident, cityId: UnsafeRawBufferPointer, city: UnsafeRawBufferPointer, occurredAt: UnsafeRawBufferPointer,
        reportCityId: UnsafeRawBufferPointer?
    ) {
        // The report's city id is written only when it is not the incident's (a flag says which).
        let reportCityIsIncidents = reportCityId.map { ByteTable.equal($0, cityId) } ?? false
        byte(StoredForm.format)
        byte(UInt8(truncatingIfNeeded: CaseIndex.of(x.precision)))
        byte(UInt8(truncatingIfNeeded: CaseIndex.of(x.status)))
        byte(UInt8(truncatingIfNeeded: CaseIndex.of(x.verification)))
        byte(UInt8(truncatingIfNeeded: CaseIndex.of(x.reportKind)))
        byte(UInt8(truncatingIfNeeded: CaseIndex.of(x.currentKind)))
        byte((x.verificationFromOutcome ? 1 : 0) | (x.reportParticipants != nil ? 2 : 0) | (x.currentParticipants != nil ? 4 : 0)
            | (reportCityId != nil ? 8 : 0) | (reportCityIsIncidents ? 16 : 0))
        int(x.version)
        int(Int64(bitPattern: x.firstPosition))
        int(Int64(bitPattern: x.lastPosition &- x.firstPosition))
        int(x.responseEvents)
        int(x.outcomeEvents)
        int(x.killed)
        int(x.injured)
        int(x.detained)
        int(x.reportedAt)
        if let range = x.reportParticipants {
            int(range.low)
            int(range.high)
        }
        if let range = x.currentParticipants {
            int(range.low)
            int(range.high)
        }
        byte(UInt8(truncatingIfNeeded: x.responses.nonZero))
        x.responses.forEachNonZero { index, count in
            byte(UInt8(truncatingIfNeeded: index))
            int(count)
        }
        text(cityId)
        text(city)
        text(occurredAt)
        if let reportCityId, !reportCityIsIncidents { text(reportCityId) }
    }
}

/// Reads the fields the projections need straight from a stored event's canonical bytes.
enum StoredEventReader {
    static func mask(_ v: Verification) -> UInt8 {
        switch v {
        case .debunked: return 1
        case .disputed: return 2
        case .verified: return 4
        case .unverified: return 0
        }
    }

    @inline(__always) static func equals(_ key: UnsafeRawBufferPointer, _ name: StaticString) -> Bool {
        guard key.count == name.utf8CodeUnitCount else { return false }
        let start = name.utf8Start
        for i in 0..<key.count where key[i] != start[i] { return false }
        return true
    }

    /// An integer written plainly (digits, perhaps a minus sign; no fraction or exponent, no leading zero), as
    /// `JSONScanner.integer()` reads it; nil for anything else (the event is then read the slow way).
    @inline(__always) static func integer(_ s: inout JSONScanner) -> Int64? {
        let bytes = s.bytes
        let n = bytes.count
        var i = s.index
        let negative = i < n && bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        let first = i
        var value: Int64 = 0
        while i < n {
            let digit = bytes[i] &- UInt8(ascii: "0")
            if digit > 9 { break }
            value = value &* 10 &+ Int64(digit)
            i += 1
        }
        // Up to 18 digits always fit; longer ones go the slow way.
        guard i > first, i - first <= 18, !(i - first > 1 && bytes[first] == UInt8(ascii: "0")) else { return nil }
        if i < n, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") { return nil }
        s.index = i
        return negative ? -value : value
    }

    /// Moves past a string value without reading it, looking for its closing quote eight bytes at a time; false
    /// when there is no string here.
    @inline(__always) static func skipString(_ s: inout JSONScanner) -> Bool {
        let bytes = s.bytes
        let n = bytes.count
        guard s.index < n, bytes[s.index] == UInt8(ascii: "\"") else { return false }
        let first = s.index + 1
        var i = first
        while true {
            // The next quote: the lowest byte of the word that is 0x22 (the zero-byte test is exact for the
            // lowest one).
            var found = false
            // Sixteen bytes at a time, then eight.
            while i + 16 <= n {
                let low = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ 0x2222_2222_2222_2222
                let high = bytes.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self) ^ 0x2222_2222_2222_2222
                let zeroLow = (low &- 0x0101_0101_0101_0101) & ~low & 0x8080_8080_8080_8080
                let zeroHigh = (high &- 0x0101_0101_0101_0101) & ~high & 0x8080_8080_8080_8080
                if zeroLow | zeroHigh != 0 {
                    i += zeroLow != 0 ? zeroLow.trailingZeroBitCount >> 3 : 8 + zeroHigh.trailingZeroBitCount >> 3
                    found = true
                    break
                }
                i += 16
            }
            while !found, i + 8 <= n {
                let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ 0x2222_2222_2222_2222
                let zero = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
                if zero != 0 {
                    i += zero.trailingZeroBitCount >> 3
                    found = true
                    break
                }
                i += 8
            }
            if !found {
                while i < n, bytes[i] != UInt8(ascii: "\"") { i += 1 }
                guard i < n else { return false }
            }
            // The quote is escaped when an odd number of backslashes comes before it.
            var k = i - 1
            while k >= first, bytes[k] == UInt8(ascii: "\\") { k -= 1 }
            if (i - 1 - k) & 1 == 0 {
                s.index = i + 1
                return true
            }
            i += 1
        }
    }

    /// Consumes `byte` if it is next (no whitespace skipped: the stored form is canonical).
    @inline(__always) static func next(_ s: inout JSONScanner, _ byte: UInt8) -> Bool {
        guard s.index < s.bytes.count, s.bytes[s.index] == byte else { return false }
        s.index += 1
        return true
    }

    /// Moves past one value: strings with ``skipString(_:)``, objects and arrays by following their structure
    /// (their strings again with ``skipString(_:)``), anything else with `JSONScanner.skipValue()`.
    @inline(__always) static func skipValue(_ s: inout JSONScanner) -> Bool {
        let bytes = s.bytes
        let n = bytes.count
        guard s.index < n else { return false }
        switch bytes[s.index] {
        case UInt8(ascii: "\""):
            return skipString(&s)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while s.index < n {
                switch bytes[s.index] {
                case UInt8(ascii: "\""):
                    guard skipString(&s) else { return false }
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                    s.index += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    s.index += 1
                    if depth == 0 { return true }
                default:
                    s.index += 1
                }
            }
            return false
        default:
            return s.skipValue() != nil
        }
    }

    /// The type and version of a canonical event, read from its end: `…,"type":"T","version":N}`. (The forward
    /// read checks the `,"type":` before it.)
    static func tail(_ bytes: UnsafeRawBufferPointer) -> (type: EventType, version: Int64)? {
        var i = bytes.count - 1
        guard i > 40, bytes[i] == UInt8(ascii: "}") else { return nil }
        i -= 1
        var version: Int64 = 0
        var scale: Int64 = 1
        while i > 0, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") {
            guard scale <= 100_000_000_000_000_000 else { return nil }
            version += Int64(bytes[i] - UInt8(ascii: "0")) * scale
            scale *= 10
            i -= 1
        }
        // `","version":` ends at i.
        let suffix = "\",\"version\":" as StaticString
        let n = suffix.utf8CodeUnitCount
        guard scale > 1, i + 1 >= n + 1, JSONScanner.matches(bytes, at: i + 1 - n, suffix) else { return nil }
        let end = i + 1 - n  // where the type's closing quote is
        var start = end - 1
        while start > 0, bytes[start] != UInt8(ascii: "\"") { start -= 1 }
        guard start > 0, let index = matchIndex(UnsafeRawBufferPointer(rebasing: bytes[start + 1..<end]), eventTypes) else {
            return nil
        }
        return (eventTypes.values[index], version)
    }

    static let eventTypes = cases(EventType.self)

    /// Where `raw` is among `cases`' raw values, compared as bytes.
    @inline(__always) static func matchIndex<E: Sendable>(_ raw: UnsafeRawBufferPointer, _ cases: RawCases<E>) -> Int? {
        cases.index(of: raw)
    }

    /// One of `E`'s raw values, compared as bytes.
    @inline(__always) static func match<E: Sendable>(_ raw: UnsafeRawBufferPointer, _ cases: RawCases<E>) -> E? {
        cases.index(of: raw).map { cases.values[$0] }
    }

    static func cases<E: RawRepresentable & CaseIterable & Sendable>(_: E.Type) -> RawCases<E> where E.RawValue == String {
        RawCases(E.allCases.map { ($0, Array($0.rawValue.utf8)) })
    }

    static let precisions = cases(Precision.self)
    static let kinds = cases(IncidentKind.self)
    static let responseKinds = cases(ResponseKind.self)
    static let statuses = cases(OutcomeStatus.self)
    static let verifications = cases(Verification.self)

    /// What ``parse(_:)`` reads of a report's data, its texts still bytes of the stored event.
    struct ReportFields {
        var city: UnsafeRawBufferPointer
        var cityId: UnsafeRawBufferPointer?
        var kind: IncidentKind
        var participants: PeopleRange?
    }

    /// What a response's data holds for the projections; `kinds` counts the kinds by their stored index.
    struct ResponseFields {
        var kinds: CaseCounts<ResponseKind>
        var killed: Int64?
        var injured: Int64?
        var detained: Int64?
    }

    /// What an outcome's data holds for the projections.
    struct OutcomeFields {
        var status: OutcomeStatus
        var verification: Verification?
        var corrections: [String: JSONValue]?
    }

    /// One stored event as ``parse(_:)`` reads it: what the projections need, its texts still bytes of the
    /// stored event (valid as long as those are). Reading needs no fold state, so blocks of events can be read
    /// on another thread while the fold goes on (see `EventLog.foldEvents`).
    struct ParsedEvent {
        enum Data {
            case report(ReportFields)
            case response(ResponseFields)
            case outcome(OutcomeFields)
        }

        var data: Data
        var version: Int64
        var position: UInt64
        /// The event's id, as it stands between its quotes (an id with an escape is not read this way).
        var eventId: UnsafeRawBufferPointer
        var incident: UnsafeRawBufferPointer
        var precision: Precision
        /// The event's `occurredAt` and `recordedAt`, as they stand (a replay that stops at a time reads them).
        var occurredAt: UnsafeRawBufferPointer
        var recordedAt: UnsafeRawBufferPointer
        /// A report's sources' verifications (see ``mask(_:)``).
        var sourcesMask: UInt8
    }

    /// Reads the event in `bytes` (canonical JSON); nil when it is not in the expected form.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> ParsedEvent? {
        guard let (type, version) = tail(bytes) else { return nil }
        var s = JSONScanner(bytes)
        // Canonical order: data first, then the envelope.
        guard s.literal("{\"data\":") else { return nil }
        let data: ParsedEvent.Data
        switch type {
        case .incidentReported:
            guard let report = reportFields(&s) else { return nil }
            data = .report(report)
        case .responseObserved:
            guard let response = responseFields(&s) else { return nil }
            data = .response(response)
        case .outcomeUpdated:
            guard let outcome = outcomeFields(&s) else { return nil }
            data = .outcome(outcome)
        }
        let isReport = type == .incidentReported
        // The envelope, member by member in canonical order. An incident id longer than any valid one (128 bytes)
        // is damage: the general path names it.
        guard s.literal(",\"eventId\":"), let eventId = s.rawString(), s.literal(",\"incident\":"), let incident = s.rawString(),
            incident.count <= 128, isValidUTF8(incident), s.literal(",\"occurredAt\":"), let occurredAt = s.rawString(),
            s.literal(",\"position\":"), let position = integer(&s), position > 0, s.literal(",\"precision\":"),
            let rawPrecision = s.rawString(), let precision = match(rawPrecision, precisions), s.literal(",\"prevHash\":"),
            skipString(&s), s.literal(",\"recordedAt\":"), let rawRecordedAt = s.rawString(),
            s.literal(",\"recordedBy\":"), skipValue(&s), s.literal(",\"schema\":"), integer(&s) != nil
        else { return nil }
        var mask: UInt8 = 0
        if s.literal(",\"sources\":") {
            if isReport {
                guard let m = sourcesMask(&s) else { return nil }
                mask = m
            } else {
                guard skipValue(&s) else { return nil }
            }
        }
        // The type and version were read from the end: check they are all that is left.
        guard s.literal(",\"type\":"), skipString(&s), s.literal(",\"version\":"), integer(&s) == version,
            s.literal("}"), s.index == bytes.count
        else { return nil }
        return ParsedEvent(
            data: data, version: version, position: UInt64(position), eventId: eventId, incident: incident, precision: precision,
            occurredAt: occurredAt, recordedAt: rawRecordedAt, sourcesMask: mask)
    }

    /// Folds an event ``parse(_:)`` read into `fold`; false when one of its texts is not valid UTF-8 or its
    /// recorded time is not a time, and nothing was folded (texts may have been interned).
    static func apply(_ event: ParsedEvent, to fold: inout ProjectionFold) throws -> Bool {
        switch event.data {
        case .report(let report):
            guard let city = fold.texts.intern(report.city) else { return false }
            var cityId: Int32 = -1
            if let raw = report.cityId {
                guard let id = fold.texts.intern(raw) else { return false }
                cityId = id
            }
            guard let recordedAt = fold.timestamp(event.recordedAt), let date = fold.texts.intern(event.occurredAt)
            else { return false }
            fold.report(
                incident: event.incident, position: event.position, occurredAt: date, precision: event.precision,
                recordedAt: recordedAt, verificationMask: event.sourcesMask, city: city, cityId: cityId,
                kind: report.kind, participants: report.participants)
        case .response(let response):
            try fold.response(
                incident: event.incident, position: event.position, version: event.version, kinds: response.kinds,
                killed: response.killed, injured: response.injured, detained: response.detained)
        case .outcome(let outcome):
            try fold.outcome(
                incident: event.incident, position: event.position, version: event.version, status: outcome.status,
                verification: outcome.verification, corrections: outcome.corrections)
        }
        return true
    }

    /// Whether the canonical event in `bytes` says it is at `position` and follows the event whose hash is
    /// `previous` (its `prevHash`), read from the envelope in canonical member order without reading the rest;
    /// nil when the bytes are not in that form (the caller then reads them whole, and a damaged event fails
    /// there). `verify` checks every event's chain this way.
    static func envelopeMatches(_ bytes: UnsafeRawBufferPointer, position: UInt64, previous: [UInt8]) -> Bool? {
        guard let (stored, hex) = envelope(bytes), hex.count == 2 * previous.count else { return nil }
        guard stored >= 0, UInt64(stored) == position else { return false }
        let digits: StaticString = "0123456789abcdef"
        for (i, byte) in previous.enumerated()
        where hex[2 * i] != digits.utf8Start[Int(byte >> 4)] || hex[2 * i + 1] != digits.utf8Start[Int(byte & 0xF)] {
            return false
        }
        return true
    }

    /// ``envelopeMatches(_:position:previous:)``, and for bytes not in canonical member order, the event read
    /// whole: whether it says it is at `position` and follows the event whose hash is `previous`.
    static func envelopeMatchesInAnyForm(_ bytes: UnsafeRawBufferPointer, position: UInt64, previous: [UInt8]) -> Bool {
        envelopeMatches(bytes, position: position, previous: previous)
            ?? (try? JSONReader().read(bytes)).map {
                $0["position"]?.intValue == Int64(position) && $0["prevHash"]?.stringValue == ChainHash.hex(previous)
            } ?? false
    }

    /// The hash the canonical event in `bytes` names as its `prevHash`, read from the envelope in place, or from
    /// the event read whole when it is in another form; nil when it names none.
    static func statedPreviousHash(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        if let (_, hex) = envelope(bytes) { return ChainHash.bytes(hexDigits: hex) }
        return ((try? JSONReader().read(bytes))?["prevHash"]?.stringValue).flatMap(ChainHash.bytes(hex:))
    }

    /// The `position` and the text of the `prevHash` of the canonical event in `bytes`, read in canonical member
    /// order without reading the rest; nil when the bytes are not in that form.
    private static func envelope(_ bytes: UnsafeRawBufferPointer) -> (position: Int64, prevHash: UnsafeRawBufferPointer)? {
        var s = JSONScanner(bytes)
        guard s.literal("{\"data\":"), skipValue(&s), s.literal(",\"eventId\":"), skipString(&s),
            s.literal(",\"incident\":"), skipString(&s), s.literal(",\"occurredAt\":"), skipString(&s),
            s.literal(",\"position\":"), let position = integer(&s), s.literal(",\"precision\":"), skipString(&s),
            s.literal(",\"prevHash\":"), let hex = s.rawString()
        else { return nil }
        return (position, hex)
    }

    static func sourcesMask(_ s: inout JSONScanner) -> UInt8? {
        guard next(&s, UInt8(ascii: "[")) else { return nil }
        var mask: UInt8 = 0
        if next(&s, UInt8(ascii: "]")) { return 0 }
        repeat {
            guard next(&s, UInt8(ascii: "{")) else { return nil }
            var verification: Verification = .unverified
            repeat {
                guard let key = s.key() else { return nil }
                if equals(key, "verification") {
                    guard let raw = s.rawString(), let v = match(raw, verifications) else { return nil }
                    verification = v
                } else {
                    guard skipValue(&s) else { return nil }
                }
            } while next(&s, UInt8(ascii: ","))
            guard next(&s, UInt8(ascii: "}")) else { return nil }
            mask |= Self.mask(verification)
        } while next(&s, UInt8(ascii: ","))
        guard next(&s, UInt8(ascii: "]")) else { return nil }
        return mask
    }

    static func reportFields(_ s: inout JSONScanner) -> ReportFields? {
        guard next(&s, UInt8(ascii: "{")) else { return nil }
        var city: UnsafeRawBufferPointer?
        var cityId: UnsafeRawBufferPointer?
        var kind: IncidentKind?
        var participants: PeopleRange?
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "city") {
                guard let raw = s.rawString() else { return nil }
                city = raw
            } else if equals(key, "cityId") {
                guard let raw = s.rawString() else { return nil }
                cityId = raw
            } else if equals(key, "kind") {
                guard let raw = s.rawString(), let k = match(raw, kinds) else { return nil }
                kind = k
            } else if equals(key, "participants") {
                // Stored canonically: {"high":…,"low":…}.
                // Counts outside the domain's limits (a damaged event) go to the general path, which names them.
                guard s.literal("{\"high\":"), let high = integer(&s), s.literal(",\"low\":"), let low = integer(&s),
                    s.literal("}"), Limits.people.contains(low), Limits.people.contains(high), low <= high
                else { return nil }
                participants = PeopleRange(low: low, high: high)
            } else {
                guard skipValue(&s) else { return nil }
            }
        } while next(&s, UInt8(ascii: ","))
        guard next(&s, UInt8(ascii: "}")), let city, let kind else { return nil }
        return ReportFields(city: city, cityId: cityId, kind: kind, participants: participants)
    }

    static func responseFields(_ s: inout JSONScanner) -> ResponseFields? {
        guard next(&s, UInt8(ascii: "{")) else { return nil }
        var kinds: CaseCounts<ResponseKind>?
        var killed: Int64?
        var injured: Int64?
        var detained: Int64?
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "responses") {
                guard next(&s, UInt8(ascii: "[")) else { return nil }
                var list = CaseCounts<ResponseKind>()
                if !next(&s, UInt8(ascii: "]")) {
                    repeat {
                        // `responseKinds` is in `allCases` order, which is the stored order.
                        guard let raw = s.rawString(), let index = matchIndex(raw, responseKinds) else { return nil }
                        list[index] += 1
                    } while next(&s, UInt8(ascii: ","))
                    guard next(&s, UInt8(ascii: "]")) else { return nil }
                }
                kinds = list
            } else if equals(key, "killed") {
                guard let n = integer(&s), Limits.people.contains(n) else { return nil }
                killed = n
            } else if equals(key, "injured") {
                guard let n = integer(&s), Limits.people.contains(n) else { return nil }
                injured = n
            } else if equals(key, "detained") {
                guard let n = integer(&s), Limits.people.contains(n) else { return nil }
                detained = n
            } else {
                guard skipValue(&s) else { return nil }
            }
        } while next(&s, UInt8(ascii: ","))
        guard next(&s, UInt8(ascii: "}")), let kinds else { return nil }
        return ResponseFields(kinds: kinds, killed: killed, injured: injured, detained: detained)
    }

    static func outcomeFields(_ s: inout JSONScanner) -> OutcomeFields? {
        guard next(&s, UInt8(ascii: "{")) else { return nil }
        var status: OutcomeStatus?
        var verification: Verification?
        var corrections: [String: JSONValue]?
        repeat {
            guard let key = s.key() else { return nil }
            if equals(key, "status") {
                guard let raw = s.rawString(), let v = match(raw, statuses) else { return nil }
                status = v
            } else if equals(key, "verification") {
                guard let raw = s.rawString(), let v = match(raw, verifications) else { return nil }
                verification = v
            } else if equals(key, "corrections") {
                let start = s.index
                guard skipValue(&s), case .object(let members)? = try? JSONReader().read(UnsafeRawBufferPointer(rebasing: s.bytes[start..<s.index]))
                else { return nil }
                corrections = members
            } else {
                guard skipValue(&s) else { return nil }
            }
        } while next(&s, UInt8(ascii: ","))
        guard next(&s, UInt8(ascii: "}")), let status else { return nil }
        return OutcomeFields(status: status, verification: verification, corrections: corrections)
    }
}
