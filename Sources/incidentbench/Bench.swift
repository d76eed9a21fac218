import ArgumentParser
import Foundation
import Gazetteer
import Histogram
import IncidentDomain
import IncidentLog
import LMDB
import StrictJSON

#if canImport(Glibc)
import Glibc
#endif

/// `incidentbench`: starts the real daemon on a temporary socket and data directory, loads it, and compares it
/// with PostgreSQL, SQLite and bare LMDB on the same event bytes, in the same run.
@main
struct IncidentBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incidentbench",
        abstract: "Measure incidentd against PostgreSQL, SQLite and bare LMDB on the same events.",
        discussion: """
            Phases, all against one daemon and one growing log: one connection sending one append at a time \
            (latency), then 1, 16 and 64 connections each keeping --window appends in flight (throughput and \
            latency under load), then 16 connections filling the log up to --events while another connection \
            asks `city` one request at a time (query latency under full append load). At --events the daemon's \
            memory and the bytes on disk are read, the daemon is stopped, and the projections are rebuilt from \
            the log in this process (and compared with the ones the daemon kept). Baselines follow on the \
            stored bytes of the same events.
            """)

    @Option(help: "Events in the log when memory and rebuild are measured (the total appended).")
    var events = 1_000_000

    @Option(help: "Requests each connection keeps in flight.")
    var window = 32

    @Option(help: "Seconds each baseline runs for.")
    var seconds = 8

    @Flag(inversion: .prefixedNo, help: "Run the PostgreSQL, SQLite and LMDB baselines.")
    var baselines = true

    @Option(help: ArgumentHelp(
        "How keys relate to time: chronological (the days documented advance through the run, time-ordered event ids) or random (worst case: every event's keys on a random index page).",
        valueName: "keys"))
    var keys: String = "chronological"

    @Option(help: ArgumentHelp(
        "How many times the rebuild, replay, verify and the bare scan are each run on the full log; the table shows the median and the range, since one pass moves by a third between runs on a shared machine.",
        valueName: "n"))
    var passes = 3

    @Flag(help: "A few thousand events, no baselines: a quick check that the generator works.")
    var smoke = false

    @Option(help: "The incidentd binary (default: beside this one).")
    var daemon: String?

    @Option(help: "Directory for the temporary data directories.")
    var workDir = "/tmp"

    @Flag(help: "Keep the temporary directory.")
    var keep = false

    @Option(help: ArgumentHelp("Only rebuild the projections of the log in this data directory (for profiling).", valueName: "dir"))
    var rebuildOnly: String?

    @Option(help: ArgumentHelp(
        "With --rebuild-only: how many incidents the rebuild writes per commit (the daemon's default if not given).",
        valueName: "n"))
    var incidentsPerCommit: Int?

    @Option(help: ArgumentHelp(
        "With --rebuild-only: into how many stretches the rebuild cuts the log's incidents, folded on every core at once (the daemon's default, four per core, if not given).",
        valueName: "n"))
    var rebuildStretches: Int?

    @Option(help: ArgumentHelp(
        "With --rebuild-only: how many positions of the log the rebuild folds and writes at a time (the daemon's default, 1,048,576, if not given).",
        valueName: "n"))
    var rebuildSegment: Int?

    @Option(help: ArgumentHelp(
        "Only time the parts of verify on the log in this data directory, read-only, --passes times each: the check of every page of data.mdb, verify without the comparison of the derived data (the pages again, then the hash chain), and that comparison alone.",
        valueName: "dir"))
    var checkPagesOnly: String?

    @Flag(help: "Measure only the group committer, in this process, on a log in --work-dir: --events appends over --passes passes, 16 × --window in flight as 16 connections would keep them, and the writer thread's CPU per append (its schedstat). The ceiling of the one serial stage, and a way to compare two versions of the append path.")
    var commitOnly = false

    @Flag(help: "Measure only the intake's work on append lines, in this process, on one thread: the --events request lines the 16-connection phase of a run of 4 × --events sends, each fast-decoded, made into an append request (canonical parts and content digest) and freed, --passes times; the thread's CPU per line. A way to compare two versions of the intake's work.")
    var decodeOnly = false

    @Option(help: ArgumentHelp(
        "Only the one-at-a-time phase, against a daemon on its defaults and one started with this settings file (TOML), in turn, each on a fresh log: --passes rounds of --events appends per daemon. What a setting does to append latency, against its own baseline in one command.",
        valueName: "file"))
    var latencyAgainst: String?

    @Option(help: ArgumentHelp(
        "Profile with perf: the daemon during the 16-connection phase (append.txt) and the rebuild (rebuild.txt), with their perf.data, into this directory.",
        valueName: "dir"))
    var profile: String?

    mutating func run() throws {
        if let rebuildOnly {
            let log = try EventLog(options: LogOptions(directory: rebuildOnly), gazetteer: .embedded)
            let start = monotonicNanos()
            let folded = try log.rebuildProjections(
                stretches: rebuildStretches.map { max(1, $0) },
                incidentsPerCommit: max(1, incidentsPerCommit ?? EventLog.rebuildIncidentsPerCommit),
                segment: max(1, rebuildSegment ?? EventLog.rebuildSegment))
            let seconds = Double(monotonicNanos() - start) / 1e9
            print("rebuilt projections from \(folded) events in \(String(format: "%.3f", seconds)) s: \(Int(Double(folded) / seconds)) events/s")
            return
        }
        if let checkPagesOnly {
            let log = try EventLog(options: LogOptions(directory: checkPagesOnly, readOnly: true), gazetteer: .embedded)
            for pass in 1...max(1, passes) {
                var start = monotonicNanos()
                let pages = try log.environment.checkPages()
                let pageSeconds = Double(monotonicNanos() - start) / 1e9
                start = monotonicNanos()
                let verified = try log.verify(checkingDerivedData: false)
                let verifySeconds = Double(monotonicNanos() - start) / 1e9
                // The comparison reads the indexes and projections through LMDB: only once their pages and the
                // chain are found whole.
                guard verified.isIntact else {
                    print("pass \(pass): pages \(pages.damage.map { "\($0)" } ?? "intact"), verify: NOT INTACT (\(verified.problem ?? "")); the derived data is not compared")
                    continue
                }
                start = monotonicNanos()
                let derived = try log.verifyDerivedData()
                let derivedSeconds = Double(monotonicNanos() - start) / 1e9
                let mebibytes = Double(pages.pagesInUse * pages.pageSize) / 1_048_576
                let differences = derived.differences.map { "\($0.database.rawValue) \($0.key ?? ""): \($0.problem)" }
                print(String(
                    format: "pass %d: pages %.3f s (%d in use, %.0f MiB, %d free; %@), verify without the derived data %.3f s (%llu events%@), derived data %.3f s (%@)",
                    pass, pageSeconds, pages.pagesInUse, mebibytes, pages.freePages, pages.damage.map { "\($0)" } ?? "intact",
                    verifySeconds, verified.checked, verified.isIntact ? "" : ": NOT INTACT", derivedSeconds,
                    derived.isIntact ? "agrees with \(Positions.events(1, through: derived.position))" : "DIFFERS: " + differences.joined(separator: "; ")))
            }
            return
        }
        if commitOnly {
            guard let keyMode = EventFactory.Keys(rawValue: keys) else {
                throw BenchError("--keys: one of \(EventFactory.Keys.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let bench = CommitBench(events: events, window: window * 16, passes: passes, workDir: workDir, keys: keyMode)
            let results = try bench.run()
            for (i, pass) in results.enumerated() {
                print(String(
                    format: "commit only, pass %d: %d appends, %.0f appends/s, writer %.2f µs/append, %.0f appends/commit, %@",
                    i + 1, pass.appends, pass.perSecond, pass.writerMicrosPerAppend,
                    Double(pass.appends) / Double(max(pass.commits, 1)),
                    pass.kibPerAppend.map { String(format: "%.1f KiB to the disk/append", $0) } ?? "no disk (tmpfs)"))
            }
            let writer = results.map(\.writerMicrosPerAppend).sorted()
            print(String(format: "commit only: writer %.2f µs/append (median of %d passes)", writer[writer.count / 2], writer.count))
            return
        }
        if decodeOnly {
            guard let keyMode = EventFactory.Keys(rawValue: keys) else {
                throw BenchError("--keys: one of \(EventFactory.Keys.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let results = try DecodeBench(lines: events, passes: passes, keys: keyMode).run()
            for (i, pass) in results.enumerated() {
                print(String(format: "decode only, pass %d: %d lines, intake %.2f µs/append", i + 1, pass.lines, pass.microsPerLine))
            }
            let intake = results.map(\.microsPerLine).sorted()
            print(String(format: "decode only: intake %.2f µs/append (median of %d passes)", intake[intake.count / 2], intake.count))
            return
        }
        if let latencyAgainst {
            let binary = daemon ?? Self.siblingDaemon()
            let comparison = LatencyComparison(
                binary: binary, settingsFile: latencyAgainst, appends: max(events, 100), rounds: max(passes, 1),
                root: "\(workDir)/incidentbench-latency-\(getpid())")
            defer { try? FileManager.default.removeItem(atPath: comparison.root) }
            let rounds = try comparison.run(progress: progress)
            print(LatencyComparison.table(rounds, settingsFile: latencyAgainst, appends: comparison.appends))
            return
        }
        if smoke {
            events = min(events, 3_000)
            baselines = false
        }
        let binary = daemon ?? Self.siblingDaemon()
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchError("no incidentd at \(binary); build it or pass --daemon")
        }
        var template = Array("\(workDir)/incidentbench-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchError("cannot create a directory in \(workDir)")
        }
        let root = String(cString: made)
        defer {
            if !keep { try? FileManager.default.removeItem(atPath: root) }
        }
        var report = Report(events: events, window: window, binary: binary)
        try measureDaemon(binary: binary, root: root, report: &report)
        if baselines {
            try measureBaselines(root: root, report: &report)
        }
        print(report.table())
        if let problem = report.problems.first {
            throw BenchError(problem)
        }
    }

    static func siblingDaemon() -> String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (me as NSString).deletingLastPathComponent + "/incidentd"
    }

    func progress(_ text: String) {
        FileHandle.standardError.write(Data("incidentbench: \(text)\n".utf8))
    }

    // MARK: The daemon

    func measureDaemon(binary: String, root: String, report: inout Report) throws {
        var daemon = try DaemonProcess(binary: binary, root: root + "/incidentd")
        let sizes = PhaseSizes(events: events)
        let (warmup, sequential, single, sixteen, sixtyFour, fill) = (
            sizes.warmup, sizes.sequential, sizes.single, sizes.sixteen, sizes.sixtyFour, sizes.fill
        )
        guard fill >= 32 else { throw BenchError("--events \(events) is too small; use at least 2000") }
        var appended = 0
        guard let keyMode = EventFactory.Keys(rawValue: keys) else {
            throw BenchError("--keys: one of \(EventFactory.Keys.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var runScripts = RunScripts(events: events, keys: keyMode)

        func scripts(_ phase: String, connections: Int, total: Int) -> [RequestScript] {
            runScripts.next(phase, connections: connections, total: total)
        }

        // One connection, one request at a time.
        do {
            let client = try SimpleClient(path: daemon.socketPath)
            _ = try client.runSequential(scripts("w", connections: 1, total: warmup)[0])
            let script = scripts("s", connections: 1, total: sequential)[0]
            let before = PhaseProbe(daemon)
            var result = try client.runSequential(script)
            result.diagnostics = PhaseDiagnostics(
                from: before, to: PhaseProbe(daemon), appends: sequential)
            try check(result, "one at a time")
            report.sequential = result
            appended += warmup + sequential
            progress("one at a time: \(sequential) appends, p50 \(ms(result.latency.valueAtPercentile(50))) ms; \(result.diagnostics?.summary ?? "")")
        }
        // Throughput with 1, 16 and 64 connections.
        for (connections, total) in [(1, single), (16, sixteen), (64, sixtyFour)] {
            let load = try PipelinedLoad(socketPath: daemon.socketPath, scripts: scripts("p\(connections)x", connections: connections, total: total), window: window)
            let recorder = try profile.flatMap { connections == 16 ? try PerfRecorder(pid: daemon.pid, directory: $0, name: "append") : nil }
            let before = PhaseProbe(daemon)
            var result = try load.run()
            if let recorder { progress("profile of the append path: \(recorder.stop())") }
            result.diagnostics = PhaseDiagnostics(
                from: before, to: PhaseProbe(daemon), appends: total)
            try check(result, "\(connections) connections")
            report.throughput[connections] = result
            appended += total
            progress("\(connections) connections × \(window): \(Int(result.perSecond)) appends/s; \(result.diagnostics?.summary ?? "")")
        }
        // Fill to `events` at full speed while `city` is asked on the side: back to back over the first third,
        // one a millisecond over the second, and one a millisecond again over the last, with the daemon restarted
        // with its event loops real-time (`loop_scheduling = "realtime"`).
        let thirds = [fill / 3, fill / 3, fill - 2 * (fill / 3)]
        var peakRSS = 0
        for (share, (paced, realtime)) in zip(thirds, [(false, false), (true, false), (true, true)]) {
            if realtime {
                peakRSS = max(peakRSS, daemon.memory().peakRSS)
                let exit = daemon.stop()
                guard exit == 0 else { throw BenchError("incidentd exited with \(exit) on SIGTERM: \(daemon.log.suffix(2000))") }
                let config = root + "/realtime.toml"
                try "[daemon]\nloop_scheduling = \"realtime\"\n".write(toFile: config, atomically: true, encoding: .utf8)
                daemon = try DaemonProcess(binary: binary, root: root + "/incidentd", extraArguments: ["--config", config])
                report.realtimeGranted = daemon.eventLoopsAreRealtime()
                if !report.realtimeGranted { progress("the kernel refused SCHED_RR to the event loops (not root, no RLIMIT_RTPRIO)") }
            }
            let plan = scripts("f\(paced ? "p" : "b")\(realtime ? "r" : "")", connections: 16, total: share)
            let prober = CityProber(socketPath: daemon.socketPath, paced: paced)
            let load = try PipelinedLoad(socketPath: daemon.socketPath, scripts: plan, window: window)
            let before = PhaseProbe(daemon)
            prober.start()
            var result = try load.run()
            let (cityLatency, cityError) = prober.stop()
            result.diagnostics = PhaseDiagnostics(
                from: before, to: PhaseProbe(daemon), appends: share)
            try check(result, "fill")
            if let cityError { throw BenchError("city query failed: \(cityError)") }
            if realtime {
                report.realtimeCityLatency = cityLatency
                report.realtimeFill = result
            } else if paced {
                report.pacedCityLatency = cityLatency
                report.pacedFill = result
            } else {
                report.fill = result
                report.cityLatency = cityLatency
            }
            appended += share
            progress("fill to \(appended): \(Int(result.perSecond)) appends/s, city (\(paced ? "one a millisecond" : "back to back")\(realtime ? ", real-time loops" : "")) p99 \(ms(cityLatency.valueAtPercentile(99))) ms over \(cityLatency.totalCount) queries; \(result.diagnostics?.summary ?? "")")
        }
        // Memory and disk at `events`.
        let status = try SimpleClient(path: daemon.socketPath).call(Array("{\"id\":1,\"op\":\"status\"}\n".utf8))
        let position = (try? JSONReader().read(status))?["position"]?.intValue ?? -1
        guard position == Int64(appended) else {
            throw BenchError("the daemon reports position \(position) after \(appended) acknowledged appends")
        }
        var memory = daemon.memory()
        // The restart began a new process: the peak is the larger of the two.
        memory.peakRSS = max(peakRSS, memory.peakRSS)
        report.memory = memory
        let exit = daemon.stop()
        guard exit == 0 else { throw BenchError("incidentd exited with \(exit) on SIGTERM: \(daemon.log.suffix(2000))") }
        report.dataFileBytes = fileSize(daemon.dataDir + "/data.mdb")
        report.appended = appended

        // Rebuild the projections from the log, in this process, and compare them with what the daemon kept.
        progress("rebuilding projections from \(appended) events")
        do {
            let log = try EventLog(options: LogOptions(directory: daemon.dataDir), gazetteer: .embedded)
            let incidentsDB = try log.environment.openDatabase("incidents", create: false)
            let citiesDB = try log.environment.openDatabase("cities", create: false)
            let before = try Self.digest(log.environment, [incidentsDB, citiesDB])
            let eventsDB = try log.environment.openDatabase("events", create: false)
            var checksum: UInt64 = 0
            func seconds(since start: UInt64) -> Double { Double(monotonicNanos() - start) / 1e9 }
            for pass in 1...max(1, passes) {
                let start = monotonicNanos()
                let folded = try log.rebuildProjections()
                report.rebuildSeconds.append(seconds(since: start))
                report.rebuildEvents = Int(folded)
                let after = try Self.digest(log.environment, [incidentsDB, citiesDB])
                if before != after {
                    report.rebuildIdentical = false
                    report.problems.append("rebuild \(pass): the rebuilt projections differ from the ones the daemon kept")
                }
                // `incidentctl replay`: the same fold, read-only, into the cities document, checked against the
                // cities the rebuild just wrote.
                let replayStart = monotonicNanos()
                let replayed = try log.replay()
                report.replaySeconds.append(seconds(since: replayStart))
                let stored = try log.cities()
                if replayed.map({ $0.canonicalBytes() }) != stored.map({ $0.canonicalBytes() }) {
                    report.replayIdentical = false
                    report.problems.append("replay \(pass) differs from the stored cities")
                }
                // `verify`: the whole hash chain, as an admin proves the log was not rewritten, then the indexes and
                // projections against the events.
                let verifyStart = monotonicNanos()
                let verified = try log.verify()
                report.verifySeconds.append(seconds(since: verifyStart))
                if !verified.isIntact || verified.checked != folded {
                    report.verifyIntact = false
                    report.problems.append("verify \(pass): \(verified.problem ?? "checked \(verified.checked)")")
                } else if let difference = verified.derived?.differences.first {
                    report.verifyIntact = false
                    report.problems.append("verify \(pass): \(difference.database.rawValue) \(difference.key ?? ""): \(difference.problem)")
                }
                // The read ceiling: a bare cursor scan over the same events.
                let scanStart = monotonicNanos()
                try log.environment.read { txn in
                    try txn.forEach(eventsDB) { _, value in
                        checksum &+= UInt64(value[value.count - 1])
                        return true
                    }
                }
                report.scanSeconds.append(seconds(since: scanStart))
                let rate = { (seconds: [Double]) in Int(Double(folded) / (seconds.last ?? 1)) }
                progress(
                    "pass \(pass): rebuild \(rate(report.rebuildSeconds)), replay \(rate(report.replaySeconds)), verify \(rate(report.verifySeconds)), scan \(rate(report.scanSeconds)) events/s")
            }
            if checksum == 0 { progress("(empty scan)") }
            // The stored bytes of the first events, for the baselines.
            if baselines {
                var samples = Samples(canonical: [], stored: [])
                try log.environment.read { txn in
                    try txn.forEach(eventsDB) { _, value in
                        samples.stored.append(Array(value))
                        samples.canonical.append(Array(value[32...]))
                        return samples.stored.count < 20_000
                    }
                }
                report.samples = samples
            }
        }
        if let profile {
            // The same rebuild again, in a process of its own that perf runs from its start (the log above is
            // closed by now: one process at a time holds it).
            let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            let path = try PerfRecorder.profile([me, "--rebuild-only", daemon.dataDir], directory: profile, name: "rebuild")
            progress("profile of the rebuild: \(path)")
        }
    }

    /// A digest (FNV-1a, 64 bits) of every key and value of `databases`, and how many entries they hold: the
    /// projections before and after a rebuild must match byte for byte.
    static func digest(_ environment: Environment, _ databases: [Database]) throws -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        var entries = 0
        func mix(_ bytes: UnsafeRawBufferPointer) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0100_0000_01B3
            }
            hash ^= UInt64(bytes.count)
            hash = hash &* 0x0100_0000_01B3
        }
        try environment.read { txn in
            for db in databases {
                try txn.forEach(db) { key, value in
                    mix(key)
                    mix(value)
                    entries += 1
                    return true
                }
            }
        }
        return "\(entries) entries, \(String(hash, radix: 16))"
    }

    func check(_ result: PhaseResult, _ phase: String) throws {
        if let error = result.firstError { throw BenchError("\(phase): the daemon refused an append: \(error)") }
    }

    // MARK: Baselines

    func measureBaselines(root: String, report: inout Report) throws {
        guard let samples = report.samples else { return }
        let ceilingEvents = min(report.appended, 1_000_000)
        progress("LMDB ceiling: \(ceilingEvents) events, 1,000 per commit")
        report.lmdb = try runLMDBCeiling(samples: samples, events: ceilingEvents, directory: root + "/lmdb")
        try? FileManager.default.removeItem(atPath: root + "/lmdb")
        progress("SQLite: WAL, synchronous=FULL, 1 and 16 threads, \(seconds) s each")
        report.sqlite = try runSQLite(samples: samples, threadCounts: [1, 16], seconds: Double(seconds), directory: root + "/sqlite")
        try? FileManager.default.removeItem(atPath: root + "/sqlite")
        progress("PostgreSQL: pgbench with 1, 16 and 64 clients, \(seconds) s each")
        report.postgres = try runPostgres(samples: samples, clientCounts: [1, 16, 64], seconds: seconds, directory: root + "/postgres")
    }
}

func ms(_ nanos: UInt64) -> String {
    String(format: "%.3f", Double(nanos) / 1e6)
}
