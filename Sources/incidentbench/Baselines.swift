import Foundation
import Histogram
import LMDB
import StrictJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to completion and returns its status and output. Output goes through temporary files rather
/// than pipes, so that a daemon the program leaves behind (`pg_ctl start`) cannot keep the call waiting.
@discardableResult
func runProgram(_ path: String, _ arguments: [String], stdin: String? = nil, check: Bool = true) throws -> (status: Int32, out: String, err: String) {
    let base = "/tmp/incidentbench-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let outPath = base + ".out", errPath = base + ".err", inPath = base + ".in"
    defer {
        unlink(outPath)
        unlink(errPath)
        unlink(inPath)
    }
    _ = FileManager.default.createFile(atPath: inPath, contents: Data((stdin ?? "").utf8))
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, inPath, O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw BenchError("cannot run \(path): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    if check && exitStatus != 0 {
        throw BenchError("\(path) \(arguments.joined(separator: " ")) exited with \(exitStatus): \(err)\(out)")
    }
    return (exitStatus, out, err)
}

/// The same stored event bytes the daemon wrote, used by every baseline.
struct Samples {
    /// Canonical event JSON, as stored after the 32-byte hash.
    var canonical: [[UInt8]]
    /// What the daemon stores as the value: hash ‖ canonical JSON.
    var stored: [[UInt8]]
}

// MARK: - LMDB, the ceiling

struct LMDBCeiling {
    var eventsPerSecond: Double
    var bytesPerEvent: Double
    /// One event per synced commit into the `events` database alone: the floor of an append's latency here.
    var singleDatabaseLatency: Histogram<UInt64>
    /// One event per synced commit into the daemon's seven databases (the event, its stream entry, its event id,
    /// its incident's projection, its city's, its date in its city's index of dates, the head): the floor for this
    /// storage layout, where a report writes all seven.
    var daemonLayoutLatency: Histogram<UInt64>
}

