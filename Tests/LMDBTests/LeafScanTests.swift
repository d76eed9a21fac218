import DataFilePages
import Foundation
import LMDB
import Testing

/// ``LeafScan`` reads leaf entries straight from the file, whatever state the trees above them are in.
@Suite("Leaf scan")
struct LeafScanTests {
    /// Every entry of `records` and `blobs` (of ``PageCheckTests/fill(_:)``) the scan finds, by key, with its value
    /// and the value read again from its location; an entry found on several pages (older copies) is kept once per
    /// distinct value.
    static func scanned(_ dir: String) throws -> [UInt64: Set<[UInt8]>] {
        let scan = try LeafScan(directory: dir)
        var found: [UInt64: Set<[UInt8]>] = [:]
        try scan.forEachEntry { key, value, location in
            guard let number = key.bigEndianUInt64 else { return true }
            #expect(scan.value(location) == Array(value), "the value at its location is the one passed")
            found[number, default: []].insert(Array(value))
            return true
        }
        return found
    }

    @Test("an intact file: every entry of every tree, small values and values on overflow pages alike")
    func intact() throws {
        try withTemporaryDirectory { dir in
            try PageCheckTests.fill(dir)
            let found = try Self.scanned(dir)
            for i in 0..<8000 as Range<UInt64> where i % 40 >= 4 {
                #expect(found[i]?.contains(PageCheckTests.record(i)) == true, "record \(i)")
            }
            for i in 0..<6 as Range<UInt64> {
                #expect(found[i]?.contains(PageCheckTests.record(i, size: 10_000 * Int(i % 4 + 1))) == true, "blob \(i)")
            }
        }
    }

    @Test("with a branch page and a leaf page of records overwritten: every entry of the other leaves is still found")
    func damaged() throws {
        try withTemporaryDirectory { dir in
            try PageCheckTests.fill(dir)
            let map = try DataFileMap(dir)
            let records = try #require(map.named("records"))
            let pages = map.pages(records)
            let leaf = pages.leaves[pages.leaves.count / 2]
            let lost = Set(map.nodes(leaf).compactMap { node in
                node.key.count == 8 ? node.key.reduce(0 as UInt64) { $0 << 8 | UInt64($1) } : nil
            })
            #expect(!lost.isEmpty)
            try PageCheckTests.damage(dir, page: try #require(pages.branches.first), pageSize: map.pageSize, with: garbage(map.pageSize))
            try PageCheckTests.damage(dir, page: leaf, pageSize: map.pageSize, with: garbage(map.pageSize, seed: 7))
            let found = try Self.scanned(dir)
            for i in 0..<8000 as Range<UInt64> where i % 40 >= 4 && !lost.contains(i) {
                #expect(found[i]?.contains(PageCheckTests.record(i)) == true, "record \(i)")
            }
        }
    }

    @Test("random bytes changed anywhere in the file, meta pages, headers and node tables included: the scan answers every time, and each value it passes is at its location")
    func randomBytes() throws {
        var entries = 0
        var misplaced = 0
        _ = try PageCheckFlipTests.damagedRounds(100, seed: 4_051, changes: 1...12) { pageSize, pages, random in
            let page = Int.random(in: 0..<pages, using: &random)
            // Half the time among the header and the node offsets, whose values the scan follows.
            let within = Bool.random(using: &random) ? 64 : pageSize
            return page * pageSize + Int.random(in: 0..<within, using: &random)
        } then: { dir in
            guard let scan = try? LeafScan(directory: dir) else { return }
            try scan.forEachEntry { _, value, location in
                if scan.value(location) != Array(value) { misplaced += 1 }
                entries += 1
                return true
            }
        }
        #expect(entries > 0 && misplaced == 0, "\(misplaced) of \(entries) values not at their location")
    }

    @Test("a directory with no data file is an error, not an empty scan")
    func missing() {
        #expect(throws: LMDBError.self) { _ = try LeafScan(directory: "/nonexistent-\(UUID().uuidString)") }
    }
}
