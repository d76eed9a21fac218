import Foundation
import Gazetteer
import IncidentLog
import IncidentProtocol
import Logging
import TOMLKit

/// Who may do what: users, groups and uids per role. Root and the daemon's own user hold every role.
struct AccessPolicy: Sendable, Equatable {
    struct Grant: Sendable, Equatable {
        var users: Set<String> = []
        var groups: Set<String> = []
        var uids: Set<UInt32> = []
        var gids: Set<UInt32> = []
    }

    var grants: [Role: Grant] = [:]
}

/// The daemon's settings: embedded defaults, then `incidentd.toml`, then command-line flags.
struct DaemonConfiguration: Sendable {
    var dataDirectory = "/var/lib/incidentd"
    /// Where `dataDirectory` was set, for ``checkDataDirectory()``: the file and key, or "--data-dir"; nil for the default.
    var dataDirectoryOrigin: String?
    /// `daemon.backup_dir`: where admins other than root or the daemon's own user may have backups made (see
    /// ``BackupPlacement``); nil for the default, `backups` in the data directory (``backupDirectoryInEffect``).
    var backupDirectory: String?
    /// The file and key that set `backupDirectory`.
    var backupDirectoryOrigin: String?
    var socketPath = "/run/incidentd/incidentd.sock"
    /// Where `socketPath` was set, for ``checkSocketPath()``: the file and key, or "--socket"; nil for the default.
    var socketPathOrigin: String?
    var socketMode: mode_t = 0o660
    var logLevel: Logger.Level = .info
    var maxLineBytes = 1 << 20
    var maxConnections = 1024
    /// What set ``maxConnections``, for the answer to a connection past it: `max_connections`, or the open-file
    /// limit when that leaves room for fewer.
    var maxConnectionsOrigin = "max_connections"
    /// The connections one uid may hold at once; root's and the daemon's own user's are not limited.
    var maxConnectionsPerUID = 64
    var maxUnfinishedBytes = 64 << 20
    var maxPendingPerConnection = 256
    /// The answers handed to all connections and not yet taken by their sockets (see ``UnwrittenAnswers``).
    var maxUnwrittenBytes = 256 << 20
    /// A connection whose socket takes no byte of what waits for it for this long is closed; 0 never closes one.
    var writeTimeoutSeconds = 60
    /// On SIGTERM, how long the connections open then may go on being served so that the requests they sent
    /// are carried out, before what is left is refused (`shutting_down`).
    var drainSeconds = 10
    var loopScheduling = LoopScheduling.normal
    /// 64 MiB unless set, or `maxMapSize` when that is smaller and the initial size was not set.
    var initialMapSize = 64 << 20
    var maxMapSize = 64 << 30
    /// Where `initialMapSize` and `maxMapSize` were set, for ``checkMapSizes()``: the file and key of the one,
    /// "storage.max_map_size" or "--max-map-size" for the other; nil where the default holds.
    var initialMapSizeOrigin: (path: String, key: String)?
    var maxMapSizeOrigin: String?
    var fileHeadroom = 256 << 10
    var gazetteerPath: String?
    /// The file and key that set `gazetteerPath`, for ``gazetteer()``.
    var gazetteerOrigin: String?
    var access = AccessPolicy()

    /// A refusal of the configuration, naming the file and key at fault.
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    /// The sizes the map may be given, at the start and at most: below 1 MiB a log cannot hold its own databases,
    /// and 64 TiB is past any disk it is kept on.
    static let mapSizes = (1 << 20)...(1 << 46)

    /// A path the settings file `file` gives: a relative one is taken from the file's directory, as a reader of the
    /// file would take it, not from whatever directory the daemon was started in (`/` under systemd). An empty one
    /// is left empty, for the check that refuses it.
    static func path(_ value: String, besides file: String) -> String {
        guard !value.isEmpty, !value.hasPrefix("/") else { return value }
        let directory = absolutePath(file).split(separator: "/").dropLast().joined(separator: "/")
        return "/" + (directory.isEmpty ? "" : directory + "/") + value
    }

