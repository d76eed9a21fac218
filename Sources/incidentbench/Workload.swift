import IncidentDomain
import StrictJSON

/// A small, fast, deterministic generator (SplitMix64), so that every run sends the same kind of events.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// Realistic wire events in the shape of `examples/article.jsonl`: mostly reports of new incidents across the
/// article's three cities (spelled as sources spell them), plus responses and outcomes for incidents this
/// stream reported earlier. Every event carries a client-chosen `eventId`, as a device that retries would.
struct EventFactory {
    /// How ids relate to time.
    enum Keys: String, CaseIterable {
        /// As a team documenting as it goes: each event is about a day that advances through the run (about
        /// `eventsPerDay` events a day), incident ids are `city-date-kind-…` like the article's, responses and
        /// outcomes concern recent incidents, and event ids are time-ordered UUIDs (version 7), as RFC 9562
        /// recommends for database keys. Keys of what is written together sort together.
        case chronological
        /// Any day of March 2022 for any event and random (version 4) event ids: every event's keys land on a
        /// random page of each index, the worst case for a B-tree.
        case random
    }

    /// Makes incident ids unique across phases and connections.
    let prefix: String
    let keys: Keys
    private var rng: SplitMix64
    private var recent: [String] = []
    private var counter = 0
    /// Where this stream's events sit in the run: event `n` of it is about the run's event
    /// `firstEvent + n * stride`.
    private let firstEvent: Int
    private let stride: Int
    private let eventsPerDay: Int
    /// 2022-03-01, in days since 1970-01-01.
    private static let startDay = 19_052

    init(prefix: String, seed: UInt64, keys: Keys = .chronological, firstEvent: Int = 0, stride: Int = 1, eventsPerDay: Int = 1_000) {
        self.prefix = prefix
        self.keys = keys
        rng = SplitMix64(seed: seed)
        self.firstEvent = firstEvent
        self.stride = stride
        self.eventsPerDay = max(1, eventsPerDay)
    }

    /// The run's event this one stands for.
    private var runEvent: Int { firstEvent + (counter - 1) * stride }

    static let cities: [(id: String, spellings: [String])] = [
        ("kupiansk", ["Kupiansk", "Kup’yansk", "Kupyansk", "Kup'yansk", "Куп'янськ"]),
        ("melitopol", ["Melitopol", "Melitopoli", "Melitopol'", "Мелітополь"]),
        ("berdiansk", ["Berdiansk", "Berdyansk", "Berdyans'k", "Бердянськ"]),
    ]
    static let kinds = ["demonstration", "demonstration", "demonstration", "blockade", "symbolic-act", "confrontation", "strike", "sabotage", "other"]
    static let locations = [
        "in front of the city hall", "central square", "Bohdana Khmelnytskoho Avenue, city centre",
        "the road to the port", "near the railway station", "outside the regional administration building",
        "the market by the bus station", "the bridge on the northern exit of the city",
    ]
    static let sentences = [
        "About a hundred residents, some holding Ukrainian flags, gathered and sang the national anthem.",
        "Videos posted the same day show a small group gathering around musicians on the steps of the building.",
        "Several demonstrators chased a military vehicle that was watching from the other side of the square.",
        "A few unarmed residents stood in the middle of the avenue and stopped a convoy from advancing.",
        "Residents walked along the street where the convoy was stationed, shouting \"Go home\".",
        "The crowd grew during the afternoon as people arrived from the neighbouring districts.",
        "Local journalists counted the participants from a balcony overlooking the square.",
        "The article gives no head count, so the participant figures are an estimate from the videos.",
        "Drivers blocked the road with their cars and refused to move when ordered to.",
        "Posters reading \"Melitopol is Ukraine\" were hung on the fence of the administration building.",
        "The mayor addressed the crowd and asked people to stay calm and avoid provocations.",
        "Several people were filmed handing out leaflets in Ukrainian and Russian.",
    ]
    static let targets = [
        "convoy of 12 military vehicles marked with the \"Z\" symbol", "Russian soldiers who had entered the city",
        "the occupation administration", "a military vehicle observing the square", "the collaborationist mayor",
    ]
    static let tags = ["ukrainian-flag", "convoy", "z-marking", "unarmed", "anthem", "video", "leaflets", "road-block"]
    static let sources: [(name: String, verification: String, method: String?)] = [
        ("Les Révélateurs de France Télévisions", "verified", "video verification"),
        ("Ukrainska Pravda", "unverified", nil),
        ("Suspilne Zaporizhzhia", "verified", "geolocation"),
        ("Telegram channel of the city council", "unverified", "videos shared on social networks"),
        ("Hromadske", "disputed", "eyewitness interview"),
    ]
    static let forces = ["Russian armed forces", "Rosgvardia", "occupation police", "FSB officers"]
    static let responseKinds = ["none", "warning-shots", "tear-gas", "crowd-dispersal", "detentions", "beatings", "live-fire", "abductions", "other"]
    static let statuses = ["unknown", "ongoing", "dispersed", "objective-achieved", "suppressed"]
    static let verifications = ["unverified", "verified", "disputed"]

