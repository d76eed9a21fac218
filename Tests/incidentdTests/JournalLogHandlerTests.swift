import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import incidentd

/// The daemon's log lines on stderr, one per message, as journald reads them.
@Suite("Journal log lines")
struct JournalLogHandlerTests {
    @Test("no control character of a message or a metadata value (a user name from the user database) can end the line or forge another")
    func oneLine() {
        #expect(JournalLogHandler.oneLine("permission denied: eve\n<0>forged\r\u{1b}[31m user=x") == "permission denied: eve <0>forged  [31m user=x")
        #expect(JournalLogHandler.oneLine("serving position=8 socket=/run/incidentd/incidentd.sock") == "serving position=8 socket=/run/incidentd/incidentd.sock")
        #expect(JournalLogHandler.oneLine("Kup’yansk\u{85}é") == "Kup’yansk é")
        #expect(JournalLogHandler.oneLine("city=Evil\u{202E}nwoT\u{2028}<0>x\u{2029}y") == "city=Evil nwoT <0>x y")
    }

    /// A file open for writing, as stderr would be, and its `device:inode` as systemd writes it in `JOURNAL_STREAM`.
    private static func openFile() throws -> (descriptor: Int32, identity: String, path: String) {
        let path = NSTemporaryDirectory() + "/journal-stream-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(descriptor >= 0)
        var info = stat()
        try #require(fstat(descriptor, &info) == 0)
        return (descriptor, "\(info.st_dev):\(info.st_ino)", path)
    }

    @Test("the journal's form only when JOURNAL_STREAM names the device and inode of the file stderr is open on")
    func journalStreamMatchesStderr() throws {
        let file = try Self.openFile()
        defer {
            close(file.descriptor)
            unlink(file.path)
        }
        #expect(JournalLogHandler.writesToJournal(journalStream: file.identity, descriptor: file.descriptor))
    }

    @Test("JOURNAL_STREAM inherited by a process whose stderr goes elsewhere (another file), absent, or malformed: lines with their time")
    func journalStreamNamesAnotherFile() throws {
        let file = try Self.openFile()
        let other = try Self.openFile()
        defer {
            close(file.descriptor)
            close(other.descriptor)
            unlink(file.path)
            unlink(other.path)
        }
        #expect(!JournalLogHandler.writesToJournal(journalStream: other.identity, descriptor: file.descriptor))
        #expect(!JournalLogHandler.writesToJournal(journalStream: "8:12345", descriptor: file.descriptor))
        #expect(!JournalLogHandler.writesToJournal(journalStream: nil, descriptor: file.descriptor))
        for malformed in ["", "8", "8:", ":12345", "x:y", file.identity + ":1", " " + file.identity] {
            #expect(!JournalLogHandler.writesToJournal(journalStream: malformed, descriptor: file.descriptor), "\(malformed)")
        }
    }
}