    mutating func load(file path: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw Problem(description: "\(path): is a directory; --config takes the settings file (TOML) itself")
        }
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Problem(description: "\(path): cannot read: \(error.localizedDescription)")
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw Problem(description: "\(path):\(error.source.begin.line): \(error.description)")
        }
        var reader = TableReader(table: table, path: path, prefix: "")
        if var daemon = try reader.table("daemon") {
            if let directory = try daemon.string("data_dir") {
                dataDirectory = Self.path(directory, besides: path)
                dataDirectoryOrigin = "\(path): daemon.data_dir"
            }
            if let socket = try daemon.string("socket") {
                socketPath = Self.path(socket, besides: path)
                socketPathOrigin = "\(path): daemon.socket"
            }
            if let mode = try daemon.string("socket_mode") {
                guard let parsed = mode_t(mode, radix: 8), parsed <= 0o777 else {
                    throw Problem(description: "\(path): daemon.socket_mode: expected an octal mode such as \"0660\"")
                }
                // Connecting to a socket takes write permission on it: "others" holding it would be every local user.
                guard parsed & 0o002 == 0 else {
                    throw Problem(
                        description:
                            "\(path): daemon.socket_mode: \(mode) lets every local user connect (connecting to a socket takes write permission, and \(mode) gives it to others), where the socket is for its owner and group only: give \"0660\", and a user the socket's group and a role in [access]")
                }
                socketMode = parsed
            }
            if let level = try daemon.string("log_level") {
                guard let parsed = Logger.Level(rawValue: level) else {
                    throw Problem(description: "\(path): daemon.log_level: one of trace, debug, info, notice, warning, error, critical")
                }
                logLevel = parsed
            }
            maxLineBytes = try daemon.size("max_line_bytes", range: 1024...(64 << 20)) ?? maxLineBytes
            maxConnections = try daemon.integer("max_connections", range: 1...1_000_000) ?? maxConnections
            maxConnectionsPerUID = try daemon.integer("max_connections_per_uid", range: 1...1_000_000) ?? maxConnectionsPerUID
            maxUnfinishedBytes = try daemon.size("max_unfinished_bytes", range: 1024...(1 << 40)) ?? maxUnfinishedBytes
            guard maxUnfinishedBytes >= maxLineBytes else {
                throw Problem(
                    description:
                        "\(path): daemon.max_unfinished_bytes: \(describeSize(maxUnfinishedBytes)) is less than max_line_bytes (\(describeSize(maxLineBytes))), so a line of the longest length allowed could never be received; raise it or lower max_line_bytes")
            }
            maxPendingPerConnection =
                try daemon.integer("max_pending_per_connection", range: 1...100_000) ?? maxPendingPerConnection
            drainSeconds = try daemon.integer("drain_seconds", range: 0...3600) ?? drainSeconds
            maxUnwrittenBytes = try daemon.size("max_unwritten_bytes", range: (1 << 20)...(1 << 40)) ?? maxUnwrittenBytes
            writeTimeoutSeconds = try daemon.integer("write_timeout_seconds", range: 0...86_400) ?? writeTimeoutSeconds
            if let policy = try daemon.string("loop_scheduling") {
                guard let parsed = LoopScheduling(rawValue: policy) else {
                    throw Problem(description: "\(path): daemon.loop_scheduling: one of realtime, normal")
                }
                loopScheduling = parsed
            }
            if let directory = try daemon.string("backup_dir") {
                guard !directory.isEmpty, !directory.utf8.contains(0) else {
                    throw Problem(
                        description:
                            "\(path): daemon.backup_dir: \(directory.isEmpty ? "is empty" : "holds a NUL byte"); give the directory admins back up into, such as /var/lib/incidentd/backups")
                }
                backupDirectory = absolutePath(Self.path(directory, besides: path))
                backupDirectoryOrigin = "\(path): daemon.backup_dir"
            }
            try daemon.finish()
        }
        if var storage = try reader.table("storage") {
            if let size = try storage.size("initial_map_size", range: Self.mapSizes) {
                initialMapSize = size
                initialMapSizeOrigin = (path, "storage.initial_map_size")
            }
            if let size = try storage.size("max_map_size", range: Self.mapSizes) {
                maxMapSize = size
                maxMapSizeOrigin = "storage.max_map_size"
            }
            fileHeadroom = try storage.size("file_headroom", range: 0...(1 << 30)) ?? fileHeadroom
            try storage.finish()
        }
        if var gazetteer = try reader.table("gazetteer") {
            gazetteerPath = try gazetteer.string("file").map { Self.path($0, besides: path) }
            gazetteerOrigin = "\(path): gazetteer.file"
            try gazetteer.finish()
        }
        if var access = try reader.table("access") {
            for role in Role.allCases {
                guard var grantTable = try access.table(role.description + "s") else { continue }
                var grant = AccessPolicy.Grant()
                grant.users = Set(try grantTable.strings("users") ?? [])
                grant.groups = Set(try grantTable.strings("groups") ?? [])
                grant.uids = Set(try grantTable.integers("uids")?.map(UInt32.init) ?? [])
                grant.gids = Set(try grantTable.integers("gids")?.map(UInt32.init) ?? [])
                try grantTable.finish()
                self.access.grants[role] = grant
            }
            try access.finish()
        }
        try reader.finish()
    }
}

