#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An error returned by an LMDB function.
///
/// Like swift-system's `Errno`, this is a plain value: the C return code
/// (one of LMDB's `MDB_*` codes, or an `errno` value such as `ENOSPC` or
/// `EACCES`), plus the name of the C function that returned it.
///
/// Test for the conditions callers commonly handle with the `is…` properties:
///
/// ```swift
/// do { try env.write { txn in ... } }
/// catch let error as LMDBError where error.isMapFull { ... }
/// ```
///
/// or compare `error.errorCode` with a ``LMDBError/Code`` constant:
/// `error.errorCode == .keyExist`.
public struct LMDBError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The raw C return code: an `MDB_*` code (negative) or an `errno` value.
    public let code: Int32

    /// The name of the C function that failed, for example `"mdb_put"`.
    public let function: String

    /// Creates an error from a raw return code and the C function that returned it.
    public init(code: Int32, function: String) {
        self.code = code
        self.function = function
    }

    /// The library's description of the code.
    ///
    /// The corresponding C function is `mdb_strerror` (which defers to
    /// `strerror` for `errno` values).
    public var message: String { lmdb_strerror(code) }

    /// The code as a typed ``LMDBError/Code``.
    public var errorCode: Code { Code(rawValue: code) }

    /// A textual description: function, message and code.
    public var description: String { "\(function): \(message) (\(code))" }

    /// The memory map is full (`MDB_MAP_FULL`). ``Environment/write(_:)``
    /// grows the map and retries by itself; you see this only once
    /// ``EnvironmentOptions/maxMapSize`` is reached.
    public var isMapFull: Bool { code == _MDB_MAP_FULL }

    /// The key or cursor position was not found (`MDB_NOTFOUND`).
    /// Lookups in this module return `nil` instead of throwing this.
    public var isNotFound: Bool { code == _MDB_NOTFOUND }

    /// The key already exists (`MDB_KEYEXIST`): from `.noOverwrite`, or from
    /// `.append` with a key that does not sort after the last key.
    public var isKeyExist: Bool { code == _MDB_KEYEXIST }

    /// Another process grew the map beyond this process's mapping
    /// (`MDB_MAP_RESIZED`). ``Environment/read(_:)`` and
    /// ``Environment/write(_:)`` adopt the new size and retry by themselves.
    public var isMapResized: Bool { code == _MDB_MAP_RESIZED }

    /// The reader lock table is full (`MDB_READERS_FULL`); see
    /// ``EnvironmentOptions/maxReaders`` and ``Environment/readerCheck()``.
    public var isReadersFull: Bool { code == _MDB_READERS_FULL }

    /// The environment had a fatal error (`MDB_PANIC`): a meta page could not be written, and from then on
    /// LMDB refuses every transaction of this process, reads included. Only closing the environment and opening
    /// it again clears it; the last commit whose meta page failed is not in the log then.
    public var isPanic: Bool { code == _MDB_PANIC }
}

extension LMDBError {
    /// A typed LMDB return code, for comparisons such as
    /// `error.errorCode == .mapFull`.
    ///
    /// The values are read from `<lmdb.h>`; `errno` values (e.g. `ENOSPC`)
    /// can be wrapped with ``init(_:)``.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The raw C return code.
        public let rawValue: Int32

        /// Creates a code from a raw C return code.
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// Creates a code from a raw C return code.
        public init(_ rawValue: Int32) { self.rawValue = rawValue }

        /// The library's description of the code (`mdb_strerror`).
        public var description: String { lmdb_strerror(rawValue) }

