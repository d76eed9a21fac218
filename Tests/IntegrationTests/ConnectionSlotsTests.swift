import Foundation
import StrictJSON
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Connections held open by another user: a perl process as `user` opens `count` connections, asks `status` on each
/// and prints each answer, then holds them all until it is released (its standard input closed).
final class HeldConnections {
    let answers: [JSONValue]
    private let child: ChildProcess
    private let input: Int32

    init(_ count: Int, as user: ThrowawayUser, socket: String) throws {
        let script = """
            use IO::Socket::UNIX;
            $| = 1;
            # A refused connection may be closed before its request is written: its answer is read all the same.
            $SIG{PIPE} = 'IGNORE';
            my @held;
            for (1..\(count)) {
                my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or die "connect: $!";
                print $s qq({"op":"status"}\\n);
                my $line = <$s>;
                print(defined $line ? $line : "{}\\n");
                push @held, $s;
            }
            print "held\\n";
            <STDIN>;
            """
        let stdin = try CloseOnExecPipe()
        let out = try CloseOnExecPipe()
        child = try ChildProcess(
            "/usr/bin/setpriv",
            ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--clear-groups", "/usr/bin/perl", "-e", script, socket],
            environment: [:], stdin: stdin.read, stdout: out.write, stderr: 2)
        close(stdin.read)
        close(out.write)
        input = stdin.write
        // Line by line up to "held", so that the connections are still open when the answers are in.
        var text = ""
        var byte: UInt8 = 0
        while !text.hasSuffix("held\n") {
            let n = read(out.read, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { break }
            text.append(Character(UnicodeScalar(byte)))
        }
        close(out.read)
        answers = text.split(separator: "\n").dropLast().map { (try? JSONReader().read(String($0))) ?? .null }
        guard text.hasSuffix("held\n") else {
            close(input)
            child.wait()
            throw HarnessError("the holder of \(count) connections ended: \(text)")
        }
    }

    /// Closes every connection held and waits for the process to end.
    func release() {
        close(input)
        child.wait()
    }
}

@Suite("Connection slots")
struct ConnectionSlotsTests {
    static let canRun = ThrowawayUser.canCreate && FileManager.default.isExecutableFile(atPath: "/usr/bin/perl")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

    @Test(
        "a uid holding max_connections_per_uid connections is refused its next one with too_many_connections naming the limit, and the warning names it as holding the most; root is not limited, and a slot is given back as its connection closes",
        .enabled(if: canRun, "needs root, useradd, setpriv and perl"))
    func perUIDLimit() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon.configured(
            "[daemon]\nmax_connections = 64\nmax_connections_per_uid = 3\n[access.readers]\nusers = [\"\(user.name)\"]\n")
        try AccessTests.admit(user, to: daemon)

        let held = try HeldConnections(4, as: user, socket: daemon.socketPath)
        #expect(held.answers.count == 4)
        #expect(held.answers.prefix(3).allSatisfy { $0.isOK }, "\(held.answers)")
        let refused = held.answers.last ?? .null
        #expect(refused.errorCode == "too_many_connections", "\(refused)")
        #expect(
            refused["error"]?["message"]?.stringValue?.contains(
                "\(user.name) (uid \(user.uid)) already holds 3 connections, the most max_connections_per_uid allows") == true,
            "\(refused)")
        try waitFor("the refusal in the daemon's log") {
            daemon.log.contains(
                "refused 1 connection since the last such line: \(user.name) (uid \(user.uid)) already holds 3 connections, the most max_connections_per_uid allows; the most are held by uid \(user.uid) (\(user.name)), 3 connections")
        }

        // Root holds more than three at once.
        let clients = try (0..<5).map { _ in try daemon.client() }
        for client in clients { #expect(try client.call("status").isOK) }
        held.release()

        // The slots were given back: the user has three again.
        try waitFor("the held connections to close") { try clients[0].status()["connections"] == 5 }
        let again = try HeldConnections(4, as: user, socket: daemon.socketPath)
        #expect(again.answers.prefix(3).allSatisfy { $0.isOK }, "\(again.answers)")
        #expect(again.answers.last?.errorCode == "too_many_connections", "\(again.answers)")
        again.release()
        #expect(daemon.stop() == 0)
    }

    @Test(
        "the last slots of max_connections (an eighth, 8 at most) are kept for admins: a reader is refused past the rest, and root still connects",
        .enabled(if: canRun, "needs root, useradd, setpriv and perl"))
    func slotsKeptForAdmins() throws {
        let user = try ThrowawayUser()
        let daemon = try Daemon.configured("[daemon]\nmax_connections = 16\n[access.readers]\nusers = [\"\(user.name)\"]\n")
        try AccessTests.admit(user, to: daemon)
        // The harness's readiness probes may still be counted for a moment; root's first connection is this one.
        let probe = try daemon.client()
        try waitFor("only this connection to be counted") { try probe.status()["connections"] == 1 }

        // The reader has 13 (the 2nd to 14th), not the 15th and 16th.
        let held = try HeldConnections(14, as: user, socket: daemon.socketPath)
        #expect(held.answers.prefix(13).allSatisfy { $0.isOK }, "\(held.answers)")
        let refused = held.answers.last ?? .null
        #expect(refused.errorCode == "too_many_connections", "\(refused)")
        #expect(
            refused["error"]?["message"]?.stringValue?.contains(
                "incidentd already serves 14 connections and keeps the other 2 of max_connections (16) for admins") == true,
            "\(refused)")
        // Root has the two kept, and no more.
        let first = try daemon.client()
        #expect(try first.call("status").isOK)
        let second = try daemon.client()
        #expect(try second.call("status")["connections"] == 16)
        let third = try daemon.client()
        #expect(try third.receive().errorCode == "too_many_connections")
        held.release()
        #expect(daemon.stop() == 0)
    }
}
