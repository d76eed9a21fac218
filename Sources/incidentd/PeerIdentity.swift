import CShims
import Foundation
import IncidentDomain
import IncidentProtocol
import NIOCore
import Synchronization

/// Who is on the other end of a connection, from the kernel (SO_PEERCRED, SO_PEERGROUPS), never from what the
/// client says.
struct PeerIdentity: Sendable {
    var uid: UInt32
    var gid: UInt32
    var pid: Int32
    var user: String
    /// The groups the peer process had when it connected: its gid and its supplementary groups. Only where the
    /// kernel cannot say (no SO_PEERGROUPS), the supplementary groups are the user's in the group database.
    var groups: Set<UInt32>
    /// The refusals of this connection's requests that were logged: the first only.
    let refusals = RefusalLog()

    var recorder: Recorder { Recorder(uid: uid, user: user) }

    /// Looks up the user name of a peer, and takes its groups: `supplementaryGroups` as the kernel gave them, or,
    /// when nil, those of its user in the group database (getgrouplist).
    static func resolve(uid: UInt32, gid: UInt32, pid: Int32, supplementaryGroups: [UInt32]?) -> PeerIdentity {
        var identity = PeerIdentity(uid: uid, gid: gid, pid: pid, user: "uid:\(uid)", groups: [gid])
        identity.groups.formUnion(supplementaryGroups ?? [])
        if let entry = userEntry(uid) {
            identity.user = entry.name
            if supplementaryGroups == nil {
                var count: Int32 = 64
                var groups = [gid_t](repeating: 0, count: Int(count))
                if getgrouplist(entry.name, entry.gid, &groups, &count) == -1 && count > 64 {
                    groups = [gid_t](repeating: 0, count: Int(count))
                    _ = getgrouplist(entry.name, entry.gid, &groups, &count)
                }
                identity.groups.formUnion(groups.prefix(Int(max(0, count))))
            }
        }
        return identity
    }

    /// The user database's entry for `uid`: its name and primary group; nil when it has none.
    static func userEntry(_ uid: uid_t) -> (name: String, gid: gid_t)? {
        var entry = passwd()
        var buffer = [CChar](repeating: 0, count: 4096)
        var result: UnsafeMutablePointer<passwd>?
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else {
            return nil
        }
        return (String(cString: name), entry.pw_gid)
    }
}

/// Whether a connection has had a refusal logged: one line per connection, however many of its requests are
/// refused, so that a client that sends thousands shows in the log without flooding it.
final class RefusalLog: Sendable {
    private let logged = Atomic<Bool>(false)

    /// True the first time only.
    func isFirst() -> Bool {
        !logged.exchange(true, ordering: .relaxed)
    }
}

/// The supplementary groups of a connection's peer as of its connect(), from SO_PEERGROUPS.
///
/// SwiftNIO gives no descriptor, only `getsockopt` into a buffer the size of a type, and keeps the length the
/// kernel returns to itself; so the buffer grows by type (``Twice``), and the count is worked out: a buffer of no
/// room succeeds only when the peer has no supplementary group (ERANGE otherwise), and the kernel keeps a process's
/// groups sorted (it searches them by bisection), so in a buffer larger than needed, zeros past the first entry are
/// room left over, and a gid 0 of the peer's can only be the first entry.
enum PeerGroups {
    /// The buffer's size in gids at the first read: most users have fewer groups.
    static let initialRoom = 64
    /// The kernel's limit on a process's groups (NGROUPS_MAX).
    static let maximumRoom = 65_536

    /// Room for gids in a `getsockopt` buffer, twice that of `Half`.
    struct Twice<Half: Sendable>: Sendable {
        var first: Half
        var second: Half
    }

    /// A `getsockopt` buffer of no room.
    struct NoRoom: Sendable {}

    /// The peer's supplementary gids, or nil when the kernel has no SO_PEERGROUPS (ENOPROTOOPT).
    static func read(_ provider: any SocketOptionProvider, on eventLoop: any EventLoop) -> EventLoopFuture<[UInt32]?> {
        let option = incidentd_so_peergroups()
        guard option >= 0 else { return eventLoop.makeSucceededFuture(nil) }
        let name = NIOBSDSocket.Option(rawValue: option)
        let none: EventLoopFuture<NoRoom> = provider.unsafeGetSocketOption(level: .socket, name: name)
        return none.map { _ -> [UInt32]? in [] }.flatMapError { error in
            switch (error as? IOError)?.errnoCode {
            case ERANGE:
                // 64 gids: 2⁶ times one.
                typealias Initial = Twice<Twice<Twice<Twice<Twice<Twice<UInt32>>>>>>
                return read(Initial.self, provider, name, on: eventLoop).map { $0 }
            case ENOPROTOOPT:
                return eventLoop.makeSucceededFuture(nil)
            default:
                return eventLoop.makeFailedFuture(error)
            }
        }
    }

