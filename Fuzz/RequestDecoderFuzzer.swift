// libFuzzer target for what incidentd does with a request line before anything touches LMDB: framing
// (LineFramer), strict JSON (JSONReader), the request envelope (Request.decode), event validation
// (ProposedEvent), the rules that need the log's state (Admission), and the projections (Projector).
//
// Built by `make fuzz` (mk/fuzz.mk) with `swiftc -sanitize=fuzzer,address`, together with the sources of
// StrictJSON, IncidentProtocol, IncidentDomain and Gazetteer. Gazetteer's TOML loading (TOMLKit, a C++ library)
// and the compiled-in gazetteer that needs it are left out: the gazetteer here is built in code with the same
// three cities and spellings (Fuzz/FuzzGazetteer.swift), so city resolution and suggestions are fuzzed as the
// daemon runs them.
//
// Besides "never crash, never hang, never blow up memory", it checks properties the log depends on:
// * framing: the same bytes fed whole or in two pieces give the same lines and the same refusals;
// * JSON: whatever JSONReader accepts, its canonical form reads back to the same value and is a fixed point
//   (the hash chain and byte-identical replays rest on this); refusals are JSONReadErrors, never traps;
// * responses: every error and success line the daemon would send is valid JSON that echoes the id;
// * events: a valid event, once stored (its canonical JSON), reads back as the same RecordedEvent (otherwise
//   verify, replay and projection rebuilds would fail on the log), and its proposal's canonical content is
//   itself a valid proposal with the same content (idempotent retries compare these bytes);
// * projections: folding into memory and folding through the stored forms (as the daemon keeps them in LMDB)
//   give identical incident and city states;
// * the daemon's fast paths: whatever FastWireDecoder accepts, the general decoder and the event rules accept
//   with the same result; the direct canonical writers (events, content, cities) give the JSONValue form's bytes.

import Gazetteer
import IncidentDomain
import IncidentProtocol
import StrictJSON

#if canImport(Glibc)
import Glibc
#endif

let gazetteer = fuzzGazetteer()

/// A fixed "now" (2026-11-25T12:00:00Z), so that a crash reproduces on any day.
let now = Timestamp(microseconds: 1_795_608_000_000_000)
let admission = Admission(gazetteer: gazetteer)
let projector = Projector(gazetteer: gazetteer)
let recorder = Recorder(uid: 0, user: "root")

func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() {
        let text = Array("property violated: \(message())\n".utf8)
        _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        abort()
    }
}

func show(_ bytes: [UInt8]) -> String { String(decoding: bytes.prefix(300), as: UTF8.self) }

/// JSON: accepted values round-trip through their canonical form.
func checkJSON(_ line: [UInt8]) {
    guard let value = try? JSONReader().read(line) else { return }
    let canonical = value.canonicalBytes()
    guard let again = try? JSONReader().read(canonical) else {
        check(false, "canonical form does not read back: \(show(canonical))")
        return
    }
    check(again.canonicalBytes() == canonical, "canonical form is not a fixed point: \(show(canonical))")
}

/// A response line must be one line of valid JSON with the request's id, byte for byte as it was sent.
func checkResponse(_ bytes: [UInt8], id: JSONText) {
    check(bytes.last == 0x0A && !bytes.dropLast().contains(0x0A), "response is not one line: \(show(bytes))")
    let line = Array(bytes.dropLast())
    guard let (_, located) = line.withUnsafeBytes({ try? JSONReader(maxDepth: 128).read($0, locating: "id") }) else {
        check(false, "response is not JSON: \(show(bytes))")
        return
    }
    check(located.map { Array(line[$0]) } == id.bytes, "response does not echo the id: \(show(bytes))")
}

/// Positions handed out while one input is folded; libFuzzer runs inputs one at a time on one thread.
nonisolated(unsafe) var position: UInt64 = 0

