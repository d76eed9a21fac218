import StrictJSON

/// The protocol's version, reported by `status` and documented in PROTOCOL.md.
public let protocolVersion = 1

/// An operation a client may ask for, with the role it needs.
public enum Operation: String, Sendable, CaseIterable {
    case append, read, incident, incidents, city, cities, status, verify, backup, subscribe, replay

    /// The least role that may perform this operation.
    public var requiredRole: Role {
        switch self {
        case .append: return .reporter
        case .read, .incident, .incidents, .city, .cities, .status, .subscribe, .replay: return .reader
        case .verify, .backup: return .admin
        }
    }

    /// The request members this operation accepts besides `id` and `op`.
    public var allowedFields: Set<String> {
        switch self {
        case .append: return ["events", "allowNewCity"]
        case .read: return ["from", "limit", "city", "type", "incident"]
        case .subscribe: return ["from", "city", "type", "incident"]
        case .incident: return ["incident", "untilPosition"]
        case .incidents: return ["city", "status", "limit", "from"]
        case .city: return ["city"]
        case .backup: return ["path"]
        case .replay: return ["untilPosition", "asOf", "occurredBefore"]
        case .verify: return ["expectHeads"]
        case .cities, .status: return []
        }
    }
}

/// Access roles, each including the ones below it: an admin may report, a reporter may read.
public enum Role: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    case reader = 1, reporter = 2, admin = 3

    public static func < (a: Role, b: Role) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .reader: return "reader"
        case .reporter: return "reporter"
        case .admin: return "admin"
        }
    }
}

/// A request that could not be decoded, with its `id` when that much could be read.
public struct RequestFailure: Error, Sendable {
    public var id: JSONText
    public var error: ProtocolError
}

/// One decoded request line: `{"id": …, "op": "…", …}`.
public struct Request: Sendable {
    /// Echoed back in the response as the client wrote it, byte for byte: a number (of any size, in any of JSON's
    /// spellings), a string (with its escapes) or null. `null` when the request has none.
    public var id: JSONText
    public var operation: Operation
    public var body: [String: JSONValue]

    public init(id: JSONText, operation: Operation, body: [String: JSONValue]) {
        self.id = id
        self.operation = operation
        self.body = body
    }

    /// Decodes one line. A failure carries the request's `id` when it could be read, so the error response can
    /// still be matched to its request.
    public static func decode(_ line: UnsafeRawBufferPointer, reader: JSONReader = JSONReader()) -> Result<Request, RequestFailure> {
        let value: JSONValue
        let idBytes: Range<Int>?
        do {
            (value, idBytes) = try reader.read(line, locating: "id")
        } catch {
            return .failure(RequestFailure(id: .null, error: ProtocolError(.invalidJSON, "the request is not valid JSON: \(error)")))
        }
        guard case .object(var members) = value else {
            return .failure(RequestFailure(id: .null, error: ProtocolError(.invalidRequest, "a request must be a JSON object, got \(value.typeName)")))
        }
        let idValue = members.removeValue(forKey: "id") ?? .null
        switch idValue {
        case .null, .int, .double, .string: break
        default:
            return .failure(RequestFailure(id: .null, error: ProtocolError(.invalidRequest, "id: expected a number or a string, got \(idValue.typeName)")))
        }
        let id = idBytes.map { JSONText(validated: UnsafeRawBufferPointer(rebasing: line[$0])) } ?? .null
        guard let opValue = members.removeValue(forKey: "op") else {
            return .failure(RequestFailure(id: id, error: ProtocolError(.invalidRequest, "op: is required; one of \(Operation.allCases.map(\.rawValue).joined(separator: ", "))")))
        }
        guard case .string(let opName) = opValue else {
            return .failure(RequestFailure(id: id, error: ProtocolError(
                .invalidRequest,
                "op: expected a string, got \(opValue.typeName); one of \(Operation.allCases.map(\.rawValue).joined(separator: ", "))")))
        }
        guard let operation = Operation(rawValue: opName) else {
            return .failure(RequestFailure(id: id, error: ProtocolError(
                .unknownOperation,
                "op: unknown operation \(opValue.canonicalString().prefix(64)); one of \(Operation.allCases.map(\.rawValue).joined(separator: ", "))")))
        }
        if let unknown = members.keys.filter({ !operation.allowedFields.contains($0) }).sorted().first {
            return .failure(RequestFailure(id: id, error: ProtocolError(.invalidRequest, "\(unknown.prefix(64)): unknown field for \(opName)", details: ["field": .string(String(unknown.prefix(64)))])))
        }
        return .success(Request(id: id, operation: operation, body: members))
    }

    public static func decode(_ line: [UInt8]) -> Result<Request, RequestFailure> {
        line.withUnsafeBytes { decode($0) }
    }

    /// The request as one line, without the newline.
    public func encoded() -> [UInt8] {
        var o = body
        o["op"] = .string(operation.rawValue)
        return JSONValue.objectBytes(o, adding: "id", id)
    }
}
