#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A position in a database, for ordered scans and range lookups.
///
/// It wraps an `MDB_cursor` (`mdb_cursor_open`) and is closed
/// (`mdb_cursor_close`) when the value is destroyed or ``close()`` is called.
///
/// A cursor belongs to the transaction that opened it and **must not outlive
/// the transaction's closure** (it is `~Copyable` so that it cannot be copied
/// out by accident; do not move it into a variable declared outside the
/// closure either). Likewise the key and value buffers it returns point into
/// the memory map and are valid only until the transaction ends, or in a
/// write transaction, until the next change to the database.
///
/// Every positioning method returns the entry at the new position, or `nil`
/// when there is none (`MDB_NOTFOUND`). Nothing is copied.
///
/// ```swift
/// try env.read { txn in
///     let cursor = try txn.cursor(events)
///     var entry = try cursor.seek(atOrAfter: UInt64(100))
///     while let (key, value) = entry {
///         ...
///         entry = try cursor.next()
///     }
/// }
/// ```
public struct Cursor: ~Copyable {
    /// A key and its value, both pointing into the memory map.
    public typealias Entry = (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)

    /// The `MDB_cursor *`.
    private let handle: OpaquePointer

    /// The owning write transaction's map-full flag; `nil` in read transactions.
    private let mapFullSeen: UnsafeMutablePointer<Bool>?

    internal init(handle: OpaquePointer, mapFullSeen: UnsafeMutablePointer<Bool>?) {
        self.handle = handle
        self.mapFullSeen = mapFullSeen
    }

    deinit {
        lmdb_cursor_close(handle)
    }

    /// Closes the cursor now rather than at the end of its scope.
    ///
    /// The corresponding C function is `mdb_cursor_close`.
    public consuming func close() {
        lmdb_cursor_close(handle)
        discard self
    }

    // MARK: Positioning

    /// Moves to the first entry. The corresponding C function is `mdb_cursor_get` with `MDB_FIRST`.
    public func first() throws -> Entry? {
        try lmdb_cursor_get(handle, .first)
    }

    /// Moves to the last entry. The corresponding C function is `mdb_cursor_get` with `MDB_LAST`.
    public func last() throws -> Entry? {
        try lmdb_cursor_get(handle, .last)
    }

    /// Moves to the next entry (the first one if the cursor is not yet positioned).
    /// The corresponding C function is `mdb_cursor_get` with `MDB_NEXT`.
    public func next() throws -> Entry? {
        try lmdb_cursor_get(handle, .next)
    }

    /// Moves to the previous entry (the last one if the cursor is not yet positioned).
    /// The corresponding C function is `mdb_cursor_get` with `MDB_PREV`.
    public func previous() throws -> Entry? {
        try lmdb_cursor_get(handle, .previous)
    }

    /// Returns the entry at the current position without moving.
    /// The corresponding C function is `mdb_cursor_get` with `MDB_GET_CURRENT`.
    public func current() throws -> Entry? {
        try lmdb_cursor_get(handle, .current)
    }

    /// Moves to the first entry whose key is greater than or equal to `key`.
    /// The key must not be empty (`MDB_BAD_VALSIZE`).
    /// The corresponding C function is `mdb_cursor_get` with `MDB_SET_RANGE`.
    public func seek(atOrAfter key: UnsafeRawBufferPointer) throws -> Entry? {
        try lmdb_cursor_get(handle, .setRange, key)
    }

    /// Moves to the first entry whose key is greater than or equal to the
    /// 8-byte big-endian encoding of `key`.
    /// The corresponding C function is `mdb_cursor_get` with `MDB_SET_RANGE`.
    public func seek(atOrAfter key: UInt64) throws -> Entry? {
        try withUnsafeBytes(of: key.bigEndian) { try seek(atOrAfter: $0) }
    }

    /// Moves to the last entry whose key is less than or equal to `key`.
    /// The key must not be empty (`MDB_BAD_VALSIZE`).
    /// The corresponding C function is `mdb_cursor_get` with `MDB_SET_RANGE`,
    /// then `MDB_PREV` or `MDB_LAST`.
    public func seek(atOrBefore key: UnsafeRawBufferPointer) throws -> Entry? {
        guard let found = try lmdb_cursor_get(handle, .setRange, key) else {
            return try lmdb_cursor_get(handle, .last)
        }
        if Self.equal(found.key, key) { return found }
        return try lmdb_cursor_get(handle, .previous)
    }

    /// Moves to the last entry whose key is less than or equal to the 8-byte
    /// big-endian encoding of `key`.
    /// The corresponding C function is `mdb_cursor_get` with `MDB_SET_RANGE`,
    /// then `MDB_PREV` or `MDB_LAST`.
    public func seek(atOrBefore key: UInt64) throws -> Entry? {
        try withUnsafeBytes(of: key.bigEndian) { try seek(atOrBefore: $0) }
    }

