import Foundation
import Histogram

/// `--latency-against FILE`: the one-at-a-time phase alone, against a daemon on its defaults and one started
/// with the settings in FILE, in turn, each on a log of its own, over several rounds (the order flips each
/// round, so that the machine drifting between runs favours neither). A setting's effect on append latency,
/// measured against its own baseline in one command: on this machine one run's p50 moves by several percent
/// between runs of the same daemon, as much as the settings compared may change it.
struct LatencyComparison {
    let binary: String
    let settingsFile: String
    let appends: Int
    let rounds: Int
    let root: String

    /// The latencies of one round.
    struct Round {
        var defaults: Histogram<UInt64>
        var withSettings: Histogram<UInt64>
    }

    func run(progress: (String) -> Void) throws -> [Round] {
        guard FileManager.default.isReadableFile(atPath: settingsFile) else {
            throw BenchError("--latency-against: cannot read \(settingsFile)")
        }
        var results: [Round] = []
        for round in 0..<rounds {
            func latency(withSettings: Bool) throws -> Histogram<UInt64> {
                try measure(
                    arguments: withSettings ? ["--config", settingsFile] : [],
                    directory: "\(root)/round\(round)-\(withSettings ? "settings" : "defaults")")
            }
            let defaults: Histogram<UInt64>
            let withSettings: Histogram<UInt64>
            if round % 2 == 0 {
                defaults = try latency(withSettings: false)
                withSettings = try latency(withSettings: true)
            } else {
                withSettings = try latency(withSettings: true)
                defaults = try latency(withSettings: false)
            }
            results.append(Round(defaults: defaults, withSettings: withSettings))
            progress("round \(round + 1): p50 \(ms(defaults.valueAtPercentile(50))) against \(ms(withSettings.valueAtPercentile(50))) ms, p99 \(ms(defaults.valueAtPercentile(99))) against \(ms(withSettings.valueAtPercentile(99))) ms")
        }
        return results
    }

    /// A fresh daemon: a warm-up of a thousand appends, then `appends` of them one at a time.
    private func measure(arguments: [String], directory: String) throws -> Histogram<UInt64> {
        let daemon = try DaemonProcess(binary: binary, root: directory, extraArguments: arguments)
        defer {
            daemon.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
        let client = try SimpleClient(path: daemon.socketPath)
        var factory = EventFactory(prefix: "l", seed: 0x1D_2022_0301, eventsPerDay: 500)
        _ = try client.runSequential(RequestScript.appends(count: 1_000, factory: &factory))
        let result = try client.runSequential(RequestScript.appends(count: appends, factory: &factory))
        if let error = result.firstError { throw BenchError("one at a time: the daemon refused an append: \(error)") }
        return result.latency
    }

    /// One line per percentile: each side's median over the rounds, their ratio, and in how many rounds the
    /// daemon with the settings was the faster.
    static func table(_ rounds: [Round], settingsFile: String, appends: Int) -> String {
        var lines = [
            "append latency one at a time, \(appends) appends per daemon per round, \(rounds.count) rounds; defaults against --config \(settingsFile)",
            "percentile | defaults (median of rounds) | with the settings | ratio | rounds the settings were faster",
        ]
        for percentile in [50.0, 99.0, 99.9] {
            let defaults = rounds.map { $0.defaults.valueAtPercentile(percentile) }
            let settings = rounds.map { $0.withSettings.valueAtPercentile(percentile) }
            let faster = zip(defaults, settings).filter { $0.1 < $0.0 }.count
            let a = median(defaults)
            let b = median(settings)
            lines.append(String(
                format: "p%@ | %@ ms | %@ ms | %.2f | %d of %d", percentile == 99.9 ? "99.9" : String(Int(percentile)),
                ms(a), ms(b), Double(b) / Double(max(a, 1)), faster, rounds.count))
        }
        lines.append("machine: \(Report.machine())")
        return lines.joined(separator: "\n")
    }

    private static func median(_ values: [UInt64]) -> UInt64 {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
