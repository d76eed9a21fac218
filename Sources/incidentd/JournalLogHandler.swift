import Foundation
import Logging

/// Log lines on stderr in the form journald understands: a `<priority>` prefix (sd-daemon(3)) and one line per
/// message, with metadata as `key=value`. Outside journald (no `JOURNAL_STREAM`) lines start with a UTC time.
struct JournalLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    private let label: String
    private let toJournal: Bool

    init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
        toJournal = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = "\(event.message)".replacingOccurrences(of: "\n", with: " ")
        let body = fields.isEmpty ? text : "\(text) \(fields)"
        let line: String
        if toJournal {
            line = "<\(Self.priority(event.level))>\(body)\n"
        } else {
            line = "\(Date().formatted(.iso8601)) \(event.level) \(body)\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
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
