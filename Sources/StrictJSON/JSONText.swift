/// One JSON value kept as the exact text it was written in, to be written out again byte for byte: a request's
/// `id`, which the protocol echoes as the client sent it. Read into a ``JSONValue`` and written again, the number
/// 12345678901234567890123 would come back as 1.2345678901234568e+22, and 1E2 as 100.0.
public struct JSONText: Sendable, Hashable, CustomStringConvertible {
    /// The value's JSON text, without surrounding whitespace.
    public let bytes: [UInt8]

    public static let null = JSONText(.null)

    /// The canonical form of `value`.
    public init(_ value: JSONValue) {
        bytes = value.canonicalBytes()
    }

    /// `bytes`, which the caller has read as exactly one valid JSON value (with ``JSONReader``, or a
    /// ``JSONScanner`` method that validates what it reads).
    public init(validated bytes: UnsafeRawBufferPointer) {
        self.bytes = Array(bytes)
    }

    /// The value the text stands for.
    public var value: JSONValue {
        (try? JSONReader().read(bytes)) ?? .null
    }

    /// Appends the text as it is.
    @inlinable public func write(into out: inout [UInt8]) {
        out.append(contentsOf: bytes)
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }
}

extension JSONText: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral, ExpressibleByNilLiteral {
    public init(integerLiteral value: Int64) { self.init(.int(value)) }
    public init(stringLiteral value: String) { self.init(.string(value)) }
    public init(nilLiteral: ()) { self.init(.null) }
}

extension JSONValue {
    /// The canonical form of the object of `members` and one more member, `key`, whose value is `text` as it is
    /// (a response and its request's `id`): keys sorted as ``canonicalBytes()`` sorts them. A member of `members`
    /// named `key` is left out.
    public static func objectBytes(_ members: [String: JSONValue], adding key: String, _ text: JSONText) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out.append(UInt8(ascii: "{"))
        var added = false
        var count = 0
        for name in members.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) where name != key {
            if !added && key.utf8.lexicographicallyPrecedes(name.utf8) {
                if count > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                text.write(into: &out)
                added = true
                count += 1
            }
            if count > 0 { out.append(UInt8(ascii: ",")) }
            JSONValue.writeString(name, into: &out)
            out.append(UInt8(ascii: ":"))
            members[name]?.write(into: &out)
            count += 1
        }
        if !added {
            if count > 0 { out.append(UInt8(ascii: ",")) }
            JSONValue.writeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            text.write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
