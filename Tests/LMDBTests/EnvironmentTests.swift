import Foundation
import LMDB
import Testing

@Suite("Environment")
struct EnvironmentTests {
    @Test("put/get round trip with every key and value form")
    func roundTrip() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("kv", create: true)
            try env.write { txn throws in
                try txn.put(db, key: [1, 2, 3], value: [4, 5, 6])
                try txn.put(db, key: "name", value: Data("lmdb".utf8))
                try txn.put(db, key: UInt64(42), value: [7, 7])
                try txn.put(db, key: Data([9]), value: Data())  // empty value is legal
                // A write transaction sees its own changes.
                #expect(try txn.get(db, key: [1, 2, 3])?.bytes == [4, 5, 6])
            }
            try env.read { txn throws in
                #expect(try txn.get(db, key: [1, 2, 3])?.bytes == [4, 5, 6])
                #expect(try txn.get(db, key: "name")?.string == "lmdb")
                #expect(try txn.get(db, key: UInt64(42))?.bytes == [7, 7])
                // The UInt64 key is stored as 8 big-endian bytes.
                #expect(try txn.get(db, key: [0, 0, 0, 0, 0, 0, 0, 42])?.bytes == [7, 7])
                #expect(try txn.get(db, key: Data([9]))?.count == 0)
                #expect(try txn.get(db, key: [1, 2, 4]) == nil)
                #expect(try txn.get(db, key: UInt64(43)) == nil)
                #expect(try txn.count(db) == 4)
            }
            // Overwrite, then delete.
            try env.write { txn throws in
                try txn.put(db, key: [1, 2, 3], value: [0])
                #expect(try txn.delete(db, key: "name"))
                #expect(try txn.delete(db, key: "name") == false)
            }
            try env.read { txn throws in
                #expect(try txn.get(db, key: [1, 2, 3])?.bytes == [0])
                #expect(try txn.get(db, key: "name") == nil)
                #expect(try txn.count(db) == 3)
            }
        }
    }

    @Test("reserve lets the caller write the value in place")
    func reserve() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase(nil, create: true)
            try env.write { txn throws in
                let space = try txn.reserve(db, key: UInt64(1), count: 5)
                #expect(space.count == 5)
                for i in 0..<5 { space[i] = UInt8(10 + i) }
            }
            try env.read { txn throws in
                #expect(try txn.get(db, key: UInt64(1))?.bytes == [10, 11, 12, 13, 14])
            }
        }
    }

    @Test("drop empties a database")
    func drop() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("d", create: true)
            try env.write { txn throws in
                for i in 0..<10 as Range<UInt64> { try txn.put(db, key: i, value: [1]) }
            }
            try env.write { txn in try txn.drop(db, delete: false) }
            #expect(try env.read { try $0.count(db) } == 0)
        }
    }

    @Test("a throwing body leaves nothing stored")
    func throwingBodyAborts() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("x", create: true)
            #expect(throws: TestFailure(reason: "boom")) {
                try env.write { txn throws in
                    try txn.put(db, key: [1], value: [1])
                    try txn.put(db, key: [2], value: [2])
                    throw TestFailure(reason: "boom")
                }
            }
            try env.read { txn throws in
                #expect(try txn.count(db) == 0)
                #expect(try txn.get(db, key: [1]) == nil)
            }
        }
    }

    @Test("withDeferredMetaSync defers the meta page's flush of the writes inside it only, whether its body returns or throws, and refuses to run inside a transaction")
    func deferredMetaSync() throws {
        try withTemporaryDirectory { dir in
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions())
                let db = try env.openDatabase("x", create: true)
                #expect(!env.defersMetaSync)
                let written = try env.withDeferredMetaSync { () throws -> Int in
                    #expect(env.defersMetaSync)
                    for i in 0..<3 as Range<UInt64> { try env.write { txn in try txn.put(db, key: i, value: [UInt8(i)]) } }
                    return 3
                }
                #expect(written == 3)
                #expect(!env.defersMetaSync)
                #expect(throws: TestFailure(reason: "boom")) {
                    try env.withDeferredMetaSync {
                        try env.write { txn in try txn.put(db, key: 3 as UInt64, value: [3]) }
                        throw TestFailure(reason: "boom")
                    }
                }
                #expect(!env.defersMetaSync)
                try env.write { txn in
                    #expect(throws: LMDBError(code: EDEADLK, function: "mdb_env_set_flags")) {
                        try env.withDeferredMetaSync {}
                    }
                }
                #expect(!env.defersMetaSync)
            }
            // What the bodies committed is there once the environment is opened again.
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("x", create: false)
            #expect(try env.read { try $0.count(db) } == 4)
        }
    }

    @Test("write returns the body's value; read returns copies made inside")
    func returnValues() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("x", create: true)
            let n = try env.write { txn throws in
                try txn.put(db, key: [1], value: [5, 6])
                return 17
            }
            #expect(n == 17)
            let copy = try env.read { txn in try txn.get(db, key: [1]).map { Array($0) } }
            #expect(copy == [5, 6])
        }
    }

    @Test("errors carry code, function and message")
    func errorShape() throws {
        try withTemporaryDirectory { dir in
            // ENOENT from mdb_env_open for a missing directory.
            do {
                _ = try Environment(directory: dir + "/missing", options: EnvironmentOptions())
                Issue.record("opening a missing directory succeeded")
            } catch let error as LMDBError {
                #expect(error.code == ENOENT)
                #expect(error.function == "mdb_env_open")
                #expect(error.message == String(cString: strerror(ENOENT)))
                #expect(error.description.contains("mdb_env_open"))
            }
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            // MDB_NOTFOUND from mdb_dbi_open without create.
            do {
                _ = try env.openDatabase("absent", create: false)
                Issue.record("opening an absent database succeeded")
            } catch let error as LMDBError {
                #expect(error.isNotFound)
                #expect(error.errorCode == .notFound)
                #expect(error.function == "mdb_dbi_open")
                #expect(error.message.contains("MDB_NOTFOUND"))
            }
            // MDB_BAD_VALSIZE for an empty key.
            let db = try env.openDatabase("x", create: true)
            do {
                try env.write { txn in try txn.put(db, key: [UInt8](), value: [1]) }
                Issue.record("an empty key was accepted")
            } catch let error as LMDBError {
                #expect(error.errorCode == .badValueSize)
                #expect(error.function == "mdb_put")
            }
            // Invalid options.
            #expect(throws: LMDBError(code: EINVAL, function: "mdb_env_set_mapsize")) {
                _ = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 8 << 20, maxMapSize: 1 << 20))
            }
        }
    }

    @Test("readerCheck runs and info reports sizes")
    func maintenance() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 4 << 20))
            #expect(try env.readerCheck() >= 0)
            let info = env.info
            #expect(info.mapSize == 4 << 20)
            #expect(env.mapSize == 4 << 20)
            #expect(info.pageSize >= 4096)
            #expect(info.usedBytes >= 2 * info.pageSize)
            #expect(info.maxReaders >= 510)
            #expect(env.maxKeySize > 0)
            try env.sync(force: true)
        }
    }

    @Test("an existing environment keeps a stored map size larger than initialMapSize")
    func reopenKeepsMapSize() throws {
        try withTemporaryDirectory { dir in
            do {
                let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 16 << 20))
                let db = try env.openDatabase("x", create: true)
                try env.write { txn in try txn.put(db, key: [1], value: [1]) }
            }
            let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 1 << 20))
            #expect(env.mapSize == 16 << 20)
            let db = try env.openDatabase("x", create: false)
            #expect(try env.read { try $0.get(db, key: [1])?.bytes } == [1])
        }
    }

    @Test("copy(to:) produces an environment with the same data")
    func copy() throws {
        try withTemporaryDirectory { dir in
            let source = try makeDirectory(dir, "source")
            let env = try Environment(directory: source, options: EnvironmentOptions())
            let db = try env.openDatabase("log", create: true)
            try env.write { txn throws in
                for i in 0..<500 as Range<UInt64> {
                    try txn.put(db, key: i, value: Array(repeating: UInt8(i & 0xFF), count: 100), flags: .append)
                }
            }
            // Free some pages so that compaction has something to omit.
            try env.write { txn throws in
                for i in 0..<250 as Range<UInt64> { try txn.delete(db, key: i) }
            }
            for compact in [false, true] {
                let target = try makeDirectory(dir, "copy-\(compact)")
                try env.copy(to: target, compact: compact)
                let copy = try Environment(directory: target, options: EnvironmentOptions(readOnly: true))
                let copied = try copy.openDatabase("log", create: false)
                try copy.read { txn throws in
                    #expect(try txn.count(copied) == 250)
                    var expected: UInt64 = 250
                    try txn.forEach(copied) { key, value in
                        #expect(key.bigEndianUInt64 == expected)
                        #expect(value.bytes == Array(repeating: UInt8(expected & 0xFF), count: 100))
                        expected += 1
                        return true
                    }
                    #expect(expected == 500)
                }
            }
            // The copy's data.mdb has the mode of the environment's (LMDB's own copy makes it 0666 less the umask).
            var info = stat()
            #expect(stat(dir + "/copy-false/data.mdb", &info) == 0 && info.st_mode & 0o7777 == 0o600)
            let shared = try makeDirectory(dir, "shared")
            let groupReadable = try Environment(directory: shared, options: EnvironmentOptions(fileMode: 0o640))
            let target = try makeDirectory(dir, "copy-shared")
            try groupReadable.copy(to: target, compact: true)
            #expect(stat(target + "/data.mdb", &info) == 0 && info.st_mode & 0o7777 == 0o640)
            // Written under another name until whole: none is left once it is.
            #expect(stat(target + "/" + Environment.incompleteCopyName, &info) != 0 && errno == ENOENT)
            // A directory that holds a data.mdb keeps it, and gets nothing.
            let before = try Data(contentsOf: URL(fileURLWithPath: target + "/data.mdb"))
            #expect(throws: LMDBError(code: EEXIST, function: "open")) {
                try env.copy(to: target, compact: false)
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: target + "/data.mdb")) == before)
            #expect(stat(target + "/" + Environment.incompleteCopyName, &info) != 0 && errno == ENOENT)
            // Copying into a directory that does not exist fails with ENOENT.
            #expect(throws: LMDBError(code: ENOENT, function: "open")) {
                try env.copy(to: dir + "/nowhere", compact: false)
            }
        }
    }

    @Test("copy(intoDirectory:) writes into the directory its descriptor holds, even once its path is a symbolic link to another, and makes data.mdb there without following a link put in its name")
    func copyIntoDescriptor() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: try makeDirectory(dir, "source"), options: EnvironmentOptions())
            let db = try env.openDatabase("log", create: true)
            try env.write { txn in try txn.put(db, key: UInt64(1), value: [7]) }
            let held = try makeDirectory(dir, "held")
            let elsewhere = try makeDirectory(dir, "elsewhere")
            let descriptor = open(held, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            #expect(descriptor >= 0)
            defer { close(descriptor) }
            // The path now leads elsewhere; the descriptor still holds the directory it opened.
            #expect(rename(held, dir + "/moved") == 0 && symlink(elsewhere, held) == 0)
            try env.copy(intoDirectory: descriptor, compact: true)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/moved") == ["data.mdb"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
            let copy = try Environment(directory: dir + "/moved", options: EnvironmentOptions(readOnly: true))
            let copied = try copy.openDatabase("log", create: false)
            #expect(try copy.read { try $0.get(copied, key: UInt64(1))?.bytes } == [7])
            // A link named data.mdb is an existing data.mdb: nothing is written through it.
            let other = try makeDirectory(dir, "other")
            let otherDescriptor = open(other, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            defer { close(otherDescriptor) }
            #expect(symlink(elsewhere + "/data.mdb", other + "/data.mdb") == 0)
            #expect(throws: LMDBError(code: EEXIST, function: "open")) {
                try env.copy(intoDirectory: otherDescriptor, compact: true)
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
        }
    }

    @Test("a read-only environment sees committed data and cannot write")
    func readOnly() throws {
        try withTemporaryDirectory { dir in
            let writer = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try writer.openDatabase("log", create: true)
            try writer.write { txn in try txn.put(db, key: UInt64(1), value: [1]) }

            let reader = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
            #expect(reader.isReadOnly)
            let rdb = try reader.openDatabase("log", create: true)  // create is ignored
            #expect(try reader.read { try $0.get(rdb, key: UInt64(1))?.bytes } == [1])

            // Later commits are visible to later read transactions.
            try writer.write { txn in try txn.put(db, key: UInt64(2), value: [2]) }
            #expect(try reader.read { try $0.get(rdb, key: UInt64(2))?.bytes } == [2])

            // Writes fail (EACCES from mdb_txn_begin), and nothing is created.
            #expect(throws: LMDBError.self) {
                try reader.write { txn in try txn.put(rdb, key: UInt64(3), value: [3]) }
            }
            #expect(throws: LMDBError.self) { _ = try reader.openDatabase("other", create: true) }
            #expect(throws: LMDBError.self) { try reader.sync(force: true) }
            #expect(try reader.readerCheck() >= 0)
        }
    }

    @Test("releaseMappedPages lets go of the pages reads mapped, inside a read too, and reads go on")
    func releaseMappedPages() throws {
        try withTemporaryDirectory { dir in
            // A map smaller than what is written: the first release finds the mapping, the growth maps the file
            // anew elsewhere, and the later ones must find it there.
            var options = EnvironmentOptions()
            options.initialMapSize = 1 << 20
            options.maxMapSize = 64 << 20
            let env = try Environment(directory: dir, options: options)
            let db = try env.openDatabase(nil, create: false)
            #expect(env.releaseMappedPages() == 0, "nothing to find the map by yet")
            try env.write { txn in try txn.put(db, key: UInt64(0), value: [1]) }
            #expect(env.releaseMappedPages() == 1 << 20)
            let value = [UInt8](repeating: 0x5A, count: 1_000)
            try env.write { txn in
                for n in UInt64(1)...4_000 { try txn.put(db, key: n, value: value, flags: .append) }
            }
            func readAll() throws -> Int {
                try env.read { txn in
                    var bytes = 0
                    try txn.forEach(db) { _, value in
                        bytes += value.count
                        return true
                    }
                    return bytes
                }
            }
            #expect(try readAll() == 4_000_001)
            let mapped = residentMapBytes(dir + "/data.mdb")
            #expect(mapped >= 3_000_000, "reading 4 MB mapped only \(mapped) bytes")
            #expect(env.releaseMappedPages() >= 4_000_000)
            #expect(residentMapBytes(dir + "/data.mdb") < mapped / 8)
            #expect(try readAll() == 4_000_001)
            let released = try env.read { txn in
                _ = try txn.get(db, key: UInt64(7))
                return env.releaseMappedPages()
            }
            #expect(released > 0)
            #expect(try readAll() == 4_000_001)
        }
    }
}

/// The bytes of this process's mapping of `path` that are resident (`Rss` in /proc/self/smaps).
func residentMapBytes(_ path: String) -> Int {
    guard let file = fopen("/proc/self/smaps", "r") else { return 0 }
    defer { fclose(file) }
    let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    var line = [CChar](repeating: 0, count: 4096)
    var inMap = false
    var total = 0
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: .newlines)
        guard let field = text.split(separator: " ").first else { continue }
        if !field.hasSuffix(":") {
            inMap = text.hasSuffix(path) || text.hasSuffix(resolved)
        } else if inMap && field == "Rss:" {
            total += (text.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
        }
    }
    return total
}
