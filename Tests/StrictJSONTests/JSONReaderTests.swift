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

    @Test("writes every Int64")
    func integers() throws {
        for n: Int64 in [0, 1, -1, 10, 1234567890, Int64.max, Int64.min] {
            #expect(JSONValue.int(n).canonicalString() == String(n))
        }
    }
}