    /// The next wire event, as JSON bytes.
    mutating func next() -> [UInt8] {
        counter += 1
        let roll = rng.below(100)
        if recent.count < 8 || roll < 60 { return report() }
        if roll < 85 { return response() }
        return outcome()
    }

    private mutating func uuid() -> String {
        let a = rng.next(), b = rng.next()
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: a >> (8 * UInt64(i))) }
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: b >> (8 * UInt64(i))) }
        switch keys {
        case .random:
            bytes[6] = (bytes[6] & 0x0F) | 0x40
        case .chronological:
            // Version 7: 48 bits of Unix milliseconds first. The run's events are spread over the days they are
            // about, so ids made later sort later.
            let millis = UInt64(Self.startDay) * 86_400_000 + UInt64(runEvent) * 86_400_000 / UInt64(eventsPerDay)
            for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: millis >> (40 - 8 * UInt64(i))) }
            bytes[6] = (bytes[6] & 0x0F) | 0x70
        }
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func date() -> (occurredAt: String, precision: String) {
        if keys == .chronological {
            let days = Self.startDay + runEvent / eventsPerDay
            let day = String(Timestamp(microseconds: Int64(days) * 86_400_000_000).description.prefix(10))
            switch rng.below(10) {
            case 0: return (day, "week")
            case 1, 2:
                let h = 8 + rng.below(12), m = rng.below(60)
                return ("\(day)T\(h < 10 ? "0" : "")\(h):\(m < 10 ? "0" : "")\(m)+02:00", "minute")
            default: return (day, "day")
            }
        }
        let day = 1 + rng.below(28)
        let dd = day < 10 ? "0\(day)" : "\(day)"
        switch rng.below(10) {
        case 0: return ("2022-03", "month")
        case 1: return ("2022-03-\(dd)", "week")
        case 2, 3:
            let h = 8 + rng.below(12), m = rng.below(60)
            return ("2022-03-\(dd)T\(h < 10 ? "0" : "")\(h):\(m < 10 ? "0" : "")\(m)+02:00", "minute")
        default: return ("2022-03-\(dd)", "day")
        }
    }

    private mutating func description(_ sentences: Int) -> String {
        (0..<sentences).map { _ in rng.pick(Self.sentences) }.joined(separator: " ")
    }

    private mutating func writeSources(_ w: inout ByteWriter) {
        w.raw("\"sources\":[")
        for n in 0..<(1 + rng.below(2)) {
            if n > 0 { w.raw(",") }
            let s = rng.pick(Self.sources)
            w.raw("{\"name\":"); w.string(s.name)
            w.raw(",\"verification\":"); w.string(s.verification)
            if let method = s.method { w.raw(",\"method\":"); w.string(method) }
            if s.verification == "verified" { w.raw(",\"verifiedBy\":"); w.string(s.name) }
            w.raw("}")
        }
        w.raw("]")
    }

    private mutating func report() -> [UInt8] {
        let city = rng.pick(Self.cities)
        let kind = rng.pick(Self.kinds)
        let (occurredAt, precision) = date()
        let incident = "\(city.id)-\(occurredAt.prefix(10))-\(kind)-\(prefix)-\(counter)"
        switch keys {
        case .random:
            if recent.count < 1024 { recent.append(incident) } else { recent[rng.below(1024)] = incident }
        case .chronological:
            // Responses and outcomes follow their report within hours: the last few dozen incidents.
            if recent.count < 64 { recent.append(incident) } else { recent[counter % 64] = incident }
        }
        var w = ByteWriter()
        w.raw("{\"eventId\":"); w.string(uuid())
        w.raw(",\"type\":\"incident-reported\",\"incident\":"); w.string(incident)
        w.raw(",\"occurredAt\":"); w.string(occurredAt)
        w.raw(",\"precision\":"); w.string(precision)
        w.raw(",")
        writeSources(&w)
        w.raw(",\"data\":{\"city\":"); w.string(rng.pick(city.spellings))
        w.raw(",\"kind\":"); w.string(kind)
        if rng.chance(70) {
            let low = 5 + rng.below(500)
            let high = rng.chance(50) ? low : low + rng.below(300)
            w.raw(",\"participants\":{\"low\":\(low),\"high\":\(high)}")
        }
        w.raw(",\"location\":"); w.string(rng.pick(Self.locations))
        w.raw(",\"description\":"); w.string(description(2 + rng.below(4)))
        if rng.chance(60) { w.raw(",\"targets\":"); w.string(rng.pick(Self.targets)) }
        if rng.chance(60) {
            let first = rng.pick(Self.tags)
            var second = rng.pick(Self.tags)
            if second == first { second = "protest" }
            w.raw(",\"tags\":["); w.string(first); w.raw(","); w.string(second); w.raw("]")
        }
        w.raw("}}")
        return w.bytes
    }

    private mutating func response() -> [UInt8] {
        let incident = rng.pick(recent)
        var w = ByteWriter()
        w.raw("{\"eventId\":"); w.string(uuid())
        w.raw(",\"type\":\"response-observed\",\"incident\":"); w.string(incident)
        if rng.chance(50) {
            let (occurredAt, precision) = date()
            w.raw(",\"occurredAt\":"); w.string(occurredAt)
            w.raw(",\"precision\":"); w.string(precision)
        }
        w.raw(",")
        writeSources(&w)
        w.raw(",\"data\":{\"by\":"); w.string(rng.pick(Self.forces))
        let first = 1 + rng.below(Self.responseKinds.count - 1)
        let second = 1 + rng.below(Self.responseKinds.count - 1)
        w.raw(",\"responses\":["); w.string(Self.responseKinds[first])
        if second != first { w.raw(","); w.string(Self.responseKinds[second]) }
        w.raw("]")
        if rng.chance(30) { w.raw(",\"detained\":\(rng.below(40))") }
        if rng.chance(15) { w.raw(",\"injured\":\(rng.below(10))") }
        if rng.chance(5) { w.raw(",\"killed\":\(rng.below(3))") }
        w.raw(",\"description\":"); w.string(description(1 + rng.below(3)))
        w.raw("}}")
        return w.bytes
    }

    private mutating func outcome() -> [UInt8] {
        let incident = rng.pick(recent)
        var w = ByteWriter()
        w.raw("{\"eventId\":"); w.string(uuid())
        w.raw(",\"type\":\"outcome-updated\",\"incident\":"); w.string(incident)
        w.raw(",")
        writeSources(&w)
        w.raw(",\"data\":{\"status\":"); w.string(rng.pick(Self.statuses))
        if rng.chance(50) {
            w.raw(",\"verification\":"); w.string(rng.pick(Self.verifications))
            w.raw(",\"verifiedBy\":"); w.string(rng.pick(Self.sources).name)
            w.raw(",\"method\":\"geolocation\"")
        }
        if rng.chance(15) {
            let low = 10 + rng.below(400)
            w.raw(",\"corrections\":{\"participants\":{\"low\":\(low),\"high\":\(low + rng.below(100))}}")
        }
        w.raw(",\"note\":"); w.string(description(1 + rng.below(2)))
        w.raw("}}")
        return w.bytes
    }
}

