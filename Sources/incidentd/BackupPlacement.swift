import IncidentLog
import IncidentProtocol
import SocketTrust

#if canImport(Glibc)
import Glibc
#endif

/// Where incidentd makes the backups its admins ask for (`backup`), so that no admin can have it make directories
/// and copies of the log where they could not, nor through anyone's symbolic links:
/// * root and incidentd's own user, who could write there themselves, may name any absolute path;
/// * any other admin only a new directory directly in ``directory`` (`daemon.backup_dir`, by default `backups` in
///   the data directory), a place the operator chose: under the shipped unit the daemon's state directory, which
///   such an admin may not even search, so that "where the admin could make it" would leave them no place at all,
///   and mode bits could not tell what ACLs grant. The copy is the daemon's either way (its owner's, 0750 and 0600);
/// * either way the directory it is made in is reached by ``TrustedDirectoryWalk``: every directory on the way
///   belongs to root or incidentd's user and is written by its owner alone (or is sticky), every symbolic link
///   followed is theirs, and the backup is then made relative to the descriptor the walk ends with.
struct BackupPlacement: Sendable {
    /// The directory admins other than root and ``daemonUser`` back up into: absolute, with no `.` components.
    let directory: String
    /// The setting that named ``directory``, for refusals: "FILE: daemon.backup_dir", or the default's description.
    let origin: String
    /// incidentd's own user (its effective uid), trusted with root.
    let daemonUser: uid_t

    /// The directory to make the backup `requested` in, opened, and the backup's destination in it, for `peer`; the
    /// descriptor in the destination lives as long as the ``OpenDirectory``. Throws the refusal: `invalid_request`
    /// for a path that is not absolute or cannot be reached as above, `permission_denied` for an admin other than
    /// root and incidentd's user naming a place outside ``directory``. Nothing is made.
    func destination(for requested: String, peer: PeerIdentity) throws -> (parent: OpenDirectory, destination: BackupDestination) {
        var path = requested
        while path.utf8.count > 1 && path.hasSuffix("/") { path.removeLast() }
        guard path.hasPrefix("/"), !path.utf8.contains(0), path.utf8.count < Int(PATH_MAX) else {
            throw ProtocolError(.invalidRequest, "cannot back up into \(path): give the absolute path of a new directory")
        }
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let container = slash == path.startIndex ? "/" : String(path[..<slash])
        let name = path == "/" ? "." : String(path[path.index(after: slash)...])
        if peer.uid != 0 && peer.uid != daemonUser && (container != directory || name == "." || name == "..") {
            throw ProtocolError(
                .permissionDenied,
                "\(peer.user) (uid \(peer.uid)) may not back up into \(path): an admin other than root or incidentd's own user "
                    + "(\(SocketDirectoryRules.describeUser(daemonUser))) backs up only into a new directory "
                    + "directly in \(directory) (\(origin)). Give \(directory)/NAME, or have root or incidentd's user "
                    + "back up elsewhere")
        }
        switch TrustedDirectoryWalk.open(container, trusting: daemonUser) {
        case .success(let parent):
            return (parent, BackupDestination(parent: parent.descriptor, name: name, path: path))
        case .failure(.untrusted(let fault)):
            throw ProtocolError(
                .invalidRequest,
                "cannot back up into \(path): \(fault.path) (mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) "
                    + "\(fault.problem), and could so lead the backup elsewhere; incidentd backs up only along a way that "
                    + "nobody but root and its own user (\(SocketDirectoryRules.describeUser(daemonUser))) could change. "
                    + "Give a path through directories of theirs that only their owner may write (or sticky), such as \(directory)/NAME")
        case .failure(.unreachable(let entry, let code)):
            throw ProtocolError(.invalidRequest, "cannot back up into \(path): \(Self.whyUnreachable(entry, code, container: container))")
        }
    }

    /// Why the walk to `container` stopped at `entry`, with `errno` `code`, in words.
    private static func whyUnreachable(_ entry: String, _ code: Int32, container: String) -> String {
        switch code {
        case ENOENT:
            return "the directory it would go in, \(container), does not exist" + (entry == container ? "" : " (\(entry) is not there)")
        case ENOTDIR: return "a part of the path is not a directory: \(entry)"
        case EACCES, EPERM: return "incidentd (uid \(geteuid())) may not reach \(entry)"
        case ELOOP: return "too many symbolic links on the way, at \(entry)"
        default: return "\(entry): \(String(cString: strerror(code)))"
        }
    }
}
