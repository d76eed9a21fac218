/// A JSON document held in memory: what the protocol, the event store and the CLI exchange.
///
/// Numbers keep their kind: an integer that fits `Int64` stays exact as ``int(_:)``; anything else
/// is a finite ``double(_:)``. Objects are dictionaries, since canonical output sorts keys anyway.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The member `key` of an object; `nil` for a missing member or a value that is not an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value as an exact integer: an `int`, or a `double` with no fractional part inside `Int64`.
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d):
            guard d.rounded() == d, d >= -9.2e18, d <= 9.2e18 else { return nil }
            return Int64(d)
        default: return nil
        }
    }

    /// Why this number is out of `range`, in words to follow the name of the field that holds it; nil for a value
    /// that is not a `double`, or one inside `range`. The reader keeps a whole number past what an `Int64` holds as
    /// a `double`, so ``intValue`` has no answer for it and the number as sent is gone: the words say which bound it
    /// passes rather than echo it.
    public func outOfRange(_ range: ClosedRange<Int64>) -> String? {
        guard case .double(let d) = self else { return nil }
        // 2^63 is the first double past Int64.max, which itself rounds up to it.
        if d >= 0x1p63 || d > Double(range.upperBound) {
            return "the number sent is out of range: it is larger than \(range.upperBound), the most it may be"
        }
        if d < -0x1p63 || d < Double(range.lowerBound) {
            return "the number sent is out of range: it is smaller than \(range.lowerBound), the least it may be"
        }
        return nil
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A short name of the value's JSON type, for error messages ("expected a string, got an array").
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var members: [String: JSONValue] = [:]
        for (k, v) in elements { members[k] = v }
        self = .object(members)
    }
}
