import Glibc
import IncidentProtocol
import Logging
import NIOCore
import StrictJSON
import Synchronization

/// A frame of the protocol: a complete line, or the news that one was dropped as it streamed in, because it was
/// longer than the limit or because the unfinished lines of all connections reached theirs.
enum LineFrame {
    case line(ByteBuffer)
    case tooLong(Int)
    case overBudget(Int)
}

/// Splits the inbound bytes into lines of at most `maxLineBytes`, dropping an over-long line as it streams in
/// (never buffering it whole) and reporting it once. The bytes of the unfinished line it holds count against the
/// daemon's shared ``UnfinishedLineBudget``; a line that would pass it is dropped the same way.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LineFrame

    let maxLineBytes: Int
    let budget: UnfinishedLineBudget
    private var discarding = false
    private var scanned = 0
    /// What this connection holds of `budget`.
    private var held = 0

    init(maxLineBytes: Int, budget: UnfinishedLineBudget) {
        self.maxLineBytes = maxLineBytes
        self.budget = budget
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let length = Self.newline(in: buffer, after: scanned) {
            scanned = 0
            // The line is whole: what follows it is held again when the decoder next waits for more (it is not
            // called again when nothing follows).
            hold(0)
            if discarding {
                buffer.moveReaderIndex(forwardBy: length + 1)
                discarding = false
                return .continue
            }
            // A `\r` before the newline is not part of the line, nor of its length.
            let endsInReturn = length > 0 && buffer.getInteger(at: buffer.readerIndex + length - 1, as: UInt8.self) == 0x0D
            if length - (endsInReturn ? 1 : 0) > maxLineBytes {
                // The whole over-long line arrived in one read: refuse it just the same.
                buffer.moveReaderIndex(forwardBy: length + 1)
                context.fireChannelRead(wrapInboundOut(.tooLong(length)))
                return .continue
            }
            guard var line = buffer.readSlice(length: length) else { return .needMoreData }
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.last == 0x0D { line = line.getSlice(at: line.readerIndex, length: line.readableBytes - 1) ?? line }
            context.fireChannelRead(wrapInboundOut(.line(line)))
            return .continue
        }
        if discarding {
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            scanned = 0
            hold(0)
            return .needMoreData
        }
        // One byte more than the limit may yet be the `\r` before the newline.
        if buffer.readableBytes > maxLineBytes + 1 {
            discard(.tooLong(buffer.readableBytes), from: &buffer, context: context)
            return .needMoreData
        }
        guard hold(buffer.readableBytes) else {
            discard(.overBudget(buffer.readableBytes), from: &buffer, context: context)
            return .needMoreData
        }
        scanned = buffer.readableBytes
        return .needMoreData
    }

    /// Drops the unfinished line in `buffer`, and the rest of it as it arrives, reporting `frame` once.
    private mutating func discard(_ frame: LineFrame, from buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        discarding = true
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        scanned = 0
        hold(0)
        context.fireChannelRead(wrapInboundOut(frame))
    }

    /// Makes what this connection holds of the budget `bytes`; false, holding what it held, when the budget has
    /// not that much left.
    @discardableResult
    private mutating func hold(_ bytes: Int) -> Bool {
        if bytes > held {
            guard budget.take(bytes - held) else { return false }
        } else if bytes < held {
            budget.give(held - bytes)
        }
        held = bytes
        return true
    }

    mutating func decoderRemoved(context: ChannelHandlerContext) {
        hold(0)
    }

    /// Where the first newline of `buffer`'s readable bytes is, counted from the reader index, looking only past
    /// the first `scanned` bytes (already looked at); nil if there is none. With `memchr`: a line is about a
    /// kilobyte, and a loop that looks at it byte by byte through `ByteBufferView` spends thousands of
    /// instructions a line on it, on the thread a query waits for.
    static func newline(in buffer: ByteBuffer, after scanned: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard scanned < bytes.count, let base = bytes.baseAddress,
                let hit = memchr(base + scanned, 0x0A, bytes.count - scanned)
            else { return nil }
            return base.distance(to: UnsafeRawPointer(hit))
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 && !discarding {
            // A last request without its newline still gets an answer, within the limit: what is held may be one byte
            // over it, kept in case it was the `\r` before a newline.
            if buffer.readableBytes > maxLineBytes {
                context.fireChannelRead(wrapInboundOut(.tooLong(buffer.readableBytes)))
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
            } else if let line = buffer.readSlice(length: buffer.readableBytes) {
                context.fireChannelRead(wrapInboundOut(.line(line)))
            }
        }
        hold(0)
        return .needMoreData
    }
}

