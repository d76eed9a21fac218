import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A system user made for one test with `useradd`, removed with `userdel` when released.
final class ThrowawayUser {
    let name: String
    let uid: UInt32
    let gid: UInt32

    static var canCreate: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd")
            && (FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser")
                || FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"))
    }

    init() throws {
        let name = "incdtest\(getpid() % 100_000)x\(UInt16.random(in: 0...UInt16.max))"
        var last = CommandResult(status: 0, stdout: "", stderr: "")
        // Another test may hold the lock on /etc/passwd for a moment: retry until a deadline.
        try waitFor("useradd \(name)", timeout: 30) {
            last = try runCommand(
                "/usr/sbin/useradd", ["--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name])
            return last.status == 0
        }
        guard let entry = getpwnam(name) else { throw HarnessError("useradd \(name) made no user: \(last.stderr)") }
        self.name = name
        uid = entry.pointee.pw_uid
        gid = entry.pointee.pw_gid
    }

    deinit {
        _ = try? waitFor("userdel \(name)", timeout: 30) {
            try runCommand("/usr/sbin/userdel", [name]).status == 0 || getpwnam(name) == nil
        }
    }

    /// Runs `incidentctl` as this user.
    func ctl(_ arguments: [String], socket: String, stdin: String? = nil) throws -> CommandResult {
        let command = arguments + ["--socket", socket]
        if FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") {
            return try runCommand("/usr/sbin/runuser", ["-u", name, "--", Binaries.incidentctl] + command, stdin: stdin)
        }
        return try runCommand(
            "/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(gid)", "--init-groups", Binaries.incidentctl] + command, stdin: stdin)
    }
}

extension ThrowawayUser {
    /// Runs `incidentctl` as this user through `setpriv`, with the supplementary groups `groups` sets
    /// (`--groups=GID,...`, `--clear-groups` or `--init-groups`), whatever the group database says.
    func ctl(_ arguments: [String], socket: String, groups: String) throws -> CommandResult {
        try runCommand(
            "/usr/bin/setpriv",
            ["--reuid=\(uid)", "--regid=\(gid)", groups, Binaries.incidentctl] + arguments + ["--socket", socket])
    }
}

/// A system group made for one test with `groupadd`, removed with `groupdel` when released.
final class ThrowawayGroup {
    let name: String
    let gid: UInt32

    init() throws {
        let name = "incdgrp\(getpid() % 100_000)x\(UInt16.random(in: 0...UInt16.max))"
        var last = CommandResult(status: 0, stdout: "", stderr: "")
        try waitFor("groupadd \(name)", timeout: 30) {
            last = try runCommand("/usr/sbin/groupadd", ["--system", name])
            return last.status == 0
        }
        guard let entry = getgrnam(name) else { throw HarnessError("groupadd \(name) made no group: \(last.stderr)") }
        self.name = name
        gid = entry.pointee.gr_gid
    }

    deinit {
        _ = try? waitFor("groupdel \(name)", timeout: 30) {
            try runCommand("/usr/sbin/groupdel", [name]).status == 0 || getgrnam(name) == nil
        }
    }

    /// Adds `user` to this group, as `usermod -aG` (or a sysusers.d `m` line) does.
    func add(_ user: ThrowawayUser) throws {
        try waitFor("usermod -aG \(name) \(user.name)", timeout: 30) {
            try runCommand("/usr/sbin/usermod", ["-a", "-G", name, user.name]).status == 0
        }
    }
}

@Suite("Access control")
struct AccessTests {
    /// Lets `user` reach the daemon's socket the way a deployment does: through the socket's group (mode 0660).
    static func admit(_ user: ThrowawayUser, to daemon: Daemon) throws {
        #expect(chmod(daemon.root, 0o711) == 0)
        #expect(chown(daemon.socketPath, 0, user.gid) == 0, "chown the socket: \(String(cString: strerror(errno)))")
        var info = stat()
        #expect(lstat(daemon.socketPath, &info) == 0)
        #expect(info.st_mode & 0o7777 == 0o660)
    }

