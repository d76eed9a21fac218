import ArgumentParser
import IncidentDomain

/// Checks of the options that take a time, as argument-parser transforms: a value that does not read as one is bad
/// usage naming the option and what it takes, before anything is sent; one that does is sent as given.
enum TimeArgument {
    /// What a time may be, for the options' help.
    static let forms = "a date (2022-03-01), a month (2022-03), or a date-time with its zone, Z or ±HH:MM (2022-03-01T14:30Z)"

    /// A time that the daemon stores as an event's `occurredAt` (`--occurred`).
    static func occurred(_ text: String) throws -> String {
        let text = ParsedDate.normalizedProposed(text)
        guard ParsedDate.parseProposed(text) == nil else { return text }
        throw ValidationError(ParsedDate.spaceForTProblem(text) ?? problem(text, readAs: ParsedDate.parseProposed))
    }

    /// A time that `replay` stops at (`--as-of`, `--occurred-before`), read as the daemon reads it.
    static func bound(_ text: String) throws -> String {
        guard ParsedDate.parse(text) == nil else { return text }
        throw ValidationError(problem(text, readAs: ParsedDate.parse))
    }

    /// Why `text` is not a time, when `read` does not take it: a date of the right form whose year, month or day is
    /// not one says which; a date-time without its zone says it needs one.
    private static func problem(_ text: String, readAs read: (String) -> ParsedDate?) -> String {
        if let calendar = ParsedDate.calendarProblem(text) { return calendar }
        if text.contains(where: { $0 == "T" || $0 == "t" }), read(text + "Z") != nil {
            return "a date-time needs its zone, Z (UTC) or ±HH:MM, as in 2022-03-01T14:30Z or 2022-03-01T14:30+02:00"
        }
        return "expected an ISO 8601 date (2022-03-01), month (2022-03) or date-time with its zone, Z or ±HH:MM "
            + "(2022-03-01T14:30Z, 2022-03-01T14:30+02:00)"
    }
}
