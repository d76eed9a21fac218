import DataFilePages
import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `backup` (SPEC §4, admin role): a consistent, checked copy of the log in a new directory, made while the daemon
/// serves, which a daemon started on it serves as it was.
@Suite("Backup")
struct BackupTests {
    @Test("a backup made while four connections append is the log as of one commit: the same events and hashes, verified, and a daemon started on it serves it and appends after it")
    func backupWhileAppending() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let stop = Guarded(false)
        let appended = Guarded(0)
        let socket = daemon.socketPath
        let appenders = (0..<4).map { connection in
            Thread {
                guard let client = try? RawClient(path: socket) else { return }
                var n = 0
                while !stop.withLock({ $0 }) {
                    n += 1
                    guard let answer = try? ReliabilityStorageTests.bulkAppend(client, tag: "backup-c\(connection)-\(n)", count: 5),
                        answer.isOK
                    else { return }
                    appended.withLock { $0 += 5 }
                }
            }
        }
        appenders.forEach { $0.start() }
        try waitFor("appends under way") { appended.withLock { $0 } >= 100 }

        let copyRoot = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: copyRoot) }
        let answer = try client.call("backup", ["path": .string(copyRoot + "/data")])
        let afterBackup = appended.withLock { $0 }
        try waitFor("more appends after the backup") { appended.withLock { $0 } >= afterBackup + 100 }
        stop.withLock { $0 = true }
        #expect(answer.isOK, "\(answer)")
        #expect(answer["intact"]?.boolValue == true, "\(answer)")
        #expect(answer["path"]?.stringValue == copyRoot + "/data")
        let position = try #require(answer["headPosition"]?.intValue)
        #expect(answer["checked"]?.intValue == position)
        #expect(position > 100, "the copy holds what was appended before it: \(answer)")
        try waitFor("the appenders to stop") { !appenders.contains { $0.isExecuting } }
        #expect(position < (try client.headPosition()), "appends went on after the copy")

        // The live log's first `position` events, with their hashes, and nothing after them.
        let live = Array(try client.allEvents().prefix(Int(position)))
        #expect(live.last?["hash"] == answer["headHash"])
        let bytes = try #require(answer["bytes"]?.intValue)
        var info = stat()
        #expect(stat(copyRoot + "/data/data.mdb", &info) == 0 && Int64(info.st_size) == bytes)
        // The log is evidence and may name people: the copy is as private as the live file.
        var liveFile = stat()
        #expect(stat(daemon.dataDir + "/data.mdb", &liveFile) == 0 && liveFile.st_mode & 0o7777 == 0o600)
        #expect(info.st_mode & 0o7777 == 0o600, "the copy's data.mdb has mode \(String(info.st_mode & 0o7777, radix: 8))")
        #expect(!FileManager.default.fileExists(atPath: copyRoot + "/data/lock.mdb"), "the copy is data.mdb alone")
        #expect(daemon.log.contains("backup written"), "\(daemon.log)")

        let restored = try Daemon(root: copyRoot)
        let restoredClient = try restored.client()
        let events = try checkLogIntegrity(restored, restoredClient)
        #expect(events == live, "the copy holds the log's events 1–\(position) as they were stored")
        let next = try restoredClient.appendEvents([WireEvent.report(incident: "after-restore", city: "Melitopol", description: "appended to the copy")])
        #expect(next["positions"]?.arrayValue?.first?.intValue == position + 1, "\(next)")
        #expect(restored.stop() == 0)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a backup whose daemon goes away before it answers (killed while syncing the copy): exit 3, saying DEST may hold nothing, a copy cut short or a whole one, that verify --data-dir DEST tells which, and to back up again (QA pass 13, L1)",
        StorageFaults.required)
    func backupWithoutAnswer() throws {
        let library = try #require(StorageFaults.library)
        let root = makeTemporaryDirectory()
        let stall = root + "/stall-fsyncs"
        let daemon = try Daemon(root: root, environment: ["LD_PRELOAD": library, "INCIDENTD_STALL_FSYNCS": stall])
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        // The copy's fsync waits: the backup is asked for, and no answer comes before the daemon is killed.
        #expect(FileManager.default.createFile(atPath: stall, contents: nil))
        let destination = root + "/nightly"
        let err = root + "/err"
        let stderr = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        let command = try ChildProcess(
            Binaries.incidentctl, ["backup", destination, "--socket", daemon.socketPath], environment: ProcessInfo.processInfo.environment,
            stdin: null, stdout: null, stderr: stderr)
        [stderr, null].forEach { close($0) }
        try waitFor("the copy to wait in its fsync") { FileManager.default.fileExists(atPath: destination + "/data.mdb.incomplete") }
        try waitForAnswerWait(of: command.pid)
        daemon.crash()
        try FileManager.default.removeItem(atPath: stall)
        #expect(command.wait() == 3)
        let said = readFile(err) ?? ""
        #expect(
            said.contains(
                "after the backup was asked for: \(destination) may hold nothing, a copy cut short (data.mdb.incomplete) or a whole one, and `incidentctl verify --data-dir \(destination)` tells which; to be sure of a backup, make it again into a new directory"),
            "\(said)")
    }

    @Test("a backup is refused, naming why and writing nothing, for a relative path, a path that exists, a missing parent, and a request without one")
    func refusals() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let existing = daemon.root + "/existing"
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: false)
        try "kept".write(toFile: existing + "/note", atomically: true, encoding: .utf8)
        let cases: [(body: [String: JSONValue], says: String)] = [
            (["path": "relative/backup"], "give the absolute path of a new directory"),
            (["path": .string(existing)], "it exists already"),
            (["path": .string(existing + "/")], "it exists already"),
            (["path": .string(daemon.root + "/missing/backup")], "the directory it would go in, \(daemon.root)/missing, does not exist"),
            ([:], "path: expected the absolute path"),
            (["path": 7], "path: expected the absolute path"),
        ]
        for (body, says) in cases {
            let refused = try client.call("backup", body)
            #expect(refused.errorCode == "invalid_request", "\(body): \(refused)")
            let message = refused["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains(says), "\(body): \(message)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: existing) == ["note"])
        #expect(!FileManager.default.fileExists(atPath: daemon.root + "/missing"))
        #expect(!FileManager.default.fileExists(atPath: daemon.dataDir + "/relative"))
        #expect(try client.call("backup", ["path": .string(daemon.root + "/b"), "compact": true]).errorCode == "invalid_request")
        #expect(try client.headPosition() == 8)
        #expect(daemon.stop() == 0)
    }

    @Test("incidentctl backup into a file system that makes no directories (/proc) exits 1 saying so, not that the directory it would go in does not exist")
    func backupIntoProc() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        let refused = try daemon.ctl(["backup", "/proc/incidentd-backup"])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("invalid_request") && refused.stderr.contains("/proc is there, but its file system lets no directory be made in it"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("does not exist"), "\(refused.stderr)")
        #expect(daemon.stop() == 0)
    }

    @Test("incidentctl backup takes a relative DEST from the current directory, prints the head the copy ends in, and exits 1 naming why when refused")
    func commandLine() throws {
        let daemon = try Daemon()
        #expect(try daemon.client().appendEvents(try Repository.articleEvents())["ok"]?.boolValue == true)
        let made = try runCommand(
            "/bin/sh", ["-c", "cd \"$1\" && exec \"$2\" backup --socket \"$3\" --format json nightly", "sh", daemon.root, Binaries.incidentctl, daemon.socketPath])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(made.json?["path"]?.stringValue == daemon.root + "/nightly")
        #expect(made.json?["headPosition"]?.intValue == 8 && made.json?["intact"]?.boolValue == true, "\(made.stdout)")
        #expect(made.json?["headHash"] == (try daemon.client().status()["headHash"]))
        var info = stat()
        #expect(stat(daemon.root + "/nightly/data.mdb", &info) == 0 && info.st_mode & 0o7777 == 0o600, "mode \(String(info.st_mode & 0o7777, radix: 8))")
        let again = try daemon.ctl(["backup", daemon.root + "/nightly"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("invalid_request") && again.stderr.contains("it exists already"), "\(again.stderr)")
        let replayed = try runCommand(Binaries.incidentctl, ["replay", "--data-dir", daemon.root + "/nightly", "--format", "json"])
        #expect(replayed.status == 0, "\(replayed.stderr)")
        #expect(replayed.stdout == (try daemon.ctl(["cities", "--format", "json"])).stdout)
        #expect(daemon.stop() == 0)
    }

    @Test(
        "a daemon killed while it writes a backup leaves no data.mdb there, only the copy under the name it has until it is whole, which verify --data-dir names",
        StorageFaults.required)
    func backupCutShort() throws {
        let library = try #require(StorageFaults.library)
        let root = makeTemporaryDirectory()
        let stall = root + "/stall-fsyncs"
        let daemon = try Daemon(root: root, environment: ["LD_PRELOAD": library, "INCIDENTD_STALL_FSYNCS": stall])
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        // The copy is written and waits in its fsync; the daemon dies there.
        #expect(FileManager.default.createFile(atPath: stall, contents: nil))
        let backup = root + "/nightly"
        try client.send("backup", ["path": .string(backup)])
        try waitFor("the copy written, waiting in fsync") {
            var info = stat()
            return stat(backup + "/data.mdb.incomplete", &info) == 0 && info.st_size > 0
        }
        daemon.crash()
        try? FileManager.default.removeItem(atPath: stall)
        #expect(!FileManager.default.fileExists(atPath: backup + "/data.mdb"), "no data.mdb that could be taken for a whole backup")
        let verified = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", backup])
        #expect(verified.status == 1 && verified.stderr.contains("a backup cut short before it was whole"), "\(verified)")
        // Nor does a daemon take it for the directory of a new log.
        let elsewhere = makeTemporaryDirectory()
        #expect(rename(backup, elsewhere + "/data") == 0)
        #expect(throws: HarnessError.self) { _ = try Daemon(root: elsewhere) }
    }

    @Test("a backup of a log whose chain breaks is kept, but neither stdout nor the daemon's log call it a backup: exit 1, and an error line")
    func backupOfBrokenChain() throws {
        let daemon = try VerifyTests.storedArticle()
        try VerifyTests.tamper(daemon, position: 1) { stored, _ in VerifyTests.replacing("city-hall", with: "city-hell", in: stored) }
        try daemon.start()
        let made = try daemon.ctl(["backup", daemon.root + "/nightly", "--format", "table"])
        #expect(made.status == 1 && made.stderr.contains("chain_broken"), "\(made)")
        #expect(!made.stdout.contains("backed up") && made.stdout.contains("the copy does not verify: it is no good backup"), "\(made.stdout)")
        try waitFor("the error in the daemon's log") { daemon.log.contains("error backup written, but its copy does not verify") }
        #expect(daemon.stop() == 0)
    }

    @Test(
        "verify --data-dir by a user who may read data.mdb but not write lock.mdb: exit 1, permission_denied, saying what access reading a log directly needs",
        .enabled(if: ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs root, useradd and setpriv"))
    func verifyDirectoryWithoutAccess() throws {
        let daemon = try VerifyTests.storedArticle()
        for (path, mode) in [(daemon.root, 0o755), (daemon.dataDir, 0o755), (daemon.dataDir + "/data.mdb", 0o644)] {
            #expect(chmod(path, mode_t(mode)) == 0)
        }
        let user = try ThrowawayUser()
        let run = try runCommand(
            "/usr/bin/setpriv",
            ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", Binaries.incidentctl, "verify", "--data-dir", daemon.dataDir])
        #expect(run.status == 1, "\(run)")
        #expect(run.stderr.contains("permission_denied: cannot open the log in \(daemon.dataDir): permission denied (uid \(user.uid))"), "\(run.stderr)")
        #expect(run.stderr.contains("write access to lock.mdb"), "\(run.stderr)")
        #expect(run.stderr.contains("\(daemon.dataDir)/lock.mdb belongs to uid 0 (root), mode 0"), "\(run.stderr)")
    }

    @Test("incidentctl verify --data-dir checks a backup (or a stopped daemon's log) itself: what the daemon's verify answers of the same log, exit 1 naming a damaged page, exit 2 for a directory with no log")
    func verifyDirectory() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        let backup = daemon.root + "/nightly"
        let made = try client.call("backup", ["path": .string(backup)])
        #expect(made.isOK && made["intact"]?.boolValue == true, "\(made)")

        // Of the backup, while the daemon runs: the head the backup answered with.
        let ofBackup = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", backup, "--format", "json"])
        #expect(ofBackup.status == 0, "\(ofBackup.stderr)")
        #expect(ofBackup.json?["intact"]?.boolValue == true && ofBackup.json?["headHash"] == made["headHash"], "\(ofBackup.stdout)")
        #expect(ofBackup.json?["checked"]?.intValue == 8)
        let table = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", backup, "--format", "table"])
        #expect(table.status == 0 && table.stdout.hasPrefix("intact: 8 events"), "\(table)")

        // Of the live log once its daemon is stopped: the same document the daemon answered.
        guard case .object(var answered) = try client.call("verify") else { throw HarnessError("verify answered no object") }
        answered["id"] = nil
        answered["ok"] = nil
        #expect(daemon.stop() == 0)
        let ofLog = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", daemon.dataDir, "--format", "json"])
        #expect(ofLog.status == 0 && ofLog.json == .object(answered), "\(ofLog.stdout) against \(answered)")

        // A damaged page of the backup is named, as the daemon's verify names it.
        let map = try DataFileMap(backup)
        let events = try #require(map.named("events"))
        let leaf = try #require(map.pages(events).leaves.first)
        try PageDamageTests.damage(at: backup + "/data.mdb", page: leaf, pageSize: map.pageSize)
        let damaged = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", backup])
        #expect(damaged.status == 1, "\(damaged)")
        #expect(damaged.stderr.contains("page_damaged: page \(leaf) of database events"), "\(damaged.stderr)")

        let empty = makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let none = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", empty])
        #expect(none.status == 2 && none.stderr.contains(empty), "\(none)")

        // What a backup cut short by the daemon's end leaves: the copy under the name it has until it is whole.
        #expect(FileManager.default.createFile(atPath: empty + "/data.mdb.incomplete", contents: Data(repeating: 0, count: 4096)))
        let cutShort = try runCommand(Binaries.incidentctl, ["verify", "--data-dir", empty])
        #expect(cutShort.status == 1 && cutShort.stderr.contains("log_damaged: ") && cutShort.stderr.contains("a backup cut short before it was whole"), "\(cutShort)")
    }

    @Test(
        "a backup into a file system that fills up answers storage_full naming it, what it had free before the copy and what the copy takes, and leaves nothing there",
        .enabled(if: SmallFileSystem.canMount, "needs root, to mount a small tmpfs"))
    func fileSystemFills() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        // About 1.5 MiB of log, for a file system of 1 MiB.
        for n in 0..<30 {
            #expect(try ReliabilityStorageTests.bulkAppend(client, tag: "big-\(n)", count: 20).isOK)
        }
        let disk = try SmallFileSystem(at: daemon.root + "/small", megabytes: 1)
        // The daemon's own removal of its root cannot remove a mount point; this one comes after the unmount.
        defer {
            disk.unmount()
            try? FileManager.default.removeItem(atPath: daemon.root)
        }
        let refused = try client.call("backup", ["path": .string(disk.path + "/backup")])
        #expect(refused.errorCode == "storage_full", "\(refused)")
        let message = refused["error"]?["message"]?.stringValue ?? ""
        // What the file system had before the copy, not after what was copied was removed (when it is free again).
        #expect(message.contains("the backup did not fit in the file system holding \(disk.path)/backup: it had "), "\(message)")
        /// The number in `message` between `before` and `after`.
        func number(after before: String, before after: String) -> Int? {
            guard let start = message.range(of: before), let end = message[start.upperBound...].range(of: after) else { return nil }
            return Int(message[start.upperBound..<end.lowerBound])
        }
        let free = number(after: "it had ", before: " bytes free before the copy")
        let takes = number(after: "the copy of the log takes up to ", before: " bytes")
        #expect(free.map { $0 <= 1 << 20 } == true && takes.map { $0 > 1 << 20 } == true, "\(message)")
        #expect(!message.contains("is full ("), "\(message)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: disk.path).isEmpty)
        #expect(try client.headPosition() == 600)
        #expect(try ReliabilityStorageTests.bulkAppend(client, tag: "after", count: 1).isOK)
        #expect(daemon.stop() == 0)
    }

    /// The names in `directory`, sorted; nil when it cannot be listed.
    static func entries(_ directory: String) -> [String]? {
        (try? FileManager.default.contentsOfDirectory(atPath: directory))?.sorted()
    }

    @Test("a backup along a way another user could change is refused, naming the entry, its mode and owner, and nothing is made where it leads: a directory others may write without the sticky bit (the one it goes in, or one a symbolic link leads through); along a way only root and incidentd's user could change (its own link, a sticky directory) the backup is made where the link leads")
    func wayOthersCouldChangeIsRefused() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        let root = daemon.root
        let owner = "\(currentUserName()) (uid \(getuid()))"
        let target = root + "/target"
        let open = root + "/open"
        #expect(mkdir(target, 0o700) == 0 && mkdir(open, 0o700) == 0 && chmod(open, 0o777) == 0)
        // Whoever may write `open` could point the link in it elsewhere, or swap it for another, as the copy goes on.
        #expect(symlink(target, open + "/link") == 0)
        #expect(symlink(open, root + "/alias") == 0)
        let refusedCases = [open + "/link/planted", open + "/planted", root + "/alias/planted"]
        for path in refusedCases {
            let refused = try client.call("backup", ["path": .string(path)])
            #expect(refused.errorCode == "invalid_request", "\(path): \(refused)")
            let message = refused["error"]?["message"]?.stringValue ?? ""
            #expect(
                message.contains(
                    "cannot back up into \(path): \(open) (mode 0777, owner \(owner)) may be written by others than its owner, without the sticky bit, who could rename what is below it, and could so lead the backup elsewhere"),
                "\(path): \(message)")
            #expect(message.contains("such as \(daemon.dataDir)/backups/NAME"), "\(message)")
        }
        #expect(Self.entries(target) == [], "nothing is made where the link leads")
        #expect(Self.entries(open) == ["link"])
        #expect(daemon.log.contains("backup refused"), "\(daemon.log)")

        // incidentd's own link, in a directory only it may write, and a sticky directory others may write (as /tmp).
        #expect(symlink(target, root + "/mine") == 0)
        let made = try client.call("backup", ["path": .string(root + "/mine/nightly")])
        #expect(made.isOK && made["intact"]?.boolValue == true, "\(made)")
        #expect(made["path"]?.stringValue == root + "/mine/nightly")
        var info = stat()
        #expect(lstat(target + "/nightly/data.mdb", &info) == 0 && info.st_mode & 0o7777 == 0o600)
        #expect(Self.entries(target + "/nightly") == ["data.mdb"])
        let sticky = root + "/sticky"
        #expect(mkdir(sticky, 0o700) == 0 && chmod(sticky, 0o1777) == 0)
        #expect(try client.call("backup", ["path": .string(sticky + "/nightly")]).isOK)
        #expect(Self.entries(sticky + "/nightly") == ["data.mdb"])
        #expect(daemon.stop() == 0)
    }

    @Test(
        "root's backup through another user's symbolic link (in a sticky directory, as in /tmp) or another user's directory is refused naming it, and nothing is made in the root-only directory the link leads to (QA 10a F12)",
        .enabled(if: getuid() == 0, "needs root, to own files as other users"))
    func anotherUsersLinkIsNotFollowed() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        #expect(try client.appendEvents(try Repository.articleEvents()).isOK)
        let root = daemon.root
        let rootOnly = root + "/rootonly"
        let shared = root + "/shared"
        let adm = root + "/adm"
        #expect(mkdir(rootOnly, 0o700) == 0 && mkdir(shared, 0o700) == 0 && chmod(shared, 0o1777) == 0 && mkdir(adm, 0o755) == 0)
        #expect(symlink(rootOnly, shared + "/link") == 0 && lchown(shared + "/link", 65533, 65533) == 0)
        #expect(symlink(rootOnly, adm + "/link") == 0 && lchown(adm + "/link", 65533, 65533) == 0 && chown(adm, 65533, 65533) == 0)
        let cases = [
            (shared + "/link/planted", "\(shared)/link (mode 0777, owner uid 65533) is a symbolic link another user may point elsewhere"),
            (adm + "/link/planted", "\(adm) (mode 0755, owner uid 65533) belongs to a user other than root or incidentd's own user"),
            (adm + "/planted", "\(adm) (mode 0755, owner uid 65533) belongs to a user other than root or incidentd's own user"),
        ]
        for (path, says) in cases {
            let refused = try daemon.ctl(["backup", path])
            #expect(refused.status == 1, "\(path): \(refused)")
            #expect(refused.stderr.contains("invalid_request: cannot back up into \(path): \(says)"), "\(path): \(refused.stderr)")
        }
        #expect(Self.entries(rootOnly) == [], "nothing is made where the links lead")
        #expect(Self.entries(adm) == ["link"])
        #expect(daemon.stop() == 0)
    }

    @Test(
        "an admin other than root or incidentd's own user backs up only into a new directory directly in daemon.backup_dir (by default backups in the data directory): elsewhere, through its own link to a root-only directory (QA 10a F12) or out of it with .., permission_denied naming the place, and nothing is made; there, the copy is made, incidentd's own",
        .enabled(if: ThrowawayUser.canCreate, "needs root, useradd and runuser or setpriv to create a throwaway user"))
    func otherAdminsBackUpIntoTheBackupDirectory() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon.configured("[access.admins]\nusers = [\"\(user.name)\"]\n")
        #expect(try daemon.client().appendEvents(try Repository.articleEvents()).isOK)
        try AccessTests.admit(user, to: daemon)
        let root = daemon.root
        let rootOnly = root + "/rootonly"
        let adm = root + "/adm"
        #expect(mkdir(rootOnly, 0o700) == 0 && mkdir(adm, 0o755) == 0 && chown(adm, user.uid, user.gid) == 0)
        #expect(symlink(rootOnly, adm + "/link") == 0 && lchown(adm + "/link", user.uid, user.gid) == 0)
        let backups = daemon.dataDir + "/backups"
        #expect(mkdir(backups, 0o700) == 0)
        for path in [adm + "/link/planted", adm + "/planted", backups + "/../planted", root + "/planted"] {
            let refused = try user.ctl(["backup", path], socket: daemon.socketPath)
            #expect(refused.status == 1, "\(path): \(refused)")
            #expect(
                refused.stderr.contains(
                    "permission_denied: \(user.name) (uid \(user.uid)) may not back up into \(path): an admin other than root or incidentd's own user (root (uid 0)) backs up only into a new directory directly in \(backups) (daemon.backup_dir, by default backups in the data directory). Give \(backups)/NAME"),
                "\(path): \(refused.stderr)")
        }
        #expect(Self.entries(rootOnly) == [] && Self.entries(adm) == ["link"] && Self.entries(backups) == [])
        #expect(!FileManager.default.fileExists(atPath: daemon.dataDir + "/planted") && !FileManager.default.fileExists(atPath: root + "/planted"))
        try waitFor("the refusal in the daemon's log") { daemon.log.contains("backup refused") && daemon.log.contains(user.name) }

        let made = try user.ctl(["backup", backups + "/nightly", "--format", "json"], socket: daemon.socketPath)
        #expect(made.status == 0 && made.json?["intact"]?.boolValue == true, "\(made)")
        var info = stat()
        #expect(lstat(backups + "/nightly", &info) == 0 && info.st_uid == 0 && info.st_mode & 0o7777 == 0o750)
        #expect(lstat(backups + "/nightly/data.mdb", &info) == 0 && info.st_uid == 0 && info.st_mode & 0o7777 == 0o600)

        // Configured elsewhere, the setting names the place; the data directory's backups is then like any other. A
        // relative path is taken from the settings file's directory, as data_dir's is.
        let elsewhere = root + "/kept"
        #expect(mkdir(elsewhere, 0o700) == 0)
        try "[daemon]\nbackup_dir = \"kept\"\n[access.admins]\nusers = [\"\(user.name)\"]\n"
            .write(toFile: root + "/incidentd.toml", atomically: true, encoding: .utf8)
        try daemon.restart()
        try AccessTests.admit(user, to: daemon)
        let moved = try user.ctl(["backup", backups + "/again"], socket: daemon.socketPath)
        #expect(moved.status == 1 && moved.stderr.contains("directly in \(elsewhere) (\(root)/incidentd.toml: daemon.backup_dir)"), "\(moved)")
        #expect(try user.ctl(["backup", elsewhere + "/nightly"], socket: daemon.socketPath).status == 0)
        #expect(Self.entries(elsewhere + "/nightly") == ["data.mdb"])
        #expect(daemon.stop() == 0)
    }

    @Test("an empty daemon.backup_dir is refused naming the setting, exit 78")
    func backupDirectorySetting() throws {
        let refused = try ConfigurationTests.start("[daemon]\nbackup_dir = \"\"\n")
        #expect(refused.status == 78, "\(refused.log)")
        #expect(refused.log.contains("incidentd.toml: daemon.backup_dir: is empty; give the directory"), "\(refused.log)")
    }
}
