import Foundation
import Histogram

#if canImport(Glibc)
import Glibc
#endif

/// Everything one run measured, and the one table it prints.
struct Report {
    let events: Int
    let window: Int
    let binary: String

    var sequential: PhaseResult?
    var throughput: [Int: PhaseResult] = [:]
    var fill: PhaseResult?
    var cityLatency: Histogram<UInt64>?
    var pacedFill: PhaseResult?
    var pacedCityLatency: Histogram<UInt64>?
    /// The last third of the fill, paced, with the daemon's event loops real-time.
    var realtimeFill: PhaseResult?
    var realtimeCityLatency: Histogram<UInt64>?
    var realtimeGranted = false
    var memory: MemorySnapshot?
    var dataFileBytes = 0
    var appended = 0
    // The passes over the full log, each run `--passes` times: their durations in seconds, in the order run,
    // and whether every pass checked out.
    var rebuildSeconds: [Double] = []
    var rebuildEvents = 0
    var rebuildIdentical = true
    var scanSeconds: [Double] = []
    var replaySeconds: [Double] = []
    var replayIdentical = true
    var verifySeconds: [Double] = []
    var verifyIntact = true
    var samples: Samples?

    var lmdb: LMDBCeiling?
    var sqlite: SQLiteResult?
    var postgres: PostgresResult?

    var problems: [String] = []

    init(events: Int, window: Int, binary: String) {
        self.events = events
        self.window = window
        self.binary = binary
    }

    private struct Row {
        var metric: String
        var value: String
        var target: String = ""
        var verdict: String = ""
        var postgres: String = ""
        var sqlite: String = ""
        var lmdb: String = ""
        var ratio: String = ""
    }

