import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

private func tool(_ program: String) -> String? {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map { "\($0)/\(program)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// `make install` and `make uninstall` (mk/install.mk) into a staging root (DESTDIR), with the binaries this test run
/// uses (INSTALL_FROM) in place of the static release build, which make test does not build.
@Suite("make install")
struct InstallTests {
    /// Every file and directory below `root`: relative path → "d 755", "f 644", "l".
    static func tree(_ root: String) -> [String: String] {
        var entries: [String: String] = [:]
        guard let walker = FileManager.default.enumerator(atPath: root) else { return entries }
        while let relative = walker.nextObject() as? String {
            var info = stat()
            guard lstat(root + "/" + relative, &info) == 0 else { continue }
            let mode = String(info.st_mode & 0o7777, radix: 8)
            switch info.st_mode & S_IFMT {
            case S_IFDIR: entries[relative] = "d \(mode)"
            case S_IFREG: entries[relative] = "f \(mode)"
            default: entries[relative] = "l"
            }
        }
        return entries
    }

    /// make in the repository, with a make of its own (not the jobserver of a make test that runs this).
    static func make(_ arguments: [String]) throws -> CommandResult {
        let make = try #require(tool("make"), "make is missing")
        return try runCommand(
            make, ["-C", repository, "--no-print-directory"] + arguments,
            environment: ["MAKEFLAGS": "", "MAKELEVEL": "", "MFLAGS": ""])
    }

    /// What make install lays out with the default PREFIX (/usr/local), with each file's mode.
    static let installed: [String: String] = {
        var entries: [String: String] = [:]
        for directory in [
            "etc", "etc/incidentd", "usr", "usr/local", "usr/local/bin", "usr/local/lib", "usr/local/lib/systemd",
            "usr/local/lib/systemd/system", "usr/local/lib/sysusers.d", "usr/local/lib/tmpfiles.d", "usr/local/share",
            "usr/local/share/doc", "usr/local/share/doc/incidentd", "usr/local/share/doc/incidentd/examples",
        ] {
            entries[directory] = "d 755"
        }
        for binary in ["usr/local/bin/incidentd", "usr/local/bin/incidentctl"] { entries[binary] = "f 755" }
        for file in [
            "usr/local/lib/systemd/system/incidentd.service", "usr/local/lib/systemd/system/incidentd.socket",
            "usr/local/lib/systemd/system/incidentd-verify.service", "usr/local/lib/systemd/system/incidentd-verify.timer",
            "usr/local/lib/sysusers.d/incidentd.conf", "usr/local/lib/tmpfiles.d/incidentd.conf",
            "etc/incidentd/incidentd.toml", "usr/local/share/doc/incidentd/README.md",
            "usr/local/share/doc/incidentd/PROTOCOL.md", "usr/local/share/doc/incidentd/SPEC.md",
            "usr/local/share/doc/incidentd/cities.toml",
            "usr/local/share/doc/incidentd/examples/article.jsonl",
        ] {
            entries[file] = "f 644"
        }
        return entries
    }()

    static let units = ["incidentd.service", "incidentd.socket", "incidentd-verify.service", "incidentd-verify.timer"]

    /// systemd-analyze verify of the installed units inside `root`, where ExecStart's binaries are looked for; the
    /// targets they name come from the host's own units, copied into the root's /lib/systemd/system (which systemd
    /// searches too), apart from where make install puts units.
    static func verifyUnits(in root: String) throws -> CommandResult {
        let analyze = try #require(tool("systemd-analyze"), "systemd-analyze is missing; install systemd")
        let hostUnits = "/usr/lib/systemd/system"
        let copy = root + "/lib/systemd/system"
        if !FileManager.default.fileExists(atPath: copy) {
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            let cp = try runCommand(try #require(tool("cp")), ["-a", hostUnits + "/.", copy + "/"])
            #expect(cp.status == 0, "\(cp.stderr)")
        }
        return try runCommand(analyze, ["verify", "--root=" + root] + units)
    }

    @Test("make install DESTDIR=… lays out the binaries (0755), units, sysusers.d, tmpfiles.d, incidentd.toml and documentation (0644); the installed units pass systemd-analyze verify with the installed binaries' paths, and sysusers and tmpfiles take the snippets from where they were installed; an edited incidentd.toml is kept; make uninstall leaves the configuration and the log")
    func installAndUninstall() throws {
        let work = makeTemporaryDirectory("incidentd-install")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let root = work + "/root"
        let install = try Self.make(["install", "DESTDIR=" + root, "INSTALL_FROM=" + Binaries.directory])
        #expect(install.status == 0, "\(install.stdout)\(install.stderr)")
        #expect(Self.tree(root) == Self.installed, "\(Self.tree(root))")
        #expect(!install.stdout.contains("systemctl"), "no next steps for a staging root: \(install.stdout)")

        // The default PREFIX is the one the shipped units name: installed as they are.
        for unit in Self.units {
            #expect(
                readFile(root + "/usr/local/lib/systemd/system/" + unit) == readFile(repository + "/systemd/" + unit),
                "\(unit) installed unchanged")
        }
        // Every Documentation= of the units names a file that was installed.
        for unit in Self.units {
            let text = readFile(root + "/usr/local/lib/systemd/system/" + unit) ?? ""
            for line in text.split(separator: "\n") where line.hasPrefix("Documentation=file:") {
                let path = String(line.dropFirst("Documentation=file:".count))
                #expect(FileManager.default.fileExists(atPath: root + path), "\(unit): \(line)")
            }
        }
        let version = try runCommand(root + "/usr/local/bin/incidentctl", ["--version"])
        #expect(version.status == 0, "\(version.stderr)")

        let verify = try Self.verifyUnits(in: root)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stderr.isEmpty, "\(verify.stderr)")
        // The check is of the installed paths: without the installed daemon it fails, naming ExecStart's binary.
        #expect(rename(root + "/usr/local/bin/incidentd", work + "/incidentd") == 0)
        let missing = try Self.verifyUnits(in: root)
        #expect(missing.status != 0 && missing.stderr.contains("/usr/local/bin/incidentd"), "\(missing.stderr)")
        #expect(rename(work + "/incidentd", root + "/usr/local/bin/incidentd") == 0)

        // The next steps make install prints, inside the staging root: the user, the groups and the directories.
        if getuid() == 0, let sysusers = tool("systemd-sysusers"), let tmpfiles = tool("systemd-tmpfiles") {
            let users = try runCommand(sysusers, ["--root=" + root, "incidentd.conf"])
            #expect(users.status == 0, "\(users.stderr)")
            let passwd = readFile(root + "/etc/passwd") ?? ""
            let line = try #require(passwd.split(separator: "\n").first { $0.hasPrefix("incidentd:") }, "\(passwd)")
            let uid = try #require(UInt32(line.split(separator: ":")[2]))
            let group = readFile(root + "/etc/group") ?? ""
            for name in ["incidentd-clients", "incidentd-readers", "incidentd-reporters"] {
                #expect(group.contains("\n\(name):") || group.hasPrefix("\(name):"), "\(name): \(group)")
            }
            let directories = try runCommand(tmpfiles, ["--root=" + root, "--create", "incidentd.conf"])
            #expect(directories.status == 0, "\(directories.stderr)")
            for (directory, mode) in [("var/lib/incidentd", 0o700), ("var/lib/incidentd/backups", 0o700), ("run/incidentd", 0o755)] {
                var info = stat()
                #expect(lstat(root + "/" + directory, &info) == 0, "\(directory)")
                #expect(info.st_mode & 0o7777 == mode && info.st_uid == uid, "\(directory): mode \(String(info.st_mode & 0o7777, radix: 8)), uid \(info.st_uid)")
            }
        }

        // A second install keeps an incidentd.toml that was edited, and says so.
        let config = root + "/etc/incidentd/incidentd.toml"
        let edited = (readFile(config) ?? "") + "\n# edited here\n"
        try edited.write(toFile: config, atomically: true, encoding: .utf8)
        let again = try Self.make(["install", "DESTDIR=" + root, "INSTALL_FROM=" + Binaries.directory])
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        #expect(readFile(config) == edited)
        #expect(again.stdout.contains("kept \(config) as it is"), "\(again.stdout)")

        let uninstall = try Self.make(["uninstall", "DESTDIR=" + root])
        #expect(uninstall.status == 0, "\(uninstall.stdout)\(uninstall.stderr)")
        let left = Self.tree(root)
        for (path, kind) in Self.installed where kind.hasPrefix("f") && path != "etc/incidentd/incidentd.toml" {
            #expect(left[path] == nil, "\(path) is left")
        }
        #expect(left["usr/local/share/doc/incidentd"] == nil, "the documentation's directory is removed")
        #expect(readFile(config) == edited, "the configuration is left")
        if getuid() == 0 { #expect(left["var/lib/incidentd"] == "d 700", "the state directory is left") }
    }

    @Test("make install PREFIX=/usr names /usr/bin in ExecStart= and /usr/share/doc in Documentation=, and the units pass systemd-analyze verify there; installed into the real root (no DESTDIR) it prints the next steps: systemd-sysusers, systemd-tmpfiles --create, daemon-reload, enable --now incidentd.socket, and under a PREFIX where systemd does not look, says so and how to link the units and snippets")
    func prefixAndNextSteps() throws {
        let work = makeTemporaryDirectory("incidentd-install")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let root = work + "/root"
        let install = try Self.make(["install", "DESTDIR=" + root, "PREFIX=/usr", "INSTALL_FROM=" + Binaries.directory])
        #expect(install.status == 0, "\(install.stdout)\(install.stderr)")
        #expect(!install.stdout.contains("does not look") && !install.stdout.contains("at boot, not"), "\(install.stdout)")
        let service = readFile(root + "/usr/lib/systemd/system/incidentd.service") ?? ""
        #expect(service.contains("\nExecStart=/usr/bin/incidentd --config /etc/incidentd/incidentd.toml\n"), "\(service)")
        #expect(service.contains("\nDocumentation=file:/usr/share/doc/incidentd/README.md\n"), "\(service)")
        let verifyService = readFile(root + "/usr/lib/systemd/system/incidentd-verify.service") ?? ""
        #expect(verifyService.contains("\nExecStart=/usr/bin/incidentctl verify"), "\(verifyService)")
        #expect(FileManager.default.isExecutableFile(atPath: root + "/usr/bin/incidentd"))
        let verify = try Self.verifyUnits(in: root)
        #expect(verify.status == 0 && verify.stderr.isEmpty, "\(verify.stdout)\(verify.stderr)")

        // "The real root", every directory of it moved into the work directory instead.
        let real = work + "/real"
        let steps = try Self.make(["install", "DESTDIR=", "PREFIX=" + real + "/usr/local", "SYSCONFDIR=" + real + "/etc",
                                   "INSTALL_FROM=" + Binaries.directory])
        #expect(steps.status == 0, "\(steps.stdout)\(steps.stderr)")
        // systemd looks in none of these directories: the run says so, and how to make it find what was installed.
        for hint in [
            "make install: systemd does not look for units in \(real)/usr/local/lib/systemd/system: link them (below), or install with UNITDIR=/etc/systemd/system",
            "make install: systemd-sysusers reads /etc/sysusers.d at boot, not \(real)/usr/local/lib/sysusers.d",
            "make install: systemd-tmpfiles reads /etc/tmpfiles.d at boot, not \(real)/usr/local/lib/tmpfiles.d",
            "  ln -sf \(real)/usr/local/lib/sysusers.d/incidentd.conf /etc/sysusers.d/incidentd.conf",
            "  ln -sf \(real)/usr/local/lib/tmpfiles.d/incidentd.conf /etc/tmpfiles.d/incidentd.conf",
            "  systemctl link " + Self.units.map { "\(real)/usr/local/lib/systemd/system/\($0)" }.joined(separator: " ") + "\n",
        ] {
            #expect(steps.stdout.contains(hint), "\(hint): \(steps.stdout)")
        }
        for step in [
            "systemd-sysusers \(real)/usr/local/lib/sysusers.d/incidentd.conf",
            "systemd-tmpfiles --create \(real)/usr/local/lib/tmpfiles.d/incidentd.conf",
            "systemctl daemon-reload", "systemctl enable --now incidentd.socket",
        ] {
            #expect(steps.stdout.contains("  " + step), "\(step): \(steps.stdout)")
        }
        #expect(FileManager.default.fileExists(atPath: real + "/etc/incidentd/incidentd.toml"))
    }
}
