#if canImport(Glibc)
import CShims
import Glibc
#endif
import IncidentProtocol
import SocketTrust
import StrictJSON

/// Why the CLI stopped: each case maps to one exit status of SPEC §4.
enum ClientFailure: Error, CustomStringConvertible {
    /// The daemon refused the request (exit 1).
    case refused(code: String, message: String)
    /// Bad usage or unreadable input (exit 2).
    case usage(String)
    /// The daemon cannot be reached (exit 3).
    case unreachable(String)
    /// The daemon sent a line that breaks the protocol (exit 1, as a check that failed): not JSON, or not the answer
    /// expected. The message names what came and where.
    case protocolViolation(String)

    var description: String {
        switch self {
        case .refused(let code, let message): return "\(code): \(Diagnostics.harmless(message))"
        case .usage(let message): return message
        case .unreachable(let message): return message
        case .protocolViolation(let message): return "protocol_violation: \(Diagnostics.harmless(message))"
        }
    }

    /// Why the daemon could not be reached, when that is what `error` says.
    static func unreachableReason(_ error: any Error) -> String? {
        guard case .unreachable(let why)? = error as? ClientFailure else { return nil }
        return why
    }

    /// Why the daemon turned the connection away for now (`too_many_connections`), if that is what `error` is: a
    /// wait, to a follower that lost it across a restart, not an end.
    static func fullReason(_ error: any Error) -> String? {
        guard case .refused(let code, let message)? = error as? ClientFailure, code == "too_many_connections" else { return nil }
        return message
    }

    /// This failure, when it is the daemon's refusal of one of `operations` for lack of a role, saying that the user
    /// may not `asked` instead ("may not export"); any other failure as it is. A command sends some requests on its
    /// own, on the way to what the user asked for (`status`, to learn the head): a refusal naming one of them names
    /// an operation the user never asked for. The role the refusal names is the one `asked` needs too.
    func naming(_ asked: String, insteadOf operations: [Operation]) -> ClientFailure {
        guard case .refused(let code, var message) = self, code == ProtocolError.Code.permissionDenied.rawValue else { return self }
        for operation in operations {
            message = message.replacing("may not \(operation.rawValue):", with: "may not \(asked):")
        }
        return .refused(code: code, message: message)
    }

    /// This failure with `note` after its message, its exit status the same.
    func adding(_ note: String) -> ClientFailure {
        switch self {
        case .refused(let code, let message): return .refused(code: code, message: message + note)
        case .usage(let message): return .usage(message + note)
        case .unreachable(let message): return .unreachable(message + note)
        case .protocolViolation(let message): return .protocolViolation(message + note)
        }
    }

    var exitStatus: Int32 {
        switch self {
        case .refused, .protocolViolation: return 1
        case .usage: return 2
        case .unreachable: return 3
        }
    }
}

/// A blocking JSON-lines client of the daemon's socket. Requests may be pipelined: ``send(_:)`` writes,
/// ``receive()`` reads the next response in order. Each wait is bounded: for the daemon to take the connection,
/// for it to take a request, and for each answer, as the caller says.
final class SocketClient {
    let path: String
    private let fd: Int32
    private var framer = LineFramer(maxLineLength: 256 << 20)
    private var lines: [[UInt8]] = []
    private var linesStart = 0
    private var nextId: Int64 = 1
    /// The longest wait, in seconds, for each answer and for the daemon to take a request; nil: no limit.
    let answerLimit: Double?
    /// What set `answerLimit`, as a timeout names it ("--timeout").
    private let limitSource: String

