#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The read operations of both transaction kinds, so that a helper can take
/// either: `func head(_ txn: borrowing some ReadableTransaction & ~Copyable)`.
///
/// Buffers returned by these methods point into the memory map: they are
/// valid only until the transaction ends (in a write transaction: until the
/// next change to the database) and must not be written through.
public protocol ReadableTransaction: ~Copyable {
    /// Looks up `key`; `nil` if absent. The corresponding C function is `mdb_get`.
    func get(_ db: Database, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer?

    /// Opens a cursor on `db`, closed when the ``Cursor`` is destroyed.
    /// The corresponding C function is `mdb_cursor_open`.
    func cursor(_ db: Database) throws -> Cursor

    /// The number of entries in `db`. The corresponding C function is `mdb_stat` (`ms_entries`).
    func count(_ db: Database) throws -> Int

    /// The transaction ID: for a read transaction, the ID of the snapshot read.
    /// The corresponding C function is `mdb_txn_id`.
    var id: Int { get }
}

extension ReadableTransaction where Self: ~Copyable {
    /// Looks up a byte-array key; `nil` if absent. The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: [UInt8]) throws -> UnsafeRawBufferPointer? {
        try key.withUnsafeBytes { try get(db, key: $0) }
    }

    /// Looks up a key given as contiguous bytes (`Data`, a digest, …); `nil` if absent.
    /// The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: some ContiguousBytes) throws -> UnsafeRawBufferPointer? {
        try key.withUnsafeBytes { try get(db, key: $0) }
    }

    /// Looks up a key given as the UTF-8 bytes of a string; `nil` if absent.
    /// The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: String) throws -> UnsafeRawBufferPointer? {
        var key = key
        return try key.withUTF8 { try get(db, key: UnsafeRawBufferPointer($0)) }
    }

    /// Looks up a key given as the 8-byte big-endian encoding of `key`; `nil` if absent.
    /// The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: UInt64) throws -> UnsafeRawBufferPointer? {
        try withUnsafeBytes(of: key.bigEndian) { try get(db, key: $0) }
    }

    /// Calls `body` with each entry of `db` in key order (or reverse order)
    /// from `start` (see `Cursor.forEach`)
    /// until it returns `false`. Nothing is copied.
    ///
    /// The corresponding C functions are `mdb_cursor_open`, `mdb_cursor_get` and `mdb_cursor_close`.
    public func forEach(
        _ db: Database,
        from start: UnsafeRawBufferPointer? = nil,
        reverse: Bool = false,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        let cursor = try cursor(db)
        try cursor.forEach(from: start, reverse: reverse, body)
    }

    /// Calls `body` with each entry of `db` in key order (or reverse order)
    /// from the 8-byte big-endian encoding of `start`, until it returns `false`.
    ///
    /// The corresponding C functions are `mdb_cursor_open`, `mdb_cursor_get` and `mdb_cursor_close`.
    public func forEach(
        _ db: Database,
        from start: UInt64,
        reverse: Bool = false,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        let cursor = try cursor(db)
        try cursor.forEach(from: start, reverse: reverse, body)
    }
}

/// A read-only transaction: a consistent snapshot of the environment.
///
/// Obtained only inside ``Environment/read(_:)``, which begins it
/// (`mdb_txn_begin` with `MDB_RDONLY`) and ends it (`mdb_txn_abort`) when the
/// closure returns. It is `~Copyable` and passed `borrowing`, so it cannot
/// escape the closure; the buffers it hands out must not escape either.
public struct ReadTransaction: ~Copyable, ReadableTransaction {
    /// The `MDB_txn *`.
    internal let handle: OpaquePointer

    internal init(handle: OpaquePointer) { self.handle = handle }

