#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pull scanner over JSON bytes for decoders that know the shape they expect and want to skip building a
/// ``JSONValue`` tree: it hands out keys, strings, numbers and literals one at a time, following the same rules
/// as ``JSONReader`` for each (strict strings, UTF-8 validated, numbers kept exact as `Int64` when they fit).
///
/// It does not check what only the whole document can show (duplicate keys, trailing bytes, nesting depth):
/// a decoder built on it answers `nil` whenever anything is unusual, and its caller then reads the input with
/// ``JSONReader``, which also produces the exact error. Every method returns `nil`/`false` on anything it does
/// not accept, and the scanner is then in an unspecified position.
public struct JSONScanner {
    public let bytes: UnsafeRawBufferPointer
    public var index: Int

    @inlinable public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        index = 0
    }

    @inlinable @inline(__always) public mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// The next byte after whitespace, not consumed.
    @inlinable @inline(__always) public mutating func peek() -> UInt8? {
        skipWhitespace()
        return index < bytes.count ? bytes[index] : nil
    }

    /// Consumes `byte` after whitespace, if it is next.
    @inlinable @inline(__always) public mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// Consumes `literal` if the bytes at the cursor are exactly it (no whitespace skipped): for decoders of a
    /// canonical form, whose member names and separators are known in advance.
    @inlinable @inline(__always) public mutating func literal(_ literal: StaticString) -> Bool {
        guard JSONScanner.matches(bytes, at: index, literal) else { return false }
        index += literal.utf8CodeUnitCount
        return true
    }

    /// Whether the bytes at `offset` are `literal`'s, compared eight at a time.
    @inlinable @inline(__always) public static func matches(_ bytes: UnsafeRawBufferPointer, at offset: Int, _ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard offset >= 0, offset + n <= bytes.count else { return false }
        let expected = UnsafeRawPointer(literal.utf8Start)
        var k = 0
        while k + 8 <= n {
            guard bytes.loadUnaligned(fromByteOffset: offset + k, as: UInt64.self)
                == expected.loadUnaligned(fromByteOffset: k, as: UInt64.self)
            else { return false }
            k += 8
        }
        while k < n {
            guard bytes[offset + k] == expected.load(fromByteOffset: k, as: UInt8.self) else { return false }
            k += 1
        }
        return true
    }

    /// Whether only whitespace is left.
    @inlinable public mutating func atEnd() -> Bool {
        skipWhitespace()
        return index == bytes.count
    }

    /// An object key and the `:` after it. Keys with escapes are refused (nil), since they are not what a
    /// decoder matching raw key bytes would expect.
    @inlinable public mutating func key() -> UnsafeRawBufferPointer? {
        guard let key = rawString(), consume(UInt8(ascii: ":")) else { return nil }
        return key
    }

    /// A string value, unescaped into `buffer` (replacing its contents). Its UTF-8 is not yet validated:
    /// ``string()`` does that.
    @inlinable public mutating func string(into buffer: inout [UInt8]) -> Bool {
        guard consume(UInt8(ascii: "\"")) else { return false }
        buffer.removeAll(keepingCapacity: true)
        var runStart = index
        let count = bytes.count
        while true {
            index = JSONScanner.plainRunEnd(bytes, from: index)
            guard index < count else { return false }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
                index += 1
                return true
            }
            if byte < 0x20 { return false }
            if byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<index]))
            index += 1
            guard index < count else { return false }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): buffer.append(0x22)
            case UInt8(ascii: "\\"): buffer.append(0x5C)
            case UInt8(ascii: "/"): buffer.append(0x2F)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalarValue = hex4() else { return false }
                if (0xD800...0xDBFF).contains(scalarValue) {
                    guard index + 1 < count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        return false
                    }
                    index += 2
                    guard let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return false }
                    scalarValue = 0x10000 + ((scalarValue - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalarValue) {
                    return false
                }
                guard let scalar = Unicode.Scalar(scalarValue) else { return false }
                UTF8.encode(scalar) { buffer.append($0) }
            default:
                return false
            }
            runStart = index
        }
    }

    /// Calls `body` with a string value's bytes: the input's own bytes when the string has no escapes (nothing
    /// is copied), otherwise its unescaped bytes in `buffer`. Their UTF-8 is not yet validated. Nil when there is
    /// no valid string here.
    @inlinable public mutating func withStringBytes<T>(buffer: inout [UInt8], _ body: (UnsafeRawBufferPointer) -> T?) -> T? {
        withStringBytes(buffer: &buffer) { bytes, _, _ in body(bytes) }
    }

    /// ``withStringBytes(buffer:_:)``, telling `body` too whether the string stood in the input as it is
    /// (`verbatim`: it had no escapes, so it holds no control character, quote or backslash) and, when it did,
    /// whether its bytes are all ASCII (`ascii`; false for a string with escapes).
    @inlinable public mutating func withStringBytes<T>(
        buffer: inout [UInt8], _ body: (UnsafeRawBufferPointer, _ verbatim: Bool, _ ascii: Bool) -> T?
    ) -> T? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let bytes = self.bytes
        let start = index
        let count = bytes.count
        var i = start
        // The bytes before the end ORed together: their top bits are clear when they are all ASCII.
        var union: UInt64 = 0
        while true {
            // To the first byte that needs attention: two words at a time, then one, jumping to the byte itself.
            if i + 16 <= count {
                let a = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                let b = bytes.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                if JSONScanner.attentionBits(a) | JSONScanner.attentionBits(b) == 0 {
                    union |= a | b
                    i += 16
                    continue
                }
            }
            if i + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                let bits = JSONScanner.attentionBits(word)
                if bits == 0 {
                    union |= word
                    i += 8
                    continue
                }
                let before = bits.trailingZeroBitCount & ~7
                union |= word & ((1 << before) &- 1)
                i += before >> 3
            } else {
                while i < count {
                    let byte = bytes[i]
                    if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { break }
                    union |= UInt64(byte)
                    i += 1
                }
                guard i < count else { return nil }
            }
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                index = i + 1
                return body(UnsafeRawBufferPointer(rebasing: bytes[start..<i]), true, union & 0x8080_8080_8080_8080 == 0)
            }
            if byte == UInt8(ascii: "\\") { break }
            return nil
        }
        // An escape: start again, unescaping into the buffer.
        index = start - 1
        guard string(into: &buffer) else { return nil }
        return buffer.withUnsafeBytes { body($0, false, false) }
    }

    /// A string value as a validated `String`.
    @inlinable public mutating func string(buffer: inout [UInt8]) -> String? {
        guard string(into: &buffer) else { return nil }
        return buffer.withUnsafeBytes { JSONScanner.validString($0) }
    }

    @usableFromInline mutating func hex4() -> UInt32? { Self.hex4(in: bytes, at: &index) }

    /// The four hex digits of a `\u` escape at `index` of `bytes`, moving `index` past them; nil when there are not
    /// four there.
    @usableFromInline @inline(__always) static func hex4(in bytes: UnsafeRawBufferPointer, at index: inout Int) -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = hexDigit(bytes[index]) else { return nil }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// A number, as ``JSONReader`` reads it: `.int` when the lexeme is an integer that fits `Int64`,
    /// otherwise a finite `.double`.
    @inlinable public mutating func number() -> JSONValue? {
        skipWhitespace()
        let lexed = JSONScanner.lexNumber(bytes, from: index)
        guard lexed.problem == nil else { return nil }
        let lexeme = UnsafeRawBufferPointer(rebasing: bytes[index..<lexed.end])
        index = lexed.end
        return JSONScanner.numberValue(lexeme, isInteger: lexed.isInteger)
    }

    /// A number that is an `Int64`, as ``JSONValue/intValue`` would give it.
    @inlinable public mutating func integer() -> Int64? {
        number()?.intValue
    }

    /// `true`, `false` or `null`: `.bool` or `.null`.
    @inlinable public mutating func literal() -> JSONValue? {
        skipWhitespace()
        func match(_ text: StaticString) -> Bool {
            let n = text.utf8CodeUnitCount
            guard index + n <= bytes.count else { return false }
            for i in 0..<n where bytes[index + i] != text.utf8Start[i] { return false }
            index += n
            return true
        }
        guard index < bytes.count else { return nil }
        switch bytes[index] {
        case UInt8(ascii: "t"): return match("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return match("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return match("null") ? .null : nil
        default: return nil
        }
    }

    /// Consumes `null` if it is next.
    @inlinable public mutating func null() -> Bool {
        guard peek() == UInt8(ascii: "n") else { return false }
        return literal() == .null
    }

    /// Moves past one value of any kind without interpreting it, and returns its bytes. Only the structure
    /// is followed (strings, brackets); read the bytes with ``JSONReader`` to validate them.
    @inlinable public mutating func skipValue() -> UnsafeRawBufferPointer? {
        skipWhitespace()
        let bytes = self.bytes
        let count = bytes.count
        let start = index
        var i = index
        var depth = 0
        defer { index = i }
        while i < count {
            let byte = bytes[i]
            switch byte {
            case UInt8(ascii: "\""):
                i += 1
                while true {
                    i = JSONScanner.plainRunEnd(bytes, from: i)
                    guard i < count else { return nil }
                    let b = bytes[i]
                    i += 1
                    if b == UInt8(ascii: "\"") { break }
                    if b == UInt8(ascii: "\\") { i += 1 }
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                i += 1
                continue
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard depth > 0 else { return nil }
                depth -= 1
                i += 1
            default:
                if depth == 0 && JSONScanner.endsScalar(byte) { return UnsafeRawBufferPointer(rebasing: bytes[start..<i]) }
                i += 1
                continue
            }
            if depth == 0 {
                // A string or a container just ended at the top: the value is complete, unless a scalar goes on.
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") {
                    return UnsafeRawBufferPointer(rebasing: bytes[start..<i])
                }
            }
        }
        return depth == 0 && i > start ? UnsafeRawBufferPointer(rebasing: bytes[start..<i]) : nil
    }

    /// A string value's own bytes, when it has no escapes; nil otherwise (or when there is no valid string).
    @inlinable public mutating func rawString() -> UnsafeRawBufferPointer? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let bytes = self.bytes
        let count = bytes.count
        let start = index
        var i = start
        // Word by word up to the first byte that needs attention, then byte by byte.
        while i + 8 <= count {
            let offset = JSONScanner.attentionOffset(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            i += offset
            if offset < 8 { break }
        }
        while i < count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                index = i + 1
                return UnsafeRawBufferPointer(rebasing: bytes[start..<i])
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            i += 1
        }
        return nil
    }

    /// `bytes` as a `String` if they are valid UTF-8.
    @inlinable @inline(__always) public static func validString(_ bytes: UnsafeRawBufferPointer) -> String? {
        let string = String(decoding: bytes, as: UTF8.self)
        // Decoding replaces each invalid sequence with U+FFFD, which changes the bytes.
        var same = true
        var copy = string
        copy.withUTF8 { utf8 in
            same = utf8.count == bytes.count && (utf8.count == 0 || memcmp(utf8.baseAddress!, bytes.baseAddress!, utf8.count) == 0)
        }
        return same ? string : nil
    }

    @usableFromInline @inline(__always) static func endsScalar(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: ":"), 0x20, 0x09, 0x0A, 0x0D: return true
        default: return false
        }
    }

    @usableFromInline @inline(__always) static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// The value of a hexadecimal digit, either case.
    @usableFromInline @inline(__always) static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The JSON number starting at `start` (RFC 8259's grammar, no leading whitespace): where it ends and
    /// whether it is an integer lexeme; or, when it is not a number, why, with `end` where the grammar failed.
    /// ``JSONReader`` and ``number()`` both read numbers with it.
    @usableFromInline static func lexNumber(
        _ bytes: UnsafeRawBufferPointer, from start: Int
    ) -> (end: Int, isInteger: Bool, problem: String?) {
        let count = bytes.count
        var i = start
        var isInteger = true
        guard i < count else { return (i, false, "unexpected end of input in a number") }
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard i < count else { return (i, false, "unexpected end of input in a number") }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
        } else if isDigit(bytes[i]) {
            while i < count, isDigit(bytes[i]) { i += 1 }
        } else {
            return (i, false, "invalid number")
        }
        if i < count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            guard i < count, isDigit(bytes[i]) else { return (i, false, "expected a digit after '.'") }
            while i < count, isDigit(bytes[i]) { i += 1 }
        }
        if i < count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < count, isDigit(bytes[i]) else { return (i, false, "expected a digit in an exponent") }
            while i < count, isDigit(bytes[i]) { i += 1 }
        }
        return (i, isInteger, nil)
    }

    /// A number lexeme's value: `.int` when it is an integer that fits `Int64`, otherwise a finite `.double`;
    /// nil when it is out of `Double`'s range.
    @usableFromInline static func numberValue(_ lexeme: UnsafeRawBufferPointer, isInteger: Bool) -> JSONValue? {
        if isInteger, let exact = integer(lexeme) { return .int(exact) }
        guard let double = Double(String(decoding: lexeme, as: UTF8.self)), double.isFinite else { return nil }
        return .double(double)
    }

    @usableFromInline static func integer(_ lexeme: UnsafeRawBufferPointer) -> Int64? {
        var negative = false
        var i = 0
        if lexeme[0] == UInt8(ascii: "-") {
            negative = true
            i = 1
        }
        var value: Int64 = 0
        while i < lexeme.count {
            let digit = Int64(lexeme[i] - UInt8(ascii: "0"))
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) =
                negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
            if overflow1 || overflow2 { return nil }
            value = next
            i += 1
        }
        return value
    }

    /// Where the run of bytes from `i` that need no attention (no quote, backslash or control character) may
    /// end, found eight bytes at a time: the first word that holds such a byte starts there, or fewer than eight
    /// bytes are left. The bytes from there on are for the caller to look at one by one.
    @inlinable @inline(__always) public static func plainRunEnd(_ bytes: UnsafeRawBufferPointer, from i: Int) -> Int {
        var i = i
        while i + 8 <= bytes.count && !needsAttention(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) {
            i += 8
        }
        return i
    }

    /// Whether any of the eight bytes of `word` is a quote, a backslash or below 0x20.
    @inlinable @inline(__always) public static func needsAttention(_ word: UInt64) -> Bool {
        attentionBits(word) != 0
    }

    /// Where the first quote, backslash or control character of `word` is (little-endian byte order), or 8 when
    /// it has none.
    @inlinable @inline(__always) public static func attentionOffset(_ word: UInt64) -> Int {
        attentionBits(word).trailingZeroBitCount >> 3
    }

    /// The high bit of each byte of `word` that is a quote, a backslash or below 0x20 (each zero-byte test is
    /// exact for its lowest hit, so the lowest bit set is exact too).
    @inlinable @inline(__always) static func attentionBits(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let below20 = (word &- ones &* 0x20) & ~word & highs
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let quotes = (quote &- ones) & ~quote & highs
        let backslashes = (backslash &- ones) & ~backslash & highs
        return below20 | quotes | backslashes
    }
}