/// Appends JSON text to a byte array.
struct ByteWriter {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(1024) }

    mutating func raw(_ s: String) { bytes.append(contentsOf: s.utf8) }
    mutating func string(_ s: String) { JSONValue.writeString(s, into: &bytes) }
}

/// The request lines one connection sends in one phase, back to back in one buffer, so that a run of
/// consecutive requests goes out in one `send`.
struct RequestScript {
    var bytes: [UInt8] = []
    /// `offsets[i]` is where line `i` starts; `offsets[count]` is the end.
    var offsets: [Int] = [0]

    var count: Int { offsets.count - 1 }

    /// `count` appends of one event each, with ids from 1.
    static func appends(count: Int, factory: inout EventFactory) -> RequestScript {
        var script = RequestScript()
        script.bytes.reserveCapacity(count * 900)
        script.offsets.reserveCapacity(count + 1)
        for n in 1...max(count, 1) where count > 0 {
            script.bytes.append(contentsOf: "{\"id\":\(n),\"op\":\"append\",\"events\":[".utf8)
            script.bytes.append(contentsOf: factory.next())
            script.bytes.append(contentsOf: "]}\n".utf8)
            script.offsets.append(script.bytes.count)
        }
        return script
    }
}

/// How many appends each phase of a run of `events` sends.
struct PhaseSizes {
    let warmup: Int
    let sequential: Int
    let single: Int
    let sixteen: Int
    let sixtyFour: Int
    /// What the 16 connections of the fill send, up to `events`; negative when `events` is too small for a run.
    let fill: Int

