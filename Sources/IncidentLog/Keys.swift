import Crypto
import IncidentDomain

/// Byte encodings of the log's keys and values.
enum Keys {
    static func position(_ p: UInt64) -> [UInt8] {
        withUnsafeBytes(of: p.bigEndian) { Array($0) }
    }

    static func readPosition(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count >= 8 else { return nil }
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(bytes[i]) }
        return value
    }

    /// `stream start ‖ version`, both big-endian: an incident's events sort together, in version order, and
    /// incidents in the order they were reported. The start is the position of the incident's report, which its
    /// projection keeps (``IncidentState/firstPosition``). Keyed so, the entries a commit adds sit near the end
    /// of the index, where the recent incidents are, instead of one leaf page per incident id.
    static func stream(start: UInt64, version: Int64) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: 16)
        key.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: start.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: UInt64(bitPattern: version).bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return key
    }

    /// `city id ‖ 0x00 ‖ start ‖ position`: a counted incident's entry in `city-dates` (``IncidentDate``), its date's
    /// start in microseconds with the sign bit flipped and the position of its report, both big-endian, so that a
    /// city's entries sort together (no city id holds a 0x00), by start and then by report. Its value is
    /// ``cityDateValue(text:incident:into:)``. Appended to `key`.
    static func cityDate(cityId: UnsafeRawBufferPointer, start: Int64, position: UInt64, into key: inout [UInt8]) {
        key.append(contentsOf: cityId)
        key.append(0)
        appendStart(start, to: &key)
        withUnsafeBytes(of: position.bigEndian) { key.append(contentsOf: $0) }
    }

    static func cityDate(_ date: IncidentDate) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(date.cityId.utf8.count + 17)
        var cityId = date.cityId
        cityId.withUTF8 { cityDate(cityId: UnsafeRawBufferPointer($0), start: date.start.microseconds, position: date.position, into: &key) }
        return key
    }

    /// `occurredAt ‖ 0x00 ‖ incident id`: the value of a counted incident's entry among its city's dates, the date
    /// as reported (which, a date, holds no 0x00) and the incident it is of. Appended to `value`.
    static func cityDateValue(text: UnsafeRawBufferPointer, incident: UnsafeRawBufferPointer, into value: inout [UInt8]) {
        value.append(contentsOf: text)
        value.append(0)
        value.append(contentsOf: incident)
    }

    /// The date as reported and the incident id of a value of an entry among a city's dates; nil when it does not
    /// read as one.
    static func readCityDateValue(_ value: UnsafeRawBufferPointer) -> (text: UnsafeRawBufferPointer, incident: UnsafeRawBufferPointer)? {
        guard let separator = value.firstIndex(of: 0) else { return nil }
        return (UnsafeRawBufferPointer(rebasing: value[..<separator]), UnsafeRawBufferPointer(rebasing: value[(separator + 1)...]))
    }

    /// A date's start as it sorts in `city-dates`: big-endian with the sign bit flipped.
    static func appendStart(_ start: Int64, to key: inout [UInt8]) {
        withUnsafeBytes(of: (UInt64(bitPattern: start) ^ (1 << 63)).bigEndian) { key.append(contentsOf: $0) }
    }

    /// The city id, start and position of a `city-dates` key; nil when it is not one.
    static func readCityDate(_ key: UnsafeRawBufferPointer) -> (cityId: UnsafeRawBufferPointer, start: Int64, position: UInt64)? {
        guard key.count > 17, key[0] != cityIncidentMark, key[key.count - 17] == 0,
            let start = readPosition(UnsafeRawBufferPointer(rebasing: key[(key.count - 16)...])),
            let position = readPosition(UnsafeRawBufferPointer(rebasing: key[(key.count - 8)...]))
        else { return nil }
        return (UnsafeRawBufferPointer(rebasing: key[..<(key.count - 17)]), Int64(bitPattern: start ^ (1 << 63)), position)
    }

    /// The first byte of every entry of a city's list of the incidents it does not date in `city-dates`: no
    /// `city-dates` key of a date starts with it (a city id is UTF-8, which never holds 0xFF), so these entries sort
    /// after all of the dates, and a rebuild appends them there.
    static let cityIncidentMark: UInt8 = 0xFF

    /// `0xFF ‖ city id ‖ 0x00 ‖ position`: the entry of an incident reported in a city that the city's dates do not
    /// hold (a retracted one, or one whose date does not read), the position of its report big-endian, so that a
    /// city's entries sort together (no city id holds a 0x00) in the order they were reported. Its value is the
    /// incident id. A city's dates and these entries together list every incident reported in it, each once.
    /// Appended to `key`.
    static func cityIncident(cityId: UnsafeRawBufferPointer, position: UInt64, into key: inout [UInt8]) {
        key.append(cityIncidentMark)
        key.append(contentsOf: cityId)
        key.append(0)
        withUnsafeBytes(of: position.bigEndian) { key.append(contentsOf: $0) }
    }

    /// ``cityIncident(cityId:position:into:)`` of city `cityId`, as a key of its own.
    static func cityIncidentKey(cityId: String, position: UInt64) -> [UInt8] {
        var key: [UInt8] = []
        key.reserveCapacity(cityId.utf8.count + 10)
        var cityId = cityId
        cityId.withUTF8 { cityIncident(cityId: UnsafeRawBufferPointer($0), position: position, into: &key) }
        return key
    }

    /// Where city `cityId`'s entries in its list of the incidents it does not date begin, `0xFF ‖ city id ‖ 0x00`:
    /// each of them starts with it.
    static func cityIncidentPrefix(_ cityId: String) -> [UInt8] {
        [cityIncidentMark] + Array(cityId.utf8) + [0]
    }

    /// The city id and report position of an entry of a city's list of the incidents it does not date; nil when the
    /// key is not one.
    static func readCityIncident(_ key: UnsafeRawBufferPointer) -> (cityId: UnsafeRawBufferPointer, position: UInt64)? {
        guard key.count > 10, key[0] == cityIncidentMark, key[key.count - 9] == 0,
            let position = readPosition(UnsafeRawBufferPointer(rebasing: key[(key.count - 8)...]))
        else { return nil }
        return (UnsafeRawBufferPointer(rebasing: key[1..<(key.count - 9)]), position)
    }

    static let head: [UInt8] = Array("head".utf8)
    static let format: [UInt8] = Array("format".utf8)
    static let projections: [UInt8] = Array("projections".utf8)
    /// SHA-256 of ``Projector/gazetteerInput`` of the gazetteer the projections were last built with.
    static let gazetteer: [UInt8] = Array("gazetteer".utf8)
}

