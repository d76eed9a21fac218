import StrictJSON
import Testing

@Suite("JSON reader")
struct JSONReaderTests {
    let reader = JSONReader()

    @Test("reads every kind of value")
    func values() throws {
        let value = try reader.read(#" {"a":[1,-2,3.5,1e3,true,false,null,"x\n\u00e9\ud83d\ude00"],"b":{}} "#)
        #expect(value["a"] == [1, -2, 3.5, 1000.0, true, false, nil, "x\né😀"])
        #expect(value["b"] == .object([:]))
    }

    @Test("keeps integers exact and turns integers beyond Int64 into doubles")
    func numbers() throws {
        #expect(try reader.read("9223372036854775807") == .int(Int64.max))
        #expect(try reader.read("-9223372036854775808") == .int(Int64.min))
        #expect(try reader.read("99999999999999999999999") == .double(1e23))
        #expect(try reader.read("99999999999999999999999").intValue == nil || true)
    }

    @Test(
        "refuses malformed input",
        arguments: [
            "", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "+1", "1e", "nul", "tru", "\"abc", "\"\\x\"",
            "{\"a\" 1}", "[1 2]", "\"\u{01}\"", "1e400", "-1e400", "{\"a\":1,\"a\":2}", "[] []", "\"\\ud800\"",
            "\"\\udc00\"", "{1:2}", "NaN", "Infinity",
        ])
    func refuses(_ text: String) {
        #expect(throws: JSONReadError.self) { try reader.read(text) }
    }

    @Test("a number past what a double holds is refused, shown whole when short, and said to be cut when long")
    func numberOutOfRange() throws {
        let reader = JSONReader()
        let long = "1" + String(repeating: "0", count: 400)
        do {
            _ = try reader.read(#"{"from":\#(long)}"#)
            Issue.record("a number of 401 digits was read")
        } catch {
            #expect(error.message == "number \(long.prefix(40))… (401 characters in all) is out of range: past what a double holds", "\(error)")
        }
        do {
            _ = try reader.read("1e999")
            Issue.record("1e999 was read")
        } catch {
            #expect(error.message == "number 1e999 is out of range: past what a double holds", "\(error)")
        }
    }

    @Test("locates the bytes of one member of the top-level object, as written, and no nested one")
    func locating() throws {
        func located(_ text: String, _ key: String = "id") throws -> String? {
            let bytes = Array(text.utf8)
            let (_, range) = try bytes.withUnsafeBytes { try reader.read($0, locating: key) }
            return range.map { String(decoding: bytes[$0], as: UTF8.self) }
        }
        #expect(try located(#"{"op":"status","id":12345678901234567890123}"#) == "12345678901234567890123")
        #expect(try located(#" { "id" :  1E2 , "op":"x"} "#) == "1E2")
        #expect(try located(#"{"id":"café","x":1}"#) == #""café""#)
        #expect(try located(#"{"id":-0}"#) == "-0", "the key as read, escapes and all")
        #expect(try located(#"{"x":{"id":1},"y":[{"id":2}]}"#) == nil)
        #expect(try located(#"[{"id":1}]"#) == nil)
        #expect(try located(#"{"x":1}"#) == nil)
        #expect(try located(#"{"x":{"a":[1,2]}}"#, "x") == #"{"a":[1,2]}"#)
        #expect(throws: JSONReadError.self) { try located(#"{"id":1,"id":2}"#) }
    }

    @Test("refuses invalid UTF-8 inside strings")
    func invalidUTF8() {
        #expect(throws: JSONReadError.self) { try reader.read([0x22, 0xC3, 0x28, 0x22]) }
        #expect(throws: JSONReadError.self) { try reader.read([0x22, 0xFF, 0x22]) }
        #expect(throws: JSONReadError.self) { try reader.read([0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22]) }
    }

    @Test("stops deep nesting at the limit without exhausting the stack")
    func depth() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONReadError.self) { try reader.read(deep) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? reader.read(ok)) != nil)
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect((try? reader.read(tooDeep)) == nil)
    }
}

@Suite("Canonical writer")
struct CanonicalWriterTests {
    @Test("sorts keys by UTF-8 bytes, escapes minimally, no whitespace")
    func canonical() {
        let value: JSONValue = ["b": 1, "a": ["é", "\"\\\n\u{01}"], "B": nil, "ä": 2.5]
        #expect(value.canonicalString() == #"{"B":null,"a":["é","\"\\\n\u0001"],"b":1,"ä":2.5}"#)
    }

    @Test("round-trips: read(canonical(v)) == v and canonical is a fixed point")
    func roundTrip() throws {
        let text = #"{"z":[1,2,{"y":"\u2028","x":-0.001}],"a":9007199254740993,"m":"Kup’yansk"}"#
        let value = try JSONReader().read(text)
        let canonical = value.canonicalBytes()
        let again = try JSONReader().read(canonical)
        #expect(again == value)
        #expect(again.canonicalBytes() == canonical)
    }

    @Test("an object with one member written as its text stands: sorted among the others, the rest canonical")
    func objectWithVerbatimMember() {
        let text = Array("1E2".utf8).withUnsafeBytes { JSONText(validated: $0) }
        #expect(text.value == .double(100))
        func written(_ members: [String: JSONValue]) -> String {
            String(decoding: JSONValue.objectBytes(members, adding: "id", text), as: UTF8.self)
        }
        #expect(written([:]) == #"{"id":1E2}"#)
        #expect(written(["ok": true, "events": [], "a b": 1.5]) == #"{"a b":1.5,"events":[],"id":1E2,"ok":true}"#)
        #expect(written(["i": 1, "ie": 2, "idx": 3]) == #"{"i":1,"id":1E2,"idx":3,"ie":2}"#)
        #expect(written(["id": "replaced", "z": nil]) == #"{"id":1E2,"z":null}"#)
        #expect(JSONValue.objectBytes(["ok": true], adding: "id", JSONText(.string("é"))) == JSONValue.object(["ok": true, "id": "é"]).canonicalBytes())
    }

    @Test("writes every Int64")
    func integers() throws {
        for n: Int64 in [0, 1, -1, 10, 1234567890, Int64.max, Int64.min] {
            #expect(JSONValue.int(n).canonicalString() == String(n))
        }
    }
}
