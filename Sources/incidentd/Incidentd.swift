import ArgumentParser
import CShims
import Dispatch
import Foundation
import Gazetteer
import IncidentLog
import LMDB
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// `incidentd`: the incident log daemon.
@main
struct Incidentd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "incidentd",
        abstract: "Serve the incident log over a Unix-domain socket.",
        discussion: """
            incidentd owns the LMDB log in its data directory, keeps the per-city and per-incident projections \
            current, and answers JSON-lines requests on its socket (see PROTOCOL.md). With no --config it runs \
            on embedded defaults: data in /var/lib/incidentd, socket /run/incidentd/incidentd.sock, the gazetteer \
            compiled in, and only root and its own user allowed in.

            Try it in a local folder:
              incidentd --data-dir ./run/data --socket ./run/incidentd.sock
              INCIDENTD_SOCKET=./run/incidentd.sock incidentctl status

            Under systemd it supports Type=notify (READY=1, STOPPING=1, WATCHDOG=1) and socket activation \
            (LISTEN_FDS). On SIGTERM or SIGINT it takes no new connections, serves the open ones until every request \
            they sent is answered (for daemon.drain_seconds at most, 10 unless set; a second signal ends the wait), \
            writes every queued append, and exits 0. It reads its settings only as it starts, and SIGHUP changes \
            nothing (restart it instead).

            A log with a damaged page (verify names it) can be made again from the events the hash chain proves, \
            without losing those appended since the last backup:
              incidentd --recover-from /var/lib/incidentd \\
                  --data-dir /var/lib/incidentd/recovered
            It reads the events from every leaf page of the damaged file that is whole, and of backups given with \
            --fill-from, proves each by the chain back from the recorded head (or --expect-head), makes the rest \
            again, verifies the new log and exits; then put its data.mdb in place of the damaged one, as for a \
            restore.

            Exit status: 0 stopped by SIGTERM or SIGINT (or a recovery done), 1 a failure a restart may get past \
            (another daemon on the data directory or the socket, a full or failing disk, a damaged log), 64 a \
            command line it cannot take (EX_USAGE), 74 the disk failed a write of the log's meta page (EX_IOERR), \
            78 a setting, a file or a path it refuses (EX_CONFIG), named on stderr.
            """,
        version: incidentdVersion)

    @Option(name: .long, help: ArgumentHelp("Settings file (TOML).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("Directory of the LMDB log (overrides daemon.data_dir).", valueName: "dir"))
    var dataDir: String?

    @Option(name: .long, help: ArgumentHelp("Unix socket path to serve (overrides daemon.socket).", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp(
            "trace, debug, info, notice, warning, error or critical (overrides daemon.log_level; default info). debug adds a line for each connection opened and closed, with the peer's uid, pid and role.",
            valueName: "level"))
    var logLevel: String?

    @Option(name: .long, help: ArgumentHelp("Largest the log may grow, e.g. 64GiB (overrides storage.max_map_size).", valueName: "size"))
    var maxMapSize: String?

    @Flag(
        name: .long,
        help: """
            Make every stream summary again from its event, then drop and rebuild the projections, before serving \
            (a start rebuilds them by itself when they are not current or the gazetteer changed). Index entries \
            of events past the head (removed behind incidentd's back) are deleted first, so the log is taken as \
            it is.
            """)
    var rebuildProjections = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            """
            Make a new log in the data directory (which must hold no data.mdb) from the events of the damaged log \
            in <dir>, then exit (README.md: "A damaged page need not cost").
            """,
            valueName: "dir"))
    var recoverFrom: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            """
            With --recover-from, a backup (a data directory) whose pages hold events that the damaged log's \
            damaged pages of events held; may be given more than once.
            """,
            valueName: "dir"))
    var fillFrom: [String] = []

    @Option(
        name: .long, parsing: .unconditional,
        help: ArgumentHelp(
            """
            With --recover-from, the head last published (incidentctl status's headHash, with its position as \
            POSITION:HASH, or alone), for a log whose own record of its head cannot be read; checked against that \
            record when it can be.
            """,
            valueName: "head"))
    var expectHead: String?

    /// Parses the command line and runs it, as ArgumentParser's `main()` does, except that where stderr is the
    /// journal's stream an error it would print (a usage error, exit status 64) is one line at the error priority
    /// (``JournalLogHandler/startLine(_:level:toJournal:)``), where ArgumentParser's lines, the usage after the
    /// error, would reach the journal at its default priority (info), each a message of its own. Elsewhere (a
    /// terminal) ArgumentParser prints them as it does. Help and the version go to stdout as ever.
    static func main() {
        // A crash report, or systemd's watchdog (SIGABRT), ends the process rather than leaving it serving.
        _ = incidentd_end_after_crash_report()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let status = exitCode(for: error)
            let message = self.message(for: error)
            guard status != .success, !message.isEmpty, JournalLogHandler.writesToJournal() else { exit(withError: error) }
            let hint = status == .validationFailure ? " (incidentd --help shows the usage)" : ""
            JournalLogHandler.writeToStandardError(JournalLogHandler.startLine(message + hint, level: .error))
            exit(withError: ExitCode(status.rawValue))
        }
    }

    func validate() throws {
        if recoverFrom == nil && (!fillFrom.isEmpty || expectHead != nil) {
            throw ValidationError("--fill-from and --expect-head are for --recover-from, which is missing")
        }
        if let expectHead {
            let head: PublishedHeadArgument
            do {
                head = try PublishedHeadArgument(expectHead)
            } catch {
                throw ValidationError("--expect-head: \(error)")
            }
            // Every log holds the empty log's head: given, it would stand for a published head and turn off the
            // recovery's checks for events past the log's record of its head.
            if head.hash == ChainHash.zero {
                throw ValidationError(
                    "--expect-head: the zero hash is the head of the empty log, which every log holds, so it proves nothing here: give the head last published (incidentctl status: position and headHash), or leave --expect-head out")
            }
        }
        if recoverFrom != nil && rebuildProjections {
            throw ValidationError("--recover-from rebuilds the projections of the log it makes; --rebuild-projections is for serving")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level: one of trace, debug, info, notice, warning, error, critical")
        }
        if let maxMapSize, parseSize(maxMapSize) == nil {
            throw ValidationError("--max-map-size: a byte count such as 1073741824 or 1GiB")
        }
    }

    func run() throws {
        // Before any other thread exists, so that every thread inherits the mask: SIGTERM and SIGINT stay pending
        // until the signal thread takes them, never lost and never fatal, however early they come; so do SIGHUP,
        // and SIGUSR1 and SIGUSR2 as relayed, which would otherwise end the daemon without draining.
        let stopSignals = Self.blockHandledSignals()
        var settings = DaemonConfiguration()
        let gazetteer: Gazetteer
        do {
            if let config {
                try TrustedPaths.checkSettingsFile(config, origin: "--config")
                try settings.load(file: config)
            }
            if let maxMapSize, let bytes = parseSize(maxMapSize) {
                // Refused as the same setting in the file is: a configuration that cannot work, not a failure a
                // restart gets past.
                let sizes = DaemonConfiguration.mapSizes
                guard sizes.contains(bytes) else {
                    throw DaemonConfiguration.Problem(
                        description:
                            "--max-map-size: \(bytes) bytes is outside \(sizes.lowerBound)...\(sizes.upperBound) (1 MiB to 64 TiB), as storage.max_map_size is")
                }
                settings.maxMapSize = bytes
                settings.maxMapSizeOrigin = "--max-map-size"
            }
            try settings.checkMapSizes()
            if let socket {
                settings.socketPath = socket
                settings.socketPathOrigin = "--socket"
            }
            try settings.checkSocketPath()
            if let dataDir {
                settings.dataDirectory = dataDir
                settings.dataDirectoryOrigin = "--data-dir"
            }
            try settings.checkDataDirectory()
            try TrustedPaths.checkDataDirectory(
                settings.dataDirectory, what: "the data directory", origin: settings.dataDirectoryOrigin ?? "daemon.data_dir")
            if let recoverFrom { try TrustedPaths.checkDataDirectory(recoverFrom, what: "the log to recover", origin: "--recover-from") }
            if let file = settings.gazetteerPath {
                try TrustedPaths.checkSettingsFile(file, origin: settings.gazetteerOrigin ?? "gazetteer.file")
            }
            gazetteer = try settings.gazetteer()
        } catch {
            JournalLogHandler.writeToStandardError(JournalLogHandler.startLine("\(error)", level: .error))
            throw ExitCode(78)  // EX_CONFIG
        }
        if let logLevel, let level = Logger.Level(rawValue: logLevel) { settings.logLevel = level }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in JournalLogHandler(label: label, level: level) }
        let logger = Logger(label: "incidentd")
        if let recoverFrom {
            // A recovery is a command an operator waits for, not a service: SIGINT (Ctrl-C) and SIGTERM end it at once,
            // as they would any command. What it leaves (its work folder in the new directory) the next recovery
            // into that directory clears first.
            var signals = stopSignals
            pthread_sigmask(SIG_UNBLOCK, &signals, nil)
            try Self.recover(
                from: recoverFrom, fillingFrom: fillFrom, expectedHead: expectHead.flatMap { try? PublishedHeadArgument($0) }, settings,
                gazetteer: gazetteer, logger: logger)
            return
        }
        do {
            try serve(settings, gazetteer: gazetteer, stopSignals: stopSignals, logger: logger)
        } catch let error as ExitCode {
            throw error
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(Self.isConfigurationProblem(error) ? 78 : 1)  // 78: EX_CONFIG
        }
    }

    /// Whether a start failed on what only a change of configuration mends, so that a restart would fail the same
    /// way: an unsafe socket directory, a socket path that cannot be made or bound for want of permission (or on a
    /// read-only file system), a socket from systemd that is no listening Unix-domain stream socket or that is not
    /// guarded as incidentd's own would be, an open-file limit too low to run under, a data directory that cannot be
    /// made (permission denied, a path under `/proc`, a symbolic link that leads nowhere) or whose files this user
    /// may not open, or one no log can be in (a file, say) or that holds something that is no log of this version's.
    /// Failures that may pass (a full disk, a failing one, memory or descriptors short) are not.
    static func isConfigurationProblem(_ error: any Error) -> Bool {
        switch error {
        case is UnsafeSocketDirectory, is UnusableSocketPath, is DescriptorLimitTooLow, is InheritedSocketRefused: true
        case let error as LogError: error.code == .notALog || error.code == .uncreatableDirectory || error.code == .accessDenied
        default: false
        }
    }

    private func serve(_ configured: DaemonConfiguration, gazetteer: Gazetteer, stopSignals: sigset_t, logger: Logger) throws {
        var settings = configured
        // From here on a SIGTERM or SIGINT stops the start where it is: the work opening the log may need (an
        // upgrade, a rebuild) at its next step, and the daemon before it serves, with no READY=1.
        let stop = DispatchSemaphore(value: 0)
        let stopRequest = StopRequest()
        Self.awaitStopSignal(stopSignals, logger: logger, request: stopRequest, then: stop)
        // First, so that a limit too low to run under is refused before anything is made.
        try Self.raiseDescriptorLimit(&settings, logger: logger)
        // A name that matches no account grants nothing: said at once, at any log level but error and critical.
        let access = AccessControl(policy: settings.access)
        for name in access.unresolved { logger.warning("\(name)") }
        let inherited = try Self.inheritedSocket(logger: logger)
        if inherited == nil, try Self.checkSocketPathBeforeOpening(settings.socketPath) {
            logger.notice(
                "removed the stale socket \(absolutePath(settings.socketPath)), which nothing listened on: the daemon that made it did not stop cleanly (killed, or its machine stopped); what it acknowledged is in the log")
        }
        var logOptions = settings.logOptions
        logOptions.onSummaryDamage = { problem in logger.warning("rebuilding projections: \(problem)") }
        // An upgrade or a rebuild of a large log can outlast systemd's start timeout (90 s by default): each step
        // of it buys another 90 s, and says what is being done.
        logOptions.onProgress = { status in
            logger.info("\(status)")
            _ = incidentd_sd_notify("EXTEND_TIMEOUT_USEC=90000000\nSTATUS=\(status)")
        }
        // Why the projections are rebuilt before serving: they are incomplete or of another version, the gazetteer
        // changed since they were built, or an operator asked (from the events alone, which the hash chain covers).
        logOptions.rebuildAtOpen = rebuildProjections
        logOptions.onRebuildAtOpen = { reason in
            logger.notice("\(reason)")
            _ = incidentd_sd_notify("EXTEND_TIMEOUT_USEC=90000000\nSTATUS=\(reason)")
        }
        logOptions.shouldStop = { stopRequest.signal != nil }
        let log: EventLog
        do {
            log = try EventLog(options: logOptions, gazetteer: gazetteer)
        } catch let stopped as WorkAtOpenStopped {
            Self.stoppedStarting(stopRequest, cutShort: stopped, asked: rebuildProjections, logger: logger)
            return
        }
        // The rest of the start (threads, binding the socket) is quick: a signal from here on is an ordinary stop.
        guard stopRequest.startServing() else {
            Self.stoppedStarting(stopRequest, cutShort: nil, asked: rebuildProjections, logger: logger)
            return
        }
        if let (used, maximum) = log.pastMaximumSize {
            logger.warning(
                "the log in \(settings.dataDirectory) already holds \(describeSize(used)), more than max_map_size (\(describeSize(maximum)), from \(settings.maxMapSizeOrigin ?? "the default")): appends are refused with storage_full until max_map_size is raised above \(describeSize(used)); reads, verify and backup go on",
                metadata: ["usedBytes": "\(used)", "maxMapSize": "\(maximum)"])
        }
        if let folded = log.eventsRebuiltAtOpen {
            logger.notice("rebuilt projections", metadata: ["events": "\(folded)"])
        }
        for damage in log.damagedCityProjections() { logger.error("\(damage)") }
        for (cityId, spelling, gazetteerCityId) in log.citiesNamedByGazetteerSpellings() {
            // Its exact id still names it (the id comes before any spelling); another way of writing the id does not.
            if spelling == cityId {
                logger.warning(
                    "the city \(cityId), which this log added (with allowNewCity, or through a report's cityId, as a restore does), has an id that the gazetteer gives \(gazetteerCityId) as a spelling: exactly \"\(cityId)\" names \(cityId), any other way of writing it (another case, say) names \(gazetteerCityId)",
                    metadata: ["cityId": "\(cityId)", "gazetteerCityId": "\(gazetteerCityId)"])
                continue
            }
            logger.warning(
                "the gazetteer's city \(gazetteerCityId) now takes the spelling \"\(spelling)\" of the city \(cityId), which this log added (with allowNewCity, or through a report's cityId, as a restore does): \"\(spelling)\" now names \(gazetteerCityId); \(cityId)'s incidents are reached by its exact id (incidentctl city \(cityId), events --city \(cityId))",
                metadata: ["cityId": "\(cityId)", "gazetteerCityId": "\(gazetteerCityId)"])
        }
        let storageTrouble = StorageTroubleLog(logger: logger, onBroken: { stop.signal() })
        let followers = Followers()
        let committer = GroupCommitter(log: log, onStorageReport: storageTrouble.report, onCommitted: followers.committed)
        // Two, so that one long `verify` does not hold up every `read`.
        let logWalkers = NIOThreadPool(numberOfThreads: 2)
        logWalkers.start()
        let executor = RequestExecutor(
            log: log, committer: committer, access: access, logWalkers: logWalkers, followers: followers,
            unfinishedLines: UnfinishedLineBudget(limit: settings.maxUnfinishedBytes),
            unwrittenAnswers: UnwrittenAnswers(limit: settings.maxUnwrittenBytes, writeTimeoutSeconds: settings.writeTimeoutSeconds),
            backups: BackupPlacement(
                directory: settings.backupDirectoryInEffect,
                origin: settings.backupDirectoryOrigin ?? "daemon.backup_dir, by default backups in the data directory",
                daemonUser: geteuid()),
            logger: logger)
        let intake = AppendIntake(executor: executor)
        let server = Server(executor: executor, intake: intake, configuration: settings, logger: logger)
        if let refusal = settings.loopScheduling.apply(to: server.group) {
            logger.notice(
                "event loops keep ordinary scheduling: loop_scheduling = \"realtime\" needs root, CAP_SYS_NICE, or (under systemd) RestrictRealtime=no and LimitRTPRIO=1",
                metadata: ["reason": "\(refusal)"])
        }
        let channel: any Channel
        let socketFile: SocketFile?
        do {
            (channel, socketFile) = try server.start(inheritedDescriptor: inherited)
        } catch {
            intake.stop()
            committer.shutdown()
            try? server.group.syncShutdownGracefully()
            try? logWalkers.syncShutdownGracefully()
            throw error
        }
        let status = try log.status()
        logger.notice(
            "serving",
            metadata: [
                "socket": "\(inherited.map { "fd \($0) from systemd" } ?? absolutePath(settings.socketPath))",
                "dataDir": "\(absolutePath(settings.dataDirectory))", "position": "\(status.position)", "head": "\(status.headHash)",
                // What it runs as, for whoever reads the journal after an incident: which build, which settings.
                "version": "\(incidentdVersion)", "config": "\(config.map(absolutePath) ?? "embedded")",
                "gazetteer": "\(settings.gazetteerPath.map(absolutePath) ?? "embedded")",
                "maxMapSize": "\(describeSize(settings.maxMapSize))",
            ])
        _ = incidentd_sd_notify("READY=1\nSTATUS=\(ServingStatus.text(position: status.position))")
        let watchdog = Self.startWatchdog(committer: committer, logger: logger)
        let trimmer = Self.startMapTrimmer(log, committer: committer) { executor.activity.load(ordering: .relaxed) }
        // Only the writer appends: the head is where it was at READY=1 and the events it stored since.
        let servingStatus = ServingStatus(position: status.position, interval: Self.statusInterval) { message in
            _ = incidentd_sd_notify(message)
        }
        let readerCheck = Self.startReaderCheck(log, logger: logger) {
            servingStatus.tick(position: status.position + committer.statistics.events)
        }
        stop.wait()

        let stopping = "stopping: answering what the open connections sent, then writing every queued append"
        logger.notice("\(stopping)")
        servingStatus.stop(saying: stopping)
        // While the listening socket is open it holds its file, whose inode number no other file can have meanwhile:
        // closed first, a new daemon's socket at the path could reuse it and be taken for this one's.
        if let socketFile, socketFile.removeIfStillOurs() == .replaced {
            logger.notice(
                "left \(socketFile.path) in place: it is no longer the socket this daemon made (another process put its own there)")
        }
        try? channel.close().wait()
        executor.unwrittenAnswers.beginStop()
        if !storageTrouble.isBroken {
            Self.drainConnections(
                executor, loops: server.group, within: settings.drainSeconds, interruptedBy: stop, logger: logger)
        }
        executor.endWalks()
        executor.unwrittenAnswers.noteUnloggedStalledCloses(logger: logger)
        // Lines the intake holds reach the committer first, in order; later ones are carried out on their loops.
        intake.stop()
        committer.shutdown()
        // Every completion of a drained append was queued on an event loop before this: wait until each loop
        // has written them.
        for loop in server.group.makeIterator() {
            executor.mailbox(for: loop).waitUntilWritten()
        }
        // A walk of the log still running (a `verify` or `replay` cut short at its next stretch) ends and is answered
        // while the loops still run.
        try? logWalkers.syncShutdownGracefully()
        try? server.group.syncShutdownGracefully()
        watchdog?.cancel()
        trimmer.cancel()
        readerCheck.cancel()
        logger.notice("stopped", metadata: ["position": "\((try? log.status()).map { "\($0.position)" } ?? "unknown")"])
        if storageTrouble.isBroken { throw ExitCode(StorageTroubleLog.exitStatus) }
    }

    /// Serves the connections open at the stop until every request they sent has been answered, or for
    /// `seconds` at most, or until `interruption` is signalled (a second SIGTERM or SIGINT, or a storage that
    /// broke), so that appends a client sent before the stop are stored rather than refused. Waiting for what was
    /// read is not enough: a connection reads no further while its requests in flight are at their limit, and a
    /// line may be half read, so what a client sent can sit in its socket. So the wait is over only when, twice in
    /// a row, a few milliseconds apart, after every loop has run a task (and so looked at its sockets in between), no
    /// request is unanswered and no line is half read.
    static func drainConnections(
        _ executor: RequestExecutor, loops: any EventLoopGroup, within seconds: Int, interruptedBy interruption: DispatchSemaphore,
        logger: Logger
    ) {
        let deadline = DispatchTime.now() + .seconds(seconds)
        var quietRounds = 0
        while true {
            for loop in loops.makeIterator() { try? loop.submit {}.wait() }
            let unanswered = executor.unansweredRequests.load(ordering: .relaxed)
            let unfinishedBytes = executor.unfinishedLines.heldBytes
            if unanswered == 0 && unfinishedBytes == 0 {
                quietRounds += 1
                if quietRounds == 2 { return }
            } else {
                quietRounds = 0
            }
            let now = DispatchTime.now()
            let waitingFor =
                "\(unanswered) request\(unanswered == 1 ? "" : "s") of the open connections unanswered"
                + (unfinishedBytes > 0 ? " and \(describeSize(unfinishedBytes)) of lines half read" : "")
                + ": appends among them that are not with the writer yet are answered shutting_down, unstored"
            guard now < deadline || quietRounds > 0 else {
                logger.warning(
                    "stopping after drain_seconds (\(seconds) s) with \(waitingFor)")
                return
            }
            if interruption.wait(timeout: min(deadline, now + .milliseconds(5))) == .success {
                logger.notice(
                    "stopping without waiting further, with \(waitingFor)")
                return
            }
        }
    }

    /// The checks of the socket path that ``Server/start(inheritedDescriptor:)`` makes as it binds, made before the
    /// log is opened: that no other user could put a socket of their own in its directory, and that the path holds
    /// nothing but a stale socket (removed, as it would be then). Opening the log makes the data directory, and a new
    /// log in it, where there are none, which a start refused for its socket would otherwise leave behind. A socket
    /// directory that is missing is made only as the socket is bound (and checked again then, as is what changed
    /// meanwhile); where it would be made is checked here. Returns whether it removed a stale socket.
    static func checkSocketPathBeforeOpening(_ path: String) throws -> Bool {
        let directory = (path as NSString).deletingLastPathComponent
        try Server.checkSocketDirectory(directory.isEmpty ? FileManager.default.currentDirectoryPath : directory)
        return try Server.removeStaleSocket(at: path)
    }

    /// Blocks SIGTERM and SIGINT, SIGHUP, and the signals SIGUSR1 and SIGUSR2 are relayed as
    /// (``incidentd_relay_user_signals``), in the calling thread (and so in every thread it starts) and returns
    /// them. A signal handler installed later would leave a window in which a signal kills the daemon without
    /// draining (the default action) or is lost (a `SIG_IGN` before a dispatch source is registered): seen with a
    /// SIGTERM right after the socket accepted its first connection. SIGUSR1 and SIGUSR2 themselves stay unblocked,
    /// for the Swift runtime's crash reports, which suspend each thread with one of them.
    static func blockHandledSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGTERM, SIGINT, SIGHUP, incidentd_user_signal_relay(SIGUSR1), incidentd_user_signal_relay(SIGUSR2)] {
            sigaddset(&set, signal)
        }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        _ = incidentd_relay_user_signals()
        return set
    }

    /// Logs, and tells systemd, that the daemon stops before it served, on the signal `request` took: with the work
    /// opening the log needed `cutShort` (the next start takes it up), or once the log was open. When the rebuild
    /// an operator `asked` for (`--rebuild-projections`) may not have been done, says to ask again. Nothing was
    /// served and no READY=1 sent; the daemon then exits 0, as for any stop it was asked for.
    static func stoppedStarting(_ request: StopRequest, cutShort: WorkAtOpenStopped?, asked: Bool, logger: Logger) {
        let signal = request.signal ?? "a stop signal"
        let line: String
        if let cutShort {
            line = "stopped during start-up on \(signal), before serving: \(cutShort), between two steps the next start takes up from\(asked ? "; start with --rebuild-projections again for the rebuild asked for" : "")"
        } else {
            line = "stopped during start-up on \(signal), before serving: the log is open and up to date"
        }
        logger.notice("\(line)")
        _ = incidentd_sd_notify("STOPPING=1\nSTATUS=\(line)")
    }

    /// Starts the thread that takes the blocked signals (pending or to come) with `sigwait`: each SIGTERM or SIGINT
    /// signals `stop` (the first stops the daemon, a second ends the wait for its connections), and the first is
    /// noted in `request`, which the start asks before each step (``StopRequest``). SIGHUP, which operators send
    /// for a reload, is answered in the log: incidentd reads its configuration only as it starts. SIGUSR1 and
    /// SIGUSR2 mean nothing to it, and are logged as ignored.
    static func awaitStopSignal(_ signals: sigset_t, logger: Logger, request: StopRequest, then stop: DispatchSemaphore) {
        let thread = Thread {
            var set = signals
            var received: Int32 = 0
            while true {
                guard sigwait(&set, &received) == 0 else { continue }
                if received == SIGTERM || received == SIGINT {
                    let name = received == SIGTERM ? "SIGTERM" : "SIGINT"
                    if request.note(name) {
                        logger.notice("\(name) during start-up: stopping at the next step, without serving")
                    }
                    stop.signal()
                } else if received == SIGHUP {
                    logger.notice(
                        "SIGHUP: incidentd does not reload its configuration on SIGHUP; restart it (systemctl restart incidentd) for changes to take effect")
                } else {
                    let name = received == incidentd_user_signal_relay(SIGUSR1) ? "SIGUSR1" : "SIGUSR2"
                    logger.notice("\(name) ignored: it means nothing to incidentd")
                }
            }
        }
        thread.name = "incidentd-signals"
        thread.start()
    }

    /// An open-file limit under which the daemon cannot run: a configuration error, like an unsafe socket directory.
    struct DescriptorLimitTooLow: Error, CustomStringConvertible {
        let description: String
    }

    /// Descriptors the daemon may hold besides its connections: each event loop's three (one a core, see
    /// ``Server``), and 64 for LMDB's, the lock files', the listener's, the log's, connections refused and not
    /// yet closed, and a backup's or a status's files. Idle on two cores, it holds about twenty.
    static var descriptorsBesideConnections: Int { 64 + 3 * System.coreCount }

    /// Raises the soft limit on open files to the hard limit: every connection is a descriptor, and the usual
    /// soft limit (1024) is below the default `max_connections` plus what LMDB and the listener hold. Where the
    /// limit still leaves room for fewer connections than `max_connections`, the daemon serves only as many as
    /// fit, so that it never runs out of descriptors: a connection past them is answered `too_many_connections`,
    /// where one accepted with no descriptor left would find `accept` failing and the daemon unable to open the
    /// files it needs. A limit that leaves no room at all is refused: the daemon could not even run under it.
    static func raiseDescriptorLimit(_ settings: inout DaemonConfiguration, logger: Logger) throws {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let kept = descriptorsBesideConnections
        guard limit.rlim_cur > rlim_t(kept) else {
            throw DescriptorLimitTooLow(
                description:
                    "the open-file limit (\(limit.rlim_cur)) leaves no room for connections: incidentd keeps \(kept) descriptors for its own files (64, and 3 for each of its \(System.coreCount) event loops); raise LimitNOFILE (or ulimit -n) to at least \(kept) and the connections to serve (max_connections is \(settings.maxConnections))")
        }
        let room = Int(min(limit.rlim_cur, rlim_t(Int.max))) - kept
        if room < settings.maxConnections {
            logger.warning(
                "the open-file limit leaves room for \(room) connection\(room == 1 ? "" : "s"), fewer than max_connections (\(settings.maxConnections)): serving at most \(room); raise LimitNOFILE (or ulimit -n) to serve more",
                metadata: ["limit": "\(limit.rlim_cur)", "maxConnections": "\(settings.maxConnections)", "served": "\(room)"])
            settings.maxConnections = room
            settings.maxConnectionsOrigin = "the open-file limit"
        }
    }

    /// Seconds between updates of systemd's `STATUS=` while serving, at most (``ServingStatus``).
    static let statusInterval = 5

    /// Clears, every second, the reader slots of processes that died inside a read transaction (an
    /// `incidentctl replay` killed mid-fold, say): until cleared, such a slot pins every page freed since its
    /// snapshot and the data file grows with each commit. Each second it also runs `everySecond` (the update of
    /// systemd's `STATUS=`).
    static func startReaderCheck(
        _ log: EventLog, logger: Logger, everySecond: @escaping @Sendable () -> Void = {}
    ) -> any DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(100))
        timer.setEventHandler {
            everySecond()
            do {
                let cleared = try log.environment.readerCheck()
                if cleared > 0 { logger.notice("cleared stale reader slots", metadata: ["slots": "\(cleared)"]) }
            } catch {
                logger.warning("reader check failed", metadata: ["error": "\(error)"])
            }
        }
        timer.resume()
        return timer
    }

    /// Lets go of the log's mapped pages this process touched (see `EventLog.releaseMappedPages()`), so that
    /// its resident memory does not grow with the log: every `trimInterval` while appends are committed, and at
    /// least every `idleTrimInterval` for what queries read. How much a commit touches depends on where its keys
    /// fall: appends whose ids follow time touch the last pages of each index, random (version 4) event ids a
    /// different leaf of the index each, about 140 MiB of the map in half a second at 20,000 appends/s. Trimming
    /// while appends run keeps that to what a twentieth of a second touches. The same timer gives the heap's free
    /// memory back (``HeapTrimSchedule``) a second after activity stops, and every half minute while it never does.
    static func startMapTrimmer(
        _ log: EventLog, committer: GroupCommitter, activity: @escaping @Sendable () -> UInt64
    ) -> any DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        let schedule = MapTrimSchedule(ticksPerIdleTrim: max(1, idleTrimInterval / trimInterval))
        let heapSchedule = HeapTrimSchedule(quietTicks: heapQuietInterval / trimInterval, busyTicks: heapBusyInterval / trimInterval)
        timer.schedule(
            deadline: .now() + .milliseconds(trimInterval), repeating: .milliseconds(trimInterval),
            leeway: .milliseconds(trimInterval / 5))
        timer.setEventHandler {
            if schedule.isDue(events: committer.statistics.events) { log.releaseMappedPages() }
            if heapSchedule.isDue(activity: activity()) { _ = incidentd_trim_heap() }
        }
        timer.resume()
        return timer
    }

    /// Milliseconds between trims of the mapped pages while appends are being committed.
    static let trimInterval = 50
    /// Milliseconds between trims when nothing is appended.
    static let idleTrimInterval = 500
    /// Milliseconds without a connection or a request before the heap is trimmed, and between trims at most while
    /// they never stop.
    static let heapQuietInterval = 1_000
    static let heapBusyInterval = 30_000

    /// Pings systemd's watchdog (`WATCHDOG=1`) every half `WatchdogSec` while the writer keeps up: a ping is
    /// skipped while it has had work for longer than that without finishing any (``GroupCommitter/stalled(now:)``),
    /// so that a writer stuck for the whole `WatchdogSec` gets the daemon restarted instead of appends that hang.
    static func startWatchdog(committer: GroupCommitter, logger: Logger) -> (any DispatchSourceTimer)? {
        let env = ProcessInfo.processInfo.environment
        guard let usec = env["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0 else { return nil }
        if let pid = env["WATCHDOG_PID"].flatMap(Int32.init), pid != getpid() { return nil }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        let interval = DispatchTimeInterval.microseconds(Int(usec / 2))
        let limit = usec / 2 * 1000
        let wasStalled = StallMemory()
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler {
            let stalled = committer.stalled()
            let isStalled = stalled > limit
            let changed = wasStalled.stalled.withLock { was -> Bool in
                defer { was = isStalled }
                return was != isStalled
            }
            if changed && isStalled {
                logger.warning(
                    "the writer has had appends for \(stalled / 1_000_000) ms without finishing a commit; no longer telling systemd's watchdog that all is well")
            } else if changed {
                logger.notice("the writer is committing again; telling systemd's watchdog again")
            }
            if !isStalled { _ = incidentd_sd_notify("WATCHDOG=1") }
        }
        timer.resume()
        return timer
    }
}

/// Whether the watchdog's last tick found the writer stalled, so that each change is logged once.
private final class StallMemory: Sendable {
    let stalled = Mutex(false)
}