    /// Moves to the entry whose key is exactly `key`.
    /// The corresponding C function is `mdb_cursor_get` with `MDB_SET_KEY`.
    public func seek(exactly key: UnsafeRawBufferPointer) throws -> Entry? {
        try lmdb_cursor_get(handle, .setKey, key)
    }

    /// Moves to the entry whose key is exactly the 8-byte big-endian encoding of `key`.
    /// The corresponding C function is `mdb_cursor_get` with `MDB_SET_KEY`.
    public func seek(exactly key: UInt64) throws -> Entry? {
        try withUnsafeBytes(of: key.bigEndian) { try seek(exactly: $0) }
    }

    /// `seek(atOrAfter:)` for a byte-array key.
    public func seek(atOrAfter key: [UInt8]) throws -> Entry? {
        try key.withUnsafeBytes { try seek(atOrAfter: $0) }
    }

    /// `seek(atOrAfter:)` for a contiguous-bytes key (`Data`, …).
    public func seek(atOrAfter key: some ContiguousBytes) throws -> Entry? {
        try key.withUnsafeBytes { try seek(atOrAfter: $0) }
    }

    /// `seek(atOrBefore:)` for a byte-array key.
    public func seek(atOrBefore key: [UInt8]) throws -> Entry? {
        try key.withUnsafeBytes { try seek(atOrBefore: $0) }
    }

    /// `seek(atOrBefore:)` for a contiguous-bytes key (`Data`, …).
    public func seek(atOrBefore key: some ContiguousBytes) throws -> Entry? {
        try key.withUnsafeBytes { try seek(atOrBefore: $0) }
    }

    /// `seek(exactly:)` for a byte-array key.
    public func seek(exactly key: [UInt8]) throws -> Entry? {
        try key.withUnsafeBytes { try seek(exactly: $0) }
    }

    /// `seek(exactly:)` for a contiguous-bytes key (`Data`, …).
    public func seek(exactly key: some ContiguousBytes) throws -> Entry? {
        try key.withUnsafeBytes { try seek(exactly: $0) }
    }

    // MARK: Scanning

    /// Calls `body` with each entry in key order (or reverse order), starting
    /// at the first key `>= start` (reverse: the last key `<= start`), or at
    /// the first (reverse: last) entry when `start` is `nil`, until `body`
    /// returns `false` or the entries run out. Buffers are not copied.
    ///
    /// The corresponding C function is `mdb_cursor_get`.
    public func forEach(
        from start: UnsafeRawBufferPointer? = nil,
        reverse: Bool = false,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var entry: Entry?
        switch (start, reverse) {
        case (nil, false): entry = try first()
        case (nil, true): entry = try last()
        case (let start?, false): entry = try seek(atOrAfter: start)
        case (let start?, true): entry = try seek(atOrBefore: start)
        }
        let step: CursorOperation = reverse ? .previous : .next
        while let (key, value) = entry {
            guard try body(key, value) else { return }
            entry = try lmdb_cursor_get(handle, step)
        }
    }

    /// Like the `forEach` taking a buffer, starting at the
    /// 8-byte big-endian encoding of `start`.
    public func forEach(
        from start: UInt64,
        reverse: Bool = false,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try withUnsafeBytes(of: start.bigEndian) { try forEach(from: $0, reverse: reverse, body) }
    }

    // MARK: Writing

    /// Stores `value` under `key` (write transactions only; `EACCES` otherwise) and leaves the cursor at the
    /// new entry. Where `mdb_put` searches from the root every time, a cursor's put whose key falls on the page
    /// it stands on, or past the last key of the database, skips that search: a run of puts in key order, or at
    /// the end, costs less through one cursor.
    ///
    /// The corresponding C function is `mdb_cursor_put`.
    public func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: PutFlags = []) throws {
        do throws(LMDBError) {
            try lmdb_cursor_put(handle, key, value, flags.rawValue)
        } catch {
            if error.isMapFull { mapFullSeen?.pointee = true }
            throw error
        }
    }

    /// Deletes the entry at the current position (write transactions only;
    /// `EACCES` otherwise). The cursor stays usable: ``next()`` returns the
    /// entry after the deleted one.
    ///
    /// The corresponding C function is `mdb_cursor_del`.
    public func deleteCurrent() throws {
        do throws(LMDBError) {
            try lmdb_cursor_del(handle)
        } catch {
            if error.isMapFull { mapFullSeen?.pointee = true }
            throw error
        }
    }

    private static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard let pa = a.baseAddress, let pb = b.baseAddress else { return a.count == 0 }
        return memcmp(pa, pb, a.count) == 0
    }
}