    /// Connects to `path`, waiting at most `connectLimit` seconds for the daemon to take the connection (a listener
    /// whose queue of connections is full keeps a connect waiting), and then at most `answerLimit` for each answer
    /// (nil: no limit), which `limitSource` set. Nothing the daemon can do keeps it waiting longer: a waiting that
    /// runs out is ``ClientFailure/unreachable(_:)``.
    init(path: String, connectLimit: Double, answerLimit: Double?, limitSource: String) throws(ClientFailure) {
        self.path = path
        self.answerLimit = answerLimit
        self.limitSource = limitSource
        guard !path.isEmpty else {
            throw .usage("--socket: the socket path is empty; give the path of the socket incidentd serves (daemon.socket in its incidentd.toml)")
        }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .unreachable("cannot create a socket: \(String(cString: strerror(errno)))") }
        // A Unix socket's connect waits for room in the listener's queue as long as SO_SNDTIMEO allows, then fails
        // with EAGAIN; the same option then bounds a send that the daemon does not read.
        Self.setSendTimeout(fd, connectLimit)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw .usage("socket path \(path) is too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 {
            let code = errno
            let reason = String(cString: strerror(code))
            close(fd)
            if code == EAGAIN || code == EINPROGRESS {
                throw .unreachable(
                    "incidentd at \(path) did not take the connection within \(Self.describe(seconds: connectLimit)): the queue of "
                        + "connections waiting for it to take them is full (it may be stopped, wedged or overloaded); nothing was sent")
            }
            if code == EACCES {
                throw .unreachable("cannot reach incidentd at \(path): \(reason): " + Self.permissionAdvice(path))
            }
            if code == ENOTDIR {
                throw .unreachable(
                    "cannot reach incidentd at \(path): a part of the path before the socket is not a directory; set --socket or INCIDENTD_SOCKET to the socket incidentd serves (daemon.socket in its incidentd.toml)")
            }
            if let what = Self.notASocket(path) {
                throw .unreachable(
                    "cannot reach incidentd at \(path): it is \(what), not a socket; set --socket or INCIDENTD_SOCKET to the socket incidentd serves (daemon.socket in its incidentd.toml)")
            }
            throw .unreachable(
                "cannot reach incidentd at \(path): \(reason) (is it running? set --socket or INCIDENTD_SOCKET)")
        }
        if let stranger = Self.stranger(serving: fd, at: path) {
            close(fd)
            throw .unreachable(stranger)
        }
        Self.setSendTimeout(fd, answerLimit ?? 0)
    }

    /// Sets SO_SNDTIMEO of `fd` to `seconds` (0: none).
    private static func setSendTimeout(_ fd: Int32, _ seconds: Double) {
        let whole = seconds.rounded(.down)
        var micro = Int((seconds - whole) * 1_000_000)
        // A time of zero is none: a limit under a microsecond is one microsecond.
        if seconds > 0 && whole == 0 && micro == 0 { micro = 1 }
        var time = timeval(tv_sec: Int(whole), tv_usec: micro)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    /// "60 seconds", "1 second", "2.5 seconds".
    static func describe(seconds: Double) -> String {
        seconds == 1 ? "1 second" : seconds == seconds.rounded() ? "\(Int(seconds)) seconds" : "\(seconds) seconds"
    }

    /// Why a wait for the daemon ran out: `what` it did not do within `seconds`, and what set that limit.
    private func waitedTooLong(_ what: String, _ seconds: Double) -> ClientFailure {
        .unreachable(
            "incidentd at \(path) \(what) within \(Self.describe(seconds: seconds)) (\(limitSource)): it may be "
                + "stopped, wedged or overloaded")
    }

    /// Why the process serving the connected socket `fd` cannot be trusted to be incidentd, or nil. One that runs as
    /// root or as this user is trusted. One of another user is trusted only where that user is shown to be incidentd's
    /// by the path: it or root owns the socket's directory, incidentd would serve there as that user
    /// (``SocketDirectoryRules``), and no directory of that user's on the way sits in one that others may write
    /// (where anyone could have made it, as in /tmp). Anywhere else it may be a stand-in another user put there:
    /// whatever it answers, what is sent to it is not stored.
    private static func stranger(serving fd: Int32, at path: String) -> String? {
        var peer = incidentd_ucred()
        guard incidentd_peer_credentials(fd, &peer) == 0, peer.uid != 0, peer.uid != geteuid() else { return nil }
        let slash = path.utf8.lastIndex(of: UInt8(ascii: "/"))
        let directory = slash.map { $0 == path.utf8.startIndex ? "/" : String(path[..<$0]) } ?? "."
        // The rules trust a directory of root's that others may not write, which holds only what root put there:
        // systemd makes /run/incidentd so (DirectoryMode=) when incidentd.socket starts before tmpfiles gives it to
        // incidentd, and the daemon that takes the socket over listens on it as its own user.
        guard
            let fault = SocketDirectoryRules.fault(
                reaching: directory, isSocketDirectory: true, trusting: peer.uid, grantedByRoot: true)
        else { return nil }
        let advice = "nothing was sent. Tell the administrator, and check --socket or INCIDENTD_SOCKET"
        return "the process serving \(path) (pid \(peer.pid)) runs as \(SocketDirectoryRules.describeUser(peer.uid)), "
            + "which the path does not show to be incidentd's user: the socket's directory \(directory): \(fault.path) "
            + "(mode \(fault.modeText), owner \(SocketDirectoryRules.describeUser(fault.owner))) \(fault.problem). It may "
            + "be a stand-in another user put there: incidentctl trusts a process of a user other than root or its own user "
            + "only in a directory of that user's that no one else may write, made for it in one only root may write "
            + "(as /run/incidentd), below directories no one else may rename; \(advice)"
    }

    /// What `path` names when it is there and is not a socket ("a file", "a directory"), or nil.
    private static func notASocket(_ path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK: return nil
        case S_IFREG: return "a file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a named pipe"
        default: return "a device"
        }
    }

    /// What a connection refused for want of permission lacks, and how to get it: membership of the socket's group
    /// (mode 0660, this process not in it), root (a socket of root's own group, as a daemon started by root makes
    /// it), write permission that the socket's mode gives only its owner (0644, 0600), or a directory on the way that
    /// may not be searched.
    private static func permissionAdvice(_ path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return "a directory on the way to the socket may not be searched by you; ask its administrator, or set --socket or INCIDENTD_SOCKET to a socket you may reach"
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            return "set --socket or INCIDENTD_SOCKET to the socket incidentd serves (daemon.socket in its incidentd.toml)"
        }
        let owner = userName(info.st_uid), group = groupName(info.st_gid)
        let mode = String(info.st_mode & 0o7777, radix: 8)
        let described = "the socket (owner \(owner), group \(group), mode 0\(mode))"
        let rootAdvice =
            "reaching it takes root (sudo incidentctl …), or a daemon of your own: `make run` as your own user, in a checkout of yours, starts one whose socket is yours; under the shipped units the group incidentd-clients reaches it"
        if info.st_mode & 0o020 != 0, !inGroup(info.st_gid) {
            if info.st_gid == 0 {
                let daemon = info.st_uid == 0 ? ": the daemon runs as root" : ", which is not a group to join"
                return "\(described) is open to its group, root\(daemon); \(rootAdvice)"
            }
            return "reaching it takes membership of its group \(group) (ask an administrator to add you to it, then log in again); the roles in incidentd.toml then decide what you may do"
        }
        if info.st_mode & 0o002 == 0, info.st_uid == 0 {
            return "\(described) may be written only by root\(info.st_mode & 0o020 != 0 ? " and its group" : ""), and connecting takes write permission on it; \(rootAdvice)"
        }
        return "\(described) may not be written by you, and connecting takes write permission on it: connect as its owner, or ask its administrator for a socket of mode 0660 whose group is yours"
    }

    /// Whether this process is in group `gid`, as its effective group or a supplementary one.
    private static func inGroup(_ gid: gid_t) -> Bool {
        var count = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(count, 0)))
        count = getgroups(count, &groups)
        return getegid() == gid || (count >= 0 && groups.prefix(Int(count)).contains(gid))
    }

    /// A group's name, quoted ("incidentd-clients"), or "gid 990" when it has none.
    private static func groupName(_ gid: gid_t) -> String {
        var group = Glibc.group()
        var buffer = [CChar](repeating: 0, count: 16384)
        var result: UnsafeMutablePointer<Glibc.group>?
        guard getgrgid_r(gid, &group, &buffer, buffer.count, &result) == 0, result != nil, let name = group.gr_name
        else { return "gid \(gid)" }
        return "\"\(String(cString: name))\""
    }

    /// A user's name, quoted, or "uid 1000" when it has none.
    private static func userName(_ uid: uid_t) -> String {
        var user = Glibc.passwd()
        var buffer = [CChar](repeating: 0, count: 16384)
        var result: UnsafeMutablePointer<Glibc.passwd>?
        guard getpwuid_r(uid, &user, &buffer, buffer.count, &result) == 0, result != nil, let name = user.pw_name
        else { return "uid \(uid)" }
        return "\"\(String(cString: name))\""
    }

    deinit { close(fd) }

    /// Sends one request; returns the id it was given.
    @discardableResult
    func send(_ operation: Operation, _ body: [String: JSONValue] = [:]) throws(ClientFailure) -> Int64 {
        let id = nextId
        nextId += 1
        var line = Request(id: JSONText(.int(id)), operation: operation, body: body).encoded()
        line.append(0x0A)
        try writeAll(line)
        return id
    }

    /// Sends one request whose other members the caller has written already (`"name":value` pairs separated by
    /// commas, as the bytes of a JSON object's inside): for a request made of bytes that are JSON already, such as
    /// the lines of a file. Returns the id it was given.
    @discardableResult
    func send(_ operation: Operation, members: [UInt8]) throws(ClientFailure) -> Int64 {
        let id = nextId
        nextId += 1
        var line: [UInt8] = []
        line.reserveCapacity(members.count + 48)
        line.append(contentsOf: "{\"id\":\(id),\"op\":".utf8)
        JSONValue.writeString(operation.rawValue, into: &line)
        if !members.isEmpty {
            line.append(UInt8(ascii: ","))
            line.append(contentsOf: members)
        }
        line.append(contentsOf: "}\n".utf8)
        try writeAll(line)
        return id
    }

    func writeAll(_ bytes: [UInt8]) throws(ClientFailure) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EAGAIN || code == EWOULDBLOCK { throw waitedTooLong("did not take the request", answerLimit ?? 0) }
                // A daemon that refused the connection (too_many_connections, which it sends only as it refuses one)
                // wrote why, then closed it: that line, still to be read, is the answer, not the broken pipe the
                // request then met. Any other line waiting is left for its reader: the answers to requests sent
                // earlier on the connection, which a load tells apart.
                if code == EPIPE || code == ECONNRESET, let line = peekLine(), let refusal = try? Self.answer(line),
                    refusal["error"]?["code"]?.stringValue == "too_many_connections"
                {
                    linesStart += 1
                    _ = try Self.check(refusal)
                }
                throw .unreachable("lost the connection to incidentd at \(path): \(String(cString: strerror(code)))")
            }
            offset += written
        }
    }

    /// Reads the next response line.
    func receive() throws(ClientFailure) -> JSONValue {
        try Self.answer(receiveLine())
    }

    /// A line the daemon sent, read as JSON; ``ClientFailure/protocolViolation(_:)`` naming the line (its start) and
    /// where it fails when it is not.
    static func answer(_ line: [UInt8], after context: String = "") throws(ClientFailure) -> JSONValue {
        do {
            return try JSONReader(maxDepth: 128).read(line)
        } catch {
            let shown = String(decoding: line.prefix(160), as: UTF8.self).debugDescription
            throw .protocolViolation(
                "incidentd sent a line that is not JSON\(context) (\(error) of the line, \(line.count) bytes): "
                    + "\(shown)\(line.count > 160 ? "…" : ""); the stored log may be damaged: run incidentctl verify")
        }
    }

    /// Whether a line has arrived that ``receiveLine()`` returns without waiting.
    var hasLineWaiting: Bool { linesStart < lines.count }

    /// Whether ``receiveLine()`` has something to read within `milliseconds`: a line waiting, bytes arriving, or the
    /// connection closing (which it reports). False when the time passed with nothing.
    func awaitLine(milliseconds: Int32) -> Bool {
        if hasLineWaiting { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, milliseconds) != 0
    }

    /// The next line, left for ``receiveLine()`` to return; read in if none is waiting. Nil when the connection ends
    /// or fails first.
    private func peekLine() -> [UInt8]? {
        guard let line = try? receiveLine() else { return nil }
        linesStart -= 1
        return line
    }

    /// The next line as it came, without its newline, waiting for it at most ``answerLimit``.
    func receiveLine() throws(ClientFailure) -> [UInt8] {
        try receiveLine(waitingAtMost: answerLimit)
    }

    /// The next line as it came, without its newline, waiting for the whole of it at most `limit` seconds (nil: as
    /// long as it takes, as a follower waits for the next event).
    func receiveLine(waitingAtMost limit: Double?) throws(ClientFailure) -> [UInt8] {
        let deadline = limit.map { ContinuousClock.now + .seconds($0) }
        while linesStart >= lines.count {
            lines.removeAll(keepingCapacity: true)
            linesStart = 0
            if let deadline {
                let left = ContinuousClock.now.duration(to: deadline)
                let milliseconds = left.components.seconds * 1000 + (left.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = milliseconds <= 0 ? 0 : poll(&descriptor, 1, Int32(clamping: milliseconds))
                if ready < 0 {
                    if errno == EINTR { continue }
                    throw .unreachable("lost the connection to incidentd at \(path): \(String(cString: strerror(errno)))")
                }
                if ready == 0, let limit { throw waitedTooLong("did not answer", limit) }
            }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                throw .unreachable("lost the connection to incidentd at \(path): \(String(cString: strerror(errno)))")
            }
            if count == 0 { throw .unreachable("incidentd at \(path) closed the connection") }
            for frame in buffer.withUnsafeBytes({ framer.feed(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }) {
                if case .line(let line) = frame { lines.append(line) }
            }
        }
        let line = lines[linesStart]
        linesStart += 1
        return line
    }

    /// Sends one request and waits for its response; a refusal throws.
    func call(_ operation: Operation, _ body: [String: JSONValue] = [:]) throws(ClientFailure) -> JSONValue {
        try send(operation, body)
        return try Self.check(try receive())
    }

    /// Calls `each` with the events `read` gives for `members` (its filters) from position `from` on, in order, a
    /// page at a time: at most `count` of them (0: no bound), none past position `head`.
    func readEvents(
        _ members: [String: JSONValue], from: Int64, count: Int = 0, through head: Int64 = .max,
        _ each: (JSONValue) throws -> Void
    ) throws {
        var next = from
        var delivered = 0
        while next <= head && (count == 0 || delivered < count) {
            var body = members
            body["from"] = .int(next)
            body["limit"] = .int(min(1000, head - next + 1, count == 0 ? 1000 : Int64(count - delivered)))
            let response = try call(.read, body)
            let events = response["events"]?.arrayValue ?? []
            for event in events {
                guard let position = event["position"]?.intValue, position <= head else { return }
                try each(event)
                delivered += 1
            }
            guard let following = response["next"]?.intValue, following > next, !events.isEmpty else { return }
            next = following
        }
    }

    /// The response to `operation` as a document to print: without its `id` and `ok`.
    func document(_ operation: Operation, _ body: [String: JSONValue] = [:]) throws(ClientFailure) -> JSONValue {
        guard case .object(var members) = try call(operation, body) else { return .null }
        members.removeValue(forKey: "id")
        members.removeValue(forKey: "ok")
        return .object(members)
    }

    /// Returns the response if `ok`, else throws its error.
    static func check(_ response: JSONValue) throws(ClientFailure) -> JSONValue {
        if response["ok"]?.boolValue == true { return response }
        let error = response["error"]
        throw .refused(
            code: error?["code"]?.stringValue ?? "unknown_error",
            message: error?["message"]?.stringValue ?? response.canonicalString())
    }
}
