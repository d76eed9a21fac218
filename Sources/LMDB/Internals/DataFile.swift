// Whether `data.mdb` holds every page LMDB may read, checked when an environment is opened: LMDB maps the file and
// reads its pages from the map, so a page past the end of a file that was cut short is a SIGBUS, not an error.
//
// The meta page records the last page in use (`me_last_pgno`). A file shorter than that page's end is not always
// cut short, though: a page that a transaction allocated past the end of the file and freed again before it
// committed is never written (LMDB's "loose" pages, and an overflow run freed in the transaction that made it), but
// it counts in `me_last_pgno` and goes to the free list. LMDB never reads a free page (it hands out a fresh buffer
// when it reuses one), and `mdb_env_copyfd2` itself copies no further than the file's end. So a short file is
// refused only when a page past its end is not on the free list, which `PageWalk` reads straight from the file
// with `pread`, never through the map (a page of the free list itself past the end leaves it unknown: refused).
// Every page LMDB keeps is either reachable from the meta page or free (what LMDB's own `mdb_audit` checks), so a
// page past the end that is not free is one a read may reach.
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
        let size = try FileFormat.size(of: fd)
        let needed = FileFormat.bytes(throughPage: info.lastPageNumber, pageSize: info.pageSize)
        if size >= needed { return }
        for _ in 0..<8 {
            let txn = try lmdb_txn_begin(env, readOnly: true)
            defer { lmdb_txn_abort(txn) }
            // The snapshot's own meta page: a writer in another process may have committed since `info`, and
            // overwrites a meta page every other commit, so look again until one agrees with the snapshot.
            guard let meta = MetaPage.read(fd, pageSize: info.pageSize, transactionID: UInt64(bitPattern: Int64(lmdb_txn_id(txn)))) else { continue }
            let size = try FileFormat.size(of: fd)
            let needed = FileFormat.bytes(throughPage: meta.lastPage, pageSize: meta.pageSize)
            if size >= needed { return }
            // A last page no file of these pages can reach is damage, whatever the free list says (`pagesAreFree`).
            if PageWalk.pagesAreFree(from: size / meta.pageSize, meta: meta, fd: fd, fileSize: size) { return }
            throw TruncatedDataFile(path: path, size: size, neededSize: needed, lastPageNumber: meta.lastPage, pageSize: meta.pageSize)
        }
        throw TruncatedDataFile(path: path, size: size, neededSize: needed, lastPageNumber: info.lastPageNumber, pageSize: info.pageSize)
    }

    /// Throws ``PageDamage`` naming a meta page of `data.mdb` at `path` that LMDB would open and then fault on. LMDB
    /// reads meta page 1 at page 0's page size, so a page size of 0 there is a division by zero (SIGFPE); and it
    /// takes the later of the two, whose page size then places the other in its map, so a later meta page whose
    /// page size differs from page 0's puts that read past the end of the file (SIGBUS), both inside
    /// `mdb_env_open`. Read with `pread` before LMDB maps anything; anything else LMDB refuses itself
    /// (`MDB_INVALID`). A missing or new file passes.
    ///
    /// Also named: a meta page that does not read as one in a file long enough to hold both (LMDB would refuse the
    /// whole file as `MDB_INVALID`, naming neither), and one whose transaction id is not its own: LMDB writes meta
    /// page 0 for even transactions and page 1 for odd ones (both hold 0 in a new file). A transaction id damaged
    /// into the other's parity could make LMDB take the older page, and the log lose its last commits silently; so
    /// could one of its own parity, and the two pages are named unless they hold consecutive transaction ids.
    /// Each page is read up to three times, so that a writer in another process overwriting it at that moment is
    /// not taken for damage.
    ///
    /// `data.mdb` is opened without following a symbolic link; one that is not a regular file (with one name, when
    /// `written`) is thrown as ``UnsafeEnvironmentFile``.
    static func checkMetaPages(path: String, written: Bool) throws {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ELOOP { throw UnsafeEnvironmentFile(path: path, problem: "is a symbolic link") }
            return
        }
        defer { close(fd) }
        try EnvironmentFiles.refuseUnsafe(fd, path: path, written: written)
        let fileSize = (try? FileFormat.size(of: fd)) ?? 0
        guard fileSize >= 2 * 512 else { return }
        /// Meta page `number` at `offset`, when one of three reads gives a meta page of its own parity; else what the
        /// last read gave (nil when it is not a meta page at all).
        func stable(_ number: Int, at offset: Int) -> (page: MetaPage?, ownParity: Bool) {
            var last: MetaPage?
            for _ in 0..<3 {
                last = MetaPage.read(fd, number: number, at: offset)
                if let page = last, page.transactionID == 0 || Int(page.transactionID & 1) == number { return (page, true) }
            }
            return (last, false)
        }
        let (read0, parity0) = stable(0, at: 0)
        guard let first = read0 else {
            throw PageDamage(
                database: nil, page: 0, problem: "it does not read as a meta page (its flags, LMDB's magic number or its version)")
        }
        // LMDB looks for meta page 1 at page 0's page size, and divides by it: 0 is a SIGFPE.
        guard (512...65536).contains(first.pageSize), first.pageSize.nonzeroBitCount == 1 else {
            throw PageDamage(
                database: nil, page: 0,
                problem: "it is a meta page, and says pages are \(first.pageSize) bytes, which no LMDB file has (a power of two from 512 to 65536)")
        }
        guard parity0 else {
            throw PageDamage(
                database: nil, page: 0,
                problem: "its transaction id, \(first.transactionID), is odd, and LMDB writes meta page 0 for even ones only")
        }
        guard fileSize >= 2 * first.pageSize else { return }
        let (read1, parity1) = stable(1, at: first.pageSize)
        guard let second = read1 else {
            throw PageDamage(
                database: nil, page: 1, problem: "it does not read as a meta page (its flags, LMDB's magic number or its version)")
        }
        guard parity1 else {
            throw PageDamage(
                database: nil, page: 1,
                problem: "its transaction id, \(second.transactionID), is even, and LMDB writes meta page 1 for odd ones only")
        }
        if second.transactionID > first.transactionID, second.pageSize != first.pageSize {
            throw PageDamage(
                database: nil, page: 1,
                problem: "it is the later meta page, and says pages are \(second.pageSize) bytes where meta page 0 says \(first.pageSize)")
        }
        // Each commit writes the meta page of its parity with the next transaction id, so the two always hold
        // consecutive ones (both 0 in a file no commit has written yet), and no commit lowers the last page in use.
        // A damaged id that is still of its page's parity would have LMDB open the older commit's tree, without the
        // last commits. Read again before taking it for damage: a writer in another process may have committed
        // twice between the two reads.
        var (earlier, later) = first.transactionID < second.transactionID ? (first, second) : (second, first)
        for attempt in 0..<3 {
            if attempt > 0, let zero = stable(0, at: 0).page, let one = stable(1, at: first.pageSize).page {
                (earlier, later) = zero.transactionID < one.transactionID ? (zero, one) : (one, zero)
            }
            let consecutive = later.transactionID - earlier.transactionID == 1 || later.transactionID == 0
            if consecutive && later.lastPage >= earlier.lastPage { return }
        }
        let pair = "the meta pages hold transactions \(earlier.transactionID) (page \(earlier.number)) and \(later.transactionID) (page \(later.number))"
        let problem = later.transactionID - earlier.transactionID != 1
            ? "\(pair), where every commit leaves two consecutive ones"
            : "\(pair), and the later says the last page in use is \(later.lastPage), the earlier \(earlier.lastPage), where no commit lowers it"
        throw PageDamage(
            database: nil, page: later.number,
            problem: "\(problem): a transaction id is damaged, and LMDB would open page \(later.number) as the latest commit, which may be an earlier one, without the last commits")
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
}
