import Dispatch
import Gazetteer
import IncidentDomain
import IncidentLog
import IncidentProtocol
import LMDB
import Logging
import NIOCore
import NIOPosix
import SocketTrust
import StrictJSON
import Synchronization

/// The answer to one request: ready now (queries), later (appends, after their group commit is synced), or once
/// a log walker has made it (``RequestExecutor/logWalkers``).
enum Reply {
    case now([UInt8])
    case later(EventLoopFuture<[UInt8]>)
    /// A connection has at most one of these outstanding (see ``ConnectionHandler``).
    case walking(EventLoopFuture<[UInt8]>)
}

/// Carries out decoded requests against the log. Short queries run on the calling event loop (LMDB readers
/// never wait for the writer); the ones that walk the log (`read`, `verify`, `replay`, `backup`, and `incident` for an
/// incident of many events) run on ``logWalkers``, so that
/// they hold up neither the loop's other connections nor, when the loops run real-time (see
/// ``LoopScheduling``), the writer; appends go to the group committer.
final class RequestExecutor: Sendable {
    let log: EventLog
    let committer: GroupCommitter
    let access: AccessControl
    /// Threads at ordinary priority for the requests whose work grows with the log.
    let logWalkers: NIOThreadPool
    /// For what an operator should find in the journal afterwards (backups).
    let logger: Logger
    /// Where each admin may have backups made.
    let backups: BackupPlacement
    let connections = Atomic<Int>(0)
    /// The connections each uid holds (`daemon.max_connections_per_uid`).
    let connectionSlots = ConnectionSlots()
    /// Requests read from every connection and not answered yet (answers written to a connection that closed
    /// meanwhile count as answered): the daemon's stop waits for none to be left (``Incidentd``'s drain).
    let unansweredRequests = Atomic<Int>(0)
    /// Set as the daemon stops, once it has done waiting for its connections: a `verify` or `replay` under way is cut
    /// short at its next stretch, and no request for the log walkers (those and `read`, `incident`, `backup`) is begun
    /// after it (each answered `shutting_down`), so that the stop does not wait for walks of the whole log.
    private let walksEnded = Atomic<Bool>(false)
    /// Connections opened, reads of requests and the intake's rounds since the start: the heap is trimmed once it
    /// stands still (see ``HeapTrimSchedule``).
    let activity = Atomic<UInt64>(0)
    /// The unfinished request lines of all connections, against `daemon.max_unfinished_bytes`.
    let unfinishedLines: UnfinishedLineBudget
    /// The answers handed to connections and not written yet, against `daemon.max_unwritten_bytes`, and the write
    /// timeout.
    let unwrittenAnswers: UnwrittenAnswers
    let startedAt = Timestamp.now()
    /// The connections following the log (`subscribe`), woken by the group committer after each commit.
    let followers: Followers
    /// One per event loop: see ``AnswerMailbox``.
    let mailboxes = Mutex<[ObjectIdentifier: AnswerMailbox]>([:])
    /// The refused connections of each uid in the log: the first at once, then at most a line a minute with how many
    /// came since, so that a peer reconnecting in a loop does not flood the journal (``LineThrottle``).
    let refusalLines = Mutex<[UInt32: LineThrottle]>([:])
    /// The appends that stored reports under a `cityId` of their own (``noteRestoredCities(_:peer:)``).
    let restoreNotes = Mutex(RestoreNotes())
    /// The appends refused for a damaged projection: one line a minute at most (``noteDamage(_:peer:)``).
    let damageNotes = Mutex(LineThrottle(interval: 60_000_000_000))

    /// `logWalkers` must be started; whoever made it shuts it down once the server has stopped.
    init(
        log: EventLog, committer: GroupCommitter, access: AccessControl, logWalkers: NIOThreadPool, followers: Followers,
        unfinishedLines: UnfinishedLineBudget, unwrittenAnswers: UnwrittenAnswers, backups: BackupPlacement, logger: Logger
    ) {
        self.backups = backups
        self.log = log
        self.unfinishedLines = unfinishedLines
        self.unwrittenAnswers = unwrittenAnswers
        self.followers = followers
        self.committer = committer
        self.access = access
        self.logWalkers = logWalkers
        self.logger = logger
    }

    /// The answer to one request line: decoded, then carried out (``execute(_:peer:role:on:connection:)``). Safe on
    /// any thread; a `.later` answer completes on `eventLoop`.
    func reply(
        to line: UnsafeRawBufferPointer, peer: PeerIdentity, role: Role?, on eventLoop: any EventLoop, connection: (any Channel)?
    ) -> Reply {
        switch Request.decode(line) {
        case .failure(let failure): return .now(Response.failure(id: failure.id, failure.error))
        case .success(let request): return execute(request, peer: peer, role: role, on: eventLoop, connection: connection)
        }
    }

