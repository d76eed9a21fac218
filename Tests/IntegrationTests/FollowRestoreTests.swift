import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `incidentctl events --follow` across a restart of the daemon on another log: `data.mdb` restored from an older
/// backup, whose new events take positions the follower has already passed. It must stop, saying so, rather than
/// leave those events out or show them as if they followed what it printed; across a plain restart it goes on.
@Suite("Follow across a restore")
struct FollowRestoreTests {
    @Test(
        "after data.mdb is restored from an older backup, events --follow exits 1 with log_replaced, naming the position it had seen and the head it found, and shows none of the new events: a head below that position (1 event appended since), or another event there (4)",
        arguments: [1, 4])
    func restoredLogEndsTheFollower(appendedAfterRestore: Int) throws {
        let daemon = try Daemon()
        let writer = try daemon.client()
        #expect(try writer.appendEvents(try Repository.articleEvents()).isOK)
        let backup = daemon.root + "/backup"
        let made = try daemon.ctl(["backup", backup])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(try writer.appendEvents((1...3).map { Wire.report(incident: "before-restore-\($0)", city: "Kupiansk") }).isOK)

        let follower = try BackgroundFollower(socket: daemon.socketPath, directory: daemon.root)
        try waitFor("the follower to print positions 1–11") { follower.positions == Array(1...11) }
        // Held while the daemon is away, so that the restored log has its new events when the follower comes back.
        follower.pause()
        try Self.restore(daemon, from: backup)
        let appended = try daemon.client().appendEvents(
            (1...appendedAfterRestore).map { Wire.report(incident: "after-restore-\($0)", city: "Melitopol") })
        #expect(appended["positions"] == .array((9...Int64(8 + appendedAfterRestore)).map { .int($0) }), "\(appended)")
        follower.resume()

        let status = try follower.exitStatus(within: 30 * deadlineScale)
        let said = follower.stderr
        #expect(status == 1, "\(said)")
        #expect(said.contains("lost incidentd") && said.contains("incidentctl: log_replaced: "), "\(said)")
        if appendedAfterRestore == 1 {
            #expect(said.contains("now ends at position 9, before position 11, which this command had printed"), "\(said)")
            #expect(said.contains("Of the events it printed, those at positions past 9 are not in the log now, the last at 11"), "\(said)")
            #expect(said.contains("Compare the events it printed before that with the log as it is now"), "\(said)")
        } else {
            #expect(said.contains("position 11 of the log incidentd serves now holds another event"), "\(said)")
            #expect(said.contains("the head is position 12"), "\(said)")
            #expect(said.contains("The event it printed at position 11 is not in the log now"), "\(said)")
            #expect(said.contains("for a position P it printed"), "\(said)")
        }
        #expect(follower.positions == Array(1...11), "nothing shown after the restore")
        #expect(!follower.output.contains("after-restore"), "\(follower.output)")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a follower with a filter anchors on the head the daemon reported, past the last event it showed: the events its filter passed over, stored before it subscribed or committed while it waited, count as seen, and a restore that loses them ends it",
        arguments: [true, false])
    func filteredFollowerAnchorsOnThePassedHead(passedBeforeSubscribing: Bool) throws {
        let daemon = try Daemon()
        let writer = try daemon.client()
        #expect(try writer.appendEvents(try Repository.articleEvents()).isOK)
        let backup = daemon.root + "/backup"
        #expect(try daemon.ctl(["backup", backup]).status == 0)
        let passedOver = (1...3).map { Wire.report(incident: "passed-over-\($0)", city: "Kupiansk") }
        if passedBeforeSubscribing { #expect(try writer.appendEvents(passedOver).isOK) }

        let relay = try RecordingRelay(path: daemon.root + "/relay.sock", daemonSocket: daemon.socketPath)
        defer { relay.close() }
        func headReported(_ position: Int64) -> Bool {
            relay.answers.contains { $0["headHash"] != nil && $0["position"]?.intValue == position }
        }
        let follower = try BackgroundFollower(socket: relay.path, directory: daemon.root, arguments: ["--city", "Melitopol"])
        try waitFor("the follower to print the Melitopol events 4–6") { follower.positions == [4, 5, 6] }
        if !passedBeforeSubscribing {
            try waitFor("the follower to be told the head as it subscribed") { headReported(8) }
            #expect(try writer.appendEvents(passedOver).isOK)
        }
        try waitFor("the follower to be told the head past the events its filter passed over", timeout: 20 * deadlineScale) {
            headReported(11)
        }
        follower.pause()
        try Self.restore(daemon, from: backup)
        #expect(try daemon.client().appendEvents([Wire.report(incident: "melitopol-after-restore", city: "Melitopol")])["positions"] == [9])
        follower.resume()

        let status = try follower.exitStatus(within: 30 * deadlineScale)
        let said = follower.stderr
        #expect(status == 1, "\(said)")
        #expect(said.contains("log_replaced: the log incidentd serves now ends at position 9, before position 11"), "\(said)")
        #expect(
            said.contains("What it printed, up to position 6, is in the log as printed: run it again with --from 7"), "\(said)")
        #expect(follower.positions == [4, 5, 6], "nothing shown after the restore")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "across a plain restart, with events appended before the follower is back, events --follow checks the log and goes on from where it was, with and without a filter",
        arguments: [[], ["--city", "Melitopol"]])
    func plainRestartResumes(filter: [String]) throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        let shownBefore: [Int64] = filter.isEmpty ? Array(1...8) : [4, 5, 6]
        let follower = try BackgroundFollower(
            socket: daemon.socketPath, directory: daemon.root, arguments: filter + ["--limit", String(shownBefore.count + 2)])
        try waitFor("the follower to print the stored events") { follower.positions == shownBefore }
        follower.pause()
        try daemon.restart()
        let more = [
            Wire.report(incident: "after-restart-kupiansk", city: "Kupiansk"),
            Wire.report(incident: "after-restart-1", city: "Melitopol"), Wire.response(incident: "after-restart-1"),
        ]
        #expect(try daemon.client().appendEvents(more)["positions"] == [9, 10, 11])
        follower.resume()