    /// The peer's gids, known to be at least one, read into a `Buffer`, or a buffer twice its size while the kernel
    /// says it is too small (ERANGE).
    private static func read<Buffer: Sendable>(
        _: Buffer.Type, _ provider: any SocketOptionProvider, _ name: NIOBSDSocket.Option, on eventLoop: any EventLoop
    ) -> EventLoopFuture<[UInt32]> {
        let future: EventLoopFuture<Buffer> = provider.unsafeGetSocketOption(level: .socket, name: name)
        return future.map { buffer in
            withUnsafeBytes(of: buffer) { bytes in
                let room = bytes.count / MemoryLayout<UInt32>.size
                let gids = (0..<room).map { bytes.load(fromByteOffset: $0 * MemoryLayout<UInt32>.size, as: UInt32.self) }
                return [gids[0]] + gids.dropFirst().filter { $0 != 0 }
            }
        }.flatMapError { error in
            if (error as? IOError)?.errnoCode == ERANGE && MemoryLayout<Buffer>.size < maximumRoom * MemoryLayout<UInt32>.size {
                return read(Twice<Buffer>.self, provider, name, on: eventLoop)
            }
            return eventLoop.makeFailedFuture(error)
        }
    }
}

/// Maps a peer to the highest role it holds under the configured policy.
struct AccessControl: Sendable {
    let policy: AccessPolicy
    let daemonUID: UInt32
    private let groupIDs: [Role: Set<UInt32>]
    /// The names in the policy that the system did not know when this was made, in the order of the roles.
    let unresolved: [UnresolvedName]

    /// A user or group name of `[access]` that no account matches: it grants nothing until one does.
    struct UnresolvedName: Sendable, Equatable, CustomStringConvertible {
        enum Kind: String, Sendable { case user, group }
        var role: Role
        var kind: Kind
        var name: String
        /// Why the lookup failed when it was not simply "no such name" (the account database could not be read).
        var failure: String?

        /// What an operator should read at start: the key, the name, and what it means for the role.
        var description: String {
            let key = "access.\(role)s.\(kind)s names \"\(name)\""
            let effect = kind == .user
                ? "nobody is a \(role) through it until that user exists"
                : "nobody is a \(role) through it until that group exists and incidentd is restarted"
            if let failure { return "\(key), which could not be looked up (\(failure)): \(effect)" }
            return "\(key), which is no \(kind) on this system: \(effect) (a typo?)"
        }
    }

    /// Resolves the policy's group names to gids, once: a group made later counts from the next start. User names
    /// are compared with each peer's as it connects; those that name nobody now are listed in ``unresolved`` too.
    init(policy: AccessPolicy) {
        self.policy = policy
        daemonUID = getuid()
        var groupIDs: [Role: Set<UInt32>] = [:]
        var unresolved: [UnresolvedName] = []
        for role in Role.allCases {
            guard let grant = policy.grants[role] else { continue }
            var ids = grant.gids
            for name in grant.users.sorted() {
                let (uid, failure) = Self.lookUp(name) { passwd, buffer, size, result in
                    getpwnam_r(name, passwd, buffer, size, result)
                } id: { $0.pw_uid }
                if uid == nil { unresolved.append(UnresolvedName(role: role, kind: .user, name: name, failure: failure)) }
            }
            for name in grant.groups.sorted() {
                let (gid, failure) = Self.lookUp(name) { group, buffer, size, result in
                    getgrnam_r(name, group, buffer, size, result)
                } id: { $0.gr_gid }
                if let gid {
                    ids.insert(gid)
                } else {
                    unresolved.append(UnresolvedName(role: role, kind: .group, name: name, failure: failure))
                }
            }
            groupIDs[role] = ids
        }
        self.groupIDs = groupIDs
        self.unresolved = unresolved
    }

    /// An account's id by name with getpwnam_r(3) or getgrnam_r(3) (`call`), or nil and, when the database could
    /// not be read rather than not holding the name, why.
    private static func lookUp<Entry>(
        _ name: String,
        _ call: (UnsafeMutablePointer<Entry>, UnsafeMutablePointer<CChar>, Int, UnsafeMutablePointer<UnsafeMutablePointer<Entry>?>) -> Int32,
        id: (Entry) -> UInt32
    ) -> (UInt32?, failure: String?) {
        var size = 4096
        while true {
            let entry = UnsafeMutablePointer<Entry>.allocate(capacity: 1)
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
            defer {
                entry.deallocate()
                buffer.deallocate()
            }
            var result: UnsafeMutablePointer<Entry>?
            let code = call(entry, buffer, size, &result)
            if code == ERANGE && size < 1 << 20 {
                size *= 4
                continue
            }
            if code == 0, let result { return (id(result.pointee), nil) }
            // 0, ENOENT, ESRCH, EBADF and EPERM all mean that the name is not there.
            return (nil, [0, ENOENT, ESRCH, EBADF, EPERM].contains(code) ? nil : String(cString: strerror(code)))
        }
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