        /// Key/data pair already exists. The corresponding C code is `MDB_KEYEXIST`.
        public static var keyExist: Code { Code(_MDB_KEYEXIST) }
        /// Key/data pair not found (EOF). The corresponding C code is `MDB_NOTFOUND`.
        public static var notFound: Code { Code(_MDB_NOTFOUND) }
        /// Requested page not found: usually corruption. The corresponding C code is `MDB_PAGE_NOTFOUND`.
        public static var pageNotFound: Code { Code(_MDB_PAGE_NOTFOUND) }
        /// Located page was the wrong type. The corresponding C code is `MDB_CORRUPTED`.
        public static var corrupted: Code { Code(_MDB_CORRUPTED) }
        /// Update of a meta page failed or the environment had a fatal error.
        /// The corresponding C code is `MDB_PANIC`.
        public static var panic: Code { Code(_MDB_PANIC) }
        /// Environment version mismatch. The corresponding C code is `MDB_VERSION_MISMATCH`.
        public static var versionMismatch: Code { Code(_MDB_VERSION_MISMATCH) }
        /// File is not a valid LMDB file. The corresponding C code is `MDB_INVALID`.
        public static var invalid: Code { Code(_MDB_INVALID) }
        /// Environment map size reached. The corresponding C code is `MDB_MAP_FULL`.
        public static var mapFull: Code { Code(_MDB_MAP_FULL) }
        /// Environment maximum number of databases reached. The corresponding C code is `MDB_DBS_FULL`.
        public static var databasesFull: Code { Code(_MDB_DBS_FULL) }
        /// Environment maximum number of readers reached. The corresponding C code is `MDB_READERS_FULL`.
        public static var readersFull: Code { Code(_MDB_READERS_FULL) }
        /// Transaction has too many dirty pages. The corresponding C code is `MDB_TXN_FULL`.
        public static var transactionFull: Code { Code(_MDB_TXN_FULL) }
        /// Cursor stack too deep: internal error. The corresponding C code is `MDB_CURSOR_FULL`.
        public static var cursorFull: Code { Code(_MDB_CURSOR_FULL) }
        /// Page has not enough space: internal error. The corresponding C code is `MDB_PAGE_FULL`.
        public static var pageFull: Code { Code(_MDB_PAGE_FULL) }
        /// Database contents grew beyond this process's map size. The corresponding C code is `MDB_MAP_RESIZED`.
        public static var mapResized: Code { Code(_MDB_MAP_RESIZED) }
        /// Operation and database incompatible, or database flags changed.
        /// The corresponding C code is `MDB_INCOMPATIBLE`.
        public static var incompatible: Code { Code(_MDB_INCOMPATIBLE) }
        /// Invalid reuse of a reader lock table slot. The corresponding C code is `MDB_BAD_RSLOT`.
        public static var badReaderSlot: Code { Code(_MDB_BAD_RSLOT) }
        /// Transaction must abort, has a child, or is invalid. The corresponding C code is `MDB_BAD_TXN`.
        public static var badTransaction: Code { Code(_MDB_BAD_TXN) }
        /// Unsupported size of key, database name or data. The corresponding C code is `MDB_BAD_VALSIZE`.
        public static var badValueSize: Code { Code(_MDB_BAD_VALSIZE) }
        /// The database handle was changed unexpectedly. The corresponding C code is `MDB_BAD_DBI`.
        public static var badDatabase: Code { Code(_MDB_BAD_DBI) }
    }
}

/// `data.mdb` is shorter than the pages in use that LMDB's meta page records: the file was cut short (a copy or a
/// restore that did not finish, a `truncate`), and LMDB, which maps the file and reads its pages from the map, would
/// be killed by `SIGBUS` on the first read of a page past its end.
///
/// ``Environment/init(directory:options:)`` throws it, read-write and read-only alike, before any transaction
/// reads a page. Nothing in the directory was changed.
public struct TruncatedDataFile: Error, Hashable, Sendable, CustomStringConvertible {
    /// The data file, `directory + "/data.mdb"`.
    public let path: String
    /// Its size, in bytes.
    public let size: Int
    /// The size it needs: the end of the last page the meta page records (`(me_last_pgno + 1) * ms_psize`), or,
    /// for a file too short to hold LMDB's two meta pages, those two pages. (Pages at the end that are free need
    /// not be in the file, and are not what makes it short; some past its end are in use.)
    public let neededSize: Int
    /// The number of the last page in use (`me_last_pgno`); `nil` when the meta pages themselves are cut, so that
    /// it cannot be read.
    public let lastPageNumber: Int?
    /// The page size, in bytes (`ms_psize`, or the system's page size when the meta pages are cut).
    public let pageSize: Int

