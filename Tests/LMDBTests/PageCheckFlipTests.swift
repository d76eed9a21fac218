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

    @Test("a few random bytes changed in random pages (past the two meta pages, which LMDB itself reads to open the file), anywhere in them or in their headers and node tables: the check answers every time")
    func randomBytes() throws {
        try withTemporaryDirectory { dir in
            try PageCheckTests.fill(dir)
            let path = dir + "/data.mdb"
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            let map = try DataFileMap(dir)
            let pages = original.count / map.pageSize
            var random = SeededGenerator(state: 20_261_206)
            var named = 0
            let rounds = Int(ProcessInfo.processInfo.environment["FLIP_ROUNDS"] ?? "") ?? 400
            for _ in 0..<rounds {
                var bytes = original
                for _ in 0..<Int.random(in: 1...8, using: &random) {
                    let page = Int.random(in: 2..<pages, using: &random)
                    // Half the time among the header and the node offsets, where the values the walk follows are.
                    let within = Bool.random(using: &random) ? 64 : map.pageSize
                    let at = page * map.pageSize + Int.random(in: 0..<within, using: &random)
                    bytes[at] = UInt8.random(in: 0...255, using: &random)
                }
                try bytes.write(to: URL(fileURLWithPath: path))
                let env = try Environment(directory: dir, options: EnvironmentOptions(readOnly: true))
                if try env.checkPages().damage != nil { named += 1 }
            }
            // Most bytes of a page are keys and values, which keep to the format whatever they hold, or unused, or
            // in a free page; the rest are named.
            #expect(named > rounds / 10, "\(named) of \(rounds) named")
        }
    }
}
