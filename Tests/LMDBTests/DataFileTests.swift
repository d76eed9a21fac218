import DataFilePages
import Foundation
import LMDB
import Testing

/// What `Environment.init` makes of a `data.mdb` that is shorter than LMDB's meta page says, and of a stored map
/// larger than the maximum. Each environment is closed (its scope ends) before the file is cut or opened again: one
/// environment per directory and process at a time (an LMDB rule).
@Suite("Data file at open")
struct DataFileTests {
    static func fileSize(_ dir: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: dir + "/data.mdb"))?[.size] as? Int) ?? -1
    }

    static func cut(_ dir: String, to size: Int) {
        #expect(truncate(dir + "/data.mdb", off_t(size)) == 0)
    }

    static func record(_ i: UInt64) -> [UInt8] { [UInt8](repeating: UInt8(truncatingIfNeeded: i &* 37 &+ 1), count: 3000) }

    /// 100 records of 3000 bytes, in a new environment in `dir`; returns what `info` said after.
    static func fill(_ dir: String) throws -> EnvironmentInfo {
        let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 16 << 20))
        let db = try env.openDatabase("records", create: true)
        try env.write { txn throws in
            for i in 0..<100 as Range<UInt64> { try txn.put(db, key: i, value: record(i), flags: .append) }
        }
        return env.info
    }

    @Test("a data.mdb cut short is refused at open, read-write and read-only, naming the file, its size and the size its pages need, before any page is read")
    func cutShort() throws {
        try withTemporaryDirectory { dir in
            let info = try Self.fill(dir)
            let needed = (info.lastPageNumber + 1) * info.pageSize
            #expect(Self.fileSize(dir) == needed)
            Self.cut(dir, to: 64 << 10)
            for readOnly in [false, true] {
                // Before the check, the open itself succeeded (LMDB reads only the meta pages) and the first read of
                // a page past the end killed the process with SIGBUS.
                let error = #expect(throws: TruncatedDataFile.self, "read-only: \(readOnly)") {
                    _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: readOnly))
                }
                #expect(error?.path == dir + "/data.mdb")
                #expect(error?.size == 64 << 10)
                #expect(error?.neededSize == needed)
                #expect(error?.lastPageNumber == info.lastPageNumber)
                #expect(error?.pageSize == info.pageSize)
                let text = error?.description ?? ""
                #expect(text.contains("\(dir)/data.mdb is 65536 bytes, but its pages run to byte \(needed)"), "\(text)")
                #expect(text.contains("cut short") && text.contains("restore it from a backup"), "\(text)")
            }
            #expect(Self.fileSize(dir) == 64 << 10, "nothing was written to it")
        }
    }

    @Test("a meta page whose transaction id is not of its parity, or that does not read as one, is named before LMDB opens the file: LMDB would take the older page (the last commits lost without a word) or refuse the file as not an LMDB file")
    func metaPageOfTheWrongParity() throws {
        try withTemporaryDirectory { dir in
            _ = try Self.fill(dir)
            let pageSize = try DataFileMap(dir).pageSize
            let original = try Data(contentsOf: URL(fileURLWithPath: dir + "/data.mdb"))
            // MDB_meta's mm_txnid, after the page header: page 0 made odd, then page 1 made even.
            for (page, value) in [(0, UInt64(99_999_999)), (1, UInt64(100_000_000))] {
                var bytes = original
                withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange((page * pageSize + 16 + 128)..<(page * pageSize + 16 + 136), with: $0) }
                try bytes.write(to: URL(fileURLWithPath: dir + "/data.mdb"))
                let damage = #expect(throws: PageDamage.self) { _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true)) }
                #expect(damage?.page == page && damage?.problem.contains("LMDB writes meta page \(page)") == true, "\(String(describing: damage))")
            }
            var bytes = original
            bytes.replaceSubrange((pageSize + 16)..<(pageSize + 20), with: [0, 0, 0, 0])
            try bytes.write(to: URL(fileURLWithPath: dir + "/data.mdb"))
            let damage = #expect(throws: PageDamage.self) { _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true)) }
            #expect(damage?.page == 1 && damage?.problem.contains("does not read as a meta page") == true, "\(String(describing: damage))")
        }
    }

    @Test("meta pages whose transaction ids are each of their page's parity but not consecutive, or whose later page says fewer pages are in use, are named before LMDB opens the file: LMDB would open the older commit, without the last ones, or a tree under a number no commit had; the file as written opens")
    func metaPagesNotConsecutive() throws {
        try withTemporaryDirectory { dir in
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 16 << 20))
                let db = try env.openDatabase("records", create: true)
                for i in 0..<12 as Range<UInt64> { try env.write { txn throws in try txn.put(db, key: i, value: Self.record(i)) } }
            }
            let pageSize = try DataFileMap(dir).pageSize
            let original = try Data(contentsOf: URL(fileURLWithPath: dir + "/data.mdb"))
            func transactionID(_ page: Int) -> UInt64 {
                original.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: page * pageSize + 16 + 128, as: UInt64.self) }
            }
            let ids = [transactionID(0), transactionID(1)]
            #expect(max(ids[0], ids[1]) - min(ids[0], ids[1]) == 1 && min(ids[0], ids[1]) >= 8, "\(ids)")
            let newest = ids[0] > ids[1] ? 0 : 1
            // The newest page's id taken back by 8 (one bit, as QA flipped it): LMDB would open the older page.
            // The older page's id moved on past the newest: LMDB would open the older tree as the newest. The newest
            // page's id moved on by 2.
            for (page, value, says) in [
                (newest, ids[newest] - 8, "where every commit leaves two consecutive ones"),
                (1 - newest, ids[newest] + 3, "where every commit leaves two consecutive ones"),
                (newest, ids[newest] + 2, "where every commit leaves two consecutive ones"),
                // Consecutive again, but the page now taken for the later one says fewer pages are in use.
                (1 - newest, ids[newest] + 1, "where no commit lowers it"),
            ] {
                var bytes = original
                withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange((page * pageSize + 16 + 128)..<(page * pageSize + 16 + 136), with: $0) }
                try bytes.write(to: URL(fileURLWithPath: dir + "/data.mdb"))
                for readOnly in [true, false] {
                    let damage = #expect(throws: PageDamage.self, "page \(page) as \(value)") {
                        _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: readOnly))
                    }
                    #expect(damage?.problem.contains("\(says): a transaction id is damaged") == true, "\(String(describing: damage))")
                }
            }
            try original.write(to: URL(fileURLWithPath: dir + "/data.mdb"))
            let env = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
            let db = try env.openDatabase("records", create: false)
            #expect(try env.read { txn in try txn.get(db, key: UInt64(11)).map(Array.init) } == Self.record(11))
        }
    }

    @Test("a data.mdb too short for LMDB's two meta pages is named as such, not as 'not an LMDB file'")
    func metaPagesCut() throws {
        try withTemporaryDirectory { dir in
            _ = try Self.fill(dir)
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            // 100 bytes: LMDB cannot read a meta page (MDB_INVALID); page + 200: it reads both, but the second
            // page is not whole.
            for size in [100, page + 200] {
                Self.cut(dir, to: size)
                for readOnly in [false, true] {
                    let error = #expect(throws: TruncatedDataFile.self, "\(size) bytes, read-only: \(readOnly)") {
                        _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: readOnly))
                    }
                    #expect(error?.size == size)
                    #expect((error?.neededSize ?? 0) >= 2 * page, "\(String(describing: error))")
                    #expect(error?.description.contains("\(dir)/data.mdb is \(size) bytes") == true, "\(String(describing: error))")
                }
            }
        }
    }

    @Test("pages past the end of data.mdb that are all free are not missing: a transaction that made an overflow run past the end and freed it again leaves them unwritten, and the environment opens and reads whole")
    func freePagesPastTheEnd() throws {
        try withTemporaryDirectory { dir in
            let small = [UInt8](repeating: 1, count: 100)
            let big = [UInt8](repeating: 2, count: 2 << 20)
            var info: EnvironmentInfo
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 64 << 20))
                let db = try env.openDatabase("a", create: true)
                try env.write { txn throws in
                    for k in 0..<2000 as Range<UInt64> { try txn.put(db, key: k, value: small) }
                }
                // Free pages scattered over the file, none of them in a run of 2 MiB.
                for round in 0..<3 as Range<UInt64> {
                    try env.write { txn throws in
                        for k in stride(from: round, to: 2000, by: 7) { _ = try txn.delete(db, key: k) }
                    }
                }
                // A 2 MiB value goes past the end of the file, and is deleted in the same transaction: its pages go
                // to the free list without ever being written.
                try env.write { txn throws in
                    try txn.put(db, key: UInt64(1), value: Array(small.prefix(10)))
                    try txn.put(db, key: UInt64(5000), value: big)
                    #expect(try txn.delete(db, key: UInt64(5000)))
                }
                info = env.info
            }
            let needed = (info.lastPageNumber + 1) * info.pageSize
            #expect(Self.fileSize(dir) < needed - (1 << 20), "the premise: LMDB left the file \(Self.fileSize(dir)) bytes, its meta page counts \(needed)")
            for readOnly in [false, true] {
                let env = try Environment(directory: dir, options: EnvironmentOptions(readOnly: readOnly))
                let db = try env.openDatabase("a", create: false)
                try env.read { txn throws in
                    #expect(try txn.get(db, key: UInt64(1))?.count == 10)
                    #expect(try txn.get(db, key: UInt64(5000)) == nil)
                    #expect(try txn.count(db) == 2000 - 3 * 286 + 1, "the records deleted in three rounds, one put back")
                }
            }
            // Cut into pages in use (the 1,143 records take dozens), the same file is refused.
            Self.cut(dir, to: 4 * info.pageSize)
            #expect(throws: TruncatedDataFile.self) { _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true)) }
        }
    }

    /// Appends `value` under `next`, `next + 1`, … one commit each, `tries` times at most, and returns the error
    /// that stopped it, if one did.
    static func appendUntilRefused(_ env: Environment, _ db: Database, _ value: [UInt8], next: inout UInt64, tries: Int) -> LMDBError? {
        for _ in 0..<tries {
            do {
                try env.write { txn in try txn.put(db, key: next, value: value, flags: .append) }
                next += 1
            } catch let error as LMDBError {
                return error
            } catch {
                return nil
            }
        }
        return nil
    }

    @Test("a map stored larger than maxMapSize is opened at the maximum, and the data grows no further than it; an environment that already holds more keeps its stored map, which a delete still fits in, and grows no further")
    func storedMapAboveMaximum() throws {
        let mib = 1 << 20
        try withTemporaryDirectory { dir in
            let value = [UInt8](repeating: 0xAB, count: 64 << 10)
            var next: UInt64 = 0
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 8 * mib, maxMapSize: 8 * mib))
                let db = try env.openDatabase("blobs", create: true)
                try env.write { txn throws in
                    for _ in 0..<40 {
                        try txn.put(db, key: next, value: value, flags: .append)
                        next += 1
                    }
                }
                #expect(env.mapSize == 8 * mib)
                #expect(env.info.usedBytes > 2 * mib && env.info.usedBytes < 3 * mib)
            }
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: mib, maxMapSize: 4 * mib))
                #expect(env.mapSize == 4 * mib, "brought down to the maximum, from the 8 MiB stored")
                let db = try env.openDatabase("blobs", create: false)
                let failure = Self.appendUntilRefused(env, db, value, next: &next, tries: 64)
                #expect(failure?.isMapFull == true, "the 8 MiB stored did not let it grow past 4 MiB")
                #expect(env.info.usedBytes <= 4 * mib)
                #expect(env.mapSize == 4 * mib)
            }
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: mib, maxMapSize: 2 * mib))
                let used = env.info.usedBytes
                #expect(used > 2 * mib)
                #expect(env.mapSize == 8 * mib, "kept as stored: brought down to what it holds, it would have no room for any write")
                let db = try env.openDatabase("blobs", create: false)
                // A delete copies the pages it changes: it needs room too.
                try env.write { txn throws in #expect(try txn.delete(db, key: UInt64(0))) }
                let failure = Self.appendUntilRefused(env, db, value, next: &next, tries: 160)
                #expect(failure?.isMapFull == true, "it grows no further than the map it kept")
                #expect(env.mapSize == 8 * mib)
            }
        }
    }
}
