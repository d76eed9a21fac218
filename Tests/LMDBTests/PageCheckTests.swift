import DataFilePages
import Foundation
import LMDB
import Synchronization
import Testing

/// `Environment.checkPages()`: a structural check of every page of a snapshot, read with `pread`. Each test damages
/// one page of a closed environment at a known offset, as a failing disk or a stray write would, and the check must
/// name the page and its database; an intact environment, however it was written, must pass.
@Suite("Page check")
struct PageCheckTests {
    static func record(_ i: UInt64, size: Int = 120) -> [UInt8] {
        (0..<size).map { UInt8(truncatingIfNeeded: i &* 31 &+ UInt64($0)) }
    }

    /// Three databases: `records` (8,000 big-endian keys, three levels deep with its branch pages), `blobs`
    /// (values of 10 to 40 KB, on overflow pages) and `ints` (integer keys); then a tenth of the records deleted,
    /// over several commits, so that the free list holds pages.
    static func fill(_ dir: String) throws {
        let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 64 << 20))
        let records = try env.openDatabase("records", create: true)
        let blobs = try env.openDatabase("blobs", create: true)
        let ints = try env.openDatabase("ints", create: true, integerKeys: true)
        try env.write { txn in
            for i in 0..<8000 as Range<UInt64> { try txn.put(records, key: i, value: record(i), flags: .append) }
            for i in 0..<6 as Range<UInt64> { try txn.put(blobs, key: i, value: record(i, size: 10_000 * Int(i % 4 + 1))) }
            for i in 0..<300 as Range<UInt64> {
                try withUnsafeBytes(of: i) { key in try record(i).withUnsafeBytes { try txn.put(ints, key: key, value: $0, flags: []) } }
            }
        }
        for round in 0..<4 as Range<UInt64> {
            try env.write { txn in
                for i in stride(from: round, to: 8000, by: 40) { _ = try txn.delete(records, key: i) }
            }
        }
    }

    /// Overwrites page `page` of `dir`'s data.mdb with `bytes` (at `offset` within the page), as a bad sector or a
    /// stray write would, with the environment closed.
    static func damage(_ dir: String, page: Int, pageSize: Int, offset: Int = 0, with bytes: [UInt8]) throws {
        try overwrite(page: page, of: dir + "/data.mdb", pageSize: pageSize, offset: offset, with: bytes)
    }

    static func check(_ dir: String) throws -> PageCheckReport {
        let env = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
        return try env.checkPages()
    }

    @Test("an intact environment passes, every page accounted for, and the report names its databases and entries")
    func intact() throws {
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            let report = try Self.check(dir)
            #expect(report.damage == nil, "\(String(describing: report.damage))")
            #expect(report.databases.map(\.name) == ["blobs", "ints", "records"])
            #expect(report.databases.map(\.entries) == [6, 300, 7200])
            #expect(report.freePages > 0, "the premise: the deletes freed pages")
            #expect(report.pagesInUse + report.freePages + 2 == report.lastPageNumber + 1)
            let records = try #require(map.named("records"))
            #expect(records.depth == 3, "the premise: records has branch pages below its root")
            #expect(map.free.root != .max, "the premise: the free list has a page")
        }
    }

    /// Damages page `page` with `bytes` in a fresh environment, and returns what the check says.
    static func damaged(_ pick: (DataFileMap) throws -> Int, offset: Int = 0, with bytes: ((Int) -> [UInt8])? = nil)
        throws -> (page: Int, damage: PageDamage?)
    {
        try withTemporaryDirectory { dir in
            try fill(dir)
            let map = try DataFileMap(dir)
            let page = try pick(map)
            try damage(dir, page: page, pageSize: map.pageSize, offset: offset, with: bytes?(map.pageSize) ?? garbage(map.pageSize))
            return (page, try check(dir).damage)
        }
    }

    @Test("a leaf of a named database overwritten with garbage is named, with its database")
    func leafOfNamedDatabase() throws {
        let (page, damage) = try Self.damaged { map in try #require(map.named("records").map { map.pages($0).leaves[7] }) }
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.database == .named("records"), "\(String(describing: damage))")
    }

    @Test("a branch page overwritten with garbage is named, with its database")
    func branchPage() throws {
        let (page, damage) = try Self.damaged { map in try #require(map.named("records").map { map.pages($0).branches[1] }) }
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.database == .named("records"), "\(String(describing: damage))")
    }

    @Test("the first page of an overflow run overwritten with garbage is named, with its database")
    func overflowPage() throws {
        let (page, damage) = try Self.damaged { map in try #require(map.named("blobs").map { map.pages($0).overflows[2] }) }
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.database == .named("blobs"), "\(String(describing: damage))")
    }

    @Test("the main database's root overwritten with garbage is named")
    func mainRoot() throws {
        let (page, damage) = try Self.damaged { map in Int(map.main.root) }
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.database == .main, "\(String(describing: damage))")
    }

    @Test("a page of the free list overwritten with garbage is named")
    func freeListPage() throws {
        let (page, damage) = try Self.damaged { map in Int(map.free.root) }
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.database == .freeList, "\(String(describing: damage))")
    }

    @Test("a page of integer keys overwritten with garbage is named")
    func integerKeys() throws {
        let (page, damage) = try Self.damaged { map in try #require(map.named("ints").map { map.pages($0).leaves[1] }) }
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.database == .named("ints"), "\(String(describing: damage))")
    }

    @Test("a page zeroed, as a write that never reached the disk leaves it, is named")
    func zeroedPage() throws {
        let (page, damage) = try Self.damaged(
            { map in try #require(map.named("records").map { map.pages($0).leaves[3] }) }, with: { [UInt8](repeating: 0, count: $0) })
        #expect(damage?.page == page, "\(String(describing: damage))")
        #expect(damage?.problem.contains("bears the number 0") == true, "\(String(describing: damage))")
    }

    @Test("damage that keeps each page's header is found: a child pointer, a key out of order, a node offset, a count")
    func subtleDamage() throws {
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            let records = try #require(map.named("records"))
            // A branch node's child changed to its right neighbour: that page is reached twice, the first time with
            // bounds its keys are outside of.
            let branch = map.pages(records).branches[1]
            let children = map.nodes(branch)
            let offset = Int(map.load(UInt16.self, page: branch, at: 16 + 2 * 3))
            try Self.damage(
                dir, page: branch, pageSize: map.pageSize, offset: offset,
                with: withUnsafeBytes(of: UInt32(truncatingIfNeeded: children[4].value)) { Array($0) })
            let damage = try Self.check(dir).damage
            #expect(damage?.page == Int(children[4].value) && damage?.database == .named("records"), "\(String(describing: damage))")
            let problem = damage?.problem ?? ""
            #expect(problem.contains("reached twice") || problem.contains("does not sort before"), "\(problem)")
        }
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            let records = try #require(map.named("records"))
            let leaves = map.pages(records).leaves
            // The last key of a leaf set above every key of the next leaf: out of its parent's bounds.
            let leaf = leaves[5]
            let last = try #require(map.nodes(leaf).last)
            let keyAt = Int(last.value) - last.key.count
            try Self.damage(dir, page: leaf, pageSize: map.pageSize, offset: keyAt, with: [UInt8](repeating: 0xFF, count: 8))
            let damage = try Self.check(dir).damage
            #expect(damage?.page == leaf && damage?.database == .named("records"), "\(String(describing: damage))")
            #expect(damage?.problem.contains("does not sort before") == true, "\(String(describing: damage))")
        }
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            let records = try #require(map.named("records"))
            let leaf = map.pages(records).leaves[9]
            // The offset of node 2 moved by two bytes: the nodes no longer tile the page.
            let offset = map.load(UInt16.self, page: leaf, at: 16 + 4)
            try Self.damage(dir, page: leaf, pageSize: map.pageSize, offset: 16 + 4, with: withUnsafeBytes(of: offset + 2) { Array($0) })
            let damage = try Self.check(dir).damage
            #expect(damage?.page == leaf && damage?.database == .named("records"), "\(String(describing: damage))")
        }
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            // The entries `records`' record counts, in its node in the main database's root (a leaf: three records).
            let root = Int(map.main.root)
            let node = try #require(map.nodes(root).first { $0.key == Array("records".utf8) })
            try Self.damage(dir, page: root, pageSize: map.pageSize, offset: Int(node.value) + 32, with: withUnsafeBytes(of: UInt64(7199)) { Array($0) })
            let damage = try Self.check(dir).damage
            #expect(damage?.page == root && damage?.database == .named("records"), "\(String(describing: damage))")
            #expect(damage?.problem.contains("counts 7199 entries, and its tree holds 7200") == true, "\(String(describing: damage))")
        }
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            // `records`' record says its tree is empty (root P_INVALID) and counts page numbers no sum holds.
            let root = Int(map.main.root)
            let node = try #require(map.nodes(root).first { $0.key == Array("records".utf8) })
            let everything = withUnsafeBytes(of: UInt64.max) { Array($0) }
            try Self.damage(dir, page: root, pageSize: map.pageSize, offset: Int(node.value) + 8, with: everything + everything)
            try Self.damage(dir, page: root, pageSize: map.pageSize, offset: Int(node.value) + 40, with: everything)
            let damage = try Self.check(dir).damage
            #expect(damage?.page == root && damage?.problem.contains("says the tree is empty") == true, "\(String(describing: damage))")
        }
    }

    @Test("a meta page that names a last page no file reaches: the environment is refused, and nothing traps")
    func absurdLastPage() throws {
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            // `mm_last_pg` of both meta pages.
            for page in 0...1 {
                try Self.damage(dir, page: page, pageSize: map.pageSize, offset: 16 + 120, with: withUnsafeBytes(of: UInt64.max >> 1) { Array($0) })
            }
            #expect(throws: (any Error).self) { _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true)) }
        }
    }

    @Test("a free list that names a page in use, or loses a page, is named")
    func freeListContents() throws {
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            let freeLeaf = Int(map.free.root)
            #expect(map.free.depth == 1, "the premise: the free list is one leaf")
            let node = try #require(map.nodes(freeLeaf).first)
            let records = try #require(map.named("records"))
            let inUse = map.pages(records).leaves[4]
            // The first page the record names, replaced by a leaf of `records`.
            try Self.damage(dir, page: freeLeaf, pageSize: map.pageSize, offset: Int(node.value) + 8, with: withUnsafeBytes(of: UInt64(inUse)) { Array($0) })
            let damage = try Self.check(dir).damage
            #expect(damage?.page == inUse, "\(String(describing: damage))")
            #expect(damage?.problem.contains("free list") == true, "\(String(describing: damage))")
        }
        try withTemporaryDirectory { dir in
            try Self.fill(dir)
            let map = try DataFileMap(dir)
            let freeLeaf = Int(map.free.root)
            let node = try #require(map.nodes(freeLeaf).first)
            let count = map.load(UInt64.self, page: freeLeaf, at: Int(node.value))
            let lost = map.load(UInt64.self, page: freeLeaf, at: Int(node.value) + 8 * Int(count))
            // The record's count one less: its last page is lost, neither free nor in use.
            try Self.damage(dir, page: freeLeaf, pageSize: map.pageSize, offset: Int(node.value), with: withUnsafeBytes(of: count - 1) { Array($0) })
            let damage = try Self.check(dir).damage
            #expect(damage?.page == Int(lost) && damage?.database == nil, "\(String(describing: damage))")
            #expect(damage?.problem.contains("in no database and not on the free list") == true, "\(String(describing: damage))")
        }
    }

    @Test("an environment passes after every one of many commits that split, merge and free pages, with big values coming and going")
    func intactThroughChurn() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 64 << 20))
            let a = try env.openDatabase("a", create: true)
            let b = try env.openDatabase("b", create: true)
            let ints = try env.openDatabase("ints", create: true, integerKeys: true)
            var seed: UInt64 = 42
            func next() -> UInt64 {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return seed >> 17
            }
            for commit in 0..<120 {
                try env.write { txn in
                    for _ in 0..<(commit % 7 == 0 ? 400 : 60) {
                        let k = next() % 3000
                        switch next() % 10 {
                        case 0...4:
                            // Keys of every length, so that branch keys differ in length too.
                            let key = Array(String(k, radix: 7).utf8) + [UInt8](repeating: UInt8(k % 251), count: Int(k % 40))
                            try txn.put(a, key: key, value: Self.record(k, size: Int(next() % 600)))
                        case 5, 6:
                            let key = Array(String(k, radix: 7).utf8) + [UInt8](repeating: UInt8(k % 251), count: Int(k % 40))
                            _ = try txn.delete(a, key: key)
                        case 7:
                            try txn.put(b, key: k % 50, value: Self.record(k, size: Int(next() % 30_000)))
                        case 8:
                            _ = try txn.delete(b, key: k % 50)
                        default:
                            try withUnsafeBytes(of: k) { key in try txn.put(ints, key: key, value: Self.record(k, size: 20), flags: []) }
                        }
                    }
                }
                let report = try env.checkPages()
                guard report.damage == nil else {
                    Issue.record("after commit \(commit): \(String(describing: report.damage))")
                    return
                }
                #expect(report.pagesInUse + report.freePages + 2 == report.lastPageNumber + 1)
            }
        }
    }

    @Test("the check passes while another thread commits: it reads its own snapshot, which no writer changes")
    func concurrentWrites() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 256 << 20))
            let db = try env.openDatabase("log", create: true)
            let index = try env.openDatabase("index", create: true)
            try env.write { txn in
                for i in 0..<5000 as Range<UInt64> { try txn.put(db, key: i, value: Self.record(i, size: 300), flags: .append) }
            }
            let stop = Atomic<Bool>(false)
            let failures = ErrorBox()
            let writerDone = DispatchSemaphore(value: 0)
            let writer = Thread {
                defer { writerDone.signal() }
                var i: UInt64 = 5000
                while !stop.load(ordering: .relaxed) {
                    do {
                        try env.write { txn in
                            for _ in 0..<50 {
                                try txn.put(db, key: i, value: Self.record(i, size: 300), flags: .append)
                                try txn.put(index, key: i &* 2_654_435_761 % 100_000, value: Self.record(i, size: 40))
                                // Old entries go, so that pages are freed and reused while the check reads.
                                _ = try txn.delete(db, key: i - 5000)
                                i += 1
                            }
                        }
                    } catch {
                        failures.add("write: \(error)")
                        return
                    }
                }
            }
            writer.start()
            var checks = 0
            var transactions = Set<Int>()
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline || checks < 20 {
                let report = try env.checkPages()
                if let damage = report.damage { failures.add("check \(checks): \(damage)") }
                transactions.insert(report.transactionID)
                checks += 1
            }
            stop.store(true, ordering: .relaxed)
            #expect(writerDone.wait(timeout: .now() + 30) == .success, "the writer stops")
            #expect(failures.all.isEmpty, "\(failures.all.prefix(3))")
            #expect(transactions.count > 5, "the premise: the writer committed between checks (\(transactions.count) snapshots in \(checks) checks)")
        }
    }
}
