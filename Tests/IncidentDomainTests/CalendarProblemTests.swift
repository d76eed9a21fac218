import IncidentDomain
import Testing

/// ``ParsedDate/calendarProblem(_:)`` names what is wrong with a date of the right form, and only with one that
/// ``ParsedDate/parse(_:)`` refuses for its year, month or day.
@Suite("Dates that are no dates")
struct CalendarProblemTests {
    @Test("a refused date of the right form says which part is wrong; a valid date, or text of another form, gets nothing")
    func problems() {
        let refused: [(String, String)] = [
            ("2023-02-29", "2023 has no 29 February (it is not a leap year)"),
            ("1900-02-29T00:00Z", "1900 has no 29 February (it is not a leap year)"),
            ("2024-02-30", "February has 29 days, not 30"),
            ("2022-11-31", "November has 30 days, not 31"),
            ("0001-01-01", "year 0001 is outside the years a date may have, 1000 to 9999"),
            ("2022-13", "there is no month 13: months go from 01 to 12"),
            ("2022-01-00", "there is no day 00: days go from 01"),
        ]
        for (text, says) in refused {
            #expect(ParsedDate.parse(text) == nil, "\(text)")
            #expect(ParsedDate.calendarProblem(text) == says, "\(text)")
        }
        for text in ["2024-02-29", "2000-02-29", "1000-01", "9999-12-31T23:59Z", "1 March 2022", "2022-3-1", "20220301", "2022-W09", "", "2022"] {
            #expect(ParsedDate.calendarProblem(text) == nil, "\(text)")
        }
    }
}
