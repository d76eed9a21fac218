import Foundation
import SocketTrust

#if canImport(Glibc)
import Glibc
#endif

/// A data directory, or a file incidentd reads its settings from, that a user other than root or incidentd's own
/// user could have written (or could write while incidentd runs): a configuration error, exit 78, naming the entry
/// at fault, its mode and owner, and the remedy.
struct UntrustedPath: Error, CustomStringConvertible {
    let description: String
}

/// Where the rules of `SocketTrust` meet incidentd's own paths: its data directory (and a recovery's source) and its
/// settings files.
enum TrustedPaths {
    /// Refuses a data directory (`what` says which: "the data directory", "the log to recover") through which
    /// a user other than root or incidentd's own user could replace the log, or plant in it a link that LMDB
    /// follows (it opens `lock.mdb` by path and writes it): the directory must belong to one of them and be
    /// writable by its owner alone, below directories only they may write or that are sticky
    /// (``SocketDirectoryRules``, as for the socket's directory). One not made yet is checked by the nearest
    /// directory above it that exists; one that cannot be looked at is left to opening the log, which says why.
    static func checkDataDirectory(_ directory: String, what: String, origin: String) throws {
        guard case .success(let (existing, info)) = SocketDirectoryRules.nearestExisting(directory) else { return }
        let exists = existing == directory
        guard exists ? (info.st_mode & S_IFMT) == S_IFDIR : true else { return }
        guard let fault = SocketDirectoryRules.fault(reaching: existing, isSocketDirectory: exists, trusting: geteuid()) else {
            return
        }
        throw UntrustedPath(
            description:
                "\(origin): \(what) \(directory): \(describe(fault)): they could replace the log, or put in it a link that LMDB follows to write a file of incidentd's user. \(remedy(fault)); a data directory belongs to root or incidentd's user (\(SocketDirectoryRules.describeUser(geteuid()))), may be written by its owner alone, and sits below directories that only they may write or that are sticky (as /tmp), as /var/lib/incidentd does")
    }

    /// Refuses a settings file (the configuration, the gazetteer) that a user other than root or incidentd's own user
    /// could have written (``TrustedFileRules``): the configuration says who may write to the log.
    static func checkSettingsFile(_ file: String, origin: String) throws {
        guard let fault = TrustedFileRules.fault(reading: file, trusting: geteuid()) else { return }
        throw UntrustedPath(
            description:
                "\(origin): \(file): \(describe(fault)): they could have written what incidentd reads from it, and the configuration says who may write to the log. \(remedy(fault)); incidentd reads settings only from files of root's or its user's (\(SocketDirectoryRules.describeUser(geteuid()))) that only their owner may write, as make install leaves /etc/incidentd/incidentd.toml (root's, 0644)")
    }

    /// "PATH (mode 0777, owner alice (uid 1001)) may be written by its group and others".
    private static func describe(_ fault: SocketPathFault) -> String {
        "\(fault.path) (mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) \(fault.problem)"
    }

    /// The name of `uid` as chown takes it: its user name, or the number when the user database has none.
    private static func userName(_ uid: uid_t) -> String { SocketDirectoryRules.user(uid)?.name ?? String(uid) }

    /// What mends `fault`: a link given up, an owner changed, or write permission taken from group and others.
    private static func remedy(_ fault: SocketPathFault) -> String {
        let user = geteuid()
        if fault.problem.contains("symbolic link") {
            return "Give the path without that link, or have root own it"
        }
        if fault.owner != 0 && fault.owner != user {
            return "Give it to root or incidentd's user (chown \(userName(user)) \(fault.path)) after checking what it holds, and take write permission from group and others (chmod go-w \(fault.path))"
        }
        if fault.problem.contains("without the sticky bit") {
            return "Take write permission from group and others (chmod go-w \(fault.path)), or make it sticky (chmod +t \(fault.path))"
        }
        return "Take write permission from group and others (chmod go-w \(fault.path)) after checking what it holds"
    }
}
