// LMDB's data file format, as `mdb.c` lays it out (`MDB_DATA_VERSION` 1; `<lmdb.h>` does not declare it), for
// the code that reads `data.mdb` with `pread` instead of through the map: the check of a file cut short
// (`DataFile`) and the check of every page (`PageWalk`). For 64-bit builds, where `pgno_t`, `txnid_t` and
// `mdb_size_t` are 8 bytes; the file is in the byte order of the machine that wrote it.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

internal enum FileFormat {
    /// A bound on the size of a data file, far above any this module maps: a meta page that names a last page past
    /// it is damaged.
    static let largestFile = 1 << 40

    /// The bytes of pages 0 through `lastPage`, or `Int.max` when a damaged meta page names a last page whose end
    /// no `Int` holds.
    static func bytes(throughPage lastPage: Int, pageSize: Int) -> Int {
        let (pages, overflow) = lastPage.addingReportingOverflow(1)
        let (bytes, overflowAgain) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow || overflowAgain || pages < 0 ? Int.max : bytes
    }

    /// The size of the file `fd`, in bytes (`fstat`).
    static func size(of fd: Int32) throws(LMDBError) -> Int {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw LMDBError(code: errno, function: "fstat") }
        return Int(status.st_size)
    }

    static let magic: UInt32 = 0xBEEF_C0DE
    static let dataVersion: UInt32 = 1
    /// `PAGEHDRSZ`: `mp_pgno` (8), `mp_pad` (2), `mp_flags` (2), `mp_lower`/`mp_upper` (2 + 2) or `mp_pages` (4).
    /// `mp_ptrs`, the offsets of the nodes from the start of the page, follow it, two bytes each.
    static let pageHeader = 16
    static let branch: UInt16 = 0x01  // P_BRANCH
    static let leaf: UInt16 = 0x02  // P_LEAF
    static let overflow: UInt16 = 0x04  // P_OVERFLOW
    static let meta: UInt16 = 0x08  // P_META
    static let leaf2: UInt16 = 0x20  // P_LEAF2
    /// `NODESIZE`: `mn_lo`, `mn_hi` (the data size in a leaf, the child's page number in a branch), `mn_flags`
    /// (the page number's top 16 bits in a branch), `mn_ksize`; the key, then the data, follow.
    static let nodeHeader = 8
    /// `F_BIGDATA`: the node's data is the number of the first page of an overflow run.
    static let bigData: UInt16 = 0x01
    /// `F_SUBDATA`: the node's data is the `MDB_db` of a named database (or of a tree of duplicates).
    static let subData: UInt16 = 0x02
    /// `F_DUPDATA`: the node's data holds duplicates.
    static let dupData: UInt16 = 0x04
    /// An `MDB_db`: `md_pad` 0, `md_flags` 4, `md_depth` 6, `md_branch_pages` 8, `md_leaf_pages` 16,
    /// `md_overflow_pages` 24, `md_entries` 32, `md_root` 40.
    static let databaseRecordSize = 48
    /// `MDB_meta`, after the page header: `mm_magic` 0, `mm_version` 4, `mm_address` 8, `mm_mapsize` 16,
    /// `mm_dbs[FREE_DBI]` 24 (its `md_pad` is the page size), `mm_dbs[MAIN_DBI]` 72, `mm_last_pg` 120,
    /// `mm_txnid` 128.
    static let metaSize = 136
    static let invalidPage = UInt64.max  // P_INVALID: an empty tree
    /// `CURSOR_STACK`: no tree LMDB can read is deeper.
    static let maxDepth = 32
}

/// The header of a node of a branch or leaf page (`NODESIZE` bytes at its offset in the page), as it stands.
internal struct NodeHeader {
    var low: UInt16
    var high: UInt16
    var flags: UInt16
    var keySize: Int

    /// The header at `offset` of `page`, which must hold its ``FileFormat/nodeHeader`` bytes.
    init(_ page: UnsafeRawBufferPointer, at offset: Int) {
        low = page.loadUnaligned(fromByteOffset: offset, as: UInt16.self)
        high = page.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self)
        flags = page.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
        keySize = Int(page.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self))
    }

    /// A leaf node's data size.
    var dataSize: Int { Int(low) | Int(high) << 16 }
    /// A branch node's child (`NODEPGNO`): its number, in the size fields and the flags.
    var child: UInt64 { UInt64(low) | UInt64(high) << 16 | UInt64(flags) << 32 }
}

