import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The socket file a daemon makes and removes: never another's, whoever serves it.
@Suite("Socket file")
struct SocketTests {
    /// Checks that `child`, a daemon started by ``launch(_:_:logPath:environment:)``, was refused and exited with
    /// `status`; one that serves is killed and recorded as an issue, labelled `label`, with its `log`.
    static func expectRefused(_ child: ChildProcess, status: Int32, _ label: String, log: String) {
        if child.isRunning {
            kill(child.pid, SIGKILL)
            child.wait()
            Issue.record("\(label): the daemon serves: \(log)")
        } else {
            #expect(child.wait() == status, "\(label): \(log)")
        }
    }

    /// A daemon started outside ``Daemon``: `program` with `arguments` (incidentd itself, or a wrapper that runs it),
    /// its output in `logPath`; returns once it says it serves or has exited.
    static func launch(
        _ program: String, _ arguments: [String], logPath: String, environment: [String: String] = [:]
    ) throws -> ChildProcess {
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(log)
            close(null)
        }
        let child = try ChildProcess(
            program, arguments, environment: ProcessInfo.processInfo.environment.merging(environment) { _, extra in extra },
            stdin: null, stdout: log, stderr: log)
        try waitFor("incidentd to serve or exit") { !child.isRunning || (readFile(logPath) ?? "").contains("notice serving") }
        return child
    }

    /// The device and inode of what `path` names, or nil.
    static func identity(_ path: String) -> [UInt64]? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return [UInt64(info.st_dev), UInt64(info.st_ino)]
    }

    @Test(
        "another user's daemon given the socket path of a daemon that serves it (mode 0600, in a directory anyone may write, sticky as /tmp) is refused, and the socket left to the daemon that serves it",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root, useradd and setpriv to run a daemon as a throwaway user"))
    func unreachableSocketIsNotTakenOver() throws {
        let user = try ThrowawayUser()
        let served = try Daemon.configured("[daemon]\nsocket_mode = \"0600\"\n")
        #expect(chmod(served.root, 0o1777) == 0)
        let before = Self.identity(served.socketPath)
        let own = served.root + "/impostor"
        #expect(mkdir(own, 0o700) == 0)
        #expect(chown(own, user.uid, user.gid) == 0)

        let logPath = own + "/log"
        let impostor = try Self.launch(
            "/usr/bin/setpriv",
            ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", Binaries.incidentd,
             "--data-dir", own + "/data", "--socket", served.socketPath],
            logPath: logPath)
        let log = readFile(logPath) ?? ""
        Self.expectRefused(impostor, status: 78, "the second daemon", log: log)
        // Refused for the directory, which anyone may write: the socket could have been squatted there as well.
        #expect(log.contains("cannot start: the socket's directory \(served.root): \(served.root) (mode 1777"), "\(log)")
        #expect(Self.identity(served.socketPath) == before, "the socket file is the first daemon's still")
        #expect(try served.client().call("status").isOK)
        #expect(served.stop() == 0)
    }

    @Test(
        "incidentctl sends nothing to a process of another user serving the socket path in a directory it does not own (a stand-in in a directory anyone may write), saying so, exit 3",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/perl"),
            "needs root, useradd, setpriv and perl"))
    func clientRefusesAStandIn() throws {
        let user = try ThrowawayUser()
        let root = makeTemporaryDirectory("incidentd-stand-in")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o1777) == 0)
        let socket = root + "/incidentd.sock"
        let received = root + "/received"
        let standIn = try Self.standIn(as: user, at: socket, keepingIn: received, logPath: root + "/stand-in.log")
        defer {
            if standIn.isRunning { kill(standIn.pid, SIGKILL) }
            standIn.wait()
        }
        #expect(standIn.isRunning, "\(readFile(root + "/stand-in.log") ?? "")")
        let run = try runCommand(
            Binaries.incidentctl, ["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01", "--socket", socket])
        #expect(run.status == 3, "\(run)")
        // The directory is root's, so it is the path that shows the process is not incidentd: anyone may write it.
        #expect(
            run.stderr.contains("the socket's directory \(root): \(root) (mode 1777, owner root (uid 0)) may be written by its group and others, sticky or not"),
            "\(run.stderr)")
        #expect(!(readFile(received) ?? "").contains("append"), "nothing was sent: \(readFile(received) ?? "")")
    }

    /// A process of `user` serving `socket` that answers every line as incidentd would and keeps what it was sent in
    /// `received`: a stand-in for incidentd.
    static func standIn(as user: ThrowawayUser, at socket: String, keepingIn received: String, logPath: String) throws -> ChildProcess {
        let script = """
            use IO::Socket::UNIX;
            my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 5) or die "listen: $!";
            $| = 1; print STDERR "notice serving\n";
            while (my $c = $l->accept) { while (my $line = <$c>) { open(my $f, '>>', $ARGV[1]); print $f $line; close $f; print $c qq({"id":1,"ok":true}\n); } }
            """
        return try launch(
            "/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "/usr/bin/perl", "-e", script, socket, received],
            logPath: logPath)
    }

    @Test(
        "incidentctl sends nothing to a process of another user serving the socket path in a directory of its own where incidentd would not serve as that user (below one anyone may write without the sticky bit; below another user's; reached through another user's link; open to others itself), nor in one of its own below a directory anyone may write, sticky or not (as /tmp), where anyone could have made it: it names the directory at fault and why, exit 3. In a directory of its own that root made for it, it is trusted",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/perl"),
            "needs root, useradd, setpriv and perl"))
    func clientRefusesAStandInInItsOwnDirectory() throws {
        let user = try ThrowawayUser()
        let root = makeTemporaryDirectory("incidentd-stand-in")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let me = "owner root (uid 0)"
        /// Makes `path` with `mode`, for `owner`.
        func directory(_ path: String, _ mode: mode_t, _ owner: uid_t = 0) {
            #expect(mkdir(path, 0o700) == 0 && chmod(path, mode) == 0 && chown(path, owner, owner == 0 ? 0 : owner) == 0, "\(path)")
        }
        directory(root + "/sticky", 0o1777)
        directory(root + "/sticky/own", 0o755, user.uid)
        directory(root + "/loose", 0o777)
        directory(root + "/loose/own", 0o755, user.uid)
        directory(root + "/stranger", 0o755, 65534)
        directory(root + "/stranger/own", 0o755, user.uid)
        directory(root + "/target", 0o755)
        directory(root + "/target/own", 0o755, user.uid)
        #expect(symlink(root + "/target", root + "/link") == 0 && lchown(root + "/link", 65534, 65534) == 0)
        directory(root + "/open", 0o777, user.uid)
        directory(root + "/granted", 0o755, user.uid)
        let cases: [(label: String, directory: String, fault: String, says: String)] = [
            ("sticky", root + "/sticky/own", root + "/sticky",
             "(mode 1777, \(me)) may be written by its group and others, sticky or not, where anyone could have made \(root)/sticky/own"),
            ("loose", root + "/loose/own", root + "/loose",
             "(mode 0777, \(me)) may be written by others than its owner, without the sticky bit, who could rename what is below it"),
            ("stranger", root + "/stranger/own", root + "/stranger", "belongs to a user other than root or incidentd's own user"),
            ("link", root + "/link/own", root + "/link", "is a symbolic link another user may point elsewhere"),
            ("open", root + "/open", root + "/open", "(mode 0777, owner \(user.name) (uid \(user.uid))) may be written by its group and others"),
            ("granted", root + "/granted", "", ""),
        ]
        for (label, directory, fault, says) in cases {
            let socket = directory + "/incidentd.sock"
            let received = directory + "/received"
            let standIn = try Self.standIn(as: user, at: socket, keepingIn: received, logPath: root + "/\(label).log")
            defer {
                if standIn.isRunning { kill(standIn.pid, SIGKILL) }
                standIn.wait()
            }
            #expect(standIn.isRunning, "\(label): \(readFile(root + "/\(label).log") ?? "")")
            let run = try runCommand(
                Binaries.incidentctl, ["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01", "--socket", socket])
            if fault.isEmpty {
                #expect(!run.stderr.contains("stand-in"), "\(label): \(run)")
                #expect((readFile(received) ?? "").contains("append"), "\(label): the report was sent: \(run)")
                continue
            }
            #expect(run.status == 3, "\(label): \(run)")
            #expect(
                run.stderr.contains(
                    "runs as \(user.name) (uid \(user.uid)), which the path does not show to be incidentd's user: the socket's directory \(directory): \(fault) (mode "),
                "\(label): \(run.stderr)")
            #expect(run.stderr.contains(says), "\(label): \(run.stderr)")
            #expect(!(readFile(received) ?? "").contains("append"), "\(label): nothing was sent: \(readFile(received) ?? "")")
        }
    }

    @Test(
        "incidentctl trusts a process of another user serving a socket that root bound in a directory of root's that others may not write, as systemd makes /run/incidentd for incidentd.socket and the daemon listens on it again as its own user",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/perl"),
            "needs root, useradd and perl"))
    func clientTrustsASocketRootBound() throws {
        let user = try ThrowawayUser()
        let root = makeTemporaryDirectory("incidentd-root-bound")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let directory = root + "/run"
        #expect(mkdir(directory, 0o755) == 0)
        let socket = directory + "/incidentd.sock"
        let received = root + "/received"
        #expect(FileManager.default.createFile(atPath: received, contents: nil) && chown(received, user.uid, user.gid) == 0)
        // Bound and listened on by root, then listened on again by the user it becomes, as systemd hands the socket
        // to the daemon: the peer credentials a client reads are the user's.
        let script = """
            use IO::Socket::UNIX; use POSIX;
            my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 5) or die "listen: $!";
            chmod 0666, $ARGV[0];
            POSIX::setgid($ARGV[3]); POSIX::setuid($ARGV[2]) or die "setuid: $!"; listen($l, 5) or die "listen again: $!";
            $| = 1; print STDERR "notice serving\n";
            while (my $c = $l->accept) { while (my $line = <$c>) { open(my $f, '>>', $ARGV[1]); print $f $line; close $f; print $c qq({"id":1,"ok":true}\n); } }
            """
        let server = try Self.launch(
            "/usr/bin/perl", ["-e", script, socket, received, "\(user.uid)", "\(user.gid)"], logPath: root + "/server.log")
        defer {
            if server.isRunning { kill(server.pid, SIGKILL) }
            server.wait()
        }
        #expect(server.isRunning, "\(readFile(root + "/server.log") ?? "")")
        let run = try runCommand(
            Binaries.incidentctl, ["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01", "--socket", socket])
        #expect(!run.stderr.contains("stand-in"), "\(run)")
        #expect((readFile(received) ?? "").contains("append"), "the report was sent: \(run)")
    }

    @Test("a daemon stopped after another daemon's socket took its path leaves that socket there, and the other daemon goes on serving")
    func stopLeavesAnotherDaemonsSocket() throws {
        let first = try Daemon()
        // Its socket removed by hand, the path is free for a second daemon, on a log of its own.
        #expect(unlink(first.socketPath) == 0)
        let logPath = first.root + "/second.log"
        let second = try Self.launch(
            Binaries.incidentd, ["--data-dir", first.root + "/second", "--socket", first.socketPath], logPath: logPath)
        defer {
            if second.isRunning { kill(second.pid, SIGKILL) }
            second.wait()
        }
        #expect(second.isRunning, "\(readFile(logPath) ?? "")")
        let secondSocket = Self.identity(first.socketPath)
        #expect(secondSocket != nil)

        #expect(first.stop() == 0)
        #expect(Self.identity(first.socketPath) == secondSocket, "the second daemon's socket is still there")
        #expect(
            first.log.contains("left \(first.socketPath) in place: it is no longer the socket this daemon made"), "\(first.log)")
        let client = try RawClient(path: first.socketPath)
        #expect(try client.call("status").isOK)
        kill(second.pid, SIGTERM)
        #expect(second.wait() == 0)
        #expect(Self.identity(first.socketPath) == nil, "the second daemon removed its own socket")
    }

    @Test(
        "at SIGTERM the socket file is removed while the daemon still listens, before it drains: an append stuck in fdatasync is answered once the path is gone",
        StorageFaults.required)
    func socketFileGoesBeforeTheListener() throws {
        let library = try #require(StorageFaults.library)
        let root = makeTemporaryDirectory("incidentd-stop-order")
        let notify = try NotifyListener(path: root + "/notify")
        let stall = root + "/stall-syncs"
        // Watchdog pings every 0.2 s, skipped while the writer is stuck: how the test knows the append reached it.
        let daemon = try Daemon(
            root: root,
            environment: [
                "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000", "LD_PRELOAD": library, "INCIDENTD_STALL_SYNCS": stall,
            ])
        while let message = notify.next(), message != "WATCHDOG=1" {}
        let client = try daemon.client()
        #expect(FileManager.default.createFile(atPath: stall, contents: nil))
        try client.send("append", ["events": [WireEvent.report(incident: "during-the-stall")]])
        try waitFor("the writer to be stuck") { notify.next(within: 1) == nil }

        kill(daemon.pid, SIGTERM)
        try waitFor("the socket file to be removed", timeout: 10) { Self.identity(daemon.socketPath) == nil }
        #expect(!daemon.log.contains("notice stopped"), "the daemon is still draining: \(daemon.log)")
        try FileManager.default.removeItem(atPath: stall)
        let answer = try client.receive()
        #expect(answer.isOK, "the append in flight is stored and answered: \(answer)")
        #expect(daemon.stop() == 0)
        #expect(daemon.log.contains("notice stopped"), "\(daemon.log)")
    }

    /// The permission bits of `path`, or nil.
    static func mode(_ path: String) -> mode_t? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    @Test("the socket's missing directories are made with mode 0755 under umask 000, and an existing one keeps its mode")
    func socketDirectoriesUnderOpenUmask() throws {
        let root = makeTemporaryDirectory("incidentd-socket-dir")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o700) == 0)
        let socket = root + "/run/sub/incidentd.sock"
        let daemon = try Self.launch(
            "/bin/sh", ["-c", "umask 000; exec \"$0\" \"$@\"", Binaries.incidentd, "--data-dir", root + "/data", "--socket", socket],
            logPath: root + "/log")
        defer {
            if daemon.isRunning { kill(daemon.pid, SIGKILL) }
            daemon.wait()
        }
        #expect(daemon.isRunning, "\(readFile(root + "/log") ?? "")")
        #expect(Self.mode(root + "/run") == 0o755, "run/ is \(String(Self.mode(root + "/run") ?? 0, radix: 8))")
        #expect(Self.mode(root + "/run/sub") == 0o755, "run/sub/ is \(String(Self.mode(root + "/run/sub") ?? 0, radix: 8))")
        #expect(Self.mode(root) == 0o700, "the directory that was there is left as it was")
        #expect(Self.mode(socket) == 0o660)
        kill(daemon.pid, SIGTERM)
        #expect(daemon.wait() == 0)
    }

    /// What `directory` holds, sorted.
    static func entries(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    @Test(
        "a file another thread of the daemon creates while the socket is being bound gets the process's umask, not one narrowed to the socket's mode; the socket has its mode, and nothing else is left beside it",
        SocketFaults.required)
    func bindingLeavesTheUmaskAlone() throws {
        let library = try #require(SocketFaults.library)
        let root = makeTemporaryDirectory("incidentd-umask")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let witness = root + "/made-during-bind"
        let socket = root + "/incidentd.sock"
        let daemon = try Self.launch(
            "/bin/sh", ["-c", "umask 022; exec \"$0\" \"$@\"", Binaries.incidentd, "--data-dir", root + "/data", "--socket", socket],
            logPath: root + "/log", environment: ["LD_PRELOAD": library, "INCIDENTD_CREATE_DURING_BIND": witness])
        defer {
            if daemon.isRunning { kill(daemon.pid, SIGKILL) }
            daemon.wait()
        }
        #expect(daemon.isRunning, "\(readFile(root + "/log") ?? "")")
        #expect(Self.mode(witness) == 0o644, "made with mode \(String(Self.mode(witness) ?? 0, radix: 8)) under umask 022")
        #expect(Self.mode(socket) == 0o660)
        #expect(Self.entries(root) == ["data", "incidentd.sock", "log", "made-during-bind"])
        #expect(try RawClient(path: socket).call("status").isOK)
        kill(daemon.pid, SIGTERM)
        #expect(daemon.wait() == 0)
    }

    @Test(
        "a connection whose peer credentials cannot be read is closed unserved with a warning in the log saying why (one a minute at most, counting those since), where it was closed without a word",
        SocketFaults.required)
    func unreadCredentialsAreLogged() throws {
        let library = try #require(SocketFaults.library)
        let daemon = try Daemon(environment: ["LD_PRELOAD": library, "INCIDENTD_FAIL_PEERCRED": "1"])
        for _ in 0..<3 {
            let client = try daemon.client()
            #expect(throws: HarnessError.self) { try client.call("status") }
        }
        try waitFor("the warning") {
            daemon.log.contains(
                "warning closed 1 connection unserved since the last such line, the last because reading the peer's credentials (SO_PEERCRED) failed: ")
        }
        #expect(daemon.log.split(separator: "\n").filter { $0.contains("unserved") }.count == 1, "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }

    @Test("a socket path of 107 bytes in a directory of 100 serves, with its mode, and nothing else is left beside it")
    func longSocketDirectory() throws {
        let root = makeTemporaryDirectory("incidentd-long-dir")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = root + "/" + String(repeating: "d", count: 100 - root.utf8.count - 1)
        #expect(directory.utf8.count == 100)
        #expect(mkdir(directory, 0o700) == 0)
        let socket = directory + "/i.sock"
        let daemon = try Self.launch(
            Binaries.incidentd, ["--data-dir", root + "/data", "--socket", socket], logPath: root + "/log")
        defer {
            if daemon.isRunning { kill(daemon.pid, SIGKILL) }
            daemon.wait()
        }
        #expect(daemon.isRunning, "\(readFile(root + "/log") ?? "")")
        #expect(Self.mode(socket) == 0o660)
        #expect(Self.entries(directory) == ["i.sock"])
        #expect(try RawClient(path: socket).call("status").isOK)
        kill(daemon.pid, SIGTERM)
        #expect(daemon.wait() == 0)
        #expect(Self.entries(directory).isEmpty)
    }

    @Test(
        "the socket's path, and a directory made for it, replaced by a symbolic link right after they were made: the file the link names keeps its mode",
        SocketFaults.required)
    func symlinkSwapsDoNotRedirectModes() throws {
        let library = try #require(SocketFaults.library)
        let root = makeTemporaryDirectory("incidentd-swap")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let victim = root + "/victim"
        #expect(FileManager.default.createFile(atPath: victim, contents: nil, attributes: [.posixPermissions: 0o600]))

        let socket = root + "/incidentd.sock"
        let swappedSocket = try Self.launch(
            Binaries.incidentd, ["--data-dir", root + "/data", "--socket", socket], logPath: root + "/socket.log",
            environment: ["LD_PRELOAD": library, "INCIDENTD_SWAP_PATH": socket, "INCIDENTD_SWAP_TARGET": victim])
        if swappedSocket.isRunning {
            kill(swappedSocket.pid, SIGTERM)
            #expect(swappedSocket.wait() == 0, "\(readFile(root + "/socket.log") ?? "")")
        }
        #expect(Self.mode(victim) == 0o600, "the socket's mode went to \(victim): \(String(Self.mode(victim) ?? 0, radix: 8))")

        let directory = root + "/run"
        let swappedDirectory = try Self.launch(
            Binaries.incidentd, ["--data-dir", root + "/data", "--socket", directory + "/incidentd.sock"],
            logPath: root + "/directory.log",
            environment: ["LD_PRELOAD": library, "INCIDENTD_SWAP_PATH": directory, "INCIDENTD_SWAP_TARGET": victim])
        let log = readFile(root + "/directory.log") ?? ""
        if swappedDirectory.isRunning {
            kill(swappedDirectory.pid, SIGKILL)
            swappedDirectory.wait()
            Issue.record("the daemon serves in a directory replaced by a symbolic link: \(log)")
        } else {
            #expect(swappedDirectory.wait() == 1, "\(log)")
        }
        #expect(log.contains("\(directory) is no longer the directory incidentd made for the socket"), "\(log)")
        #expect(Self.mode(victim) == 0o600, "the directory's mode went to \(victim): \(String(Self.mode(victim) ?? 0, radix: 8))")
    }

    @Test(
        "a socket directory that others could put a socket of their own in (writable by its group or others, sticky or not; another user's; below a directory others may write without the sticky bit; reached through another user's symbolic link) is refused as a configuration error, exit 78, naming the directory at fault, its mode and owner, and what to do")
    func unsafeSocketDirectoryIsRefused() throws {
        let root = makeTemporaryDirectory("incidentd-socket-dir")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let me = "owner root (uid 0)"
        var cases: [(label: String, mode: mode_t, owner: uid_t?, says: String)] = [
            ("open", 0o777, nil, "(mode 0777, \(me)) may be written by its group and others:"),
            ("group", 0o770, nil, "(mode 0770, \(me)) may be written by its group:"),
            ("sticky", 0o1777, nil, "(mode 1777, \(me)) may be written by its group and others, sticky or not:"),
        ]
        if getuid() == 0 {
            cases.append(("stranger", 0o755, 65534, "belongs to a user other than root or incidentd's own user"))
        }
        var directories: [(label: String, directory: String, fault: String, says: String)] = []
        for (label, mode, owner, says) in cases {
            let directory = root + "/" + label
            #expect(mkdir(directory, 0o700) == 0)
            #expect(chmod(directory, mode) == 0)
            if let owner { #expect(chown(directory, owner, owner) == 0) }
            directories.append((label, directory, directory, says))
        }
        // Below a directory anyone may write without the sticky bit, which could rename the socket's away.
        #expect(mkdir(root + "/loose", 0o700) == 0 && chmod(root + "/loose", 0o777) == 0 && mkdir(root + "/loose/below", 0o755) == 0)
        directories.append(("below", root + "/loose/below", root + "/loose", "(mode 0777, \(me)) may be written by others than its owner, without the sticky bit"))
        // Not made yet, where it would be made below such a directory: refused before anything is made.
        directories.append(("new below", root + "/loose/new/sub", root + "/loose", "(mode 0777, \(me)) may be written by others than its owner, without the sticky bit"))
        if getuid() == 0 {
            // Through another user's symbolic link, which they may point elsewhere.
            #expect(mkdir(root + "/target", 0o755) == 0 && symlink(root + "/target", root + "/link") == 0)
            #expect(lchown(root + "/link", 65534, 65534) == 0)
            directories.append(("link", root + "/link", root + "/link", "is a symbolic link another user may point elsewhere"))
        }
        for (label, directory, fault, says) in directories {
            let logPath = root + "/\(label).log"
            let daemon = try Self.launch(
                Binaries.incidentd, ["--data-dir", root + "/data", "--socket", directory + "/incidentd.sock"], logPath: logPath)
            let log = readFile(logPath) ?? ""
            Self.expectRefused(daemon, status: 78, "\(label), in \(directory)", log: log)
            #expect(log.contains("cannot start: the socket's directory \(directory): \(fault) (mode "), "\(label): \(log)")
            #expect(log.contains(says), "\(label): \(log)")
            #expect(Self.identity(directory) == nil || Self.entries(directory).isEmpty, "\(label): nothing is made there")
            #expect(Self.identity(root + "/loose/new") == nil, "\(label): no socket directory is made")
            #expect(Self.identity(root + "/data") == nil, "\(label): refused before the log is opened, it makes no data directory")
        }
    }

    @Test("a start refused for its socket path (a file there, exit 78 as no restart mends it; a socket another daemon serves, exit 1) is refused before the log is opened: it makes no data directory, and leaves an empty one as it was")
    func refusedSocketPathMakesNoLog() throws {
        let served = try Daemon()
        let root = makeTemporaryDirectory("incidentd-refused")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o700) == 0)
        let file = root + "/afile"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("kept".utf8)))
        let empty = root + "/empty"
        #expect(mkdir(empty, 0o700) == 0)
        let cases = [
            ("a file", file, "cannot start: \(file) exists and is not a socket; refusing to replace it", Int32(78)),
            ("a served socket", served.socketPath, "cannot start: another daemon is serving \(served.socketPath)", 1),
        ]
        for (label, socket, says, status) in cases {
            for (index, dataDir) in [root + "/new/data", empty].enumerated() {
                let logPath = root + "/\(index).log"
                unlink(logPath)
                let daemon = try Self.launch(Binaries.incidentd, ["--data-dir", dataDir, "--socket", socket], logPath: logPath)
                let log = readFile(logPath) ?? ""
                Self.expectRefused(daemon, status: status, label, log: log)
                #expect(log.contains(says), "\(label): \(log)")
                #expect(Self.identity(root + "/new") == nil, "\(label): no data directory is made: \(Self.entries(root + "/new"))")
                #expect(Self.entries(empty).isEmpty, "\(label): nothing is made in the data directory: \(Self.entries(empty))")
            }
        }
        #expect(readFile(file) == "kept")
        #expect(try served.client().call("status").isOK)
        #expect(served.stop() == 0)
    }

    @Test("a socket in a directory of the daemon's user that only it may write, below /tmp (sticky) or below a sticky directory, reached through its own link or not, is served")
    func safeSocketDirectoriesServe() throws {
        let root = makeTemporaryDirectory("incidentd-socket-dir")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let own = root + "/own"
        let sticky = root + "/sticky"
        #expect(mkdir(own, 0o700) == 0 && chmod(own, 0o750) == 0)
        #expect(mkdir(sticky, 0o700) == 0 && chmod(sticky, 0o1777) == 0 && mkdir(sticky + "/mine", 0o700) == 0)
        #expect(symlink(own, root + "/link") == 0)
        let sockets = [own + "/incidentd.sock", sticky + "/mine/incidentd.sock", root + "/link/other.sock"]
        for (index, socket) in sockets.enumerated() {
            let logPath = root + "/\(index).log"
            let daemon = try Self.launch(Binaries.incidentd, ["--data-dir", root + "/data", "--socket", socket], logPath: logPath)
            defer {
                if daemon.isRunning { kill(daemon.pid, SIGKILL) }
                daemon.wait()
            }
            #expect(daemon.isRunning, "\(socket): \(readFile(logPath) ?? "")")
            #expect(try RawClient(path: socket).call("status").isOK)
            kill(daemon.pid, SIGTERM)
            #expect(daemon.wait() == 0)
            #expect(Self.mode(socket) == nil, "\(socket) is removed at the daemon's end")
        }
    }

    @Test(
        "a stale socket that cannot be removed (its directory made append-only) is named as a stale socket incidentd cannot remove, with why, not as one another process made meanwhile, and exits 78 (EX_CONFIG, which systemd does not restart: no restart removes it), where it was 1",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/chattr"), "needs root and chattr"))
    func staleSocketThatCannotBeRemoved() throws {
        let daemon = try Daemon()
        // Killed, it leaves its socket, which nothing listens on.
        daemon.crash()
        #expect(Self.identity(daemon.socketPath) != nil, "the premise: the socket is left")
        let attributes = try runCommand("/usr/bin/chattr", ["+a", daemon.root])
        try #require(attributes.status == 0, "chattr +a \(daemon.root): \(attributes.stderr)")
        defer { _ = try? runCommand("/usr/bin/chattr", ["-a", daemon.root]) }
        #expect(throws: HarnessError.self) { try daemon.start() }
        #expect(daemon.child?.wait() == 78, "\(daemon.log)")
        #expect(
            daemon.log.contains(
                "\(daemon.socketPath) is a stale socket (nothing listens on it; it belongs to root (uid 0)), but incidentd cannot remove it: Operation not permitted"),
            "\(daemon.log)")
        #expect(!daemon.log.contains("meanwhile"), "\(daemon.log)")
    }

    @Test("a relative --socket and --data-dir are logged as absolute paths, from the directory the daemon started in")
    func relativePathsLoggedAbsolute() throws {
        let root = makeTemporaryDirectory("incidentd-relative")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let real = try #require(realpath(root, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        })
        let daemon = try Self.launch(
            "/bin/sh", ["-c", #"cd "$1" && exec "$2" --data-dir ./data --socket run/./incidentd.sock"#, "sh", root, Binaries.incidentd],
            logPath: root + "/log")
        defer {
            if daemon.isRunning { kill(daemon.pid, SIGKILL) }
            daemon.wait()
        }
        let log = readFile(root + "/log") ?? ""
        #expect(daemon.isRunning, "\(log)")
        #expect(log.contains("socket=\(real)/run/incidentd.sock") && log.contains("dataDir=\(real)/data "), "\(log)")
        #expect(try RawClient(path: root + "/run/incidentd.sock").call("status").isOK)
        kill(daemon.pid, SIGTERM)
        #expect(daemon.wait() == 0)
    }

    /// Leaves a socket file at `path` that nothing listens on, as a daemon killed after binding it does.
    static func leaveSocket(at path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw HarnessError("bind \(path): \(String(cString: strerror(errno)))") }
    }

    @Test(
        "the private directories that daemons killed while binding left beside the socket are removed at start: only those of the daemon's user, named as mkdtemp names them, holding nothing or only the socket, never through a symbolic link")
    func stalePrivateDirectoriesAreRemoved() throws {
        let root = makeTemporaryDirectory("incidentd-leftover")
        func directory(_ name: String) -> String {
            let path = root + "/" + name
            #expect(mkdir(path, 0o700) == 0, "mkdir \(path)")
            return path
        }
        let empty = directory(".incidentd-AbC123")
        let withSocket = directory(".incidentd-s0CK3t")
        try Self.leaveSocket(at: withSocket + "/s")
        let withFile = directory(".incidentd-F1le00")
        #expect(FileManager.default.createFile(atPath: withFile + "/s", contents: Data("not a socket".utf8)))
        let withMore = directory(".incidentd-M0re00")
        try Self.leaveSocket(at: withMore + "/s")
        #expect(FileManager.default.createFile(atPath: withMore + "/notes", contents: Data()))
        let anothers = directory(".incidentd-0ther1")
        #expect(chown(anothers, 65534, 65534) == 0)
        let target = directory("target")
        let link = root + "/.incidentd-L1nk00"
        #expect(symlink(target, link) == 0)
        let misnamed = directory(".incidentd-toolong")
        // One a daemon is binding in now holds a lock on it.
        let binding = directory(".incidentd-B1nd00")
        let lock = open(binding, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(lock >= 0 && flock(lock, LOCK_EX) == 0)
        defer { close(lock) }

        let daemon = try Daemon(root: root)
        for removed in [empty, withSocket] {
            #expect(access(removed, F_OK) != 0, "\(removed) is left")
            #expect(daemon.log.contains("removed \(removed), left beside the socket by a daemon killed while it bound its socket"), "\(daemon.log)")
        }
        for kept in [withFile, withFile + "/s", withMore + "/s", withMore + "/notes", anothers, target, misnamed, binding] {
            #expect(access(kept, F_OK) == 0, "\(kept) was removed")
        }
        var info = stat()
        #expect(lstat(link, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK, "the link is left as it was")
        // Nothing of its own left beside the socket either: only the directories above and what the daemon keeps.
        let mine = (try FileManager.default.contentsOfDirectory(atPath: root)).filter { $0.hasPrefix(".incidentd-") }.sorted()
        #expect(
            mine == [".incidentd-0ther1", ".incidentd-B1nd00", ".incidentd-F1le00", ".incidentd-L1nk00", ".incidentd-M0re00", ".incidentd-toolong"],
            "\(mine)")
        #expect(try daemon.client().call("status").isOK)
        #expect(daemon.stop() == 0)
    }

    @Test("a socket directory that cannot be made (a file on its way) is named, with why, before the log is opened, exit 78 (EX_CONFIG, not restarted: only another path mends it): no data directory is made")
    func socketDirectoryCannotBeMade() throws {
        let root = makeTemporaryDirectory("incidentd-socket-dir")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "not a directory".write(toFile: root + "/file", atomically: true, encoding: .utf8)
        let daemon = try Self.launch(
            Binaries.incidentd, ["--data-dir", root + "/data", "--socket", root + "/file/sub/incidentd.sock"],
            logPath: root + "/log")
        let log = readFile(root + "/log") ?? ""
        #expect(daemon.wait() == 78, "\(log)")
        #expect(log.contains("cannot create the socket's directory \(root)/file/sub: Not a directory"), "\(log)")
        #expect(Self.identity(root + "/data") == nil, "no data directory is made")
    }

    @Test(
        "a socket path its user may not make or bind, a socket directory in a directory of root's (0755) and a socket in a directory of its own it may not write (0555), stops incidentd with exit 78 (EX_CONFIG), naming it and why, where it was 1 and systemd restarted it forever",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root and setpriv"))
    func socketPathItsUserMayNotMake() throws {
        let root = makeTemporaryDirectory("incidentd-socket-dir")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let state = root + "/state"
        #expect(mkdir(state, 0o700) == 0 && chown(state, 65534, 65534) == 0)
        let readOnly = root + "/read-only"
        #expect(mkdir(readOnly, 0o700) == 0 && chown(readOnly, 65534, 65534) == 0 && chmod(readOnly, 0o555) == 0)
        let cases = [
            ("directory", root + "/run/incidentd.sock", "cannot start: cannot create the socket's directory \(root)/run: Permission denied"),
            ("read-only", readOnly + "/incidentd.sock",
             "cannot start: cannot bind the socket \(readOnly)/incidentd.sock: cannot make a private directory beside it to bind in: Permission denied"),
        ]
        for (label, socket, says) in cases {
            let logPath = root + "/\(label).log"
            let daemon = try Self.launch(
                "/usr/bin/setpriv",
                ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.incidentd, "--data-dir", state + "/data-\(label)", "--socket", socket],
                logPath: logPath)
            let log = readFile(logPath) ?? ""
            Self.expectRefused(daemon, status: 78, label, log: log)
            #expect(log.contains(says), "\(label): \(log)")
        }
        #expect(Self.identity(root + "/run") == nil && Self.entries(readOnly).isEmpty)
    }
}