/// LMDB alone appending the daemon's stored bytes under big-endian positions with `MDB_APPEND`, 1,000 events per
/// synced commit: what the disk and LMDB allow with no JSON, no hashing and no projections. The index databases
/// are filled alongside with keys of the daemon's shapes, and then the latency of one event per synced commit
/// is measured twice: into the events database alone, and into all seven as the daemon writes a report.
func runLMDBCeiling(samples: Samples, events: Int, directory: String) throws -> LMDBCeiling {
    guard !samples.stored.isEmpty else { throw BenchError("no stored events to measure LMDB with") }
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var options = EnvironmentOptions()
    options.maxDatabases = 8
    options.initialMapSize = 1 << 30
    options.maxMapSize = 1 << 40
    // What each sample's index keys are made of, as the daemon would make them.
    let shapes: [(incident: [UInt8], eventId: [UInt8], city: [UInt8])] = samples.canonical.map { bytes in
        let event = try? JSONReader().read(bytes)
        let incident = event?["incident"]?.stringValue ?? "incident"
        let eventId = event?["eventId"]?.stringValue ?? "event"
        let city = event?["data"]?["cityId"]?.stringValue ?? incident.split(separator: "-").first.map(String.init) ?? "city"
        return (Array(incident.utf8), Array(eventId.utf8), Array(city.utf8))
    }
    let projection = [UInt8](repeating: UInt8(ascii: "p"), count: 420)
    let cityDocument = [UInt8](repeating: UInt8(ascii: "c"), count: 900)
    let head = [UInt8](repeating: 0x48, count: 48)
    // An incident-streams value: the position, then the event's summary (about 88 bytes on average in the bench's
    // mix of reports, responses and outcomes).
    let streamValue = [UInt8](repeating: 0x53, count: 96)
    let bytesPerEvent: Double
    let seconds: Double
    var single = makeHistogram()
    var layout = makeHistogram()
    do {
        let env = try Environment(directory: directory, options: options)
        let db = try env.openDatabase("events", create: true)
        let streams = try env.openDatabase("incident-streams", create: true)
        let ids = try env.openDatabase("event-ids", create: true)
        let incidents = try env.openDatabase("incidents", create: true)
        let cities = try env.openDatabase("cities", create: true)
        let cityDates = try env.openDatabase("city-dates", create: true)
        let meta = try env.openDatabase("meta", create: true)
        var position: UInt64 = 0
        let start = monotonicNanos()
        while position < UInt64(events) {
            try env.write { txn in
                for _ in 0..<min(1_000, events - Int(position)) {
                    position += 1
                    let value = samples.stored[Int(position) % samples.stored.count]
                    try txn.put(db, key: position, value: value, flags: .append)
                }
            }
        }
        seconds = Double(monotonicNanos() - start) / 1e9
        bytesPerEvent = Double(fileSize(directory + "/data.mdb")) / Double(events)

        // The index databases, filled with keys of the daemon's shapes (made unique by the position).
        func keys(_ position: UInt64) -> (
            stream: [UInt8], id: [UInt8], incident: [UInt8], city: [UInt8], cityDate: [UInt8]
        ) {
            let shape = shapes[Int(position) % shapes.count]
            let suffix = Array("-\(position)".utf8)
            let incident = shape.incident + suffix
            // Where the incident starts, then its version: as the daemon keys its incident streams.
            var stream: [UInt8] = []
            withUnsafeBytes(of: position.bigEndian) { stream.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt64(1).bigEndian) { stream.append(contentsOf: $0) }
            // The city, a 0 byte, the date's start (a day of 2022, in microseconds) and the report's position.
            var cityDate = shape.city + [0]
            let start = UInt64(1_640_995_200_000_000 + (position % 365) * 86_400_000_000) ^ (1 << 63)
            withUnsafeBytes(of: start.bigEndian) { cityDate.append(contentsOf: $0) }
            withUnsafeBytes(of: position.bigEndian) { cityDate.append(contentsOf: $0) }
            return (stream, shape.eventId + suffix, incident, shape.city, cityDate)
        }
        // The date as reported, a 0 byte and the incident id.
        func dateValue(_ incident: [UInt8]) -> [UInt8] { Array("2022-03-01".utf8) + [0] + incident }
        var indexed: UInt64 = 0
        while indexed < position {
            try env.write { txn in
                for _ in 0..<min(UInt64(10_000), position - indexed) {
                    indexed += 1
                    let k = keys(indexed)
                    try txn.put(streams, key: k.stream, value: streamValue)
                    try txn.put(ids, key: k.id, value: Array(head[..<40]))
                    try txn.put(incidents, key: k.incident, value: projection)
                    try txn.put(cityDates, key: k.cityDate, value: dateValue(k.incident))
                }
            }
        }

        let commits = 2_000
        for layoutCommit in [false, true] {
            for _ in 0..<commits {
                position += 1
                let value = samples.stored[Int(position) % samples.stored.count]
                let k = keys(position)
                let t0 = monotonicNanos()
                try env.write { txn in
                    try txn.put(db, key: position, value: value, flags: .append)
                    if layoutCommit {
                        try txn.put(streams, key: k.stream, value: streamValue)
                        try txn.put(ids, key: k.id, value: Array(head[..<40]))
                        try txn.put(incidents, key: k.incident, value: projection)
                        try txn.put(cities, key: k.city, value: cityDocument)
                        try txn.put(cityDates, key: k.cityDate, value: dateValue(k.incident))
                        try txn.put(meta, key: Array("head".utf8), value: head)
                    }
                }
                let elapsed = monotonicNanos() - t0
                if layoutCommit { layout.record(elapsed) } else { single.record(elapsed) }
            }
        }
    }
    return LMDBCeiling(
        eventsPerSecond: Double(events) / seconds, bytesPerEvent: bytesPerEvent, singleDatabaseLatency: single,
        daemonLayoutLatency: layout)
}

func fileSize(_ path: String) -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else { return 0 }
    return Int(info.st_size)
}

// MARK: - SQLite, through dlopen