    /// Looks up `key`; `nil` if absent. The result points into the map.
    /// The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        try unsafeHandle.get(db, key: key)
    }

    /// Opens a cursor on `db`, closed when the ``Cursor`` is destroyed.
    /// The corresponding C function is `mdb_cursor_open`.
    public func cursor(_ db: Database) throws -> Cursor { try unsafeHandle.cursor(db) }

    /// The number of entries in `db`. The corresponding C function is `mdb_stat` (`ms_entries`).
    public func count(_ db: Database) throws -> Int { try unsafeHandle.count(db) }

    /// The ID of the snapshot this transaction reads. The corresponding C function is `mdb_txn_id`.
    public var id: Int { unsafeHandle.id }

    /// A copyable, storable reference to this transaction, valid only until
    /// the `read` closure returns. See ``UnsafeReadTransaction``.
    public var unsafeHandle: UnsafeReadTransaction { UnsafeReadTransaction(handle: handle) }
}

/// A copyable, storable reference to the ``ReadTransaction`` of the current
/// ``Environment/read(_:)`` closure, with the same operations: for a stored
/// lookup function that must outlive a single call.
///
/// It is **unsafe** in the way `UnsafePointer` is: the compiler does not stop
/// it from escaping, and using it after the closure returns (the transaction
/// is then ended) is undefined behaviour. Like the transaction, it must stay on
/// the thread running the closure (it is deliberately not `Sendable`).
public struct UnsafeReadTransaction: ReadableTransaction {
    /// The `MDB_txn *`.
    private let handle: OpaquePointer

    internal init(handle: OpaquePointer) { self.handle = handle }

    /// ``ReadTransaction/get(_:key:)``.
    public func get(_ db: Database, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        try lmdb_get(handle, db.rawValue, key)
    }

    /// ``ReadTransaction/cursor(_:)``.
    public func cursor(_ db: Database) throws -> Cursor {
        Cursor(handle: try lmdb_cursor_open(handle, db.rawValue), mapFullSeen: nil)
    }

    /// ``ReadTransaction/count(_:)``.
    public func count(_ db: Database) throws -> Int { try lmdb_stat_entries(handle, db.rawValue) }

    /// ``ReadTransaction/id``.
    public var id: Int { lmdb_txn_id(handle) }
}

/// The write operations of ``WriteTransaction`` and
/// ``UnsafeWriteTransaction``; the convenience overloads (byte arrays,
/// `ContiguousBytes`, strings, big-endian `UInt64` keys) are written once here.
public protocol WritableTransaction: ReadableTransaction, ~Copyable {
    /// Stores `value` under `key`. The corresponding C function is `mdb_put`.
    func put(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags) throws

    /// Reserves `count` bytes for the value of `key` and returns them.
    /// The corresponding C function is `mdb_put` with `MDB_RESERVE`.
    func reserve(_ db: Database, key: UnsafeRawBufferPointer, count: Int, flags: PutFlags) throws
        -> UnsafeMutableRawBufferPointer

    /// Deletes `key`; `false` if it was absent. The corresponding C function is `mdb_del`.
    func delete(_ db: Database, key: UnsafeRawBufferPointer) throws -> Bool

    /// Empties or deletes `db`. The corresponding C function is `mdb_drop`.
    func drop(_ db: Database, delete: Bool) throws
}

