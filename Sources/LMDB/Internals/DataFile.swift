// Whether `data.mdb` holds every page LMDB may read, checked when an environment is opened: LMDB maps the file and
// reads its pages from the map, so a page past the end of a file that was cut short is a SIGBUS, not an error.
//
// The meta page records the last page in use (`me_last_pgno`). A file shorter than that page's end is not always
// cut short, though: a page that a transaction allocated past the end of the file and freed again before it
// committed is never written (LMDB's "loose" pages, and an overflow run freed in the transaction that made it), but
// it counts in `me_last_pgno` and goes to the free list. LMDB never reads a free page (it hands out a fresh buffer
// when it reuses one), and `mdb_env_copyfd2` itself copies no further than the file's end. So a short file is
// refused only when a page past its end is not on the free list, which is read here straight from the file with
// `pread`, never through the map. Every page LMDB keeps is either reachable from the meta page or free (what
// LMDB's own `mdb_audit` checks), so a page past the end that is not free is one a read may reach.
//
// The free list is read only for a file that is short of its last page, so never in the common case.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

internal enum DataFile {
    /// Throws ``TruncatedDataFile`` when `data.mdb` of the open environment `env` is shorter than a page that a read
    /// of its latest snapshot may reach. Reads only the meta pages through the map (as `mdb_env_info` does, and as
    /// `mdb_env_open` already did); everything else with `pread`, inside a read transaction, so that a writer in
    /// another process cannot reuse the pages of the snapshot while they are read.
    static func check(_ env: OpaquePointer, path: String) throws {
        let fd = try lmdb_env_get_fd(env)
        // The meta page first, then the size: a writer extends the file before it writes a meta page naming the
        // new pages, so a file read after its meta page is never short of what that meta page names.
        let info = try lmdb_env_info(env)
        let size = try fileSize(fd)
        let needed = FileFormat.bytes(throughPage: info.lastPageNumber, pageSize: info.pageSize)
        if size >= needed { return }
        for _ in 0..<8 {
            let txn = try lmdb_txn_begin(env, readOnly: true)
            defer { lmdb_txn_abort(txn) }
            // The snapshot's own meta page: a writer in another process may have committed since `info`, and
            // overwrites a meta page every other commit, so look again until one agrees with the snapshot.
            guard let meta = MetaPage.read(fd, pageSize: info.pageSize, transactionID: UInt64(lmdb_txn_id(txn))) else { continue }
            let size = try fileSize(fd)
            let needed = FileFormat.bytes(throughPage: meta.lastPage, pageSize: meta.pageSize)
            if size >= needed { return }
            // A last page no file of these pages can reach is damage, whatever the free list says.
            if needed < FileFormat.largestFile && pagesPastEndAreFree(fd, meta: meta, fileSize: size) { return }
            throw TruncatedDataFile(path: path, size: size, neededSize: needed, lastPageNumber: meta.lastPage, pageSize: meta.pageSize)
        }
        throw TruncatedDataFile(path: path, size: size, neededSize: needed, lastPageNumber: info.lastPageNumber, pageSize: info.pageSize)
    }