/// The few SQLite calls the baseline needs, bound at run time from `libsqlite3.so.0` so that building the
/// package never needs SQLite's headers (only `make bench` installs them).
///
/// `@unchecked Sendable` is sound: every stored property is a `let` holding a C function pointer, a plain
/// address with no captured state, set once in `init` and never changed; the library is never closed, so the
/// addresses stay valid. Calling them from several threads is SQLite's own business: Debian builds it
/// threadsafe, and each baseline thread opens and uses its own connection.
struct SQLiteAPI: @unchecked Sendable {
    typealias Open = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<OpaquePointer?>?, Int32, UnsafePointer<CChar>?) -> Int32
    typealias Exec = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, OpaquePointer?, UnsafeMutableRawPointer?, OpaquePointer?) -> Int32
    typealias Prepare = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, Int32, UnsafeMutablePointer<OpaquePointer?>?, OpaquePointer?) -> Int32
    typealias BindText = @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer?, Int32, OpaquePointer?) -> Int32
    typealias Step = @convention(c) (OpaquePointer?) -> Int32
    typealias Close = @convention(c) (OpaquePointer?) -> Int32
    typealias ErrMsg = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias BusyCallback = @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32
    typealias BusyHandler = @convention(c) (OpaquePointer?, BusyCallback?, UnsafeMutableRawPointer?) -> Int32

    let open: Open
    let exec: Exec
    let prepare: Prepare
    let bindText: BindText
    let step: Step
    let reset: Step
    let finalize: Step
    let close: Close
    let errmsg: ErrMsg
    let busyHandler: BusyHandler

    init() throws {
        guard let lib = dlopen("libsqlite3.so.0", RTLD_NOW) else {
            throw BenchError("cannot load libsqlite3.so.0 (apt-get install sqlite3): \(String(cString: dlerror()))")
        }
        func sym<T>(_ name: String, _: T.Type) throws -> T {
            guard let p = dlsym(lib, name) else { throw BenchError("libsqlite3 lacks \(name)") }
            return unsafeBitCast(p, to: T.self)
        }
        open = try sym("sqlite3_open_v2", Open.self)
        exec = try sym("sqlite3_exec", Exec.self)
        prepare = try sym("sqlite3_prepare_v2", Prepare.self)
        bindText = try sym("sqlite3_bind_text", BindText.self)
        step = try sym("sqlite3_step", Step.self)
        reset = try sym("sqlite3_reset", Step.self)
        finalize = try sym("sqlite3_finalize", Step.self)
        close = try sym("sqlite3_close_v2", Close.self)
        errmsg = try sym("sqlite3_errmsg", ErrMsg.self)
        busyHandler = try sym("sqlite3_busy_handler", BusyHandler.self)
    }

    func connect(_ path: String) throws -> OpaquePointer {
        var db: OpaquePointer?
        let rc = open(path, &db, 0x2 | 0x4 | 0x8000, nil)  // READWRITE | CREATE | NOMUTEX
        guard rc == 0, let db else { throw BenchError("sqlite3_open_v2 \(path): \(rc)") }
        // Writers wait for each other by retrying after a short sleep: SQLite's own busy timeout sleeps
        // milliseconds at a time, which would make the multi-threaded baseline look worse than it is.
        _ = busyHandler(db, { _, _ in usleep(20); return 1 }, nil)
        try run(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
        return db
    }

    func run(_ db: OpaquePointer, _ sql: String) throws {
        let rc = exec(db, sql, nil, nil, nil)
        guard rc == 0 else { throw BenchError("sqlite: \(sql): \(String(cString: errmsg(db)!))") }
    }
}

struct SQLiteResult {
    var eventsPerSecond: [Int: Double] = [:]
    var latency: Histogram<UInt64>?
    var bytesPerEvent: Double = 0
}

