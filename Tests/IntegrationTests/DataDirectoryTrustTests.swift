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
}