extension WritableTransaction where Self: ~Copyable {
    /// Stores a byte-array value under a byte-array key. The corresponding C function is `mdb_put`.
    public func put(_ db: Database, key: [UInt8], value: [UInt8], flags: PutFlags = []) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in try put(db, key: k, value: v, flags: flags) }
        }
    }

    /// Stores contiguous bytes (`Data`, arrays, digests, buffers, …) under a
    /// contiguous-bytes key. The corresponding C function is `mdb_put`.
    public func put(_ db: Database, key: some ContiguousBytes, value: some ContiguousBytes, flags: PutFlags = []) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in try put(db, key: k, value: v, flags: flags) }
        }
    }

    /// Stores contiguous bytes under the UTF-8 bytes of a string key.
    /// The corresponding C function is `mdb_put`.
    public func put(_ db: Database, key: String, value: some ContiguousBytes, flags: PutFlags = []) throws {
        var key = key
        try key.withUTF8 { k in
            try value.withUnsafeBytes { v in try put(db, key: UnsafeRawBufferPointer(k), value: v, flags: flags) }
        }
    }

    /// Stores a byte-array value under the 8-byte big-endian encoding of
    /// `key`. Such keys sort numerically, so increasing keys can use `.append`.
    /// The corresponding C function is `mdb_put`.
    public func put(_ db: Database, key: UInt64, value: [UInt8], flags: PutFlags = []) throws {
        try withUnsafeBytes(of: key.bigEndian) { k in
            try value.withUnsafeBytes { v in try put(db, key: k, value: v, flags: flags) }
        }
    }

    /// Stores contiguous bytes (including an `UnsafeRawBufferPointer`) under
    /// the 8-byte big-endian encoding of `key`.
    /// The corresponding C function is `mdb_put`.
    public func put(_ db: Database, key: UInt64, value: some ContiguousBytes, flags: PutFlags = []) throws {
        try withUnsafeBytes(of: key.bigEndian) { k in
            try value.withUnsafeBytes { v in try put(db, key: k, value: v, flags: flags) }
        }
    }

    /// Reserves `count` bytes for the value of the 8-byte big-endian key `key`.
    /// The corresponding C function is `mdb_put` with `MDB_RESERVE`.
    public func reserve(_ db: Database, key: UInt64, count: Int, flags: PutFlags = []) throws
        -> UnsafeMutableRawBufferPointer
    {
        try withUnsafeBytes(of: key.bigEndian) { try reserve(db, key: $0, count: count, flags: flags) }
    }

    /// Reserves `count` bytes for the value of a byte-array key.
    /// The corresponding C function is `mdb_put` with `MDB_RESERVE`.
    public func reserve(_ db: Database, key: [UInt8], count: Int, flags: PutFlags = []) throws
        -> UnsafeMutableRawBufferPointer
    {
        try key.withUnsafeBytes { try reserve(db, key: $0, count: count, flags: flags) }
    }

    /// Reserves `count` bytes for the value of a contiguous-bytes key.
    /// The corresponding C function is `mdb_put` with `MDB_RESERVE`.
    public func reserve(_ db: Database, key: some ContiguousBytes, count: Int, flags: PutFlags = []) throws
        -> UnsafeMutableRawBufferPointer
    {
        try key.withUnsafeBytes { try reserve(db, key: $0, count: count, flags: flags) }
    }

    /// Deletes a byte-array key. Returns `false` if it was absent.
    /// The corresponding C function is `mdb_del`.
    @discardableResult
    public func delete(_ db: Database, key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete(db, key: $0) }
    }

    /// Deletes a contiguous-bytes key. Returns `false` if it was absent.
    /// The corresponding C function is `mdb_del`.
    @discardableResult
    public func delete(_ db: Database, key: some ContiguousBytes) throws -> Bool {
        try key.withUnsafeBytes { try delete(db, key: $0) }
    }

    /// Deletes a string key (its UTF-8 bytes). Returns `false` if it was absent.
    /// The corresponding C function is `mdb_del`.
    @discardableResult
    public func delete(_ db: Database, key: String) throws -> Bool {
        var key = key
        return try key.withUTF8 { try delete(db, key: UnsafeRawBufferPointer($0)) }
    }

    /// Deletes the 8-byte big-endian key `key`. Returns `false` if it was absent.
    /// The corresponding C function is `mdb_del`.
    @discardableResult
    public func delete(_ db: Database, key: UInt64) throws -> Bool {
        try withUnsafeBytes(of: key.bigEndian) { try delete(db, key: $0) }
    }
}

/// Runs a write operation, noting `MDB_MAP_FULL` in the environment's flag so
/// that `Environment.write` grows the map even if the body catches or wraps
/// the error.
@inline(__always)
private func noting<R>(_ flag: UnsafeMutablePointer<Bool>, _ operation: () throws(LMDBError) -> R) throws(LMDBError) -> R {
    do {
        return try operation()
    } catch {
        if error.isMapFull { flag.pointee = true }
        throw error
    }
}