    public init(path: String, size: Int, neededSize: Int, lastPageNumber: Int?, pageSize: Int) {
        self.path = path
        self.size = size
        self.neededSize = neededSize
        self.lastPageNumber = lastPageNumber
        self.pageSize = pageSize
    }

    /// What is wrong, in words: the file, its size, and the size it needs.
    public var problem: String {
        if let lastPageNumber {
            return "\(path) is \(size) bytes, but its pages run to byte \(neededSize) (LMDB's meta page counts "
                + "\(lastPageNumber + 1) pages of \(pageSize) bytes), and pages past its end are in use: the file was cut short"
        }
        return "\(path) is \(size) bytes, shorter than the two meta pages an LMDB data file begins with "
            + "(\(neededSize) bytes): the file was cut short, or is not an LMDB data file"
    }

    public var description: String { problem + "; restore it from a backup" }
}

/// LMDB's lock file, `lock.mdb`, could not be given its disk space: the file system is full (`ENOSPC`), a quota is
/// reached (`EDQUOT`), or the disk fails.
///
/// LMDB writes its table of readers through a shared map of the file, where a block the file system has no room
/// for kills the process with `SIGBUS` instead of returning an error; so ``Environment/init(directory:options:)``
/// allocates every block of it before LMDB maps it, read-write and read-only alike, and throws this when it
/// cannot. `data.mdb` was not opened. A lock file that this made stays, empty or in part allocated, as LMDB
/// itself would leave it; the next open allocates it again.
public struct LockFileNotAllocated: Error, Hashable, Sendable, CustomStringConvertible {
    /// The lock file, `directory + "/lock.mdb"`.
    public let path: String
    /// The bytes it was to have allocated.
    public let size: Int
    /// The `errno` of the call that failed.
    public let code: Int32
    /// The C function that failed: `open`, `fstat` or `fallocate`.
    public let function: String

    public init(path: String, size: Int, code: Int32, function: String) {
        self.path = path
        self.size = size
        self.code = code
        self.function = function
    }

    /// Whether the file system, or the user's quota on it, had no room (`ENOSPC`, `EDQUOT`).
    public var isOutOfSpace: Bool { code == ENOSPC || code == EDQUOT }

    /// What failed, in words: the file, the bytes, the call and its error.
    public var problem: String {
        "cannot allocate the \(size) bytes of \(path), LMDB's table of readers, which it writes through a memory map: "
            + "\(function): \(LMDBError(code: code, function: function).message)"
    }

    public var description: String { problem }
}

/// A file of an environment (`data.mdb`, `lock.mdb`) that is not a regular file of its own: a symbolic link,
/// another kind of file (a device, a FIFO, a directory), or a hard link to a file that has other names. LMDB
/// opens its files by path, following links, and writes `lock.mdb` (and a writer `data.mdb`): whoever could put
/// such an entry in the directory could have a process that opens it, one of root's say, write a file they may
/// not. ``Environment/init(directory:options:)`` refuses the environment; nothing was opened or written.
public struct UnsafeEnvironmentFile: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file, `directory + "/lock.mdb"` or `directory + "/data.mdb"`.
    public let path: String
    /// What it is, as a predicate of `path`: "is a symbolic link", "has 2 names (hard links)".
    public let problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String {
        "\(path) \(problem); LMDB's files must be regular files of their own, which it opens by path and writes: "
            + "it is not opened, so that nothing it leads to is written. Remove it if the directory is yours (LMDB "
            + "makes lock.mdb again), or copy data.mdb itself, not a link to it, into a directory of its own"
    }
}
