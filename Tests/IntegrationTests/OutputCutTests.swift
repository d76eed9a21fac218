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

/// `incidents` cut short as `export` and `events` are: it says where its output ends and the `--from` cursor to go
/// on with, which lists the rest once the daemon is back.
@Suite("incidents cut short")
struct IncidentsCutTests {
    /// Runs `arguments` with standard output a pipe, stops the daemon with `stop` once the first line (so the first
    /// page) has come, reads the rest, and gives how the command ended and what it wrote.
    static func cut(_ daemon: Daemon, _ arguments: [String], stop: (Daemon) -> Void) throws -> (ending: OutputFailureTests.Ending, lines: [String]) {
        let pipe = try CloseOnExecPipe()
        var output = Data()
        let ending = try OutputFailureTests.run(daemon, arguments, stdout: pipe.write) { _ in
            close(pipe.write)
            var byte: UInt8 = 0
            while Glibc.read(pipe.read, &byte, 1) == 1 {
                output.append(byte)
                if byte == 0x0A { break }
            }
            #expect(byte == 0x0A)
            stop(daemon)
            output += readToEnd(pipe.read)
        }
        close(pipe.read)
        return (ending, String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init))
    }

    /// The cursor a cut-short listing's message names (`go on with --from CURSOR`).
    static func cursor(in stderr: String) -> String? {
        guard let range = stderr.range(of: "go on with --from ") else { return nil }
        return String(stderr[range.upperBound...].prefix { $0 != " " && $0 != "\n" })
    }

    static func incident(_ line: String) throws -> String {
        try JSONReader().read(line)["incident"]?.stringValue ?? "?"
    }

    @Test("incidents cut short by the daemon's end (kill -9, SIGTERM) says the output is incomplete, after which incident, and the --from (and --limit) to go on with, exit 3; --from lists the rest")
    func incidentsCut() throws {
        let daemon = try OutputFailureTests.log(of: 3_000)
        let whole = try daemon.ctl(["incidents", "--city", "Melitopol", "--format", "json"])
        #expect(whole.status == 0, "\(whole.stderr)")
        let all = whole.stdout.split(separator: "\n").map(String.init)
        #expect(all.count == 3_000)

        // Killed once the first page is in hand: the command prints it whole, then cannot ask for the next.
        let (killed, lines) = try Self.cut(daemon, ["incidents", "--city", "Melitopol", "--format", "json"]) { $0.crash() }
        #expect(killed.status == 3 && !killed.signaled, "\(killed)")
        #expect(lines.count == 1_000 && lines == Array(all.prefix(lines.count)), "\(lines.count) lines")
        let last = try Self.incident(try #require(lines.last))
        #expect(
            killed.stderr.contains("; the output is incomplete: it ends after incident \(last); go on with --from d")
                && killed.stderr.hasSuffix(" and the same --city\n"),
            "\(killed)")
        let cursor = try #require(Self.cursor(in: killed.stderr), "\(killed)")
        try daemon.start()
        let rest = try daemon.ctl(["incidents", "--city", "Melitopol", "--format", "json", "--from", cursor])
        #expect(rest.status == 0, "\(rest.stderr)")
        #expect(lines + rest.stdout.split(separator: "\n").map(String.init) == all)

        // Stopped (SIGTERM) with --limit: the limit left is part of how to go on.
        let limited = ["incidents", "--city", "Melitopoli", "--status", "open", "--limit", "2500", "--format", "json"]
        let (stopped, first) = try Self.cut(daemon, limited) { _ = $0.stop() }
        #expect(stopped.status != 0 && !stopped.signaled, "\(stopped)")
        #expect(first.count == 1_000 && first == Array(all.prefix(first.count)), "\(first.count) lines")
        #expect(
            stopped.stderr.contains(
                "; the output is incomplete: it ends after incident \(try Self.incident(try #require(first.last))); go on with --from ")
                && stopped.stderr.hasSuffix(" --limit 1500 and the same --city and --status\n"),
            "\(stopped)")
        let resume = try #require(Self.cursor(in: stopped.stderr), "\(stopped)")
        try daemon.start()
        let more = try daemon.ctl(["incidents", "--city", "Melitopoli", "--status", "open", "--limit", "1500", "--format", "json", "--from", resume])
        #expect(more.status == 0, "\(more.stderr)")
        #expect(first + more.stdout.split(separator: "\n").map(String.init) == Array(all.prefix(2_500)))
        #expect(daemon.stop() == 0)
    }
}
