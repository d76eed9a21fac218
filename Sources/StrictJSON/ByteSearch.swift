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