    /// Carries out `request` for a client of `connection`. Work that waits for the log walkers is skipped if the
    /// connection has closed by the time its turn comes: nobody is left to answer. Nil for an append, which never
    /// waits for them.
    func execute(
        _ request: Request, peer: PeerIdentity, role: Role?, on eventLoop: any EventLoop, connection: (any Channel)?
    ) -> Reply {
        let id = request.id
        guard let role, role >= request.operation.requiredRole else {
            return .now(Response.failure(id: id, refusal(of: request.operation, to: peer, holding: role)))
        }
        do {
            switch request.operation {
            case .append: return try append(request, peer: peer, role: role, on: eventLoop)
            case .read: return walkingTheLog(request, on: eventLoop, for: connection) { try $0.read(request) }
            case .incident:
                let query = try incidentQuery(request)
                guard (query.state?.version ?? 0) > Self.incidentEventsAnsweredOnLoop else { return .now(try incident(query, request)) }
                return walkingTheLog(request, on: eventLoop, for: connection) { try $0.incident(query, request) }
            case .incidents:
                let query = try incidentsQuery(request)
                return walkingTheLog(request, on: eventLoop, for: connection) { try $0.incidents(query, request) }
            case .city: return .now(try city(request))
            case .cities:
                return .now(Response.success(id: id, ["cities": .array(try log.cities().map(\.json))]))
            case .status: return .now(try status(request))
            case .verify: return walkingTheLog(request, on: eventLoop, for: connection) { try $0.verify(request, peer: peer) }
            case .replay: return walkingTheLog(request, on: eventLoop, for: connection) { try $0.replay(request) }
            case .backup: return walkingTheLog(request, on: eventLoop, for: connection) { try $0.backup(request, peer: peer) }
            case .subscribe:
                // A connection's handler starts a subscription itself (``ConnectionHandler``); this is one it did
                // not recognise, its operation spelled with escapes.
                throw ProtocolError(.invalidRequest, "op: write \"subscribe\" without escapes to follow the log")
            }
        } catch {
            return .now(Self.failure(id: id, error))
        }
    }

    /// The refusal of `operation` to a peer without the role it needs; the first of a connection is logged, so that
    /// an operator sees who knocks.
    func refusal(of operation: Operation, to peer: PeerIdentity, holding role: Role?) -> ProtocolError {
        let now = DispatchTime.now().uptimeNanoseconds
        if peer.refusals.isFirst(), let connections = refusalLines.withLock({ lines -> Int? in
            // Bounded: past a thousand uids, the throttles start again.
            if lines.count >= 1024 && lines[peer.uid] == nil { lines.removeAll(keepingCapacity: true) }
            return lines[peer.uid, default: LineThrottle(interval: 60_000_000_000)].note(at: now)
        }) {
            let since = connections > 1 ? " (\(connections) connections of this uid refused since its last such line)" : ""
            logger.warning(
                "permission denied: \(peer.user) (uid \(peer.uid)) may not \(operation.rawValue), which needs the \(operation.requiredRole) role; it holds \(role.map { "the \($0) role" } ?? "none")\(since). Further refusals on this connection are not logged, nor others of this uid for a minute",
                metadata: [
                    "uid": "\(peer.uid)", "user": "\(peer.user)", "pid": "\(peer.pid)", "op": "\(operation.rawValue)",
                ])
        }
        return ProtocolError(
            .permissionDenied,
            "\(peer.user) (uid \(peer.uid)) may not \(operation.rawValue): it needs the \(operation.requiredRole) role "
                + "in incidentd.toml [access]")
    }

    /// The error response for a request that threw `error`.
    /// Ends the walks of the log, under way or to come: see ``walksEnded``.
    func endWalks() {
        walksEnded.store(true, ordering: .relaxed)
    }

    /// Throws `shutting_down` once the walks of the log have ended: the checkpoint of a `verify` or `replay`.
    private func checkWalkGoesOn() throws {
        guard walksEnded.load(ordering: .relaxed) else { return }
        throw ProtocolError(.shuttingDown, "incidentd is stopping: the request was cut short; send it again once incidentd is back")
    }

    static func failure(id: JSONText, _ error: any Error) -> [UInt8] {
        switch error {
        case let error as ProtocolError:
            return Response.failure(id: id, error)
        case let error as IncidentError:
            return Response.failure(id: id, ProtocolError(.init(rawValue: error.code.rawValue), error.message, details: error.details))
        case let error as LogError where error.code == .storageFull:
            return Response.failure(id: id, ProtocolError(.storageFull, error.message))
        case let error as LogError where error.code == .invalidDestination:
            return Response.failure(id: id, ProtocolError(.invalidRequest, error.message))
        case let error as LogError where error.code == .damagedPage:
            return Response.failure(id: id, ProtocolError(.pageDamaged, error.message))
        case let error as LogError where error.code == .damagedEvent:
            return Response.failure(
                id: id, ProtocolError(.logDamaged, error.message, details: error.position.map { ["position": .int(Int64($0))] } ?? [:]))
        default:
            return Response.failure(id: id, ProtocolError(.internalError, "\(error)"))
        }
    }

