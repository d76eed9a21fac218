import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IncidentProtocol
import StrictJSON

struct Append: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Append events from a file of JSON lines (or standard input).",
        discussion: """
            Each line is one event in the wire form of SPEC §2 / PROTOCOL.md, as `incidentctl export` writes \
            them. Blank lines and lines starting with # are skipped, and so is a UTF-8 byte order mark at the very \
            start of the input. Every line is checked to be a JSON object before anything is sent, as it is \
            read, so that input that is not JSON lines is refused at its first bad line (exit 2); a line longer \
            than 64 MiB, the longest request line any incidentd takes, is refused as soon as that much of it is \
            read. --from-line past the input's last line is bad usage too (exit 2), before anything is sent.

            A regular file is read where it lies (mapped into memory, also as standard input: < FILE). Standard \
            input from a pipe, and any other input that is not a regular file (<(…), a named pipe), is kept as it \
            is read in an unlinked temporary file in $TMPDIR, else /tmp, until every line is checked, so that the \
            command's memory stays small whatever the size of the input: the directory needs room for all of it \
            (for a large load, a disk rather than a tmpfs, which is memory). When it has no room or cannot be \
            written, the command says so and exits 2 with nothing sent: set TMPDIR to a directory with room, or \
            give the events as a file.

            The events go in batches of up to --batch-size that fit the daemon's limit on a request line \
            (max_line_bytes, 1 MiB unless configured). Each batch is atomic: all its events land or none do. A \
            batch is sent once the one before it is stored, so when the daemon refuses an event, the lines before \
            its batch are stored and none after them: the command names the line and why, says which lines were \
            stored, and exits 1. Fix the line and go on with --from-line. A batch the daemon had no room to read \
            (server_busy: too many unfinished request lines from all its clients) is sent again after a pause, \
            for about 25 seconds before the command gives up (with --window above 1, only when no batch after it \
            is in flight; otherwise it stops there, as for any refusal). If the daemon goes away during the load \
            (it is stopped or restarted), the command says of every batch sent whether it is stored, was not \
            (answered shutting_down: nothing of it was stored), or had no answer (it may or may not be stored), \
            and exits 3.

            An event sent again with the eventId and content of one already stored is not stored twice; it is \
            counted as already stored. Give events an eventId to make a re-run of the same file harmless.

            A report that gives its cityId (as export writes every report) is stored in that city as given, \
            whatever this daemon's gazetteer makes of its city's spelling, so a log moved with export | append \
            keeps each incident in its city; with --allow-new-city a cityId neither the gazetteer nor the log \
            knows makes that city, otherwise it is refused (unknown_city). A cityId other than the one the daemon \
            gives the report's city, or one making a city the daemon would not, restores another log's cities and \
            takes the admin role (else permission_denied, naming data.cityId).

            With --format json the command prints {"events":N,"new":N,"alreadyStored":N,"firstPosition":P, \
            "lastPosition":P}: the events acknowledged, of which stored now and stored before, and the lowest and \
            highest positions of those events as stored, new or not (null when none was acknowledged); when the \
            load stopped, refused or lost says why.

            Examples:
              incidentctl append examples/article.jsonl
              incidentctl export --socket /run/old.sock \\
                  | incidentctl append --allow-new-city -
              incidentctl append --from-line 1501 events.jsonl   # 1–1500 are stored
            """)

    @Argument(help: ArgumentHelp("A JSON-lines file, or - for standard input.", valueName: "file|-")) var file: String = "-"
    @Option(parsing: .unconditional, help: "Events per atomic batch, at most (fewer when they would not fit in one request line).")
    var batchSize: Int = 500
    @Option(parsing: .unconditional, help: ArgumentHelp("Start at this line of the input; the lines before it are not read as events.", valueName: "n"))
    var fromLine: Int = 1
    @Option(
        parsing: .unconditional,
        help: """
            Batches in flight at once. Above 1 a large file loads faster, but a refused batch no longer stops the \
            ones sent after it: they may be stored.
            """)
    var window: Int = 1
    @Flag(help: "Accept cities the gazetteer does not know.") var allowNewCity = false
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    /// The daemon's limit on a request line unless it says otherwise (`max_line_bytes`'s default).
    static let assumedLineLimit = 1 << 20

    func validate() throws {
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size: 1...10000") }
        guard (1...64).contains(window) else { throw ValidationError("--window: 1...64") }
        guard fromLine >= 1 else { throw ValidationError("--from-line: lines are numbered from 1") }
    }

    func run() throws {
        let (input, lines) = try Self.readInput(file, from: fromLine)
        input.readAgain()
        var load = BatchedLoad(lines: lines, input: input, batchSize: batchSize, lineLimit: Self.assumedLineLimit)
        let client = try connection.connect()
        let progress = isatty(STDERR_FILENO) == 1 && lines.count > batchSize ? ProgressLine() : nil
        let failure = try load.send(over: client, window: window, allowNewCity: allowNewCity) { tally in
            progress?.show("appended \(tally.acknowledged)/\(lines.count) events")
        }
        progress?.finish()
        printSummary(load.tally, of: lines.count, stoppedBy: failure)
        if let failure { throw failure }
    }

    /// What was stored, printed whether the load went through or stopped, so that a script sees the progress made;
    /// when it stopped, `refused` (the daemon's code and message) or `lost` (why the daemon went away) says why, as
    /// standard error does.
    private func printSummary(_ tally: BatchedLoad.Tally, of total: Int, stoppedBy failure: ClientFailure?) {
        var summary: [String: JSONValue] = [
            "events": .int(Int64(tally.acknowledged)),
            "new": .int(Int64(tally.new)),
            "alreadyStored": .int(Int64(tally.acknowledged - tally.new)),
            "firstPosition": tally.first.map { .int(Int64($0)) } ?? .null,
            "lastPosition": tally.last.map { .int(Int64($0)) } ?? .null,
        ]
        switch failure {
        case .refused(let code, let message)?: summary["refused"] = ["code": .string(code), "message": .string(message)]
        case .unreachable(let why)?: summary["lost"] = .string(why)
        case .usage, .protocolViolation, nil: break
        }
        switch output.resolved {
        case .json:
            Printer.json(.object(summary))
        case .table:
            var text = "appended \(tally.new) new event\(tally.new == 1 ? "" : "s") of \(total)"
            if let first = tally.firstNew, let last = tally.lastNew {
                text += first == last ? " at position \(first)" : " at positions \(first)–\(last)"
            }
            let already = tally.acknowledged - tally.new
            if already > 0 { text += "; \(already) \(already == 1 ? "was" : "were") already stored" }
            if tally.new == 0, let first = tally.first, let last = tally.last {
                text += first == last ? ", at position \(first)" : ", at positions \(first)–\(last)"
            }
            if case .refused(let code, _)? = failure { text += "; then refused (\(code), below)" }
            Output.line(text)
        }
    }

    /// The input's bytes, mapped into memory, and its lines, every one checked before anything is sent: a regular
    /// file (also as standard input) is mapped as it is; standard input, and anything else that is not a regular
    /// file of a known size (a pipe, `<(…)`, a device, a file of /proc), is copied as it is read into an unlinked
    /// temporary file (``TemporaryInput``), which is mapped. Either way each line is checked as soon as it is there,
    /// so that what is not JSON lines (/dev/urandom) is refused at its first bad line and a line longer than any
    /// request line (/dev/zero, a pipe that never ends its line) once it is that long, and the pages checked are
    /// given back as the checking goes on: the page cache holds the input, not this process. What cannot be read
    /// is bad usage naming the file and the system's reason.
    static func readInput(_ file: String, from first: Int) throws(ClientFailure) -> (input: MappedInput, lines: EventLines) {
        var lines = EventLines(name: file, from: first)
        if file == "-" {
            if let mapped = try mapRegularFile(STDIN_FILENO, name: "standard input", checking: &lines) { return (mapped, lines) }
            return (try copyChecking(STDIN_FILENO, name: "standard input", into: &lines), lines)
        }
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .usage("cannot read \(file): \(String(cString: strerror(errno)))") }
        // A mapping outlives the descriptor it was made from.
        defer { close(fd) }
        if let mapped = try mapRegularFile(fd, name: file, checking: &lines) { return (mapped, lines) }
        return (try copyChecking(fd, name: file, into: &lines), lines)
    }

    /// The regular file open on `fd`, from its current offset (that of standard input redirected from a file) to its
    /// end, mapped, its lines checked; nil when it is not a regular file with something in it (a file of /proc says
    /// it has nothing), or its file system cannot map it: then it is read as a stream is.
    private static func mapRegularFile(_ fd: Int32, name: String, checking lines: inout EventLines) throws(ClientFailure) -> MappedInput? {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .usage("cannot read \(name): \(String(cString: strerror(errno)))") }
        if status.st_mode & S_IFMT == S_IFDIR { throw .usage("cannot read \(name): it is a directory") }
        let offset = lseek(fd, 0, SEEK_CUR)
        guard status.st_mode & S_IFMT == S_IFREG, offset >= 0, status.st_size > offset else { return nil }
        let size = Int(status.st_size)
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else { return nil }
        let input = MappedInput(mapping: mapped, length: size, from: Int(offset), count: size - Int(offset))
        try check(input, upTo: input.bytes.count, ended: true, into: &lines)
        return input
    }

    /// Checks the lines of `input` up to byte `end` (all of it, with `ended`), ``checkedAtOnce`` bytes at a time,
    /// giving back the pages of the lines checked.
    private static func check(_ input: MappedInput, upTo end: Int, ended: Bool, into lines: inout EventLines) throws(ClientFailure) {
        var checked = lines.settled
        repeat {
            checked = min(end, checked + Self.checkedAtOnce)
            try lines.read(UnsafeRawBufferPointer(rebasing: input.bytes[..<checked]), ended: ended && checked == end)
            input.release(before: lines.settled)
        } while checked < end
    }

    /// The most read at once: past the longest line, a line with no end is refused having read at most this more.
    private static let readSize = 1 << 20
    /// The most of a mapped input checked before the pages checked are given back.
    private static let checkedAtOnce = 64 << 20

    /// Everything `fd` gives until its end, copied into a temporary file as it comes, each line checked as soon as
    /// it has been read (so a bad one stops the reading), then mapped; bad usage naming `name` and the system's
    /// reason when a read fails, and saying what to do when the temporary file cannot be made or is full.
    private static func copyChecking(_ fd: Int32, name: String, into lines: inout EventLines) throws(ClientFailure) -> MappedInput {
        let copy = try TemporaryInput(of: name)
        guard let buffer = malloc(Self.readSize) else { throw .usage("cannot read \(name): out of memory") }
        defer { free(buffer) }
        while true {
            let count = read(fd, buffer, Self.readSize)
            if count < 0 {
                if errno == EINTR { continue }
                throw .usage("cannot read \(name): \(String(cString: strerror(errno)))")
            }
            try copy.append(UnsafeRawBufferPointer(start: buffer, count: count))
            try check(copy.input, upTo: copy.input.bytes.count, ended: count == 0, into: &lines)
            if count == 0 { return copy.input }
        }
    }
}

