import Foundation
import Testing

/// Keeps the load generator working: a few thousand events against the debug daemon, no baselines. It checks
/// that every phase ran and that the rebuilt projections match the daemon's; it asserts nothing about speed.
@Suite("Load generator smoke run")
struct BenchSmokeTests {
    @Test("incidentbench --smoke runs every phase against the real daemon and prints its table")
    func smokeRun() throws {
        let bench = Binaries.directory + "/incidentbench"
        try #require(
            FileManager.default.isExecutableFile(atPath: bench),
            "no incidentbench beside the test binaries in \(Binaries.directory); run swift build --build-tests")
        let result = try runCommand(bench, ["--smoke", "--daemon", Binaries.incidentd])
        #expect(result.status == 0, "incidentbench failed: \(result.stderr)\(result.stdout)")
        for row in [
            "durable appends/s, 1 conn", "durable appends/s, 16 conn", "durable appends/s, 64 conn",
            "append latency p50, 1 conn, one at a time", "rebuild projections from 3,000 events",
            "replay (incidentctl replay) of 3,000 events", "verify (every page, the hash chain, then the derived data) of 3,000 events",
            "city query p50/p99 under full append load, back to back", "city query p50/p99 under full append load, 1/ms",
            "city query p50/p99 under full append load, 1/ms, ",  // real-time loops (or the kernel refused them)
            "daemon private memory", "bytes on disk per event",
        ] {
            #expect(result.stdout.contains(row), "missing row \(row) in:\n\(result.stdout)")
        }
        #expect(result.stdout.contains("identical to the daemon's"), "rebuild differs:\n\(result.stdout)")
        #expect(result.stdout.contains("identical to the stored cities"), "replay differs:\n\(result.stdout)")
        // Each pass over the full log is run three times, and its row gives the range.
        let ranges = result.stdout.split(separator: "\n").filter { $0.contains(" over 3") }.count
        #expect(ranges == 3, "expected the rebuild, replay and verify rows with their range over 3 passes in:\n\(result.stdout)")
    }
}

@Suite("Committer-only bench smoke run")
struct CommitBenchSmokeTests {
    @Test("incidentbench --commit-only appends every event through the group committer and reports the writer's CPU")
    func commitOnlyRun() throws {
        let bench = Binaries.directory + "/incidentbench"
        try #require(FileManager.default.isExecutableFile(atPath: bench), "no incidentbench in \(Binaries.directory)")
        let result = try runCommand(bench, ["--commit-only", "--events", "2000", "--passes", "2"])
        #expect(result.status == 0, "incidentbench failed: \(result.stderr)\(result.stdout)")
        let passes = result.stdout.split(separator: "\n").filter { $0.hasPrefix("commit only, pass ") }
        #expect(passes.count == 2, "expected two passes in:\n\(result.stdout)")
        #expect(passes.allSatisfy { $0.contains("1000 appends") }, "each pass appends half:\n\(result.stdout)")
        #expect(result.stdout.contains("commit only: writer "), "no summary line in:\n\(result.stdout)")
        #expect(!result.stdout.contains("writer 0.00 µs"), "the writer thread's CPU was not read:\n\(result.stdout)")
    }
}

@Suite("Latency comparison smoke run")
struct LatencyComparisonSmokeTests {
    @Test("incidentbench --latency-against runs the one-at-a-time phase against both daemons each round and prints their percentiles")
    func latencyAgainstRun() throws {
        let bench = Binaries.directory + "/incidentbench"
        try #require(FileManager.default.isExecutableFile(atPath: bench), "no incidentbench in \(Binaries.directory)")
        let root = makeTemporaryDirectory("incidentbench-latency")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let settings = root + "/off.toml"
        try "[storage]\nfile_headroom = 0\n".write(toFile: settings, atomically: true, encoding: .utf8)
        let result = try runCommand(
            bench, ["--latency-against", settings, "--events", "100", "--passes", "2", "--daemon", Binaries.incidentd, "--work-dir", root])
        #expect(result.status == 0, "incidentbench failed: \(result.stderr)\(result.stdout)")
        #expect(result.stderr.contains("round 2: p50 "), "both rounds ran:\n\(result.stderr)")
        for row in ["p50 | ", "p99 | ", "p99.9 | "] {
            #expect(result.stdout.split(separator: "\n").contains { $0.hasPrefix(row) && $0.hasSuffix(" of 2") }, "missing row \(row) in:\n\(result.stdout)")
        }
        let missing = try runCommand(bench, ["--latency-against", root + "/none.toml", "--daemon", Binaries.incidentd])
        #expect(missing.status != 0 && missing.stderr.contains("cannot read"), "\(missing.stderr)")
    }
}

@Suite("Page check bench smoke run")
struct PageCheckBenchSmokeTests {
    @Test("incidentbench --check-pages-only times the page check, verify without the derived data and the comparison of the derived data of a stopped daemon's log")
    func checkPagesOnlyRun() throws {
        let bench = Binaries.directory + "/incidentbench"
        try #require(FileManager.default.isExecutableFile(atPath: bench), "no incidentbench in \(Binaries.directory)")
        let daemon = try PageDamageTests.storedLog(incidents: 100)
        let result = try runCommand(bench, ["--check-pages-only", daemon.dataDir, "--passes", "2"])
        #expect(result.status == 0, "incidentbench failed: \(result.stderr)\(result.stdout)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(result.stdout)")
        for line in lines {
            #expect(
                line.contains("; intact), verify without the derived data") && line.contains(" s (300 events), derived data ")
                    && line.hasSuffix(" s (agrees with events 1–300)"),
                "\(line)")
        }
    }
}
