import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A data directory someone else prepared, or may write: what incidentd and `incidentctl --data-dir` open in it
/// must not lead them, root's above all, to write a file that is not the log's.
@Suite("Data directory trust")
struct DataDirectoryTrustTests {
    /// A root-owned file of 0600, as /etc/shadow is, and its bytes.
    static func victim(in root: String) throws -> (path: String, bytes: [UInt8]) {
        let path = root + "/victim"
        let bytes = Array("root-owned precious file\nline2\n".utf8)
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600]))
        return (path, bytes)
    }

    /// Whether the file at `path` still holds `bytes` and nothing more.
    static func unchanged(_ path: String, _ bytes: [UInt8]) -> Bool {
        FileManager.default.contents(atPath: path).map(Array.init) == bytes
    }

    @Test("a lock.mdb that is a symbolic link to a file of root's: verify --data-dir and replay --data-dir refuse it (exit 1, permission_denied, naming it), incidentd --recover-from and incidentd --data-dir refuse it (incidentd with exit 78), and so does incidentd given an incidentd.lock that is one; the file is left as it was")
    func lockFileLinkIsNotFollowed() throws {
        let stored = try VerifyTests.storedArticle()
        let root = makeTemporaryDirectory("incidentd-trust")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (victim, bytes) = try Self.victim(in: root)
        let planted = root + "/planted"
        #expect(mkdir(planted, 0o700) == 0)
        try FileManager.default.copyItem(atPath: stored.dataDir + "/data.mdb", toPath: planted + "/data.mdb")
        #expect(symlink(victim, planted + "/lock.mdb") == 0)

        for command in ["verify", "replay"] {
            let run = try runCommand(Binaries.incidentctl, [command, "--data-dir", planted])
            #expect(run.status == 1, "\(command): \(run)")
            #expect(run.stderr.contains("permission_denied: cannot open the log in \(planted): \(planted)/lock.mdb is a symbolic link"), "\(command): \(run.stderr)")
            #expect(Self.unchanged(victim, bytes), "\(command) wrote the file the link leads to")
        }

        let recovered = try runCommand(Binaries.incidentd, ["--recover-from", planted, "--data-dir", root + "/recovered", "--log-level", "warning"])
        #expect(recovered.status != 0, "\(recovered)")
        #expect((recovered.stdout + recovered.stderr).contains("\(planted)/lock.mdb is a symbolic link"), "\(recovered)")
        #expect(Self.unchanged(victim, bytes), "--recover-from wrote the file the link leads to")

        let lockLinked = root + "/lock-linked"
        #expect(mkdir(lockLinked, 0o700) == 0)
        #expect(symlink(victim, lockLinked + "/incidentd.lock") == 0)
        for (index, (dataDir, says)) in [(planted, "\(planted)/lock.mdb is a symbolic link"), (lockLinked, "\(lockLinked)/incidentd.lock is a symbolic link")].enumerated() {
            let logPath = root + "/\(index).log"
            let daemon = try SocketTests.launch(
                Binaries.incidentd, ["--data-dir", dataDir, "--socket", root + "/run\(index)/incidentd.sock"], logPath: logPath)
            let log = readFile(logPath) ?? ""
            SocketTests.expectRefused(daemon, status: 78, dataDir, log: log)
            #expect(log.contains(says), "\(dataDir): \(log)")
            #expect(Self.unchanged(victim, bytes), "incidentd --data-dir \(dataDir) wrote the file the link leads to")
        }
    }

    /// A directory `name` in `root` holding a copy of `stored`'s data.mdb, of `owner` (files and directory) and `mode`.
    static func copy(of stored: Daemon, in root: String, _ name: String, owner: uid_t, mode: mode_t) throws -> String {
        let directory = root + "/" + name
        #expect(mkdir(directory, 0o700) == 0)
        try FileManager.default.copyItem(atPath: stored.dataDir + "/data.mdb", toPath: directory + "/data.mdb")
        #expect(chown(directory + "/data.mdb", owner, owner) == 0 && chown(directory, owner, owner) == 0 && chmod(directory, mode) == 0)
        return directory
    }

    /// The owner of the file at `path`, or nil.
    static func owner(_ path: String) -> uid_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_uid : nil
    }

    @Test(
        "root's verify --data-dir and replay --data-dir read a directory of another user's as that user, in that user's primary group (the lock.mdb they make is that user's, not root's, and not in the directory's group, root's); a directory its group or others may write is refused (exit 1, permission_denied), as is, to a user who is not root, a directory of a third user's",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root, to own files as another user, and setpriv"))
    func readAsTheDirectorysOwner() throws {
        let stored = try VerifyTests.storedArticle()
        let root = makeTemporaryDirectory("incidentd-trust")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        for command in ["verify", "replay"] {
            let nobodys = try Self.copy(of: stored, in: root, "nobodys-\(command)", owner: 65534, mode: 0o700)
            let run = try runCommand(Binaries.incidentctl, [command, "--data-dir", nobodys])
            #expect(run.status == 0, "\(command): \(run)")
            #expect(Self.owner(nobodys + "/lock.mdb") == 65534, "\(command): lock.mdb belongs to \(Self.owner(nobodys + "/lock.mdb").map(String.init) ?? "nobody at all"), not to the directory's owner")
        }
        // root's chown leaves the directory in root's group, which the owner is not in: read in the owner's own.
        let rootsGroup = try Self.copy(of: stored, in: root, "roots-group", owner: 65534, mode: 0o700)
        #expect(chown(rootsGroup, 65534, 0) == 0)
        let inRootsGroup = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", rootsGroup])
        #expect(inRootsGroup.status == 0, "\(inRootsGroup)")
        var made = stat()
        #expect(stat(rootsGroup + "/lock.mdb", &made) == 0 && made.st_uid == 65534 && made.st_gid == getpwuid(65534)?.pointee.pw_gid, "lock.mdb: uid \(made.st_uid), gid \(made.st_gid)")

        for (mode, writers) in [(0o777, "its group and others"), (0o730, "its group"), (0o1777, "its group and others")] as [(mode_t, String)] {
            let open = try Self.copy(of: stored, in: root, "open-\(mode)", owner: 0, mode: mode)
            let run = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", open])
            #expect(run.status == 1, "\(run)")
            #expect(run.stderr.contains("permission_denied: cannot open the log: \(open) (mode \(String(format: "%04o", mode)), owner root (uid 0)) may be written by \(writers)"), "\(run.stderr)")
            #expect(run.stderr.contains("chmod go-w \(open)"), "\(run.stderr)")
            #expect(Self.owner(open + "/lock.mdb") == nil, "nothing is made in it")
        }

        let third = try Self.copy(of: stored, in: root, "third", owner: 65534, mode: 0o755)
        #expect(chmod(third + "/data.mdb", 0o644) == 0)
        let user = try ThrowawayUser()
        let run = try runCommand(
            "/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", Binaries.incidentctl, "verify", "--data-dir", third])
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("permission_denied: cannot open the log: \(third) belongs to nobody (uid 65534), who could put a link there"), "\(run.stderr)")
    }

    @Test(
        "root's verify --data-dir through another user's symbolic link to a directory of a third user's (the daemon's backups) is refused, naming the link, where root read it as the directory's owner, and the link's owner could point it, between the check and LMDB's open of lock.mdb, at a directory with a lock.mdb linked to a file of the owner's; a path through another user's directory and back (x/../..) is read by the path it resolves to, which holds no such directory",
        .enabled(if: getuid() == 0, "needs root, to own files as other users"))
    func pathThroughAnotherUsersLinkIsRefused() throws {
        let stored = try VerifyTests.storedArticle()
        let root = makeTemporaryDirectory("incidentd-trust")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let backup = try Self.copy(of: stored, in: root, "backup", owner: 65534, mode: 0o700)
        let strangers = root + "/strangers"
        #expect(mkdir(strangers, 0o755) == 0 && mkdir(strangers + "/x", 0o755) == 0)
        #expect(symlink(backup, strangers + "/link") == 0)
        #expect(lchown(strangers + "/link", 65533, 65533) == 0 && chown(strangers, 65533, 65533) == 0 && chown(strangers + "/x", 65533, 65533) == 0)
        for command in ["verify", "replay"] {
            let run = try runCommand(Binaries.incidentctl, [command, "--data-dir", strangers + "/link"])
            #expect(run.status == 1, "\(command): \(run)")
            #expect(run.stderr.contains("permission_denied: cannot open the log: \(strangers)/link (mode 0777, owner uid 65533) is a symbolic link another user may point elsewhere"), "\(command): \(run.stderr)")
            #expect(Self.owner(backup + "/lock.mdb") == nil, "\(command): nothing is made in it")
        }
        let around = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", strangers + "/x/../../backup"])
        #expect(around.status == 0, "\(around)")
        #expect(Self.owner(backup + "/lock.mdb") == 65534, "read as the backup's owner")
    }

    @Test(
        "incidentd refuses, with exit 78 naming it, its mode and owner and the remedy, a data directory its group or others may write, one of a user other than root or its own user, one below a directory others may write without the sticky bit, and a log to recover from in such a directory; the socket directory is not made",
        .enabled(if: getuid() == 0, "needs root, to own files as another user"))
    func untrustedDataDirectoryIsRefused() throws {
        let stored = try VerifyTests.storedArticle()
        let root = makeTemporaryDirectory("incidentd-trust")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let open = try Self.copy(of: stored, in: root, "open", owner: 0, mode: 0o777)
        let group = try Self.copy(of: stored, in: root, "group", owner: 0, mode: 0o770)
        let nobodys = try Self.copy(of: stored, in: root, "nobodys", owner: 65534, mode: 0o700)
        #expect(mkdir(root + "/loose", 0o700) == 0 && chmod(root + "/loose", 0o777) == 0)
        let cases: [([String], String)] = [
            (["--data-dir", open], "--data-dir: the data directory \(open): \(open) (mode 0777, owner root (uid 0)) may be written by its group and others: they could replace the log"),
            (["--data-dir", group], "--data-dir: the data directory \(group): \(group) (mode 0770, owner root (uid 0)) may be written by its group: they could replace the log"),
            (["--data-dir", nobodys], "--data-dir: the data directory \(nobodys): \(nobodys) (mode 0700, owner nobody (uid 65534)) belongs to a user other than root or incidentd's own user"),
            (["--data-dir", root + "/loose/data"], "--data-dir: the data directory \(root)/loose/data: \(root)/loose (mode 0777, owner root (uid 0)) may be written by others than its owner, without the sticky bit"),
            (["--recover-from", open, "--data-dir", root + "/recovered"], "--recover-from: the log to recover \(open): \(open) (mode 0777, owner root (uid 0)) may be written by its group and others"),
        ]
        for (index, (arguments, says)) in cases.enumerated() {
            let logPath = root + "/\(index).log"
            let daemon = try SocketTests.launch(Binaries.incidentd, arguments + ["--socket", root + "/run\(index)/incidentd.sock"], logPath: logPath)
            let log = readFile(logPath) ?? ""
            SocketTests.expectRefused(daemon, status: 78, "\(arguments)", log: log)
            #expect(log.contains(says), "\(arguments): \(log)")
            #expect(log.contains(index == 2 ? "chown root \(nobodys)" : "chmod go-w"), "\(arguments): \(log)")
            #expect(SocketTests.identity(root + "/run\(index)") == nil, "\(arguments): no socket directory is made")
        }
        for made in ["open/lock.mdb", "group/lock.mdb", "nobodys/lock.mdb", "loose/data", "recovered"] {
            #expect(Self.owner(root + "/" + made) == nil, "\(made) was made")
        }
    }

    @Test(
        "incidentd refuses, with exit 78 naming it, its mode and owner and the remedy, a configuration file or a gazetteer file its group or others may write, one of a user other than root or its own user, one in a directory others may write without the sticky bit, and one reached through another user's symbolic link: whoever may write it would decide who may write to the log",
        .enabled(if: getuid() == 0, "needs root, to own files as another user"))
    func untrustedSettingsFileIsRefused() throws {
        let root = makeTemporaryDirectory("incidentd-trust")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let gazetteer = Repository.root + "/config/cities.toml"
        /// A settings file `name` in `root` with `text`, `owner` and `mode`.
        func file(_ name: String, _ text: String, owner: uid_t = 0, mode: mode_t = 0o644) throws -> String {
            let path = root + "/" + name
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            #expect(chown(path, owner, owner) == 0 && chmod(path, mode) == 0)
            return path
        }
        let settings = "[access.admins]\nusers = [\"nobody\"]\n"
        let open = try file("open.toml", settings, mode: 0o666)
        let group = try file("group.toml", settings, mode: 0o664)
        let nobodys = try file("nobodys.toml", settings, owner: 65534)
        #expect(mkdir(root + "/loose", 0o700) == 0 && chmod(root + "/loose", 0o777) == 0)
        let loose = try file("loose/incidentd.toml", settings)
        let openCities = try file("cities.toml", try String(contentsOfFile: gazetteer, encoding: .utf8), mode: 0o646)
        let pointsToCities = try file("points.toml", "[gazetteer]\nfile = \"\(openCities)\"\n")
        #expect(symlink(try file("linked-target.toml", settings), root + "/linked.toml") == 0 && lchown(root + "/linked.toml", 65534, 65534) == 0)
        let cases: [(String, String, String)] = [
            (open, "--config: \(open): \(open) (mode 0666, owner root (uid 0)) may be written by its group and others: they could have written what incidentd reads", "chmod go-w \(open)"),
            (group, "--config: \(group): \(group) (mode 0664, owner root (uid 0)) may be written by its group", "chmod go-w \(group)"),
            (nobodys, "--config: \(nobodys): \(nobodys) (mode 0644, owner nobody (uid 65534)) belongs to a user other than root or incidentd's own user", "chown root \(nobodys)"),
            (loose, "--config: \(loose): \(root)/loose (mode 0777, owner root (uid 0)) may be written by others than its owner, without the sticky bit", "chmod +t \(root)/loose"),
            (pointsToCities, "\(pointsToCities): gazetteer.file: \(openCities): \(openCities) (mode 0646, owner root (uid 0)) may be written by others", "chmod go-w \(openCities)"),
            (root + "/linked.toml", "--config: \(root)/linked.toml: \(root)/linked.toml (mode 0777, owner nobody (uid 65534)) is a symbolic link another user may point elsewhere", "without that link"),
        ]
        for (index, (config, says, remedy)) in cases.enumerated() {
            let logPath = root + "/\(index).log"
            let daemon = try SocketTests.launch(
                Binaries.incidentd,
                ["--config", config, "--data-dir", root + "/data\(index)", "--socket", root + "/run\(index)/incidentd.sock"], logPath: logPath)
            let log = readFile(logPath) ?? ""
            SocketTests.expectRefused(daemon, status: 78, config, log: log)
            #expect(log.contains(says), "\(config): \(log)")
            #expect(log.contains(remedy), "\(config): \(log)")
            #expect(SocketTests.identity(root + "/data\(index)") == nil, "\(config): no data directory is made")
        }
    }

    @Test(
        "the remedy incidentd gives for a settings file of another user's names its own user as chown takes it (chown nobody), not its uid",
        .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root, to own files as another user, and setpriv"))
    func remedyNamesTheDaemonsUser() throws {
        let root = makeTemporaryDirectory("incidentd-trust")
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(chmod(root, 0o755) == 0)
        let config = root + "/incidentd.toml"
        try "[daemon]\nlog_level = \"info\"\n".write(toFile: config, atomically: false, encoding: .utf8)
        #expect(chown(config, 1, 1) == 0 && chmod(config, 0o644) == 0)
        let logPath = root + "/daemon.log"
        let daemon = try SocketTests.launch(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", Binaries.incidentd, "--config", config,
             "--data-dir", root + "/data", "--socket", root + "/run/incidentd.sock"],
            logPath: logPath)
        let log = readFile(logPath) ?? ""
        SocketTests.expectRefused(daemon, status: 78, config, log: log)
        #expect(log.contains("belongs to a user other than root or incidentd's own user"), "\(log)")
        #expect(log.contains("(chown nobody \(config))"), "\(log)")
    }
}
