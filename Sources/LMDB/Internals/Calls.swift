// Thin wrappers over the LMDB C API. Modelled on swift-system's
// Internals/Syscalls.swift: this is the only file in the module that calls an
// `mdb_*` function. Every wrapper turns a non-zero return code into an
// `LMDBError` naming the C function, through the single helper `check`.
//
// Nothing here allocates on success paths: `MDB_val`s live on the stack and
// returned buffers point straight into the memory map.

internal import CLMDB

/// Throws an `LMDBError` for any non-zero LMDB return code.
///
/// The function name is a `StaticString` so that the success path costs one
/// comparison; the `String` is only built when an error is thrown.
@inline(__always)
internal func check(_ rc: Int32, _ function: StaticString) throws(LMDBError) {
    if rc != 0 {
        throw LMDBError(code: rc, function: function.description)
    }
}

@inline(__always)
private func val(_ buffer: UnsafeRawBufferPointer) -> MDB_val {
    // LMDB takes `void *` but never writes through key or (non-reserve) data
    // pointers it is given.
    MDB_val(mv_size: buffer.count, mv_data: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
}

@inline(__always)
private func buffer(_ value: MDB_val) -> UnsafeRawBufferPointer {
    UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
}

// MARK: Errors

/// `mdb_strerror`: LMDB's message for its own codes, `strerror` for errno values.
internal func lmdb_strerror(_ code: Int32) -> String {
    guard let message = mdb_strerror(code) else { return "error \(code)" }
    return String(cString: message)
}

// MARK: Environment

internal func lmdb_env_create() throws(LMDBError) -> OpaquePointer {
    var env: OpaquePointer?
    try check(mdb_env_create(&env), "mdb_env_create")
    guard let env else { throw LMDBError(code: _MDB_PANIC, function: "mdb_env_create") }
    return env
}

internal func lmdb_env_set_maxdbs(_ env: OpaquePointer, _ count: UInt32) throws(LMDBError) {
    try check(mdb_env_set_maxdbs(env, MDB_dbi(count)), "mdb_env_set_maxdbs")
}

internal func lmdb_env_set_maxreaders(_ env: OpaquePointer, _ count: UInt32) throws(LMDBError) {
    try check(mdb_env_set_maxreaders(env, count), "mdb_env_set_maxreaders")
}

internal func lmdb_env_set_mapsize(_ env: OpaquePointer, _ size: Int) throws(LMDBError) {
    try check(mdb_env_set_mapsize(env, size), "mdb_env_set_mapsize")
}

internal func lmdb_env_open(
    _ env: OpaquePointer, _ path: String, _ flags: UInt32, _ mode: mdb_mode_t
) throws(LMDBError) {
    try check(mdb_env_open(env, path, flags, mode), "mdb_env_open")
}

internal func lmdb_env_close(_ env: OpaquePointer) {
    mdb_env_close(env)
}

internal func lmdb_env_info(_ env: OpaquePointer) throws(LMDBError) -> EnvironmentInfo {
    var info = MDB_envinfo()
    try check(mdb_env_info(env, &info), "mdb_env_info")
    var stat = MDB_stat()
    try check(mdb_env_stat(env, &stat), "mdb_env_stat")
    return EnvironmentInfo(
        mapSize: info.me_mapsize,
        lastPageNumber: info.me_last_pgno,
        lastTransactionID: info.me_last_txnid,
        maxReaders: info.me_maxreaders,
        readersUsed: info.me_numreaders,
        pageSize: Int(stat.ms_psize)
    )
}

internal func lmdb_env_get_fd(_ env: OpaquePointer) throws(LMDBError) -> Int32 {
    var fd: mdb_filehandle_t = -1
    try check(mdb_env_get_fd(env, &fd), "mdb_env_get_fd")
    return fd
}

internal func lmdb_env_get_maxkeysize(_ env: OpaquePointer) -> Int {
    Int(mdb_env_get_maxkeysize(env))
}

internal func lmdb_env_sync(_ env: OpaquePointer, force: Bool) throws(LMDBError) {
    try check(mdb_env_sync(env, force ? 1 : 0), "mdb_env_sync")
}

internal func lmdb_env_set_flags(_ env: OpaquePointer, _ flags: UInt32, on: Bool) throws(LMDBError) {
    try check(mdb_env_set_flags(env, flags, on ? 1 : 0), "mdb_env_set_flags")
}

internal func lmdb_env_get_flags(_ env: OpaquePointer) throws(LMDBError) -> UInt32 {
    var flags: UInt32 = 0
    try check(mdb_env_get_flags(env, &flags), "mdb_env_get_flags")
    return flags
}

internal func lmdb_env_copyfd2(_ env: OpaquePointer, _ fd: Int32, _ flags: UInt32) throws(LMDBError) {
    try check(mdb_env_copyfd2(env, fd, flags), "mdb_env_copyfd2")
}

/// `O_DIRECT`, or 0 where the platform has none.
internal var lmdb_o_direct: Int32 { lmdb_shim_o_direct() }

/// Linux's `fallocate` with mode 0 on bytes `[offset, offset + length)` of `fd`: 0, or the `errno` (`EOPNOTSUPP`
/// where the file system or the platform cannot; never emulated by writing).
internal func lmdb_fallocate(_ fd: Int32, offset: Int, length: Int) -> Int32 {
    lmdb_shim_fallocate(fd, Int64(offset), Int64(length))
}

internal func lmdb_reader_check(_ env: OpaquePointer) throws(LMDBError) -> Int32 {
    var dead: Int32 = 0
    try check(mdb_reader_check(env, &dead), "mdb_reader_check")
    return dead
}

/// The read transactions open now in every process on the environment: the slots of `mdb_reader_list` that name a
/// snapshot (a slot a process keeps between transactions lists `-` instead).
internal func lmdb_active_readers(_ env: OpaquePointer) throws(LMDBError) -> Int {
    var count = 0
    let rc = withUnsafeMutablePointer(to: &count) { counter in
        mdb_reader_list(env, { message, context in
            guard let message, let context else { return 0 }
            // "    pid     thread     txnid" (the heading), then "%10d %zx %-10s" per slot, or "(no active readers)".
            let fields = String(cString: message).split(whereSeparator: \.isWhitespace)
            if fields.count == 3, Int32(fields[0]) != nil, fields[2] != "-" {
                context.assumingMemoryBound(to: Int.self).pointee += 1
            }
            return 0
        }, counter)
    }
    guard rc >= 0 else { throw LMDBError(code: rc, function: "mdb_reader_list") }
    return count
}

// MARK: Transactions

internal func lmdb_txn_begin(_ env: OpaquePointer, readOnly: Bool) throws(LMDBError) -> OpaquePointer {
    var txn: OpaquePointer?
    try check(mdb_txn_begin(env, nil, readOnly ? _MDB_RDONLY : 0, &txn), "mdb_txn_begin")
    guard let txn else { throw LMDBError(code: _MDB_BAD_TXN, function: "mdb_txn_begin") }
    return txn
}

/// Commits and frees the transaction; LMDB frees it on failure too.
internal func lmdb_txn_commit(_ txn: OpaquePointer) throws(LMDBError) {
    try check(mdb_txn_commit(txn), "mdb_txn_commit")
}

internal func lmdb_txn_abort(_ txn: OpaquePointer) {
    mdb_txn_abort(txn)
}

internal func lmdb_txn_id(_ txn: OpaquePointer) -> Int {
    mdb_txn_id(txn)
}

// MARK: Databases

internal func lmdb_dbi_open(_ txn: OpaquePointer, _ name: String?, _ flags: UInt32) throws(LMDBError) -> UInt32 {
    var dbi: MDB_dbi = 0
    if let name {
        try check(mdb_dbi_open(txn, name, flags, &dbi), "mdb_dbi_open")
    } else {
        try check(mdb_dbi_open(txn, nil, flags, &dbi), "mdb_dbi_open")
    }
    return UInt32(dbi)
}

internal func lmdb_stat_entries(_ txn: OpaquePointer, _ dbi: UInt32) throws(LMDBError) -> Int {
    var stat = MDB_stat()
    try check(mdb_stat(txn, MDB_dbi(dbi), &stat), "mdb_stat")
    return stat.ms_entries
}

internal func lmdb_drop(_ txn: OpaquePointer, _ dbi: UInt32, delete: Bool) throws(LMDBError) {
    try check(mdb_drop(txn, MDB_dbi(dbi), delete ? 1 : 0), "mdb_drop")
}

// MARK: Data

/// `mdb_get`; `nil` on `MDB_NOTFOUND`. The result points into the map.
@inline(__always)
internal func lmdb_get(
    _ txn: OpaquePointer, _ dbi: UInt32, _ key: UnsafeRawBufferPointer
) throws(LMDBError) -> UnsafeRawBufferPointer? {
    var k = val(key)
    var v = MDB_val()
    let rc = mdb_get(txn, MDB_dbi(dbi), &k, &v)
    if rc == MDB_NOTFOUND { return nil }
    try check(rc, "mdb_get")
    return buffer(v)
}

@inline(__always)
internal func lmdb_put(
    _ txn: OpaquePointer, _ dbi: UInt32, _ key: UnsafeRawBufferPointer,
    _ value: UnsafeRawBufferPointer, _ flags: UInt32
) throws(LMDBError) {
    var k = val(key)
    var v = val(value)
    try check(mdb_put(txn, MDB_dbi(dbi), &k, &v, flags), "mdb_put")
}

/// `mdb_put` with `MDB_RESERVE`: returns the reserved, writable space in the map.
@inline(__always)
internal func lmdb_reserve(
    _ txn: OpaquePointer, _ dbi: UInt32, _ key: UnsafeRawBufferPointer, _ count: Int, _ flags: UInt32
) throws(LMDBError) -> UnsafeMutableRawBufferPointer {
    var k = val(key)
    var v = MDB_val(mv_size: count, mv_data: nil)
    try check(mdb_put(txn, MDB_dbi(dbi), &k, &v, flags | _MDB_RESERVE), "mdb_put")
    return UnsafeMutableRawBufferPointer(start: v.mv_data, count: v.mv_size)
}

/// `mdb_del` of a key (all its values); `false` on `MDB_NOTFOUND`.
@inline(__always)
internal func lmdb_del(_ txn: OpaquePointer, _ dbi: UInt32, _ key: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
    var k = val(key)
    let rc = mdb_del(txn, MDB_dbi(dbi), &k, nil)
    if rc == MDB_NOTFOUND { return false }
    try check(rc, "mdb_del")
    return true
}

// MARK: Cursors

/// The `MDB_cursor_op`s this module uses.
internal enum CursorOperation {
    case first, last, next, previous, current, setRange, setKey

    fileprivate var op: MDB_cursor_op {
        switch self {
        case .first: MDB_FIRST
        case .last: MDB_LAST
        case .next: MDB_NEXT
        case .previous: MDB_PREV
        case .current: MDB_GET_CURRENT
        case .setRange: MDB_SET_RANGE
        case .setKey: MDB_SET_KEY
        }
    }
}

internal func lmdb_cursor_open(_ txn: OpaquePointer, _ dbi: UInt32) throws(LMDBError) -> OpaquePointer {
    var cursor: OpaquePointer?
    try check(mdb_cursor_open(txn, MDB_dbi(dbi), &cursor), "mdb_cursor_open")
    guard let cursor else { throw LMDBError(code: _MDB_BAD_TXN, function: "mdb_cursor_open") }
    return cursor
}

internal func lmdb_cursor_close(_ cursor: OpaquePointer) {
    mdb_cursor_close(cursor)
}

/// `mdb_cursor_get`; `nil` on `MDB_NOTFOUND`. `key` is only read for the
/// positioning operations (`setRange`, `setKey`).
@inline(__always)
internal func lmdb_cursor_get(
    _ cursor: OpaquePointer, _ operation: CursorOperation, _ key: UnsafeRawBufferPointer? = nil
) throws(LMDBError) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)? {
    var k = key.map(val) ?? MDB_val()
    var v = MDB_val()
    let rc = mdb_cursor_get(cursor, &k, &v, operation.op)
    if rc == MDB_NOTFOUND { return nil }
    try check(rc, "mdb_cursor_get")
    return (buffer(k), buffer(v))
}

@inline(__always)
internal func lmdb_cursor_put(
    _ cursor: OpaquePointer, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ flags: UInt32
) throws(LMDBError) {
    var k = val(key)
    var v = val(value)
    try check(mdb_cursor_put(cursor, &k, &v, flags), "mdb_cursor_put")
}

internal func lmdb_cursor_del(_ cursor: OpaquePointer) throws(LMDBError) {
    try check(mdb_cursor_del(cursor, 0), "mdb_cursor_del")
}