/// Bytes of a file mapped into memory, unmapped when this goes: the input of `append`.
final class MappedInput {
    /// The input: the mapping from the offset it starts at.
    private(set) var bytes: UnsafeRawBufferPointer
    private let mapping: UnsafeMutableRawPointer
    private let length: Int
    private let offset: Int
    /// Where, in the mapping, the pages given back end.
    private var released = 0

    /// Takes over `mapping`, `length` bytes mapped from the start of a file, of which the input is `count` bytes
    /// from `offset`.
    init(mapping: UnsafeMutableRawPointer, length: Int, from offset: Int, count: Int) {
        self.mapping = mapping
        self.length = length
        self.offset = offset
        bytes = UnsafeRawBufferPointer(start: mapping + offset, count: count)
    }

    deinit { _ = munmap(mapping, length) }

    /// Takes in the `count` bytes from the input's start that the file now holds, within the mapping.
    func extend(to count: Int) {
        precondition(offset + count <= length, "past the mapping")
        bytes = UnsafeRawBufferPointer(start: mapping + offset, count: count)
    }

    /// Gives back the pages that hold nothing at or after byte `end` of ``bytes``: the file keeps them, and a page
    /// looked at again is read from it again. What this process holds is then what it is working on, not the input.
    func release(before end: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let through = (offset + end) / page * page
        guard through > released else { return }
        // A page fault maps with its page those around it that the page cache holds (fault-around, a large folio),
        // which may lie before it, among those given back already: they are given back again.
        let from = max(0, released - Self.mappedAround)
        _ = madvise(mapping + from, through - from, MADV_DONTNEED)
        released = through
    }

