import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What incidentd makes of its settings file at start: mistakes refused with exit status 78 (EX_CONFIG), naming
/// the file and the keys at fault.
@Suite("Configuration")
struct ConfigurationTests {
    /// What a start of incidentd on `toml` came to: its exit status, or nil when it served instead (then it is
    /// stopped), and what it wrote on stderr.
    /// `socketArguments` replaces `--socket` and the path made for it (with nil, its default).
    static func start(
        _ toml: String, arguments: [String] = [], socketArguments: [String]? = nil
    ) throws -> (status: Int32?, log: String) {
        let root = makeTemporaryDirectory("incidentd-config")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let config = root + "/incidentd.toml"
        try toml.write(toFile: config, atomically: true, encoding: .utf8)
        let logPath = root + "/log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(log)
            close(null)
        }
        let socket = root + "/incidentd.sock"
        let child = try ChildProcess(
            Binaries.incidentd,
            ["--config", config, "--data-dir", root + "/data"] + (socketArguments ?? ["--socket", socket]) + arguments,
            environment: ProcessInfo.processInfo.environment, stdin: null, stdout: log, stderr: log)
        try waitFor("incidentd to exit or serve") {
            !child.isRunning || (try? RawClient(path: socket)) != nil || (readFile(logPath) ?? "").contains("notice serving")
        }
        guard child.isRunning else { return (child.wait(), readFile(logPath) ?? "") }
        kill(child.pid, SIGTERM)
        child.wait()
        return (nil, readFile(logPath) ?? "")
    }

    @Test("initial_map_size above max_map_size, from the file or with --max-map-size, is refused naming both; a maximum below the default initial size is the initial size")
    func mapSizes() throws {
        let above = try Self.start("[storage]\ninitial_map_size = \"1GiB\"\nmax_map_size = \"64MiB\"\n")
        #expect(above.status == 78, "\(above.log)")
        #expect(
            above.log.contains("storage.initial_map_size: 1GiB is larger than storage.max_map_size (64MiB)"), "\(above.log)")

        let flag = try Self.start("[storage]\ninitial_map_size = \"16MiB\"\n", arguments: ["--max-map-size", "4MiB"])
        #expect(flag.status == 78, "\(flag.log)")
        #expect(flag.log.contains("storage.initial_map_size: 16MiB is larger than --max-map-size (4MiB)"), "\(flag.log)")

        // Only the maximum given, below the default initial size of 64MiB: the map starts at the maximum.
        let daemon = try Daemon.configured("[storage]\nmax_map_size = \"16MiB\"\n")
        #expect(try daemon.client().call("status")["storage"]?["mapSize"]?.intValue == 16 << 20)
        #expect(daemon.stop() == 0)
        let equal = try Daemon.configured("[storage]\ninitial_map_size = \"8MiB\"\nmax_map_size = \"8MiB\"\n")
        #expect(try equal.client().call("status")["storage"]?["mapSize"]?.intValue == 8 << 20)
        #expect(equal.stop() == 0)
    }

    @Test("max_unfinished_bytes below max_line_bytes is refused naming both")
    func unfinishedBelowLineLimit() throws {
        let below = try Self.start("[daemon]\nmax_line_bytes = \"2MiB\"\nmax_unfinished_bytes = \"1MiB\"\n")
        #expect(below.status == 78, "\(below.log)")
        #expect(below.log.contains("daemon.max_unfinished_bytes: 1MiB is less than max_line_bytes (2MiB)"), "\(below.log)")
    }

    @Test("a user or group named in [access] that the system does not know is a warning at the default log level naming it and its role, and the daemon serves")
    func unresolvedAccessNames() throws {
        let daemon = try Daemon.configured("""
            [access.readers]
            users = ["incdtest-nosuchuser"]
            groups = ["incdtest-nosuchgroup"]
            [access.reporters]
            groups = ["incdtest-nosuchgroup2", "root"]
            [access.admins]
            users = ["root"]
            """)
        #expect(try daemon.client().call("status").isOK)
        let log = daemon.log
        for expected in [
            "warning access.readers.users names \"incdtest-nosuchuser\", which is no user on this system: nobody is a reader through it until that user exists (a typo?)",
            "warning access.readers.groups names \"incdtest-nosuchgroup\", which is no group on this system: nobody is a reader through it until that group exists and incidentd is restarted (a typo?)",
            "warning access.reporters.groups names \"incdtest-nosuchgroup2\", which is no group on this system: nobody is a reporter through it",
        ] {
            #expect(log.contains(expected), "\(log)")
        }
        #expect(!log.contains("\"root\""), "names that resolve are not mentioned: \(log)")
        #expect(daemon.stop() == 0)
    }

    @Test("an empty socket path, from --socket or daemon.socket, is refused naming the setting: Linux would bind an abstract socket, which has no file mode")
    func emptySocketPath() throws {
        let flag = try Self.start("", socketArguments: ["--socket", ""])
        #expect(flag.status == 78, "\(flag.log)")
        #expect(flag.log.contains("incidentd: --socket: the socket path is empty; Linux would make an abstract socket of it"), "\(flag.log)")

        let file = try Self.start("[daemon]\nsocket = \"\"\n", socketArguments: [])
        #expect(file.status == 78, "\(file.log)")
        #expect(file.log.contains("incidentd.toml: daemon.socket: the socket path is empty"), "\(file.log)")
    }

    @Test("a socket path longer than sun_path holds (107 bytes) is refused naming the path, its length and the limit; one of 107 bytes serves")
    func socketPathTooLong() throws {
        let root = makeTemporaryDirectory("incidentd-long")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let longest = root + "/" + String(repeating: "s", count: 107 - root.utf8.count - 1)
        #expect(longest.utf8.count == 107)
        let tooLong = longest + "x"

        let flag = try Self.start("", socketArguments: ["--socket", tooLong])
        #expect(flag.status == 78, "\(flag.log)")
        #expect(
            flag.log.contains(
                "incidentd: --socket: \(tooLong) is 108 bytes long, more than a Unix socket path may be (107 bytes, sun_path)"),
            "\(flag.log)")
        let file = try Self.start("[daemon]\nsocket = \"\(tooLong)\"\n", socketArguments: [])
        #expect(file.status == 78, "\(file.log)")
        #expect(file.log.contains("incidentd.toml: daemon.socket: \(tooLong) is 108 bytes long"), "\(file.log)")

        let served = try Self.start("", socketArguments: ["--socket", longest])
        #expect(served.status == nil, "\(served.log)")
        #expect(served.log.contains("socket=\(longest)"), "\(served.log)")
    }

    /// What incidentd wrote on stderr, and its exit status, run to its end with stderr open on a file that
    /// `JOURNAL_STREAM` names, as systemd connects a service's stderr to the journal.
    static func runUnderJournal(_ arguments: [String]) throws -> (status: Int32, log: String) {
        let root = makeTemporaryDirectory("incidentd-journal")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let logPath = root + "/log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(log)
            close(null)
        }
        var info = stat()
        guard log >= 0, null >= 0, fstat(log, &info) == 0 else { throw HarnessError("cannot open \(logPath)") }
        var environment = ProcessInfo.processInfo.environment
        environment["JOURNAL_STREAM"] = "\(info.st_dev):\(info.st_ino)"
        let child = try ChildProcess(
            Binaries.incidentd, arguments + ["--data-dir", root + "/data", "--socket", root + "/incidentd.sock"],
            environment: environment, stdin: null, stdout: log, stderr: log)
        let status = child.wait()
        return (status, readFile(logPath) ?? "")
    }

    @Test("with stderr the journal's stream, a setting refused at start (exit 78) and a usage error (exit 64) are one line each at the error priority (<3>), a newline in a TOML key included, where they reached the journal at info; on a terminal or file a usage error is as ArgumentParser prints it")
    func startErrorsReachTheJournalAsErrors() throws {
        let root = makeTemporaryDirectory("incidentd-config")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let config = root + "/incidentd.toml"
        try "[daemon]\n\"forged\\n<0>incidentd: serving\" = 1\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try Self.runUnderJournal(["--config", config])
        #expect(refused.status == 78, "\(refused.log)")
        #expect(refused.log.hasPrefix("<3>incidentd: \(config): daemon.forged <0>incidentd: serving: unknown setting"), "\(refused.log)")
        #expect(refused.log.filter { $0 == "\n" }.count == 1 && refused.log.hasSuffix("\n"), "one line: \(refused.log)")

        for (arguments, says) in [
            (["--bogus"], "Unknown option '--bogus'"),
            (["--log-level", "loud"], "--log-level: one of trace, debug, info, notice, warning, error, critical"),
        ] {
            let usage = try Self.runUnderJournal(arguments)
            #expect(usage.status == 64, "\(arguments): \(usage.log)")
            #expect(usage.log.hasPrefix("<3>incidentd: ") && usage.log.contains(says), "\(arguments): \(usage.log)")
            #expect(usage.log.split(separator: "\n").count == 1, "\(arguments): one line: \(usage.log)")
        }

        let terminal = try runCommand(Binaries.incidentd, ["--bogus"], environment: ["JOURNAL_STREAM": "8:12345"])
        #expect(terminal.status == 64, "\(terminal.stderr)")
        #expect(terminal.stderr.hasPrefix("Error: Unknown option '--bogus'") && terminal.stderr.contains("Usage: incidentd"), "\(terminal.stderr)")
    }

    @Test("--config naming a directory is refused saying so")
    func configIsADirectory() throws {
        let root = makeTemporaryDirectory("incidentd-config")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let refused = try runCommand(
            Binaries.incidentd, ["--config", root, "--data-dir", root + "/data", "--socket", root + "/incidentd.sock"])
        #expect(refused.status == 78, "\(refused.stderr)")
        #expect(
            refused.stderr.contains("incidentd: \(root): is a directory; --config takes the settings file (TOML) itself"),
            "\(refused.stderr)")
    }

    @Test("an empty data directory path, from --data-dir or daemon.data_dir, is refused naming the setting")
    func emptyDataDirectory() throws {
        let root = makeTemporaryDirectory("incidentd-config")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let config = root + "/incidentd.toml"
        try "[daemon]\ndata_dir = \"\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        for (arguments, says) in [
            (["--data-dir", ""], "incidentd: --data-dir: the data directory path is empty; give the directory of the log"),
            (["--config", config], "incidentd: \(config): daemon.data_dir: the data directory path is empty"),
        ] {
            let refused = try runCommand(Binaries.incidentd, arguments + ["--socket", root + "/incidentd.sock"])
            #expect(refused.status == 78, "\(arguments): \(refused.stderr)")
            #expect(refused.stderr.contains(says), "\(arguments): \(refused.stderr)")
        }
    }

    @Test("a relative data_dir, socket or gazetteer.file in the settings file is taken from the file's directory, not from the directory incidentd was started in; --data-dir is taken from the current directory")
    func relativePathsAreTheFiles() throws {
        let root = makeTemporaryDirectory("incidentd-config")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let settings = root + "/settings", elsewhere = root + "/elsewhere"
        for directory in [settings, elsewhere] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
        try "[[city]]\nid = \"testville\"\nname = \"Testville\"\naliases = [\"Testograd\"]\nlat = 49.7\nlon = 37.6\n"
            .write(toFile: settings + "/cities.toml", atomically: true, encoding: .utf8)
        try "[daemon]\ndata_dir = \"log\"\nsocket = \"run/incidentd.sock\"\n[gazetteer]\nfile = \"cities.toml\"\n"
            .write(toFile: settings + "/incidentd.toml", atomically: true, encoding: .utf8)
        let logPath = root + "/log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(log)
            close(null)
        }
        func serve(_ arguments: [String], at socket: String) throws -> ChildProcess {
            // env -C: the daemon starts in `elsewhere`, and finds its settings file by a path relative to it.
            let child = try ChildProcess(
                "/usr/bin/env", ["-C", elsewhere, Binaries.incidentd, "--config", "../settings/incidentd.toml"] + arguments,
                environment: ProcessInfo.processInfo.environment, stdin: null, stdout: log, stderr: log)
            try waitFor("incidentd to serve \(socket)") {
                guard child.isRunning else { throw HarnessError("incidentd exited with \(child.wait()): \(readFile(logPath) ?? "")") }
                return (try? RawClient(path: socket)) != nil
            }
            return child
        }

        let child = try serve([], at: settings + "/run/incidentd.sock")
        let client = try RawClient(path: settings + "/run/incidentd.sock")
        let stored = try client.appendEvents([Wire.report(city: "Testograd")])
        #expect(stored["ok"]?.boolValue == true, "the city of the gazetteer beside the settings file: \(stored)")
        #expect(try client.call("city", ["city": "Testville"])["city"]?["cityId"]?.stringValue == "testville")
        // The serving line names the settings in force, for whoever reads the journal after an incident.
        let serving = readFile(logPath) ?? ""
        for says in ["config=\(elsewhere)/../settings/incidentd.toml", "gazetteer=\(elsewhere)/../settings/cities.toml", "maxMapSize=64GiB", "version="] {
            #expect(serving.contains(says), "\(says): \(serving)")
        }
        kill(child.pid, SIGTERM)
        #expect(child.wait() == 0)
        #expect(FileManager.default.fileExists(atPath: settings + "/log/data.mdb"), "the log beside the settings file")
        #expect(!FileManager.default.fileExists(atPath: elsewhere + "/log"), "nothing in the directory started in")

        // A flag is an argument of the command line, and is taken from where the command runs.
        let flagged = try serve(["--data-dir", "flagged", "--socket", root + "/flagged.sock"], at: root + "/flagged.sock")
        let status = try RawClient(path: root + "/flagged.sock").call("status")
        #expect(status["storage"]?["dataDir"]?.stringValue == elsewhere + "/flagged", "status names it from /, for a client elsewhere: \(status)")
        kill(flagged.pid, SIGTERM)
        #expect(flagged.wait() == 0)
        #expect(FileManager.default.fileExists(atPath: elsewhere + "/flagged/data.mdb"), "--data-dir from the current directory")
    }

    @Test("a gazetteer file that cannot be read or is no gazetteer (missing, a spelling of two cities, a bad id, a latitude out of range) is refused as every other setting is, exit 78, naming the setting, the file and what is wrong")
    func badGazetteer() throws {
        let root = makeTemporaryDirectory("incidentd-gazetteer")
        defer { try? FileManager.default.removeItem(atPath: root) }
        func city(_ id: String, alias: String, lat: String = "49.7") -> String {
            "[[city]]\nid = \"\(id)\"\nname = \"\(id)\"\naliases = [\"\(alias)\"]\nlat = \(lat)\nlon = 37.6\n"
        }
        let cases: [(label: String, text: String?, says: String)] = [
            ("missing", nil, "cannot read"),
            ("alias", city("one", alias: "Same") + city("two", alias: "same"),
             "alias \"same\" of city \"two\" matches \"Same\" of city \"one\""),
            ("id", city("Bad Id", alias: "x"), "city id \"Bad Id\" is invalid"),
            ("lat", city("far", alias: "x", lat: "91"), "city \"far\": field \"lat\" must be between -90 and 90"),
        ]
        for (label, text, says) in cases {
            let path = root + "/\(label).toml"
            if let text { try text.write(toFile: path, atomically: true, encoding: .utf8) }
            let refused = try Self.start("[gazetteer]\nfile = \"\(path)\"\n")
            #expect(refused.status == 78, "\(label): \(refused.log)")
            #expect(refused.log.contains("incidentd.toml: gazetteer.file: \(path): \(says)"), "\(label): \(refused.log)")
            #expect(!refused.log.contains("cannot start"), "\(label): a configuration error, as the others: \(refused.log)")
        }
    }

    @Test("an unknown table or key is refused naming what its table holds, and the one meant when it is a near miss: [access.reader] names [access.readers], [access.reporters] and [access.admins]")
    func unknownSettingNamesTheKnownOnes() throws {
        let cases: [(toml: String, says: String)] = [
            ("[access.reader]\ngroups = [\"incidentd-readers\"]\n",
             "incidentd.toml: access.reader: unknown setting ([access.readers], perhaps?); [access] holds the tables [access.readers], [access.reporters] and [access.admins]"),
            ("[access.readers]\nuser = [\"root\"]\n",
             "incidentd.toml: access.readers.user: unknown setting (users, perhaps?); [access.readers] holds the settings users, groups, uids and gids"),
            ("[acess.readers]\ngroups = []\n",
             "incidentd.toml: acess: unknown setting ([access], perhaps?); the file holds the tables [daemon], [storage], [gazetteer] and [access]"),
            ("[daemon]\nsocket_mod = \"0660\"\n",
             "incidentd.toml: daemon.socket_mod: unknown setting (socket_mode, perhaps?); [daemon] holds the settings data_dir, socket, socket_mode, log_level,"),
            ("[storage]\nfoo = 1\n",
             "incidentd.toml: storage.foo: unknown setting; [storage] holds the settings initial_map_size, max_map_size and file_headroom"),
        ]
        for (toml, says) in cases {
            let refused = try Self.start(toml)
            #expect(refused.status == 78, "\(toml): \(refused.log)")
            #expect(refused.log.contains(says), "\(toml): \(refused.log)")
        }
    }

    @Test("a daemon.socket_mode that lets others connect (o+w: 0777, 0666, 0662) is refused saying why, exit 78; 0660 and 0600 serve")
    func socketModeForOthersIsRefused() throws {
        for mode in ["0777", "0666", "0662"] {
            let refused = try Self.start("[daemon]\nsocket_mode = \"\(mode)\"\n")
            #expect(refused.status == 78, "\(mode): \(refused.log)")
            #expect(
                refused.log.contains(
                    "incidentd.toml: daemon.socket_mode: \(mode) lets every local user connect (connecting to a socket takes write permission, and \(mode) gives it to others), where the socket is for its owner and group only"),
                "\(mode): \(refused.log)")
        }
        for mode in ["0660", "0600"] {
            let served = try Self.start("[daemon]\nsocket_mode = \"\(mode)\"\n")
            #expect(served.status == nil, "\(mode): \(served.log)")
        }
    }
}