extension DaemonConfiguration {
    /// The log's options these settings give: its directory and sizes (the daemon adds what it is told as it opens).
    var logOptions: LogOptions {
        var options = LogOptions(directory: dataDirectory)
        options.initialMapSize = initialMapSize
        options.maxMapSize = maxMapSize
        options.fileHeadroom = fileHeadroom
        return options
    }

    /// The gazetteer these settings name, or the compiled-in one. A file that cannot be read or is no gazetteer
    /// is a ``Problem`` naming the setting, the file, and the entry and field at fault.
    func gazetteer() throws -> Gazetteer {
        guard let gazetteerPath else { return Gazetteer.embedded }
        do {
            return try Gazetteer(contentsOfFile: gazetteerPath)
        } catch {
            throw Problem(description: "\(gazetteerOrigin ?? "gazetteer.file"): \(error)")
        }
    }

    /// The directory admins other than root or the daemon's own user back up into: `daemon.backup_dir`, or
    /// `backups` in the data directory (the shipped unit's /var/lib/incidentd/backups).
    var backupDirectoryInEffect: String {
        backupDirectory ?? absolutePath(dataDirectory + "/backups")
    }

    /// Refuses an empty data directory path, which names no directory.
    func checkDataDirectory() throws {
        guard dataDirectory.isEmpty else { return }
        throw Problem(
            description:
                "\(dataDirectoryOrigin ?? "daemon.data_dir"): the data directory path is empty; give the directory of the log, such as /var/lib/incidentd")
    }

