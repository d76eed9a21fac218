import DataFilePages
import Foundation
import LMDB
import Testing

/// The page check reads values from a file that may be damaged anywhere: whatever bytes it finds, it must answer
/// (with damage named, or none found), never trap. Random bytes of random pages of one environment are changed,
/// a few at a time, from a fixed seed, and each time the check runs on the result: 400 rounds, or `FLIP_ROUNDS`
/// (6,000 ran clean when it was written).
@Suite("Page check: random damage")
struct PageCheckFlipTests {
    /// A generator of the same numbers on every run (SplitMix64).
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// A filled environment, damaged afresh in each of `count` rounds (`FLIP_ROUNDS` if set): `changes` bytes set to
    /// random values, each where `pick` says (given the page size, the pages and the generator), before `body` runs
    /// on the directory.
    static func damagedRounds(
        _ count: Int, seed: UInt64, changes: ClosedRange<Int>,
        at pick: (_ pageSize: Int, _ pages: Int, inout SeededGenerator) -> Int, then body: (String) throws -> Void
    ) throws -> Int {
        let rounds = Int(ProcessInfo.processInfo.environment["FLIP_ROUNDS"] ?? "") ?? count
        try withTemporaryDirectory { dir in
            try PageCheckTests.fill(dir)
            let path = dir + "/data.mdb"
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            let pageSize = try DataFileMap(dir).pageSize
            var random = SeededGenerator(state: seed)
            for _ in 0..<rounds {
                var bytes = original
                for _ in 0..<Int.random(in: changes, using: &random) {
                    let at = pick(pageSize, original.count / pageSize, &random)
                    bytes[at] = UInt8.random(in: 0...255, using: &random)
                }
                try bytes.write(to: URL(fileURLWithPath: path))
                try body(dir)
            }
        }
        return rounds
    }

    @Test("a few random bytes changed in random pages (past the two meta pages, which LMDB itself reads to open the file), anywhere in them or in their headers and node tables: the check answers every time")
    func randomBytes() throws {
        var named = 0
        let rounds = try Self.damagedRounds(400, seed: 20_261_206, changes: 1...8) { pageSize, pages, random in
            let page = Int.random(in: 2..<pages, using: &random)
            // Half the time among the header and the node offsets, where the values the walk follows are.
            let within = Bool.random(using: &random) ? 64 : pageSize
            return page * pageSize + Int.random(in: 0..<within, using: &random)
        } then: { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
            if try env.checkPages().damage != nil { named += 1 }
        }
        // Most bytes of a page are keys and values, which keep to the format whatever they hold, or unused, or in a
        // free page; the rest are named.
        #expect(named > rounds / 10, "\(named) of \(rounds) named")
    }

    @Test("random bytes of the two meta pages changed: opening the environment and the check answer each time, never a fault inside LMDB (a page size of 0 was a SIGFPE, a later meta page's page size a SIGBUS)")
    func metaPages() throws {
        var opened = 0
        let rounds = try Self.damagedRounds(600, seed: 7, changes: 1...4) { pageSize, _, random in
            // The header and the meta fields (MDB_meta, 136 bytes) of page 0 or 1.
            Int.random(in: 0...1, using: &random) * pageSize + Int.random(in: 0..<152, using: &random)
        } then: { dir in
            guard let env = try? Environment(directory: dir, options: EnvironmentOptions(readOnly: true)) else { return }
            opened += 1
            _ = try? env.checkPages()
        }
        #expect(opened > 0 && opened < rounds, "\(opened) of \(rounds) opened")
    }

    @Test("a meta page whose page size LMDB would fault on is refused before LMDB maps the file, naming it: 0 in page 0, another size in the later page 1")
    func metaPageSizes() throws {
        for (page, size) in [(0, UInt32(0)), (1, UInt32(8192))] {
            try withTemporaryDirectory { dir in
                try PageCheckTests.fill(dir)
                var map = try DataFileMap(dir)
                // Meta page 1 the later one (LMDB writes the two in turn, so one more commit may be needed).
                if map.load(UInt64.self, page: 1, at: 16 + 128) < map.load(UInt64.self, page: 0, at: 16 + 128) {
                    let env = try Environment(directory: dir, options: EnvironmentOptions(initialMapSize: 64 << 20))
                    let extra = try env.openDatabase("extra", create: true)
                    map = try DataFileMap(dir)
                    if map.load(UInt64.self, page: 1, at: 16 + 128) < map.load(UInt64.self, page: 0, at: 16 + 128) {
                        try env.write { txn in try txn.put(extra, key: UInt64(1), value: [1], flags: []) }
                        map = try DataFileMap(dir)
                    }
                }
                #expect(map.load(UInt64.self, page: 1, at: 16 + 128) > map.load(UInt64.self, page: 0, at: 16 + 128))
                // `md_pad` of the free list's record in MDB_meta: LMDB's page size.
                try overwrite(page: page, of: dir + "/data.mdb", pageSize: map.pageSize, offset: 16 + 24, with: withUnsafeBytes(of: size) { Array($0) })
                #expect(throws: PageDamage.self) { _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true)) }
                do {
                    _ = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
                } catch let damage as PageDamage {
                    #expect(damage.page == page && damage.problem.contains("\(size) bytes"), "\(damage)")
                }
            }
        }
    }
}