/// A read-write transaction.
///
/// Obtained only inside ``Environment/write(_:)``, which begins it
/// (`mdb_txn_begin`), and commits it (`mdb_txn_commit`) when the closure
/// returns or aborts it (`mdb_txn_abort`) when the closure throws. It is
/// `~Copyable` and passed `borrowing`, so it cannot escape the closure. (To
/// store it in a copyable type for the duration of the closure, see
/// ``UnsafeWriteTransaction``.)
///
/// It reads its own uncommitted changes. Buffers returned by reads are valid
/// until the next change in this transaction or its end.
public struct WriteTransaction: ~Copyable, WritableTransaction {
    /// The `MDB_txn *`.
    internal let handle: OpaquePointer

    /// The environment's flag noting `MDB_MAP_FULL` during this `write`.
    internal let mapFullSeen: UnsafeMutablePointer<Bool>

    internal init(handle: OpaquePointer, mapFullSeen: UnsafeMutablePointer<Bool>) {
        self.handle = handle
        self.mapFullSeen = mapFullSeen
    }

    // MARK: Reading

    /// Looks up `key`, seeing this transaction's changes; `nil` if absent.
    /// The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        try lmdb_get(handle, db.rawValue, key)
    }

    /// Opens a cursor on `db`, closed when the ``Cursor`` is destroyed (which
    /// must happen before the closure returns).
    /// The corresponding C function is `mdb_cursor_open`.
    public func cursor(_ db: Database) throws -> Cursor {
        Cursor(handle: try lmdb_cursor_open(handle, db.rawValue), mapFullSeen: mapFullSeen)
    }

    /// The number of entries in `db`, this transaction's changes included.
    /// The corresponding C function is `mdb_stat` (`ms_entries`).
    public func count(_ db: Database) throws -> Int {
        try lmdb_stat_entries(handle, db.rawValue)
    }

    /// The ID this transaction will commit as. The corresponding C function is `mdb_txn_id`.
    public var id: Int { lmdb_txn_id(handle) }

    /// Runs `body` with a ``ReadTransaction`` view of this transaction, for
    /// helpers written against `ReadTransaction`. It sees this transaction's changes.
    public func withReadView<R>(_ body: (borrowing ReadTransaction) throws -> R) rethrows -> R {
        try body(ReadTransaction(handle: handle))
    }

    /// A copyable, storable reference to this transaction, valid only until
    /// the `write` closure returns. See ``UnsafeWriteTransaction``.
    public var unsafeHandle: UnsafeWriteTransaction { UnsafeWriteTransaction(self) }

    // MARK: Writing

    /// Stores `value` under `key`, replacing any previous value unless
    /// `flags` say otherwise. The value is copied into the map.
    ///
    /// The corresponding C function is `mdb_put`.
    ///
    /// - Throws: ``LMDBError``: `MDB_KEYEXIST` for `.noOverwrite` with an
    ///   existing key or `.append` with a key not after the last one;
    ///   `MDB_BAD_VALSIZE` for an empty or too long key (see
    ///   ``Environment/maxKeySize``); `MDB_MAP_FULL` (handled by `write`).
    public func put(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags = []) throws {
        try noting(mapFullSeen) { () throws(LMDBError) in try lmdb_put(handle, db.rawValue, key, value, flags.rawValue) }
    }

    /// Reserves `count` bytes for the value of `key` and returns them, so the
    /// caller can serialize straight into the map. Fill all of them before the
    /// next change in this transaction; the buffer is invalid after that.
    /// Not for duplicate-sorted databases.
    ///
    /// The corresponding C function is `mdb_put` with `MDB_RESERVE`.
    public func reserve(_ db: Database, key: UnsafeRawBufferPointer, count: Int, flags: PutFlags = []) throws
        -> UnsafeMutableRawBufferPointer
    {
        try noting(mapFullSeen) { () throws(LMDBError) in
            try lmdb_reserve(handle, db.rawValue, key, count, flags.rawValue)
        }
    }

    /// Deletes `key` and its value. Returns `false` if it was absent.
    ///
    /// The corresponding C function is `mdb_del`.
    @discardableResult
    public func delete(_ db: Database, key: UnsafeRawBufferPointer) throws -> Bool {
        try noting(mapFullSeen) { () throws(LMDBError) in try lmdb_del(handle, db.rawValue, key) }
    }

    /// Empties `db` (`delete: false`), or deletes it from the environment and
    /// closes its handle (`delete: true`; the ``Database`` must not be used again).
    ///
    /// The corresponding C function is `mdb_drop`.
    public func drop(_ db: Database, delete: Bool) throws {
        try noting(mapFullSeen) { () throws(LMDBError) in try lmdb_drop(handle, db.rawValue, delete: delete) }
    }
}

