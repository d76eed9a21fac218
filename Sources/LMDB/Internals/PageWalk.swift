// The structural check of every page of one snapshot of `data.mdb` (`Environment.checkPages()`), read with `pread`,
// never through the map, so that a damaged page is a finding and not a fault.
//
// LMDB 0.9 keeps no checksums. Each tree is walked from its root one level at a time, the level's pages sorted by
// number and read in runs of consecutive pages with one `pread` each (a log written in order has long runs). Each
// page must say its own number, be a branch page above the bottom level and a leaf page at it, have its free space
// and its nodes within it and its nodes fill the space they take without gap or overlap, keys in order within the
// page and within the bounds its parent gives it, and point only to pages of the snapshot within the file, none
// reached twice. Overflow runs must start with an overflow page of enough pages. The counts in each tree's record
// (`MDB_db`) must be what the walk found. Last, every page up to the last must be either in a tree or on the free
// list, not both (as LMDB's own `mdb_audit` checks).
//
// The snapshot's pages cannot change while they are read: the read transaction pins them (a writer reuses only
// pages freed before the oldest reader's snapshot), and LMDB writes its pages with `pwrite`, so the file holds what
// the snapshot sees.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a tree orders its keys: LMDB's comparators for the flags it stores (`mdb_cmp_memn`, `mdb_cmp_memnr`,
/// `mdb_cmp_cint`). A comparator set with `mdb_set_compare` leaves no trace in the file; this module sets none.
private enum KeyOrder {
    case bytes
    case reversed
    case integer

    init(flags: UInt16) {
        if flags & _MDB_REVERSEKEY != 0 {
            self = .reversed
        } else if flags & _MDB_INTEGERKEY_IN_MD_FLAGS != 0 {
            self = .integer
        } else {
            self = .bytes
        }
    }

    /// Negative, zero or positive as `a` sorts before, with, or after `b`.
    @inline(__always)
    func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Int {
        switch self {
        case .bytes:
            let common = min(a.count, b.count)
            if common > 0, let x = a.baseAddress, let y = b.baseAddress {
                let order = memcmp(x, y, common)
                if order != 0 { return Int(order) }
            }
            return a.count - b.count
        case .reversed:
            var i = a.count
            var j = b.count
            while i > 0 && j > 0 {
                i -= 1
                j -= 1
                if a[i] != b[j] { return Int(a[i]) - Int(b[j]) }
            }
            return a.count - b.count
        case .integer:
            if a.count == 8 && b.count == 8 {
                let x = a.loadUnaligned(as: UInt64.self)
                let y = b.loadUnaligned(as: UInt64.self)
                return x < y ? -1 : x == y ? 0 : 1
            }
            if a.count == 4 && b.count == 4 {
                let x = a.loadUnaligned(as: UInt32.self)
                let y = b.loadUnaligned(as: UInt32.self)
                return x < y ? -1 : x == y ? 0 : 1
            }
            return a.count - b.count
        }
    }
}

/// A page a walk is to read: its number, the page that pointed to it, and the bounds its keys must lie within
/// (offsets in the level's key arena; -1 where the tree sets none).
private struct PendingPage {
    var number: UInt64
    var parent: Int
    var lowerStart: Int32
    var lowerCount: Int32
    var upperStart: Int32
    var upperCount: Int32
}

/// An overflow run a leaf points to.
private struct OverflowReference {
    var first: UInt64
    var dataSize: Int
    var leaf: Int
}

/// What kind of tree is walked, which decides what its leaves may hold.
private enum TreeKind {
    /// The free list: its records list free pages.
    case free
    /// The main database: its records may be those of named databases.
    case main
    /// A named database.
    case named
}

/// What `PageWalk.owner` marks a page with: which tree holds it.
private enum OwnerMark {
    /// No tree (yet).
    static let none: UInt8 = 0
    /// Page 0 or 1.
    static let metaPage: UInt8 = 1
    /// The first tree walked; the tree at index `i` of `PageWalk.trees` is `firstTree + i`.
    static let firstTree: UInt8 = 2
    /// Every tree past those a byte can number.
    static let laterTree: UInt8 = 255
}

internal final class PageWalk {
    /// The trees a partial check reads, besides the main database: the named databases `databases`, and the free
    /// list if `freeList`.
    struct Selection {
        var databases: Set<String>
        var freeList: Bool
    }