    /// The most that a page fault maps before its page: a 2 MiB folio.
    private static let mappedAround = 2 << 20

    /// Gives back pages from the input's start again: the checking gave back every page it read, and the sending
    /// reads them a second time, batch by batch, for ``release(before:)`` to give back as they are answered.
    func readAgain() { released = 0 }
}

/// An input that is not a regular file (standard input, a pipe), kept as it is read in an unlinked temporary file in
/// `$TMPDIR`, else /tmp, and mapped from it, so that its lines can all be checked before any is sent without this
/// process holding them: the page cache does, and the file system's room bounds it, not memory.
final class TemporaryInput {
    /// What has been kept so far.
    private(set) var input: MappedInput
    private let fd: Int32
    private let name: String
    /// Where the file was made, as the messages name it: "/tmp (TMPDIR is not set)".
    private let place: String
    private var size = 0
    private var capacity = 64 << 20

    /// A new temporary file for the input named `name`; bad usage saying where and why when none can be made.
    init(of name: String) throws(ClientFailure) {
        let environment = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 }
        let directory = environment ?? "/tmp"
        place = environment == nil ? "\(directory) (TMPDIR is not set)" : "\(directory) ($TMPDIR)"
        self.name = name
        var template = Array("\(directory)/incidentctl-append-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { mkstemp($0) } ?? -1 }
        guard made >= 0 else {
            throw .usage(
                "cannot read \(name): append keeps input that is not a regular file in a temporary file until every line "
                    + "is checked, and it cannot make one in \(place): \(String(cString: strerror(errno))); nothing was sent. "
                    + Self.advice)
        }
        fd = made
        unlink(template)
        let mapping: UnsafeMutableRawPointer
        do {
            mapping = try Self.map(made, capacity, naming: name, in: place)
        } catch {
            close(made)
            throw error
        }
        input = MappedInput(mapping: mapping, length: capacity, from: 0, count: 0)
    }

