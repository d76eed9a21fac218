#if canImport(Glibc)
import Glibc
#endif

extension UnsafeRawBufferPointer {
    /// Where `pattern` first occurs in these bytes at or after `start`, or nil. For finding a member in canonical
    /// JSON without reading it into a tree: a string holds no unescaped quote, so a quoted key found this way is
    /// a key, not text.
    public func firstOffset(of pattern: [UInt8], from start: Int = 0) -> Int? {
        guard let first = pattern.first, let base = baseAddress else { return nil }
        var at = start
        while at + pattern.count <= count, let hit = memchr(base + at, Int32(first), count - pattern.count + 1 - at) {
            let offset = base.distance(to: UnsafeRawPointer(hit))
            if memcmp(base + offset, pattern, pattern.count) == 0 { return offset }
            at = offset + 1
        }
        return nil
    }
}

extension UnsafeRawBufferPointer {
    /// Where the first byte below 0x20 (a control character: a line feed, a tab, a NUL) lies in these bytes, or nil.
    /// Canonical JSON escapes every one of them inside a string and writes none between values, so one found is
    /// damage, and a line made of these bytes would break JSON-lines framing at a line feed. Eight bytes at a time.
    public func firstControlByte() -> Int? {
        let n = count
        var i = 0
        while i + 8 <= n {
            let word = loadUnaligned(fromByteOffset: i, as: UInt64.self)
            // Per byte, without a carry into the next: (byte & 0x7F) + 0x60 reaches 0x80 when its low seven bits
            // are 0x20 or more; with the byte's own 0x80 bit, that bit is clear exactly for a byte below 0x20.
            let below = ((word & 0x7F7F_7F7F_7F7F_7F7F) &+ 0x6060_6060_6060_6060) | word
            let low = ~below & 0x8080_8080_8080_8080
            if low != 0 { return i + low.trailingZeroBitCount >> 3 }
            i += 8
        }
        while i < n {
            if self[i] < 0x20 { return i }
            i += 1
        }
        return nil
    }
}