    private let fd: Int32
    private let pageSize: Int
    private let lastPage: Int
    private let fileSize: Int
    /// For each page up to `lastPage`, which tree holds it (an `OwnerMark`).
    private var owner: [UInt8]
    /// The free pages, a bit each.
    private var free: [UInt64]
    private var freeCount = 0
    private var inUse = 0
    private var trees: [PageDamage.Tree] = []
    /// Where runs of pages are read, `runPages` pages at a time.
    private let buffer: UnsafeMutableRawBufferPointer
    private let runPages: Int
    /// (offset, even size) of each node of the page at hand; kept between pages.
    private var spans: [(offset: Int, size: Int)] = []
    /// Told after each run of pages read: see ``Environment/checkPages(progress:)``.
    private let progress: Environment.PageCheckProgress?

    private init(fd: Int32, meta: MetaPage, fileSize: Int, progress: Environment.PageCheckProgress? = nil) {
        self.fd = fd
        self.progress = progress
        self.pageSize = meta.pageSize
        self.lastPage = meta.lastPage
        self.fileSize = fileSize
        owner = [UInt8](repeating: OwnerMark.none, count: meta.lastPage + 1)
        free = [UInt64](repeating: 0, count: meta.lastPage / 64 + 1)
        runPages = max(1, (256 << 10) / meta.pageSize)
        buffer = .allocate(byteCount: runPages * meta.pageSize, alignment: 4096)
        owner[0] = OwnerMark.metaPage
        owner[1] = OwnerMark.metaPage
    }

    deinit { buffer.deallocate() }

    /// Checks the snapshot of read transaction `transactionID` in the file `fd`; `nil` when neither meta page is
    /// that transaction's any more (a writer committed twice since it began): begin another and call again. With
    /// `only`, the main database and the trees it names alone, and not whether every page is in use or free.
    static func check(
        fd: Int32, pageSize: Int, transactionID: UInt64, only: Selection? = nil, progress: Environment.PageCheckProgress? = nil
    ) throws(LMDBError) -> PageCheckReport? {
        guard MemoryLayout<Int>.size == 8 else { throw LMDBError(code: ENOTSUP, function: "checkPages") }
        let fileSize = try FileFormat.size(of: fd)
        guard let meta = MetaPage.read(fd, pageSize: pageSize, transactionID: transactionID) else { return nil }
        var report = PageCheckReport(
            transactionID: Int(truncatingIfNeeded: transactionID), pageSize: pageSize, lastPageNumber: meta.lastPage, pagesInUse: 0,
            freePages: 0, databases: [], skippedDatabases: [], damage: nil)
        // The bitmaps take a byte and a bit per page: bound them by what the map of a 64-bit process can hold.
        guard meta.hasPlausibleLastPage else {
            report.damage = PageDamage(
                database: nil, page: meta.number,
                problem: "the meta page says the last page is \(meta.lastPage), which no data file of \(pageSize)-byte pages has")
            return report
        }
        let walk = PageWalk(fd: fd, meta: meta, fileSize: fileSize, progress: progress)
        do {
            try walk.run(meta, only: only, into: &report)
        } catch let damage as PageDamage {
            report.damage = damage
        } catch {
            // Only the closures of `Array.withUnsafeBytes` stand between the walk and its typed throws.
            report.damage = PageDamage(database: nil, page: 0, problem: "\(error)")
        }
        report.pagesInUse = walk.inUse
        report.freePages = walk.freeCount
        return report
    }

    /// Whether every page from `first` to the last of the snapshot that `meta` describes is on its free list, read
    /// from the file `fd` of `fileSize` bytes. Walks the free list alone, and reads none of its pages past the end of
    /// the file: false when a page from `first` on is not free, and when the free list cannot be told whole (a page
    /// of it past the end of the file, or one that does not check out), or the meta page names a last page that no
    /// data file reaches.
    static func pagesAreFree(from first: Int, meta: MetaPage, fd: Int32, fileSize: Int) -> Bool {
        guard first <= meta.lastPage else { return true }
        guard MemoryLayout<Int>.size == 8, first >= 0, meta.hasPlausibleLastPage else { return false }
        let walk = PageWalk(fd: fd, meta: meta, fileSize: fileSize)
        do {
            _ = try walk.walk(.freeList, meta.free, recordPage: meta.number, kind: .free)
        } catch {
            return false
        }
        return (first...meta.lastPage).allSatisfy(walk.isFree)
    }

