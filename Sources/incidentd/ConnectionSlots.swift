import Synchronization

/// The connections each uid holds, for `daemon.max_connections_per_uid`, and who holds the most, which the warning of
/// a refused connection names. Taken once a connection's peer credentials are read, given back when it closes.
final class ConnectionSlots: Sendable {
    private struct Holder {
        var connections: Int
        var user: String
    }

    private let holders = Mutex<[UInt32: Holder]>([:])

    /// Of `max_connections`, how many only an admin's connection may take: 8, or an eighth of them when that is fewer,
    /// so that connections of the other roles, however many, never lock an admin (root) out.
    static func reservedForAdmins(of maxConnections: Int) -> Int { min(8, maxConnections / 8) }

    /// Takes a slot for `peer`; false, taking none, when it holds `limit` already.
    func take(_ peer: PeerIdentity, limit: Int) -> Bool {
        holders.withLock { holders in
            let held = holders[peer.uid]?.connections ?? 0
            guard held < limit else { return false }
            holders[peer.uid] = Holder(connections: held + 1, user: peer.user)
            return true
        }
    }

    /// Gives back a slot ``take(_:limit:)`` took for `uid`.
    func give(_ uid: UInt32) {
        holders.withLock { holders in
            guard let held = holders[uid] else { return }
            if held.connections > 1 {
                holders[uid]?.connections = held.connections - 1
            } else {
                holders[uid] = nil
            }
        }
    }

    /// The uid holding the most connections, for a warning: "uid 1001 (alice), 64 connections"; nil when none holds any.
    func largestHolder() -> String? {
        holders.withLock { holders in
            holders.max { $0.value.connections < $1.value.connections || ($0.value.connections == $1.value.connections && $0.key > $1.key) }
                .map { "uid \($0.key) (\($0.value.user)), \($0.value.connections) connection\($0.value.connections == 1 ? "" : "s")" }
        }
    }
}
