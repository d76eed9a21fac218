// The LMDB constants this module uses, read from <lmdb.h> by the compiler
// (never restated by hand). Modelled on swift-system's Internals/Constants.swift:
// the rest of the module refers to these names and never imports CLMDB.

internal import CLMDB

// MARK: Return codes

internal var _MDB_SUCCESS: Int32 { MDB_SUCCESS }
internal var _MDB_KEYEXIST: Int32 { MDB_KEYEXIST }
internal var _MDB_NOTFOUND: Int32 { MDB_NOTFOUND }
internal var _MDB_PAGE_NOTFOUND: Int32 { MDB_PAGE_NOTFOUND }
internal var _MDB_CORRUPTED: Int32 { MDB_CORRUPTED }
internal var _MDB_PANIC: Int32 { MDB_PANIC }
internal var _MDB_VERSION_MISMATCH: Int32 { MDB_VERSION_MISMATCH }
internal var _MDB_INVALID: Int32 { MDB_INVALID }
internal var _MDB_MAP_FULL: Int32 { MDB_MAP_FULL }
internal var _MDB_DBS_FULL: Int32 { MDB_DBS_FULL }
internal var _MDB_READERS_FULL: Int32 { MDB_READERS_FULL }
internal var _MDB_TLS_FULL: Int32 { MDB_TLS_FULL }
internal var _MDB_TXN_FULL: Int32 { MDB_TXN_FULL }
internal var _MDB_CURSOR_FULL: Int32 { MDB_CURSOR_FULL }
internal var _MDB_PAGE_FULL: Int32 { MDB_PAGE_FULL }
internal var _MDB_MAP_RESIZED: Int32 { MDB_MAP_RESIZED }
internal var _MDB_INCOMPATIBLE: Int32 { MDB_INCOMPATIBLE }
internal var _MDB_BAD_RSLOT: Int32 { MDB_BAD_RSLOT }
internal var _MDB_BAD_TXN: Int32 { MDB_BAD_TXN }
internal var _MDB_BAD_VALSIZE: Int32 { MDB_BAD_VALSIZE }
internal var _MDB_BAD_DBI: Int32 { MDB_BAD_DBI }

// MARK: Environment flags (mdb_env_open)

internal var _MDB_RDONLY: UInt32 { UInt32(MDB_RDONLY) }
internal var _MDB_NOTLS: UInt32 { UInt32(MDB_NOTLS) }
internal var _MDB_NOMETASYNC: UInt32 { UInt32(MDB_NOMETASYNC) }

// MARK: Database flags (mdb_dbi_open)

internal var _MDB_CREATE: UInt32 { UInt32(MDB_CREATE) }
internal var _MDB_INTEGERKEY: UInt32 { UInt32(MDB_INTEGERKEY) }

// MARK: Write flags (mdb_put)

internal var _MDB_NOOVERWRITE: UInt32 { UInt32(MDB_NOOVERWRITE) }
internal var _MDB_NODUPDATA: UInt32 { UInt32(MDB_NODUPDATA) }
internal var _MDB_RESERVE: UInt32 { UInt32(MDB_RESERVE) }
internal var _MDB_APPEND: UInt32 { UInt32(MDB_APPEND) }
internal var _MDB_APPENDDUP: UInt32 { UInt32(MDB_APPENDDUP) }

// MARK: Copy flags (mdb_env_copyfd2)

internal var _MDB_CP_COMPACT: UInt32 { UInt32(MDB_CP_COMPACT) }

// MARK: Database flags as stored in the data file (an `MDB_db`'s `md_flags`), read by the page check

internal var _MDB_REVERSEKEY: UInt16 { UInt16(MDB_REVERSEKEY) }
internal var _MDB_DUPSORT: UInt16 { UInt16(MDB_DUPSORT) }
/// `MDB_INTEGERKEY` as LMDB stores it in `md_flags` (16 bits); `_MDB_INTEGERKEY` is the flag `mdb_dbi_open` takes.
internal var _MDB_INTEGERKEY_IN_MD_FLAGS: UInt16 { UInt16(MDB_INTEGERKEY) }