    /// The first `capacity` bytes of the file open on `fd`, mapped; bad usage naming the input `name`, where its
    /// file was made, and the system's reason when they cannot be.
    private static func map(_ fd: Int32, _ capacity: Int, naming name: String, in place: String) throws(ClientFailure)
        -> UnsafeMutableRawPointer
    {
        guard let mapping = mmap(nil, capacity, PROT_READ, MAP_SHARED, fd, 0), mapping != MAP_FAILED else {
            throw .usage(
                "cannot read \(name): cannot map the temporary file it is kept in, in \(place), at \(capacity >> 20) MiB: "
                    + "\(String(cString: strerror(errno))); nothing was sent. " + advice)
        }
        return mapping
    }

    deinit { close(fd) }

    private static let advice =
        "Set TMPDIR to a directory on a disk that you may write, with room for the whole input, or give append the events as a regular file"

    /// Adds `bytes` to the file and to ``input``; bad usage saying how much was kept when the file system has no
    /// room for them, or why else they could not be written.
    func append(_ bytes: UnsafeRawBufferPointer) throws(ClientFailure) {
        var written = 0
        while written < bytes.count {
            let count = write(fd, bytes.baseAddress.map { $0 + written }, bytes.count - written)
            if count < 0 {
                let code = errno
                if code == EINTR { continue }
                let kept = "\((size + written) >> 20) MiB of it"
                let why = code == ENOSPC || code == EDQUOT
                    ? "the temporary file it is kept in until every line is checked, in \(place), has no room for more than \(kept) (\(String(cString: strerror(code))))"
                    : "cannot write the temporary file it is kept in until every line is checked, in \(place), after \(kept): \(String(cString: strerror(code)))"
                throw .usage("cannot read \(name): \(why); nothing was sent. " + Self.advice)
            }
            written += count
        }
        size += written
        if size > capacity {
            while capacity < size { capacity *= 2 }
            input = MappedInput(mapping: try Self.map(fd, capacity, naming: name, in: place), length: capacity, from: 0, count: size)
        } else {
            input.extend(to: size)
        }
    }
}

/// The events of an input, one JSON object per line: how many there are, and, for each, where its bytes are and
/// its line number, found again from a mark kept every ``markEvery`` events, so that an input of millions of short
/// lines (`yes '{}'`) takes a few bytes per thousand lines, not a record each.
struct EventLines {
    struct Line {
        var number: Int
        var bytes: Range<Int>
    }

    /// The longest line taken: the longest request line any incidentd takes (`max_line_bytes` is at most 64 MiB),
    /// which an event must fit in. A line longer than that is refused as soon as that much of it is read.
    static let longestLine = 64 << 20

    /// How many events lie from one mark to the next.
    static let markEvery = 256

    let name: String
    private let first: Int
    /// The events read so far.
    private(set) var count = 0
    /// Where events 0, ``markEvery``, 2 × ``markEvery``… start (their line's first byte) and their line numbers.
    private var marks: [(number: Int, start: Int)] = []
    /// The event last found by ``line(_:of:)``, from which the next one is found without going back to a mark.
    private let cursor = Cursor()
    /// The lines read so far, with those skipped.
    private var number = 0
    /// Where the line being read starts, and how far it has been searched for its end.
    private var start = 0
    private var searched = 0
    /// Whether the start of the input has been looked at for a byte order mark.
    private var begun = false

    /// Where ``line(_:of:)`` is: the event it found last, by its index.
    private final class Cursor {
        var index = -1
        var line = Line(number: 0, bytes: 0..<0)
        /// Where the line after it starts.
        var next = 0
    }

    /// No lines yet: `read` takes those from line `first` on as the input comes, skipping blank ones and comments.
    init(name: String, from first: Int = 1) {
        self.name = name
        self.first = first
    }

    /// How far the input is read for good: ``read(_:ended:)`` looks at no byte before this again.
    var settled: Int { start }

