import Dispatch
import Foundation
import LMDB
import Testing

@Suite("Concurrency")
struct ConcurrencyTests {
    @Test("readers on several threads while one thread writes (and grows the map)")
    func readersAndWriter() throws {
        try withTemporaryDirectory { dir in
            // Start small so that the writer resizes the map while readers run.
            let env = try Environment(
                directory: dir, options: EnvironmentOptions(initialMapSize: 1 << 20, maxMapSize: 64 << 20))
            let db = try env.openDatabase("log", create: true)
            let errors = ErrorBox()
            let batches = 150
            let perBatch = 20
            let value = [UInt8](repeating: 0x5A, count: 1000)

            DispatchQueue.concurrentPerform(iterations: 6) { worker in
                do {
                    if worker == 0 {
                        for batch in 0..<batches {
                            try env.write { txn throws in
                                for j in 0..<perBatch {
                                    try txn.put(db, key: UInt64(batch * perBatch + j), value: value, flags: .append)
                                }
                            }
                        }
                    } else {
                        for round in 0..<300 {
                            try env.read { txn throws in
                                // A snapshot holds a gap-free prefix of whole batches.
                                let count = try txn.count(db)
                                guard count % perBatch == 0 else {
                                    errors.add("partial batch visible: \(count)")
                                    return
                                }
                                var expected: UInt64 = 0
                                try txn.forEach(db) { key, v in
                                    if key.bigEndianUInt64 != expected || v.count != value.count {
                                        errors.add("bad entry at \(expected)")
                                        return false
                                    }
                                    expected += 1
                                    return round % 10 == 0 || expected < 50  // full scan now and then
                                }
                                if count > 0, try txn.get(db, key: UInt64(count - 1)) == nil {
                                    errors.add("last key \(count - 1) missing")
                                }
                            }
                        }
                    }
                } catch {
                    errors.add("worker \(worker): \(error)")
                }
            }
            #expect(errors.all == [])
            #expect(try env.read { try $0.count(db) } == batches * perBatch)
            #expect(env.mapSize > 1 << 20)
        }
    }

    @Test("nested transactions: read inside write works, write inside read is refused")
    func nesting() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("x", create: true)
            try env.write { txn throws in
                try txn.put(db, key: [1], value: [1])
                // A nested read sees the last committed snapshot, not this transaction.
                let outside = try env.read { try $0.get(db, key: [1]) }
                #expect(outside == nil)
                #expect(throws: LMDBError(code: EDEADLK, function: "mdb_txn_begin")) {
                    try env.write { _ in }
                }
            }
            try env.read { _ throws in
                #expect(throws: LMDBError(code: EDEADLK, function: "mdb_txn_begin")) {
                    try env.write { _ in }
                }
                #expect(throws: LMDBError(code: EDEADLK, function: "mdb_dbi_open")) {
                    _ = try env.openDatabase("y", create: true)
                }
                #expect(try env.read { try $0.get(db, key: [1])?.bytes } == [1])
            }
        }
    }

    @Test("activeReaders counts the read transactions open now, and comes back down as they end; readersUsed does not")
    func activeReaders() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(directory: dir, options: EnvironmentOptions())
            let db = try env.openDatabase("x", create: true)
            try env.write { txn in try txn.put(db, key: [1], value: [1]) }
            #expect(try env.activeReaders() == 0)
            try env.read { _ throws in
                #expect(try env.activeReaders() == 1)
                try env.read { _ throws in #expect(try env.activeReaders() == 2) }
                #expect(try env.activeReaders() == 1)
            }
            #expect(try env.activeReaders() == 0)
            #expect(env.info.readersUsed == 2, "the most slots in use at once")
        }
    }

    @Test("many concurrent writers are serialized")
    func concurrentWriters() throws {
        try withTemporaryDirectory { dir in
            let env = try Environment(
                directory: dir, options: EnvironmentOptions(initialMapSize: 1 << 20, maxMapSize: 32 << 20))
            let db = try env.openDatabase("counter", create: true)
            let errors = ErrorBox()
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                do {
                    for i in 0..<100 {
                        try env.write { txn throws in
                            let current = try txn.get(db, key: "n").map { $0.loadUnaligned(as: UInt64.self) } ?? 0
                            try withUnsafeBytes(of: current + 1) { try txn.put(db, key: Array("n".utf8), value: Array($0)) }
                            try txn.put(db, key: UInt64(worker * 1000 + i), value: [UInt8](repeating: 1, count: 2000))
                        }
                    }
                } catch {
                    errors.add("writer \(worker): \(error)")
                }
            }
            #expect(errors.all == [])
            try env.read { txn throws in
                #expect(try txn.get(db, key: "n")?.loadUnaligned(as: UInt64.self) == 400)
                #expect(try txn.count(db) == 401)
            }
        }
    }
}