    /// For a file that LMDB's `mdb_env_open` refused as not an LMDB file (`MDB_INVALID`), or found no meta pages
    /// in: the refusal to give when it is too short to hold the two meta pages it begins with, `nil` otherwise
    /// (missing, empty, or long enough to be something else).
    static func tooShortForMetaPages(path: String) -> TruncatedDataFile? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        let size = Int(status.st_size)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard size > 0, size < 2 * page else { return nil }
        return TruncatedDataFile(path: path, size: size, neededSize: 2 * page, lastPageNumber: nil, pageSize: page)
    }

    private static func fileSize(_ fd: Int32) throws(LMDBError) -> Int {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw LMDBError(code: errno, function: "fstat") }
        return Int(status.st_size)
    }

    /// Whether every page from the first that does not end within the file to the last in use is on the free list
    /// (the `FREE_DBI` tree, whose records are lists of page numbers). False when it is not, and when the free list
    /// cannot be read whole: a page of it past the end of the file, or one that does not read as what it must be.
    private static func pagesPastEndAreFree(_ fd: Int32, meta: MetaPage, fileSize: Int) -> Bool {
        let pageSize = meta.pageSize
        let firstMissing = fileSize / pageSize
        guard firstMissing <= meta.lastPage else { return true }
        // The format's fields are 8 bytes only where `size_t` is.
        guard MemoryLayout<Int>.size == 8, meta.free.root != FileFormat.invalidPage else { return false }
        var freeMissing = Set<Int>()
        let missing = firstMissing...meta.lastPage
        var pending: [(page: UInt64, depth: Int)] = [(meta.free.root, 1)]
        var visited = 0
        while let (number, depth) = pending.popLast() {
            visited += 1
            guard depth <= meta.free.depth, visited <= meta.lastPage + 1, number <= UInt64(meta.lastPage),
                Int(number) < firstMissing, let page = readBytes(fd, at: Int(number) * pageSize, count: pageSize),
                page.load(UInt64.self, at: 0) == number
            else { return false }
            let flags = page.load(UInt16.self, at: 10)
            let lower = Int(page.load(UInt16.self, at: 12))
            guard flags & (FileFormat.branch | FileFormat.leaf) != 0, flags & FileFormat.leaf2 == 0,
                lower >= FileFormat.pageHeader, lower <= pageSize
            else { return false }
            for index in 0..<(lower - FileFormat.pageHeader) / 2 {
                let node = Int(page.load(UInt16.self, at: FileFormat.pageHeader + 2 * index))
                guard node >= lower, node + 8 <= pageSize else { return false }
                let low = UInt64(page.load(UInt16.self, at: node))
                let high = UInt64(page.load(UInt16.self, at: node + 2))
                let nodeFlags = page.load(UInt16.self, at: node + 4)
                if flags & FileFormat.branch != 0 {
                    // `NODEPGNO`: the child's number, in the size fields and the flags.
                    pending.append((low | high << 16 | UInt64(nodeFlags) << 32, depth + 1))
                    continue
                }
                let keySize = Int(page.load(UInt16.self, at: node + 6))
                let dataSize = Int(low | high << 16)
                let dataStart = node + 8 + keySize
                let list: [UInt8]
                if nodeFlags & FileFormat.bigData != 0 {
                    guard dataStart + 8 <= pageSize else { return false }
                    let first = page.load(UInt64.self, at: dataStart)
                    guard first <= UInt64(meta.lastPage), Int(first) < firstMissing,
                        let header = readBytes(fd, at: Int(first) * pageSize, count: FileFormat.pageHeader),
                        header.load(UInt64.self, at: 0) == first, header.load(UInt16.self, at: 10) & FileFormat.overflow != 0
                    else { return false }
                    let pages = Int(header.load(UInt32.self, at: 12))
                    guard FileFormat.pageHeader + dataSize <= pages * pageSize, Int(first) + pages <= firstMissing,
                        let bytes = readBytes(fd, at: Int(first) * pageSize + FileFormat.pageHeader, count: dataSize)
                    else { return false }
                    list = bytes
                } else {
                    guard dataStart + dataSize <= pageSize else { return false }
                    list = Array(page[dataStart..<dataStart + dataSize])
                }
                // An `MDB_IDL`: its length, then that many page numbers.
                guard list.count >= 8 else { return false }
                let count = min(Int(clamping: list.load(UInt64.self, at: 0)), list.count / 8 - 1)
                for entry in 0..<count {
                    let freed = Int(clamping: list.load(UInt64.self, at: 8 + 8 * entry))
                    if missing.contains(freed) { freeMissing.insert(freed) }
                }
            }
        }
        return freeMissing.count == missing.count
    }
}

extension Array where Element == UInt8 {
    /// The native-endian value at `offset` (the data file is in the byte order of the machine that wrote it).
    fileprivate func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }
}
