import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A daemon that goes away part way through `export` or `events --limit 0` (README, exit statuses): the command
/// says that its output is incomplete, where it stopped and how to go on, and exits non-zero; a JSON-lines output
/// cut at a line boundary would otherwise read as a whole one.
@Suite("Output cut short")
struct OutputCutTests {
    /// Runs `arguments` with standard output a pipe, kills the daemon once the first line (so the first page) has
    /// come, reads the rest, and gives how the command ended and how many lines it wrote.
    static func cutByCrash(_ daemon: Daemon, _ arguments: [String]) throws -> (ending: OutputFailureTests.Ending, lines: Int) {
        let pipe = try CloseOnExecPipe()
        var lines = 0
        let ending = try OutputFailureTests.run(daemon, arguments, stdout: pipe.write) { _ in
            close(pipe.write)
            var byte: UInt8 = 0
            while Glibc.read(pipe.read, &byte, 1) == 1, byte != 0x0A {}
            #expect(byte == 0x0A)
            daemon.crash()
            lines = 1 + readToEnd(pipe.read).filter { $0 == 0x0A }.count
        }
        return (ending, lines)
    }

    @Test("export cut short by the daemon's end says the output is incomplete, after which position of which head, and to run it again; exit status 3")
    func exportCut() throws {
        let daemon = try OutputFailureTests.log(of: 3_000)
        let head = try daemon.client().call("status")
        let (ending, lines) = try Self.cutByCrash(daemon, ["export", "--format", "jsonl"])
        #expect(lines > 0 && lines < 3_000, "\(lines) lines")
        #expect(ending.status == 3 && !ending.signaled, "\(ending)")
        let hash = head["headHash"]?.stringValue ?? "?"
        #expect(
            ending.stderr.contains(
                "; the export is cut short after position \(lines) of 3000 (head \(hash)): the output is incomplete; run the export again"),
            "\(ending)")
        #expect(!ending.stderr.contains("exported positions"), "\(ending)")
    }

    @Test("export --format csv cut short says after how many incidents of which head it stopped")
    func csvExportCut() throws {
        let daemon = try OutputFailureTests.log(of: 3_000)
        let (ending, lines) = try Self.cutByCrash(daemon, ["export", "--format", "csv"])
        #expect(lines > 1 && lines < 3_001, "\(lines) lines")
        #expect(ending.status == 3 && !ending.signaled, "\(ending)")
        #expect(
            ending.stderr.contains("; the export is cut short after \(lines - 1) incidents of the log through position 3000 (head "),
            "\(ending)")
    }

    @Test("events --limit 0 cut short by the daemon's end says the output is incomplete, the last position written and the --from to go on with; exit status 3")
    func eventsCut() throws {
        let daemon = try OutputFailureTests.log(of: 3_000)
        let (ending, lines) = try Self.cutByCrash(daemon, ["events", "--limit", "0", "--format", "json"])
        #expect(lines > 0 && lines < 3_000, "\(lines) lines")
        #expect(ending.status == 3 && !ending.signaled, "\(ending)")
        #expect(
            ending.stderr.contains("; the output is incomplete: it ends after position \(lines); go on with --from \(lines + 1)"),
            "\(ending)")
    }
}
