import StrictJSON

/// Reads the members of one JSON object with validation, naming each field by its full path in errors
/// (`data.participants.low`) and refusing members nobody asked for.
struct FieldReader {
    let path: String
    private let members: [String: JSONValue]
    private var consumed: Set<String> = []

    init(_ value: JSONValue, path: String) throws(IncidentError) {
        guard case .object(let members) = value else {
            throw IncidentError.invalid(path.isEmpty ? "event" : path, "expected an object, got \(value.typeName)")
        }
        self.path = path
        self.members = members
    }

    func name(_ key: String) -> String { path.isEmpty ? key : path + "." + key }

    /// The raw member, or nil when absent or JSON null.
    mutating func raw(_ key: String) -> JSONValue? {
        consumed.insert(key)
        guard let value = members[key], !value.isNull else { return nil }
        return value
    }

    mutating func string(_ key: String, maxLength: Int, allowEmpty: Bool = false) throws(IncidentError) -> String? {
        guard let value = raw(key) else { return nil }
        guard case .string(let s) = value else {
            throw IncidentError.invalid(name(key), "expected a string, got \(value.typeName)")
        }
        return try Self.checkText(s, field: name(key), maxLength: maxLength, allowEmpty: allowEmpty)
    }

    mutating func requiredString(_ key: String, maxLength: Int) throws(IncidentError) -> String {
        guard let s = try string(key, maxLength: maxLength) else { throw IncidentError.invalid(name(key), "is required") }
        return s
    }

    static func checkText(_ s: String, field: String, maxLength: Int, allowEmpty: Bool = false) throws(IncidentError)
        -> String
    {
        let trimmed = s.trimmingWhitespace()
        if trimmed.isEmpty && !allowEmpty { throw IncidentError.invalid(field, "must not be empty") }
        let length = s.unicodeScalars.count
        if length > maxLength {
            throw IncidentError.invalid(field, "is \(length) characters long, the limit is \(maxLength)")
        }
        if let (offset, scalar) = s.unicodeScalars.enumerated().first(where: { $0.element.value < 0x20 && $0.element != "\n" && $0.element != "\t" }) {
            let hex = String(scalar.value, radix: 16, uppercase: true)
            let code = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            let what = scalar == "\r" ? "a carriage return (\\r, \(code))" : "the control character \(code)"
            throw IncidentError.invalid(
                field, "contains \(what) at character \(offset + 1); text may hold line breaks (\\n) and tabs, and no other character below U+0020")
        }
        return trimmed
    }

    mutating func enumValue<E: RawRepresentable & CaseIterable>(_ key: String, _ type: E.Type) throws(IncidentError)
        -> E? where E.RawValue == String
    {
        guard let value = raw(key) else { return nil }
        guard case .string(let s) = value else {
            throw IncidentError.invalid(name(key), "expected a string, got \(value.typeName)")
        }
        guard let e = E(rawValue: s) else {
            throw IncidentError.invalid(name(key), "unknown value \"\(s.prefix(64))\"; expected one of \(E.allowedList)")
        }
        return e
    }

    mutating func integer(_ key: String, range: ClosedRange<Int64>) throws(IncidentError) -> Int64? {
        guard let value = raw(key) else { return nil }
        guard let i = value.intValue else {
            if let problem = value.outOfRange(range) { throw IncidentError.invalid(name(key), problem) }
            if case .double = value {
                throw IncidentError.invalid(name(key), "expected a whole number in \(range.lowerBound)...\(range.upperBound)")
            }
            throw IncidentError.invalid(name(key), "expected a whole number, got \(value.typeName)")
        }
        guard range.contains(i) else {
            throw IncidentError.invalid(name(key), "\(i) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return i
    }

    mutating func number(_ key: String, range: ClosedRange<Double>) throws(IncidentError) -> Double? {
        guard let value = raw(key) else { return nil }
        guard let d = value.doubleValue else {
            throw IncidentError.invalid(name(key), "expected a number, got \(value.typeName)")
        }
        guard range.contains(d) else {
            throw IncidentError.invalid(name(key), "\(d) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        return d
    }

    mutating func object(_ key: String) throws(IncidentError) -> FieldReader? {
        guard let value = raw(key) else { return nil }
        return try FieldReader(value, path: name(key))
    }

    mutating func array(_ key: String, maxCount: Int) throws(IncidentError) -> [JSONValue]? {
        guard let value = raw(key) else { return nil }
        guard case .array(let elements) = value else {
            throw IncidentError.invalid(name(key), "expected an array, got \(value.typeName)")
        }
        guard elements.count <= maxCount else {
            throw IncidentError.invalid(name(key), "has \(elements.count) entries, the limit is \(maxCount)")
        }
        return elements
    }

    mutating func stringArray(_ key: String, maxCount: Int, maxLength: Int) throws(IncidentError) -> [String]? {
        guard let elements = try array(key, maxCount: maxCount) else { return nil }
        var result: [String] = []
        for (n, element) in elements.enumerated() {
            guard case .string(let s) = element else {
                throw IncidentError.invalid("\(name(key))[\(n)]", "expected a string, got \(element.typeName)")
            }
            result.append(try Self.checkText(s, field: "\(name(key))[\(n)]", maxLength: maxLength))
        }
        return result
    }

    /// Refuses any member that no accessor read.
    func finish() throws(IncidentError) {
        if let unknown = members.keys.filter({ !consumed.contains($0) }).sorted().first {
            throw IncidentError.invalid(name(String(unknown.prefix(64))), "unknown field")
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
