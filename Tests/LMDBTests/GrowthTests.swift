import Foundation
import LMDB
import Testing

@Suite("Map growth")
struct GrowthTests {
    static let mib = 1 << 20
    static let small = EnvironmentOptions(initialMapSize: 1 << 20, maxMapSize: 8 << 20)

    @Test("writing 4 MiB into a 1 MiB map grows it and re-runs the body")
    func growsUpToCeiling() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: Self.small)
            #expect(env.mapSize == Self.mib)
            let db = try env.openDatabase("blobs", create: true)
            let value = [UInt8](repeating: 0xAB, count: 64 << 10)
            var runs = 0
            // 4 MiB in one transaction: must hit MDB_MAP_FULL and be retried.
            try env.write { txn throws in
                runs += 1
                for i in 0..<64 as Range<UInt64> { try txn.put(db, key: i, value: value, flags: .append) }
            }
            #expect(runs > 1)
            #expect(env.mapSize > Self.mib)
            #expect(env.mapSize <= 8 * Self.mib)
            try env.read { txn throws in
                #expect(try txn.count(db) == 64)
                #expect(try txn.get(db, key: UInt64(63))?.bytes == value)
            }
        }
    }

    @Test("a body that wraps the map-full error still triggers growth")
    func wrappedMapFull() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: Self.small)
            let db = try env.openDatabase("blobs", create: true)
            let value = [UInt8](repeating: 1, count: 64 << 10)
            var runs = 0
            try env.write { txn throws in
                runs += 1
                do {
                    for i in 0..<40 as Range<UInt64> { try txn.put(db, key: i, value: value) }
                } catch {
                    throw TestFailure(reason: "wrapped: \(error)")
                }
            }
            #expect(runs > 1)
            #expect(try env.read { try $0.count(db) } == 40)
        }
    }

    @Test("a cursor's put that fills the map, its error wrapped, still grows the map and re-runs the body")
    func cursorPutMapFull() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: Self.small)
            let db = try env.openDatabase("blobs", create: true)
            let value = [UInt8](repeating: 2, count: 64 << 10)
            var runs = 0
            try env.write { txn throws in
                runs += 1
                let cursor = try txn.cursor(db)
                do {
                    for i in 0..<40 as Range<UInt64> {
                        try withUnsafeBytes(of: i.bigEndian) { key in
                            try value.withUnsafeBytes { try cursor.put(key: key, value: $0, flags: .append) }
                        }
                    }
                } catch {
                    throw TestFailure(reason: "wrapped: \(error)")
                }
            }
            #expect(runs > 1)
            #expect(try env.read { try $0.count(db) } == 40)
        }
    }

    @Test("at the ceiling, a body that wraps the map-full error of its put fails with isMapFull, not its wrapper")
    func wrappedMapFullAtCeiling() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 1 << 20, maxMapSize: 1 << 20))
            let db = try env.openDatabase("blobs", create: true)
            let value = [UInt8](repeating: 3, count: 64 << 10)
            do {
                try env.write { txn throws in
                    do {
                        for i in 0..<40 as Range<UInt64> { try txn.put(db, key: i, value: value) }
                    } catch {
                        throw TestFailure(reason: "wrapped: \(error)")
                    }
                }
                Issue.record("2.5 MiB fitted in a map of 1 MiB")
            } catch let error as LMDBError {
                #expect(error.isMapFull, "\(error)")
            }
            #expect(try env.read { try $0.count(db) } == 0)
        }
    }

    @Test("writing 32 MiB into an 8 MiB ceiling fails with isMapFull; committed data survives")
    func failsAtCeiling() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: Self.small)
            let db = try env.openDatabase("blobs", create: true)
            let value = [UInt8](repeating: 0xCD, count: 256 << 10)
            var committed: UInt64 = 0
            var failure: LMDBError?
            // 128 × 256 KiB = 32 MiB, one value per transaction.
            for i in 0..<128 as Range<UInt64> {
                do {
                    try env.write { txn in try txn.put(db, key: i, value: value, flags: .append) }
                    committed += 1
                } catch let error as LMDBError {
                    failure = error
                    break
                }
            }
            let error = try #require(failure)
            #expect(error.isMapFull)
            #expect(error.errorCode == .mapFull)
            #expect(committed > 4)
            #expect(committed < 32)
            #expect(env.mapSize == 8 * Self.mib)
            // Everything committed is still readable.
            try env.read { txn throws in
                #expect(try txn.count(db) == Int(committed))
                for i in 0..<committed {
                    #expect(try txn.get(db, key: i)?.bytes == value)
                }
            }
            // A fresh read-only view agrees.
            let reader = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
            let rdb = try reader.openDatabase("blobs", create: false)
            #expect(try reader.read { try $0.count(rdb) } == Int(committed))
            // Removing data makes room again.
            try env.write { txn in try txn.drop(db, delete: false) }
            try env.write { txn in try txn.put(db, key: UInt64(0), value: [1]) }
            #expect(try env.read { try $0.count(db) } == 1)
        }
    }

    @Test("a read-only environment adopts a map grown by the writer (MDB_MAP_RESIZED)")
    func readerAdoptsResize() throws {
        try withTemporaryDirectory { dir in
            let writer = try Environment(directory: dir, options: Self.small)
            let db = try writer.openDatabase("blobs", create: true)
            try writer.write { txn in try txn.put(db, key: UInt64(0), value: [0]) }

            let reader = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
            let rdb = try reader.openDatabase("blobs", create: false)
            #expect(reader.mapSize == Self.mib)

            let value = [UInt8](repeating: 7, count: 64 << 10)
            try writer.write { txn throws in
                for i in 1...48 as ClosedRange<UInt64> { try txn.put(db, key: i, value: value, flags: .append) }
            }
            #expect(writer.mapSize > Self.mib)
            // The reader's next transaction sees data past its map: it must remap.
            try reader.read { txn throws in
                #expect(try txn.count(rdb) == 49)
                #expect(try txn.get(rdb, key: UInt64(48))?.bytes == value)
            }
            #expect(reader.mapSize == writer.mapSize)
        }
    }

    static func fileSize(_ dir: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: dir + "/data.mdb"))?[.size] as? Int) ?? -1
    }

    @Test("extendFile writes zeros past the last page, once; pages written before and after it read back after a reopen")
    func extendsFileAhead() throws {
        try withTemporaryDirectory { dir in
            let record = { (i: UInt64) in [UInt8](repeating: UInt8(truncatingIfNeeded: i &* 37 &+ 1), count: 3000) }
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 16 << 20, maxMapSize: 64 << 20))
                let db = try env.openDatabase("records", create: true)
                try env.write { txn throws in
                    for i in 0..<100 as Range<UInt64> { try txn.put(db, key: i, value: record(i), flags: .append) }
                }
                let used = env.info.usedBytes
                #expect(Self.fileSize(dir) == used, "LMDB's file ends at its last page")
                #expect(try env.extendFile(headroom: Self.mib, step: Self.mib + 1) == Self.mib + 4096, "whole pages")
                #expect(Self.fileSize(dir) == used + Self.mib + 4096)
                #expect(try env.extendFile(headroom: Self.mib, step: Self.mib) == 0, "the headroom is there")
                // 1.2 MB more: through the zeros and past them.
                for chunk in 0..<4 as Range<UInt64> {
                    try env.write { txn throws in
                        for i in 100 + chunk * 100..<200 + chunk * 100 { try txn.put(db, key: i, value: record(i), flags: .append) }
                    }
                }
                #expect(env.info.usedBytes > used + Self.mib, "the records went into the zeros and past them")
                #expect(try env.extendFile(headroom: Self.mib, step: Self.mib) > 0, "short of headroom again")
            }
            // One environment per directory and process at a time (an LMDB rule): each scope closes its own.
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 16 << 20, maxMapSize: 64 << 20))
                let db = try env.openDatabase("records", create: false)
                try env.read { txn throws in
                    #expect(try txn.count(db) == 500)
                    for i in 0..<500 as Range<UInt64> where try txn.get(db, key: i)?.bytes != record(i) {
                        Issue.record("record \(i) did not read back")
                    }
                }
            }
            let reader = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
            #expect(try reader.extendFile(headroom: Self.mib, step: Self.mib) == 0, "read-only: nothing written")
        }
    }

    @Test("extendFile inside a write transaction's body is refused, as every nested writer is")
    func extendFileNested() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: Self.small)
            var refused: LMDBError?
            try env.write { _ in
                do { try env.extendFile(headroom: Self.mib, step: Self.mib) } catch { refused = error as? LMDBError }
            }
            #expect(refused?.code == EDEADLK)
        }
    }
}