    init(events n: Int) {
        sequential = max(40, min(n / 50, 20_000))
        warmup = min(1_000, sequential / 2)
        single = max(100, n / 10)
        sixteen = max(16 * 8, n / 4)
        sixtyFour = max(64 * 4, n / 4)
        fill = n - warmup - sequential - single - sixteen - sixtyFour
    }
}

/// The request lines of a run's phases, made in the order the run sends them: each connection of a phase has a
/// stream of events of its own, seeded in turn, and its events are about days that advance through the run.
struct RunScripts {
    let keys: EventFactory.Keys
    /// About 1,200 days documented over the whole run, at least 500 events a day.
    let eventsPerDay: Int
    private var seed: UInt64 = 0x1D_2022_0301
    /// Appends of the phases made so far.
    private var scheduled = 0

    init(events: Int, keys: EventFactory.Keys) {
        self.keys = keys
        eventsPerDay = max(500, events / 1_200)
    }

    /// The next phase's lines: `total` appends over `connections`, one script each.
    mutating func next(_ phase: String, connections: Int, total: Int) -> [RequestScript] {
        defer { scheduled += total }
        return (0..<connections).map { c in
            seed &+= 1
            var factory = EventFactory(
                prefix: "\(phase)\(c)", seed: seed, keys: keys, firstEvent: scheduled + c, stride: connections,
                eventsPerDay: eventsPerDay)
            let count = total / connections + (c < total % connections ? 1 : 0)
            return RequestScript.appends(count: count, factory: &factory)
        }
    }

    /// Passes over the next phase without making its lines: the phases after it get what they would get.
    mutating func skip(connections: Int, total: Int) {
        seed &+= UInt64(connections)
        scheduled += total
    }
}
