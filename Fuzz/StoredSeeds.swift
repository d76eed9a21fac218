// The stored-form fuzz target's seeds: a log of the article's events (examples/article.jsonl) appended as the
// daemon would, and written in each form the target reads. Run by the target itself when STORED_FUZZ_SEEDS_FROM
// (the events) and STORED_FUZZ_SEEDS_TO (a directory) are set: `make fuzz-stored-seeds`.

import Gazetteer
import IncidentDomain
import StrictJSON

#if canImport(Glibc)
import Glibc
#endif

enum StoredSeeds {
    static func write(from eventsPath: String, to directory: String) {
        guard let file = fopen(eventsPath, "r") else { fatalError("cannot read \(eventsPath)") }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            text.append(contentsOf: buffer[..<n])
        }
        fclose(file)

        let admission = Admission(gazetteer: StoredFuzz.projector.gazetteer)
        var memory = InMemoryProjections()
        var events: [RecordedEvent] = []
        var previous = ChainHash.zero
        for line in text.split(separator: 0x0A) {
            do {
                let proposal = try ProposedEvent(json: JSONReader().read(Array(line)), now: StoredFuzz.now)
                // Stored as by root, whose reports may name any cityId (a restore's).
                let admitted = try admission.admit(
                    proposal, allowNewCity: true, restoresCities: true, recordedAt: StoredFuzz.now, store: &memory)
                let event = RecordedEvent(
                    position: UInt64(events.count + 1), eventId: proposal.eventId ?? "00000000-0000-4000-8000-000000000000",
                    incident: admitted.incident, version: admitted.version, occurredAt: admitted.occurredAt,
                    precision: admitted.precision, recordedAt: StoredFuzz.now, recordedBy: Recorder(uid: 0, user: "root"),
                    sources: proposal.sources, data: admitted.data, prevHash: ChainHash.hex(previous))
                try StoredFuzz.projector.apply(event, to: &memory)
                previous = event.canonicalBytes().withUnsafeBytes { ChainHash.link(previous: previous, canonical: $0) }
                events.append(event)
            } catch {
                fatalError("the article's event \(events.count + 1) is refused: \(error)")
            }
        }

        func save(_ name: String, _ selector: UInt8, _ bytes: [UInt8]) {
            let path = directory + "/" + name
            guard let out = fopen(path, "w") else { fatalError("cannot write \(path)") }
            let all = [selector] + bytes
            _ = all.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, out) }
            fclose(out)
        }
        for (n, id) in memory.incidents.keys.sorted().enumerated() {
            if let state = memory.incidents[id] { save("incident-\(n + 1)", 0, state.encoded()) }
        }
        for (n, id) in memory.cities.keys.sorted().enumerated() {
            if let city = memory.cities[id] { save("city-\(n + 1)", 1, city.json.canonicalBytes()) }
        }
        save("events", 2, events.flatMap { $0.canonicalBytes() + [0x0A] })
        var starts: [String: UInt64] = [:]
        var entries: [UInt8] = []
        for event in events {
            if event.version == 1 { starts[event.incident] = event.position }
            let key = Keys.stream(start: starts[event.incident] ?? 0, version: event.version)
            var value = Keys.position(event.position)
            StreamSummary.append(event, to: &value)
            entries.append(UInt8(key.count))
            entries.append(contentsOf: key)
            entries.append(UInt8(truncatingIfNeeded: value.count))
            entries.append(UInt8(truncatingIfNeeded: value.count >> 8))
            entries.append(contentsOf: value)
        }
        save("streams", 3, entries)
        save("head", 4, Head(position: UInt64(events.count), hash: previous, recordedAt: StoredFuzz.now).encoded)
    }
}