/// A copyable, storable reference to the ``WriteTransaction`` of the current
/// ``Environment/write(_:)`` closure, with the same operations.
///
/// Use it when a value that must be copyable (a struct conforming to a
/// protocol, a stored property) has to carry the transaction. It is
/// **unsafe** in the way `UnsafePointer` is: the compiler does not stop it from
/// escaping, and using it after the closure returns (the transaction is then
/// committed or aborted) is undefined behaviour. Like the transaction, it must
/// stay on the thread running the closure (it is deliberately not `Sendable`).
///
/// Map-full errors raised through it still trigger the automatic growth and
/// re-run of ``Environment/write(_:)``.
public struct UnsafeWriteTransaction: WritableTransaction {
    /// The `MDB_txn *`.
    private let handle: OpaquePointer

    /// The environment's flag noting `MDB_MAP_FULL` during this `write`.
    private let mapFullSeen: UnsafeMutablePointer<Bool>

    /// Wraps the transaction of the current `write` closure.
    public init(_ transaction: borrowing WriteTransaction) {
        handle = transaction.handle
        mapFullSeen = transaction.mapFullSeen
    }

    /// Looks up `key`, seeing the transaction's changes; `nil` if absent.
    /// The corresponding C function is `mdb_get`.
    public func get(_ db: Database, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        try lmdb_get(handle, db.rawValue, key)
    }

    /// Opens a cursor on `db`, closed when the ``Cursor`` is destroyed.
    /// The corresponding C function is `mdb_cursor_open`.
    public func cursor(_ db: Database) throws -> Cursor {
        Cursor(handle: try lmdb_cursor_open(handle, db.rawValue), mapFullSeen: mapFullSeen)
    }

    /// The number of entries in `db`. The corresponding C function is `mdb_stat` (`ms_entries`).
    public func count(_ db: Database) throws -> Int {
        try lmdb_stat_entries(handle, db.rawValue)
    }

    /// The transaction ID. The corresponding C function is `mdb_txn_id`.
    public var id: Int { lmdb_txn_id(handle) }

    /// Stores `value` under `key`. The corresponding C function is `mdb_put`.
    public func put(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags = []) throws {
        try noting(mapFullSeen) { () throws(LMDBError) in try lmdb_put(handle, db.rawValue, key, value, flags.rawValue) }
    }

    /// Reserves `count` bytes for the value of `key` and returns them.
    /// The corresponding C function is `mdb_put` with `MDB_RESERVE`.
    public func reserve(_ db: Database, key: UnsafeRawBufferPointer, count: Int, flags: PutFlags = []) throws
        -> UnsafeMutableRawBufferPointer
    {
        try noting(mapFullSeen) { () throws(LMDBError) in
            try lmdb_reserve(handle, db.rawValue, key, count, flags.rawValue)
        }
    }

    /// Deletes `key`; `false` if it was absent. The corresponding C function is `mdb_del`.
    @discardableResult
    public func delete(_ db: Database, key: UnsafeRawBufferPointer) throws -> Bool {
        try noting(mapFullSeen) { () throws(LMDBError) in try lmdb_del(handle, db.rawValue, key) }
    }

    /// Empties or deletes `db`. The corresponding C function is `mdb_drop`.
    public func drop(_ db: Database, delete: Bool) throws {
        try noting(mapFullSeen) { () throws(LMDBError) in try lmdb_drop(handle, db.rawValue, delete: delete) }
    }
}
