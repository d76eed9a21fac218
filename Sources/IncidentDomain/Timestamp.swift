#if canImport(Glibc)
import Glibc
#endif

/// An instant as microseconds since the Unix epoch, with the ISO 8601 parsing and formatting the log uses.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var microseconds: Int64

    public init(microseconds: Int64) {
        self.microseconds = microseconds
    }

    /// The system clock, now.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(microseconds: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000)
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.microseconds < b.microseconds }

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always UTC, always six fractional digits, so strings sort like instants.
    public var description: String {
        var out: [UInt8] = []
        out.reserveCapacity(27)
        writeISO8601(quoted: false, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The form of ``description`` for any year, four digits or not.
    var slowDescription: String {
        let seconds = microseconds >= 0 ? microseconds / 1_000_000 : (microseconds - 999_999) / 1_000_000
        let micros = microseconds - seconds * 1_000_000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (y, m, d) = Timestamp.civil(fromDays: days)
        return pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T" + pad(secondOfDay / 3600, 2) + ":"
            + pad(secondOfDay % 3600 / 60, 2) + ":" + pad(secondOfDay % 60, 2) + "." + pad(micros, 6) + "Z"
    }

    private func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? yoe + era * 400 + 1 : yoe + era * 400, m, d)
    }

    static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// A parsed ISO 8601 `occurredAt`: the instant it starts at and the finest precision its form can carry.
public struct ParsedDate: Hashable, Sendable {
    public var start: Timestamp
    /// `month` for `YYYY-MM`, `day` for a date, `minute` for a date and time.
    public var finestPrecision: Precision

