// libFuzzer target for the decoders of what incidentd reads back from LMDB, which a flipped byte, a bad disk or a
// hand edit may have damaged: the stored incident projection (`IncidentState(encoded:incident:)`), the city projection
// (`CityState(json:)`), stored events (`RecordedEvent(json:)`, `StoredEventReader.parse`, the summary each gets
// in `incident-streams`), the rebuild's fold of those summaries (`StreamFold`, through a real LMDB cursor) and
// the head record. A decoder may refuse anything, with a thrown error; it must never trap, and what it accepts
// must be usable: rendered as JSON, encoded again, folded further as the daemon would.
//
// Built by `make fuzz-stored` (mk/fuzz.mk), compiled into the IncidentLog module itself (so that the internal
// readers are reachable) with LMDB, StrictJSON, Gazetteer (without TOML) and IncidentDomain; `Crypto` is
// Fuzz/CryptoStub. The first byte of an input picks the decoder, the rest is the stored bytes:
//   0 an incident's stored form; 1 a city's stored JSON; 2 stored events, one per line; 3 `incident-streams`
//   entries, each `key length (1 byte) ‖ key ‖ value length (2 bytes, little-endian) ‖ value`; 4 the head record.
// The seeds (Fuzz/stored-seeds) are the article's log in these forms; `make fuzz-stored-seeds` writes them again.

import Gazetteer
import IncidentDomain
import LMDB
import StrictJSON

#if canImport(Glibc)
import Glibc
#endif

enum StoredFuzz {
    static let projector = Projector(gazetteer: fuzzGazetteer())
    static let now = Timestamp(microseconds: 1_795_608_000_000_000)
    /// The id an incident payload is read back under: the key the stored form is kept under, not in it.
    static let incidentId = "fuzz-incident"

    /// One LMDB environment for the whole run; each input's entries are written in a transaction that is aborted.
    static let streams: (Environment, Database) = {
        do {
            var template = Array("/tmp/incidentd-stored-fuzz-XXXXXX".utf8CString)
            guard let directory = template.withUnsafeMutableBufferPointer({ buffer -> String? in
                guard let base = buffer.baseAddress, let made = mkdtemp(base) else { return nil }
                return String(cString: made)
            })
            else { fatalError("mkdtemp failed") }
            let environment = try Environment(directory: directory)
            let database = try environment.openDatabase("incident-streams", create: true)
            // LMDB keeps its files open and mapped: unlinked now, they leave nothing behind when the run ends.
            unlink(directory + "/data.mdb")
            unlink(directory + "/lock.mdb")
            rmdir(directory)
            return (environment, database)
        } catch {
            fatalError("fuzz environment: \(error)")
        }
    }()

