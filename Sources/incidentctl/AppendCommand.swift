import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IncidentProtocol
import StrictJSON

struct Append: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append events from a file of JSON lines (or standard input).",
        discussion: """
            Each line is one event in the wire form of SPEC §2 / PROTOCOL.md. Lines are sent in batches; each \
            batch is atomic (all its events land or none do), and batches are pipelined. Blank lines and lines \
            starting with # are skipped. Give events an eventId to make a re-run of the same file harmless.

            Examples:
              incidentctl append examples/article.jsonl
              incidentctl export --socket /run/old.sock | incidentctl append --allow-new-city -

            On a refusal it names the line, prints what already landed, and exits 1.
            """)

    @Argument(help: ArgumentHelp("A JSON-lines file, or - for standard input.", valueName: "file|-")) var file: String = "-"
    @Option(help: "Events per atomic batch.") var batchSize: Int = 500
    @Option(help: "Batches in flight at once.") var window: Int = 4
    @Flag(help: "Accept cities the gazetteer does not know.") var allowNewCity = false
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size: 1...10000") }
        guard (1...64).contains(window) else { throw ValidationError("--window: 1...64") }
    }

    private struct Batch {
        var events: [JSONValue] = []
        var lines: [Int] = []
    }

    func run() throws {
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw ClientFailure.usage("cannot read \(file)")
            }
            data = contents
        }
        var batches: [Batch] = []
        var current = Batch()
        var lineNumber = 0
        for rawLine in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = Array(rawLine)
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty || text.hasPrefix("#") { continue }
            let event: JSONValue
            do {
                event = try JSONReader().read(line)
            } catch {
                throw ClientFailure.usage("\(file):\(lineNumber): not valid JSON: \(error)")
            }
            current.events.append(event)
            current.lines.append(lineNumber)
            if current.events.count == batchSize {
                batches.append(current)
                current = Batch()
            }
        }
        if !current.events.isEmpty { batches.append(current) }
        let total = batches.reduce(0) { $0 + $1.events.count }
        let client = try connection.connect()
        let showProgress = isatty(STDERR_FILENO) == 1 && batches.count > 1
        var sent = 0
        var received = 0
        var stored = 0
        var firstPosition: Int64?
        var lastPosition: Int64?
        var failure: ClientFailure?
        while received < batches.count {
            while failure == nil && sent < batches.count && sent - received < window {
                var body: [String: JSONValue] = ["events": .array(batches[sent].events)]
                if allowNewCity { body["allowNewCity"] = .bool(true) }
                try client.send(.append, body)
                sent += 1
            }
            if received >= sent { break }
            let response = try client.receive()
            let batch = batches[received]
            received += 1
            if response["ok"]?.boolValue == true {
                let positions = (response["positions"]?.arrayValue ?? []).compactMap(\.intValue)
                stored += positions.count
                firstPosition = firstPosition ?? positions.first
                lastPosition = positions.last ?? lastPosition
                if showProgress {
                    FileHandle.standardError.write(Data("\rappended \(stored)/\(total) events".utf8))
                }
            } else if failure == nil {
                let error = response["error"]
                let index = error?["index"]?.intValue.map(Int.init) ?? 0
                let line = index < batch.lines.count ? batch.lines[index] : batch.lines.first ?? 0
                failure = .refused(
                    code: error?["code"]?.stringValue ?? "unknown_error",
                    message: "\(file):\(line): \(error?["message"]?.stringValue ?? "refused"); its batch of \(batch.events.count) events (lines \(batch.lines.first ?? 0)–\(batch.lines.last ?? 0)) was not stored")
            }
        }
        if showProgress { FileHandle.standardError.write(Data("\n".utf8)) }
        let summary: JSONValue = [
            "events": .int(Int64(stored)),
            "firstPosition": firstPosition.map { .int($0) } ?? .null,
            "lastPosition": lastPosition.map { .int($0) } ?? .null,
        ]
        switch output.resolved {
        case .json: Printer.json(summary)
        case .table:
            print("appended \(stored) of \(total) events" + (firstPosition.map { " at positions \($0)–\(lastPosition ?? $0)" } ?? ""))
        }
        if let failure { throw failure }
    }
}