    /// Accepts `YYYY-MM`, `YYYY-MM-DD`, and `YYYY-MM-DDTHH:MM[:SS[.f…]]` followed by `Z` or `±HH:MM`, and, for
    /// dates already in a log, a space in place of the `T` and a `t` or `z` in lower case, which daemons before
    /// these rules accepted and stored:
    /// the events holding one must still replay, rebuild and verify. Dates a client sends are read with
    /// ``parseProposed(_:)``. Returns nil for anything else, including impossible dates such as 2022-02-30.
    public static func parse(_ text: String) -> ParsedDate? {
        var text = text
        return text.withUTF8 { parse(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// ``parse(_:)`` of UTF-8 bytes.
    public static func parse(utf8 bytes: UnsafeRawBufferPointer) -> ParsedDate? {
        parse(utf8: bytes, earlierForms: true)
    }

    /// A date a client sends (`occurredAt`, a source's `publishedAt`), once ``normalizedProposed(_:)``: only the
    /// forms PROTOCOL.md documents, so a `T` between the date and the time, never a space (which is not ISO 8601),
    /// and `T` and `Z` in capitals.
    public static func parseProposed(_ text: String) -> ParsedDate? {
        var text = text
        return text.withUTF8 { parse(utf8: UnsafeRawBufferPointer($0), earlierForms: false) }
    }

    /// `text` with the `t` before its time and a `z` ending it written in capitals, as RFC 3339 allows them both
    /// ways, so that every date the log stores from now on is written alike; anything else unchanged.
    public static func normalizedProposed(_ text: String) -> String {
        var bytes = Array(text.utf8)
        guard bytes.count > 10 else { return text }
        var changed = false
        if bytes[10] == UInt8(ascii: "t") {
            bytes[10] = UInt8(ascii: "T")
            changed = true
        }
        if bytes[bytes.count - 1] == UInt8(ascii: "z") {
            bytes[bytes.count - 1] = UInt8(ascii: "Z")
            changed = true
        }
        return changed ? String(decoding: bytes, as: UTF8.self) : text
    }

    /// What to tell a client whose date ``parseProposed(_:)`` refuses, when it is the near miss of a space where
    /// ISO 8601 wants the `T`; nil otherwise.
    public static func spaceForTProblem(_ text: String) -> String? {
        guard parseProposed(text) == nil, parse(text) != nil, text.utf8.count > 10 else { return nil }
        var fixed = Array(text.utf8)
        fixed[10] = UInt8(ascii: "T")  // after YYYY-MM-DD, the only place a space is taken
        return "\"\(text)\" is not ISO 8601: write T between the date and the time, as in \(String(decoding: fixed, as: UTF8.self))"
    }

    /// `earlierForms`: also a space for the `T`, and a `t` and `z` in lower case, which earlier versions stored.
    private static func parse(utf8 bytes: UnsafeRawBufferPointer, earlierForms: Bool) -> ParsedDate? {
        var c = DateCursor(bytes: bytes)
        guard let year = c.number(4), year >= 1000, c.expect(UInt8(ascii: "-")), let month = c.number(2), (1...12).contains(month)
        else { return nil }
        if c.atEnd {
            let days = Timestamp.days(year: year, month: month, day: 1)
            return ParsedDate(start: Timestamp(microseconds: days * 86_400_000_000), finestPrecision: .month)
        }
        guard c.expect(UInt8(ascii: "-")), let day = c.number(2), day >= 1, day <= Timestamp.daysInMonth(year: year, month: month)
        else { return nil }
        let days = Timestamp.days(year: year, month: month, day: day)
        if c.atEnd {
            return ParsedDate(start: Timestamp(microseconds: days * 86_400_000_000), finestPrecision: .day)
        }
        guard c.expect(UInt8(ascii: "T")) || (earlierForms && (c.expect(UInt8(ascii: "t")) || c.expect(UInt8(ascii: " ")))),
            let hour = c.number(2), hour < 24,
            c.expect(UInt8(ascii: ":")), let minute = c.number(2), minute < 60
        else { return nil }
        var second: Int64 = 0
        var micros: Int64 = 0
        if c.expect(UInt8(ascii: ":")) {
            guard let s = c.number(2), s < 60 else { return nil }
            second = s
            if c.expect(UInt8(ascii: ".")) {
                var digits = 0
                while let digit = c.digit() {
                    if digits < 6 { micros = micros * 10 + digit }
                    digits += 1
                }
                guard digits > 0 else { return nil }
                for _ in digits..<max(digits, 6) { micros *= 10 }
            }
        }
        var offsetSeconds: Int64 = 0
        if c.expect(UInt8(ascii: "Z")) || (earlierForms && c.expect(UInt8(ascii: "z"))) {
            offsetSeconds = 0
        } else if let sign = c.sign() {
            guard let oh = c.number(2), oh <= 18, c.expect(UInt8(ascii: ":")), let om = c.number(2), om < 60 else { return nil }
            offsetSeconds = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard c.atEnd else { return nil }
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return ParsedDate(start: Timestamp(microseconds: seconds * 1_000_000 + micros), finestPrecision: .minute)
    }
}

/// Reads a date's bytes left to right.
private struct DateCursor {
    let bytes: UnsafeRawBufferPointer
    var i = 0

    var atEnd: Bool { @inline(__always) get { i == bytes.count } }

    @inline(__always) mutating func number(_ width: Int) -> Int64? {
        guard i + width <= bytes.count else { return nil }
        var value: Int64 = 0
        for k in 0..<width {
            let c = bytes[i + k]
            guard c >= 48, c <= 57 else { return nil }
            value = value * 10 + Int64(c - 48)
        }
        i += width
        return value
    }

    @inline(__always) mutating func digit() -> Int64? {
        guard i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 else { return nil }
        defer { i += 1 }
        return Int64(bytes[i] - 48)
    }

    @inline(__always) mutating func expect(_ c: UInt8) -> Bool {
        guard i < bytes.count, bytes[i] == c else { return false }
        i += 1
        return true
    }

    @inline(__always) mutating func sign() -> Int64? {
        if expect(UInt8(ascii: "+")) { return 1 }
        if expect(UInt8(ascii: "-")) { return -1 }
        return nil
    }
}

extension ParsedDate {
    /// The years a date may have: four digits, from 1000 on, as ``parse(_:)`` reads them.
    public static let years: ClosedRange<Int64> = 1000...9999

    /// Why `text`, which starts as a date (`YYYY-MM` or `YYYY-MM-DD`, digits where they go), is no date that
    /// ``parse(_:)`` takes, when that is its year, month or day: "2023 has no 29 February (it is not a leap year)",
    /// "year 0001 is outside the years a date may have, 1000 to 9999". Nil for any other text, valid or not: for
    /// messages only, it is never on the path of a date that is read.
    public static func calendarProblem(_ text: String) -> String? {
        let parts = text.prefix { $0 != "T" && $0 != "t" && $0 != " " }.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, parts[0].count >= 4, parts.dropFirst().allSatisfy({ $0.count == 2 }),
            parts.allSatisfy({ $0.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } }),
            let year = Int64(parts[0]), let month = Int64(parts[1])
        else { return nil }
        if !years.contains(year) {
            return "year \(parts[0]) is outside the years a date may have, \(years.lowerBound) to \(years.upperBound)"
        }
        guard (1...12).contains(month) else { return "there is no month \(parts[1]): months go from 01 to 12" }
        guard parts.count == 3, let day = Int64(parts[2]) else { return nil }
        let last = Timestamp.daysInMonth(year: year, month: month)
        if day == 0 { return "there is no day 00: days go from 01" }
        guard day > last else { return nil }
        if month == 2 && day == 29 { return "\(year) has no 29 February (it is not a leap year)" }
        return "\(monthNames[Int(month) - 1]) has \(last) days, not \(day)"
    }

    private static let monthNames = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December",
    ]
}