    @Test(
        "the shipped arrangement: a user reaches the socket through its group (mode 0660), and is told which group to join when not in it; the roles then decide what the user may do",
        .enabled(if: ThrowawayUser.canCreate, "needs root, useradd and runuser or setpriv to create a throwaway user"))
    func socketGroupThenRoles() throws {
        // Stand-ins for incidentd.socket's SocketGroup (incidentd-clients) and for incidentd-readers.
        let clients = try ThrowawayGroup()
        let readers = try ThrowawayGroup()
        let user = try ThrowawayUser()
        let daemon = try Daemon.configured("[access.readers]\ngroups = [\"\(readers.name)\"]\n")
        #expect(chmod(daemon.root, 0o711) == 0)
        #expect(chown(daemon.socketPath, 0, clients.gid) == 0, "chown the socket: \(String(cString: strerror(errno)))")

        // A role, but no way to the socket: the client says which group reaching it takes.
        try readers.add(user)
        let unreachable = try user.ctl(["status"], socket: daemon.socketPath)
        #expect(unreachable.status == 3, "\(unreachable.stderr)")
        #expect(
            unreachable.stderr.contains(
                "cannot reach incidentd at \(daemon.socketPath): Permission denied: reaching it takes membership of its group \"\(clients.name)\""),
            "\(unreachable.stderr)")
        // A socket of root's group, as a daemon that root started makes it: not a group to tell a user to join.
        #expect(chown(daemon.socketPath, 0, 0) == 0)
        let rootGroup = try user.ctl(["status"], socket: daemon.socketPath)
        #expect(rootGroup.status == 3, "\(rootGroup.stderr)")
        #expect(!rootGroup.stderr.contains("membership"), "\(rootGroup.stderr)")
        #expect(
            rootGroup.stderr.contains("is open to its group, root: the daemon runs as root; reaching it takes root (sudo incidentctl …), or a daemon of your own"),
            "\(rootGroup.stderr)")
        // A socket only its owner may write (0644, as systemd-socket-activate makes one): a permission, not "is it running?".
        #expect(chmod(daemon.socketPath, 0o644) == 0)
        let ownerOnly = try user.ctl(["status"], socket: daemon.socketPath)
        #expect(ownerOnly.status == 3, "\(ownerOnly.stderr)")
        #expect(!ownerOnly.stderr.contains("is it running"), "\(ownerOnly.stderr)")
        #expect(
            ownerOnly.stderr.contains("Permission denied: the socket (owner \"root\", group \"root\", mode 0644) may be written only by root, and connecting takes write permission on it"),
            "\(ownerOnly.stderr)")
        #expect(chmod(daemon.socketPath, 0o660) == 0)
        #expect(chown(daemon.socketPath, 0, clients.gid) == 0)

        // In the socket's group too: the reader's role decides, so it reads and may not report.
        try clients.add(user)
        let status = try user.ctl(["status", "--format", "json"], socket: daemon.socketPath)
        #expect(status.status == 0, "\(status.stderr)")
        let report = try user.ctl(
            ["report", "--city", "Kupiansk", "--kind", "strike", "--occurred", "2022-03-01"], socket: daemon.socketPath)
        #expect(report.status == 1)
        #expect(report.stderr.contains("permission_denied"), "\(report.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "permission_denied without a role; with the reporter role the user appends (but may not verify or back up) and recordedBy is the peer's uid and name",
        .enabled(if: ThrowawayUser.canCreate, "needs root, useradd and runuser or setpriv to create a throwaway user"))
    func roles() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon()
        try Self.admit(user, to: daemon)
        let report = [
            "report", "--city", "Kupiansk", "--kind", "demonstration", "--occurred", "2022-03-01", "--incident",
            "kupiansk-by-reporter", "--format", "json",
        ]

        // No role at all: every operation is refused, nothing is stored.
        for arguments in [["status"], ["cities"], report] {
            let refused = try user.ctl(arguments, socket: daemon.socketPath)
            #expect(refused.status == 1, "\(arguments): \(refused.stderr)")
            #expect(refused.stderr.contains("permission_denied"), "\(arguments): \(refused.stderr)")
            #expect(refused.stderr.contains(user.name), "the refusal names the user: \(refused.stderr)")
        }
        #expect(try daemon.client().headPosition() == 0)
        // export asks for the head first (status); its refusal names what the user asked for.
        let export = try user.ctl(["export"], socket: daemon.socketPath)
        #expect(export.status == 1 && export.stderr.contains("permission_denied"), "\(export.stderr)")
        #expect(export.stderr.contains("may not export") && !export.stderr.contains("may not status"), "\(export.stderr)")

        // The reporter role: appends and queries, but not the admin's verify.
        let config = daemon.root + "/incidentd.toml"
        try "[access.reporters]\nusers = [\"\(user.name)\"]\n".write(toFile: config, atomically: true, encoding: .utf8)
        #expect(daemon.stop() == 0)
        daemon.extraArguments = ["--config", config]
        try daemon.start()
        try Self.admit(user, to: daemon)

        let appended = try user.ctl(report, socket: daemon.socketPath)
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.json == ["incident": "kupiansk-by-reporter", "position": 1])
        let status = try user.ctl(["status", "--format", "json"], socket: daemon.socketPath)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.json?["position"]?.intValue == 1)
        let verify = try user.ctl(["verify"], socket: daemon.socketPath)
        #expect(verify.status == 1)
        #expect(verify.stderr.contains("permission_denied"), "\(verify.stderr)")
        let backup = try user.ctl(["backup", daemon.root + "/by-reporter"], socket: daemon.socketPath)
        #expect(backup.status == 1)
        #expect(backup.stderr.contains("permission_denied"), "\(backup.stderr)")
        #expect(!FileManager.default.fileExists(atPath: daemon.root + "/by-reporter"))

        // recordedBy comes from the socket's peer credentials, and a request cannot claim it.
        let stored = try #require(try daemon.client().allEvents().first)
        #expect(stored["recordedBy"] == ["uid": .int(Int64(user.uid)), "user": .string(user.name)])
        let claim = #"{"type":"incident-reported","incident":"kupiansk-claimed","occurredAt":"2022-03-01","recordedBy":{"uid":0,"user":"root"},"data":{"city":"Kupiansk","kind":"strike"}}"#
        let claimed = try user.ctl(["append", "-"], socket: daemon.socketPath, stdin: claim + "\n")
        #expect(claimed.status == 1)
        #expect(claimed.stderr.contains("invalid_event") && claimed.stderr.contains("recordedBy"), "\(claimed.stderr)")
        #expect(try daemon.client().headPosition() == 1)
    }

    @Test(
        "a role held through a group is the peer process's as it connected (SO_PEERGROUPS): given the group by setpriv --groups, it has the role the group database does not give it; having dropped its groups (--clear-groups), it no longer has the role the database gives it",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root, useradd and setpriv"))
    func rolesFromTheProcessGroups() throws {
        let readers = try ThrowawayGroup()
        let user = try ThrowawayUser()
        let rootGroup = try #require(getgrgid(0).flatMap { $0.pointee.gr_name.map { String(cString: $0) } })
        let daemon = try Daemon.configured(
            "[access.readers]\ngroups = [\"\(readers.name)\"]\n[access.admins]\ngroups = [\"\(rootGroup)\"]\n")
        try Self.admit(user, to: daemon)

        // Not a member in /etc/group: the process that holds the group anyway is a reader, and no more.
        let given = try user.ctl(["status", "--format", "json"], socket: daemon.socketPath, groups: "--groups=\(readers.gid)")
        #expect(given.status == 0, "\(given.stderr)")
        let notAdmin = try user.ctl(["verify"], socket: daemon.socketPath, groups: "--groups=\(readers.gid)")
        #expect(notAdmin.status == 1 && notAdmin.stderr.contains("permission_denied"), "\(notAdmin.stderr)")
        let without = try user.ctl(["status"], socket: daemon.socketPath, groups: "--clear-groups")
        #expect(without.status == 1 && without.stderr.contains("permission_denied"), "\(without.stderr)")
        // Gid 0 counts when the process has it; among more groups than the first read has room for, so does the
        // role's group.
        let admin = try user.ctl(["verify"], socket: daemon.socketPath, groups: "--groups=0")
        #expect(admin.status == 0, "\(admin.stderr)")
        let many = (0..<100).map { "\(60_000 + $0)" }.joined(separator: ",") + ",\(readers.gid)"
        let amongMany = try user.ctl(["status", "--format", "json"], socket: daemon.socketPath, groups: "--groups=\(many)")
        #expect(amongMany.status == 0, "\(amongMany.stderr)")

        // A member in /etc/group: its login's processes are readers, one that dropped its groups is not.
        try readers.add(user)
        let member = try user.ctl(["status", "--format", "json"], socket: daemon.socketPath, groups: "--init-groups")
        #expect(member.status == 0, "\(member.stderr)")
        let dropped = try user.ctl(["status"], socket: daemon.socketPath, groups: "--clear-groups")
        #expect(dropped.status == 1, "\(dropped.stderr)")
        #expect(dropped.stderr.contains("permission_denied"), "\(dropped.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "events --follow by a user without the reader role is refused naming the following of the log, with and without a filter or a --from past the head, not the status it asks for first (as export's refusal names the export)",
        .enabled(if: ThrowawayUser.canCreate, "needs root, useradd and runuser or setpriv to create a throwaway user"))
    func followerWithoutARole() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon()
        try Self.admit(user, to: daemon)
        for arguments in [["events", "--follow"], ["events", "--follow", "--city", "Kupiansk"], ["events", "--follow", "--from", "100"]] {
            let refused = try user.ctl(arguments, socket: daemon.socketPath)
            #expect(refused.status == 1, "\(arguments): \(refused.stderr)")
            #expect(
                refused.stderr.contains(
                    "incidentctl: permission_denied: \(user.name) (uid \(user.uid)) may not follow the log (events --follow, which subscribes): it needs the reader role"),
                "\(arguments): \(refused.stderr)")
            #expect(!refused.stderr.contains("may not status"), "\(arguments): \(refused.stderr)")
            #expect(refused.stdout.isEmpty, "\(arguments): \(refused.stdout)")
        }
        let export = try user.ctl(["export"], socket: daemon.socketPath)
        #expect(export.status == 1 && export.stderr.contains("may not export: it needs the reader role"), "\(export.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a peer holding no role has its first request answered permission_denied, and the connection is closed then, with the client's side still open: the rest of what it sent is neither answered nor carried out; a reader refused is not closed",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/perl")
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root, useradd, setpriv and perl (perl-base) for a client of several requests as another user"))
    func roleLessPeerIsClosedAfterItsFirstAnswer() throws {
        let user = try ThrowawayUser()
        let reader = try ThrowawayUser()
        let daemon = try Daemon.configured("[access.readers]\nusers = [\"\(reader.name)\"]\n")
        try Self.admit(user, to: daemon)
        // Requests sent at once, an append among them; the client keeps its side open and reads up to as many answers as
        // it asked for, until the daemon closes (or the alarm: the daemon kept the connection open and answered fewer).
        func run(_ who: ThrowawayUser, cities: Int) throws -> [Substring] {
            let script = """
                use IO::Socket::UNIX;
                $| = 1;
                # The daemon may close while the requests are still being written.
                $SIG{PIPE} = 'IGNORE';
                my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!";
                print $s qq({"id":1,"op":"status"}\\n{"id":2,"op":"append","events":[{"type":"incident-reported","incident":"kupiansk-roleless","occurredAt":"2022-03-01","data":{"city":"Kupiansk","kind":"strike"}}]}\\n) . (qq({"id":3,"op":"cities"}\\n) x \(cities));
                alarm 20;
                for (1..\(cities + 2)) { my $line = <$s>; last unless defined $line; print $line; }
                print((defined(<$s>) ? "more" : "closed") . "\\n") if \(cities) > 2;
                """
            let result = try runCommand(
                "/usr/bin/setpriv",
                ["--reuid=\(who.uid)", "--regid=\(who.gid)", "--clear-groups", "/usr/bin/perl", "-e", script, daemon.socketPath])
            #expect(result.status == 0, "the daemon kept the connection open: \(result.stdout) \(result.stderr)")
            return result.stdout.split(separator: "\n")
        }
        let refused = try run(user, cities: 2000)
        #expect(refused.count == 2 && refused.last == "closed", "\(refused)")
        #expect(refused.first?.contains("permission_denied") == true && refused.first?.contains(#""id":1"#) == true, "\(refused)")
        #expect(try daemon.client().headPosition() == 0)

        // A reader is refused the append and goes on being served.
        try Self.admit(reader, to: daemon)
        let answers = try run(reader, cities: 2)
        #expect(answers.count == 4, "\(answers)")
        #expect(answers.dropFirst().first?.contains("permission_denied") == true, "\(answers)")
        #expect(answers.filter { $0.contains(#""cities":["#) }.count == 2, "\(answers)")
        #expect(try daemon.client().headPosition() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a refusal is logged once per connection, at warning, with the peer's uid, user name and the operation refused, however many of its requests are refused, and once a minute per uid however often it reconnects",
        .enabled(
            if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/perl")
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root, useradd, setpriv and perl (perl-base) for a client of several requests as another user"))
    func refusalsAreLogged() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon.configured("[access.readers]\nusers = [\"\(user.name)\"]\n")
        try Self.admit(user, to: daemon)
        // One connection of a reader (a peer with no role is closed after its first refusal), three requests, each
        // refused.
        let script = """
            use IO::Socket::UNIX;
            my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!";
            print $s qq({"id":1,"op":"verify"}\\n{"id":2,"op":"backup","path":"/nonexistent/b"}\\n{"id":3,"op":"verify"}\\n);
            for (1..3) { my $line = <$s>; print $line; }
            """
        let client = try runCommand(
            "/usr/bin/setpriv",
            ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "/usr/bin/perl", "-e", script, daemon.socketPath])
        #expect(client.status == 0, "\(client.stderr)")
        #expect(client.stdout.components(separatedBy: "permission_denied").count == 4, "\(client.stdout)")
        let line = "warning permission denied: \(user.name) (uid \(user.uid)) may not verify, which needs the admin role; it holds the reader role."
        try waitFor("the refusal in the daemon's log") { daemon.log.contains(line) }
        #expect(daemon.log.contains("op=verify"), "\(daemon.log)")
        #expect(daemon.log.contains("uid=\(user.uid)") && daemon.log.contains("user=\(user.name)"), "\(daemon.log)")

        // Another connection of the same uid within the minute is counted, not logged: a peer reconnecting in a loop
        // does not flood the journal. The line would be written before the answer is.
        let again = try user.ctl(["verify"], socket: daemon.socketPath)
        #expect(again.status == 1 && again.stderr.contains("permission_denied"), "\(again.stderr)")
        #expect(daemon.log.components(separatedBy: "may not verify").count == 2, "\(daemon.log)")
        // Another uid's is logged at once.
        let other = try ThrowawayUser()
        try Self.admit(other, to: daemon)
        let stranger = try other.ctl(["cities"], socket: daemon.socketPath)
        #expect(stranger.status == 1, "\(stranger.stderr)")
        try waitFor("the other uid's refusal") { daemon.log.contains("\(other.name) (uid \(other.uid)) may not cities") }
        #expect(daemon.log.components(separatedBy: "permission denied:").count == 3, "\(daemon.log)")
        #expect(daemon.stop() == 0)
    }
}
