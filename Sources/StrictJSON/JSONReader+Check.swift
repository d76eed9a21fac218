extension JSONReader {
    /// Where the values of the members `first` and `second` of the top-level object of `bytes` are written (as
    /// ``read(_:locating:)`` finds one), found without building a value, once the bytes are known to be a JSON value
    /// that ``read(_:)`` accepts; nil when they are not, and also for a few things `read` accepts that this check
    /// leaves to it: a key with an escape or a byte other than ASCII, and more than 128 keys in the objects open at
    /// once. So a value it accepts is one `read` accepts, and for nil the caller reads the bytes with `read`, which
    /// gives the value or the error. For bytes of which only a member or two are wanted: a `read` filtered by a
    /// stored event's `type` or incident.
    public func check(_ bytes: UnsafeRawBufferPointer, locating first: StaticString, _ second: StaticString)
        -> (first: Range<Int>?, second: Range<Int>?)?
    {
        let keys = UnsafeMutableBufferPointer<Range<Int>>.allocate(capacity: Checker.maxKeys)
        defer { keys.deallocate() }
        var checker = Checker(bytes: bytes, maxDepth: maxDepth, first: first, second: second, keys: keys)
        checker.skipWhitespace()
        guard checker.value(depth: 0) else { return nil }
        checker.skipWhitespace()
        guard checker.index == bytes.count else { return nil }
        return (checker.firstRange, checker.secondRange)
    }
}

/// ``JSONReader/check(_:locating:_:)``'s walk: `Parser`'s, step by step, with nothing built; the keys of the
/// objects still open are kept as where they are in the input, to find duplicates.
private struct Checker {
    static let maxKeys = 128

    let bytes: UnsafeRawBufferPointer
    let maxDepth: Int
    let first: StaticString
    let second: StaticString
    var index = 0
    var firstRange: Range<Int>?
    var secondRange: Range<Int>?
    /// Where the keys of the objects still open are in `bytes` (between their quotes); the first `keyCount`.
    let keys: UnsafeMutableBufferPointer<Range<Int>>
    var keyCount = 0

    init(
        bytes: UnsafeRawBufferPointer, maxDepth: Int, first: StaticString, second: StaticString,
        keys: UnsafeMutableBufferPointer<Range<Int>>
    ) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.first = first
        self.second = second
        self.keys = keys
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func value(depth: Int) -> Bool {
        guard index < bytes.count else { return false }
        switch bytes[index] {
        case UInt8(ascii: "{"): return object(depth: depth + 1)
        case UInt8(ascii: "["): return array(depth: depth + 1)
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        default: return false
        }
    }

    mutating func literal(_ literal: StaticString) -> Bool {
        guard JSONScanner.matches(bytes, at: index, literal) else { return false }
        index += literal.utf8CodeUnitCount
        return true
    }

    mutating func number() -> Bool {
        let start = index
        let lexed = JSONScanner.lexNumber(bytes, from: start)
        index = lexed.end
        guard lexed.problem == nil else { return false }
        // An integer of up to 18 digits always fits; a longer one or a fraction is read as `read` reads it.
        if lexed.isInteger && index - start <= 18 { return true }
        return JSONScanner.numberValue(UnsafeRawBufferPointer(rebasing: bytes[start..<index]), isInteger: lexed.isInteger) != nil
    }

