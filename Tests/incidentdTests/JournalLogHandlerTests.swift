import Testing

@testable import incidentd

/// The daemon's log lines on stderr, one per message, as journald reads them.
@Suite("Journal log lines")
struct JournalLogHandlerTests {
    @Test("no control character of a message or a metadata value (a user name from the user database) can end the line or forge another")
    func oneLine() {
        #expect(JournalLogHandler.oneLine("permission denied: eve\n<0>forged\r\u{1b}[31m user=x") == "permission denied: eve <0>forged  [31m user=x")
        #expect(JournalLogHandler.oneLine("serving position=8 socket=/run/incidentd/incidentd.sock") == "serving position=8 socket=/run/incidentd/incidentd.sock")
        #expect(JournalLogHandler.oneLine("Kup’yansk\u{85}é") == "Kup’yansk é")
    }
}