    private func run(_ meta: MetaPage, only: Selection?, into report: inout PageCheckReport) throws {
        if only?.freeList ?? true { _ = try walk(.freeList, meta.free, recordPage: meta.number, kind: .free) }
        let named = try walk(.main, meta.main, recordPage: meta.number, kind: .main).named
        for (name, record, page) in named.sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
            let text = String(decoding: name, as: UTF8.self)
            if let only, !only.databases.contains(text) { continue }
            if record.flags & _MDB_DUPSORT != 0 {
                report.skippedDatabases.append(text)
                continue
            }
            let pages = try walk(.named(text), record, recordPage: page, kind: .named).pages
            report.databases.append(CheckedDatabase(name: text, entries: Int(clamping: record.entries), pages: pages))
        }
        guard only == nil, report.skippedDatabases.isEmpty, lastPage >= 2 else { return }
        for page in 2...lastPage where owner[page] == OwnerMark.none && !isFree(page) {
            throw PageDamage(
                database: nil, page: page,
                problem: "it is in no database and not on the free list (of the \(lastPage + 1) pages up to the last, "
                    + "\(inUse + 2) are in use and \(freeCount) free)")
        }
    }

    // MARK: Pages

    private func isFree(_ page: Int) -> Bool { free[page >> 6] & (1 << UInt64(page & 63)) != 0 }

    private func name(of owner: UInt8) -> String {
        switch owner {
        case OwnerMark.metaPage: return "a meta page"
        case OwnerMark.laterTree: return "a page of another tree"
        default: return "a page of \(trees[Int(owner) - Int(OwnerMark.firstTree)])"
        }
    }

    /// Checks that pages `number..<number + count`, which page `parent` of `tree` points to as `what`, are pages of
    /// the snapshot within the file, and not meta pages.
    private func checkPointer(
        _ number: UInt64, count: Int = 1, in tree: PageDamage.Tree, from parent: Int, what: String
    ) throws(PageDamage) {
        let run = count > 1 ? " (a run of \(count) pages)" : ""
        guard number >= 2, number <= UInt64(lastPage), UInt64(count - 1) <= UInt64(lastPage) - number else {
            throw PageDamage(
                database: tree, page: parent,
                problem: "it points to page \(number)\(run) as \(what), "
                    + (number < 2 ? "which is a meta page" : "past the last page of the snapshot, \(lastPage)"))
        }
        guard (Int(number) + count) * pageSize <= fileSize else {
            throw PageDamage(
                database: tree, page: parent,
                problem: "it points to page \(number)\(run) as \(what), past the end of the file (\(fileSize) bytes, "
                    + "\(fileSize / pageSize) pages)")
        }
    }

    /// Takes pages `number..<number + count` for tree `tree` (whose owner mark is `mark`), pointed to from page
    /// `parent` as `what`, before they are read: they must be pages of the snapshot within the file, not meta
    /// pages, not free, not reached before.
    private func claim(
        _ number: UInt64, count: Int = 1, for tree: PageDamage.Tree, mark: UInt8, from parent: Int, what: String
    ) throws(PageDamage) {
        try checkPointer(number, count: count, in: tree, from: parent, what: what)
        let first = Int(number)
        for page in first..<first + count {
            if owner[page] != OwnerMark.none {
                throw PageDamage(
                    database: tree, page: page,
                    problem: "it is reached twice: as \(what) from page \(parent), and before that as \(name(of: owner[page]))")
            }
            if isFree(page) {
                throw PageDamage(
                    database: tree, page: page,
                    problem: "it is on the free list, and page \(parent) points to it as \(what)")
            }
            owner[page] = mark
        }
        inUse += count
    }

    /// Reads `count` pages from page `first` into `buffer`; a page that cannot be read is named.
    private func readRun(_ first: Int, count: Int, tree: PageDamage.Tree) throws(PageDamage) {
        let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * pageSize])
        if preadFully(fd, into: bytes, at: first * pageSize) == bytes.count { return }
        for page in first..<first + count {
            let one = UnsafeMutableRawBufferPointer(rebasing: buffer[(page - first) * pageSize..<(page - first + 1) * pageSize])
            let done = preadFully(fd, into: one, at: page * pageSize)
            if done == pageSize { continue }
            let why = done < 0 ? String(cString: strerror(errno)) : "the file ends before it"
            throw PageDamage(database: tree, page: page, problem: "it cannot be read: \(why)")
        }
    }

    private static func kind(_ flags: UInt16) -> String {
        switch flags {
        case FileFormat.branch: return "a branch page"
        case FileFormat.leaf: return "a leaf page"
        case FileFormat.leaf | FileFormat.leaf2: return "a leaf page of fixed-size keys"
        case FileFormat.overflow: return "an overflow page"
        case FileFormat.meta: return "a meta page"
        default: return "no kind of page (its flags are 0x\(String(flags, radix: 16)))"
        }
    }

    // MARK: Trees

    /// Walks one tree from the root its record names, and checks the record's counts against what it found.
    /// Returns the records of named databases found in its leaves (of the main database), and its pages.
    private func walk(
        _ tree: PageDamage.Tree, _ record: DatabaseRecord, recordPage: Int, kind: TreeKind
    ) throws -> (named: [(name: [UInt8], record: DatabaseRecord, page: Int)], pages: Int) {
        let holder = recordPage < 2 ? "meta page \(recordPage)" : "page \(recordPage) of the main database"
        if record.root == FileFormat.invalidPage {
            guard record.depth == 0, record.branchPages == 0, record.leafPages == 0, record.overflowPages == 0,
                record.entries == 0
            else {
                throw PageDamage(
                    database: tree, page: recordPage,
                    problem: "its record (in \(holder)) says the tree is empty but counts depth \(record.depth), "
                        + "\(record.branchPages) branch, \(record.leafPages) leaf and \(record.overflowPages) overflow pages "
                        + "and \(record.entries) entries")
            }
            return ([], 0)
        }
        guard (1...FileFormat.maxDepth).contains(record.depth) else {
            throw PageDamage(
                database: tree, page: recordPage,
                problem: "its record (in \(holder)) gives the tree a depth of \(record.depth), where LMDB reads 1 to \(FileFormat.maxDepth)")
        }
        trees.append(tree)
        let mark = UInt8(min(Int(OwnerMark.laterTree), Int(OwnerMark.firstTree) + trees.count - 1))
        // The free list's `md_flags` are the environment's (`mm_flags`); its keys are transaction ids.
        let order = kind == .free ? KeyOrder.integer : KeyOrder(flags: record.flags)
        var named: [(name: [UInt8], record: DatabaseRecord, page: Int)] = []
        var overflows: [OverflowReference] = []
        var branchPages: UInt64 = 0
        var leafPages: UInt64 = 0
        var entries: UInt64 = 0
        var level = [PendingPage(number: record.root, parent: recordPage, lowerStart: -1, lowerCount: 0, upperStart: -1, upperCount: 0)]
        var arena: [UInt8] = []
        for depth in 1...record.depth {
            let bottom = depth == record.depth
            let what = depth == 1 ? "the root" : bottom ? "a leaf page" : "a branch page"
            var next: [PendingPage] = []
            var nextArena: [UInt8] = []
            level.sort { $0.number < $1.number }
            try arena.withUnsafeBytes { keys in
                var start = 0
                while start < level.count {
                    var end = start + 1
                    while end < level.count && end - start < runPages && level[end].number == level[end - 1].number + 1 {
                        end += 1
                    }
                    for i in start..<end {
                        try claim(level[i].number, for: tree, mark: mark, from: level[i].parent, what: what)
                    }
                    try readRun(Int(level[start].number), count: end - start, tree: tree)
                    progress?(inUse + 2, lastPage + 1)
                    for i in start..<end {
                        let page = UnsafeRawBufferPointer(
                            rebasing: UnsafeRawBufferPointer(buffer)[(i - start) * pageSize..<(i - start + 1) * pageSize])
                        let pending = level[i]
                        let lower =
                            pending.lowerStart < 0
                            ? nil
                            : UnsafeRawBufferPointer(rebasing: keys[Int(pending.lowerStart)..<Int(pending.lowerStart + pending.lowerCount)])
                        let upper =
                            pending.upperStart < 0
                            ? nil
                            : UnsafeRawBufferPointer(rebasing: keys[Int(pending.upperStart)..<Int(pending.upperStart + pending.upperCount)])
                        let count = try checkPage(
                            page, pending, tree: tree, kind: kind, order: order, bottom: bottom, depth: depth,
                            treeDepth: record.depth, lower: lower, upper: upper
                        ) { (node, key, flags, data, dataSize) throws(PageDamage) in
                            // A child of a branch page.
                            if !bottom {
                                next.append(
                                    PendingPage(
                                        number: data, parent: Int(pending.number), lowerStart: Int32(nextArena.count),
                                        lowerCount: Int32(key.count), upperStart: -1, upperCount: 0))
                                nextArena.append(contentsOf: key)
                                return
                            }
                            try leafNode(
                                page, node: node, key: key, flags: flags, data: data, dataSize: dataSize, pageNumber: pending.number,
                                tree: tree, kind: kind, named: &named, overflows: &overflows)
                        }
                        if bottom {
                            leafPages += 1
                            entries += UInt64(count)
                        } else {
                            branchPages += 1
                            // Node 0's key is not a bound (LMDB ignores it): its child takes the parent's lower bound.
                            // Each child's upper bound is its right neighbour's key; the last one's, the parent's.
                            let first = next.count - count
                            if let lower {
                                next[first].lowerStart = Int32(nextArena.count)
                                next[first].lowerCount = Int32(lower.count)
                                nextArena.append(contentsOf: lower)
                            } else {
                                next[first].lowerStart = -1
                            }
                            for c in first..<next.count - 1 {
                                next[c].upperStart = next[c + 1].lowerStart
                                next[c].upperCount = next[c + 1].lowerCount
                            }
                            if let upper {
                                next[next.count - 1].upperStart = Int32(nextArena.count)
                                next[next.count - 1].upperCount = Int32(upper.count)
                                nextArena.append(contentsOf: upper)
                            }
                        }
                    }
                    start = end
                }
            }
            level = next
            arena = nextArena
        }
        let overflowPages = try checkOverflows(overflows, tree: tree, mark: mark, kind: kind)
        func mismatch(_ what: String, _ counted: UInt64, _ found: UInt64) -> PageDamage {
            PageDamage(
                database: tree, page: recordPage,
                problem: "its record (in \(holder)) counts \(counted) \(what), and its tree holds \(found)")
        }
        if record.branchPages != branchPages { throw mismatch("branch pages", record.branchPages, branchPages) }
        if record.leafPages != leafPages { throw mismatch("leaf pages", record.leafPages, leafPages) }
        if record.overflowPages != overflowPages { throw mismatch("overflow pages", record.overflowPages, overflowPages) }
        if record.entries != entries { throw mismatch("entries", record.entries, entries) }
        return (named, Int(branchPages + leafPages + overflowPages))
    }

    /// Checks one branch or leaf page of a tree, and calls `node` with each of its nodes: the node's index, key,
    /// flags, and for a branch page the child's number, for a leaf the data's offset in the page (or the number of
    /// the first page of its overflow run) and size. Returns the number of nodes.
    private func checkPage(
        _ page: UnsafeRawBufferPointer, _ pending: PendingPage, tree: PageDamage.Tree, kind: TreeKind, order: KeyOrder,
        bottom: Bool, depth: Int, treeDepth: Int, lower: UnsafeRawBufferPointer?, upper: UnsafeRawBufferPointer?,
        node body: (Int, UnsafeRawBufferPointer, UInt16, UInt64, Int) throws(PageDamage) -> Void
    ) throws(PageDamage) -> Int {
        let number = Int(pending.number)
        func damage(_ problem: String) -> PageDamage { PageDamage(database: tree, page: number, problem: problem) }
        let stored = page.loadUnaligned(as: UInt64.self)
        guard stored == pending.number else {
            throw damage("it bears the number \(stored) (page \(pending.parent) points to it)")
        }
        let flags = page.loadUnaligned(fromByteOffset: 10, as: UInt16.self)
        let expected = bottom ? FileFormat.leaf : FileFormat.branch
        guard flags == expected else {
            throw damage(
                "it is \(Self.kind(flags)), where level \(depth) of the tree's \(treeDepth) needs \(Self.kind(expected))")
        }
        let lower16 = Int(page.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        let upper16 = Int(page.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
        guard lower16 >= FileFormat.pageHeader, (lower16 - FileFormat.pageHeader) % 2 == 0, lower16 <= upper16,
            upper16 <= pageSize
        else {
            throw damage("its free space runs from byte \(lower16) to byte \(upper16), which is not a span within its \(pageSize) bytes")
        }
        let count = (lower16 - FileFormat.pageHeader) / 2
        guard count > 0 else { throw damage("it holds no nodes") }
        spans.removeAll(keepingCapacity: true)
        var previous: UnsafeRawBufferPointer?
        for index in 0..<count {
            let offset = Int(page.loadUnaligned(fromByteOffset: FileFormat.pageHeader + 2 * index, as: UInt16.self))
            guard offset >= upper16, offset % 2 == 0, offset + FileFormat.nodeHeader <= pageSize else {
                throw damage("node \(index) is at byte \(offset), outside the nodes' space (bytes \(upper16) to \(pageSize))")
            }
            let header = NodeHeader(page, at: offset)
            let nodeFlags = header.flags
            let keySize = header.keySize
            let keyStart = offset + FileFormat.nodeHeader
            var size = FileFormat.nodeHeader + keySize
            var data: UInt64
            var dataSize = 0
            if bottom {
                dataSize = header.dataSize
                size += nodeFlags & FileFormat.bigData != 0 ? 8 : dataSize
                data = UInt64(keyStart + keySize)
            } else {
                data = header.child
            }
            guard offset + size <= pageSize else {
                throw damage(
                    "node \(index) at byte \(offset) (a key of \(keySize) bytes"
                        + (bottom ? ", data of \(dataSize) bytes" : "") + ") runs past the end of the page")
            }
            if bottom && nodeFlags & FileFormat.bigData != 0 {
                data = page.loadUnaligned(fromByteOffset: keyStart + keySize, as: UInt64.self)
            }
            spans.append((offset, (size + 1) & ~1))
            let key = UnsafeRawBufferPointer(rebasing: page[keyStart..<keyStart + keySize])
            // A branch page's first key is not read by LMDB: its child holds everything below the second.
            if bottom || index > 0 {
                if order == .integer && keySize != 8 && keySize != 4 {
                    throw damage("node \(index) has a key of \(keySize) bytes, in a database of integer keys (4 or 8 bytes)")
                }
                if let previous, order.compare(previous, key) >= 0 {
                    throw damage("the keys of nodes \(index - 1) and \(index) are out of order")
                }
                if previous == nil, let lower, order.compare(lower, key) > 0 {
                    throw damage(
                        "the key of node \(index) sorts before the key that page \(pending.parent) gives as the least of this page")
                }
                previous = key
            }
            try body(index, key, nodeFlags, data, dataSize)
        }
        if let upper, let previous, order.compare(previous, upper) >= 0 {
            throw damage(
                "the key of node \(count - 1) does not sort before the key that page \(pending.parent) gives as the first of the next page")
        }
        // The nodes fill the space from `mp_upper` to the end of the page, each where the one before it ends. LMDB
        // adds each node below the others, so their offsets mostly fall as their keys rise: sorted, reversed.
        if spans.count > 1 && spans[0].offset > spans[1].offset {
            spans.reverse()
        }
        var ordered = true
        for i in 1..<max(1, spans.count) where spans[i - 1].offset > spans[i].offset {
            ordered = false
            break
        }
        if !ordered { spans.sort { $0.offset < $1.offset } }
        var end = upper16
        for span in spans {
            guard span.offset == end else {
                throw damage(
                    span.offset < end
                        ? "two of its nodes overlap at byte \(span.offset)"
                        : "bytes \(end) to \(span.offset) lie between its nodes, where LMDB leaves no gap")
            }
            end += span.size
        }
        guard end == pageSize else {
            throw damage("its nodes end at byte \(end), not at the end of the page (\(pageSize))")
        }
        return count
    }

    /// Checks one node of a leaf, by what the tree may hold.
    private func leafNode(
        _ page: UnsafeRawBufferPointer, node: Int, key: UnsafeRawBufferPointer, flags: UInt16, data: UInt64,
        dataSize: Int, pageNumber: UInt64, tree: PageDamage.Tree, kind: TreeKind,
        named: inout [(name: [UInt8], record: DatabaseRecord, page: Int)], overflows: inout [OverflowReference]
    ) throws(PageDamage) {
        func damage(_ problem: String) -> PageDamage { PageDamage(database: tree, page: Int(pageNumber), problem: problem) }
        switch flags {
        case 0:
            if kind == .free {
                try freeList(UnsafeRawBufferPointer(rebasing: page[Int(data)..<Int(data) + dataSize]), page: Int(pageNumber))
            }
        case FileFormat.bigData:
            overflows.append(OverflowReference(first: data, dataSize: dataSize, leaf: Int(pageNumber)))
        case FileFormat.subData where kind == .main:
            guard dataSize == FileFormat.databaseRecordSize else {
                throw damage("node \(node), the record of a named database, is \(dataSize) bytes, not \(FileFormat.databaseRecordSize)")
            }
            guard let base = page.baseAddress else { return }
            named.append((Array(key), DatabaseRecord(base + Int(data)), Int(pageNumber)))
        default:
            throw damage("node \(node) has flags 0x\(String(flags, radix: 16)), which no node of \(tree) can have")
        }
    }

    /// Takes the free pages that a record of the free list names (an `MDB_IDL`: a count, then as many numbers).
    private func freeList(_ list: UnsafeRawBufferPointer, page: Int) throws(PageDamage) {
        func damage(_ problem: String) -> PageDamage { PageDamage(database: .freeList, page: page, problem: problem) }
        guard list.count >= 8, list.count % 8 == 0 else {
            throw damage("a record of free pages is \(list.count) bytes, not a count and page numbers of 8 bytes each")
        }
        let count = list.loadUnaligned(as: UInt64.self)
        guard count <= UInt64(list.count / 8 - 1) else {
            throw damage("a record of free pages counts \(count) pages, and its \(list.count) bytes hold \(list.count / 8 - 1)")
        }
        for entry in 0..<Int(count) {
            let number = list.loadUnaligned(fromByteOffset: 8 + 8 * entry, as: UInt64.self)
            guard number >= 2, number <= UInt64(lastPage) else {
                throw damage("a record of free pages names page \(number), which is not a page from 2 to the last, \(lastPage)")
            }
            let free = Int(number)
            if isFree(free) { throw damage("page \(free) is on the free list twice") }
            if owner[free] != OwnerMark.none { throw damage("page \(free) is on the free list, and is \(name(of: owner[free]))") }
            self.free[free >> 6] |= 1 << UInt64(free & 63)
            freeCount += 1
        }
    }

    /// Checks the overflow runs the leaves of a tree point to, in the order of their pages, and returns how many
    /// pages they take. Only the first page of each run is read (the rest is data, with no header), and all of it
    /// for the free list, whose records are read.
    private func checkOverflows(
        _ references: [OverflowReference], tree: PageDamage.Tree, mark: UInt8, kind: TreeKind
    ) throws -> UInt64 {
        var pages: UInt64 = 0
        for reference in references.sorted(by: { $0.first < $1.first }) {
            let least = (FileFormat.pageHeader - 1 + reference.dataSize) / pageSize + 1
            try checkPointer(reference.first, in: tree, from: reference.leaf, what: "an overflow run")
            let first = Int(reference.first)
            guard let header = readBytes(fd, at: first * pageSize, count: FileFormat.pageHeader) else {
                throw PageDamage(database: tree, page: first, problem: "it cannot be read")
            }
            let stored = header.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            let flags = header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 10, as: UInt16.self) }
            let count = Int(header.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self) })
            guard stored == reference.first else {
                throw PageDamage(
                    database: tree, page: first,
                    problem: "it bears the number \(stored) (page \(reference.leaf) points to it as an overflow run)")
            }
            guard flags == FileFormat.overflow else {
                throw PageDamage(
                    database: tree, page: first,
                    problem: "it is \(Self.kind(flags)), where page \(reference.leaf) points to an overflow run")
            }
            guard count >= least else {
                throw PageDamage(
                    database: tree, page: first,
                    problem: "its overflow run is \(count) pages, too few for the \(reference.dataSize) bytes that page "
                        + "\(reference.leaf) keeps there (\(least))")
            }
            try claim(reference.first, count: count, for: tree, mark: mark, from: reference.leaf, what: "an overflow run")
            pages += UInt64(count)
            if kind == .free {
                guard let list = readBytes(fd, at: first * pageSize + FileFormat.pageHeader, count: reference.dataSize) else {
                    throw PageDamage(database: tree, page: first, problem: "its overflow run cannot be read")
                }
                try list.withUnsafeBytes { bytes in try freeList(bytes, page: first) }
            }
        }
        return pages
    }
}