    /// Reads the lines of `input` that had not been read yet: `input` is everything read so far, of which each call
    /// is given more. A line is read once its newline is there, or with `ended` (`input` is then the whole input)
    /// at the input's end; one that is not a JSON object is bad usage, named by its number, and so is one longer
    /// than `longestLine`, as soon as that much of it is there, without waiting for its end.
    mutating func read(_ input: UnsafeRawBufferPointer, ended: Bool) throws(ClientFailure) {
        if !begun {
            guard input.count >= 3 || ended else { return }
            begun = true
            // A UTF-8 byte order mark, as some editors write at the start of a file; anywhere else it is not JSON.
            if input.starts(with: [0xEF, 0xBB, 0xBF]) { (start, searched) = (3, 3) }
        }
        while start < input.count {
            let newline: Int
            if let found = input.firstOffset(of: [0x0A], from: searched) {
                newline = found
            } else {
                searched = input.count
                guard input.count - start <= Self.longestLine else { throw tooLong(number + 1) }
                guard ended else { return }
                newline = input.count
            }
            number += 1
            guard newline - start <= Self.longestLine else { throw tooLong(number) }
            let lineStart = start
            let range = Self.trimmed(start..<newline, of: input)
            start = newline + 1
            searched = start
            guard number >= first, let range else { continue }
            let value: JSONValue
            do {
                value = try JSONReader().read(UnsafeRawBufferPointer(rebasing: input[range]))
            } catch {
                throw .usage("\(name):\(number): not valid JSON: \(error)")
            }
            guard case .object(let members) = value else { throw .usage("\(name):\(number): not an event: a JSON object was expected") }
            if members["hash"] != nil && members["prevHash"] != nil {
                throw .usage(
                    "\(name):\(number): a stored event, as incidentctl events prints it (with its hash, prevHash and position), which append does not take: incidentctl export writes the events as append takes them back")
            }
            if count % Self.markEvery == 0 { marks.append((number, lineStart)) }
            count += 1
        }
        if ended && first > 1 && number < first {
            let holds = number == 0 ? "is empty" : "has only \(number) line\(number == 1 ? "" : "s")"
            throw .usage("--from-line \(first): \(name == "-" ? "standard input" : name) \(holds); nothing was sent")
        }
    }

    /// Event `index` (from 0) of `input`, the whole input that ``read(_:ended:)`` read: found from the one found
    /// last when it lies ahead of it, as the next event of a batch does, else from the mark before it.
    func line(_ index: Int, of input: UnsafeRawBufferPointer) -> Line {
        precondition(index >= 0 && index < count, "event \(index) of \(count)")
        let mark = index / Self.markEvery
        if cursor.index > index || cursor.index < mark * Self.markEvery {
            cursor.index = mark * Self.markEvery - 1
            cursor.line.number = marks[mark].number - 1
            cursor.next = marks[mark].start
        }
        while cursor.index < index {
            // Every line from a mark on was read, and those in between that are not events are blank or comments.
            var at = cursor.next
            var number = cursor.line.number
            var found: Range<Int>?
            while found == nil {
                let newline = input.firstOffset(of: [0x0A], from: at) ?? input.count
                number += 1
                found = Self.trimmed(at..<newline, of: input)
                at = newline + 1
            }
            cursor.index += 1
            cursor.line = Line(number: number, bytes: found ?? at..<at)
            cursor.next = at
        }
        return cursor.line
    }

    /// The bytes of the line at `range` of `input` without the spaces around them; nil for a line that holds no
    /// event: a blank one, or a comment.
    private static func trimmed(_ range: Range<Int>, of input: UnsafeRawBufferPointer) -> Range<Int>? {
        var range = range
        while let byte = range.first.map({ input[$0] }), Self.isSpace(byte) { range = range.dropFirst() }
        while let byte = range.last.map({ input[$0] }), Self.isSpace(byte) { range = range.dropLast() }
        if range.isEmpty || input[range.lowerBound] == UInt8(ascii: "#") { return nil }
        return range
    }

    /// Line `number` is longer than any event could be.
    private func tooLong(_ number: Int) -> ClientFailure {
        .usage("\(name):\(number): a line longer than 64 MiB, the longest request line any incidentd takes (max_line_bytes), "
            + "so no event can be on it; it was not read further and nothing was sent")
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }
}

/// The events of an input sent as atomic `append` batches, each holding as many events as the batch size and
/// the daemon's line limit allow, sent as they were written in the input.
struct BatchedLoad {
    /// What has been acknowledged so far.
    struct Tally {
        /// Events the daemon acknowledged: stored now, or found already stored.
        var acknowledged = 0
        /// Of them, stored by this load.
        var new = 0
        /// The lowest and highest positions of the events stored by this load.
        var firstNew: Int64?
        var lastNew: Int64?
        /// The lowest and highest positions of every event acknowledged, stored now or before.
        var first: Int64?
        var last: Int64?
    }

