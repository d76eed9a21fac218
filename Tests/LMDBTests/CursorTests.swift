import Foundation
import LMDB
import Testing

/// A helper written once for both transaction kinds.
func lastKey(_ txn: borrowing some ReadableTransaction & ~Copyable, _ db: Database) throws -> UInt64? {
    let cursor = try txn.cursor(db)
    return try cursor.last()?.key.bigEndianUInt64
}

/// A helper written against `ReadTransaction` only.
func firstKey(_ txn: borrowing ReadTransaction, _ db: Database) throws -> UInt64? {
    try txn.cursor(db).first()?.key.bigEndianUInt64
}

@Suite("Keys and cursors")
struct CursorTests {
    /// Keys whose big-endian order differs from their little-endian byte order.
    static let keys: [UInt64] = [0, 1, 2, 255, 256, 257, 65_535, 65_536, 1 << 32, (1 << 40) + 3, UInt64.max - 1]

    @Test("puts through one cursor, in order, out of order and past the end, store what mdb_put stores; noOverwrite refuses a key present")
    func cursorPuts() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("ids", create: true)
            // Enough keys for several pages, so that puts land on the page the cursor stands on, on others, and at
            // the end: first the even keys in order, then the odd ones backwards, then a run past the end.
            let value = [UInt8](repeating: 7, count: 100)
            let order = Array(stride(from: 0, to: 400, by: 2)) + Array(stride(from: 399, to: 0, by: -2)) + Array(400..<500)
            try env.write { txn throws in
                let cursor = try txn.cursor(db)
                for key in order {
                    var text = String(format: "id-%05d", key)
                    try text.withUTF8 { k in
                        try value.withUnsafeBytes { try cursor.put(key: UnsafeRawBufferPointer(k), value: $0, flags: .noOverwrite) }
                    }
                    #expect(try cursor.current()?.key.string == text)
                }
                var present = "id-00201"
                let refusal = #expect(throws: LMDBError.self) {
                    try present.withUTF8 { k in
                        try value.withUnsafeBytes { try cursor.put(key: UnsafeRawBufferPointer(k), value: $0, flags: .noOverwrite) }
                    }
                }
                #expect(refusal?.isKeyExist == true)
            }
            try env.read { txn throws in
                var seen: [String] = []
                try txn.cursor(db).forEach { key, stored in
                    #expect(stored.bytes == value)
                    seen.append(key.string)
                    return true
                }
                #expect(seen == (0..<500).map { String(format: "id-%05d", $0) })
            }
        }
    }

    @Test("big-endian UInt64 keys with .append keep numeric order in cursor scans")
    func appendOrder() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("log", create: true)
            try env.write { txn throws in
                for key in Self.keys {
                    try txn.put(db, key: key, value: Array("v\(key)".utf8), flags: .append)
                }
            }
            try env.read { txn throws in
                // Manual cursor walk, forwards and backwards.
                let cursor = try txn.cursor(db)
                var seen: [UInt64] = []
                var entry = try cursor.first()
                while let (key, value) = entry {
                    let k = try #require(key.bigEndianUInt64)
                    #expect(value.string == "v\(k)")
                    seen.append(k)
                    entry = try cursor.next()
                }
                #expect(seen == Self.keys)

                var backwards: [UInt64] = []
                entry = try cursor.last()
                while let (key, _) = entry {
                    backwards.append(try #require(key.bigEndianUInt64))
                    entry = try cursor.previous()
                }
                #expect(backwards == Self.keys.reversed())

                // Seeks.
                #expect(try cursor.seek(atOrAfter: UInt64(3))?.key.bigEndianUInt64 == 255)
                #expect(try cursor.seek(atOrAfter: UInt64(256))?.key.bigEndianUInt64 == 256)
                #expect(try cursor.seek(atOrAfter: UInt64.max) == nil)
                #expect(try cursor.seek(atOrBefore: UInt64(3))?.key.bigEndianUInt64 == 2)
                #expect(try cursor.seek(atOrBefore: UInt64(65_536))?.key.bigEndianUInt64 == 65_536)
                #expect(try cursor.seek(atOrBefore: UInt64.max)?.key.bigEndianUInt64 == UInt64.max - 1)
                #expect(try cursor.seek(exactly: UInt64(257))?.value.string == "v257")
                #expect(try cursor.current()?.key.bigEndianUInt64 == 257)
                #expect(try cursor.seek(exactly: UInt64(258)) == nil)

                // forEach from a start key, both directions, with early stop.
                var fromKeys: [UInt64] = []
                try txn.forEach(db, from: UInt64(256)) { key, _ in
                    fromKeys.append(key.bigEndianUInt64 ?? 0)
                    return fromKeys.count < 3
                }
                #expect(fromKeys == [256, 257, 65_535])
                var reverseKeys: [UInt64] = []
                try txn.forEach(db, from: UInt64(300), reverse: true) { key, _ in
                    reverseKeys.append(key.bigEndianUInt64 ?? 0)
                    return true
                }
                #expect(reverseKeys == [257, 256, 255, 2, 1, 0])
                var all = 0
                try txn.forEach(db) { _, _ in all += 1; return true }
                #expect(all == Self.keys.count)

                #expect(try lastKey(txn, db) == UInt64.max - 1)
                #expect(try firstKey(txn, db) == 0)
            }
            try env.write { txn throws in
                #expect(try lastKey(txn, db) == UInt64.max - 1)
                #expect(try txn.withReadView { try firstKey($0, db) } == 0)
            }
        }
    }

    @Test(".append with a smaller or equal key fails with MDB_KEYEXIST and aborts the write")
    func appendOutOfOrder() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("log", create: true)
            try env.write { txn in try txn.put(db, key: UInt64(10), value: [10], flags: .append) }
            for bad: UInt64 in [5, 10] {
                do {
                    try env.write { txn throws in
                        try txn.put(db, key: UInt64(11), value: [11], flags: .append)
                        try txn.put(db, key: bad, value: [0], flags: .append)
                    }
                    Issue.record("append of \(bad) after 11 succeeded")
                } catch let error as LMDBError {
                    #expect(error.isKeyExist)
                    #expect(error.function == "mdb_put")
                }
            }
            try env.read { txn throws in
                #expect(try txn.count(db) == 1)
                #expect(try txn.get(db, key: UInt64(10))?.bytes == [10])
                #expect(try txn.get(db, key: UInt64(11)) == nil)
            }
        }
    }

    @Test(".noOverwrite on an existing key fails with isKeyExist and keeps the old value")
    func noOverwrite() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("ids", create: true)
            try env.write { txn in try txn.put(db, key: "id-1", value: Data([1]), flags: .noOverwrite) }
            do {
                try env.write { txn in try txn.put(db, key: "id-1", value: Data([2]), flags: .noOverwrite) }
                Issue.record("duplicate put with .noOverwrite succeeded")
            } catch let error as LMDBError where error.isKeyExist {
                #expect(error.errorCode == .keyExist)
            }
            #expect(try env.read { try $0.get(db, key: "id-1")?.bytes } == [1])
        }
    }

    @Test("a cursor can delete while scanning in a write transaction")
    func cursorDelete() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("log", create: true)
            try env.write { txn throws in
                for i in 0..<10 as Range<UInt64> { try txn.put(db, key: i, value: [UInt8(i)], flags: .append) }
            }
            try env.write { txn throws in
                let cursor = try txn.cursor(db)
                var entry = try cursor.first()
                while let (key, _) = entry {
                    if let k = key.bigEndianUInt64, k % 2 == 0 { try cursor.deleteCurrent() }
                    entry = try cursor.next()
                }
                cursor.close()
            }
            var left: [UInt64] = []
            try env.read { txn throws in
                try txn.forEach(db) { key, _ in left.append(key.bigEndianUInt64 ?? 99); return true }
            }
            #expect(left == [1, 3, 5, 7, 9])
        }
    }

    @Test("integer-key databases order native integers")
    func integerKeys() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("ints", create: true, integerKeys: true)
            try env.write { txn throws in
                for k: UInt in [300, 2, 70_000, 1] {
                    try withUnsafeBytes(of: k) { try txn.put(db, key: $0, value: [1]) }
                }
            }
            var keys: [UInt] = []
            try env.read { txn throws in
                try txn.forEach(db) { key, _ in keys.append(key.loadUnaligned(as: UInt.self)); return true }
            }
            #expect(keys == [1, 2, 300, 70_000])
        }
    }
}
