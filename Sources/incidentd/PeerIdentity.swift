import CShims
import Foundation
import IncidentDomain
import IncidentProtocol

/// Who is on the other end of a connection, from the kernel (SO_PEERCRED), never from what the client says.
struct PeerIdentity: Sendable, Hashable {
    var uid: UInt32
    var gid: UInt32
    var pid: Int32
    var user: String
    /// Every group the user belongs to: the peer's gid plus the supplementary groups from the group database.
    var groups: Set<UInt32>

    var recorder: Recorder { Recorder(uid: uid, user: user) }

    /// Looks up the user name and groups of a peer.
    static func resolve(uid: UInt32, gid: UInt32, pid: Int32) -> PeerIdentity {
        var identity = PeerIdentity(uid: uid, gid: gid, pid: pid, user: "uid:\(uid)", groups: [gid])
        var passwd = passwd()
        var buffer = [CChar](repeating: 0, count: 4096)
        var result: UnsafeMutablePointer<passwd>?
        if getpwuid_r(uid, &passwd, &buffer, buffer.count, &result) == 0, result != nil, let name = passwd.pw_name {
            identity.user = String(cString: name)
            var count: Int32 = 64
            var groups = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(name, passwd.pw_gid, &groups, &count) == -1 && count > 64 {
                groups = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(name, passwd.pw_gid, &groups, &count)
            }
            identity.groups.formUnion(groups.prefix(Int(max(0, count))))
        }
        return identity
    }
}

/// Maps a peer to the highest role it holds under the configured policy.
struct AccessControl: Sendable {
    let policy: AccessPolicy
    let daemonUID: UInt32
    private let groupIDs: [Role: Set<UInt32>]

    init(policy: AccessPolicy) {
        self.policy = policy
        daemonUID = getuid()
        var groupIDs: [Role: Set<UInt32>] = [:]
        for (role, grant) in policy.grants {
            var ids = grant.gids
            for name in grant.groups {
                if let group = getgrnam(name) { ids.insert(group.pointee.gr_gid) }
            }
            groupIDs[role] = ids
        }
        self.groupIDs = groupIDs
    }

    /// The highest role of `peer`, or nil when it holds none.
    func role(of peer: PeerIdentity) -> Role? {
        if peer.uid == 0 || peer.uid == daemonUID { return .admin }
        for role in Role.allCases.reversed() {
            guard let grant = policy.grants[role] else { continue }
            if grant.uids.contains(peer.uid) || grant.users.contains(peer.user)
                || !(groupIDs[role] ?? []).isDisjoint(with: peer.groups)
            {
                return role
            }
        }
        return nil
    }
}