    let lines: EventLines
    let input: MappedInput
    let batchSize: Int
    /// The longest request line the daemon takes, as far as is known: a refusal for length says what it is.
    private(set) var lineLimit: Int
    private(set) var tally = Tally()
    /// Times in a row the daemon answered `server_busy`.
    private var busyRetries = 0
    /// The pauses, in microseconds, before each batch sent again after `server_busy`.
    static let busyPauses: [UInt32] = (0..<9).map { 50_000 << $0 }

    init(lines: EventLines, input: MappedInput, batchSize: Int, lineLimit: Int) {
        self.lines = lines
        self.input = input
        self.batchSize = batchSize
        self.lineLimit = lineLimit
    }

    /// Event `index` of the input: its line number and where its bytes are.
    private func line(_ index: Int) -> EventLines.Line { lines.line(index, of: input.bytes) }

    /// The bytes of a request around its events, at most: `{"allowNewCity":true,"events":[…],"id":…,"op":"append"}`.
    static let requestOverhead = 96

    /// The lines of the batch starting at line index `first`: as many as fit, and at least one.
    func batch(from first: Int) -> Range<Int> {
        var end = first
        var bytes = Self.requestOverhead
        while end < lines.count && end - first < batchSize {
            bytes += self.line(end).bytes.count + 1
            if end > first && bytes > lineLimit { break }
            end += 1
        }
        return first..<end
    }

    /// What became of a batch in flight when the load stopped.
    enum Fate {
        case stored
        /// Refused, with the daemon's code: nothing of it was stored.
        case notStored(code: String)
        /// No answer came before the connection was lost: it may or may not be stored.
        case unanswered
    }

    /// Sends every batch, at most `window` in flight, and returns what stopped it, if anything. With a window of
    /// one, nothing after a refused batch is sent. A daemon going away on the way (`shutting_down`, or the
    /// connection lost: it stopped or restarted) is returned as `unreachable`; a refusal for any other reason, as
    /// `refused`. Either says which lines are stored, which are not, and which may be.
    mutating func send(
        over client: SocketClient, window: Int, allowNewCity: Bool, progress: (Tally) -> Void
    ) throws -> ClientFailure? {
        var inFlight: [Range<Int>] = []
        var next = 0
        // The first batch not stored, with the daemon's code and error: nothing is sent after it.
        var stopped: (code: String, error: JSONValue?, batch: Range<Int>)?
        // What became of the batches sent after it (a window above one), in the order they were sent.
        var after: [(batch: Range<Int>, fate: Fate)] = []
        // The batch being written, until it is in flight; a write that failed leaves it there, unanswered.
        var sending: Range<Int>?
        // Why the connection was lost, once it was: nothing more is sent, and what was answered is still read.
        var lostBecause: String?
        while true {
            do {
                while stopped == nil && lostBecause == nil && next < lines.count && inFlight.count < window {
                    let batch = batch(from: next)
                    sending = batch
                    try sendBatch(batch, over: client, allowNewCity: allowNewCity)
                    sending = nil
                    inFlight.append(batch)
                    next = batch.upperBound
                }
            } catch {
                guard let why = ClientFailure.unreachableReason(error) else { throw error }
                // The answers that came before the daemon went away (shutting_down, say) can still be read.
                lostBecause = why
            }
            guard let batch = inFlight.first else { break }
            let response: JSONValue
            do {
                response = try client.receive()
            } catch {
                guard let why = ClientFailure.unreachableReason(error) else { throw error }
                lostBecause = lostBecause ?? why
                break
            }
            inFlight.removeFirst()
            if response["ok"]?.boolValue == true {
                count(response, batch)
                // The batches before it were answered: nothing before its end is sent again.
                input.release(before: line(batch.upperBound - 1).bytes.upperBound)
                busyRetries = 0
                if stopped != nil { after.append((batch, .stored)) }
                progress(tally)
                continue
            }
            let error = response["error"]
            let code = error?["code"]?.stringValue ?? "unknown_error"
            guard stopped == nil else {
                after.append((batch, .notStored(code: code)))
                continue
            }
            // Too long for this daemon, so nothing of it was read: sent again in batches that fit, unless one event
            // alone is too long, or batches sent after it are in flight (they may be stored; the order would be lost).
            if code == "line_too_long", lostBecause == nil, let limit = error?["limit"]?.intValue, Int(limit) < lineLimit,
                batch.count > 1, inFlight.isEmpty
            {
                lineLimit = Int(limit)
                next = batch.lowerBound
                continue
            }
            // The daemon's buffers for unfinished lines were full, so nothing of it was read: sent again after a
            // pause that doubles each time, for about 25 seconds in all.
            if code == "server_busy", lostBecause == nil, inFlight.isEmpty, busyRetries < Self.busyPauses.count {
                usleep(Self.busyPauses[busyRetries])
                busyRetries += 1
                next = batch.lowerBound
                continue
            }
            stopped = (code, error, batch)
        }
        let unanswered = inFlight + [sending].compactMap { $0 }
        if let stopped { return stop(stopped, after: after + unanswered.map { ($0, .unanswered) }, lostBecause: lostBecause) }
        if let lostBecause { return lost(lostBecause, unacknowledged: unanswered) }
        return nil
    }