func fold(_ events: [JSONValue], allowNewCity: Bool) {
    var memory = InMemoryProjections()
    var documents = DocumentStore()
    for wire in events {
        let proposal: ProposedEvent
        do {
            proposal = try ProposedEvent(json: wire, now: now)
        } catch {
            let response = Response.failure(id: 1, ProtocolError(.init(rawValue: error.code.rawValue), error.message, details: error.details))
            checkResponse(response, id: 1)
            continue
        }
        // The canonical content of a valid proposal is itself valid, with the same content; the direct writer
        // gives the same bytes (idempotent retries compare their digests).
        let content = proposal.contentBytes
        var direct: [UInt8] = []
        proposal.writeContent(into: &direct)
        check(direct == content, "writeContent differs from contentBytes: \(show(direct)) vs \(show(content))")
        do {
            let again = try ProposedEvent(json: JSONReader().read(content), now: now)
            check(again.contentBytes == content, "content is not stable: \(show(content)) → \(show(again.contentBytes))")
        } catch {
            check(false, "the content of a valid event is refused (\(error)): \(show(content))")
        }
        let admitted: AdmittedEvent
        do {
            // As a reporter and as an admin in turn: a report's cityId other than its city's is an admin's restore.
            admitted = try admission.admit(
                proposal, allowNewCity: allowNewCity, restoresCities: position % 2 == 0, recordedAt: now, store: &memory)
        } catch {
            continue
        }
        position += 1
        let event = RecordedEvent(
            position: position, eventId: proposal.eventId ?? "00000000-0000-4000-8000-000000000000",
            incident: admitted.incident, version: admitted.version, occurredAt: admitted.occurredAt,
            precision: admitted.precision, recordedAt: now, recordedBy: recorder, sources: proposal.sources,
            data: admitted.data, prevHash: String(repeating: "0", count: 64))
        // What is stored must read back: verify, replay and rebuilds depend on it. The daemon writes it with the
        // direct canonical writer; the hash chain is checked against the JSONValue form.
        let stored = event.json.canonicalBytes()
        check(event.canonicalBytes() == stored, "the direct canonical writer differs: \(show(event.canonicalBytes())) vs \(show(stored))")
        do {
            let readBack = try RecordedEvent(json: JSONReader().read(stored))
            check(readBack == event, "stored event reads back differently: \(show(stored))")
            check(readBack.json.canonicalBytes() == stored, "stored event is not stable: \(show(stored))")
        } catch {
            check(false, "stored event cannot be read back (\(error)): \(show(stored))")
        }
        do {
            try projector.apply(event, to: &memory)
            try projector.apply(event, to: &documents)
        } catch {
            check(false, "projection failed (\(error)) for \(show(stored))")
        }
    }
    // In memory and through stored documents: the same projections, byte for byte.
    for (id, state) in memory.incidents {
        check(documents.incidents[id] == state.encoded(), "incident \(id) differs between memory and documents")
        // The stored form keeps only what the fold needs (the report itself is read from the stream), so compare
        // encodings: decoding and encoding again must give the same bytes.
        if let bytes = documents.incidents[id], let decoded = try? IncidentState(encoded: bytes, incident: id) {
            check(decoded.encoded() == bytes, "incident \(id) does not survive its encoding: \(state) became \(decoded)")
        } else {
            check(false, "incident \(id) cannot be decoded")
        }
    }
    for (id, city) in memory.cities {
        let canonical = city.json.canonicalBytes()
        check(documents.cities[id] == canonical, "city \(id) differs between memory and documents")
        check(city.canonicalBytes() == canonical, "the direct city writer differs for \(id)")
    }
    check(memory.incidents.count == documents.incidents.count && memory.cities.count == documents.cities.count, "projection counts differ")
}