/// SQLite in WAL mode with `synchronous=FULL`, one commit per event, from `threads` threads with a connection
/// each (SQLite lets one writer in at a time).
func runSQLite(samples: Samples, threadCounts: [Int], seconds: Double, directory: String) throws -> SQLiteResult {
    let api = try SQLiteAPI()
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let path = directory + "/events.db"
    let setup = try api.connect(path)
    try api.run(setup, "CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    var result = SQLiteResult()
    let bodies = samples.canonical
    for threads in threadCounts {
        let counts = Mutex<[Int]>([])
        let latency = Mutex<Histogram<UInt64>?>(nil)
        let failure = Mutex<String?>(nil)
        let group = DispatchGroup()
        let deadline = monotonicNanos() + UInt64(seconds * 1e9)
        let start = monotonicNanos()
        for t in 0..<threads {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let db = try api.connect(path)
                    defer { _ = api.close(db) }
                    var stmt: OpaquePointer?
                    guard api.prepare(db, "INSERT INTO events(body) VALUES (?)", -1, &stmt, nil) == 0 else {
                        throw BenchError("prepare: \(String(cString: api.errmsg(db)!))")
                    }
                    defer { _ = api.finalize(stmt) }
                    var histogram = makeHistogram()
                    var n = 0
                    var i = t * 7919
                    while monotonicNanos() < deadline {
                        let body = bodies[i % bodies.count]
                        i += 1
                        let t0 = monotonicNanos()
                        let rc = body.withUnsafeBytes { raw -> Int32 in
                            _ = api.bindText(stmt, 1, raw.baseAddress, Int32(raw.count), nil)
                            let rc = api.step(stmt)
                            _ = api.reset(stmt)
                            return rc
                        }
                        guard rc == 101 else { throw BenchError("insert: \(rc) \(String(cString: api.errmsg(db)!))") }
                        histogram.record(monotonicNanos() - t0)
                        n += 1
                    }
                    let done = n
                    counts.withLock { $0.append(done) }
                    if t == 0 {
                        let h = histogram
                        latency.withLock { $0 = h }
                    }
                } catch {
                    let message = "\(error)"
                    failure.withLock { $0 = message }
                }
            }.start()
        }
        group.wait()
        let elapsed = Double(monotonicNanos() - start) / 1e9
        if let message = failure.withLock({ $0 }) { throw BenchError("SQLite baseline: \(message)") }
        result.eventsPerSecond[threads] = Double(counts.withLock { $0.reduce(0, +) }) / elapsed
        if threads == 1 { result.latency = latency.withLock { $0 } }
    }
    try api.run(setup, "PRAGMA wal_checkpoint(TRUNCATE)")
    var rows: OpaquePointer?
    _ = api.prepare(setup, "SELECT count(*) FROM events", -1, &rows, nil)
    _ = api.step(rows)
    let countFn = try {
        guard let lib = dlopen("libsqlite3.so.0", RTLD_NOW), let p = dlsym(lib, "sqlite3_column_int64") else {
            throw BenchError("libsqlite3 lacks sqlite3_column_int64")
        }
        return unsafeBitCast(p, to: (@convention(c) (OpaquePointer?, Int32) -> Int64).self)
    }()
    let count = countFn(rows, 0)
    _ = api.finalize(rows)
    _ = api.close(setup)
    result.bytesPerEvent = Double(fileSize(path) + fileSize(path + "-wal")) / Double(max(count, 1))
    return result
}

// MARK: - PostgreSQL

struct PostgresResult {
    var transactionsPerSecond: [Int: Double] = [:]
    var latency: Histogram<UInt64>?
    var bytesPerEvent: Double = 0
    var version = ""
}

/// A throwaway PostgreSQL server: `initdb` into a temporary directory as the `postgres` user, served on a Unix
/// socket in that directory only, with the durable defaults (`fsync=on`, `synchronous_commit=on`).
final class TemporaryPostgres {
    let bin: String
    let root: String
    let data: String
    let user = "postgres"
    private var running = false