    private func sendBatch(_ batch: Range<Int>, over client: SocketClient, allowNewCity: Bool) throws {
        var line: [UInt8] = []
        line.reserveCapacity(Self.requestOverhead + self.line(batch.lowerBound).bytes.count * batch.count)
        if allowNewCity { line.append(contentsOf: #""allowNewCity":true,"#.utf8) }
        line.append(contentsOf: #""events":["#.utf8)
        for index in batch {
            if index > batch.lowerBound { line.append(UInt8(ascii: ",")) }
            line.append(contentsOf: UnsafeRawBufferPointer(rebasing: input.bytes[self.line(index).bytes]))
        }
        line.append(UInt8(ascii: "]"))
        try client.send(.append, members: line)
    }

    /// Adds an acknowledged batch to the tally: its events stored now, and those the daemon had already.
    private mutating func count(_ response: JSONValue, _ batch: Range<Int>) {
        warnOfNewCities(response)
        let positions = (response["positions"]?.arrayValue ?? []).compactMap(\.intValue)
        let already = Set((response["alreadyStored"]?.arrayValue ?? []).compactMap(\.intValue))
        tally.acknowledged += positions.count
        for position in positions {
            tally.first = min(tally.first ?? position, position)
            tally.last = max(tally.last ?? position, position)
        }
        for (index, position) in positions.enumerated() where !already.contains(Int64(index)) {
            tally.new += 1
            tally.firstNew = min(tally.firstNew ?? position, position)
            tally.lastNew = max(tally.lastNew ?? position, position)
        }
    }

    /// The connection was lost (`why`) with the batches `unacknowledged` sent, or being sent, and not answered:
    /// what is stored, what may be, and where to go on.
    private func lost(_ why: String, unacknowledged: [Range<Int>]) -> ClientFailure {
        guard let first = unacknowledged.first?.lowerBound, let last = unacknowledged.last?.upperBound else {
            return .unreachable(why)
        }
        let firstLine = self.line(first).number
        let lastLine = self.line(last - 1).number
        var message = "\(why), with \(tally.acknowledged) of \(lines.count) events acknowledged. "
        message += first == 0 ? "Nothing before line \(firstLine) was sent" : "The events before line \(firstLine) are stored"
        message += firstLine == lastLine
            ? "; line \(firstLine) was sent and may or may not be stored"
            : "; lines \(firstLine)–\(lastLine) were sent and may or may not be stored"
        if last < lines.count { message += "; nothing after line \(lastLine) was sent" }
        let check = tally.lastNew.map { " (incidentctl events --from \($0 + 1))" } ?? ""
        message += ". Once incidentd is back, go on with --from-line \(firstLine): an event with an eventId is never stored "
            + "twice, but one without is, so first see whether they are stored\(check) and, if they are, go on after them"
        return .unreachable(message)
    }

    /// The load stopped at `stopped.batch`, which was not stored; `after` says what became of the batches sent
    /// after it, and `why`, when the connection was lost, why some had no answer. A daemon that went away
    /// (`shutting_down`) is `unreachable`; another refusal is `refused`, naming the line the daemon named.
    private func stop(
        _ stopped: (code: String, error: JSONValue?, batch: Range<Int>), after: [(batch: Range<Int>, fate: Fate)], lostBecause why: String?
    ) -> ClientFailure {
        let batch = stopped.batch
        let first = self.line(batch.lowerBound).number
        let stored = after.filter { if case .stored = $0.fate { true } else { false } }.map { lineRange($0.batch) }
        let unanswered = after.filter { if case .unanswered = $0.fate { true } else { false } }.map { lineRange($0.batch) }
        var notStored: [(code: String, lines: String)] = []
        for (batch, fate) in after {
            if case .notStored(let code) = fate { notStored.append((code, lineRange(batch))) }
        }
        let lastSent = self.line((after.last?.batch ?? batch).upperBound - 1).number
        let sentAll = (after.last?.batch ?? batch).upperBound == lines.count

        guard stopped.code == ProtocolError.Code.shuttingDown.rawValue else {
            var message = refusalMessage(code: stopped.code, error: stopped.error, batch: batch, storedAfter: after)
            if !notStored.isEmpty {
                message += ". Lines \(notStored.map(\.lines).joined(separator: ", ")), sent after it (--window), were not stored ("
                    + Set(notStored.map(\.code)).sorted().joined(separator: ", ") + ")"
            }
            if let why, !unanswered.isEmpty {
                message += ". Then \(why): lines \(unanswered.joined(separator: ", ")) may or may not be stored"
            }
            return .refused(code: stopped.code, message: message)
        }
        var message = "incidentd is stopping (shutting_down), with \(tally.acknowledged) of \(lines.count) events acknowledged. "
        message += batch.lowerBound == 0 ? "Nothing before line \(first) was sent" : "The events before line \(first) are stored"
        let refused = [lineRange(batch)] + notStored.map(\.lines)
        message += "; \(refused.count == 1 ? "line" + (batch.count == 1 ? "" : "s") : "lines") \(refused.joined(separator: ", ")) "
            + "\(refused.count == 1 && batch.count == 1 ? "was" : "were") not stored (answered "
            + Set([stopped.code] + notStored.map(\.code)).sorted().joined(separator: ", ") + ")"
        if !stored.isEmpty { message += "; lines \(stored.joined(separator: ", ")), sent after them (--window), were stored" }
        if let why, !unanswered.isEmpty {
            message += "; lines \(unanswered.joined(separator: ", ")) were sent and may or may not be stored (\(why))"
        }
        if !sentAll { message += "; nothing after line \(lastSent) was sent" }
        message += ". Once incidentd is back, go on with --from-line \(first)"
        if !stored.isEmpty || !unanswered.isEmpty {
            let check = tally.lastNew.map { " (incidentctl events --from \($0 + 1))" } ?? ""
            message += ": an event with an eventId is never stored twice, but one without is, so first see which of the "
                + "lines from \(first) on are stored\(check)"
        }
        return .unreachable(message)
    }

    /// "12101–12200", the input's lines of `batch`; "7" for a batch of one line.
    private func lineRange(_ batch: Range<Int>) -> String {
        let first = self.line(batch.lowerBound).number
        let last = self.line(batch.upperBound - 1).number
        return first == last ? String(first) : "\(first)–\(last)"
    }

    private func refusalMessage(code: String, error: JSONValue?, batch: Range<Int>, storedAfter after: [(batch: Range<Int>, fate: Fate)]) -> String {
        let first = self.line(batch.lowerBound).number
        let last = self.line(batch.upperBound - 1).number
        var place = lines.name
        var reason = error?["message"]?.stringValue ?? "refused"
        if let index = error?["index"]?.intValue, index >= 0, Int(index) < batch.count {
            place += ":\(self.line(batch.lowerBound + Int(index)).number)"
            // The daemon names the event by its index in the batch, which the line number given replaces.
            if reason.hasPrefix("event \(index): ") { reason.removeFirst("event \(index): ".count) }
            // A duplicate within the batch: both events are named by their lines, from the daemon's fields.
            if let firstIndex = error?["firstIndex"]?.intValue, firstIndex >= 0, Int(firstIndex) < batch.count,
                let eventId = error?["eventId"]?.stringValue
            {
                let firstLine = self.line(batch.lowerBound + Int(firstIndex)).number
                let line = self.line(batch.lowerBound + Int(index)).number
                reason = "event id \(eventId) is used twice in this batch, on lines \(firstLine) and \(line), for different events"
            }
        } else if batch.count == 1 {
            place += ":\(first)"
        }
        var message = "\(place): \(code == "unknown_city" ? ClientFailure.unknownCityForCommandLine(reason) : reason)"
        message += batch.count == 1 ? "; it was not stored" : "; its batch of \(batch.count) events (lines \(first)–\(last)) was not stored"
        if code == "line_too_long" && batch.count == 1 {
            message += " (an event longer than the daemon's max_line_bytes cannot be appended)"
        }
        let stored = after.filter { if case .stored = $0.fate { true } else { false } }.map { lineRange($0.batch) }
        let allKnownNotStored = after.allSatisfy { if case .notStored = $0.fate { true } else { false } }
        switch (batch.lowerBound == 0, stored.isEmpty) {
        case (true, true): message += ". Nothing was stored"
        case (false, true):
            message += ". The events before line \(first) are stored"
            message += allKnownNotStored ? ", none after them; go on with --from-line \(first)" : "; go on with --from-line \(first)"
        case (true, false): message += ". Lines \(stored.joined(separator: ", ")), sent after it (--window), were stored"
        case (false, false):
            message += ". The events before line \(first) are stored, and so are lines \(stored.joined(separator: ", ")), sent after it (--window)"
        }
        return message
    }
}

/// A progress figure rewritten in place on a terminal's standard error.
struct ProgressLine {
    func show(_ text: String) { FileHandle.standardError.write(Data("\r\(text)".utf8)) }
    func finish() { FileHandle.standardError.write(Data("\n".utf8)) }
}