/// One client connection: decodes each line, runs it, and writes the responses back in request order, however
/// the appends among them interleave with other connections' group commits. It runs a request only while fewer
/// than `maxPending` wait, the client keeps reading its responses (the channel is writable), and no request of
/// its own is with the log walkers; lines that arrive meanwhile (one read holds hundreds of small requests) wait
/// in `backlog`, and no more is read until they have run. So a client that stops reading stalls only itself, and
/// its unread answers stay within the write buffer's high-water mark and one answer past it, instead of filling
/// memory and hogging its event loop; and a client that pipelines a hundred `read`s of the whole log has one of
/// them with the walkers at a time, so that everybody else's queries take their turns in between. And it runs at most
/// a turn's worth of what it read at a time (``LoopTurns``): the rest waits in `backlog` for its next turn, which it
/// gets once its event loop has looked at its sockets again, so that a newcomer's request, and the other connections',
/// are never held up behind hundreds of its own. Its larger writes
/// count against the daemon's ``UnwrittenAnswers`` until its socket has taken them, and while output waits for the
/// socket, it is closed once the socket has taken no byte for the write timeout.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = LineFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let executor: RequestExecutor
    private let intake: AppendIntake
    /// This connection's loop, which it shares with the others of the loop (``LoopTurns``).
    private let turns: LoopTurns
    /// Requests this connection may still run in its turn: of the read under way, or of a turn ``turns`` gave it.
    private var turnLeft = LoopTurns.requestsPerTurn
    /// The next line read begins a read, and a turn.
    private var readBegins = true
    /// The turn under way began with the read of its lines, not given by ``turns``.
    private var turnIsRead = false
    /// This connection waits for a turn from ``turns``.
    private var waitsForTurn = false
    private let peer: PeerIdentity
    private let role: Role?
    private let maxPending: Int
    private let maxLineBytes: Int
    private let logger: Logger

    private var nextSequence: UInt64 = 0
    private var nextToWrite: UInt64 = 0
    private var ready: [UInt64: [UInt8]] = [:]
    private var pending = 0
    /// The client shut down its side (`shutdown(SHUT_WR)`, or `socat` at the end of its input): answer what it
    /// sent, then close.
    private var inputClosed = false
    /// Nothing more is read or run of what the client sends (``refuseFurtherInput(context:)``).
    private var inputRefused = false
    /// The connection holds its uid's slot (``ConnectionSlots``), given back as it closes.
    private var holdsSlot = true
    private var readPending = false
    /// This handler asked for the read whose lines arrive now (it passed ``read(context:)`` on since the last read
    /// ended). SwiftNIO reads without being asked only once the client has closed its side, or the whole
    /// connection: then it reads all that the socket still holds, in one go, whatever this handler holds back.
    private var readAsked = false
    /// Whether the client has gone was looked at in the read under way (``clientHasGone(_:)``).
    private var lookedForHangUp = false
    /// Request lines read and never run: waiting in the backlog as the connection closed, or read after its client
    /// had gone. For the debug line of the close.
    private var readNotRun = 0
    /// The connection closed because its client had gone with answers unread (``abandon(context:)``).
    private var abandoned = false
    /// Lines read but not run yet, because the client is not keeping up with its answers.
    private var backlog = CircularBuffer<LineFrame>()
    private var draining = false
    /// Where the writer thread leaves this loop's append answers; set when the handler is added.
    private var mailbox: AnswerMailbox?
    /// Answers were written by the mailbox and wait for its one flush (``finishAnswers(context:)``).
    var awaitingFlush = false
    /// Answers in request order not handed to the channel yet: one buffer, and one write, for all the answers
    /// of a drain, rather than a buffer and a trip through the pipeline for each.
    private var outgoing: ByteBuffer?
    /// What this connection follows of the log, once it has asked (`subscribe`), and the sequence of that request:
    /// the events go out once its answer, and every answer before it, has been written.
    private var follower: (follower: LogFollower, sequence: UInt64)?
    /// This connection's follow ended by itself (``followEnded(context:)``): it is not followed again.
    private var followHasEnded = false
    /// The connection has closed: nothing more is run for it. Lines can still reach this handler afterwards (the
    /// decoder hands on what it holds once a write that failed has closed the connection in the middle of a read,
    /// and answers arriving drain the backlog), and a `subscribe` among them would register a follower that nothing
    /// ever removes.
    private var closed = false
    /// The sequence of the last line handed to the intake. A query after it waits until it has been answered, so that
    /// a client pipelining a query after its own append sees what it appended, as answers in request order promise.
    private var lastAppendSequence: UInt64?
    /// A request of this connection is with the log walkers (``Reply/walking(_:)``): nothing more of it runs until
    /// its answer has been handed to the channel.
    private var walking = false
    /// Queries the intake handed back (lines that only looked like appends), each with the sequence every answer
    /// before which must have been written for it to run.
    private var handedBack = CircularBuffer<(sequence: UInt64, run: (ChannelHandlerContext) -> Void)>()
    /// The daemon's answers not yet written, which this connection's larger writes count against.
    private let unwritten: UnwrittenAnswers
    /// Bytes of this connection's counted writes (``UnwrittenAnswers/countedWriteBytes``) not written yet. While the
    /// daemon holds more than its limit, a connection holding any starts no request.
    private var countedBytes = 0
    /// Every byte handed to the channel: less what the channel still holds, what the socket has taken.
    private var handedBytes = 0
    /// While output waits for the socket: what the socket had taken and what the kernel held of it when either last
    /// changed, and when.
    private var stallWatch: (taken: Int, queued: UInt32?, since: NIODeadline)?
    private var stallCheckScheduled = false
    /// Once ``handedBytes`` reaches it, the watch starts (``UnwrittenAnswers/lookAfterBytes``); never while it runs
    /// or with the write timeout off.
    private var nextLook: Int

    init(
        executor: RequestExecutor, intake: AppendIntake, turns: LoopTurns, peer: PeerIdentity, role: Role?, maxPending: Int,
        maxLineBytes: Int, logger: Logger
    ) {
        self.executor = executor
        self.turns = turns
        unwritten = executor.unwrittenAnswers
        nextLook = unwritten.writeTimeout == nil ? .max : UnwrittenAnswers.lookAfterBytes
        self.intake = intake
        self.peer = peer
        self.role = role
        self.maxPending = maxPending
        self.maxLineBytes = maxLineBytes
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        mailbox = executor.mailbox(for: context.eventLoop)
        logger.debug(
            "connection from \(peer.user) (uid \(peer.uid), pid \(peer.pid)), holding \(role.map { "the \($0) role" } ?? "no role")",
            metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed, !inputRefused else {
            readNotRun += 1
            return
        }
        if !readAsked && !lookedForHangUp {
            lookedForHangUp = true
            if clientHasGone(context) {
                readNotRun += 1
                abandon(context: context)
                return
            }
        }
        executor.unansweredRequests.add(1, ordering: .relaxed)
        if readBegins {
            readBegins = false
            turnIsRead = true
            turnLeft = LoopTurns.requestsPerTurn
        }
        let frame = unwrapInboundIn(data)
        if backlog.isEmpty && canRun(context) && !waitsForAppends(frame) && hasTurn {
            run(frame, context: context)
        } else {
            backlog.append(frame)
            drainBacklog(context: context)
        }
        if role == nil { refuseFurtherInput(context: context) }
    }

    /// Whether the client closed its connection leaving answers unread: the socket's pending error is then
    /// `ECONNRESET`, which the kernel sets as the client's end is closed with bytes still in its receive queue.
    /// Looked at once in each read this handler did not ask for, which SwiftNIO makes only as it drains a socket
    /// whose client has closed its side (or all of it), so never while the client still sends. A client that closed
    /// only its sending side (`shutdown(SHUT_WR)`, `socat` at the end of its input) leaves no error: it still reads,
    /// and everything it sent is answered.
    private func clientHasGone(_ context: ChannelHandlerContext) -> Bool {
        guard let options = context.channel.syncOptions,
            let error = try? options.getOption(ChannelOptions.socketOption(.so_error))
        else { return false }
        return error != 0
    }

    /// The client has gone with answers unread (a client that pipelined thousands of requests, read none of their
    /// answers and exited): SwiftNIO would read all its socket still holds in one go, holding up every other
    /// connection of the event loop while it does, though none of it would ever be run. Instead nothing more is
    /// read, and the connection closes now, with what waits in its backlog: those requests were not begun. What was
    /// begun goes on: appends handed to the intake are committed whole, their answers written to nobody.
    private func abandon(context: ChannelHandlerContext) {
        inputRefused = true
        abandoned = true
        context.close(promise: nil)
    }

    /// A peer holding no role may do nothing here: its first request is answered (`permission_denied`, or what was
    /// wrong with it), and the connection closes after that answer, nothing more of it read, nor the lines already
    /// read looked at. So a user who reaches the socket without a role holds no slot and floods nothing for longer
    /// than one answer takes.
    private func refuseFurtherInput(context: ChannelHandlerContext) {
        inputRefused = true
        inputClosed = true
        closeIfAnswered(context: context)
    }

    private func canRun(_ context: ChannelHandlerContext) -> Bool {
        !closed && !walking && pending < maxPending && context.channel.isWritable && mayAddAnswers
    }

    /// Whether this connection may add to the answers the daemon holds unwritten: yes unless the daemon holds more than
    /// its limit and some of them are this connection's.
    private var mayAddAnswers: Bool { countedBytes == 0 || !unwritten.isOver }

    /// Whether `frame` is a query that must wait for this connection's appends before it to be answered.
    private func waitsForAppends(_ frame: LineFrame) -> Bool {
        guard let lastAppendSequence, nextToWrite <= lastAppendSequence, case .line(let line) = frame else { return false }
        return !AppendIntake.mayBeAppend(line)
    }

    /// Whether this connection may run a request now: it has some left of its turn, and, as the turn begins, its loop
    /// has not yet run requests for a slice of its time since it last looked at its sockets.
    private var hasTurn: Bool { turnLeft > 0 && (turnLeft < LoopTurns.requestsPerTurn || turns.mayRun()) }

    /// Runs the lines that waited, in order, for as long as the client keeps up and the turn lasts; once it is
    /// over, the connection waits for its next.
    private func drainBacklog(context: ChannelHandlerContext) {
        guard !draining else { return }
        draining = true
        defer { draining = false }
        while let next = backlog.first, canRun(context), !waitsForAppends(next) {
            guard hasTurn else {
                if !waitsForTurn {
                    waitsForTurn = true
                    turns.enlist(self, context: context, fresh: turnIsRead && turnLeft == LoopTurns.requestsPerTurn)
                }
                return
            }
            run(backlog.removeFirst(), context: context)
        }
    }

    /// The connection's turn, which it waited for (``LoopTurns``): runs what waits, as far as the turn goes.
    func takeTurn(context: ChannelHandlerContext) {
        waitsForTurn = false
        guard !closed else { return }
        turnIsRead = false
        turnLeft = LoopTurns.requestsPerTurn
        resume(context: context)
    }

    private func run(_ frame: LineFrame, context: ChannelHandlerContext) {
        let sequence = nextSequence
        nextSequence += 1
        pending += 1
        switch frame {
        case .tooLong(let length):
            turnLeft -= 1
            complete(sequence, Response.failure(id: .null, ProtocolError(
                .lineTooLong, "request line longer than \(maxLineBytes) bytes (\(length)+ received); it was dropped",
                details: ["limit": .int(Int64(maxLineBytes))])), context: context)
        case .overBudget(let length):
            turnLeft -= 1
            let budget = executor.unfinishedLines
            budget.noteRefusal(logger: logger)
            complete(sequence, Response.failure(id: .null, ProtocolError(
                .serverBusy,
                "incidentd holds \(describeSize(budget.limit)) of unfinished request lines across all connections (max_unfinished_bytes); this line was dropped at \(length) bytes: send it again",
                details: ["limit": .int(Int64(budget.limit))])), context: context)
        case .line(let line):
            if Self.mayBeSubscribe(line), case .success(let request) = line.readableBytesView.withUnsafeBytes({ Request.decode($0) }),
                request.operation == .subscribe
            {
                turnLeft -= 1
                subscribe(request, sequence: sequence, context: context)
                return
            }
            // Appends (and whatever might be one) go to the intake thread, which keeps their order; the rest is
            // answered here and now.
            if let mailbox, AppendIntake.mayBeAppend(line) {
                let item = AppendIntake.Item(
                    line: line, sequence: sequence, peer: peer, role: role,
                    target: AnswerMailbox.Target(handler: self, context: context), mailbox: mailbox)
                lastAppendSequence = sequence
                if !intake.submit(item) {
                    // The daemon is draining and the intake has stopped: carried out here, still in order.
                    intake.process(item)
                }
                return
            }
            // What runs here takes from the turn; an append, only handed on above, does not.
            turnLeft -= 1
            let reply = line.readableBytesView.withUnsafeBytes { executor.reply(to: $0, peer: peer, role: role, on: context.eventLoop, connection: context.channel) }
            deliver(reply, sequence: sequence, context: context)
        }
    }

    /// Whether `line` may ask to `subscribe`: it holds the word.
    static func mayBeSubscribe(_ line: ByteBuffer) -> Bool {
        line.readableBytesView.withUnsafeBytes { $0.firstOffset(of: Array("subscribe".utf8)) != nil }
    }

    /// Starts following the log for request `sequence`: answered at once (`{"subscribed":true,"from":…}`, or the
    /// error), then each event as a line of its own, with the request's `id`, for as long as the connection
    /// stays open. Requests sent after it are still answered, in order, between the events.
    private func subscribe(_ request: Request, sequence: UInt64, context: ChannelHandlerContext) {
        let answer: [UInt8]
        if let role, role >= Operation.subscribe.requiredRole {
            do {
                guard follower == nil else {
                    throw ProtocolError(.invalidRequest, "this connection follows the log already; open another to follow it again")
                }
                guard !followHasEnded else {
                    throw ProtocolError(
                        .invalidRequest, "this connection's follow ended (log_damaged); open another to follow the log again")
                }
                let (from, filter) = try executor.followed(request)
                let started = LogFollower(
                    log: executor.log, requestId: request.id, from: from, filter: filter, context: context,
                    send: { [weak self] page in self?.send(page, flush: true, counted: true, context: context) },
                    mayWrite: { [weak self] in self?.countedBytes == 0 },
                    ended: { [weak self] answer in self?.followEnded(answer: answer, context: context) })
                follower = (started, sequence)
                executor.followers.add(
                    Followers.Entry(NIOLoopBound(started, eventLoop: context.eventLoop)), for: ObjectIdentifier(self))
                answer = Response.success(id: request.id, ["subscribed": true, "from": .int(Int64(max(from, 1)))])
            } catch {
                answer = RequestExecutor.failure(id: request.id, error)
            }
        } else {
            answer = Response.failure(id: request.id, executor.refusal(of: .subscribe, to: peer, holding: role))
        }
        complete(sequence, answer, context: context)
    }

    /// Runs `work` once every request before `sequence` has been answered (at once if they have), unless the
    /// connection has closed by then.
    func runOnceAnswered(before sequence: UInt64, context: ChannelHandlerContext, _ work: @escaping (ChannelHandlerContext) -> Void) {
        guard !closed else { return }
        handedBack.append((sequence, work))
        runHandedBack(context: context)
    }

    /// Runs the handed-back queries whose turn has come, as ``drainBacklog(context:)`` runs the others: while the
    /// client keeps reading and none of its requests is with the log walkers.
    private func runHandedBack(context: ChannelHandlerContext) {
        while let next = handedBack.first, next.sequence <= nextToWrite, !closed, !walking, context.channel.isWritable,
            mayAddAnswers
        {
            handedBack.removeFirst().run(context)
        }
    }

    /// The follow ended by itself (``LogFollower`` answers `log_damaged`): the connection is no longer counted
    /// among the followers nor woken after commits (before the answer goes out, so that a client who reads it
    /// and asks `status` never finds the follow still counted), and closes once answered if the client has
    /// closed its side.
    private func followEnded(answer: [UInt8], context: ChannelHandlerContext) {
        executor.followers.remove(ObjectIdentifier(self))
        follower = nil
        followHasEnded = true
        var buffer = context.channel.allocator.buffer(capacity: answer.count)
        buffer.writeBytes(answer)
        send(buffer, flush: true, context: context)
        closeIfAnswered(context: context)
    }

    /// Once the subscription's answer is out, the events follow it.
    private func startFollowing() {
        guard let (follower, sequence) = follower, !follower.started, nextToWrite > sequence else { return }
        follower.started = true
        follower.pump()
    }

    /// Writes the answer to request `sequence` once it is ready (in request order, see ``write(_:_:context:)``).
    func deliver(_ reply: Reply, sequence: UInt64, context: ChannelHandlerContext) {
        switch reply {
        case .now(let bytes):
            complete(sequence, bytes, context: context)
        case .later(let future):
            complete(sequence, once: future, walking: false, context: context)
        case .walking(let future):
            walking = true
            complete(sequence, once: future, walking: true, context: context)
        }
    }

    private func complete(_ sequence: UInt64, once future: EventLoopFuture<[UInt8]>, walking: Bool, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        future.whenComplete { result in
            let (handler, context) = loopBound.value
            // Cleared before the answer is written, so that writing it runs what waited for it.
            if walking { handler.walking = false }
            switch result {
            case .success(let bytes): handler.complete(sequence, bytes, context: context)
            case .failure(let error):
                handler.complete(sequence, Response.failure(id: .null, ProtocolError(.internalError, "\(error)")), context: context)
            }
        }
    }

    private func complete(_ sequence: UInt64, _ bytes: [UInt8], context: ChannelHandlerContext) {
        if write(sequence, bytes, context: context) {
            finishAnswers(context: context)
        }
    }

    /// An append's answer from the mailbox: written, and flushed with the others of its batch by
    /// ``finishAnswers(context:)``.
    func answer(_ sequence: UInt64, _ bytes: [UInt8], context: ChannelHandlerContext) {
        _ = write(sequence, bytes, context: context)
    }

    /// Adds every answer that is next in request order to ``outgoing``; whether any was.
    private func write(_ sequence: UInt64, _ bytes: [UInt8], context: ChannelHandlerContext) -> Bool {
        if sequence == nextToWrite && ready.isEmpty {
            // In order already, as answers mostly are: no detour through `ready`.
            append(bytes, context: context)
            nextToWrite += 1
            pending -= 1
            noteAnswered(1)
            return true
        }
        ready[sequence] = bytes
        var wrote = 0
        while let next = ready.removeValue(forKey: nextToWrite) {
            append(next, context: context)
            nextToWrite += 1
            pending -= 1
            wrote += 1
        }
        noteAnswered(wrote)
        return wrote > 0
    }

    /// Takes `count` answered requests off the daemon's ``RequestExecutor/unansweredRequests``; once the connection
    /// has closed, its requests no longer count (``channelInactive(context:)`` took them all off).
    private func noteAnswered(_ count: Int) {
        guard !closed, count > 0 else { return }
        executor.unansweredRequests.subtract(count, ordering: .relaxed)
    }

    /// Adds `bytes` to ``outgoing``, which is made the size of the first answer and grows as more join it. A query's
    /// answer mostly goes out alone: each in a buffer of kilobytes, the answers of a few hundred bytes that a client
    /// that does not read leaves waiting would hold several times the write buffer's high-water mark in memory.
    private func append(_ bytes: [UInt8], context: ChannelHandlerContext) {
        if outgoing == nil { outgoing = context.channel.allocator.buffer(capacity: bytes.count) }
        outgoing?.writeBytes(bytes)
    }

    /// Hands ``outgoing`` to the channel (not flushed).
    private func writeOutgoing(context: ChannelHandlerContext) {
        guard let buffer = outgoing else { return }
        outgoing = nil
        send(buffer, flush: false, context: context)
    }

    /// Hands `buffer` to the channel, as every write of this connection is: a follower's page (`counted`), and any
    /// other of ``UnwrittenAnswers/countedWriteBytes`` or more, counts against the daemon's unwritten answers until the socket
    /// has taken it, and starts the watch for a stalled socket, as every ``UnwrittenAnswers/lookAfterBytes`` of
    /// smaller ones do.
    private func send(_ buffer: ByteBuffer, flush: Bool, counted: Bool = false, context: ChannelHandlerContext) {
        let bytes = buffer.readableBytes
        handedBytes &+= bytes
        let written = counted || bytes >= UnwrittenAnswers.countedWriteBytes ? countedWrite(bytes, context: context) : nil
        context.write(wrapOutboundOut(buffer), promise: written)
        if flush { context.flush() }
        if written != nil || handedBytes >= nextLook { watchOutput(context: context) }
    }

    /// Counts a write of `bytes` against the daemon's unwritten answers; the promise to write it with, fulfilled once
    /// the socket has taken it all, or failed when the connection closes first, gives them back either way.
    private func countedWrite(_ bytes: Int, context: ChannelHandlerContext) -> EventLoopPromise<Void> {
        countedBytes += bytes
        unwritten.add(bytes)
        let written = context.eventLoop.makePromise(of: Void.self)
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        written.futureResult.whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.countedWriteEnded(bytes, context: context)
        }
        return written
    }

    private func countedWriteEnded(_ bytes: Int, context: ChannelHandlerContext) {
        countedBytes -= bytes
        unwritten.remove(bytes)
        if countedBytes == 0 && !closed {
            resume(context: context)
            follower?.follower.pumpSoon()
        }
    }

    /// Runs or reads what waited for the client to take its answers. Not the follower's next page: a write that the
    /// socket takes at once ends as it is flushed, and a follower pumped from there would send page after page in one
    /// turn of the loop (and as deep a stack), where it sends one a turn (``LogFollower/pump()``).
    private func resume(context: ChannelHandlerContext) {
        runHandedBack(context: context)
        drainBacklog(context: context)
        readIfPossible(context: context)
        closeIfAnswered(context: context)
    }

    /// Starts the watch for a stalled socket, unless it runs already or the write timeout is off: every
    /// ``UnwrittenAnswers/checkInterval``, for as long as output waits for the socket, see whether it took any.
    private func watchOutput(context: ChannelHandlerContext) {
        guard !stallCheckScheduled, !closed, unwritten.writeTimeout != nil else { return }
        if stallWatch == nil { stallWatch = (handedBytes - bufferedBytes(context), nil, .now()) }
        stallCheckScheduled = true
        nextLook = .max
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: unwritten.checkInterval) {
            let (handler, context) = loopBound.value
            handler.checkOutput(context: context)
        }
    }

    /// What the channel holds of the bytes handed to it, not taken by the socket yet.
    private func bufferedBytes(_ context: ChannelHandlerContext) -> Int {
        guard let options = context.channel.syncOptions,
            let bytes = try? options.getOption(ChannelOptions.bufferedWritableBytes)
        else { return 0 }
        return bytes
    }

    /// Looks whether the socket took any of what waits for it since the last look, or the client read any of what
    /// the kernel holds for it (the kernel takes more from the daemon only once its client has read most of what
    /// it holds, so a client reading slowly can leave the daemon's writes waiting a while); closes the connection
    /// once neither has happened for ``UnwrittenAnswers/stallLimit``.
    private func checkOutput(context: ChannelHandlerContext) {
        stallCheckScheduled = false
        guard !closed, stallWatch != nil else { return }
        let waiting = bufferedBytes(context)
        guard waiting > 0 else {
            stallWatch = nil
            nextLook = handedBytes &+ UnwrittenAnswers.lookAfterBytes
            return
        }
        let taken = handedBytes - waiting
        guard let provider = context.channel as? any SocketOptionProvider else {
            judgeOutput(taken: taken, queued: nil, waiting: waiting, context: context)
            return
        }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // The first four members of SO_MEMINFO (the kernel copies as many as asked for), in a tuple, which is laid out
        // as the C array is; the third, SK_MEMINFO_WMEM_ALLOC, is the memory of what the socket sent and its peer has
        // not read yet, which falls as the peer reads.
        let memory: EventLoopFuture<(UInt32, UInt32, UInt32, UInt32)> = provider.unsafeGetSocketOption(
            level: .socket, name: .init(rawValue: SO_MEMINFO))
        memory.whenComplete { result in
            let (handler, context) = loopBound.value
            handler.judgeOutput(taken: taken, queued: try? result.get().2, waiting: waiting, context: context)
        }
    }

    private func judgeOutput(taken: Int, queued: UInt32?, waiting: Int, context: ChannelHandlerContext) {
        guard !closed, let watch = stallWatch, let limit = unwritten.stallLimit else { return }
        let now = NIODeadline.now()
        if taken != watch.taken || queued != watch.queued {
            stallWatch = (taken, queued, now)
        } else if now - watch.since >= limit {
            unwritten.noteStalledClose(peer: peer, waiting: waiting, idle: now - watch.since, logger: logger)
            context.close(promise: nil)
            return
        }
        watchOutput(context: context)
    }

    /// After answers were written: flush them, and run or read what waited for them.
    func finishAnswers(context: ChannelHandlerContext) {
        writeOutgoing(context: context)
        context.flush()
        startFollowing()
        runHandedBack(context: context)
        drainBacklog(context: context)
        readIfPossible(context: context)
        closeIfAnswered(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event as? ChannelEvent == .some(.inputClosed) {
            // The decoder before this handler has already passed on a last line that had no newline.
            inputClosed = true
            closeIfAnswered(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Once the client has closed its side and every request has been answered, closes the connection after
    /// the last response has been written.
    private func closeIfAnswered(context: ChannelHandlerContext) {
        // A follower's client may close its side once it has asked: it still reads what follows.
        guard inputClosed && pending == 0 && backlog.isEmpty && follower == nil else { return }
        inputClosed = false
        let channel = context.channel
        writeOutgoing(context: context)
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Once a read, not once a request: the read carries many pipelined requests, and the counter is shared
        // by the loops.
        executor.activity.add(1, ordering: .relaxed)
        readBegins = true
        readAsked = false
        lookedForHangUp = false
        writeOutgoing(context: context)
        context.flush()
    }

    func read(context: ChannelHandlerContext) {
        guard !inputRefused else { return }
        if backlog.isEmpty && canRun(context) {
            readPending = false
            readAsked = true
            context.read()
        } else {
            readPending = true
        }
    }

    private func readIfPossible(context: ChannelHandlerContext) {
        if !inputRefused && readPending && backlog.isEmpty && canRun(context) {
            readPending = false
            readAsked = true
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if !context.channel.isWritable { watchOutput(context: context) }
        follower?.follower.pump()
        resume(context: context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["uid": "\(peer.uid)", "error": "\(error)"])
        context.close(promise: nil)
    }

    /// Gives back the uid's connection slot (``ConnectionSlots``), once: as the connection closes, or as the handler
    /// is removed from a channel that never became active, or was never added.
    func giveBackSlot() {
        guard holdsSlot else { return }
        holdsSlot = false
        executor.connectionSlots.give(peer.uid)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        giveBackSlot()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // What was read and is not answered yet (run or waiting in the backlog) is nobody's to wait for any more.
        executor.unansweredRequests.subtract(pending + backlog.count, ordering: .relaxed)
        closed = true
        readNotRun += backlog.count
        backlog.removeAll()
        handedBack.removeAll()
        if let follower {
            // The follower holds this handler's context, which holds the handler: let go of it.
            follower.follower.stop()
            executor.followers.remove(ObjectIdentifier(self))
            self.follower = nil
        }
        executor.connections.subtract(1, ordering: .relaxed)
        giveBackSlot()
        let notRun =
            readNotRun > 0 || abandoned
            ? " (\(readNotRun) more read and not run\(abandoned ? "; its client had gone, leaving answers unread: the rest of what it sent was not read" : ""))" : ""
        logger.debug(
            "connection of \(peer.user) (uid \(peer.uid), pid \(peer.pid)) closed after \(nextSequence) request\(nextSequence == 1 ? "" : "s")\(notRun)",
            metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
        context.fireChannelInactive()
    }
}