/// SHA-256 helpers for the hash chain.
public enum ChainHash {
    public static let zero = [UInt8](repeating: 0, count: 32)

    /// `SHA-256(prevHash ‖ canonical event bytes)`.
    public static func link(previous: [UInt8], canonical: UnsafeRawBufferPointer) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: previous)
        hasher.update(bufferPointer: canonical)
        // Copied as one buffer: `Array(digest)` walks the digest's iterator, about 2,000 instructions a hash.
        return hasher.finalize().withUnsafeBytes { Array($0) }
    }

    public static func digest(_ bytes: [UInt8]) -> [UInt8] {
        SHA256.hash(data: bytes).withUnsafeBytes { Array($0) }
    }

    /// The 32 bytes of a hash written as 64 hexadecimal digits, in either case (as `status` shows a head hash, or as a
    /// user copied it); nil for anything else.
    public static func bytes(hashHex text: String) -> [UInt8]? {
        bytes(hex: text.lowercased()).flatMap { $0.count == 32 ? $0 : nil }
    }

    /// The bytes that ``hex(_:)`` wrote as `text`; nil when it is not lowercase hex of whole bytes.
    public static func bytes(hex text: String) -> [UInt8]? {
        bytes(hexDigits: Array(text.utf8))
    }

    /// The bytes that ``hex(_:)`` wrote as the UTF-8 `digits`; nil when they are not lowercase hex of whole bytes.
    static func bytes(hexDigits digits: some RandomAccessCollection<UInt8>) -> [UInt8]? {
        guard digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = digits.startIndex
        while i != digits.endIndex {
            let next = digits.index(after: i)
            guard let high = value(digits[i]), let low = value(digits[next]) else { return nil }
            bytes.append(high << 4 | low)
            i = digits.index(after: next)
        }
        return bytes
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
