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
        let n = literal.utf8CodeUnitCount
        guard index + n <= bytes.count else { return false }
        let start = literal.utf8Start
        for k in 0..<n where bytes[index + k] != start[k] { return false }
        index += n
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
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let key = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                index += 1
                guard consume(UInt8(ascii: ":")) else { return nil }
                return key
            }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            index += 1
        }
        return nil
    }

    /// A string value, unescaped into `buffer` (replacing its contents). Its UTF-8 is not yet validated:
    /// ``string()`` does that.
    @inlinable public mutating func string(into buffer: inout [UInt8]) -> Bool {
        guard consume(UInt8(ascii: "\"")) else { return false }
        buffer.removeAll(keepingCapacity: true)
        var runStart = index
        let count = bytes.count
        while true {
            // Eight bytes at a time while none of them is a quote, a backslash or a control character.
            while index + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                if JSONScanner.needsAttention(word) { break }
                index += 8
            }
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
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let start = index
        let count = bytes.count
        while true {
            while index + 8 <= count {
                let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                if JSONScanner.needsAttention(word) { break }
                index += 8
            }
            guard index < count else { return nil }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return body(UnsafeRawBufferPointer(rebasing: bytes[start..<index - 1]))
            }
            if byte < 0x20 { return nil }
            if byte == UInt8(ascii: "\\") { break }
            index += 1
        }
        // An escape: start again, unescaping into the buffer.
        index = start - 1
        guard string(into: &buffer) else { return nil }
        return buffer.withUnsafeBytes { body($0) }
    }

    /// A string value as a validated `String`.
    @inlinable public mutating func string(buffer: inout [UInt8]) -> String? {
        guard string(into: &buffer) else { return nil }
        return buffer.withUnsafeBytes { JSONScanner.validString($0) }
    }

    @usableFromInline mutating func hex4() -> UInt32? {
        guard index + 4 <= bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// A number, as ``JSONReader`` reads it: `.int` when the lexeme is an integer that fits `Int64`,
    /// otherwise a finite `.double`.
    @inlinable public mutating func number() -> JSONValue? {
        skipWhitespace()
        let start = index
        var isInteger = true
        guard index < bytes.count else { return nil }
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { return nil }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else if isDigit(bytes[index]) {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        } else {
            return nil
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { return nil }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { return nil }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let lexeme = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
        if isInteger, let exact = JSONScanner.integer(lexeme) { return .int(exact) }
        let text = String(decoding: lexeme, as: UTF8.self)
        guard let double = Double(text), double.isFinite else { return nil }
        return .double(double)
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
                    while i + 8 <= count && !JSONScanner.needsAttention(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) {
                        i += 8
                    }
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
        var i = index
        while i + 8 <= count && !JSONScanner.needsAttention(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) {
            i += 8
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

    @usableFromInline @inline(__always) func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

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

    /// Whether any of the eight bytes of `word` is a quote, a backslash or below 0x20.
    @inlinable @inline(__always) public static func needsAttention(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let below20 = (word &- ones &* 0x20) & ~word & highs
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        let quotes = (quote &- ones) & ~quote & highs
        let backslashes = (backslash &- ones) & ~backslash & highs
        return (below20 | quotes | backslashes) != 0
    }
}
