import Foundation
import LMDB

/// A fresh directory under the system temporary directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("lmdb-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url.path)
}

/// Creates `name` inside `parent` and returns its path.
func makeDirectory(_ parent: String, _ name: String) throws -> String {
    let path = parent + "/" + name
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

extension UnsafeRawBufferPointer {
    /// A copy, for assertions only (the module itself never copies).
    var bytes: [UInt8] { Array(self) }
    var string: String { String(decoding: self, as: UTF8.self) }
    /// Decodes an 8-byte big-endian key.
    var bigEndianUInt64: UInt64? {
        guard count == 8 else { return nil }
        return reduce(0) { $0 << 8 | UInt64($1) }
    }
}

struct TestFailure: Error, Equatable {
    let reason: String
}

/// A lock-protected list of errors collected from several threads.
final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func add(_ message: String) { lock.withLock { storage.append(message) } }
    var all: [String] { lock.withLock { storage } }
}
