import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Log lines on stderr in the form journald understands: a `<priority>` prefix (sd-daemon(3)) and one line per
/// message, with metadata as `key=value`. Outside journald lines start with a UTC time: stderr is the journal's
/// only when `JOURNAL_STREAM` names its device and inode (``writesToJournal(journalStream:descriptor:)``).
struct JournalLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    private let label: String
    private let toJournal: Bool

    init(label: String, level: Logger.Level, toJournal: Bool = Self.writesToJournal()) {
        self.label = label
        logLevel = level
        self.toJournal = toJournal
    }

    /// Whether `descriptor` (stderr) is the stream systemd connected to the journal: `journalStream`, as
    /// `JOURNAL_STREAM` gives it (`device:inode`, in decimal), names the file `descriptor` is open on (systemd.exec(5)).
    /// A variable inherited by a process whose stderr was then redirected elsewhere (a file, a terminal) names
    /// another file.
    static func writesToJournal(
        journalStream: String? = ProcessInfo.processInfo.environment["JOURNAL_STREAM"], descriptor: Int32 = STDERR_FILENO
    ) -> Bool {
        guard let parts = journalStream?.split(separator: ":", omittingEmptySubsequences: false), parts.count == 2,
            let device = UInt64(parts[0]), let inode = UInt64(parts[1])
        else { return false }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let body = Self.oneLine(fields.isEmpty ? "\(event.message)" : "\(event.message) \(fields)")
        let line: String
        if toJournal {
            line = "<\(Self.priority(event.level))>\(body)\n"
        } else {
            line = "\(Date().formatted(.iso8601)) \(event.level) \(body)\n"
        }
        Self.writeToStandardError(line)
    }

    /// Lines that could not be written to stderr since the last one that could.
    private static let droppedLines = Atomic<Int>(0)

    /// Writes `line` to stderr whole, or drops it: a log that cannot be written (a full disk under a redirected
    /// stderr, a pipe whose reader has gone) never stops the daemon. The next line written says how many were dropped.
    static func writeToStandardError(_ line: String) {
        var bytes = Array(line.utf8)
        let dropped = droppedLines.load(ordering: .relaxed)
        if dropped > 0 {
            let notice = "\(dropped) log lines could not be written to stderr and were dropped"
            let line = writesToJournal() ? "<\(priority(.warning))>\(notice)\n" : "\(Date().formatted(.iso8601)) warning \(notice)\n"
            bytes = Array(line.utf8) + bytes
        }
        if writeAll(bytes, to: STDERR_FILENO) {
            if dropped > 0 { droppedLines.subtract(dropped, ordering: .relaxed) }
        } else {
            droppedLines.add(1, ordering: .relaxed)
        }
    }

    /// Whether all of `bytes` went to `descriptor`.
    private static func writeAll(_ bytes: [UInt8], to descriptor: Int32) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(descriptor, raw.baseAddress.map { $0 + offset }, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                offset += n
            }
            return true
        }
    }

    /// `text` with every control character (a newline, a carriage return, an escape), line or paragraph separator
    /// and format character (a bidirectional override) as a space, so that nothing in a message or a value (a user
    /// name from the user database, a city's name) can end the line, forge another with a priority of its own, or
    /// reorder what an operator reads.
    static func oneLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isReplaced) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { isReplaced($0) ? " " : $0 }))
    }

    private static func isReplaced(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }

    /// What incidentd says on stderr before its logging is set up (a setting refused, a command-line usage error),
    /// as one line in the form its log lines take there: `message` after `incidentd: `, with the priority prefix of
    /// `level` when stderr is the journal's stream (``writesToJournal(journalStream:descriptor:)``), and with no
    /// control character of `message` (a TOML key holding a newline, say) left to end the line or forge another.
    static func startLine(_ message: String, level: Logger.Level, toJournal: Bool = Self.writesToJournal()) -> String {
        let body = "incidentd: " + oneLine(message)
        return toJournal ? "<\(priority(level))>\(body)\n" : "\(body)\n"
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }
}
