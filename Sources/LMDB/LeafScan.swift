#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the entries of a data file's leaf pages straight from the file, page after page, with `pread`: whatever
/// tree holds a page, whether it is in use or free (an older version of a page LMDB copied on write), and however
/// damaged the pages that lead to it are. For salvaging values from a file whose trees cannot be walked, by a
/// caller that can tell good values from stale or damaged ones by their contents (a hash chain, say): nothing here
/// says which entries a database holds now.
///
/// A page is read as a leaf page when its header says so and bears its own number; its nodes are taken as they
/// stand where they fit in the page, and passed over where they do not. A value in an overflow run is taken when
/// the run's first page says it is one, counting pages enough for it, and the value ends within the file.
public final class LeafScan {
    /// Where a value lies in the data file: ``value(_:)`` reads it again.
    public struct Location: Sendable, Hashable {
        /// The byte offset of the value's first byte.
        public var offset: Int
        /// Its size in bytes.
        public var count: Int
    }

    /// The data file's path.
    public let path: String
    /// The page size its meta pages give.
    public let pageSize: Int
    private let fd: Int32
    private let fileSize: Int

    /// Opens `directory + "/data.mdb"` read-only, with the page size its meta pages give.
    ///
    /// - Throws: ``UnsafeEnvironmentFile`` when it is a symbolic link or not a regular file (not followed, nothing
    ///   read); ``LMDBError`` when the file cannot be opened or examined, `EINVAL` when neither meta page reads as
    ///   one.
    public init(directory: String) throws {
        path = directory + "/data.mdb"
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ELOOP { throw UnsafeEnvironmentFile(path: path, problem: "is a symbolic link") }
            throw LMDBError(code: errno, function: "open")
        }
        do { try EnvironmentFiles.refuseUnsafe(fd, path: path, written: false) } catch {
            close(fd)
            throw error
        }
        do {
            fileSize = try FileFormat.size(of: fd)
            // The page size both meta pages give; else that of a page 1 found where its own page size puts it; else
            // page 0's alone. Only sizes LMDB can have: powers of two from 512 to 64 KiB.
            let sizes = (9...16).map { 1 << $0 }
            let fromPage0 = MetaPage.read(fd, number: 0, at: 0).map(\.pageSize).flatMap { sizes.contains($0) ? $0 : nil }
            let fromPage1 = { (size: Int) in MetaPage.read(fd, number: 1, at: size)?.pageSize == size }
            if let fromPage0, fromPage1(fromPage0) {
                pageSize = fromPage0
            } else if let size = sizes.first(where: fromPage1) ?? fromPage0 {
                pageSize = size
            } else {
                throw LMDBError(code: EINVAL, function: "pread")
            }
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Calls `body` with the key and value of every node of every leaf page of the file, in the order of the pages,
    /// and where the value lies (for ``value(_:)``). `body` returns false to stop.
    ///
    /// - Throws: ``LMDBError`` when a read of the file fails; what `body` throws.
    public func forEachEntry(
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ location: Location) throws -> Bool
    ) throws {
        let runPages = max(1, (1 << 20) / pageSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: runPages * pageSize, alignment: 4096)
        defer { buffer.deallocate() }
        var first = 2
        while first * pageSize < fileSize {
            let count = min(runPages, fileSize / pageSize - first)
            guard count > 0 else { return }
            let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * pageSize])
            let done = preadFully(fd, into: bytes, at: first * pageSize)
            guard done >= 0 else { throw LMDBError(code: errno, function: "pread") }
            for index in 0..<done / pageSize {
                let page = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[index * pageSize..<(index + 1) * pageSize])
                let number = first + index
                guard page.loadUnaligned(as: UInt64.self) == UInt64(number),
                    page.loadUnaligned(fromByteOffset: 10, as: UInt16.self) == FileFormat.leaf
                else { continue }
                if try !forEachNode(of: page, number: number, body) { return }
            }
            first += count
        }
    }

    /// The value at `location`, read again; nil when the file ends before it or cannot be read.
    public func value(_ location: Location) -> [UInt8]? {
        readBytes(fd, at: location.offset, count: location.count)
    }

    private func forEachNode(
        of page: UnsafeRawBufferPointer, number: Int,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, Location) throws -> Bool
    ) throws -> Bool {
        let lower = Int(page.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        let upper = Int(page.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
        guard lower >= FileFormat.pageHeader, lower <= upper, upper <= pageSize else { return true }
        for index in 0..<(lower - FileFormat.pageHeader) / 2 {
            let offset = Int(page.loadUnaligned(fromByteOffset: FileFormat.pageHeader + 2 * index, as: UInt16.self))
            guard offset >= upper, offset + FileFormat.nodeHeader <= pageSize else { continue }
            let header = NodeHeader(page, at: offset)
            let dataSize = header.dataSize
            let flags = header.flags
            let keyStart = offset + FileFormat.nodeHeader
            let keyEnd = keyStart + header.keySize
            guard keyEnd <= pageSize else { continue }
            let key = UnsafeRawBufferPointer(rebasing: page[keyStart..<keyEnd])
            if flags & FileFormat.bigData != 0 {
                guard keyEnd + 8 <= pageSize else { continue }
                let run = page.loadUnaligned(fromByteOffset: keyEnd, as: UInt64.self)
                guard run >= 2, run < UInt64(fileSize / pageSize),
                    dataSize <= fileSize - Int(run) * pageSize - FileFormat.pageHeader
                else { continue }
                let location = Location(offset: Int(run) * pageSize + FileFormat.pageHeader, count: dataSize)
                // The run's first page must say it is one, and hold the value in the pages it counts (`mp_pages`):
                // a damaged size is not read, however much of the file it would take.
                guard let header = readBytes(fd, at: Int(run) * pageSize, count: FileFormat.pageHeader),
                    header.withUnsafeBytes({
                        $0.loadUnaligned(as: UInt64.self) == run
                            && $0.loadUnaligned(fromByteOffset: 10, as: UInt16.self) == FileFormat.overflow
                            && dataSize <= Int($0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) * pageSize - FileFormat.pageHeader
                    }),
                    let bytes = value(location)
                else { continue }
                if try !bytes.withUnsafeBytes({ try body(key, $0, location) }) { return false }
            } else {
                guard flags & (FileFormat.subData | FileFormat.dupData) == 0, keyEnd + dataSize <= pageSize else { continue }
                let location = Location(offset: number * pageSize + keyEnd, count: dataSize)
                if try !body(key, UnsafeRawBufferPointer(rebasing: page[keyEnd..<keyEnd + dataSize]), location) { return false }
            }
        }
        return true
    }
}
