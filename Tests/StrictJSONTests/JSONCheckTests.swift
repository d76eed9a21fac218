import StrictJSON
import Testing

/// ``JSONReader/check(_:locating:_:)`` accepts nothing ``JSONReader/read(_:)`` refuses, finds the members
/// `read(_:locating:)` finds, and accepts the events a log stores.
@Suite("JSON check")
struct JSONCheckTests {
    let reader = JSONReader(maxDepth: 8)

    /// Whether `check` accepts `bytes` only if `read` does, finding where the top-level `type` and `incident` are as
    /// `read` finds them; and whether it accepted them.
    func sound(_ bytes: [UInt8]) -> (sound: Bool, accepted: Bool) {
        bytes.withUnsafeBytes { raw in
            guard let checked = reader.check(raw, locating: "type", "incident") else { return (true, false) }
            let type = try? reader.read(raw, locating: "type")
            let incident = try? reader.read(raw, locating: "incident")
            return (type != nil && checked.first == type?.located && checked.second == incident?.located, true)
        }
    }

    static let event = Array(
        #"{"data":{"city":"Kup’yansk","cityId":"kupiansk","description":"a \"quoted\" word\tand \\ a \u00e9 \ud83d\ude00 Куп'янськ","participants":{"high":150,"low":-1.5e2},"tags":[true,false,null,[],{}]},"eventId":"0192","incident":"kupiansk-1","position":12,"type":"incident-reported","version":1}"#.utf8)

    @Test("accepts a stored event, and nothing read refuses among every change of one of its bytes to a byte that matters to JSON, or its removal")
    func everyByteChanged() {
        #expect(sound(Self.event) == (true, true))
        let bytes: [UInt8] = Array(#"{}[],:"\ 0123456789-+.eEtfnulrsaxyzu"#.utf8) + [0x00, 0x0A, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xE2, 0xED, 0xF0, 0xF4, 0xF5, 0xFF]
        var unsound: [String] = []
        var accepted = 0
        var readable = 0
        for i in Self.event.indices {
            var variants: [[UInt8]] = []
            for byte in bytes where byte != Self.event[i] {
                var changed = Self.event
                changed[i] = byte
                variants.append(changed)
            }
            var shorter = Self.event
            shorter.remove(at: i)
            variants.append(shorter)
            for variant in variants {
                let result = sound(variant)
                if !result.sound { unsound.append("\(String(decoding: variant, as: UTF8.self))") }
                if result.accepted { accepted += 1 }
                if (try? reader.read(variant)) != nil { readable += 1 }
            }
        }
        #expect(unsound.isEmpty, "\(unsound.prefix(10))")
        // What read takes and check leaves to it is only keys with other bytes than ASCII.
        #expect(accepted > 0 && readable - accepted < 200, "\(accepted) of \(readable)")
    }

    @Test(
        "accepts nothing read refuses of what only the whole document shows",
        arguments: [
            #"{"a":1,"a":2}"#, #"{"a":{"b":1},"b":{"b":2}}"#, #"{"a":{"b":1,"b":2}}"#, #"{"\u0061":1,"a":2}"#,
            #"{"é":1,"e\u0301":2}"#, #"{"type":1,"typ\u0065":2}"#, #"{"\u212A":1,"K":2}"#, #"{"t\u0079pe":"x","incident":"y"}"#,
            #"[{"type":"x"}]"#, #"{"data":{"type":"x"},"type":"y"}"#, "[[[[[[[[1]]]]]]]]", "[[[[[[[[[1]]]]]]]]]",
            "{} x", " {} ", "1e400", "123456789012345678901234", "\"\\ud800\\udc00\"", "\"\\ud800x\"", "\"\u{7F}\"", "",
            "\"\\u00\"", "-0", "0.5E+3", "{\"type\":\"\\u0069ncident-reported\"}",
        ])
    func wholeDocument(_ text: String) {
        #expect(sound(Array(text.utf8)).sound, "\(text)")
    }

    @Test("accepts nothing read refuses of two bytes inside a string, and what it accepts of valid UTF-8 is what String(validating:) takes")
    func everyTwoBytes() {
        var unsound: [[UInt8]] = []
        for a in UInt8(0x20)...UInt8(0xFF) {
            for b in [0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0] as [UInt8] {
                for tail in [[], [0x80], [0x80, 0x80], [0xBF, 0xBF]] as [[UInt8]] {
                    let inside = [a, b] + tail
                    guard !inside.contains(UInt8(ascii: "\"")), !inside.contains(UInt8(ascii: "\\")) else { continue }
                    let text = Array(#"{"a":""#.utf8) + inside + Array(#""}"#.utf8)
                    let valid = inside.withUnsafeBytes { String(validating: $0, as: UTF8.self) } != nil
                    let checked = text.withUnsafeBytes { reader.check($0, locating: "a", "b") } != nil
                    if checked != valid || !sound(text).sound { unsound.append(inside) }
                }
            }
        }
        #expect(unsound.isEmpty, "\(unsound.prefix(10))")
    }
}