    /// The longest socket path a `sockaddr_un` holds, its terminating NUL aside.
    static let maxSocketPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Refuses a socket path that `bind` would not make a file of: an empty one (Linux takes it for an abstract
    /// socket, which has no file mode, so that any local user could connect), one holding a NUL byte (the same, or
    /// another path than the one given), and one longer than `sun_path` holds.
    func checkSocketPath() throws {
        let origin = socketPathOrigin ?? "daemon.socket"
        let length = socketPath.utf8.count
        if socketPath.isEmpty {
            throw Problem(
                description:
                    "\(origin): the socket path is empty; Linux would make an abstract socket of it, which has no file mode, so that any local user could connect: give a file path such as /run/incidentd/incidentd.sock")
        }
        if socketPath.utf8.contains(0) {
            throw Problem(description: "\(origin): the socket path holds a NUL byte; give a file path without one")
        }
        if length > Self.maxSocketPathBytes {
            throw Problem(
                description:
                    "\(origin): \(socketPath) is \(length) bytes long, more than a Unix socket path may be (\(Self.maxSocketPathBytes) bytes, sun_path); choose a shorter path")
        }
    }

    /// Refuses an initial map size set above the maximum, naming both and where they were set; the default initial
    /// size yields to a smaller maximum. Call once the file and the flags are applied.
    mutating func checkMapSizes() throws {
        guard initialMapSize > maxMapSize else { return }
        guard let (path, key) = initialMapSizeOrigin else {
            initialMapSize = maxMapSize
            return
        }
        let maximum = maxMapSizeOrigin ?? "the default max_map_size"
        throw Problem(
            description:
                "\(path): \(key): \(describeSize(initialMapSize)) is larger than \(maximum) (\(describeSize(maxMapSize))); the map starts at initial_map_size and grows up to max_map_size, so lower the one or raise the other")
    }
}

/// `path` from `/`: a relative one after the current directory, less its `.` components (`..` is left as it is,
/// since it goes up from where a symbolic link leads, not from the name before it). What the daemon's log says of
/// a path given relative, so that the line names the file whatever directory it is read from.
func absolutePath(_ path: String) -> String {
    let full = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    let components = full.split(separator: "/").filter { $0 != "." }
    return "/" + components.joined(separator: "/")
}

/// "1GiB", "64MiB", "1536KiB", or "1000 bytes": a byte count in the largest unit that divides it.
func describeSize(_ bytes: Int) -> String {
    for (suffix, factor) in [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    where bytes >= factor && bytes % factor == 0 {
        return "\(bytes / factor)\(suffix)"
    }
    return "\(bytes) bytes"
}

/// Reads one TOML table strictly: wrong types and unknown keys are errors that name the file and the key.
private struct TableReader {
    let table: TOMLTable
    let path: String
    let prefix: String
    /// The keys this table may hold, in the order they were asked for; those read as tables, apart.
    var consumed: [String] = []
    var tables: Set<String> = []

    func problem(_ key: String, _ text: String) -> DaemonConfiguration.Problem {
        DaemonConfiguration.Problem(description: "\(path): \(prefix)\(key): \(text)")
    }

    mutating func table(_ key: String) throws -> TableReader? {
        consumed.append(key)
        tables.insert(key)
        guard let value = table[key] else { return nil }
        guard let inner = value.table else { throw problem(key, "expected a table") }
        return TableReader(table: inner, path: path, prefix: prefix + key + ".")
    }

    mutating func string(_ key: String) throws -> String? {
        consumed.append(key)
        guard let value = table[key] else { return nil }
        guard let s = value.string else { throw problem(key, "expected a string") }
        return s
    }

    mutating func integer(_ key: String, range: ClosedRange<Int>) throws -> Int? {
        consumed.append(key)
        guard let value = table[key] else { return nil }
        guard let i = value.int else { throw problem(key, "expected an integer") }
        guard range.contains(i) else { throw problem(key, "\(i) is outside \(range.lowerBound)...\(range.upperBound)") }
        return i
    }

    /// A byte count: an integer, or a string such as "64MiB", "1GiB", "512KiB".
    mutating func size(_ key: String, range: ClosedRange<Int>) throws -> Int? {
        consumed.append(key)
        guard let value = table[key] else { return nil }
        let bytes: Int
        if let i = value.int {
            bytes = i
        } else if let s = value.string, let parsed = parseSize(s) {
            bytes = parsed
        } else {
            throw problem(key, "expected a byte count such as 1048576 or \"64MiB\"")
        }
        guard range.contains(bytes) else { throw problem(key, "\(bytes) bytes is outside \(range.lowerBound)...\(range.upperBound)") }
        return bytes
    }

    mutating func strings(_ key: String) throws -> [String]? {
        consumed.append(key)
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw problem(key, "expected an array of strings") }
        return try (0..<array.count).map { i in
            guard let s = array[i].string else { throw problem(key, "entry \(i + 1) is not a string") }
            return s
        }
    }

    mutating func integers(_ key: String) throws -> [Int]? {
        consumed.append(key)
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw problem(key, "expected an array of integers") }
        return try (0..<array.count).map { i in
            guard let n = array[i].int, n >= 0, n <= Int(UInt32.max) else { throw problem(key, "entry \(i + 1) is not a uid/gid") }
            return n
        }
    }

    /// Refuses the first key that no call asked for, naming the keys this table holds (and, for a near miss such
    /// as `[access.reader]`, the one meant).
    func finish() throws {
        guard let unknown = table.keys.filter({ !consumed.contains($0) }).sorted().first else { return }
        let scope = prefix.isEmpty ? "the file" : "[\(prefix.dropLast())]"
        func name(_ key: String) -> String { tables.contains(key) ? "[\(prefix)\(key)]" : key }
        let names = consumed.map(name)
        var text = "unknown setting"
        let bound = max(1, min(2, unknown.count / 3))
        let scored = consumed.compactMap { key in Gazetteer.levenshtein(Array(unknown), Array(key), bound: bound).map { (key: key, distance: $0) } }
        if let nearest = scored.min(by: { $0.distance < $1.distance }) {
            text += " (\(name(nearest.key)), perhaps?)"
        }
        let holds = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " and " + names[names.count - 1]
        let what = consumed.allSatisfy(tables.contains) ? "the tables" : consumed.contains(where: tables.contains) ? "" : "the settings"
        throw problem(unknown, "\(text); \(scope) holds \(what.isEmpty ? "" : what + " ")\(holds)")
    }
}

/// Parses "64MiB", "1GiB", "512KiB", "4096" into bytes.
func parseSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("B", 1), ("", 1)]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        let number = trimmed.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)
        guard let n = Int(number), n >= 0 else { continue }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : bytes
    }
    return nil
}