        let status = try follower.exitStatus(within: 30 * deadlineScale)
        let said = follower.stderr
        #expect(status == 0, "\(said)")
        #expect(follower.positions == shownBefore + (filter.isEmpty ? [9, 10] : [10, 11]))
        #expect(said.contains("following again from position \((shownBefore.last ?? 0) + 1)"), "\(said)")
        #expect(!said.contains("log_replaced"), "\(said)")
        #expect(daemon.stop() == 0)
    }

    /// Stops the daemon, puts the backup's data.mdb in place of its own, as README says to restore, and starts it.
    static func restore(_ daemon: Daemon, from backup: String) throws {
        #expect(daemon.stop() == 0)
        let live = daemon.dataDir + "/data.mdb"
        try FileManager.default.removeItem(atPath: live)
        try FileManager.default.copyItem(atPath: backup + "/data.mdb", toPath: live)
        try daemon.start()
    }
}

/// `incidentctl events --follow --format json` running in the background, its output going to files the test reads
/// while it runs; killed if it still runs when the test lets go of it.
final class BackgroundFollower {
    private let child: ChildProcess
    private let outputPath: String
    private let errorPath: String

    init(socket: String, directory: String, arguments: [String] = []) throws {
        let name = directory + "/follower-" + UUID().uuidString
        outputPath = name + ".out"
        errorPath = name + ".err"
        let output = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let error = open(errorPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { [output, error, null].filter { $0 >= 0 }.forEach { close($0) } }
        guard output >= 0, error >= 0, null >= 0 else { throw HarnessError("cannot open \(name).*: \(String(cString: strerror(errno)))") }
        child = try ChildProcess(
            Binaries.incidentctl, ["events", "--follow", "--format", "json", "--socket", socket] + arguments,
            environment: ProcessInfo.processInfo.environment, stdin: null, stdout: output, stderr: error)
    }

    /// What it printed so far.
    var output: String { readFile(outputPath) ?? "" }

    /// Its standard error so far.
    var stderr: String { readFile(errorPath) ?? "" }

    /// The positions of the events printed so far, each a whole line.
    var positions: [Int64] {
        var lines = output.split(separator: "\n")
        if !output.hasSuffix("\n") && !lines.isEmpty { lines.removeLast() }
        return lines.map { (try? JSONReader(maxDepth: 128).read(String($0)))?["position"]?.intValue ?? -1 }
    }

    func pause() { kill(child.pid, SIGSTOP) }

    func resume() { kill(child.pid, SIGCONT) }

    /// Waits for it to end by itself; its exit status.
    func exitStatus(within seconds: Double) throws -> Int32 {
        try waitFor("incidentctl events --follow to exit", timeout: seconds) { !child.isRunning }
        return child.wait()
    }
}
