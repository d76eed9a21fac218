#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes bytes into memory of a fixed size that its caller lends it, and counts every byte it is given, those
/// that did not fit too (it drops them): after one pass, ``count`` is the exact size of the output, and a caller
/// whose memory was too small (``fits`` is false) writes again into that many bytes.
///
/// It is for writing canonical JSON into memory at hand (a buffer on the stack, an array's storage), without the
/// uniqueness and capacity checks an array makes on every append. The memory must stay valid while
/// the writer is used; the writer never reads it.
public struct BoundedByteWriter {
    @usableFromInline let base: UnsafeMutablePointer<UInt8>
    @usableFromInline let capacity: Int
    /// The bytes written so far, including those that did not fit.
    @inlinable public var count: Int { written }
    @usableFromInline var written: Int

    /// A writer into `memory`, from its start.
    @inlinable public init(_ memory: UnsafeMutableBufferPointer<UInt8>) {
        // An empty buffer may have no address: any non-nil one will do, since nothing is written to it.
        base = memory.baseAddress ?? UnsafeMutablePointer(bitPattern: 1)!
        capacity = memory.count
        written = 0
    }

    /// Whether everything written so far fits the memory.
    @inlinable public var fits: Bool { written <= capacity }

    @inlinable @inline(__always) public mutating func append(_ byte: UInt8) {
        if written < capacity { base[written] = byte }
        written += 1
    }

    /// Appends `n` bytes from `bytes`.
    @inlinable @inline(__always) public mutating func append(_ bytes: UnsafeRawPointer, count n: Int) {
        if n <= capacity - written { (base + written).update(from: bytes.assumingMemoryBound(to: UInt8.self), count: n) }
        written += n
    }

    @inlinable @inline(__always) public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if let start = bytes.baseAddress { append(start, count: bytes.count) }
    }

    @inlinable @inline(__always) public mutating func append(_ text: StaticString) {
        append(UnsafeRawPointer(text.utf8Start), count: text.utf8CodeUnitCount)
    }

    /// Appends the UTF-8 bytes `bytes` as a JSON string literal, escaped as ``JSONValue/writeString(utf8:into:)``
    /// escapes them.
    @inlinable public mutating func appendJSONString(utf8 bytes: UnsafeRawBufferPointer) {
        append(UInt8(ascii: "\""))
        guard let start = bytes.baseAddress else {
            append(UInt8(ascii: "\""))
            return
        }
        let n = bytes.count
        var runStart = 0
        var i = 0
        while true {
            // To the next byte that needs escaping: two words at a time, then one, jumping to the byte itself.
            if i + 16 <= n {
                let a = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                let b = bytes.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                if JSONScanner.attentionBits(a) | JSONScanner.attentionBits(b) == 0 {
                    i += 16
                    continue
                }
            }
            if i + 8 <= n {
                let bits = JSONScanner.attentionBits(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                if bits == 0 {
                    i += 8
                    continue
                }
                i += bits.trailingZeroBitCount >> 3
            } else {
                while i < n {
                    let byte = bytes[i]
                    if byte < 0x20 || byte == 0x22 || byte == 0x5C { break }
                    i += 1
                }
                if i == n { break }
            }
            append(start + runStart, count: i - runStart)
            appendEscaped(bytes[i])
            i += 1
            runStart = i
        }
        append(start + runStart, count: n - runStart)
        append(UInt8(ascii: "\""))
    }

    /// `string` as a JSON string literal.
    @inlinable public mutating func appendJSONString(_ string: String) {
        let done: Void? = string.utf8.withContiguousStorageIfAvailable { appendJSONString(utf8: UnsafeRawBufferPointer($0)) }
        if done == nil {
            var copy = string
            copy.withUTF8 { appendJSONString(utf8: UnsafeRawBufferPointer($0)) }
        }
    }

    /// The escape of a quote, a backslash or a control character.
    @usableFromInline mutating func appendEscaped(_ byte: UInt8) {
        append(0x5C)
        switch byte {
        case UInt8(ascii: "\""): append(0x22)
        case UInt8(ascii: "\\"): append(0x5C)
        case 0x0A: append(UInt8(ascii: "n"))
        case 0x0D: append(UInt8(ascii: "r"))
        case 0x09: append(UInt8(ascii: "t"))
        case 0x08: append(UInt8(ascii: "b"))
        case 0x0C: append(UInt8(ascii: "f"))
        default:
            let hex: StaticString = "0123456789abcdef"
            append(UInt8(ascii: "u"))
            append(UInt8(ascii: "0"))
            append(UInt8(ascii: "0"))
            append(hex.utf8Start[Int(byte >> 4)])
            append(hex.utf8Start[Int(byte & 0xF)])
        }
    }

    /// `value` in decimal, as ``JSONValue/writeInteger(_:into:)`` writes it.
    @inlinable public mutating func appendInteger(_ value: Int64) {
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch, enough for a sign and 20 digits
        withUnsafeMutableBytes(of: &digits) { scratch in
            var at = scratch.count
            repeat {
                at -= 1
                scratch[at] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 {
                at -= 1
                scratch[at] = UInt8(ascii: "-")
            }
            append(UnsafeRawBufferPointer(rebasing: scratch[at...]))
        }
    }
}