    /// Runs `work` on ``logWalkers`` and answers on `eventLoop`; skips it if `connection` has closed meanwhile (a
    /// client that sent a hundred `replay`s and went away would otherwise keep every walker busy for them, ahead of
    /// everyone else's `read`s).
    private func walkingTheLog(
        _ request: Request, on eventLoop: any EventLoop, for connection: (any Channel)?,
        _ work: @escaping @Sendable (RequestExecutor) throws -> [UInt8]
    ) -> Reply {
        let id = request.id
        let answer = logWalkers.runIfActive(eventLoop: eventLoop) { [self] () -> [UInt8] in
            guard connection?.isActive ?? true else { return [] }
            do {
                try checkWalkGoesOn()
                return try work(self)
            } catch {
                return Self.failure(id: id, error)
            }
        }
        return .walking(answer.flatMapErrorThrowing { _ in
            Response.failure(id: id, ProtocolError(.shuttingDown, "incidentd is stopping; the request was not carried out"))
        })
    }

    private func append(_ request: Request, peer: PeerIdentity, role: Role, on eventLoop: any EventLoop) throws -> Reply {
        guard case .array(let wireEvents)? = request.body["events"] else {
            throw ProtocolError(.invalidRequest, "events: expected an array of events")
        }
        guard !wireEvents.isEmpty else { throw ProtocolError(.invalidRequest, "events: must hold at least one event") }
        guard wireEvents.count <= 10_000 else {
            throw ProtocolError(.invalidRequest, "events: \(wireEvents.count) events in one append, the limit is 10000")
        }
        var allowNewCity = false
        if let flag = request.body["allowNewCity"] {
            guard let b = flag.boolValue else { throw ProtocolError(.invalidRequest, "allowNewCity: expected true or false") }
            allowNewCity = b
        }
        let now = Timestamp.now()
        var proposals: [ProposedEvent] = []
        proposals.reserveCapacity(wireEvents.count)
        for (index, wire) in wireEvents.enumerated() {
            do {
                proposals.append(try ProposedEvent(json: wire, now: now))
            } catch {
                throw Self.indexed(error, index: index, of: wireEvents.count)
            }
        }
        let promise = eventLoop.makePromise(of: [UInt8].self)
        let id = request.id
        let count = proposals.count
        let appendRequest = AppendRequest(
            events: proposals, allowNewCity: allowNewCity, restoresCities: Self.restoresCities(role), recordedBy: peer.recorder)
        committer.submit(appendRequest) { [self] result in
            noteRestoredCities(result, peer: peer)
            noteDamage(result, peer: peer)
            promise.succeed(Self.appendResponse(id: id, count: count, result))
        }
        return .later(promise.futureResult)
    }

    /// The common append, decoded straight from its line (see ``FastWireDecoder``) and submitted; `answer` is
    /// called on the writer thread once it is durable or refused. False when the line is not such an append
    /// (or the peer may not append): the caller then takes the general path, which answers every other case,
    /// errors included, exactly as before.
    func fastAppend(
        _ line: UnsafeRawBufferPointer, peer: PeerIdentity, role: Role?,
        answer: @escaping @Sendable (_ id: JSONText, _ count: Int, _ result: Result<AppendReceipt, AppendFailure>, _ request: AppendRequest) -> Void
    ) -> Bool {
        guard let role, role >= Operation.append.requiredRole,
            let decoded = FastWireDecoder.decodeAppend(line, now: Timestamp.now())
        else { return false }
        let id = decoded.id
        let count = decoded.events.count
        let request = AppendRequest(
            events: decoded.events, allowNewCity: decoded.allowNewCity, restoresCities: Self.restoresCities(role),
            recordedBy: peer.recorder)
        committer.submit(request) { [self] result, request in
            noteRestoredCities(result, peer: peer)
            noteDamage(result, peer: peer)
            answer(id, count, result, request)
        }
        return true
    }

    /// Whether a peer of `role` may store a report under a `cityId` other than the daemon gives its `city`: a
    /// restore of another log's cities (`export | append`), the admin role's (``AppendRequest/restoresCities``).
    static func restoresCities(_ role: Role) -> Bool { role >= .admin }

