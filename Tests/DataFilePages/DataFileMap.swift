import Foundation

/// The pages of a closed environment's (or a stopped daemon's) `data.mdb`, read by the test on its own (not with the
/// code under test), to find the page of each kind that a test damages: LMDB's format from `mdb.c` (64-bit, this
/// machine's byte order).
public struct DataFileMap {
    /// Where a tree starts, and how deep it is (of an `MDB_db`).
    public struct Record {
        public var depth: Int
        public var root: UInt64
    }

    public let bytes: [UInt8]
    public let pageSize: Int
    public let free: Record
    public let main: Record

    /// Reads all of `dir`'s `data.mdb`, and the meta page LMDB reads.
    public init(_ dir: String) throws {
        bytes = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/data.mdb")))
        let page0 = Int(Self.load(bytes, UInt32.self, at: 16 + 24))
        // The meta page of the later transaction (mm_txnid at 16 + 128) is the one LMDB reads.
        let meta = Self.load(bytes, UInt64.self, at: page0 + 16 + 128) > Self.load(bytes, UInt64.self, at: 16 + 128) ? page0 : 0
        pageSize = page0
        free = Record(depth: Int(Self.load(bytes, UInt16.self, at: meta + 16 + 24 + 6)), root: Self.load(bytes, UInt64.self, at: meta + 16 + 24 + 40))
        main = Record(depth: Int(Self.load(bytes, UInt16.self, at: meta + 16 + 72 + 6)), root: Self.load(bytes, UInt64.self, at: meta + 16 + 72 + 40))
    }

    public static func load<T: FixedWidthInteger>(_ bytes: [UInt8], _: T.Type, at offset: Int) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    public func load<T: FixedWidthInteger>(_ type: T.Type, page: Int, at offset: Int) -> T {
        Self.load(bytes, type, at: page * pageSize + offset)
    }

    /// The nodes of a branch or leaf page: key, flags, and the child (branch) or the data's offset in the page and
    /// size (leaf).
    public func nodes(_ page: Int) -> [(key: [UInt8], flags: UInt16, value: UInt64, size: Int)] {
        let count = (Int(load(UInt16.self, page: page, at: 12)) - 16) / 2
        let leaf = load(UInt16.self, page: page, at: 10) & 0x02 != 0
        return (0..<count).map { i in
            let offset = Int(load(UInt16.self, page: page, at: 16 + 2 * i))
            let low = UInt64(load(UInt16.self, page: page, at: offset))
            let high = UInt64(load(UInt16.self, page: page, at: offset + 2))
            let flags = load(UInt16.self, page: page, at: offset + 4)
            let keySize = Int(load(UInt16.self, page: page, at: offset + 6))
            let start = page * pageSize + offset + 8
            let key = Array(bytes[start..<start + keySize])
            if leaf { return (key, flags, UInt64(offset + 8 + keySize), Int(low | high << 16)) }
            return (key, flags, low | high << 16 | UInt64(flags) << 32, 0)
        }
    }

    /// The record of named database `name`, from the main database's leaves.
    public func named(_ name: String) -> Record? {
        for page in pages(main).leaves {
            for node in nodes(page) where node.key == Array(name.utf8) && node.flags & 0x02 != 0 {
                let at = Int(node.value)
                return Record(depth: Int(load(UInt16.self, page: page, at: at + 6)), root: load(UInt64.self, page: page, at: at + 40))
            }
        }
        return nil
    }

    /// The branch pages, leaves and first pages of overflow runs of a tree, in the order of its keys.
    public func pages(_ record: Record) -> (branches: [Int], leaves: [Int], overflows: [Int]) {
        var result: (branches: [Int], leaves: [Int], overflows: [Int]) = ([], [], [])
        guard record.root != .max else { return result }
        func visit(_ page: Int, depth: Int) {
            if depth < record.depth {
                result.branches.append(page)
                for node in nodes(page) { visit(Int(node.value), depth: depth + 1) }
            } else {
                result.leaves.append(page)
                for node in nodes(page) where node.flags & 0x01 != 0 {
                    result.overflows.append(Int(load(UInt64.self, page: page, at: Int(node.value))))
                }
            }
        }
        visit(Int(record.root), depth: 1)
        return result
    }
}
