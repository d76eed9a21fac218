import Foundation
import LMDB
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `lock.mdb`, which LMDB writes through a shared map: every block of it is allocated before LMDB maps it, so that a
/// full file system is an error and not a SIGBUS, and it has the size LMDB gives it, so that the reader slots are
/// the ones asked for.
@Suite("Environment: lock.mdb")
struct LockFileTests {
    /// The size of the file at `path`, and the bytes of it the file system allocated.
    static func sizeAndAllocated(_ path: String) -> (size: Int, allocated: Int) {
        var info = stat()
        guard stat(path, &info) == 0 else { return (-1, -1) }
        return (Int(info.st_size), Int(info.st_blocks) * 512)
    }

    @Test(
        "a new lock.mdb, of a writer and of a reader, is allocated to its last block, and LMDB counts from it the reader slots asked for",
        arguments: [1, 2, 126, 510, 1000] as [UInt32])
    func newLockFileIsAllocated(maxReaders: UInt32) throws {
        try withTemporaryDirectory { dir in
            var options = EnvironmentOptions()
            options.maxReaders = maxReaders
            do {
                let env = try Environment(directory: dir, options: options)
                _ = try env.openDatabase("kv", create: true)
                #expect(env.info.maxReaders == maxReaders)
            }
            let written = Self.sizeAndAllocated(dir + "/lock.mdb")
            #expect(written.size > 0 && written.allocated >= written.size, "lock.mdb of a writer: \(written)")

            // A reader on a data.mdb alone, as a restore leaves it.
            let restored = try makeDirectory(dir, "restored")
            try FileManager.default.copyItem(atPath: dir + "/data.mdb", toPath: restored + "/data.mdb")
            options.readOnly = true
            let reader = try Environment(directory: restored, options: options)
            #expect(reader.info.maxReaders == maxReaders)
            let read = Self.sizeAndAllocated(restored + "/lock.mdb")
            #expect(read.size == written.size && read.allocated >= read.size, "lock.mdb of a reader: \(read)")
        }
    }

    @Test("an existing lock.mdb left sparse keeps its size, from which LMDB counts the reader slots, and is allocated; one shorter than LMDB makes it, that no process has open, is made that long and allocated")
    func existingLockFileIsAllocated() throws {
        try withTemporaryDirectory { dir in
            // The sizes LMDB gives the file for 1000 readers and for the default.
            let large = try makeDirectory(dir, "large")
            _ = try Environment(directory: large, options: EnvironmentOptions(maxReaders: 1000))
            let largeSize = Self.sizeAndAllocated(large + "/lock.mdb").size
            let standard = try makeDirectory(dir, "standard")
            _ = try Environment(directory: standard, options: EnvironmentOptions())
            let standardSize = Self.sizeAndAllocated(standard + "/lock.mdb").size
            #expect(largeSize > standardSize && standardSize > 0)

            // Sparse, as LMDB's ftruncate makes it: it keeps its size, and so its 1000 slots.
            let sparse = try makeDirectory(dir, "sparse")
            let sparseLock = sparse + "/lock.mdb"
            #expect(FileManager.default.createFile(atPath: sparseLock, contents: nil))
            #expect(truncate(sparseLock, off_t(largeSize)) == 0)
            #expect(Self.sizeAndAllocated(sparseLock).allocated < largeSize, "made sparse")
            do {
                let env = try Environment(directory: sparse, options: EnvironmentOptions())
                #expect(env.info.maxReaders == 1000)
            }
            let kept = Self.sizeAndAllocated(sparseLock)
            #expect(kept.size == largeSize && kept.allocated >= kept.size, "\(kept)")

            // Cut short (an allocation that failed part way on a full disk): made as long as LMDB would make it.
            let short = try makeDirectory(dir, "short")
            let shortLock = short + "/lock.mdb"
            #expect(FileManager.default.createFile(atPath: shortLock, contents: Data(count: 100)))
            do {
                let env = try Environment(directory: short, options: EnvironmentOptions())
                #expect(env.info.maxReaders == EnvironmentOptions().maxReaders)
            }
            let grown = Self.sizeAndAllocated(shortLock)
            #expect(grown.size == standardSize && grown.allocated >= grown.size, "\(grown)")
        }
    }

    @Test("a lock.mdb or data.mdb that is a symbolic link (to a file or to nothing), or a lock.mdb with another name, is refused, read-only or not, naming it, and what it leads to is neither written nor made; a reader's data.mdb may be a hard-linked copy")
    func linkedFilesAreRefused() throws {
        try withTemporaryDirectory { dir in
            let source = try makeDirectory(dir, "source")
            do { _ = try Environment(directory: source).openDatabase("kv", create: true) }
            let victim = dir + "/victim"
            let precious = Array("precious\n".utf8)
            /// A directory holding a copy of `source`'s data.mdb.
            func plant(_ name: String) throws -> String {
                let log = try makeDirectory(dir, name)
                try FileManager.default.copyItem(atPath: source + "/data.mdb", toPath: log + "/data.mdb")
                return log
            }
            func expectRefused(_ log: String, _ file: String, _ problem: String, readOnly: Bool) {
                var options = EnvironmentOptions()
                options.readOnly = readOnly
                #expect(throws: UnsafeEnvironmentFile(path: log + "/" + file, problem: problem), "\(log), readOnly \(readOnly)") {
                    _ = try Environment(directory: log, options: options)
                }
            }
            #expect(FileManager.default.createFile(atPath: victim, contents: Data(precious)))
            for readOnly in [true, false] {
                let linked = try plant("linked-\(readOnly)")
                #expect(symlink(victim, linked + "/lock.mdb") == 0)
                expectRefused(linked, "lock.mdb", "is a symbolic link", readOnly: readOnly)

                let dangling = try plant("dangling-\(readOnly)")
                #expect(symlink(dir + "/made-\(readOnly)", dangling + "/lock.mdb") == 0)
                expectRefused(dangling, "lock.mdb", "is a symbolic link", readOnly: readOnly)
                #expect(access(dir + "/made-\(readOnly)", F_OK) != 0, "nothing is made where the link leads")

                let hardLinked = try plant("hard-\(readOnly)")
                #expect(link(victim, hardLinked + "/lock.mdb") == 0)
                expectRefused(hardLinked, "lock.mdb", "has 2 names (hard links), and what is written through one is written through the others", readOnly: readOnly)
                #expect(unlink(hardLinked + "/lock.mdb") == 0)

                let data = try makeDirectory(dir, "data-\(readOnly)")
                #expect(symlink(source + "/data.mdb", data + "/data.mdb") == 0)
                expectRefused(data, "data.mdb", "is a symbolic link", readOnly: readOnly)
                #expect(access(data + "/lock.mdb", F_OK) != 0, "nothing is made beside a data.mdb refused")
            }
            var info = stat()
            #expect(stat(victim, &info) == 0 && info.st_size == precious.count)
            #expect(FileManager.default.contents(atPath: victim).map(Array.init) == precious)

            // A copy made with cp -l: read-only, LMDB never writes data.mdb; a writer is refused.
            let copy = try makeDirectory(dir, "copy")
            #expect(link(source + "/data.mdb", copy + "/data.mdb") == 0)
            var options = EnvironmentOptions()
            options.readOnly = true
            _ = try Environment(directory: copy, options: options)
            #expect(throws: UnsafeEnvironmentFile.self) { _ = try Environment(directory: copy) }
        }
    }
}