/// The daemon's fast append decoder may refuse anything (the general path then answers), but what it accepts
/// the general path must accept too, with the same id, flag and events: otherwise a line would be stored that
/// the rules refuse.
func checkFastPath(_ line: [UInt8]) {
    guard let fast = line.withUnsafeBytes({ FastWireDecoder.decodeAppend($0, now: now) }) else { return }
    guard case .success(let request) = Request.decode(line), request.operation == .append else {
        check(false, "the fast decoder accepts a line the general decoder refuses: \(show(line))")
        return
    }
    check(request.id == fast.id, "fast and general ids differ: \(show(line))")
    let flag = request.body["allowNewCity"]
    check(flag == nil || flag?.boolValue == fast.allowNewCity, "fast and general allowNewCity differ: \(show(line))")
    guard case .array(let wire)? = request.body["events"], !wire.isEmpty, wire.count <= 10_000 else {
        check(false, "the fast decoder accepts events the general path refuses: \(show(line))")
        return
    }
    check(wire.count == fast.events.count, "fast and general event counts differ: \(show(line))")
    for (n, (json, event)) in zip(wire, fast.events).enumerated() {
        do {
            let general = try ProposedEvent(json: json, now: now)
            check(general == event, "event \(n) differs between the fast and general decoders: \(show(line))")
            check(general.contentBytes == event.contentBytes, "event \(n) content differs: \(show(line))")
        } catch {
            check(false, "the fast decoder accepts event \(n) that the rules refuse (\(error)): \(show(line))")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    position = 0

    // Framing: whole, and in two pieces split where the first byte says.
    var whole = LineFramer(maxLineLength: 4096)
    let frames = whole.feed(input)
    var split = LineFramer(maxLineLength: 4096)
    let cut = input.isEmpty ? 0 : Int(input[0]) * input.count / 256
    let pieces = split.feed(Array(input[..<cut])) + split.feed(Array(input[cut...]))
    // (An over-long line reports how much of it had arrived when it was dropped, which depends on the pieces.)
    func shape(_ frames: [LineFramer.Frame]) -> [LineFramer.Frame] {
        frames.map { if case .tooLong = $0 { return .tooLong(0) } else { return $0 } }
    }
    check(shape(frames) == shape(pieces), "framing depends on how the bytes arrive")

    var lines: [[UInt8]] = []
    for frame in frames {
        switch frame {
        case .line(let line):
            check(line.count <= 4096 && !line.contains(0x0A), "a frame longer than the limit or with a newline")
            lines.append(line)
        case .tooLong(let n):
            check(n > 4096, "tooLong for a line within the limit")
        }
    }
    if whole.hasPartialLine, let last = input.split(separator: 0x0A, omittingEmptySubsequences: false).last, last.count <= 4096 {
        lines.append(Array(last))  // a last line without its newline is answered too
    }

    for line in lines {
        checkJSON(line)
        checkFastPath(line)
        switch Request.decode(line) {
        case .failure(let failure):
            checkResponse(Response.failure(id: failure.id, failure.error), id: failure.id)
        case .success(let request):
            checkResponse(Response.success(id: request.id, ["position": 1]), id: request.id)
            let reencoded = request.encoded()
            if case .success(let again) = Request.decode(reencoded) {
                check(again.encoded() == reencoded, "a request does not re-encode stably")
            } else {
                check(false, "a decoded request does not decode again: \(show(reencoded))")
            }
            if request.operation == .append, case .array(let events)? = request.body["events"] {
                fold(Array(events.prefix(64)), allowNewCity: request.body["allowNewCity"]?.boolValue ?? false)
            }
            if request.operation == .city || request.operation == .read, let name = request.body["city"]?.stringValue {
                _ = gazetteer.resolve(name)
                _ = gazetteer.suggestions(for: name)
                _ = Gazetteer.slug(name)
            }
        }
    }
    // The whole input as one request line too (the daemon allows up to 1 MiB).
    if lines.count != 1 {
        checkJSON(input)
        if case .success(let request) = Request.decode(input), request.operation == .append,
            case .array(let events)? = request.body["events"]
        {
            fold(Array(events.prefix(64)), allowNewCity: true)
        }
    }
    return 0
}