    static func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
        if !condition() {
            let text = Array("property violated: \(message())\n".utf8)
            _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            abort()
        }
    }

    static func show(_ bytes: some Collection<UInt8>) -> String { String(decoding: bytes.prefix(300), as: UTF8.self) }

    /// A JSON document the daemon would send must read back as the same value.
    static func checkRendered(_ value: JSONValue, _ what: String) {
        let bytes = value.canonicalBytes()
        guard let again = try? JSONReader(maxDepth: 128).read(bytes) else {
            check(false, "\(what) renders JSON that does not read back: \(show(bytes))")
            return
        }
        check(again.canonicalBytes() == bytes, "\(what) renders JSON that is not a fixed point: \(show(bytes))")
    }

    // MARK: 0: the stored incident projection

    static func incident(_ payload: [UInt8]) {
        guard let state = try? IncidentState(encoded: payload, incident: StoredFuzz.incidentId) else { return }
        let encoded = state.encoded()
        guard let again = try? IncidentState(encoded: encoded, incident: state.incident) else {
            check(false, "a decoded incident's encoding does not decode: \(encoded)")
            return
        }
        check(again == state, "an incident does not survive encoding again: \(state) became \(again)")
        check(again.encoded() == encoded, "an incident's encoding is not a fixed point")
        checkRendered(state.json, "an incident")
        followUps(of: state, stored: encoded)
    }

    /// A response and an outcome appended to the incident, as the daemon's writer folds them (`Projector` on the
    /// stored forms). (`ProjectionFold.stored` could read stored incidents too, but nothing sets it: replay and the
    /// rebuild fold from the events and the streams alone.)
    static func followUps(of state: IncidentState, stored: [UInt8]) {
        let events = followUpEvents(incident: state.incident, after: state)
        var documents = DocumentStore()
        documents.incidents[state.incident] = stored
        for event in events { try? projector.apply(event, to: &documents) }
        for (id, bytes) in documents.incidents {
            check((try? IncidentState(encoded: bytes, incident: id)) != nil, "incident \(id), folded further, is stored in a form that does not decode")
        }
        for (_, bytes) in documents.cities { checkCity(bytes) }
    }

    static func followUpEvents(incident: String, after state: IncidentState) -> [RecordedEvent] {
        let data: [(String, JSONValue)] = [
            ("response-observed", ["by": "police", "responses": ["detentions"], "killed": 1, "injured": 2, "detained": 3]),
            (
                "outcome-updated",
                ["status": "dispersed", "verification": "verified", "corrections": ["kind": "strike", "participants": ["low": 5, "high": 9]]]
            ),
        ]
        return data.enumerated().compactMap { offset, event in
            let json: JSONValue = [
                "position": .int(Int64(bitPattern: max(state.lastPosition &+ UInt64(offset) &+ 1, 1) & UInt64(Int64.max))),
                "eventId": .string("00000000-0000-4000-8000-00000000000\(offset)"), "type": .string(event.0),
                "incident": .string(incident), "version": .int(max(state.version &+ Int64(offset) &+ 1, 1)),
                "occurredAt": "2022-03-02", "precision": "day", "recordedAt": .string(now.description),
                "recordedBy": ["uid": 0, "user": "root"], "data": event.1, "schema": 1,
                "prevHash": .string(String(repeating: "0", count: 64)),
            ]
            return try? RecordedEvent(json: json)
        }
    }

    // MARK: 1: the stored city projection

    static func city(_ payload: [UInt8]) {
        checkCity(payload)
        // A report of a new incident in the city, folded by the writer into the city as stored.
        guard let json = try? JSONReader().read(payload), let city = try? CityState(json: json) else { return }
        var documents = DocumentStore()
        documents.cities[city.cityId] = payload
        let report: JSONValue = [
            "position": .int(Int64(bitPattern: min(city.lastPosition &+ 1, UInt64(Int64.max)))),
            "eventId": "00000000-0000-4000-8000-000000000009", "type": "incident-reported", "incident": "fuzz-report",
            "version": 1, "occurredAt": "2022-03-01", "precision": "day", "recordedAt": .string(now.description),
            "recordedBy": ["uid": 0, "user": "root"], "schema": 1, "prevHash": .string(String(repeating: "0", count: 64)),
            "data": [
                "city": .string(city.name), "cityId": .string(city.cityId), "kind": "strike", "participants": ["low": 5, "high": 9],
            ],
        ]
        guard let event = try? RecordedEvent(json: report) else { return }
        try? projector.apply(event, to: &documents)
        for (_, bytes) in documents.cities { checkCity(bytes) }
    }

    static func checkCity(_ bytes: [UInt8]) {
        guard let json = try? JSONReader().read(bytes), let city = try? CityState(json: json) else { return }
        let rendered = city.json
        checkRendered(rendered, "a city")
        let canonical = rendered.canonicalBytes()
        guard let again = try? CityState(json: JSONReader().read(canonical)) else {
            check(false, "a decoded city's JSON does not decode: \(show(canonical))")
            return
        }
        check(again == city, "a city does not survive its JSON: \(show(canonical))")
        check(city.canonicalBytes() == canonical, "the direct city writer differs: \(show(canonical))")
        _ = city.gazetteerEntry
    }

    // MARK: 2: stored events

    static func events(_ payload: [UInt8]) {
        let lines = payload.split(separator: 0x0A, omittingEmptySubsequences: true).prefix(64).map { Array($0) }
        var fold = ProjectionFold(projector: projector)
        var entries: [([UInt8], [UInt8])] = []
        var starts: [[UInt8]: UInt64] = [:]
        for (n, line) in lines.enumerated() {
            var general: RecordedEvent?
            if let json = try? JSONReader().read(line), let event = try? RecordedEvent(json: json) {
                general = event
                let canonical = event.json.canonicalBytes()
                check(event.canonicalBytes() == canonical, "the direct event writer differs: \(show(canonical))")
                guard let again = try? RecordedEvent(json: JSONReader().read(canonical)) else {
                    check(false, "a decoded event's canonical form does not decode: \(show(canonical))")
                    continue
                }
                check(again == event, "an event does not survive its canonical form: \(show(canonical))")
                checkRendered(event.json, "an event")
            }
            // As queries read it: the stored value is the hash, then the canonical bytes.
            let stored = [UInt8](repeating: 0xAB, count: 32) + line
            let position = general?.position ?? UInt64(n + 1)
            if let (document, _) = try? stored.withUnsafeBytes({ try EventLog.storedEvent($0, at: position) }) {
                checkRendered(document, "a stored event's document")
            }
            // As replay folds it: the fast reader when it takes the bytes, else the general decoder.
            let folded = line.withUnsafeBytes { raw -> Bool in
                guard raw.firstControlByte() == nil, let parsed = StoredEventReader.parse(raw) else { return false }
                return (try? StoredEventReader.apply(parsed, to: &fold)) ?? false
            }
            if !folded, let general { try? fold.apply(general) }
            // As the writer and the rebuild summarise it for `incident-streams`.
            var summary = Keys.position(position)
            let identity = try? line.withUnsafeBytes { raw in
                try StreamSummary.append(ofStored: raw, at: position, to: &summary) { _, incident, version in
                    (Array(incident), version)
                }
            }
            if let (incident, version) = identity {
                if version == 1 { starts[incident] = position }
                entries.append((Keys.stream(start: starts[incident] ?? 0, version: version), summary))
            }
        }
        for i in 0..<fold.ids.count {
            let state = fold.state(Int32(i))
            check((try? IncidentState(encoded: state.encoded(), incident: state.incident)) == state, "replay's fold makes an incident that does not survive encoding")
            checkRendered(state.json, "replay's incident")
            if let direct = fold.encoded(Int32(i)) {
                check(direct == state.encoded(), "replay's direct encoding differs from IncidentState's")
            }
        }
        for city in fold.cities { checkCity(city.state(fold.texts).json.canonicalBytes()) }
        foldStreams(entries)
    }

    // MARK: 3: incident-streams entries

    static func streamEntries(_ payload: [UInt8]) {
        var entries: [([UInt8], [UInt8])] = []
        var i = 0
        while i < payload.count, entries.count < 256 {
            let keyCount = Int(payload[i])
            i += 1
            guard keyCount > 0, i + keyCount + 2 <= payload.count else { break }
            let key = Array(payload[i..<i + keyCount])
            i += keyCount
            let valueCount = Int(payload[i]) | Int(payload[i + 1]) << 8
            i += 2
            let value = Array(payload[i..<min(i + valueCount, payload.count)])
            i += valueCount
            entries.append((key, value))
        }
        foldStreams(entries)
    }

    private struct Abandon: Error {}

    /// Puts `entries` in `incident-streams` and folds them as the rebuild does, the direct way and through
    /// `IncidentState`; the transaction is then abandoned.
    static func foldStreams(_ entries: [([UInt8], [UInt8])]) {
        let (environment, db) = streams
        do {
            try environment.write { txn in
                try txn.drop(db, delete: false)
                for (key, value) in entries where !key.isEmpty && key.count <= environment.maxKeySize {
                    try txn.put(db, key: key, value: value)
                }
                var results: [[ArraySlice<UInt8>]] = []
                for direct in [true, false] {
                    var fold = StreamFold(projector: projector, direct: direct)
                    let cursor = try txn.cursor(db)
                    do {
                        try fold.fold(cursor, reports: 0..<UInt64.max)
                    } catch is StreamSummaryDamage {
                        continue
                    } catch let error as LogError where error.code == .corrupt {
                        continue
                    }
                    var records: [ArraySlice<UInt8>] = []
                    for n in 0..<fold.incidentCount {
                        let record = fold.record(n)
                        guard let state = try? IncidentState(encoded: Array(record), incident: String(decoding: fold.id(n), as: UTF8.self)) else {
                            check(false, "the rebuild (direct: \(direct)) stores an incident it cannot decode: \(Array(record))")
                            continue
                        }
                        checkRendered(state.json, "a rebuilt incident")
                        records.append(record)
                    }
                    results.append(records)
                    for city in StreamFold.merge([fold]) { checkCity(city.json.canonicalBytes()) }
                }
                if results.count == 2 {
                    check(results[0] == results[1], "the rebuild's direct and IncidentState encodings differ")
                }
                throw Abandon()
            }
        } catch is Abandon {
        } catch {
            check(false, "LMDB refused the fuzz entries: \(error)")
        }
    }

    // MARK: 4: the head record

    static func head(_ payload: [UInt8]) {
        guard let head = try? payload.withUnsafeBytes({ try Head.decode($0) }) else { return }
        check(head.encoded == payload, "the head does not encode to the bytes it was read from")
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func storedFuzzInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    if let from = getenv("STORED_FUZZ_SEEDS_FROM"), let to = getenv("STORED_FUZZ_SEEDS_TO") {
        StoredSeeds.write(from: String(cString: from), to: String(cString: to))
        exit(0)
    }
    _ = StoredFuzz.streams
    let report = ReportData(
        city: "Kupiansk", cityId: "kupiansk", kind: .demonstration, location: nil, coordinates: nil, description: nil,
        participants: nil, targets: nil, tags: [])
    let sample = IncidentState(
        incident: "sample", cityId: "kupiansk", occurredAt: "2022-03-01", precision: .day, reportedAt: StoredFuzz.now,
        report: report, current: report, verification: .unverified, position: 1)
    StoredFuzz.check(StoredFuzz.followUpEvents(incident: "sample", after: sample).count == 2, "the follow-up events are refused")
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func storedFuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let payload = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 5 {
    case 0: StoredFuzz.incident(payload)
    case 1: StoredFuzz.city(payload)
    case 2: StoredFuzz.events(payload)
    case 3: StoredFuzz.streamEntries(payload)
    default: StoredFuzz.head(payload)
    }
    return 0
}
