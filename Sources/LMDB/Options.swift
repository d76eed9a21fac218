#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How an ``Environment`` is opened.
///
/// These map onto the `mdb_env_set_*` calls made between `mdb_env_create`
/// and `mdb_env_open`, plus the auto-grow ceiling this module enforces.
public struct EnvironmentOptions: Sendable, Hashable {
    /// The maximum number of named databases. The corresponding C function is `mdb_env_set_maxdbs`.
    public var maxDatabases: UInt32 = 16

    /// The map size of a new environment, in bytes; an existing environment
    /// keeps its stored size if that is larger. Ignored when ``readOnly``
    /// (a reader adopts the writer's size). The corresponding C function is
    /// `mdb_env_set_mapsize`.
    public var initialMapSize: Int = 64 << 20

    /// The ceiling for automatic growth: ``Environment/write(_:)`` doubles
    /// the map on `MDB_MAP_FULL` up to this size, then throws the map-full error.
    /// A writable environment stored with a larger map is opened with this size
    /// if the pages in use fit in it, and otherwise keeps its stored size.
    public var maxMapSize: Int = 1 << 40

    /// The number of reader slots (concurrent read transactions across all
    /// processes). The corresponding C function is `mdb_env_set_maxreaders`.
    /// Only the first process to open the environment sets it.
    public var maxReaders: UInt32 = 510

    /// Open with `MDB_RDONLY`: no write transactions, databases are opened
    /// with a read transaction and never created.
    public var readOnly: Bool = false

    /// The permissions for files LMDB creates (`data.mdb`, `lock.mdb`).
    public var fileMode: mode_t = 0o600

    /// Creates options with the defaults, overriding the given values.
    public init(
        maxDatabases: UInt32 = 16,
        initialMapSize: Int = 64 << 20,
        maxMapSize: Int = 1 << 40,
        maxReaders: UInt32 = 510,
        readOnly: Bool = false,
        fileMode: mode_t = 0o600
    ) {
        self.maxDatabases = maxDatabases
        self.initialMapSize = initialMapSize
        self.maxMapSize = maxMapSize
        self.maxReaders = maxReaders
        self.readOnly = readOnly
        self.fileMode = fileMode
    }
}

/// A snapshot of an environment's size and usage.
///
/// The corresponding C functions are `mdb_env_info` and `mdb_env_stat`.
public struct EnvironmentInfo: Sendable, Hashable {
    /// The size of this process's memory map, in bytes (`me_mapsize`).
    public var mapSize: Int
    /// The number of the last used page (`me_last_pgno`).
    public var lastPageNumber: Int
    /// The ID of the last committed transaction (`me_last_txnid`).
    public var lastTransactionID: Int
    /// The number of reader slots (`me_maxreaders`).
    public var maxReaders: UInt32
    /// The most reader slots in use at once so far (`me_numreaders`): it never comes down. For the read
    /// transactions open now, see ``Environment/activeReaders()``.
    public var readersUsed: UInt32
    /// The database page size, in bytes (`ms_psize`).
    public var pageSize: Int

    /// The bytes of the map in use, free pages included:
    /// `(lastPageNumber + 1) * pageSize`.
    public var usedBytes: Int { FileFormat.bytes(throughPage: lastPageNumber, pageSize: pageSize) }
}

/// A handle for a database (a key-value B-tree) inside an ``Environment``.
///
/// It wraps an `MDB_dbi` returned by `mdb_dbi_open` (see
/// ``Environment/openDatabase(_:create:integerKeys:)``). Handles are plain
/// integers, valid for the lifetime of the environment that opened them, in
/// any transaction and on any thread. Never use one with another environment.
public struct Database: Sendable, Hashable {
    /// The raw `MDB_dbi`.
    public let rawValue: UInt32

    internal init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// Options for storing a key/value pair.
///
/// The corresponding C function is `mdb_put`; the values are those of `<lmdb.h>`.
public struct PutFlags: OptionSet, Sendable, Hashable {
    /// The raw `mdb_put` flags.
    public let rawValue: UInt32

    /// Creates flags from raw `mdb_put` flags.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Store only if the key is not present; otherwise fail with
    /// `MDB_KEYEXIST` (``LMDBError/isKeyExist``). C: `MDB_NOOVERWRITE`.
    public static var noOverwrite: PutFlags { PutFlags(rawValue: _MDB_NOOVERWRITE) }

    /// For duplicate-sorted databases: store only if this key/value pair is
    /// not present. C: `MDB_NODUPDATA`.
    public static var noDupData: PutFlags { PutFlags(rawValue: _MDB_NODUPDATA) }

    /// Append at the end of the database without comparisons or page
    /// splits: fast bulk loading of keys already in order. A key that does not
    /// sort after the current last key fails with `MDB_KEYEXIST`. C: `MDB_APPEND`.
    public static var append: PutFlags { PutFlags(rawValue: _MDB_APPEND) }

    /// As ``append``, for sorted duplicate values. C: `MDB_APPENDDUP`.
    public static var appendDup: PutFlags { PutFlags(rawValue: _MDB_APPENDDUP) }
}
