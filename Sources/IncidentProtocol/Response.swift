import StrictJSON

/// A refusal on the wire: `{"ok": false, "error": {"code", "message", …details}}`.
public struct ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Stable error codes. A struct of static members, so that adding a code never breaks a client.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidJSON = Code(rawValue: "invalid_json")
        public static let invalidRequest = Code(rawValue: "invalid_request")
        public static let unknownOperation = Code(rawValue: "unknown_operation")
        public static let lineTooLong = Code(rawValue: "line_too_long")
        public static let permissionDenied = Code(rawValue: "permission_denied")
        public static let storageFull = Code(rawValue: "storage_full")
        public static let tooManyConnections = Code(rawValue: "too_many_connections")
        public static let serverBusy = Code(rawValue: "server_busy")
        public static let pageDamaged = Code(rawValue: "page_damaged")
        public static let logDamaged = Code(rawValue: "log_damaged")
        public static let shuttingDown = Code(rawValue: "shutting_down")
        public static let internalError = Code(rawValue: "internal_error")
    }

    public var code: Code
    public var message: String
    public var details: [String: JSONValue]

    public init(_ code: Code, _ message: String, details: [String: JSONValue] = [:]) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { "\(code): \(message)" }

    public var json: JSONValue {
        var o = details
        o["code"] = .string(code.rawValue)
        o["message"] = .string(message)
        return .object(o)
    }
}

/// Builds response lines: canonical JSON, but for the request's `id`, which is written as the client wrote it.
public enum Response {
    /// `{"id": id, "ok": true, …fields}` followed by a newline.
    public static func success(id: JSONText, _ fields: [String: JSONValue]) -> [UInt8] {
        var o = fields
        o["ok"] = .bool(true)
        var bytes = JSONValue.objectBytes(o, adding: "id", id)
        bytes.append(0x0A)
        return bytes
    }

    /// `{"id": id, "ok": false, "error": {…}}` followed by a newline.
    public static func failure(id: JSONText, _ error: ProtocolError) -> [UInt8] {
        var bytes = JSONValue.objectBytes(["ok": .bool(false), "error": error.json], adding: "id", id)
        bytes.append(0x0A)
        return bytes
    }
}
