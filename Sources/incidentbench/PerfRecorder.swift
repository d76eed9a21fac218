import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `perf record -g` attached to one process for one stretch of the run (or running one command), and the
/// report made from it: the profiles BENCHMARKS.md quotes come from here (`incidentbench --profile DIR`).
final class PerfRecorder {
    private let process = Process()
    private let dataPath: String
    private let reportPath: String

    /// Starts sampling `pid` (call stacks, 999 Hz) into `directory/name.perf.data`.
    init(pid: Int32, directory: String, name: String) throws {
        guard let perf = PerfRecorder.perfPath() else {
            throw BenchError("--profile needs perf (Debian: apt-get install linux-perf)")
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        dataPath = "\(directory)/\(name).perf.data"
        reportPath = "\(directory)/\(name).txt"
        process.executableURL = URL(fileURLWithPath: perf)
        process.arguments = ["record", "-F", "999", "-g", "-p", "\(pid)", "-o", dataPath, "--quiet"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // perf attaches asynchronously: wait until its file exists (it writes the header on attaching).
        let deadline = monotonicNanos() + 10_000_000_000
        while !FileManager.default.fileExists(atPath: dataPath) && process.isRunning && monotonicNanos() < deadline {
            usleep(10_000)
        }
    }

    deinit {
        // A phase that failed never called stop(): perf must not outlive the run.
        if process.isRunning {
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
        }
    }

    /// Stops sampling and writes the report beside the data: where the time went, by symbol, callees included
    /// (`--children`), and by symbol alone; returns the report's path.
    @discardableResult
    func stop() -> String {
        if process.isRunning {
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
        }
        PerfRecorder.writeReport(data: dataPath, to: reportPath)
        return reportPath
    }

    /// Runs `command` under `perf record -g` from its first instruction, and writes the report as ``stop()``
    /// does; returns the report's path.
    static func profile(_ command: [String], directory: String, name: String) throws -> String {
        guard let perf = perfPath() else { throw BenchError("--profile needs perf (Debian: apt-get install linux-perf)") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let dataPath = "\(directory)/\(name).perf.data"
        let reportPath = "\(directory)/\(name).txt"
        let run = try runProgram(perf, ["record", "-F", "999", "-g", "-o", dataPath, "--quiet", "--"] + command, check: false)
        guard run.status == 0 else { throw BenchError("perf record \(command.joined(separator: " ")) failed: \(run.err)") }
        writeReport(data: dataPath, to: reportPath)
        return reportPath
    }

    private static func writeReport(data dataPath: String, to reportPath: String) {
        var text = "# perf record -F 999 -g; perf report -i \(dataPath) --sort comm|symbol (names demangled)\n"
        for (title, arguments) in [
            ("by thread", ["--no-children", "--sort", "comm"]),
            ("by function, callees included", ["--children", "--sort", "symbol"]),
            ("by function, self", ["--no-children", "--sort", "symbol"]),
        ] {
            let raw = (try? runProgram(
                "/usr/bin/env", ["perf", "report", "-i", dataPath, "--stdio", "-g", "none", "--percent-limit", "0.7"] + arguments,
                check: false).out) ?? ""
            let demangled = (try? runProgram("/usr/bin/env", ["swift-demangle", "--simplified"], stdin: raw, check: false).out) ?? raw
            text += "\n## \(title)\n" + demangled.split(separator: "\n").filter { !$0.hasPrefix("#") && !$0.isEmpty }
                .prefix(80).map { String($0.prefix(220)) }.joined(separator: "\n") + "\n"
        }
        try? text.write(toFile: reportPath, atomically: true, encoding: .utf8)
    }

    static func perfPath() -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/perf"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}
