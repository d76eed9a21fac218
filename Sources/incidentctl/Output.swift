#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Standard output, the one way every command writes to it: through a buffer, each write(2) checked, so that a
/// full disk, a failing device or a closed pipe never leaves a command that says it succeeded with its output cut
/// short. A write that fails ends the command at once: quietly when the reader has gone (EPIPE, as `head` leaves
/// a pipe; with SIGPIPE at its default the kernel ends the command first), else with "cannot write the output" and
/// the cause on standard error; exit status 1 either way, as for a check that failed (SPEC §4).
enum Output {
    /// Bytes not written yet.
    private static let pending = Mutex<[UInt8]>([])

    /// How much is kept before it is written.
    private static let bufferSize = 1 << 16

    /// The exit status of a command whose output could not be written.
    static let failedStatus: Int32 = 1

    /// `text` and a line feed.
    static func line(_ text: String) {
        write(Array(text.utf8) + [0x0A])
    }

    static func write(_ text: String) {
        write(Array(text.utf8))
    }

    static func write(_ bytes: [UInt8]) {
        let full = pending.withLock { buffer in
            buffer += bytes
            return buffer.count >= bufferSize
        }
        if full { flush() }
    }

    /// Writes out what is kept, all of it, or ends the command.
    static func flush() {
        let failure: Int32? = pending.withLock { buffer in
            defer { buffer.removeAll(keepingCapacity: true) }
            return writeAll(buffer)
        }
        if let failure { fail(failure) }
    }

    /// The errno of the write that failed, or nil once every byte is written.
    private static func writeAll(_ bytes: [UInt8]) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += written
        }
        return nil
    }

    private static func fail(_ code: Int32) -> Never {
        if code != EPIPE {
            Diagnostics.say("cannot write the output: \(String(cString: strerror(code))); the output is incomplete")
        }
        Glibc.exit(failedStatus)
    }
}