    func table() -> String {
        var rows: [Row] = []
        let pg = postgres?.transactionsPerSecond
        let sq = sqlite?.eventsPerSecond
        let ceiling = lmdb?.eventsPerSecond

        for connections in [1, 16, 64] {
            guard let r = throughput[connections] else { continue }
            var row = Row(metric: "durable appends/s, \(connections) conn × \(window) in flight", value: count(r.perSecond))
            var ratios: [String] = []
            let pgValue = pg?[connections]
            // SQLite lets one writer in at a time: its best figure, whichever thread count gave it.
            let sqBest = sq?.max { $0.value < $1.value }
            let sqThreads = sqBest?.key ?? 1
            let sqValue = sqBest?.value
            if let pgValue {
                row.postgres = "\(count(pgValue)) (c=\(connections))"
                ratios.append("\(times(r.perSecond / pgValue)) PG")
            }
            if let sqValue {
                row.sqlite = "\(count(sqValue)) (\(sqThreads) thr)"
                ratios.append("\(times(r.perSecond / sqValue)) SQLite")
            }
            if let ceiling {
                row.lmdb = count(ceiling)
                ratios.append(String(format: "%.0f%% of LMDB", 100 * r.perSecond / ceiling))
            }
            row.ratio = ratios.joined(separator: ", ")
            if connections == 16 {
                row.target = "≥100,000; ≥7× PG; ≥10× SQLite"
                var met = r.perSecond >= 100_000
                if let pgValue { met = met && r.perSecond >= 7 * pgValue }
                if let sqValue { met = met && r.perSecond >= 10 * sqValue }
                row.verdict = met ? "met" : "MISSED"
            }
            rows.append(row)
        }
        if let s = sequential {
            let h = s.latency
            var p50 = Row(metric: "append latency p50, 1 conn, one at a time", value: msUnit(h.valueAtPercentile(50)))
            p50.target = "≤0.5 ms"
            p50.verdict = h.valueAtPercentile(50) <= 500_000 ? "met" : "MISSED"
            var p99 = Row(metric: "append latency p99, 1 conn, one at a time", value: msUnit(h.valueAtPercentile(99)))
            p99.target = "≤2 ms"
            p99.verdict = h.valueAtPercentile(99) <= 2_000_000 ? "met" : "MISSED"
            var p999 = Row(metric: "append latency p99.9, 1 conn, one at a time", value: msUnit(h.valueAtPercentile(99.9)))
            for (row, percentile) in [(0, 50.0), (1, 99.0), (2, 99.9)] {
                var ratios: [String] = []
                var pgText = "", sqText = ""
                if let l = postgres?.latency {
                    pgText = msUnit(l.valueAtPercentile(percentile))
                    ratios.append("\(times(Double(h.valueAtPercentile(percentile)) / Double(l.valueAtPercentile(percentile)))) PG's")
                }
                if let l = sqlite?.latency {
                    sqText = msUnit(l.valueAtPercentile(percentile))
                    ratios.append("\(times(Double(h.valueAtPercentile(percentile)) / Double(l.valueAtPercentile(percentile)))) SQLite's")
                }
                var lmdbText = ""
                if let l = lmdb {
                    let floor = l.daemonLayoutLatency.valueAtPercentile(percentile)
                    lmdbText = "\(msUnit(l.singleDatabaseLatency.valueAtPercentile(percentile))) / \(msUnit(floor))"
                    ratios.append("\(times(Double(h.valueAtPercentile(percentile)) / Double(floor))) LMDB's 7 dbs")
                }
                switch row {
                case 0: p50.postgres = pgText; p50.sqlite = sqText; p50.lmdb = lmdbText; p50.ratio = ratios.joined(separator: ", ")
                case 1: p99.postgres = pgText; p99.sqlite = sqText; p99.lmdb = lmdbText; p99.ratio = ratios.joined(separator: ", ")
                default: p999.postgres = pgText; p999.sqlite = sqText; p999.lmdb = lmdbText; p999.ratio = ratios.joined(separator: ", ")
                }
            }
            rows += [p50, p99, p999]
        }
        for connections in [16, 64] {
            guard let h = throughput[connections]?.latency else { continue }
            rows.append(Row(
                metric: "append latency p50/p99/p99.9, \(connections) conn × \(window)",
                value: "\(ms(h.valueAtPercentile(50))) / \(ms(h.valueAtPercentile(99))) / \(ms(h.valueAtPercentile(99.9))) ms"))
        }
        // The passes over the whole log: each rate is the median pass, with the range of all passes, against the
        // median bare scan.
        let scanRate = rate(scanSeconds)
        for (what, seconds, check) in [
            ("rebuild projections from", rebuildSeconds, rebuildIdentical ? "identical to the daemon's" : "DIFFERS from the daemon's"),
            ("replay (incidentctl replay) of", replaySeconds, replayIdentical ? "identical to the stored cities" : "DIFFERS from the stored cities"),
            ("verify (every page, the hash chain, then the derived data) of", verifySeconds, verifyIntact ? "intact" : "NOT INTACT"),
        ] where rebuildEvents > 0 && !seconds.isEmpty {
            let median = rate(seconds)
            let range = seconds.count > 1 ? ", range \(count(rate([seconds.max() ?? 0])))–\(count(rate([seconds.min() ?? 0]))) over \(seconds.count)" : ""
            var row = Row(
                metric: "\(what) \(count(Double(rebuildEvents))) events, events/s", value: count(median),
                ratio: String(format: "%.0f%% of a bare LMDB scan; %@%@", 100 * median / scanRate, check, range))
            if what.hasPrefix("rebuild") {
                row.target = "≥1,000,000"
                row.verdict = median >= 1_000_000 ? "met" : "MISSED"
                row.lmdb = "\(count(scanRate)) (scan)"
            }
            rows.append(row)
        }
        let realtimeHow = realtimeGranted ? "1/ms, loop_scheduling = realtime" : "1/ms, realtime REFUSED by the kernel"
        for (how, latency, phase) in [
            ("back to back", cityLatency, fill), ("1/ms", pacedCityLatency, pacedFill), (realtimeHow, realtimeCityLatency, realtimeFill),
        ] {
            guard let h = latency else { continue }
            var row = Row(
                metric: "city query p50/p99 under full append load, \(how)",
                value: "\(ms(h.valueAtPercentile(50))) / \(ms(h.valueAtPercentile(99))) ms")
            row.target = "p99 ≤1 ms"
            row.verdict = h.valueAtPercentile(99) <= 1_000_000 ? "met" : "MISSED"
            if let f = phase { row.ratio = "\(h.totalCount) queries while appending \(count(f.perSecond))/s" }
            rows.append(row)
        }
        if let m = memory {
            rows.append(Row(metric: "daemon peak RSS (VmHWM) at \(count(Double(appended))) events", value: mib(m.peakRSS),
                            ratio: "RSS now \(mib(m.rss)), of it LMDB map pages \(mib(m.fileRSS))"))
            var row = Row(metric: "daemon private memory (Private_*) at \(count(Double(appended))) events", value: mib(m.privateTotal))
            row.target = "≤64 MiB"
            row.verdict = m.privateTotal <= 64 << 20 ? "met" : "MISSED"
            row.ratio = "clean \(mib(m.privateClean)) + dirty \(mib(m.privateDirty)); anonymous (heap) \(mib(m.anonymous))"
            rows.append(row)
        }
        if appended > 0 {
            var row = Row(metric: "bytes on disk per event (data.mdb / events)", value: String(format: "%.0f", Double(dataFileBytes) / Double(appended)))
            if let p = postgres { row.postgres = String(format: "%.0f", p.bytesPerEvent) }
            if let s = sqlite { row.sqlite = String(format: "%.0f", s.bytesPerEvent) }
            if let l = lmdb { row.lmdb = String(format: "%.0f", l.bytesPerEvent) }
            if let samples {
                let average = Double(samples.canonical.reduce(0) { $0 + $1.count }) / Double(max(samples.canonical.count, 1))
                row.ratio = String(format: "event JSON averages %.0f bytes", average)
            }
            rows.append(row)
        }

        let header = Row(
            metric: "metric", value: "incidentd", target: "target", verdict: "", postgres: "PostgreSQL",
            sqlite: "SQLite WAL FULL", lmdb: "LMDB 1000/commit", ratio: "incidentd vs baselines")
        let all = [header] + rows
        func width(_ key: KeyPath<Row, String>) -> Int { all.map { $0[keyPath: key].count }.max() ?? 0 }
        let keys: [KeyPath<Row, String>] = [\.metric, \.value, \.target, \.verdict, \.postgres, \.sqlite, \.lmdb, \.ratio]
        let widths = keys.map(width)
        func line(_ row: Row) -> String {
            zip(keys, widths).map { key, w in
                let text = row[keyPath: key]
                return text + String(repeating: " ", count: max(0, w - text.count))
            }.joined(separator: " | ").trimmingCharacters(in: .whitespaces)
        }
        var out = [line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "-|-")]
        out += rows.map(line)
        var notes: [String] = []
        var phases: [(String, PhaseResult?)] = [("one at a time", sequential)]
        for connections in [1, 16, 64] { phases.append(("\(connections) conn × \(window)", throughput[connections])) }
        phases.append(("fill + city back to back", fill))
        phases.append(("fill + city 1/ms", pacedFill))
        phases.append(("fill + city 1/ms, real-time loops", realtimeFill))
        for (name, phase) in phases {
            if let d = phase?.diagnostics { notes.append("phase \(name): \(d.summary)") }
        }
        notes.append("machine: \(Report.machine()); incidentd \(binary)")
        if let p = postgres {
            notes.append("PostgreSQL \(p.version): pgbench, one INSERT of the event as jsonb per transaction, fsync=on, synchronous_commit=on")
        }
        if sqlite != nil { notes.append("SQLite: journal_mode=WAL, synchronous=FULL, one INSERT per commit, a connection per thread") }
        if lmdb != nil {
            notes.append("LMDB: the daemon's stored bytes, big-endian positions, MDB_APPEND, 1,000 events per synced commit; latency: one event per synced commit into the events database alone / into the daemon's seven databases, as a report writes them (events, incident-streams, event-ids, incidents, cities, city-dates: a date and its incident, meta)")
        }
        return out.joined(separator: "\n") + "\n\n" + notes.joined(separator: "\n")
    }

    static func machine() -> String {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        var parts = ["\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) × \(model), \(ProcessInfo.processInfo.physicalMemory >> 30) GiB"]
        if let idle = idleSettings() { parts.append(idle) }
        return parts.joined(separator: "; ")
    }

    /// How the CPUs wait when idle, which one-at-a-time latency depends on: on a virtual machine, a thread woken
    /// on a halted CPU waits for it to be resumed (12–61 µs here, BENCHMARKS.md change 33), and one append
    /// wakes threads that way several times. Guest halt polling (`guest_halt_poll_ns`) spins before halting.
    static func idleSettings() -> String? {
        func read(_ path: String) -> String? {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let driver = read("/sys/devices/system/cpu/cpuidle/current_driver") else { return nil }
        var text = "cpuidle \(driver)"
        if let poll = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
            text += ", guest halt polling \(poll) ns"
        }
        return text
    }
}

extension Report {
    /// Events a second over the log at the median of `seconds` (0 for none).
    func rate(_ seconds: [Double]) -> Double {
        let sorted = seconds.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        return median > 0 ? Double(rebuildEvents) / median : 0
    }
}

private func count(_ value: Double) -> String {
    let formatter = NumberFormatter()
    formatter.numberStyle = .decimal
    formatter.maximumFractionDigits = 0
    return formatter.string(from: NSNumber(value: value.rounded())) ?? "\(Int(value))"
}

private func times(_ ratio: Double) -> String {
    ratio >= 10 ? String(format: "%.0f×", ratio) : String(format: "%.1f×", ratio)
}

private func msUnit(_ nanos: UInt64) -> String { "\(ms(nanos)) ms" }

private func mib(_ bytes: Int) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