/// An `MDB_db`: where a tree starts, how deep it is, and what LMDB counts of it.
internal struct DatabaseRecord: Hashable {
    var pad: UInt32
    var flags: UInt16
    var depth: Int
    var branchPages: UInt64
    var leafPages: UInt64
    var overflowPages: UInt64
    var entries: UInt64
    var root: UInt64

    init(_ bytes: UnsafeRawPointer) {
        pad = bytes.loadUnaligned(as: UInt32.self)
        flags = bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
        depth = Int(bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        branchPages = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        leafPages = bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        overflowPages = bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        entries = bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
        root = bytes.loadUnaligned(fromByteOffset: 40, as: UInt64.self)
    }
}

/// What one meta page says.
internal struct MetaPage: Equatable {
    /// Which of the two it is: page 0 or page 1.
    var number: Int
    var pageSize: Int
    var free: DatabaseRecord
    var main: DatabaseRecord
    var lastPage: Int
    var transactionID: UInt64

    /// The meta page (of the two) whose transaction is `transactionID`, if one is and it reads as a meta page of
    /// `pageSize`, read with `pread`. It is read twice, and taken only when both reads agree: a writer in another
    /// process overwrites it two commits after it was written, and a read at that moment could see half of each.
    static func read(_ fd: Int32, pageSize: Int, transactionID: UInt64) -> MetaPage? {
        for number in 0..<2 {
            guard let found = read(fd, number: number, at: number * pageSize),
                found == read(fd, number: number, at: number * pageSize), found.transactionID == transactionID
            else { continue }
            return found.pageSize == pageSize ? found : nil
        }
        return nil
    }

    /// Meta page `number`, read with `pread` at `offset`, if it reads as a meta page (its flags, LMDB's magic and
    /// data version); what it says is not checked further.
    static func read(_ fd: Int32, number: Int, at offset: Int) -> MetaPage? {
        guard let bytes = readBytes(fd, at: offset, count: FileFormat.pageHeader + FileFormat.metaSize) else { return nil }
        return bytes.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return nil }
            let meta = base + FileFormat.pageHeader
            guard raw.loadUnaligned(fromByteOffset: 10, as: UInt16.self) & FileFormat.meta != 0,
                meta.loadUnaligned(as: UInt32.self) == FileFormat.magic,
                meta.loadUnaligned(fromByteOffset: 4, as: UInt32.self) == FileFormat.dataVersion
            else { return nil }
            let free = DatabaseRecord(meta + 24)
            return MetaPage(
                number: number, pageSize: Int(free.pad), free: free, main: DatabaseRecord(meta + 72),
                lastPage: Int(clamping: meta.loadUnaligned(fromByteOffset: 120, as: UInt64.self)),
                transactionID: meta.loadUnaligned(fromByteOffset: 128, as: UInt64.self))
        }
    }

    /// Whether its last page is one a data file of its pages can have: past page 1, and within
    /// ``FileFormat/largestFile``, which bounds what a check allocates a byte and a bit for per page.
    var hasPlausibleLastPage: Bool {
        pageSize > 0 && lastPage >= 1 && lastPage < FileFormat.largestFile / pageSize
    }
}

/// `count` bytes at `offset` of the file, or `nil` if it ends before them or cannot be read.
internal func readBytes(_ fd: Int32, at offset: Int, count: Int) -> [UInt8]? {
    var bytes = [UInt8](repeating: 0, count: count)
    let done = bytes.withUnsafeMutableBytes { preadFully(fd, into: $0, at: offset) }
    return done == count ? bytes : nil
}

/// Reads `buffer.count` bytes at `offset` of the file into `buffer`, retrying what `pread` leaves short, and returns
/// how many it read: fewer where the file ends, -1 (with `errno`) when a read fails.
internal func preadFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
    guard let base = buffer.baseAddress else { return 0 }
    var done = 0
    while done < buffer.count {
        let n = pread(fd, base + done, buffer.count - done, off_t(offset + done))
        if n < 0 {
            if errno == EINTR { continue }
            return -1
        }
        if n == 0 { break }
        done += n
    }
    return done
}
