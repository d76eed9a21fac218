import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The signals an operator may send besides SIGTERM: none ends the daemon.
@Suite("Signals")
struct SignalTests {
    @Test("SIGHUP is answered in the log (no reload: restart it), SIGUSR1 and SIGUSR2 are ignored, and the daemon keeps serving; SIGTERM then exits 0 and removes the socket")
    func hangupDoesNotStop() throws {
        let daemon = try Daemon()
        let client = try daemon.client()
        kill(daemon.pid, SIGHUP)
        try waitFor("the SIGHUP line") {
            daemon.log.contains(
                "notice SIGHUP: incidentd does not reload its configuration on SIGHUP; restart it (systemctl restart incidentd) for changes to take effect")
        }
        kill(daemon.pid, SIGUSR1)
        kill(daemon.pid, SIGUSR2)
        try waitFor("the SIGUSR1 and SIGUSR2 lines") {
            daemon.log.contains("notice SIGUSR1 ignored") && daemon.log.contains("notice SIGUSR2 ignored")
        }
        #expect(try client.call("status").isOK)
        #expect(try daemon.client().call("status").isOK)
        #expect(daemon.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socketPath))
    }
}
