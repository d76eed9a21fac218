import IncidentLog
import Logging
import Synchronization
import Testing

@testable import incidentd

/// The lines a logger was given, in order.
private final class CapturedLines: Sendable {
    let lines = Mutex<[String]>([])
}

/// A log handler that keeps each line's level and message, for ``StorageTroubleLogTests``.
private struct CapturingLogHandler: LogHandler {
    let captured: CapturedLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let extra = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        captured.lines.withLock { $0.append("\(event.level) \(event.message)" + (extra.isEmpty ? "" : " " + extra)) }
    }
}

@Suite("Storage trouble in the daemon's log")
struct StorageTroubleLogTests {
    @Test("commits failing and stored by turns (a nearly full file system) give at most a failure line and a recovery line per interval, and the next failure line counts every commit and append refused since")
    func alternatingFailuresAreThrottled() {
        let captured = CapturedLines()
        let trouble = StorageTroubleLog(logger: Logger(label: "test") { _ in CapturingLogHandler(captured: captured) }, onBroken: {})
        let second: UInt64 = 1_000_000_000
        for tick in 0..<10 as Range<UInt64> {
            trouble.report(.commitFailed("the file system is full", requests: 3), at: tick * second)
            trouble.report(.recovered(failedCommits: 1), at: tick * second + 1)
        }
        trouble.report(.commitFailed("the file system is full", requests: 3), at: 10 * second)
        let lines = captured.lines.withLock { $0 }
        #expect(
            lines == [
                "error appends are not being stored: the file system is full failedCommits=1 refusedAppends=3",
                "notice appends are stored again failedCommits=1",
                "error appends are not being stored: the file system is full failedCommits=10 refusedAppends=30",
            ], "\(lines)")
    }
}
