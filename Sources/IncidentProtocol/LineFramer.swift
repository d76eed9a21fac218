/// Splits a byte stream into newline-terminated lines, refusing lines longer than a limit without holding
/// them in memory: the bytes of an over-long line are dropped as they arrive and reported once.
public struct LineFramer: Sendable {
    /// What the framer found in the input.
    public enum Frame: Equatable, Sendable {
        case line([UInt8])
        /// A line longer than the limit was discarded; its length so far.
        case tooLong(Int)
    }

    public let maxLineLength: Int
    private var pending: [UInt8] = []
    private var discarding = false
    private var discarded = 0

    public init(maxLineLength: Int) {
        self.maxLineLength = maxLineLength
    }

    /// Feeds bytes and returns every frame they complete. A trailing `\r` before the newline is dropped.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> [Frame] {
        var frames: [Frame] = []
        var start = 0
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: 0x0A) else {
                absorb(UnsafeRawBufferPointer(rebasing: bytes[start...]), into: &frames)
                break
            }
            absorb(UnsafeRawBufferPointer(rebasing: bytes[start..<newline]), into: &frames)
            if discarding {
                discarding = false
                discarded = 0
            } else {
                if pending.last == 0x0D { pending.removeLast() }
                frames.append(.line(pending))
                pending.removeAll(keepingCapacity: true)
            }
            start = newline + 1
        }
        return frames
    }

    public mutating func feed(_ bytes: [UInt8]) -> [Frame] {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Bytes received after the last newline.
    public var hasPartialLine: Bool { !pending.isEmpty || discarding }

    private mutating func absorb(_ chunk: UnsafeRawBufferPointer, into frames: inout [Frame]) {
        if discarding {
            discarded += chunk.count
            return
        }
        if pending.count + chunk.count > maxLineLength {
            discarding = true
            discarded = pending.count + chunk.count
            pending.removeAll(keepingCapacity: false)
            frames.append(.tooLong(discarded))
            return
        }
        pending.append(contentsOf: chunk)
    }
}