    /// Says in the daemon's log, at append time, that `result` stored reports under a `cityId` other than the daemon
    /// gives their `city` (a restore's), naming both, so that the warning of the next start (a city whose id the
    /// gazetteer spells another city with) is not the first word of it. A line a request at most: each request that
    /// restores a kind of city not named since the start, and of the others (a large restore sends the same kinds
    /// again and again) at most one each ``RestoreNotes/interval``, saying how many were not logged.
    private func noteRestoredCities(_ result: Result<AppendReceipt, AppendFailure>, peer: PeerIdentity) {
        guard case .success(let receipt) = result, let first = receipt.restoredCities.first else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard let unlogged = restoreNotes.withLock({ $0.note(receipt.restoredCities, at: now) }) else { return }
        let since = unlogged > 0 ? " (\(unlogged) earlier append\(unlogged == 1 ? "" : "s") restoring cities named before went unlogged)" : ""
        let named = receipt.restoredCities.map(\.summary).joined(separator: "; ")
        let more = receipt.restoredCityReports > receipt.restoredCities.count ? "; and others like them" : ""
        logger.notice(
            "append by \(peer.user) (uid \(peer.uid)) stored \(receipt.restoredCityReports) report\(receipt.restoredCityReports == 1 ? "" : "s") under the cityId it names where the daemon would have filed it otherwise, as a restore of another log's cities does (the admin role's): \(named)\(more)\(since)",
            metadata: [
                "uid": "\(peer.uid)", "user": "\(peer.user)", "pid": "\(peer.pid)", "cityId": "\(first.cityId)",
                "resolvesTo": "\(first.resolvesTo ?? "none")", "reports": "\(receipt.restoredCityReports)",
                "positions": "\(receipt.positions.first ?? 0)-\(receipt.positions.last ?? 0)",
            ])
    }

    /// Says in the daemon's log that `result` refused an append for a stored projection that is damaged
    /// (`log_damaged`), with the answer's words (which projection, and the remedy), so that the operator learns of it
    /// from the journal, not only the client from its answer: the first at once, then one a minute at most, saying
    /// how many were refused since the last line.
    private func noteDamage(_ result: Result<AppendReceipt, AppendFailure>, peer: PeerIdentity) {
        guard case .failure(.rejected(let error, _)) = result, error.code == .logDamaged else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        guard let refused = damageNotes.withLock({ $0.note(at: now) }) else { return }
        let count = refused > 1 ? " (\(refused) appends refused so since the last line)" : ""
        logger.error(
            "an append by \(peer.user) (uid \(peer.uid), pid \(peer.pid)) was refused: \(error.message)\(count)",
            metadata: ["code": "log_damaged", "uid": "\(peer.uid)", "pid": "\(peer.pid)"])
    }

