import ArgumentParser
import Foundation
import StrictJSON
import Testing

@testable import incidentctl

/// Each per-source detail goes with the `--source` written before it on the command line: the reading of the raw
/// arguments itself (``SourceDetailPlacement``), and `report`, `observe` and `outcome` storing what it reads.
@Suite("incidentctl source details by place")
struct SourcePlacementTests {
    static let details: Set<String> = ["--source-url", "--source-sha256", "--verified-by", "--source-method", "--source-verification"]

    static func read(_ arguments: [String]) throws -> [SourceDetailPlacement.Source] {
        try SourceDetailPlacement(
            arguments: arguments, detailOptions: details, valueAlwaysTaken: SourceDetailPlacement.writeCommandsValueAlwaysTaken
        ).sources
    }

    @Test("a detail goes with the --source before it, in either form, whatever other options stand between")
    func readsByPlace() throws {
        #expect(
            try Self.read(["report", "--source", "A", "--source", "B", "--source-sha256", "h"])
                == [.init(name: "A", details: [:]), .init(name: "B", details: ["--source-sha256": "h"])])
        #expect(
            try Self.read([
                "--source=A", "--city", "Kupiansk", "--source-url=https://a.example/?x=1", "--source", "B", "--verified-by", "Bob",
                "--source-method=geolocation", "--source", "C",
            ]) == [
                .init(name: "A", details: ["--source-url": "https://a.example/?x=1"]),
                .init(name: "B", details: ["--verified-by": "Bob", "--source-method": "geolocation"]),
                .init(name: "C", details: [:]),
            ])
        // Values that look like options: written with '=', or taken whole by an option that always takes its value.
        #expect(
            try Self.read(["--source=--source-url", "--source-url=--source", "--lat", "--source", "--source", "B"])
                == [.init(name: "--source-url", details: ["--source-url": "--source"]), .init(name: "B", details: [:])])
        // A name with an '=' in it, and nothing after `--` read as an option.
        #expect(
            try Self.read(["--source", "a=b", "--source-url", "u", "--", "--source", "X"])
                == [.init(name: "a=b", details: ["--source-url": "u"])])
    }

    @Test("a detail before any --source, or the same detail twice for one source, is refused naming it")
    func refusals() throws {
        #expect(throws: ValidationError.self) { try Self.read(["--source-sha256", "h", "--source", "A"]) }
        do {
            _ = try Self.read(["--source-url", "u", "--source", "A"])
        } catch {
            #expect("\(error)".contains("--source-url 'u' comes before any --source"), "\(error)")
        }
        do {
            _ = try Self.read(["--source", "A", "--verified-by", "X", "--source", "B", "--verified-by", "Y", "--verified-by", "Z"])
            Issue.record("two --verified-by for B taken")
        } catch {
            #expect("\(error)".contains("--verified-by given twice for --source 'B' ('Y' and 'Z')"), "\(error)")
        }
    }

    @Test("a reading that does not find what argument-parser parsed is refused rather than attached")
    func checkedAgainstTheParse() throws {
        let placement = try SourceDetailPlacement(arguments: ["--source", "A", "--source-url", "u"], detailOptions: Self.details)
        try placement.check(parsed: ["--source": ["A"], "--source-url": ["u"], "--verified-by": []])
        #expect(throws: ValidationError.self) { try placement.check(parsed: ["--source": ["A"], "--source-url": ["v"]]) }
        #expect(throws: ValidationError.self) { try placement.check(parsed: ["--source": ["A", "B"]]) }
    }

    /// A source as the log stores it: unverified unless `details` say otherwise.
    static func stored(_ name: String, _ details: [String: JSONValue] = [:]) -> JSONValue {
        .object(["name": .string(name), "verification": "unverified"].merging(details) { _, given in given })
    }

    @Test("report, observe and outcome store each detail on the --source written before it (QA pass 10, source_match.sh)")
    func storedByPlace() throws {
        func stored(_ name: String, _ details: [String: JSONValue] = [:]) -> JSONValue { Self.stored(name, details) }
        let daemon = try Daemon()
        let hash = String(repeating: "ab", count: 32)
        var n = 0
        func report(_ arguments: [String]) throws -> JSONValue? {
            n += 1
            let run = try daemon.ctl(
                ["report", "--city", "Berdiansk", "--kind", "other", "--occurred", "2022-03-01", "--incident", "sm-\(n)", "--format", "json"]
                    + arguments)
            #expect(run.status == 0, "\(arguments): \(run.stderr)")
            return try daemon.ctl(["incident", "sm-\(n)", "--format", "json"]).json?["reportEvent"]?["sources"]
        }
        #expect(
            try report(["--source", "Witness video", "--source", "Telegram repost", "--source-sha256", hash])
                == [stored("Witness video"), stored("Telegram repost", ["sha256": .string(hash)])])
        #expect(
            try report(["--source", "A", "--source", "B", "--source-url", "https://b.example"])
                == [stored("A"), stored("B", ["url": "https://b.example"])])
        #expect(try report(["--source", "A", "--source", "B", "--verified-by", "Bob"]) == [stored("A"), stored("B", ["verifiedBy": "Bob"])])
        #expect(
            try report(["--source", "A", "--source", "B", "--source-method=geolocation", "--source-verification", "verified"])
                == [stored("A"), stored("B", ["method": "geolocation", "verification": "verified"])])
        #expect(
            try report(["--source", "A", "--source-verification", "verified", "--source", "B", "--verification", "verified"])
                == [stored("A", ["verification": "verified"]), stored("B", ["verification": "verified"])])

        let observed = try daemon.ctl([
            "observe", "sm-1", "--by", "x", "--response", "none", "--source", "A", "--source", "B", "--source-url", "https://b.example",
            "--verified-by", "Bob",
        ])
        #expect(observed.status == 0, "\(observed.stderr)")
        let outcome = try daemon.ctl([
            "outcome", "sm-1", "--status", "unknown", "--source", "A", "--source", "B", "--source-sha256", hash,
            "--source-verified-by", "Ann",
        ])
        #expect(outcome.status == 0, "\(outcome.stderr)")
        let incident = try #require(try daemon.ctl(["incident", "sm-1", "--format", "json"]).json)
        #expect(incident["responseHistory"]?.arrayValue?.first?["sources"] == [stored("A"), stored("B", ["url": "https://b.example", "verifiedBy": "Bob"])])
        #expect(incident["outcomeHistory"]?.arrayValue?.first?["sources"] == [stored("A"), stored("B", ["sha256": .string(hash), "verifiedBy": "Ann"])])

        let head = try daemon.client().headPosition()
        for (arguments, says) in [
            (["report", "--city", "Berdiansk", "--kind", "other", "--occurred", "2022-03-01", "--source-url", "u", "--source", "A"],
             "--source-url 'u' comes before any --source"),
            (["report", "--city", "Berdiansk", "--kind", "other", "--occurred", "2022-03-01", "--source", "A", "--source-sha256", hash,
              "--source-sha256", hash],
             "--source-sha256 given twice for --source 'A'"),
            (["observe", "sm-1", "--by", "x", "--response", "none", "--verified-by", "Bob", "--source", "A"],
             "--verified-by 'Bob' comes before any --source"),
            (["outcome", "sm-1", "--status", "unknown", "--source", "A", "--source-verified-by", "X", "--source-verified-by", "Y"],
             "--source-verified-by given twice for --source 'A'"),
        ] {
            let usage = try daemon.ctl(arguments)
            #expect(usage.status == 2 && usage.stderr.contains(says), "\(arguments): \(usage.status) \(usage.stderr)")
        }
        #expect(try daemon.client().headPosition() == head, "bad usage stored nothing")
        #expect(daemon.stop() == 0)
    }
}
