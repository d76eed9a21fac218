#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes that no page holds: a fixed pseudo-random sequence.
public func garbage(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 33)
    }
}

/// Overwrites page `page` of the LMDB file at `path` with `bytes` (at `offset` within the page), as a bad sector or
/// a stray write would; the file's environment must be closed.
public func overwrite(page: Int, of path: String, pageSize: Int, offset: Int = 0, with bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY)
    guard fd >= 0 else { throw PageWriteFailure(reason: "open \(path): \(errno)") }
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(page * pageSize + offset)) }
    guard written == bytes.count else { throw PageWriteFailure(reason: "pwrite \(path): \(errno)") }
}

/// Why ``overwrite(page:of:pageSize:offset:with:)`` could not write.
public struct PageWriteFailure: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