    init(root: String) throws {
        let base = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).compactMap(Int.init).sorted()
        guard let version = versions.last else {
            throw BenchError("no PostgreSQL server under \(base) (apt-get install postgresql)")
        }
        bin = "\(base)/\(version)/bin"
        self.root = root
        data = root + "/data"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        // The postgres user must be able to reach the directory.
        var dir = root
        while dir != "/" && !dir.isEmpty {
            var info = stat()
            if stat(dir, &info) == 0 { chmod(dir, info.st_mode | 0o711) }
            dir = (dir as NSString).deletingLastPathComponent
        }
        try runProgram("/bin/chown", [user, root])
        try asPostgres(bin + "/initdb", ["-D", data, "-A", "trust", "-U", user, "-E", "UTF8", "--locale=C", "--no-sync"])
        let options = "-c listen_addresses='' -c unix_socket_directories='\(root)' -c max_connections=200 "
            + "-c shared_buffers=256MB -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        try asPostgres(bin + "/pg_ctl", ["-D", data, "-l", root + "/postgres.log", "-w", "-t", "60", "-o", options, "start"])
        running = true
    }

    deinit { stop() }

    func stop() {
        guard running else { return }
        running = false
        _ = try? asPostgres(bin + "/pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"])
    }

    @discardableResult
    func asPostgres(_ program: String, _ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        try runProgram("/usr/sbin/runuser", ["-u", user, "--", program] + arguments, stdin: stdin)
    }

    func sql(_ statement: String) throws -> String {
        try asPostgres(bin + "/psql", ["-h", root, "-U", user, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement]).out
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// `pgbench` inserting the daemon's event bytes into `events (position bigserial, body jsonb)`, one event per
/// transaction, with 1, 16 and 64 clients. The bodies come from a table of samples as text and are parsed into
/// jsonb by each insert, as a client's JSON would be.
func runPostgres(samples: Samples, clientCounts: [Int], seconds: Int, directory: String) throws -> PostgresResult {
    let pg = try TemporaryPostgres(root: directory)
    defer { pg.stop() }
    var result = PostgresResult()
    result.version = (try? pg.sql("SHOW server_version")) ?? ""
    _ = try pg.sql("CREATE TABLE events (position bigserial PRIMARY KEY, body jsonb NOT NULL)")
    _ = try pg.sql("CREATE TABLE samples (id int PRIMARY KEY, body text NOT NULL)")
    var csv = ""
    for (i, body) in samples.canonical.enumerated() {
        let text = String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\"", with: "\"\"")
        csv += "\(i + 1),\"\(text)\"\n"
    }
    let csvPath = directory + "/samples.csv"
    try csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
    chmod(csvPath, 0o644)
    _ = try pg.sql("\\copy samples(id, body) from '\(csvPath)' with (format csv)")
    _ = try pg.sql("VACUUM ANALYZE samples")
    let script = directory + "/insert.sql"
    try """
        \\set i random(1, \(samples.canonical.count))
        INSERT INTO events(body) SELECT body::jsonb FROM samples WHERE id = :i;

        """.write(toFile: script, atomically: true, encoding: .utf8)
    chmod(script, 0o644)
    for clients in clientCounts {
        var arguments = [
            "-n", "-h", pg.root, "-U", pg.user, "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(seconds)", "-f", script,
        ]
        let logPrefix = directory + "/latency"
        if clients == 1 { arguments += ["-l", "--log-prefix=\(logPrefix)"] }
        let out = try pg.asPostgres(pg.bin + "/pgbench", arguments + ["postgres"]).out
        guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
            let tps = Double(line.dropFirst(6).prefix(while: { $0 != " " }))
        else { throw BenchError("pgbench printed no tps: \(out)") }
        result.transactionsPerSecond[clients] = tps
        if clients == 1 {
            var histogram = makeHistogram()
            let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for file in files where file.hasPrefix("latency") {
                let text = (try? String(contentsOfFile: directory + "/" + file, encoding: .utf8)) ?? ""
                for row in text.split(separator: "\n") {
                    let columns = row.split(separator: " ")
                    if columns.count >= 3, let micros = UInt64(columns[2]) { histogram.record(micros * 1_000) }
                }
            }
            result.latency = histogram
        }
    }
    let sizes = try pg.sql("SELECT pg_total_relation_size('events'), count(*) FROM events").split(separator: "|")
    if sizes.count == 2, let bytes = Double(sizes[0]), let rows = Double(sizes[1]), rows > 0 {
        result.bytesPerEvent = bytes / rows
    }
    return result
}