    /// The response line to an append.
    static func appendResponse(id: JSONText, count: Int, _ result: Result<AppendReceipt, AppendFailure>) -> [UInt8] {
        switch result {
        case .success(let receipt):
            // `{"alreadyStored":[…],"id":…,"incidents":[…],"ok":true,"positions":[…]}`, `alreadyStored` only when
            // some were: Response.success's canonical bytes, written directly.
            var out: [UInt8] = []
            out.reserveCapacity(
                64 + receipt.incidents.reduce(0) { $0 + $1.utf8.count + 3 } + 12 * receipt.positions.count
                    + 6 * receipt.alreadyStored.count)
            out.append(UInt8(ascii: "{"))
            if !receipt.alreadyStored.isEmpty {
                out.append(contentsOf: "\"alreadyStored\":[".utf8)
                for (n, index) in receipt.alreadyStored.enumerated() {
                    if n > 0 { out.append(UInt8(ascii: ",")) }
                    JSONValue.writeInteger(Int64(index), into: &out)
                }
                out.append(contentsOf: "],".utf8)
            }
            out.append(contentsOf: "\"id\":".utf8)
            id.write(into: &out)
            out.append(contentsOf: ",\"incidents\":[".utf8)
            for (n, incident) in receipt.incidents.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(incident, into: &out)
            }
            out.append(UInt8(ascii: "]"))
            if !receipt.newCities.isEmpty {
                // `"newCities":[{"city":…,"cityId":…,"near":[…]}]`, in the canonical order of members.
                out.append(contentsOf: ",\"newCities\":[".utf8)
                for (n, made) in receipt.newCities.enumerated() {
                    out.append(contentsOf: (n > 0 ? ",{\"city\":" : "{\"city\":").utf8)
                    JSONValue.writeString(made.city, into: &out)
                    out.append(contentsOf: ",\"cityId\":".utf8)
                    JSONValue.writeString(made.cityId, into: &out)
                    out.append(contentsOf: ",\"near\":[".utf8)
                    for (m, name) in made.near.enumerated() {
                        if m > 0 { out.append(UInt8(ascii: ",")) }
                        JSONValue.writeString(name, into: &out)
                    }
                    out.append(contentsOf: "]}".utf8)
                }
                out.append(UInt8(ascii: "]"))
            }
            out.append(contentsOf: ",\"ok\":true,\"positions\":[".utf8)
            for (n, position) in receipt.positions.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeInteger(Int64(position), into: &out)
            }
            out.append(contentsOf: "]}\n".utf8)
            return out
        case .failure(.rejected(let error, let index)):
            let indexed = Self.indexed(error, index: index, of: count)
            return Response.failure(id: id, ProtocolError(.init(rawValue: indexed.code.rawValue), indexed.message, details: indexed.details))
        case .failure(.storageFull(let message)):
            return Response.failure(id: id, ProtocolError(.storageFull, message))
        case .failure(.shuttingDown):
            return Response.failure(id: id, ProtocolError(.shuttingDown, "incidentd is stopping; nothing was stored, retry later"))
        case .failure(.storage(let message)):
            return Response.failure(id: id, ProtocolError(.internalError, "storage failed, nothing was stored: \(message)"))
        }
    }

    /// Names the event of a multi-event append that was refused.
    private static func indexed(_ error: IncidentError, index: Int, of count: Int) -> IncidentError {
        var details = error.details
        details["index"] = .int(Int64(index))
        let message = count > 1 ? "event \(index): \(error.message)" : error.message
        return IncidentError(error.code, message, details: details)
    }

    /// The cities folded afresh from the log alone, up to where the request says: what `cities` answers,
    /// computed without the stored projections.
    private func replay(_ request: Request) throws -> [UInt8] {
        func instant(_ name: String) throws -> Timestamp? {
            guard let value = request.body[name] else { return nil }
            guard let text = value.stringValue, let parsed = ParsedDate.parse(text) else {
                throw ProtocolError(.invalidRequest, "\(name): an ISO 8601 date or date-time, such as 2022-03-01 or 2022-03-01T14:30Z")
            }
            return parsed.start
        }
        let limit = ReplayLimit(
            untilPosition: try Self.integer(request.body["untilPosition"], "untilPosition", range: 0...Int64.max).map(UInt64.init),
            asOf: try instant("asOf"), occurredBefore: try instant("occurredBefore"))
        return Response.success(id: request.id, ["cities": .array(try log.replay(limit, checkpoint: checkWalkGoesOn).map(\.json))])
    }

    private func read(_ request: Request) throws -> [UInt8] {
        let from = try Self.integer(request.body["from"], "from", range: 0...Int64.max) ?? 1
        let limit = try Self.integer(request.body["limit"], "limit", range: 1...10_000) ?? 100
        let (events, next) = try log.events(
            from: UInt64(from), limit: Int(limit), maxBytes: unwrittenAnswers.readPageBytes(atMost: Self.readAnswerBytes),
            filter: try eventFilter(request))
        return Response.success(id: request.id, ["events": .array(events), "next": .int(Int64(next))])
    }

    /// A `read` stops adding events once they hold this many bytes as stored (about their JSON's size), whatever its
    /// `limit`: 10,000 events of a few hundred kilobytes each would otherwise make one answer gigabytes long, built
    /// whole in the daemon's memory before it is written. Less while the daemon holds many answers unwritten
    /// (``UnwrittenAnswers/readPageBytes(atMost:)``).
    static let readAnswerBytes = 8 << 20

    /// Where a `subscribe` starts and what it follows, or the error to answer it with.
    func followed(_ request: Request) throws -> (from: UInt64, filter: EventFilter) {
        let from = try Self.integer(request.body["from"], "from", range: 0...Int64.max) ?? 1
        return (UInt64(from), try eventFilter(request))
    }

    /// The filter members of a `read` or `subscribe`.
    private func eventFilter(_ request: Request) throws -> EventFilter {
        var filter = EventFilter()
        if let type = request.body["type"] {
            guard let name = type.stringValue, let parsed = EventType(rawValue: name) else {
                throw ProtocolError(.invalidRequest, "type: one of incident-reported, response-observed, outcome-updated")
            }
            filter.type = parsed
        }
        if let city = request.body["city"] {
            guard let name = city.stringValue else { throw ProtocolError(.invalidRequest, "city: expected a string") }
            filter.cityId = try resolveCity(name)
        }
        if let incident = request.body["incident"] {
            guard let name = incident.stringValue else { throw ProtocolError(.invalidRequest, "incident: expected a string") }
            // As for a city: an incident the log does not know is an error, not a list that happens to be empty.
            guard let id = IncidentID.normalized(name), try log.hasIncident(id) else { throw Self.unknownIncident(name) }
            filter.incident = id
        }
        return filter
    }

    /// The refusal of a query for an incident the log does not hold.
    private static func unknownIncident(_ id: String) -> IncidentError {
        IncidentError(.unknownIncident, "no incident \(id.prefix(128)) in the log", details: ["incident": .string(String(id.prefix(128)))])
    }

    private func resolveCity(_ name: String) throws -> String {
        if let id = try log.resolveCity(name) { return id }
        let suggestions = log.gazetteer.suggestions(for: name, alsoAmong: log.citiesOutsideGazetteer())
        let hint = suggestions.isEmpty ? "" : "; did you mean \(suggestions.joined(separator: ", "))?"
        throw IncidentError(
            .unknownCity, "no city \"\(name.prefix(64))\" in the gazetteer or the log\(hint)",
            details: ["suggestions": .array(suggestions.map { .string($0) })])
    }

    /// The most events an incident may hold for its document to be built on the event loop. Each event can carry a
    /// description of 10,000 characters and its sources: an incident of thousands of events makes an answer of
    /// megabytes, whose building would hold up every other connection of the loop for as long.
    static let incidentEventsAnsweredOnLoop: Int64 = 64

    /// What an `incident` request asks for, and the incident's projection, read once: its version (how many events
    /// it holds) chooses where the document is built, which then starts from it.
    struct IncidentQuery: Sendable {
        var id: String
        var position: UInt64?
        /// Nil when the log has no such incident (or the id is not one).
        var state: IncidentState?
    }

    private func incidentQuery(_ request: Request) throws -> IncidentQuery {
        guard let id = request.body["incident"]?.stringValue else {
            throw ProtocolError(.invalidRequest, "incident: is required, the incident id")
        }
        let position = try Self.integer(request.body["untilPosition"], "untilPosition", range: 0...Int64.max).map(UInt64.init)
        let normalized = IncidentID.normalized(id)
        return IncidentQuery(id: normalized ?? id, position: position, state: try normalized.flatMap { try log.incidentState($0) })
    }

    private func incident(_ query: IncidentQuery, _ request: Request) throws -> [UInt8] {
        guard let state = query.state else { throw Self.unknownIncident(query.id) }
        guard let document = try log.incidentDocument(of: state, through: query.position) else {
            guard let position = query.position else { throw Self.unknownIncident(query.id) }
            throw IncidentError(
                .unknownIncident, "incident \(query.id) was reported after position \(position)", details: ["incident": .string(query.id)])
        }
        return Response.success(id: request.id, ["incident": document])
    }

    private func city(_ request: Request) throws -> [UInt8] {
        guard let name = request.body["city"]?.stringValue else {
            throw ProtocolError(.invalidRequest, "city: is required, any spelling the gazetteer or the log knows, or a city id")
        }
        let cityId = try resolveCity(name)
        if let document = try log.cityDocument(id: cityId) {
            // `{"city":…,"id":…,"ok":true}`: Response.success's canonical bytes around the stored document.
            var out: [UInt8] = []
            out.reserveCapacity(document.count + 64)
            out.append(contentsOf: "{\"city\":".utf8)
            out.append(contentsOf: document)
            out.append(contentsOf: ",\"id\":".utf8)
            request.id.write(into: &out)
            out.append(contentsOf: ",\"ok\":true}\n".utf8)
            return out
        }
        // A known city with no incidents yet: its empty projection.
        let known = log.gazetteer.city(id: cityId)
        let empty = CityState(
            cityId: cityId, name: known?.name ?? name, region: known?.region, population: known?.population.map(Int64.init))
        return Response.success(id: request.id, ["city": empty.json])
    }

    /// What an `incidents` request asks for, checked before it waits for its turn.
    struct IncidentsQuery: Sendable {
        var cityId: String
        var statuses: Set<OutcomeStatus>
        var from: CityIncidentsCursor?
        var limit: Int
    }

    /// The most incidents an `incidents` answer lists, and how many it lists unless asked.
    static let incidentsLimit: Int64 = 1_000
    static let incidentsDefaultLimit: Int64 = 100
    /// The most entries of a city's indexes one `incidents` request looks at, so that it is short (some
    /// milliseconds) however few of the city's incidents its `status` matches.
    static let incidentsLookedAt = 10_000

    private func incidentsQuery(_ request: Request) throws -> IncidentsQuery {
        guard let name = request.body["city"]?.stringValue else {
            throw ProtocolError(.invalidRequest, "city: is required, any spelling the gazetteer or the log knows, or a city id")
        }
        let limit = try Self.integer(request.body["limit"], "limit", range: 1...Self.incidentsLimit) ?? Self.incidentsDefaultLimit
        var from: CityIncidentsCursor?
        // `null`, what `next` is once a listing is done, is taken as no `from`: the first page.
        if let value = request.body["from"], value != .null {
            guard let text = value.stringValue, let cursor = CityIncidentsCursor(text: text) else {
                throw ProtocolError(.invalidRequest, "from: expected the \"next\" of an earlier incidents answer, as it was given")
            }
            from = cursor
        }
        let statusNames = "one of \(OutcomeStatus.allCases.map(\.rawValue).joined(separator: ", ")), or open (unknown and ongoing)"
        var statuses = Set(OutcomeStatus.allCases.filter(\.countsInSums))
        if let value = request.body["status"] {
            let names: [JSONValue]
            switch value {
            case .string: names = [value]
            case .array(let listed) where !listed.isEmpty: names = listed
            default: throw ProtocolError(.invalidRequest, "status: expected a status or a non-empty array of them, each \(statusNames)")
            }
            statuses = []
            for (i, name) in names.enumerated() {
                if name.stringValue == "open" {
                    statuses.formUnion(OutcomeStatus.allCases.filter(\.isOpen))
                } else if let status = name.stringValue.flatMap(OutcomeStatus.init(rawValue:)) {
                    statuses.insert(status)
                } else {
                    throw ProtocolError(.invalidRequest, "status[\(i)]: \(name.canonicalString().prefix(64)) is not a status; \(statusNames)")
                }
            }
        }
        if let mismatch = from?.mismatch(statuses: statuses) {
            throw ProtocolError(.invalidRequest, "from: \(mismatch); give \"next\" back with the status of the request that answered it")
        }
        return IncidentsQuery(cityId: try resolveCity(name), statuses: statuses, from: from, limit: Int(limit))
    }

    private func incidents(_ query: IncidentsQuery, _ request: Request) throws -> [UInt8] {
        let page = try log.cityIncidents(
            cityId: query.cityId, statuses: query.statuses, after: query.from, limit: query.limit, lookingAtMost: Self.incidentsLookedAt)
        return Response.success(
            id: request.id,
            ["cityId": .string(query.cityId), "incidents": .array(page.incidents), "next": page.next.map { .string($0.text) } ?? .null])
    }

    private func status(_ request: Request) throws -> [UInt8] {
        let status = try log.status()
        let stats = committer.statistics
        return Response.success(id: request.id, [
            "position": .int(Int64(status.position)),
            "headHash": .string(status.headHash),
            "lastRecordedAt": status.lastRecordedAt.map { .string($0.description) } ?? .null,
            "incidents": .int(Int64(status.incidents)),
            "cities": .int(Int64(status.cities)),
            "protocol": .int(Int64(protocolVersion)),
            "version": .string(incidentdVersion),
            "startedAt": .string(startedAt.description),
            "connections": .int(Int64(connections.load(ordering: .relaxed))),
            "followers": .int(Int64(followers.following)),
            "unfinishedLineBytes": .int(Int64(unfinishedLines.heldBytes)),
            "unwrittenAnswerBytes": .int(Int64(unwrittenAnswers.heldBytes)),
            "storage": [
                "dataDir": .string(absolutePath(log.options.directory)),
                "mapSize": .int(Int64(status.mapSize)),
                "maxMapSize": .int(Int64(status.maxMapSize)),
                "usedBytes": .int(Int64(status.usedBytes)),
                "readers": .int(Int64(status.readers)),
            ],
            "commits": [
                "transactions": .int(Int64(stats.commits)),
                "requests": .int(Int64(stats.requests)),
                "events": .int(Int64(stats.events)),
                "largestBatch": .int(Int64(stats.largestBatch)),
                "queued": .int(Int64(stats.queued)),
                "failed": .int(Int64(stats.failedCommits)),
            ],
        ])
    }

    private func verify(_ request: Request, peer: PeerIdentity) throws -> [UInt8] {
        let report = try log.verify(
            expectedHeads: try Self.expectedHeads(request.body["expectHeads"]), checkpoint: { [self] in try checkWalkGoesOn() })
        if let damage = report.pageDamage {
            logger.error(
                "verify found a damaged page in the log's data file",
                metadata: ["page": "\(damage.page)", "database": "\(damage.database?.name ?? "none")", "problem": "\(damage.problem)", "by": "\(peer.user)"])
        } else if let position = report.firstBadPosition {
            logger.error(
                "verify found the hash chain broken",
                metadata: [
                    "position": "\(position)", "problem": "\(report.problem ?? "")", "headPosition": "\(report.headPosition)",
                    "by": "\(peer.user)",
                ])
        }
        for missing in report.expectedHeads where missing.position == nil {
            logger.error(
                "verify found no event of the chain with a head hash published earlier: the log was rewritten or shortened",
                metadata: [
                    "hash": "\(missing.hash)", "checked": "\(report.checked)", "headPosition": "\(report.headPosition)",
                    "by": "\(peer.user)",
                ])
        }
        for difference in report.derived?.differences ?? [] {
            logger.error(
                "verify found derived data that differs from the events",
                metadata: [
                    "database": "\(difference.database.rawValue)", "key": "\(difference.key ?? "none")",
                    "problem": "\(difference.problem)", "remedy": "\(difference.remedy.rawValue)", "by": "\(peer.user)",
                ])
        }
        return Response.success(id: request.id, report.members)
    }

    /// The most head hashes one `verify` looks for: each is compared with every event's hash.
    static let mostExpectedHeads = 64

    /// The hashes of `verify`'s `expectHeads`: head hashes published earlier, each 64 hexadecimal digits.
    private static func expectedHeads(_ value: JSONValue?) throws -> [[UInt8]] {
        guard let value else { return [] }
        let expected = "expectHeads: expected a list of 1 to \(mostExpectedHeads) head hashes, each the 64 hexadecimal digits of a headHash that status gave"
        guard let list = value.arrayValue, (1...mostExpectedHeads).contains(list.count) else {
            throw ProtocolError(.invalidRequest, expected)
        }
        return try list.map { item in
            guard let text = item.stringValue, let hash = ChainHash.bytes(hashHex: text) else {
                throw ProtocolError(.invalidRequest, "\(expected); not \(item.canonicalString().prefix(80))")
            }
            return hash
        }
    }

    /// A copy of the log in a new directory, checked: see ``EventLog/backup(into:)``, where ``backups`` lets `peer`
    /// have one made. Logged, with who asked; a refusal of the place too, with why.
    private func backup(_ request: Request, peer: PeerIdentity) throws -> [UInt8] {
        guard let path = request.body["path"]?.stringValue else {
            throw ProtocolError(.invalidRequest, "path: expected the absolute path of a new directory for the backup")
        }
        let started = ContinuousClock.now
        let place: (parent: OpenDirectory, destination: BackupDestination)
        do {
            place = try backups.destination(for: path, peer: peer)
        } catch let refusal as ProtocolError {
            logger.warning(
                "backup refused", metadata: ["path": "\(path)", "by": "\(peer.user)", "uid": "\(peer.uid)", "reason": "\(refusal.message)"])
            throw refusal
        }
        let report = try withExtendedLifetime(place.parent) { try log.backup(into: place.destination) }
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var fields = report.check.members
        fields["path"] = .string(report.directory)
        fields["bytes"] = .int(Int64(report.bytes))
        fields["seconds"] = .double((seconds * 1000).rounded() / 1000)
        logger.log(
            level: report.check.isIntact ? .notice : .error,
            report.check.isIntact
                ? "backup written"
                : "backup written, but its copy does not verify: the live log is damaged (run incidentctl verify)",
            metadata: [
                "path": "\(report.directory)", "position": "\(report.check.headPosition)", "headHash": "\(report.check.headHash)",
                "bytes": "\(report.bytes)", "intact": "\(report.check.isIntact)", "by": "\(peer.user)",
            ])
        return Response.success(id: request.id, fields)
    }

    private static func integer(_ value: JSONValue?, _ name: String, range: ClosedRange<Int64>) throws -> Int64? {
        guard let value else { return nil }
        if let problem = value.outOfRange(range) { throw ProtocolError(.invalidRequest, "\(name): \(problem)") }
        guard let i = value.intValue, range.contains(i) else {
            throw ProtocolError(.invalidRequest, "\(name): expected a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }
}

/// Which appends that restored cities (``RequestExecutor/noteRestoredCities(_:peer:)``) get a line in the daemon's
/// log: one that names a kind of restored city (its `cityId` and what the daemon makes of its `city`) not named
/// before, at once; the others at most one each ``interval``, the line saying how many went unlogged since the last.
struct RestoreNotes: Sendable {
    /// Nanoseconds.
    static let interval: UInt64 = 60_000_000_000
    /// The most kinds remembered: past them, only the interval holds the lines back.
    static let mostNamed = 4096
    private var named: Set<RestoredCity> = []
    private var lastLine: UInt64?
    private var unlogged = 0

    /// Counts one append that restored `restored` at `now`: when it gets a line, how many went unlogged before it;
    /// otherwise nil.
    mutating func note(_ restored: [RestoredCity], at now: UInt64) -> Int? {
        var fresh = false
        for kind in restored where named.count < Self.mostNamed && !named.contains(kind) {
            fresh = true
            named.insert(kind)
        }
        if !fresh, let lastLine, now &- lastLine < Self.interval {
            unlogged += 1
            return nil
        }
        lastLine = now
        defer { unlogged = 0 }
        return unlogged
    }
}

/// The daemon's version, reported by `status` and `--version`.
let incidentdVersion = "0.1.0"