    mutating func object(depth: Int) -> Bool {
        guard depth <= maxDepth else { return false }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return true
        }
        let firstKey = keyCount
        defer { keyCount = firstKey }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\""), keyCount < Checker.maxKeys,
                let key = asciiKey()
            else { return false }
            for k in firstKey..<keyCount where same(keys[k], key) { return false }
            keys[keyCount] = key
            keyCount += 1
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return false }
            index += 1
            skipWhitespace()
            let valueStart = index
            guard value(depth: depth) else { return false }
            if depth == 1 {
                if isName(key, first) { firstRange = valueStart..<index }
                if isName(key, second) { secondRange = valueStart..<index }
            }
            skipWhitespace()
            guard index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return true
            default: return false
            }
        }
    }

    mutating func array(depth: Int) -> Bool {
        guard depth <= maxDepth else { return false }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return true
        }
        while true {
            skipWhitespace()
            guard value(depth: depth) else { return false }
            skipWhitespace()
            guard index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return true
            default: return false
            }
        }
    }

    /// Two ASCII keys are one key to `read`'s dictionary exactly when their bytes are equal.
    func same(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where bytes[a.lowerBound + i] != bytes[b.lowerBound + i] { return false }
        return true
    }

    func isName(_ key: Range<Int>, _ name: StaticString) -> Bool {
        guard key.count == name.utf8CodeUnitCount else { return false }
        let start = name.utf8Start
        for i in 0..<key.count where bytes[key.lowerBound + i] != start[i] { return false }
        return true
    }

    /// A key of printable ASCII without escapes, where it is between its quotes; nil for any other.
    mutating func asciiKey() -> Range<Int>? {
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return start..<index - 1
            }
            guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// A string value, as `Parser.parseString` reads it: no raw control character, valid escapes (surrogates in
    /// pairs), and valid UTF-8, checked in the runs between escapes (an escape's backslash is ASCII, so no
    /// character spans one).
    mutating func string() -> Bool {
        index += 1
        var run = index
        while true {
            index = JSONScanner.plainRunEnd(bytes, from: index)
            guard index < bytes.count else { return false }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                guard Checker.validUTF8(bytes, run..<index) else { return false }
                index += 1
                return true
            }
            if byte < 0x20 { return false }
            if byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            guard Checker.validUTF8(bytes, run..<index) else { return false }
            index += 1
            guard index < bytes.count else { return false }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                break
            case UInt8(ascii: "u"):
                guard let scalarValue = hex4() else { return false }
                if (0xD800...0xDBFF).contains(scalarValue) {
                    guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                    else { return false }
                    index += 2
                    guard let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return false }
                } else if (0xDC00...0xDFFF).contains(scalarValue) {
                    return false
                }
            default:
                return false
            }
            run = index
        }
    }

    mutating func hex4() -> UInt32? { JSONScanner.hex4(in: bytes, at: &index) }

    /// Whether `range` of `bytes` is well-formed UTF-8 (the Unicode Standard's table 3-7: no overlong form, no
    /// surrogate, nothing past U+10FFFF), as `String(validating:)` takes it.
    static func validUTF8(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        @inline(__always) func continuation(_ i: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) -> Bool {
            i < range.upperBound && bytes[i] >= low && bytes[i] <= high
        }
        var i = range.lowerBound
        while i < range.upperBound {
            if i + 8 <= range.upperBound, bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                i += 8
                continue
            }
            let lead = bytes[i]
            switch lead {
            case 0x00...0x7F:
                i += 1
            case 0xC2...0xDF:
                guard continuation(i + 1) else { return false }
                i += 2
            case 0xE0:
                guard continuation(i + 1, 0xA0), continuation(i + 2) else { return false }
                i += 3
            case 0xE1...0xEC, 0xEE...0xEF:
                guard continuation(i + 1), continuation(i + 2) else { return false }
                i += 3
            case 0xED:
                guard continuation(i + 1, 0x80, 0x9F), continuation(i + 2) else { return false }
                i += 3
            case 0xF0:
                guard continuation(i + 1, 0x90), continuation(i + 2), continuation(i + 3) else { return false }
                i += 4
            case 0xF1...0xF3:
                guard continuation(i + 1), continuation(i + 2), continuation(i + 3) else { return false }
                i += 4
            case 0xF4:
                guard continuation(i + 1, 0x80, 0x8F), continuation(i + 2), continuation(i + 3) else { return false }
                i += 4
            default:
                return false
            }
        }
        return true
    }
}
